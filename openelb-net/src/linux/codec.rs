//! Adapters from the socket code to the [`crate::wire`] codecs, so the Linux backend depends on one small
//! surface: an advert payload to send, a received packet to decode, and the two announcement frames.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use openelb_core::vrrp::Advert;

use crate::ops::Incoming;
use crate::wire::vrrp::{self, V4Checksum};
use crate::wire::{self, MacAddr, WireError};

/// The VRRPv3 message (no IP header) for `advert` sent from `src` to `dst`, checksum included.
pub(crate) fn emit_advert(src: IpAddr, dst: IpAddr, advert: &Advert) -> Result<Vec<u8>, WireError> {
    wire::encode(advert, vrrp::Context::new(src, dst), &[])
}

/// A whole IPv4 packet as a raw IPv4 socket delivers it.
pub(crate) fn decode_ipv4_packet(pkt: &[u8]) -> Incoming {
    vrrp::receive_ipv4(pkt, V4Checksum::PseudoHeader).into()
}

/// An IPv6 advert payload with the addresses and hop limit from ancillary data.
pub(crate) fn decode_ipv6_payload(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, payload: &[u8]) -> Incoming {
    vrrp::receive(payload, vrrp::Context::new(IpAddr::V6(src), IpAddr::V6(dst)), hop_limit).into()
}

/// A gratuitous ARP request (sender = target = `ip`, broadcast): the form Linux clients update entries from.
pub(crate) fn garp(mac: MacAddr, ip: Ipv4Addr) -> Result<Vec<u8>, WireError> {
    wire::arp::gratuitous(mac, ip, wire::arp::GratuitousForm::Request)
}

/// An unsolicited NA for `ip` sent from `ip` itself: valid because VIPs are added with `nodad`, so the
/// address is usable the moment it is on the interface.
pub(crate) fn unsolicited_na(mac: MacAddr, ip: Ipv6Addr) -> Result<Vec<u8>, WireError> {
    wire::icmpv6::unsolicited_na_frame(mac, ip, ip)
}
