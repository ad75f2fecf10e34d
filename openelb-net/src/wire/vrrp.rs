//! VRRPv3 advertisements (RFC 5798 §5) for IPv4 and IPv6.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! |                 IPvX Address(es): 4 or 16 bytes each          |
//! ```
//!
//! # Checksum
//!
//! RFC 5798 §5.2.8: "the 16-bit one's complement of the one's complement sum of the entire VRRP message
//! starting with the version field and a 'pseudo-header' as defined in Section 8.1 of RFC 2460. The next
//! header field in the 'pseudo-header' should be set to 112". For IPv6 that is unambiguous. For IPv4,
//! keepalived (the peer we must interoperate with, DESIGN §4) reads it as the IPv4 pseudo-header: in
//! `keepalived/vrrp/vrrp.c` (acassen/keepalived), both `vrrp_check_packet` on receive and
//! `check_tx_checksum` build an `ipv4_phdr_t { src = ip->saddr, dst = ip->daddr, zero = 0,
//! proto = IPPROTO_VRRP, len = htons(8 + naddr * 4) }`, feed it to `in_csum`, then continue the sum over the
//! VRRP message (older releases always used 224.0.0.18 as `dst`, which only differs for unicast peers).
//! Its `v3_checksum_as_v2` option switches to the message-only sum that Cisco and RFC 9568 (which obsoletes
//! RFC 5798 and drops the IPv4 pseudo-header) use. So we *send* the pseudo-header form
//! ([`V4Checksum::PseudoHeader`], keepalived's default) and [`parse_with`] can additionally accept the
//! message-only form for such peers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use openelb_core::vrrp::{Advert, Received};

use super::ipv4::Ipv4Repr;
use super::{WireError, be16, checksum, need};

pub const PROTOCOL: u8 = 112;
pub const VERSION: u8 = 3;
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// Version/type, VRID, priority, count, reserved + Max Adver Int, checksum.
pub const HEADER_LEN: usize = 8;
/// TTL / hop limit an advert is sent with and must arrive with (RFC 5798 §5.1.1.3, §7.1).
pub const TTL: u8 = 255;
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// Max Adver Int is a 12-bit field of centiseconds.
pub const MAX_ADVERT_INT: u16 = 0x0fff;
/// Count IPvX Addr is one byte.
pub const MAX_ADDRESSES: usize = 255;
/// DSCP/ECN byte keepalived puts on IPv4 adverts (IP precedence "internetwork control").
pub const TOS: u8 = 0xc0;

const WHAT: &str = "VRRP advert";

/// Which IPv4 checksum form (see the module docs). IPv6 always uses its pseudo-header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum V4Checksum {
    /// RFC 5798 read as keepalived does: IPv4 pseudo-header + message.
    #[default]
    PseudoHeader,
    /// The message alone: RFC 9568, Cisco, keepalived's `v3_checksum_as_v2`.
    MessageOnly,
}

/// A checked view of a VRRP message: at least the 8-byte fixed part. The address list is checked against
/// the count by [`parse_with`], not here, so the view can describe a malformed advert in a log line.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        need(WHAT, buffer.as_ref(), HEADER_LEN)?;
        Ok(Packet { buffer })
    }

    fn byte(&self, at: usize) -> u8 {
        self.buffer.as_ref().get(at).copied().unwrap_or(0)
    }
    pub fn version(&self) -> u8 {
        self.byte(0) >> 4
    }
    pub fn kind(&self) -> u8 {
        self.byte(0) & 0x0f
    }
    pub fn vrid(&self) -> u8 {
        self.byte(1)
    }
    pub fn priority(&self) -> u8 {
        self.byte(2)
    }
    pub fn count(&self) -> u8 {
        self.byte(3)
    }
    /// The low 12 bits; the 4 reserved bits are ignored on receipt (RFC 5798 §5.2.6).
    pub fn max_advert_int(&self) -> u16 {
        be16(self.buffer.as_ref(), 4) & MAX_ADVERT_INT
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 6)
    }
    pub fn address_bytes(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or_default()
    }
}

/// The checksum's starting sum: the pseudo-header for the family, or nothing for the message-only form.
fn pseudo_sum(src: IpAddr, dst: IpAddr, len: usize, v4: V4Checksum) -> Result<u64, WireError> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => match v4 {
            V4Checksum::PseudoHeader => {
                let len =
                    u16::try_from(len).map_err(|_| WireError::BadLength { what: WHAT, expected: 65535, got: len })?;
                Ok(checksum::pseudo_header_v4(s, d, PROTOCOL, len))
            }
            V4Checksum::MessageOnly => Ok(0),
        },
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let len = u32::try_from(len).map_err(|_| WireError::BadLength { what: WHAT, expected: 65535, got: len })?;
            Ok(checksum::pseudo_header_v6(s, d, PROTOCOL, len))
        }
        (_, d) => Err(WireError::FamilyMismatch { what: WHAT, addr: d }),
    }
}

/// The VRRP message for `advert` from `src` to `dst` (224.0.0.18 / ff02::12 or a unicast peer): what a raw
/// socket of protocol 112 sends; the kernel adds the IP header, which must carry [`TTL`].
pub fn emit(advert: &Advert, src: IpAddr, dst: IpAddr) -> Result<Vec<u8>, WireError> {
    emit_with(advert, src, dst, V4Checksum::PseudoHeader)
}

/// [`emit`] with a chosen IPv4 checksum form (ignored for IPv6).
pub fn emit_with(advert: &Advert, src: IpAddr, dst: IpAddr, v4: V4Checksum) -> Result<Vec<u8>, WireError> {
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(WireError::FamilyMismatch { what: WHAT, addr: dst });
    }
    if let Some(&addr) = advert.addresses.iter().find(|a| a.is_ipv4() != src.is_ipv4()) {
        return Err(WireError::FamilyMismatch { what: WHAT, addr });
    }
    let count = u8::try_from(advert.addresses.len()).map_err(|_| WireError::TooManyAddresses {
        what: WHAT,
        count: advert.addresses.len(),
        max: MAX_ADDRESSES,
    })?;
    if advert.max_advert_int > MAX_ADVERT_INT {
        return Err(WireError::IntervalTooLarge { what: WHAT, centis: advert.max_advert_int });
    }
    let addr_len = if src.is_ipv4() { 4 } else { 16 };
    let mut out = Vec::with_capacity(HEADER_LEN + advert.addresses.len() * addr_len);
    out.push((VERSION << 4) | TYPE_ADVERTISEMENT);
    out.push(advert.vrid);
    out.push(advert.priority);
    out.push(count);
    out.extend_from_slice(&advert.max_advert_int.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    for addr in &advert.addresses {
        match addr {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
    }
    let sum = checksum::finish(checksum::sum(pseudo_sum(src, dst, out.len(), v4)?, &out));
    if let Some(field) = out.get_mut(6..8) {
        field.copy_from_slice(&sum.to_be_bytes());
    }
    Ok(out)
}

/// Decodes a VRRP message received from `src` for `dst`, accepting only keepalived's default IPv4 checksum
/// form. The family of the addresses follows `src`.
pub fn parse(payload: &[u8], src: IpAddr, dst: IpAddr) -> Result<Advert, WireError> {
    parse_with(payload, src, dst, &[V4Checksum::PseudoHeader])
}

/// [`parse`] accepting any of the IPv4 checksum forms in `accept` (ignored for IPv6). Checks, in order:
/// the fixed part is present, version 3, type 1 (advertisement), length = 8 + count × address size,
/// checksum.
pub fn parse_with(payload: &[u8], src: IpAddr, dst: IpAddr, accept: &[V4Checksum]) -> Result<Advert, WireError> {
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(WireError::FamilyMismatch { what: WHAT, addr: dst });
    }
    let packet = Packet::new_checked(payload)?;
    if packet.version() != VERSION {
        return Err(WireError::BadVersion { what: WHAT, expected: VERSION, got: packet.version() });
    }
    if packet.kind() != TYPE_ADVERTISEMENT {
        return Err(WireError::BadType { what: WHAT, expected: "1 (advertisement)", got: packet.kind().into() });
    }
    let addr_len = if src.is_ipv4() { 4 } else { 16 };
    let expected_len = HEADER_LEN + usize::from(packet.count()) * addr_len;
    if payload.len() != expected_len {
        return Err(WireError::BadLength { what: WHAT, expected: expected_len, got: payload.len() });
    }
    verify_checksum(payload, src, dst, accept, packet.checksum())?;
    let addresses = packet
        .address_bytes()
        .chunks_exact(addr_len)
        .map(|c| match (<[u8; 4]>::try_from(c), <[u8; 16]>::try_from(c)) {
            (Ok(v4), _) => IpAddr::V4(Ipv4Addr::from(v4)),
            (_, Ok(v6)) => IpAddr::V6(Ipv6Addr::from(v6)),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        })
        .collect();
    Ok(Advert { vrid: packet.vrid(), priority: packet.priority(), max_advert_int: packet.max_advert_int(), addresses })
}

fn verify_checksum(payload: &[u8], src: IpAddr, dst: IpAddr, accept: &[V4Checksum], got: u16) -> Result<(), WireError> {
    let forms: &[V4Checksum] = if src.is_ipv6() || accept.is_empty() { &[V4Checksum::PseudoHeader] } else { accept };
    let mut first_expected = None;
    for &form in forms {
        let start = pseudo_sum(src, dst, payload.len(), form)?;
        if checksum::verify(checksum::sum(start, payload)) {
            return Ok(());
        }
        if first_expected.is_none() {
            let acc = checksum::sum(start, payload.get(..6).unwrap_or_default());
            first_expected = Some(checksum::finish(checksum::sum(acc, payload.get(8..).unwrap_or_default())));
        }
    }
    Err(WireError::BadChecksum { what: WHAT, expected: first_expected.unwrap_or(0), got })
}

/// Decodes what a raw IPv4 socket of protocol 112 delivers: the IP header (checksum verified, options
/// skipped), then the advert. The TTL is returned, not checked: the caller drops adverts whose TTL is not
/// [`TTL`] (RFC 5798 §7.1) and can count them.
pub fn parse_ipv4_packet(bytes: &[u8]) -> Result<Received, WireError> {
    parse_ipv4_packet_with(bytes, &[V4Checksum::PseudoHeader])
}

/// [`parse_ipv4_packet`] accepting any of the IPv4 checksum forms in `accept`.
pub fn parse_ipv4_packet_with(bytes: &[u8], accept: &[V4Checksum]) -> Result<Received, WireError> {
    let (ip, payload) = Ipv4Repr::parse_bytes(bytes)?;
    if ip.protocol != PROTOCOL {
        return Err(WireError::BadProtocol { what: "IPv4 header", expected: PROTOCOL, got: ip.protocol });
    }
    let advert = parse_with(payload, IpAddr::V4(ip.src), IpAddr::V4(ip.dst), accept)?;
    Ok(Received { src: IpAddr::V4(ip.src), ttl: ip.ttl, advert })
}

/// Decodes what a raw IPv6 socket of protocol 112 delivers: the advert alone (the kernel strips the
/// header; `src`/`dst` come from `recvmsg`'s address and `IPV6_PKTINFO`, the hop limit from
/// `IPV6_HOPLIMIT`). The hop limit is returned, not checked, as in [`parse_ipv4_packet`]. Our own checksum
/// check stays even when the socket sets `IPV6_CHECKSUM`, because the in-memory segment has no kernel.
pub fn parse_ipv6_payload(payload: &[u8], src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8) -> Result<Received, WireError> {
    let advert = parse(payload, IpAddr::V6(src), IpAddr::V6(dst))?;
    Ok(Received { src: IpAddr::V6(src), ttl: hop_limit, advert })
}

/// A whole IPv4 datagram (TTL 255, TOS 0xc0, protocol 112) carrying the advert: for `IP_HDRINCL` sockets,
/// captures and the in-memory segment.
pub fn ipv4_packet(advert: &Advert, src: Ipv4Addr, dst: Ipv4Addr) -> Result<Vec<u8>, WireError> {
    let payload = emit(advert, IpAddr::V4(src), IpAddr::V4(dst))?;
    Ipv4Repr { src, dst, protocol: PROTOCOL, ttl: TTL, dscp_ecn: TOS, payload_len: payload.len() }.packet(&payload)
}

/// A whole IPv6 packet (hop limit 255, next header 112) carrying the advert.
pub fn ipv6_packet(advert: &Advert, src: Ipv6Addr, dst: Ipv6Addr) -> Result<Vec<u8>, WireError> {
    let payload = emit(advert, IpAddr::V6(src), IpAddr::V6(dst))?;
    super::ipv6::Ipv6Repr { src, dst, next_header: PROTOCOL, hop_limit: TTL, payload_len: payload.len() }
        .packet(&payload)
}
