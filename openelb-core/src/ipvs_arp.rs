//! kube-proxy in IPVS mode binds every LoadBalancer IP to the dummy interface [`IPVS_INTERFACE`] on every node.
//! With the kernel's default ARP settings a node answers ARP requests for any address it has on any interface,
//! so every node answers for every VIP and the clients' neighbour entries flip between nodes. These are the rules
//! that decide when that happens and which VIPs a node must then keep quiet about (docs/ipvs.md).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

/// The interface kube-proxy's IPVS mode binds Service addresses to.
pub const IPVS_INTERFACE: &str = "kube-ipvs0";

/// `arp_ignore` and `arp_announce` of one scope (`net.ipv4.conf.all` or `net.ipv4.conf.<nic>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ArpConf {
    pub ignore: u32,
    pub announce: u32,
}

impl ArpConf {
    /// What the kernel applies on one interface: the larger of `all` and the interface's own value, for each
    /// setting (`IN_DEV_ARP_IGNORE`, `IN_DEV_ARP_ANNOUNCE`).
    pub fn effective(all: ArpConf, nic: ArpConf) -> ArpConf {
        ArpConf { ignore: all.ignore.max(nic.ignore), announce: all.announce.max(nic.announce) }
    }

    /// Whether requests for an address on another interface (kube-ipvs0) go unanswered: 1 (only addresses of the
    /// receiving interface), 2 (and within its subnet) and 8 (never). 0 answers for any local address, 3 only
    /// keeps quiet for scope-host addresses (kube-proxy's are scope global) and 4-7 are reserved and answer.
    pub fn ignores_other_interfaces(self) -> bool {
        matches!(self.ignore, 1 | 2 | 8)
    }

    /// Whether the node's own ARP requests never use an address of another interface as their sender
    /// (`arp_announce` 2: the best local address for the target); below 2 a VIP bound to kube-ipvs0 can be the
    /// sender address, which updates the clients' entries for it.
    pub fn announces_strictly(self) -> bool {
        self.announce >= 2
    }

    /// What kube-proxy's `strictARP: true` sets (`arp_ignore=1`, `arp_announce=2`), or stricter.
    pub fn strict(self) -> bool {
        self.ignores_other_interfaces() && self.announces_strictly()
    }
}

/// The effective ARP settings of one interface VIPs are announced on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicArp {
    pub nic: String,
    pub conf: ArpConf,
}

/// Whether other nodes would answer ARP for VIPs they do not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpvsArp {
    /// No kube-ipvs0: kube-proxy is not in IPVS mode (or not running), VIPs live only where they are held.
    NoIpvs,
    /// kube-ipvs0 exists and every interface VIPs are announced on has strict ARP settings.
    Strict,
    /// kube-ipvs0 exists and these interfaces answer (or announce) for addresses on it: the situation to handle.
    Loose(Vec<NicArp>),
}

impl IpvsArp {
    /// Decides from whether kube-ipvs0 exists and the effective settings of the interfaces VIPs are announced
    /// on. Any kube-ipvs0 counts, whatever it carries: kube-proxy binds a LoadBalancer IP some time after the
    /// Service got it, and waiting for the first one would leave that window open on every node.
    pub fn assess(ipvs_interface: bool, nics: &[NicArp]) -> IpvsArp {
        if !ipvs_interface {
            return IpvsArp::NoIpvs;
        }
        let loose: Vec<NicArp> = nics.iter().filter(|n| !n.conf.strict()).cloned().collect();
        if loose.is_empty() { IpvsArp::Strict } else { IpvsArp::Loose(loose) }
    }

    pub fn needs_filter(&self) -> bool {
        matches!(self, IpvsArp::Loose(_))
    }

    /// The interfaces and their settings, for log lines and Events: `eth0 (arp_ignore=0, arp_announce=0)`.
    pub fn describe(&self) -> String {
        match self {
            IpvsArp::NoIpvs => format!("no {IPVS_INTERFACE}"),
            IpvsArp::Strict => format!("{IPVS_INTERFACE} present, ARP strict"),
            IpvsArp::Loose(nics) => nics
                .iter()
                .map(|n| format!("{} (arp_ignore={}, arp_announce={})", n.nic, n.conf.ignore, n.conf.announce))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// The VIPs this node must not answer ARP for: the IPv4 VIPs of the plan (every node's: kube-proxy binds them all
/// on every node) that this node does not hold. IPv6 needs nothing: the kernel answers a Neighbor Solicitation
/// only for an address of the interface it arrived on. Sorted, without duplicates.
pub fn unheld_ipv4<'a>(
    plan_vips: impl IntoIterator<Item = &'a IpAddr>,
    held: impl IntoIterator<Item = &'a IpAddr>,
) -> Vec<Ipv4Addr> {
    let held: BTreeSet<&IpAddr> = held.into_iter().collect();
    let set: BTreeSet<Ipv4Addr> = plan_vips
        .into_iter()
        .filter(|ip| !held.contains(ip))
        .filter_map(|ip| match ip {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
        .collect();
    set.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn conf(ignore: u32, announce: u32) -> ArpConf {
        ArpConf { ignore, announce }
    }

    fn nic(name: &str, c: ArpConf) -> NicArp {
        NicArp { nic: name.into(), conf: c }
    }

    #[test]
    fn kernel_defaults_are_loose_and_strict_arp_is_strict() {
        assert!(!conf(0, 0).strict());
        assert!(conf(1, 2).strict(), "kube-proxy strictARP");
        assert!(!conf(1, 0).strict(), "arp_announce still loose");
        assert!(!conf(3, 2).strict(), "3 answers for scope-global addresses");
        assert!(!conf(5, 2).strict(), "reserved values answer");
        assert!(conf(8, 2).strict() && conf(2, 2).strict());
    }

    #[test]
    fn effective_value_is_the_larger_of_all_and_the_interface() {
        assert_eq!(ArpConf::effective(conf(1, 0), conf(0, 2)), conf(1, 2));
        assert_eq!(ArpConf::effective(conf(0, 0), conf(0, 0)), conf(0, 0));
    }

    #[test]
    fn assessment_needs_kube_ipvs0_and_a_loose_interface() {
        let loose = nic("eth0", conf(0, 0));
        let strict = nic("eth1", conf(1, 2));
        assert_eq!(IpvsArp::assess(false, std::slice::from_ref(&loose)), IpvsArp::NoIpvs);
        assert_eq!(IpvsArp::assess(true, std::slice::from_ref(&strict)), IpvsArp::Strict);
        assert_eq!(IpvsArp::assess(true, &[]), IpvsArp::Strict);
        let both = IpvsArp::assess(true, &[loose.clone(), strict]);
        assert_eq!(both, IpvsArp::Loose(vec![loose]));
        assert!(both.needs_filter());
        assert_eq!(both.describe(), "eth0 (arp_ignore=0, arp_announce=0)");
    }

    #[test]
    fn unheld_is_the_plans_ipv4_vips_minus_the_held_ones() {
        let ips = |s: &[&str]| s.iter().map(|s| s.parse::<IpAddr>().unwrap()).collect::<Vec<_>>();
        let plan = ips(&["192.0.2.12", "192.0.2.10", "2001:db8::10", "192.0.2.11", "192.0.2.10"]);
        let held = ips(&["192.0.2.11", "2001:db8::10", "198.51.100.1"]);
        let want: Vec<Ipv4Addr> = vec!["192.0.2.10".parse().unwrap(), "192.0.2.12".parse().unwrap()];
        assert_eq!(unheld_ipv4(&plan, &held), want);
    }

    proptest! {
        /// Every IPv4 VIP of the plan is in exactly one place: held here, or filtered.
        #[test]
        fn every_ipv4_vip_is_held_or_filtered(
            plan in proptest::collection::vec(any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v % 64))), 0..40),
            held_mask in any::<u64>(),
        ) {
            let held: Vec<IpAddr> = plan.iter().copied().filter(|ip| match ip {
                IpAddr::V4(v4) => held_mask & (1 << (u32::from(*v4) % 64)) != 0,
                IpAddr::V6(_) => false,
            }).collect();
            let filtered = unheld_ipv4(&plan, &held);
            prop_assert!(filtered.windows(2).all(|w| w[0] < w[1]));
            for ip in &plan {
                let IpAddr::V4(v4) = ip else { continue };
                prop_assert_ne!(held.contains(ip), filtered.contains(v4));
            }
            prop_assert!(filtered.iter().all(|v4| plan.contains(&IpAddr::V4(*v4))));
        }

        /// kube-proxy's strictARP sets only `all`: that makes every interface strict, unless the interface
        /// itself sets a larger `arp_ignore` that answers (3 to 7).
        #[test]
        fn strict_all_makes_every_interface_strict(ignore in 0u32..10, announce in 0u32..10) {
            prop_assert!(ArpConf::effective(conf(1, 2), conf(ignore, announce)).strict() || ignore > 2);
        }
    }
}
