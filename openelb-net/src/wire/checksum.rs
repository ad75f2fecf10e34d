//! The Internet checksum (RFC 1071) and the pseudo-header sums that IPv4 and IPv6 upper layers add to it.
//!
//! Sums are kept *unfolded* in a `u64` until the end, so concatenated pieces (a pseudo-header, then a
//! message) can be added in any order; [`finish`] folds and complements. A message carrying a correct
//! checksum sums (with its pseudo-header) to `0xffff`, which is what [`verify`] checks.

use std::net::{Ipv4Addr, Ipv6Addr};

/// One's complement accumulation of `data` as big-endian 16-bit words, the odd last byte padded with zero.
/// Adding to `acc` lets callers chain pieces that each have an even length.
pub fn sum(acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(2);
    let mut acc = acc;
    for w in &mut chunks {
        if let &[hi, lo] = w {
            acc += u64::from(u16::from_be_bytes([hi, lo]));
        }
    }
    if let &[last] = chunks.remainder() {
        acc += u64::from(u16::from_be_bytes([last, 0]));
    }
    acc
}

/// Folds the carries back in (end-around carry) to a 16-bit one's complement sum.
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // The loop leaves acc <= 0xffff.
    u16::try_from(acc).unwrap_or(0xffff)
}

/// The checksum field value for an accumulated sum whose checksum field was zero.
pub fn finish(acc: u64) -> u16 {
    !fold(acc)
}

/// Whether an accumulated sum that *includes* the transmitted checksum field is valid.
pub fn verify(acc: u64) -> bool {
    fold(acc) == 0xffff
}

/// The checksum of `data` alone, e.g. an IPv4 header with its checksum field zeroed.
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(0, data))
}

/// Sum of the IPv4 pseudo-header (RFC 768 / RFC 793 layout): source, destination, zero, protocol, and the
/// upper-layer length.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> u64 {
    let mut acc = sum(0, &src.octets());
    acc = sum(acc, &dst.octets());
    acc += u64::from(protocol);
    acc + u64::from(len)
}

/// Sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination, 32-bit upper-layer length, three
/// zero bytes and the next header value.
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> u64 {
    let mut acc = sum(0, &src.octets());
    acc = sum(acc, &dst.octets());
    acc = sum(acc, &len.to_be_bytes());
    acc + u64::from(next_header)
}
