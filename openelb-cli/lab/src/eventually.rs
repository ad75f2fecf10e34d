//! Waiting for a condition with a deadline, the one way tests and the lab wait: they poll what they expect
//! instead of sleeping a fixed time.

use std::time::{Duration, Instant};

/// Polls `check` every `poll` until it returns `Some`, or gives up after `timeout` with an error saying so.
pub fn eventually<T>(timeout: Duration, poll: Duration, mut check: impl FnMut() -> Option<T>) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!("not within {timeout:?}"));
        }
        std::thread::sleep(poll);
    }
}

/// Like [`eventually`], for checks that say why they are not satisfied yet: `check` returns `Err(last seen)`,
/// and the error names `what` and the last thing seen.
pub fn eventually_with<T>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let mut last = String::new();
    eventually(timeout, poll, || match check() {
        Ok(v) => Some(v),
        Err(seen) => {
            last = seen;
            None
        }
    })
    .map_err(|e| format!("{what}: {e}; last seen: {last}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_value_and_reports_a_timeout() {
        let mut n = 0;
        let v = eventually(Duration::from_secs(5), Duration::from_millis(1), || {
            n += 1;
            (n == 3).then_some(n)
        });
        assert_eq!(v, Ok(3));
        let e = eventually_with("the answer", Duration::from_millis(5), Duration::from_millis(1), || {
            Err::<(), _>("41".to_string())
        })
        .unwrap_err();
        assert!(e.contains("the answer") && e.contains("41"), "{e}");
    }
}
