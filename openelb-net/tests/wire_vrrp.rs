//! VRRPv3 codec: known answers, the checks RFC 5798 §7.1 asks of a receiver, and round trips.

mod wire_common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use openelb_net::core::vrrp::consts::{MAX_ADDRESSES, MULTICAST_V4, MULTICAST_V6, PROTOCOL, TTL};
use openelb_net::core::vrrp::{Advert, Received};
use openelb_net::wire::vrrp::{self, Context, V4Checksum};
use openelb_net::wire::{self, WireError};
use proptest::prelude::*;
use wire_common::{reference_checksum, slow_checksum, v4_pseudo, v6_pseudo};

const SRC4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
const VIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 91);

fn seed_advert() -> Advert {
    Advert { vrid: 51, priority: 100, max_advert_int: 100, addresses: vec![IpAddr::V4(VIP4)] }
}

fn v4(a: Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}

fn emit_with(advert: &Advert, src: IpAddr, dst: IpAddr, v4_checksum: V4Checksum) -> Result<Vec<u8>, WireError> {
    wire::encode(advert, Context { src, dst, v4_checksum }, &[])
}

fn emit(advert: &Advert, src: IpAddr, dst: IpAddr) -> Result<Vec<u8>, WireError> {
    emit_with(advert, src, dst, V4Checksum::PseudoHeader)
}

fn parse_with(bytes: &[u8], src: IpAddr, dst: IpAddr, v4_checksum: V4Checksum) -> Result<Advert, WireError> {
    wire::decode(bytes, Context { src, dst, v4_checksum })
}

fn parse(bytes: &[u8], src: IpAddr, dst: IpAddr) -> Result<Advert, WireError> {
    parse_with(bytes, src, dst, V4Checksum::PseudoHeader)
}

fn receive_v6(bytes: &[u8], src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8) -> Result<Received, WireError> {
    vrrp::receive(bytes, Context::new(IpAddr::V6(src), IpAddr::V6(dst)), hop_limit)
}

/// Hand-computed: pseudo-header words c000 0203 e000 0012 0070 000c sum to 0x1a291, the message words
/// 3133 6401 0064 0000 c000 025b to 0x157f3; together 0x2fa84 → folded 0xfa86 → checksum 0x0579.
#[test]
fn known_answer_ipv4_advert_with_pseudo_header() {
    let bytes = emit(&seed_advert(), v4(SRC4), v4(MULTICAST_V4)).unwrap();
    let expected = [0x31, 0x33, 0x64, 0x01, 0x00, 0x64, 0x05, 0x79, 0xc0, 0x00, 0x02, 0x5b];
    assert_eq!(bytes, expected);
    let pseudo = v4_pseudo(SRC4, MULTICAST_V4, PROTOCOL, 12);
    assert_eq!(reference_checksum(&pseudo, &bytes, 6), 0x0579);
}

/// Message-only form (RFC 9568, keepalived `v3_checksum_as_v2`): 0x157f3 → 0x57f4 → 0xa80b.
#[test]
fn known_answer_ipv4_advert_message_only() {
    let bytes = emit_with(&seed_advert(), v4(SRC4), v4(MULTICAST_V4), V4Checksum::MessageOnly).unwrap();
    assert_eq!(&bytes[6..8], &[0xa8, 0x0b]);
    assert_eq!(reference_checksum(&[], &bytes, 6), 0xa80b);
    // Strict parse refuses it; lenient parse takes it.
    let strict = parse(&bytes, v4(SRC4), v4(MULTICAST_V4));
    assert_eq!(strict, Err(WireError::BadChecksum { what: "VRRP advert", expected: 0x0579, got: 0xa80b }),);
    let lenient = parse_with(&bytes, v4(SRC4), v4(MULTICAST_V4), V4Checksum::Either);
    assert_eq!(lenient, Ok(seed_advert()));
}

#[test]
fn ipv6_advert_checksum_matches_reference_over_rfc8200_pseudo_header() {
    let src: Ipv6Addr = "fe80::1".parse().unwrap();
    let vip: Ipv6Addr = "2001:db8::91".parse().unwrap();
    let advert = Advert { vrid: 7, priority: 200, max_advert_int: 4095, addresses: vec![IpAddr::V6(vip)] };
    let bytes = emit(&advert, IpAddr::V6(src), IpAddr::V6(MULTICAST_V6)).unwrap();
    assert_eq!(bytes.len(), 8 + 16);
    assert_eq!(&bytes[..6], &[0x31, 7, 200, 1, 0x0f, 0xff]);
    assert_eq!(&bytes[8..], &vip.octets());
    let pseudo = v6_pseudo(src, MULTICAST_V6, PROTOCOL, 24);
    let want = reference_checksum(&pseudo, &bytes, 6);
    assert_eq!(u16::from_be_bytes([bytes[6], bytes[7]]), want);
    let got = receive_v6(&bytes, src, MULTICAST_V6, TTL).unwrap();
    assert_eq!(got, Received { src: IpAddr::V6(src), dst: IpAddr::V6(MULTICAST_V6), ttl: TTL, advert });
}

#[test]
fn checksum_covers_the_destination_so_unicast_and_multicast_differ() {
    let peer = Ipv4Addr::new(192, 0, 2, 4);
    let multi = emit(&seed_advert(), v4(SRC4), v4(MULTICAST_V4)).unwrap();
    let uni = emit(&seed_advert(), v4(SRC4), v4(peer)).unwrap();
    assert_ne!(multi[6..8], uni[6..8]);
    assert!(parse(&uni, v4(SRC4), v4(peer)).is_ok());
    assert!(matches!(parse(&uni, v4(SRC4), v4(MULTICAST_V4)), Err(WireError::BadChecksum { .. })));
}

fn ipv4_header(ihl_words: u8, options: &[u8], ttl: u8, proto: u8, payload_len: usize) -> Vec<u8> {
    let header_len = usize::from(ihl_words) * 4;
    let mut h = vec![0u8; 20];
    h[0] = 0x40 | ihl_words;
    h[1] = 0xc0;
    h[2..4].copy_from_slice(&((header_len + payload_len) as u16).to_be_bytes());
    h[8] = ttl;
    h[9] = proto;
    h[12..16].copy_from_slice(&SRC4.octets());
    h[16..20].copy_from_slice(&MULTICAST_V4.octets());
    h.extend_from_slice(options);
    let sum = slow_checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h
}

#[test]
fn parse_ipv4_packet_reads_src_and_ttl_and_skips_options() {
    let payload = emit(&seed_advert(), v4(SRC4), v4(MULTICAST_V4)).unwrap();
    // IHL 6: a Router Alert option (RFC 2113), which the kernel may deliver in front of the advert.
    let mut packet = ipv4_header(6, &[0x94, 0x04, 0x00, 0x00], TTL, PROTOCOL, payload.len());
    packet.extend_from_slice(&payload);
    let got = vrrp::receive_ipv4(&packet, V4Checksum::PseudoHeader).unwrap();
    assert_eq!(got, Received { src: v4(SRC4), dst: v4(MULTICAST_V4), ttl: TTL, advert: seed_advert() });
}

#[test]
fn parse_ipv4_packet_returns_a_wrong_ttl_for_the_caller_to_drop() {
    let payload = emit(&seed_advert(), v4(SRC4), v4(MULTICAST_V4)).unwrap();
    let mut packet = ipv4_header(5, &[], 64, PROTOCOL, payload.len());
    packet.extend_from_slice(&payload);
    assert_eq!(vrrp::receive_ipv4(&packet, V4Checksum::PseudoHeader).unwrap().ttl, 64);
}

#[test]
fn parse_ipv4_packet_refuses_other_protocols_and_bad_header_checksums() {
    let payload = emit(&seed_advert(), v4(SRC4), v4(MULTICAST_V4)).unwrap();
    let mut packet = ipv4_header(5, &[], TTL, 17, payload.len());
    packet.extend_from_slice(&payload);
    assert_eq!(
        vrrp::receive_ipv4(&packet, V4Checksum::PseudoHeader),
        Err(WireError::BadProtocol { what: "IPv4 header", expected: PROTOCOL, got: 17 })
    );
    let mut packet = ipv4_header(5, &[], TTL, PROTOCOL, payload.len());
    packet.extend_from_slice(&payload);
    packet[8] = 254; // TTL changed without fixing the header checksum
    assert!(matches!(
        vrrp::receive_ipv4(&packet, V4Checksum::PseudoHeader),
        Err(WireError::BadChecksum { what: "IPv4 header", .. })
    ));
}

#[test]
fn ipv4_packet_helper_builds_what_parse_ipv4_packet_reads() {
    let packet = vrrp::ipv4_packet(&seed_advert(), SRC4, MULTICAST_V4).unwrap();
    assert_eq!(packet.len(), 20 + 12);
    assert_eq!(&packet[..2], &[0x45, 0xc0]);
    assert_eq!(slow_checksum(&packet[..20]), 0, "IPv4 header checksum must verify");
    let got = vrrp::receive_ipv4(&packet, V4Checksum::PseudoHeader).unwrap();
    assert_eq!(got, Received { src: v4(SRC4), dst: v4(MULTICAST_V4), ttl: TTL, advert: seed_advert() });
}

#[test]
fn receiver_rejects_version_2() {
    let mut bytes = emit(&seed_advert(), v4(SRC4), v4(MULTICAST_V4)).unwrap();
    bytes[0] = 0x21;
    assert_eq!(
        parse(&bytes, v4(SRC4), v4(MULTICAST_V4)),
        Err(WireError::BadVersion { what: "VRRP advert", expected: 3, got: 2 })
    );
}

#[test]
fn receiver_rejects_types_other_than_advertisement() {
    let mut bytes = emit(&seed_advert(), v4(SRC4), v4(MULTICAST_V4)).unwrap();
    bytes[0] = 0x32;
    assert!(matches!(
        parse(&bytes, v4(SRC4), v4(MULTICAST_V4)),
        Err(WireError::BadType { what: "VRRP advert", got: 2, .. })
    ));
}

#[test]
fn receiver_rejects_count_that_disagrees_with_length() {
    let mut bytes = emit(&seed_advert(), v4(SRC4), v4(MULTICAST_V4)).unwrap();
    bytes[3] = 2;
    assert_eq!(
        parse(&bytes, v4(SRC4), v4(MULTICAST_V4)),
        Err(WireError::BadLength { what: "VRRP advert", expected: 16, got: 12 })
    );
    let bytes = emit(&seed_advert(), v4(SRC4), v4(MULTICAST_V4)).unwrap();
    assert!(matches!(parse(&bytes[..7], v4(SRC4), v4(MULTICAST_V4)), Err(WireError::Truncated { .. })));
    // The same bytes read as IPv6 (family follows src) need 8 + 16 bytes.
    let v6: IpAddr = "fe80::1".parse().unwrap();
    let ff = IpAddr::V6(MULTICAST_V6);
    assert_eq!(parse(&bytes, v6, ff), Err(WireError::BadLength { what: "VRRP advert", expected: 24, got: 12 }));
}

#[test]
fn reserved_bits_are_ignored_on_receipt() {
    let mut bytes = emit(&seed_advert(), v4(SRC4), v4(MULTICAST_V4)).unwrap();
    bytes[4] |= 0xf0;
    bytes[6..8].fill(0);
    let pseudo = v4_pseudo(SRC4, MULTICAST_V4, PROTOCOL, 12);
    let sum = reference_checksum(&pseudo, &bytes, 6);
    bytes[6..8].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(parse(&bytes, v4(SRC4), v4(MULTICAST_V4)), Ok(seed_advert()));
}

#[test]
fn emit_refuses_what_the_wire_cannot_carry() {
    let mut a = seed_advert();
    a.max_advert_int = 4096;
    assert_eq!(
        emit(&a, v4(SRC4), v4(MULTICAST_V4)),
        Err(WireError::IntervalTooLarge { what: "VRRP advert", centis: 4096 })
    );
    let mut a = seed_advert();
    a.addresses = (0..256u32).map(|i| IpAddr::V4(Ipv4Addr::from(0xc000_0200 + i))).collect();
    assert!(matches!(
        emit(&a, v4(SRC4), v4(MULTICAST_V4)),
        Err(WireError::TooManyAddresses { count: 256, max: MAX_ADDRESSES, .. })
    ));
    let mut a = seed_advert();
    let v6: IpAddr = "2001:db8::1".parse().unwrap();
    a.addresses.push(v6);
    assert_eq!(emit(&a, v4(SRC4), v4(MULTICAST_V4)), Err(WireError::FamilyMismatch { what: "VRRP advert", addr: v6 }));
    assert!(matches!(emit(&seed_advert(), v4(SRC4), v6), Err(WireError::FamilyMismatch { .. })));
}

#[test]
fn error_messages_name_the_layer_and_the_fault() {
    let e = WireError::BadChecksum { what: "VRRP advert", expected: 0x0579, got: 0xa80b };
    assert_eq!(e.to_string(), "VRRP advert: checksum 0xa80b, expected 0x0579");
    let e = WireError::Truncated { what: "VRRP advert", need: 8, have: 7 };
    assert_eq!(e.to_string(), "VRRP advert: truncated, need 8 bytes, have 7");
}

fn advert_v4() -> impl Strategy<Value = Advert> {
    (any::<u8>(), any::<u8>(), 0u16..=4095, prop::collection::vec(any::<[u8; 4]>(), 0..=20)).prop_map(
        |(vrid, priority, max_advert_int, addrs)| Advert {
            vrid,
            priority,
            max_advert_int,
            addresses: addrs.into_iter().map(|a| IpAddr::V4(Ipv4Addr::from(a))).collect(),
        },
    )
}

fn advert_v6() -> impl Strategy<Value = Advert> {
    (any::<u8>(), any::<u8>(), 0u16..=4095, prop::collection::vec(any::<[u8; 16]>(), 0..=20)).prop_map(
        |(vrid, priority, max_advert_int, addrs)| Advert {
            vrid,
            priority,
            max_advert_int,
            addresses: addrs.into_iter().map(|a| IpAddr::V6(Ipv6Addr::from(a))).collect(),
        },
    )
}

proptest! {
    #[test]
    fn ipv4_round_trip(advert in advert_v4(), src in any::<[u8; 4]>(), dst in any::<[u8; 4]>()) {
        let (src, dst) = (IpAddr::V4(src.into()), IpAddr::V4(dst.into()));
        let bytes = emit(&advert, src, dst).unwrap();
        prop_assert_eq!(bytes.len(), 8 + 4 * advert.addresses.len());
        prop_assert_eq!(parse(&bytes, src, dst), Ok(advert));
    }

    #[test]
    fn ipv4_message_only_round_trip(advert in advert_v4(), src in any::<[u8; 4]>(), dst in any::<[u8; 4]>()) {
        let (src, dst) = (IpAddr::V4(src.into()), IpAddr::V4(dst.into()));
        let bytes = emit_with(&advert, src, dst, V4Checksum::MessageOnly).unwrap();
        prop_assert_eq!(parse_with(&bytes, src, dst, V4Checksum::MessageOnly), Ok(advert));
    }

    #[test]
    fn ipv6_round_trip(advert in advert_v6(), src in any::<[u8; 16]>(), hop in any::<u8>()) {
        let src = Ipv6Addr::from(src);
        let bytes = emit(&advert, IpAddr::V6(src), IpAddr::V6(MULTICAST_V6)).unwrap();
        prop_assert_eq!(bytes.len(), 8 + 16 * advert.addresses.len());
        let got = receive_v6(&bytes, src, MULTICAST_V6, hop).unwrap();
        prop_assert_eq!(got, Received { src: IpAddr::V6(src), dst: IpAddr::V6(MULTICAST_V6), ttl: hop, advert });
    }

    #[test]
    fn full_ipv4_packet_round_trip(advert in advert_v4(), src in any::<[u8; 4]>()) {
        let src = Ipv4Addr::from(src);
        let packet = vrrp::ipv4_packet(&advert, src, MULTICAST_V4).unwrap();
        let got = vrrp::receive_ipv4(&packet, V4Checksum::PseudoHeader).unwrap();
        prop_assert_eq!(got, Received { src: IpAddr::V4(src), dst: IpAddr::V4(MULTICAST_V4), ttl: TTL, advert });
    }

    #[test]
    fn emitted_checksum_matches_the_reference(advert in advert_v4(), src in any::<[u8; 4]>()) {
        let src = Ipv4Addr::from(src);
        let bytes = emit(&advert, IpAddr::V4(src), v4(MULTICAST_V4)).unwrap();
        let pseudo = v4_pseudo(src, MULTICAST_V4, PROTOCOL, bytes.len() as u16);
        prop_assert_eq!(u16::from_be_bytes([bytes[6], bytes[7]]), reference_checksum(&pseudo, &bytes, 6));
    }

    /// A single flipped bit anywhere in the message (including the checksum itself) is refused: the
    /// one's complement sum changes by ±2^k, which can never be ≡ 0 mod 0xffff.
    #[test]
    fn flipped_bit_fails(advert in advert_v4(), bit in any::<prop::sample::Index>()) {
        let (src, dst) = (v4(SRC4), v4(MULTICAST_V4));
        let mut bytes = emit(&advert, src, dst).unwrap();
        let b = bit.index(bytes.len() * 8);
        bytes[b / 8] ^= 0x80 >> (b % 8);
        let result = parse(&bytes, src, dst);
        // Byte 0 (version/type) and byte 3 (count) fail the earlier checks; every other bit, the reserved
        // ones included, is caught by the checksum.
        if b / 8 == 0 || b / 8 == 3 {
            prop_assert!(result.is_err(), "bit {} gave {:?}", b, result);
        } else {
            prop_assert!(matches!(result, Err(WireError::BadChecksum { .. })), "bit {} gave {:?}", b, result);
        }
    }

    #[test]
    fn flipped_bit_fails_ipv6(advert in advert_v6(), bit in any::<prop::sample::Index>()) {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let mut bytes = emit(&advert, IpAddr::V6(src), IpAddr::V6(MULTICAST_V6)).unwrap();
        let b = bit.index(bytes.len() * 8);
        bytes[b / 8] ^= 0x80 >> (b % 8);
        let result = receive_v6(&bytes, src, MULTICAST_V6, TTL);
        if b / 8 == 0 || b / 8 == 3 {
            prop_assert!(result.is_err(), "bit {} gave {:?}", b, result);
        } else {
            prop_assert!(matches!(result, Err(WireError::BadChecksum { .. })), "bit {} gave {:?}", b, result);
        }
    }
}
