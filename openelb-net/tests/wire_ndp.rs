//! NDP: the unsolicited Neighbor Advertisement frame of a takeover, and NS/NA parsing for layer2 mode.

mod wire_common;

use std::net::Ipv6Addr;

use openelb_net::wire::ethernet::MacAddr;
use openelb_net::wire::icmpv6::{self, Context, NdpRepr, NeighborAdvert, NeighborSolicit};
use openelb_net::wire::ipv6::Ipv6Repr;
use openelb_net::wire::{self, Repr, WireError};
use proptest::prelude::*;
use wire_common::{reference_checksum, v6_pseudo};

const MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

fn emit(repr: NdpRepr, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    wire::encode(&repr, Context { src, dst }, &[]).unwrap()
}

fn parse(message: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> Result<NdpRepr, WireError> {
    wire::decode(message, Context { src, dst })
}

fn ll() -> Ipv6Addr {
    "fe80::5054:ff:fe12:3456".parse().unwrap()
}
fn vip() -> Ipv6Addr {
    "2001:db8::91".parse().unwrap()
}

#[test]
fn unsolicited_na_frame_layout() {
    let f = icmpv6::unsolicited_na_frame(MAC, ll(), vip()).unwrap();
    assert_eq!(f.len(), 14 + 40 + 32);
    assert_eq!(&f[..6], &[0x33, 0x33, 0, 0, 0, 1]);
    assert_eq!(&f[6..12], &MAC.0);
    assert_eq!(&f[12..14], &[0x86, 0xdd]);
    // IPv6: version 6, payload 32, ICMPv6, hop limit 255, link-local → ff02::1.
    assert_eq!(&f[14..22], &[0x60, 0, 0, 0, 0, 32, 58, 255]);
    assert_eq!(&f[22..38], &ll().octets());
    assert_eq!(&f[38..54], &icmpv6::ALL_NODES.octets());
    let icmp = &f[54..];
    assert_eq!(&icmp[..2], &[136, 0]);
    // Flags: Override only (R=0, S=0), reserved zero.
    assert_eq!(&icmp[4..8], &[0x20, 0, 0, 0]);
    assert_eq!(&icmp[8..24], &vip().octets());
    // Target Link-Layer Address option, one 8-byte unit.
    assert_eq!(&icmp[24..26], &[2, 1]);
    assert_eq!(&icmp[26..32], &MAC.0);
    let pseudo = v6_pseudo(ll(), icmpv6::ALL_NODES, 58, 32);
    assert_eq!(u16::from_be_bytes([icmp[2], icmp[3]]), reference_checksum(&pseudo, icmp, 2));
}

#[test]
fn unsolicited_na_frame_parses_back() {
    let f = icmpv6::unsolicited_na_frame(MAC, ll(), vip()).unwrap();
    let got = icmpv6::parse_frame(&f).unwrap();
    assert_eq!(got.ethernet.src, MAC);
    assert_eq!((got.ip.src, got.ip.dst, got.ip.hop_limit), (ll(), icmpv6::ALL_NODES, 255));
    assert_eq!(got.ndp, NdpRepr::Advert(NeighborAdvert::unsolicited(MAC, vip())));
}

fn ns_frame(src: Ipv6Addr, dst: Ipv6Addr, ns: NeighborSolicit, hop_limit: u8) -> Vec<u8> {
    let icmp = emit(NdpRepr::Solicit(ns), src, dst);
    let ip = Ipv6Repr { src, dst, next_header: 58, hop_limit, payload_len: icmp.len() };
    let ip = wire::encode(&ip, (), &icmp).unwrap();
    let eth = openelb_net::wire::ethernet::EthernetRepr {
        dst: MacAddr::ipv6_multicast(dst),
        src: MAC,
        ethertype: openelb_net::wire::ethernet::ETHERTYPE_IPV6,
    };
    wire::encode(&eth, (), &ip).unwrap()
}

#[test]
fn neighbor_solicitation_for_a_vip_is_decoded_with_its_source_mac() {
    let solicited_node: Ipv6Addr = "ff02::1:ff00:91".parse().unwrap();
    let client: Ipv6Addr = "2001:db8::5".parse().unwrap();
    let ns = NeighborSolicit { target: vip(), source_mac: Some(MAC) };
    let got = icmpv6::parse_frame(&ns_frame(client, solicited_node, ns, 255)).unwrap();
    assert_eq!(got.ndp, NdpRepr::Solicit(ns));
    assert_eq!(got.ip.src, client);
}

#[test]
fn ndp_with_hop_limit_below_255_is_refused() {
    let solicited_node: Ipv6Addr = "ff02::1:ff00:91".parse().unwrap();
    let ns = NeighborSolicit { target: vip(), source_mac: None };
    let frame = ns_frame("2001:db8::5".parse().unwrap(), solicited_node, ns, 254);
    assert_eq!(icmpv6::parse_frame(&frame), Err(WireError::BadHopLimit { what: "ICMPv6 NDP message", got: 254 }));
}

#[test]
fn dad_probe_from_unspecified_must_not_carry_a_source_mac() {
    let dst: Ipv6Addr = "ff02::1:ff00:91".parse().unwrap();
    let ok = emit(NdpRepr::Solicit(NeighborSolicit { target: vip(), source_mac: None }), Ipv6Addr::UNSPECIFIED, dst);
    assert!(parse(&ok, Ipv6Addr::UNSPECIFIED, dst).is_ok());
    let bad =
        emit(NdpRepr::Solicit(NeighborSolicit { target: vip(), source_mac: Some(MAC) }), Ipv6Addr::UNSPECIFIED, dst);
    assert!(matches!(parse(&bad, Ipv6Addr::UNSPECIFIED, dst), Err(WireError::Malformed { .. })));
}

#[test]
fn solicited_advert_to_multicast_is_refused() {
    let na =
        NeighborAdvert { router: false, solicited: true, override_flag: true, target: vip(), target_mac: Some(MAC) };
    let bytes = emit(NdpRepr::Advert(na), ll(), icmpv6::ALL_NODES);
    assert!(matches!(parse(&bytes, ll(), icmpv6::ALL_NODES), Err(WireError::Malformed { .. })));
    let client: Ipv6Addr = "2001:db8::5".parse().unwrap();
    let bytes = emit(NdpRepr::Advert(na), ll(), client);
    assert_eq!(parse(&bytes, ll(), client), Ok(NdpRepr::Advert(na)));
}

/// Re-computes the checksum after a test edits the message, so the edit reaches the check under test.
fn fix_checksum(msg: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) {
    let pseudo = v6_pseudo(src, dst, 58, msg.len() as u32);
    let sum = reference_checksum(&pseudo, msg, 2);
    msg[2..4].copy_from_slice(&sum.to_be_bytes());
}

#[test]
fn ndp_validity_checks() {
    let (src, dst) = (ll(), icmpv6::ALL_NODES);
    let good = emit(NdpRepr::Advert(NeighborAdvert::unsolicited(MAC, vip())), src, dst);

    let mut m = good.clone();
    m[1] = 1;
    fix_checksum(&mut m, src, dst);
    assert_eq!(
        parse(&m, src, dst),
        Err(WireError::Malformed { what: "ICMPv6 NDP message", reason: "ICMP code is not 0" })
    );

    let mut m = good.clone();
    m[25] = 0; // option length 0 would loop forever in a careless parser
    fix_checksum(&mut m, src, dst);
    assert!(matches!(parse(&m, src, dst), Err(WireError::Malformed { reason: "option with length 0", .. })));

    let mut m = good.clone();
    m[25] = 2; // claims 16 bytes, 8 present
    fix_checksum(&mut m, src, dst);
    assert!(matches!(parse(&m, src, dst), Err(WireError::Truncated { need: 16, have: 8, .. })));

    let mut m = good.clone();
    m[8..24].copy_from_slice(&icmpv6::ALL_NODES.octets());
    fix_checksum(&mut m, src, dst);
    assert!(matches!(parse(&m, src, dst), Err(WireError::Malformed { reason: "target address is multicast", .. })));

    let mut m = good.clone();
    m[0] = 128; // echo request
    fix_checksum(&mut m, src, dst);
    assert!(matches!(parse(&m, src, dst), Err(WireError::BadType { got: 128, .. })));

    let mut m = good.clone();
    m[31] ^= 1;
    assert!(matches!(parse(&m, src, dst), Err(WireError::BadChecksum { .. })));

    let m = &good[..20];
    let mut m = m.to_vec();
    fix_checksum(&mut m, src, dst);
    assert!(matches!(parse(&m, src, dst), Err(WireError::Truncated { need: 24, have: 20, .. })));
}

#[test]
fn unknown_options_are_skipped() {
    let (src, dst) = (ll(), icmpv6::ALL_NODES);
    let mut m = emit(NdpRepr::Advert(NeighborAdvert::unsolicited(MAC, vip())), src, dst);
    // A nonce option (type 14, one unit) in front of the TLLA option.
    let tlla = m.split_off(24);
    m.extend_from_slice(&[14, 1, 1, 2, 3, 4, 5, 6]);
    m.extend_from_slice(&tlla);
    fix_checksum(&mut m, src, dst);
    assert_eq!(parse(&m, src, dst), Ok(NdpRepr::Advert(NeighborAdvert::unsolicited(MAC, vip()))));
}

fn v6() -> impl Strategy<Value = Ipv6Addr> {
    any::<[u8; 16]>().prop_map(Ipv6Addr::from)
}

fn unicast_v6() -> impl Strategy<Value = Ipv6Addr> {
    v6().prop_filter("not multicast", |a| !a.is_multicast())
}

fn ndp() -> impl Strategy<Value = NdpRepr> {
    let mac = prop::option::of(any::<[u8; 6]>().prop_map(MacAddr));
    prop_oneof![
        (unicast_v6(), mac.clone())
            .prop_map(|(target, source_mac)| NdpRepr::Solicit(NeighborSolicit { target, source_mac })),
        (any::<(bool, bool)>(), unicast_v6(), mac).prop_map(|((router, override_flag), target, target_mac)| {
            NdpRepr::Advert(NeighborAdvert { router, solicited: false, override_flag, target, target_mac })
        }),
    ]
}

proptest! {
    #[test]
    fn ndp_round_trip(
        repr in ndp(),
        src in unicast_v6().prop_filter("specified", |a| !a.is_unspecified()),
        dst in v6(),
    ) {
        let bytes = emit(repr, src, dst);
        prop_assert_eq!(bytes.len(), repr.buffer_len());
        prop_assert_eq!(parse(&bytes, src, dst), Ok(repr));
    }

    #[test]
    fn na_frame_round_trip(mac in any::<[u8; 6]>(), src in unicast_v6(), vip in unicast_v6()) {
        let mac = MacAddr(mac);
        let got = icmpv6::parse_frame(&icmpv6::unsolicited_na_frame(mac, src, vip).unwrap()).unwrap();
        prop_assert_eq!(got.ndp, NdpRepr::Advert(NeighborAdvert::unsolicited(mac, vip)));
    }
}
