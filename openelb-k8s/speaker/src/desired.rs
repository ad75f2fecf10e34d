//! From the cluster objects to what this node's VRRP agent should run: the addresses (allocated as the
//! controller would, from manifests; or exactly the Services' `status.loadBalancer.ingress`, from Kubernetes),
//! the VIP-mode targets, the VRRP plan, and how each of the plan's interface specs is resolved on this node.
//! Pure: no I/O.

use std::collections::BTreeMap;
use std::net::IpAddr;

use openelb_core::addr::AddrRange;
use openelb_core::announce::{self, VipTarget};
use openelb_core::ipam::Ipam;
use openelb_core::lifecycle;
use openelb_core::model::{Cluster, LABEL_EIP_POOL, Pool, Protocol};
use openelb_core::vrrp::plan::{self, Plan, PlanContext, VipInput};
use openelb_net::ops::IfaceSpec;

use super::config::{AddressSource, SpeakerConfig};

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
    /// Allocation, pool and planning problems worth a log line (they do not stop the speaker).
    pub warnings: Vec<String>,
    /// Addresses VRRP adverts are accepted from: every Node's InternalIP.
    pub peers: Vec<IpAddr>,
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

/// The pools with their `status.used` replaced by what the Services' ingress shows: every address a Service
/// of ours lists, recorded in the pool its label names (even outside that pool's range: a pool shrunk under its
/// holders keeps them, see `openelb_core::ipam`), else in the containing pool of lowest (priority, name), and
/// all sharers of one address in the same pool. Rebuilding an [`Ipam`] from
/// them (without reconciling) yields exactly the ingress addresses: nothing is allocated, moved or adopted.
/// Services that are not ours (any more), or are being deleted, contribute nothing.
pub fn pools_from_ingress(cluster: &Cluster) -> (Vec<Pool>, Vec<String>) {
    let mut warnings = Vec::new();
    let mut pools: Vec<Pool> = cluster.pools.iter().map(|p| Pool { used: BTreeMap::new(), ..p.clone() }).collect();
    let ranges: Vec<Option<AddrRange>> = pools.iter().map(|p| AddrRange::parse(&p.address).ok()).collect();
    let mut ranked: Vec<usize> = (0..pools.len()).collect();
    ranked.sort_by(|a, b| (pools[*a].priority, &pools[*a].name).cmp(&(pools[*b].priority, &pools[*b].name)));

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
            let contains = |i: &usize| ranges[*i].is_some_and(|r| r.contains(&ip));
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

/// Finds the addresses (see [`AddressSource`]), selects the VIP-mode targets and plans them. `previous` keeps
/// running groups on their VRIDs.
pub fn desired(cluster: &Cluster, config: &SpeakerConfig, previous: Option<&Plan>) -> Desired {
    let (ipam, mut warnings) = match config.addresses {
        AddressSource::Allocate => {
            let mut ipam = Ipam::new(&cluster.pools);
            ipam.reconcile_all(&cluster.services, &cluster.namespaces);
            let warnings = ipam.warnings().to_vec();
            (ipam, warnings)
        }
        AddressSource::Ingress => {
            let (pools, mut warnings) = pools_from_ingress(cluster);
            let ipam = Ipam::new(&pools);
            warnings.extend(ipam.warnings().iter().cloned());
            (ipam, warnings)
        }
    };

    let internal_ip = cluster.nodes.iter().find(|n| n.name == config.node_name).and_then(|n| n.internal_ip);
    if !cluster.nodes.iter().any(|n| n.name == config.node_name) {
        warnings.push(format!(
            "node {:?}: no Node object of that name; this node is a candidate for no VIP",
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
    let plan = plan::plan(&inputs, &config.plan_config(), &PlanContext { previous, ..PlanContext::default() });
    warnings.extend(plan.issues.iter().map(ToString::to_string));
    let peers = cluster.nodes.iter().filter_map(|n| n.internal_ip).collect();
    Desired { plan, targets, vip_ranges, specs, warnings, peers }
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
        openelb_k8s::manifest::Manifests::parse_str(std::path::Path::new("t.yaml"), &y).unwrap().to_cluster().unwrap()
    }

    #[test]
    fn every_node_plans_the_same_groups_whatever_its_interface_override() {
        let c = cluster("  interface: eth0\n");
        let a = desired(&c, &SpeakerConfig::new("a"), None);
        let mut cfg = SpeakerConfig::new("b");
        cfg.interface = Some("ens3".into());
        let b = desired(&c, &cfg, None);
        assert_eq!(a.plan, b.plan);
        assert_eq!(a.plan.groups.len(), 1);
        assert_eq!(a.plan.groups[0].id.interface, "eth0");
        assert_eq!(b.specs.get("eth0"), Some(&Ok(IfaceSpec::Name("ens3".into()))));
        assert_eq!(a.specs.get("eth0"), Some(&Ok(IfaceSpec::Name("eth0".into()))));
    }

    #[test]
    fn only_vip_mode_pools_are_planned_and_cleaned() {
        let d = desired(&cluster(""), &SpeakerConfig::new("a"), None);
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
        let d = desired(&cluster(""), &SpeakerConfig::new("zz"), None);
        assert!(d.warnings.iter().any(|w| w.contains("\"zz\"")), "{:?}", d.warnings);
        assert_eq!(d.plan.for_node("zz").count(), 0);
        assert!(d.specs.get(INTERNAL_IP_SPEC).is_some_and(|s| s.is_err()));
    }

    fn ingress_config(node: &str) -> SpeakerConfig {
        SpeakerConfig { addresses: AddressSource::Ingress, ..SpeakerConfig::new(node) }
    }

    fn vips(d: &Desired) -> Vec<String> {
        d.targets.iter().map(|t| t.vip.to_string()).collect()
    }

    #[test]
    fn from_ingress_a_service_without_ingress_gets_nothing_announced() {
        let c = cluster("  interface: eth0\n");
        let d = desired(&c, &ingress_config("a"), None);
        assert!(d.targets.is_empty(), "{:?}", d.targets);
        assert!(d.plan.groups.is_empty());
        // The same objects allocate .91 when the speaker stands in for the controller (manifests).
        assert_eq!(vips(&desired(&c, &SpeakerConfig::new("a"), None)), ["192.0.2.91"]);
    }

    #[test]
    fn from_ingress_exactly_the_written_address_is_announced_whatever_the_eip_status_says() {
        let mut c = cluster("  interface: eth0\n");
        c.services[0].ingress = vec!["192.0.2.93".into()];
        // A stale record elsewhere in the pool (the controller moved the address and has not rewritten it yet).
        let vip_pool = c.pools.iter_mut().find(|p| p.name == "vip").unwrap();
        vip_pool.used.insert("192.0.2.91".into(), "default/s".into());
        let d = desired(&c, &ingress_config("a"), None);
        assert_eq!(vips(&d), ["192.0.2.93"]);
        assert_eq!(d.targets[0].services, [openelb_core::model::ServiceKey::new("default", "s")]);
        assert_eq!(d.targets[0].candidates, ["a", "b"]);
        assert_eq!(d.plan.groups.len(), 1);
        assert_eq!(d.plan.groups[0].vips, ["192.0.2.93".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn from_ingress_services_that_are_not_ours_or_are_deleting_announce_nothing() {
        let mut c = cluster("");
        c.services[0].ingress = vec!["192.0.2.92".into()];
        let mut opted_out = c.clone();
        opted_out.services[0].annotations.remove(openelb_core::model::ANNOTATION_LB);
        assert!(desired(&opted_out, &ingress_config("a"), None).targets.is_empty());
        let mut deleting = c.clone();
        deleting.services[0].deleting = true;
        assert!(desired(&deleting, &ingress_config("a"), None).targets.is_empty());
        let mut cluster_ip = c.clone();
        cluster_ip.services[0].type_ = "ClusterIP".into();
        assert!(desired(&cluster_ip, &ingress_config("a"), None).targets.is_empty());
        assert_eq!(vips(&desired(&c, &ingress_config("a"), None)), ["192.0.2.92"]);
    }

    #[test]
    fn from_ingress_sharers_join_one_target_and_bad_addresses_are_warned_about() {
        let mut c = cluster("");
        c.services[0].ingress = vec!["192.0.2.94".into()];
        let mut other = c.services[0].clone();
        other.name = "t".into();
        c.services.push(other);
        let mut stray = c.services[0].clone();
        stray.name = "u".into();
        stray.ingress = vec!["203.0.113.5".into(), "not-an-ip".into()];
        c.services.push(stray);
        let d = desired(&c, &ingress_config("a"), None);
        assert_eq!(vips(&d), ["192.0.2.94"]);
        let names: Vec<&str> = d.targets[0].services.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["s", "t"]);
        assert!(d.warnings.iter().any(|w| w.contains("203.0.113.5") && w.contains("default/u")), "{:?}", d.warnings);
        assert!(d.warnings.iter().any(|w| w.contains("not-an-ip")), "{:?}", d.warnings);
    }

    #[test]
    fn from_ingress_an_address_outside_its_shrunk_pool_is_still_announced() {
        let mut c = cluster("  interface: eth0\n");
        c.services[0].ingress = vec!["192.0.2.99".into()];
        c.services[0].labels.insert(LABEL_EIP_POOL.into(), "vip".into());
        c.pools.iter_mut().find(|p| p.name == "vip").unwrap().address = "192.0.2.91-192.0.2.95".into();
        let d = desired(&c, &ingress_config("a"), None);
        assert_eq!(vips(&d), ["192.0.2.99"]);
        assert_eq!(d.targets[0].pool, "vip");
    }

    #[test]
    fn from_ingress_the_pool_label_chooses_among_overlapping_pools() {
        let mut c = cluster("  interface: eth0\n");
        let mut wide = c.pools.iter().find(|p| p.name == "vip").unwrap().clone();
        wide.name = "a-wide".into();
        wide.address = "192.0.2.0/24".into();
        wide.interface = Some("eth7".into());
        c.pools.push(wide);
        c.services[0].ingress = vec!["192.0.2.92".into()];
        // Without a label the lowest (priority, name) containing pool wins: a-wide.
        let d = desired(&c, &ingress_config("a"), None);
        assert_eq!(d.targets[0].pool, "a-wide");
        c.services[0].labels.insert(LABEL_EIP_POOL.into(), "vip".into());
        let d = desired(&c, &ingress_config("a"), None);
        assert_eq!(d.targets.len(), 1);
        assert_eq!(d.targets[0].pool, "vip");
        assert_eq!(d.plan.groups[0].id.interface, "eth0");
    }
}
