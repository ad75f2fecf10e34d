//! Per-pool address allocator. Lowest free address first (upstream compatible), in O(log n) per operation
//! with memory proportional to the number of allocations, never to the pool size: a /64 costs what a /24 does.
//! Holders are small integer ids; the caller ([`crate::ipam`]) maps them to Services, which keeps strings out of
//! the hot structure.

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
}

impl PoolAllocator {
    pub fn new(range: AddrRange) -> Self {
        Self { range }
    }

    pub fn range(&self) -> &AddrRange {
        &self.range
    }

    /// Gives `holder` the lowest free address.
    pub fn allocate_any(&mut self, holder: HolderId) -> Result<IpAddr, AllocError> {
        todo!("{holder}")
    }

    /// Gives `holder` exactly `ip`. When `ip` is held already: with `share` the holder joins the others
    /// (idempotent if it is one of them), without it the result is `InUse` (unless `holder` alone holds it).
    pub fn allocate_specific(&mut self, ip: IpAddr, holder: HolderId, share: bool) -> Result<(), AllocError> {
        todo!("{ip}{holder}{share}")
    }

    /// Removes `holder` from `ip`; the address is free once its last holder is gone. Returns whether anything
    /// changed.
    pub fn release(&mut self, ip: IpAddr, holder: HolderId) -> bool {
        todo!("{ip}{holder}")
    }

    /// Holders of `ip`, empty when free.
    pub fn holders(&self, ip: IpAddr) -> Vec<HolderId> {
        todo!("{ip}")
    }

    /// Number of distinct addresses in use (upstream's `usage`).
    pub fn used(&self) -> u128 {
        todo!()
    }

    pub fn is_full(&self) -> bool {
        self.used() >= self.range.size()
    }

    /// Addresses in use with their holders, in address order.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, Vec<HolderId>)> + '_ {
        std::iter::empty()
    }
}
