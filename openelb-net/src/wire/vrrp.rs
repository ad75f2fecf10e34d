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
//! The IPv4 checksum comes in two forms ([`V4Checksum`]): keepalived's reading of RFC 5798 (IPv4
//! pseudo-header + message), which we send, and the message alone (RFC 9568, Cisco), which we can accept.
//! Why: docs/wire.md#the-vrrpv3-checksum.
//!
//! No crate implements VRRPv3, so the view is ours, in the same shape as the pnet-backed headers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use openelb_core::vrrp::consts::{MAX_ADDRESSES, MAX_ADVERT_INT, PROTOCOL, TTL, VERSION};
use openelb_core::vrrp::{Advert, Received};

use super::ipv4::{self, Ipv4Repr};
use super::ipv6::Ipv6Repr;
use super::{Repr, WireError, be16, checksum, head_mut, need};

/// Byte offsets of the message's fields.
pub mod field {
    use std::ops::Range;

    /// Version (high 4 bits) and type (low 4 bits).
    pub const VERSION_TYPE: usize = 0;
    pub const VRID: usize = 1;
    pub const PRIORITY: usize = 2;
    pub const COUNT: usize = 3;
    /// 4 reserved bits, then the 12-bit Max Adver Int.
    pub const MAX_ADVERT_INT: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
    pub const ADDRESSES: usize = 8;
}

pub const TYPE_ADVERTISEMENT: u8 = 1;
/// Version/type, VRID, priority, count, reserved + Max Adver Int, checksum.
pub const HEADER_LEN: usize = field::ADDRESSES;
/// DSCP/ECN byte keepalived puts on IPv4 adverts (IP precedence "internetwork control").
pub const TOS: u8 = 0xc0;

const WHAT: &str = "VRRP advert";

/// Which IPv4 checksum form (docs/wire.md#the-vrrpv3-checksum). IPv6 always uses its pseudo-header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum V4Checksum {
    /// RFC 5798 read as keepalived does: IPv4 pseudo-header + message.
    #[default]
    PseudoHeader,
    /// The message alone: RFC 9568, Cisco, keepalived's `v3_checksum_as_v2`.
    MessageOnly,
    /// Parsing accepts either form; emitting writes [`V4Checksum::PseudoHeader`].
    Either,
}

impl V4Checksum {
    /// The forms to try, in order; the first one names the expected value in a `BadChecksum` error.
    fn forms(self) -> &'static [V4Checksum] {
        match self {
            V4Checksum::PseudoHeader => &[V4Checksum::PseudoHeader],
            V4Checksum::MessageOnly => &[V4Checksum::MessageOnly],
            V4Checksum::Either => &[V4Checksum::PseudoHeader, V4Checksum::MessageOnly],
        }
    }
}

/// What the checksum covers besides the message: the addresses of the IP header it travels in (the
/// family of the advert's addresses follows `src`), and for IPv4 which form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Context {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub v4_checksum: V4Checksum,
}

impl Context {
    /// `src` to `dst` with keepalived's default IPv4 checksum form.
    pub fn new(src: IpAddr, dst: IpAddr) -> Self {
        Context { src, dst, v4_checksum: V4Checksum::PseudoHeader }
    }

    fn addr_len(&self) -> usize {
        if self.src.is_ipv4() { 4 } else { 16 }
    }

    fn check_family(&self) -> Result<(), WireError> {
        if self.src.is_ipv4() != self.dst.is_ipv4() {
            return Err(WireError::FamilyMismatch { what: WHAT, addr: self.dst });
        }
        Ok(())
    }
}

/// A checked view of a VRRP message: at least the 8-byte fixed part. The address list is checked against
/// the count by [`Advert`]'s [`Repr::parse`], not here, so the view can describe a malformed advert in a
/// log line.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    buffer: &'a [u8],
}

impl<'a> Packet<'a> {
    pub fn new_checked(buffer: &'a [u8]) -> Result<Self, WireError> {
        need(WHAT, buffer, HEADER_LEN)?;
        Ok(Packet { buffer })
    }

    fn byte(&self, at: usize) -> u8 {
        self.buffer.get(at).copied().unwrap_or(0)
    }
    pub fn version(&self) -> u8 {
        self.byte(field::VERSION_TYPE) >> 4
    }
    pub fn kind(&self) -> u8 {
        self.byte(field::VERSION_TYPE) & 0x0f
    }
    pub fn vrid(&self) -> u8 {
        self.byte(field::VRID)
    }
    pub fn priority(&self) -> u8 {
        self.byte(field::PRIORITY)
    }
    pub fn count(&self) -> u8 {
        self.byte(field::COUNT)
    }
    /// The low 12 bits; the 4 reserved bits are ignored on receipt (RFC 5798 §5.2.6).
    pub fn max_advert_int(&self) -> u16 {
        be16(self.buffer, field::MAX_ADVERT_INT.start) & MAX_ADVERT_INT
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buffer, field::CHECKSUM.start)
    }
    pub fn address_bytes(&self) -> &'a [u8] {
        self.buffer.get(field::ADDRESSES..).unwrap_or_default()
    }
    /// The whole message.
    pub fn bytes(&self) -> &'a [u8] {
        self.buffer
    }
}

/// The checksum's starting sum for one form: the pseudo-header for the family, or nothing for the
/// message-only form.
fn pseudo_sum(cx: &Context, len: usize, form: V4Checksum) -> Result<u64, WireError> {
    let too_long = |_| WireError::BadLength { what: WHAT, expected: 65535, got: len };
    match (cx.src, cx.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => match form {
            V4Checksum::MessageOnly => Ok(0),
            V4Checksum::PseudoHeader | V4Checksum::Either => {
                Ok(checksum::pseudo_header_v4(s, d, PROTOCOL, u16::try_from(len).map_err(too_long)?))
            }
        },
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            Ok(checksum::pseudo_header_v6(s, d, PROTOCOL, u32::try_from(len).map_err(too_long)?))
        }
        (_, d) => Err(WireError::FamilyMismatch { what: WHAT, addr: d }),
    }
}

fn verify_checksum(packet: &Packet<'_>, cx: &Context) -> Result<(), WireError> {
    let message = packet.bytes();
    let forms = if cx.src.is_ipv6() { &[V4Checksum::PseudoHeader][..] } else { cx.v4_checksum.forms() };
    let mut first_expected = None;
    for &form in forms {
        let start = pseudo_sum(cx, message.len(), form)?;
        if checksum::verify(checksum::sum(start, message)) {
            return Ok(());
        }
        if first_expected.is_none() {
            let acc = checksum::sum(start, message.get(..field::CHECKSUM.start).unwrap_or_default());
            first_expected =
                Some(checksum::finish(checksum::sum(acc, message.get(field::CHECKSUM.end..).unwrap_or_default())));
        }
    }
    Err(WireError::BadChecksum { what: WHAT, expected: first_expected.unwrap_or(0), got: packet.checksum() })
}

/// The VRRP message of a core [`Advert`]: what a raw socket of protocol 112 sends and receives (the
/// kernel adds the IP header, which must carry [`TTL`]).
impl Repr for Advert {
    type Context = Context;
    type View<'a> = Packet<'a>;

    fn view(bytes: &[u8]) -> Result<Packet<'_>, WireError> {
        Packet::new_checked(bytes)
    }

    /// Checks, in order: the families of `src` and `dst` agree, version 3, type 1 (advertisement),
    /// length = 8 + count × address size, checksum.
    fn parse(packet: &Packet<'_>, cx: Context) -> Result<Self, WireError> {
        cx.check_family()?;
        if packet.version() != VERSION {
            return Err(WireError::BadVersion { what: WHAT, expected: VERSION, got: packet.version() });
        }
        if packet.kind() != TYPE_ADVERTISEMENT {
            return Err(WireError::BadType { what: WHAT, expected: "1 (advertisement)", got: packet.kind().into() });
        }
        let addr_len = cx.addr_len();
        let expected_len = HEADER_LEN + usize::from(packet.count()) * addr_len;
        if packet.bytes().len() != expected_len {
            return Err(WireError::BadLength { what: WHAT, expected: expected_len, got: packet.bytes().len() });
        }
        verify_checksum(packet, &cx)?;
        let addresses = packet
            .address_bytes()
            .chunks_exact(addr_len)
            .map(|c| match (<[u8; 4]>::try_from(c), <[u8; 16]>::try_from(c)) {
                (Ok(v4), _) => IpAddr::V4(Ipv4Addr::from(v4)),
                (_, Ok(v6)) => IpAddr::V6(Ipv6Addr::from(v6)),
                _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            })
            .collect();
        Ok(Advert {
            vrid: packet.vrid(),
            priority: packet.priority(),
            max_advert_int: packet.max_advert_int(),
            addresses,
        })
    }

    /// 8 bytes plus 4 or 16 per address (the family of the first address; emit refuses mixed lists).
    fn buffer_len(&self) -> usize {
        let addr_len = if self.addresses.first().is_some_and(IpAddr::is_ipv6) { 16 } else { 4 };
        HEADER_LEN + self.addresses.len() * addr_len
    }

    fn emit(&self, buf: &mut [u8], cx: Context) -> Result<(), WireError> {
        cx.check_family()?;
        if let Some(&addr) = self.addresses.iter().find(|a| a.is_ipv4() != cx.src.is_ipv4()) {
            return Err(WireError::FamilyMismatch { what: WHAT, addr });
        }
        let count = u8::try_from(self.addresses.len()).map_err(|_| WireError::TooManyAddresses {
            what: WHAT,
            count: self.addresses.len(),
            max: MAX_ADDRESSES,
        })?;
        if self.max_advert_int > MAX_ADVERT_INT {
            return Err(WireError::IntervalTooLarge { what: WHAT, centis: self.max_advert_int });
        }
        let len = self.buffer_len();
        let out = head_mut(WHAT, buf, len)?;
        out[field::VERSION_TYPE] = (VERSION << 4) | TYPE_ADVERTISEMENT;
        out[field::VRID] = self.vrid;
        out[field::PRIORITY] = self.priority;
        out[field::COUNT] = count;
        out[field::MAX_ADVERT_INT].copy_from_slice(&self.max_advert_int.to_be_bytes());
        out[field::CHECKSUM].fill(0);
        let mut at = field::ADDRESSES;
        for addr in &self.addresses {
            let octets: &[u8] = match addr {
                IpAddr::V4(a) => &a.octets(),
                IpAddr::V6(a) => &a.octets(),
            };
            out[at..at + octets.len()].copy_from_slice(octets);
            at += octets.len();
        }
        let form =
            if cx.v4_checksum == V4Checksum::MessageOnly { V4Checksum::MessageOnly } else { V4Checksum::PseudoHeader };
        let sum = checksum::finish(checksum::sum(pseudo_sum(&cx, len, form)?, out));
        out[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
        Ok(())
    }
}

/// Decodes an advert as a socket delivers it: the VRRP message, the addresses of its IP header and its TTL
/// (for IPv6, from `recvmsg`'s address, `IPV6_PKTINFO` and `IPV6_HOPLIMIT`). The TTL is returned, not
/// checked: the receive path drops adverts whose TTL is not [`TTL`] (RFC 5798 §7.1) and counts them. Our
/// own checksum check stays even when the socket sets `IPV6_CHECKSUM`, because the in-memory segment has
/// no kernel.
pub fn receive(message: &[u8], cx: Context, ttl: u8) -> Result<Received, WireError> {
    let advert = super::decode(message, cx)?;
    Ok(Received { src: cx.src, dst: cx.dst, ttl, advert })
}

/// Decodes what a raw IPv4 socket of protocol 112 delivers: the IP header (checksum verified, options
/// skipped), then the advert, as [`receive`] does.
pub fn receive_ipv4(bytes: &[u8], v4_checksum: V4Checksum) -> Result<Received, WireError> {
    let view = ipv4::Packet::new_checked(bytes)?;
    let ip = Ipv4Repr::parse(&view, ())?;
    if ip.protocol != PROTOCOL {
        return Err(WireError::BadProtocol { what: "IPv4 header", expected: PROTOCOL, got: ip.protocol });
    }
    let cx = Context { src: IpAddr::V4(ip.src), dst: IpAddr::V4(ip.dst), v4_checksum };
    receive(view.payload(), cx, ip.ttl)
}

/// A whole IPv4 datagram (TTL 255, TOS 0xc0, protocol 112) carrying the advert: for `IP_HDRINCL` sockets,
/// captures and tests.
pub fn ipv4_packet(advert: &Advert, src: Ipv4Addr, dst: Ipv4Addr) -> Result<Vec<u8>, WireError> {
    let payload = super::encode(advert, Context::new(IpAddr::V4(src), IpAddr::V4(dst)), &[])?;
    let ip = Ipv4Repr { src, dst, protocol: PROTOCOL, ttl: TTL, dscp_ecn: TOS, payload_len: payload.len() };
    super::encode(&ip, (), &payload)
}

/// A whole IPv6 packet (hop limit 255, next header 112) carrying the advert.
pub fn ipv6_packet(advert: &Advert, src: Ipv6Addr, dst: Ipv6Addr) -> Result<Vec<u8>, WireError> {
    let payload = super::encode(advert, Context::new(IpAddr::V6(src), IpAddr::V6(dst)), &[])?;
    let ip = Ipv6Repr { src, dst, next_header: PROTOCOL, hop_limit: TTL, payload_len: payload.len() };
    super::encode(&ip, (), &payload)
}
