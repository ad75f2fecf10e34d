//! What the controller publishes in the ConfigMap `openelb-vrrp` (docs/vrrp.md), decided from plain values: the
//! VRRP plan the speakers compute from the same snapshot (so group identities match), with the previous
//! publication as the assignment to keep, and the foreign VRIDs the speakers report, merged and aged.
//!
//! - **VRIDs stay put**: the published assignment is the plan's `published` context, so every group keeps its
//!   VRID across restarts and re-plans unless a foreign router now uses it (the group moves, once).
//! - **Foreign VRIDs** are the union of the speakers' Leases and what was published before, each with the
//!   latest time any speaker saw it; one not seen for [`FOREIGN_FORGET`] is dropped. A time moves forward in
//!   the publication only by [`LAST_SEEN_STEP`] or more, so the speakers' renewals do not rewrite the
//!   ConfigMap every minute.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::{Duration, SystemTime};

use openelb_core::model::Cluster;
use openelb_core::vrrp::inputs::PlanInputs;
use openelb_core::vrrp::plan::{self, ForeignVrid, PlanConfig, PlanContext, PlanIssue};
use openelb_k8s::vrrp::{ForeignSeen, Published, SpeakerLease};

/// A foreign VRID no speaker reported for this long is forgotten (and may be used again).
pub const FOREIGN_FORGET: Duration = Duration::from_secs(24 * 3600);
/// Least forward step of a published foreign VRID's time.
pub const LAST_SEEN_STEP: Duration = Duration::from_secs(3600);

/// The planner settings the controller shares with the speakers (`--vrid-range`, `--vrid-offset`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VridSettings {
    pub vrids: RangeInclusive<u8>,
    pub offset: u8,
}

impl Default for VridSettings {
    fn default() -> Self {
        VridSettings { vrids: plan::DEFAULT_VRIDS, offset: 0 }
    }
}

impl VridSettings {
    pub fn plan_config(&self) -> PlanConfig {
        PlanConfig { vrids: self.vrids.clone(), offset: self.offset, ..PlanConfig::default() }
    }
}

/// The foreign VRIDs to publish at `now`: see the module notes.
pub fn merge_foreign(published: &[ForeignSeen], leases: &[SpeakerLease], now: SystemTime) -> Vec<ForeignSeen> {
    let mut merged: BTreeMap<ForeignVrid, SystemTime> =
        published.iter().map(|f| (f.vrid.clone(), f.last_seen)).collect();
    for seen in leases.iter().flat_map(|l| &l.foreign) {
        let entry = merged.entry(seen.vrid.clone()).or_insert(seen.last_seen);
        if seen.last_seen.duration_since(*entry).is_ok_and(|ahead| ahead >= LAST_SEEN_STEP) {
            *entry = seen.last_seen;
        }
    }
    merged
        .into_iter()
        .filter(|(_, t)| now.duration_since(*t).map_or(true, |age| age <= FOREIGN_FORGET))
        .map(|(vrid, last_seen)| ForeignSeen { vrid, last_seen })
        .collect()
}

/// The publication for `cluster` (the snapshot the speakers plan from), and what its plan had to approximate.
pub fn publication(
    cluster: &Cluster,
    leases: &[SpeakerLease],
    current: Option<&Published>,
    settings: &VridSettings,
    now: SystemTime,
) -> (Published, Vec<PlanIssue>) {
    let foreign = merge_foreign(current.map_or(&[], |p| p.foreign.as_slice()), leases, now);
    let avoid: Vec<ForeignVrid> = foreign.iter().map(|f| f.vrid.clone()).collect();
    let (inputs, _) = PlanInputs::from_ingress(cluster);
    let context = PlanContext { previous: None, avoid: &avoid, published: current.map(|p| &p.assignment) };
    let plan = plan::plan(&inputs.vips, &settings.plan_config(), &context);
    // Our own earlier VRID moved off a foreign router's: expected, not an approximation to report.
    let issues = plan.issues.iter().filter(|i| !matches!(i, PlanIssue::PublishedIgnored { .. })).cloned().collect();
    let published = Published {
        vrids: settings.vrids.clone(),
        offset: settings.offset,
        assignment: plan.vrid_assignment(),
        foreign,
    };
    (published, issues)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::UNIX_EPOCH;

    use openelb_core::model::IpFamily;
    use openelb_k8s::manifest::Manifests;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn seen(vrid: u8, secs: u64) -> ForeignSeen {
        ForeignSeen { vrid: ForeignVrid { interface: "eth0".into(), family: IpFamily::V4, vrid }, last_seen: at(secs) }
    }

    fn lease(foreign: Vec<ForeignSeen>) -> SpeakerLease {
        SpeakerLease { node: "n".into(), foreign, ..SpeakerLease::default() }
    }

    #[test]
    fn foreign_vrids_are_merged_moved_forward_by_steps_and_forgotten_after_a_day() {
        let day = FOREIGN_FORGET.as_secs();
        let published = [seen(51, 1_000_000), seen(52, 1_000_000)];
        let leases = [lease(vec![seen(51, 1_000_600), seen(60, 1_000_700)]), lease(vec![seen(52, 1_004_000)])];
        let merged = merge_foreign(&published, &leases, at(1_004_000));
        // 51: ten minutes newer is not worth a write; 52: more than an hour newer moves; 60 is new.
        assert_eq!(merged, vec![seen(51, 1_000_000), seen(52, 1_004_000), seen(60, 1_000_700)]);
        let later = merge_foreign(&merged, &[], at(1_000_000 + day + 1));
        assert_eq!(later, vec![seen(52, 1_004_000), seen(60, 1_000_700)], "51 forgotten after a day");
    }

    fn cluster() -> Cluster {
        let mut y = String::from(
            "apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata:\n  name: vip\nspec:\n  \
             address: 192.0.2.91-192.0.2.95\n  protocol: vip\n  interface: eth0\n",
        );
        for (svc, ip) in [("a", "192.0.2.91"), ("b", "192.0.2.92")] {
            y.push_str(&format!(
                "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {svc}\n  namespace: default\n  annotations:\n    \
                 lb.kubesphere.io/v1alpha1: openelb\nspec:\n  type: LoadBalancer\n  ports:\n    - port: 80\n\
                 status:\n  loadBalancer:\n    ingress:\n      - ip: {ip}\n"
            ));
        }
        for (n, ip) in [("n1", "192.0.2.3"), ("n2", "192.0.2.4"), ("n3", "192.0.2.5")] {
            y.push_str(&format!(
                "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {n}\nstatus:\n  addresses:\n    - type: \
                 InternalIP\n      address: {ip}\n  conditions:\n    - type: Ready\n      status: \"True\"\n"
            ));
        }
        Manifests::parse_str(Path::new("t.yaml"), &y).unwrap().to_cluster().unwrap()
    }

    #[test]
    fn the_publication_keeps_published_vrids_and_moves_a_group_off_a_foreign_vrid() {
        let c = cluster();
        let settings = VridSettings::default();
        let (first, issues) = publication(&c, &[], None, &settings, at(1_000_000));
        assert!(issues.is_empty(), "{issues:?}");
        assert!(!first.assignment.vrids.is_empty());
        let (again, _) = publication(&c, &[], Some(&first), &settings, at(1_000_100));
        assert_eq!(again, first, "nothing changed: the same publication (no write)");

        // A speaker reports a foreign router on one of the published VRIDs: that group moves, the rest stay.
        let (taken_id, taken) = first.assignment.vrids.iter().next().map(|(i, v)| (i.clone(), *v)).unwrap();
        let report = lease(vec![seen(taken, 1_000_200)]);
        let (moved, issues) = publication(&c, &[report], Some(&first), &settings, at(1_000_200));
        assert!(issues.is_empty(), "moving off a foreign VRID is no approximation: {issues:?}");
        assert_ne!(moved.assignment.get(&taken_id), Some(taken));
        assert!(moved.assignment.vrids.values().all(|v| *v != taken));
        for (id, vrid) in first.assignment.vrids.iter().filter(|(id, _)| **id != taken_id) {
            assert_eq!(moved.assignment.get(id), Some(*vrid), "{id} keeps its VRID");
        }
        assert_eq!(moved.foreign, vec![seen(taken, 1_000_200)]);
    }
}
