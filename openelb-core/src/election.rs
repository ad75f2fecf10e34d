//! Who answers for a VIP: the candidate nodes and their rendezvous (highest-random-weight) order
//! (docs/election.md#candidates, docs/election.md#rendezvous-order).
//! Every speaker computes the same order from the same objects, and a node joining or leaving moves only the
//! VIPs it wins or held.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use xxhash_rust::xxh3::xxh3_64;

use crate::model::{Endpoint, LABEL_EXCLUDE_LB, Node, Service, TrafficPolicy};

/// Candidate nodes for one Service, sorted by name. `Cluster`: Ready nodes without the exclude label.
/// `Local`: of those, nodes with a ready endpoint of the Service.
///
/// The exclude label counts with any value (even `"false"`), as Kubernetes' service controller does: its
/// presence is the opt-out (<https://github.com/openelb/openelb/issues/310> asks for exactly this parity with
/// MetalLB).
pub fn candidates<'a>(service: &Service, nodes: &'a [Node], endpoints: &[Endpoint]) -> Vec<&'a str> {
    let local: Option<BTreeSet<&str>> = match service.external_traffic_policy {
        TrafficPolicy::Cluster => None,
        TrafficPolicy::Local => {
            Some(endpoints.iter().filter(|e| e.ready).filter_map(|e| e.node_name.as_deref()).collect())
        }
    };
    let mut out: Vec<&'a str> = nodes
        .iter()
        .filter(|n| n.ready && !n.labels.contains_key(LABEL_EXCLUDE_LB))
        .map(|n| n.name.as_str())
        .filter(|name| local.as_ref().is_none_or(|set| set.contains(name)))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Several Services sharing one VIP must agree on a single holder, so the VIP's candidates are the union of
/// theirs (sorted, deduplicated). Sharers with `Local` policy and different selectors are refused at
/// allocation (docs/allocation.md#sharing-an-address), so the union never widens a `Local` Service to nodes
/// without its pods by surprise.
pub fn candidates_union<'a, S: AsRef<[&'a str]>>(sets: &[S]) -> Vec<&'a str> {
    let mut out: Vec<&'a str> = sets.iter().flat_map(|s| s.as_ref().iter().copied()).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Tag bytes that keep an IPv4 VIP and its v4-mapped IPv6 form (`::ffff:a.b.c.d`) apart in the hash input.
const FAMILY_TAG_V4: u8 = 4;
const FAMILY_TAG_V6: u8 = 6;

/// Stack room for the hash input; most node names are far shorter than the 253 bytes a DNS name may have, and
/// zeroing a larger buffer on every call costs more than the hash itself.
const STACK_INPUT: usize = 96;

/// The VIP's part of the hash input (family tag and octets), encoded once per VIP rather than per candidate.
struct VipBytes {
    bytes: [u8; 17],
    len: usize,
}

impl VipBytes {
    fn new(vip: &IpAddr) -> Self {
        let mut bytes = [0u8; 17];
        match vip {
            IpAddr::V4(v4) => {
                bytes[0] = FAMILY_TAG_V4;
                bytes[1..5].copy_from_slice(&v4.octets());
                Self { bytes, len: 5 }
            }
            IpAddr::V6(v6) => {
                bytes[0] = FAMILY_TAG_V6;
                bytes[1..].copy_from_slice(&v6.octets());
                Self { bytes, len: 17 }
            }
        }
    }

    fn weight(&self, node: &str) -> u64 {
        let name = node.as_bytes();
        let vip = &self.bytes[..self.len];
        let total = name.len() + 1 + vip.len();
        if total <= STACK_INPUT {
            let mut buf = [0u8; STACK_INPUT];
            fill(&mut buf[..total], name, vip);
            xxh3_64(&buf[..total])
        } else {
            let mut buf = vec![0u8; total];
            fill(&mut buf, name, vip);
            xxh3_64(&buf)
        }
    }
}

/// `buf` is exactly `name.len() + 1 + vip.len()` bytes long.
fn fill(buf: &mut [u8], name: &[u8], vip: &[u8]) {
    let (head, tail) = buf.split_at_mut(name.len());
    head.copy_from_slice(name);
    if let Some((sep, rest)) = tail.split_first_mut() {
        *sep = 0;
        rest.copy_from_slice(vip);
    }
}

/// Rendezvous weight of `node` for `vip`; a stable hash, identical on every platform and release.
///
/// The hashed bytes are, in order: the node name as UTF-8, one `0x00` separator (a DNS name never holds NUL),
/// a family tag (`4` or `6`), then the address octets in network order (4 for IPv4, 16 for IPv6). The hash is
/// XXH3-64 with seed 0. Changing any of this reshuffles every VIP in a cluster during a rolling upgrade, when
/// old and new speakers would disagree on holders; a test pins a known value.
pub fn weight(node: &str, vip: &IpAddr) -> u64 {
    VipBytes::new(vip).weight(node)
}

/// Candidates in preference order (highest weight first; ties broken by name). Duplicates are dropped so the
/// order depends only on the set of candidates, never on how the caller listed them.
pub fn rank<'a>(vip: &IpAddr, candidates: &[&'a str]) -> Vec<&'a str> {
    let key = VipBytes::new(vip);
    let mut weighted: Vec<(Reverse<u64>, &'a str)> = candidates.iter().map(|c| (Reverse(key.weight(c)), *c)).collect();
    weighted.sort_unstable();
    weighted.dedup_by(|a, b| a.1 == b.1);
    weighted.into_iter().map(|(_, c)| c).collect()
}

/// The first-preference candidate, `None` when there are no candidates (the VIP must be withdrawn).
pub fn holder<'a>(vip: &IpAddr, candidates: &[&'a str]) -> Option<&'a str> {
    // Same order as `rank` without sorting: one pass, no allocation (this runs for every VIP on every change).
    let key = VipBytes::new(vip);
    candidates.iter().copied().max_by_key(|c| (key.weight(c), Reverse(*c)))
}

/// Holder of every VIP. A VIP listed more than once (Services sharing it) gets the union of its candidate sets,
/// so the result is the same however the sharers are listed. VIPs with no candidates map to `None`.
pub fn assign<'a, C, I>(vips: I) -> BTreeMap<IpAddr, Option<&'a str>>
where
    C: AsRef<[&'a str]>,
    I: IntoIterator<Item = (IpAddr, C)>,
{
    let mut merged: BTreeMap<IpAddr, Vec<&'a str>> = BTreeMap::new();
    for (vip, cands) in vips {
        merged.entry(vip).or_default().extend_from_slice(cands.as_ref());
    }
    merged.into_iter().map(|(vip, cands)| (vip, holder(&vip, &cands))).collect()
}
