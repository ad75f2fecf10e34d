//! Checks on pools and Services that the CLI's `validate` and, later, the admission webhook share.
//! Every problem names the object, the field and the value.
//!
//! Problems come back sorted so two runs over the same objects print the same report. A problem that involves
//! two or more pools (an overlap, several defaults) is reported on each of them, so the webhook can keep only
//! the problems of the object under admission and still see them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use crate::addr::{self, AddrRange};
use crate::iface;
use crate::ipam::Ipam;
use crate::model::{
    ANNOTATION_DEFAULT_EIP, ANNOTATION_EIP_IP, ANNOTATION_EIP_POOL, ANNOTATION_LB, ANNOTATION_LB_VALUE,
    ANNOTATION_PROTOCOL, Cluster, LOAD_BALANCER_CLASS, PRIORITY_MAX, PRIORITY_MIN, Pool, Protocol, Service,
};
use crate::protocol_support;
use crate::reserved;
use crate::vrrp::inputs::PlanInputs;
use crate::vrrp::plan::{self, PlanConfig, PlanContext};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// `Eip/<name>` or `Service/<ns>/<name>`.
    pub object: String,
    /// JSON path of the field, e.g. `spec.address`.
    pub field: String,
    pub value: String,
    pub message: String,
    /// Warnings do not make an object invalid; they say what will happen that the author may not expect.
    pub severity: Severity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl Problem {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        write!(f, "{}: {}={:?}: {}", self.object, self.field, self.value, self.message)
    }
}

/// How many stranded addresses an update problem lists before summarising the rest.
const STRANDED_LISTED: usize = 5;

/// Problems of a set of pools taken together (parse errors, overlaps, missing interface, several defaults).
pub fn validate_pools(pools: &[Pool]) -> Vec<Problem> {
    let mut out = Vec::new();
    for pool in pools {
        check_pool(pool, &BTreeSet::new(), &mut out);
    }
    check_duplicate_names(pools, &mut out);
    check_overlaps(pools, &mut out);
    check_defaults(pools, &mut out);
    finish(out)
}

/// Problems of changing `old` into `new` (admission UPDATE): the new address must still contain every address
/// in `old.used`.
///
/// Unlike upstream, which makes `spec.address` immutable, an address change is allowed as long as no Service
/// would be left holding an address outside its pool (docs/compatibility.md#pool-address-changes).
pub fn validate_pool_update(old: &Pool, new: &Pool) -> Vec<Problem> {
    let mut out = Vec::new();
    // Addresses of `old.used` are reported once, as stranded, rather than a second time as stray status entries.
    let reported_as_stranded: BTreeSet<&str> = old.used.keys().map(String::as_str).collect();
    check_pool(new, &reported_as_stranded, &mut out);
    if let Ok(range) = AddrRange::parse(&new.address) {
        let mut stranded: Vec<(IpAddr, &str)> = old
            .used
            .iter()
            .filter_map(|(ip, users)| ip.trim().parse::<IpAddr>().ok().map(|ip| (ip, users.as_str())))
            .filter(|(ip, _)| !range.contains(ip))
            .collect();
        stranded.sort();
        if !stranded.is_empty() {
            let listed: Vec<String> =
                stranded.iter().take(STRANDED_LISTED).map(|(ip, users)| format!("{ip} ({users})")).collect();
            let more = stranded.len().saturating_sub(STRANDED_LISTED);
            let tail = if more > 0 { format!(" and {more} more") } else { String::new() };
            out.push(problem(
                eip(new),
                "spec.address",
                &new.address,
                format!(
                    "the new range {range} leaves addresses in use outside the pool: {}{tail}; release them first",
                    listed.join(", ")
                ),
            ));
        }
    }
    finish(out)
}

/// Everything `openelb-cli validate` reports: pools, plus Services whose requests cannot be honoured
/// (bad `loadBalancerIP`, pin to a missing pool, pin against the protocol annotation).
pub fn validate_cluster(cluster: &Cluster) -> Vec<Problem> {
    let mut out = validate_pools(&cluster.pools);
    let parsed: Vec<ParsedPool<'_>> = cluster.pools.iter().map(|p| (p, AddrRange::parse(&p.address).ok())).collect();
    for svc in &cluster.services {
        check_service(svc, &parsed, &mut out);
    }
    finish(out)
}

/// Warnings for what the VRRP plan of these objects would have to approximate (VRID range full: merged groups,
/// VIPs not announced; VIPs listed twice), each naming the VIPs concerned. The addresses are allocated as the
/// controller would; `config` is the speakers' (`--vrid-range`, `--vrid-offset`).
pub fn vrrp_plan(cluster: &Cluster, config: &PlanConfig) -> Vec<Problem> {
    let mut ipam = Ipam::new(&cluster.pools);
    ipam.reconcile_all(&cluster.services, &cluster.namespaces);
    let inputs = PlanInputs::from_ipam(cluster, &ipam);
    let plan = plan::plan(&inputs.vips, config, &PlanContext::default());
    let out = plan
        .issues
        .iter()
        .map(|issue| {
            const SHOWN: usize = 8;
            let vips = issue.vips();
            let mut value: Vec<String> = vips.iter().take(SHOWN).map(ToString::to_string).collect();
            if vips.len() > SHOWN {
                value.push(format!("and {} more", vips.len() - SHOWN));
            }
            warning("VRRP plan".to_string(), issue.kind(), &value.join(", "), issue.to_string())
        })
        .collect();
    finish(out)
}

fn finish(mut out: Vec<Problem>) -> Vec<Problem> {
    out.sort();
    out.dedup();
    out
}

fn problem(object: String, field: &str, value: &str, message: String) -> Problem {
    Problem { object, field: field.to_string(), value: value.to_string(), message, severity: Severity::Error }
}

fn warning(object: String, field: &str, value: &str, message: String) -> Problem {
    Problem { severity: Severity::Warning, ..problem(object, field, value, message) }
}

fn eip(pool: &Pool) -> String {
    format!("Eip/{}", pool.name)
}

fn annotation_field(key: &str) -> String {
    format!("metadata.annotations[{key}]")
}

/// Checks of one pool on its own. Entries of `status.used` named in `skip_used` are left to the caller.
fn check_pool(pool: &Pool, skip_used: &BTreeSet<&str>, out: &mut Vec<Problem>) {
    let obj = eip(pool);
    if let Err(why) = dns1123_subdomain(&pool.name) {
        out.push(problem(obj.clone(), "metadata.name", &pool.name, format!("not a DNS-1123 subdomain: {why}")));
    }
    let range = match AddrRange::parse(&pool.address) {
        Ok(r) => Some(r),
        Err(e) => {
            out.push(problem(obj.clone(), "spec.address", &pool.address, e.to_string()));
            None
        }
    };
    if let Some(r) = range.as_ref().and_then(reserved::first_in) {
        out.push(problem(
            obj.clone(),
            "spec.address",
            &pool.address,
            format!("{}; the allocator gives out no new addresses from this Eip", r.contained()),
        ));
    } else if let Some((network, broadcast)) = addr::network_and_broadcast(&pool.address) {
        out.push(warning(
            obj.clone(),
            "spec.address",
            &pool.address,
            format!(
                "the CIDR includes its network address {network} and broadcast address {broadcast}, and they are \
                 handed out like the others (as upstream OpenELB does); some hosts and routers do not reach them, \
                 so write a range such as {}-{} to leave them out",
                next(network),
                prev(broadcast)
            ),
        ));
    }
    if !(PRIORITY_MIN..=PRIORITY_MAX).contains(&pool.priority) {
        out.push(problem(
            obj.clone(),
            "spec.priority",
            &pool.priority.to_string(),
            format!(
                "out of range: the Eip schema allows {PRIORITY_MIN} to {PRIORITY_MAX} (this object bypassed it); \
                 the allocator still ranks the Eip by this value"
            ),
        ));
    }
    check_interface(pool, &obj, out);
    if let Some(why) = protocol_support::not_announced(pool.protocol) {
        out.push(warning(obj.clone(), "spec.protocol", pool.protocol.as_str(), why));
    }
    for (i, ns) in pool.namespaces.iter().enumerate() {
        if let Err(why) = dns1123_label(ns) {
            out.push(problem(
                obj.clone(),
                &format!("spec.namespaces[{i}]"),
                ns,
                format!("not a namespace name (DNS-1123 label): {why}"),
            ));
        }
    }
    if let Some(v) = &pool.default_annotation
        && v.eq_ignore_ascii_case("true")
        && v != "true"
    {
        out.push(warning(
            obj.clone(),
            &annotation_field(ANNOTATION_DEFAULT_EIP),
            v,
            format!(
                "IPAM requires exactly \"true\" to use this pool as the default; {v:?} counts as a default for \
                 the uniqueness check but not for allocation"
            ),
        ));
    }
    for (key, users) in &pool.used {
        if skip_used.contains(key.as_str()) {
            continue;
        }
        let field = format!("status.used[{key}]");
        match key.trim().parse::<IpAddr>() {
            Err(_) => out.push(problem(obj.clone(), &field, users, format!("key {key:?} is not an IP address"))),
            Ok(ip) => {
                if let Some(r) = range
                    && !r.contains(&ip)
                {
                    out.push(problem(
                        obj.clone(),
                        &field,
                        users,
                        format!(
                            "{ip} is recorded as used by {users} but is outside the pool's range {r}; the Service \
                             keeps it and the Eip gives out no new addresses until it is released"
                        ),
                    ));
                }
            }
        }
    }
}

fn check_interface(pool: &Pool, obj: &str, out: &mut Vec<Problem>) {
    let iface = pool.interface.as_deref().unwrap_or("");
    if iface.is_empty() {
        // The seed's vip-eip.yaml has no interface: VIP mode then uses the NIC that carries the node's
        // InternalIP (the seed requires single-NIC nodes). So for vip it is a warning, not an error, even though
        // OpenELB v0.6's webhook rejects it; layer2 has no such fallback.
        if pool.protocol == Protocol::Vip {
            out.push(warning(
                obj.to_string(),
                "spec.interface",
                iface,
                "spec.interface is not set: the speaker announces on the NIC that holds the node's InternalIP \
                 (OpenELB v0.6's webhook would reject this Eip; set it to a NIC name or can_reach:<ip>)"
                    .to_string(),
            ));
        } else if pool.protocol == Protocol::Layer2 {
            out.push(problem(
                obj.to_string(),
                "spec.interface",
                iface,
                format!("spec.interface is required for protocol {}", pool.protocol),
            ));
        }
        return;
    }
    if let Err(why) = iface::parse(iface) {
        out.push(problem(obj.to_string(), "spec.interface", iface, why.to_string()));
    }
}

/// The address after `ip` (or `ip` at the end of its family), for the suggested range in a message.
fn next(ip: IpAddr) -> IpAddr {
    addr::ip_to_u128(&ip).checked_add(1).and_then(|v| addr::u128_to_ip(crate::IpFamily::of(&ip), v)).unwrap_or(ip)
}

fn prev(ip: IpAddr) -> IpAddr {
    addr::ip_to_u128(&ip).checked_sub(1).and_then(|v| addr::u128_to_ip(crate::IpFamily::of(&ip), v)).unwrap_or(ip)
}

fn check_duplicate_names(pools: &[Pool], out: &mut Vec<Problem>) {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for p in pools {
        *count.entry(p.name.as_str()).or_default() += 1;
    }
    for (name, n) in count.into_iter().filter(|(_, n)| *n > 1) {
        out.push(problem(
            format!("Eip/{name}"),
            "metadata.name",
            name,
            format!("{n} pools have this name; Eip names are unique in a cluster"),
        ));
    }
}

fn check_overlaps(pools: &[Pool], out: &mut Vec<Problem>) {
    // Family-aware: upstream's big-int test would let 0.0.0.0/0 overlap ::/96.
    let ranges: Vec<Option<AddrRange>> = pools.iter().map(|p| AddrRange::parse(&p.address).ok()).collect();
    for (i, j, common) in addr::overlapping_pairs(&ranges) {
        let (Some(a), Some(b)) = (pools.get(i), pools.get(j)) else { continue };
        for (this, other) in [(a, b), (b, a)] {
            out.push(problem(
                eip(this),
                "spec.address",
                &this.address,
                format!(
                    "overlaps Eip/{} (spec.address {:?}) on {common}; neither gives out new addresses while they \
                     overlap",
                    other.name, other.address
                ),
            ));
        }
    }
}

fn check_defaults(pools: &[Pool], out: &mut Vec<Problem>) {
    // Upstream's webhook compares case-insensitively, so "True" blocks a second default there too.
    let defaults: Vec<&Pool> = pools
        .iter()
        .filter(|p| p.default_annotation.as_deref().is_some_and(|v| v.eq_ignore_ascii_case("true")))
        .collect();
    if defaults.len() < 2 {
        return;
    }
    let mut names: Vec<String> = defaults.iter().map(|p| eip(p)).collect();
    names.sort();
    let list = names.join(", ");
    for p in &defaults {
        out.push(problem(
            eip(p),
            &annotation_field(ANNOTATION_DEFAULT_EIP),
            p.default_annotation.as_deref().unwrap_or_default(),
            format!("{} pools are marked default ({list}); at most one may be", defaults.len()),
        ));
    }
}

/// A pool with its address parsed once; `None` when `spec.address` is invalid (reported on the pool itself).
type ParsedPool<'p> = (&'p Pool, Option<AddrRange>);

fn check_service(svc: &Service, pools: &[ParsedPool<'_>], out: &mut Vec<Problem>) {
    let obj = format!("Service/{}/{}", svc.namespace, svc.name);
    let lb_annotation = svc.annotations.get(ANNOTATION_LB);
    let by_class = svc.load_balancer_class.as_deref() == Some(LOAD_BALANCER_CLASS);
    if let Some(v) = lb_annotation
        && v != ANNOTATION_LB_VALUE
    {
        out.push(problem(
            obj.clone(),
            &annotation_field(ANNOTATION_LB),
            v,
            format!("OpenELB acts only on the exact value {ANNOTATION_LB_VALUE:?}; this value is ignored"),
        ));
    }
    let by_annotation = lb_annotation.is_some_and(|v| v == ANNOTATION_LB_VALUE);
    if !(by_annotation || by_class) {
        return;
    }
    if svc.type_ != "LoadBalancer" {
        if by_annotation {
            out.push(problem(
                obj,
                &annotation_field(ANNOTATION_LB),
                ANNOTATION_LB_VALUE,
                format!("annotation has no effect: spec.type is {:?}, not \"LoadBalancer\"", svc.type_),
            ));
        }
        // Kubernetes itself refuses `loadBalancerClass` on other types, so only the annotation can get here.
        return;
    }

    let pin_field = annotation_field(ANNOTATION_EIP_POOL);
    let pinned: Option<(&str, Option<&ParsedPool<'_>>)> = svc
        .annotations
        .get(ANNOTATION_EIP_POOL)
        .map(|name| (name.as_str(), pools.iter().find(|(p, _)| p.name == *name)));
    if let Some((name, None)) = pinned {
        out.push(problem(obj.clone(), &pin_field, name, format!("no Eip named {name:?} exists")));
    }
    let pinned_pool = pinned.and_then(|(_, p)| p);

    check_requested_ip(svc, &obj, pools, pinned_pool, out);

    // The API server refuses these; manifests read offline (and sharing decisions) do not pass through it.
    for (i, port) in svc.ports.iter().enumerate() {
        if !(1..=65535).contains(&port.port) {
            out.push(problem(
                obj.clone(),
                &format!("spec.ports[{i}].port"),
                &port.port.to_string(),
                "out of range: a port is 1 to 65535".to_string(),
            ));
        }
    }

    if let Some(proto) = svc.annotations.get(ANNOTATION_PROTOCOL) {
        let field = annotation_field(ANNOTATION_PROTOCOL);
        match parse_protocol(proto) {
            None => {
                out.push(problem(obj.clone(), &field, proto, "must be one of \"bgp\", \"layer2\", \"vip\"".to_string()))
            }
            Some(want) => {
                if let Some((pool, _)) = pinned_pool
                    && pool.protocol != want
                {
                    out.push(problem(
                        obj.clone(),
                        &field,
                        proto,
                        format!("the pinned Eip/{} has protocol {}, not {want}", pool.name, pool.protocol),
                    ));
                }
            }
        }
    }
}

/// The requested address: annotation `eip.openelb.kubesphere.io/v1alpha1` wins over `spec.loadBalancerIP`.
fn check_requested_ip(
    svc: &Service,
    obj: &str,
    pools: &[ParsedPool<'_>],
    pinned: Option<&ParsedPool<'_>>,
    out: &mut Vec<Problem>,
) {
    let (field, value) = match (svc.annotations.get(ANNOTATION_EIP_IP), svc.load_balancer_ip.as_deref()) {
        (Some(v), _) => (annotation_field(ANNOTATION_EIP_IP), v.as_str()),
        (None, Some(v)) if !v.is_empty() => ("spec.loadBalancerIP".to_string(), v),
        _ => return,
    };
    let Ok(ip) = value.parse::<IpAddr>() else {
        out.push(problem(obj.to_string(), &field, value, "not an IP address".to_string()));
        return;
    };
    if let Some(r) = reserved::classify(ip) {
        out.push(problem(obj.to_string(), &field, value, r.to_string()));
        return;
    }
    match pinned {
        Some((pool, Some(range))) => {
            if !range.contains(&ip) {
                out.push(problem(
                    obj.to_string(),
                    &field,
                    value,
                    format!("{ip} is outside the pinned Eip/{} ({range})", pool.name),
                ));
            }
        }
        // A pinned pool whose address does not parse is already reported on the pool.
        Some((_, None)) => {}
        None => {
            if !pools.iter().any(|(_, r)| r.is_some_and(|r| r.contains(&ip))) {
                out.push(problem(obj.to_string(), &field, value, format!("{ip} is not inside any Eip")));
            }
        }
    }
}

/// Exact values only: the v0.5 seed required the annotation to name a protocol, and a typo would otherwise be
/// read as `bgp` like `Protocol::from_spec` does for pools.
fn parse_protocol(s: &str) -> Option<Protocol> {
    match s {
        "bgp" => Some(Protocol::Bgp),
        "layer2" => Some(Protocol::Layer2),
        "vip" => Some(Protocol::Vip),
        _ => None,
    }
}

/// Kubernetes' `IsDNS1123Subdomain`: at most 253 chars, dot-separated DNS-1123 labels without their length cap.
fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".to_string());
    }
    if s.len() > 253 {
        return Err(format!("at most 253 characters, this one has {}", s.len()));
    }
    if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.') {
        return Err("only lowercase letters, digits, '-' and '.' are allowed".to_string());
    }
    for part in s.split('.') {
        label_ends(part)?;
    }
    Ok(())
}

/// Kubernetes' `IsDNS1123Label`: at most 63 chars of lowercase letters, digits and '-', alphanumeric at both ends.
fn dns1123_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".to_string());
    }
    if s.len() > 63 {
        return Err(format!("at most 63 characters, this one has {}", s.len()));
    }
    if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err("only lowercase letters, digits and '-' are allowed".to_string());
    }
    label_ends(s)
}

fn label_ends(part: &str) -> Result<(), String> {
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !alnum(part.bytes().next()) || !alnum(part.bytes().last()) {
        return Err("each part must start and end with a letter or digit".to_string());
    }
    Ok(())
}
