//! When a restarted controller has verified every Service, read from its `/metrics`.

/// A gauge of Services whose address the controller has checked since it started; preferred when the
/// controller exports it.
pub const SERVICES_VERIFIED: &str = "openelb_services_verified";
/// Reconciles since the process started, every kind (the measure before [`SERVICES_VERIFIED`] existed).
pub const RECONCILE_COUNT: &str = "openelb_reconcile_duration_seconds_count";

/// Sum of a metric's samples (all label sets) in Prometheus text; `None` if it has no sample.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut samples = text
        .lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .peekable();
    samples.peek()?;
    Some(samples.sum())
}

/// Which measure [`verified`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Gauge,
    Reconciles,
}

impl Measure {
    pub fn name(self) -> &'static str {
        match self {
            Measure::Gauge => SERVICES_VERIFIED,
            Measure::Reconciles => RECONCILE_COUNT,
        }
    }
}

/// Whether `/metrics` says all `n` Services were verified: [`SERVICES_VERIFIED`] if present, else the sum of
/// [`RECONCILE_COUNT`] (an over-count once Eips reconcile too, which is why the gauge wins).
pub fn verified(text: &str, n: usize) -> Option<Measure> {
    let (measure, value) = match metric_sum(text, SERVICES_VERIFIED) {
        Some(v) => (Measure::Gauge, v),
        None => (Measure::Reconciles, metric_sum(text, RECONCILE_COUNT)?),
    };
    (value >= n as f64).then_some(measure)
}

/// Status code and body of an HTTP/1.0 response (no chunked encoding: an HTTP/1.0 request gets none).
pub fn parse_response(raw: &[u8]) -> Option<(u16, &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(raw.get(..end)?).ok()?;
    let code = head.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, raw.get(end + 4..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_every_label_set_and_only_that_metric() {
        let text = "# TYPE a_count counter\na_count{x=\"1\"} 2\na_count{x=\"2\"} 3\na_count_other 7\na_count 1\n";
        assert_eq!(metric_sum(text, "a_count"), Some(6.0));
        assert_eq!(metric_sum(text, "b_count"), None);
        assert_eq!(metric_sum("a_count garbage\n", "a_count"), None);
    }

    #[test]
    fn the_gauge_wins_over_the_reconcile_count() {
        let counts = format!("{RECONCILE_COUNT}{{kind=\"Service\"}} 90\n{RECONCILE_COUNT}{{kind=\"Eip\"}} 10\n");
        assert_eq!(verified(&counts, 100), Some(Measure::Reconciles));
        assert_eq!(verified(&counts, 101), None);
        let with_gauge = format!("{counts}{SERVICES_VERIFIED} 99\n");
        assert_eq!(verified(&with_gauge, 100), None);
        assert_eq!(verified(&format!("{counts}{SERVICES_VERIFIED} 100\n"), 100), Some(Measure::Gauge));
        assert_eq!(verified("", 0), None);
    }

    #[test]
    fn http_responses() {
        assert_eq!(parse_response(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"), Some((200, &b"ok"[..])));
        assert_eq!(parse_response(b"HTTP/1.1 503 Service Unavailable\r\n\r\n"), Some((503, &b""[..])));
        assert_eq!(parse_response(b"HTTP/1.0 200 OK\r\n"), None);
        assert_eq!(parse_response(b"garbage\r\n\r\n"), None);
        assert_eq!(parse_response(&[0xff, 0xfe, b'\r', b'\n', b'\r', b'\n']), None);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_and_any_text_parse_without_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse_response(&raw);
            let text = String::from_utf8_lossy(&raw);
            let _ = verified(&text, 1);
            let _ = metric_sum(&text, "a");
        }
    }
}
