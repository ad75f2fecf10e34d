//! The fixed IPv6 header (RFC 8200 §3), read and written through pnet's `Ipv6Packet`. Extension headers are
//! not walked: VRRP and NDP packets carry none, and a packet whose next header is not the expected protocol
//! is refused by the caller.

use std::net::Ipv6Addr;

use pnet_packet::Packet as _;
use pnet_packet::ip::IpNextHeaderProtocol;
use pnet_packet::ipv6::{Ipv6Packet, MutableIpv6Packet};

use super::{Repr, WireError, need};

/// Byte offsets of the header's fields.
pub mod field {
    use std::ops::Range;

    /// Version (4 bits), traffic class (8), flow label (20).
    pub const VERSION_CLASS_FLOW: Range<usize> = 0..4;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
    pub const PAYLOAD: usize = 40;
}

pub const HEADER_LEN: usize = field::PAYLOAD;
pub const NEXT_HEADER_ICMPV6: u8 = 58;

const WHAT: &str = "IPv6 header";

/// A checked view of an IPv6 packet: version 6, and the payload length fits in the buffer. Bytes after
/// the payload length (Ethernet padding) are outside [`Packet::payload`].
#[derive(Debug)]
pub struct Packet<'a> {
    inner: Ipv6Packet<'a>,
}

impl<'a> Packet<'a> {
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, WireError> {
        let inner =
            Ipv6Packet::new(bytes).ok_or(WireError::Truncated { what: WHAT, need: HEADER_LEN, have: bytes.len() })?;
        let packet = Packet { inner };
        if packet.version() != 6 {
            return Err(WireError::BadVersion { what: WHAT, expected: 6, got: packet.version() });
        }
        need(WHAT, bytes, HEADER_LEN + usize::from(packet.payload_len()))?;
        Ok(packet)
    }

    pub fn version(&self) -> u8 {
        self.inner.get_version()
    }
    pub fn traffic_class(&self) -> u8 {
        self.inner.get_traffic_class()
    }
    pub fn flow_label(&self) -> u32 {
        self.inner.get_flow_label()
    }
    pub fn payload_len(&self) -> u16 {
        self.inner.get_payload_length()
    }
    pub fn next_header(&self) -> u8 {
        self.inner.get_next_header().0
    }
    pub fn hop_limit(&self) -> u8 {
        self.inner.get_hop_limit()
    }
    pub fn src(&self) -> Ipv6Addr {
        self.inner.get_source()
    }
    pub fn dst(&self) -> Ipv6Addr {
        self.inner.get_destination()
    }
    pub fn payload(&self) -> &[u8] {
        self.inner.payload()
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

impl Repr for Ipv6Repr {
    type Context = ();
    type View<'a> = Packet<'a>;

    fn view(bytes: &[u8]) -> Result<Packet<'_>, WireError> {
        Packet::new_checked(bytes)
    }

    fn parse(packet: &Packet<'_>, (): ()) -> Result<Self, WireError> {
        Ok(Ipv6Repr {
            src: packet.src(),
            dst: packet.dst(),
            next_header: packet.next_header(),
            hop_limit: packet.hop_limit(),
            payload_len: usize::from(packet.payload_len()),
        })
    }

    fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    fn emit(&self, buf: &mut [u8], (): ()) -> Result<(), WireError> {
        let len = u16::try_from(self.payload_len).map_err(|_| WireError::BadLength {
            what: WHAT,
            expected: 65535,
            got: self.payload_len,
        })?;
        let have = buf.len();
        let mut p = MutableIpv6Packet::new(buf).ok_or(WireError::Truncated { what: WHAT, need: HEADER_LEN, have })?;
        p.set_version(6);
        p.set_traffic_class(0);
        p.set_flow_label(0);
        p.set_payload_length(len);
        p.set_next_header(IpNextHeaderProtocol(self.next_header));
        p.set_hop_limit(self.hop_limit);
        p.set_source(self.src);
        p.set_destination(self.dst);
        Ok(())
    }
}
