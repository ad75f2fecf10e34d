//! The interface-name rule over arbitrary strings: it never panics, and what it accepts is what the kernel and
//! the speaker accept.

use openelb_core::iface::{self, CAN_REACH_PREFIX, IFNAME_MAX, Iface};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn accepted_names_follow_the_kernel_rules(s in "\\PC{0,20}|[a-z0-9.:/ \\t\\x00-\\x1f\\x7f-]{0,20}") {
        match iface::parse(&s) {
            Ok(Iface::Name(n)) => {
                prop_assert_eq!(n, s.as_str());
                prop_assert!((1..=IFNAME_MAX).contains(&n.len()));
                prop_assert!(!n.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control()));
                prop_assert!(n != "." && n != "..");
            }
            Ok(Iface::CanReach(ip)) => {
                prop_assert!(s.starts_with(CAN_REACH_PREFIX));
                prop_assert_eq!(s[CAN_REACH_PREFIX.len()..].parse::<std::net::IpAddr>().ok(), Some(ip));
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn can_reach_accepts_every_address_a_route_can_leave_by(ip in any::<std::net::IpAddr>()) {
        let spec = format!("{CAN_REACH_PREFIX}{ip}");
        let refused = ip.is_unspecified() || ip.is_loopback();
        prop_assert_eq!(iface::parse(&spec).is_err(), refused, "{}", spec);
    }
}
