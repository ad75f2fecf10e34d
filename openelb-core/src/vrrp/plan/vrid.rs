//! VRIDs for the groups of one VRID space (docs/vrrp.md#vrids-assigned-once-published-followed). A space is one
//! family, and one interface under `VridScope::PerInterface`; the default `VridScope::Global` shares one space
//! across interfaces because two interface specs can resolve to the same NIC on some node. Each group's identity
//! (interface, family, first preference, sorted candidates, part) has a stable hash (XXH3-64, pinned by a test),
//! and groups are processed in (hash, identity) order:
//! 1. a group in the published assignment gets that VRID if it is in range, not used by a foreign router and
//!    not published for an earlier group too (otherwise a `PlanIssue::PublishedIgnored`);
//! 2. a group present in the previous plan keeps its VRID if that is still in range, free and not avoided;
//! 3. every other group starts at `first + (hash + offset) mod size` and probes upward (wrapping) to a free VRID
//!    not used by a foreign router.
//!
//! Without a previous plan, a group's VRID depends only on the groups whose home slot or probe chain overlaps its
//! own, except when a group that pushed it off its home slot disappears, or a new group sorting before it takes
//! a slot on its chain. That residual case, and speakers that restarted at different moments, are what the
//! published assignment is for. `offset` separates clusters sharing a segment.

use super::issue::{PlanIssue, PublishedConflict};
use super::{Group, Plan, VridAssignment};

/// The VRIDs of one space that must not be used, indexed by VRID.
pub(super) type Mask = [bool; 256];

/// Gives every group of `groups` (one VRID space, no more groups than free VRIDs in `first..=last`) a VRID.
pub(super) fn assign(
    groups: &mut [Group],
    (first, last): (u8, u8),
    offset: u8,
    avoid: &Mask,
    previous: Option<&Plan>,
    published: Option<&VridAssignment>,
    issues: &mut Vec<PlanIssue>,
) {
    let size = u64::from(last.saturating_sub(first)) + 1;
    let in_range = |v: u8| v != 0 && (first..=last).contains(&v);
    let free = |v: u8, used: &Mask| in_range(v) && !avoid[usize::from(v)] && !used[usize::from(v)];
    let mut used: Mask = [false; 256];
    let mut order: Vec<(u64, usize)> = groups.iter().enumerate().map(|(i, g)| (g.id.stable_hash(), i)).collect();
    order.sort_unstable();

    let mut pending = Vec::with_capacity(order.len());
    for (hash, i) in order {
        let Some(g) = groups.get_mut(i) else { continue };
        if let Some(v) = published.and_then(|p| p.get(&g.id)) {
            if free(v, &used) {
                used[usize::from(v)] = true;
                g.vrid = v;
                continue;
            }
            let reason = if !in_range(v) {
                PublishedConflict::OutOfRange
            } else if avoid[usize::from(v)] {
                PublishedConflict::Avoided
            } else {
                PublishedConflict::Taken
            };
            issues.push(PlanIssue::PublishedIgnored { group: g.id.clone(), vrid: v, reason });
        }
        pending.push((hash, i));
    }

    let mut probing = Vec::with_capacity(pending.len());
    for (hash, i) in pending {
        let Some(g) = groups.get_mut(i) else { continue };
        match previous.and_then(|p| p.group(&g.id)).map(|p| p.vrid).filter(|v| free(*v, &used)) {
            Some(v) => {
                used[usize::from(v)] = true;
                g.vrid = v;
            }
            None => probing.push((hash, i)),
        }
    }

    for (hash, i) in probing {
        let Some(g) = groups.get_mut(i) else { continue };
        let home = (hash % size + u64::from(offset)) % size;
        // The caller placed no more groups than free VRIDs, so the probe finds one.
        for probe in 0..size {
            let v = (u64::from(first) + (home + probe) % size) as u8;
            if free(v, &used) {
                used[usize::from(v)] = true;
                g.vrid = v;
                break;
            }
        }
    }
}
