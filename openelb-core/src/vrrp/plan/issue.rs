//! What a plan had to approximate, typed, so the speaker can count it and raise an Event and `validate` can
//! warn: a plan never fails, it says what it could not do exactly.

use std::fmt;
use std::net::IpAddr;

use thiserror::Error;

use super::GroupId;
use crate::model::IpFamily;

/// A [`super::PlanConfig`] value outside its bounds; the planner uses the nearest valid value instead.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanConfigError {
    #[error("VRID range {first}-{last}: {what}")]
    InvalidRange { first: u8, last: u8, what: &'static str },
    #[error("priorities top {top} step {step}: top must be 1-254 and step at least 1")]
    InvalidPriority { top: u8, step: u8 },
}

/// How far groups were merged to fit a VRID range (see the planner's notes on capacity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MergeLevel {
    /// Groups sharing their first two preferences: the holder and the first backup are unchanged.
    FirstTwo,
    /// Groups sharing their first preference: the holder is unchanged.
    FirstOnly,
    /// Groups whose candidate sets intersect: some VIPs move to another eligible node.
    SharedCandidates,
}

impl MergeLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            MergeLevel::FirstTwo => "first_two",
            MergeLevel::FirstOnly => "first_only",
            MergeLevel::SharedCandidates => "shared_candidates",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UnplacedReason {
    /// Even merged as far as eligibility allows, the groups need more VRIDs than the range has free (range
    /// too small, VRIDs taken by foreign routers, or more VIPs than the free VRIDs' adverts can carry).
    VridsExhausted,
}

impl UnplacedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            UnplacedReason::VridsExhausted => "vrids_exhausted",
        }
    }
}

/// Why a published VRID was not used for its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PublishedConflict {
    OutOfRange,
    /// A foreign router uses it.
    Avoided,
    /// Published for another group of the same VRID space too, which got it.
    Taken,
}

impl PublishedConflict {
    pub fn as_str(self) -> &'static str {
        match self {
            PublishedConflict::OutOfRange => "out_of_range",
            PublishedConflict::Avoided => "avoided",
            PublishedConflict::Taken => "taken",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanIssue {
    /// A configuration value was out of bounds and replaced by the nearest valid one.
    Config(PlanConfigError),
    /// The VIP was listed more than once with different interfaces or candidates; the entry that sorts first
    /// (interface, then candidate names) was planned.
    ConflictingVip { vip: IpAddr, interface: String, candidates: Vec<String> },
    /// Groups were merged to fit the VRID range: every VIP of `vips` is announced by the group `group`, whose
    /// nodes are eligible for all of them but may be fewer than a VIP's own candidates;
    /// `moved` are held by a node other than their own first preference.
    Merged { group: GroupId, level: MergeLevel, vips: Vec<IpAddr>, moved: Vec<IpAddr> },
    /// Not announced at all.
    Unplaced { interface: String, family: IpFamily, vips: Vec<IpAddr>, reason: UnplacedReason },
    /// The published assignment gave `group` a VRID it could not have; it got one by the planner's own rule.
    PublishedIgnored { group: GroupId, vrid: u8, reason: PublishedConflict },
    /// Without foreign routers' VRIDs the range could not hold the family's groups even merged (`interface` is
    /// empty in the global VRID scope): `vrids` were used all the same rather than leave VIPs unannounced.
    AvoidanceWaived { interface: String, family: IpFamily, vrids: Vec<u8> },
}

impl PlanIssue {
    /// Every [`PlanIssue::kind`], for gauges that show each kind (zero when absent) so dashboards see it clear.
    pub const KINDS: [&'static str; 6] =
        ["config", "conflicting_vip", "merged", "unplaced", "published_ignored", "avoidance_waived"];

    /// Stable label (metrics, Event reasons).
    pub fn kind(&self) -> &'static str {
        match self {
            PlanIssue::Config(_) => "config",
            PlanIssue::ConflictingVip { .. } => "conflicting_vip",
            PlanIssue::Merged { .. } => "merged",
            PlanIssue::Unplaced { .. } => "unplaced",
            PlanIssue::PublishedIgnored { .. } => "published_ignored",
            PlanIssue::AvoidanceWaived { .. } => "avoidance_waived",
        }
    }

    /// The VIPs concerned (none for configuration and VRID issues).
    pub fn vips(&self) -> &[IpAddr] {
        match self {
            PlanIssue::ConflictingVip { vip, .. } => std::slice::from_ref(vip),
            PlanIssue::Merged { vips, .. } | PlanIssue::Unplaced { vips, .. } => vips,
            PlanIssue::Config(_) | PlanIssue::PublishedIgnored { .. } | PlanIssue::AvoidanceWaived { .. } => &[],
        }
    }
}

fn list(vips: &[IpAddr]) -> String {
    const SHOWN: usize = 8;
    let mut s: Vec<String> = vips.iter().take(SHOWN).map(ToString::to_string).collect();
    if vips.len() > SHOWN {
        s.push(format!("and {} more", vips.len() - SHOWN));
    }
    s.join(", ")
}

impl fmt::Display for PlanIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanIssue::Config(e) => write!(f, "VRRP plan settings: {e}; using the nearest valid value"),
            PlanIssue::ConflictingVip { vip, interface, candidates } => write!(
                f,
                "VIP {vip}: listed more than once with different interfaces or candidates; planned on {interface} \
                 with candidates [{}]",
                candidates.join(", ")
            ),
            PlanIssue::Merged { group, level, vips, moved } => {
                write!(
                    f,
                    "VRID range full: {} VIPs merged into VRRP group {group} ({}): [{}]",
                    vips.len(),
                    level.as_str(),
                    list(vips)
                )?;
                if !moved.is_empty() {
                    write!(f, "; {} held by a node other than their first preference: [{}]", moved.len(), list(moved))?;
                }
                Ok(())
            }
            PlanIssue::Unplaced { interface, family, vips, reason } => write!(
                f,
                "{} {family} VIPs on {interface} are not announced ({}): [{}]",
                vips.len(),
                reason.as_str(),
                list(vips)
            ),
            PlanIssue::PublishedIgnored { group, vrid, reason } => {
                write!(f, "published VRID {vrid} for group {group} not used ({})", reason.as_str())
            }
            PlanIssue::AvoidanceWaived { interface, family, vrids } => {
                let on = if interface.is_empty() { String::new() } else { format!(" on {interface}") };
                let list: Vec<String> = vrids.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "{family} VRIDs{on} [{}] of foreign routers used all the same: without them the range cannot hold \
                     our groups",
                    list.join(", ")
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once() {
        let group = GroupId {
            interface: "eth0".into(),
            family: IpFamily::V4,
            first: "n0".into(),
            candidates: vec!["n0".into()],
            part: 0,
        };
        let vip: IpAddr = [192, 0, 2, 1].into();
        let all = [
            PlanIssue::Config(PlanConfigError::InvalidPriority { top: 0, step: 0 }),
            PlanIssue::ConflictingVip { vip, interface: "eth0".into(), candidates: Vec::new() },
            PlanIssue::Merged { group: group.clone(), level: MergeLevel::FirstTwo, vips: vec![vip], moved: Vec::new() },
            PlanIssue::Unplaced {
                interface: "eth0".into(),
                family: IpFamily::V4,
                vips: vec![vip],
                reason: UnplacedReason::VridsExhausted,
            },
            PlanIssue::PublishedIgnored { group, vrid: 100, reason: PublishedConflict::Taken },
            PlanIssue::AvoidanceWaived { interface: String::new(), family: IpFamily::V4, vrids: vec![100] },
        ];
        let kinds: Vec<&str> = all.iter().map(PlanIssue::kind).collect();
        assert_eq!(kinds, PlanIssue::KINDS);
    }
}
