//! Ethernet II framing, read and written through pnet's `EthernetPacket`, and MAC addresses.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use pnet_packet::ethernet::{EtherType, EthernetPacket, MutableEthernetPacket};

use super::{Repr, WireError};

/// Byte offsets of the header's fields.
pub mod field {
    use std::ops::Range;

    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// Destination, source, EtherType.
pub const HEADER_LEN: usize = field::PAYLOAD;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

const WHAT: &str = "Ethernet frame";

/// A 48-bit MAC address. Displays as `aa:bb:cc:dd:ee:ff`, the form `ip neigh` prints, so lab output can be
/// compared as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    pub const fn octets(self) -> [u8; 6] {
        self.0
    }

    /// The group bit: multicast and broadcast destinations.
    pub const fn is_multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// The Ethernet destination for an IPv6 multicast group (RFC 2464 §7): 33:33 and the group's low 32 bits.
    pub fn ipv6_multicast(group: Ipv6Addr) -> MacAddr {
        let o = group.octets();
        MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }

    /// The Ethernet destination for an IPv4 multicast group (RFC 1112 §6.4): 01:00:5e and the low 23 bits.
    pub fn ipv4_multicast(group: std::net::Ipv4Addr) -> MacAddr {
        let o = group.octets();
        MacAddr([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
    }
}

impl From<pnet_base::MacAddr> for MacAddr {
    fn from(m: pnet_base::MacAddr) -> Self {
        MacAddr(m.octets())
    }
}

impl From<MacAddr> for pnet_base::MacAddr {
    fn from(m: MacAddr) -> Self {
        let [a, b, c, d, e, f] = m.0;
        pnet_base::MacAddr::new(a, b, c, d, e, f)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Why a text MAC address was refused; carries the input so the message names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?}: not a MAC address (expected six hex octets separated by ':' or '-')")]
pub struct MacParseError {
    pub input: String,
}

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError { input: s.to_owned() };
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for slot in &mut out {
            let part = parts.next().ok_or_else(err)?;
            if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

/// A checked view of an Ethernet II frame: at least [`HEADER_LEN`] bytes.
#[derive(Debug)]
pub struct Frame<'a> {
    inner: EthernetPacket<'a>,
}

impl<'a> Frame<'a> {
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, WireError> {
        let inner = EthernetPacket::new(bytes).ok_or(WireError::Truncated {
            what: WHAT,
            need: HEADER_LEN,
            have: bytes.len(),
        })?;
        Ok(Frame { inner })
    }

    pub fn dst(&self) -> MacAddr {
        self.inner.get_destination().into()
    }

    pub fn src(&self) -> MacAddr {
        self.inner.get_source().into()
    }

    pub fn ethertype(&self) -> u16 {
        self.inner.get_ethertype().0
    }

    pub fn payload(&self) -> &[u8] {
        pnet_packet::Packet::payload(&self.inner)
    }
}

/// The Ethernet II header as values. 802.1Q tags are not decoded: the lab and the speaker's AF_PACKET
/// socket see untagged frames (the kernel strips the tag on a VLAN device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub ethertype: u16,
}

impl Repr for EthernetRepr {
    type Context = ();
    type View<'a> = Frame<'a>;

    fn view(bytes: &[u8]) -> Result<Frame<'_>, WireError> {
        Frame::new_checked(bytes)
    }

    fn parse(frame: &Frame<'_>, (): ()) -> Result<Self, WireError> {
        Ok(EthernetRepr { dst: frame.dst(), src: frame.src(), ethertype: frame.ethertype() })
    }

    fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    fn emit(&self, buf: &mut [u8], (): ()) -> Result<(), WireError> {
        let have = buf.len();
        let mut frame =
            MutableEthernetPacket::new(buf).ok_or(WireError::Truncated { what: WHAT, need: HEADER_LEN, have })?;
        frame.set_destination(self.dst.into());
        frame.set_source(self.src.into());
        frame.set_ethertype(EtherType(self.ethertype));
        Ok(())
    }
}
