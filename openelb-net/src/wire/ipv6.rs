//! The fixed IPv6 header (RFC 8200 §3). Extension headers are not walked: VRRP and NDP packets carry none,
//! and a packet whose next header is not the expected protocol is refused by the caller.

use std::net::Ipv6Addr;

use super::{WireError, array, be16, head_mut, need};

pub const HEADER_LEN: usize = 40;
pub const NEXT_HEADER_ICMPV6: u8 = 58;

const WHAT: &str = "IPv6 header";

/// A checked view of an IPv6 packet: version 6, and the payload length fits in the buffer. Bytes after
/// the payload length (Ethernet padding) are outside [`Packet::payload`].
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        need(WHAT, b, HEADER_LEN)?;
        let version = b.first().map_or(0, |v| v >> 4);
        if version != 6 {
            return Err(WireError::BadVersion { what: WHAT, expected: 6, got: version });
        }
        need(WHAT, b, HEADER_LEN + usize::from(be16(b, 4)))?;
        Ok(Packet { buffer })
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn traffic_class(&self) -> u8 {
        let w = be16(self.b(), 0);
        ((w >> 4) & 0xff) as u8
    }
    pub fn flow_label(&self) -> u32 {
        u32::from_be_bytes(array(self.b(), 0)) & 0x000f_ffff
    }
    pub fn payload_len(&self) -> u16 {
        be16(self.b(), 4)
    }
    pub fn next_header(&self) -> u8 {
        self.b().get(6).copied().unwrap_or(0)
    }
    pub fn hop_limit(&self) -> u8 {
        self.b().get(7).copied().unwrap_or(0)
    }
    pub fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(array::<16>(self.b(), 8))
    }
    pub fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(array::<16>(self.b(), 24))
    }
    pub fn payload(&self) -> &[u8] {
        self.b().get(HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())).unwrap_or_default()
    }
}

/// The fixed header as values; traffic class and flow label are emitted as zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next_header: u8,
    pub hop_limit: u8,
    pub payload_len: usize,
}

impl Ipv6Repr {
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Self {
        Ipv6Repr {
            src: packet.src(),
            dst: packet.dst(),
            next_header: packet.next_header(),
            hop_limit: packet.hop_limit(),
            payload_len: usize::from(packet.payload_len()),
        }
    }

    /// Parses the fixed header of `bytes` and returns it with the payload.
    pub fn parse_bytes(bytes: &[u8]) -> Result<(Self, &[u8]), WireError> {
        let packet = Packet::new_checked(bytes)?;
        let repr = Self::parse(&packet);
        Ok((repr, bytes.get(HEADER_LEN..HEADER_LEN + repr.payload_len).unwrap_or_default()))
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let len = u16::try_from(self.payload_len).map_err(|_| WireError::BadLength {
            what: WHAT,
            expected: 65535,
            got: self.payload_len,
        })?;
        let b = head_mut(WHAT, buf, HEADER_LEN)?;
        b[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
        b[4..6].copy_from_slice(&len.to_be_bytes());
        b[6] = self.next_header;
        b[7] = self.hop_limit;
        b[8..24].copy_from_slice(&self.src.octets());
        b[24..40].copy_from_slice(&self.dst.octets());
        Ok(())
    }

    /// A whole packet: this header (with `payload_len` taken from `payload`) followed by `payload`.
    pub fn packet(&self, payload: &[u8]) -> Result<Vec<u8>, WireError> {
        let repr = Ipv6Repr { payload_len: payload.len(), ..*self };
        let mut out = vec![0u8; HEADER_LEN];
        repr.emit(&mut out)?;
        out.extend_from_slice(payload);
        Ok(out)
    }
}
