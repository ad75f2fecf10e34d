//! Property tests of the IPAM over pools that got past the webhook: random pools that overlap, shrink, grow,
//! stop parsing or include addresses no host can hold, edited at random under their holders, with Services
//! asking for any address or a specific one (addresses no host can hold among them), and restarts.
//!
//! Invariants: an address is never held by two Services that do not share it, all of its holders hold it
//! through one pool, no address no host can hold is ever held, a pool edit never moves a holder, an invalid pool
//! gives out nothing, and a restart from the written status reproduces everything.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use openelb_core::ipam::{Change, Ipam};
use openelb_core::pool_invalid::{OUTSIDE_LISTED, PoolProblem};
use openelb_core::{
    ANNOTATION_EIP_IP, ANNOTATION_EIP_POOL, ANNOTATION_LB, AddrRange, IpFamily, Pool, Service, ServiceKey, ServicePort,
    lifecycle, reserved,
};
use proptest::prelude::*;

const POOL_SLOTS: usize = 4;
const SERVICES: usize = 8;

/// Addresses in an 8-address window so pools overlap and requests hit held addresses often, plus a few others.
fn address() -> impl Strategy<Value = String> {
    let v4 = |o: u8| format!("192.0.2.{o}");
    prop_oneof![
        6 => (0u8..8, 0u8..4).prop_map(move |(lo, len)| format!("{}-{}", v4(lo), v4((lo + len).min(7)))),
        2 => (0u8..8, 29u8..=32).prop_map(move |(o, len)| format!("{}/{len}", v4(o))),
        1 => Just("192.0.2.4".to_string()),
        1 => prop_oneof![
            Just("127.0.0.1".to_string()),
            Just("224.0.0.16-224.0.0.19".to_string()),
            Just("0.0.0.0/30".to_string()),
            Just("255.255.255.252/30".to_string()),
            Just("169.254.0.1".to_string()),
            Just("192.0.2.14-224.0.0.1".to_string()),
            Just("fe80::/126".to_string()),
            Just("::ffff:192.0.2.0/126".to_string()),
        ],
        1 => prop_oneof![Just("2001:db8::/126".to_string()), Just("2001:db8::2-2001:db8::5".to_string())],
        1 => prop_oneof![Just("192.0.2.9-".to_string()), Just("nonsense".to_string())],
    ]
}

/// What a Service may request: window addresses, addresses no host can hold, an IPv6 one.
fn requested() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (0u8..8).prop_map(|o| format!("192.0.2.{o}")),
        1 => prop_oneof![
            Just("127.0.0.1".to_string()),
            Just("224.0.0.18".to_string()),
            Just("0.0.0.0".to_string()),
            Just("::ffff:192.0.2.1".to_string()),
            Just("fe80::1".to_string()),
        ],
        1 => Just("2001:db8::3".to_string()),
    ]
}

#[derive(Debug, Clone)]
struct Spec {
    pin: Option<usize>,
    ip: Option<String>,
    port: i32,
    families: Vec<IpFamily>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::option::weighted(0.3, 0..POOL_SLOTS),
        prop::option::weighted(0.4, requested()),
        prop_oneof![Just(80), Just(443)],
        prop_oneof![
            3 => Just(vec![IpFamily::V4]),
            1 => Just(vec![IpFamily::V6]),
            1 => Just(vec![IpFamily::V4, IpFamily::V6]),
        ],
    )
        .prop_map(|(pin, ip, port, families)| Spec { pin, ip, port, families })
}

#[derive(Debug, Clone)]
enum Op {
    Apply(usize, Spec),
    Delete(usize),
    /// Creates the pool or edits its `spec.address` under its holders.
    SetPool(usize, String),
    Disable(usize, bool),
    RemovePool(usize),
    Restart,
    ReconcileAll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..SERVICES, spec()).prop_map(|(i, s)| Op::Apply(i, s)),
        1 => (0..SERVICES).prop_map(Op::Delete),
        3 => (0..POOL_SLOTS, address()).prop_map(|(p, a)| Op::SetPool(p, a)),
        1 => (0..POOL_SLOTS, any::<bool>()).prop_map(|(p, d)| Op::Disable(p, d)),
        1 => (0..POOL_SLOTS).prop_map(Op::RemovePool),
        1 => Just(Op::Restart),
        1 => Just(Op::ReconcileAll),
    ]
}

fn pool_name(i: usize) -> String {
    format!("q{i}")
}

fn make_service(i: usize, spec: &Spec, previous: Option<&Service>) -> Service {
    let mut s = previous.cloned().unwrap_or_else(|| Service {
        namespace: "ns".into(),
        name: format!("s{i}"),
        type_: "LoadBalancer".into(),
        ..Default::default()
    });
    s.annotations.clear();
    s.annotations.insert(ANNOTATION_LB.into(), "openelb".into());
    if let Some(p) = spec.pin {
        s.annotations.insert(ANNOTATION_EIP_POOL.into(), pool_name(p));
    }
    if let Some(ip) = &spec.ip {
        s.annotations.insert(ANNOTATION_EIP_IP.into(), ip.clone());
    }
    s.ports = vec![ServicePort { port: spec.port, protocol: "TCP".into(), ..Default::default() }];
    s.ip_families = spec.families.clone();
    s
}

type Allocs = BTreeMap<ServiceKey, (String, IpAddr)>;

struct World {
    ipam: Ipam,
    pools: BTreeMap<String, Pool>,
    services: BTreeMap<ServiceKey, Service>,
    /// Whether each Service asked for the exact address it was last given.
    asked: BTreeMap<ServiceKey, bool>,
    /// `(pool, address)` of every assignment of the current step that gave a Service an address it did not
    /// show already (re-recording a shown address, as after its pool was removed, gives out nothing new).
    assigned: Vec<(String, IpAddr)>,
}

impl World {
    fn new() -> Self {
        Self {
            ipam: Ipam::new(&[]),
            pools: BTreeMap::new(),
            services: BTreeMap::new(),
            asked: BTreeMap::new(),
            assigned: Vec::new(),
        }
    }

    fn allocations(&self) -> Allocs {
        self.services
            .keys()
            .filter_map(|k| self.ipam.allocation(k).map(|(p, ip)| (k.clone(), (p.to_string(), ip))))
            .collect()
    }

    fn apply(&mut self, svc: &Service, change: &Change, patch: Option<&openelb_core::ipam::ServicePatch>) {
        if let Change::Assigned { pool, ip, .. } = change {
            let asked = lifecycle::request(svc).is_ok_and(|r| r.ip == Some(*ip));
            self.asked.insert(svc.key(), asked);
            if svc.ingress != [ip.to_string()] {
                self.assigned.push((pool.clone(), *ip));
            }
        }
        if let (Some(patch), Some(s)) = (patch, self.services.get_mut(&svc.key())) {
            patch.apply(s);
        }
    }

    fn reconcile(&mut self, key: &ServiceKey) {
        let Some(svc) = self.services.get(key).cloned() else { return };
        let out = self.ipam.reconcile(&svc, None);
        self.apply(&svc, &out.change, out.patch.as_ref());
    }

    fn reconcile_all(&mut self) {
        let list: Vec<Service> = self.services.values().cloned().collect();
        for out in self.ipam.reconcile_all(&list, &[]) {
            if let Some(svc) = list.iter().find(|s| s.key() == out.service) {
                self.apply(svc, &out.change, out.patch.as_ref());
            }
        }
    }
}

fn check_invariants(world: &World, op: &Op) -> Result<(), TestCaseError> {
    let allocs = world.allocations();
    let mut by_ip: BTreeMap<IpAddr, Vec<(&ServiceKey, &str)>> = BTreeMap::new();
    for (key, (pool, ip)) in &allocs {
        prop_assert!(reserved::classify(*ip).is_none(), "{} holds {}, which no host can hold", key, ip);
        prop_assert!(world.pools.contains_key(pool), "{} holds {} in missing pool {}", key, ip, pool);
        prop_assert_eq!(&world.services[key].ingress, &vec![ip.to_string()]);
        by_ip.entry(*ip).or_default().push((key, pool));
    }
    for (ip, holders) in &by_ip {
        let pools: BTreeSet<&str> = holders.iter().map(|(_, p)| *p).collect();
        prop_assert_eq!(pools.len(), 1, "{} is held through several pools: {:?} after {:?}", ip, holders, op);
        // Sharing is joining an address by requesting it: of several holders at most one got it unasked.
        let unasked: Vec<_> = holders.iter().filter(|(k, _)| !world.asked.get(*k).copied().unwrap_or(false)).collect();
        prop_assert!(unasked.len() <= 1, "{:?} hold {} without sharing it, after {:?}", unasked, ip, op);
    }
    // Every address is in one pool's status.used, and the statuses say exactly what the Services hold.
    let mut written: BTreeMap<IpAddr, (String, BTreeSet<String>)> = BTreeMap::new();
    for pool in world.ipam.pools() {
        for (ip, users) in &pool.used {
            let ip: IpAddr = ip.parse().map_err(|e| TestCaseError::fail(format!("{ip}: {e}")))?;
            let users: BTreeSet<String> = users.split(';').map(str::to_string).collect();
            let again = written.insert(ip, (pool.name.clone(), users));
            prop_assert!(again.is_none(), "{} is in the status of two pools", ip);
        }
    }
    let mut expected: BTreeMap<IpAddr, (String, BTreeSet<String>)> = BTreeMap::new();
    for (key, (pool, ip)) in &allocs {
        expected.entry(*ip).or_insert_with(|| (pool.clone(), BTreeSet::new())).1.insert(key.to_string());
    }
    prop_assert_eq!(&written, &expected);
    // The count of addresses outside a pool the IPAM keeps as they come and go is a recount of its status.
    for pool in world.ipam.pools() {
        let range = AddrRange::parse(&pool.address).ok();
        let mut outside: Vec<IpAddr> = written
            .iter()
            .filter(|(ip, (p, _))| *p == pool.name && !range.is_some_and(|r| r.contains(ip)))
            .map(|(ip, _)| *ip)
            .collect();
        outside.sort();
        let status = world.ipam.pool_status(&pool.name);
        let reported = status.iter().flat_map(|s| &s.invalid).find_map(|i| match &i.problem {
            PoolProblem::Outside { listed, total } => {
                Some((listed.iter().map(|(ip, _)| *ip).collect::<Vec<_>>(), *total))
            }
            _ => None,
        });
        let naive =
            (!outside.is_empty()).then(|| (outside.iter().take(OUTSIDE_LISTED).copied().collect(), outside.len()));
        prop_assert_eq!(reported, naive, "addresses outside {} after {:?}", pool.name, op);
    }
    // An invalid, disabled or deleted pool gave out nothing; what was given lies inside its pool's range.
    for (pool, ip) in &world.assigned {
        let status = world.ipam.pool_status(pool);
        prop_assert!(
            status.as_ref().is_some_and(|s| s.invalid.is_empty()),
            "{} from invalid {}: {:?}",
            ip,
            pool,
            status
        );
        let spec = world.pools.get(pool);
        prop_assert!(spec.is_some_and(|p| !p.disable), "{} from disabled or missing {}", ip, pool);
        let range = spec.and_then(|p| AddrRange::parse(&p.address).ok());
        prop_assert!(range.is_some_and(|r| r.contains(ip)), "{} is outside {}", ip, pool);
    }
    // A restart from the written pools reproduces every allocation, without a complaint.
    let restarted = Ipam::new(&world.ipam.pools());
    prop_assert!(restarted.warnings().is_empty(), "{:?}", restarted.warnings());
    for (key, held) in &allocs {
        prop_assert_eq!(restarted.allocation(key).map(|(p, i)| (p.to_string(), i)), Some(held.clone()));
    }
    Ok(())
}

fn step(world: &mut World, op: &Op) -> Result<(), TestCaseError> {
    let before = world.allocations();
    world.assigned.clear();
    let mut may_move: Vec<ServiceKey> = Vec::new();
    match op {
        Op::Apply(i, spec) => {
            let key = ServiceKey::new("ns", format!("s{i}"));
            let svc = make_service(*i, spec, world.services.get(&key));
            world.services.insert(key.clone(), svc);
            may_move.push(key.clone());
            world.reconcile(&key);
        }
        Op::Delete(i) => {
            let key = ServiceKey::new("ns", format!("s{i}"));
            if let Some(s) = world.services.get_mut(&key) {
                s.deleting = true;
                may_move.push(key.clone());
                world.reconcile(&key);
                prop_assert_eq!(world.ipam.allocation(&key), None);
                world.services.remove(&key);
            }
        }
        Op::SetPool(p, address) => {
            let name = pool_name(*p);
            let pool = match world.pools.get(&name) {
                Some(old) => Pool { address: address.clone(), ..old.clone() },
                None => Pool { name: name.clone(), address: address.clone(), ..Default::default() },
            };
            world.pools.insert(name, pool.clone());
            world.ipam.upsert_pool(pool);
        }
        Op::Disable(p, d) => {
            if let Some(pool) = world.pools.get_mut(&pool_name(*p)) {
                pool.disable = *d;
                world.ipam.upsert_pool(pool.clone());
            }
        }
        Op::RemovePool(p) => {
            let name = pool_name(*p);
            if world.pools.remove(&name).is_some() {
                let removed = world.ipam.remove_pool(&name);
                // The holders it names, from the pool's own addresses, are every Service holding through it.
                let naive: Vec<ServiceKey> =
                    before.iter().filter(|(_, (p, _))| *p == name).map(|(k, _)| k.clone()).collect();
                prop_assert_eq!(&removed, &naive);
                for key in removed {
                    may_move.push(key.clone());
                    world.reconcile(&key);
                }
            }
        }
        Op::Restart => {
            world.ipam = Ipam::new(&world.ipam.pools());
            world.reconcile_all();
        }
        Op::ReconcileAll => world.reconcile_all(),
    }
    // Nobody but the Service whose spec changed (or whose pool went away) moved: pool edits never renumber.
    let after = world.allocations();
    for (key, held) in before.iter().filter(|(k, _)| !may_move.contains(k)) {
        prop_assert_eq!(after.get(key), Some(held), "{} moved during {:?}", key, op);
    }
    check_invariants(world, op)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_pools_and_edits_keep_the_invariants(ops in prop::collection::vec(op(), 1..50)) {
        let mut world = World::new();
        for op in &ops {
            step(&mut world, op)?;
        }
    }
}
