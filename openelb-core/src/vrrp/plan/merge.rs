//! Fitting a VRID space (docs/vrrp.md#more-groups-than-vrids). A space has the range's VRIDs minus those in use
//! by foreign routers (`PlanContext::avoid`). When its groups need more, groups are merged in
//! levels, each level only as far as needed, and every merge is listed as a `PlanIssue::Merged`:
//! 1. whole classes of groups on one interface that share their first two preferences (the holder and first
//!    backup of every VIP stay the same), the classes saving the most VRIDs first;
//! 2. then whole classes sharing their first preference (every VIP keeps its holder);
//! 3. then pairs of groups on one interface whose candidate sets intersect, the smallest group with the
//!    smallest such partner among the next [`PARTNER_SCAN`] (some VIPs then move to another eligible node:
//!    `moved` in the issue).
//!
//! A merged group's nodes are the intersection of its VIPs' candidate sets, so a node that is not among a VIP's
//! candidates can never become master for it; its order is the shared preferences of its level, then the Borda
//! count over all its VIPs; its identity is that of its least member group (so the member that was alone before
//! keeps its VRID and instances). Groups whose candidate sets do not intersect are never merged; what still does
//! not fit is not announced and listed as `PlanIssue::Unplaced`, groups kept in hash order while they fit.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use super::issue::MergeLevel;
use super::natural::Natural;

/// How many of the next-smallest groups the last merge level looks at for a partner with shared candidates.
/// Bounds the work per merge (Local Services with disjoint node sets would otherwise make it quadratic).
pub const PARTNER_SCAN: usize = 32;

/// Natural groups planned as one VRRP group.
#[derive(Debug, Clone)]
pub(super) struct Unit {
    /// Indices into the naturals, anchor included.
    pub members: Vec<usize>,
    /// The member with the least identity: the unit's identity.
    pub anchor: usize,
    pub vips: usize,
    /// Node ids eligible for every VIP of the unit, sorted.
    pub common: Vec<u32>,
    /// Nodes whose order is fixed at the head (the shared first, or first two, preferences).
    pub prefix: Vec<u32>,
    /// `None` for a natural group on its own.
    pub level: Option<MergeLevel>,
}

impl Unit {
    fn natural(i: usize, n: &Natural<'_>) -> Unit {
        Unit { members: vec![i], anchor: i, vips: n.vips.len(), common: n.set.clone(), prefix: Vec::new(), level: None }
    }

    fn first(&self, naturals: &[Natural<'_>]) -> Option<u32> {
        self.prefix.first().copied().or_else(|| naturals.get(self.anchor).and_then(|n| n.order.first().copied()))
    }

    /// Total order used for every deterministic choice: smaller first, then the anchor's hash and identity.
    fn rank(&self, naturals: &[Natural<'_>]) -> (usize, u64, usize) {
        (self.vips, naturals.get(self.anchor).map_or(0, |n| n.hash), self.anchor)
    }
}

/// The outcome for one domain.
#[derive(Debug, Default)]
pub(super) struct Fitted {
    pub placed: Vec<Unit>,
    pub unplaced: Vec<Unit>,
}

fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
        match x.cmp(y) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(*x);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn intersects(a: &[u32], b: &[u32]) -> bool {
    let (mut i, mut j) = (0, 0);
    while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
        match x.cmp(y) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

fn merge(units: Vec<Unit>, prefix: Vec<u32>, level: MergeLevel) -> Option<Unit> {
    let mut it = units.into_iter();
    let mut acc = it.next()?;
    for u in it {
        acc.members.extend(u.members);
        acc.anchor = acc.anchor.min(u.anchor);
        acc.vips += u.vips;
        acc.common = intersect(&acc.common, &u.common);
    }
    acc.members.sort_unstable();
    acc.prefix = prefix;
    acc.level = Some(level);
    Some(acc)
}

/// Places the natural groups `domain` (indices into `naturals`, one VRID space) into at most `cap` VRIDs, one
/// per group whatever its size (an advert carries a bounded part of a large group's addresses: `state.rs`).
pub(super) fn fit(naturals: &[Natural<'_>], domain: &[usize], cap: usize) -> Fitted {
    let mut units: Vec<Unit> = domain.iter().filter_map(|&i| naturals.get(i).map(|n| Unit::natural(i, n))).collect();
    if units.len() <= cap {
        return Fitted { placed: units, unplaced: Vec::new() };
    }
    // Levels 1 and 2: whole classes of groups sharing their first two, then their first, preferences.
    for level in [MergeLevel::FirstTwo, MergeLevel::FirstOnly] {
        units = merge_classes(naturals, units, level, cap);
        if units.len() <= cap {
            return Fitted { placed: units, unplaced: Vec::new() };
        }
    }
    units = merge_pairs(naturals, units, cap);
    if units.len() <= cap {
        return Fitted { placed: units, unplaced: Vec::new() };
    }
    // Still too many: keep groups in hash order while they fit; the rest is not announced.
    units.sort_by_key(|u| {
        let r = u.rank(naturals);
        (r.1, r.2)
    });
    let mut out = Fitted::default();
    for u in units {
        if out.placed.len() < cap {
            out.placed.push(u);
        } else {
            out.unplaced.push(u);
        }
    }
    out
}

/// Merges whole classes (same interface and same first two / first preferences), the classes that save the
/// most VRIDs first, until the units fit or no class is left.
fn merge_classes(naturals: &[Natural<'_>], units: Vec<Unit>, level: MergeLevel, cap: usize) -> Vec<Unit> {
    type Class<'s> = (&'s str, Option<u32>, Option<u32>);
    let key = |u: &Unit| -> Class<'_> {
        let n = naturals.get(u.anchor);
        let iface = n.map_or("", |n| n.iface);
        match level {
            MergeLevel::FirstTwo => (iface, u.first(naturals), n.and_then(|n| n.order.get(1).copied())),
            _ => (iface, u.first(naturals), None),
        }
    };
    let mut classes: HashMap<Class<'_>, Vec<Unit>> = HashMap::new();
    for u in units {
        classes.entry(key(&u)).or_default().push(u);
    }
    let mut ranked: Vec<(Reverse<usize>, (u64, usize), Class<'_>)> = classes
        .iter()
        .map(|(k, members)| {
            let least = members.iter().map(|u| (u.rank(naturals).1, u.anchor)).min().unwrap_or((0, 0));
            (Reverse(members.len().saturating_sub(1)), least, *k)
        })
        .collect();
    ranked.sort_unstable();
    let mut total: usize = classes.values().map(Vec::len).sum();
    let mut out = Vec::new();
    for (Reverse(saving), _, k) in ranked {
        let Some(members) = classes.remove(&k) else { continue };
        if total <= cap || saving == 0 || members.len() < 2 {
            out.extend(members);
            continue;
        }
        let prefix: Vec<u32> = match k {
            (_, Some(first), Some(second)) if level == MergeLevel::FirstTwo => vec![first, second],
            (_, Some(first), _) => vec![first],
            _ => Vec::new(),
        };
        if let Some(u) = merge(members, prefix, level) {
            total -= saving;
            out.push(u);
        }
    }
    out
}

/// Level 3: repeatedly merges the smallest group with the smallest of the next [`PARTNER_SCAN`] groups on the
/// same interface whose candidates it shares, until the units fit.
/// Smallest first keeps merged groups balanced across nodes, like a Huffman tree.
fn merge_pairs(naturals: &[Natural<'_>], units: Vec<Unit>, cap: usize) -> Vec<Unit> {
    let mut total = units.len();
    let mut slots: Vec<Option<Unit>> = units.into_iter().map(Some).collect();
    let mut pool: BTreeSet<((usize, u64, usize), usize)> =
        slots.iter().enumerate().filter_map(|(i, u)| u.as_ref().map(|u| (u.rank(naturals), i))).collect();
    let iface = |u: &Unit| naturals.get(u.anchor).map_or("", |n| n.iface);
    while total > cap {
        let Some((_, i)) = pool.pop_first() else { break };
        let Some(u) = slots.get(i).and_then(Option::as_ref) else { continue };
        let partner = pool.iter().take(PARTNER_SCAN).find(|(_, j)| {
            slots
                .get(*j)
                .and_then(Option::as_ref)
                .is_some_and(|v| iface(v) == iface(u) && intersects(&u.common, &v.common))
        });
        let Some(&entry) = partner else { continue };
        pool.remove(&entry);
        let (a, b) = (slots.get_mut(i).and_then(Option::take), slots.get_mut(entry.1).and_then(Option::take));
        let (Some(a), Some(b)) = (a, b) else { continue };
        if let Some(m) = merge(vec![a, b], Vec::new(), MergeLevel::SharedCandidates) {
            total -= 1;
            pool.insert((m.rank(naturals), slots.len()));
            slots.push(Some(m));
        }
    }
    slots.into_iter().flatten().collect()
}
