//! Per-pool address allocator. Lowest free address first (upstream compatible), in O(log n) per operation
//! with memory proportional to the number of allocations, never to the pool size: a /64 costs what a /24 does.
//! Holders are small integer ids; the caller ([`crate::ipam`]) maps them to Services, which keeps strings out of
//! the hot structure.
//!
//! Layout: addresses are offsets from the pool start. Offsets are stored in the narrowest integer that holds
//! the pool's last offset (`u32` for every IPv4 pool, `u64` up to an IPv6 /64, `u128` beyond), because the
//! B-tree keys are most of the memory. Measured with `cargo run --release --example alloc_memory`.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use crate::addr::AddrRange;

/// Opaque id of whoever holds an address (the IPAM interns Service keys to these).
pub type HolderId = u32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("pool {range} is full ({size} addresses in use)")]
    Full { range: AddrRange, size: u128 },
    #[error("{ip} is outside the pool {range}")]
    OutOfRange { ip: IpAddr, range: AddrRange },
    #[error("{ip} is already in use")]
    InUse { ip: IpAddr },
}

#[derive(Debug, Clone)]
pub struct PoolAllocator {
    range: AddrRange,
    slots: Slots,
}

impl PoolAllocator {
    pub fn new(range: AddrRange) -> Self {
        Self { range, slots: Slots::for_last_offset(range.last_offset()) }
    }

    pub fn range(&self) -> &AddrRange {
        &self.range
    }

    /// Gives `holder` the lowest free address.
    pub fn allocate_any(&mut self, holder: HolderId) -> Result<IpAddr, AllocError> {
        let last = self.range.last_offset();
        self.slots
            .take_lowest(last, holder)
            .and_then(|offset| self.range.nth(offset))
            .ok_or(AllocError::Full { range: self.range, size: self.range.size() })
    }

    /// Gives `holder` the lowest free address of `within`, a part of this allocator's range. This is how one
    /// allocator over a whole address family serves every pool ([`crate::ipam`]), so an address is never held
    /// twice whatever the pools overlap.
    pub fn allocate_any_in(&mut self, within: &AddrRange, holder: HolderId) -> Result<IpAddr, AllocError> {
        let full = AllocError::Full { range: *within, size: within.size() };
        let (lo, hi) = self.offsets_of(within).ok_or(full.clone())?;
        let offset = self.slots.lowest_free_in(lo, hi).ok_or(full.clone())?;
        match self.slots.claim(offset, holder, false) {
            Claim::Done => self.range.nth(offset).ok_or(full),
            Claim::Held | Claim::OutOfRange => Err(full),
        }
    }

    /// The address [`Self::allocate_any_in`] would give next, without giving it; `None` when `within` has no
    /// free address (or is not inside this allocator's range).
    pub fn lowest_free_in(&self, within: &AddrRange) -> Option<IpAddr> {
        let (lo, hi) = self.offsets_of(within)?;
        self.slots.lowest_free_in(lo, hi).and_then(|offset| self.range.nth(offset))
    }

    /// First and last offset of `within`, when this allocator's range covers it.
    fn offsets_of(&self, within: &AddrRange) -> Option<(u128, u128)> {
        Some((self.range.offset_of(&within.start())?, self.range.offset_of(&within.end())?))
    }

    /// Gives `holder` exactly `ip`. When `ip` is held already: with `share` the holder joins the others
    /// (idempotent if it is one of them), without it the result is `InUse` (unless `holder` alone holds it).
    pub fn allocate_specific(&mut self, ip: IpAddr, holder: HolderId, share: bool) -> Result<(), AllocError> {
        let out_of_range = || AllocError::OutOfRange { ip, range: self.range };
        let offset = self.range.offset_of(&ip).ok_or_else(out_of_range)?;
        match self.slots.claim(offset, holder, share) {
            Claim::Done => Ok(()),
            Claim::Held => Err(AllocError::InUse { ip }),
            Claim::OutOfRange => Err(out_of_range()),
        }
    }

    /// Removes `holder` from `ip`; the address is free once its last holder is gone. Returns whether anything
    /// changed.
    pub fn release(&mut self, ip: IpAddr, holder: HolderId) -> bool {
        self.range.offset_of(&ip).is_some_and(|offset| self.slots.release(offset, holder))
    }

    /// Holders of `ip`, empty when free.
    pub fn holders(&self, ip: IpAddr) -> Vec<HolderId> {
        self.range.offset_of(&ip).map(|offset| self.slots.holders(offset)).unwrap_or_default()
    }

    /// Number of distinct addresses in use (upstream's `usage`).
    pub fn used(&self) -> u128 {
        self.slots.used()
    }

    pub fn is_full(&self) -> bool {
        self.used() >= self.range.size()
    }

    /// The address [`Self::allocate_any`] would give next, without giving it; `None` when full.
    pub fn lowest_free(&self) -> Option<IpAddr> {
        self.lowest_free_offset().and_then(|offset| self.range.nth(offset))
    }

    /// Addresses in use with their holders, in address order.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, Vec<HolderId>)> + '_ {
        self.slots.iter().filter_map(|(offset, holders)| Some((self.range.nth(offset)?, holders)))
    }

    fn lowest_free_offset(&self) -> Option<u128> {
        self.slots.lowest_free(self.range.last_offset())
    }
}

/// Outcome of claiming an offset, mapped to [`AllocError`] by the caller that knows the address.
enum Claim {
    Done,
    Held,
    OutOfRange,
}

/// An offset type narrow enough to keep B-tree nodes small. Arithmetic is done in `u128`.
trait Offset: Copy + Ord + fmt::Debug + Into<u128> + TryFrom<u128> {}
impl Offset for u32 {}
impl Offset for u64 {}
impl Offset for u128 {}

/// The pool's table in the narrowest offset type that holds its last offset.
#[derive(Debug, Clone)]
enum Slots {
    U32(Table<u32>),
    U64(Table<u64>),
    U128(Table<u128>),
}

/// Runs `$body` with `$t` bound to whichever table `$slots` holds.
macro_rules! each {
    ($slots:expr, $t:ident => $body:expr) => {
        match $slots {
            Slots::U32($t) => $body,
            Slots::U64($t) => $body,
            Slots::U128($t) => $body,
        }
    };
}

impl Slots {
    fn for_last_offset(last: u128) -> Self {
        if u32::try_from(last).is_ok() {
            Slots::U32(Table::default())
        } else if u64::try_from(last).is_ok() {
            Slots::U64(Table::default())
        } else {
            Slots::U128(Table::default())
        }
    }

    fn lowest_free(&self, last: u128) -> Option<u128> {
        each!(self, t => t.lowest_free(last))
    }
    fn take_lowest(&mut self, last: u128, holder: HolderId) -> Option<u128> {
        each!(self, t => t.take_lowest(last, holder))
    }
    fn lowest_free_in(&self, lo: u128, hi: u128) -> Option<u128> {
        each!(self, t => t.lowest_free_in(lo, hi))
    }
    fn claim(&mut self, offset: u128, holder: HolderId, share: bool) -> Claim {
        each!(self, t => t.claim(offset, holder, share))
    }
    fn release(&mut self, offset: u128, holder: HolderId) -> bool {
        each!(self, t => t.release(offset, holder))
    }
    fn holders(&self, offset: u128) -> Vec<HolderId> {
        each!(self, t => t.holders(offset))
    }
    fn used(&self) -> u128 {
        each!(self, t => t.first.len() as u128)
    }
    fn iter(&self) -> Box<dyn Iterator<Item = (u128, Vec<HolderId>)> + '_> {
        each!(self, t => Box::new(t.iter()))
    }
}

/// Allocation state over offsets of type `K`.
#[derive(Debug, Clone)]
struct Table<K> {
    /// First holder of every address in use; its length is the usage. One key and one `u32` per address.
    first: BTreeMap<K, HolderId>,
    /// Holders after the first of a shared address, in join order. Sharing is rare, so it lives apart and the
    /// common entry in `first` stays small.
    others: BTreeMap<K, Vec<HolderId>>,
    /// Used offsets whose successor is free (or past the pool): the last offset of every run of used offsets.
    /// When offset 0 is used, the run starting there ends at the smallest of them, so the lowest free offset is
    /// one past it: an O(log n) answer, where upstream walks every used address.
    run_ends: BTreeSet<K>,
}

impl<K> Default for Table<K> {
    fn default() -> Self {
        Self { first: BTreeMap::new(), others: BTreeMap::new(), run_ends: BTreeSet::new() }
    }
}

fn key<K: Offset>(v: u128) -> Option<K> {
    K::try_from(v).ok()
}

impl<K: Offset> Table<K> {
    fn is_used(&self, v: u128) -> bool {
        key::<K>(v).is_some_and(|k| self.first.contains_key(&k))
    }

    fn lowest_free(&self, last: u128) -> Option<u128> {
        if !self.zero_used() {
            return Some(0);
        }
        let end: u128 = (*self.run_ends.first()?).into();
        end.checked_add(1).filter(|&next| next <= last)
    }

    /// The lowest free offset in `lo..=hi`. When `lo` is used, the run of used offsets holding it ends at the
    /// first run end at or after `lo`, and the offset after that is free: O(log n) as [`Self::lowest_free`].
    fn lowest_free_in(&self, lo: u128, hi: u128) -> Option<u128> {
        if lo > hi {
            return None;
        }
        if !self.is_used(lo) {
            return Some(lo);
        }
        let end: u128 = (*self.run_ends.range(key::<K>(lo)?..).next()?).into();
        end.checked_add(1).filter(|&next| next <= hi)
    }

    /// Offset 0 is used iff it is the smallest key: a walk down the left edge, no comparisons.
    fn zero_used(&self) -> bool {
        self.first.first_key_value().is_some_and(|(&k, _)| k.into() == 0)
    }

    /// [`Self::lowest_free`] and [`Self::claim`] in one, knowing what `claim` has to look up: the taken offset
    /// either is 0 or extends the first run, whose end is the smallest in `run_ends`.
    fn take_lowest(&mut self, last: u128, holder: HolderId) -> Option<u128> {
        let offset = self.lowest_free(last)?;
        let k = key::<K>(offset)?;
        self.first.insert(k, holder);
        if offset != 0 {
            self.run_ends.pop_first();
        }
        if !offset.checked_add(1).is_some_and(|next| self.is_used(next)) {
            self.run_ends.insert(k);
        }
        Some(offset)
    }

    fn claim(&mut self, offset: u128, holder: HolderId, share: bool) -> Claim {
        let Some(k) = key::<K>(offset) else { return Claim::OutOfRange };
        let first = match self.first.entry(k) {
            Entry::Vacant(e) => {
                e.insert(holder);
                self.mark_used(offset, k);
                return Claim::Done;
            }
            Entry::Occupied(e) => *e.get(),
        };
        let others = self.others.get(&k);
        let holds = first == holder || others.is_some_and(|o| o.contains(&holder));
        let alone = first == holder && others.is_none_or(|o| o.is_empty());
        if alone || (share && holds) {
            Claim::Done
        } else if share {
            self.others.entry(k).or_default().push(holder);
            Claim::Done
        } else {
            Claim::Held
        }
    }

    fn release(&mut self, offset: u128, holder: HolderId) -> bool {
        let Some(k) = key::<K>(offset) else { return false };
        if self.others.is_empty() {
            // Nothing is shared, the usual case: one lookup decides and removes.
            return match self.first.entry(k) {
                Entry::Occupied(e) if *e.get() == holder => {
                    e.remove();
                    self.mark_free(offset, k);
                    true
                }
                _ => false,
            };
        }
        let Some(&first) = self.first.get(&k) else { return false };
        if first == holder {
            match self.others.get_mut(&k) {
                Some(others) if !others.is_empty() => {
                    let next = others.remove(0);
                    if others.is_empty() {
                        self.others.remove(&k);
                    }
                    self.first.insert(k, next);
                }
                _ => {
                    self.others.remove(&k);
                    self.first.remove(&k);
                    self.mark_free(offset, k);
                }
            }
            return true;
        }
        let Some(others) = self.others.get_mut(&k) else { return false };
        let before = others.len();
        others.retain(|&h| h != holder);
        let changed = others.len() != before;
        if others.is_empty() {
            self.others.remove(&k);
        }
        changed
    }

    fn holders(&self, offset: u128) -> Vec<HolderId> {
        let Some(k) = key::<K>(offset) else { return Vec::new() };
        self.first.get(&k).map(|&h| self.with_others(k, h)).unwrap_or_default()
    }

    fn iter(&self) -> impl Iterator<Item = (u128, Vec<HolderId>)> + '_ {
        self.first.iter().map(|(&k, &h)| (k.into(), self.with_others(k, h)))
    }

    fn with_others(&self, k: K, first: HolderId) -> Vec<HolderId> {
        let mut all = vec![first];
        if let Some(others) = self.others.get(&k) {
            all.extend_from_slice(others);
        }
        all
    }

    /// Keeps `run_ends` exact after `offset` became used: it ends a run unless its successor is used, and its
    /// predecessor no longer does.
    fn mark_used(&mut self, offset: u128, k: K) {
        if !offset.checked_add(1).is_some_and(|next| self.is_used(next)) {
            self.run_ends.insert(k);
        }
        if let Some(prev) = offset.checked_sub(1).and_then(key::<K>) {
            self.run_ends.remove(&prev);
        }
    }

    /// Keeps `run_ends` exact after `offset` became free: its used predecessor now ends a run.
    fn mark_free(&mut self, offset: u128, k: K) {
        self.run_ends.remove(&k);
        if let Some(prev) = offset.checked_sub(1).and_then(key::<K>)
            && self.first.contains_key(&prev)
        {
            self.run_ends.insert(prev);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(s: &str) -> PoolAllocator {
        PoolAllocator::new(AddrRange::parse(s).unwrap())
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn allocate_any_gives_lowest_free_first() {
        let mut p = pool("192.168.0.91-192.168.0.100");
        assert_eq!(p.allocate_any(1).unwrap(), ip("192.168.0.91"));
        assert_eq!(p.allocate_any(2).unwrap(), ip("192.168.0.92"));
        assert_eq!(p.allocate_any(3).unwrap(), ip("192.168.0.93"));
        assert!(p.release(ip("192.168.0.92"), 2));
        assert_eq!(p.lowest_free(), Some(ip("192.168.0.92")));
        assert_eq!(p.allocate_any(4).unwrap(), ip("192.168.0.92"));
        assert_eq!(p.allocate_any(5).unwrap(), ip("192.168.0.94"));
    }

    #[test]
    fn allocate_any_skips_specific_allocations() {
        let mut p = pool("10.0.0.0/29");
        p.allocate_specific(ip("10.0.0.0"), 1, false).unwrap();
        p.allocate_specific(ip("10.0.0.2"), 2, false).unwrap();
        p.allocate_specific(ip("10.0.0.1"), 3, false).unwrap();
        p.allocate_specific(ip("10.0.0.4"), 4, false).unwrap();
        assert_eq!(p.allocate_any(5).unwrap(), ip("10.0.0.3"));
        assert_eq!(p.allocate_any(6).unwrap(), ip("10.0.0.5"));
    }

    #[test]
    fn full_pool_is_an_error() {
        let mut p = pool("10.0.0.0/31");
        p.allocate_any(1).unwrap();
        p.allocate_any(2).unwrap();
        assert!(p.is_full());
        assert_eq!(p.lowest_free(), None);
        let e = p.allocate_any(3).unwrap_err();
        assert_eq!(e.to_string(), "pool 10.0.0.0-10.0.0.1 is full (2 addresses in use)");
    }

    #[test]
    fn pool_ending_at_the_last_address_of_the_family_fills_up() {
        let mut p = pool("255.255.255.254/31");
        assert_eq!(p.allocate_any(1).unwrap(), ip("255.255.255.254"));
        assert_eq!(p.allocate_any(1).unwrap(), ip("255.255.255.255"));
        assert!(matches!(p.allocate_any(1), Err(AllocError::Full { .. })));
        let mut all = pool("::/0");
        all.allocate_specific(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 1, false).unwrap();
        assert_eq!(all.allocate_any(2).unwrap(), ip("::"));
        assert_eq!(all.allocate_any(2).unwrap(), ip("::1"));
    }

    #[test]
    fn specific_outside_the_pool_is_an_error() {
        let mut p = pool("10.0.0.0/30");
        let e = p.allocate_specific(ip("10.0.0.4"), 1, false).unwrap_err();
        assert_eq!(e.to_string(), "10.0.0.4 is outside the pool 10.0.0.0-10.0.0.3");
        assert!(matches!(p.allocate_specific(ip("::ffff:10.0.0.1"), 1, true), Err(AllocError::OutOfRange { .. })));
        assert_eq!(p.used(), 0);
    }

    #[test]
    fn specific_in_use_without_share_is_refused() {
        let mut p = pool("10.0.0.0/30");
        p.allocate_specific(ip("10.0.0.1"), 1, false).unwrap();
        let e = p.allocate_specific(ip("10.0.0.1"), 2, false).unwrap_err();
        assert_eq!(e.to_string(), "10.0.0.1 is already in use");
        assert_eq!(p.holders(ip("10.0.0.1")), vec![1]);
    }

    #[test]
    fn specific_by_the_sole_holder_is_idempotent() {
        let mut p = pool("10.0.0.0/30");
        p.allocate_specific(ip("10.0.0.1"), 1, false).unwrap();
        p.allocate_specific(ip("10.0.0.1"), 1, false).unwrap();
        p.allocate_specific(ip("10.0.0.1"), 1, true).unwrap();
        assert_eq!(p.holders(ip("10.0.0.1")), vec![1]);
        assert_eq!(p.used(), 1);
    }

    #[test]
    fn sharing_joins_in_order_and_counts_one_address() {
        let mut p = pool("10.0.0.0/30");
        p.allocate_specific(ip("10.0.0.1"), 1, false).unwrap();
        p.allocate_specific(ip("10.0.0.1"), 2, true).unwrap();
        p.allocate_specific(ip("10.0.0.1"), 3, true).unwrap();
        p.allocate_specific(ip("10.0.0.1"), 2, true).unwrap();
        assert_eq!(p.holders(ip("10.0.0.1")), vec![1, 2, 3]);
        assert_eq!(p.used(), 1);
        assert!(p.allocate_specific(ip("10.0.0.1"), 2, false).is_err(), "a sharer may not claim it alone");
        assert!(p.allocate_specific(ip("10.0.0.1"), 4, false).is_err());
    }

    #[test]
    fn shared_address_is_free_after_its_last_holder() {
        let mut p = pool("10.0.0.0/30");
        p.allocate_specific(ip("10.0.0.0"), 1, false).unwrap();
        p.allocate_specific(ip("10.0.0.0"), 2, true).unwrap();
        p.allocate_specific(ip("10.0.0.0"), 3, true).unwrap();
        assert!(p.release(ip("10.0.0.0"), 1));
        assert_eq!(p.holders(ip("10.0.0.0")), vec![2, 3]);
        assert!(p.release(ip("10.0.0.0"), 3));
        assert_eq!(p.holders(ip("10.0.0.0")), vec![2]);
        assert_eq!(p.allocate_any(9).unwrap(), ip("10.0.0.1"));
        assert!(p.release(ip("10.0.0.0"), 2));
        assert!(p.holders(ip("10.0.0.0")).is_empty());
        assert_eq!(p.used(), 1);
        assert_eq!(p.allocate_any(9).unwrap(), ip("10.0.0.0"));
    }

    #[test]
    fn release_of_nothing_changes_nothing() {
        let mut p = pool("10.0.0.0/30");
        p.allocate_specific(ip("10.0.0.1"), 1, false).unwrap();
        assert!(!p.release(ip("10.0.0.1"), 2));
        assert!(!p.release(ip("10.0.0.2"), 1));
        assert!(!p.release(ip("10.9.9.9"), 1));
        assert_eq!(p.holders(ip("10.0.0.1")), vec![1]);
    }

    #[test]
    fn iter_is_in_address_order_with_all_holders() {
        let mut p = pool("2001:db8::/64");
        p.allocate_specific(ip("2001:db8::ffff:0:0:1"), 7, false).unwrap();
        p.allocate_any(1).unwrap();
        p.allocate_specific(ip("2001:db8::"), 2, true).unwrap();
        let all: Vec<_> = p.iter().collect();
        assert_eq!(all, vec![(ip("2001:db8::"), vec![1, 2]), (ip("2001:db8::ffff:0:0:1"), vec![7])]);
    }

    #[test]
    fn offsets_use_the_narrowest_type() {
        assert!(matches!(pool("0.0.0.0/0").slots, Slots::U32(_)));
        assert!(matches!(pool("2001:db8::/96").slots, Slots::U32(_)));
        assert!(matches!(pool("2001:db8::/64").slots, Slots::U64(_)));
        assert!(matches!(pool("2001:db8::/63").slots, Slots::U128(_)));
    }

    #[test]
    fn runs_split_and_merge() {
        let mut p = pool("10.0.0.0/24");
        for h in 0..10 {
            p.allocate_any(h).unwrap();
        }
        for o in [3u8, 5, 4] {
            assert!(p.release(ip(&format!("10.0.0.{o}")), u32::from(o)));
        }
        assert_eq!(p.allocate_any(20).unwrap(), ip("10.0.0.3"));
        assert_eq!(p.allocate_any(21).unwrap(), ip("10.0.0.4"));
        assert_eq!(p.allocate_any(22).unwrap(), ip("10.0.0.5"));
        assert_eq!(p.allocate_any(23).unwrap(), ip("10.0.0.10"));
        assert!(p.release(ip("10.0.0.0"), 0));
        assert_eq!(p.allocate_any(24).unwrap(), ip("10.0.0.0"));
        assert_eq!(p.allocate_any(25).unwrap(), ip("10.0.0.11"));
    }
}
