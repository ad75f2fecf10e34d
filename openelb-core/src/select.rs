//! Pool selection for a Service that holds nothing valid (holders keep their address, [`crate::lifecycle`]),
//! first match wins: the pinned pool, the pool containing the requested address, namespace-bound pools, the
//! default pool, the first pool matching the protocol annotation; ranked by priority, then name. Steps 1-2 name
//! one pool, so anything wrong with it is an error; steps 3-5 skip unusable pools and, when none is left, the
//! error says why each was skipped. The order and its reasons: docs/allocation.md#pool-selection-order.

use std::fmt;
use std::net::IpAddr;

use crate::addr::AddrRange;
use crate::lifecycle::Request;
use crate::model::{IpFamily, Namespace, Pool, Protocol, Service};
use crate::pool_invalid::{PoolInvalid, PoolProblem};

/// A pool as selection sees it: its spec, its parsed range, whether it has a free address and whether the
/// allocator refuses it.
#[derive(Debug, Clone, Copy)]
pub struct PoolView<'a> {
    pub pool: &'a Pool,
    /// `None` when `spec.address` does not parse.
    pub range: Option<AddrRange>,
    pub full: bool,
    /// The first reason it gives out nothing new, if any (always set when `range` is `None`).
    pub invalid: Option<&'a PoolInvalid>,
}

/// Which rule chose the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Pinned,
    RequestedAddress,
    Namespace,
    Default,
    FirstMatching,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    pub pool: String,
    pub rule: Rule,
}

/// Why a named pool cannot give out addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    Disabled,
    Deleting,
    Full,
    Invalid(Box<PoolInvalid>),
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unusable::Disabled => f.write_str("disabled"),
            Unusable::Deleting => f.write_str("being deleted"),
            Unusable::Full => f.write_str("full"),
            Unusable::Invalid(p) => write!(f, "invalid: spec.address {:?} {}", p.address, p.problem),
        }
    }
}

/// The families a Service accepts, shown as Kubernetes writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Families(pub Vec<IpFamily>);

impl fmt::Display for Families {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "[{}]", names.join(", "))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("pinned to Eip {pool}, which does not exist")]
    PinnedMissing { pool: String },
    #[error("pinned to Eip {pool}, which is {why}")]
    PinnedUnusable { pool: String, why: Unusable },
    #[error("pinned to Eip {pool} of protocol {pool_protocol} but protocol annotation says {wanted}")]
    PinnedProtocol { pool: String, pool_protocol: Protocol, wanted: Protocol },
    #[error("requested address {ip} is not inside pinned Eip {pool} ({range})")]
    NotInPinned { ip: IpAddr, pool: String, range: AddrRange },
    #[error("no Eip contains requested address {ip}")]
    NoPoolContains { ip: IpAddr },
    #[error("requested address {ip} is in Eip {pool}, which is {why}")]
    ContainingUnusable { ip: IpAddr, pool: String, why: Unusable },
    #[error(
        "requested address {ip} is in Eip {pool} of protocol {pool_protocol} but protocol annotation says {wanted}"
    )]
    ContainingProtocol { ip: IpAddr, pool: String, pool_protocol: Protocol, wanted: Protocol },
    #[error("Eip {pool} holds {pool_family} addresses but the Service's ipFamilies is {wanted}")]
    FamilyMismatch { pool: String, pool_family: IpFamily, wanted: Families },
    #[error("no Eip matches: {}", list_skipped(.skipped))]
    NoneFits { skipped: Vec<(String, String)> },
}

fn list_skipped(skipped: &[(String, String)]) -> String {
    if skipped.is_empty() {
        return "there is no Eip".to_string();
    }
    let parts: Vec<String> = skipped.iter().map(|(name, why)| format!("{name} is {why}")).collect();
    parts.join(", ")
}

/// `spec.ipFamilies`, with the unset list read as `[IPv4]` like a single-stack cluster does.
pub fn wanted_families(svc: &Service) -> Vec<IpFamily> {
    if svc.ip_families.is_empty() { vec![IpFamily::V4] } else { svc.ip_families.clone() }
}

/// Whether `pool` prefers Services of namespace `ns_name`. The selector needs the Namespace's labels; an empty
/// selector binds nothing (it would otherwise bind every namespace).
pub fn binds_namespace(pool: &Pool, ns_name: &str, ns: Option<&Namespace>) -> bool {
    if pool.namespaces.iter().any(|n| n == ns_name) {
        return true;
    }
    !pool.namespace_selector.is_empty()
        && ns.is_some_and(|ns| pool.namespace_selector.iter().all(|(k, v)| ns.labels.get(k) == Some(v)))
}

fn unusable(view: &PoolView<'_>, need_free: bool) -> Option<Unusable> {
    if view.pool.deleting {
        Some(Unusable::Deleting)
    } else if view.pool.disable {
        Some(Unusable::Disabled)
    } else if let Some(invalid) = view.invalid {
        Some(Unusable::Invalid(Box::new(invalid.clone())))
    } else if view.range.is_none() {
        // Callers say why a pool without a range is invalid; this keeps the rule total if one does not.
        let reason = AddrRange::parse(&view.pool.address).err().map_or_else(String::new, |e| e.to_string());
        Some(Unusable::Invalid(Box::new(PoolInvalid {
            pool: view.pool.name.clone(),
            address: view.pool.address.clone(),
            problem: PoolProblem::Unparsable { reason },
        })))
    } else if need_free && view.full {
        Some(Unusable::Full)
    } else {
        None
    }
}

fn rank(a: &PoolView<'_>, b: &PoolView<'_>) -> std::cmp::Ordering {
    (a.pool.priority, &a.pool.name).cmp(&(b.pool.priority, &b.pool.name))
}

/// Picks the pool a Service that holds nothing should allocate from. Same inputs, same answer: the order of
/// `pools` does not matter.
pub fn select_pool(
    pools: &[PoolView<'_>],
    svc: &Service,
    namespace: Option<&Namespace>,
    req: &Request,
) -> Result<Selected, SelectError> {
    let families = wanted_families(svc);
    let mut ranked: Vec<&PoolView<'_>> = pools.iter().collect();
    ranked.sort_by(|a, b| rank(a, b));

    if let Some(name) = &req.pool {
        return pinned(&ranked, name, req, &families);
    }
    if let Some(ip) = req.ip {
        return containing(&ranked, ip, req, &families);
    }

    // Steps 3-5 share the filter; the first reason a pool fails is what the error reports for it.
    let skip = |v: &PoolView<'_>| -> Option<String> {
        if let Some(why) = unusable(v, true) {
            return Some(why.to_string());
        }
        let family = v.range.map(|r| r.family());
        if let Some(family) = family
            && !families.contains(&family)
        {
            return Some(format!("{family} but the Service wants {}", Families(families.clone())));
        }
        if let Some(wanted) = req.protocol
            && v.pool.protocol != wanted
        {
            return Some(format!("of protocol {} but the annotation asks for {wanted}", v.pool.protocol));
        }
        None
    };

    if let Some(v) =
        ranked.iter().filter(|v| binds_namespace(v.pool, &svc.namespace, namespace)).find(|v| skip(v).is_none())
    {
        return Ok(Selected { pool: v.pool.name.clone(), rule: Rule::Namespace });
    }
    if let Some(v) = ranked.iter().filter(|v| v.pool.is_default).find(|v| skip(v).is_none()) {
        return Ok(Selected { pool: v.pool.name.clone(), rule: Rule::Default });
    }
    let mut skipped = Vec::new();
    for v in &ranked {
        match skip(v) {
            None => return Ok(Selected { pool: v.pool.name.clone(), rule: Rule::FirstMatching }),
            Some(why) => skipped.push((v.pool.name.clone(), why)),
        }
    }
    Err(SelectError::NoneFits { skipped })
}

fn pinned(ranked: &[&PoolView<'_>], name: &str, req: &Request, families: &[IpFamily]) -> Result<Selected, SelectError> {
    let Some(view) = ranked.iter().find(|v| v.pool.name == name) else {
        return Err(SelectError::PinnedMissing { pool: name.to_string() });
    };
    // A requested address may be shared, so a full pool is only fatal when any address will do.
    if let Some(why) = unusable(view, req.ip.is_none()) {
        return Err(SelectError::PinnedUnusable { pool: name.to_string(), why });
    }
    if let Some(wanted) = req.protocol
        && view.pool.protocol != wanted
    {
        return Err(SelectError::PinnedProtocol { pool: name.to_string(), pool_protocol: view.pool.protocol, wanted });
    }
    if let Some(range) = view.range {
        if !families.contains(&range.family()) {
            return Err(SelectError::FamilyMismatch {
                pool: name.to_string(),
                pool_family: range.family(),
                wanted: Families(families.to_vec()),
            });
        }
        if let Some(ip) = req.ip
            && !range.contains(&ip)
        {
            return Err(SelectError::NotInPinned { ip, pool: name.to_string(), range });
        }
    }
    Ok(Selected { pool: name.to_string(), rule: Rule::Pinned })
}

fn containing(
    ranked: &[&PoolView<'_>],
    ip: IpAddr,
    req: &Request,
    families: &[IpFamily],
) -> Result<Selected, SelectError> {
    let holders: Vec<&&PoolView<'_>> = ranked.iter().filter(|v| v.range.is_some_and(|r| r.contains(&ip))).collect();
    // Overlapping pools are invalid (both give out nothing new); the best-ranked usable one would win.
    let view = match holders.iter().find(|v| unusable(v, false).is_none()) {
        Some(v) => v,
        None => {
            return Err(match holders.first() {
                None => SelectError::NoPoolContains { ip },
                Some(v) => SelectError::ContainingUnusable {
                    ip,
                    pool: v.pool.name.clone(),
                    why: unusable(v, false).unwrap_or(Unusable::Disabled),
                },
            });
        }
    };
    if let Some(wanted) = req.protocol
        && view.pool.protocol != wanted
    {
        return Err(SelectError::ContainingProtocol {
            ip,
            pool: view.pool.name.clone(),
            pool_protocol: view.pool.protocol,
            wanted,
        });
    }
    let family = IpFamily::of(&ip);
    if !families.contains(&family) {
        return Err(SelectError::FamilyMismatch {
            pool: view.pool.name.clone(),
            pool_family: family,
            wanted: Families(families.to_vec()),
        });
    }
    Ok(Selected { pool: view.pool.name.clone(), rule: Rule::RequestedAddress })
}
