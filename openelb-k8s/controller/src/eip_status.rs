//! What every Eip's status should say, whichever reconcile writes it: the allocator's numbers and the
//! conditions. The Service reconcile (which changes `used`) and the Eip reconcile (everything else) both write
//! through [`desired_status`], so neither undoes what the other wrote.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use openelb_core::ipam::PoolStatus;
use openelb_core::model::{Pool, Protocol};
use openelb_core::validate::{self, Problem};

use super::conditions::{self, PoolFacts};
use openelb_k8s::convert::{self, ConvertError};
use openelb_k8s::crd::{Eip, EipStatus};

/// The Eips as the allocator sees them. One being deleted is `deleting`, and the core drains it: its Services
/// keep their addresses until they let them go, nobody gets a new one from it, and its finalizer holds the
/// object until then.
pub fn pools(eips: &[Arc<Eip>]) -> Result<Vec<Pool>, ConvertError> {
    eips.iter().map(|eip| convert::pool_from_eip(eip)).collect()
}

pub fn is_deleting(eip: &Eip) -> bool {
    eip.metadata.deletion_timestamp.is_some()
}

pub fn conditions(eip: &Eip) -> &[Condition] {
    eip.status.as_ref().map_or(&[], |s| s.conditions.as_slice())
}

/// Problems of every Eip's spec, by Eip name. `status.used` is left out: the controller rewrites it from the
/// allocator, so problems there are repaired rather than reported.
pub fn problems(eips: &[Arc<Eip>]) -> Result<BTreeMap<String, Vec<Problem>>, ConvertError> {
    let pools: Vec<Pool> = eips
        .iter()
        .map(|eip| {
            let mut pool = convert::pool_from_eip(eip)?;
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

/// What the conditions of `eip` are decided from besides validation.
pub fn facts<'a>(eip: &'a Eip, pool: &'a PoolStatus) -> PoolFacts<'a> {
    PoolFacts {
        deleting: is_deleting(eip),
        disabled: eip.spec.disable.unwrap_or(false),
        undecodable: eip.spec.undecodable.as_deref(),
        status: pool,
    }
}

/// The status `eip` should have, given what the allocator says of its pool and the problems of its spec.
pub fn desired_status(eip: &Eip, pool: &PoolStatus, problems: &[Problem], now: &Time) -> EipStatus {
    let mut typed = eip.clone();
    convert::apply_pool_status(&mut typed, pool);
    let facts = facts(eip, pool);
    let problems: Vec<&Problem> = problems.iter().collect();
    let protocol = Protocol::from_spec(eip.spec.protocol.map(|p| p.as_str()));
    let desired = [conditions::ready(facts), conditions::invalid(&problems, facts), conditions::announced(protocol)];
    let mut status = typed.status.unwrap_or_default();
    status.conditions = conditions::merge(conditions(eip), &desired, eip.metadata.generation, now);
    status
}

/// "Now" as the API stores it (whole seconds), so a written time compares equal when read back.
pub fn now() -> Time {
    let now = k8s_openapi::jiff::Timestamp::now();
    Time(k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap_or(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openelb_core::ipam::{Change, Ipam};
    use openelb_k8s::crd::EipSpec;

    fn eip(name: &str, address: &str) -> Arc<Eip> {
        let mut e = Eip::new(name, EipSpec { address: address.into(), ..Default::default() });
        e.metadata.generation = Some(1);
        Arc::new(e)
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
        assert!(problems.get("c").is_none_or(|c| c.iter().all(|p| !p.is_error())), "{problems:?}");
    }

    #[test]
    fn a_fresh_eip_gets_sizes_and_its_conditions() {
        let eips = [eip("a", "192.0.2.1-192.0.2.10")];
        let ipam = Ipam::new(&pools(&eips).unwrap());
        let status = desired_status(&eips[0], &ipam.pool_status("a").unwrap(), &[], &at(10));
        assert_eq!(status.pool_size, 10);
        assert_eq!(status.first_ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(status.last_ip.as_deref(), Some("192.0.2.10"));
        assert!(status.v4);
        let summary: Vec<(&str, &str, &str)> =
            status.conditions.iter().map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str())).collect();
        // No spec.protocol is bgp, as upstream: allocated from, announced by nobody.
        assert_eq!(
            summary,
            [
                ("Ready", "True", "Available"),
                ("Invalid", "False", "Valid"),
                ("Announced", "False", "ProtocolNotImplemented")
            ]
        );

        let mut written = Eip::clone(&eips[0]);
        written.status = Some(status.clone());
        let again = desired_status(&written, &ipam.pool_status("a").unwrap(), &[], &at(20));
        assert_eq!(again, status, "recomputing must not move the transition times");
    }

    /// The core drains a deleting Eip itself: holders keep, newcomers are told it is being deleted.
    #[test]
    fn a_deleting_eip_drains_holders_keep_newcomers_do_not_get() {
        let mut deleting = Eip::new("old", EipSpec { address: "192.0.2.1-192.0.2.10".into(), ..Default::default() });
        deleting.metadata.deletion_timestamp = Some(at(1));
        deleting.status = Some(EipStatus { used: [("192.0.2.1".into(), "ns/a".into())].into(), ..Default::default() });
        let pools = pools(&[Arc::new(deleting)]).unwrap();
        assert!(pools[0].deleting && !pools[0].disable);
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
        assert!(matches!(kept.change, Change::Kept { .. }), "{kept:?}");
        let newcomer = openelb_core::Service { name: "b".into(), ingress: Vec::new(), ..holder.clone() };
        let refused = ipam.reconcile(&newcomer, None);
        let Change::Failed { reason, .. } = &refused.change else { panic!("{refused:?}") };
        assert_eq!(reason, "no Eip matches: old is being deleted");
        assert!(refused.events.iter().any(|e| e.message.contains("old is being deleted")), "{refused:?}");

        let mut pinned = newcomer;
        pinned.annotations.insert(openelb_core::ANNOTATION_EIP_POOL.into(), "old".into());
        let refused = ipam.reconcile(&pinned, None);
        let Change::Failed { reason, .. } = &refused.change else { panic!("{refused:?}") };
        assert_eq!(reason, "pinned to Eip old, which is being deleted");
    }
}
