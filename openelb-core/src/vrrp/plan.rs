//! From VIPs and their ranked candidate nodes to VRRP instances (DESIGN §4): which VIPs form a group, the
//! group's VRID and every participating node's priority. A pure function of its inputs, so every speaker derives
//! the same plan from the same objects, whatever order it lists them in.
//!
//! **Grouping.** VIPs with the same interface, address family (VRRP for IPv4 and for IPv6 are separate protocols
//! with separate VRID spaces), the same candidate *set* and the same first preference form one group. The
//! interface is the pool's interface *spec* (`eth0` or `can_reach:<ip>`), not a resolved NIC name: resolution is
//! per node, the plan must not be.
//!
//! **Priorities.** The first preference gets `top_priority` (default 250); the rest follow in the group's
//! preference order, each `step` lower (default 10, shrunk so that the last candidate stays ≥ 1). VIPs of one
//! group share the first preference but may rank the others differently, so the group's order after the first
//! is a Borda count over its VIPs (sum of each node's positions, lowest first, ties by name): with one VIP it is
//! exactly that VIP's rendezvous order. At most `top_priority` nodes participate (priorities stay strictly
//! decreasing); candidates beyond that do not.
//!
//! **Parts.** A VRRPv3 advert carries at most 255 addresses (an 8-bit count) and must fit the MTU: IPv4
//! 20 + 8 + 4n ≤ 1500 holds for all 255, IPv6 40 + 8 + 16n ≤ 1500 only for n ≤ 90. A group with more VIPs than
//! [`PlanConfig::max_vips_per_group`] is therefore split: its VIPs, sorted, are cut into consecutive parts of at
//! most that many, and each part is a group of its own ([`GroupId::part`] 0, 1, …) with its own VRID. All parts
//! share the priorities computed over the whole group, so one node is master of all of them and a VIP crossing
//! a part boundary stays on the same node. Adding a VIP in the middle shifts the later boundaries by one: the
//! last VIP of each later part moves to the next part, and a new last part may appear. The parts keep their
//! identity (and with `previous`, their VRID), so running instances only change addresses; a VIP moved between
//! two parts is removed by one instance and added by the other on the same master (the agent never removes an
//! address another of its Master instances holds), and a new last part starts as Master on the node that holds
//! its VIPs (see the agent), so the shift costs no outage, only a gratuitous ARP/NA burst and an advert with a
//! changed address list (peers report a mismatch for one advert interval).
//!
//! **VRIDs.** Each group has an identity (interface, family, first preference, sorted candidates, part) and a stable
//! hash of it (XXH3-64, pinned by a test). Within a VRID domain (per family, and per interface when
//! [`VridScope::PerInterface`]; the default [`VridScope::Global`] shares one space across interfaces because two
//! interface specs can resolve to the same NIC on some node) groups are processed in (hash, identity) order:
//! 1. a group present in `previous` keeps its VRID if that VRID is still in range and not yet taken;
//! 2. every other group starts at `first + (hash + offset) mod size` and probes upward (wrapping) to a free VRID.
//!
//! Without `previous`, a group's VRID depends only on the groups whose home slot or probe chain overlaps its
//! own: unrelated groups coming and going do not move it, *except* when a group that pushed it off its home slot
//! (a collision) disappears, or a new group sorting before it takes a slot on its chain. That residual case is
//! what `previous` is for; it must be state every node shares (e.g. the plan published by the controller, or
//! the VRIDs recovered from the adverts on the segment), because two nodes with different `previous` plans can
//! disagree. `offset` separates clusters sharing a segment.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use thiserror::Error;
use xxhash_rust::xxh3::xxh3_64;

use crate::model::IpFamily;

pub const DEFAULT_TOP_PRIORITY: u8 = 250;
pub const DEFAULT_PRIORITY_STEP: u8 = 10;
/// The address count of a VRRPv3 advert is 8 bits.
pub const MAX_VIPS_PER_ADVERT: usize = 255;
/// 20 + 8 + 4 × 255 = 1048 bytes: the count, not the MTU, is the limit for IPv4.
pub const DEFAULT_MAX_VIPS_IPV4: usize = 255;
/// 40 + 8 + 16 × 90 = 1488 ≤ 1500 bytes (91 would be 1504).
pub const DEFAULT_MAX_VIPS_IPV6: usize = 90;

/// One VIP as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipInput {
    pub vip: IpAddr,
    /// The pool's interface spec (same string on every node).
    pub interface: String,
    /// Candidates in preference order (`election::rank`); duplicates are ignored, empty means withdrawn.
    pub candidates: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VridScope {
    /// One VRID space per address family across all interfaces.
    #[default]
    Global,
    /// One VRID space per (interface, family).
    PerInterface,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanConfig {
    pub vrids: RangeInclusive<u8>,
    /// Rotates every home slot; give clusters that share a segment different offsets.
    pub offset: u8,
    pub top_priority: u8,
    pub priority_step: u8,
    pub scope: VridScope,
    /// Most VIPs in one IPv4 group (1..=255); larger groups are split into parts. Lower it for a smaller MTU.
    pub max_vips_ipv4: usize,
    /// Most VIPs in one IPv6 group (1..=255); the default fits a 1500-byte MTU, more needs jumbo frames.
    pub max_vips_ipv6: usize,
}

impl PlanConfig {
    pub fn max_vips_per_group(&self, family: IpFamily) -> usize {
        match family {
            IpFamily::V4 => self.max_vips_ipv4,
            IpFamily::V6 => self.max_vips_ipv6,
        }
    }
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            vrids: 1..=255,
            offset: 0,
            top_priority: DEFAULT_TOP_PRIORITY,
            priority_step: DEFAULT_PRIORITY_STEP,
            scope: VridScope::Global,
            max_vips_ipv4: DEFAULT_MAX_VIPS_IPV4,
            max_vips_ipv6: DEFAULT_MAX_VIPS_IPV6,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    #[error("VRID range {first}-{last}: {what}")]
    InvalidRange { first: u8, last: u8, what: &'static str },
    #[error("priorities top {top} step {step}: top must be 1-254 and step at least 1")]
    InvalidPriority { top: u8, step: u8 },
    #[error("{family} group size {max}: must be 1-255 VIPs (the address count of a VRRPv3 advert is 8 bits)")]
    InvalidGroupSize { family: IpFamily, max: usize },
    #[error("VIP {vip}: listed twice with different interfaces or candidates")]
    ConflictingVip { vip: IpAddr },
    #[error("{family}{}: {groups} VRRP groups do not fit in VRID range {first}-{last} ({size} VRIDs)",
        interface.as_deref().map(|i| format!(" on {i}")).unwrap_or_default(),
        size = usize::from(*last - *first) + 1)]
    RangeExhausted { family: IpFamily, interface: Option<String>, groups: usize, first: u8, last: u8 },
}

/// What makes a group the same group over time; a running instance keeps its VRID as long as this is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId {
    pub interface: String,
    pub family: IpFamily,
    pub first: String,
    /// Sorted.
    pub candidates: Vec<String>,
    /// Which slice of the group's sorted VIPs (0 unless the group is larger than one advert can carry).
    pub part: u32,
}

impl GroupId {
    /// XXH3-64 (seed 0) of: family tag (`4`/`6`), interface, `0x00`, first preference, `0x00`, then each sorted
    /// candidate followed by `0x00`; for a part other than 0, then `0x01` and the part as 4 bytes big-endian
    /// (part 0 hashes as before parts existed, so unsplit groups kept their VRIDs). Changing it moves VRIDs
    /// during a rolling upgrade; a test pins a value.
    pub fn stable_hash(&self) -> u64 {
        let mut buf = Vec::with_capacity(
            2 + self.interface.len() + self.first.len() + self.candidates.iter().map(|c| c.len() + 1).sum::<usize>(),
        );
        buf.push(match self.family {
            IpFamily::V4 => 4,
            IpFamily::V6 => 6,
        });
        buf.extend_from_slice(self.interface.as_bytes());
        buf.push(0);
        buf.extend_from_slice(self.first.as_bytes());
        buf.push(0);
        for c in &self.candidates {
            buf.extend_from_slice(c.as_bytes());
            buf.push(0);
        }
        if self.part != 0 {
            buf.push(1);
            buf.extend_from_slice(&self.part.to_be_bytes());
        }
        xxh3_64(&buf)
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} first {} of [{}]", self.interface, self.family, self.first, self.candidates.join(","))?;
        if self.part != 0 {
            write!(f, " part {}", self.part)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: GroupId,
    pub vrid: u8,
    /// Sorted.
    pub vips: Vec<IpAddr>,
    /// Participating nodes in preference order with their priorities (strictly decreasing).
    pub priorities: Vec<(String, u8)>,
}

impl Group {
    pub fn priority_of(&self, node: &str) -> Option<u8> {
        self.priorities.iter().find(|(n, _)| n == node).map(|(_, p)| *p)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Sorted by identity.
    pub groups: Vec<Group>,
}

impl Plan {
    pub fn group(&self, id: &GroupId) -> Option<&Group> {
        self.groups.binary_search_by(|g| g.id.cmp(id)).ok().and_then(|i| self.groups.get(i))
    }

    /// Groups `node` participates in, with its priority.
    pub fn for_node<'a>(&'a self, node: &'a str) -> impl Iterator<Item = (&'a Group, u8)> + 'a {
        self.groups.iter().filter_map(move |g| g.priority_of(node).map(|p| (g, p)))
    }

    pub fn group_of(&self, vip: &IpAddr) -> Option<&Group> {
        self.groups.iter().find(|g| g.vips.binary_search(vip).is_ok())
    }
}

/// Computes the plan; see the module notes for the rules.
pub fn plan(vips: &[VipInput], config: &PlanConfig, previous: Option<&Plan>) -> Result<Plan, PlanError> {
    let (first, last) = (*config.vrids.start(), *config.vrids.end());
    if first == 0 {
        return Err(PlanError::InvalidRange { first, last, what: "VRID 0 is reserved" });
    }
    if first > last {
        return Err(PlanError::InvalidRange { first, last, what: "range end is before its start" });
    }
    if config.top_priority == 0 || config.top_priority == 255 || config.priority_step == 0 {
        return Err(PlanError::InvalidPriority { top: config.top_priority, step: config.priority_step });
    }
    for family in [IpFamily::V4, IpFamily::V6] {
        let max = config.max_vips_per_group(family);
        if !(1..=MAX_VIPS_PER_ADVERT).contains(&max) {
            return Err(PlanError::InvalidGroupSize { family, max });
        }
    }

    // One entry per VIP, deduplicated candidates, conflicts refused.
    let mut per_vip: BTreeMap<IpAddr, (&str, Vec<&str>)> = BTreeMap::new();
    for v in vips {
        let mut seen = BTreeSet::new();
        let ranked: Vec<&str> = v.candidates.iter().map(String::as_str).filter(|c| seen.insert(*c)).collect();
        match per_vip.get(&v.vip) {
            Some((iface, prev)) if *iface != v.interface.as_str() || *prev != ranked => {
                return Err(PlanError::ConflictingVip { vip: v.vip });
            }
            Some(_) => {}
            None => {
                per_vip.insert(v.vip, (v.interface.as_str(), ranked));
            }
        }
    }

    let mut members: BTreeMap<GroupId, Vec<(IpAddr, Vec<&str>)>> = BTreeMap::new();
    for (vip, (iface, ranked)) in per_vip {
        let Some(first_pref) = ranked.first() else { continue };
        let mut sorted: Vec<String> = ranked.iter().map(|s| s.to_string()).collect();
        sorted.sort_unstable();
        let id = GroupId {
            interface: iface.to_string(),
            family: IpFamily::of(&vip),
            first: first_pref.to_string(),
            candidates: sorted,
            part: 0,
        };
        // per_vip iterates in address order, so every list is sorted.
        members.entry(id).or_default().push((vip, ranked));
    }

    let mut groups: Vec<Group> = Vec::with_capacity(members.len());
    for (id, list) in members {
        let order = group_order(&list);
        let priorities = priorities(&order, config.top_priority, config.priority_step);
        let max = config.max_vips_per_group(id.family);
        for (k, chunk) in list.chunks(max).enumerate() {
            // More parts than u32 holds cannot exist in memory; saturating keeps the arithmetic total.
            let part = u32::try_from(k).unwrap_or(u32::MAX);
            groups.push(Group {
                id: GroupId { part, ..id.clone() },
                vrid: 0,
                vips: chunk.iter().map(|(vip, _)| *vip).collect(),
                priorities: priorities.clone(),
            });
        }
    }
    // Parts of one group are adjacent and in part order already; keep the sort explicit for `Plan::group`.
    groups.sort_by(|a, b| a.id.cmp(&b.id));

    assign_vrids(&mut groups, config, previous)?;
    Ok(Plan { groups })
}

/// First preference first, the rest by Borda count over the group's VIPs.
fn group_order(list: &[(IpAddr, Vec<&str>)]) -> Vec<String> {
    let Some((_, head)) = list.first() else { return Vec::new() };
    let Some(first) = head.first() else { return Vec::new() };
    let mut score: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, ranked) in list {
        for (pos, node) in ranked.iter().enumerate() {
            *score.entry(node).or_default() += pos;
        }
    }
    let mut rest: Vec<(usize, &str)> = score.into_iter().filter(|(n, _)| n != first).map(|(n, s)| (s, n)).collect();
    rest.sort_unstable();
    std::iter::once(first.to_string()).chain(rest.into_iter().map(|(_, n)| n.to_string())).collect()
}

fn priorities(order: &[String], top: u8, step: u8) -> Vec<(String, u8)> {
    let n = order.len().min(usize::from(top));
    let step = if n <= 1 { step } else { step.min(((usize::from(top) - 1) / (n - 1)) as u8).max(1) };
    order
        .iter()
        .take(n)
        .enumerate()
        .map(|(i, node)| {
            // i < top and i * step <= top - 1 by construction; saturate anyway rather than trust arithmetic.
            let drop = (i as u64).saturating_mul(u64::from(step));
            let p = u64::from(top).saturating_sub(drop).max(1) as u8;
            (node.clone(), p)
        })
        .collect()
}

/// A VRID space: (interface when per-interface, family).
type Domain = (Option<String>, IpFamily);

fn assign_vrids(groups: &mut [Group], config: &PlanConfig, previous: Option<&Plan>) -> Result<(), PlanError> {
    let (first, last) = (*config.vrids.start(), *config.vrids.end());
    let size = u64::from(last - first) + 1;

    let mut domains: BTreeMap<Domain, Vec<(u64, usize)>> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        let iface = match config.scope {
            VridScope::Global => None,
            VridScope::PerInterface => Some(g.id.interface.clone()),
        };
        domains.entry((iface, g.id.family)).or_default().push((g.id.stable_hash(), i));
    }

    for ((interface, family), mut members) in domains {
        if members.len() as u64 > size {
            return Err(PlanError::RangeExhausted { family, interface, groups: members.len(), first, last });
        }
        // Deterministic order: hash, then identity (groups is sorted by identity, so the index breaks ties).
        members.sort_unstable();
        let mut used = [false; 256];
        let mut pending = Vec::new();
        for &(hash, i) in &members {
            let kept = previous
                .and_then(|p| p.group(&groups[i].id))
                .map(|g| g.vrid)
                .filter(|v| config.vrids.contains(v) && !used[usize::from(*v)]);
            match kept {
                Some(v) => {
                    used[usize::from(v)] = true;
                    groups[i].vrid = v;
                }
                None => pending.push((hash, i)),
            }
        }
        for (hash, i) in pending {
            let home = (hash % size + u64::from(config.offset)) % size;
            // There is a free slot: members.len() <= size.
            for probe in 0..size {
                let v = (u64::from(first) + (home + probe) % size) as u8;
                if !used[usize::from(v)] {
                    used[usize::from(v)] = true;
                    groups[i].vrid = v;
                    break;
                }
            }
        }
    }
    Ok(())
}
