//! From the cluster's objects to the planner's input: which VIPs VIP mode announces, on which interface spec,
//! with which candidates in which order. The speaker (every node) and the controller (which publishes the VRID
//! assignment) both plan from this one function, so they group VIPs identically and their VRIDs can be
//! compared group by group.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::plan::VipInput;
use crate::addr::AddrRange;
use crate::announce::{self, VipTarget};
use crate::ipam::Ipam;
use crate::lifecycle;
use crate::model::{Cluster, LABEL_EIP_POOL, Pool, Protocol};

/// The plan's interface for pools that name none: "the NIC holding the node's InternalIP". The plan must be
/// the same on every node, so it cannot carry the node's own address; each node maps this string to the NIC
/// holding its InternalIP. The `:` keeps it from ever being a real interface name.
pub const INTERNAL_IP_SPEC: &str = "node:internal-ip";

/// The plan's interface string for a pool's `spec.interface`.
pub fn plan_interface(pool_interface: Option<&str>) -> String {
    match pool_interface.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => s.to_string(),
        None => INTERNAL_IP_SPEC.to_string(),
    }
}

/// The VIP-mode targets of a cluster and the planner's input for them, one entry each, both in (VIP, pool)
/// order so that [`PlanInputs::target`] is a binary search.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlanInputs {
    /// VIP-mode targets of every node (not only one node's).
    pub targets: Vec<VipTarget>,
    pub vips: Vec<VipInput>,
}

impl PlanInputs {
    /// The VIP-mode targets of the addresses `ipam` holds. O(n log n) in VIPs.
    pub fn from_ipam(cluster: &Cluster, ipam: &Ipam) -> Self {
        let mut targets: Vec<VipTarget> =
            announce::targets(cluster, ipam).into_iter().filter(|t| t.protocol == Protocol::Vip).collect();
        // Stable: for a VIP in two pools the pool of lowest name stays first, as in `announce::targets`.
        targets.sort_by_key(|t| t.vip);
        let vips = targets
            .iter()
            .map(|t| VipInput {
                vip: t.vip,
                interface: plan_interface(t.interface.as_deref()),
                candidates: t.preference.clone(),
            })
            .collect();
        PlanInputs { targets, vips }
    }

    /// Exactly the addresses the Services' `status.loadBalancer.ingress` shows (see [`pools_from_ingress`]),
    /// with the problems found on the way (they do not stop planning).
    pub fn from_ingress(cluster: &Cluster) -> (Self, Vec<String>) {
        let (pools, mut warnings) = pools_from_ingress(cluster);
        let ipam = Ipam::new(&pools);
        warnings.extend(ipam.warnings().iter().cloned());
        (PlanInputs::from_ipam(cluster, &ipam), warnings)
    }

    /// The VIP-mode target of `vip` (of the pool of lowest name when two pools hold it).
    pub fn target(&self, vip: &IpAddr) -> Option<&VipTarget> {
        let i = self.targets.partition_point(|t| t.vip < *vip);
        self.targets.get(i).filter(|t| t.vip == *vip)
    }
}

/// The pools with their `status.used` replaced by what the Services' ingress shows: every address a Service
/// of ours lists, recorded in the pool its label names (even outside that pool's range: a pool shrunk under its
/// holders keeps them, see [`crate::ipam`]), else in the containing pool of lowest (priority, name), and all
/// sharers of one address in the same pool. Rebuilding an [`Ipam`] from them (without reconciling) yields
/// exactly the ingress addresses: nothing is allocated, moved or adopted. Services that are not ours (any
/// more), or are being deleted, contribute nothing.
pub fn pools_from_ingress(cluster: &Cluster) -> (Vec<Pool>, Vec<String>) {
    let mut warnings = Vec::new();
    let mut pools: Vec<Pool> = cluster.pools.iter().map(|p| Pool { used: BTreeMap::new(), ..p.clone() }).collect();
    let ranges: Vec<Option<AddrRange>> = pools.iter().map(|p| AddrRange::parse(&p.address).ok()).collect();
    let mut ranked: Vec<usize> = (0..pools.len()).collect();
    ranked.sort_by(|a, b| {
        let key = |i: &usize| pools.get(*i).map(|p| (p.priority, p.name.as_str()));
        key(a).cmp(&key(b))
    });

    let mut services: Vec<_> = cluster.services.iter().filter(|s| lifecycle::unwanted(s).is_none()).collect();
    services.sort_by_key(|s| s.key());
    let mut pool_of: BTreeMap<IpAddr, usize> = BTreeMap::new();
    let mut holders: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
    for svc in services {
        for raw in &svc.ingress {
            let Ok(ip) = raw.trim().parse::<IpAddr>() else {
                warnings.push(format!(
                    "Service {}: status.loadBalancer.ingress ip {raw:?} is not an IP address; not announced",
                    svc.key()
                ));
                continue;
            };
            let contains = |i: &usize| ranges.get(*i).copied().flatten().is_some_and(|r| r.contains(&ip));
            let labelled = svc.labels.get(LABEL_EIP_POOL).and_then(|l| pools.iter().position(|p| &p.name == l));
            let chosen =
                pool_of.get(&ip).copied().or(labelled).or_else(|| ranked.iter().copied().find(|i| contains(i)));
            match chosen {
                Some(i) => {
                    pool_of.insert(ip, i);
                    holders.entry(ip).or_default().push(svc.key().to_string());
                }
                None => {
                    warnings.push(format!("Service {}: ingress address {ip} lies in no Eip; not announced", svc.key()))
                }
            }
        }
    }
    for (ip, users) in holders {
        if let Some(pool) = pool_of.get(&ip).and_then(|i| pools.get_mut(*i)) {
            pool.used.insert(ip.to_string(), users.join(";"));
        }
    }
    (pools, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_without_an_interface_plan_under_a_node_independent_name() {
        assert_eq!(plan_interface(None), INTERNAL_IP_SPEC);
        assert_eq!(plan_interface(Some(" ")), INTERNAL_IP_SPEC);
        assert_eq!(plan_interface(Some("eth1")), "eth1");
        assert!(crate::iface::parse(INTERNAL_IP_SPEC).is_err(), "must never be a usable interface name");
    }
}
