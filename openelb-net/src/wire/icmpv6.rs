//! The two NDP messages of ICMPv6 we need (RFC 4861): the unsolicited Neighbor Advertisement a new VIP
//! holder multicasts (§7.2.6), and Neighbor Solicitation / Advertisement parsing for layer2 mode, which
//! answers neighbour discovery for VIPs from user space.

use std::net::Ipv6Addr;

use super::ethernet::{ETHERTYPE_IPV6, EthernetRepr, MacAddr};
use super::ipv6::{Ipv6Repr, NEXT_HEADER_ICMPV6};
use super::{WireError, array, be16, checksum, need};

pub const TYPE_NEIGHBOR_SOLICIT: u8 = 135;
pub const TYPE_NEIGHBOR_ADVERT: u8 = 136;
/// NDP packets are sent with, and only accepted with, hop limit 255 (RFC 4861 §7.1), proving they were not
/// forwarded by a router.
pub const HOP_LIMIT: u8 = 255;
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// Type, code, checksum, flags/reserved, target address.
pub const NDP_MIN_LEN: usize = 24;
/// A source/target link-layer address option for Ethernet: type, length (in 8-byte units), MAC.
const LLA_OPTION_LEN: usize = 8;
const OPT_SOURCE_LLA: u8 = 1;
const OPT_TARGET_LLA: u8 = 2;
const FLAG_ROUTER: u8 = 0x80;
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;

const WHAT: &str = "ICMPv6 NDP message";

/// A checked view of an ICMPv6 message: at least type, code and checksum.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        need(WHAT, buffer.as_ref(), 4)?;
        Ok(Packet { buffer })
    }
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref().first().copied().unwrap_or(0)
    }
    pub fn code(&self) -> u8 {
        self.buffer.as_ref().get(1).copied().unwrap_or(0)
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }
    /// Verifies the checksum over the IPv6 pseudo-header (next header 58) and the message.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let Ok(len) = u32::try_from(b.len()) else { return false };
        checksum::verify(checksum::sum(checksum::pseudo_header_v6(src, dst, NEXT_HEADER_ICMPV6, len), b))
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
    /// Decodes an ICMPv6 message received from `src` for `dst`, with the validity checks of RFC 4861
    /// §7.1.1 and §7.1.2 that need no state (hop limit is the caller's, see [`parse_frame`]).
    pub fn parse(message: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> Result<Self, WireError> {
        let packet = Packet::new_checked(message)?;
        let kind = packet.msg_type();
        if kind != TYPE_NEIGHBOR_SOLICIT && kind != TYPE_NEIGHBOR_ADVERT {
            return Err(WireError::BadType { what: WHAT, expected: "135 (NS) or 136 (NA)", got: kind.into() });
        }
        if !packet.verify_checksum(src, dst) {
            let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
            let acc = checksum::sum(
                checksum::pseudo_header_v6(src, dst, NEXT_HEADER_ICMPV6, len),
                message.get(..2).unwrap_or_default(),
            );
            let expected = checksum::finish(checksum::sum(acc, message.get(4..).unwrap_or_default()));
            return Err(WireError::BadChecksum { what: WHAT, expected, got: packet.checksum() });
        }
        if packet.code() != 0 {
            return Err(WireError::Malformed { what: WHAT, reason: "ICMP code is not 0" });
        }
        need(WHAT, message, NDP_MIN_LEN)?;
        let target = Ipv6Addr::from(array::<16>(message, 8));
        if target.is_multicast() {
            return Err(WireError::Malformed { what: WHAT, reason: "target address is multicast" });
        }
        let flags = message.get(4).copied().unwrap_or(0);
        let lla_type = if kind == TYPE_NEIGHBOR_SOLICIT { OPT_SOURCE_LLA } else { OPT_TARGET_LLA };
        let mac = link_layer_option(message.get(NDP_MIN_LEN..).unwrap_or_default(), lla_type)?;
        if kind == TYPE_NEIGHBOR_SOLICIT {
            if src.is_unspecified() && mac.is_some() {
                return Err(WireError::Malformed {
                    what: WHAT,
                    reason: "solicitation from the unspecified address carries a source link-layer address",
                });
            }
            Ok(NdpRepr::Solicit(NeighborSolicit { target, source_mac: mac }))
        } else {
            let solicited = flags & FLAG_SOLICITED != 0;
            if solicited && dst.is_multicast() {
                return Err(WireError::Malformed { what: WHAT, reason: "solicited advertisement sent to multicast" });
            }
            Ok(NdpRepr::Advert(NeighborAdvert {
                router: flags & FLAG_ROUTER != 0,
                solicited,
                override_flag: flags & FLAG_OVERRIDE != 0,
                target,
                target_mac: mac,
            }))
        }
    }

    pub fn buffer_len(&self) -> usize {
        let has_mac = match self {
            NdpRepr::Solicit(ns) => ns.source_mac.is_some(),
            NdpRepr::Advert(na) => na.target_mac.is_some(),
        };
        NDP_MIN_LEN + if has_mac { LLA_OPTION_LEN } else { 0 }
    }

    /// The ICMPv6 message from `src` to `dst`, checksum included.
    pub fn emit(&self, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
        let (kind, flags, target, option) = match *self {
            NdpRepr::Solicit(ns) => (TYPE_NEIGHBOR_SOLICIT, 0, ns.target, ns.source_mac.map(|m| (OPT_SOURCE_LLA, m))),
            NdpRepr::Advert(na) => {
                let flags = (if na.router { FLAG_ROUTER } else { 0 })
                    | (if na.solicited { FLAG_SOLICITED } else { 0 })
                    | (if na.override_flag { FLAG_OVERRIDE } else { 0 });
                (TYPE_NEIGHBOR_ADVERT, flags, na.target, na.target_mac.map(|m| (OPT_TARGET_LLA, m)))
            }
        };
        let mut out = Vec::with_capacity(self.buffer_len());
        out.extend_from_slice(&[kind, 0, 0, 0, flags, 0, 0, 0]);
        out.extend_from_slice(&target.octets());
        if let Some((opt, mac)) = option {
            out.extend_from_slice(&[opt, 1]);
            out.extend_from_slice(&mac.0);
        }
        // At most 32 bytes, so the length always fits.
        let len = u32::try_from(out.len()).unwrap_or(0);
        let sum = checksum::finish(checksum::sum(checksum::pseudo_header_v6(src, dst, NEXT_HEADER_ICMPV6, len), &out));
        if let Some(field) = out.get_mut(2..4) {
            field.copy_from_slice(&sum.to_be_bytes());
        }
        out
    }
}

/// Finds the first Ethernet link-layer address option of `wanted` type. Every option must have a non-zero
/// length and fit in the message (RFC 4861 §7.1.1/§7.1.2), or the whole message is refused.
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
pub fn unsolicited_na_frame(mac: MacAddr, src_ip: Ipv6Addr, vip: Ipv6Addr) -> Vec<u8> {
    let icmp = NdpRepr::Advert(NeighborAdvert::unsolicited(mac, vip)).emit(src_ip, ALL_NODES);
    let ip = Ipv6Repr {
        src: src_ip,
        dst: ALL_NODES,
        next_header: NEXT_HEADER_ICMPV6,
        hop_limit: HOP_LIMIT,
        payload_len: icmp.len(),
    };
    let mut packet = vec![0u8; super::ipv6::HEADER_LEN];
    // The buffer is HEADER_LEN long and the payload 32 bytes, so emit cannot fail.
    if ip.emit(&mut packet).is_ok() {
        packet.extend_from_slice(&icmp);
    }
    EthernetRepr { dst: MacAddr::ipv6_multicast(ALL_NODES), src: mac, ethertype: ETHERTYPE_IPV6 }.frame(&packet)
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
    let (ethernet, payload) = EthernetRepr::parse_bytes(frame)?;
    if ethernet.ethertype != ETHERTYPE_IPV6 {
        return Err(WireError::BadType { what: "Ethernet frame", expected: "0x86dd (IPv6)", got: ethernet.ethertype });
    }
    let (ip, message) = Ipv6Repr::parse_bytes(payload)?;
    if ip.next_header != NEXT_HEADER_ICMPV6 {
        return Err(WireError::BadProtocol { what: "IPv6 header", expected: NEXT_HEADER_ICMPV6, got: ip.next_header });
    }
    if ip.hop_limit != HOP_LIMIT {
        return Err(WireError::BadHopLimit { what: WHAT, got: ip.hop_limit });
    }
    let ndp = NdpRepr::parse(message, ip.src, ip.dst)?;
    Ok(NdpFrame { ethernet, ip, ndp })
}
