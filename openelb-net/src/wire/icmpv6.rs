//! The two NDP messages of ICMPv6 we need (RFC 4861), read and written through pnet's NS/NA views: the
//! unsolicited Neighbor Advertisement a new VIP holder multicasts (§7.2.6), and Neighbor Solicitation /
//! Advertisement parsing for layer2 mode, which answers neighbour discovery for VIPs from user space.
//! Options are walked here, not by pnet (see `docs/wire.md`).

use std::net::Ipv6Addr;

use pnet_packet::Packet as _;
use pnet_packet::icmpv6::ndp::{
    MutableNeighborAdvertPacket, MutableNeighborSolicitPacket, NdpOption, NdpOptionType, NeighborAdvertPacket,
    NeighborSolicitPacket,
};
use pnet_packet::icmpv6::{Icmpv6Code, Icmpv6Packet, Icmpv6Type};

use super::ethernet::{ETHERTYPE_IPV6, EthernetRepr, MacAddr};
use super::ipv6::{self, Ipv6Repr, NEXT_HEADER_ICMPV6};
use super::{Repr, WireError, array, checksum, need};

/// Byte offsets of an NS or NA message's fields.
pub mod field {
    use std::ops::Range;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    /// R, S, O flags of an NA (reserved in an NS), then 29 reserved bits.
    pub const FLAGS: usize = 4;
    pub const TARGET: Range<usize> = 8..24;
    pub const OPTIONS: usize = 24;
}

pub const TYPE_NEIGHBOR_SOLICIT: u8 = 135;
pub const TYPE_NEIGHBOR_ADVERT: u8 = 136;
/// NDP packets are sent with, and only accepted with, hop limit 255 (RFC 4861 §7.1), proving they were not
/// forwarded by a router.
pub const HOP_LIMIT: u8 = 255;
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// Type, code, checksum, flags/reserved, target address.
pub const NDP_MIN_LEN: usize = field::OPTIONS;
/// Type, code, checksum: what every ICMPv6 message has.
const ICMP_HEADER_LEN: usize = field::FLAGS;
/// A source/target link-layer address option for Ethernet: type, length (in 8-byte units), MAC.
const LLA_OPTION_LEN: usize = 8;
const OPT_SOURCE_LLA: u8 = 1;
const OPT_TARGET_LLA: u8 = 2;
const FLAG_ROUTER: u8 = 0x80;
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;

const WHAT: &str = "ICMPv6 NDP message";

/// The IPv6 addresses the checksum's pseudo-header covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Context {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
}

/// A checked view of an ICMPv6 message: at least type, code and checksum.
#[derive(Debug)]
pub struct Packet<'a> {
    inner: Icmpv6Packet<'a>,
}

impl<'a> Packet<'a> {
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, WireError> {
        let inner = Icmpv6Packet::new(bytes).ok_or(WireError::Truncated {
            what: WHAT,
            need: ICMP_HEADER_LEN,
            have: bytes.len(),
        })?;
        Ok(Packet { inner })
    }
    pub fn msg_type(&self) -> u8 {
        self.inner.get_icmpv6_type().0
    }
    pub fn code(&self) -> u8 {
        self.inner.get_icmpv6_code().0
    }
    pub fn checksum(&self) -> u16 {
        self.inner.get_checksum()
    }
    /// The whole message, header included.
    pub fn bytes(&self) -> &[u8] {
        self.inner.packet()
    }
    /// Verifies the checksum over the IPv6 pseudo-header (next header 58) and the message, as RFC 1071 does.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let b = self.bytes();
        let Ok(len) = u32::try_from(b.len()) else { return false };
        checksum::verify(checksum::sum(checksum::pseudo_header_v6(src, dst, NEXT_HEADER_ICMPV6, len), b))
    }
    /// The checksum as it should be (computed with the field taken as zero).
    pub fn expected_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> u16 {
        pnet_packet::icmpv6::checksum(&self.inner, &src, &dst)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NeighborAdvert {
    pub router: bool,
    pub solicited: bool,
    /// Override: replace the receiver's cached link-layer address, which is what a takeover needs.
    pub override_flag: bool,
    pub target: Ipv6Addr,
    pub target_mac: Option<MacAddr>,
}

impl NeighborAdvert {
    /// The unsolicited NA of RFC 4861 §7.2.6 for a takeover: Override set (so existing entries move to
    /// `mac`), Solicited and Router clear, the Target Link-Layer Address option present.
    pub fn unsolicited(mac: MacAddr, vip: Ipv6Addr) -> Self {
        NeighborAdvert { router: false, solicited: false, override_flag: true, target: vip, target_mac: Some(mac) }
    }

    fn flags(&self) -> u8 {
        (if self.router { FLAG_ROUTER } else { 0 })
            | (if self.solicited { FLAG_SOLICITED } else { 0 })
            | (if self.override_flag { FLAG_OVERRIDE } else { 0 })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NeighborSolicit {
    pub target: Ipv6Addr,
    pub source_mac: Option<MacAddr>,
}

/// An NDP message as values. Options other than the Ethernet link-layer address are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NdpRepr {
    Solicit(NeighborSolicit),
    Advert(NeighborAdvert),
}

impl NdpRepr {
    fn lla_option(&self) -> Option<(u8, MacAddr)> {
        match *self {
            NdpRepr::Solicit(ns) => ns.source_mac.map(|m| (OPT_SOURCE_LLA, m)),
            NdpRepr::Advert(na) => na.target_mac.map(|m| (OPT_TARGET_LLA, m)),
        }
    }
}

fn truncated(need: usize, have: usize) -> WireError {
    WireError::Truncated { what: WHAT, need, have }
}

impl Repr for NdpRepr {
    type Context = Context;
    type View<'a> = Packet<'a>;

    fn view(bytes: &[u8]) -> Result<Packet<'_>, WireError> {
        Packet::new_checked(bytes)
    }

    /// The validity checks of RFC 4861 §7.1.1 and §7.1.2 that need no state (hop limit is the caller's,
    /// see [`parse_frame`]).
    fn parse(packet: &Packet<'_>, Context { src, dst }: Context) -> Result<Self, WireError> {
        let kind = packet.msg_type();
        if kind != TYPE_NEIGHBOR_SOLICIT && kind != TYPE_NEIGHBOR_ADVERT {
            return Err(WireError::BadType { what: WHAT, expected: "135 (NS) or 136 (NA)", got: kind.into() });
        }
        if !packet.verify_checksum(src, dst) {
            let expected = packet.expected_checksum(src, dst);
            return Err(WireError::BadChecksum { what: WHAT, expected, got: packet.checksum() });
        }
        if packet.code() != 0 {
            return Err(WireError::Malformed { what: WHAT, reason: "ICMP code is not 0" });
        }
        let message = packet.bytes();
        need(WHAT, message, NDP_MIN_LEN)?;
        if kind == TYPE_NEIGHBOR_SOLICIT {
            let ns = NeighborSolicitPacket::new(message).ok_or(truncated(NDP_MIN_LEN, message.len()))?;
            let target = checked_target(ns.get_target_addr())?;
            let source_mac = link_layer_option(ns.get_options_raw(), OPT_SOURCE_LLA)?;
            if src.is_unspecified() && source_mac.is_some() {
                return Err(WireError::Malformed {
                    what: WHAT,
                    reason: "solicitation from the unspecified address carries a source link-layer address",
                });
            }
            Ok(NdpRepr::Solicit(NeighborSolicit { target, source_mac }))
        } else {
            let na = NeighborAdvertPacket::new(message).ok_or(truncated(NDP_MIN_LEN, message.len()))?;
            let target = checked_target(na.get_target_addr())?;
            let flags = na.get_flags();
            let target_mac = link_layer_option(na.get_options_raw(), OPT_TARGET_LLA)?;
            let solicited = flags & FLAG_SOLICITED != 0;
            if solicited && dst.is_multicast() {
                return Err(WireError::Malformed { what: WHAT, reason: "solicited advertisement sent to multicast" });
            }
            Ok(NdpRepr::Advert(NeighborAdvert {
                router: flags & FLAG_ROUTER != 0,
                solicited,
                override_flag: flags & FLAG_OVERRIDE != 0,
                target,
                target_mac,
            }))
        }
    }

    fn buffer_len(&self) -> usize {
        NDP_MIN_LEN + if self.lla_option().is_some() { LLA_OPTION_LEN } else { 0 }
    }

    /// The ICMPv6 message from `src` to `dst`, checksum included.
    fn emit(&self, buf: &mut [u8], Context { src, dst }: Context) -> Result<(), WireError> {
        let len = self.buffer_len();
        let have = buf.len();
        let message = buf.get_mut(..len).ok_or(truncated(len, have))?;
        let options: Vec<NdpOption> = self
            .lla_option()
            .map(|(kind, mac)| NdpOption { option_type: NdpOptionType(kind), length: 1, data: mac.0.to_vec() })
            .into_iter()
            .collect();
        match *self {
            NdpRepr::Solicit(ns) => {
                let mut p = MutableNeighborSolicitPacket::new(&mut *message).ok_or(truncated(len, have))?;
                p.set_icmpv6_type(Icmpv6Type(TYPE_NEIGHBOR_SOLICIT));
                p.set_icmpv6_code(Icmpv6Code(0));
                p.set_checksum(0);
                p.set_reserved(0);
                p.set_target_addr(ns.target);
                p.set_options(&options);
            }
            NdpRepr::Advert(na) => {
                let mut p = MutableNeighborAdvertPacket::new(&mut *message).ok_or(truncated(len, have))?;
                p.set_icmpv6_type(Icmpv6Type(TYPE_NEIGHBOR_ADVERT));
                p.set_icmpv6_code(Icmpv6Code(0));
                p.set_checksum(0);
                p.set_flags(na.flags());
                p.set_reserved(0);
                p.set_target_addr(na.target);
                p.set_options(&options);
            }
        }
        let sum = Packet::new_checked(message)?.expected_checksum(src, dst);
        if let Some(field) = message.get_mut(field::CHECKSUM) {
            field.copy_from_slice(&sum.to_be_bytes());
        }
        Ok(())
    }
}

/// RFC 4861 §7.1: the target of an NS or NA is never a multicast address.
fn checked_target(target: Ipv6Addr) -> Result<Ipv6Addr, WireError> {
    if target.is_multicast() {
        return Err(WireError::Malformed { what: WHAT, reason: "target address is multicast" });
    }
    Ok(target)
}

/// Finds the first Ethernet link-layer address option of `wanted` type. Every option must have a non-zero
/// length and fit in the message (RFC 4861 §7.1.1/§7.1.2), or the whole message is refused. Walked here
/// rather than with pnet's option iterator, which overflows on an option length of 32 units or more.
fn link_layer_option(mut options: &[u8], wanted: u8) -> Result<Option<MacAddr>, WireError> {
    let mut found = None;
    while !options.is_empty() {
        need(WHAT, options, 2)?;
        let (kind, units) = (options.first().copied().unwrap_or(0), options.get(1).copied().unwrap_or(0));
        if units == 0 {
            return Err(WireError::Malformed { what: WHAT, reason: "option with length 0" });
        }
        let len = usize::from(units) * 8;
        need(WHAT, options, len)?;
        if kind == wanted && units == 1 && found.is_none() {
            found = Some(MacAddr(array(options, 2)));
        }
        options = options.get(len..).unwrap_or_default();
    }
    Ok(found)
}

/// The full Ethernet frame (86 bytes) of an unsolicited NA announcing `vip` at `mac`: Ethernet
/// 33:33:00:00:00:01, IPv6 from `src_ip` to ff02::1 with hop limit 255. RFC 4861 §7.2.6 / §4.4 require
/// `src_ip` to be an address of the sending interface; keepalived uses the interface's link-local
/// address, which is always valid (the VIP itself also works, once it is on the interface and past DAD).
pub fn unsolicited_na_frame(mac: MacAddr, src_ip: Ipv6Addr, vip: Ipv6Addr) -> Result<Vec<u8>, WireError> {
    let na = NdpRepr::Advert(NeighborAdvert::unsolicited(mac, vip));
    let icmp = super::encode(&na, Context { src: src_ip, dst: ALL_NODES }, &[])?;
    let ip = Ipv6Repr {
        src: src_ip,
        dst: ALL_NODES,
        next_header: NEXT_HEADER_ICMPV6,
        hop_limit: HOP_LIMIT,
        payload_len: icmp.len(),
    };
    let packet = super::encode(&ip, (), &icmp)?;
    let eth = EthernetRepr { dst: MacAddr::ipv6_multicast(ALL_NODES), src: mac, ethertype: ETHERTYPE_IPV6 };
    super::encode(&eth, (), &packet)
}

/// An NDP message with the headers it arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NdpFrame {
    pub ethernet: EthernetRepr,
    pub ip: Ipv6Repr,
    pub ndp: NdpRepr,
}

/// Decodes an Ethernet frame carrying an NS or NA directly after the fixed IPv6 header (no extension
/// headers), refusing any hop limit other than 255.
pub fn parse_frame(frame: &[u8]) -> Result<NdpFrame, WireError> {
    let eth_view = super::ethernet::Frame::new_checked(frame)?;
    let ethernet = EthernetRepr::parse(&eth_view, ())?;
    if ethernet.ethertype != ETHERTYPE_IPV6 {
        return Err(WireError::BadType { what: "Ethernet frame", expected: "0x86dd (IPv6)", got: ethernet.ethertype });
    }
    let ip_view = ipv6::Packet::new_checked(eth_view.payload())?;
    let ip = Ipv6Repr::parse(&ip_view, ())?;
    if ip.next_header != NEXT_HEADER_ICMPV6 {
        return Err(WireError::BadProtocol { what: "IPv6 header", expected: NEXT_HEADER_ICMPV6, got: ip.next_header });
    }
    if ip.hop_limit != HOP_LIMIT {
        return Err(WireError::BadHopLimit { what: WHAT, got: ip.hop_limit });
    }
    let ndp = super::decode(ip_view.payload(), Context { src: ip.src, dst: ip.dst })?;
    Ok(NdpFrame { ethernet, ip, ndp })
}
