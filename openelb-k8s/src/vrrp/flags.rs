//! The VRRP flags the controller and the speaker share: they must plan with the same range to agree on VRIDs.

use std::ops::RangeInclusive;

/// `FIRST-LAST` or a single VRID; 0 is reserved.
pub fn parse_vrid_range(value: &str) -> Result<RangeInclusive<u8>, String> {
    let one = |s: &str| -> Result<u8, String> {
        let n: u16 = s.trim().parse().map_err(|_| format!("{value:?}: {s:?} is not a VRID (1-255)"))?;
        match u8::try_from(n) {
            Ok(v) if v >= 1 => Ok(v),
            _ => Err(format!("{value:?}: VRIDs are 1-255, got {n}")),
        }
    };
    let (first, last) = match value.split_once('-') {
        Some((a, b)) => (one(a)?, one(b)?),
        None => {
            let v = one(value)?;
            (v, v)
        }
    };
    if first > last {
        return Err(format!("{value:?}: range end is before its start"));
    }
    Ok(first..=last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vrid_range_excludes_zero_and_reversed_ranges() {
        assert_eq!(parse_vrid_range("1-255"), Ok(1..=255));
        assert_eq!(parse_vrid_range("7"), Ok(7..=7));
        assert!(parse_vrid_range("0-10").unwrap_err().contains("1-255"));
        assert!(parse_vrid_range("1-256").unwrap_err().contains("256"));
        assert!(parse_vrid_range("20-10").unwrap_err().contains("before its start"));
        assert!(parse_vrid_range("a-b").unwrap_err().contains("\"a\""));
    }
}
