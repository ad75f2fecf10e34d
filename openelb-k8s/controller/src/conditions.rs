//! The conditions an Eip's status carries, decided from plain facts (pure: the clock is an argument).
//!
//! - `Ready`: whether the Eip gives out new addresses now. False while it is being deleted, disabled, has an
//!   address that does not parse, or has no free address; the reason says which.
//! - `Invalid`: whether its spec breaks a rule of [`openelb_core::validate`] (an address that does not parse,
//!   a range overlapping another Eip, a second default pool...). There is no webhook in every cluster, so the
//!   controller is where such mistakes become visible. An overlapping Eip keeps giving out addresses: refusing
//!   would punish the pool that was there first as much as the newcomer.
//!
//! `lastTransitionTime` changes only when a condition's status does, so recomputing unchanged facts yields
//! exactly the conditions already written, and nothing is written.

use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use openelb_core::ipam::PoolStatus;
use openelb_core::validate::Problem;

pub const READY: &str = "Ready";
pub const INVALID: &str = "Invalid";

/// Why a condition has its status (its `reason` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionReason {
    /// `Ready=True`: free addresses left.
    Available,
    Deleting,
    Disabled,
    InvalidAddress,
    Exhausted,
    /// `Invalid=False`.
    Valid,
    /// `Invalid=True`.
    InvalidSpec,
}

impl ConditionReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            ConditionReason::Available => "Available",
            ConditionReason::Deleting => "Deleting",
            ConditionReason::Disabled => "Disabled",
            ConditionReason::InvalidAddress => "InvalidAddress",
            ConditionReason::Exhausted => "Exhausted",
            ConditionReason::Valid => "Valid",
            ConditionReason::InvalidSpec => "InvalidSpec",
        }
    }
}

const VALID_MESSAGE: &str = "the spec passes validation";
/// How many addresses in use a message lists before summarising the rest.
const LISTED: usize = 5;
/// Condition messages stay readable in `kubectl describe`; the full list is in `status.used` and events.
const MAX_MESSAGE: usize = 2048;

/// One condition as decided, before its transition time is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: bool,
    pub reason: ConditionReason,
    pub message: String,
}

/// What `Ready` is decided from.
#[derive(Debug, Clone, Copy)]
pub struct PoolFacts<'a> {
    pub deleting: bool,
    pub disabled: bool,
    /// Why `spec.address` does not parse, if it does not.
    pub address_error: Option<&'a str>,
    pub status: &'a PoolStatus,
}

/// `"192.0.2.1 (ns/a), 192.0.2.2 (ns/b;ns/c) and 3 more"`, addresses in numeric order.
pub fn in_use_summary(status: &PoolStatus) -> String {
    let mut entries: Vec<(Option<IpAddr>, &str, &str)> =
        status.used.iter().map(|(ip, users)| (ip.parse().ok(), ip.as_str(), users.as_str())).collect();
    entries.sort();
    let listed: Vec<String> = entries.iter().take(LISTED).map(|(_, ip, users)| format!("{ip} ({users})")).collect();
    let more = entries.len().saturating_sub(LISTED);
    let tail = if more > 0 { format!(" and {more} more") } else { String::new() };
    format!("{}{tail}", listed.join(", "))
}

pub fn ready(facts: PoolFacts<'_>) -> Desired {
    let status = facts.status;
    let (ok, reason, message) = if facts.deleting {
        let message = if status.used.is_empty() {
            "being deleted; no address is in use, so the finalizer comes off".to_string()
        } else {
            format!(
                "being deleted; deletion waits until no Service uses its addresses (in use: {})",
                in_use_summary(status)
            )
        };
        (false, ConditionReason::Deleting, message)
    } else if facts.disabled {
        let message = format!("spec.disable is true: gives out no new addresses and keeps the {} in use", status.usage);
        (false, ConditionReason::Disabled, message)
    } else if let Some(error) = facts.address_error {
        (false, ConditionReason::InvalidAddress, format!("spec.address does not parse: {error}"))
    } else if status.occupied {
        (false, ConditionReason::Exhausted, format!("all {} addresses are in use", status.pool_size))
    } else {
        let free = status.pool_size.saturating_sub(status.usage);
        (true, ConditionReason::Available, format!("{free} of {} addresses free", status.pool_size))
    };
    Desired { type_: READY, status: ok, reason, message }
}

/// `Invalid` from the problems [`openelb_core::validate`] found with this Eip; warnings do not count.
pub fn invalid(problems: &[&Problem]) -> Desired {
    let errors: Vec<&&Problem> = problems.iter().filter(|p| p.is_error()).collect();
    if errors.is_empty() {
        // Never an empty message: some API servers (the test one among them) store "" as null, which a
        // schema of `type: string` then refuses, failing the whole status write.
        let message = VALID_MESSAGE.to_string();
        return Desired { type_: INVALID, status: false, reason: ConditionReason::Valid, message };
    }
    let mut message = String::new();
    for (i, p) in errors.iter().enumerate() {
        let part = format!("{}={:?}: {}", p.field, p.value, p.message);
        let separator = if message.is_empty() { "" } else { "; " };
        if message.len() + separator.len() + part.len() > MAX_MESSAGE {
            message.push_str(&format!("{separator}and {} more problems", errors.len() - i));
            break;
        }
        message.push_str(separator);
        message.push_str(&part);
    }
    Desired { type_: INVALID, status: true, reason: ConditionReason::InvalidSpec, message }
}

/// The conditions to write: `desired` in order (keeping the transition time of a condition whose status did
/// not change), then any other condition found, untouched (someone else's).
pub fn merge(existing: &[Condition], desired: &[Desired], generation: Option<i64>, now: &Time) -> Vec<Condition> {
    let mut out: Vec<Condition> = desired
        .iter()
        .map(|d| {
            let status = if d.status { "True" } else { "False" };
            let since = existing
                .iter()
                .find(|c| c.type_ == d.type_ && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: d.type_.to_string(),
                status: status.to_string(),
                reason: d.reason.as_str().to_string(),
                message: d.message.clone(),
                last_transition_time: since,
                observed_generation: generation,
            }
        })
        .collect();
    out.extend(existing.iter().filter(|c| !desired.iter().any(|d| d.type_ == c.type_)).cloned());
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::jiff::Timestamp;
    use openelb_core::validate::Severity;

    use super::*;

    fn status(size: u128, used: &[(&str, &str)]) -> PoolStatus {
        let used: BTreeMap<String, String> = used.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        let usage = used.len() as u128;
        PoolStatus { pool_size: size, usage, occupied: usage >= size, used, ..Default::default() }
    }

    fn facts(status: &PoolStatus) -> PoolFacts<'_> {
        PoolFacts { deleting: false, disabled: false, address_error: None, status }
    }

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn problem(field: &str, severity: Severity, message: &str) -> Problem {
        Problem { object: "Eip/x".into(), field: field.into(), value: "v".into(), message: message.into(), severity }
    }

    #[test]
    fn reasons_on_the_wire() {
        use ConditionReason::*;
        let wire: Vec<&str> =
            [Available, Deleting, Disabled, InvalidAddress, Exhausted, Valid, InvalidSpec].map(|r| r.as_str()).into();
        assert_eq!(wire, ["Available", "Deleting", "Disabled", "InvalidAddress", "Exhausted", "Valid", "InvalidSpec"]);
    }

    #[test]
    fn ready_says_how_many_addresses_are_free_with_the_exact_size() {
        let s = status(1 << 64, &[("2001:db8::1", "ns/a")]);
        let d = ready(facts(&s));
        assert!(d.status);
        assert_eq!(d.reason, ConditionReason::Available);
        assert_eq!(d.message, "18446744073709551615 of 18446744073709551616 addresses free");
    }

    #[test]
    fn ready_is_false_and_says_why() {
        let full = status(1, &[("192.0.2.1", "ns/a")]);
        assert_eq!(ready(facts(&full)).reason, ConditionReason::Exhausted);
        assert!(!ready(facts(&full)).status);
        let disabled = PoolFacts { disabled: true, ..facts(&full) };
        assert_eq!(ready(disabled).reason, ConditionReason::Disabled);
        let empty = status(0, &[]);
        let bad = PoolFacts { address_error: Some("\"x\" is not an address"), ..facts(&empty) };
        assert_eq!(ready(bad).reason, ConditionReason::InvalidAddress);
        assert!(ready(bad).message.contains("is not an address"), "{}", ready(bad).message);
        // Deletion wins over everything else: it is what the user is waiting for.
        let deleting = PoolFacts { deleting: true, disabled: true, ..facts(&full) };
        assert_eq!(ready(deleting).reason, ConditionReason::Deleting);
    }

    #[test]
    fn a_held_deletion_lists_the_addresses_in_numeric_order() {
        let s = status(
            20,
            &[
                ("192.0.2.10", "ns/j"),
                ("192.0.2.2", "ns/b;ns/c"),
                ("192.0.2.3", "ns/d"),
                ("192.0.2.4", "ns/e"),
                ("192.0.2.5", "ns/f"),
                ("192.0.2.6", "ns/g"),
            ],
        );
        let d = ready(PoolFacts { deleting: true, ..facts(&s) });
        assert!(!d.status);
        assert!(
            d.message.ends_with(
                "(in use: 192.0.2.2 (ns/b;ns/c), 192.0.2.3 (ns/d), 192.0.2.4 (ns/e), 192.0.2.5 (ns/f), \
                 192.0.2.6 (ns/g) and 1 more)"
            ),
            "{}",
            d.message
        );
        let unused = status(20, &[]);
        assert!(ready(PoolFacts { deleting: true, ..facts(&unused) }).message.contains("no address is in use"));
    }

    #[test]
    fn invalid_counts_errors_only() {
        let warning = problem("spec.interface", Severity::Warning, "not set");
        let d = invalid(&[&warning]);
        assert!(!d.status);
        assert_eq!(d.reason, ConditionReason::Valid);
        assert!(!d.message.is_empty());
        let overlap = problem("spec.address", Severity::Error, "overlaps Eip/y");
        let d = invalid(&[&warning, &overlap]);
        assert!(d.status);
        assert_eq!(d.reason, ConditionReason::InvalidSpec);
        assert_eq!(d.message, "spec.address=\"v\": overlaps Eip/y");
    }

    #[test]
    fn invalid_message_is_bounded() {
        let long = "x".repeat(900);
        let problems: Vec<Problem> = (0..5).map(|_| problem("spec.address", Severity::Error, &long)).collect();
        let refs: Vec<&Problem> = problems.iter().collect();
        let d = invalid(&refs);
        assert!(d.message.len() <= MAX_MESSAGE + 40, "{}", d.message.len());
        assert!(d.message.ends_with("and 3 more problems"), "{}", &d.message[d.message.len() - 30..]);
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let s = status(10, &[]);
        let first = merge(&[], &[ready(facts(&s))], Some(1), &at(100));
        assert_eq!(first[0].last_transition_time, at(100));
        assert_eq!(first[0].observed_generation, Some(1));

        // Same status, new message: the time stays.
        let used = status(10, &[("192.0.2.1", "ns/a")]);
        let second = merge(&first, &[ready(facts(&used))], Some(1), &at(200));
        assert_eq!(second[0].last_transition_time, at(100));
        assert_eq!(second[0].message, "9 of 10 addresses free");

        // Status flips: the time moves.
        let third = merge(&second, &[ready(PoolFacts { deleting: true, ..facts(&used) })], Some(2), &at(300));
        assert_eq!(third[0].status, "False");
        assert_eq!(third[0].last_transition_time, at(300));
        assert_eq!(third[0].observed_generation, Some(2));
    }

    #[test]
    fn recomputing_the_same_facts_is_a_fixed_point() {
        let s = status(10, &[("192.0.2.1", "ns/a")]);
        let desired = [ready(facts(&s)), invalid(&[])];
        let written = merge(&[], &desired, Some(3), &at(100));
        assert_eq!(merge(&written, &desired, Some(3), &at(999)), written);
    }

    #[test]
    fn conditions_of_others_are_kept_after_ours() {
        let foreign = Condition {
            type_: "example.com/Audited".into(),
            status: "True".into(),
            reason: "Done".into(),
            message: "audited".into(),
            last_transition_time: at(5),
            observed_generation: None,
        };
        let s = status(10, &[]);
        let merged = merge(std::slice::from_ref(&foreign), &[ready(facts(&s)), invalid(&[])], None, &at(100));
        let types: Vec<&str> = merged.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, INVALID, "example.com/Audited"]);
        assert_eq!(merged[2], foreign);
    }
}
