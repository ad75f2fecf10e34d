//! Several per-node agents wired together by a tiny virtual-time harness: every advert reaches the other live,
//! connected agents at the same instant, and the earliest armed timer fires next.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use openelb_core::election::rank;
use openelb_core::vrrp::agent::{Agent, AgentConfig, NodeAction};
use openelb_core::vrrp::consts::MULTICAST_V4;
use openelb_core::vrrp::plan::{Group, GroupId, Plan, PlanConfig, PlanContext, VipInput, plan};
use openelb_core::vrrp::state::{Action, State, TimerKind, master_down_interval, skew_time};
use openelb_core::vrrp::transition::TransitionReason;
use openelb_core::vrrp::{PRIORITY_RELEASE, Received, Time};
use proptest::prelude::*;

const IFACE: &str = "eth0";
const NAMES: [&str; 3] = ["master1", "worker-p001", "worker-p002"];

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

fn ms(v: u64) -> Time {
    Duration::from_millis(v)
}

fn after(previous: Option<&Plan>) -> PlanContext<'_> {
    PlanContext { previous, ..PlanContext::default() }
}

/// The seed's pool 192.0.2.91-100, every VIP with all three nodes as candidates (Cluster policy).
fn seed_plan() -> Plan {
    let vips: Vec<VipInput> = (91..=100)
        .map(|last| {
            let vip = ip(last);
            let order = rank(&vip, &NAMES);
            VipInput { vip, interface: IFACE.into(), candidates: order.iter().map(|s| s.to_string()).collect() }
        })
        .collect();
    plan(&vips, &PlanConfig::default(), &after(None))
}

struct Node {
    addr: IpAddr,
    agent: Agent,
    alive: bool,
}

/// Every node's agent on one in-memory LAN in virtual time, with what each did.
struct VirtualLan {
    nodes: Vec<Node>,
    plan: Plan,
    config: AgentConfig,
    now: Time,
    cut: BTreeSet<(usize, usize)>,
    /// (time, node, vips) for every AddVips.
    takeovers: Vec<(Time, usize, Vec<IpAddr>)>,
    adverts: Vec<(Time, usize, u8)>,
    /// (time, node, vips) for every Announce.
    announces: Vec<(Time, usize, Vec<IpAddr>)>,
    /// The addresses on each node's NIC, replaying AddVips/RemoveVips in order as a driver would.
    nics: Vec<BTreeSet<IpAddr>>,
    /// Every change of a VIP's set of live NIC holders, as clients would see it: (time, vip, holders).
    history: Vec<(Time, IpAddr, BTreeSet<usize>)>,
    /// (time, node, VRID, reason) for every change to Master.
    masters: Vec<(Time, usize, u8, TransitionReason)>,
}

impl VirtualLan {
    fn new(config: AgentConfig) -> VirtualLan {
        VirtualLan::with_plan(config, seed_plan())
    }

    fn with_plan(config: AgentConfig, plan: Plan) -> VirtualLan {
        let mut lan = VirtualLan {
            nodes: Vec::new(),
            plan,
            config,
            now: Time::ZERO,
            cut: BTreeSet::new(),
            takeovers: Vec::new(),
            adverts: Vec::new(),
            announces: Vec::new(),
            nics: vec![BTreeSet::new(); NAMES.len()],
            history: Vec::new(),
            masters: Vec::new(),
        };
        for (i, name) in NAMES.iter().enumerate() {
            lan.nodes.push(Node {
                // restart() makes these addresses the known peers.
                addr: ip(2 + i as u8),
                agent: Agent::new(*name, lan.config.clone()).unwrap(),
                alive: false,
            });
            lan.restart(i);
        }
        lan
    }

    fn connected(&self, a: usize, b: usize) -> bool {
        !self.cut.contains(&(a.min(b), a.max(b)))
    }

    fn deliver(&mut self, from: usize, actions: Vec<NodeAction>) {
        let mut queue: VecDeque<(usize, NodeAction)> = actions.into_iter().map(|a| (from, a)).collect();
        let mut budget = 100_000;
        while let Some((src, na)) = queue.pop_front() {
            budget -= 1;
            assert!(budget > 0, "advert storm at {:?}", self.now);
            match &na.action {
                Action::AddVips(v) => {
                    self.takeovers.push((self.now, src, v.clone()));
                    self.set_nic(src, |nic| nic.extend(v.iter().copied()));
                }
                Action::RemoveVips(v) => self.set_nic(src, |nic| v.iter().for_each(|a| _ = nic.remove(a))),
                Action::Announce { addresses, .. } => self.announces.push((self.now, src, addresses.clone())),
                Action::StateChanged { to: State::Master, reason, .. } => {
                    self.masters.push((self.now, src, na.key.vrid, *reason));
                }
                Action::SendAdvert(adv) => {
                    self.adverts.push((self.now, src, adv.priority));
                    for j in 0..self.nodes.len() {
                        if j == src || !self.nodes[j].alive || !self.connected(src, j) {
                            continue;
                        }
                        let rx = Received {
                            src: self.nodes[src].addr,
                            dst: MULTICAST_V4.into(),
                            ttl: 255,
                            advert: adv.clone(),
                        };
                        let out = self.nodes[j].agent.handle_advert(self.now, &na.key.interface, rx);
                        queue.extend(out.into_iter().map(|a| (j, a)));
                    }
                }
                _ => {}
            }
        }
    }

    /// Live nodes with `vip` on their NIC.
    fn nic_holders(&self, vip: &IpAddr) -> BTreeSet<usize> {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].alive && self.nics[*i].contains(vip)).collect()
    }

    fn set_nic(&mut self, node: usize, change: impl FnOnce(&mut BTreeSet<IpAddr>)) {
        let before = self.nics[node].clone();
        change(&mut self.nics[node]);
        let touched: BTreeSet<IpAddr> = before.symmetric_difference(&self.nics[node]).copied().collect();
        for vip in touched {
            let holders = self.nic_holders(&vip);
            self.history.push((self.now, vip, holders));
        }
    }

    fn run_until(&mut self, until: Time) {
        loop {
            let next = (0..self.nodes.len())
                .filter(|i| self.nodes[*i].alive)
                .filter_map(|i| self.nodes[i].agent.next_deadline().map(|(t, k)| (t, i, k)))
                .min_by_key(|(t, i, _)| (*t, *i));
            match next {
                Some((t, i, key)) if t <= until => {
                    self.now = self.now.max(t);
                    let out = self.nodes[i].agent.timer_fired(self.now, &key);
                    self.deliver(i, out);
                }
                _ => break,
            }
        }
        self.now = self.now.max(until);
    }

    fn crash(&mut self, i: usize) {
        self.nodes[i].alive = false;
        for vip in self.nics[i].clone() {
            let holders = self.nic_holders(&vip);
            self.history.push((self.now, vip, holders));
        }
    }

    fn restart(&mut self, i: usize) {
        let mut agent = Agent::new(NAMES[i], self.config.clone()).unwrap();
        agent.set_known_peers((0..NAMES.len()).map(|j| ip(2 + j as u8)));
        let now = self.now;
        let mut out = agent.set_primary(now, IFACE, self.nodes[i].addr);
        out.extend(agent.apply_plan(now, &self.plan));
        self.nodes[i].agent = agent;
        self.nodes[i].alive = true;
        // A restarted speaker removes the VIPs it finds but does not hold.
        self.set_nic(i, BTreeSet::clear);
        self.deliver(i, out);
    }

    fn shutdown(&mut self, i: usize) {
        let out = self.nodes[i].agent.shutdown(self.now);
        self.deliver(i, out);
        self.nodes[i].alive = false;
    }

    /// Live nodes holding `vip`.
    fn holders(&self, vip: &IpAddr) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].alive)
            .filter(|i| self.nodes[*i].agent.held_vips().get(IFACE).is_some_and(|s| s.contains(vip)))
            .collect()
    }

    fn first_takeover_after(&self, t: Time, vip: &IpAddr) -> Option<(Time, usize)> {
        self.takeovers.iter().find(|(at, _, v)| *at >= t && v.contains(vip)).map(|(at, n, _)| (*at, *n))
    }
}

fn index(name: &str) -> usize {
    NAMES.iter().position(|n| *n == name).unwrap()
}

fn all_vips() -> Vec<IpAddr> {
    (91..=100).map(ip).collect()
}

#[test]
fn exactly_one_master_per_group_after_start_and_it_is_the_first_preference() {
    let mut lan = VirtualLan::new(AgentConfig::default());
    lan.run_until(ms(2000));
    for g in &lan.plan.groups {
        for vip in &g.vips {
            assert_eq!(lan.holders(vip), vec![index(&g.priorities[0].0)], "{vip}");
        }
    }
    // Each node runs one instance per group it is a candidate of; all are Master or Backup.
    for n in &lan.nodes {
        assert_eq!(n.agent.instances().count(), lan.plan.groups.len());
        assert!(n.agent.instances().all(|(_, i)| i.state() != State::Initialize));
    }
    // The first takeover happens at the first preference's Master_Down_Interval (priority 250).
    let first = lan.takeovers.iter().map(|(t, _, _)| *t).min().unwrap();
    assert_eq!(first, master_down_interval(250, 10));
}

#[test]
fn crash_of_the_master_moves_its_vips_to_the_next_preference_within_master_down_interval() {
    let mut lan = VirtualLan::new(AgentConfig::default());
    lan.run_until(ms(5000));
    let g = lan.plan.groups[0].clone();
    let (first, second) = (index(&g.priorities[0].0), index(&g.priorities[1].0));
    let vip = g.vips[0];
    let last_advert = lan.adverts.iter().filter(|(_, n, _)| *n == first).map(|(t, _, _)| *t).max().unwrap();
    lan.crash(first);
    lan.run_until(ms(8000));
    let (at, who) = lan.first_takeover_after(ms(5000), &vip).unwrap();
    assert_eq!(who, second);
    assert_eq!(at, last_advert + master_down_interval(g.priorities[1].1, 10));
    assert!(at - ms(5000) <= master_down_interval(g.priorities[1].1, 10));
    assert_eq!(lan.holders(&vip), vec![second]);
}

#[test]
fn graceful_shutdown_hands_over_in_skew_time() {
    let mut lan = VirtualLan::new(AgentConfig::default());
    lan.run_until(ms(5000));
    let g = lan.plan.groups[0].clone();
    let (first, second) = (index(&g.priorities[0].0), index(&g.priorities[1].0));
    lan.now = ms(5050);
    lan.shutdown(first);
    assert!(lan.adverts.iter().any(|(t, n, p)| *t == ms(5050) && *n == first && *p == PRIORITY_RELEASE));
    lan.run_until(ms(6000));
    let (at, who) = lan.first_takeover_after(ms(5050), &g.vips[0]).unwrap();
    assert_eq!(who, second);
    // 240 → (256 - 240) * 100 ms / 256 = 6.25 ms.
    assert_eq!(at - ms(5050), skew_time(g.priorities[1].1, 10));
    assert_eq!(at - ms(5050), Duration::from_micros(6250));
    for vip in &g.vips {
        assert_eq!(lan.holders(vip), vec![second]);
    }
}

#[test]
fn returning_first_preference_takes_back_once_after_the_preempt_delay() {
    let config = AgentConfig { preempt_delay: ms(3000), ..AgentConfig::default() };
    let mut lan = VirtualLan::new(config);
    lan.run_until(ms(5000));
    let g = lan.plan.groups[0].clone();
    let (first, second) = (index(&g.priorities[0].0), index(&g.priorities[1].0));
    let vip = g.vips[0];
    lan.crash(first);
    lan.run_until(ms(10_000));
    assert_eq!(lan.holders(&vip), vec![second]);
    lan.restart(first);
    // During the delay the interim master keeps the VIPs.
    lan.run_until(ms(12_900));
    assert_eq!(lan.holders(&vip), vec![second]);
    lan.run_until(ms(30_000));
    assert_eq!(lan.holders(&vip), vec![first]);
    let back: Vec<Time> = lan
        .takeovers
        .iter()
        .filter(|(t, n, v)| *t >= ms(10_000) && *n == first && v.contains(&vip))
        .map(|(t, _, _)| *t)
        .collect();
    assert_eq!(back.len(), 1, "took back more than once: {back:?}");
    // The delay counts from the first advert of the interim master seen after the restart (≤ one interval).
    assert!(back[0] >= ms(13_000) && back[0] <= ms(13_100), "{:?}", back[0]);
}

#[test]
fn partition_makes_two_masters_and_healing_leaves_the_first_preference() {
    let mut lan = VirtualLan::new(AgentConfig::default());
    lan.run_until(ms(3000));
    let g = lan.plan.groups[0].clone();
    let first = index(&g.priorities[0].0);
    for j in 0..3 {
        if j != first {
            lan.cut.insert((first.min(j), first.max(j)));
        }
    }
    lan.run_until(ms(6000));
    assert_eq!(lan.holders(&g.vips[0]).len(), 2);
    lan.cut.clear();
    lan.run_until(ms(6200));
    assert_eq!(lan.holders(&g.vips[0]), vec![first]);
}

#[test]
fn plan_change_moves_a_vip_between_groups_without_a_gap_on_its_holder() {
    let mut lan = VirtualLan::new(AgentConfig::default());
    lan.run_until(ms(3000));
    // Shrink every VIP's candidates to its first two preferences: every group is replaced (new identity).
    let vips: Vec<VipInput> = all_vips()
        .into_iter()
        .map(|vip| {
            let order = rank(&vip, &NAMES);
            VipInput { vip, interface: IFACE.into(), candidates: order[..2].iter().map(|s| s.to_string()).collect() }
        })
        .collect();
    let new_plan = plan(&vips, &PlanConfig::default(), &after(Some(&lan.plan)));
    let before: BTreeMap<IpAddr, Vec<usize>> = all_vips().iter().map(|v| (*v, lan.holders(v))).collect();
    lan.plan = new_plan.clone();
    let mut removed: Vec<(usize, IpAddr)> = Vec::new();
    for i in 0..3 {
        let out = lan.nodes[i].agent.apply_plan(lan.now, &new_plan);
        for na in &out {
            if let Action::RemoveVips(v) = &na.action {
                removed.extend(v.iter().map(|a| (i, *a)));
            }
        }
        lan.deliver(i, out);
    }
    // The first preference did not change, so no holder ever removes a VIP it keeps.
    assert!(removed.is_empty(), "{removed:?}");
    let after: BTreeMap<IpAddr, Vec<usize>> = all_vips().iter().map(|v| (*v, lan.holders(v))).collect();
    assert_eq!(before, after);
    lan.run_until(ms(6000));
    let settled: BTreeMap<IpAddr, Vec<usize>> = all_vips().iter().map(|v| (*v, lan.holders(v))).collect();
    assert_eq!(before, settled);
}

/// Each VIP with the given slice of its Cluster rendezvous order as candidates.
fn plan_with(f: impl Fn(&[&str]) -> Vec<String>, previous: Option<&Plan>) -> Plan {
    let vips: Vec<VipInput> = all_vips()
        .into_iter()
        .map(|vip| VipInput { vip, interface: IFACE.into(), candidates: f(&rank(&vip, &NAMES)) })
        .collect();
    plan(&vips, &PlanConfig::default(), &after(previous))
}

/// Checks the client-visible holder history of `vip` from `from` on: never empty, two holders for at most one
/// advert interval.
fn assert_no_gap_and_no_long_overlap(lan: &VirtualLan, vip: &IpAddr, from: Time) {
    let changes: Vec<&(Time, IpAddr, BTreeSet<usize>)> =
        lan.history.iter().filter(|(t, v, _)| *t >= from && v == vip).collect();
    for (k, (t, _, holders)) in changes.iter().enumerate() {
        assert!(!holders.is_empty(), "{vip}: nobody holds it at {t:?}");
        if holders.len() > 1 {
            let until = changes.get(k + 1).map_or(lan.now, |(next, _, _)| *next);
            assert!(until - *t <= ms(100), "{vip}: held by {holders:?} from {t:?} to {until:?}");
        }
    }
}

#[test]
fn replan_that_moves_the_first_preference_keeps_the_vip_on_its_holder_until_the_preempt_delay() {
    let config = AgentConfig { preempt_delay: ms(1000), ..AgentConfig::default() };
    // Local-style: only the node with the Pod, here each VIP's second Cluster preference, is a candidate.
    let local = plan_with(|order| vec![order[1].to_string()], None);
    let mut lan = VirtualLan::with_plan(config, local.clone());
    lan.run_until(ms(3000));
    for vip in all_vips() {
        assert_eq!(lan.nic_holders(&vip), BTreeSet::from([index(rank(&vip, &NAMES)[1])]), "{vip}");
    }
    // Cluster-style: every node, so the first preference moves to the rendezvous winner.
    let cluster = plan_with(|order| order.iter().map(|s| s.to_string()).collect(), Some(&local));
    lan.plan = cluster.clone();
    let replan = lan.now;
    for i in 0..NAMES.len() {
        let out = lan.nodes[i].agent.apply_plan(replan, &cluster);
        lan.deliver(i, out);
    }
    lan.run_until(ms(6000));
    for vip in all_vips() {
        let order = rank(&vip, &NAMES);
        let (old, new) = (index(order[1]), index(order[0]));
        assert_no_gap_and_no_long_overlap(&lan, &vip, ms(1000));
        // The old holder never let go before the new first preference took over...
        let (at, who) = lan.first_takeover_after(replan + ms(1), &vip).unwrap();
        assert_eq!(who, new, "{vip}");
        // ...which it did once its preempt delay had run from the first advert of the interim master it heard.
        assert!(at >= replan + ms(1000) && at <= replan + ms(1100), "{vip}: {at:?}");
        assert!(lan.history.iter().any(|(t, v, h)| *t == at && *v == vip && !h.contains(&old)), "{vip}");
        assert_eq!(lan.nic_holders(&vip), BTreeSet::from([new]), "{vip}");
    }
}

#[test]
fn a_group_larger_than_one_advert_is_recognised_by_its_first_addresses() {
    // Adverts carry 3 of the group's 10 VIPs: backups still follow the master, without address mismatches,
    // and a VIP added in the middle changes the advertised list without a gap.
    let config = AgentConfig { advert_addresses_ipv4: 3, ..AgentConfig::default() };
    let input = |vips: &[IpAddr]| -> Vec<VipInput> {
        let candidates: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
        vips.iter().map(|v| VipInput { vip: *v, interface: IFACE.into(), candidates: candidates.clone() }).collect()
    };
    let without_92: Vec<IpAddr> = all_vips().into_iter().filter(|v| *v != ip(92)).collect();
    let old = plan(&input(&without_92), &PlanConfig::default(), &after(None));
    assert_eq!(old.groups.len(), 1);
    let mut lan = VirtualLan::with_plan(config, old.clone());
    lan.run_until(ms(2000));
    let new = plan(&input(&all_vips()), &PlanConfig::default(), &after(Some(&old)));
    assert_eq!(new.groups.len(), 1);
    lan.plan = new.clone();
    for (i, name) in NAMES.iter().enumerate() {
        let out = lan.nodes[i].agent.apply_plan(lan.now, &new);
        assert!(!out.iter().any(|na| matches!(na.action, Action::RemoveVips(_))), "{name}");
        lan.deliver(i, out);
    }
    lan.run_until(ms(5000));
    for vip in &without_92 {
        assert_no_gap_and_no_long_overlap(&lan, vip, ms(1000));
    }
    let holder = lan.nic_holders(&ip(91));
    assert_eq!(holder.len(), 1);
    for vip in all_vips() {
        assert_eq!(lan.nic_holders(&vip), holder, "{vip}");
    }
    for node in &lan.nodes {
        for (_, instance) in node.agent.instances() {
            assert_eq!(instance.advertised(), &[ip(91), ip(92), ip(93)][..]);
            // At most the one advert a node heard between the master's re-plan and its own.
            assert!(instance.counters().address_mismatches <= 1, "{}", instance.counters().address_mismatches);
        }
    }
}

#[test]
fn replaced_master_that_keeps_its_vips_sends_no_release() {
    let config = AgentConfig { preempt_delay: ms(1000), ..AgentConfig::default() };
    let local = plan_with(|order| vec![order[1].to_string()], None);
    let mut lan = VirtualLan::with_plan(config, local.clone());
    lan.run_until(ms(3000));
    let cluster = plan_with(|order| order.iter().map(|s| s.to_string()).collect(), Some(&local));
    let now = lan.now;
    for (name, node) in NAMES.iter().zip(lan.nodes.iter_mut()) {
        let out = node.agent.apply_plan(now, &cluster);
        let releases: Vec<&NodeAction> = out
            .iter()
            .filter(|na| matches!(&na.action, Action::SendAdvert(a) if a.priority == PRIORITY_RELEASE))
            .collect();
        assert!(releases.is_empty(), "{name}: {releases:?}");
        assert!(!out.iter().any(|na| matches!(na.action, Action::RemoveVips(_))), "{name}");
    }
}

#[test]
fn healed_partition_winner_announces_again_within_one_advert_interval() {
    let mut lan = VirtualLan::new(AgentConfig::default());
    lan.run_until(ms(3000));
    let g = lan.plan.groups[0].clone();
    let (first, second) = (index(&g.priorities[0].0), index(&g.priorities[1].0));
    for j in 0..3 {
        if j != first {
            lan.cut.insert((first.min(j), first.max(j)));
        }
    }
    lan.run_until(ms(6000));
    assert_eq!(lan.holders(&g.vips[0]), {
        let mut v = vec![first, second];
        v.sort();
        v
    });
    // The loser's GARPs pointed clients at it. Heal right after the winner's advert, so that the loser's advert
    // crosses first: that is the advert the winner answers with an announcement. (When the winner's advert
    // crosses first, the loser steps down silently and the winner hears nothing; see the report.)
    let key = lan.nodes[first].agent.instances().find(|(k, _)| k.vrid == g.vrid).map(|(k, _)| k.clone()).unwrap();
    let next = |lan: &VirtualLan, n: usize| {
        lan.nodes[n].agent.instance(&key).unwrap().deadline(TimerKind::AdverTimer).unwrap()
    };
    if next(&lan, first) < next(&lan, second) {
        let t = next(&lan, first);
        lan.run_until(t);
    }
    let heal = lan.now;
    lan.cut.clear();
    lan.run_until(heal + ms(100));
    let burst: Vec<&(Time, usize, Vec<IpAddr>)> =
        lan.announces.iter().filter(|(t, n, v)| *t >= heal && *n == first && v == &g.vips).collect();
    assert_eq!(burst.len(), 1, "{burst:?}");
    assert!(burst[0].0 <= heal + ms(100));
    assert_eq!(lan.holders(&g.vips[0]), vec![first]);
    // The loser does not announce these VIPs; nobody else does either.
    assert!(lan.announces.iter().filter(|(t, _, v)| *t >= heal && v.contains(&g.vips[0])).all(|(_, n, _)| *n == first));
}

#[test]
fn agent_shutdown_releases_everything_and_ignores_later_plans() {
    let mut lan = VirtualLan::new(AgentConfig::default());
    lan.run_until(ms(2000));
    let held: usize = lan.nodes[0].agent.held_vips().values().map(BTreeSet::len).sum();
    let out = lan.nodes[0].agent.shutdown(lan.now);
    let removed: usize =
        out.iter().filter_map(|na| if let Action::RemoveVips(v) = &na.action { Some(v.len()) } else { None }).sum();
    assert_eq!(removed, held);
    assert!(lan.nodes[0].agent.held_vips().is_empty());
    let plan = lan.plan.clone();
    assert!(lan.nodes[0].agent.apply_plan(lan.now, &plan).is_empty());
    assert!(lan.nodes[0].agent.next_deadline().is_none());
}

#[test]
fn groups_wait_for_a_primary_address() {
    let mut agent = Agent::new(NAMES[0], AgentConfig::default()).unwrap();
    let plan = seed_plan();
    assert!(agent.apply_plan(Time::ZERO, &plan).is_empty());
    assert_eq!(agent.waiting().len(), plan.groups.len());
    let out = agent.set_primary(Time::ZERO, IFACE, ip(2));
    assert!(!out.is_empty());
    assert!(agent.waiting().is_empty());
    assert_eq!(agent.instances().count(), plan.groups.len());
}

// ---- new VIPs on a re-plan ----

const NEW_VIP: u8 = 100;

/// The seed's VIPs .91-.99 under Cluster policy (every node a candidate).
fn base_plan() -> Plan {
    plan_with_new(None, None)
}

/// `base_plan` plus `.100` with its first two Cluster preferences as candidates: a candidate set no other VIP
/// has, so it forms a group of its own.
fn plan_with_new_vip(previous: &Plan) -> Plan {
    plan_with_new(Some(ip(NEW_VIP)), Some(previous))
}

fn plan_with_new(extra: Option<IpAddr>, previous: Option<&Plan>) -> Plan {
    let mut vips: Vec<VipInput> = (91..NEW_VIP)
        .map(ip)
        .map(|vip| VipInput {
            vip,
            interface: IFACE.into(),
            candidates: rank(&vip, &NAMES).iter().map(|s| s.to_string()).collect(),
        })
        .collect();
    if let Some(vip) = extra {
        let order = rank(&vip, &NAMES);
        vips.push(VipInput {
            vip,
            interface: IFACE.into(),
            candidates: order[..2].iter().map(|s| s.to_string()).collect(),
        });
    }
    plan(&vips, &PlanConfig::default(), &after(previous))
}

/// The new VIP's group in `plan` with its nodes' indexes on the LAN in preference order.
fn new_group(plan: &Plan) -> (Group, Vec<usize>) {
    let g = plan.group_of(&ip(NEW_VIP)).unwrap().clone();
    assert_eq!(g.vips, vec![ip(NEW_VIP)], "a group of its own");
    let order = g.priorities.iter().map(|(n, _)| index(n)).collect();
    (g, order)
}

/// Transitions of `out` for `vrid`: (from, to, reason).
fn transitions(out: &[NodeAction], vrid: u8) -> Vec<(State, State, TransitionReason)> {
    out.iter()
        .filter(|na| na.key.vrid == vrid)
        .filter_map(|na| match na.action {
            Action::StateChanged { from, to, reason } => Some((from, to, reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn replan_adding_a_new_group_starts_it_master_on_the_first_preference_and_backup_elsewhere() {
    let mut lan = VirtualLan::with_plan(AgentConfig::default(), base_plan());
    lan.run_until(ms(2000));
    let new = plan_with_new_vip(&lan.plan);
    let (g, order) = new_group(&new);
    lan.plan = new.clone();
    let replan = lan.now;
    let mut outs = Vec::new();
    for i in 0..NAMES.len() {
        let out = lan.nodes[i].agent.apply_plan(replan, &new);
        outs.push(transitions(&out, g.vrid));
        lan.deliver(i, out);
    }
    assert_eq!(outs[order[0]], vec![(State::Initialize, State::Master, TransitionReason::StartupUnclaimed)]);
    assert_eq!(outs[order[1]], vec![(State::Initialize, State::Backup, TransitionReason::Startup)]);
    let outsider = (0..NAMES.len()).find(|i| !order.contains(i)).unwrap();
    assert!(outs[outsider].is_empty(), "not a candidate: {:?}", outs[outsider]);
    // Taken at the instant of the plan, not a Master_Down_Interval later, and kept.
    assert_eq!(lan.first_takeover_after(replan, &ip(NEW_VIP)), Some((replan, order[0])));
    lan.run_until(ms(5000));
    assert_eq!(lan.holders(&ip(NEW_VIP)), vec![order[0]]);
    assert_eq!(lan.masters.iter().filter(|m| m.2 == g.vrid).count(), 1, "{:?}", lan.masters);
    // The groups that were there keep their masters.
    for vip in (91..NEW_VIP).map(ip) {
        assert_eq!(lan.holders(&vip), vec![index(&lan.plan.group_of(&vip).unwrap().priorities[0].0)], "{vip}");
    }
}

#[test]
fn the_first_plan_starts_every_group_as_backup_even_on_its_first_preference() {
    let plan = plan_with_new_vip(&base_plan());
    let (g, order) = new_group(&plan);
    let mut agent = Agent::new(NAMES[order[0]], AgentConfig::default()).unwrap();
    agent.set_primary(Time::ZERO, IFACE, ip(2));
    let out = agent.apply_plan(ms(10), &plan);
    assert_eq!(transitions(&out, g.vrid), vec![(State::Initialize, State::Backup, TransitionReason::Startup)]);
    assert!(!out.iter().any(|na| matches!(na.action, Action::AddVips(_))), "{out:?}");
    // The same plan again changes nothing, and the timeout path takes over as before.
    assert!(agent.apply_plan(ms(20), &plan).iter().all(|na| !matches!(na.action, Action::StateChanged { .. })));
    let key = agent.instances().find(|(k, _)| k.vrid == g.vrid).map(|(k, _)| k.clone()).unwrap();
    assert_eq!(agent.instance(&key).unwrap().state(), State::Backup);
}

#[test]
fn a_node_that_restarts_into_a_cluster_waits_even_for_a_vip_it_is_first_for() {
    // The others run the plan with the new VIP already; a restarted first preference joins as Backup.
    let mut lan = VirtualLan::with_plan(AgentConfig::default(), base_plan());
    lan.run_until(ms(1000));
    let new = plan_with_new_vip(&lan.plan);
    let (g, order) = new_group(&new);
    lan.crash(order[0]);
    lan.plan = new.clone();
    for i in (0..NAMES.len()).filter(|i| *i != order[0]) {
        let out = lan.nodes[i].agent.apply_plan(lan.now, &new);
        lan.deliver(i, out);
    }
    lan.run_until(ms(2000));
    assert_eq!(lan.holders(&ip(NEW_VIP)), vec![order[1]], "the second preference took it by timeout");
    let back = ms(2000);
    lan.restart(order[0]);
    assert!(
        !lan.masters.iter().any(|(t, n, v, _)| *t == back && *n == order[0] && *v == g.vrid),
        "the restarted node must not claim a VIP it cannot know to be new: {:?}",
        lan.masters
    );
    lan.run_until(ms(10_000));
    // It takes the VIP back after its preempt delay, by the ordinary rule.
    let (at, who) = lan.first_takeover_after(back, &ip(NEW_VIP)).unwrap();
    assert_eq!(who, order[0]);
    assert!(at >= back + AgentConfig::default().preempt_delay, "{at:?}");
}

#[test]
fn a_group_with_a_vip_of_the_previous_plan_is_not_new() {
    // .91 moves to a group of its own together with .100: the first preference does not know who holds .91.
    let first_plan = base_plan();
    let order91 = rank(&ip(91), &NAMES);
    let mut agent = Agent::new(order91[1], AgentConfig::default()).unwrap();
    agent.set_primary(Time::ZERO, IFACE, ip(2));
    agent.apply_plan(Time::ZERO, &first_plan);
    let candidates: Vec<String> = vec![order91[1].to_string(), order91[0].to_string()];
    let mut vips: Vec<VipInput> = (92..NEW_VIP)
        .map(|last| VipInput {
            vip: ip(last),
            interface: IFACE.into(),
            candidates: rank(&ip(last), &NAMES).iter().map(|s| s.to_string()).collect(),
        })
        .collect();
    for vip in [ip(91), ip(NEW_VIP)] {
        vips.push(VipInput { vip, interface: IFACE.into(), candidates: candidates.clone() });
    }
    let next = plan(&vips, &PlanConfig::default(), &after(Some(&first_plan)));
    let g = next.group_of(&ip(NEW_VIP)).unwrap().clone();
    assert_eq!(g.vips, vec![ip(91), ip(NEW_VIP)]);
    assert_eq!(g.priorities[0].0, order91[1]);
    let out = agent.apply_plan(ms(50), &next);
    assert_eq!(transitions(&out, g.vrid), vec![(State::Initialize, State::Backup, TransitionReason::Startup)]);
}

#[test]
fn a_primary_set_right_after_the_plan_still_starts_new_vips_as_master_but_not_later() {
    for (delay, expect) in [(ms(0), State::Master), (ms(299), State::Master), (ms(300), State::Backup)] {
        let first = base_plan();
        let next = plan_with_new_vip(&first);
        let (g, order) = new_group(&next);
        let mut agent = Agent::new(NAMES[order[0]], AgentConfig::default()).unwrap();
        agent.apply_plan(ms(0), &first);
        let applied = ms(1000);
        assert!(transitions(&agent.apply_plan(applied, &next), g.vrid).is_empty(), "no primary yet");
        assert!(agent.waiting().contains(&g.id));
        let out = agent.set_primary(applied + delay, IFACE, ip(2));
        let t = transitions(&out, g.vrid);
        assert_eq!(t.len(), 1, "{delay:?}: {t:?}");
        assert_eq!(t[0].1, expect, "{delay:?}: {t:?}");
    }
}

#[test]
fn a_new_group_on_a_down_interface_waits_for_the_link_and_then_starts_as_backup() {
    let first = base_plan();
    let next = plan_with_new_vip(&first);
    let (g, order) = new_group(&next);
    let mut agent = Agent::new(NAMES[order[0]], AgentConfig::default()).unwrap();
    agent.set_primary(Time::ZERO, IFACE, ip(2));
    agent.apply_plan(Time::ZERO, &first);
    agent.interface_down(ms(500), IFACE);
    let out = agent.apply_plan(ms(1000), &next);
    assert!(transitions(&out, g.vrid).is_empty(), "{out:?}");
    assert!(agent.held_vips().is_empty());
    assert!(agent.next_deadline().is_none(), "nothing runs on a down link");
    let out = agent.interface_up(ms(2000), IFACE);
    assert_eq!(transitions(&out, g.vrid), vec![(State::Initialize, State::Backup, TransitionReason::InterfaceUp)]);
}

#[test]
fn two_nodes_that_both_believe_they_are_first_settle_on_the_higher_primary_address() {
    // Their candidate views differ but the group has one VRID: both start Master at the top priority.
    let vip = ip(NEW_VIP);
    let view = |me: &str, other: &str| Plan {
        groups: vec![Group {
            id: GroupId {
                interface: IFACE.into(),
                family: openelb_core::model::IpFamily::V4,
                first: me.into(),
                candidates: vec![NAMES[0].into(), NAMES[1].into()],
                part: 0,
            },
            vrid: 42,
            vips: vec![vip],
            priorities: vec![(me.into(), 250), (other.into(), 240)],
        }],
        issues: Vec::new(),
    };
    for applies_first in [0, 1] {
        let mut lan = VirtualLan::with_plan(AgentConfig::default(), Plan::default());
        lan.run_until(ms(1000));
        let plans = [view(NAMES[0], NAMES[1]), view(NAMES[1], NAMES[0])];
        for i in [applies_first, 1 - applies_first] {
            let out = lan.nodes[i].agent.apply_plan(lan.now, &plans[i]);
            assert_eq!(
                transitions(&out, 42),
                vec![(State::Initialize, State::Master, TransitionReason::StartupUnclaimed)],
                "node {i}"
            );
            lan.deliver(i, out);
        }
        // Node 1 (192.0.2.3) outranks node 0 (192.0.2.2) at equal priority, whoever started first.
        assert_eq!(lan.holders(&vip), vec![1], "order {applies_first}");
        lan.run_until(ms(3000));
        assert_eq!(lan.holders(&vip), vec![1], "order {applies_first}");
        assert_eq!(lan.nic_holders(&vip), BTreeSet::from([1]));
        assert_no_gap_and_no_long_overlap(&lan, &vip, ms(1000));
    }
}

// ---- property ----

#[derive(Debug, Clone)]
enum Event {
    Crash(usize),
    Restart(usize),
    Shutdown(usize),
    Cut(usize, usize),
    Heal,
}

fn arb_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (0usize..3).prop_map(Event::Crash),
        (0usize..3).prop_map(Event::Restart),
        (0usize..3).prop_map(Event::Shutdown),
        (0usize..3, 0usize..3).prop_map(|(a, b)| Event::Cut(a, b)),
        Just(Event::Heal),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// After any crash/restart/shutdown/partition sequence, once partitions heal and the cluster is quiet for
    /// longer than the preempt delay, every group has exactly one master among the live nodes, and it is the
    /// live candidate with the highest priority.
    #[test]
    fn one_master_per_group_among_live_nodes_after_quiet_time(
        events in prop::collection::vec((0u64..1500, arb_event()), 0..12),
    ) {
        let config = AgentConfig { preempt_delay: ms(1000), ..AgentConfig::default() };
        let mut lan = VirtualLan::new(config);
        lan.run_until(ms(1000));
        for (dt, ev) in events {
            let t = lan.now + ms(dt);
            lan.run_until(t);
            match ev {
                Event::Crash(i) => lan.crash(i),
                Event::Restart(i) => lan.restart(i),
                Event::Shutdown(i) => if lan.nodes[i].alive { lan.shutdown(i) },
                Event::Cut(a, b) => if a != b { lan.cut.insert((a.min(b), a.max(b))); },
                Event::Heal => lan.cut.clear(),
            }
        }
        lan.cut.clear();
        let end = lan.now + ms(5000);
        lan.run_until(end);
        for g in &lan.plan.groups {
            let best = g.priorities.iter().map(|(n, _)| index(n)).find(|i| lan.nodes[*i].alive);
            for vip in &g.vips {
                let holders = lan.holders(vip);
                match best {
                    Some(b) => prop_assert_eq!(holders, vec![b], "{}", vip),
                    None => prop_assert!(holders.is_empty()),
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A new VIP reaches the nodes at different moments (each applies the plan when its watches deliver it).
    /// Whatever the order and the lag: only its first preference starts it as Master, and does so the moment it
    /// applies the plan; another node becomes Master only by the ordinary timeout; two nodes hold it for no
    /// longer than one advert interval; in the end the first preference alone holds it.
    #[test]
    fn a_new_vip_seen_at_different_moments_ends_on_its_first_preference(
        lags in prop::collection::vec(0u64..800, 3),
    ) {
        let mut lan = VirtualLan::with_plan(AgentConfig::default(), base_plan());
        lan.run_until(ms(1000));
        let new = plan_with_new_vip(&lan.plan);
        let (g, order) = new_group(&new);
        let replan = lan.now;
        let mut schedule: Vec<(Time, usize)> = (0..NAMES.len()).map(|i| (replan + ms(lags[i]), i)).collect();
        schedule.sort();
        for (at, i) in schedule {
            lan.run_until(at);
            let out = lan.nodes[i].agent.apply_plan(at, &new);
            lan.deliver(i, out);
        }
        lan.plan = new.clone();
        let settled = replan + ms(800) + ms(1000);
        lan.run_until(settled);
        let vip = ip(NEW_VIP);
        prop_assert_eq!(lan.holders(&vip), vec![order[0]]);
        let first_applied = replan + ms(lags[order[0]]);
        for (at, node, vrid, reason) in lan.masters.iter().filter(|m| m.2 == g.vrid) {
            if *reason == TransitionReason::StartupUnclaimed {
                prop_assert_eq!(*node, order[0], "only the first preference claims a new VIP");
                prop_assert_eq!(*at, first_applied);
            } else {
                // The second preference by timeout, only while the first had not applied the plan yet.
                prop_assert_eq!(*node, order[1], "{} {:?} {}", vrid, at, reason);
                prop_assert_eq!(*reason, TransitionReason::MasterDown);
                let applied = replan + ms(lags[order[1]]);
                prop_assert_eq!(*at, applied + master_down_interval(g.priorities[1].1, 10));
                prop_assert!(*at <= first_applied);
            }
        }
        let claimed = lan.masters.iter().any(|&(_, node, vrid, reason)| {
            vrid == g.vrid && node == order[0] && reason == TransitionReason::StartupUnclaimed
        });
        prop_assert!(claimed);
        assert_no_gap_and_no_long_overlap(&lan, &vip, replan);
    }
}

#[test]
fn masters_advertise_together_after_one_advert_timer_fires() {
    let mut agent = Agent::new(NAMES[0], AgentConfig::default()).unwrap();
    agent.apply_plan(Time::ZERO, &seed_plan());
    agent.set_primary(Time::ZERO, IFACE, ip(2));
    let groups = agent.instances().count();
    assert!(groups >= 2, "the seed plan gives this node several groups");
    // Alone on the LAN, every instance becomes Master when its own timer fires: at moments 7 ms apart.
    while agent.instances().any(|(_, i)| i.state() != State::Master) {
        let Some((at, key)) = agent.next_deadline() else { panic!("a Backup has a Master_Down timer") };
        agent.timer_fired(at + ms(7), &key);
    }
    let due = |agent: &Agent| -> BTreeSet<Time> {
        agent.instances().filter_map(|(_, i)| i.next_deadline().map(|(t, _)| t)).collect()
    };
    assert!(due(&agent).len() >= 2, "advert timers at different moments: {:?}", due(&agent));
    let adverts = |out: &[NodeAction]| out.iter().filter(|a| matches!(a.action, Action::SendAdvert(_))).count();
    // The first advert timer to fire brings every other Master's advert forward to now, once.
    let Some((at, key)) = agent.next_deadline() else { panic!("Masters have advert timers") };
    assert_eq!(key.kind, TimerKind::AdverTimer);
    let interval = ms(100);
    let mut out = agent.timer_fired(at, &key);
    out.extend(agent.advertise_due_by(at, at + interval));
    assert_eq!(adverts(&out), groups, "one advert per Master");
    // From then on they are due together.
    assert_eq!(due(&agent), BTreeSet::from([at + interval]));
    assert!(agent.advertise_due_by(at + ms(1), at + ms(50)).is_empty(), "nothing is due that early");
}
