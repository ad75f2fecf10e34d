//! What the VRRP agent and the plan have to say, as log lines, metrics and Node Events, each bounded whatever
//! the LAN sends:
//! - **Log lines**: one per agent report (the agent already rate-limits them: foreign routers per source and
//!   in all, anomalies once per instance per minute) and one per new plan approximation.
//! - **Node Events** on top of that: at most [`NODE_EVENTS_PER_WINDOW`] per [`NODE_EVENT_WINDOW`]; the rest
//!   are counted (`openelb_speaker_events_suppressed_total`) and mentioned in the next Event.
//! - **Metrics** are read from the agent's counters on the maintenance tick, never per packet: per-instance
//!   drop counters are summed into `openelb_vrrp_adverts_dropped_total{reason}` (an instance replaced by a new
//!   plan starts from zero, which [`Notices::sync_counters`] notices by its received count going down).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openelb_core::model::IpFamily;
use openelb_core::vrrp::Time;
use openelb_core::vrrp::agent::{Agent, InstanceKey};
use openelb_core::vrrp::event::AgentEvent;
use openelb_core::vrrp::plan::{Plan, PlanIssue, PublishedConflict};
use openelb_core::vrrp::refusal::RefusalCounts;
use openelb_core::vrrp::state::Counters;

use super::events::{EventSink, NodeEvent, NodeReason};
use super::metrics::{DropLabels, FamilyLabels, SpeakerMetrics, VridLabels};
use openelb_k8s::serve::KindLabels;

/// Most Node Events in one [`NODE_EVENT_WINDOW`].
pub const NODE_EVENTS_PER_WINDOW: u32 = 4;
pub const NODE_EVENT_WINDOW: Duration = Duration::from_secs(60);

pub struct Notices {
    events: EventSink,
    metrics: SpeakerMetrics,
    /// Per running instance: the counters already added to the metrics.
    counted: BTreeMap<InstanceKey, Counters>,
    unrouted: RefusalCounts,
    foreign_adverts: [u64; 2],
    foreign_series: BTreeSet<VridLabels>,
    /// The running plan's issues as logged, to tell a change.
    issues: Vec<String>,
    window: Option<(Time, u32)>,
    suppressed: u64,
}

impl Notices {
    pub fn new(events: EventSink, metrics: SpeakerMetrics) -> Self {
        for kind in PlanIssue::KINDS {
            metrics.plan_issues.get_or_create(&KindLabels { kind }).set(0);
        }
        Notices {
            events,
            metrics,
            counted: BTreeMap::new(),
            unrouted: RefusalCounts::default(),
            foreign_adverts: [0; 2],
            foreign_series: BTreeSet::new(),
            issues: Vec::new(),
            window: None,
            suppressed: 0,
        }
    }

    /// Logs every agent report and turns foreign-router reports into Node Events (rate-limited).
    pub fn agent_events(&mut self, now: Time, events: Vec<AgentEvent>) {
        for event in events {
            tracing::warn!(kind = event.kind(), "{event}");
            if let AgentEvent::ForeignRouter(_) = &event {
                self.node_event(now, NodeReason::ForeignRouter, event.to_string());
            }
        }
    }

    /// The plan just applied: the issue gauge, and a log line per new issue and one Node Event per change.
    pub fn plan_applied(&mut self, now: Time, plan: &Plan) {
        let mut by_kind: BTreeMap<&'static str, i64> = PlanIssue::KINDS.iter().map(|k| (*k, 0)).collect();
        for issue in &plan.issues {
            *by_kind.entry(issue.kind()).or_default() += 1;
        }
        for (kind, n) in by_kind {
            self.metrics.plan_issues.get_or_create(&KindLabels { kind }).set(n);
        }
        // A published VRID a foreign router now uses is left for another until the controller republishes:
        // expected, so counted and logged but not worth an Event.
        let notable: Vec<&PlanIssue> = plan
            .issues
            .iter()
            .filter(|i| !matches!(i, PlanIssue::PublishedIgnored { reason: PublishedConflict::Avoided, .. }))
            .collect();
        let issues: Vec<String> = notable.iter().map(ToString::to_string).collect();
        if issues == self.issues {
            return;
        }
        // Each issue's warning is logged with the plan's other warnings; the Event summarises the change.
        if !issues.is_empty() {
            let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
            for issue in &notable {
                *kinds.entry(issue.kind()).or_default() += 1;
            }
            let summary: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
            let first = issues.first().cloned().unwrap_or_default();
            let note = format!("VRRP plan approximated ({}): {first}", summary.join(", "));
            self.node_event(now, NodeReason::PlanApproximated, note);
        } else {
            tracing::info!("the VRRP plan is exact again");
        }
        self.issues = issues;
    }

    /// Adds what the agent counted since the last call to the metrics: drops by reason, answers held back,
    /// foreign adverts, and the foreign routers in use now.
    pub fn sync_counters(&mut self, now: Time, agent: &Agent) {
        let mut dropped: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut replies = 0u64;
        let mut seen = BTreeSet::new();
        for (key, instance) in agent.instances() {
            let c = instance.counters();
            seen.insert(key.clone());
            let before = match self.counted.get(key) {
                // A new instance under the same key counts from zero again.
                Some(b) if b.received <= c.received => *b,
                _ => Counters::default(),
            };
            for (reason, n) in c.dropped.since(&before.dropped).iter() {
                *dropped.entry(reason.as_str()).or_default() += n;
            }
            replies = replies.saturating_add(c.replies_suppressed.saturating_sub(before.replies_suppressed));
            self.counted.insert(key.clone(), c);
        }
        self.counted.retain(|k, _| seen.contains(k));
        for (reason, n) in dropped {
            self.add_drops(reason, n);
        }
        let unrouted = agent.unrouted_drops();
        for (reason, n) in unrouted.since(&self.unrouted).iter() {
            self.add_drops(reason.as_str(), n);
        }
        self.unrouted = unrouted;
        self.metrics.replies_suppressed.inc_by(replies);

        let tracker = agent.foreign_routers();
        for (i, family) in [IpFamily::V4, IpFamily::V6].into_iter().enumerate() {
            let total = tracker.adverts_seen(family);
            let new = total.saturating_sub(self.foreign_adverts[i]);
            if new > 0 {
                self.metrics.foreign_adverts.get_or_create(&FamilyLabels { family: family.to_string() }).inc_by(new);
            }
            self.foreign_adverts[i] = total;
        }
        let mut series: BTreeMap<VridLabels, i64> = BTreeMap::new();
        for f in agent.foreign_vrids(now) {
            let labels = VridLabels { family: f.vrid.family.to_string(), vrid: f.vrid.vrid };
            *series.entry(labels).or_default() += i64::try_from(f.sources.len()).unwrap_or(i64::MAX).max(1);
        }
        for gone in self.foreign_series.iter().filter(|l| !series.contains_key(l)) {
            self.metrics.foreign_routers.remove(gone);
        }
        for (labels, n) in &series {
            self.metrics.foreign_routers.get_or_create(labels).set(*n);
        }
        self.foreign_series = series.into_keys().collect();
    }

    fn add_drops(&self, reason: &'static str, n: u64) {
        if n > 0 {
            self.metrics.adverts_dropped.get_or_create(&DropLabels { reason }).inc_by(n);
        }
    }

    /// Records a Node Event unless this window's budget is spent (then it is only counted).
    pub fn node_event(&mut self, now: Time, reason: NodeReason, note: String) {
        let open = self.window.is_some_and(|(start, _)| now < start.saturating_add(NODE_EVENT_WINDOW));
        if !open {
            self.window = Some((now, 0));
        }
        let Some((_, used)) = self.window.as_mut() else { return };
        if *used >= NODE_EVENTS_PER_WINDOW {
            self.suppressed += 1;
            self.metrics.events_suppressed.inc();
            return;
        }
        *used += 1;
        let note = match std::mem::take(&mut self.suppressed) {
            0 => note,
            n => format!("{note} ({n} earlier reports were not recorded as Events; the speaker's log has them)"),
        };
        self.events.emit_node(NodeEvent { reason, note });
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc::Receiver;

    use super::*;
    use crate::events::SpeakerEvent;

    fn notices() -> (Notices, Receiver<SpeakerEvent>, SpeakerMetrics) {
        let metrics = SpeakerMetrics::default();
        let (sink, rx) = EventSink::channel(64, metrics.events_dropped.clone());
        (Notices::new(sink, metrics.clone()), rx, metrics)
    }

    #[test]
    fn a_plan_approximation_is_one_event_per_change_and_a_moved_published_vrid_none() {
        use openelb_core::model::IpFamily;
        use openelb_core::vrrp::plan::{GroupId, UnplacedReason};
        let (mut n, mut rx, metrics) = notices();
        let unplaced = PlanIssue::Unplaced {
            interface: "eth0".into(),
            family: IpFamily::V4,
            vips: vec!["192.0.2.9".parse().unwrap()],
            reason: UnplacedReason::VridsExhausted,
        };
        let plan = Plan { groups: Vec::new(), issues: vec![unplaced] };
        n.plan_applied(Duration::ZERO, &plan);
        n.plan_applied(Duration::from_secs(1), &plan);
        let Ok(SpeakerEvent::Node(e)) = rx.try_recv() else { panic!("one Event") };
        assert_eq!(e.reason.reason(), "VRRPPlanApproximated");
        assert!(e.note.contains("1 unplaced") && e.note.contains("192.0.2.9"), "{}", e.note);
        assert!(rx.try_recv().is_err(), "the same issues again: no second Event");
        assert_eq!(metrics.plan_issues.get_or_create(&KindLabels { kind: "unplaced" }).get(), 1);

        let id =
            GroupId { interface: "eth0".into(), family: IpFamily::V4, first: "a".into(), candidates: vec![], part: 0 };
        let avoided = PlanIssue::PublishedIgnored { group: id, vrid: 120, reason: PublishedConflict::Avoided };
        n.plan_applied(Duration::from_secs(2), &Plan { groups: Vec::new(), issues: vec![avoided] });
        assert!(rx.try_recv().is_err(), "moving off a foreign router's VRID is no Event");
        assert_eq!(metrics.plan_issues.get_or_create(&KindLabels { kind: "unplaced" }).get(), 0);
        assert_eq!(metrics.plan_issues.get_or_create(&KindLabels { kind: "published_ignored" }).get(), 1);
    }

    #[test]
    fn node_events_are_bounded_per_window_and_the_next_one_says_how_many_were_skipped() {
        let (mut n, mut rx, metrics) = notices();
        for i in 0..20 {
            n.node_event(Duration::from_secs(i), NodeReason::ForeignRouter, format!("report {i}"));
        }
        let mut got = Vec::new();
        while let Ok(e) = rx.try_recv() {
            got.push(e);
        }
        assert_eq!(got.len(), NODE_EVENTS_PER_WINDOW as usize);
        assert_eq!(metrics.events_suppressed.get(), 16);
        n.node_event(Duration::from_secs(61), NodeReason::ForeignRouter, "later".into());
        let Ok(SpeakerEvent::Node(e)) = rx.try_recv() else { panic!("an Event in the next window") };
        assert_eq!(e.reason.reason(), "ForeignVRRPRouter");
        assert!(e.note.starts_with("later (16 earlier reports"), "{}", e.note);
    }
}
