//! Independent reference helpers for the wire tests: a deliberately naive RFC 1071 checksum over a byte
//! vector that the test assembles itself (pseudo-header included), so the codec's incremental sums are
//! checked against a second implementation.
// Each wire test binary includes this module and uses a different subset of it.
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};

/// RFC 1071 §4.1 "C" reference, transcribed: add 16-bit words, fold carries, complement.
pub fn slow_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        sum += (u32::from(bytes[i]) << 8) | u32::from(bytes[i + 1]);
        i += 2;
    }
    if i < bytes.len() {
        sum += u32::from(bytes[i]) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub fn v4_pseudo(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&src.octets());
    v.extend_from_slice(&dst.octets());
    v.push(0);
    v.push(proto);
    v.extend_from_slice(&len.to_be_bytes());
    v
}

pub fn v6_pseudo(src: Ipv6Addr, dst: Ipv6Addr, next: u8, len: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&src.octets());
    v.extend_from_slice(&dst.octets());
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, next]);
    v
}

/// The checksum the reference computes for `message` (checksum field at `at` zeroed) after `pseudo`.
pub fn reference_checksum(pseudo: &[u8], message: &[u8], at: usize) -> u16 {
    let mut all = pseudo.to_vec();
    let mut m = message.to_vec();
    m[at] = 0;
    m[at + 1] = 0;
    all.extend_from_slice(&m);
    slow_checksum(&all)
}
