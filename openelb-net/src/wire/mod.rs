//! Packet codecs for the frames the data plane sends and receives: Ethernet II, ARP, IPv4 and IPv6 headers,
//! VRRPv3 adverts and the NDP messages (NA, NS) of ICMPv6.
//!
//! Each protocol follows the smoltcp split: a *checked view* (`Packet<T>` / `Frame<T>`) over borrowed bytes,
//! which can only be built by `new_checked` after every length the accessors rely on has been validated, and
//! a plain *representation* (`…Repr`, or the core [`openelb_core::vrrp::Advert`]) with `parse` and `emit`.
//! Bytes come from the network, so nothing here may panic: every parser either returns a value or a
//! [`WireError`] naming the layer and what was wrong, and emitters check the buffer they are given.
//!
//! Only `std` is used; sending and receiving belong to the Linux implementation.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod vrrp;

pub use ethernet::MacAddr;

/// Why bytes could not be decoded or a representation could not be encoded. `what` names the layer
/// (e.g. `"VRRP advert"`), so a log line says which header of a frame was at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{what}: truncated, need {need} bytes, have {have}")]
    Truncated { what: &'static str, need: usize, have: usize },
    #[error("{what}: version {got}, expected {expected}")]
    BadVersion { what: &'static str, expected: u8, got: u8 },
    #[error("{what}: type {got}, expected {expected}")]
    BadType { what: &'static str, expected: &'static str, got: u16 },
    #[error("{what}: protocol {got}, expected {expected}")]
    BadProtocol { what: &'static str, expected: u8, got: u8 },
    #[error("{what}: checksum {got:#06x}, expected {expected:#06x}")]
    BadChecksum { what: &'static str, expected: u16, got: u16 },
    #[error("{what}: length {got}, expected {expected}")]
    BadLength { what: &'static str, expected: usize, got: usize },
    #[error("{what}: hop limit {got}, expected 255 (the packet may have crossed a router)")]
    BadHopLimit { what: &'static str, got: u8 },
    #[error("{what}: address {addr} is not of the packet's address family")]
    FamilyMismatch { what: &'static str, addr: std::net::IpAddr },
    #[error("{what}: {count} addresses, at most {max} fit")]
    TooManyAddresses { what: &'static str, count: usize, max: usize },
    #[error("{what}: max advert interval {centis} cs does not fit in 12 bits (at most 4095)")]
    IntervalTooLarge { what: &'static str, centis: u16 },
    #[error("{what}: {reason}")]
    Malformed { what: &'static str, reason: &'static str },
}

/// Returns `Truncated` unless `buf` holds at least `need` bytes; the accessors of every view rely on it.
pub(crate) fn need(what: &'static str, buf: &[u8], need: usize) -> Result<(), WireError> {
    if buf.len() < need { Err(WireError::Truncated { what, need, have: buf.len() }) } else { Ok(()) }
}

/// Big-endian u16 at `at`; callers have checked `at + 2 <= b.len()` through [`need`].
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
        _ => 0,
    }
}

/// Copies `N` bytes at `at`; callers have checked the length, and a short slice yields zeros rather than a
/// panic so that a missed check shows up as a wrong value in a test, never as a crash on the wire.
pub(crate) fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = b.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

/// The first `n` bytes of `buf` for writing, or `Truncated` when the caller's buffer is too small.
pub(crate) fn head_mut<'a>(what: &'static str, buf: &'a mut [u8], n: usize) -> Result<&'a mut [u8], WireError> {
    let have = buf.len();
    buf.get_mut(..n).ok_or(WireError::Truncated { what, need: n, have })
}
