//! The data plane of `simulate`: every node runs the real VRRP [`Agent`] of openelb-core, the agents talk over
//! openelb-net's in-memory [`Segment`], and a client on the segment keeps a neighbour table, all in virtual
//! time. Nothing here decides who *should* hold a VIP; it replays what the speakers would do and records when
//! things happened, so a scenario's timeline shows detection, takeover and the client's view.
//!
//! Model choices (the README's "Scenarios" section repeats them for users):
//! - One L2 segment; a node's MAC is its `lab.openelb.kubesphere.io/mac-address` annotation (a made-up
//!   locally administered MAC otherwise). IPv4 adverts come from the InternalIP, IPv6 adverts from the
//!   link-local address derived from the MAC (as VRRPv3 for IPv6 requires).
//! - Only `vip` pools run VRRP. Layer2 and BGP VIPs keep the election-only view of [`crate::World`].
//! - The client pings every VIP all the time. With no working neighbour entry it resolves as soon as some node
//!   answers. An entry whose MAC stops answering is kept (Linux `arp_accept=0`: only gratuitous ARP from a new
//!   holder updates it) and given up [`NEIGH_GIVE_UP`] later (DELAY 5 s plus 3 unicast probes 1 s apart, the
//!   kernel's defaults for an entry already STALE), after which the client resolves again.
//! - Two nodes answering ARP for one VIP is a conflict only if it lasts longer than one advert interval: a
//!   preempting master and the master it replaces overlap for one delivery delay, which is how VRRP hands over.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use openelb_core::announce::VipTarget;
use openelb_core::vrrp::Time;
use openelb_core::vrrp::agent::{Agent, AgentConfig, InstanceKey, NodeAction};
use openelb_core::vrrp::plan::{self, Plan, PlanConfig, PlanContext, VipInput};
use openelb_core::vrrp::state::{Action, ConfigError, State};
use openelb_core::{IpFamily, Node, Protocol};
use openelb_net::memory::{Loss, Message, Segment, SegmentError};
use openelb_net::ops::Incoming;
use openelb_net::wire::MacAddr;
use serde::Serialize;

use crate::unknown_node::UnknownNode;

/// Why the data plane refused its settings or an event.
#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    /// The speaker's own check of its settings (the message says which).
    #[error("VRRP settings: {0}")]
    Settings(ConfigError),
    #[error("--loss {0}: must be between 0 and 1")]
    Loss(f64),
    #[error("node {CLIENT:?}: the name is taken by the simulated client; rename the node")]
    ClientName,
    #[error(transparent)]
    UnknownNode(#[from] UnknownNode),
    /// `known`: the nodes, comma-separated.
    #[error("{name:?} is not on the segment (nodes: {known}, and {CLIENT})")]
    NotOnSegment { name: String, known: String },
    #[error("partition: side `a` is empty")]
    EmptySide,
    #[error(transparent)]
    Segment(#[from] SegmentError),
}

/// The client's name on the segment; scenario partitions may name it.
pub const CLIENT: &str = "client";
/// How long the client keeps a neighbour entry whose MAC no longer answers before resolving again.
pub const NEIGH_GIVE_UP: Duration = Duration::from_secs(8);
/// The interface string of pools without `spec.interface` (the node's InternalIP NIC).
pub const DEFAULT_INTERFACE: &str = "eth0";
/// Bounds the work of one virtual instant, so a protocol bug shows up as a warning instead of a hang.
const MAX_WORK_PER_INSTANT: usize = 100_000;

#[derive(Debug, Clone)]
pub struct DataPlaneConfig {
    pub agent: AgentConfig,
    /// One-way delivery delay on the segment.
    pub delay: Duration,
    /// Probability that one copy of a message is lost.
    pub loss: f64,
    pub seed: u64,
    pub plan: PlanConfig,
}

/// `t=10.306`: virtual time at millisecond resolution (truncated).
pub fn fmt_time(t: Time) -> String {
    let ms = t.as_millis();
    format!("t={}.{:03}", ms / 1000, ms % 1000)
}

/// `306.3 ms` below a second, `3.050 s` above.
pub fn fmt_duration(d: Duration) -> String {
    let ms = ms_f64(d);
    if ms < 1000.0 { format!("{ms:.1} ms") } else { format!("{:.3} s", ms / 1000.0) }
}

pub fn ms_f64(t: Time) -> f64 {
    t.as_nanos() as f64 / 1e6
}

/// One line of a step's timeline.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entry {
    pub at_ms: f64,
    pub at: String,
    /// `event`, `kubernetes`, `plan`, `state`, `neigh`, `reach`, `lost`, `conflict` or `warning`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vips: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vrid: Option<u8>,
    /// State changes: old and new VRRP state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub text: String,
}

/// A node became Master of a group.
#[derive(Debug, Clone)]
pub struct MasterRecord {
    pub at: Time,
    pub node: String,
    pub vips: Vec<IpAddr>,
}

/// The client's neighbour entry for `vip` changed to `node`'s MAC (`None`: a MAC no node owns).
#[derive(Debug, Clone)]
pub struct NeighRecord {
    pub at: Time,
    pub vip: IpAddr,
    pub node: Option<String>,
}

/// The client could not reach `vip` from `start` until `end` (`None`: still out).
#[derive(Debug, Clone)]
pub struct OutageRecord {
    pub vip: IpAddr,
    pub start: Time,
    pub end: Option<Time>,
}

/// Several nodes answered ARP for one VIP at once, for longer than a handover takes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConflictView {
    pub at_ms: f64,
    pub at: String,
    pub vip: String,
    pub nodes: Vec<String>,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Power {
    Up,
    Crashed,
    Stopped,
}

#[derive(Debug, Clone)]
struct SimNode {
    mac: MacAddr,
    mac_known: bool,
    v4: Option<IpAddr>,
    v6: IpAddr,
    power: Power,
    agent: Option<Agent>,
    /// Interfaces whose primary addresses the agent has been given.
    interfaces: BTreeSet<String>,
}

/// What the client knows about one VIP.
#[derive(Debug, Clone, Default)]
struct ClientVip {
    reach: Option<String>,
    ever_reached: bool,
    /// When the entry's MAC stopped answering.
    down_since: Option<Time>,
    /// Gave up the entry and could not resolve again yet.
    failed: bool,
    mac: Option<MacAddr>,
    /// Several nodes answer: since when, who, and whether it was reported as a conflict.
    overlap: Option<(Time, Vec<String>, bool)>,
}

type Snapshot = BTreeMap<InstanceKey, (Vec<IpAddr>, u8)>;

pub struct DataPlane {
    cfg: DataPlaneConfig,
    segment: Segment,
    nodes: BTreeMap<String, SimNode>,
    plan: Plan,
    /// The speakers have had their first plan (the one at start, even when it has no VRRP group).
    planned: bool,
    now: Time,
    /// Gratuitous ARP / NA still to send: (time, sequence, node, address).
    bursts: BinaryHeap<Reverse<(Time, u64, String, IpAddr)>>,
    burst_seq: u64,
    client: BTreeMap<IpAddr, ClientVip>,
    log: Vec<Entry>,
    pub masters: Vec<MasterRecord>,
    pub neigh: Vec<NeighRecord>,
    pub outages: Vec<OutageRecord>,
    pub conflicts: Vec<ConflictView>,
    segment_conflicts_seen: usize,
}

/// Modified EUI-64 link-local address of a MAC (RFC 4291 appendix A).
fn link_local(mac: MacAddr) -> IpAddr {
    let m = mac.octets();
    IpAddr::V6(Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([m[0] ^ 0x02, m[1]]),
        u16::from_be_bytes([m[2], 0xff]),
        u16::from_be_bytes([0xfe, m[3]]),
        u16::from_be_bytes([m[4], m[5]]),
    ))
}

fn join_ips(v: &[IpAddr]) -> String {
    v.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

fn interface_of(t: &VipTarget) -> String {
    t.interface.clone().unwrap_or_else(|| DEFAULT_INTERFACE.to_string())
}

fn snapshot(agent: &Agent) -> Snapshot {
    agent.instances().map(|(k, i)| (k.clone(), (i.addresses().to_vec(), i.priority()))).collect()
}

impl DataPlane {
    /// Attaches every node (booted, no VIPs) and the client; agents get groups with the first [`Self::set_targets`].
    pub fn new(nodes: &[Node], cfg: DataPlaneConfig) -> Result<Self, DataPlaneError> {
        Agent::new("probe", cfg.agent.clone()).map_err(DataPlaneError::Settings)?;
        if !(0.0..=1.0).contains(&cfg.loss) {
            return Err(DataPlaneError::Loss(cfg.loss));
        }
        let mut segment = Segment::new(cfg.delay, cfg.seed);
        if cfg.loss > 0.0 {
            segment.set_loss(Loss::Random(cfg.loss));
        }
        segment.attach_client(CLIENT)?;
        let mut map = BTreeMap::new();
        for (i, n) in nodes.iter().enumerate() {
            if n.name == CLIENT {
                return Err(DataPlaneError::ClientName);
            }
            let idx = u16::try_from(i).unwrap_or(u16::MAX).to_be_bytes();
            let mac = n.mac.map(MacAddr).unwrap_or(MacAddr([0x02, 0, 0, 0, idx[0], idx[1]]));
            let v4 = n.internal_ip.filter(IpAddr::is_ipv4);
            let v6 = link_local(mac);
            segment.attach_node(&n.name, mac, n.internal_ip.unwrap_or(v6))?;
            let agent = Agent::new(n.name.clone(), cfg.agent.clone()).map_err(DataPlaneError::Settings)?;
            map.insert(
                n.name.clone(),
                SimNode {
                    mac,
                    mac_known: n.mac.is_some(),
                    v4,
                    v6,
                    power: Power::Up,
                    agent: Some(agent),
                    interfaces: BTreeSet::new(),
                },
            );
        }
        Ok(DataPlane {
            cfg,
            segment,
            nodes: map,
            plan: Plan::default(),
            planned: false,
            now: Time::ZERO,
            bursts: BinaryHeap::new(),
            burst_seq: 0,
            client: BTreeMap::new(),
            log: Vec::new(),
            masters: Vec::new(),
            neigh: Vec::new(),
            outages: Vec::new(),
            conflicts: Vec::new(),
            segment_conflicts_seen: 0,
        })
    }

    pub fn now(&self) -> Time {
        self.now
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn advert_interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.cfg.agent.advert_interval) * 10)
    }

    /// Drains the timeline recorded since the last call.
    pub fn take_log(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.log)
    }

    pub fn note(&mut self, kind: &'static str, node: Option<&str>, text: String) {
        self.push(kind, node, Vec::new(), None, text);
    }

    fn push(&mut self, kind: &'static str, node: Option<&str>, vips: Vec<IpAddr>, vrid: Option<u8>, text: String) {
        self.log.push(Entry {
            at_ms: ms_f64(self.now),
            at: fmt_time(self.now),
            kind,
            node: node.map(str::to_string),
            vips: vips.iter().map(ToString::to_string).collect(),
            vrid,
            from: None,
            to: None,
            text,
        });
    }

    // ---- the cluster's decisions ----

    /// Recomputes the VRRP plan from the announcement targets (keeping VRIDs of unchanged groups) and applies
    /// it to every running speaker. The client starts pinging every allocated VIP of a `vip` pool. The first
    /// call is every speaker's first plan even when it has no group, as the speaker applies its first snapshot:
    /// a VIP that appears later is new to them, and its first preference takes it at once (the agent's rule).
    pub fn set_targets(&mut self, targets: &[VipTarget]) -> Result<(), DataPlaneError> {
        let vrrp: Vec<&VipTarget> = targets.iter().filter(|t| t.protocol == Protocol::Vip).collect();
        let inputs: Vec<VipInput> = vrrp
            .iter()
            .filter(|t| !t.preference.is_empty())
            .map(|t| VipInput { vip: t.vip, interface: interface_of(t), candidates: t.preference.clone() })
            .collect();
        let new =
            plan::plan(&inputs, &self.cfg.plan, &PlanContext { previous: Some(&self.plan), ..Default::default() });
        let vips: BTreeSet<IpAddr> = vrrp.iter().map(|t| t.vip).collect();
        self.client.retain(|v, _| vips.contains(v));
        for v in vips {
            self.client.entry(v).or_default();
        }
        if new == self.plan && self.planned {
            return Ok(());
        }
        self.planned = true;
        self.log_plan_change(&new);
        self.plan = new;
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for n in names {
            self.apply_plan_to(&n);
        }
        Ok(())
    }

    fn log_plan_change(&mut self, new: &Plan) {
        let old = self.plan.clone();
        for g in &new.groups {
            if old.group(&g.id) == Some(g) {
                continue;
            }
            let prios: Vec<String> = g.priorities.iter().map(|(n, p)| format!("{n} {p}")).collect();
            let text = format!(
                "VRRP group VRID {} on {} for {}: priorities {}",
                g.vrid,
                g.id.interface,
                join_ips(&g.vips),
                prios.join(", ")
            );
            self.push("plan", None, g.vips.clone(), Some(g.vrid), text);
        }
        for g in &old.groups {
            if new.group(&g.id).is_none() {
                let text = format!("VRRP group VRID {} for {} ends (candidates changed)", g.vrid, join_ips(&g.vips));
                self.push("plan", None, g.vips.clone(), Some(g.vrid), text);
            }
        }
    }

    fn apply_plan_to(&mut self, name: &str) {
        let plan = self.plan.clone();
        let now = self.now;
        let ifaces: BTreeSet<String> = plan.for_node(name).map(|(g, _)| g.id.interface.clone()).collect();
        let peers: Vec<IpAddr> = self.nodes.values().flat_map(|n| n.v4.into_iter().chain([n.v6])).collect();
        let Some(n) = self.nodes.get_mut(name) else { return };
        let Some(agent) = n.agent.as_mut() else { return };
        agent.set_known_peers(peers);
        let mut out = Vec::new();
        for iface in ifaces {
            if n.interfaces.insert(iface.clone()) {
                if let Some(v4) = n.v4 {
                    out.extend(agent.set_primary(now, &iface, v4));
                }
                out.extend(agent.set_primary(now, &iface, n.v6));
            }
        }
        let snap = snapshot(agent);
        out.extend(agent.apply_plan(now, &plan));
        self.run_actions(name, out, &snap);
    }

    // ---- scenario events on machines and the network ----

    fn node_mut(&mut self, name: &str) -> Result<&mut SimNode, UnknownNode> {
        let known = self.nodes.keys().map(String::as_str);
        let known = UnknownNode::new(name, known);
        self.nodes.get_mut(name).ok_or(known)
    }

    pub fn is_running(&self, name: &str) -> bool {
        self.nodes.get(name).is_some_and(|n| n.power == Power::Up)
    }

    /// The machine dies: the speaker stops mid-flight, the link goes down, VIPs stay on the dead NIC.
    /// False if it was not running.
    pub fn crash(&mut self, name: &str) -> Result<bool, DataPlaneError> {
        let n = self.node_mut(name)?;
        if n.power != Power::Up {
            return Ok(false);
        }
        n.power = Power::Crashed;
        n.agent = None;
        self.segment.set_link(name, false)?;
        self.bursts.retain(|Reverse((_, _, node, _))| node != name);
        Ok(true)
    }

    /// SIGTERM to the speaker (priority-0 adverts, VIPs removed), then power off.
    pub fn stop(&mut self, name: &str) -> Result<bool, DataPlaneError> {
        let now = self.now;
        let n = self.node_mut(name)?;
        if n.power != Power::Up {
            return Ok(false);
        }
        n.power = Power::Stopped;
        let (out, snap) = match n.agent.take() {
            Some(mut agent) => {
                let snap = snapshot(&agent);
                (agent.shutdown(now), snap)
            }
            None => (Vec::new(), Snapshot::new()),
        };
        // The link goes down after the release has left: what is in flight still arrives.
        self.run_actions(name, out, &snap);
        self.segment.set_link(name, false)?;
        self.bursts.retain(|Reverse((_, _, node, _))| node != name);
        Ok(true)
    }

    /// The machine boots: no VIPs on its NIC (the speaker also removes leftovers), link up, a fresh speaker
    /// with the current plan. False if it was running.
    pub fn boot(&mut self, name: &str) -> Result<bool, DataPlaneError> {
        let cfg = self.cfg.agent.clone();
        let n = self.node_mut(name)?;
        if n.power == Power::Up {
            return Ok(false);
        }
        n.power = Power::Up;
        n.interfaces.clear();
        n.agent = Some(Agent::new(name, cfg).map_err(DataPlaneError::Settings)?);
        for ip in self.segment.vips_of(name) {
            self.segment.remove_vip(name, ip)?;
        }
        self.segment.set_link(name, true)?;
        self.apply_plan_to(name);
        Ok(true)
    }

    /// The node's link to the segment goes down or up; its speaker sees the interface change.
    pub fn set_link(&mut self, name: &str, up: bool) -> Result<bool, DataPlaneError> {
        let now = self.now;
        let n = self.node_mut(name)?;
        if n.power != Power::Up || self.segment.is_up(name) == up {
            return Ok(false);
        }
        let n = self.node_mut(name)?;
        let mut out = Vec::new();
        if let Some(agent) = n.agent.as_mut() {
            for iface in &n.interfaces {
                out.extend(if up { agent.interface_up(now, iface) } else { agent.interface_down(now, iface) });
            }
        }
        self.segment.set_link(name, up)?;
        self.run_actions(name, out, &Snapshot::new());
        Ok(true)
    }

    fn check_party(&self, name: &str) -> Result<(), DataPlaneError> {
        if name == CLIENT || self.nodes.contains_key(name) {
            return Ok(());
        }
        let known = self.nodes.keys().cloned().collect::<Vec<_>>().join(", ");
        Err(DataPlaneError::NotOnSegment { name: name.to_string(), known })
    }

    /// Parties on side `b`, or everyone not on side `a` when `b` is empty.
    fn other_side(&self, a: &[String], b: &[String]) -> Result<Vec<String>, DataPlaneError> {
        for p in a.iter().chain(b) {
            self.check_party(p)?;
        }
        if !b.is_empty() {
            return Ok(b.to_vec());
        }
        Ok(self.nodes.keys().cloned().chain([CLIENT.to_string()]).filter(|p| !a.contains(p)).collect())
    }

    pub fn partition(&mut self, a: &[String], b: &[String]) -> Result<(), DataPlaneError> {
        if a.is_empty() {
            return Err(DataPlaneError::EmptySide);
        }
        let b = self.other_side(a, b)?;
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let b: Vec<&str> = b.iter().map(String::as_str).collect();
        self.segment.partition_sets(&a, &b);
        Ok(())
    }

    pub fn heal(&mut self, sides: Option<(&[String], &[String])>) -> Result<(), DataPlaneError> {
        let Some((a, b)) = sides else {
            self.segment.heal_all();
            return Ok(());
        };
        let b = self.other_side(a, b)?;
        for x in a {
            for y in &b {
                self.segment.heal(x, y);
            }
        }
        Ok(())
    }

    // ---- the event loop ----

    fn primary(&self, node: &str, family: IpFamily) -> Option<IpAddr> {
        let n = self.nodes.get(node)?;
        match family {
            IpFamily::V4 => n.v4,
            IpFamily::V6 => Some(n.v6),
        }
    }

    fn instance_info(&self, node: &str, key: &InstanceKey, snap: &Snapshot) -> (Vec<IpAddr>, Option<u8>) {
        if let Some(i) = self.nodes.get(node).and_then(|n| n.agent.as_ref()).and_then(|a| a.instance(key)) {
            return (i.addresses().to_vec(), Some(i.priority()));
        }
        if let Some((v, p)) = snap.get(key) {
            return (v.clone(), Some(*p));
        }
        let g = self
            .plan
            .groups
            .iter()
            .find(|g| g.vrid == key.vrid && g.id.interface == key.interface && g.id.family == key.family);
        (g.map(|g| g.vips.clone()).unwrap_or_default(), g.and_then(|g| g.priority_of(node)))
    }

    fn run_actions(&mut self, node: &str, actions: Vec<NodeAction>, snap: &Snapshot) {
        let now = self.now;
        let garp: BTreeSet<InstanceKey> =
            actions.iter().filter(|na| matches!(na.action, Action::Announce { .. })).map(|na| na.key.clone()).collect();
        for na in actions {
            match na.action {
                Action::SendAdvert(advert) => {
                    if let Some(src) = self.primary(node, na.key.family) {
                        // A down link sends nothing; the segment counts that as zero copies, not an error.
                        let _ = self.segment.send(node, Message::Advert { src, advert }, &[], now);
                    }
                }
                Action::AddVips(v) => {
                    for ip in v {
                        let _ = self.segment.add_vip(node, ip);
                    }
                }
                Action::RemoveVips(v) => {
                    for ip in v {
                        let _ = self.segment.remove_vip(node, ip);
                    }
                }
                Action::Announce { addresses, count, spacing } => {
                    for i in 0..count {
                        let at = now.saturating_add(spacing.saturating_mul(i));
                        for ip in &addresses {
                            self.burst_seq += 1;
                            self.bursts.push(Reverse((at, self.burst_seq, node.to_string(), *ip)));
                        }
                    }
                }
                Action::StateChanged { from, to, reason } => {
                    let (vips, prio) = self.instance_info(node, &na.key, snap);
                    if to == State::Master {
                        self.masters.push(MasterRecord { at: now, node: node.to_string(), vips: vips.clone() });
                    }
                    let announce = match na.key.family {
                        IpFamily::V4 => "GARP sent",
                        IpFamily::V6 => "unsolicited NA sent",
                    };
                    let note = if to == State::Master && garp.contains(&na.key) {
                        format!(", {announce}")
                    } else {
                        String::new()
                    };
                    let prio = prio.map(|p| format!(", priority {p}")).unwrap_or_default();
                    let text = format!(
                        "{node} {to} for {} (VRID {}{prio}, was {from}): {reason}{note}",
                        join_ips(&vips),
                        na.key.vrid
                    );
                    self.log.push(Entry {
                        at_ms: ms_f64(now),
                        at: fmt_time(now),
                        kind: "state",
                        node: Some(node.to_string()),
                        vips: vips.iter().map(ToString::to_string).collect(),
                        vrid: Some(na.key.vrid),
                        from: Some(from.to_string()),
                        to: Some(to.to_string()),
                        text,
                    });
                }
                Action::ArmTimer { .. } | Action::CancelTimer(_) => {}
            }
        }
    }

    /// The earliest moment anything happens: a delivery, a timer, an announcement, a client wake-up.
    fn next_time(&self) -> Option<Time> {
        let agents = self.nodes.values().filter_map(|n| n.agent.as_ref()?.next_deadline().map(|(t, _)| t));
        let bursts = self.bursts.peek().map(|Reverse((t, ..))| *t);
        let threshold = self.advert_interval();
        let client = self.client.iter().flat_map(|(vip, st)| {
            let give_up = (st.reach.is_none() && !st.failed && self.segment.neighbour(CLIENT, *vip).is_some())
                .then_some(st.down_since)
                .flatten()
                .map(|d| d.saturating_add(NEIGH_GIVE_UP));
            let conflict = st.overlap.as_ref().filter(|o| !o.2).map(|o| o.0.saturating_add(threshold));
            give_up.into_iter().chain(conflict)
        });
        let client: Vec<Time> = client.filter(|t| *t > self.now).collect();
        agents.chain(bursts).chain(self.segment.next_delivery_time()).chain(client).min()
    }

    /// Runs everything due before `until` (and at `until` when `inclusive`), then sets the clock to `until`.
    pub fn run_until(&mut self, until: Time, inclusive: bool) {
        let mut stuck = 0;
        while let Some(t) = self.next_time() {
            if t > until || (!inclusive && t >= until) {
                break;
            }
            if t <= self.now {
                stuck += 1;
                if stuck > 3 {
                    self.note("warning", None, "the simulation made no progress at this instant; skipping it".into());
                    break;
                }
            } else {
                stuck = 0;
            }
            self.now = self.now.max(t);
            self.process_instant();
        }
        self.now = self.now.max(until);
    }

    /// Handles everything due at the current instant: deliveries, timers, announcements, then the client.
    pub fn process_instant(&mut self) {
        let t = self.now;
        let empty = Snapshot::new();
        let mut work = 0usize;
        loop {
            let mut progressed = false;
            for d in self.segment.poll(t) {
                progressed = true;
                let Some(Incoming::Advert(rx)) = d.incoming() else { continue };
                let Some(n) = self.nodes.get_mut(&d.to) else { continue };
                let Some(agent) = n.agent.as_mut() else { continue };
                let mut out = Vec::new();
                // VRIDs are unique per family across interfaces (the plan's global scope), so offering the advert
                // to every interface reaches exactly the instance it is for.
                for iface in &n.interfaces {
                    out.extend(agent.handle_advert(t, iface, rx.clone()));
                }
                self.run_actions(&d.to, out, &empty);
            }
            let names: Vec<String> = self.nodes.keys().cloned().collect();
            for name in &names {
                while let Some(agent) = self.nodes.get_mut(name).and_then(|n| n.agent.as_mut()) {
                    let Some((_, key)) = agent.next_deadline().filter(|(at, _)| *at <= t) else { break };
                    let out = agent.timer_fired(t, &key);
                    self.run_actions(name, out, &empty);
                    progressed = true;
                    work += 1;
                    if work > MAX_WORK_PER_INSTANT {
                        break;
                    }
                }
            }
            while self.bursts.peek().is_some_and(|Reverse((at, ..))| *at <= t) {
                let Some(Reverse((_, _, node, ip))) = self.bursts.pop() else { break };
                progressed = true;
                let holds = self.is_running(&node) && self.segment.vips_of(&node).contains(&ip);
                if let (true, Some(mac)) = (holds, self.segment.mac_of(&node)) {
                    let _ = self.segment.send(&node, Message::Announce { ip, mac }, &[], t);
                }
            }
            work += 1;
            if work > MAX_WORK_PER_INSTANT {
                self.note(
                    "warning",
                    None,
                    format!("more than {MAX_WORK_PER_INSTANT} actions at one instant; cut short"),
                );
                break;
            }
            if !progressed {
                break;
            }
        }
        self.client_tick(t);
    }

    // ---- the client ----

    fn owner_of(&self, mac: MacAddr) -> Option<String> {
        self.nodes.iter().find(|(_, n)| n.mac == mac).map(|(name, _)| name.clone())
    }

    fn why_unreachable(&self, node: &str, vip: IpAddr) -> String {
        match self.nodes.get(node).map(|n| n.power) {
            Some(Power::Crashed) => format!("{node} crashed"),
            Some(Power::Stopped) => format!("{node} is shut down"),
            _ if !self.segment.is_up(node) => format!("{node}'s link is down"),
            _ if !self.segment.connected(CLIENT, node) => format!("the client is partitioned from {node}"),
            _ if !self.segment.vips_of(node).contains(&vip) => format!("{node} no longer holds it"),
            _ => format!("{node} does not answer"),
        }
    }

    fn client_tick(&mut self, t: Time) {
        let vips: Vec<IpAddr> = self.client.keys().copied().collect();
        let threshold = self.advert_interval();
        for vip in vips {
            let st = self.client.get(&vip).cloned().unwrap_or_default();
            let entry = self.segment.neighbour(CLIENT, vip);
            let mut reach = self.segment.reaches(CLIENT, vip);
            let gave_up = st.failed || st.down_since.is_some_and(|d| t >= d.saturating_add(NEIGH_GIVE_UP));
            let mut resolved = false;
            if reach.is_none() && (entry.is_none() || gave_up) && !self.segment.answering(CLIENT, vip).is_empty() {
                let _ = self.segment.resolve(CLIENT, vip, t);
                resolved = true;
                reach = self.segment.reaches(CLIENT, vip);
            }
            let mac = self.segment.neighbour(CLIENT, vip);
            let mut next = st.clone();
            next.failed = reach.is_none() && entry.is_some() && gave_up;

            if mac != st.mac {
                let node = mac.and_then(|m| self.owner_of(m));
                self.neigh.push(NeighRecord { at: t, vip, node: node.clone() });
                let how = match (resolved, vip.is_ipv4()) {
                    (true, true) => "ARP reply",
                    (true, false) => "neighbor advertisement",
                    (false, true) => "gratuitous ARP",
                    (false, false) => "unsolicited NA",
                };
                let mac_text = mac.map(|m| m.to_string()).unwrap_or_default();
                let who = node.as_deref().unwrap_or("unknown node");
                self.push(
                    "neigh",
                    node.as_deref(),
                    vec![vip],
                    None,
                    format!("client ip neigh {vip} -> {mac_text} ({who}), from {how}"),
                );
                next.mac = mac;
            }
            match (&st.reach, &reach) {
                (None, Some(n)) => {
                    let text = match st.down_since {
                        Some(d) if st.ever_reached => {
                            if let Some(o) = self.outages.iter_mut().rev().find(|o| o.vip == vip && o.end.is_none()) {
                                o.end = Some(t);
                            }
                            format!("client reaches {vip} again via {n} (outage {})", fmt_duration(t.saturating_sub(d)))
                        }
                        _ => format!("client reaches {vip} via {n}"),
                    };
                    self.push("reach", Some(n), vec![vip], None, text);
                    next.ever_reached = true;
                    next.down_since = None;
                }
                (Some(old), None) => {
                    let why = self.why_unreachable(old, vip);
                    self.push(
                        "lost",
                        Some(old),
                        vec![vip],
                        None,
                        format!("client loses {vip}: its entry points at {old}, and {why}"),
                    );
                    self.outages.push(OutageRecord { vip, start: t, end: None });
                    next.down_since = Some(t);
                }
                (Some(old), Some(n)) if old != n => {
                    self.push(
                        "reach",
                        Some(n),
                        vec![vip],
                        None,
                        format!("client now reaches {vip} via {n}, without a gap"),
                    );
                }
                _ => {}
            }
            next.reach = reach;

            let answering = self.segment.answering(CLIENT, vip);
            if answering.len() > 1 {
                let (since, reported) = match &st.overlap {
                    Some((since, _, reported)) => (*since, *reported),
                    None => (t, false),
                };
                let mut reported_now = reported;
                if !reported && t >= since.saturating_add(threshold) {
                    let text = format!(
                        "WARNING: {} nodes answer ARP for {vip}: {} (since {}); the client's traffic goes to whichever answered last",
                        answering.len(),
                        answering.join(", "),
                        fmt_time(since)
                    );
                    self.conflicts.push(ConflictView {
                        at_ms: ms_f64(since),
                        at: fmt_time(since),
                        vip: vip.to_string(),
                        nodes: answering.clone(),
                        text: text.clone(),
                    });
                    self.push("conflict", None, vec![vip], None, text);
                    reported_now = true;
                }
                next.overlap = Some((since, answering, reported_now));
            } else if let Some((since, nodes, true)) = &st.overlap {
                let now = match answering.first() {
                    Some(n) => format!("only {n} answers"),
                    None => "nobody answers".to_string(),
                };
                let text = format!(
                    "{vip}: {now} now; {} answered together for {}",
                    nodes.join(" and "),
                    fmt_duration(t.saturating_sub(*since))
                );
                self.push("conflict", None, vec![vip], None, text);
                next.overlap = None;
            } else {
                next.overlap = None;
            }
            self.client.insert(vip, next);
        }
        // ARP requests answered twice (the segment records them when the client resolves).
        let new: Vec<_> = self.segment.conflicts().iter().skip(self.segment_conflicts_seen).cloned().collect();
        self.segment_conflicts_seen += new.len();
        for c in new {
            let text =
                format!("WARNING: the client's ARP request for {} was answered by {}", c.ip, c.holders.join(", "));
            self.conflicts.push(ConflictView {
                at_ms: ms_f64(c.at),
                at: fmt_time(c.at),
                vip: c.ip.to_string(),
                nodes: c.holders.clone(),
                text: text.clone(),
            });
            self.push("conflict", None, vec![c.ip], None, text);
        }
    }

    // ---- views ----

    pub fn runs_vrrp(&self, vip: IpAddr) -> bool {
        self.client.contains_key(&vip)
    }

    /// Running nodes with their link up that have `vip` configured, on any side of a partition.
    pub fn live_holders(&self, vip: IpAddr) -> Vec<String> {
        self.segment.holders(vip).into_iter().filter(|n| self.segment.is_up(n)).collect()
    }

    /// Nodes that are down or cut off but still have `vip` configured (a crashed machine keeps its addresses).
    pub fn stale_holders(&self, vip: IpAddr) -> Vec<String> {
        self.segment.holders(vip).into_iter().filter(|n| !self.segment.is_up(n)).collect()
    }

    /// Nodes that would answer the client's ARP request for `vip` now.
    pub fn answering(&self, vip: IpAddr) -> Vec<String> {
        self.segment.answering(CLIENT, vip)
    }

    /// The node the client's traffic to `vip` reaches now.
    pub fn client_reaches(&self, vip: IpAddr) -> Option<String> {
        self.segment.reaches(CLIENT, vip)
    }

    /// `ip neigh` on the client: REACHABLE when its MAC answers, STALE while the kernel still probes it,
    /// FAILED once given up with nobody answering.
    pub fn ip_neigh(&self, vip: IpAddr) -> Option<String> {
        let mac = self.segment.neighbour(CLIENT, vip)?;
        let st = self.client.get(&vip);
        if st.is_some_and(|s| s.failed) {
            return Some(format!("{vip} dev eth0 FAILED"));
        }
        let state = if self.segment.reaches(CLIENT, vip).is_some() { "REACHABLE" } else { "STALE" };
        let shown = match self.owner_of(mac).and_then(|o| self.nodes.get(&o).map(|n| (o.clone(), n.mac_known))) {
            Some((owner, false)) => {
                format!("<MAC of {owner} unknown: add annotation {}>", openelb_core::ANNOTATION_NODE_MAC)
            }
            _ => mac.to_string(),
        };
        Some(format!("{vip} dev eth0 lladdr {shown} {state}"))
    }

    /// The node's MAC as the manifests give it.
    pub fn known_mac(&self, node: &str) -> Option<String> {
        self.nodes.get(node).filter(|n| n.mac_known).map(|n| n.mac.to_string())
    }

    /// Whether a Pod on `pod_node` answers traffic entering at `entry`: its machine is up and the two can talk.
    pub fn serves(&self, entry: &str, pod_node: &str) -> bool {
        entry == pod_node || (self.segment.is_up(pod_node) && self.segment.connected(entry, pod_node))
    }

    /// `up`, `crashed`, `stopped` or `link down`.
    pub fn node_state(&self, node: &str) -> &'static str {
        match self.nodes.get(node).map(|n| n.power) {
            Some(Power::Crashed) => "crashed",
            Some(Power::Stopped) => "stopped",
            Some(Power::Up) if !self.segment.is_up(node) => "link down",
            _ => "up",
        }
    }

    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// Pairs of parties that cannot hear each other now.
    pub fn partitions(&self) -> Vec<(String, String)> {
        let parties: Vec<&str> = self.nodes.keys().map(String::as_str).chain([CLIENT]).collect();
        let mut out = Vec::new();
        for (i, a) in parties.iter().enumerate() {
            for b in &parties[i + 1..] {
                if !self.segment.connected(a, b) {
                    out.push((a.to_string(), b.to_string()));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_is_modified_eui64() {
        let ip = link_local(MacAddr([0x52, 0x54, 0x22, 0xa3, 0x9a, 0xd9]));
        assert_eq!(ip, "fe80::5054:22ff:fea3:9ad9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn times_print_at_millisecond_resolution() {
        assert_eq!(fmt_time(Duration::from_micros(10_306_250)), "t=10.306");
        assert_eq!(fmt_duration(Duration::from_micros(306_250)), "306.2 ms");
        assert_eq!(fmt_duration(Duration::from_millis(3050)), "3.050 s");
    }
}
