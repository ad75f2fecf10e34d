//! What every Eip's status should say, whichever reconcile writes it: the allocator's numbers and the
//! conditions. The Service reconcile (which changes `used`) and the Eip reconcile (everything else) both write
//! through [`desired_status`], so neither undoes what the other wrote.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use openelb_core::addr::AddrRange;
use openelb_core::ipam::{Change, Outcome, PoolStatus};
use openelb_core::model::Pool;
use openelb_core::validate::{self, Problem};

use super::conditions::{self, PoolFacts};
use super::eip_object::{EipObject, EipObjectStatus};
use crate::convert::{self, ConvertError};

/// The Eips as the allocator must see them.
///
/// An Eip being deleted drains: its Services keep their addresses until they let them go, and nobody gets a
/// new one from it; its finalizer holds the object until then. The core releases the holders of a pool marked
/// `deleting` at once, while a `disable`d pool keeps what it gave out and gives out nothing new, which is
/// draining exactly. So a deleting Eip is handed to the core as disabled (its conditions still say Deleting).
pub fn pools(eips: &[Arc<EipObject>]) -> Result<Vec<Pool>, ConvertError> {
    eips.iter()
        .map(|eip| {
            let mut pool = convert::pool_from_eip(&eip.to_eip())?;
            if pool.deleting {
                pool.deleting = false;
                pool.disable = true;
            }
            Ok(pool)
        })
        .collect()
}

/// The core knows a draining Eip as disabled (see [`pools`]), and its refusals say so; this puts the truth
/// back into the failure and its Events. Only the core's exact phrasings are replaced ("Eip N, which is
/// disabled" for a pinned or containing Eip, "N is disabled" in the list of skipped Eips).
pub fn explain_draining(mut outcome: Outcome, draining: &[&str]) -> Outcome {
    if draining.is_empty() {
        return outcome;
    }
    let fix = |text: &mut String| {
        for name in draining {
            for (from, to) in [
                (format!("Eip {name}, which is disabled"), format!("Eip {name}, which is being deleted")),
                (format!(": {name} is disabled"), format!(": {name} is being deleted")),
                (format!(", {name} is disabled"), format!(", {name} is being deleted")),
            ] {
                if text.contains(&from) {
                    *text = text.replace(&from, &to);
                }
            }
        }
    };
    if let Change::Failed { reason, .. } = &mut outcome.change {
        fix(reason);
    }
    for event in &mut outcome.events {
        fix(&mut event.message);
    }
    outcome
}

/// Problems of every Eip's spec, by Eip name. `status.used` is left out: the controller rewrites it from the
/// allocator, so problems there are repaired rather than reported.
pub fn problems(eips: &[Arc<EipObject>]) -> Result<BTreeMap<String, Vec<Problem>>, ConvertError> {
    let pools: Vec<Pool> = eips
        .iter()
        .map(|eip| {
            let mut pool = convert::pool_from_eip(&eip.to_eip())?;
            pool.used.clear();
            Ok(pool)
        })
        .collect::<Result<_, ConvertError>>()?;
    let mut by_eip: BTreeMap<String, Vec<Problem>> = BTreeMap::new();
    for problem in validate::validate_pools(&pools) {
        if let Some(name) = problem.object.strip_prefix("Eip/") {
            by_eip.entry(name.to_string()).or_default().push(problem);
        }
    }
    Ok(by_eip)
}

/// The status `eip` should have, given what the allocator says of its pool and the problems of its spec.
pub fn desired_status(eip: &EipObject, pool: &PoolStatus, problems: &[Problem], now: &Time) -> EipObjectStatus {
    let mut typed = eip.to_eip();
    convert::apply_pool_status(&mut typed, pool);
    let address_error = AddrRange::parse(&eip.spec.address).err().map(|e| e.to_string());
    let facts = PoolFacts {
        deleting: eip.is_deleting(),
        disabled: eip.spec.disable.unwrap_or(false),
        address_error: address_error.as_deref(),
        status: pool,
    };
    let problems: Vec<&Problem> = problems.iter().collect();
    let desired = [conditions::ready(facts), conditions::invalid(&problems)];
    EipObjectStatus {
        pool: typed.status.unwrap_or_default(),
        conditions: conditions::merge(eip.conditions(), &desired, eip.metadata.generation, now),
    }
}

/// Whether `desired` differs from what `eip` shows. When the installed CRD prunes `status.conditions`, they can
/// never match and only the allocator's fields count (the conditions still ride along with those writes).
pub fn differs(eip: &EipObject, desired: &EipObjectStatus, conditions_kept: bool) -> bool {
    match eip.status.as_ref() {
        None => true,
        Some(current) if conditions_kept => current != desired,
        Some(current) => current.pool != desired.pool,
    }
}

/// "Now" as the API stores it (whole seconds), so a written time compares equal when read back.
pub fn now() -> Time {
    let now = k8s_openapi::jiff::Timestamp::now();
    Time(k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap_or(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Eip, EipSpec};
    use openelb_core::ipam::Ipam;

    fn eip(name: &str, address: &str) -> Arc<EipObject> {
        let mut e = Eip::new(name, EipSpec { address: address.into(), ..Default::default() });
        e.metadata.generation = Some(1);
        Arc::new(EipObject::from(e))
    }

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn overlapping_eips_are_both_invalid_and_name_each_other() {
        let eips = [eip("a", "192.0.2.1-192.0.2.10"), eip("b", "192.0.2.5-192.0.2.20"), eip("c", "198.51.100.1")];
        let problems = problems(&eips).unwrap();
        assert!(problems["a"].iter().any(|p| p.message.contains("overlaps Eip/b")), "{problems:?}");
        assert!(problems["b"].iter().any(|p| p.message.contains("overlaps Eip/a")), "{problems:?}");
        assert!(!problems.contains_key("c"), "{problems:?}");
    }

    #[test]
    fn a_fresh_eip_gets_sizes_and_both_conditions() {
        let eips = [eip("a", "192.0.2.1-192.0.2.10")];
        let ipam = Ipam::new(&pools(&eips).unwrap());
        let status = desired_status(&eips[0], &ipam.pool_status("a").unwrap(), &[], &at(10));
        assert_eq!(status.pool.pool_size, 10);
        assert_eq!(status.pool.first_ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(status.pool.last_ip.as_deref(), Some("192.0.2.10"));
        assert!(status.pool.v4);
        let summary: Vec<(&str, &str, &str)> =
            status.conditions.iter().map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str())).collect();
        assert_eq!(summary, [("Ready", "True", "Available"), ("Invalid", "False", "Valid")]);
        assert!(differs(&eips[0], &status, true));

        let mut written = EipObject::clone(&eips[0]);
        written.status = Some(status.clone());
        let again = desired_status(&written, &ipam.pool_status("a").unwrap(), &[], &at(20));
        assert_eq!(again, status, "recomputing must not move the transition times");
        assert!(!differs(&written, &again, true));
    }

    #[test]
    fn pruned_conditions_do_not_count_as_a_difference() {
        let eips = [eip("a", "192.0.2.1-192.0.2.10")];
        let ipam = Ipam::new(&pools(&eips).unwrap());
        let status = desired_status(&eips[0], &ipam.pool_status("a").unwrap(), &[], &at(10));
        let mut pruned = EipObject::clone(&eips[0]);
        pruned.status = Some(EipObjectStatus { pool: status.pool.clone(), conditions: Vec::new() });
        assert!(!differs(&pruned, &status, false));
        assert!(differs(&pruned, &status, true));
    }

    #[test]
    fn a_deleting_eip_drains_holders_keep_newcomers_do_not_get() {
        let mut deleting = Eip::new("old", EipSpec { address: "192.0.2.1-192.0.2.10".into(), ..Default::default() });
        deleting.metadata.deletion_timestamp = Some(at(1));
        deleting.status =
            Some(crate::crd::EipStatus { used: [("192.0.2.1".into(), "ns/a".into())].into(), ..Default::default() });
        let pools = pools(&[Arc::new(EipObject::from(deleting))]).unwrap();
        assert!(pools[0].disable && !pools[0].deleting);
        let mut ipam = Ipam::new(&pools);

        let holder = openelb_core::Service {
            namespace: "ns".into(),
            name: "a".into(),
            type_: "LoadBalancer".into(),
            annotations: [(openelb_core::ANNOTATION_LB.to_string(), "openelb".to_string())].into(),
            ingress: vec!["192.0.2.1".into()],
            ..Default::default()
        };
        let kept = ipam.reconcile(&holder, None);
        assert!(matches!(kept.change, openelb_core::ipam::Change::Kept { .. }), "{kept:?}");
        let newcomer = openelb_core::Service { name: "b".into(), ingress: Vec::new(), ..holder.clone() };
        let refused = explain_draining(ipam.reconcile(&newcomer, None), &["old"]);
        let Change::Failed { reason, .. } = &refused.change else { panic!("{refused:?}") };
        assert_eq!(reason, "no Eip matches: old is being deleted");
        assert!(refused.events.iter().any(|e| e.message.contains("old is being deleted")), "{refused:?}");

        let mut pinned = newcomer;
        pinned.annotations.insert(openelb_core::ANNOTATION_EIP_POOL.into(), "old".into());
        let refused = explain_draining(ipam.reconcile(&pinned, None), &["old", "ol"]);
        let Change::Failed { reason, .. } = &refused.change else { panic!("{refused:?}") };
        assert_eq!(reason, "pinned to Eip old, which is being deleted");
    }
}
