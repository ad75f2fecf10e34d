//! One Eip's decision (pure): its finalizer, its status, and whether its deletion may complete.
//!
//! Every Eip carries finalizer `finalizer.ipam.kubesphere.io/v1alpha1`, so that deleting one that Services
//! still use waits for them (the core drains a deleting pool: holders keep, nobody new gets) instead of
//! pulling their addresses from under them; the finalizer comes off once nothing uses the Eip.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use openelb_core::ipam::PoolStatus;
use openelb_core::model::FINALIZER_EIP;
use openelb_core::validate::Problem;

use super::conditions;
use super::eip_status::{self, is_deleting};
use openelb_k8s::crd::{Eip, EipStatus};

#[derive(Debug, Clone, PartialEq)]
pub struct EipWrites {
    /// Add our finalizer (first: an Eip must not be deletable without us before it gives out anything).
    pub add_finalizer: bool,
    /// The status to write, when it differs from what the Eip shows.
    pub status: Option<EipStatus>,
    /// Remove our finalizer: the Eip is being deleted and nothing uses it.
    pub remove_finalizer: bool,
    /// The Eip is being deleted but addresses are in use: which ones, for the Event.
    pub held_by: Option<String>,
    /// The allocator's view of the pool, for logs and metrics.
    pub pool: PoolStatus,
}

impl EipWrites {
    pub fn is_empty(&self) -> bool {
        !self.add_finalizer && self.status.is_none() && !self.remove_finalizer
    }
}

/// Decides for `eip`, given what the allocator says of its pool and the problems of its spec.
pub fn decide(eip: &Eip, pool: PoolStatus, problems: &[Problem], now: &Time) -> EipWrites {
    let in_use = !pool.used.is_empty();
    let deleting = is_deleting(eip);
    let ours = eip.finalizers().iter().any(|f| f == FINALIZER_EIP);
    if deleting && !in_use {
        // Nothing left to show: writing a status the object is about to lose would only cost a write.
        return EipWrites { add_finalizer: false, status: None, remove_finalizer: ours, held_by: None, pool };
    }
    let desired = eip_status::desired_status(eip, &pool, problems, now);
    EipWrites {
        add_finalizer: !deleting && !ours,
        status: (eip.status.as_ref() != Some(&desired)).then_some(desired),
        remove_finalizer: false,
        held_by: (deleting && in_use).then(|| conditions::in_use_summary(&pool)),
        pool,
    }
}

/// `metadata.finalizers` with ours added or removed, `None` for "no finalizers" (as a merge patch says it).
pub fn finalizers_with(eip: &Eip, ours: bool) -> Option<Vec<String>> {
    let mut finalizers: Vec<String> =
        eip.metadata.finalizers.iter().flatten().filter(|f| *f != FINALIZER_EIP).cloned().collect();
    if ours {
        finalizers.push(FINALIZER_EIP.to_string());
    }
    (!finalizers.is_empty()).then_some(finalizers)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::ledger::Ledger;
    use openelb_k8s::crd::EipSpec;

    /// Decides for `eip` as the Eip reconcile does: in a ledger that follows `all`.
    fn decide(eip: &Eip, all: &[Arc<Eip>], now: &Time) -> Result<EipWrites, openelb_k8s::convert::ConvertError> {
        let mut ledger = Ledger::default();
        ledger.refresh(all)?;
        let name = eip.name_any();
        let pool = ledger.pool_status(&name).unwrap_or_default();
        Ok(super::decide(eip, pool, ledger.problems(&name), now))
    }

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn eip(name: &str, address: &str, used: &[(&str, &str)]) -> Eip {
        let mut e = Eip::new(name, EipSpec { address: address.into(), ..Default::default() });
        e.metadata.generation = Some(1);
        e.metadata.resource_version = Some("5".into());
        if !used.is_empty() {
            e.status = Some(EipStatus {
                used: used.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
                ..Default::default()
            });
        }
        e
    }

    /// The Eip as the API shows it after the writes.
    fn applied(eip: &Eip, writes: &EipWrites) -> Eip {
        let mut out = eip.clone();
        if writes.add_finalizer {
            out.metadata.finalizers = finalizers_with(eip, true);
        }
        if let Some(status) = &writes.status {
            out.status = Some(status.clone());
        }
        out
    }

    #[test]
    fn a_new_eip_gets_the_finalizer_and_a_full_status_then_nothing_more() {
        let e = eip("fresh", "192.0.2.1-192.0.2.10", &[]);
        let p = decide(&e, &[Arc::new(e.clone())], &at(1)).unwrap();
        assert!(p.add_finalizer);
        let status = p.status.clone().unwrap();
        assert_eq!((status.pool_size, status.usage), (10, 0));
        assert_eq!(status.conditions.len(), 3);
        assert!(p.held_by.is_none() && !p.remove_finalizer);

        let after = applied(&e, &p);
        assert_eq!(after.metadata.finalizers, Some(vec![FINALIZER_EIP.to_string()]));
        let again = decide(&after, &[Arc::new(after.clone())], &at(2)).unwrap();
        assert!(again.is_empty(), "{again:?}");
    }

    /// `Announced` follows `spec.protocol`; each change is one write, and a restart on what was written is none.
    #[test]
    fn announced_follows_the_protocol_and_a_written_status_stays_put() {
        let e = eip("l2", "192.0.2.1-192.0.2.10", &[]);
        let mut current = applied(&e, &decide(&e, &[Arc::new(e.clone())], &at(1)).unwrap());
        for (protocol, status) in [
            (Some(openelb_k8s::crd::EipProtocol::Layer2), "False"),
            (Some(openelb_k8s::crd::EipProtocol::Vip), "True"),
            (None, "False"),
        ] {
            current.spec.protocol = protocol;
            let p = decide(&current, &[Arc::new(current.clone())], &at(2)).unwrap();
            let written = p.status.clone().expect("the protocol changed the condition or its message");
            let c = written.conditions.iter().find(|c| c.type_ == conditions::ANNOUNCED).unwrap();
            assert_eq!(c.status, status, "{protocol:?}: {c:?}");
            current = applied(&current, &p);
            let again = decide(&current, &[Arc::new(current.clone())], &at(3)).unwrap();
            assert!(again.is_empty(), "{protocol:?}: {again:?}");
        }
    }

    /// An Eip written before the CRD had `status.conditions` (or by another tool) gets them added.
    #[test]
    fn right_numbers_without_conditions_are_still_rewritten() {
        let e = eip("old", "192.0.2.1-192.0.2.10", &[]);
        let first = decide(&e, &[Arc::new(e.clone())], &at(1)).unwrap();
        let mut bare = applied(&e, &first);
        bare.status.as_mut().unwrap().conditions.clear();
        let p = decide(&bare, &[Arc::new(bare.clone())], &at(2)).unwrap();
        let status = p.status.expect("conditions are missing, so the status must be written");
        assert_eq!(status.conditions.len(), 3);
        assert_eq!(status.conditions[0].last_transition_time, at(2));
    }

    #[test]
    fn deletion_is_held_while_an_address_is_in_use() {
        let mut e = eip("busy", "192.0.2.1-192.0.2.10", &[("192.0.2.1", "ns/a")]);
        e.metadata.finalizers = finalizers_with(&e, true);
        e.metadata.deletion_timestamp = Some(at(1));
        let p = decide(&e, &[Arc::new(e.clone())], &at(2)).unwrap();
        assert!(!p.remove_finalizer && !p.add_finalizer);
        assert_eq!(p.held_by.as_deref(), Some("192.0.2.1 (ns/a)"));
        let ready = &p.status.unwrap().conditions[0];
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "Deleting"));
    }

    #[test]
    fn the_finalizer_comes_off_once_nothing_uses_the_eip() {
        let mut e = eip("idle", "192.0.2.1-192.0.2.10", &[]);
        e.metadata.finalizers = Some(vec!["example.com/other".into(), FINALIZER_EIP.into()]);
        e.metadata.deletion_timestamp = Some(at(1));
        let p = decide(&e, &[Arc::new(e.clone())], &at(2)).unwrap();
        assert!(p.remove_finalizer);
        assert!(p.status.is_none() && p.held_by.is_none());
        assert_eq!(finalizers_with(&e, false), Some(vec!["example.com/other".to_string()]));
    }

    #[test]
    fn a_deleting_eip_without_our_finalizer_needs_nothing() {
        let mut e = eip("gone", "192.0.2.1-192.0.2.10", &[]);
        e.metadata.deletion_timestamp = Some(at(1));
        let p = decide(&e, &[Arc::new(e.clone())], &at(2)).unwrap();
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(finalizers_with(&e, false), None);
    }

    #[test]
    fn an_overlapping_eip_is_invalid_and_its_status_says_so() {
        let a = eip("a", "192.0.2.1-192.0.2.10", &[]);
        let b = eip("b", "192.0.2.8-192.0.2.20", &[]);
        let all = [Arc::new(a.clone()), Arc::new(b)];
        let p = decide(&a, &all, &at(1)).unwrap();
        let conditions = p.status.unwrap().conditions;
        let invalid = conditions.iter().find(|c| c.type_ == "Invalid").unwrap();
        assert_eq!((invalid.status.as_str(), invalid.reason.as_str()), ("True", "InvalidSpec"));
        assert!(invalid.message.contains("overlaps Eip/b"), "{}", invalid.message);
        // It gives out nothing new: both overlapping Eips drain.
        let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "OverlappingEip"));
    }

    #[test]
    fn an_undecodable_eip_is_invalid_and_not_ready_naming_field_and_value() {
        let raw = serde_json::json!({"metadata": {"name": "odd", "generation": 1},
            "spec": {"address": "192.0.2.1-192.0.2.10", "priority": "high"},
            "status": {"used": {"192.0.2.2": "ns/a"}}});
        let openelb_k8s::Decoded::Undecodable(u) = openelb_k8s::Decoded::<Eip>::from_value(raw) else { panic!() };
        let e = openelb_k8s::crd::salvaged(&u);
        let p = decide(&e, &[Arc::new(e.clone())], &at(1)).unwrap();
        let status = p.status.unwrap();
        assert_eq!(status.used.get("192.0.2.2").map(String::as_str), Some("ns/a"), "its holders are kept");
        let by_type = |t: &str| status.conditions.iter().find(|c| c.type_ == t).cloned().unwrap();
        let (ready, invalid) = (by_type("Ready"), by_type("Invalid"));
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "Undecodable"));
        assert_eq!((invalid.status.as_str(), invalid.reason.as_str()), ("True", "Undecodable"));
        assert!(invalid.message.contains("spec.priority=\"high\""), "{}", invalid.message);
    }

    #[test]
    fn status_entries_of_other_shapes_are_rewritten_from_the_allocator() {
        let e = eip("messy", "192.0.2.1-192.0.2.10", &[("198.51.100.1", "ns/outside"), ("192.0.2.2", "ns/in")]);
        let p = decide(&e, &[Arc::new(e.clone())], &at(1)).unwrap();
        let used = p.status.unwrap().used;
        // An address outside the range is kept for its Service (the Eip drains), never renumbered.
        assert_eq!(used.len(), 2);
        assert_eq!(used.get("192.0.2.2").map(String::as_str), Some("ns/in"));
    }
}
