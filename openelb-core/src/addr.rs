//! Address math for `Eip.spec.address`: a single address, a `first-last` range or a CIDR, IPv4 or IPv6.
//! Sizes and offsets are `u128` so an IPv6 /64 or /48 pool is as ordinary as a /24 (upstream overflows).

use std::fmt;
use std::net::IpAddr;

use crate::model::IpFamily;

/// Why an address string is not a pool. `input` is always the string as given so the message names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{input:?}: {reason}")]
    Invalid { input: String, reason: String },
}

/// An inclusive range of addresses of one family. Invariant: `start <= end`, same family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddrRange {
    start: IpAddr,
    end: IpAddr,
}

impl AddrRange {
    /// Parses a single address, `first-last` (split on the first `-`), or a CIDR (host bits masked, network and
    /// broadcast included, as upstream). Surrounding whitespace is trimmed.
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        todo!("{input}")
    }

    /// Builds a range; errors when families differ or `end < start`.
    pub fn new(start: IpAddr, end: IpAddr) -> Result<Self, AddressError> {
        todo!("{start}{end}")
    }

    pub fn start(&self) -> IpAddr {
        self.start
    }
    pub fn end(&self) -> IpAddr {
        self.end
    }
    pub fn family(&self) -> IpFamily {
        IpFamily::of(&self.start)
    }
    /// Number of addresses. A full IPv6 `::/0` has 2^128 addresses, one more than `u128::MAX`: it saturates.
    pub fn size(&self) -> u128 {
        todo!()
    }
    pub fn contains(&self, ip: &IpAddr) -> bool {
        todo!("{ip}")
    }
    /// Offset of `ip` from `start`, `None` outside the range or of another family.
    pub fn offset_of(&self, ip: &IpAddr) -> Option<u128> {
        todo!("{ip}")
    }
    /// Address at `offset`, `None` past the end.
    pub fn nth(&self, offset: u128) -> Option<IpAddr> {
        todo!("{offset}")
    }
    /// Same family and at least one address in common.
    pub fn overlaps(&self, other: &AddrRange) -> bool {
        todo!("{other}")
    }
    /// Every address of `other` is in `self`.
    pub fn covers(&self, other: &AddrRange) -> bool {
        todo!("{other}")
    }
}

impl fmt::Display for AddrRange {
    /// `a` for a single address, `a-b` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end { write!(f, "{}", self.start) } else { write!(f, "{}-{}", self.start, self.end) }
    }
}

/// Address as an integer (IPv4 in the low 32 bits).
pub fn ip_to_u128(ip: &IpAddr) -> u128 {
    todo!("{ip}")
}

/// Integer back to an address of `family`; `None` when it does not fit the family.
pub fn u128_to_ip(family: IpFamily, v: u128) -> Option<IpAddr> {
    todo!("{family}{v}")
}
