//! One node's agent on a LAN that is not clean: spoofed adverts, foreign VRRP routers on our VRIDs, floods.
//! Every drop rule of the agent and what it reports, with exact counts.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use openelb_core::IpFamily;
use openelb_core::vrrp::agent::{Agent, AgentConfig, InstanceKey, NodeAction};
use openelb_core::vrrp::consts::MULTICAST_V4;
use openelb_core::vrrp::event::{AgentEvent, REPORT_INTERVAL};
use openelb_core::vrrp::foreign::{
    FOREIGN_CONFIRM, FOREIGN_REPORTS_PER_WINDOW, MAX_FOREIGN_VRIDS, MAX_SOURCES_PER_VRID,
};
use openelb_core::vrrp::plan::{PlanConfig, PlanContext, VipInput, plan};
use openelb_core::vrrp::refusal::AdvertRefusal;
use openelb_core::vrrp::state::{Action, State, TimerKind, master_down_interval};
use openelb_core::vrrp::{Advert, Received, Time};

const IFACE: &str = "eth0";
const NAMES: [&str; 3] = ["n0", "n1", "n2"];
/// Not a node: the attacker, or another team's keepalived.
const STRANGER: u8 = 250;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

fn ms(v: u64) -> Time {
    Duration::from_millis(v)
}

/// Node `i` is 192.0.2.(2 + i).
fn node(i: usize) -> IpAddr {
    ip(2 + i as u8)
}

/// Our VIPs .91 and .92 prefer n0, then n1, then n2; .93 (another group) prefers n2 alone.
fn vip_inputs() -> Vec<VipInput> {
    let order = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
    vec![
        VipInput { vip: ip(91), interface: IFACE.into(), candidates: order(&NAMES) },
        VipInput { vip: ip(92), interface: IFACE.into(), candidates: order(&NAMES) },
        VipInput { vip: ip(93), interface: IFACE.into(), candidates: order(&["n2"]) },
    ]
}

struct Node {
    agent: Agent,
    key: InstanceKey,
    vrid: u8,
    other_vrid: u8,
    /// Adverts sent on the instance's own schedule (timers, start).
    sent: Vec<(Time, u8)>,
    /// Adverts sent in answer to a received one.
    answers: Vec<Time>,
    bursts: Vec<Time>,
    transitions: Vec<(Time, State)>,
}

impl Node {
    /// Node `i` with the plan applied at 0 and the cluster's nodes as its known peers.
    fn new(i: usize) -> Node {
        let p = plan(&vip_inputs(), &PlanConfig::default(), &PlanContext::default());
        let ours = p.group_of(&ip(91)).unwrap();
        let vrid = ours.vrid;
        let other_vrid = p.group_of(&ip(93)).unwrap().vrid;
        let mut agent = Agent::new(NAMES[i], AgentConfig::default()).unwrap();
        agent.set_known_peers((0..3).map(node));
        let mut n = Node {
            agent,
            key: InstanceKey { interface: IFACE.into(), family: IpFamily::V4, vrid },
            vrid,
            other_vrid,
            sent: Vec::new(),
            answers: Vec::new(),
            bursts: Vec::new(),
            transitions: Vec::new(),
        };
        let out = n.agent.set_primary(Time::ZERO, IFACE, node(i));
        n.record(Time::ZERO, out, false);
        let out = n.agent.apply_plan(Time::ZERO, &p);
        n.record(Time::ZERO, out, false);
        n
    }

    fn record(&mut self, now: Time, out: Vec<NodeAction>, answer: bool) {
        for na in out.into_iter().filter(|na| na.key == self.key) {
            match na.action {
                Action::SendAdvert(_) if answer => self.answers.push(now),
                Action::SendAdvert(a) => self.sent.push((now, a.priority)),
                Action::Announce { .. } => self.bursts.push(now),
                Action::StateChanged { to, .. } => self.transitions.push((now, to)),
                _ => {}
            }
        }
    }

    fn run_until(&mut self, until: Time) {
        while let Some((t, key)) = self.agent.next_deadline().filter(|(t, _)| *t <= until) {
            let out = self.agent.timer_fired(t, &key);
            self.record(t, out, false);
        }
    }

    fn offer(&mut self, now: Time, rx: Received) {
        self.run_until(now);
        let out = self.agent.handle_advert(now, IFACE, rx);
        self.record(now, out, true);
    }

    fn state(&self) -> State {
        self.agent.instance(&self.key).unwrap().state()
    }

    fn dropped(&self, r: AdvertRefusal) -> u64 {
        self.agent.instance(&self.key).unwrap().counters().dropped.get(r)
    }

    fn master_down(&self) -> Option<Time> {
        self.agent.instance(&self.key).unwrap().deadline(TimerKind::MasterDown)
    }
}

fn advert(vrid: u8, priority: u8, addresses: &[IpAddr]) -> Advert {
    Advert { vrid, priority, max_advert_int: 10, addresses: addresses.to_vec() }
}

fn from(src: IpAddr, advert: Advert) -> Received {
    Received { src, dst: MULTICAST_V4.into(), ttl: 255, advert }
}

fn ours() -> Vec<IpAddr> {
    vec![ip(91), ip(92)]
}

/// n0 as Master (first preference, alone on the LAN).
fn master() -> Node {
    let mut n = Node::new(0);
    n.run_until(ms(1000));
    assert_eq!(n.state(), State::Master);
    n.sent.clear();
    n.answers.clear();
    n.bursts.clear();
    n.transitions.clear();
    n
}

/// n1 as Backup, following n0's adverts (last one at 1 s).
fn backup() -> Node {
    let mut n = Node::new(1);
    for t in (0..=1000).step_by(100) {
        n.offer(ms(t), from(node(0), advert(n.vrid, 250, &ours())));
    }
    assert_eq!(n.state(), State::Backup);
    n.transitions.clear();
    n
}

fn foreign_reports(events: &[AgentEvent]) -> Vec<&openelb_core::vrrp::foreign::ForeignRouter> {
    events.iter().filter_map(|e| if let AgentEvent::ForeignRouter(r) = e { Some(r) } else { None }).collect()
}

#[test]
fn spoofed_adverts_at_255_and_254_from_a_non_node_move_nothing() {
    for priority in [255, 254] {
        let mut m = master();
        let mut b = backup();
        let down = b.master_down();
        for k in 0..30 {
            let t = ms(1001 + k);
            m.offer(t, from(ip(STRANGER), advert(m.vrid, priority, &ours())));
            b.offer(t, from(ip(STRANGER), advert(b.vrid, priority, &ours())));
            // Unicast to the backup too.
            b.offer(t, Received { dst: node(1), ..from(ip(STRANGER), advert(b.vrid, priority, &ours())) });
        }
        assert_eq!((m.state(), b.state()), (State::Master, State::Backup), "priority {priority}");
        assert!(m.transitions.is_empty() && b.transitions.is_empty());
        assert!(m.answers.is_empty(), "no answer to a stranger: {:?}", m.answers);
        assert_eq!(b.master_down(), down, "the backup still waits for n0 only");
        assert_eq!((m.dropped(AdvertRefusal::UnknownSource), b.dropped(AdvertRefusal::UnknownSource)), (30, 60));
        // Reported once, as a stranger claiming our VIPs.
        let events = m.agent.take_events(ms(1100));
        let reports = foreign_reports(&events);
        assert_eq!(reports.len(), 1, "{events:?}");
        assert!(!reports[0].known_peer && reports[0].claims_our_vips);
        assert_eq!((reports[0].src, reports[0].priority, reports[0].vrid), (ip(STRANGER), priority, m.vrid));
        // Claiming our own VIPs is no reason to move our group: moving would not shake off an impostor.
        assert!(m.agent.foreign_vrids(ms(1100)).is_empty());
    }
}

#[test]
fn a_max_adver_int_of_4095_is_never_adopted() {
    let mut b = backup();
    let down = b.master_down();
    let slow = Advert { max_advert_int: 4095, ..advert(b.vrid, 254, &ours()) };
    b.offer(ms(1010), from(node(2), slow.clone()));
    b.offer(ms(1020), from(ip(STRANGER), slow));
    assert_eq!(b.master_down(), down);
    assert_eq!(b.agent.instance(&b.key).unwrap().master_adver_interval(), 10);
    assert_eq!((b.dropped(AdvertRefusal::IntervalOutOfBounds), b.dropped(AdvertRefusal::UnknownSource)), (1, 1));
    // n0 goes silent: the backup takes over at n0's Master_Down_Interval, not 126 s later.
    b.run_until(ms(5000));
    assert_eq!(b.transitions, vec![(ms(1000) + master_down_interval(240, 10), State::Master)]);
}

#[test]
fn unicast_priority_zero_to_a_backup_from_anyone_but_its_master_is_ignored() {
    let mut b = backup();
    let down = b.master_down();
    for k in 0..30 {
        let t = ms(1001 + k);
        for src in [node(2), ip(STRANGER)] {
            b.offer(t, Received { dst: node(1), ..from(src, advert(b.vrid, 0, &ours())) });
        }
    }
    assert!(b.transitions.is_empty(), "{:?}", b.transitions);
    assert_eq!(b.master_down(), down);
    assert_eq!((b.dropped(AdvertRefusal::ReleaseNotFromMaster), b.dropped(AdvertRefusal::UnknownSource)), (30, 30));
    // n0's own release still hands over at Skew_Time.
    b.offer(ms(1050), from(node(0), advert(b.vrid, 0, &ours())));
    assert!(b.master_down().unwrap() < ms(1060));
}

#[test]
fn a_foreign_router_on_our_vrid_changes_nothing_and_is_reported_once() {
    let theirs = [ip(200)];
    for priority in [254, 100] {
        for src in [ip(STRANGER), node(2)] {
            let mut m = master();
            let mut b = backup();
            let down = b.master_down();
            // keepalived's 1 s adverts for ten seconds (the backup keeps hearing n0).
            for s in 0..10u64 {
                for t in (0..1000).step_by(100).map(|t| ms(1000 + s * 1000 + t)) {
                    b.offer(t, from(node(0), advert(b.vrid, 250, &ours())));
                }
                let t = ms(1050 + s * 1000);
                m.offer(t, from(src, advert(m.vrid, priority, &theirs)));
                b.offer(t, from(src, advert(b.vrid, priority, &theirs)));
            }
            let what = format!("priority {priority} from {src}");
            assert_eq!((m.state(), b.state()), (State::Master, State::Backup), "{what}");
            assert!(m.transitions.is_empty() && b.transitions.is_empty(), "{what}");
            assert!(m.bursts.is_empty(), "{what}: {:?}", m.bursts);
            // The master's adverts are its own schedule only.
            assert!(m.answers.is_empty(), "{what}: {:?}", m.answers);
            assert!(b.master_down() > down, "{what}: still following n0");
            let reason = if src == node(2) { AdvertRefusal::ForeignAddresses } else { AdvertRefusal::UnknownSource };
            assert_eq!(m.dropped(reason), 10, "{what}");
            // Reported once; a cluster node's only once it has been seen for FOREIGN_CONFIRM.
            let events = m.agent.take_events(ms(11_000));
            let reports = foreign_reports(&events);
            assert_eq!(reports.len(), 1, "{what}: {events:?}");
            assert_eq!((reports[0].known_peer, reports[0].claims_our_vips), (src == node(2), false), "{what}");
            assert_eq!(reports[0].addresses, theirs);
            assert!(reports[0].to_string().contains("192.0.2.200"), "{}", reports[0]);
            // Its VRID is in use: the planner moves our group off it.
            let in_use = m.agent.foreign_vrids(ms(11_000));
            assert_eq!(in_use.iter().map(|f| f.vrid.vrid).collect::<Vec<_>>(), vec![m.vrid], "{what}");
            let avoid: Vec<_> = in_use.into_iter().map(|f| f.vrid).collect();
            let p = plan(&vip_inputs(), &PlanConfig::default(), &PlanContext { avoid: &avoid, ..Default::default() });
            assert_ne!(p.group_of(&ip(91)).unwrap().vrid, m.vrid);
        }
    }
}

#[test]
fn a_cluster_node_seen_briefly_with_unknown_addresses_is_not_a_foreign_router_yet() {
    // A peer whose plan is a moment ahead (brand-new VIPs on a VRID ours still uses for another group).
    let mut m = master();
    for k in 0..20 {
        m.offer(ms(1000 + k * 100), from(node(2), advert(m.vrid, 240, &[ip(99)])));
    }
    let t = ms(1000) + FOREIGN_CONFIRM - ms(100);
    assert!(m.agent.foreign_vrids(t).is_empty());
    assert!(foreign_reports(&m.agent.take_events(t)).is_empty());
    assert_eq!(m.dropped(AdvertRefusal::ForeignAddresses), 20);
}

#[test]
fn another_group_of_our_plan_on_our_vrid_is_not_foreign() {
    let mut m = master();
    // n2 advertises .93 (its own group in our plan) on our VRID: plans differ for a moment.
    for k in 0..100 {
        m.offer(ms(1000 + k * 100), from(node(2), advert(m.vrid, 254, &[ip(93)])));
    }
    assert_eq!(m.state(), State::Master);
    assert_eq!(m.dropped(AdvertRefusal::OtherGroup), 100);
    assert!(m.agent.foreign_vrids(ms(11_000)).is_empty());
    assert!(m.agent.take_events(ms(11_000)).is_empty(), "routine, not worth a warning");
}

#[test]
fn no_advert_is_accepted_before_the_known_peers_are_set() {
    let p = plan(&vip_inputs(), &PlanConfig::default(), &PlanContext::default());
    let vrid = p.group_of(&ip(91)).unwrap().vrid;
    let mut agent = Agent::new("n1", AgentConfig::default()).unwrap();
    agent.set_primary(Time::ZERO, IFACE, node(1));
    agent.apply_plan(Time::ZERO, &p);
    assert!(agent.handle_advert(ms(10), IFACE, from(node(0), advert(vrid, 250, &ours()))).is_empty());
    let key = InstanceKey { interface: IFACE.into(), family: IpFamily::V4, vrid };
    assert_eq!(agent.instance(&key).unwrap().counters().dropped.get(AdvertRefusal::UnknownSource), 1);
    agent.set_known_peers([node(0)]);
    assert!(!agent.handle_advert(ms(20), IFACE, from(node(0), advert(vrid, 250, &ours()))).is_empty());
}

#[test]
fn a_master_answers_a_flood_of_lower_adverts_at_most_once_per_interval() {
    // 2932 lower-priority adverts in 2 s from a cluster node used to become 2962 adverts of ours.
    let mut m = master();
    let start = ms(1000);
    for k in 0..2932u64 {
        m.offer(start + Duration::from_micros(k * 682), from(node(1), advert(m.vrid, 240, &ours())));
    }
    let end = start + Duration::from_micros(2931 * 682);
    let extra = m.answers.len();
    assert!((19..=21).contains(&extra), "{extra} extra adverts in 2 s: one per 100 ms");
    assert!(m.bursts.len() <= 2, "{:?}", m.bursts);
    let c = m.agent.instance(&m.key).unwrap().counters();
    assert!(c.replies_suppressed >= 2932 * 2 - 21 - 2, "{c:?}");
    assert!(end < ms(3000));
}

#[test]
fn a_flood_of_20k_odd_adverts_yields_a_bounded_number_of_reports() {
    let mut m = master();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut events = Vec::new();
    for k in 0..20_000u64 {
        let now = ms(1000) + Duration::from_micros(k * 50);
        let r = next();
        let src = match r % 4 {
            0 => node(2),
            _ => IpAddr::V4(Ipv4Addr::from(0xc000_0200u32 + 100 + (r >> 8) as u32 % 150)),
        };
        let vrid = if r >> 16 & 1 == 0 { m.vrid } else { (r >> 24) as u8 };
        let n = (r >> 32) % 6;
        let addresses: Vec<IpAddr> = (0..n).map(|j| ip(((r >> (40 + j)) % 254) as u8 + 1)).collect();
        let ttl = if r >> 60 == 0 { 64 } else { 255 };
        let priority = ((r >> 48) % 250) as u8;
        let mut rx = from(src, Advert { vrid, priority, max_advert_int: (r >> 56) as u16 % 20, addresses });
        rx.ttl = ttl;
        m.offer(now, rx);
        if k % 1000 == 0 {
            events.extend(m.agent.take_events(now));
        }
    }
    events.extend(m.agent.take_events(ms(2000)));
    assert_eq!(m.state(), State::Master, "{:?}", m.transitions);
    let reports = foreign_reports(&events);
    assert!(reports.len() <= FOREIGN_REPORTS_PER_WINDOW as usize, "{} foreign reports", reports.len());
    let anomalies = events.iter().filter(|e| matches!(e, AgentEvent::Anomalies(_))).count();
    assert!(anomalies <= 1, "{anomalies} summaries for one instance within a minute");
    assert!(events.len() <= FOREIGN_REPORTS_PER_WINDOW as usize + 1);
    assert!(m.agent.foreign_routers().len() <= 256, "bounded memory");
    let in_use = m.agent.foreign_vrids(ms(2000));
    assert!(in_use.iter().all(|f| f.sources.len() <= MAX_SOURCES_PER_VRID), "{in_use:?}");
    assert!(in_use.len() <= MAX_FOREIGN_VRIDS, "{} VRIDs in use: {in_use:?}", in_use.len());
    // Extra adverts stay within one per advert interval over the second of flood.
    let extra = m.answers.len();
    assert!(extra <= 11, "{extra} extra adverts");
}

#[test]
fn odd_adverts_are_summed_up_at_most_once_a_minute_per_instance() {
    let mut m = master();
    let bad_ttl = Received { ttl: 64, ..from(node(1), advert(m.vrid, 240, &ours())) };
    for k in 0..1000 {
        m.offer(ms(1000) + Duration::from_micros(k), bad_ttl.clone());
    }
    assert!(m.agent.events_pending(ms(1001)));
    let first = m.agent.take_events(ms(1001));
    let [AgentEvent::Anomalies(a)] = first.as_slice() else { panic!("{first:?}") };
    assert_eq!((a.key.vrid, a.dropped.get(AdvertRefusal::Ttl), a.dropped.total()), (m.vrid, 1000, 1000));
    assert!(a.to_string().contains("ttl 1000"), "{a}");
    // More of the same: counted, reported after REPORT_INTERVAL with only what is new.
    for k in 0..10 {
        m.offer(ms(2000 + k), bad_ttl.clone());
    }
    assert!(!m.agent.events_pending(ms(2000)));
    assert!(m.agent.take_events(ms(2000)).is_empty());
    let later = m.agent.take_events(ms(1001) + REPORT_INTERVAL);
    let [AgentEvent::Anomalies(a)] = later.as_slice() else { panic!("{later:?}") };
    assert_eq!(a.dropped.get(AdvertRefusal::Ttl), 10);
    // Nothing new: nothing to say.
    assert!(m.agent.take_events(ms(1001) + REPORT_INTERVAL * 3).is_empty());
}

#[test]
fn unknown_routers_on_vrids_we_do_not_run_are_remembered_not_reported() {
    let mut m = master();
    let spare: u8 = (100..=255).find(|v| *v != m.vrid && *v != m.other_vrid).unwrap();
    for s in 0..8u64 {
        m.offer(ms(1000 + s * 1000), from(ip(STRANGER), advert(spare, 100, &[ip(200)])));
        // A known peer on a VRID we do not run is another node's plan, never foreign.
        m.offer(ms(1000 + s * 1000), from(node(2), advert(spare.wrapping_add(1), 100, &[ip(201)])));
    }
    assert!(foreign_reports(&m.agent.take_events(ms(9000))).is_empty());
    let in_use: BTreeSet<u8> = m.agent.foreign_vrids(ms(9000)).into_iter().map(|f| f.vrid.vrid).collect();
    assert_eq!(in_use, BTreeSet::from([spare]));
    assert_eq!(m.agent.unrouted_drops().get(AdvertRefusal::NoInstance), 16);
    // Gone quiet for a minute: no longer in use.
    assert!(m.agent.foreign_vrids(ms(8000) + Duration::from_secs(61)).is_empty());
}

/// keepalived as master stops advertising while it hears our faster adverts on its VRID: its first advert may
/// be the only one we get. An unknown source's multicast advert for addresses that are not ours takes its VRID
/// out of our plan at once; the same advert unicast to one node never does (that node alone would move).
#[test]
fn one_multicast_advert_of_a_stranger_takes_its_vrid_and_a_unicast_one_does_not() {
    let theirs = [ip(200)];
    let mut m = master();
    m.offer(ms(1050), from(ip(STRANGER), advert(m.vrid, 254, &theirs)));
    let in_use = m.agent.foreign_vrids(ms(1100));
    assert_eq!(in_use.iter().map(|f| f.vrid.vrid).collect::<Vec<_>>(), vec![m.vrid]);
    assert_eq!(m.state(), State::Master);

    let mut b = backup();
    for k in 0..100 {
        let rx = Received { dst: node(1), ..from(ip(STRANGER), advert(b.vrid, 254, &theirs)) };
        b.offer(ms(1001 + k * 100), rx);
    }
    assert!(b.agent.foreign_vrids(ms(11_000)).is_empty(), "{:?}", b.agent.foreign_vrids(ms(11_000)));
    assert_eq!(b.dropped(AdvertRefusal::UnknownSource), 100);
}

/// Spoofed multicast adverts on every VRID: at most MAX_FOREIGN_VRIDS count as in use, the earliest seen, and
/// later ones never displace them (our groups move at most once).
#[test]
fn a_flood_on_every_vrid_takes_at_most_a_few_and_always_the_same() {
    let mut m = master();
    let first: Vec<u8> = (1..=255u8).collect();
    for (k, vrid) in first.iter().enumerate() {
        m.offer(ms(1000 + k as u64), from(ip(STRANGER), advert(*vrid, 100, &[ip(200)])));
    }
    let early: Vec<u8> = m.agent.foreign_vrids(ms(1300)).into_iter().map(|f| f.vrid.vrid).collect();
    assert_eq!(early, (1..=MAX_FOREIGN_VRIDS as u8).collect::<Vec<_>>());
    for (k, vrid) in first.iter().rev().enumerate() {
        m.offer(ms(2000 + k as u64), from(ip(STRANGER - 1), advert(*vrid, 100, &[ip(201)])));
    }
    let later: Vec<u8> = m.agent.foreign_vrids(ms(2300)).into_iter().map(|f| f.vrid.vrid).collect();
    assert_eq!(later, early);
    assert_eq!(m.state(), State::Master);
}
