//! VRRPv3 (RFC 5798) without I/O: the per-instance state machine ([`state`]), the planner that turns VIPs and
//! their candidate nodes into VRRP instances with VRIDs and priorities ([`plan`]), and the per-node agent that
//! runs many instances, screens what the LAN sends and turns the instances' decisions into actions ([`agent`]).
//! Time enters as [`Time`] values, packets as [`Advert`] representations (the byte codec lives in openelb-net),
//! and effects leave as actions.

use std::net::IpAddr;
use std::time::Duration;

use crate::model::IpFamily;

pub mod agent;
pub mod consts;
pub mod event;
pub mod foreign;
pub mod inputs;
pub mod plan;
pub mod refusal;
pub mod state;
pub mod transition;

/// Monotonic time as an offset from an arbitrary origin chosen by the caller (a real clock in the speaker,
/// virtual time in the simulator). Never read from the system here.
pub type Time = Duration;

/// Priority a master sends when it gives up (RFC 5798 §6.4.3 / §6.5.3).
pub const PRIORITY_RELEASE: u8 = 0;
/// Priority of the address owner; we never own VIPs (they are added on takeover), so we never use it, and an
/// advert claiming it is dropped.
pub const PRIORITY_OWNER: u8 = 255;

/// The VRRP multicast group of `family` ([`consts::MULTICAST_V4`] / [`consts::MULTICAST_V6`]): where adverts go
/// unless unicast peers are configured.
pub fn group_address(family: IpFamily) -> IpAddr {
    match family {
        IpFamily::V4 => IpAddr::V4(consts::MULTICAST_V4),
        IpFamily::V6 => IpAddr::V6(consts::MULTICAST_V6),
    }
}

/// A VRRPv3 advertisement as the state machine sees it (RFC 5798 §5.2): version 3, type 1 are implied.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Advert {
    pub vrid: u8,
    pub priority: u8,
    /// Max_Advert_Int in centiseconds; only the low 12 bits travel on the wire.
    pub max_advert_int: u16,
    /// The virtual addresses, all of one family.
    pub addresses: Vec<IpAddr>,
}

/// An advertisement as received: the sender's primary address breaks priority ties (RFC 5798 §6.4.3) and must
/// be a known peer; the destination must be the family's group or our own address (unicast peers).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Received {
    pub src: IpAddr,
    /// The IP destination: [`group_address`] of the family, or this node's address for a unicast peer.
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 hop limit; RFC 5798 requires 255, otherwise the packet is dropped.
    pub ttl: u8,
    pub advert: Advert,
}
