//! Several per-node agents wired together by a tiny virtual-time harness: every advert reaches the other live,
//! connected agents at the same instant, and the earliest armed timer fires next.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use openelb_core::election::rank;
use openelb_core::vrrp::agent::{Agent, AgentConfig, NodeAction};
use openelb_core::vrrp::plan::{Plan, PlanConfig, VipInput, plan};
use openelb_core::vrrp::state::{Action, State, TimerKind, master_down_interval, skew_time};
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

/// The seed's pool 192.0.2.91-100, every VIP with all three nodes as candidates (Cluster policy).
fn seed_plan() -> Plan {
    let vips: Vec<VipInput> = (91..=100)
        .map(|last| {
            let vip = ip(last);
            let order = rank(&vip, &NAMES);
            VipInput { vip, interface: IFACE.into(), candidates: order.iter().map(|s| s.to_string()).collect() }
        })
        .collect();
    plan(&vips, &PlanConfig::default(), None).unwrap()
}

struct Node {
    addr: IpAddr,
    agent: Agent,
    alive: bool,
}

struct Lab {
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
}

impl Lab {
    fn new(config: AgentConfig) -> Lab {
        Lab::with_plan(config, seed_plan())
    }

    fn with_plan(config: AgentConfig, plan: Plan) -> Lab {
        let mut lab = Lab {
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
        };
        for (i, name) in NAMES.iter().enumerate() {
            lab.nodes.push(Node {
                addr: ip(2 + i as u8),
                agent: Agent::new(*name, lab.config.clone()).unwrap(),
                alive: false,
            });
            lab.restart(i);
        }
        lab
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
                Action::SendAdvert(adv) => {
                    self.adverts.push((self.now, src, adv.priority));
                    for j in 0..self.nodes.len() {
                        if j == src || !self.nodes[j].alive || !self.connected(src, j) {
                            continue;
                        }
                        let rx = Received { src: self.nodes[src].addr, ttl: 255, advert: adv.clone() };
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
    let mut lab = Lab::new(AgentConfig::default());
    lab.run_until(ms(2000));
    for g in &lab.plan.groups {
        for vip in &g.vips {
            assert_eq!(lab.holders(vip), vec![index(&g.priorities[0].0)], "{vip}");
        }
    }
    // Each node runs one instance per group it is a candidate of; all are Master or Backup.
    for n in &lab.nodes {
        assert_eq!(n.agent.instances().count(), lab.plan.groups.len());
        assert!(n.agent.instances().all(|(_, i)| i.state() != State::Initialize));
    }
    // The first takeover happens at the first preference's Master_Down_Interval (priority 250).
    let first = lab.takeovers.iter().map(|(t, _, _)| *t).min().unwrap();
    assert_eq!(first, master_down_interval(250, 10));
}

#[test]
fn crash_of_the_master_moves_its_vips_to_the_next_preference_within_master_down_interval() {
    let mut lab = Lab::new(AgentConfig::default());
    lab.run_until(ms(5000));
    let g = lab.plan.groups[0].clone();
    let (first, second) = (index(&g.priorities[0].0), index(&g.priorities[1].0));
    let vip = g.vips[0];
    let last_advert = lab.adverts.iter().filter(|(_, n, _)| *n == first).map(|(t, _, _)| *t).max().unwrap();
    lab.crash(first);
    lab.run_until(ms(8000));
    let (at, who) = lab.first_takeover_after(ms(5000), &vip).unwrap();
    assert_eq!(who, second);
    assert_eq!(at, last_advert + master_down_interval(g.priorities[1].1, 10));
    assert!(at - ms(5000) <= master_down_interval(g.priorities[1].1, 10));
    assert_eq!(lab.holders(&vip), vec![second]);
}

#[test]
fn graceful_shutdown_hands_over_in_skew_time() {
    let mut lab = Lab::new(AgentConfig::default());
    lab.run_until(ms(5000));
    let g = lab.plan.groups[0].clone();
    let (first, second) = (index(&g.priorities[0].0), index(&g.priorities[1].0));
    lab.now = ms(5050);
    lab.shutdown(first);
    assert!(lab.adverts.iter().any(|(t, n, p)| *t == ms(5050) && *n == first && *p == PRIORITY_RELEASE));
    lab.run_until(ms(6000));
    let (at, who) = lab.first_takeover_after(ms(5050), &g.vips[0]).unwrap();
    assert_eq!(who, second);
    // 240 → (256 - 240) * 100 ms / 256 = 6.25 ms.
    assert_eq!(at - ms(5050), skew_time(g.priorities[1].1, 10));
    assert_eq!(at - ms(5050), Duration::from_micros(6250));
    for vip in &g.vips {
        assert_eq!(lab.holders(vip), vec![second]);
    }
}

#[test]
fn returning_first_preference_takes_back_once_after_the_preempt_delay() {
    let config = AgentConfig { preempt_delay: ms(3000), ..AgentConfig::default() };
    let mut lab = Lab::new(config);
    lab.run_until(ms(5000));
    let g = lab.plan.groups[0].clone();
    let (first, second) = (index(&g.priorities[0].0), index(&g.priorities[1].0));
    let vip = g.vips[0];
    lab.crash(first);
    lab.run_until(ms(10_000));
    assert_eq!(lab.holders(&vip), vec![second]);
    lab.restart(first);
    // During the delay the interim master keeps the VIPs.
    lab.run_until(ms(12_900));
    assert_eq!(lab.holders(&vip), vec![second]);
    lab.run_until(ms(30_000));
    assert_eq!(lab.holders(&vip), vec![first]);
    let back: Vec<Time> = lab
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
    let mut lab = Lab::new(AgentConfig::default());
    lab.run_until(ms(3000));
    let g = lab.plan.groups[0].clone();
    let first = index(&g.priorities[0].0);
    for j in 0..3 {
        if j != first {
            lab.cut.insert((first.min(j), first.max(j)));
        }
    }
    lab.run_until(ms(6000));
    assert_eq!(lab.holders(&g.vips[0]).len(), 2);
    lab.cut.clear();
    lab.run_until(ms(6200));
    assert_eq!(lab.holders(&g.vips[0]), vec![first]);
}

#[test]
fn plan_change_moves_a_vip_between_groups_without_a_gap_on_its_holder() {
    let mut lab = Lab::new(AgentConfig::default());
    lab.run_until(ms(3000));
    // Shrink every VIP's candidates to its first two preferences: every group is replaced (new identity).
    let vips: Vec<VipInput> = all_vips()
        .into_iter()
        .map(|vip| {
            let order = rank(&vip, &NAMES);
            VipInput { vip, interface: IFACE.into(), candidates: order[..2].iter().map(|s| s.to_string()).collect() }
        })
        .collect();
    let new_plan = plan(&vips, &PlanConfig::default(), Some(&lab.plan)).unwrap();
    let before: BTreeMap<IpAddr, Vec<usize>> = all_vips().iter().map(|v| (*v, lab.holders(v))).collect();
    lab.plan = new_plan.clone();
    let mut removed: Vec<(usize, IpAddr)> = Vec::new();
    for i in 0..3 {
        let out = lab.nodes[i].agent.apply_plan(lab.now, &new_plan);
        for na in &out {
            if let Action::RemoveVips(v) = &na.action {
                removed.extend(v.iter().map(|a| (i, *a)));
            }
        }
        lab.deliver(i, out);
    }
    // The first preference did not change, so no holder ever removes a VIP it keeps.
    assert!(removed.is_empty(), "{removed:?}");
    let after: BTreeMap<IpAddr, Vec<usize>> = all_vips().iter().map(|v| (*v, lab.holders(v))).collect();
    assert_eq!(before, after);
    lab.run_until(ms(6000));
    let settled: BTreeMap<IpAddr, Vec<usize>> = all_vips().iter().map(|v| (*v, lab.holders(v))).collect();
    assert_eq!(before, settled);
}

/// Each VIP with the given slice of its Cluster rendezvous order as candidates.
fn plan_with(f: impl Fn(&[&str]) -> Vec<String>, previous: Option<&Plan>) -> Plan {
    let vips: Vec<VipInput> = all_vips()
        .into_iter()
        .map(|vip| VipInput { vip, interface: IFACE.into(), candidates: f(&rank(&vip, &NAMES)) })
        .collect();
    plan(&vips, &PlanConfig::default(), previous).unwrap()
}

/// Checks the client-visible holder history of `vip` from `from` on: never empty, two holders for at most one
/// advert interval.
fn assert_no_gap_and_no_long_overlap(lab: &Lab, vip: &IpAddr, from: Time) {
    let changes: Vec<&(Time, IpAddr, BTreeSet<usize>)> =
        lab.history.iter().filter(|(t, v, _)| *t >= from && v == vip).collect();
    for (k, (t, _, holders)) in changes.iter().enumerate() {
        assert!(!holders.is_empty(), "{vip}: nobody holds it at {t:?}");
        if holders.len() > 1 {
            let until = changes.get(k + 1).map_or(lab.now, |(next, _, _)| *next);
            assert!(until - *t <= ms(100), "{vip}: held by {holders:?} from {t:?} to {until:?}");
        }
    }
}

#[test]
fn replan_that_moves_the_first_preference_keeps_the_vip_on_its_holder_until_the_preempt_delay() {
    let config = AgentConfig { preempt_delay: ms(1000), ..AgentConfig::default() };
    // Local-style: only the node with the Pod, here each VIP's second Cluster preference, is a candidate.
    let local = plan_with(|order| vec![order[1].to_string()], None);
    let mut lab = Lab::with_plan(config, local.clone());
    lab.run_until(ms(3000));
    for vip in all_vips() {
        assert_eq!(lab.nic_holders(&vip), BTreeSet::from([index(rank(&vip, &NAMES)[1])]), "{vip}");
    }
    // Cluster-style: every node, so the first preference moves to the rendezvous winner.
    let cluster = plan_with(|order| order.iter().map(|s| s.to_string()).collect(), Some(&local));
    lab.plan = cluster.clone();
    let replan = lab.now;
    for i in 0..NAMES.len() {
        let out = lab.nodes[i].agent.apply_plan(replan, &cluster);
        lab.deliver(i, out);
    }
    lab.run_until(ms(6000));
    for vip in all_vips() {
        let order = rank(&vip, &NAMES);
        let (old, new) = (index(order[1]), index(order[0]));
        assert_no_gap_and_no_long_overlap(&lab, &vip, ms(1000));
        // The old holder never let go before the new first preference took over...
        let (at, who) = lab.first_takeover_after(replan + ms(1), &vip).unwrap();
        assert_eq!(who, new, "{vip}");
        // ...which it did once its preempt delay had run from the first advert of the interim master it heard.
        assert!(at >= replan + ms(1000) && at <= replan + ms(1100), "{vip}: {at:?}");
        assert!(lab.history.iter().any(|(t, v, h)| *t == at && *v == vip && !h.contains(&old)), "{vip}");
        assert_eq!(lab.nic_holders(&vip), BTreeSet::from([new]), "{vip}");
    }
}

#[test]
fn vip_added_in_the_middle_shifts_parts_without_a_gap() {
    let config = PlanConfig { max_vips_ipv4: 3, ..PlanConfig::default() };
    let input = |vips: &[IpAddr]| -> Vec<VipInput> {
        let candidates: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
        vips.iter().map(|v| VipInput { vip: *v, interface: IFACE.into(), candidates: candidates.clone() }).collect()
    };
    let without_92: Vec<IpAddr> = all_vips().into_iter().filter(|v| *v != ip(92)).collect();
    let old = plan(&input(&without_92), &config, None).unwrap();
    assert_eq!(old.groups.len(), 3);
    let mut lab = Lab::with_plan(AgentConfig::default(), old.clone());
    lab.run_until(ms(2000));
    let new = plan(&input(&all_vips()), &config, Some(&old)).unwrap();
    assert_eq!(new.groups.len(), 4);
    lab.plan = new.clone();
    for (i, name) in NAMES.iter().enumerate() {
        let out = lab.nodes[i].agent.apply_plan(lab.now, &new);
        assert!(!out.iter().any(|na| matches!(na.action, Action::RemoveVips(_))), "{name}");
        lab.deliver(i, out);
    }
    lab.run_until(ms(5000));
    for vip in without_92 {
        assert_no_gap_and_no_long_overlap(&lab, &vip, ms(1000));
        assert_eq!(lab.nic_holders(&vip), BTreeSet::from([0]), "{vip}");
    }
    assert_eq!(lab.nic_holders(&ip(92)), BTreeSet::from([0]));
}

#[test]
fn replaced_master_that_keeps_its_vips_sends_no_release() {
    let config = AgentConfig { preempt_delay: ms(1000), ..AgentConfig::default() };
    let local = plan_with(|order| vec![order[1].to_string()], None);
    let mut lab = Lab::with_plan(config, local.clone());
    lab.run_until(ms(3000));
    let cluster = plan_with(|order| order.iter().map(|s| s.to_string()).collect(), Some(&local));
    let now = lab.now;
    for (name, node) in NAMES.iter().zip(lab.nodes.iter_mut()) {
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
    let mut lab = Lab::new(AgentConfig::default());
    lab.run_until(ms(3000));
    let g = lab.plan.groups[0].clone();
    let (first, second) = (index(&g.priorities[0].0), index(&g.priorities[1].0));
    for j in 0..3 {
        if j != first {
            lab.cut.insert((first.min(j), first.max(j)));
        }
    }
    lab.run_until(ms(6000));
    assert_eq!(lab.holders(&g.vips[0]), {
        let mut v = vec![first, second];
        v.sort();
        v
    });
    // The loser's GARPs pointed clients at it. Heal right after the winner's advert, so that the loser's advert
    // crosses first: that is the advert the winner answers with an announcement. (When the winner's advert
    // crosses first, the loser steps down silently and the winner hears nothing; see the report.)
    let key = lab.nodes[first].agent.instances().find(|(k, _)| k.vrid == g.vrid).map(|(k, _)| k.clone()).unwrap();
    let next =
        |lab: &Lab, n: usize| lab.nodes[n].agent.instance(&key).unwrap().deadline(TimerKind::AdverTimer).unwrap();
    if next(&lab, first) < next(&lab, second) {
        let t = next(&lab, first);
        lab.run_until(t);
    }
    let heal = lab.now;
    lab.cut.clear();
    lab.run_until(heal + ms(100));
    let burst: Vec<&(Time, usize, Vec<IpAddr>)> =
        lab.announces.iter().filter(|(t, n, v)| *t >= heal && *n == first && v == &g.vips).collect();
    assert_eq!(burst.len(), 1, "{burst:?}");
    assert!(burst[0].0 <= heal + ms(100));
    assert_eq!(lab.holders(&g.vips[0]), vec![first]);
    // The loser does not announce these VIPs; nobody else does either.
    assert!(lab.announces.iter().filter(|(t, _, v)| *t >= heal && v.contains(&g.vips[0])).all(|(_, n, _)| *n == first));
}

#[test]
fn agent_shutdown_releases_everything_and_ignores_later_plans() {
    let mut lab = Lab::new(AgentConfig::default());
    lab.run_until(ms(2000));
    let held: usize = lab.nodes[0].agent.held_vips().values().map(BTreeSet::len).sum();
    let out = lab.nodes[0].agent.shutdown(lab.now);
    let removed: usize =
        out.iter().filter_map(|na| if let Action::RemoveVips(v) = &na.action { Some(v.len()) } else { None }).sum();
    assert_eq!(removed, held);
    assert!(lab.nodes[0].agent.held_vips().is_empty());
    let plan = lab.plan.clone();
    assert!(lab.nodes[0].agent.apply_plan(lab.now, &plan).is_empty());
    assert!(lab.nodes[0].agent.next_deadline().is_none());
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
        let mut lab = Lab::new(config);
        lab.run_until(ms(1000));
        for (dt, ev) in events {
            let t = lab.now + ms(dt);
            lab.run_until(t);
            match ev {
                Event::Crash(i) => lab.crash(i),
                Event::Restart(i) => lab.restart(i),
                Event::Shutdown(i) => if lab.nodes[i].alive { lab.shutdown(i) },
                Event::Cut(a, b) => if a != b { lab.cut.insert((a.min(b), a.max(b))); },
                Event::Heal => lab.cut.clear(),
            }
        }
        lab.cut.clear();
        let end = lab.now + ms(5000);
        lab.run_until(end);
        for g in &lab.plan.groups {
            let best = g.priorities.iter().map(|(n, _)| index(n)).find(|i| lab.nodes[*i].alive);
            for vip in &g.vips {
                let holders = lab.holders(vip);
                match best {
                    Some(b) => prop_assert_eq!(holders, vec![b], "{}", vip),
                    None => prop_assert!(holders.is_empty()),
                }
            }
        }
    }
}
