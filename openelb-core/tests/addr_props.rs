//! Properties of `AddrRange` parsing and address math over arbitrary input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use openelb_core::addr::{AddrRange, ip_to_u128, u128_to_ip};
use openelb_core::model::IpFamily;
use proptest::prelude::*;

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        any::<u128>().prop_map(|v| IpAddr::V6(Ipv6Addr::from(v))),
        // Near the edges and IPv4-mapped, where off-by-one and family mistakes live.
        prop_oneof![Just(0u32), Just(u32::MAX), Just(u32::MAX - 1)].prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        any::<u32>().prop_map(|v| IpAddr::V6(Ipv4Addr::from(v).to_ipv6_mapped())),
    ]
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
}
