//! The one duration syntax of every openelb flag and scenario file (`100ms`, `3s`, `2m`).

use std::time::Duration;

/// `250us`, `100ms`, `1.5s`, `2m` (or a bare `0`): always with an explicit unit, so that `1` is never silently
/// read as one second or one millisecond.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let v = value.trim();
    if v == "0" {
        return Ok(Duration::ZERO);
    }
    let (number, nanos_per_unit) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1e6)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e9)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60e9)
    } else {
        return Err(format!("{value:?}: needs a unit: us, ms, s or m (e.g. 100ms or 3s)"));
    };
    let n: f64 = number.trim().parse().map_err(|_| format!("{value:?}: {number:?} is not a number"))?;
    if !n.is_finite() || n < 0.0 {
        return Err(format!("{value:?}: must be a non-negative duration"));
    }
    let nanos = (n * nanos_per_unit).round();
    // A day is far beyond any timer or simulated timeline here; refusing it keeps conversions overflow-free.
    if nanos > 86_400e9 {
        return Err(format!("{value:?}: longer than a day"));
    }
    Ok(Duration::from_nanos(nanos as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit_and_accept_ms_and_s() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration("0.1ms"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        for bad in ["100", "abc", "-1s", "1h", "ms", "1e30s", "2d"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
