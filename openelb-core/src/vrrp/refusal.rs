//! Why the agent refused an advert that decoded, and how many times, per instance: the LAN is not trusted, so
//! every advert that is not acted upon is counted under one typed reason with a stable label for metrics
//! (`openelb_vrrp_adverts_dropped_total{reason}`). Packets that do not even decode are the wire codec's
//! `DecodeFailure`s, counted apart.

use std::fmt;

/// One reason per refused advert. Checks run in the order of the variants (`NoInstance` aside), and the first
/// that fails names the drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AdvertRefusal {
    /// The instance is in Initialize (not started, or its link is down).
    NotRunning,
    /// TTL / hop limit is not 255: the packet crossed a router (RFC 5798 §7.1).
    Ttl,
    /// Another VRID than the instance's (only when an instance is fed directly).
    Vrid,
    /// The source is not of the instance's address family.
    Family,
    /// Our own advert, looped back by multicast.
    OwnAdvert,
    /// Sent neither to the family's VRRP group nor to this node's own address on the interface.
    BadDestination,
    /// The source is neither a node of the cluster nor a configured unicast peer: a foreign router (or a spoof).
    UnknownSource,
    /// A known peer advertises none of our VIPs, nor any other VIP of our plan: a foreign router on a cluster
    /// node (typically the apiserver's keepalived on a control-plane node).
    ForeignAddresses,
    /// A known peer advertises VIPs of our plan, but none of this instance's: it runs another plan for a
    /// moment (VRIDs reused while plans propagate), or disagrees on VRIDs.
    OtherGroup,
    /// Priority 255 claims address ownership; we never own VIPs, so no peer of ours sends it.
    Priority255,
    /// Max_Adver_Int outside the configured bounds: adopting it would let one advert silence failover.
    IntervalOutOfBounds,
    /// Priority 0 (release) from a node other than the master this backup follows: a spoofed release would hand
    /// the VIPs over after Skew_Time. A backup that has not heard its master yet waits for Master_Down_Interval.
    ReleaseNotFromMaster,
    /// No instance of this node runs that (interface, family, VRID).
    NoInstance,
}

impl AdvertRefusal {
    pub const ALL: [AdvertRefusal; 13] = [
        AdvertRefusal::NotRunning,
        AdvertRefusal::Ttl,
        AdvertRefusal::Vrid,
        AdvertRefusal::Family,
        AdvertRefusal::OwnAdvert,
        AdvertRefusal::BadDestination,
        AdvertRefusal::UnknownSource,
        AdvertRefusal::ForeignAddresses,
        AdvertRefusal::OtherGroup,
        AdvertRefusal::Priority255,
        AdvertRefusal::IntervalOutOfBounds,
        AdvertRefusal::ReleaseNotFromMaster,
        AdvertRefusal::NoInstance,
    ];

    /// Stable label (metrics, logs); never renamed.
    pub fn as_str(self) -> &'static str {
        match self {
            AdvertRefusal::NotRunning => "not_running",
            AdvertRefusal::Ttl => "ttl",
            AdvertRefusal::Vrid => "vrid",
            AdvertRefusal::Family => "family",
            AdvertRefusal::OwnAdvert => "own_advert",
            AdvertRefusal::BadDestination => "bad_destination",
            AdvertRefusal::UnknownSource => "unknown_source",
            AdvertRefusal::ForeignAddresses => "foreign_addresses",
            AdvertRefusal::OtherGroup => "other_group",
            AdvertRefusal::Priority255 => "priority_255",
            AdvertRefusal::IntervalOutOfBounds => "interval_out_of_bounds",
            AdvertRefusal::ReleaseNotFromMaster => "release_not_from_master",
            AdvertRefusal::NoInstance => "no_instance",
        }
    }

    /// Worth a warning: something on the LAN misbehaves. The rest is routine (our own loopback, another
    /// group's adverts, a plan in flight) or reported another way (foreign routers have their own report).
    pub fn is_notable(self) -> bool {
        matches!(
            self,
            AdvertRefusal::Ttl
                | AdvertRefusal::Family
                | AdvertRefusal::BadDestination
                | AdvertRefusal::Priority255
                | AdvertRefusal::IntervalOutOfBounds
                | AdvertRefusal::ReleaseNotFromMaster
        )
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for AdvertRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A counter per [`AdvertRefusal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RefusalCounts([u64; AdvertRefusal::ALL.len()]);

impl RefusalCounts {
    pub fn get(&self, reason: AdvertRefusal) -> u64 {
        self.0[reason.index()]
    }

    pub fn add(&mut self, reason: AdvertRefusal) {
        let c = &mut self.0[reason.index()];
        *c = c.saturating_add(1);
    }

    pub fn total(&self) -> u64 {
        self.0.iter().fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// Drops of [`AdvertRefusal::is_notable`] reasons.
    pub fn notable(&self) -> u64 {
        self.iter().filter(|(r, _)| r.is_notable()).fold(0u64, |a, (_, n)| a.saturating_add(n))
    }

    /// Every reason with its count, zeros included, in [`AdvertRefusal::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (AdvertRefusal, u64)> + '_ {
        AdvertRefusal::ALL.iter().map(|r| (*r, self.get(*r)))
    }

    /// `self - earlier`, per reason (counters only grow; saturates at zero otherwise).
    pub fn since(&self, earlier: &RefusalCounts) -> RefusalCounts {
        let mut out = RefusalCounts::default();
        for (i, (a, b)) in self.0.iter().zip(earlier.0.iter()).enumerate() {
            out.0[i] = a.saturating_sub(*b);
        }
        out
    }
}

impl fmt::Display for RefusalCounts {
    /// `unknown_source 3, ttl 1` (non-zero reasons only), or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (r, n) in self.iter().filter(|(_, n)| *n > 0) {
            if !first {
                f.write_str(", ")?;
            }
            write!(f, "{r} {n}")?;
            first = false;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}
