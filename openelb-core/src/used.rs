//! The one set of addresses in use across all pools. Pools may overlap (objects that got past the webhook) or
//! hold addresses outside their current range (shrunk under their holders), so per-pool tables cannot keep an
//! address from being held twice; one allocator per address family can, and still finds a pool's lowest free
//! address in O(log n) ([`PoolAllocator::allocate_any_in`]).

use std::net::IpAddr;

use crate::addr::AddrRange;
use crate::alloc::{AllocError, HolderId, PoolAllocator};
use crate::model::IpFamily;

#[derive(Debug, Clone)]
pub struct UsedAddresses {
    v4: PoolAllocator,
    v6: PoolAllocator,
}

impl Default for UsedAddresses {
    fn default() -> Self {
        Self {
            v4: PoolAllocator::new(AddrRange::whole(IpFamily::V4)),
            v6: PoolAllocator::new(AddrRange::whole(IpFamily::V6)),
        }
    }
}

impl UsedAddresses {
    fn family(&self, family: IpFamily) -> &PoolAllocator {
        match family {
            IpFamily::V4 => &self.v4,
            IpFamily::V6 => &self.v6,
        }
    }

    fn family_mut(&mut self, family: IpFamily) -> &mut PoolAllocator {
        match family {
            IpFamily::V4 => &mut self.v4,
            IpFamily::V6 => &mut self.v6,
        }
    }

    /// Gives `holder` the lowest address of `within` that nobody holds.
    pub fn allocate_any_in(&mut self, within: &AddrRange, holder: HolderId) -> Result<IpAddr, AllocError> {
        self.family_mut(within.family()).allocate_any_in(within, holder)
    }

    /// Gives `holder` exactly `ip`, joining its holders if it has any: the caller decides whether it may share.
    pub fn join(&mut self, ip: IpAddr, holder: HolderId) -> Result<(), AllocError> {
        self.family_mut(IpFamily::of(&ip)).allocate_specific(ip, holder, true)
    }

    /// Removes `holder` from `ip`; returns whether anything changed.
    pub fn release(&mut self, ip: IpAddr, holder: HolderId) -> bool {
        self.family_mut(IpFamily::of(&ip)).release(ip, holder)
    }

    /// Holders of `ip` in join order, empty when free.
    pub fn holders(&self, ip: IpAddr) -> Vec<HolderId> {
        self.family(IpFamily::of(&ip)).holders(ip)
    }

    /// The lowest free address of `within`, `None` when every one is held.
    pub fn lowest_free_in(&self, within: &AddrRange) -> Option<IpAddr> {
        self.family(within.family()).lowest_free_in(within)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> AddrRange {
        AddrRange::parse(s).unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn overlapping_ranges_draw_from_one_set() {
        let mut used = UsedAddresses::default();
        assert_eq!(used.allocate_any_in(&r("192.0.2.0/30"), 1), Ok(ip("192.0.2.0")));
        assert_eq!(used.allocate_any_in(&r("192.0.2.0-192.0.2.9"), 2), Ok(ip("192.0.2.1")));
        used.join(ip("192.0.2.3"), 3).unwrap();
        assert_eq!(used.allocate_any_in(&r("192.0.2.0/30"), 4), Ok(ip("192.0.2.2")));
        assert!(matches!(used.allocate_any_in(&r("192.0.2.0/30"), 5), Err(AllocError::Full { .. })));
        assert_eq!(used.lowest_free_in(&r("192.0.2.0-192.0.2.9")), Some(ip("192.0.2.4")));
        assert!(used.release(ip("192.0.2.1"), 2));
        assert_eq!(used.lowest_free_in(&r("192.0.2.0/30")), Some(ip("192.0.2.1")));
    }

    #[test]
    fn families_are_apart() {
        let mut used = UsedAddresses::default();
        used.join(ip("192.0.2.1"), 1).unwrap();
        assert_eq!(used.holders(ip("::ffff:192.0.2.1")), Vec::<HolderId>::new());
        assert_eq!(used.allocate_any_in(&r("2001:db8::/64"), 2), Ok(ip("2001:db8::")));
        used.join(ip("2001:db8::"), 3).unwrap();
        assert_eq!(used.holders(ip("2001:db8::")), vec![2, 3]);
    }
}
