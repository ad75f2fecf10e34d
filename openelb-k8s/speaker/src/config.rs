//! The speaker's settings and the parsers for their command-line forms. Parsers return messages that quote the
//! value and say what is wrong with it; clap adds the flag name in front.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use openelb_core::vrrp::agent::AgentConfig;
use openelb_core::vrrp::consts::MAX_ADVERT_INT;
use openelb_core::vrrp::plan::{DEFAULT_VRIDS, PlanConfig};
use openelb_core::vrrp::state::{
    DEFAULT_ADVERT_INTERVAL_CS, DEFAULT_GARP_COUNT, DEFAULT_GARP_SPACING, DEFAULT_PREEMPT_DELAY,
};
use openelb_k8s::duration::parse_duration;
pub use openelb_k8s::vrrp::parse_vrid_range;

/// Where the addresses the speaker announces come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddressSource {
    /// Allocate from the objects as the controller would (manifests: there is no controller, and every node
    /// computes the same answer from the same files).
    #[default]
    Allocate,
    /// Only what the controller wrote to each Service's `status.loadBalancer.ingress` (Kubernetes: the
    /// controller is the single writer of addresses; the speaker never picks one).
    Ingress,
}

/// What the speaker does when kube-proxy's IPVS mode would make every node answer ARP for every VIP
/// (docs/ipvs.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum IpvsArpFilter {
    /// Filter the kernel's ARP answers for VIPs this node does not hold (an nftables table in the arp family).
    #[default]
    Auto,
    /// Never filter; the situation is still reported (log, Node Event, metric).
    Off,
}

/// Everything one speaker process needs besides the cluster objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerConfig {
    /// This node's name as in the Node objects: the planner's priorities are per node name.
    pub node_name: String,
    /// Interface used for every VIP-mode pool on this node, whatever the pools say. Only resolution is
    /// overridden: the plan keeps the pools' specs so that every node still computes the same plan.
    pub interface: Option<String>,
    /// Advertisement_Interval in centiseconds (1..=4095).
    pub advert_interval_cs: u16,
    pub vrids: RangeInclusive<u8>,
    pub vrid_offset: u8,
    pub garp_count: u32,
    pub garp_spacing: Duration,
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// When non-empty, adverts go to these addresses instead of the VRRP multicast group.
    pub unicast_peers: Vec<IpAddr>,
    pub addresses: AddressSource,
    pub ipvs_arp_filter: IpvsArpFilter,
}

impl SpeakerConfig {
    pub fn new(node_name: impl Into<String>) -> Self {
        SpeakerConfig {
            node_name: node_name.into(),
            interface: None,
            advert_interval_cs: DEFAULT_ADVERT_INTERVAL_CS,
            vrids: DEFAULT_VRIDS,
            vrid_offset: 0,
            garp_count: DEFAULT_GARP_COUNT,
            garp_spacing: DEFAULT_GARP_SPACING,
            preempt: true,
            preempt_delay: DEFAULT_PREEMPT_DELAY,
            unicast_peers: Vec::new(),
            addresses: AddressSource::Allocate,
            ipvs_arp_filter: IpvsArpFilter::Auto,
        }
    }

    pub fn agent_config(&self) -> AgentConfig {
        AgentConfig {
            advert_interval: self.advert_interval_cs,
            preempt: self.preempt,
            preempt_delay: self.preempt_delay,
            garp_count: self.garp_count,
            garp_spacing: self.garp_spacing,
            peer_interval_bounds: None,
            ..AgentConfig::default()
        }
    }

    pub fn plan_config(&self) -> PlanConfig {
        PlanConfig { vrids: self.vrids.clone(), offset: self.vrid_offset, ..PlanConfig::default() }
    }

    /// The unicast peers of one family (adverts of a family can only go to peers of that family).
    pub fn peers_of(&self, v4: bool) -> Vec<IpAddr> {
        self.unicast_peers.iter().filter(|p| p.is_ipv4() == v4).copied().collect()
    }
}

/// The advert interval travels in centiseconds in a 12-bit field: 10ms..=40.95s, a multiple of 10ms.
pub fn parse_advert_interval(value: &str) -> Result<u16, String> {
    let d = parse_duration(value)?;
    let micros = d.as_micros();
    if !micros.is_multiple_of(10_000) {
        return Err(format!("{value:?}: must be a multiple of 10ms (VRRPv3 carries centiseconds)"));
    }
    let cs = micros / 10_000;
    if cs == 0 || cs > u128::from(MAX_ADVERT_INT) {
        return Err(format!("{value:?}: must be between 10ms and 40.95s"));
    }
    u16::try_from(cs).map_err(|_| format!("{value:?}: must be between 10ms and 40.95s"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advert_interval_is_whole_centiseconds_within_the_12_bit_field() {
        assert_eq!(parse_advert_interval("100ms"), Ok(10));
        assert_eq!(parse_advert_interval("10ms"), Ok(1));
        assert_eq!(parse_advert_interval("1s"), Ok(100));
        assert_eq!(parse_advert_interval("40.95s"), Ok(4095));
        for (bad, why) in [("5ms", "multiple of 10ms"), ("15ms", "multiple"), ("0ms", "between"), ("41s", "between")] {
            let err = parse_advert_interval(bad).unwrap_err();
            assert!(err.contains(why) && err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn configs_carry_the_settings_to_the_core() {
        let mut c = SpeakerConfig::new("n1");
        c.vrids = 10..=20;
        c.vrid_offset = 3;
        c.advert_interval_cs = 100;
        c.unicast_peers = vec!["192.0.2.4".parse().unwrap(), "2001:db8::4".parse().unwrap()];
        assert_eq!(c.plan_config().vrids, 10..=20);
        assert_eq!(c.plan_config().offset, 3);
        assert_eq!(c.agent_config().advert_interval, 100);
        assert_eq!(c.peers_of(true), vec!["192.0.2.4".parse::<IpAddr>().unwrap()]);
        assert_eq!(c.peers_of(false), vec!["2001:db8::4".parse::<IpAddr>().unwrap()]);
    }
}
