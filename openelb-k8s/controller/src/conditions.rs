//! The conditions an Eip's status carries, decided from plain facts (pure: the clock is an argument): `Ready`
//! (it gives out new addresses now, or the first reason it does not) and `Invalid` (its spec breaks a validation
//! rule, does not decode, or the allocator refuses it) and `Announced` (whether this build's speakers announce
//! the Eip's protocol at all: every Eip carries it, `True` for vip, `False` for layer2 and bgp, which allocate but
//! reach no network; see docs/compatibility.md#protocols). What each reason means and why an invalid Eip drains:
//! docs/allocation.md#draining-pools. `lastTransitionTime` changes only when a condition's status does, so
//! recomputing unchanged facts yields exactly the conditions already written, and nothing is written.

use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use openelb_core::event_reason::EventReason;
use openelb_core::ipam::PoolStatus;
use openelb_core::model::Protocol;
use openelb_core::pool_invalid::{PoolInvalid, PoolProblem};
use openelb_core::protocol_support;
use openelb_core::validate::Problem;
use openelb_k8s::decoded::Undecodable;

pub const READY: &str = "Ready";
pub const INVALID: &str = "Invalid";
pub const ANNOUNCED: &str = "Announced";

/// Why a condition has its status (its `reason` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConditionReason {
    /// `Ready=True`: free addresses left.
    Available,
    Deleting,
    Disabled,
    /// The object does not decode (a field past what the CRD schema enforced); read as disabled.
    Undecodable,
    /// The allocator's [`PoolProblem`]s, with its reasons.
    InvalidAddress,
    ReservedAddress,
    OverlappingEip,
    AddressesOutsidePool,
    Exhausted,
    /// `Invalid=False`.
    Valid,
    /// `Invalid=True`: a validation rule is broken.
    InvalidSpec,
    /// `Announced=True`: the speakers announce this protocol.
    ProtocolImplemented,
    /// `Announced=False`: addresses are allocated, but this build announces nothing for this protocol.
    ProtocolNotImplemented,
}

impl ConditionReason {
    pub const ALL: [ConditionReason; 13] = [
        ConditionReason::Available,
        ConditionReason::Deleting,
        ConditionReason::Disabled,
        ConditionReason::Undecodable,
        ConditionReason::InvalidAddress,
        ConditionReason::ReservedAddress,
        ConditionReason::OverlappingEip,
        ConditionReason::AddressesOutsidePool,
        ConditionReason::Exhausted,
        ConditionReason::Valid,
        ConditionReason::InvalidSpec,
        ConditionReason::ProtocolImplemented,
        ConditionReason::ProtocolNotImplemented,
    ];

    /// Whether the reason says the Eip is invalid (it then gives out no new addresses or breaks a rule).
    pub const fn is_invalid(self) -> bool {
        matches!(
            self,
            ConditionReason::InvalidSpec
                | ConditionReason::Undecodable
                | ConditionReason::InvalidAddress
                | ConditionReason::ReservedAddress
                | ConditionReason::OverlappingEip
                | ConditionReason::AddressesOutsidePool
        )
    }

    /// The reason written as `s` (by this controller earlier), if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        ConditionReason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            ConditionReason::Available => "Available",
            ConditionReason::Deleting => "Deleting",
            ConditionReason::Disabled => "Disabled",
            ConditionReason::Undecodable => "Undecodable",
            ConditionReason::InvalidAddress => "InvalidAddress",
            ConditionReason::ReservedAddress => "ReservedAddress",
            ConditionReason::OverlappingEip => "OverlappingEip",
            ConditionReason::AddressesOutsidePool => "AddressesOutsidePool",
            ConditionReason::Exhausted => "Exhausted",
            ConditionReason::Valid => "Valid",
            ConditionReason::InvalidSpec => "InvalidSpec",
            ConditionReason::ProtocolImplemented => "ProtocolImplemented",
            ConditionReason::ProtocolNotImplemented => "ProtocolNotImplemented",
        }
    }

    /// The Warning Event recorded when an Eip becomes invalid for this reason (`None` for the reasons of a valid
    /// or usable Eip).
    pub const fn event_reason(self) -> Option<EventReason> {
        match self {
            ConditionReason::InvalidSpec => Some(EventReason::InvalidSpec),
            ConditionReason::Undecodable => Some(EventReason::Undecodable),
            ConditionReason::InvalidAddress => Some(EventReason::InvalidAddress),
            ConditionReason::ReservedAddress => Some(EventReason::ReservedAddress),
            ConditionReason::OverlappingEip => Some(EventReason::OverlappingEip),
            ConditionReason::AddressesOutsidePool => Some(EventReason::AddressesOutsidePool),
            ConditionReason::Available
            | ConditionReason::Deleting
            | ConditionReason::Disabled
            | ConditionReason::Exhausted
            | ConditionReason::Valid
            | ConditionReason::ProtocolImplemented
            | ConditionReason::ProtocolNotImplemented => None,
        }
    }

    /// The reason of one of the allocator's problems (the core's [`PoolProblem::reason`] on the wire).
    pub const fn of_pool_problem(problem: &PoolProblem) -> Self {
        match problem {
            PoolProblem::Unparsable { .. } => ConditionReason::InvalidAddress,
            PoolProblem::Reserved(_) => ConditionReason::ReservedAddress,
            PoolProblem::Overlap { .. } => ConditionReason::OverlappingEip,
            PoolProblem::Outside { .. } => ConditionReason::AddressesOutsidePool,
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
pub struct DecidedCondition {
    pub type_: &'static str,
    pub status: bool,
    pub reason: ConditionReason,
    pub message: String,
}

/// What `Ready` and `Invalid` are decided from besides validation.
#[derive(Debug, Clone, Copy)]
pub struct PoolFacts<'a> {
    pub deleting: bool,
    pub disabled: bool,
    /// What of the object did not decode, if it did not (it is then read as disabled).
    pub undecodable: Option<&'a Undecodable>,
    /// The allocator's view, `invalid` included.
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

pub fn ready(facts: PoolFacts<'_>) -> DecidedCondition {
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
    } else if let Some(u) = facts.undecodable {
        (false, ConditionReason::Undecodable, undecodable_message(u))
    } else if facts.disabled {
        let message = format!("spec.disable is true: gives out no new addresses and keeps the {} in use", status.usage);
        (false, ConditionReason::Disabled, message)
    } else if let Some(first) = status.invalid.first() {
        (false, ConditionReason::of_pool_problem(&first.problem), bounded(first.to_string()))
    } else if status.occupied {
        (false, ConditionReason::Exhausted, format!("all {} addresses are in use", status.pool_size))
    } else {
        let free = status.pool_size.saturating_sub(status.usage);
        (true, ConditionReason::Available, format!("{free} of {} addresses free", status.pool_size))
    };
    DecidedCondition { type_: READY, status: ok, reason, message }
}

fn undecodable_message(u: &Undecodable) -> String {
    bounded(format!(
        "{u}; the object does not decode, so it is read as disabled: its Services keep their addresses and nobody \
         gets a new one from it until it is fixed"
    ))
}

/// `s` cut to [`MAX_MESSAGE`] bytes on a character boundary.
fn bounded(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// The allocator's problems that validation of the spec alone cannot see (a range shrunk under its holders
/// depends on `status.used`); the others repeat a validation error in other words.
fn beyond_validation(pool: &PoolStatus) -> impl Iterator<Item = &PoolInvalid> {
    pool.invalid.iter().filter(|i| matches!(i.problem, PoolProblem::Outside { .. }))
}

/// `Invalid`: true when [`openelb_core::validate`] found errors with this Eip (warnings do not count), when the
/// object does not decode, or when the allocator finds it invalid. The reason is the first of `Undecodable`,
/// `InvalidSpec` (a validation error), or the allocator's first problem.
pub fn invalid(problems: &[&Problem], facts: PoolFacts<'_>) -> DecidedCondition {
    let errors: Vec<&&Problem> = problems.iter().filter(|p| p.is_error()).collect();
    let reason = if facts.undecodable.is_some() {
        ConditionReason::Undecodable
    } else if !errors.is_empty() {
        ConditionReason::InvalidSpec
    } else if let Some(first) = facts.status.invalid.first() {
        ConditionReason::of_pool_problem(&first.problem)
    } else {
        // Never an empty message: some API servers (the test one among them) store "" as null, which a
        // schema of `type: string` then refuses, failing the whole status write.
        let message = VALID_MESSAGE.to_string();
        return DecidedCondition { type_: INVALID, status: false, reason: ConditionReason::Valid, message };
    };
    let mut parts: Vec<String> = facts
        .undecodable
        .map(|u| format!("{}={}: does not decode: {}", u.field, u.value, u.error))
        .into_iter()
        .collect();
    parts.extend(errors.iter().map(|p| format!("{}={:?}: {}", p.field, p.value, p.message)));
    if errors.is_empty() {
        parts.extend(facts.status.invalid.iter().map(ToString::to_string));
    } else {
        parts.extend(beyond_validation(facts.status).map(ToString::to_string));
    }
    let mut message = String::new();
    for (i, part) in parts.iter().enumerate() {
        let separator = if message.is_empty() { "" } else { "; " };
        if message.len() + separator.len() + part.len() > MAX_MESSAGE {
            message.push_str(&format!("{separator}and {} more problems", parts.len() - i));
            break;
        }
        message.push_str(separator);
        message.push_str(part);
    }
    DecidedCondition { type_: INVALID, status: true, reason, message }
}

/// `Announced`: whether this build's speakers announce `protocol`, the Eip's `spec.protocol` as read (an
/// omitted one is bgp). Deletion, `disable` and validity do not change it: it says what happens to the
/// addresses the Eip has given out.
pub fn announced(protocol: Protocol) -> DecidedCondition {
    let (status, reason, message) = match protocol_support::not_announced(protocol) {
        None => (
            true,
            ConditionReason::ProtocolImplemented,
            format!("protocol {protocol} is announced: the speakers elect a node per address, which announces it"),
        ),
        Some(why) => (false, ConditionReason::ProtocolNotImplemented, why),
    };
    DecidedCondition { type_: ANNOUNCED, status, reason, message }
}

/// The reasons `conditions` show an Eip invalid for: `Invalid`'s when true, `Ready`'s when false for one of the
/// invalid reasons; with the condition's message.
fn invalid_reasons(conditions: &[Condition]) -> Vec<(ConditionReason, &str)> {
    conditions
        .iter()
        .filter(|c| (c.type_ == INVALID && c.status == "True") || (c.type_ == READY && c.status == "False"))
        .filter_map(|c| Some((ConditionReason::parse(&c.reason)?, c.message.as_str())))
        .filter(|(r, _)| r.is_invalid())
        .collect()
}

/// The reasons an Eip is invalid for in `after` that `before` did not show, each with the message that says
/// why: what a Warning Event is recorded for, when the status goes from `before` to `after`.
pub fn appeared(before: &[Condition], after: &[Condition]) -> Vec<(ConditionReason, String)> {
    let old: Vec<ConditionReason> = invalid_reasons(before).into_iter().map(|(r, _)| r).collect();
    let mut out: Vec<(ConditionReason, String)> = Vec::new();
    for (reason, message) in invalid_reasons(after) {
        if !old.contains(&reason) && !out.iter().any(|(r, _)| *r == reason) {
            out.push((reason, message.to_string()));
        }
    }
    out
}

/// The conditions to write: `desired` in order (keeping the transition time of a condition whose status did
/// not change), then any other condition found, untouched (someone else's).
pub fn merge(
    existing: &[Condition],
    desired: &[DecidedCondition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
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
        PoolFacts { deleting: false, disabled: false, undecodable: None, status }
    }

    fn overlapping(size: u128) -> PoolStatus {
        let common = openelb_core::addr::AddrRange::parse("192.0.2.8-192.0.2.10").unwrap();
        let problem = PoolProblem::Overlap { other: "b".into(), other_address: "192.0.2.8-192.0.2.20".into(), common };
        let invalid = vec![PoolInvalid { pool: "a".into(), address: "192.0.2.1-192.0.2.10".into(), problem }];
        PoolStatus { invalid, ..status(size, &[]) }
    }

    fn undecodable() -> Undecodable {
        let raw = serde_json::json!({"metadata": {"name": "a"}, "spec": {"address": "192.0.2.1", "priority": "x"}});
        match openelb_k8s::Decoded::<openelb_k8s::Eip>::from_value(raw) {
            openelb_k8s::Decoded::Undecodable(u) => *u,
            openelb_k8s::Decoded::Ok(_) => panic!("decoded"),
        }
    }

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn problem(field: &str, severity: Severity, message: &str) -> Problem {
        Problem { object: "Eip/x".into(), field: field.into(), value: "v".into(), message: message.into(), severity }
    }

    #[test]
    fn reasons_on_the_wire() {
        let wire: Vec<&str> = ConditionReason::ALL.map(|r| r.as_str()).into();
        for r in ConditionReason::ALL {
            assert_eq!(ConditionReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(ConditionReason::parse("SomethingElse"), None);
        assert_eq!(
            wire,
            [
                "Available",
                "Deleting",
                "Disabled",
                "Undecodable",
                "InvalidAddress",
                "ReservedAddress",
                "OverlappingEip",
                "AddressesOutsidePool",
                "Exhausted",
                "Valid",
                "InvalidSpec",
                "ProtocolImplemented",
                "ProtocolNotImplemented"
            ]
        );
    }

    /// Every reason an Eip can be invalid for has its Event, named alike; the others have none.
    #[test]
    fn invalid_reasons_have_their_event() {
        for r in ConditionReason::ALL {
            let event = r.event_reason().map(EventReason::as_str);
            assert_eq!(event, r.is_invalid().then_some(r.as_str()), "{r:?}");
        }
    }

    /// The allocator's reasons reach the conditions unchanged.
    #[test]
    fn pool_problems_keep_the_cores_reasons() {
        let range = openelb_core::addr::AddrRange::parse("192.0.2.1").unwrap();
        let reserved = openelb_core::reserved::first_in(&openelb_core::addr::AddrRange::parse("0.0.0.0").unwrap());
        let mut problems = vec![
            PoolProblem::Unparsable { reason: "x".into() },
            PoolProblem::Overlap { other: "b".into(), other_address: "192.0.2.1".into(), common: range },
            PoolProblem::Outside { listed: Vec::new(), total: 0 },
        ];
        problems.extend(reserved.map(PoolProblem::Reserved));
        assert_eq!(problems.len(), 4);
        for p in problems {
            assert_eq!(ConditionReason::of_pool_problem(&p).as_str(), p.reason());
        }
    }

    #[test]
    fn an_invalid_pool_is_not_ready_and_invalid_with_the_allocators_reason() {
        let s = overlapping(10);
        let r = ready(facts(&s));
        assert_eq!((r.status, r.reason), (false, ConditionReason::OverlappingEip));
        assert!(r.message.contains("overlaps Eip b") && r.message.contains("gives out no new addresses"), "{r:?}");
        // Validation says the same in its own words: its error is the message, and the reason stays InvalidSpec.
        let overlap = problem("spec.address", Severity::Error, "overlaps Eip/b");
        let i = invalid(&[&overlap], facts(&s));
        assert_eq!(
            (i.status, i.reason, i.message.as_str()),
            (true, ConditionReason::InvalidSpec, "spec.address=\"v\": overlaps Eip/b")
        );
        // Without a validation error (a range shrunk under its holders), the allocator's reason and text.
        let i = invalid(&[], facts(&s));
        assert_eq!((i.status, i.reason), (true, ConditionReason::OverlappingEip));
        assert!(i.message.starts_with("Eip a: spec.address"), "{}", i.message);
        let written = merge(&[], &[ready(facts(&s)), invalid(&[&overlap], facts(&s))], None, &at(1));
        let reasons: Vec<ConditionReason> = appeared(&[], &written).into_iter().map(|(r, _)| r).collect();
        assert_eq!(reasons, [ConditionReason::OverlappingEip, ConditionReason::InvalidSpec]);
        assert!(appeared(&written, &written).is_empty(), "no transition, no Event");
        // Fixed, then broken again: the reasons appear anew.
        let valid = status(10, &[]);
        let fixed = merge(&written, &[ready(facts(&valid)), invalid(&[], facts(&valid))], None, &at(2));
        assert!(appeared(&written, &fixed).is_empty());
        assert_eq!(appeared(&fixed, &written).len(), 2);
    }

    #[test]
    fn an_undecodable_eip_says_which_field_and_value() {
        let u = undecodable();
        let s = status(1, &[]);
        let f = PoolFacts { disabled: true, undecodable: Some(&u), ..facts(&s) };
        let r = ready(f);
        assert_eq!((r.status, r.reason), (false, ConditionReason::Undecodable));
        assert!(
            r.message.starts_with("spec.priority \"x\": invalid type: string \"x\", expected i64"),
            "{}",
            r.message
        );
        let i = invalid(&[], f);
        assert_eq!((i.status, i.reason), (true, ConditionReason::Undecodable));
        assert!(i.message.starts_with("spec.priority=\"x\": does not decode"), "{}", i.message);
        let written = merge(&[], &[r.clone(), i.clone()], None, &at(1));
        assert_eq!(appeared(&[], &written), [(ConditionReason::Undecodable, r.message.clone())], "one Event");
        // Deletion still comes first: it is what the user waits for.
        assert_eq!(ready(PoolFacts { deleting: true, ..f }).reason, ConditionReason::Deleting);
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
        let unparsable = PoolInvalid {
            pool: "x".into(),
            address: "x".into(),
            problem: PoolProblem::Unparsable { reason: "\"x\" is not an address".into() },
        };
        let empty = PoolStatus { invalid: vec![unparsable], ..status(0, &[]) };
        let bad = facts(&empty);
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
        let s = status(10, &[]);
        let d = invalid(&[&warning], facts(&s));
        assert!(!d.status);
        assert_eq!(d.reason, ConditionReason::Valid);
        assert!(!d.message.is_empty());
        let overlap = problem("spec.address", Severity::Error, "overlaps Eip/y");
        let d = invalid(&[&warning, &overlap], facts(&s));
        assert!(d.status);
        assert_eq!(d.reason, ConditionReason::InvalidSpec);
        assert_eq!(d.message, "spec.address=\"v\": overlaps Eip/y");
    }

    #[test]
    fn invalid_message_is_bounded() {
        let long = "x".repeat(900);
        let problems: Vec<Problem> = (0..5).map(|_| problem("spec.address", Severity::Error, &long)).collect();
        let refs: Vec<&Problem> = problems.iter().collect();
        let s = status(10, &[]);
        let d = invalid(&refs, facts(&s));
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
        let desired = [ready(facts(&s)), invalid(&[], facts(&s))];
        let written = merge(&[], &desired, Some(3), &at(100));
        assert_eq!(merge(&written, &desired, Some(3), &at(999)), written);
    }

    #[test]
    fn announced_is_true_for_vip_only_and_says_why_not() {
        let vip = announced(Protocol::Vip);
        assert_eq!((vip.type_, vip.status, vip.reason), (ANNOUNCED, true, ConditionReason::ProtocolImplemented));
        assert!(vip.message.starts_with("protocol vip is announced"), "{}", vip.message);
        for p in [Protocol::Layer2, Protocol::Bgp] {
            let d = announced(p);
            assert_eq!((d.status, d.reason), (false, ConditionReason::ProtocolNotImplemented));
            assert_eq!(Some(d.message), protocol_support::not_announced(p));
        }
        // Not an invalid Eip: no Warning Event on the Eip, no effect on Ready or Invalid.
        let written = merge(&[], &[announced(Protocol::Layer2)], None, &at(1));
        assert!(appeared(&[], &written).is_empty());
        assert!(!ConditionReason::ProtocolNotImplemented.is_invalid());
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
        let merged =
            merge(std::slice::from_ref(&foreign), &[ready(facts(&s)), invalid(&[], facts(&s))], None, &at(100));
        let types: Vec<&str> = merged.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, INVALID, "example.com/Audited"]);
        assert_eq!(merged[2], foreign);
    }
}
