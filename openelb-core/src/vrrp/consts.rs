//! The VRRPv3 numbers fixed by RFC 5798, defined once for the state machine, the codec, the sockets and the
//! tools.

use std::net::{Ipv4Addr, Ipv6Addr};

/// IP protocol number (IPv4 protocol / IPv6 next header) of VRRP.
pub const PROTOCOL: u8 = 112;
/// The protocol version this implementation speaks.
pub const VERSION: u8 = 3;
/// TTL / hop limit an advert is sent with and must arrive with (RFC 5798 §5.1.1.3, §5.1.2.3): proof that it
/// did not cross a router.
pub const TTL: u8 = 255;
/// The IPv4 multicast group adverts go to (RFC 5798 §5.1.1.2).
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group adverts go to (RFC 5798 §5.1.2.2).
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// Count IPvX Addr is one byte: at most this many addresses travel in one advert.
pub const MAX_ADDRESSES: usize = 255;
/// Max Adver Int is a 12-bit field of centiseconds.
pub const MAX_ADVERT_INT: u16 = 0x0fff;
