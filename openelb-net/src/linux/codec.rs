//! Adapters from the socket code to the [`crate::wire`] codecs, so the Linux backend depends on one small
//! surface: an advert payload to send, a received packet to decode, and the two announcement frames.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use openelb_core::vrrp::{Advert, Received};

use crate::wire::{self, MacAddr, WireError};

/// The VRRPv3 message (no IP header) for `advert` sent from `src` to `dst`, checksum included.
pub(crate) fn emit_advert(src: IpAddr, dst: IpAddr, advert: &Advert) -> Result<Vec<u8>, WireError> {
    wire::vrrp::emit(advert, src, dst)
}

/// A whole IPv4 packet as a raw IPv4 socket delivers it; None if it is not a valid advert.
pub(crate) fn parse_ipv4_packet(pkt: &[u8]) -> Option<Received> {
    wire::vrrp::parse_ipv4_packet(pkt).ok()
}

/// An IPv6 advert payload with the addresses and hop limit from ancillary data; None if invalid.
pub(crate) fn parse_ipv6_payload(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, payload: &[u8]) -> Option<Received> {
    wire::vrrp::parse_ipv6_payload(payload, src, dst, hop_limit).ok()
}

/// A gratuitous ARP request (sender = target = `ip`, broadcast): the form Linux clients update entries from.
pub(crate) fn garp(mac: MacAddr, ip: Ipv4Addr) -> Vec<u8> {
    wire::arp::gratuitous(mac, ip, wire::arp::GratuitousForm::Request)
}

/// An unsolicited NA for `ip` sent from `ip` itself: valid because VIPs are added with `nodad`, so the
/// address is usable the moment it is on the interface.
pub(crate) fn unsolicited_na(mac: MacAddr, ip: Ipv6Addr) -> Vec<u8> {
    wire::icmpv6::unsolicited_na_frame(mac, ip, ip)
}
