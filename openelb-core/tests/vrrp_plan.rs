//! The group/VRID planner: grouping rules, priorities, VRID determinism, collisions and stickiness
//! (docs/election.md#vrrp-groups, docs/vrrp.md).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use openelb_core::IpFamily;
use openelb_core::election::rank;
use openelb_core::vrrp::plan::{
    ForeignVrid, GroupId, MergeLevel, Plan, PlanConfig, PlanConfigError, PlanContext, PlanIssue, PublishedConflict,
    VipInput, VridScope, plan,
};
use proptest::prelude::*;

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

fn v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last))
}

fn vip(addr: IpAddr, iface: &str, cands: &[&str]) -> VipInput {
    VipInput { vip: addr, interface: iface.into(), candidates: cands.iter().map(|s| s.to_string()).collect() }
}

/// A VIP ranked by the real rendezvous order, as the speaker will feed it.
fn ranked(addr: IpAddr, iface: &str, nodes: &[&str]) -> VipInput {
    let order = rank(&addr, nodes);
    vip(addr, iface, &order)
}

fn cfg() -> PlanConfig {
    PlanConfig::default()
}

fn after(previous: Option<&Plan>) -> PlanContext<'_> {
    PlanContext { previous, ..PlanContext::default() }
}

/// The whole VRID space, as before the default range left 1-99 to others.
fn full() -> PlanConfig {
    PlanConfig { vrids: 1..=255, ..cfg() }
}

fn vrids_unique(p: &Plan, scope: VridScope) -> bool {
    let mut seen = BTreeSet::new();
    p.groups.iter().all(|g| {
        let iface = match scope {
            VridScope::Global => String::new(),
            VridScope::PerInterface => g.id.interface.clone(),
        };
        seen.insert((iface, g.id.family, g.vrid))
    })
}

#[test]
fn same_candidates_first_preference_interface_and_family_form_one_group() {
    let input = vec![
        vip(v4(91), "eth0", &["a", "b", "c"]),
        vip(v4(92), "eth0", &["a", "c", "b"]), // same set, same first: same group
        vip(v4(93), "eth0", &["b", "a", "c"]), // other first
        vip(v4(94), "eth1", &["a", "b", "c"]), // other interface
        vip(v6(91), "eth0", &["a", "b", "c"]), // other family
        vip(v4(95), "eth0", &["a", "b"]),      // other set
        vip(v4(96), "eth0", &[]),              // withdrawn
    ];
    let p = plan(&input, &cfg(), &after(None));
    assert_eq!(p.groups.len(), 5);
    let g = p.group_of(&v4(91)).unwrap();
    assert_eq!(g.vips, vec![v4(91), v4(92)]);
    assert_eq!(g.id.first, "a");
    assert_eq!(g.id.candidates, vec!["a", "b", "c"]);
    assert_eq!(p.group_of(&v6(91)).unwrap().id.family, IpFamily::V6);
    assert!(p.group_of(&v4(96)).is_none());
    assert!(vrids_unique(&p, VridScope::Global));
}

#[test]
fn priorities_start_at_250_and_fall_by_the_step_with_preference() {
    let p = plan(&[vip(v4(91), "eth0", &["c", "a", "b"])], &cfg(), &after(None));
    let g = &p.groups[0];
    assert_eq!(g.priorities, vec![("c".into(), 250), ("a".into(), 240), ("b".into(), 230)]);
    assert_eq!(g.priority_of("b"), Some(230));
    assert_eq!(g.priority_of("not-a-candidate"), None);
    assert_eq!(p.for_node("not-a-candidate").count(), 0);
}

#[test]
fn group_backup_order_is_the_borda_count_of_its_vips() {
    // After the shared first "a": b is 2nd, 2nd, 3rd (sum 1+1+2=4), c is 3rd, 3rd, 2nd (sum 5).
    let input = vec![
        vip(v4(91), "eth0", &["a", "b", "c"]),
        vip(v4(92), "eth0", &["a", "b", "c"]),
        vip(v4(93), "eth0", &["a", "c", "b"]),
    ];
    let p = plan(&input, &cfg(), &after(None));
    let names: Vec<&str> = p.groups[0].priorities.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["a", "b", "c"]);
}

#[test]
fn priorities_stay_strictly_decreasing_and_at_least_one_for_many_candidates() {
    let names: Vec<String> = (0..300).map(|i| format!("node-{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    for n in [1usize, 2, 25, 26, 100, 250, 300] {
        let p = plan(&[vip(v4(91), "eth0", &refs[..n])], &cfg(), &after(None));
        let prios: Vec<u8> = p.groups[0].priorities.iter().map(|(_, p)| *p).collect();
        assert_eq!(prios.len(), n.min(250), "n={n}");
        assert_eq!(prios[0], 250);
        assert!(prios.windows(2).all(|w| w[0] > w[1]), "n={n}: {prios:?}");
        assert!(prios.iter().all(|p| (1..=254).contains(p)));
    }
}

#[test]
fn stable_hash_is_pinned() {
    let id = GroupId {
        interface: "eth0".into(),
        family: IpFamily::V4,
        first: "worker-p001".into(),
        candidates: vec!["master1".into(), "worker-p001".into(), "worker-p002".into()],
        part: 0,
    };
    // Part 0 hashes as before parts existed: unsplit groups keep their VRIDs across the upgrade.
    assert_eq!(id.stable_hash(), 0x9038_8f91_dc5c_1c8d);
    assert_ne!(GroupId { part: 1, ..id.clone() }.stable_hash(), id.stable_hash());
    let p = plan(&[vip(v4(91), "eth0", &["worker-p001", "worker-p002", "master1"])], &full(), &after(None));
    assert_eq!(p.groups[0].vrid, (0x9038_8f91_dc5c_1c8du64 % 255 + 1) as u8);
    // The default range 100-255 (156 VRIDs).
    let p = plan(&[vip(v4(91), "eth0", &["worker-p001", "worker-p002", "master1"])], &cfg(), &after(None));
    assert_eq!(p.groups[0].vrid, (0x9038_8f91_dc5c_1c8du64 % 156 + 100) as u8);
}

#[test]
fn offset_rotates_the_home_slot() {
    let input = [vip(v4(91), "eth0", &["a", "b"])];
    let a = plan(&input, &full(), &after(None)).groups[0].vrid;
    let b = plan(&input, &PlanConfig { offset: 1, ..full() }, &after(None)).groups[0].vrid;
    assert_eq!(u16::from(b), u16::from(a) % 255 + 1);
}

#[test]
fn groups_that_share_no_candidate_and_do_not_fit_are_reported_not_given_to_anyone() {
    let input: Vec<VipInput> =
        (0..4).map(|i| vip(v4(91 + i), "eth0", &[["a", "b", "c", "d"][usize::from(i)]])).collect();
    let p = plan(&input, &PlanConfig { vrids: 10..=12, ..cfg() }, &after(None));
    assert_eq!(p.groups.len(), 3, "three VRIDs, three groups");
    assert!(vrids_unique(&p, VridScope::Global));
    let [PlanIssue::Unplaced { interface, family, vips, .. }] = p.issues.as_slice() else { panic!("{:?}", p.issues) };
    assert_eq!((interface.as_str(), *family, vips.len()), ("eth0", IpFamily::V4, 1));
    assert!(p.group_of(&vips[0]).is_none());
    assert!(p.issues[0].to_string().contains("not announced (vrids_exhausted)"), "{}", p.issues[0]);
    // Every placed VIP is still held by its only candidate.
    for v in &input {
        if let Some(g) = p.group_of(&v.vip) {
            assert_eq!(g.priorities, vec![(v.candidates[0].clone(), 250)]);
        }
    }
    // Per interface the same groups fit when spread over two interfaces.
    let spread: Vec<VipInput> = input
        .iter()
        .enumerate()
        .map(|(i, v)| VipInput { interface: if i % 2 == 0 { "eth0".into() } else { "eth1".into() }, ..v.clone() })
        .collect();
    let per_iface = PlanConfig { vrids: 10..=12, scope: VridScope::PerInterface, ..cfg() };
    let p = plan(&spread, &per_iface, &after(None));
    assert!(p.issues.is_empty(), "{:?}", p.issues);
    assert!(vrids_unique(&p, VridScope::PerInterface));
    assert!(p.groups.iter().all(|g| (10..=12).contains(&g.vrid)));
}

#[test]
#[allow(clippy::reversed_empty_ranges)] // an end before the start is the input under test
fn invalid_config_is_reported_and_replaced_by_the_nearest_valid_value() {
    let input = [vip(v4(91), "eth0", &["a", "b"])];
    let issue = |c: &PlanConfig| -> (Plan, String) {
        let p = plan(&input, c, &after(None));
        let text = p.issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        (p, text)
    };
    let c = PlanConfig { vrids: 0..=10, ..cfg() };
    assert_eq!(c.validate(), Err(PlanConfigError::InvalidRange { first: 0, last: 10, what: "VRID 0 is reserved" }));
    let (p, text) = issue(&c);
    assert!((1..=10).contains(&p.groups[0].vrid), "{p:?}");
    assert_eq!(text, "VRRP plan settings: VRID range 0-10: VRID 0 is reserved; using the nearest valid value");
    let (p, text) = issue(&PlanConfig { vrids: 20..=10, ..cfg() });
    assert!((10..=20).contains(&p.groups[0].vrid), "{p:?}");
    assert!(text.contains("VRID range 20-10: range end is before its start"), "{text}");
    let (p, text) = issue(&PlanConfig { top_priority: 255, priority_step: 0, ..cfg() });
    assert_eq!(p.groups[0].priorities, vec![("a".into(), 254), ("b".into(), 253)]);
    assert!(text.contains("top 255 step 0"), "{text}");
    // No VRID at all: nothing placed, everything reported.
    let (p, text) = issue(&PlanConfig { vrids: 0..=0, ..cfg() });
    assert!(p.groups.is_empty());
    assert!(text.contains("1 IPv4 VIPs on eth0 are not announced"), "{text}");
    assert_eq!(cfg().validate(), Ok(()));
}

#[test]
fn a_vip_listed_twice_differently_keeps_the_first_entry_and_is_reported() {
    let clash = [vip(v4(91), "eth1", &["a", "b"]), vip(v4(91), "eth0", &["b", "a"]), vip(v4(91), "eth0", &[])];
    let p = plan(&clash, &cfg(), &after(None));
    assert_eq!(p.groups.len(), 1);
    assert_eq!((p.groups[0].id.interface.as_str(), p.groups[0].id.first.as_str()), ("eth0", "b"));
    assert_eq!(
        p.issues,
        vec![PlanIssue::ConflictingVip {
            vip: v4(91),
            interface: "eth0".into(),
            candidates: vec!["b".into(), "a".into()]
        }]
    );
    // Whatever the order they come in.
    let mut reversed = clash.to_vec();
    reversed.reverse();
    assert_eq!(plan(&reversed, &cfg(), &after(None)), p);
    // Listed twice identically (e.g. two sharers, already merged) is fine.
    let twice = [vip(v4(91), "eth0", &["a", "b"]), vip(v4(91), "eth0", &["a", "b", "a"])];
    let p = plan(&twice, &cfg(), &after(None));
    assert_eq!((p.groups.len(), p.issues.len()), (1, 0));
}

/// 1000 Services with the same candidate set: one group before splitting, which no advert could carry.
fn thousand(family_v6: bool) -> Vec<VipInput> {
    let nodes = ["master1", "worker-p001", "worker-p002"];
    (0..1000u16)
        .map(|i| {
            // Listed out of address order on purpose.
            let i = i * 7 % 1000;
            let addr = if family_v6 {
                v6(i + 1)
            } else {
                IpAddr::V4(Ipv4Addr::new(198, 51, 100 + (i / 250) as u8, (i % 250) as u8 + 1))
            };
            vip(addr, "eth0", &nodes)
        })
        .collect()
}

#[test]
fn a_group_larger_than_one_advert_stays_one_group_with_one_vrid() {
    for v6 in [false, true] {
        let input = thousand(v6);
        let p = plan(&input, &cfg(), &after(None));
        // Three candidates, one first preference per VIP: at most three groups, whatever their size.
        assert!(p.groups.len() <= 3, "v6={v6}: {} groups", p.groups.len());
        assert!(p.groups.iter().all(|g| g.id.part == 0));
        assert_eq!(p.groups.iter().map(|g| g.vips.len()).sum::<usize>(), 1000);
        assert!(p.groups.iter().any(|g| g.vips.len() > 255), "v6={v6}: some group is larger than an advert");
        let vrids: BTreeSet<u8> = p.groups.iter().map(|g| g.vrid).collect();
        assert_eq!(vrids.len(), p.groups.len(), "distinct VRIDs");
        assert!(p.issues.is_empty(), "{:?}", p.issues);
        // Deterministic whatever the input order.
        let mut reversed = input.clone();
        reversed.reverse();
        assert_eq!(plan(&reversed, &cfg(), &after(None)), p);
    }
}

#[test]
fn a_vip_added_to_a_large_group_keeps_the_group_and_its_vrid() {
    let mk = |lasts: &[u8]| -> Vec<VipInput> { lasts.iter().map(|l| vip(v4(*l), "eth0", &["a", "b"])).collect() };
    let old = plan(&mk(&[10, 20, 30, 40, 50, 60]), &cfg(), &after(None));
    assert_eq!(old.groups.len(), 1);
    let new = plan(&mk(&[10, 20, 25, 30, 40, 50, 60]), &cfg(), &after(Some(&old)));
    assert_eq!(new.groups.len(), 1);
    assert_eq!((&new.groups[0].id, new.groups[0].vrid), (&old.groups[0].id, old.groups[0].vrid));
    assert_eq!(new.groups[0].vips.len(), 7);
}

/// Two single-node groups whose home slots collide in a 4-VRID range.
fn colliding_pair() -> (VipInput, VipInput) {
    let c = PlanConfig { vrids: 1..=4, ..cfg() };
    let home = |name: &str| plan(&[vip(v4(91), "eth0", &[name])], &c, &after(None)).groups[0].vrid;
    let first = home("n0");
    let other = (1..100).map(|i| format!("n{i}")).find(|n| home(n) == first).unwrap();
    (vip(v4(91), "eth0", &["n0"]), vip(v4(92), "eth0", &[other.as_str()]))
}

#[test]
fn previous_plan_keeps_a_probed_vrid_when_the_group_that_displaced_it_leaves() {
    let c = PlanConfig { vrids: 1..=4, ..cfg() };
    let (a, b) = colliding_pair();
    let both = plan(&[a.clone(), b.clone()], &c, &after(None));
    let (ga, gb) = (both.group_of(&a.vip).unwrap(), both.group_of(&b.vip).unwrap());
    assert_ne!(ga.vrid, gb.vrid);
    // The one that probed is the one that sorts later; when the other leaves, a fresh plan moves it home...
    let (stays, stays_vrid) = if ga.id.stable_hash() < gb.id.stable_hash() { (&b, gb.vrid) } else { (&a, ga.vrid) };
    let fresh = plan(std::slice::from_ref(stays), &c, &after(None));
    assert_ne!(fresh.groups[0].vrid, stays_vrid, "the residual case: without history the VRID moves");
    // ...and the previous plan keeps it where it runs.
    let sticky = plan(std::slice::from_ref(stays), &c, &after(Some(&both)));
    assert_eq!(sticky.groups[0].vrid, stays_vrid);
}

#[test]
fn previous_vrid_out_of_the_new_range_is_reassigned() {
    let input = [vip(v4(91), "eth0", &["a", "b"])];
    let old = plan(&input, &cfg(), &after(None));
    let v = old.groups[0].vrid;
    let narrow = PlanConfig { vrids: if v > 150 { 100..=150 } else { 200..=250 }, ..cfg() };
    let new = plan(&input, &narrow, &after(Some(&old)));
    assert!(narrow.vrids.contains(&new.groups[0].vrid));
}

// ---- properties ----

const NODES: [&str; 6] = ["master1", "worker-p001", "worker-p002", "worker-p003", "worker-p004", "worker-p005"];

fn arb_vips() -> impl Strategy<Value = Vec<VipInput>> {
    let one = (any::<bool>(), 1u16..2000, prop::sample::subsequence(NODES.to_vec(), 0..=NODES.len()), 0usize..2)
        .prop_map(|(is_v6, n, nodes, iface)| {
            let addr = if is_v6 { v6(n) } else { IpAddr::V4(Ipv4Addr::new(198, 51, (n / 256) as u8 + 100, n as u8)) };
            ranked(addr, ["eth0", "can_reach:192.0.2.1"][iface], &nodes)
        });
    prop::collection::vec(one, 0..60).prop_map(|mut v| {
        // One entry per address (sharers are merged before planning).
        let mut seen = BTreeSet::new();
        v.retain(|x| seen.insert(x.vip));
        v
    })
}

fn small_range() -> PlanConfig {
    PlanConfig { vrids: 20..=80, offset: 7, ..cfg() }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn same_plan_whatever_the_input_order(vips in arb_vips(), seed in any::<u64>()) {
        let c = small_range();
        let mut shuffled = vips.clone();
        // Deterministic Fisher-Yates from the seed.
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(plan(&vips, &c, &after(None)), plan(&shuffled, &c, &after(None)));
    }

    #[test]
    fn vrids_never_collide_and_stay_in_range(vips in arb_vips(), per_iface in any::<bool>()) {
        let scope = if per_iface { VridScope::PerInterface } else { VridScope::Global };
        let c = PlanConfig { scope, ..small_range() };
        let p = plan(&vips, &c, &after(None));
        prop_assert!(vrids_unique(&p, scope));
        prop_assert!(p.groups.iter().all(|g| c.vrids.contains(&g.vrid)));
        // Every VIP with candidates is in exactly one group, whose first preference is its own.
        for v in &vips {
            let n = p.groups.iter().filter(|g| g.vips.contains(&v.vip)).count();
            prop_assert_eq!(n, usize::from(!v.candidates.is_empty()));
            if let Some(g) = p.group_of(&v.vip) {
                prop_assert_eq!(&g.priorities[0].0, &v.candidates[0]);
                prop_assert!(g.priorities.windows(2).all(|w| w[0].1 > w[1].1));
            }
        }
    }

    /// With the previous plan, groups that survive keep their VRID however many unrelated groups come and go.
    #[test]
    fn running_groups_keep_their_vrid_when_others_come_and_go(
        before in arb_vips(), added in arb_vips(), drop_mask in any::<u64>(),
    ) {
        let c = PlanConfig { vrids: 1..=200, ..small_range() };
        let old = plan(&before, &c, &after(None));
        let taken: BTreeSet<IpAddr> = before.iter().map(|v| v.vip).collect();
        let mut later: Vec<VipInput> =
            before.iter().enumerate().filter(|(i, _)| drop_mask >> (i % 64) & 1 == 0).map(|(_, v)| v.clone()).collect();
        later.extend(added.into_iter().filter(|v| !taken.contains(&v.vip)));
        let new = plan(&later, &c, &after(Some(&old)));
        prop_assert!(vrids_unique(&new, VridScope::Global));
        for g in &new.groups {
            if let Some(prev) = old.group(&g.id) {
                prop_assert_eq!(prev.vrid, g.vrid, "{}", g.id);
            }
        }
    }
}

// ---- capacity, foreign VRIDs, published assignment ----

fn nodes(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("node-{i:03}")).collect()
}

/// Deterministic xorshift, for inputs that must look random but be the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn vip_n(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 51, 100, 0)) + i))
}

/// `vips` Cluster-policy VIPs over `n` nodes, ranked by the real rendezvous order.
fn cluster_input(n: usize, vips: u32) -> Vec<VipInput> {
    let names = nodes(n);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    (0..vips).map(|i| ranked(vip_n(i), "eth0", &refs)).collect()
}

/// `vips` Local-policy VIPs over `n` nodes, each with endpoints on a random 2-3 node subset.
fn local_input(n: usize, vips: u32, seed: u64) -> Vec<VipInput> {
    let names = nodes(n);
    let mut rng = Rng(seed | 1);
    (0..vips)
        .map(|i| {
            let k = 2 + (rng.next() % 2) as usize;
            let mut set: Vec<&str> = Vec::new();
            while set.len() < k {
                let c = names[(rng.next() % n as u64) as usize].as_str();
                if !set.contains(&c) {
                    set.push(c);
                }
            }
            ranked(vip_n(i), "eth0", &set)
        })
        .collect()
}

/// The planner's promises for any input: every VIP with candidates is in exactly one group or reported
/// unplaced (never both); every node with a priority is a candidate of every VIP of its group; priorities
/// strictly decrease; VRIDs are unique per space, in range and never avoided unless reported waived.
fn check_invariants(input: &[VipInput], c: &PlanConfig, avoid: &[ForeignVrid], p: &Plan) -> Result<(), String> {
    let mut by_vip: BTreeMap<IpAddr, &VipInput> = BTreeMap::new();
    for v in input {
        by_vip.entry(v.vip).or_insert(v);
    }
    let unplaced: BTreeSet<IpAddr> = p
        .issues
        .iter()
        .filter(|i| matches!(i, PlanIssue::Unplaced { .. }))
        .flat_map(|i| i.vips().iter().copied())
        .collect();
    let mut seen: BTreeSet<IpAddr> = BTreeSet::new();
    for g in &p.groups {
        if !c.vrids.contains(&g.vrid) && *c.vrids.start() <= *c.vrids.end() && *c.vrids.start() > 0 {
            return Err(format!("group {} VRID {} out of range", g.id, g.vrid));
        }
        let waived = p.issues.iter().any(|i| {
            matches!(i, PlanIssue::AvoidanceWaived { interface, family, vrids }
                if *family == g.id.family && vrids.contains(&g.vrid)
                    && (interface.is_empty() || *interface == g.id.interface))
        });
        let scoped = |a: &ForeignVrid| c.scope == VridScope::Global || a.interface == g.id.interface;
        if !waived && avoid.iter().any(|a| scoped(a) && a.family == g.id.family && a.vrid == g.vrid) {
            return Err(format!("group {} on avoided VRID {} (not reported waived)", g.id, g.vrid));
        }
        if g.priorities.is_empty() || !g.priorities.windows(2).all(|w| w[0].1 > w[1].1) {
            return Err(format!("group {}: priorities {:?}", g.id, g.priorities));
        }
        for vip in &g.vips {
            if !seen.insert(*vip) {
                return Err(format!("{vip} in two groups"));
            }
            if unplaced.contains(vip) {
                return Err(format!("{vip} both placed and unplaced"));
            }
            let Some(input) = by_vip.get(vip) else { return Err(format!("{vip} was not asked for")) };
            for (node, _) in &g.priorities {
                if !input.candidates.contains(node) {
                    return Err(format!("{vip}: {node} has a priority in {} but is not a candidate", g.id));
                }
            }
        }
    }
    for (vip, v) in &by_vip {
        let expected = usize::from(!v.candidates.is_empty());
        let got = usize::from(seen.contains(vip)) + usize::from(unplaced.contains(vip));
        if got != expected {
            return Err(format!("{vip}: placed {} unplaced {}", seen.contains(vip), unplaced.contains(vip)));
        }
    }
    if !vrids_unique(p, c.scope) {
        return Err("two groups share a VRID".into());
    }
    Ok(())
}

#[test]
fn three_hundred_nodes_and_a_thousand_vips_fit_the_default_range_by_merging_groups() {
    let input = cluster_input(300, 1000);
    let natural = plan(&input, &full(), &after(None));
    assert!(natural.groups.len() > 156, "more first preferences than the default range has VRIDs");
    let p = plan(&input, &cfg(), &after(None));
    check_invariants(&input, &cfg(), &[], &p).unwrap();
    assert!(p.groups.len() <= 156);
    assert!(!p.issues.iter().any(|i| matches!(i, PlanIssue::Unplaced { .. })), "{:?}", p.issues);
    let merged: Vec<&PlanIssue> = p.issues.iter().filter(|i| i.kind() == "merged").collect();
    assert!(!merged.is_empty());
    assert!(merged.iter().all(|i| matches!(i, PlanIssue::Merged { level: MergeLevel::SharedCandidates, .. })));
    // Only as much as needed: most groups are still natural, and most VIPs keep their first preference.
    let moved: usize =
        merged.iter().map(|i| if let PlanIssue::Merged { moved, .. } = i { moved.len() } else { 0 }).sum();
    assert!(moved < 500, "{moved} of 1000 VIPs moved");
    // Deterministic whatever the order.
    let mut reversed = input.clone();
    reversed.reverse();
    assert_eq!(plan(&reversed, &cfg(), &after(None)), p);
}

#[test]
fn local_services_on_different_node_sets_fit_by_merging_shared_first_preferences() {
    let input = local_input(12, 300, 7);
    let p = plan(&input, &cfg(), &after(None));
    check_invariants(&input, &cfg(), &[], &p).unwrap();
    assert!(!p.issues.iter().any(|i| matches!(i, PlanIssue::Unplaced { .. })), "{:?}", p.issues);
    // Merging by first two or first preference never moves a VIP off its first preference.
    for i in &p.issues {
        if let PlanIssue::Merged { level, moved, .. } = i
            && *level != MergeLevel::SharedCandidates
        {
            assert!(moved.is_empty(), "{i}");
        }
    }
    for v in &input {
        let g = p.group_of(&v.vip).unwrap();
        assert_eq!(g.priorities[0].0, v.candidates[0], "{}", v.vip);
    }
}

#[test]
fn first_two_merges_keep_holder_and_first_backup_and_only_common_nodes() {
    // Two groups (different candidate sets) share their first two preferences a, b; one VRID.
    let input = [vip(v4(91), "eth0", &["a", "b", "c"]), vip(v4(92), "eth0", &["a", "b", "d"])];
    let p = plan(&input, &PlanConfig { vrids: 7..=7, ..cfg() }, &after(None));
    assert_eq!(p.groups.len(), 1);
    assert_eq!(p.groups[0].priorities, vec![("a".into(), 250), ("b".into(), 240)]);
    assert_eq!(p.groups[0].vrid, 7);
    let [PlanIssue::Merged { level, vips, moved, group }] = p.issues.as_slice() else { panic!("{:?}", p.issues) };
    assert_eq!((*level, vips.clone(), moved.len()), (MergeLevel::FirstTwo, vec![v4(91), v4(92)], 0));
    assert_eq!(&p.groups[0].id, group, "the merged group has its least member's identity");
    // Sharing only the first: merged at the next level, c and d are still not eligible for each other's VIP.
    let input = [vip(v4(91), "eth0", &["a", "c", "b"]), vip(v4(92), "eth0", &["a", "d", "b"])];
    let p = plan(&input, &PlanConfig { vrids: 7..=7, ..cfg() }, &after(None));
    assert_eq!(p.groups[0].priorities, vec![("a".into(), 250), ("b".into(), 240)]);
    assert!(matches!(p.issues.as_slice(), [PlanIssue::Merged { level: MergeLevel::FirstOnly, .. }]));
}

#[test]
fn foreign_vrids_are_never_used_and_groups_move_off_them() {
    let input = cluster_input(5, 40);
    let before = plan(&input, &full(), &after(None));
    let taken: Vec<ForeignVrid> = before
        .groups
        .iter()
        .map(|g| ForeignVrid { interface: "eth0".into(), family: IpFamily::V4, vrid: g.vrid })
        .collect();
    let ctx = PlanContext { previous: Some(&before), avoid: &taken, ..PlanContext::default() };
    let p = plan(&input, &full(), &ctx);
    check_invariants(&input, &full(), &taken, &p).unwrap();
    assert!(p.groups.iter().all(|g| !taken.iter().any(|t| t.vrid == g.vrid)));
    // An IPv6 VRID, or (per interface) another interface's, does not block an IPv4 group on eth0.
    let elsewhere: Vec<ForeignVrid> = before
        .groups
        .iter()
        .flat_map(|g| {
            [
                ForeignVrid { interface: "eth0".into(), family: IpFamily::V6, vrid: g.vrid },
                ForeignVrid { interface: "eth1".into(), family: IpFamily::V4, vrid: g.vrid },
            ]
        })
        .collect();
    let per_iface = PlanConfig { scope: VridScope::PerInterface, ..full() };
    let ctx = PlanContext { previous: Some(&before), avoid: &elsewhere, ..PlanContext::default() };
    let p = plan(&input, &per_iface, &ctx);
    for g in &p.groups {
        assert_eq!(before.group(&g.id).map(|b| b.vrid), Some(g.vrid), "{}", g.id);
    }
    // Every VRID of the range taken (a flood of spoofs, or a range too small): our VIPs are announced all the
    // same, on VRIDs reported waived.
    let all: Vec<ForeignVrid> =
        (100..=255).map(|vrid| ForeignVrid { interface: "eth0".into(), family: IpFamily::V4, vrid }).collect();
    let p = plan(&input, &cfg(), &PlanContext { avoid: &all, ..PlanContext::default() });
    assert_eq!(p.groups.iter().map(|g| g.vips.len()).sum::<usize>(), 40);
    assert!(!p.issues.iter().any(|i| matches!(i, PlanIssue::Unplaced { .. })), "{:?}", p.issues);
    let waived: Vec<&PlanIssue> = p.issues.iter().filter(|i| i.kind() == "avoidance_waived").collect();
    assert_eq!(waived.len(), 1, "{:?}", p.issues);
    assert!(waived[0].to_string().contains("of foreign routers used all the same"), "{}", waived[0]);
    assert_eq!(check_invariants(&input, &cfg(), &all, &p), Ok(()));
}

#[test]
fn a_published_assignment_wins_over_previous_and_hash_and_bad_entries_are_reported() {
    let input = cluster_input(5, 40);
    let mine = plan(&input, &cfg(), &after(None));
    // The controller's plan: the same groups, other VRIDs (another offset).
    let theirs = plan(&input, &PlanConfig { offset: 77, ..cfg() }, &after(None));
    let published = theirs.vrid_assignment();
    let ctx = PlanContext { previous: Some(&mine), published: Some(&published), ..PlanContext::default() };
    let p = plan(&input, &cfg(), &ctx);
    assert!(p.issues.is_empty(), "{:?}", p.issues);
    for g in &p.groups {
        assert_eq!(Some(g.vrid), published.get(&g.id), "{}", g.id);
    }
    assert_ne!(mine.vrid_assignment(), published, "the test needs VRIDs that differ");
    // Entries it cannot follow: one out of range, one taken by a foreign router, two groups on one VRID.
    let ids: Vec<GroupId> = p.groups.iter().map(|g| g.id.clone()).collect();
    let mut bad = published.clone();
    bad.vrids.insert(ids[0].clone(), 5);
    let foreign =
        [ForeignVrid { interface: "eth0".into(), family: IpFamily::V4, vrid: published.get(&ids[1]).unwrap() }];
    bad.vrids.insert(ids[3].clone(), published.get(&ids[2]).unwrap());
    let ctx = PlanContext { published: Some(&bad), avoid: &foreign, ..PlanContext::default() };
    let p = plan(&input, &cfg(), &ctx);
    check_invariants(&input, &cfg(), &foreign, &p).unwrap();
    let reasons: BTreeSet<PublishedConflict> = p
        .issues
        .iter()
        .filter_map(|i| if let PlanIssue::PublishedIgnored { reason, .. } = i { Some(*reason) } else { None })
        .collect();
    let all = BTreeSet::from([PublishedConflict::OutOfRange, PublishedConflict::Avoided, PublishedConflict::Taken]);
    assert_eq!(reasons, all, "{:?}", p.issues);
    assert_eq!(p.issues.len(), 3, "{:?}", p.issues);
    for g in p.groups.iter().filter(|g| !ids[..4].contains(&g.id)) {
        assert_eq!(Some(g.vrid), published.get(&g.id), "{}", g.id);
    }
}

#[test]
fn one_vrid_carries_a_group_of_any_size() {
    // Ten VIPs in one VRID: a group needs one VRID whatever its size (it used to need five of two VIPs each).
    let input: Vec<VipInput> = (0..10).map(|i| vip(vip_n(i), "eth0", &["a", "b"])).collect();
    let c = PlanConfig { vrids: 12..=12, ..cfg() };
    let p = plan(&input, &c, &after(None));
    check_invariants(&input, &c, &[], &p).unwrap();
    assert_eq!(p.groups.len(), 1);
    assert_eq!(p.groups[0].vips.len(), 10);
    assert!(p.issues.is_empty(), "{:?}", p.issues);
}

fn arb_world() -> impl Strategy<Value = (Vec<VipInput>, PlanConfig, Vec<ForeignVrid>)> {
    (1usize..24, 0usize..300, any::<u64>(), 1u8..40, 0u8..10, any::<bool>(), prop::collection::vec(1u8..60, 0..20))
        .prop_map(|(n, count, seed, size, first_extra, per_iface, avoid)| {
            let names = nodes(n);
            let mut rng = Rng(seed | 1);
            let input: Vec<VipInput> = (0..count as u32)
                .map(|i| {
                    let k = (rng.next() % (n as u64 + 1)) as usize;
                    let mut set: Vec<&str> = Vec::new();
                    for _ in 0..k {
                        let c = names[(rng.next() % n as u64) as usize].as_str();
                        if !set.contains(&c) {
                            set.push(c);
                        }
                    }
                    let iface = if rng.next().is_multiple_of(4) { "eth1" } else { "eth0" };
                    let addr = if rng.next().is_multiple_of(3) { v6(i as u16 + 1) } else { vip_n(i) };
                    ranked(addr, iface, &set)
                })
                .collect();
            let first = 1 + first_extra;
            let c = PlanConfig {
                vrids: first..=first.saturating_add(size - 1),
                scope: if per_iface { VridScope::PerInterface } else { VridScope::Global },
                ..cfg()
            };
            let avoid = avoid
                .into_iter()
                .map(|vrid| ForeignVrid {
                    interface: if vrid % 2 == 0 { "eth0".into() } else { "eth1".into() },
                    family: if vrid % 3 == 0 { IpFamily::V6 } else { IpFamily::V4 },
                    vrid,
                })
                .collect();
            (input, c, avoid)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any number of nodes, candidate sets and VIPs, any range and foreign VRIDs: the plan never fails and
    /// keeps every promise of [`check_invariants`]; with room to spare nothing is approximated.
    #[test]
    fn any_input_gets_a_plan_that_keeps_the_promises((input, c, avoid) in arb_world()) {
        let p = plan(&input, &c, &PlanContext { avoid: &avoid, ..PlanContext::default() });
        prop_assert_eq!(check_invariants(&input, &c, &avoid, &p), Ok(()));
        // Foreign VRIDs never cost an announcement: what a plan without them places, a plan with them places.
        let unplaced = |p: &Plan| p.issues.iter().filter(|i| i.kind() == "unplaced").flat_map(|i| i.vips().to_vec()).collect::<BTreeSet<IpAddr>>();
        let free = plan(&input, &c, &PlanContext::default());
        prop_assert_eq!(unplaced(&p), unplaced(&free));
        let roomy = PlanConfig { vrids: 1..=255, ..c.clone() };
        if input.len() < 100 {
            let p = plan(&input, &roomy, &after(None));
            prop_assert!(p.issues.iter().all(|i| i.kind() == "conflicting_vip"), "{:?}", p.issues);
        }
    }

    /// A published assignment made from the same groups is followed exactly, whatever the previous plan.
    #[test]
    fn a_valid_published_assignment_is_followed((input, c, _avoid) in arb_world(), offset in any::<u8>()) {
        let controller = plan(&input, &PlanConfig { offset, ..c.clone() }, &after(None));
        let published = controller.vrid_assignment();
        let stale = plan(&input, &c, &after(None));
        let p = plan(&input, &c, &PlanContext { previous: Some(&stale), published: Some(&published), ..PlanContext::default() });
        prop_assert_eq!(check_invariants(&input, &c, &[], &p), Ok(()));
        for g in &p.groups {
            prop_assert_eq!(Some(g.vrid), published.get(&g.id), "{}", g.id);
        }
    }
}
