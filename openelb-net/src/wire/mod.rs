//! Packet codecs for the frames the data plane sends and receives: Ethernet II, ARP, IPv4, IPv6, the NDP
//! messages of ICMPv6 (NS, NA) and VRRPv3 adverts. `docs/wire.md` says which headers pnet reads and why.
//!
//! Every protocol module has one shape: `mod field` with the byte offsets of its fields, a checked view
//! (`new_checked` validates every length its accessors rely on) and a representation implementing [`Repr`]:
//! `parse(&view, cx)`, `buffer_len()` and `emit(&mut [u8], cx)`, where `cx` is what a checksum needs besides
//! the bytes (the IP pseudo-header's addresses) or `()`. [`decode`] and [`encode`] do the same for plain bytes.
//! Bytes come from the network, so nothing here panics: a parser returns a value or a [`WireError`] naming
//! the layer and the fault, and [`WireError::kind`] sorts it into a bounded [`DecodeFailure`].

pub mod arp;
pub mod checksum;
mod error;
pub mod ethernet;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod vrrp;

pub use error::{DecodeFailure, WireError};
pub use ethernet::MacAddr;

/// A protocol's header or message as values, read from and written to its checked view.
pub trait Repr: Sized {
    /// What parsing and emitting need besides the bytes: `()` unless a checksum covers a pseudo-header.
    type Context: Copy;
    /// The checked view [`Repr::parse`] reads.
    type View<'a>;

    /// The checked view of `bytes` (the protocol's `new_checked`).
    fn view(bytes: &[u8]) -> Result<Self::View<'_>, WireError>;
    /// Decodes the view, with the protocol's validity checks.
    fn parse(view: &Self::View<'_>, cx: Self::Context) -> Result<Self, WireError>;
    /// How many bytes [`Repr::emit`] writes: the header alone for the layers that carry a payload.
    fn buffer_len(&self) -> usize;
    /// Writes the first [`Repr::buffer_len`] bytes of `buf` (checksum included); `Truncated` if `buf` is
    /// shorter. A header's length fields count the payload its representation names.
    fn emit(&self, buf: &mut [u8], cx: Self::Context) -> Result<(), WireError>;
}

/// [`Repr::parse`] of the checked view of `bytes`.
pub fn decode<R: Repr>(bytes: &[u8], cx: R::Context) -> Result<R, WireError> {
    R::parse(&R::view(bytes)?, cx)
}

/// `repr` emitted, followed by `payload` (empty for messages without one).
pub fn encode<R: Repr>(repr: &R, cx: R::Context, payload: &[u8]) -> Result<Vec<u8>, WireError> {
    let len = repr.buffer_len();
    let mut out = vec![0u8; len + payload.len()];
    repr.emit(&mut out, cx)?;
    if let Some(tail) = out.get_mut(len..) {
        tail.copy_from_slice(payload);
    }
    Ok(out)
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
