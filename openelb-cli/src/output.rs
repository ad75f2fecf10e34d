//! Plain-text tables aligned like kubectl's.

/// Renders rows under a header, columns separated by three spaces, each as wide as its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(c.chars().count());
                s.push_str(c);
                s.push_str(&" ".repeat(pad + 3));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align() {
        let t = super::table(&["NAME", "IP"], &[vec!["a-long-name".into(), "1".into()], vec!["b".into(), "2".into()]]);
        assert_eq!(t, "NAME          IP\na-long-name   1\nb             2\n");
    }
}
