//! VRRP routers on the LAN that are not ours (docs/vrrp.md#foreign-routers). The agent attributes an advert to a
//! foreign router when it comes from an address that is no known peer, or from a known peer but for addresses
//! that are in no group of our plan (the apiserver's keepalived often runs on the control-plane nodes
//! themselves). Such adverts never reach a state machine; this module only remembers them (memory bounded by
//! [`MAX_SOURCES_PER_VRID`]), decides when one is worth a report ([`FOREIGN_REPORT_INTERVAL`]), and tells which
//! VRIDs are in use ([`FOREIGN_CONFIRM`], [`MAX_FOREIGN_VRIDS`]) so the planner can move our groups off them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::plan::ForeignVrid;
use super::{Received, Time, group_address};
use crate::model::IpFamily;

/// How long a known peer must have been sighted with foreign addresses (and again within [`FOREIGN_STALE`])
/// before its VRID counts as in use: a peer whose plan is a moment ahead of ours (brand-new VIPs on a VRID our
/// older plan uses for another group) must not move a group; the next plan makes them ours. An unknown source's
/// VRID counts at its first multicast advert: keepalived as master stops advertising while it hears our faster
/// adverts on its VRID (it re-arms its advert timer on every packet it receives), so its first advert may be the
/// only one we ever get, and every advert of ours disturbs it until we move.
/// Adverts that carry VIPs of our plan never count: moving a VRID does not help against an impostor of our own
/// VIPs, and a node missing from our peer list for a moment (a new Node object) must not move a group. Unicast
/// adverts never count either: they reach one node only, and a group that moves on one node alone splits.
pub const FOREIGN_CONFIRM: Duration = Duration::from_secs(5);
/// At most this many VRIDs per (interface, family) count as in use, the earliest seen first: a LAN has a
/// handful of foreign routers, a flood of spoofed adverts on every VRID must not push our groups out of the
/// range or keep moving them.
pub const MAX_FOREIGN_VRIDS: usize = 8;
/// A foreign router not heard for this long is gone (keepalived advertises every second by default).
pub const FOREIGN_STALE: Duration = Duration::from_secs(60);
/// Least time between two reports of the same foreign router: reports go out for foreign routers on the VRIDs
/// of our own instances, one per (interface, family, VRID, source) per interval, a known peer's only once its
/// VRID counts as in use ([`FOREIGN_CONFIRM`]).
pub const FOREIGN_REPORT_INTERVAL: Duration = Duration::from_secs(600);
/// At most [`FOREIGN_REPORTS_PER_WINDOW`] reports per window in all (the rest are counted), so a flood of adverts
/// with varying sources and address lists yields a bounded number of reports.
pub const FOREIGN_REPORT_WINDOW: Duration = Duration::from_secs(60);
pub const FOREIGN_REPORTS_PER_WINDOW: u32 = 16;
/// Memory is bounded: at most this many sources per (interface, family, VRID) are remembered (the others are
/// counted), at most [`MAX_REPORTED_ADDRESSES`] addresses per source, and anything not seen for
/// [`FOREIGN_STALE`] is forgotten.
pub const MAX_SOURCES_PER_VRID: usize = 8;
pub const MAX_REPORTED_ADDRESSES: usize = 16;
/// Forgetting is amortised: stale entries are dropped at most this often.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// One advert attributed to a foreign router.
#[derive(Debug, Clone, Copy)]
pub struct Sighting<'a> {
    pub interface: &'a str,
    pub family: IpFamily,
    pub vrid: u8,
    pub src: IpAddr,
    pub priority: u8,
    pub addresses: &'a [IpAddr],
    /// The source is a known peer (its address list made it foreign).
    pub known_peer: bool,
    /// Some advertised address is a VIP of our plan.
    pub claims_our_vips: bool,
    /// One of our instances runs this (interface, family, VRID).
    pub on_our_vrid: bool,
    /// Sent to the VRRP group address (not unicast to this node).
    pub to_group: bool,
}

impl<'a> Sighting<'a> {
    pub fn of(
        interface: &'a str,
        rx: &'a Received,
        known_peer: bool,
        claims_our_vips: bool,
        on_our_vrid: bool,
    ) -> Self {
        let family = IpFamily::of(&rx.src);
        Sighting {
            interface,
            family,
            vrid: rx.advert.vrid,
            src: rx.src,
            priority: rx.advert.priority,
            addresses: &rx.advert.addresses,
            known_peer,
            claims_our_vips,
            on_our_vrid,
            to_group: rx.dst == group_address(family),
        }
    }
}

/// A foreign router on one of our VRIDs, worth a log line, a metric and an Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignRouter {
    pub interface: String,
    pub family: IpFamily,
    pub vrid: u8,
    pub src: IpAddr,
    pub priority: u8,
    /// The first [`MAX_REPORTED_ADDRESSES`] advertised addresses.
    pub addresses: Vec<IpAddr>,
    pub address_count: usize,
    pub known_peer: bool,
    pub claims_our_vips: bool,
}

impl fmt::Display for ForeignRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.addresses.iter().map(ToString::to_string).collect();
        let more = self.address_count.saturating_sub(self.addresses.len());
        let who = if self.known_peer { "a cluster node (not for our VIPs)" } else { "an unknown source" };
        write!(
            f,
            "foreign VRRP router on {} {} VRID {}: {} from {who}, priority {}, addresses [{}]{}{}; ignored, our VIPs \
             stay where they are",
            self.interface,
            self.family,
            self.vrid,
            self.src,
            self.priority,
            list.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() },
            if self.claims_our_vips { " (it claims VIPs of ours)" } else { "" },
        )
    }
}

/// A VRID in use by a foreign router, with when it was seen: the planner's avoid input plus history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignVridSeen {
    pub vrid: ForeignVrid,
    /// Start of the current run of sightings.
    pub first_seen: Time,
    pub last_seen: Time,
    pub adverts: u64,
    /// The sources remembered (at most [`MAX_SOURCES_PER_VRID`])...
    pub sources: Vec<IpAddr>,
    /// ...and how many adverts came from sources beyond those.
    pub untracked_adverts: u64,
}

#[derive(Debug, Clone)]
struct Source {
    last_seen: Time,
    last_reported: Option<Time>,
}

#[derive(Debug, Clone, Default)]
struct Entry {
    adverts: u64,
    last_seen: Time,
    /// Sightings that count towards "in use" (multicast, not claiming our VIPs): start of the run and latest.
    foreign_run: Option<(Time, Time)>,
    /// Some sighting of the current run came from an unknown source (in use at once).
    run_unknown: bool,
    sources: BTreeMap<IpAddr, Source>,
    /// Adverts from sources beyond [`MAX_SOURCES_PER_VRID`], which are not remembered.
    other_sources: u64,
}

type Key = (String, IpFamily, u8);

/// The agent's memory of foreign routers.
#[derive(Debug, Clone, Default)]
pub struct ForeignTracker {
    entries: BTreeMap<Key, Entry>,
    window: Option<(Time, u32)>,
    suppressed: u64,
    next_prune: Time,
    /// Every advert observed, by family (IPv4, IPv6): only grows, for a metric's counter.
    seen: [u64; 2],
}

impl ForeignTracker {
    /// Records `s`; returns a report when one is due ([`FOREIGN_REPORT_INTERVAL`]).
    pub fn observe(&mut self, now: Time, s: Sighting<'_>) -> Option<ForeignRouter> {
        self.prune(now);
        let seen = &mut self.seen[family_index(s.family)];
        *seen = seen.saturating_add(1);
        let key: Key = (s.interface.to_string(), s.family, s.vrid);
        let entry = self.entries.entry(key).or_default();
        entry.adverts = entry.adverts.saturating_add(1);
        entry.last_seen = now;
        if !s.claims_our_vips && s.to_group {
            let (run, unknown) = match entry.foreign_run {
                Some((start, last)) if now.saturating_sub(last) <= FOREIGN_STALE => ((start, now), entry.run_unknown),
                _ => ((now, now), false),
            };
            entry.foreign_run = Some(run);
            entry.run_unknown = unknown || !s.known_peer;
        }
        let confirmed = confirmed(entry, now);
        if !entry.sources.contains_key(&s.src) {
            if entry.sources.len() >= MAX_SOURCES_PER_VRID {
                entry.other_sources = entry.other_sources.saturating_add(1);
                return None;
            }
            entry.sources.insert(s.src, Source { last_seen: now, last_reported: None });
        }
        let source = entry.sources.get_mut(&s.src)?;
        source.last_seen = now;
        let due = source.last_reported.is_none_or(|t| now >= t.saturating_add(FOREIGN_REPORT_INTERVAL));
        if !s.on_our_vrid || !due || (s.known_peer && !confirmed) {
            return None;
        }
        if !take_slot(&mut self.window, now) {
            self.suppressed = self.suppressed.saturating_add(1);
            return None;
        }
        source.last_reported = Some(now);
        Some(ForeignRouter {
            interface: s.interface.to_string(),
            family: s.family,
            vrid: s.vrid,
            src: s.src,
            priority: s.priority,
            addresses: s.addresses.iter().take(MAX_REPORTED_ADDRESSES).copied().collect(),
            address_count: s.addresses.len(),
            known_peer: s.known_peer,
            claims_our_vips: s.claims_our_vips,
        })
    }

    /// VRIDs in use by foreign routers now ([`FOREIGN_CONFIRM`]), at most [`MAX_FOREIGN_VRIDS`] per (interface,
    /// family), in (interface, family, VRID) order.
    pub fn in_use(&self, now: Time) -> Vec<ForeignVridSeen> {
        let mut seen: Vec<ForeignVridSeen> = self
            .entries
            .iter()
            .filter(|(_, e)| confirmed(e, now))
            .map(|((interface, family, vrid), e)| ForeignVridSeen {
                vrid: ForeignVrid { interface: interface.clone(), family: *family, vrid: *vrid },
                first_seen: e.foreign_run.map_or(e.last_seen, |r| r.0),
                last_seen: e.last_seen,
                adverts: e.adverts,
                sources: e.sources.keys().copied().collect(),
                untracked_adverts: e.other_sources,
            })
            .collect();
        // Earliest first within each (interface, family), so later VRIDs never displace those already avoided.
        seen.sort_by(|a, b| {
            (&a.vrid.interface, a.vrid.family, a.first_seen, a.vrid.vrid).cmp(&(
                &b.vrid.interface,
                b.vrid.family,
                b.first_seen,
                b.vrid.vrid,
            ))
        });
        let mut kept: Vec<ForeignVridSeen> = Vec::with_capacity(seen.len());
        for f in seen {
            let same = kept.iter().filter(|k| k.vrid.interface == f.vrid.interface && k.vrid.family == f.vrid.family);
            if same.count() < MAX_FOREIGN_VRIDS {
                kept.push(f);
            }
        }
        kept.sort_by(|a, b| a.vrid.cmp(&b.vrid));
        kept
    }

    /// Adverts attributed to foreign routers since the agent started, on our VRIDs or not; only grows.
    pub fn adverts_seen(&self, family: IpFamily) -> u64 {
        self.seen[family_index(family)]
    }

    /// Reports held back by the global rate limit.
    pub fn reports_suppressed(&self) -> u64 {
        self.suppressed
    }

    /// How many (interface, family, VRID) entries are remembered (bounded; for tests and metrics).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn prune(&mut self, now: Time) {
        if now < self.next_prune {
            return;
        }
        self.next_prune = now.saturating_add(PRUNE_EVERY);
        let fresh = |t: Time| now.saturating_sub(t) <= FOREIGN_STALE;
        self.entries.retain(|_, e| {
            e.sources.retain(|_, s| fresh(s.last_seen));
            fresh(e.last_seen)
        });
    }
}

fn family_index(family: IpFamily) -> usize {
    match family {
        IpFamily::V4 => 0,
        IpFamily::V6 => 1,
    }
}

fn confirmed(e: &Entry, now: Time) -> bool {
    e.foreign_run.is_some_and(|(start, last)| {
        (e.run_unknown || last.saturating_sub(start) >= FOREIGN_CONFIRM) && now.saturating_sub(last) <= FOREIGN_STALE
    })
}

/// Takes one report slot of the current window, opening a new window when the last one is over.
fn take_slot(window: &mut Option<(Time, u32)>, now: Time) -> bool {
    match window {
        Some((start, used)) if now < start.saturating_add(FOREIGN_REPORT_WINDOW) => {
            if *used >= FOREIGN_REPORTS_PER_WINDOW {
                return false;
            }
            *used += 1;
            true
        }
        _ => {
            *window = Some((now, 1));
            true
        }
    }
}
