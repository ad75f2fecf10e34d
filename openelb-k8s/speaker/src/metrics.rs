//! The speaker's Prometheus metrics. Per-group series are labelled by VRID, interface and address family; the
//! driver keeps one [`GroupMetrics`] handle per running instance, so counting an advert is an atomic add on a
//! cached handle, never a lookup in the family's lock.

use std::sync::atomic::AtomicU64;

use openelb_core::model::IpFamily;
use openelb_core::vrrp::state::State;
use openelb_k8s::serve::KindLabels;
use openelb_net::wire::DecodeFailure;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// One VRRP instance: the labels of every per-group series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct GroupLabels {
    pub vrid: u8,
    /// The NIC the group runs on (the plan's interface spec while it is not resolved).
    pub interface: String,
    /// `IPv4` or `IPv6`.
    pub family: String,
}

impl GroupLabels {
    pub fn new(vrid: u8, interface: &str, family: IpFamily) -> Self {
        GroupLabels { vrid, interface: interface.to_string(), family: family.to_string() }
    }
}

/// `reason` of `openelb_vrrp_packets_dropped_total` ([`DecodeFailure::as_str`]: packets that did not decode) and
/// of `openelb_vrrp_adverts_dropped_total` (`openelb_core::vrrp::refusal::AdvertRefusal::as_str`: adverts that
/// decoded and the agent refused).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DropLabels {
    pub reason: &'static str,
}

/// Labels of the foreign-router series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, EncodeLabelSet)]
pub struct VridLabels {
    pub family: String,
    pub vrid: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct FamilyLabels {
    pub family: String,
}

/// The value of `openelb_speaker_vrrp_state`.
pub fn state_value(state: State) -> i64 {
    match state {
        State::Initialize => 0,
        State::Backup => 1,
        State::Master => 2,
    }
}

/// Every metric of one speaker process. Cloning shares the series (they are reference-counted atomics), so a
/// default instance that is never registered simply counts into nothing.
#[derive(Debug, Clone, Default)]
pub struct SpeakerMetrics {
    pub vrrp_state: Family<GroupLabels, Gauge>,
    pub transitions: Family<GroupLabels, Counter>,
    pub adverts_sent: Family<GroupLabels, Counter>,
    pub adverts_received: Family<GroupLabels, Counter>,
    pub garps: Family<GroupLabels, Counter>,
    /// VIPs configured on this node's interfaces right now.
    pub vips: Gauge,
    /// 1 while the Kubernetes API answers, 0 while it does not (registered only with the Kubernetes source).
    pub api_connected: Gauge,
    /// Events dropped because the queue to the publisher was full.
    pub events_dropped: Counter,
    /// Cluster snapshots that changed the objects the speaker plans from.
    pub reloads: Counter,
    /// Packets off the VRRP sockets that did not decode, by [`DecodeFailure`].
    pub packets_dropped: Family<DropLabels, Counter>,
    /// Watched objects that did not decode, by kind (registered only with the Kubernetes source).
    pub objects_undecodable: Family<KindLabels, Counter>,
    /// Adverts that decoded and the VRRP agent refused, by `AdvertRefusal` (per-instance counters summed, plus
    /// adverts for no instance of this node).
    pub adverts_dropped: Family<DropLabels, Counter>,
    /// Answers a master held back by its rate limit.
    pub replies_suppressed: Counter,
    /// Foreign routers in use per (family, VRID): the number of sources seen.
    pub foreign_routers: Family<VridLabels, Gauge>,
    pub foreign_adverts: Family<FamilyLabels, Counter>,
    /// Approximations of the running plan, by kind.
    pub plan_issues: Family<KindLabels, Gauge>,
    /// Plans that did not come back (a panic in planning).
    pub plan_failures: Counter,
    /// How long the last plan took, in seconds.
    pub plan_seconds: Gauge<f64, AtomicU64>,
    /// Addresses VRRP adverts are accepted from.
    pub known_peers: Gauge,
    /// Node Events not recorded because of their rate limit (their text is in the log).
    pub events_suppressed: Counter,
    /// [`crate::ipvs_filter::FilterState`] as a number.
    pub ipvs_arp_filter: Gauge,
    /// VIPs the ARP filter keeps this node quiet about.
    pub ipvs_arp_filtered: Gauge,
    /// Attempts to set up, update or remove the ARP filter that failed.
    pub ipvs_arp_filter_failures: Counter,
}

impl SpeakerMetrics {
    /// Registers everything but `openelb_speaker_api_connected` (see [`SpeakerMetrics::register_api`]).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "openelb_speaker_vrrp_state",
            "State of a VRRP group on this node: 0 initialize, 1 backup, 2 master",
            self.vrrp_state.clone(),
        );
        registry.register(
            "openelb_speaker_vrrp_transitions",
            "VRRP state changes of a group on this node",
            self.transitions.clone(),
        );
        registry.register(
            "openelb_speaker_vrrp_adverts_sent",
            "VRRP advertisements this node sent for a group",
            self.adverts_sent.clone(),
        );
        registry.register(
            "openelb_speaker_vrrp_adverts_received",
            "VRRP advertisements from peers handed to a group of this node",
            self.adverts_received.clone(),
        );
        registry.register(
            "openelb_speaker_garps",
            "Gratuitous ARPs / unsolicited neighbour advertisements sent for a group's VIPs",
            self.garps.clone(),
        );
        registry.register("openelb_speaker_vips", "VIPs configured on this node's interfaces", self.vips.clone());
        registry.register(
            "openelb_speaker_events_dropped",
            "Kubernetes Events not published because the queue to the publisher was full",
            self.events_dropped.clone(),
        );
        registry.register(
            "openelb_speaker_reloads",
            "Changed cluster snapshots the speaker re-planned from",
            self.reloads.clone(),
        );
        registry.register(
            "openelb_vrrp_adverts_dropped",
            "VRRP adverts that decoded but were screened out by the agent (unknown source, destination, priority \
             255, interval bounds, foreign addresses, ...), by reason; packets that did not even decode are \
             openelb_vrrp_packets_dropped_total",
            self.adverts_dropped.clone(),
        );
        registry.register(
            "openelb_vrrp_replies_suppressed",
            "Adverts and announcement bursts a master held back by its answer rate limit",
            self.replies_suppressed.clone(),
        );
        registry.register(
            "openelb_vrrp_foreign_routers",
            "Sources of a foreign VRRP router seen on this segment per family and VRID (VRIDs our plan avoids)",
            self.foreign_routers.clone(),
        );
        registry.register(
            "openelb_vrrp_foreign_adverts",
            "VRRP adverts attributed to foreign routers (not from a known peer, or for none of our VIPs)",
            self.foreign_adverts.clone(),
        );
        registry.register(
            "openelb_vrrp_plan_issues",
            "Approximations in the running VRRP plan by kind (merged groups, unplaced VIPs, ...)",
            self.plan_issues.clone(),
        );
        registry.register(
            "openelb_speaker_plan_failures",
            "Plans that failed (a panic in planning); the running plan stayed",
            self.plan_failures.clone(),
        );
        registry.register(
            "openelb_speaker_plan_duration_seconds",
            "How long the last VRRP plan took (computed beside the VRRP loop, not in it)",
            self.plan_seconds.clone(),
        );
        registry.register(
            "openelb_vrrp_known_peers",
            "Addresses VRRP adverts are accepted from (Node addresses, speaker Leases, unicast peers)",
            self.known_peers.clone(),
        );
        registry.register(
            "openelb_speaker_events_suppressed",
            "Node Events not recorded because of their rate limit (the log has every report)",
            self.events_suppressed.clone(),
        );
        registry.register(
            "openelb_ipvs_arp_filter",
            "kube-proxy IPVS mode and ARP on this node: 0 nothing to do (no kube-ipvs0, or strict ARP), 1 filtering \
             ARP for VIPs held elsewhere, 2 every node answers ARP for every VIP: filter turned off \
             (--ipvs-arp-filter off), 3 every node answers: the filter cannot be set up",
            self.ipvs_arp_filter.clone(),
        );
        registry.register(
            "openelb_ipvs_arp_filtered_vips",
            "VIPs this node does not answer ARP for because another node holds them (kube-proxy IPVS mode)",
            self.ipvs_arp_filtered.clone(),
        );
        registry.register(
            "openelb_ipvs_arp_filter_failures",
            "Attempts to set up, update or remove the ARP filter (nftables table arp openelb-ipvs-arp) that failed",
            self.ipvs_arp_filter_failures.clone(),
        );
        // Every reason from the start, so a rate over a reason that never happened is 0 rather than absent.
        for reason in DecodeFailure::ALL {
            self.decode_failures(reason);
        }
        registry.register(
            "openelb_vrrp_packets_dropped",
            "Packets received on the VRRP sockets and dropped by validation, by reason",
            self.packets_dropped.clone(),
        );
    }

    /// The counter of packets dropped for `reason` (a cached handle: take it once, not per packet).
    pub fn decode_failures(&self, reason: DecodeFailure) -> Counter {
        self.packets_dropped.get_or_create_owned(&DropLabels { reason: reason.as_str() })
    }

    /// Registers `openelb_speaker_api_connected`; only meaningful when the speaker reads the Kubernetes API.
    pub fn register_api(&self, registry: &mut Registry) {
        registry.register(
            "openelb_speaker_api_connected",
            "1 while the Kubernetes API server answers the speaker's watches, 0 while it does not",
            self.api_connected.clone(),
        );
        registry.register(
            "openelb_objects_undecodable",
            "Watched objects that did not decode as their kind (counted once per distinct error), by kind",
            self.objects_undecodable.clone(),
        );
    }

    /// Handles on the series of one group (creates them; call once per instance, not per packet).
    pub fn group(&self, labels: GroupLabels) -> GroupMetrics {
        GroupMetrics {
            state: self.vrrp_state.get_or_create_owned(&labels),
            transitions: self.transitions.get_or_create_owned(&labels),
            sent: self.adverts_sent.get_or_create_owned(&labels),
            received: self.adverts_received.get_or_create_owned(&labels),
            garps: self.garps.get_or_create_owned(&labels),
            labels,
        }
    }

    /// Drops the state series of a group that no longer runs here (its counters stay: they only grow).
    pub fn forget_group(&self, labels: &GroupLabels) {
        self.vrrp_state.remove(labels);
    }
}

/// Cached handles on one group's series.
#[derive(Debug, Clone)]
pub struct GroupMetrics {
    pub labels: GroupLabels,
    pub state: Gauge,
    pub transitions: Counter,
    pub sent: Counter,
    pub received: Counter,
    pub garps: Counter,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn group_handles_count_into_the_registered_families() {
        let m = SpeakerMetrics::default();
        let mut registry = Registry::default();
        m.register(&mut registry);
        m.register_api(&mut registry);
        let g = m.group(GroupLabels::new(7, "eth0", IpFamily::V4));
        g.sent.inc();
        g.sent.inc();
        g.state.set(state_value(State::Master));
        m.api_connected.set(1);
        let t = text(&registry);
        assert!(
            t.contains(r#"openelb_speaker_vrrp_adverts_sent_total{vrid="7",interface="eth0",family="IPv4"} 2"#),
            "{t}"
        );
        assert!(t.contains(r#"openelb_speaker_vrrp_state{vrid="7",interface="eth0",family="IPv4"} 2"#), "{t}");
        assert!(t.contains("openelb_speaker_api_connected 1"), "{t}");

        m.forget_group(&g.labels);
        let t = text(&registry);
        assert!(!t.contains("openelb_speaker_vrrp_state{"), "{t}");
        assert!(t.contains("openelb_speaker_vrrp_adverts_sent_total{"), "counters stay: {t}");
    }

    #[test]
    fn every_drop_reason_is_there_from_the_start() {
        let m = SpeakerMetrics::default();
        let mut registry = Registry::default();
        m.register(&mut registry);
        m.decode_failures(DecodeFailure::BadTtl).inc();
        let t = text(&registry);
        for reason in DecodeFailure::ALL {
            let n = if reason == DecodeFailure::BadTtl { 1 } else { 0 };
            let line = format!("openelb_vrrp_packets_dropped_total{{reason=\"{}\"}} {n}", reason.as_str());
            assert!(t.contains(&line), "{line} in {t}");
        }
    }

    #[test]
    fn state_values_follow_the_documented_encoding() {
        assert_eq!(state_value(State::Initialize), 0);
        assert_eq!(state_value(State::Backup), 1);
        assert_eq!(state_value(State::Master), 2);
    }
}
