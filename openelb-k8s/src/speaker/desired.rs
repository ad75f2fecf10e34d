//! From the cluster objects to what this node's VRRP agent should run: allocation (standing in for the
//! controller: every speaker computes the same result from the same objects), the VIP-mode targets, the VRRP
//! plan, and how each of the plan's interface specs is resolved on this node. Pure: no I/O.

use std::collections::BTreeMap;
use std::net::IpAddr;

use openelb_core::addr::AddrRange;
use openelb_core::announce::{self, VipTarget};
use openelb_core::ipam::Ipam;
use openelb_core::model::{Cluster, Protocol};
use openelb_core::vrrp::plan::{self, Plan, PlanError, VipInput};
use openelb_net::ops::IfaceSpec;

use super::config::SpeakerConfig;

/// The plan's interface for pools that name none: "the NIC holding the node's InternalIP". The plan must be
/// the same on every node, so it cannot carry the node's own address; each node maps this string to
/// [`IfaceSpec::Holding`] of its InternalIP. The `:` keeps it from ever being a real interface name.
pub const INTERNAL_IP_SPEC: &str = "node:internal-ip";

/// What this node should run, derived from one snapshot of the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub plan: Plan,
    /// VIP-mode targets (every node's, not only this one's).
    pub targets: Vec<VipTarget>,
    /// Address ranges of the VIP-mode pools: an address of ours inside one that we do not hold is stale.
    pub vip_ranges: Vec<(String, AddrRange)>,
    /// Every interface spec of a VIP-mode pool (as the plan names it) and how this node resolves it, or why it
    /// cannot.
    pub specs: BTreeMap<String, Result<IfaceSpec, String>>,
    /// Allocation and pool problems worth a log line (they do not stop the speaker).
    pub warnings: Vec<String>,
}

impl Desired {
    /// The VIP-mode target of `vip`, if any.
    pub fn target(&self, vip: &IpAddr) -> Option<&VipTarget> {
        self.targets.iter().find(|t| t.vip == *vip)
    }

    /// Whether `ip` lies in a VIP-mode pool (so a stale copy of it is ours to clean up).
    pub fn in_vip_pool(&self, ip: &IpAddr) -> bool {
        self.vip_ranges.iter().any(|(_, r)| r.contains(ip))
    }
}

/// The plan's interface string for a pool's `spec.interface`.
pub fn plan_interface(pool_interface: Option<&str>) -> String {
    match pool_interface.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => s.to_string(),
        None => INTERNAL_IP_SPEC.to_string(),
    }
}

/// How this node resolves the plan interface `spec`: the override when given, else the spec itself, with
/// [`INTERNAL_IP_SPEC`] mapped to the interface holding the node's InternalIP.
pub fn local_spec(spec: &str, override_iface: Option<&str>, internal_ip: Option<IpAddr>) -> Result<IfaceSpec, String> {
    if let Some(o) = override_iface {
        return o.parse::<IfaceSpec>().map_err(|e| format!("--interface: {e}"));
    }
    if spec == INTERNAL_IP_SPEC {
        return internal_ip
            .map(IfaceSpec::Holding)
            .ok_or_else(|| "the pool names no interface and this node has no InternalIP in its Node object".into());
    }
    spec.parse::<IfaceSpec>().map_err(|e| format!("Eip interface: {e}"))
}

/// Allocates, selects the VIP-mode targets and plans them. `previous` keeps running groups on their VRIDs.
pub fn desired(cluster: &Cluster, config: &SpeakerConfig, previous: Option<&Plan>) -> Result<Desired, PlanError> {
    let mut ipam = Ipam::new(&cluster.pools);
    ipam.reconcile_all(&cluster.services, &cluster.namespaces);
    let mut warnings: Vec<String> = ipam.warnings().to_vec();

    let internal_ip = cluster.nodes.iter().find(|n| n.name == config.node_name).and_then(|n| n.internal_ip);
    if !cluster.nodes.iter().any(|n| n.name == config.node_name) {
        warnings.push(format!(
            "node {:?}: no Node object of that name in the manifests; this node is a candidate for no VIP",
            config.node_name
        ));
    }

    let mut vip_ranges = Vec::new();
    let mut specs = BTreeMap::new();
    for pool in cluster.pools.iter().filter(|p| p.protocol == Protocol::Vip) {
        match AddrRange::parse(&pool.address) {
            Ok(r) => vip_ranges.push((pool.name.clone(), r)),
            Err(e) => warnings.push(format!("Eip {}: {e}", pool.name)),
        }
        let spec = plan_interface(pool.interface.as_deref());
        let local = local_spec(&spec, config.interface.as_deref(), internal_ip);
        specs.entry(spec).or_insert(local);
    }

    let targets: Vec<VipTarget> =
        announce::targets(cluster, &ipam).into_iter().filter(|t| t.protocol == Protocol::Vip).collect();
    let inputs: Vec<VipInput> = targets
        .iter()
        .map(|t| VipInput {
            vip: t.vip,
            interface: plan_interface(t.interface.as_deref()),
            candidates: t.preference.clone(),
        })
        .collect();
    let plan = plan::plan(&inputs, &config.plan_config(), previous)?;
    Ok(Desired { plan, targets, vip_ranges, specs, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_without_an_interface_plan_under_a_node_independent_name() {
        assert_eq!(plan_interface(None), INTERNAL_IP_SPEC);
        assert_eq!(plan_interface(Some(" ")), INTERNAL_IP_SPEC);
        assert_eq!(plan_interface(Some("eth1")), "eth1");
        assert!(INTERNAL_IP_SPEC.parse::<IfaceSpec>().is_err(), "must never be a usable interface name");
    }

    #[test]
    fn override_wins_then_spec_then_internal_ip() {
        let ip: IpAddr = "192.0.2.3".parse().unwrap();
        assert_eq!(local_spec("can_reach:192.0.2.1", Some("eth9"), Some(ip)), Ok(IfaceSpec::Name("eth9".into())));
        assert_eq!(local_spec("eth1", None, Some(ip)), Ok(IfaceSpec::Name("eth1".into())));
        assert_eq!(local_spec(INTERNAL_IP_SPEC, None, Some(ip)), Ok(IfaceSpec::Holding(ip)));
        assert!(local_spec(INTERNAL_IP_SPEC, None, None).unwrap_err().contains("InternalIP"));
        assert!(local_spec("bad name", None, None).unwrap_err().contains("bad name"));
        assert!(local_spec("eth0", Some("a/b"), None).unwrap_err().contains("--interface"));
    }

    fn cluster(pool_interface: &str) -> Cluster {
        let mut y = format!(
            "apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata:\n  name: vip\nspec:\n  \
             address: 192.0.2.91-192.0.2.95\n  protocol: vip\n{pool_interface}---\n\
             apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata:\n  name: bgp\nspec:\n  \
             address: 198.51.100.0/28\n---\n\
             apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: default\n  annotations:\n    \
             lb.kubesphere.io/v1alpha1: openelb\n    eip.openelb.kubesphere.io/v1alpha2: vip\nspec:\n  \
             type: LoadBalancer\n  ports:\n    - port: 80\n"
        );
        for (n, ip) in [("a", "192.0.2.3"), ("b", "192.0.2.4")] {
            y.push_str(&format!(
                "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {n}\nstatus:\n  addresses:\n    - type: \
                 InternalIP\n      address: {ip}\n  conditions:\n    - type: Ready\n      status: \"True\"\n"
            ));
        }
        crate::manifest::Manifests::parse_str(std::path::Path::new("t.yaml"), &y).unwrap().to_cluster().unwrap()
    }

    #[test]
    fn every_node_plans_the_same_groups_whatever_its_interface_override() {
        let c = cluster("  interface: eth0\n");
        let a = desired(&c, &SpeakerConfig::new("a"), None).unwrap();
        let mut cfg = SpeakerConfig::new("b");
        cfg.interface = Some("ens3".into());
        let b = desired(&c, &cfg, None).unwrap();
        assert_eq!(a.plan, b.plan);
        assert_eq!(a.plan.groups.len(), 1);
        assert_eq!(a.plan.groups[0].id.interface, "eth0");
        assert_eq!(b.specs.get("eth0"), Some(&Ok(IfaceSpec::Name("ens3".into()))));
        assert_eq!(a.specs.get("eth0"), Some(&Ok(IfaceSpec::Name("eth0".into()))));
    }

    #[test]
    fn only_vip_mode_pools_are_planned_and_cleaned() {
        let d = desired(&cluster(""), &SpeakerConfig::new("a"), None).unwrap();
        assert!(d.targets.iter().all(|t| t.protocol == Protocol::Vip));
        assert_eq!(d.vip_ranges.len(), 1);
        assert!(d.in_vip_pool(&"192.0.2.95".parse().unwrap()));
        assert!(!d.in_vip_pool(&"198.51.100.1".parse().unwrap()));
        assert_eq!(d.plan.groups[0].id.interface, INTERNAL_IP_SPEC);
        let ip: IpAddr = "192.0.2.3".parse().unwrap();
        assert_eq!(d.specs.get(INTERNAL_IP_SPEC), Some(&Ok(IfaceSpec::Holding(ip))));
        assert!(d.target(&"192.0.2.91".parse().unwrap()).is_some());
    }

    #[test]
    fn an_unknown_node_is_warned_about_and_runs_no_group() {
        let d = desired(&cluster(""), &SpeakerConfig::new("zz"), None).unwrap();
        assert!(d.warnings.iter().any(|w| w.contains("\"zz\"")), "{:?}", d.warnings);
        assert_eq!(d.plan.for_node("zz").count(), 0);
        assert!(d.specs.get(INTERNAL_IP_SPEC).is_some_and(|s| s.is_err()));
    }
}
