//! Property tests of the IPAM over random histories: Services created, patched (pin, address, protocol,
//! policy, port) and deleted, pools added, re-ranked, disabled, marked for deletion (they drain) and removed,
//! controller restarts.

use std::collections::BTreeMap;
use std::net::IpAddr;

use openelb_core::ipam::{Change, Ipam};
use openelb_core::lifecycle;
use openelb_core::{
    ANNOTATION_EIP_IP, ANNOTATION_EIP_POOL, ANNOTATION_LB, ANNOTATION_PROTOCOL, AddrRange, Pool, Protocol, Service,
    ServiceKey, ServicePort, TrafficPolicy,
};
use proptest::prelude::*;

const POOLS: [(&str, &str, Protocol); 4] = [
    ("p0", "10.0.0.0-10.0.0.3", Protocol::Bgp),
    ("p1", "10.0.1.0-10.0.1.3", Protocol::Bgp),
    ("p2", "10.0.2.0-10.0.2.1", Protocol::Vip),
    ("p3", "10.0.3.0/30", Protocol::Layer2),
];
/// Requestable addresses: inside pools, plus one outside every pool.
const ADDRS: [&str; 5] = ["10.0.0.1", "10.0.1.2", "10.0.2.0", "10.0.3.3", "10.9.9.9"];
const SERVICES: usize = 6;

#[derive(Debug, Clone, PartialEq)]
struct Spec {
    pin: Option<usize>,
    addr: Option<usize>,
    protocol: Option<Protocol>,
    local: bool,
    port: i32,
    selector: u8,
}

#[derive(Debug, Clone)]
enum Op {
    Apply(usize, Spec),
    Delete(usize),
    /// Pools 0-2 exist from the start; 3 can be added.
    AddPool(usize, i64),
    Priority(usize, i64),
    Disable(usize, bool),
    /// The Eip gets a deletionTimestamp: it drains, and stays so until removed.
    MarkDeleting(usize),
    RemovePool(usize),
    Restart,
    ReconcileAll,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::option::weighted(0.3, 0..POOLS.len()),
        prop::option::weighted(0.3, 0..ADDRS.len()),
        prop::option::weighted(0.2, prop_oneof![Just(Protocol::Bgp), Just(Protocol::Vip), Just(Protocol::Layer2)]),
        any::<bool>(),
        prop_oneof![Just(80), Just(443)],
        0u8..2,
    )
        .prop_map(|(pin, addr, protocol, local, port, selector)| Spec {
            pin,
            addr,
            protocol,
            local,
            port,
            selector,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..SERVICES, spec()).prop_map(|(i, s)| Op::Apply(i, s)),
        2 => (0..SERVICES).prop_map(Op::Delete),
        1 => (0..POOLS.len(), -2i64..3).prop_map(|(p, prio)| Op::AddPool(p, prio)),
        1 => (0..POOLS.len(), -2i64..3).prop_map(|(p, prio)| Op::Priority(p, prio)),
        1 => (0..POOLS.len(), any::<bool>()).prop_map(|(p, d)| Op::Disable(p, d)),
        1 => (0..POOLS.len()).prop_map(Op::MarkDeleting),
        1 => (0..POOLS.len()).prop_map(Op::RemovePool),
        1 => Just(Op::Restart),
        1 => Just(Op::ReconcileAll),
    ]
}

fn make_pool(i: usize, priority: i64) -> Pool {
    let (name, address, protocol) = POOLS[i];
    Pool {
        name: name.into(),
        address: address.into(),
        protocol,
        priority,
        namespaces: if i == 1 { vec!["default".into()] } else { Vec::new() },
        ..Default::default()
    }
}

fn make_service(i: usize, spec: &Spec, previous: Option<&Service>) -> Service {
    let mut s = previous.cloned().unwrap_or_else(|| Service {
        namespace: "default".into(),
        name: format!("s{i}"),
        type_: "LoadBalancer".into(),
        ..Default::default()
    });
    s.annotations.clear();
    s.annotations.insert(ANNOTATION_LB.into(), "openelb".into());
    if let Some(p) = spec.pin {
        s.annotations.insert(ANNOTATION_EIP_POOL.into(), POOLS[p].0.into());
    }
    // Both sources of a requested address; the annotation also overrides a stale loadBalancerIP.
    s.load_balancer_ip = None;
    if let Some(a) = spec.addr {
        if spec.port == 443 {
            s.annotations.insert(ANNOTATION_EIP_IP.into(), ADDRS[a].into());
            s.load_balancer_ip = Some(ADDRS[(a + 1) % ADDRS.len()].to_string());
        } else {
            s.load_balancer_ip = Some(ADDRS[a].to_string());
        }
    }
    if let Some(p) = spec.protocol {
        s.annotations.insert(ANNOTATION_PROTOCOL.into(), p.as_str().into());
    }
    s.external_traffic_policy = if spec.local { TrafficPolicy::Local } else { TrafficPolicy::Cluster };
    s.ports = vec![ServicePort { port: spec.port, protocol: "TCP".into(), ..Default::default() }];
    s.selector = BTreeMap::from([("app".to_string(), format!("a{}", spec.selector))]);
    s
}

struct World {
    ipam: Ipam,
    pools: BTreeMap<String, Pool>,
    services: BTreeMap<ServiceKey, Service>,
    /// Whether each Service asked for the exact address it was last given (joining a shared address needs that;
    /// keeping it afterwards does not, as upstream).
    asked: BTreeMap<ServiceKey, bool>,
}

type Allocs = BTreeMap<ServiceKey, (String, IpAddr)>;

impl World {
    fn new() -> Self {
        let pools: BTreeMap<String, Pool> = (0..3).map(|i| (POOLS[i].0.to_string(), make_pool(i, 0))).collect();
        let list: Vec<Pool> = pools.values().cloned().collect();
        Self { ipam: Ipam::new(&list), pools, services: BTreeMap::new(), asked: BTreeMap::new() }
    }

    fn allocations(&self) -> Allocs {
        self.services
            .keys()
            .filter_map(|k| self.ipam.allocation(k).map(|(p, ip)| (k.clone(), (p.to_string(), ip))))
            .collect()
    }

    /// Reconciles one Service on this IPAM and on a clone of it: same state, same decision.
    fn reconcile(&mut self, key: &ServiceKey) -> Result<Change, TestCaseError> {
        let Some(svc) = self.services.get(key).cloned() else { return Ok(Change::NotOurs) };
        let mut twin = self.ipam.clone();
        let out = self.ipam.reconcile(&svc, None);
        let twin_out = twin.reconcile(&svc, None);
        prop_assert_eq!(&out, &twin_out);
        prop_assert_eq!(self.ipam.pools(), twin.pools());
        self.note(&svc, &out.change);
        if let Some(patch) = &out.patch
            && let Some(s) = self.services.get_mut(key)
        {
            patch.apply(s);
        }
        Ok(out.change)
    }

    fn note(&mut self, svc: &Service, change: &Change) {
        if let Change::Assigned { ip, .. } = change {
            let asked = lifecycle::request(svc).is_ok_and(|r| r.ip == Some(*ip));
            self.asked.insert(svc.key(), asked);
        }
    }

    fn reconcile_all(&mut self) -> Result<(), TestCaseError> {
        let list: Vec<Service> = self.services.values().cloned().collect();
        let mut twin = self.ipam.clone();
        let outs = self.ipam.reconcile_all(&list, &[]);
        prop_assert_eq!(&outs, &twin.reconcile_all(&list, &[]));
        for out in outs {
            if let Some(svc) = list.iter().find(|s| s.key() == out.service) {
                self.note(svc, &out.change);
            }
            if let (Some(patch), Some(s)) = (&out.patch, self.services.get_mut(&out.service)) {
                patch.apply(s);
            }
        }
        Ok(())
    }
}

/// Whether `key` could keep `held` under the current pools and its current request.
fn still_valid(world: &World, key: &ServiceKey, held: &(String, IpAddr)) -> bool {
    let Some(svc) = world.services.get(key) else { return false };
    let Ok(req) = lifecycle::request(svc) else { return false };
    let pool = world.pools.get(&held.0);
    lifecycle::check_holding(&req, &held.0, pool, held.1).is_ok()
}

fn check_invariants(world: &World) -> Result<(), TestCaseError> {
    let allocs = world.allocations();
    // Every allocation lies inside its pool, which exists.
    for (key, (pool, ip)) in &allocs {
        let p = world.pools.get(pool);
        prop_assert!(p.is_some(), "{} holds {} in missing pool {}", key, ip, pool);
        let range = AddrRange::parse(&p.map(|p| p.address.clone()).unwrap_or_default()).ok();
        prop_assert!(range.is_some_and(|r| r.contains(ip)), "{} holds {} outside {}", key, ip, pool);
        // The Service shows what it holds.
        let shown = &world.services[key].ingress;
        prop_assert_eq!(shown, &vec![ip.to_string()], "{} shows {:?} but holds {}", key, shown, ip);
    }
    // No address held by two non-sharing Services: sharing is joining an address by requesting it (upstream),
    // so of several holders at most one (the first, possibly given it automatically) got it without asking.
    let mut by_ip: BTreeMap<IpAddr, Vec<&ServiceKey>> = BTreeMap::new();
    for (key, (_, ip)) in &allocs {
        by_ip.entry(*ip).or_default().push(key);
    }
    for (ip, holders) in by_ip.iter().filter(|(_, h)| h.len() > 1) {
        let unrequested: Vec<&&ServiceKey> =
            holders.iter().filter(|k| !world.asked.get(**k).copied().unwrap_or(false)).collect();
        prop_assert!(unrequested.len() <= 1, "{:?} got {} without requesting it", unrequested, ip);
    }
    // The pools' status agrees with the per-Service view.
    for pool in world.ipam.pools() {
        let st = world.ipam.pool_status(&pool.name);
        prop_assert!(st.is_some());
        for (ip, users) in &pool.used {
            for user in users.split(';') {
                let key = ServiceKey::parse(user);
                prop_assert!(key.is_some());
                let held = key.and_then(|k| allocs.get(&k).cloned());
                prop_assert_eq!(held.map(|(p, i)| (p, i.to_string())), Some((pool.name.clone(), ip.clone())));
            }
        }
    }
    // Restart from the written pools reproduces every allocation.
    let restarted = Ipam::new(&world.ipam.pools());
    prop_assert!(restarted.warnings().is_empty(), "{:?}", restarted.warnings());
    for (key, held) in &allocs {
        prop_assert_eq!(restarted.allocation(key).map(|(p, i)| (p.to_string(), i)), Some(held.clone()));
    }
    Ok(())
}

fn step(world: &mut World, op: &Op) -> Result<(), TestCaseError> {
    let before = world.allocations();
    // Services whose address may legitimately move in this step.
    let mut may_move: Vec<ServiceKey> = Vec::new();
    match op {
        Op::Apply(i, spec) => {
            let key = ServiceKey::new("default", format!("s{i}"));
            let svc = make_service(*i, spec, world.services.get(&key));
            world.services.insert(key.clone(), svc);
            // Only a changed request (or a lost pool) may move it: `still_valid` judges that on the new spec.
            if !before.get(&key).is_some_and(|held| still_valid(world, &key, held)) {
                may_move.push(key.clone());
            }
            world.reconcile(&key)?;
        }
        Op::Delete(i) => {
            let key = ServiceKey::new("default", format!("s{i}"));
            if let Some(s) = world.services.get_mut(&key) {
                s.deleting = true;
                may_move.push(key.clone());
                let change = world.reconcile(&key)?;
                let holds = matches!(change, Change::Kept { .. } | Change::Assigned { .. });
                prop_assert!(!holds, "deleted {} still holds: {:?}", key, change);
                prop_assert_eq!(world.ipam.allocation(&key), None);
                world.services.remove(&key);
            }
        }
        Op::AddPool(p, prio) => {
            if !world.pools.contains_key(POOLS[*p].0) {
                let pool = make_pool(*p, *prio);
                world.pools.insert(pool.name.clone(), pool.clone());
                world.ipam.upsert_pool(pool);
            }
        }
        Op::Priority(p, prio) => {
            if let Some(pool) = world.pools.get_mut(POOLS[*p].0) {
                pool.priority = *prio;
                world.ipam.upsert_pool(pool.clone());
            }
        }
        Op::Disable(p, d) => {
            if let Some(pool) = world.pools.get_mut(POOLS[*p].0) {
                pool.disable = *d;
                world.ipam.upsert_pool(pool.clone());
            }
        }
        Op::MarkDeleting(p) => {
            if let Some(pool) = world.pools.get_mut(POOLS[*p].0) {
                pool.deleting = true;
                world.ipam.upsert_pool(pool.clone());
            }
        }
        Op::RemovePool(p) => {
            let name = POOLS[*p].0;
            if world.pools.remove(name).is_some() {
                let mut holders = world.ipam.remove_pool(name);
                holders.sort();
                let expected: Vec<ServiceKey> =
                    before.iter().filter(|(_, (pool, _))| pool == name).map(|(k, _)| k.clone()).collect();
                prop_assert_eq!(&holders, &expected);
                for key in &holders {
                    may_move.push(key.clone());
                    world.reconcile(key)?;
                }
            }
        }
        Op::Restart => {
            world.ipam = Ipam::new(&world.ipam.pools());
            world.reconcile_all()?;
        }
        Op::ReconcileAll => world.reconcile_all()?,
    }
    // Stickiness: nobody else moved, whatever happened to the pools.
    let after = world.allocations();
    for (key, held) in &before {
        if may_move.contains(key) {
            continue;
        }
        prop_assert_eq!(after.get(key), Some(held), "{} moved during {:?}", key, op);
    }
    // A pool being deleted gives out nothing: whoever holds an address there held that same one before.
    for (key, (pool, ip)) in &after {
        if world.pools.get(pool).is_some_and(|p| p.deleting) {
            let same = before.get(key) == Some(&(pool.clone(), *ip));
            prop_assert!(same, "{} got {} from {}, which is being deleted, during {:?}", key, ip, pool, op);
        }
    }
    check_invariants(world)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_histories_keep_the_invariants(ops in prop::collection::vec(op(), 1..40)) {
        let mut world = World::new();
        for op in &ops {
            step(&mut world, op)?;
        }
    }

    /// Reconciling everything twice in a row changes nothing the second time.
    #[test]
    fn reconcile_all_is_idempotent(specs in prop::collection::vec(spec(), 1..SERVICES)) {
        let mut world = World::new();
        for (i, spec) in specs.iter().enumerate() {
            world.services.insert(ServiceKey::new("default", format!("s{i}")), make_service(i, spec, None));
        }
        world.reconcile_all()?;
        let first = world.allocations();
        let list: Vec<Service> = world.services.values().cloned().collect();
        for out in world.ipam.reconcile_all(&list, &[]) {
            prop_assert!(
                matches!(out.change, Change::Kept { .. } | Change::Failed { released: None, .. }),
                "{:?}", out
            );
        }
        prop_assert_eq!(world.allocations(), first);
        check_invariants(&world)?;
    }
}
