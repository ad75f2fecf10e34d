//! The network operations the VIP-mode speaker drives, independent of how they are carried out.
//!
//! Design choice: [`NetOps`] uses return-position `impl Future + Send` (edition 2024), not boxed futures. The
//! speaker is generic over its backend (`Speaker<N: NetOps>`), so it needs no `dyn`, and every call stays
//! allocation-free. The futures are `Send` so the speaker can run them on a multi-threaded tokio runtime.
//!
//! The in-memory segment ([`crate::memory`]) deliberately does *not* implement this trait: it runs in virtual
//! time driven by the simulator (no tokio, no clock), so it exposes a synchronous API taking `now` instead.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use openelb_core::iface::{self, Iface};
use openelb_core::ipvs_arp::IpvsArp;
use openelb_core::model::IpFamily;
use openelb_core::vrrp::consts::TTL;
use openelb_core::vrrp::{Advert, Received};

use crate::wire::{DecodeFailure, MacAddr, WireError};

/// The interface-name rule is the core's ([`openelb_core::iface`]), shared with validation and the webhook.
pub use openelb_core::iface::{CAN_REACH_PREFIX, IFNAME_MAX};

/// How the operator (or an Eip) names the interface VIPs live on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IfaceSpec {
    /// A NIC name such as `eth0`.
    Name(String),
    /// `can_reach:<ip>`: the interface the kernel would use to reach `ip` (route lookup); never `lo`.
    CanReach(IpAddr),
    /// The interface that carries this address; used when an Eip names no interface (the node's InternalIP).
    Holding(IpAddr),
}

impl FromStr for IfaceSpec {
    type Err = NetError;

    /// Accepts what [`openelb_core::iface::parse`] accepts, exactly as written (no trimming), so an Eip that
    /// passed validation is never refused here. `Holding` has no text form: it is built from the node's
    /// InternalIP, never typed by a user.
    fn from_str(s: &str) -> Result<Self, NetError> {
        match iface::parse(s) {
            Ok(Iface::Name(name)) => Ok(IfaceSpec::Name(name.to_string())),
            Ok(Iface::CanReach(ip)) => Ok(IfaceSpec::CanReach(ip)),
            Err(e) => Err(NetError::BadSpec { spec: s.to_string(), reason: e.to_string() }),
        }
    }
}

impl fmt::Display for IfaceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IfaceSpec::Name(n) => f.write_str(n),
            IfaceSpec::CanReach(ip) => write!(f, "{CAN_REACH_PREFIX}{ip}"),
            IfaceSpec::Holding(ip) => write!(f, "interface holding {ip}"),
        }
    }
}

/// A resolved interface. The index is what the kernel APIs want; the name is what people read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    /// None for links without an Ethernet address (tun, lo); VIP mode cannot announce on those.
    pub mac: Option<MacAddr>,
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Errors of the network operations; each names the interface and address concerned.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("interface spec {spec:?}: {reason}")]
    BadSpec { spec: String, reason: String },
    #[error("interface {0:?} does not exist")]
    NoSuchInterface(String),
    #[error("interface index {0} does not exist")]
    NoSuchIndex(u32),
    #[error("can_reach:{0}: no route to this address")]
    NoRoute(IpAddr),
    #[error("can_reach:{0}: the route leaves via the loopback interface, which cannot carry VIPs")]
    RouteViaLoopback(IpAddr),
    #[error("no interface holds {0}")]
    NoInterfaceHolds(IpAddr),
    #[error("{iface}: no {family} address to use as the VRRP source")]
    NoSourceAddress { iface: String, family: IpFamily },
    #[error("{iface}: has no Ethernet address, cannot announce {ip}")]
    NoMac { iface: String, ip: IpAddr },
    #[error("{iface}: {ip} is configured but not by openelb, refusing to {op} it")]
    NotOurs { iface: String, ip: IpAddr, op: &'static str },
    #[error("advert for VRID {vrid}: {reason}")]
    BadAdvert { vrid: u8, reason: String },
    #[error("{iface}: {op} {subject}: netlink: {source}")]
    Netlink {
        iface: String,
        op: &'static str,
        subject: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("nftables table arp {table}: {op}: {source}")]
    ArpFilter {
        table: &'static str,
        op: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{iface}: {op}: {source}")]
    Io {
        iface: String,
        op: String,
        #[source]
        source: std::io::Error,
    },
}

/// The actions VIP mode takes on a node's network. Addresses are VIPs only: this trait never touches an
/// address it did not add (see [`NetOps::list_our_vips`] for how ours are recognised).
pub trait NetOps: Send + Sync {
    /// Receives adverts for one interface and family.
    type Receiver: AdvertReceiver;

    /// Resolves a NIC name, `can_reach:<ip>` or "the interface holding X" to an interface.
    fn resolve(&self, spec: &IfaceSpec) -> impl Future<Output = Result<Interface, NetError>> + Send;

    /// The VRRP source address of the family on the interface: its first IPv4 address that is not one of our
    /// VIPs, or its IPv6 link-local address (RFC 5798 §5.1.2.1 requires link-local for IPv6).
    fn source_address(
        &self,
        iface: &Interface,
        family: IpFamily,
    ) -> impl Future<Output = Result<IpAddr, NetError>> + Send;

    /// Adds `ip` as a /32 or /128, marked as ours. Adding a VIP we already hold succeeds (idempotent).
    fn add_vip(&self, iface: &Interface, ip: IpAddr) -> impl Future<Output = Result<(), NetError>> + Send;

    /// Adds every address of `ips` as [`NetOps::add_vip`] does, with one result per address in their order.
    /// Backends that can have many requests in flight do: a takeover of thousands of VIPs must not wait for one
    /// kernel round trip per address.
    fn add_vips(&self, iface: &Interface, ips: &[IpAddr]) -> impl Future<Output = Vec<Result<(), NetError>>> + Send {
        async move {
            let mut results = Vec::with_capacity(ips.len());
            for ip in ips {
                results.push(self.add_vip(iface, *ip).await);
            }
            results
        }
    }

    /// Removes our VIP; `Ok(false)` if it was not there. Refuses addresses that are not marked as ours.
    fn remove_vip(&self, iface: &Interface, ip: IpAddr) -> impl Future<Output = Result<bool, NetError>> + Send;

    /// Addresses on the interface marked as ours: what a restarting speaker finds and reconciles.
    fn list_our_vips(&self, iface: &Interface) -> impl Future<Output = Result<Vec<IpAddr>, NetError>> + Send;

    /// Sends one gratuitous ARP (IPv4) or unsolicited Neighbor Advertisement (IPv6) for `ip` from `mac`.
    /// Bursts and spacing are the caller's business.
    fn announce(
        &self,
        iface: &Interface,
        ip: IpAddr,
        mac: MacAddr,
    ) -> impl Future<Output = Result<(), NetError>> + Send;

    /// Sends a VRRPv3 advert from `src` to the VRRP multicast group, or to each unicast peer when `peers` is
    /// non-empty. The family is that of `src`; the advert's addresses must all be of that family.
    fn send_advert(
        &self,
        iface: &Interface,
        src: IpAddr,
        advert: &Advert,
        peers: &[IpAddr],
    ) -> impl Future<Output = Result<(), NetError>> + Send;

    /// Whether the interface can carry traffic: administratively up with a carrier. Backends without links
    /// (test fakes) keep the default: always up.
    fn link_up(&self, iface: &Interface) -> impl Future<Output = Result<bool, NetError>> + Send {
        let _ = iface;
        async { Ok(true) }
    }

    /// Whether kube-proxy's IPVS mode makes this node answer ARP for VIPs it does not hold: reads whether
    /// kube-ipvs0 exists and the ARP settings of `nics` (the interfaces VIPs are announced on). Backends without
    /// a kernel (test fakes) keep the default: no kube-ipvs0.
    fn ipvs_arp(&self, nics: &[Interface]) -> impl Future<Output = Result<IpvsArp, NetError>> + Send {
        let _ = nics;
        async { Ok(IpvsArp::NoIpvs) }
    }

    /// Makes the node keep quiet about exactly `drop`: no ARP reply for them, no ARP request with one of them as
    /// the sender; replaces what an earlier call (or an earlier process) set up, in one step.
    fn set_arp_filter(&self, drop: &[Ipv4Addr]) -> impl Future<Output = Result<(), NetError>> + Send {
        let _ = drop;
        async { Ok(()) }
    }

    /// Removes what [`NetOps::set_arp_filter`] set up; nothing to do when there is none.
    fn remove_arp_filter(&self) -> impl Future<Output = Result<(), NetError>> + Send {
        async { Ok(()) }
    }

    /// Opens a receiver for adverts arriving on the interface in the family (joins the VRRP group there).
    fn advert_receiver(&self, iface: &Interface, family: IpFamily) -> Result<Self::Receiver, NetError>;
}

/// One packet off a VRRP receiver: a valid advert, or why the packet was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Advert(Received),
    /// Failed validation (TTL ≠ 255, bad checksum, wrong version, ...): count it by reason, act on nothing.
    Dropped(DecodeFailure),
}

impl From<Result<Received, WireError>> for Incoming {
    /// A decoded advert stands only if it arrived with TTL / hop limit 255 (RFC 5798 §7.1).
    fn from(decoded: Result<Received, WireError>) -> Self {
        match decoded {
            Ok(rx) if rx.ttl == TTL => Incoming::Advert(rx),
            Ok(_) => Incoming::Dropped(DecodeFailure::BadTtl),
            Err(e) => Incoming::Dropped(e.kind()),
        }
    }
}

/// A stream of packets from the VRRP group: each is a valid advert or a drop with its reason; `Err` is an
/// I/O error of the socket.
pub trait AdvertReceiver: Send {
    fn recv(&mut self) -> impl Future<Output = Result<Incoming, NetError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_can_reach_and_names() {
        assert_eq!("eth0".parse::<IfaceSpec>().ok(), Some(IfaceSpec::Name("eth0".into())));
        assert_eq!(
            "can_reach:192.0.2.1".parse::<IfaceSpec>().ok(),
            Some(IfaceSpec::CanReach("192.0.2.1".parse().unwrap()))
        );
        assert_eq!(
            "can_reach:2001:db8::1".parse::<IfaceSpec>().ok(),
            Some(IfaceSpec::CanReach("2001:db8::1".parse().unwrap()))
        );
    }

    #[test]
    fn spec_rejects_bad_names() {
        for bad in [
            "",
            "can_reach:nope",
            "a-very-long-interface-name",
            "eth0:1",
            "et h0",
            "a/b",
            ".",
            "..",
            "eth\u{1}",
            "can_reach: 192.0.2.1",
            "can_reach:192.0.2.1 ",
            "can_reach:127.0.0.1",
            " eth0",
        ] {
            let err = bad.parse::<IfaceSpec>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    proptest::proptest! {
        /// The speaker refuses exactly what validation refuses: one rule (`openelb_core::iface::parse`).
        #[test]
        fn spec_accepts_exactly_what_validation_accepts(s in "(can_reach:)?[ -~\u{0}-\u{1f}\u{7f}é]{0,20}") {
            proptest::prop_assert_eq!(s.parse::<IfaceSpec>().is_ok(), iface::parse(&s).is_ok(), "{:?}", s);
        }
    }

    #[test]
    fn spec_display_round_trips() {
        for s in ["eth0", "can_reach:192.0.2.1", "can_reach:2001:db8::1"] {
            assert_eq!(s.parse::<IfaceSpec>().unwrap().to_string(), s);
        }
    }
}
