//! The one rule for `Eip.spec.interface` (and the speaker's `--interface`): a Linux interface name or
//! `can_reach:<ip>`. Validation and the speaker both call [`parse`], so an Eip that passes validation is never
//! refused by a speaker afterwards (its addresses allocated and never announced).

use std::fmt;
use std::net::IpAddr;

use crate::reserved::{self, Reserved};

/// Picks the interface by a route lookup towards the address, as upstream's `can_reach:` does.
pub const CAN_REACH_PREFIX: &str = "can_reach:";
/// Linux `IFNAMSIZ` minus the terminating NUL.
pub const IFNAME_MAX: usize = 15;

/// An interface as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Iface<'a> {
    /// A NIC name such as `eth0`.
    Name(&'a str),
    /// `can_reach:<ip>`: the NIC the kernel would use to reach `ip`.
    CanReach(IpAddr),
}

impl fmt::Display for Iface<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Iface::Name(n) => f.write_str(n),
            Iface::CanReach(ip) => write!(f, "{CAN_REACH_PREFIX}{ip}"),
        }
    }
}

/// Why a string is not an interface. The caller names the field; the message names the value's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IfaceError {
    #[error("an interface name is not empty")]
    Empty,
    #[error("an interface name has at most {IFNAME_MAX} bytes, this one has {0}")]
    TooLong(usize),
    #[error("an interface name cannot contain {0:?}")]
    BadChar(char),
    #[error("\".\" and \"..\" are not interface names")]
    Dots,
    #[error("unknown prefix {0:?}: expected an interface name or {CAN_REACH_PREFIX}<ip>")]
    UnknownPrefix(String),
    #[error("{0:?} after {CAN_REACH_PREFIX} is not an IP address")]
    NotAnIp(String),
    /// The route to such an address goes through `lo` or nowhere: no NIC to announce on
    /// (<https://github.com/openelb/openelb/issues/331>).
    #[error("{CAN_REACH_PREFIX}{ip} names {}, which no route leaves the host for", reserved_name(.kind))]
    Unreachable { ip: IpAddr, kind: Reserved },
}

fn reserved_name(kind: &Reserved) -> &'static str {
    match kind {
        Reserved::Unspecified => "the unspecified address",
        _ => "a loopback address",
    }
}

/// Parses an interface spec exactly as written: no trimming, so what passes here is what the kernel is asked
/// for. A name is 1-15 bytes without '/', ':', whitespace or control characters, and not "." or ".." (the rules
/// of the kernel's `dev_valid_name`, plus ':' which Linux reserves for aliases and we for `can_reach:`).
pub fn parse(s: &str) -> Result<Iface<'_>, IfaceError> {
    if let Some(rest) = s.strip_prefix(CAN_REACH_PREFIX) {
        let ip: IpAddr = rest.parse().map_err(|_| IfaceError::NotAnIp(rest.to_string()))?;
        return match reserved::classify(ip) {
            Some(r) if matches!(r.kind, Reserved::Unspecified | Reserved::Loopback) => {
                Err(IfaceError::Unreachable { ip, kind: r.kind })
            }
            _ => Ok(Iface::CanReach(ip)),
        };
    }
    if s.is_empty() {
        return Err(IfaceError::Empty);
    }
    if let Some((prefix, _)) = s.split_once(':') {
        return Err(IfaceError::UnknownPrefix(prefix.to_string()));
    }
    if let Some(c) = s.chars().find(|c| *c == '/' || c.is_whitespace() || c.is_control()) {
        return Err(IfaceError::BadChar(c));
    }
    if s.len() > IFNAME_MAX {
        return Err(IfaceError::TooLong(s.len()));
    }
    if s == "." || s == ".." {
        return Err(IfaceError::Dots);
    }
    Ok(Iface::Name(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        parse(s).unwrap_err().to_string()
    }

    #[test]
    fn names_and_can_reach_are_accepted() {
        assert_eq!(parse("eth0"), Ok(Iface::Name("eth0")));
        assert_eq!(parse("enp0s31f6.100"), Ok(Iface::Name("enp0s31f6.100")));
        assert_eq!(parse("a23456789012345"), Ok(Iface::Name("a23456789012345")));
        assert_eq!(parse("can_reach:192.0.2.1"), Ok(Iface::CanReach("192.0.2.1".parse().unwrap())));
        assert_eq!(parse("can_reach:2001:db8::1"), Ok(Iface::CanReach("2001:db8::1".parse().unwrap())));
        assert_eq!(parse("can_reach:2001:db8::1").unwrap().to_string(), "can_reach:2001:db8::1");
    }

    #[test]
    fn each_refusal_names_the_fault() {
        assert_eq!(err(""), "an interface name is not empty");
        assert_eq!(err("eth\u{1}"), "an interface name cannot contain '\\u{1}'");
        assert_eq!(err("eth\u{7f}"), "an interface name cannot contain '\\u{7f}'");
        assert_eq!(err("eth 0"), "an interface name cannot contain ' '");
        assert_eq!(err("eth0\n"), "an interface name cannot contain '\\n'");
        assert_eq!(err("a/b"), "an interface name cannot contain '/'");
        assert_eq!(err("a234567890123456"), "an interface name has at most 15 bytes, this one has 16");
        assert_eq!(err("."), "\".\" and \"..\" are not interface names");
        assert_eq!(err(".."), "\".\" and \"..\" are not interface names");
        assert_eq!(err("eth0:1"), "unknown prefix \"eth0\": expected an interface name or can_reach:<ip>");
        assert_eq!(err("can_reach:x"), "\"x\" after can_reach: is not an IP address");
        assert_eq!(err("can_reach: 192.0.2.1"), "\" 192.0.2.1\" after can_reach: is not an IP address");
        assert_eq!(err("can_reach:"), "\"\" after can_reach: is not an IP address");
        assert_eq!(
            err("can_reach:127.0.0.1"),
            "can_reach:127.0.0.1 names a loopback address, which no route leaves the host for"
        );
        assert_eq!(
            err("can_reach:::"),
            "can_reach::: names the unspecified address, which no route leaves the host for"
        );
    }

    #[test]
    fn multibyte_names_count_bytes() {
        // 8 two-byte characters: 16 bytes, one more than IFNAMSIZ allows.
        assert_eq!(err("éééééééé"), "an interface name has at most 15 bytes, this one has 16");
        assert_eq!(parse("ééééééé"), Ok(Iface::Name("ééééééé")));
    }
}
