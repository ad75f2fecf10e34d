//! All VRRP instances of one node, driven from a [`Plan`]. The agent turns plan changes into instance
//! lifecycles (start, re-prioritise, re-address, release) and routes adverts and timer expiries by
//! (interface, family, VRID); its output is the instances' actions tagged with their [`InstanceKey`]. The
//! interface is the plan's interface string: a driver that resolves it keeps the mapping and passes the same
//! string back. Timers can be driven either way: apply every `ArmTimer`/`CancelTimer` action, or ignore them and
//! poll [`Agent::next_deadline`] after every call; both see the same deadlines.
//!
//! A group participates once [`Agent::set_primary`] has given this node's address on that interface and family
//! (until then [`Agent::waiting`] lists it). How plan changes keep VIPs where they are and start new ones at
//! once: docs/election.md#new-vips-and-re-grouping. How adverts are screened before an instance sees them (known
//! peers, foreign routers, [`AdvertRefusal`] in check order): docs/vrrp.md#trust-who-may-move-a-vip.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use super::consts::TTL;
use super::event::{AgentEvent, Reporter};
use super::foreign::{ForeignTracker, ForeignVridSeen, Sighting};
use super::plan::{Group, GroupId, Plan};
use super::refusal::{AdvertRefusal, RefusalCounts};
use super::state::{
    Action, Config, ConfigError, DEFAULT_ADVERT_ADDRESSES_IPV4, DEFAULT_ADVERT_ADDRESSES_IPV6,
    DEFAULT_ADVERT_INTERVAL_CS, DEFAULT_GARP_COUNT, DEFAULT_GARP_SPACING, DEFAULT_PREEMPT_DELAY, Input, Instance,
    State, TimerKind,
};
use super::{Received, Time, group_address};
use crate::model::IpFamily;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceKey {
    pub interface: String,
    pub family: IpFamily,
    pub vrid: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerKey {
    pub instance: InstanceKey,
    pub kind: TimerKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAction {
    pub key: InstanceKey,
    pub action: Action,
}

/// Timing and announcement settings shared by all of a node's instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Centiseconds, 1..=4095.
    pub advert_interval: u16,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub garp_count: u32,
    pub garp_spacing: Duration,
    /// Max_Adver_Int values accepted from peers; `None`: `state::default_peer_interval_bounds` of
    /// `advert_interval`.
    pub peer_interval_bounds: Option<RangeInclusive<u16>>,
    /// Most addresses one IPv4 advert carries (1..=255): a larger group advertises its first ones.
    pub advert_addresses_ipv4: usize,
    /// Most addresses one IPv6 advert carries (1..=255); the default fits a 1500-byte MTU.
    pub advert_addresses_ipv6: usize,
}

impl AgentConfig {
    pub fn advert_addresses(&self, family: IpFamily) -> usize {
        match family {
            IpFamily::V4 => self.advert_addresses_ipv4,
            IpFamily::V6 => self.advert_addresses_ipv6,
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            advert_interval: DEFAULT_ADVERT_INTERVAL_CS,
            preempt: true,
            preempt_delay: DEFAULT_PREEMPT_DELAY,
            garp_count: DEFAULT_GARP_COUNT,
            garp_spacing: DEFAULT_GARP_SPACING,
            peer_interval_bounds: None,
            advert_addresses_ipv4: DEFAULT_ADVERT_ADDRESSES_IPV4,
            advert_addresses_ipv6: DEFAULT_ADVERT_ADDRESSES_IPV6,
        }
    }
}

#[derive(Debug, Clone)]
struct Slot {
    id: GroupId,
    instance: Instance,
}

#[derive(Debug, Clone)]
pub struct Agent {
    node: String,
    config: AgentConfig,
    primaries: BTreeMap<(String, IpFamily), IpAddr>,
    instances: BTreeMap<InstanceKey, Slot>,
    plan: Option<Plan>,
    /// VIPs of `plan` that were in no group of the plan before it (empty after the first plan), and when `plan`
    /// was applied (docs/election.md#new-vips-and-re-grouping).
    fresh: BTreeSet<IpAddr>,
    fresh_at: Time,
    /// Interfaces reported down and not up since.
    down: BTreeSet<String>,
    stopped: bool,
    known_peers: HashSet<IpAddr>,
    /// VIPs of the current and the previous plan: a known peer advertising one of them is ours, not foreign.
    planned_vips: HashSet<IpAddr>,
    foreign: ForeignTracker,
    reporter: Reporter,
    /// Adverts for no instance of this node.
    unrouted: RefusalCounts,
}

impl Agent {
    pub fn new(node: impl Into<String>, config: AgentConfig) -> Result<Self, ConfigError> {
        // Validate the shared settings once with a throwaway instance, so later instance creation cannot fail
        // for their sake.
        let probe = Config {
            advert_interval: config.advert_interval,
            peer_interval_bounds: config.peer_interval_bounds.clone(),
            ..Config::new(1, IpAddr::from([0, 0, 0, 0]), Vec::new())
        };
        Instance::new(probe)?;
        Ok(Agent {
            node: node.into(),
            config,
            primaries: BTreeMap::new(),
            instances: BTreeMap::new(),
            plan: None,
            fresh: BTreeSet::new(),
            fresh_at: Time::ZERO,
            down: BTreeSet::new(),
            stopped: false,
            known_peers: HashSet::new(),
            planned_vips: HashSet::new(),
            foreign: ForeignTracker::default(),
            reporter: Reporter::default(),
            unrouted: RefusalCounts::default(),
        })
    }

    /// The addresses adverts are accepted from: every cluster node's published addresses and the configured
    /// unicast peers (this node's own may be included; they are dropped as our own adverts anyway). Replaces
    /// the previous set. Until it is called, no advert is accepted.
    pub fn set_known_peers(&mut self, peers: impl IntoIterator<Item = IpAddr>) {
        self.known_peers = peers.into_iter().collect();
    }

    pub fn is_known_peer(&self, addr: &IpAddr) -> bool {
        self.known_peers.contains(addr)
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Records this node's own address on `interface` (for its family) and re-applies the last plan; the VIPs
    /// that plan added still count as new for three advert intervals after it.
    pub fn set_primary(&mut self, now: Time, interface: &str, addr: IpAddr) -> Vec<NodeAction> {
        self.primaries.insert((interface.to_string(), IpFamily::of(&addr)), addr);
        let Some(plan) = self.plan.take() else { return Vec::new() };
        let fresh =
            if now.saturating_sub(self.fresh_at) < self.fresh_window() { self.fresh.clone() } else { BTreeSet::new() };
        let out = self.apply(now, &plan, &fresh);
        self.plan = Some(plan);
        out
    }

    /// Brings the instances in line with `plan`: new groups start, changed ones get their new priority and
    /// addresses, removed ones shut down (a Master sends priority 0 and removes its VIPs). A new group starts
    /// as Master on this node when this node holds some of its VIPs now, or when it is the group's first
    /// preference and none of the group's VIPs was in the previous plan (never on the first plan).
    pub fn apply_plan(&mut self, now: Time, plan: &Plan) -> Vec<NodeAction> {
        if self.stopped {
            return Vec::new();
        }
        let fresh: BTreeSet<IpAddr> = match &self.plan {
            None => BTreeSet::new(),
            Some(previous) => {
                let before: BTreeSet<&IpAddr> = previous.groups.iter().flat_map(|g| &g.vips).collect();
                plan.groups.iter().flat_map(|g| &g.vips).filter(|v| !before.contains(v)).copied().collect()
            }
        };
        let out = self.apply(now, plan, &fresh);
        let mut planned: HashSet<IpAddr> = plan.groups.iter().flat_map(|g| g.vips.iter().copied()).collect();
        if let Some(previous) = &self.plan {
            planned.extend(previous.groups.iter().flat_map(|g| g.vips.iter().copied()));
        }
        self.planned_vips = planned;
        self.plan = Some(plan.clone());
        self.fresh = fresh;
        self.fresh_at = now;
        out
    }

    /// How long after a plan its new VIPs may still be started as Master by a late [`Agent::set_primary`]: the
    /// least Master_Down_Interval any peer can have (3 advert intervals plus a skew time above zero), so a peer
    /// that applied the same plan at the same moment cannot have taken them by timeout yet.
    fn fresh_window(&self) -> Duration {
        Duration::from_millis(u64::from(self.config.advert_interval) * 10).saturating_mul(3)
    }

    /// Whether this node starts `group` as the Master of VIPs nobody holds
    /// (docs/election.md#new-vips-and-re-grouping).
    fn starts_unclaimed(&self, group: &Group, fresh: &BTreeSet<IpAddr>) -> bool {
        group.priorities.first().is_some_and(|(n, _)| *n == self.node)
            && !group.vips.is_empty()
            && group.vips.iter().all(|v| fresh.contains(v))
    }

    fn apply(&mut self, now: Time, plan: &Plan, fresh: &BTreeSet<IpAddr>) -> Vec<NodeAction> {
        if self.stopped {
            return Vec::new();
        }
        let held_before = self.held_vips();

        let mut desired: BTreeMap<InstanceKey, (GroupId, Config, bool)> = BTreeMap::new();
        for (group, priority) in plan.for_node(&self.node) {
            let Some(primary) = self.primaries.get(&(group.id.interface.clone(), group.id.family)) else {
                continue;
            };
            let key = InstanceKey { interface: group.id.interface.clone(), family: group.id.family, vrid: group.vrid };
            let cfg = Config {
                vrid: group.vrid,
                priority,
                advert_interval: self.config.advert_interval,
                preempt: self.config.preempt,
                preempt_delay: self.config.preempt_delay,
                garp_count: self.config.garp_count,
                garp_spacing: self.config.garp_spacing,
                primary: *primary,
                addresses: group.vips.clone(),
                advert_addresses: self.config.advert_addresses(group.id.family),
                peer_interval_bounds: self.config.peer_interval_bounds.clone(),
            };
            desired.insert(key, (group.id.clone(), cfg, self.starts_unclaimed(group, fresh)));
        }

        let stale: Vec<InstanceKey> = self
            .instances
            .iter()
            .filter(|(k, slot)| match desired.get(k) {
                None => true,
                Some((id, cfg, _)) => slot.id != *id || slot.instance.config().primary != cfg.primary,
            })
            .map(|(k, _)| k.clone())
            .collect();
        // What this node will hold afterwards, by interface: kept Master instances' new addresses, and those of
        // new instances that start as Master (this node holds some of their VIPs now, or they are unclaimed).
        let mut held_after: BTreeMap<&str, BTreeSet<IpAddr>> = BTreeMap::new();
        for (key, (_, cfg, unclaimed)) in &desired {
            let kept_master =
                !stale.contains(key) && self.instances.get(key).is_some_and(|s| s.instance.state() == State::Master);
            let new_master = !self.instances.contains_key(key) || stale.contains(key);
            let holds = held_before.get(&key.interface).is_some_and(|h| cfg.addresses.iter().any(|a| h.contains(a)));
            let link_up = !self.down.contains(&key.interface);
            if kept_master || (new_master && link_up && (holds || *unclaimed)) {
                held_after.entry(key.interface.as_str()).or_default().extend(cfg.addresses.iter().copied());
            }
        }

        let mut out = Vec::new();
        // Removals and replacements first (their VRIDs may be reused right away), then starts and updates.
        for key in &stale {
            self.reporter.forget(key);
            if let Some(mut slot) = self.instances.remove(key) {
                let keeps_all = slot.instance.state() == State::Master
                    && held_after
                        .get(key.interface.as_str())
                        .is_some_and(|h| slot.instance.addresses().iter().all(|a| h.contains(a)));
                let input = if keeps_all { Input::Retire } else { Input::Shutdown };
                tag(key, slot.instance.handle(now, input), &mut out);
            }
        }
        for (key, (id, cfg, unclaimed)) in desired {
            if let Some(slot) = self.instances.get_mut(&key) {
                let actions = slot.instance.handle(now, Input::SetPriority(cfg.priority));
                tag(&key, actions, &mut out);
                let actions = slot.instance.handle(now, Input::SetAddresses(cfg.addresses));
                tag(&key, actions, &mut out);
                continue;
            }
            let holds = held_before.get(&key.interface).is_some_and(|h| cfg.addresses.iter().any(|a| h.contains(a)));
            let Ok(mut instance) = Instance::new(cfg) else { continue };
            if self.down.contains(&key.interface) {
                // Nothing to undo in Initialize: this only marks the link, so the start below waits for it.
                tag(&key, instance.handle(now, Input::InterfaceDown), &mut out);
            }
            let start = if holds {
                Input::StartAsMaster
            } else if unclaimed {
                Input::StartUnclaimed
            } else {
                Input::Start
            };
            tag(&key, instance.handle(now, start), &mut out);
            self.instances.insert(key, Slot { id, instance });
        }
        self.filter_removals(out)
    }

    /// Screens a received advert and hands what passes to the instance of (interface, family of its source,
    /// VRID). In order: the instance's own checks ([`Instance::screen`]), a known source, addresses shared with
    /// the instance's (others are another group of our plan, or a foreign router), then the state machine's
    /// content checks; each drop is counted under one [`AdvertRefusal`].
    pub fn handle_advert(&mut self, now: Time, interface: &str, rx: Received) -> Vec<NodeAction> {
        let family = IpFamily::of(&rx.src);
        let key = InstanceKey { interface: interface.to_string(), family, vrid: rx.advert.vrid };
        let Some(slot) = self.instances.get_mut(&key) else {
            self.unrouted.add(AdvertRefusal::NoInstance);
            self.observe_unrouted(now, interface, &rx);
            return Vec::new();
        };
        let instance = &mut slot.instance;
        if let Err(reason) = instance.screen(&rx) {
            instance.note_dropped(reason);
            if reason.is_notable() {
                self.reporter.mark(&key);
            }
            return Vec::new();
        }
        let known = self.known_peers.contains(&rx.src);
        let shares = rx.advert.addresses.iter().any(|a| instance.addresses().binary_search(a).is_ok());
        if !known || !shares {
            let claims_ours = shares || rx.advert.addresses.iter().any(|a| self.planned_vips.contains(a));
            let reason = match (known, claims_ours) {
                (false, _) => AdvertRefusal::UnknownSource,
                (true, true) => AdvertRefusal::OtherGroup,
                (true, false) => AdvertRefusal::ForeignAddresses,
            };
            instance.note_dropped(reason);
            if reason != AdvertRefusal::OtherGroup {
                let sighting = Sighting::of(interface, &rx, known, claims_ours, true);
                if let Some(report) = self.foreign.observe(now, sighting) {
                    self.reporter.push(AgentEvent::ForeignRouter(report));
                }
            }
            return Vec::new();
        }
        let before = instance.counters().notable();
        let actions = instance.handle(now, Input::Advert(rx));
        if instance.counters().notable() != before {
            self.reporter.mark(&key);
        }
        let mut out = Vec::new();
        tag(&key, actions, &mut out);
        self.filter_removals(out)
    }

    /// An advert for no instance of ours: remembered when it is a well-formed advert from an unknown source
    /// for the LAN's VRRP group or for us, so the planner can keep our groups off its VRID.
    fn observe_unrouted(&mut self, now: Time, interface: &str, rx: &Received) {
        let family = IpFamily::of(&rx.src);
        let ours = |a: &IpAddr| self.primaries.get(&(interface.to_string(), family)) == Some(a);
        let to_us = rx.dst == group_address(family) || ours(&rx.dst);
        if rx.ttl != TTL || !to_us || ours(&rx.src) || self.known_peers.contains(&rx.src) {
            return;
        }
        let claims_ours = rx.advert.addresses.iter().any(|a| self.planned_vips.contains(a));
        // Not on one of our VRIDs: remembered, not reported.
        let _ = self.foreign.observe(now, Sighting::of(interface, rx, false, claims_ours, false));
    }

    /// Foreign-router reports ([`super::foreign`]) and per-instance anomaly summaries due at `now`; call it
    /// after handling adverts or on a periodic tick, and log / publish each event.
    pub fn take_events(&mut self, now: Time) -> Vec<AgentEvent> {
        let instances = &self.instances;
        self.reporter.take(now, |key| instances.get(key).map(|s| (s.instance.counters(), s.instance.last_mismatch())))
    }

    /// Whether [`Agent::take_events`] has something at `now`: the "something new to report" signal.
    pub fn events_pending(&self, now: Time) -> bool {
        self.reporter.pending(now)
    }

    /// Events dropped because nobody took them ([`super::event::MAX_QUEUED_EVENTS`]).
    pub fn events_dropped(&self) -> u64 {
        self.reporter.overflow()
    }

    /// VRIDs in use by foreign routers at `now`, with when they were seen: feed `.vrid` to the planner's
    /// `PlanContext::avoid` (and to the controller, which publishes them).
    pub fn foreign_vrids(&self, now: Time) -> Vec<ForeignVridSeen> {
        self.foreign.in_use(now)
    }

    /// The foreign-router memory (bounded), e.g. for metrics.
    pub fn foreign_routers(&self) -> &ForeignTracker {
        &self.foreign
    }

    /// Adverts for no instance of this node, by reason ([`AdvertRefusal::NoInstance`]).
    pub fn unrouted_drops(&self) -> RefusalCounts {
        self.unrouted
    }

    pub fn timer_fired(&mut self, now: Time, key: &TimerKey) -> Vec<NodeAction> {
        let mut out = Vec::new();
        if let Some(slot) = self.instances.get_mut(&key.instance) {
            tag(&key.instance, slot.instance.handle(now, Input::TimerExpired(key.kind)), &mut out);
        }
        self.filter_removals(out)
    }

    /// The link of `interface` is down (or unusable): its Masters drop their VIPs without a release, and its
    /// instances, also those created later, wait in Initialize until [`Agent::interface_up`].
    pub fn interface_down(&mut self, now: Time, interface: &str) -> Vec<NodeAction> {
        self.down.insert(interface.to_string());
        self.for_interface(now, interface, Input::InterfaceDown)
    }

    /// The link of `interface` is back: its instances start again as Backup.
    pub fn interface_up(&mut self, now: Time, interface: &str) -> Vec<NodeAction> {
        self.down.remove(interface);
        self.for_interface(now, interface, Input::InterfaceUp)
    }

    fn for_interface(&mut self, now: Time, interface: &str, input: Input) -> Vec<NodeAction> {
        let mut out = Vec::new();
        for (key, slot) in self.instances.iter_mut().filter(|(k, _)| k.interface == interface) {
            tag(key, slot.instance.handle(now, input.clone()), &mut out);
        }
        self.filter_removals(out)
    }

    /// Releases everything (priority-0 adverts, VIPs removed) and stops the agent.
    pub fn shutdown(&mut self, now: Time) -> Vec<NodeAction> {
        self.stopped = true;
        let mut out = Vec::new();
        for (key, mut slot) in std::mem::take(&mut self.instances) {
            tag(&key, slot.instance.handle(now, Input::Shutdown), &mut out);
        }
        out
    }

    /// The earliest armed timer of any instance (ties by instance key, then timer kind).
    pub fn next_deadline(&self) -> Option<(Time, TimerKey)> {
        // Called on every turn of the speaker's loop: the key is cloned once, not once per instance.
        self.instances
            .iter()
            .filter_map(|(k, s)| s.instance.next_deadline().map(|(t, kind)| (t, k, kind)))
            .min_by(|a, b| a.0.cmp(&b.0))
            .map(|(t, k, kind)| (t, TimerKey { instance: k.clone(), kind }))
    }

    /// Every Master whose next advert is due before `by` sends it now and restarts its advert timer from `now`.
    /// Called when one advert timer fires, with `by` an interval ahead, it makes a node's Masters advertise
    /// together: one wake-up per interval instead of one per group, and their adverts reach the backups
    /// together too. Each Master advertises early once (joining the others), which only makes its backups
    /// restart their Master_Down timers sooner.
    pub fn advertise_due_by(&mut self, now: Time, by: Time) -> Vec<NodeAction> {
        let mut out = Vec::new();
        for (key, slot) in &mut self.instances {
            tag(key, slot.instance.advertise_early(now, by), &mut out);
        }
        out
    }

    /// VIPs this node holds (its Master instances' addresses), by interface.
    pub fn held_vips(&self) -> BTreeMap<String, BTreeSet<IpAddr>> {
        let mut out: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
        for (key, slot) in &self.instances {
            if slot.instance.state() == State::Master {
                out.entry(key.interface.clone()).or_default().extend(slot.instance.addresses().iter().copied());
            }
        }
        out
    }

    pub fn instance(&self, key: &InstanceKey) -> Option<&Instance> {
        self.instances.get(key).map(|s| &s.instance)
    }

    pub fn instances(&self) -> impl Iterator<Item = (&InstanceKey, &Instance)> {
        self.instances.iter().map(|(k, s)| (k, &s.instance))
    }

    /// The group of a running instance.
    pub fn group_id(&self, key: &InstanceKey) -> Option<&GroupId> {
        self.instances.get(key).map(|s| &s.id)
    }

    /// Groups of the last plan this node takes part in but cannot run yet: no primary address on that
    /// interface and family.
    pub fn waiting(&self) -> Vec<GroupId> {
        let Some(plan) = &self.plan else { return Vec::new() };
        plan.for_node(&self.node)
            .filter(|(g, _)| !self.primaries.contains_key(&(g.id.interface.clone(), g.id.family)))
            .map(|(g, _)| g.id.clone())
            .collect()
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Drops from `RemoveVips` the addresses another Master instance on the same interface still holds.
    fn filter_removals(&self, actions: Vec<NodeAction>) -> Vec<NodeAction> {
        // Adverts and timers arrive ten times a second per group and almost never remove anything: do not
        // rebuild the held set (every VIP of every master) for them. Measured: 4% of a core with 1000 VIPs.
        if !actions.iter().any(|na| matches!(na.action, Action::RemoveVips(_))) {
            return actions;
        }
        let held = self.held_vips();
        actions
            .into_iter()
            .filter_map(|mut na| {
                if let Action::RemoveVips(list) = &mut na.action {
                    if let Some(h) = held.get(&na.key.interface) {
                        list.retain(|a| !h.contains(a));
                    }
                    if list.is_empty() {
                        return None;
                    }
                }
                Some(na)
            })
            .collect()
    }
}

fn tag(key: &InstanceKey, actions: Vec<Action>, out: &mut Vec<NodeAction>) {
    out.extend(actions.into_iter().map(|action| NodeAction { key: key.clone(), action }));
}
