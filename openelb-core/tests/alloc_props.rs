//! The allocator against a plain model: `BTreeMap<offset, holders>` where the lowest free offset is found by
//! walking, as upstream does. Any divergence in address, holders, usage or errors fails.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use openelb_core::IpFamily;
use openelb_core::addr::{AddrRange, ip_to_u128, u128_to_ip};
use openelb_core::alloc::{AllocError, HolderId, PoolAllocator};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Any(HolderId),
    /// Offset is taken modulo a window a little larger than the pool so out-of-range requests happen.
    Specific(u128, HolderId, bool),
    Release(u128, HolderId),
    /// Lowest free address of a window `len + 1` addresses wide starting where `Specific` would.
    AnyIn(u128, u128, HolderId),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u32..8).prop_map(Op::Any),
        3 => (any::<u128>(), 0u32..8, any::<bool>()).prop_map(|(o, h, s)| Op::Specific(o, h, s)),
        4 => (any::<u128>(), 0u32..8).prop_map(|(o, h)| Op::Release(o, h)),
        3 => (any::<u128>(), 0u128..12, 0u32..8).prop_map(|(o, len, h)| Op::AnyIn(o, len, h)),
    ]
}

/// Small pools so they fill up, plus pools whose offsets need u64 and u128 (tested near their start and end).
fn pool() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("10.0.0.0/29"),
        Just("192.168.0.91-192.168.0.100"),
        Just("255.255.255.248/29"),
        Just("10.0.0.7"),
        Just("2001:db8::/125"),
        Just("2001:db8::/64"),
        Just("::/0"),
    ]
}

#[derive(Default)]
struct Model {
    used: BTreeMap<u128, Vec<HolderId>>,
}

impl Model {
    fn lowest_free(&self, size: u128) -> Option<u128> {
        self.lowest_free_in(0, size.saturating_sub(1)).filter(|_| size > 0)
    }

    fn lowest_free_in(&self, lo: u128, hi: u128) -> Option<u128> {
        (lo..=hi).find(|o| !self.used.contains_key(o))
    }
}

/// Maps a random number to an offset: mostly near the start (where allocate_any works), some near the end,
/// a few just outside.
fn place(raw: u128, range: &AddrRange) -> (u128, Option<IpAddr>) {
    let last = range.last_offset();
    let near = raw % 24;
    let offset = match raw % 5 {
        0 => last.saturating_sub(near),
        1 => last.saturating_add(1 + near % 2),
        _ => near,
    };
    let ip = range.nth(offset.min(last)).filter(|_| offset <= last);
    (offset, ip)
}

/// An address the pool does not contain: one past its end, or one of the other family when there is none.
fn outside(range: &AddrRange) -> IpAddr {
    let after = ip_to_u128(&range.end()).checked_add(1).and_then(|v| u128_to_ip(range.family(), v));
    match (after, range.family()) {
        (Some(ip), _) => ip,
        (None, IpFamily::V4) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        (None, IpFamily::V6) => IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn allocator_matches_model(spec in pool(), ops in prop::collection::vec(op(), 1..120)) {
        let range = AddrRange::parse(spec).unwrap();
        let size = range.size();
        let mut alloc = PoolAllocator::new(range);
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Any(h) => {
                    // Only small pools are walked; large ones never fill in 120 steps.
                    let want = model.lowest_free(size.min(256));
                    match (alloc.allocate_any(h), want) {
                        (Ok(ip), Some(o)) => {
                            prop_assert_eq!(range.offset_of(&ip), Some(o));
                            model.used.insert(o, vec![h]);
                        }
                        (Err(AllocError::Full { size: s, .. }), None) => prop_assert_eq!(s, size),
                        (got, want) => prop_assert!(false, "allocate_any: got {:?}, model {:?}", got, want),
                    }
                }
                Op::Specific(raw, h, share) => {
                    let (offset, ip) = place(raw, &range);
                    let Some(ip) = ip else {
                        let ip = outside(&range);
                        prop_assert!(matches!(alloc.allocate_specific(ip, h, share), Err(AllocError::OutOfRange { .. })), "{} {}", ip, offset);
                        continue;
                    };
                    let got = alloc.allocate_specific(ip, h, share);
                    match model.used.get_mut(&offset) {
                        None => {
                            prop_assert_eq!(got, Ok(()));
                            model.used.insert(offset, vec![h]);
                        }
                        Some(holders) if holders.as_slice() == [h] => prop_assert_eq!(got, Ok(())),
                        Some(holders) if share => {
                            prop_assert_eq!(got, Ok(()));
                            if !holders.contains(&h) {
                                holders.push(h);
                            }
                        }
                        Some(_) => prop_assert_eq!(got, Err(AllocError::InUse { ip })),
                    }
                }
                Op::AnyIn(raw, len, h) => {
                    let (lo, Some(first)) = place(raw, &range) else { continue };
                    let hi = lo.saturating_add(len).min(range.last_offset());
                    let Some(last) = range.nth(hi) else { continue };
                    let within = AddrRange::new(first, last).unwrap();
                    let want = model.lowest_free_in(lo, hi);
                    prop_assert_eq!(alloc.lowest_free_in(&within).and_then(|ip| range.offset_of(&ip)), want);
                    match (alloc.allocate_any_in(&within, h), want) {
                        (Ok(ip), Some(o)) => {
                            prop_assert_eq!(range.offset_of(&ip), Some(o));
                            model.used.insert(o, vec![h]);
                        }
                        (Err(AllocError::Full { range: r, .. }), None) => prop_assert_eq!(r, within),
                        (got, want) => prop_assert!(false, "allocate_any_in: got {:?}, model {:?}", got, want),
                    }
                }
                Op::Release(raw, h) => {
                    let (offset, ip) = place(raw, &range);
                    let Some(ip) = ip else {
                        prop_assert!(!alloc.release(outside(&range), h));
                        continue;
                    };
                    let want = match model.used.get_mut(&offset) {
                        Some(holders) if holders.contains(&h) => {
                            holders.retain(|&x| x != h);
                            if holders.is_empty() {
                                model.used.remove(&offset);
                            }
                            true
                        }
                        _ => false,
                    };
                    prop_assert_eq!(alloc.release(ip, h), want);
                }
            }
            prop_assert_eq!(alloc.used(), model.used.len() as u128);
            prop_assert_eq!(alloc.is_full(), model.used.len() as u128 >= size);
            let got: Vec<(u128, Vec<HolderId>)> =
                alloc.iter().map(|(ip, hs)| (range.offset_of(&ip).unwrap(), hs)).collect();
            let want: Vec<(u128, Vec<HolderId>)> = model.used.iter().map(|(&o, hs)| (o, hs.clone())).collect();
            prop_assert_eq!(got, want);
            for (&o, hs) in &model.used {
                prop_assert_eq!(&alloc.holders(range.nth(o).unwrap()), hs);
            }
            prop_assert_eq!(alloc.lowest_free().and_then(|ip| range.offset_of(&ip)), model.lowest_free(size.min(256)));
        }
    }

    /// Lowest-first under heavy churn on one pool larger than the random walk ever fills.
    #[test]
    fn churn_keeps_lowest_free(releases in prop::collection::vec(0u128..64, 0..200)) {
        let range = AddrRange::parse("10.0.0.0/24").unwrap();
        let mut alloc = PoolAllocator::new(range);
        let mut model = Model::default();
        for (i, r) in releases.into_iter().enumerate() {
            let h = i as HolderId;
            let ip = alloc.allocate_any(h).unwrap();
            let o = model.lowest_free(256).unwrap();
            prop_assert_eq!(range.offset_of(&ip), Some(o));
            model.used.insert(o, vec![h]);
            if let Some(holders) = model.used.remove(&r) {
                prop_assert!(alloc.release(range.nth(r).unwrap(), holders[0]));
            }
        }
        prop_assert_eq!(alloc.used(), model.used.len() as u128);
    }
}
