//! Addresses no host can hold as a VIP. A pool that includes one is refused by validation and gives out no new
//! addresses; a Service cannot request one; an allocation of one found in `status.used` is dropped and its
//! Service released (it never worked: the kernel refuses such an address on a NIC or never answers ARP/NDP
//! for it, and a speaker would elect a master and send GARPs for nothing).
//!
//! Each kind is one block of addresses, so a whole range is checked in constant time ([`first_in`]).

use std::fmt;
use std::net::IpAddr;

use crate::addr::{AddrRange, ip_to_u128, u128_to_ip};
use crate::model::IpFamily;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reserved {
    /// `0.0.0.0`, `::`: "any address", never a destination.
    Unspecified,
    /// `255.255.255.255`: the limited broadcast.
    Broadcast,
    /// `224.0.0.0/4`, `ff00::/8`; 224.0.0.18 and ff02::12 are VRRP's own groups.
    Multicast,
    /// `127.0.0.0/8`, `::1`: never leaves the host.
    Loopback,
    /// `169.254.0.0/16`, `fe80::/10`: valid on one link only, never routed, picked by hosts themselves.
    LinkLocal,
    /// `::ffff:0:0/96`: an IPv4 address written as IPv6; Linux refuses it as an interface address.
    Ipv4Mapped,
}

impl Reserved {
    /// The block as CIDR text, for messages.
    pub fn block(self, family: IpFamily) -> &'static str {
        match (self, family) {
            (Reserved::Unspecified, IpFamily::V4) => "0.0.0.0/32",
            (Reserved::Unspecified, IpFamily::V6) => "::/128",
            (Reserved::Broadcast, _) => "255.255.255.255/32",
            (Reserved::Multicast, IpFamily::V4) => "224.0.0.0/4",
            (Reserved::Multicast, IpFamily::V6) => "ff00::/8",
            (Reserved::Loopback, IpFamily::V4) => "127.0.0.0/8",
            (Reserved::Loopback, IpFamily::V6) => "::1/128",
            (Reserved::LinkLocal, IpFamily::V4) => "169.254.0.0/16",
            (Reserved::LinkLocal, IpFamily::V6) => "fe80::/10",
            (Reserved::Ipv4Mapped, _) => "::ffff:0:0/96",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Reserved::Unspecified => "the unspecified address",
            Reserved::Broadcast => "the limited broadcast address",
            Reserved::Multicast => "a multicast address",
            Reserved::Loopback => "a loopback address",
            Reserved::LinkLocal => "a link-local address",
            Reserved::Ipv4Mapped => "an IPv4-mapped IPv6 address",
        }
    }
}

/// An address of a [`Reserved`] kind; shows as "127.0.0.1 is a loopback address (127.0.0.0/8), which no host
/// can hold as a VIP".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReservedIp {
    pub ip: IpAddr,
    pub kind: Reserved,
}

impl ReservedIp {
    /// "a loopback address (127.0.0.0/8)".
    pub fn what(&self) -> String {
        format!("{} ({})", self.kind.name(), self.kind.block(IpFamily::of(&self.ip)))
    }

    /// "contains 127.0.0.1, a loopback address (127.0.0.0/8), which no host can hold as a VIP": for a range.
    pub fn contained(&self) -> String {
        format!("contains {}, {}, {NO_HOST}", self.ip, self.what())
    }
}

const NO_HOST: &str = "which no host can hold as a VIP";

impl fmt::Display for ReservedIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is {}, {NO_HOST}", self.ip, self.what())
    }
}

/// `(family, first, last, kind)` of every reserved block, as integers ([`ip_to_u128`]).
const BLOCKS: [(IpFamily, u128, u128, Reserved); 10] = [
    (IpFamily::V4, 0, 0, Reserved::Unspecified),
    (IpFamily::V4, 0x7f00_0000, 0x7fff_ffff, Reserved::Loopback),
    (IpFamily::V4, 0xa9fe_0000, 0xa9fe_ffff, Reserved::LinkLocal),
    (IpFamily::V4, 0xe000_0000, 0xefff_ffff, Reserved::Multicast),
    (IpFamily::V4, 0xffff_ffff, 0xffff_ffff, Reserved::Broadcast),
    (IpFamily::V6, 0, 0, Reserved::Unspecified),
    (IpFamily::V6, 1, 1, Reserved::Loopback),
    (IpFamily::V6, 0xffff_0000_0000, 0xffff_ffff_ffff, Reserved::Ipv4Mapped),
    (IpFamily::V6, 0xfe80 << 112, (0xfebf << 112) | ((1 << 112) - 1), Reserved::LinkLocal),
    (IpFamily::V6, 0xff00 << 112, u128::MAX, Reserved::Multicast),
];

/// The kind of `ip`, or `None` when a host may hold it.
pub fn classify(ip: IpAddr) -> Option<ReservedIp> {
    let family = IpFamily::of(&ip);
    let v = ip_to_u128(&ip);
    BLOCKS
        .iter()
        .find(|(f, lo, hi, _)| *f == family && (*lo..=*hi).contains(&v))
        .map(|&(_, _, _, kind)| ReservedIp { ip, kind })
}

/// The lowest reserved address in `range`, or `None` when every address in it may be held.
pub fn first_in(range: &AddrRange) -> Option<ReservedIp> {
    let family = range.family();
    let (start, end) = (ip_to_u128(&range.start()), ip_to_u128(&range.end()));
    BLOCKS
        .iter()
        .filter(|(f, lo, hi, _)| *f == family && *lo <= end && start <= *hi)
        .filter_map(|&(_, lo, _, kind)| Some(ReservedIp { ip: u128_to_ip(family, lo.max(start))?, kind }))
        .min_by_key(|r| ip_to_u128(&r.ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> Option<Reserved> {
        classify(s.parse().unwrap()).map(|r| r.kind)
    }

    #[test]
    fn every_kind_and_its_edges() {
        assert_eq!(kind("0.0.0.0"), Some(Reserved::Unspecified));
        assert_eq!(kind("0.0.0.1"), None);
        assert_eq!(kind("255.255.255.255"), Some(Reserved::Broadcast));
        assert_eq!(kind("255.255.255.254"), None);
        assert_eq!(kind("224.0.0.18"), Some(Reserved::Multicast));
        assert_eq!(kind("239.255.255.255"), Some(Reserved::Multicast));
        assert_eq!(kind("223.255.255.255"), None);
        assert_eq!(kind("240.0.0.0"), None);
        assert_eq!(kind("127.0.0.1"), Some(Reserved::Loopback));
        assert_eq!(kind("126.255.255.255"), None);
        assert_eq!(kind("169.254.1.1"), Some(Reserved::LinkLocal));
        assert_eq!(kind("169.255.0.0"), None);
        assert_eq!(kind("::"), Some(Reserved::Unspecified));
        assert_eq!(kind("::1"), Some(Reserved::Loopback));
        assert_eq!(kind("::2"), None);
        assert_eq!(kind("ff02::12"), Some(Reserved::Multicast));
        assert_eq!(kind("fe80::1"), Some(Reserved::LinkLocal));
        assert_eq!(kind("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), Some(Reserved::LinkLocal));
        assert_eq!(kind("fec0::"), None);
        assert_eq!(kind("::ffff:192.0.2.1"), Some(Reserved::Ipv4Mapped));
        assert_eq!(kind("::fffe:ffff:ffff"), None);
        assert_eq!(kind("192.0.2.1"), None);
        assert_eq!(kind("2001:db8::1"), None);
    }

    #[test]
    fn message_names_address_kind_and_block() {
        let r = classify("224.0.0.18".parse().unwrap()).unwrap();
        assert_eq!(r.to_string(), "224.0.0.18 is a multicast address (224.0.0.0/4), which no host can hold as a VIP");
        assert_eq!(
            r.contained(),
            "contains 224.0.0.18, a multicast address (224.0.0.0/4), which no host can hold as a VIP"
        );
    }

    #[test]
    fn first_in_a_range_is_the_lowest_reserved_address() {
        let first = |s: &str| first_in(&AddrRange::parse(s).unwrap()).map(|r| (r.ip.to_string(), r.kind));
        assert_eq!(first("0.0.0.0/0"), Some(("0.0.0.0".into(), Reserved::Unspecified)));
        assert_eq!(first("126.0.0.0-128.0.0.0"), Some(("127.0.0.0".into(), Reserved::Loopback)));
        assert_eq!(first("127.0.0.5-127.0.0.9"), Some(("127.0.0.5".into(), Reserved::Loopback)));
        assert_eq!(first("192.0.2.0/24"), None);
        assert_eq!(first("255.255.255.254/31"), Some(("255.255.255.255".into(), Reserved::Broadcast)));
        assert_eq!(first("fe80::/10"), Some(("fe80::".into(), Reserved::LinkLocal)));
        assert_eq!(first("::/0"), Some(("::".into(), Reserved::Unspecified)));
        assert_eq!(first("::2-::ffff:0:1"), Some(("::ffff:0.0.0.0".into(), Reserved::Ipv4Mapped)));
        assert_eq!(first("2001:db8::/32"), None);
    }
}
