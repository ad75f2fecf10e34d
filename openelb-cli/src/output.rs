//! Plain-text tables aligned like kubectl's, and the columns of `kubectl get svc` the API server would fill in.

use std::collections::{BTreeMap, BTreeSet};

use openelb_core::{Service, ServiceKey};

/// Cluster IP and node ports per Service, as the API server would have filled them in.
pub type DisplayFields = BTreeMap<ServiceKey, (String, Vec<Option<i32>>)>;

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

/// Fills in cluster IPs (from the seed's 10.233.0.0/18 service range) and node ports (30000-32767) that the
/// manifests leave out, deterministically, so `allocate` can print what `kubectl get svc` would.
pub fn display_fields(services: &[Service]) -> DisplayFields {
    let mut used_ports: BTreeSet<i32> =
        services.iter().flat_map(|s| s.ports.iter().filter_map(|p| p.node_port)).collect();
    let mut next_port = 30000;
    let mut next_ip = 10u32;
    let mut sorted: Vec<&Service> = services.iter().collect();
    sorted.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut out = BTreeMap::new();
    for s in sorted {
        let cluster_ip = s.cluster_ip.clone().unwrap_or_else(|| {
            let ip = format!("10.233.{}.{}", next_ip / 256, next_ip % 256);
            next_ip += 1;
            ip
        });
        let wants_node_port = s.type_ == "LoadBalancer" || s.type_ == "NodePort";
        let ports = s
            .ports
            .iter()
            .map(|p| {
                p.node_port.or_else(|| {
                    wants_node_port.then(|| {
                        while used_ports.contains(&next_port) {
                            next_port += 1;
                        }
                        used_ports.insert(next_port);
                        next_port
                    })
                })
            })
            .collect();
        out.insert(s.key(), (cluster_ip, ports));
    }
    out
}

/// `CLUSTER-IP` and `PORT(S)` columns of `kubectl get svc` for a Service.
pub fn display_ports(display: &DisplayFields, svc: &Service) -> (String, String) {
    let (ip, node_ports) = display.get(&svc.key()).cloned().unwrap_or_else(|| ("<none>".into(), Vec::new()));
    let ports: Vec<String> = svc
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let proto = if p.protocol.is_empty() { "TCP" } else { p.protocol.as_str() };
            match node_ports.get(i).copied().flatten().or(p.node_port) {
                Some(np) => format!("{}:{np}/{proto}", p.port),
                None => format!("{}/{proto}", p.port),
            }
        })
        .collect();
    (ip, if ports.is_empty() { "<none>".into() } else { ports.join(",") })
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align() {
        let t = super::table(&["NAME", "IP"], &[vec!["a-long-name".into(), "1".into()], vec!["b".into(), "2".into()]]);
        assert_eq!(t, "NAME          IP\na-long-name   1\nb             2\n");
    }
}
