//! Address math for `Eip.spec.address`: a single address, a `first-last` range or a CIDR, IPv4 or IPv6.
//! Sizes and offsets are `u128` so an IPv6 /64 or /48 pool is as ordinary as a /24. Only surrounding whitespace
//! is trimmed; an IPv4-mapped IPv6 address stays IPv6 (so [`AddrRange::overlaps`] never matches it with the
//! IPv4 address it maps); the mask form `a.b.c.d/255.255.255.0` is refused with the prefix length to write.
//! Why each, and why not `ipnetwork`: docs/allocation.md#address-math-in-u128.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::IpFamily;

/// Why an address string is not a pool. `input` is always the string as given so the message names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{input:?}: {reason}")]
    Invalid { input: String, reason: String },
}

impl AddressError {
    fn invalid(input: &str, reason: impl Into<String>) -> Self {
        AddressError::Invalid { input: input.to_string(), reason: reason.into() }
    }
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
        let text = input.trim();
        if text.is_empty() {
            return Err(AddressError::invalid(input, "address is empty"));
        }
        match (text.split_once('/'), text.split_once('-')) {
            (Some(_), Some(_)) => {
                Err(AddressError::invalid(input, "an address is a single IP, a first-last range or a CIDR, not both"))
            }
            (Some((addr, prefix)), None) => parse_cidr(input, addr, prefix),
            (None, Some((first, last))) => parse_range(input, first, last),
            (None, None) => {
                let ip = parse_ip(text).ok_or_else(|| AddressError::invalid(input, "not an IPv4 or IPv6 address"))?;
                Ok(Self { start: ip, end: ip })
            }
        }
    }

    /// Every address of `family`: `0.0.0.0-255.255.255.255` or `::-ffff:...:ffff`.
    pub fn whole(family: IpFamily) -> Self {
        match family {
            IpFamily::V4 => Self { start: IpAddr::V4(Ipv4Addr::UNSPECIFIED), end: IpAddr::V4(Ipv4Addr::BROADCAST) },
            IpFamily::V6 => {
                Self { start: IpAddr::V6(Ipv6Addr::UNSPECIFIED), end: IpAddr::V6(Ipv6Addr::from(u128::MAX)) }
            }
        }
    }

    /// Builds a range; errors when families differ or `end < start`.
    pub fn new(start: IpAddr, end: IpAddr) -> Result<Self, AddressError> {
        check_order(&format!("{start}-{end}"), start, end)
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
        self.last_offset().saturating_add(1)
    }
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.offset_of(ip).is_some()
    }
    /// Offset of `ip` from `start`, `None` outside the range or of another family.
    pub fn offset_of(&self, ip: &IpAddr) -> Option<u128> {
        if IpFamily::of(ip) != self.family() {
            return None;
        }
        let v = ip_to_u128(ip);
        (self.lo()..=self.hi()).contains(&v).then(|| v - self.lo())
    }
    /// Address at `offset`, `None` past the end.
    pub fn nth(&self, offset: u128) -> Option<IpAddr> {
        if offset > self.last_offset() {
            return None;
        }
        u128_to_ip(self.family(), self.lo() + offset)
    }
    /// Same family and at least one address in common.
    pub fn overlaps(&self, other: &AddrRange) -> bool {
        self.family() == other.family() && self.lo() <= other.hi() && other.lo() <= self.hi()
    }
    /// Every address of `other` is in `self`.
    pub fn covers(&self, other: &AddrRange) -> bool {
        self.family() == other.family() && self.lo() <= other.lo() && other.hi() <= self.hi()
    }

    /// The addresses both ranges hold, `None` when they share none.
    pub fn intersection(&self, other: &AddrRange) -> Option<AddrRange> {
        // `IpAddr` orders numerically within a family, and overlapping ranges are of one family.
        self.overlaps(other).then(|| AddrRange { start: self.start.max(other.start), end: self.end.min(other.end) })
    }

    /// Offset of `end`, i.e. `size - 1` without the saturation `size` needs for `::/0`.
    pub fn last_offset(&self) -> u128 {
        self.hi() - self.lo()
    }

    fn lo(&self) -> u128 {
        ip_to_u128(&self.start)
    }
    fn hi(&self) -> u128 {
        ip_to_u128(&self.end)
    }
}

impl fmt::Display for AddrRange {
    /// `a` for a single address, `a-b` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end { write!(f, "{}", self.start) } else { write!(f, "{}-{}", self.start, self.end) }
    }
}

/// Every pair of ranges that share an address, as indices into `ranges` (`i < j`, sorted) with the common
/// part. `None` entries (addresses that do not parse) overlap nothing. Sorted first, so the cost is
/// O(n log n + pairs) rather than comparing every pair.
pub fn overlapping_pairs(ranges: &[Option<AddrRange>]) -> Vec<(usize, usize, AddrRange)> {
    let mut sorted: Vec<(AddrRange, usize)> =
        ranges.iter().enumerate().filter_map(|(i, r)| r.map(|r| (r, i))).collect();
    sorted.sort();
    let mut out = Vec::new();
    for (a, (ra, i)) in sorted.iter().enumerate() {
        // Later ranges start at or after `ra`; they overlap it until one starts past its end.
        for (rb, j) in sorted.iter().skip(a + 1) {
            match ra.intersection(rb) {
                Some(common) => out.push(((*i).min(*j), (*i).max(*j), common)),
                None => break,
            }
        }
    }
    out.sort();
    out
}

/// The network and broadcast addresses of an IPv4 CIDR of prefix /0 to /30: upstream hands them out like any
/// other address of the pool (its tests assert it), so we do too, but many routers and hosts treat them
/// specially. `None` for anything else (ranges, single addresses, /31, /32, IPv6, what does not parse).
pub fn network_and_broadcast(input: &str) -> Option<(IpAddr, IpAddr)> {
    let range = AddrRange::parse(input).ok()?;
    let cidr = input.contains('/') && range.family() == IpFamily::V4 && range.size() >= 4;
    cidr.then_some((range.start, range.end))
}

/// Address as an integer (IPv4 in the low 32 bits).
pub fn ip_to_u128(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(*v4)),
        IpAddr::V6(v6) => u128::from(*v6),
    }
}

/// Integer back to an address of `family`; `None` when it does not fit the family.
pub fn u128_to_ip(family: IpFamily, v: u128) -> Option<IpAddr> {
    match family {
        IpFamily::V4 => u32::try_from(v).ok().map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        IpFamily::V6 => Some(IpAddr::V6(Ipv6Addr::from(v))),
    }
}

/// Bits in an address of `family`.
fn width(family: IpFamily) -> u32 {
    match family {
        IpFamily::V4 => 32,
        IpFamily::V6 => 128,
    }
}

/// Only what `IpAddr`'s own parser accepts: no zone ids, no inner whitespace, no leading-zero octets.
fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

fn parse_range(input: &str, first: &str, last: &str) -> Result<AddrRange, AddressError> {
    if first.is_empty() {
        return Err(AddressError::invalid(input, "range start is missing before '-'"));
    }
    if last.is_empty() {
        return Err(AddressError::invalid(input, "range end is missing after '-'"));
    }
    if last.contains('-') {
        return Err(AddressError::invalid(input, "a range has exactly one '-' (first-last)"));
    }
    let start = parse_ip(first)
        .ok_or_else(|| AddressError::invalid(input, format!("range start {first:?} is not an IP address")))?;
    let end = parse_ip(last)
        .ok_or_else(|| AddressError::invalid(input, format!("range end {last:?} is not an IP address")))?;
    check_order(input, start, end)
}

fn check_order(input: &str, start: IpAddr, end: IpAddr) -> Result<AddrRange, AddressError> {
    if IpFamily::of(&start) != IpFamily::of(&end) {
        return Err(AddressError::invalid(input, "range mixes IPv4 and IPv6"));
    }
    if ip_to_u128(&end) < ip_to_u128(&start) {
        return Err(AddressError::invalid(input, "range end is before its start"));
    }
    Ok(AddrRange { start, end })
}

fn parse_cidr(input: &str, addr: &str, prefix: &str) -> Result<AddrRange, AddressError> {
    if addr.is_empty() {
        return Err(AddressError::invalid(input, "CIDR address is missing before '/'"));
    }
    if prefix.is_empty() {
        return Err(AddressError::invalid(input, "prefix length is missing after '/'"));
    }
    let ip = parse_ip(addr)
        .ok_or_else(|| AddressError::invalid(input, format!("CIDR address {addr:?} is not an IP address")))?;
    let family = IpFamily::of(&ip);
    let bits = width(family);
    if let Some(mask) = parse_ip(prefix) {
        return Err(AddressError::invalid(input, mask_form_reason(mask)));
    }
    if !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddressError::invalid(input, format!("prefix length {prefix:?} is not a number")));
    }
    let len = match prefix.parse::<u32>() {
        Ok(len) if len <= bits => len,
        _ => {
            return Err(AddressError::invalid(
                input,
                format!("prefix length {prefix} is out of range for {family} (0-{bits})"),
            ));
        }
    };
    let host_bits = bits - len;
    let host_mask = if host_bits == 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
    let start = ip_to_u128(&ip) & !host_mask;
    let end = start | host_mask;
    match (u128_to_ip(family, start), u128_to_ip(family, end)) {
        (Some(start), Some(end)) => Ok(AddrRange { start, end }),
        // Unreachable: the mask keeps the value within the family's width. Still an error, never a panic.
        _ => Err(AddressError::invalid(input, "CIDR does not fit its address family")),
    }
}

/// Names the prefix length the user meant when the mask is contiguous, so the fix is in the message.
fn mask_form_reason(mask: IpAddr) -> String {
    let bits = width(IpFamily::of(&mask));
    let v = ip_to_u128(&mask);
    let ones = if bits == 32 { (v as u32).leading_ones() } else { v.leading_ones() };
    let contiguous = if bits == 32 { (v as u32).count_ones() == ones } else { v.count_ones() == ones };
    if contiguous {
        format!("subnet mask {mask} is not supported, write the prefix length /{ones} instead")
    } else {
        format!("subnet mask {mask} is not supported (and not contiguous), write a prefix length such as /24")
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
    fn err(s: &str) -> String {
        AddrRange::parse(s).unwrap_err().to_string()
    }

    #[test]
    fn single_address_is_a_range_of_one() {
        let v4 = r("192.168.0.91");
        assert_eq!((v4.start(), v4.end(), v4.size()), (ip("192.168.0.91"), ip("192.168.0.91"), 1));
        assert_eq!(v4.family(), IpFamily::V4);
        let v6 = r("2001:db8::1");
        assert_eq!((v6.start(), v6.size(), v6.family()), (ip("2001:db8::1"), 1, IpFamily::V6));
    }

    #[test]
    fn range_includes_both_ends() {
        let x = r("192.168.0.91-192.168.0.100");
        assert_eq!((x.start(), x.end(), x.size()), (ip("192.168.0.91"), ip("192.168.0.100"), 10));
        assert_eq!(r("2001:db8::1-2001:db8::ff").size(), 255);
        assert_eq!(r("10.0.0.1-10.0.0.1").size(), 1);
    }

    #[test]
    fn cidr_includes_network_and_broadcast() {
        let x = r("192.168.0.0/24");
        assert_eq!((x.start(), x.end(), x.size()), (ip("192.168.0.0"), ip("192.168.0.255"), 256));
        assert_eq!(r("10.0.0.0/8").size(), 1 << 24);
        assert_eq!(r("10.0.0.7/32").size(), 1);
        assert_eq!(r("0.0.0.0/0").size(), 1 << 32);
    }

    #[test]
    fn cidr_masks_host_bits() {
        let x = r("192.168.0.1/24");
        assert_eq!((x.start(), x.end()), (ip("192.168.0.0"), ip("192.168.0.255")));
        let y = r("2001:db8::1234/120");
        assert_eq!((y.start(), y.end()), (ip("2001:db8::1200"), ip("2001:db8::12ff")));
    }

    #[test]
    fn ipv6_large_prefixes_have_exact_u128_sizes() {
        assert_eq!(r("2001:db8::/64").size(), 1u128 << 64);
        assert_eq!(r("2001:db8::/48").size(), 1u128 << 80);
        assert_eq!(r("2001:db8::/128").size(), 1);
        assert_eq!(r("::/1").size(), 1u128 << 127);
    }

    #[test]
    fn ipv6_all_saturates_size() {
        let all = r("::/0");
        assert_eq!(all.size(), u128::MAX);
        assert_eq!(all.last_offset(), u128::MAX);
        assert_eq!(all.nth(u128::MAX), Some(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert_eq!(all.offset_of(&ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")), Some(u128::MAX));
    }

    #[test]
    fn surrounding_whitespace_is_trimmed() {
        assert_eq!(r("  192.168.0.0/24\n"), r("192.168.0.0/24"));
        assert_eq!(r("\t10.0.0.1-10.0.0.5 "), r("10.0.0.1-10.0.0.5"));
    }

    #[test]
    fn inner_whitespace_is_rejected() {
        assert_eq!(
            err("10.0.0.1 - 10.0.0.5"),
            r#""10.0.0.1 - 10.0.0.5": range start "10.0.0.1 " is not an IP address"#
        );
        assert_eq!(err("10.0.0.0/ 24"), r#""10.0.0.0/ 24": prefix length " 24" is not a number"#);
    }

    #[test]
    fn empty_is_rejected() {
        assert_eq!(err(""), r#""": address is empty"#);
        assert_eq!(err("   "), r#""   ": address is empty"#);
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(err("foo"), r#""foo": not an IPv4 or IPv6 address"#);
        assert_eq!(err("256.0.0.1"), r#""256.0.0.1": not an IPv4 or IPv6 address"#);
        assert_eq!(err("fe80::1%eth0"), r#""fe80::1%eth0": not an IPv4 or IPv6 address"#);
    }

    #[test]
    fn range_with_trailing_or_leading_dash_is_rejected() {
        assert_eq!(err("10.0.0.1-"), r#""10.0.0.1-": range end is missing after '-'"#);
        assert_eq!(err("-10.0.0.1"), r#""-10.0.0.1": range start is missing before '-'"#);
        assert_eq!(err("-"), r#""-": range start is missing before '-'"#);
    }

    #[test]
    fn range_with_two_dashes_is_rejected() {
        assert_eq!(
            err("10.0.0.1-10.0.0.2-10.0.0.3"),
            r#""10.0.0.1-10.0.0.2-10.0.0.3": a range has exactly one '-' (first-last)"#
        );
        assert_eq!(err("10.0.0.1--10.0.0.2"), r#""10.0.0.1--10.0.0.2": a range has exactly one '-' (first-last)"#);
    }

    #[test]
    fn range_with_garbage_side_names_the_side() {
        assert_eq!(err("x-10.0.0.2"), r#""x-10.0.0.2": range start "x" is not an IP address"#);
        assert_eq!(err("10.0.0.1-y"), r#""10.0.0.1-y": range end "y" is not an IP address"#);
    }

    #[test]
    fn range_end_before_start_is_rejected() {
        assert_eq!(err("192.168.0.100-192.168.0.91"), r#""192.168.0.100-192.168.0.91": range end is before its start"#);
        assert_eq!(err("2001:db8::2-2001:db8::1"), r#""2001:db8::2-2001:db8::1": range end is before its start"#);
    }

    #[test]
    fn range_mixing_families_is_rejected() {
        assert_eq!(err("10.0.0.1-2001:db8::1"), r#""10.0.0.1-2001:db8::1": range mixes IPv4 and IPv6"#);
        assert_eq!(err("::1-10.0.0.1"), r#""::1-10.0.0.1": range mixes IPv4 and IPv6"#);
        assert_eq!(err("10.0.0.1-::ffff:10.0.0.2"), r#""10.0.0.1-::ffff:10.0.0.2": range mixes IPv4 and IPv6"#);
    }

    #[test]
    fn prefix_out_of_range_is_rejected() {
        assert_eq!(err("10.0.0.0/33"), r#""10.0.0.0/33": prefix length 33 is out of range for IPv4 (0-32)"#);
        assert_eq!(err("2001:db8::/129"), r#""2001:db8::/129": prefix length 129 is out of range for IPv6 (0-128)"#);
        assert_eq!(
            err("10.0.0.0/99999999999999"),
            r#""10.0.0.0/99999999999999": prefix length 99999999999999 is out of range for IPv4 (0-32)"#
        );
    }

    #[test]
    fn prefix_that_is_not_a_number_is_rejected() {
        assert_eq!(err("10.0.0.0/abc"), r#""10.0.0.0/abc": prefix length "abc" is not a number"#);
        assert_eq!(err("10.0.0.0/+8"), r#""10.0.0.0/+8": prefix length "+8" is not a number"#);
        assert_eq!(
            err("10.0.0.0/-8"),
            r#""10.0.0.0/-8": an address is a single IP, a first-last range or a CIDR, not both"#
        );
        assert_eq!(err("10.0.0.0/8/8"), r#""10.0.0.0/8/8": prefix length "8/8" is not a number"#);
    }

    #[test]
    fn cidr_with_missing_part_is_rejected() {
        assert_eq!(err("10.0.0.0/"), r#""10.0.0.0/": prefix length is missing after '/'"#);
        assert_eq!(err("/24"), r#""/24": CIDR address is missing before '/'"#);
        assert_eq!(err("foo/24"), r#""foo/24": CIDR address "foo" is not an IP address"#);
    }

    #[test]
    fn subnet_mask_form_is_rejected_with_the_prefix_to_use() {
        assert_eq!(
            err("192.168.0.0/255.255.255.0"),
            r#""192.168.0.0/255.255.255.0": subnet mask 255.255.255.0 is not supported, write the prefix length /24 instead"#
        );
        assert_eq!(
            err("192.168.0.0/255.0.255.0"),
            r#""192.168.0.0/255.0.255.0": subnet mask 255.0.255.0 is not supported (and not contiguous), write a prefix length such as /24"#
        );
    }

    #[test]
    fn range_and_cidr_together_are_rejected() {
        assert_eq!(
            err("10.0.0.1-10.0.0.9/24"),
            r#""10.0.0.1-10.0.0.9/24": an address is a single IP, a first-last range or a CIDR, not both"#
        );
    }

    #[test]
    fn ipv4_mapped_ipv6_stays_ipv6() {
        let mapped = r("::ffff:10.0.0.0/120");
        assert_eq!(mapped.family(), IpFamily::V6);
        assert_eq!(mapped.size(), 256);
        assert!(!mapped.overlaps(&r("10.0.0.0/24")));
        assert!(!mapped.contains(&ip("10.0.0.1")));
        assert!(mapped.contains(&ip("::ffff:10.0.0.1")));
    }

    #[test]
    fn new_checks_family_and_order() {
        assert_eq!(AddrRange::new(ip("10.0.0.1"), ip("10.0.0.3")).unwrap().size(), 3);
        assert_eq!(
            AddrRange::new(ip("10.0.0.3"), ip("10.0.0.1")).unwrap_err().to_string(),
            r#""10.0.0.3-10.0.0.1": range end is before its start"#
        );
        assert_eq!(
            AddrRange::new(ip("10.0.0.3"), ip("::1")).unwrap_err().to_string(),
            r#""10.0.0.3-::1": range mixes IPv4 and IPv6"#
        );
    }

    #[test]
    fn offset_and_nth_are_inverse() {
        let x = r("192.168.0.91-192.168.0.100");
        assert_eq!(x.offset_of(&ip("192.168.0.91")), Some(0));
        assert_eq!(x.offset_of(&ip("192.168.0.100")), Some(9));
        assert_eq!(x.offset_of(&ip("192.168.0.101")), None);
        assert_eq!(x.offset_of(&ip("192.168.0.90")), None);
        assert_eq!(x.offset_of(&ip("::ffff:192.168.0.95")), None);
        assert_eq!(x.nth(9), Some(ip("192.168.0.100")));
        assert_eq!(x.nth(10), None);
        assert_eq!(x.nth(u128::MAX), None);
    }

    #[test]
    fn overlaps_and_covers_respect_family_and_bounds() {
        let a = r("10.0.0.0/24");
        assert!(a.overlaps(&r("10.0.0.255-10.0.1.5")));
        assert!(!a.overlaps(&r("10.0.1.0-10.0.1.5")));
        assert!(a.covers(&r("10.0.0.10-10.0.0.20")));
        assert!(a.covers(&a));
        assert!(!a.covers(&r("10.0.0.10-10.0.1.20")));
        assert!(!r("::/96").overlaps(&a), "::a.b.c.d must not collide with a.b.c.d");
        assert!(!r("::/0").covers(&a));
    }

    #[test]
    fn integer_conversion_respects_family() {
        assert_eq!(ip_to_u128(&ip("0.0.1.2")), 258);
        assert_eq!(u128_to_ip(IpFamily::V4, 258), Some(ip("0.0.1.2")));
        assert_eq!(u128_to_ip(IpFamily::V4, 1 << 32), None);
        assert_eq!(u128_to_ip(IpFamily::V6, 1 << 32), Some(ip("::1:0:0")));
    }

    #[test]
    fn intersection_is_the_common_part() {
        assert_eq!(r("10.0.0.0/24").intersection(&r("10.0.0.200-10.0.1.5")), Some(r("10.0.0.200-10.0.0.255")));
        assert_eq!(r("10.0.0.5").intersection(&r("10.0.0.0/24")), Some(r("10.0.0.5")));
        assert_eq!(r("10.0.0.0/24").intersection(&r("10.0.1.0/24")), None);
        assert_eq!(r("::/96").intersection(&r("0.0.0.0/0")), None);
    }

    #[test]
    fn overlapping_pairs_finds_every_pair_once() {
        let ranges = [
            Some(r("10.0.0.0/24")),
            None,
            Some(r("10.0.0.10-10.0.0.20")),
            Some(r("10.0.1.0/24")),
            Some(r("10.0.0.15-10.0.1.0")),
            Some(r("::/0")),
        ];
        let pairs: Vec<(usize, usize, String)> =
            overlapping_pairs(&ranges).into_iter().map(|(i, j, c)| (i, j, c.to_string())).collect();
        assert_eq!(
            pairs,
            vec![
                (0, 2, "10.0.0.10-10.0.0.20".to_string()),
                (0, 4, "10.0.0.15-10.0.0.255".to_string()),
                (2, 4, "10.0.0.15-10.0.0.20".to_string()),
                (3, 4, "10.0.1.0".to_string()),
            ]
        );
    }

    #[test]
    fn network_and_broadcast_only_for_ipv4_cidrs_of_four_addresses_or_more() {
        assert_eq!(network_and_broadcast("192.0.2.0/24"), Some((ip("192.0.2.0"), ip("192.0.2.255"))));
        assert_eq!(network_and_broadcast(" 192.0.2.9/30"), Some((ip("192.0.2.8"), ip("192.0.2.11"))));
        assert_eq!(network_and_broadcast("192.0.2.0/31"), None);
        assert_eq!(network_and_broadcast("192.0.2.0/32"), None);
        assert_eq!(network_and_broadcast("192.0.2.0-192.0.2.255"), None);
        assert_eq!(network_and_broadcast("2001:db8::/64"), None);
        assert_eq!(network_and_broadcast("192.0.2.0/33"), None);
    }

    #[test]
    fn display_is_single_or_dash_form() {
        assert_eq!(r("10.0.0.5").to_string(), "10.0.0.5");
        assert_eq!(r("10.0.0.0/30").to_string(), "10.0.0.0-10.0.0.3");
        assert_eq!(r("2001:db8::/127").to_string(), "2001:db8::-2001:db8::1");
    }
}
