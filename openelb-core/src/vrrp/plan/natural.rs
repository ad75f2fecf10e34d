//! From the planner's input to natural groups (same interface, family, candidate set and first preference),
//! with node names interned once so that everything after this works on small integers. Node ids are assigned
//! in name order, so sorting ids sorts names and no decision depends on the order the input listed things in.

use std::collections::HashMap;
use std::net::IpAddr;

use super::issue::PlanIssue;
use super::{GroupId, VipInput};
use crate::model::IpFamily;

/// One VIP, deduplicated, its candidates as node ids in preference order.
#[derive(Debug, Clone)]
pub(super) struct Entry<'a> {
    pub vip: IpAddr,
    pub iface: &'a str,
    pub ranked: Vec<u32>,
}

/// VIPs sharing interface, family, candidate set and first preference.
#[derive(Debug, Clone)]
pub(super) struct Natural<'a> {
    pub iface: &'a str,
    pub family: IpFamily,
    /// Candidate ids, sorted.
    pub set: Vec<u32>,
    /// Preference order: the first, then Borda count.
    pub order: Vec<u32>,
    /// Indices into the entries, in address order.
    pub vips: Vec<usize>,
    pub id: GroupId,
    pub hash: u64,
}

/// The VIPs, one entry per address in address order, and the node names by id. A VIP listed more than once
/// with different interfaces or candidates keeps the entry with candidates that sorts first (interface, then
/// candidate names) and is reported.
pub(super) fn entries<'a>(vips: &'a [VipInput], issues: &mut Vec<PlanIssue>) -> (Vec<&'a str>, Vec<Entry<'a>>) {
    let mut index: HashMap<&'a str, u32> = HashMap::new();
    let mut names: Vec<&'a str> = Vec::new();
    // Per provisional id: 1 + the last input index it was seen in, to drop duplicates in one list.
    let mut seen: Vec<usize> = Vec::new();
    let mut raw: Vec<Entry<'a>> = Vec::with_capacity(vips.len());
    for (k, v) in vips.iter().enumerate() {
        let mut ranked = Vec::with_capacity(v.candidates.len());
        for c in &v.candidates {
            let id = *index.entry(c.as_str()).or_insert_with(|| {
                names.push(c.as_str());
                seen.push(0);
                (names.len() - 1) as u32
            });
            if let Some(s) = seen.get_mut(id as usize)
                && *s != k + 1
            {
                *s = k + 1;
                ranked.push(id);
            }
        }
        raw.push(Entry { vip: v.vip, iface: v.interface.as_str(), ranked });
    }

    let mut by_name: Vec<u32> = (0..names.len() as u32).collect();
    by_name.sort_unstable_by_key(|i| names.get(*i as usize).copied().unwrap_or_default());
    let mut remap = vec![0u32; names.len()];
    for (new, old) in by_name.iter().enumerate() {
        if let Some(r) = remap.get_mut(*old as usize) {
            *r = new as u32;
        }
    }
    let sorted: Vec<&'a str> = by_name.iter().filter_map(|i| names.get(*i as usize).copied()).collect();
    for e in &mut raw {
        for id in &mut e.ranked {
            *id = remap.get(*id as usize).copied().unwrap_or(*id);
        }
    }

    raw.sort_by(|a, b| {
        (a.vip, a.ranked.is_empty(), a.iface, &a.ranked).cmp(&(b.vip, b.ranked.is_empty(), b.iface, &b.ranked))
    });
    let mut out: Vec<Entry<'a>> = Vec::with_capacity(raw.len());
    let mut reported: Option<IpAddr> = None;
    for e in raw {
        match out.last() {
            Some(prev) if prev.vip == e.vip => {
                if (prev.iface != e.iface || prev.ranked != e.ranked) && reported != Some(e.vip) {
                    reported = Some(e.vip);
                    issues.push(PlanIssue::ConflictingVip {
                        vip: e.vip,
                        interface: prev.iface.to_string(),
                        candidates: name_list(&sorted, &prev.ranked),
                    });
                }
            }
            _ => out.push(e),
        }
    }
    (sorted, out)
}

fn name_list(names: &[&str], ids: &[u32]) -> Vec<String> {
    ids.iter().filter_map(|i| names.get(*i as usize)).map(|s| s.to_string()).collect()
}

/// The natural groups of `entries`, sorted by identity. VIPs without candidates are withdrawn: in no group.
pub(super) fn naturals<'a>(names: &[&str], entries: &[Entry<'a>], scratch: &mut Scratch) -> Vec<Natural<'a>> {
    let mut index: HashMap<(&'a str, IpFamily, u32, Vec<u32>), usize> = HashMap::new();
    let mut out: Vec<Natural<'a>> = Vec::new();
    for (k, e) in entries.iter().enumerate() {
        let Some(&first) = e.ranked.first() else { continue };
        let mut set = e.ranked.clone();
        set.sort_unstable();
        let family = IpFamily::of(&e.vip);
        let key = (e.iface, family, first, set);
        if let Some(n) = index.get(&key).and_then(|i| out.get_mut(*i)) {
            n.vips.push(k);
            continue;
        }
        let set = key.3.clone();
        let id = GroupId {
            interface: e.iface.to_string(),
            family,
            first: names.get(first as usize).map(|s| s.to_string()).unwrap_or_default(),
            candidates: name_list(names, &set),
            part: 0,
        };
        index.insert(key, out.len());
        out.push(Natural { iface: e.iface, family, set, order: Vec::new(), vips: vec![k], hash: id.stable_hash(), id });
    }
    for n in &mut out {
        let first = n.vips.first().and_then(|k| entries.get(*k)).and_then(|e| e.ranked.first().copied());
        let prefix: Vec<u32> = first.into_iter().collect();
        n.order = scratch.order(&prefix, &n.set, n.vips.iter().filter_map(|k| entries.get(*k)));
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// Reusable per-node buffers for Borda counts.
#[derive(Debug, Clone)]
pub(super) struct Scratch {
    score: Vec<u64>,
    inside: Vec<bool>,
}

impl Scratch {
    pub(super) fn new(nodes: usize) -> Self {
        Scratch { score: vec![0; nodes], inside: vec![false; nodes] }
    }

    /// `prefix`, then the rest of `common` by Borda count over the VIPs' preference lists (sum of positions,
    /// lowest first; ties by name, which id order is). Only nodes of `common` take part.
    pub(super) fn order<'e, 'a: 'e>(
        &mut self,
        prefix: &[u32],
        common: &[u32],
        vips: impl Iterator<Item = &'e Entry<'a>>,
    ) -> Vec<u32> {
        for n in common {
            if let (Some(i), Some(s)) = (self.inside.get_mut(*n as usize), self.score.get_mut(*n as usize)) {
                *i = true;
                *s = 0;
            }
        }
        for e in vips {
            for (pos, n) in e.ranked.iter().enumerate() {
                if self.inside.get(*n as usize).copied().unwrap_or(false)
                    && let Some(s) = self.score.get_mut(*n as usize)
                {
                    *s += pos as u64;
                }
            }
        }
        let mut rest: Vec<(u64, u32)> = common
            .iter()
            .filter(|n| !prefix.contains(n))
            .map(|n| (self.score.get(*n as usize).copied().unwrap_or(0), *n))
            .collect();
        rest.sort_unstable();
        for n in common {
            if let Some(i) = self.inside.get_mut(*n as usize) {
                *i = false;
            }
        }
        // The prefix is always within `common` by construction; the filter keeps that true whatever happens.
        let head = prefix.iter().copied().filter(|p| common.binary_search(p).is_ok());
        head.chain(rest.into_iter().map(|(_, n)| n)).collect()
    }
}
