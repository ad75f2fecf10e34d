//! From VIPs and their ranked candidate nodes to VRRP instances: which VIPs form a group, the group's VRID and
//! every participating node's priority. A pure function of its inputs, so every speaker (and the controller that
//! publishes VRIDs) derives the same plan from the same objects, whatever order it lists them in. It never fails:
//! what it cannot do exactly is done by a documented approximation and listed in [`Plan::issues`].
//!
//! Grouping and priorities: docs/election.md#vrrp-groups. Fitting the VRID range (`plan/merge.rs`) and
//! assigning VRIDs (`plan/vrid.rs`): docs/vrrp.md.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use xxhash_rust::xxh3::xxh3_64;

use crate::model::IpFamily;

mod issue;
mod merge;
mod natural;
mod vrid;

pub use issue::{MergeLevel, PlanConfigError, PlanIssue, PublishedConflict, UnplacedReason};
pub use merge::PARTNER_SCAN;

pub const DEFAULT_TOP_PRIORITY: u8 = 250;
pub const DEFAULT_PRIORITY_STEP: u8 = 10;
/// The VRIDs groups use by default: 100-255 (156 VRIDs). VRRP on the same LAN is usually someone else's, set up
/// by hand with small numbers: keepalived's sample configuration and most Kubernetes HA guides for the
/// apiserver VIP use VRID 51 (kubeadm's HA guide too), guides and vendor examples 1-10 and 50-60, and routers
/// (a VRRP gateway pair) commonly use 1 or a small VLAN number. Hashing over the whole 1-255 made a collision
/// with the cluster's own apiserver keepalived a matter of time. Generated setups (e.g. OpenShift's on-prem
/// keepalived, which hashes the cluster name) can land anywhere; foreign-router detection and
/// [`PlanContext::avoid`] handle those.
pub const DEFAULT_VRIDS: RangeInclusive<u8> = 100..=255;

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
    /// Default [`DEFAULT_VRIDS`].
    pub vrids: RangeInclusive<u8>,
    /// Rotates every home slot; give clusters that share a segment different offsets.
    pub offset: u8,
    pub top_priority: u8,
    pub priority_step: u8,
    pub scope: VridScope,
}

impl PlanConfig {
    /// For settings read at startup (flags): the first value out of bounds. [`plan`] never refuses one; it uses
    /// the nearest valid value and reports a [`PlanIssue::Config`].
    pub fn validate(&self) -> Result<(), PlanConfigError> {
        Effective::new(self).1.into_iter().next().map_or(Ok(()), Err)
    }
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            vrids: DEFAULT_VRIDS,
            offset: 0,
            top_priority: DEFAULT_TOP_PRIORITY,
            priority_step: DEFAULT_PRIORITY_STEP,
            scope: VridScope::Global,
        }
    }
}

/// The configuration as used: every value within bounds.
#[derive(Debug, Clone, Copy)]
struct Effective {
    /// `None`: no usable VRID at all.
    range: Option<(u8, u8)>,
    top: u8,
    step: u8,
}

impl Effective {
    fn new(c: &PlanConfig) -> (Effective, Vec<PlanConfigError>) {
        let mut problems = Vec::new();
        let (start, end) = (*c.vrids.start(), *c.vrids.end());
        let (mut first, mut last) = (start, end);
        if first > last {
            problems.push(PlanConfigError::InvalidRange {
                first: start,
                last: end,
                what: "range end is before its start",
            });
            std::mem::swap(&mut first, &mut last);
        }
        if first == 0 {
            problems.push(PlanConfigError::InvalidRange { first: start, last: end, what: "VRID 0 is reserved" });
            first = 1;
        }
        let range = (first <= last).then_some((first, last));
        let (top, step) = (c.top_priority, c.priority_step);
        if top == 0 || top == 255 || step == 0 {
            problems.push(PlanConfigError::InvalidPriority { top, step });
        }
        let eff = Effective { range, top: top.clamp(1, 254), step: step.max(1) };
        (eff, problems)
    }
}

/// A VRID seen in use by a foreign router on a plan interface (the agent's `foreign_vrids`, or the set the
/// controller publishes). In the [`VridScope::Global`] scope it blocks the VRID on every interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ForeignVrid {
    pub interface: String,
    pub family: IpFamily,
    pub vrid: u8,
}

/// VRIDs by group identity, as the controller publishes them so that every speaker agrees whatever plans it
/// made before ([`Plan::vrid_assignment`] produces one).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VridAssignment {
    pub vrids: BTreeMap<GroupId, u8>,
}

impl VridAssignment {
    pub fn get(&self, id: &GroupId) -> Option<u8> {
        self.vrids.get(id).copied()
    }
}

/// What a plan starts from besides the VIPs and the settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanContext<'a> {
    /// The plan running now: groups keep their VRIDs.
    pub previous: Option<&'a Plan>,
    /// VRIDs in use by foreign routers: never given out.
    pub avoid: &'a [ForeignVrid],
    /// The published assignment: followed for the groups it covers (before `previous`).
    pub published: Option<&'a VridAssignment>,
}

/// What makes a group the same group over time; a running instance keeps its VRID as long as this is unchanged.
/// A merged group has the identity of its least member group (`plan/merge.rs`): the fields identify, they
/// do not describe (its nodes and order are in [`Group::priorities`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId {
    pub interface: String,
    pub family: IpFamily,
    pub first: String,
    /// Sorted.
    pub candidates: Vec<String>,
    /// Always 0 now: groups are no longer cut into parts (an advert carries the first addresses of a large
    /// group, `state.rs`). Kept because speakers before that published and planned parts 1, 2, … of large
    /// groups under their own VRIDs (docs/election.md#large-groups says what a rolling upgrade sees).
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
    /// Participating nodes in preference order with their priorities (strictly decreasing); all of them are
    /// candidates of every VIP of the group.
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
    /// What had to be approximated, in the order found.
    pub issues: Vec<PlanIssue>,
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

    /// The VRID of every group, for the controller to publish.
    pub fn vrid_assignment(&self) -> VridAssignment {
        VridAssignment { vrids: self.groups.iter().map(|g| (g.id.clone(), g.vrid)).collect() }
    }
}

/// A VRID space: (interface when per-interface, family).
type Domain<'a> = (Option<&'a str>, IpFamily);

/// Computes the plan (docs/election.md#vrrp-groups, docs/vrrp.md). Never fails; see [`Plan::issues`].
pub fn plan(vips: &[VipInput], config: &PlanConfig, context: &PlanContext<'_>) -> Plan {
    let (eff, problems) = Effective::new(config);
    let mut issues: Vec<PlanIssue> = problems.into_iter().map(PlanIssue::Config).collect();
    let (names, entries) = natural::entries(vips, &mut issues);
    let mut scratch = natural::Scratch::new(names.len());
    let naturals = natural::naturals(&names, &entries, &mut scratch);

    let mut domains: BTreeMap<Domain<'_>, Vec<usize>> = BTreeMap::new();
    for (i, n) in naturals.iter().enumerate() {
        let iface = match config.scope {
            VridScope::Global => None,
            VridScope::PerInterface => Some(n.iface),
        };
        domains.entry((iface, n.family)).or_default().push(i);
    }

    let mut groups: Vec<Group> = Vec::new();
    for ((iface, family), members) in domains {
        let mut avoid: vrid::Mask = [false; 256];
        for f in context.avoid.iter().filter(|f| f.family == family && iface.is_none_or(|i| i == f.interface)) {
            avoid[usize::from(f.vrid)] = true;
        }
        let cap = |avoid: &vrid::Mask| {
            eff.range.map_or(0, |(first, last)| (first..=last).filter(|v| !avoid[usize::from(*v)]).count())
        };
        let mut fitted = merge::fit(&naturals, &members, cap(&avoid));
        // Foreign routers never leave our VIPs unannounced: their VRIDs are used all the same, and that is said.
        if !fitted.unplaced.is_empty()
            && let Some((first, last)) = eff.range
        {
            let waived: Vec<u8> = (first..=last).rev().filter(|v| avoid[usize::from(*v)]).collect();
            if !waived.is_empty() {
                waived.iter().for_each(|v| avoid[usize::from(*v)] = false);
                fitted = merge::fit(&naturals, &members, cap(&avoid));
                let interface = iface.unwrap_or_default().to_string();
                issues.push(PlanIssue::AvoidanceWaived { interface, family, vrids: waived });
            }
        }

        let mut unplaced: BTreeMap<&str, Vec<IpAddr>> = BTreeMap::new();
        for u in &fitted.unplaced {
            let iface = naturals.get(u.anchor).map_or("", |n| n.iface);
            unplaced.entry(iface).or_default().extend(unit_vips(&naturals, &entries, u).iter().map(|e| e.vip));
        }
        let start = groups.len();
        for u in &fitted.placed {
            build(&naturals, &entries, &names, u, &eff, &mut scratch, &mut groups, &mut issues);
        }
        for (iface, mut vips) in unplaced {
            vips.sort_unstable();
            let reason = UnplacedReason::VridsExhausted;
            issues.push(PlanIssue::Unplaced { interface: iface.to_string(), family, vips, reason });
        }
        if let (Some(range), Some(slice)) = (eff.range, groups.get_mut(start..)) {
            vrid::assign(slice, range, config.offset, &avoid, context.previous, context.published, &mut issues);
        }
    }
    groups.sort_by(|a, b| a.id.cmp(&b.id));
    Plan { groups, issues }
}

/// The entries of a unit's VIPs, in address order.
fn unit_vips<'e, 'a>(
    naturals: &[natural::Natural<'a>],
    entries: &'e [natural::Entry<'a>],
    unit: &merge::Unit,
) -> Vec<&'e natural::Entry<'a>> {
    let mut idx: Vec<usize> =
        unit.members.iter().filter_map(|m| naturals.get(*m)).flat_map(|n| n.vips.iter().copied()).collect();
    // Entries are in address order, so their indices are too.
    idx.sort_unstable();
    idx.into_iter().filter_map(|k| entries.get(k)).collect()
}

/// Turns one placed unit into its group, VRID still 0, and reports a merge.
#[allow(clippy::too_many_arguments)]
fn build(
    naturals: &[natural::Natural<'_>],
    entries: &[natural::Entry<'_>],
    names: &[&str],
    unit: &merge::Unit,
    eff: &Effective,
    scratch: &mut natural::Scratch,
    groups: &mut Vec<Group>,
    issues: &mut Vec<PlanIssue>,
) {
    let Some(anchor) = naturals.get(unit.anchor) else { return };
    let members = unit_vips(naturals, entries, unit);
    let order = match unit.level {
        None => anchor.order.clone(),
        Some(_) => scratch.order(&unit.prefix, &unit.common, members.iter().copied()),
    };
    let order: Vec<String> = order.iter().filter_map(|n| names.get(*n as usize)).map(|s| s.to_string()).collect();
    let priorities = priorities(&order, eff.top, eff.step);
    if let Some(level) = unit.level {
        let holder = order.first().map(String::as_str);
        let moved = members
            .iter()
            .filter(|e| e.ranked.first().and_then(|n| names.get(*n as usize)).copied() != holder)
            .map(|e| e.vip)
            .collect();
        let vips = members.iter().map(|e| e.vip).collect();
        issues.push(PlanIssue::Merged { group: anchor.id.clone(), level, vips, moved });
    }
    groups.push(Group { id: anchor.id.clone(), vrid: 0, vips: members.iter().map(|e| e.vip).collect(), priorities });
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
