//! The IPv4 header (RFC 791). Raw IPv4 sockets deliver it in front of the VRRP advert, so it is parsed to
//! learn the sender, the destination (part of the VRRP checksum) and the TTL.

use std::net::Ipv4Addr;

use super::{WireError, array, be16, checksum, head_mut, need};

/// Header length without options; this is what we emit.
pub const MIN_HEADER_LEN: usize = 20;

const WHAT: &str = "IPv4 header";
const FLAG_MORE_FRAGMENTS: u16 = 0x2000;
const FRAGMENT_OFFSET_MASK: u16 = 0x1fff;

/// A checked view of an IPv4 packet. `new_checked` guarantees: version 4, IHL ≥ 5, the header (with its
/// options) fits, and the total length covers the header and fits in the buffer. Bytes after the total
/// length (Ethernet padding) are outside [`Packet::payload`].
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        need(WHAT, b, MIN_HEADER_LEN)?;
        let version = b.first().map_or(0, |v| v >> 4);
        if version != 4 {
            return Err(WireError::BadVersion { what: WHAT, expected: 4, got: version });
        }
        let packet = Packet { buffer };
        let header_len = packet.header_len();
        if header_len < MIN_HEADER_LEN {
            return Err(WireError::Malformed { what: WHAT, reason: "IHL is below 5 words" });
        }
        need(WHAT, packet.buffer.as_ref(), header_len)?;
        let total = usize::from(packet.total_len());
        if total < header_len {
            return Err(WireError::BadLength { what: WHAT, expected: header_len, got: total });
        }
        need(WHAT, packet.buffer.as_ref(), total)?;
        Ok(packet)
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn version(&self) -> u8 {
        self.b().first().map_or(0, |v| v >> 4)
    }
    /// IHL in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.b().first().map_or(0, |v| v & 0x0f)) * 4
    }
    pub fn dscp_ecn(&self) -> u8 {
        self.b().get(1).copied().unwrap_or(0)
    }
    pub fn total_len(&self) -> u16 {
        be16(self.b(), 2)
    }
    pub fn ident(&self) -> u16 {
        be16(self.b(), 4)
    }
    pub fn flags_fragment(&self) -> u16 {
        be16(self.b(), 6)
    }
    /// More-fragments set or a non-zero offset: the payload is only part of the datagram.
    pub fn is_fragment(&self) -> bool {
        let f = self.flags_fragment();
        f & FLAG_MORE_FRAGMENTS != 0 || f & FRAGMENT_OFFSET_MASK != 0
    }
    pub fn ttl(&self) -> u8 {
        self.b().get(8).copied().unwrap_or(0)
    }
    pub fn protocol(&self) -> u8 {
        self.b().get(9).copied().unwrap_or(0)
    }
    pub fn checksum(&self) -> u16 {
        be16(self.b(), 10)
    }
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.b(), 12))
    }
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.b(), 16))
    }
    /// The header checksum covers the options too.
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(checksum::sum(0, self.b().get(..self.header_len()).unwrap_or_default()))
    }
    /// The header's checksum as it should be (computed with the field taken as zero).
    pub fn expected_checksum(&self) -> u16 {
        let header = self.b().get(..self.header_len()).unwrap_or_default();
        let acc = checksum::sum(0, header.get(..10).unwrap_or_default());
        checksum::finish(checksum::sum(acc, header.get(12..).unwrap_or_default()))
    }
    /// The bytes between the header (after any options) and the total length.
    pub fn payload(&self) -> &[u8] {
        self.b().get(self.header_len()..usize::from(self.total_len())).unwrap_or_default()
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

impl Ipv4Repr {
    /// Verifies the header checksum and rejects fragments (a VRRP advert is never fragmented, so a
    /// fragment can only be a partial or forged message).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self, WireError> {
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

    /// Parses a whole datagram and returns its header with the payload.
    pub fn parse_bytes(bytes: &[u8]) -> Result<(Self, &[u8]), WireError> {
        let packet = Packet::new_checked(bytes)?;
        let repr = Self::parse(&packet)?;
        let payload = bytes.get(packet.header_len()..usize::from(packet.total_len())).unwrap_or_default();
        Ok((repr, payload))
    }

    pub const fn buffer_len(&self) -> usize {
        MIN_HEADER_LEN
    }

    /// Writes the 20-byte header, checksum included, into the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let total = MIN_HEADER_LEN + self.payload_len;
        let total =
            u16::try_from(total).map_err(|_| WireError::BadLength { what: WHAT, expected: 65535, got: total })?;
        let b = head_mut(WHAT, buf, MIN_HEADER_LEN)?;
        b[0] = 0x45;
        b[1] = self.dscp_ecn;
        b[2..4].copy_from_slice(&total.to_be_bytes());
        b[4..8].fill(0);
        b[8] = self.ttl;
        b[9] = self.protocol;
        b[10..12].fill(0);
        b[12..16].copy_from_slice(&self.src.octets());
        b[16..20].copy_from_slice(&self.dst.octets());
        let sum = checksum::checksum(b);
        b[10..12].copy_from_slice(&sum.to_be_bytes());
        Ok(())
    }

    /// A whole datagram: this header (with `payload_len` taken from `payload`) followed by `payload`.
    pub fn packet(&self, payload: &[u8]) -> Result<Vec<u8>, WireError> {
        let repr = Ipv4Repr { payload_len: payload.len(), ..*self };
        let mut out = vec![0u8; MIN_HEADER_LEN];
        repr.emit(&mut out)?;
        out.extend_from_slice(payload);
        Ok(out)
    }
}
