//! IPv4 and IPv6 headers and the checksum helpers.

mod wire_common;

use std::net::{Ipv4Addr, Ipv6Addr};

use openelb_net::core::vrrp::consts::{MULTICAST_V4, MULTICAST_V6, PROTOCOL, TTL};
use openelb_net::wire::checksum;
use openelb_net::wire::ipv4::{self, Ipv4Repr};
use openelb_net::wire::ipv6::{self, Ipv6Repr};
use openelb_net::wire::{self, Repr, WireError};
use proptest::prelude::*;
use wire_common::{slow_checksum, v4_pseudo, v6_pseudo};

/// The header from the IPv4 checksum example that circulates in textbooks: UDP, DF, TTL 64,
/// 192.168.0.1 → 192.168.0.199, checksum 0xb861.
const TEXTBOOK: [u8; 20] = [
    0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00,
    0xc7,
];

fn textbook_packet() -> Vec<u8> {
    let mut p = TEXTBOOK.to_vec();
    p.resize(0x73, 0xab);
    p
}

#[test]
fn ipv4_textbook_header_verifies() {
    let packet = textbook_packet();
    let view = ipv4::Packet::new_checked(&packet[..]).unwrap();
    let (repr, payload) = (Ipv4Repr::parse(&view, ()).unwrap(), view.payload());
    assert_eq!(repr.src, Ipv4Addr::new(192, 168, 0, 1));
    assert_eq!(repr.dst, Ipv4Addr::new(192, 168, 0, 199));
    assert_eq!((repr.protocol, repr.ttl, repr.payload_len), (17, 64, 0x73 - 20));
    assert_eq!(payload.len(), 0x73 - 20);
    let mut zeroed = TEXTBOOK;
    zeroed[10..12].fill(0);
    assert_eq!(checksum::checksum(&zeroed), 0xb861);
}

#[test]
fn ipv4_bad_header_checksum_reports_both_values() {
    let mut packet = textbook_packet();
    packet[11] = 0x62;
    assert_eq!(
        wire::decode::<Ipv4Repr>(&packet, ()).err(),
        Some(WireError::BadChecksum { what: "IPv4 header", expected: 0xb861, got: 0xb862 })
    );
}

#[test]
fn ipv4_view_rejects_bad_version_ihl_and_lengths() {
    let mut p = textbook_packet();
    p[0] = 0x65;
    assert_eq!(
        wire::decode::<Ipv4Repr>(&p, ()).err(),
        Some(WireError::BadVersion { what: "IPv4 header", expected: 4, got: 6 })
    );
    let mut p = textbook_packet();
    p[0] = 0x44;
    assert!(matches!(wire::decode::<Ipv4Repr>(&p, ()), Err(WireError::Malformed { .. })));
    let mut p = textbook_packet();
    p[2..4].copy_from_slice(&19u16.to_be_bytes());
    assert_eq!(
        wire::decode::<Ipv4Repr>(&p, ()).err(),
        Some(WireError::BadLength { what: "IPv4 header", expected: 20, got: 19 })
    );
    let p = textbook_packet();
    assert_eq!(
        wire::decode::<Ipv4Repr>(&p[..100], ()).err(),
        Some(WireError::Truncated { what: "IPv4 header", need: 0x73, have: 100 })
    );
    // IHL 15 = 60 bytes of header, more than a 40-byte buffer holds.
    let mut p = textbook_packet();
    p[0] = 0x4f;
    assert!(matches!(wire::decode::<Ipv4Repr>(&p[..40], ()), Err(WireError::Truncated { need: 60, .. })));
}

#[test]
fn ipv4_fragments_are_refused() {
    let repr = Ipv4Repr {
        src: Ipv4Addr::new(192, 0, 2, 3),
        dst: MULTICAST_V4,
        protocol: PROTOCOL,
        ttl: TTL,
        dscp_ecn: 0,
        payload_len: 0,
    };
    for flags in [0x2000u16, 0x0001] {
        let mut p = wire::encode(&Ipv4Repr { payload_len: 4, ..repr }, (), &[1, 2, 3, 4]).unwrap();
        p[6..8].copy_from_slice(&flags.to_be_bytes());
        p[10..12].fill(0);
        let sum = slow_checksum(&p[..20]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        assert!(matches!(
            wire::decode::<Ipv4Repr>(&p, ()),
            Err(WireError::Malformed { reason: "fragmented datagram", .. })
        ));
    }
}

#[test]
fn ipv4_payload_stops_at_total_length_not_at_ethernet_padding() {
    let repr = Ipv4Repr {
        src: Ipv4Addr::new(192, 0, 2, 3),
        dst: Ipv4Addr::new(192, 0, 2, 4),
        protocol: PROTOCOL,
        ttl: TTL,
        dscp_ecn: 0xc0,
        payload_len: 0,
    };
    let mut p = wire::encode(&Ipv4Repr { payload_len: 12, ..repr }, (), &[9; 12]).unwrap();
    p.resize(46, 0);
    let packet = ipv4::Packet::new_checked(&p[..]).unwrap();
    assert_eq!(packet.payload(), &[9; 12]);
}

#[test]
fn ipv6_view_checks_version_and_payload_length() {
    let repr = Ipv6Repr {
        src: "fe80::1".parse().unwrap(),
        dst: MULTICAST_V6,
        next_header: PROTOCOL,
        hop_limit: TTL,
        payload_len: 24,
    };
    let p = wire::encode(&repr, (), &[7; 24]).unwrap();
    assert_eq!(p.len(), 64);
    let mut bad = p.clone();
    bad[0] = 0x40;
    assert_eq!(
        wire::decode::<Ipv6Repr>(&bad, ()).err(),
        Some(WireError::BadVersion { what: "IPv6 header", expected: 6, got: 4 })
    );
    assert_eq!(
        wire::decode::<Ipv6Repr>(&p[..63], ()).err(),
        Some(WireError::Truncated { what: "IPv6 header", need: 64, have: 63 })
    );
    let view = ipv6::Packet::new_checked(&p[..]).unwrap();
    assert_eq!((view.traffic_class(), view.flow_label()), (0, 0));
}

#[test]
fn pseudo_headers_match_the_byte_layouts() {
    let (s4, d4) = (Ipv4Addr::new(192, 0, 2, 3), MULTICAST_V4);
    let acc = checksum::pseudo_header_v4(s4, d4, PROTOCOL, 12);
    assert_eq!(checksum::finish(acc), slow_checksum(&v4_pseudo(s4, d4, PROTOCOL, 12)));
    let (s6, d6): (Ipv6Addr, Ipv6Addr) = ("2001:db8::3".parse().unwrap(), "ff02::1".parse().unwrap());
    let acc = checksum::pseudo_header_v6(s6, d6, 58, 32);
    assert_eq!(checksum::finish(acc), slow_checksum(&v6_pseudo(s6, d6, 58, 32)));
}

#[test]
fn checksum_of_odd_length_pads_with_zero() {
    assert_eq!(checksum::checksum(&[0x12, 0x34, 0x56]), slow_checksum(&[0x12, 0x34, 0x56, 0x00]));
    assert_eq!(checksum::checksum(&[]), 0xffff);
}

proptest! {
    #[test]
    fn checksum_matches_rfc1071_reference(data in prop::collection::vec(any::<u8>(), 0..2000)) {
        prop_assert_eq!(checksum::checksum(&data), slow_checksum(&data));
    }

    #[test]
    fn sums_chain_over_even_pieces(
        a in prop::collection::vec(any::<[u8; 2]>(), 0..50),
        b in prop::collection::vec(any::<u8>(), 0..50),
    ) {
        let a: Vec<u8> = a.concat();
        let whole: Vec<u8> = a.iter().chain(&b).copied().collect();
        prop_assert_eq!(checksum::finish(checksum::sum(checksum::sum(0, &a), &b)), checksum::checksum(&whole));
    }

    #[test]
    fn ipv4_round_trip(
        src in any::<[u8; 4]>(),
        dst in any::<[u8; 4]>(),
        (protocol, ttl, tos) in any::<(u8, u8, u8)>(),
        payload in prop::collection::vec(any::<u8>(), 0..100),
    ) {
        let (src, dst, payload_len) = (src.into(), dst.into(), payload.len());
        let repr = Ipv4Repr { src, dst, protocol, ttl, dscp_ecn: tos, payload_len };
        let p = wire::encode(&repr, (), &payload).unwrap();
        prop_assert_eq!(slow_checksum(&p[..20]), 0);
        let view = ipv4::Packet::new_checked(&p[..]).unwrap();
        prop_assert_eq!(Ipv4Repr::parse(&view, ()), Ok(repr));
        prop_assert_eq!(view.payload(), &payload[..]);
    }

    #[test]
    fn ipv6_round_trip(
        src in any::<[u8; 16]>(),
        dst in any::<[u8; 16]>(),
        (next_header, hop_limit) in any::<(u8, u8)>(),
        payload in prop::collection::vec(any::<u8>(), 0..100),
    ) {
        let (src, dst, payload_len) = (src.into(), dst.into(), payload.len());
        let repr = Ipv6Repr { src, dst, next_header, hop_limit, payload_len };
        let p = wire::encode(&repr, (), &payload).unwrap();
        let view = ipv6::Packet::new_checked(&p[..]).unwrap();
        prop_assert_eq!(Ipv6Repr::parse(&view, ()), Ok(repr));
        prop_assert_eq!(view.payload(), &payload[..]);
    }
}
