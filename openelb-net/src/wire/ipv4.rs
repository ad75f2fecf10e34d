//! The IPv4 header (RFC 791), read and written through pnet's `Ipv4Packet`. Raw IPv4 sockets deliver it in
//! front of the VRRP advert, so it is parsed to learn the sender, the destination (part of the VRRP
//! checksum) and the TTL.

use std::net::Ipv4Addr;

use pnet_packet::Packet as _;
use pnet_packet::ip::IpNextHeaderProtocol;
use pnet_packet::ipv4::{Ipv4Packet, MutableIpv4Packet};

use super::{Repr, WireError, checksum, need};

/// Byte offsets of the header's fields.
pub mod field {
    use std::ops::Range;

    pub const VERSION_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLAGS_FRAGMENT: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
    /// Where options (IHL > 5) or, without them, the payload start.
    pub const OPTIONS: usize = 20;
}

/// Header length without options; this is what we emit.
pub const MIN_HEADER_LEN: usize = field::OPTIONS;

const WHAT: &str = "IPv4 header";
/// pnet's 3-bit flags field: reserved, don't fragment, more fragments.
const FLAG_MORE_FRAGMENTS: u8 = 0b001;

/// A checked view of an IPv4 packet. `new_checked` guarantees: version 4, IHL ≥ 5, the header (with its
/// options) fits, and the total length covers the header and fits in the buffer. Bytes after the total
/// length (Ethernet padding) are outside [`Packet::payload`].
#[derive(Debug)]
pub struct Packet<'a> {
    inner: Ipv4Packet<'a>,
}

impl<'a> Packet<'a> {
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, WireError> {
        need(WHAT, bytes, MIN_HEADER_LEN)?;
        let inner = Ipv4Packet::new(bytes).ok_or(WireError::Truncated {
            what: WHAT,
            need: MIN_HEADER_LEN,
            have: bytes.len(),
        })?;
        let packet = Packet { inner };
        if packet.version() != 4 {
            return Err(WireError::BadVersion { what: WHAT, expected: 4, got: packet.version() });
        }
        let header_len = packet.header_len();
        if header_len < MIN_HEADER_LEN {
            return Err(WireError::Malformed { what: WHAT, reason: "IHL is below 5 words" });
        }
        need(WHAT, bytes, header_len)?;
        let total = usize::from(packet.total_len());
        if total < header_len {
            return Err(WireError::BadLength { what: WHAT, expected: header_len, got: total });
        }
        need(WHAT, bytes, total)?;
        Ok(packet)
    }

    pub fn version(&self) -> u8 {
        self.inner.get_version()
    }
    /// IHL in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.inner.get_header_length()) * 4
    }
    pub fn dscp_ecn(&self) -> u8 {
        (self.inner.get_dscp() << 2) | self.inner.get_ecn()
    }
    pub fn total_len(&self) -> u16 {
        self.inner.get_total_length()
    }
    pub fn ident(&self) -> u16 {
        self.inner.get_identification()
    }
    /// More-fragments set or a non-zero offset: the payload is only part of the datagram.
    pub fn is_fragment(&self) -> bool {
        self.inner.get_flags() & FLAG_MORE_FRAGMENTS != 0 || self.inner.get_fragment_offset() != 0
    }
    pub fn ttl(&self) -> u8 {
        self.inner.get_ttl()
    }
    pub fn protocol(&self) -> u8 {
        self.inner.get_next_level_protocol().0
    }
    pub fn checksum(&self) -> u16 {
        self.inner.get_checksum()
    }
    pub fn src(&self) -> Ipv4Addr {
        self.inner.get_source()
    }
    pub fn dst(&self) -> Ipv4Addr {
        self.inner.get_destination()
    }
    /// The header checksum covers the options too. Verified as RFC 1071 does (the sum including the
    /// transmitted field), which also accepts the other zero, 0xffff, where recomputing would not.
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(checksum::sum(0, self.inner.packet().get(..self.header_len()).unwrap_or_default()))
    }
    /// The header's checksum as it should be (computed with the field taken as zero).
    pub fn expected_checksum(&self) -> u16 {
        pnet_packet::ipv4::checksum(&self.inner)
    }
    /// The bytes between the header (after any options) and the total length.
    pub fn payload(&self) -> &[u8] {
        self.inner.payload()
    }
}

/// The IPv4 header fields the data plane cares about. Emit writes a 20-byte header with no options, no
/// fragmentation and identification 0 (our packets are small and never fragmented).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    /// DSCP and ECN byte; keepalived sends VRRP with 0xc0 (precedence "internetwork control").
    pub dscp_ecn: u8,
    pub payload_len: usize,
}

impl Repr for Ipv4Repr {
    type Context = ();
    type View<'a> = Packet<'a>;

    fn view(bytes: &[u8]) -> Result<Packet<'_>, WireError> {
        Packet::new_checked(bytes)
    }

    /// Verifies the header checksum and rejects fragments (a VRRP advert is never fragmented, so a
    /// fragment can only be a partial or forged message).
    fn parse(packet: &Packet<'_>, (): ()) -> Result<Self, WireError> {
        if !packet.verify_checksum() {
            return Err(WireError::BadChecksum {
                what: WHAT,
                expected: packet.expected_checksum(),
                got: packet.checksum(),
            });
        }
        if packet.is_fragment() {
            return Err(WireError::Malformed { what: WHAT, reason: "fragmented datagram" });
        }
        Ok(Ipv4Repr {
            src: packet.src(),
            dst: packet.dst(),
            protocol: packet.protocol(),
            ttl: packet.ttl(),
            dscp_ecn: packet.dscp_ecn(),
            payload_len: packet.payload().len(),
        })
    }

    fn buffer_len(&self) -> usize {
        MIN_HEADER_LEN
    }

    /// The 20-byte header, checksum included; the total length counts `payload_len`.
    fn emit(&self, buf: &mut [u8], (): ()) -> Result<(), WireError> {
        let total = MIN_HEADER_LEN + self.payload_len;
        let total =
            u16::try_from(total).map_err(|_| WireError::BadLength { what: WHAT, expected: 65535, got: total })?;
        let have = buf.len();
        let header =
            buf.get_mut(..MIN_HEADER_LEN).ok_or(WireError::Truncated { what: WHAT, need: MIN_HEADER_LEN, have })?;
        let mut p =
            MutableIpv4Packet::new(header).ok_or(WireError::Truncated { what: WHAT, need: MIN_HEADER_LEN, have })?;
        p.set_version(4);
        p.set_header_length(5);
        p.set_dscp(self.dscp_ecn >> 2);
        p.set_ecn(self.dscp_ecn & 0b11);
        p.set_total_length(total);
        p.set_identification(0);
        p.set_flags(0);
        p.set_fragment_offset(0);
        p.set_ttl(self.ttl);
        p.set_next_level_protocol(IpNextHeaderProtocol(self.protocol));
        p.set_checksum(0);
        p.set_source(self.src);
        p.set_destination(self.dst);
        let sum = pnet_packet::ipv4::checksum(&p.to_immutable());
        p.set_checksum(sum);
        Ok(())
    }
}
