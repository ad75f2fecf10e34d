//! Fuzz-style properties: no parser panics, whatever the bytes. Three kinds of input reach different
//! depths: plain random bytes (stop at the first length or version check), valid packets with random
//! edits and truncation (get past the early checks), and random payloads wrapped in correct IPv4/IPv6
//! headers (reach the VRRP and NDP parsers with lengths that agree).

mod wire_common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use openelb_net::core::vrrp::Advert;
use openelb_net::core::vrrp::consts::{MULTICAST_V4, MULTICAST_V6, PROTOCOL, TTL};
use openelb_net::wire;
use openelb_net::wire::arp::{self, ArpRepr, GratuitousForm};
use openelb_net::wire::ethernet::{self, EthernetRepr, MacAddr};
use openelb_net::wire::icmpv6::{self, NdpRepr};
use openelb_net::wire::ipv4::{self, Ipv4Repr};
use openelb_net::wire::ipv6::{self, Ipv6Repr};
use openelb_net::wire::vrrp::{self, V4Checksum};
use proptest::prelude::*;
use wire_common::slow_checksum;

fn vrrp_cx(src: IpAddr, dst: IpAddr, v4_checksum: V4Checksum) -> vrrp::Context {
    vrrp::Context { src, dst, v4_checksum }
}

/// Runs every parser and every view accessor over `b`, treating it as each layer in turn.
fn run_all_parsers(b: &[u8]) {
    let _ = wire::decode::<EthernetRepr>(b, ());
    if let Ok(f) = ethernet::Frame::new_checked(b) {
        let _ = (f.dst(), f.src(), f.ethertype(), f.payload());
    }
    let _ = wire::decode::<ArpRepr>(b, ());
    if let Ok(p) = arp::Packet::new_checked(b) {
        let _ = (p.hardware_type(), p.protocol_type(), p.hardware_len(), p.protocol_len(), p.operation());
        let _ = (p.sender_mac(), p.sender_ip(), p.target_mac(), p.target_ip());
    }
    let _ = arp::parse_frame(b);
    let _ = wire::decode::<Ipv4Repr>(b, ());
    if let Ok(p) = ipv4::Packet::new_checked(b) {
        let _ = (p.version(), p.header_len(), p.total_len(), p.ident(), p.is_fragment(), p.ttl(), p.protocol());
        let _ = (p.src(), p.dst(), p.verify_checksum(), p.expected_checksum(), p.payload(), p.dscp_ecn());
    }
    let _ = wire::decode::<Ipv6Repr>(b, ());
    if let Ok(p) = ipv6::Packet::new_checked(b) {
        let _ = (p.traffic_class(), p.flow_label(), p.next_header(), p.hop_limit(), p.src(), p.dst(), p.payload());
    }
    for form in [V4Checksum::PseudoHeader, V4Checksum::MessageOnly, V4Checksum::Either] {
        let _ = vrrp::receive_ipv4(b, form);
    }
    let (s4, d4) = (IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3)), IpAddr::V4(MULTICAST_V4));
    for form in [V4Checksum::PseudoHeader, V4Checksum::MessageOnly, V4Checksum::Either] {
        let _ = wire::decode::<Advert>(b, vrrp_cx(s4, d4, form));
    }
    let s6 = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    let _ = vrrp::receive(b, vrrp::Context::new(IpAddr::V6(s6), IpAddr::V6(MULTICAST_V6)), TTL);
    let _ = wire::decode::<Advert>(b, vrrp::Context::new(s4, IpAddr::V6(s6)));
    if let Ok(p) = vrrp::Packet::new_checked(b) {
        let _ = (p.version(), p.kind(), p.vrid(), p.priority(), p.count(), p.max_advert_int(), p.checksum());
        let _ = p.address_bytes();
    }
    let _ = wire::decode::<NdpRepr>(b, icmpv6::Context { src: s6, dst: icmpv6::ALL_NODES });
    let _ = wire::decode::<NdpRepr>(b, icmpv6::Context { src: Ipv6Addr::UNSPECIFIED, dst: icmpv6::ALL_NODES });
    if let Ok(p) = icmpv6::Packet::new_checked(b) {
        let _ = (p.msg_type(), p.code(), p.checksum(), p.verify_checksum(s6, icmpv6::ALL_NODES));
        let _ = p.expected_checksum(s6, icmpv6::ALL_NODES);
    }
    let _ = icmpv6::parse_frame(b);
}

fn valid_samples() -> Vec<Vec<u8>> {
    let mac = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    let vip4 = Ipv4Addr::new(192, 0, 2, 91);
    let vip6: Ipv6Addr = "2001:db8::91".parse().unwrap();
    let ll: Ipv6Addr = "fe80::1".parse().unwrap();
    let a4 = Advert { vrid: 51, priority: 100, max_advert_int: 100, addresses: vec![IpAddr::V4(vip4); 3] };
    let a6 = Advert { vrid: 51, priority: 100, max_advert_int: 100, addresses: vec![IpAddr::V6(vip6); 2] };
    let v4_packet = vrrp::ipv4_packet(&a4, Ipv4Addr::new(192, 0, 2, 3), MULTICAST_V4).unwrap();
    let eth4 =
        EthernetRepr { dst: MacAddr::ipv4_multicast(MULTICAST_V4), src: mac, ethertype: ethernet::ETHERTYPE_IPV4 };
    let v4_frame = wire::encode(&eth4, (), &v4_packet).unwrap();
    let s4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));
    vec![
        arp::gratuitous(mac, vip4, GratuitousForm::Request).unwrap(),
        arp::gratuitous(mac, vip4, GratuitousForm::Reply).unwrap(),
        icmpv6::unsolicited_na_frame(mac, ll, vip6).unwrap(),
        wire::encode(&a4, vrrp::Context::new(s4, IpAddr::V4(MULTICAST_V4)), &[]).unwrap(),
        wire::encode(&a6, vrrp::Context::new(IpAddr::V6(ll), IpAddr::V6(MULTICAST_V6)), &[]).unwrap(),
        vrrp::ipv6_packet(&a6, ll, MULTICAST_V6).unwrap(),
        v4_packet,
        v4_frame,
    ]
}

/// A valid sample with random byte edits, then cut at a random length.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let samples = valid_samples();
    (
        0..samples.len(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(move |(which, edits, cut, do_cut)| {
            let mut b = samples[which].clone();
            for (at, value) in edits {
                let i = at.index(b.len());
                b[i] = value;
            }
            if do_cut {
                b.truncate(cut.index(b.len() + 1));
            }
            b
        })
}

/// Random bytes behind an IPv4 header whose lengths and checksum are right, with 0-40 bytes of options.
fn wrapped_ipv4() -> impl Strategy<Value = Vec<u8>> {
    (0usize..=10, any::<[u8; 40]>(), any::<u8>(), any::<bool>(), prop::collection::vec(any::<u8>(), 0..120)).prop_map(
        |(opt_words, opts, ttl, vrrp_proto, payload)| {
            let header_len = 20 + opt_words * 4;
            let mut p = vec![0u8; 20];
            p[0] = 0x40 | (5 + opt_words as u8);
            p[2..4].copy_from_slice(&((header_len + payload.len()) as u16).to_be_bytes());
            p[8] = ttl;
            p[9] = if vrrp_proto { PROTOCOL } else { ttl };
            p[12..16].copy_from_slice(&[192, 0, 2, 3]);
            p[16..20].copy_from_slice(&MULTICAST_V4.octets());
            p.extend_from_slice(&opts[..opt_words * 4]);
            let sum = slow_checksum(&p);
            p[10..12].copy_from_slice(&sum.to_be_bytes());
            p.extend_from_slice(&payload);
            p
        },
    )
}

/// Random ICMPv6 bodies behind correct Ethernet and IPv6 headers with hop limit 255.
fn wrapped_ndp() -> impl Strategy<Value = Vec<u8>> {
    (any::<bool>(), prop::collection::vec(any::<u8>(), 0..80)).prop_map(|(na, mut body)| {
        if body.len() >= 2 {
            body[0] = if na { 136 } else { 135 };
            body[1] = 0;
        }
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let ip = Ipv6Repr {
            src,
            dst: icmpv6::ALL_NODES,
            next_header: 58,
            hop_limit: icmpv6::HOP_LIMIT,
            payload_len: body.len(),
        };
        let packet = wire::encode(&ip, (), &body).unwrap();
        let eth = EthernetRepr { dst: MacAddr::BROADCAST, src: MacAddr::ZERO, ethertype: ethernet::ETHERTYPE_IPV6 };
        wire::encode(&eth, (), &packet).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..200)) {
        run_all_parsers(&b);
    }

    #[test]
    fn mutated_packets_never_panic(b in mutated()) {
        run_all_parsers(&b);
        if b.len() > 14 {
            run_all_parsers(&b[14..]);
        }
    }

    #[test]
    fn random_payload_in_valid_ipv4_never_panics(p in wrapped_ipv4()) {
        run_all_parsers(&p);
        // The header is valid, so only the VRRP layer (or the protocol check) can refuse it.
        let result = vrrp::receive_ipv4(&p, V4Checksum::PseudoHeader);
        let header_refused =
            matches!(result, Err(openelb_net::wire::WireError::BadChecksum { what: "IPv4 header", .. }));
        prop_assert!(!header_refused, "header checksum was made valid, got {:?}", result);
    }

    #[test]
    fn random_icmpv6_in_valid_frames_never_panics(f in wrapped_ndp()) {
        run_all_parsers(&f);
    }

    #[test]
    fn mac_from_arbitrary_text_never_panics(s in ".{0,30}") {
        let _ = s.parse::<MacAddr>();
    }
}
