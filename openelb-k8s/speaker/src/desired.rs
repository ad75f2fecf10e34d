//! From the cluster objects to what this node's VRRP agent should run: the addresses (allocated as the
//! controller would, from manifests; or exactly the Services' `status.loadBalancer.ingress`, from Kubernetes),
//! the VIP-mode targets, the VRRP plan, and how each of the plan's interface specs is resolved on this node.
//! Pure: no I/O.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use openelb_core::addr::AddrRange;
use openelb_core::announce::VipTarget;
use openelb_core::ipam::Ipam;
use openelb_core::model::{Cluster, LABEL_EIP_POOL, Protocol};
use openelb_core::vrrp::inputs::PlanInputs;
pub use openelb_core::vrrp::inputs::{INTERNAL_IP_SPEC, plan_interface, pools_from_ingress};
use openelb_core::vrrp::plan::{self, Group, Plan, PlanContext};
use openelb_k8s::offline;
use openelb_net::ops::IfaceSpec;

use super::config::{AddressSource, SpeakerConfig};

/// What this node should run, derived from one snapshot of the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub plan: Plan,
    /// VIP-mode targets (every node's, not only this one's), in VIP order.
    pub targets: Vec<VipTarget>,
    /// Address ranges of the VIP-mode pools: an address of ours inside one that we do not hold is stale.
    pub vip_ranges: Vec<(String, AddrRange)>,
    /// Every interface spec of a VIP-mode pool (as the plan names it) and how this node resolves it, or why it
    /// cannot.
    pub specs: BTreeMap<String, Result<IfaceSpec, String>>,
    /// Allocation, pool and planning problems worth a log line (they do not stop the speaker).
    pub warnings: Vec<String>,
    /// The index of each planned VIP's group in `plan.groups`: the driver looks VIPs up per held address, which
    /// must not scan every group (20k VIPs).
    groups_by_vip: HashMap<IpAddr, usize>,
}

impl Desired {
    /// The VIP-mode target of `vip`, if any.
    pub fn target(&self, vip: &IpAddr) -> Option<&VipTarget> {
        let i = self.targets.partition_point(|t| t.vip < *vip);
        self.targets.get(i).filter(|t| t.vip == *vip)
    }

    /// The group that announces `vip`, if it is planned.
    pub fn group_of(&self, vip: &IpAddr) -> Option<&Group> {
        self.groups_by_vip.get(vip).and_then(|i| self.plan.groups.get(*i))
    }

    /// Whether `ip` lies in a VIP-mode pool (so a stale copy of it is ours to clean up).
    pub fn in_vip_pool(&self, ip: &IpAddr) -> bool {
        self.vip_ranges.iter().any(|(_, r)| r.contains(ip))
    }
}

/// Leaves out of `cluster` the Services whose ingress plans nothing: one address that goes, as
/// [`pools_from_ingress`] reads it, to a pool no speaker announces (a `bgp` or `layer2` Eip). A burst of such
/// Services then changes no snapshot, so it re-plans nothing and no VIP waits behind those plans. A Service stays
/// when its address is shown by a Service that stays too (the first sharer of an address decides its pool), and
/// when it shows anything else (no address, several, one that does not parse or lies in no Eip: their warnings
/// stay). Only for addresses read from the ingress ([`AddressSource::Ingress`]): allocating
/// ([`AddressSource::Allocate`]) needs every Service.
pub fn without_unannounced(cluster: &mut Cluster) {
    let ranges: Vec<Option<AddrRange>> = cluster.pools.iter().map(|p| AddrRange::parse(&p.address).ok()).collect();
    let mut ranked: Vec<usize> = (0..cluster.pools.len()).collect();
    ranked.sort_by(|a, b| {
        let key = |i: &usize| cluster.pools.get(*i).map(|p| (p.priority, p.name.as_str()));
        key(a).cmp(&key(b))
    });
    // The address of a Service whose own choice puts its one address in an unannounced pool.
    let unannounced = |svc: &openelb_core::model::Service| -> Option<IpAddr> {
        let [raw] = svc.ingress.as_slice() else { return None };
        let ip = raw.trim().parse::<IpAddr>().ok()?;
        let labelled = svc.labels.get(LABEL_EIP_POOL).and_then(|l| cluster.pools.iter().position(|p| &p.name == l));
        let contains = |i: &usize| ranges.get(*i).copied().flatten().is_some_and(|r| r.contains(&ip));
        let pool = labelled.or_else(|| ranked.iter().copied().find(|i| contains(i)))?;
        cluster.pools.get(pool).is_some_and(|p| p.protocol != Protocol::Vip).then_some(ip)
    };
    let leave: Vec<Option<IpAddr>> = cluster.services.iter().map(unannounced).collect();
    if leave.iter().all(Option::is_none) {
        return;
    }
    let shown_by_kept: HashSet<IpAddr> = cluster
        .services
        .iter()
        .zip(&leave)
        .filter(|(_, l)| l.is_none())
        .flat_map(|(s, _)| s.ingress.iter().filter_map(|raw| raw.trim().parse::<IpAddr>().ok()))
        .collect();
    let mut leave = leave.into_iter();
    cluster.services.retain(|_| leave.next().flatten().is_none_or(|ip| shown_by_kept.contains(&ip)));
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

/// Finds the addresses (see [`AddressSource`]), selects the VIP-mode targets and plans them. `previous` keeps
/// running groups on their VRIDs.
pub fn desired(cluster: &Cluster, config: &SpeakerConfig, previous: Option<&Plan>) -> Desired {
    desired_in(cluster, config, &PlanContext { previous, ..PlanContext::default() })
}

/// [`desired`] with the whole planning context: the previous plan, the VRIDs foreign routers use and the
/// published assignment.
pub fn desired_in(cluster: &Cluster, config: &SpeakerConfig, context: &PlanContext<'_>) -> Desired {
    let (inputs, mut warnings) = match config.addresses {
        AddressSource::Allocate => {
            // The controller's decisions, as `openelb-cli allocate` and the lab make them.
            let mut allocated = cluster.clone();
            let mut ipam = Ipam::new(&cluster.pools);
            offline::allocate(&mut ipam, &mut allocated);
            (PlanInputs::from_ipam(&allocated, &ipam), ipam.warnings().to_vec())
        }
        AddressSource::Ingress => PlanInputs::from_ingress(cluster),
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

    let plan = plan::plan(&inputs.vips, &config.plan_config(), context);
    warnings.extend(plan.issues.iter().map(ToString::to_string));
    let groups_by_vip = plan.groups.iter().enumerate().flat_map(|(i, g)| g.vips.iter().map(move |v| (*v, i))).collect();
    Desired { plan, targets: inputs.targets, vip_ranges, specs, warnings, groups_by_vip }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_internal_ip_spec_is_no_usable_interface_name() {
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
    fn services_of_unannounced_pools_are_left_out_and_nothing_planned_changes() {
        let mut c = cluster("  interface: eth0\n");
        let mut v6 = c.pools.iter().find(|p| p.name == "bgp").unwrap().clone();
        v6.name = "filler".into();
        v6.address = "2001:db8:f::/112".into();
        c.pools.push(v6);
        let base = c.services[0].clone();
        let service = |name: &str, label: Option<&str>, ingress: &[&str]| {
            let mut s = base.clone();
            s.name = name.into();
            s.labels.clear();
            if let Some(l) = label {
                s.labels.insert(LABEL_EIP_POOL.into(), l.into());
            }
            s.ingress = ingress.iter().map(|i| i.to_string()).collect();
            s
        };
        c.services = vec![
            service("filler", Some("filler"), &["2001:db8:f::1"]),
            service("filler-unlabelled", None, &["2001:db8:f::2"]),
            service("in-bgp", None, &["198.51.100.3"]),
            service("vip", None, &["192.0.2.92"]),
            // Labelled bgp, but sharing the address of a VIP: the first sharer decides the pool.
            service("a-sharer", Some("bgp"), &["192.0.2.92"]),
            // Kept for showing two addresses; then so is the Service sharing one of them.
            service("b-two", Some("bgp"), &["198.51.100.4", "192.0.2.92"]),
            service("c-sharing", Some("bgp"), &["198.51.100.4"]),
            service("shrunk", Some("vip"), &["198.51.100.5"]),
            service("nowhere", None, &["198.51.100.200"]),
            service("unparsable", Some("bgp"), &["not-an-ip"]),
        ];
        let mut left = c.clone();
        without_unannounced(&mut left);
        let names: Vec<&str> = left.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["vip", "a-sharer", "b-two", "c-sharing", "shrunk", "nowhere", "unparsable"]);
        let (all, left) = (desired(&c, &ingress_config("a"), None), desired(&left, &ingress_config("a"), None));
        assert_eq!(left.targets, all.targets);
        assert_eq!(left.plan, all.plan);
        assert_eq!(left.warnings, all.warnings);
        assert!(!all.targets.is_empty());
    }

    proptest::proptest! {
        /// Whatever the pools, labels, sharers and odd addresses, leaving those Services out plans the same.
        #[test]
        fn leaving_out_services_of_unannounced_pools_changes_no_plan(
            bgp_priority in 0i64..3,
            services in proptest::collection::vec(
                (proptest::option::of(0usize..5), proptest::collection::vec(0usize..7, 0..3)),
                0..8,
            ),
        ) {
            const LABELS: [&str; 5] = ["vip", "bgp", "wide-bgp", "filler", "gone"];
            const ADDRESSES: [&str; 7] =
                ["192.0.2.92", "192.0.2.94", "198.51.100.3", "198.51.100.200", "2001:db8:f::1", "2001:db8:f::2", "bad"];
            let mut c = cluster("  interface: eth0\n");
            let bgp = c.pools.iter().find(|p| p.name == "bgp").unwrap().clone();
            let mut wide = bgp.clone();
            wide.name = "wide-bgp".into();
            wide.address = "192.0.2.0/24".into();
            wide.priority = bgp_priority;
            let mut filler = bgp.clone();
            filler.name = "filler".into();
            filler.address = "2001:db8:f::/112".into();
            c.pools.extend([wide, filler]);
            let base = c.services[0].clone();
            c.services = services
                .iter()
                .enumerate()
                .map(|(i, (label, ips))| {
                    let mut s = base.clone();
                    s.name = format!("s{i}");
                    s.labels.clear();
                    if let Some(l) = label {
                        s.labels.insert(LABEL_EIP_POOL.into(), LABELS[*l].into());
                    }
                    s.ingress = ips.iter().map(|a| ADDRESSES[*a].to_string()).collect();
                    s
                })
                .collect();
            let mut left = c.clone();
            without_unannounced(&mut left);
            let (all, left) = (desired(&c, &ingress_config("a"), None), desired(&left, &ingress_config("a"), None));
            proptest::prop_assert_eq!(left.targets, all.targets);
            proptest::prop_assert_eq!(left.plan, all.plan);
            proptest::prop_assert_eq!(left.warnings, all.warnings);
        }
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
