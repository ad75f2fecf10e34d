//! All VRRP instances of one node, driven from a [`Plan`]. The agent turns plan changes into instance
//! lifecycles (start, re-prioritise, re-address, release) and routes adverts and timer expiries by
//! (interface, family, VRID). Its output is the instances' actions tagged with their [`InstanceKey`], so the
//! driver (the tokio speaker, or the virtual-time simulator) knows which interface to act on.
//!
//! Timers can be driven either way: apply every `ArmTimer`/`CancelTimer` action, or ignore them and poll
//! [`Agent::next_deadline`] after every call. Both see the same deadlines.
//!
//! Choices:
//! - The interface is the plan's interface string (the pool's spec); a driver that resolves `can_reach:<ip>`
//!   keeps the mapping and passes the same string back to [`Agent::handle_advert`].
//! - A group participates only once [`Agent::set_primary`] has given this node's own address on that interface
//!   and family (the advert source and tie-breaker); until then it is listed by [`Agent::waiting`].
//! - Re-grouping (a candidate joins or leaves, the first preference changes, a VRID moves, a part boundary
//!   shifts) replaces instances. When this node holds some of a new group's VIPs (it is Master of an instance
//!   that had them), the new instance starts as Master ([`Input::StartAsMaster`]) whether or not this node is the
//!   new group's first preference: otherwise every node would start the new group as Backup and the VIPs would
//!   be gone for a Master_Down_Interval. If this node is not the first preference, the first preference sees a
//!   lower-priority master and preempts after its preempt delay, as after any return. In a consistent cluster
//!   only the one node that was Master of a VIP holds it, so only that node starts the new group as Master; if
//!   a new group merges VIPs from two holders, both start as Master and the lower priority steps down on the
//!   first advert it hears (sent at once on becoming Master).
//! - A replaced Master whose VIPs all stay on this node (through the new Master instances) retires without the
//!   priority-0 advert ([`Input::Retire`]): a release would let the old group's backups on nodes that have not
//!   applied the new plan yet take the VIPs after Skew_Time. Otherwise it shuts down with the release.
//! - `RemoveVips` never names an address that another Master instance of this node on the same interface holds
//!   after the call, so an address handed from one instance to another never leaves the NIC.
//! - After [`Agent::shutdown`] the agent is stopped: later plans are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use super::plan::{GroupId, Plan};
use super::state::{
    Action, Config, ConfigError, DEFAULT_ADVERT_INTERVAL_CS, DEFAULT_GARP_COUNT, DEFAULT_GARP_SPACING,
    DEFAULT_PREEMPT_DELAY, Input, Instance, State, TimerKind,
};
use super::{Received, Time};
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
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            advert_interval: DEFAULT_ADVERT_INTERVAL_CS,
            preempt: true,
            preempt_delay: DEFAULT_PREEMPT_DELAY,
            garp_count: DEFAULT_GARP_COUNT,
            garp_spacing: DEFAULT_GARP_SPACING,
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
    stopped: bool,
}

impl Agent {
    pub fn new(node: impl Into<String>, config: AgentConfig) -> Result<Self, ConfigError> {
        // Validate the shared settings once with a throwaway instance, so later instance creation cannot fail
        // for their sake.
        let probe = Config {
            advert_interval: config.advert_interval,
            ..Config::new(1, IpAddr::from([0, 0, 0, 0]), Vec::new())
        };
        Instance::new(probe)?;
        Ok(Agent {
            node: node.into(),
            config,
            primaries: BTreeMap::new(),
            instances: BTreeMap::new(),
            plan: None,
            stopped: false,
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Records this node's own address on `interface` (for its family) and re-applies the last plan.
    pub fn set_primary(&mut self, now: Time, interface: &str, addr: IpAddr) -> Vec<NodeAction> {
        self.primaries.insert((interface.to_string(), IpFamily::of(&addr)), addr);
        match self.plan.take() {
            Some(plan) => self.apply_plan(now, &plan),
            None => Vec::new(),
        }
    }

    /// Brings the instances in line with `plan`: new groups start, changed ones get their new priority and
    /// addresses, removed ones shut down (a Master sends priority 0 and removes its VIPs).
    pub fn apply_plan(&mut self, now: Time, plan: &Plan) -> Vec<NodeAction> {
        if self.stopped {
            return Vec::new();
        }
        self.plan = Some(plan.clone());
        let held_before = self.held_vips();

        let mut desired: BTreeMap<InstanceKey, (GroupId, Config)> = BTreeMap::new();
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
            };
            desired.insert(key, (group.id.clone(), cfg));
        }

        let stale: Vec<InstanceKey> = self
            .instances
            .iter()
            .filter(|(k, slot)| match desired.get(k) {
                None => true,
                Some((id, cfg)) => slot.id != *id || slot.instance.config().primary != cfg.primary,
            })
            .map(|(k, _)| k.clone())
            .collect();
        // What this node will hold afterwards, by interface: kept Master instances' new addresses, and those of
        // new instances that start as Master because this node holds some of their VIPs now.
        let mut held_after: BTreeMap<&str, BTreeSet<IpAddr>> = BTreeMap::new();
        for (key, (_, cfg)) in &desired {
            let kept_master =
                !stale.contains(key) && self.instances.get(key).is_some_and(|s| s.instance.state() == State::Master);
            let new_master = !self.instances.contains_key(key) || stale.contains(key);
            let holds = held_before.get(&key.interface).is_some_and(|h| cfg.addresses.iter().any(|a| h.contains(a)));
            if kept_master || (new_master && holds) {
                held_after.entry(key.interface.as_str()).or_default().extend(cfg.addresses.iter().copied());
            }
        }

        let mut out = Vec::new();
        // Removals and replacements first (their VRIDs may be reused right away), then starts and updates.
        for key in &stale {
            if let Some(mut slot) = self.instances.remove(key) {
                let keeps_all = slot.instance.state() == State::Master
                    && held_after
                        .get(key.interface.as_str())
                        .is_some_and(|h| slot.instance.addresses().iter().all(|a| h.contains(a)));
                let input = if keeps_all { Input::Retire } else { Input::Shutdown };
                tag(key, slot.instance.handle(now, input), &mut out);
            }
        }
        for (key, (id, cfg)) in desired {
            if let Some(slot) = self.instances.get_mut(&key) {
                let actions = slot.instance.handle(now, Input::SetPriority(cfg.priority));
                tag(&key, actions, &mut out);
                let actions = slot.instance.handle(now, Input::SetAddresses(cfg.addresses));
                tag(&key, actions, &mut out);
                continue;
            }
            let holds = held_before.get(&key.interface).is_some_and(|h| cfg.addresses.iter().any(|a| h.contains(a)));
            let Ok(mut instance) = Instance::new(cfg) else { continue };
            let start = if holds { Input::StartAsMaster } else { Input::Start };
            tag(&key, instance.handle(now, start), &mut out);
            self.instances.insert(key, Slot { id, instance });
        }
        self.filter_removals(out)
    }

    /// Dispatches a received advert by (interface, family of its source, VRID); unknown instances drop it.
    pub fn handle_advert(&mut self, now: Time, interface: &str, rx: Received) -> Vec<NodeAction> {
        let key = InstanceKey { interface: interface.to_string(), family: IpFamily::of(&rx.src), vrid: rx.advert.vrid };
        let mut out = Vec::new();
        if let Some(slot) = self.instances.get_mut(&key) {
            tag(&key, slot.instance.handle(now, Input::Advert(rx)), &mut out);
        }
        self.filter_removals(out)
    }

    pub fn timer_fired(&mut self, now: Time, key: &TimerKey) -> Vec<NodeAction> {
        let mut out = Vec::new();
        if let Some(slot) = self.instances.get_mut(&key.instance) {
            tag(&key.instance, slot.instance.handle(now, Input::TimerExpired(key.kind)), &mut out);
        }
        self.filter_removals(out)
    }

    pub fn interface_down(&mut self, now: Time, interface: &str) -> Vec<NodeAction> {
        self.for_interface(now, interface, Input::InterfaceDown)
    }

    pub fn interface_up(&mut self, now: Time, interface: &str) -> Vec<NodeAction> {
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
        self.instances
            .iter()
            .filter_map(|(k, s)| {
                s.instance.next_deadline().map(|(t, kind)| (t, TimerKey { instance: k.clone(), kind }))
            })
            .min_by(|a, b| a.0.cmp(&b.0))
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
