//! Percentiles and the `ratio ...: <x>` lines the issue's targets are read from.

use std::time::Duration;

/// Percentile by nearest rank.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v.get(rank.min(v.len()) - 1).copied()
}

pub fn median(values: &[f64]) -> Option<f64> {
    percentile(values, 50.0)
}

/// p50, p99 and max of a set of samples (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(values: &[f64]) -> Option<Summary> {
        Some(Summary {
            p50: percentile(values, 50.0)?,
            p99: percentile(values, 99.0)?,
            max: percentile(values, 100.0)?,
        })
    }

    /// `p50 ... ms   p99 ... ms   max ... ms`, the columns every latency line of kube-bench uses.
    pub fn columns(&self) -> String {
        format!("p50 {:7.1} ms   p99 {:7.1} ms   max {:7.1} ms", self.p50, self.p99, self.max)
    }
}

/// One figure of ours over the apiserver-alone figure it is judged against, as the issue prints it:
/// `ratio <what>: <x>`, or `n/a` when either side was not measured (or the floor is zero).
pub fn ratio_line(what: &str, ours: Option<f64>, floor: Option<f64>) -> String {
    match (ours, floor) {
        (Some(o), Some(f)) if f > 0.0 && o.is_finite() && f.is_finite() => format!("ratio {what}: {:.2}", o / f),
        _ => format!("ratio {what}: n/a"),
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `12.34 s`, or `never` for what did not happen before the deadline.
pub fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "never".to_string(), |d| format!("{:.2} s", d.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
        // Order of the input does not matter; p99 of ten samples is the largest.
        assert_eq!(percentile(&[5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 10.0], 99.0), Some(10.0));
        assert_eq!(percentile(&[5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 10.0], 50.0), Some(5.0));
    }

    #[test]
    fn summary_of_samples() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(Summary::of(&v), Some(Summary { p50: 100.0, p99: 198.0, max: 200.0 }));
        assert_eq!(Summary::of(&[]), None);
    }

    #[test]
    fn ratio_lines_as_the_issue_prints_them() {
        assert_eq!(
            ratio_line("burst-allocate/bare-writes N=1000", Some(23.3), Some(7.0)),
            "ratio burst-allocate/bare-writes N=1000: 3.33"
        );
        assert_eq!(
            ratio_line("restart/bare-list N=5000", Some(0.5), Some(0.25)),
            "ratio restart/bare-list N=5000: 2.00"
        );
        assert_eq!(ratio_line("x", None, Some(1.0)), "ratio x: n/a");
        assert_eq!(ratio_line("x", Some(1.0), None), "ratio x: n/a");
        assert_eq!(ratio_line("x", Some(1.0), Some(0.0)), "ratio x: n/a");
        assert_eq!(ratio_line("x", Some(f64::INFINITY), Some(1.0)), "ratio x: n/a");
    }

    #[test]
    fn seconds_or_never() {
        assert_eq!(secs(Some(Duration::from_millis(1234))), "1.23 s");
        assert_eq!(secs(None), "never");
        assert_eq!(ms(Duration::from_micros(1500)), 1.5);
    }
}
