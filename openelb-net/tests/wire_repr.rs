//! The one shape every codec shares ([`Repr`]): for every protocol, `emit` then `parse` gives back the
//! representation, `buffer_len` is what `emit` writes, a short buffer is refused, and `parse` returns (never
//! panics) on arbitrary bytes whatever the context.

use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use openelb_net::core::vrrp::Advert;
use openelb_net::wire::arp::{ArpRepr, Operation};
use openelb_net::wire::ethernet::{EthernetRepr, MacAddr};
use openelb_net::wire::icmpv6::{self, NdpRepr, NeighborAdvert, NeighborSolicit};
use openelb_net::wire::ipv4::Ipv4Repr;
use openelb_net::wire::ipv6::Ipv6Repr;
use openelb_net::wire::vrrp::{self, V4Checksum};
use openelb_net::wire::{self, DecodeFailure, Repr, WireError};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Emits `repr` into a buffer of its length plus `payload_len` (headers whose length fields count a
/// payload need it present), checks the length contract, and parses it back.
fn round_trip<R: Repr + PartialEq + Debug>(repr: &R, cx: R::Context, payload_len: usize) -> Result<(), TestCaseError> {
    let len = repr.buffer_len();
    let mut buf = vec![0xa5u8; len + payload_len];
    repr.emit(&mut buf, cx).map_err(|e| TestCaseError::fail(format!("emit {repr:?}: {e}")))?;
    let parsed = wire::decode::<R>(&buf, cx);
    prop_assert_eq!(parsed.as_ref(), Ok(repr));
    // Emit writes only its own bytes.
    prop_assert!(buf[len..].iter().all(|&b| b == 0xa5));
    if len > 0 {
        let mut short = vec![0u8; len - 1];
        let refused = repr.emit(&mut short, cx);
        prop_assert!(matches!(refused, Err(WireError::Truncated { .. })), "{:?}", refused);
    }
    Ok(())
}

fn mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}

fn v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}

fn v6() -> impl Strategy<Value = Ipv6Addr> {
    any::<[u8; 16]>().prop_map(Ipv6Addr::from)
}

fn v4_checksum() -> impl Strategy<Value = V4Checksum> {
    prop_oneof![Just(V4Checksum::PseudoHeader), Just(V4Checksum::MessageOnly), Just(V4Checksum::Either)]
}

/// An advert of one family with the addressing it travels with.
fn advert() -> impl Strategy<Value = (Advert, vrrp::Context)> {
    let head = (any::<u8>(), any::<u8>(), 0u16..=4095);
    prop_oneof![
        (head.clone(), prop::collection::vec(v4(), 0..=30), v4(), v4(), v4_checksum()).prop_map(
            |((vrid, priority, max_advert_int), addrs, src, dst, v4_checksum)| {
                let addresses = addrs.into_iter().map(IpAddr::V4).collect();
                let cx = vrrp::Context { src: IpAddr::V4(src), dst: IpAddr::V4(dst), v4_checksum };
                (Advert { vrid, priority, max_advert_int, addresses }, cx)
            }
        ),
        (head, prop::collection::vec(v6(), 0..=30), v6(), v6()).prop_map(
            |((vrid, priority, max_advert_int), addrs, src, dst)| {
                let addresses = addrs.into_iter().map(IpAddr::V6).collect();
                let cx = vrrp::Context::new(IpAddr::V6(src), IpAddr::V6(dst));
                (Advert { vrid, priority, max_advert_int, addresses }, cx)
            }
        ),
    ]
}

/// An NS or NA that RFC 4861 §7.1 lets through: unicast target, no source link-layer address from the
/// unspecified address, no Solicited flag towards a multicast destination.
fn ndp() -> impl Strategy<Value = (NdpRepr, icmpv6::Context)> {
    let target = || v6().prop_filter("unicast target", |a| !a.is_multicast());
    let repr = prop_oneof![
        (target(), prop::option::of(mac()))
            .prop_map(|(target, source_mac)| NdpRepr::Solicit(NeighborSolicit { target, source_mac })),
        (any::<(bool, bool, bool)>(), target(), prop::option::of(mac())).prop_map(
            |((router, solicited, override_flag), target, target_mac)| {
                NdpRepr::Advert(NeighborAdvert { router, solicited, override_flag, target, target_mac })
            }
        ),
    ];
    (repr, v6(), v6())
        .prop_filter("valid NDP addressing", |(repr, src, dst)| match repr {
            NdpRepr::Solicit(ns) => !(src.is_unspecified() && ns.source_mac.is_some()),
            NdpRepr::Advert(na) => !(na.solicited && dst.is_multicast()),
        })
        .prop_map(|(repr, src, dst)| (repr, icmpv6::Context { src, dst }))
}

fn arbitrary_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..300)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn ethernet_emit_parse_round_trip(dst in mac(), src in mac(), ethertype in any::<u16>(), payload in 0usize..64) {
        round_trip(&EthernetRepr { dst, src, ethertype }, (), payload)?;
    }

    #[test]
    fn arp_emit_parse_round_trip(
        reply in any::<bool>(),
        (sender_mac, target_mac) in (mac(), mac()),
        (sender_ip, target_ip) in (v4(), v4()),
    ) {
        let operation = if reply { Operation::Reply } else { Operation::Request };
        round_trip(&ArpRepr { operation, sender_mac, sender_ip, target_mac, target_ip }, (), 0)?;
    }

    #[test]
    fn ipv4_emit_parse_round_trip(
        (src, dst) in (v4(), v4()),
        (protocol, ttl, dscp_ecn) in any::<(u8, u8, u8)>(),
        payload_len in 0usize..200,
    ) {
        round_trip(&Ipv4Repr { src, dst, protocol, ttl, dscp_ecn, payload_len }, (), payload_len)?;
    }

    #[test]
    fn ipv6_emit_parse_round_trip(
        (src, dst) in (v6(), v6()),
        (next_header, hop_limit) in any::<(u8, u8)>(),
        payload_len in 0usize..200,
    ) {
        round_trip(&Ipv6Repr { src, dst, next_header, hop_limit, payload_len }, (), payload_len)?;
    }

    #[test]
    fn ndp_emit_parse_round_trip((repr, cx) in ndp()) {
        round_trip(&repr, cx, 0)?;
    }

    #[test]
    fn vrrp_emit_parse_round_trip((advert, cx) in advert()) {
        round_trip(&advert, cx, 0)?;
    }

    #[test]
    fn every_parser_returns_on_arbitrary_bytes(
        bytes in arbitrary_bytes(),
        (s4, d4) in (v4(), v4()),
        (s6, d6) in (v6(), v6()),
        form in v4_checksum(),
    ) {
        let _ = wire::decode::<EthernetRepr>(&bytes, ());
        let _ = wire::decode::<ArpRepr>(&bytes, ());
        let _ = wire::decode::<Ipv4Repr>(&bytes, ());
        let _ = wire::decode::<Ipv6Repr>(&bytes, ());
        let _ = wire::decode::<NdpRepr>(&bytes, icmpv6::Context { src: s6, dst: d6 });
        let cx4 = vrrp::Context { src: IpAddr::V4(s4), dst: IpAddr::V4(d4), v4_checksum: form };
        let _ = wire::decode::<Advert>(&bytes, cx4);
        let _ = wire::decode::<Advert>(&bytes, vrrp::Context::new(IpAddr::V6(s6), IpAddr::V6(d6)));
        let _ = wire::decode::<Advert>(&bytes, vrrp::Context::new(IpAddr::V4(s4), IpAddr::V6(d6)));
        let _ = vrrp::receive_ipv4(&bytes, form);
    }

    /// NDP messages whose checksum is right, so random options reach the option walker (the part pnet's
    /// iterator gets wrong; see `docs/wire.md`).
    #[test]
    fn ndp_options_with_a_valid_checksum_never_panic(
        na in any::<bool>(),
        options in prop::collection::vec(any::<u8>(), 0..120),
        (src, dst) in (v6(), v6()),
    ) {
        let cx = icmpv6::Context { src, dst };
        let mut message = ndp_with_options(na, &options, cx);
        let _ = wire::decode::<NdpRepr>(&message, cx);
        message.truncate(message.len() / 2);
        let _ = wire::decode::<NdpRepr>(&message, cx);
    }
}

/// An NS or NA for 2001:db8::91 followed by `options`, with the checksum fixed for `cx`.
fn ndp_with_options(na: bool, options: &[u8], cx: icmpv6::Context) -> Vec<u8> {
    let target = "2001:db8::91".parse().unwrap();
    let repr = if na {
        NdpRepr::Advert(NeighborAdvert {
            router: false,
            solicited: false,
            override_flag: true,
            target,
            target_mac: None,
        })
    } else {
        NdpRepr::Solicit(NeighborSolicit { target, source_mac: None })
    };
    let mut message = wire::encode(&repr, cx, options).unwrap();
    message[icmpv6::field::CHECKSUM].fill(0);
    let sum = icmpv6::Packet::new_checked(&message).unwrap().expected_checksum(cx.src, cx.dst);
    message[icmpv6::field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
    message
}

/// An option of 32 units (256 bytes) is where pnet's `NdpOption` length arithmetic overflows a `u8`; ours
/// reports the truncation.
#[test]
fn ndp_option_of_32_units_is_truncated_not_a_panic() {
    let cx = icmpv6::Context { src: "fe80::1".parse().unwrap(), dst: icmpv6::ALL_NODES };
    let message = ndp_with_options(true, &[2, 32, 0, 0, 0, 0, 0, 0], cx);
    let got = wire::decode::<NdpRepr>(&message, cx);
    assert_eq!(got, Err(WireError::Truncated { what: "ICMPv6 NDP message", need: 256, have: 8 }));
    assert_eq!(got.unwrap_err().kind(), DecodeFailure::Truncated);
}

#[test]
fn drop_reasons_are_distinct_metric_labels() {
    let mut labels: Vec<&str> = DecodeFailure::ALL.iter().map(|r| r.as_str()).collect();
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), DecodeFailure::ALL.len());
    assert!(labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')), "{labels:?}");
}
