//! What the agent has to say besides actions: foreign routers, and per-instance summaries of odd adverts.
//! Both are rate-limited here so that no packet pattern can turn into a flood of log lines or Kubernetes
//! Events: a driver drains [`AgentEvent`]s with `Agent::take_events` whenever convenient (after a batch of
//! adverts, or on a periodic tick) and logs / publishes each one.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::Time;
use super::agent::InstanceKey;
use super::foreign::ForeignRouter;
use super::refusal::RefusalCounts;
use super::state::Counters;

/// Least time between two [`AnomalyReport`]s of one instance.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(60);
/// Most events waiting to be taken; beyond it new ones are counted and dropped (a driver that never drains
/// them must not make the agent grow).
pub const MAX_QUEUED_EVENTS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    ForeignRouter(ForeignRouter),
    Anomalies(AnomalyReport),
}

impl AgentEvent {
    /// Stable label (metrics, Event reasons).
    pub fn kind(&self) -> &'static str {
        match self {
            AgentEvent::ForeignRouter(_) => "foreign_router",
            AgentEvent::Anomalies(_) => "anomalies",
        }
    }
}

impl fmt::Display for AgentEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentEvent::ForeignRouter(r) => r.fmt(f),
            AgentEvent::Anomalies(a) => a.fmt(f),
        }
    }
}

/// Odd adverts one instance saw since its previous report: at most one per [`REPORT_INTERVAL`], the first as
/// soon as something notable happens (a notable drop reason, or an address list not seen before).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnomalyReport {
    pub key: InstanceKey,
    /// Since the previous report (or the instance's start).
    pub dropped: RefusalCounts,
    pub address_mismatches: u64,
    pub replies_suppressed: u64,
    /// The latest differing address list: (sender, its list).
    pub last_mismatch: Option<(IpAddr, Vec<IpAddr>)>,
}

impl fmt::Display for AnomalyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VRRP {} {} VRID {}: dropped adverts: {}; {} adverts with another address list",
            self.key.interface, self.key.family, self.key.vrid, self.dropped, self.address_mismatches
        )?;
        if let Some((src, list)) = &self.last_mismatch {
            let list: Vec<String> = list.iter().map(ToString::to_string).collect();
            write!(f, " (latest from {src}: [{}])", list.join(", "))?;
        }
        write!(f, "; {} answers held back by the rate limit", self.replies_suppressed)
    }
}

#[derive(Debug, Clone, Default)]
struct Reported {
    counters: Counters,
    at: Option<Time>,
}

/// The rate limiter and queue behind `Agent::take_events`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reporter {
    reported: BTreeMap<InstanceKey, Reported>,
    /// Instances with something notable not reported yet.
    dirty: BTreeSet<InstanceKey>,
    queue: VecDeque<AgentEvent>,
    overflow: u64,
}

impl Reporter {
    pub(crate) fn push(&mut self, event: AgentEvent) {
        if self.queue.len() >= MAX_QUEUED_EVENTS {
            self.overflow = self.overflow.saturating_add(1);
            return;
        }
        self.queue.push_back(event);
    }

    pub(crate) fn mark(&mut self, key: &InstanceKey) {
        if !self.dirty.contains(key) {
            self.dirty.insert(key.clone());
        }
    }

    /// The instance behind `key` is gone or replaced: its counters start again from zero.
    pub(crate) fn forget(&mut self, key: &InstanceKey) {
        self.reported.remove(key);
        self.dirty.remove(key);
    }

    pub(crate) fn overflow(&self) -> u64 {
        self.overflow
    }

    fn due(&self, key: &InstanceKey, now: Time) -> bool {
        self.reported.get(key).and_then(|r| r.at).is_none_or(|at| now >= at.saturating_add(REPORT_INTERVAL))
    }

    /// Whether [`Reporter::take`] would return anything at `now`.
    pub(crate) fn pending(&self, now: Time) -> bool {
        !self.queue.is_empty() || self.dirty.iter().any(|k| self.due(k, now))
    }

    /// Queued events, then a report for every dirty instance whose interval has passed; `lookup` gives an
    /// instance's counters and last mismatch (None: it is gone).
    pub(crate) fn take<'a>(
        &mut self,
        now: Time,
        lookup: impl Fn(&InstanceKey) -> Option<(Counters, Option<&'a (IpAddr, Vec<IpAddr>)>)>,
    ) -> Vec<AgentEvent> {
        let mut out: Vec<AgentEvent> = self.queue.drain(..).collect();
        let due: Vec<InstanceKey> = self.dirty.iter().filter(|k| self.due(k, now)).cloned().collect();
        for key in due {
            self.dirty.remove(&key);
            let Some((counters, mismatch)) = lookup(&key) else {
                self.reported.remove(&key);
                continue;
            };
            let before = self.reported.get(&key).map(|r| r.counters).unwrap_or_default();
            out.push(AgentEvent::Anomalies(AnomalyReport {
                key: key.clone(),
                dropped: counters.dropped.since(&before.dropped),
                address_mismatches: counters.address_mismatches.saturating_sub(before.address_mismatches),
                replies_suppressed: counters.replies_suppressed.saturating_sub(before.replies_suppressed),
                last_mismatch: mismatch.cloned(),
            }));
            self.reported.insert(key, Reported { counters, at: Some(now) });
        }
        out
    }
}
