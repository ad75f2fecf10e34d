//! Properties of `AddrRange` parsing and address math over arbitrary input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use openelb_core::addr::{AddrRange, ip_to_u128, overlapping_pairs, u128_to_ip};
use openelb_core::model::IpFamily;
use openelb_core::reserved;
use proptest::prelude::*;

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        any::<u128>().prop_map(|v| IpAddr::V6(Ipv6Addr::from(v))),
        // Near the edges and IPv4-mapped, where off-by-one and family mistakes live.
        prop_oneof![Just(0u32), Just(u32::MAX), Just(u32::MAX - 1)].prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        any::<u32>().prop_map(|v| IpAddr::V6(Ipv4Addr::from(v).to_ipv6_mapped())),
        // Every reserved block's edges, inside and out.
        prop_oneof![
            Just("127.0.0.0"),
            Just("126.255.255.255"),
            Just("128.0.0.0"),
            Just("169.254.0.0"),
            Just("169.253.255.255"),
            Just("169.255.0.0"),
            Just("224.0.0.0"),
            Just("223.255.255.255"),
            Just("239.255.255.255"),
            Just("240.0.0.0"),
            Just("::"),
            Just("::1"),
            Just("::2"),
            Just("fe80::"),
            Just("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Just("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Just("fec0::"),
            Just("ff00::"),
            Just("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Just("::fffe:ffff:ffff"),
            Just("::1:0:0:0"),
        ]
        .prop_map(|s| s.parse::<IpAddr>().unwrap()),
    ]
}

/// The standard library's view of the same classes, written independently of the block table.
fn std_reserved(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            v.is_unspecified() || v.is_broadcast() || v.is_multicast() || v.is_loopback() || v.is_link_local()
        }
        IpAddr::V6(v) => {
            v.is_unspecified()
                || v.is_loopback()
                || v.is_multicast()
                || v.is_unicast_link_local()
                || v.to_ipv4_mapped().is_some()
        }
    }
}

/// A valid range of either family, built from two addresses of the same family in order.
fn any_range() -> impl Strategy<Value = AddrRange> {
    prop_oneof![
        (any::<u32>(), any::<u32>()).prop_map(|(a, b)| {
            let (a, b) = (a.min(b), a.max(b));
            AddrRange::new(Ipv4Addr::from(a).into(), Ipv4Addr::from(b).into()).unwrap()
        }),
        (any::<u128>(), any::<u128>()).prop_map(|(a, b)| {
            let (a, b) = (a.min(b), a.max(b));
            AddrRange::new(Ipv6Addr::from(a).into(), Ipv6Addr::from(b).into()).unwrap()
        }),
        (any_ip(), 0u32..=128).prop_map(|(ip, len)| {
            let len = if ip.is_ipv4() { len % 33 } else { len };
            AddrRange::parse(&format!("{ip}/{len}")).unwrap()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_never_panics_on_arbitrary_strings(s in "\\PC*") {
        let _ = AddrRange::parse(&s);
    }

    #[test]
    fn parse_never_panics_on_address_shaped_strings(s in "[0-9a-fA-F:.\\-/ ]{0,48}") {
        let _ = AddrRange::parse(&s);
    }

    #[test]
    fn parse_never_panics_on_ip_dash_ip(a in any_ip(), b in any_ip(), sep in "-|--| - ") {
        let text = format!("{a}{sep}{b}");
        match AddrRange::parse(&text) {
            Ok(r) => {
                prop_assert_eq!(sep.as_str(), "-");
                prop_assert_eq!((r.start(), r.end()), (a, b));
            }
            Err(e) => prop_assert!(e.to_string().starts_with(&format!("{text:?}: ")), "{}", e),
        }
    }

    #[test]
    fn ip_dash_ip_accepts_exactly_ordered_same_family(a in any_ip(), b in any_ip()) {
        let ok = a.is_ipv4() == b.is_ipv4() && ip_to_u128(&a) <= ip_to_u128(&b);
        prop_assert_eq!(AddrRange::parse(&format!("{a}-{b}")).is_ok(), ok);
    }

    #[test]
    fn parse_never_panics_on_ip_slash_n(ip in any_ip(), n in "[0-9]{0,5}|[0-9.]{1,15}|-?[0-9]+") {
        let text = format!("{ip}/{n}");
        if let Ok(r) = AddrRange::parse(&text) {
            let len: u32 = n.parse().unwrap();
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            prop_assert!(len <= bits);
            prop_assert!(r.contains(&ip));
        }
    }

    #[test]
    fn cidr_contains_its_address_and_is_aligned(ip in any_ip(), len in 0u32..=128) {
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        let len = len % (bits + 1);
        let r = AddrRange::parse(&format!("{ip}/{len}")).unwrap();
        prop_assert!(r.contains(&ip));
        let host = bits - len;
        if host < 128 {
            prop_assert_eq!(r.size(), 1u128 << host);
            prop_assert_eq!(ip_to_u128(&r.start()) % (1u128 << host), 0);
        } else {
            prop_assert_eq!(r.size(), u128::MAX);
        }
    }

    #[test]
    fn display_parse_round_trip(r in any_range()) {
        prop_assert_eq!(AddrRange::parse(&r.to_string()).unwrap(), r);
    }

    #[test]
    fn size_nth_offset_are_consistent(r in any_range(), pick in any::<u128>()) {
        let last = ip_to_u128(&r.end()) - ip_to_u128(&r.start());
        prop_assert_eq!(r.last_offset(), last);
        prop_assert_eq!(r.nth(0), Some(r.start()));
        prop_assert_eq!(r.nth(last), Some(r.end()));
        prop_assert_eq!(r.offset_of(&r.end()), Some(last));
        if last < u128::MAX {
            prop_assert_eq!(r.size(), last + 1);
            prop_assert_eq!(r.nth(last + 1), None);
        }
        let offset = if last == u128::MAX { pick } else { pick % (last + 1) };
        let ip = r.nth(offset).unwrap();
        prop_assert_eq!(r.offset_of(&ip), Some(offset));
        prop_assert_eq!(IpFamily::of(&ip), r.family());
    }

    #[test]
    fn contains_iff_offset_of_is_some(r in any_range(), ip in any_ip()) {
        prop_assert_eq!(r.contains(&ip), r.offset_of(&ip).is_some());
        let same_family = IpFamily::of(&ip) == r.family();
        let inside = ip_to_u128(&r.start()) <= ip_to_u128(&ip) && ip_to_u128(&ip) <= ip_to_u128(&r.end());
        prop_assert_eq!(r.contains(&ip), same_family && inside);
    }

    #[test]
    fn integer_round_trip(ip in any_ip()) {
        prop_assert_eq!(u128_to_ip(IpFamily::of(&ip), ip_to_u128(&ip)), Some(ip));
    }

    #[test]
    fn overlaps_is_symmetric_and_covers_implies_overlaps(a in any_range(), b in any_range()) {
        prop_assert_eq!(a.overlaps(&b), b.overlaps(&a));
        if a.covers(&b) {
            prop_assert!(a.overlaps(&b));
            prop_assert!(a.contains(&b.start()) && a.contains(&b.end()));
        }
        prop_assert!(a.covers(&a));
    }

    #[test]
    fn reserved_agrees_with_the_standard_library(ip in any_ip()) {
        prop_assert_eq!(reserved::classify(ip).is_some(), std_reserved(ip), "{}", ip);
    }

    /// `first_in` is the lowest address of the range `classify` refuses, checked by walking small ranges that
    /// straddle block edges.
    #[test]
    fn first_in_is_the_lowest_reserved_address(start in any_ip(), back in 0u128..6, len in 0u128..12) {
        let family = IpFamily::of(&start);
        let lo = ip_to_u128(&start).saturating_sub(back);
        let max = if family == IpFamily::V4 { u128::from(u32::MAX) } else { u128::MAX };
        let hi = lo.saturating_add(len).min(max);
        let (a, b) = (u128_to_ip(family, lo).unwrap(), u128_to_ip(family, hi).unwrap());
        let range = AddrRange::new(a, b).unwrap();
        let walked = (lo..=hi).filter_map(|v| u128_to_ip(family, v)).find(|ip| reserved::classify(*ip).is_some());
        prop_assert_eq!(reserved::first_in(&range).map(|r| r.ip), walked);
    }

    /// Every overlapping pair is found once, and only those.
    #[test]
    fn overlapping_pairs_is_every_overlapping_pair(ranges in prop::collection::vec(prop::option::of(any_range()), 0..8)) {
        let got: Vec<(usize, usize)> = overlapping_pairs(&ranges).into_iter().map(|(i, j, _)| (i, j)).collect();
        let mut want = Vec::new();
        for (i, a) in ranges.iter().enumerate() {
            for (j, b) in ranges.iter().enumerate().skip(i + 1) {
                if let (Some(a), Some(b)) = (a, b) && a.overlaps(b) {
                    want.push((i, j));
                }
            }
        }
        prop_assert_eq!(got, want);
    }
}
