//! One table test per allocation rule of docs/allocation.md and per upstream bug it fixes
//! (docs/compatibility.md#where-we-differ-and-why).

use std::collections::BTreeMap;
use std::net::IpAddr;

use openelb_core::event_reason::EventReason;
use openelb_core::ipam::{Change, EventType, Ipam, Outcome, ServicePatch};
use openelb_core::{
    ANNOTATION_EIP_IP, ANNOTATION_EIP_POOL, ANNOTATION_LB, ANNOTATION_PROTOCOL, FINALIZER_SERVICE, IpFamily,
    LABEL_EIP_POOL, LOAD_BALANCER_CLASS, Namespace, Pool, Protocol, Service, ServiceKey, ServicePort, TrafficPolicy,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pool(name: &str, address: &str, protocol: Protocol) -> Pool {
    Pool { name: name.into(), address: address.into(), protocol, ..Default::default() }
}

fn seed_pools() -> Vec<Pool> {
    vec![
        pool("bgp-eip", "172.22.0.2-172.22.0.10", Protocol::Bgp),
        pool("vip-eip", "192.168.0.91-192.168.0.100", Protocol::Vip),
    ]
}

fn svc(ns: &str, name: &str) -> Service {
    let mut s = Service {
        namespace: ns.into(),
        name: name.into(),
        type_: "LoadBalancer".into(),
        ports: vec![ServicePort { port: 80, protocol: "TCP".into(), ..Default::default() }],
        ..Default::default()
    };
    s.annotations.insert(ANNOTATION_LB.into(), "openelb".into());
    s
}

fn with(mut s: Service, key: &str, value: &str) -> Service {
    s.annotations.insert(key.into(), value.into());
    s
}

/// Reconciles and applies the patch, as the controller and API server would.
fn run(ipam: &mut Ipam, s: &mut Service) -> Outcome {
    let out = ipam.reconcile(s, None);
    if let Some(p) = &out.patch {
        p.apply(s);
    }
    out
}

fn holds(out: &Outcome) -> (String, IpAddr) {
    match &out.change {
        Change::Kept { pool, ip } | Change::Assigned { pool, ip, .. } => (pool.clone(), *ip),
        other => panic!("expected an address, got {other:?}"),
    }
}

fn failure(out: &Outcome) -> String {
    match &out.change {
        Change::Failed { reason, .. } => reason.clone(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn key(ns: &str, name: &str) -> ServiceKey {
    ServiceKey::new(ns, name)
}

#[test]
fn seed_pin_to_vip_eip_gives_first_address() {
    let mut ipam = Ipam::new(&seed_pools());
    let mut s = with(svc("default", "vip-svc"), ANNOTATION_EIP_POOL, "vip-eip");
    let out = run(&mut ipam, &mut s);
    assert_eq!(holds(&out), ("vip-eip".into(), ip("192.168.0.91")));
    assert_eq!(
        out.patch,
        Some(ServicePatch {
            ingress: vec!["192.168.0.91".into()],
            pool_label: Some("vip-eip".into()),
            finalizer: true
        })
    );
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.events[0].type_, EventType::Normal);
    assert_eq!(out.events[0].reason, EventReason::AssignIp);
    assert_eq!(out.events[0].message, "success to assign ip: 192.168.0.91");
    assert_eq!(s.labels.get(LABEL_EIP_POOL).map(String::as_str), Some("vip-eip"));
    assert_eq!(s.finalizers, vec![FINALIZER_SERVICE.to_string()]);
    let st = ipam.pool_status("vip-eip").unwrap();
    assert_eq!(st.used.get("192.168.0.91").map(String::as_str), Some("default/vip-svc"));
    assert_eq!((st.pool_size, st.usage, st.occupied, st.v4), (10, 1, false, true));
    assert_eq!(st.first_ip.as_deref(), Some("192.168.0.91"));
    assert_eq!(st.last_ip.as_deref(), Some("192.168.0.100"));
}

#[test]
fn protocol_annotation_without_pin_picks_first_pool_of_that_protocol() {
    let mut pools = seed_pools();
    let mut later_vip = pool("a-vip", "10.9.0.1-10.9.0.5", Protocol::Vip);
    later_vip.priority = 10;
    pools.push(later_vip);
    let mut ipam = Ipam::new(&pools);
    let mut s = with(svc("default", "a"), ANNOTATION_PROTOCOL, "vip");
    assert_eq!(holds(&run(&mut ipam, &mut s)), ("vip-eip".into(), ip("192.168.0.91")));
    // Without the annotation any pool will do: the first by priority then name.
    let mut t = svc("default", "b");
    assert_eq!(holds(&run(&mut ipam, &mut t)).0, "bgp-eip");
}

#[test]
fn pinned_pool_of_other_protocol_is_an_error() {
    let mut ipam = Ipam::new(&seed_pools());
    let mut s = with(with(svc("default", "a"), ANNOTATION_EIP_POOL, "bgp-eip"), ANNOTATION_PROTOCOL, "vip");
    let out = run(&mut ipam, &mut s);
    assert_eq!(failure(&out), "pinned to Eip bgp-eip of protocol bgp but protocol annotation says vip");
    assert_eq!(out.events.last().unwrap().reason, EventReason::AssignIpFailed);
    assert_eq!(out.events.last().unwrap().type_, EventType::Warning);
    assert_eq!(out.patch, Some(ServicePatch::default()));
}

#[test]
fn pinned_pool_missing_disabled_or_deleting_is_an_error() {
    let mut pools = seed_pools();
    pools[0].disable = true;
    pools[1].deleting = true;
    let mut ipam = Ipam::new(&pools);
    for (pin, expect) in [
        ("nope", "pinned to Eip nope, which does not exist"),
        ("bgp-eip", "pinned to Eip bgp-eip, which is disabled"),
        ("vip-eip", "pinned to Eip vip-eip, which is being deleted"),
    ] {
        let mut s = with(svc("default", "a"), ANNOTATION_EIP_POOL, pin);
        assert_eq!(failure(&run(&mut ipam, &mut s)), expect);
    }
}

#[test]
fn pinned_full_pool_is_an_error() {
    let mut ipam = Ipam::new(&[pool("one", "10.0.0.1", Protocol::Bgp)]);
    let mut a = with(svc("default", "a"), ANNOTATION_EIP_POOL, "one");
    let mut b = with(svc("default", "b"), ANNOTATION_EIP_POOL, "one");
    holds(&run(&mut ipam, &mut a));
    assert_eq!(failure(&run(&mut ipam, &mut b)), "pinned to Eip one, which is full");
}

#[test]
fn load_balancer_ip_picks_the_containing_pool() {
    let mut ipam = Ipam::new(&seed_pools());
    let mut s = svc("default", "a");
    s.load_balancer_ip = Some("192.168.0.95".into());
    assert_eq!(holds(&run(&mut ipam, &mut s)), ("vip-eip".into(), ip("192.168.0.95")));
}

#[test]
fn annotation_ip_wins_over_load_balancer_ip() {
    let mut ipam = Ipam::new(&seed_pools());
    let mut s = with(svc("default", "a"), ANNOTATION_EIP_IP, "172.22.0.5");
    s.load_balancer_ip = Some("192.168.0.95".into());
    assert_eq!(holds(&run(&mut ipam, &mut s)), ("bgp-eip".into(), ip("172.22.0.5")));
}

#[test]
fn requested_ip_outside_every_pool_or_the_pin_fails() {
    let mut ipam = Ipam::new(&seed_pools());
    let mut s = svc("default", "a");
    s.load_balancer_ip = Some("10.1.1.1".into());
    assert_eq!(failure(&run(&mut ipam, &mut s)), "no Eip contains requested address 10.1.1.1");
    let mut t = with(with(svc("default", "b"), ANNOTATION_EIP_POOL, "vip-eip"), ANNOTATION_EIP_IP, "172.22.0.5");
    assert_eq!(
        failure(&run(&mut ipam, &mut t)),
        "requested address 172.22.0.5 is not inside pinned Eip vip-eip (192.168.0.91-192.168.0.100)"
    );
}

#[test]
fn requested_ip_in_pool_of_other_protocol_fails() {
    let mut ipam = Ipam::new(&seed_pools());
    let mut s = with(with(svc("default", "a"), ANNOTATION_EIP_IP, "172.22.0.5"), ANNOTATION_PROTOCOL, "vip");
    let reason = failure(&run(&mut ipam, &mut s));
    assert!(reason.contains("bgp-eip") && reason.contains("protocol annotation says vip"), "{reason}");
}

#[test]
fn malformed_requested_ip_fails_naming_field_and_value() {
    let mut ipam = Ipam::new(&seed_pools());
    let mut s = svc("default", "a");
    s.load_balancer_ip = Some("192.168.0.999".into());
    let reason = failure(&run(&mut ipam, &mut s));
    assert!(reason.contains("spec.loadBalancerIP") && reason.contains("192.168.0.999"), "{reason}");
    let mut t = with(svc("default", "b"), ANNOTATION_PROTOCOL, "ospf");
    let reason = failure(&run(&mut ipam, &mut t));
    assert!(reason.contains("ospf"), "{reason}");
}

#[test]
fn malformed_request_releases_what_was_held() {
    let mut ipam = Ipam::new(&seed_pools());
    let mut s = svc("default", "a");
    holds(&run(&mut ipam, &mut s));
    s.load_balancer_ip = Some("not-an-ip".into());
    let out = run(&mut ipam, &mut s);
    assert!(matches!(out.change, Change::Failed { released: Some((_, released)), .. } if released == ip("172.22.0.2")));
    assert!(s.ingress.is_empty() && !s.labels.contains_key(LABEL_EIP_POOL) && s.finalizers.is_empty());
    assert_eq!(ipam.allocation(&key("default", "a")), None);
}

#[test]
fn lowest_free_address_first() {
    let mut ipam = Ipam::new(&seed_pools());
    let mut svcs: Vec<Service> =
        (0..3).map(|i| with(svc("default", &format!("s{i}")), ANNOTATION_EIP_POOL, "vip-eip")).collect();
    let got: Vec<IpAddr> = svcs.iter_mut().map(|s| holds(&run(&mut ipam, s)).1).collect();
    assert_eq!(got, vec![ip("192.168.0.91"), ip("192.168.0.92"), ip("192.168.0.93")]);
    svcs[1].deleting = true;
    assert!(matches!(run(&mut ipam, &mut svcs[1]).change, Change::Released { .. }));
    let mut next = with(svc("default", "s9"), ANNOTATION_EIP_POOL, "vip-eip");
    assert_eq!(holds(&run(&mut ipam, &mut next)).1, ip("192.168.0.92"));
}

#[test]
fn address_family_must_fit_ip_families() {
    let pools = vec![pool("v6", "2001:db8::/120", Protocol::Bgp), pool("v4", "10.0.0.0/30", Protocol::Bgp)];
    let mut ipam = Ipam::new(&pools);
    // Pinned: an error naming both families. Empty ipFamilies means IPv4.
    let mut s = with(svc("default", "a"), ANNOTATION_EIP_POOL, "v6");
    assert_eq!(failure(&run(&mut ipam, &mut s)), "Eip v6 holds IPv6 addresses but the Service's ipFamilies is [IPv4]");
    // Requested v6 address on a v4-only Service: same error.
    let mut r = with(svc("default", "r"), ANNOTATION_EIP_IP, "2001:db8::5");
    assert!(failure(&run(&mut ipam, &mut r)).contains("IPv6"));
    // Automatic: skipped, v4 chosen even though v6 ranks first by name.
    let mut t = svc("default", "t");
    assert_eq!(holds(&run(&mut ipam, &mut t)).0, "v4");
    let mut u = svc("default", "u");
    u.ip_families = vec![IpFamily::V6];
    assert_eq!(holds(&run(&mut ipam, &mut u)), ("v6".into(), ip("2001:db8::")));
    let mut w = svc("default", "w");
    w.ip_families = vec![IpFamily::V6, IpFamily::V4];
    assert_eq!(holds(&run(&mut ipam, &mut w)).0, "v4", "dual-stack takes the first fitting pool by rank");
}

#[test]
fn disabled_deleting_and_full_pools_are_skipped_and_listed() {
    let mut a = pool("a", "10.0.0.1", Protocol::Bgp);
    a.disable = true;
    let mut b = pool("b", "10.0.1.1", Protocol::Bgp);
    b.deleting = true;
    let c = pool("c", "10.0.2.1", Protocol::Bgp);
    let mut ipam = Ipam::new(&[a, b, c]);
    let mut first = svc("default", "first");
    assert_eq!(holds(&run(&mut ipam, &mut first)), ("c".into(), ip("10.0.2.1")));
    let mut second = svc("default", "second");
    assert_eq!(failure(&run(&mut ipam, &mut second)), "no Eip matches: a is disabled, b is being deleted, c is full");
    let mut empty = Ipam::new(&[]);
    assert_eq!(failure(&run(&mut empty, &mut second)), "no Eip matches: there is no Eip");
}

#[test]
fn default_pool_wins_over_first_matching() {
    let first = pool("aaa", "10.0.0.0/30", Protocol::Bgp);
    let mut default = pool("zzz", "10.0.1.0/30", Protocol::Bgp);
    default.is_default = true;
    default.priority = 100;
    let mut ipam = Ipam::new(&[first, default]);
    let mut s = svc("default", "a");
    assert_eq!(holds(&run(&mut ipam, &mut s)).0, "zzz");
    // The protocol annotation filters the default out too.
    let mut t = with(svc("default", "t"), ANNOTATION_PROTOCOL, "vip");
    assert!(failure(&run(&mut ipam, &mut t)).starts_with("no Eip matches: aaa is of protocol bgp"));
}

#[test]
fn namespace_binding_by_list_and_selector_with_priority() {
    let mut default = pool("default-pool", "10.0.0.0/30", Protocol::Bgp);
    default.is_default = true;
    let mut by_list = pool("by-list", "10.0.1.0/30", Protocol::Bgp);
    by_list.namespaces = vec!["team-a".into()];
    by_list.priority = 5;
    let mut by_selector = pool("by-selector", "10.0.2.0/30", Protocol::Bgp);
    by_selector.namespace_selector = BTreeMap::from([("team".to_string(), "a".to_string())]);
    by_selector.priority = 1;
    let mut ipam = Ipam::new(&[default, by_list, by_selector]);
    let ns = Namespace { name: "team-a".into(), labels: BTreeMap::from([("team".into(), "a".into())]) };

    // Both bind team-a; lower priority wins.
    let s = svc("team-a", "a");
    assert_eq!(holds(&ipam.reconcile(&s, Some(&ns))).0, "by-selector");
    // Without the Namespace object only the list can bind.
    let t = svc("team-a", "b");
    assert_eq!(holds(&ipam.reconcile(&t, None)).0, "by-list");
    // Another namespace gets the default.
    let u = svc("team-b", "c");
    assert_eq!(holds(&ipam.reconcile(&u, None)).0, "default-pool");
}

#[test]
fn namespace_binding_ties_break_by_name_and_respect_protocol() {
    let mut b = pool("b-pool", "10.0.1.0/30", Protocol::Bgp);
    b.namespaces = vec!["ns".into()];
    let mut a = pool("a-pool", "10.0.2.0/30", Protocol::Bgp);
    a.namespaces = vec!["ns".into()];
    let mut v = pool("v-pool", "10.0.3.0/30", Protocol::Vip);
    v.namespaces = vec!["ns".into()];
    let mut ipam = Ipam::new(&[b, a, v]);
    assert_eq!(holds(&ipam.reconcile(&svc("ns", "x"), None)).0, "a-pool");
    assert_eq!(holds(&ipam.reconcile(&with(svc("ns", "y"), ANNOTATION_PROTOCOL, "vip"), None)).0, "v-pool");
}

#[test]
fn empty_namespace_selector_binds_nothing() {
    let mut p = pool("p", "10.0.0.0/30", Protocol::Bgp);
    p.priority = 9;
    let q = pool("q", "10.0.1.0/30", Protocol::Bgp);
    let mut ipam = Ipam::new(&[p, q]);
    let ns = Namespace { name: "x".into(), labels: BTreeMap::from([("a".into(), "b".into())]) };
    assert_eq!(holds(&ipam.reconcile(&svc("x", "s"), Some(&ns))).0, "q");
}

/// Upstream moved every auto-allocated Service to a new better-ranked namespace pool
/// (docs/compatibility.md#sticky-allocations).
#[test]
fn sticky_under_new_better_ranked_namespace_pool() {
    let mut old = pool("old", "10.0.0.0/29", Protocol::Bgp);
    old.namespaces = vec!["app".into()];
    old.priority = 10;
    let mut ipam = Ipam::new(&[old]);
    let mut s = svc("app", "web");
    let before = holds(&run(&mut ipam, &mut s));
    let mut better = pool("better", "10.0.1.0/29", Protocol::Bgp);
    better.namespaces = vec!["app".into()];
    better.priority = 1;
    ipam.upsert_pool(better);
    for _ in 0..3 {
        let out = run(&mut ipam, &mut s);
        assert_eq!(out.change, Change::Kept { pool: before.0.clone(), ip: before.1 });
        assert!(out.events.is_empty());
    }
    // Newcomers do use the better pool.
    assert_eq!(holds(&run(&mut ipam, &mut svc("app", "new"))).0, "better");
}

/// Upstream's flip-flop: a pool becoming occupied made its holder look misplaced, and it moved back and forth
/// (docs/compatibility.md#sticky-allocations).
#[test]
fn pool_becoming_occupied_moves_nobody() {
    let mut p1 = pool("p1", "10.0.0.1", Protocol::Bgp);
    p1.namespaces = vec!["app".into()];
    p1.priority = 1;
    let mut p2 = pool("p2", "10.0.1.0/30", Protocol::Bgp);
    p2.namespaces = vec!["app".into()];
    p2.priority = 2;
    let mut ipam = Ipam::new(&[p1, p2]);
    let mut a = svc("app", "a");
    let mut b = svc("app", "b");
    assert_eq!(holds(&run(&mut ipam, &mut a)), ("p1".into(), ip("10.0.0.1")));
    assert!(ipam.pool_status("p1").unwrap().occupied);
    assert_eq!(holds(&run(&mut ipam, &mut b)), ("p2".into(), ip("10.0.1.0")));
    for _ in 0..3 {
        assert_eq!(run(&mut ipam, &mut a).change, Change::Kept { pool: "p1".into(), ip: ip("10.0.0.1") });
        assert_eq!(run(&mut ipam, &mut b).change, Change::Kept { pool: "p2".into(), ip: ip("10.0.1.0") });
    }
    // p1 frees up: b still does not move back.
    a.deleting = true;
    run(&mut ipam, &mut a);
    assert_eq!(run(&mut ipam, &mut b).change, Change::Kept { pool: "p2".into(), ip: ip("10.0.1.0") });
}

#[test]
fn disabled_pool_keeps_existing_allocations() {
    let mut ipam = Ipam::new(&seed_pools());
    let mut s = with(svc("default", "a"), ANNOTATION_EIP_POOL, "vip-eip");
    let before = holds(&run(&mut ipam, &mut s));
    let mut disabled = seed_pools()[1].clone();
    disabled.disable = true;
    ipam.upsert_pool(disabled);
    assert_eq!(run(&mut ipam, &mut s).change, Change::Kept { pool: before.0, ip: before.1 });
    let mut t = with(svc("default", "b"), ANNOTATION_EIP_POOL, "vip-eip");
    assert_eq!(failure(&run(&mut ipam, &mut t)), "pinned to Eip vip-eip, which is disabled");
}

#[test]
fn restart_from_pools_gives_identical_allocations() {
    let mut ipam = Ipam::new(&seed_pools());
    let mut svcs = vec![
        with(svc("default", "a"), ANNOTATION_EIP_POOL, "vip-eip"),
        svc("default", "b"),
        with(svc("other", "c"), ANNOTATION_EIP_IP, "192.168.0.99"),
        with(with(svc("other", "d"), ANNOTATION_EIP_IP, "192.168.0.99"), ANNOTATION_PROTOCOL, "vip"),
        svc("default", "e"),
    ];
    svcs[3].ports[0].port = 443;
    for out in ipam.reconcile_all(&svcs, &[]) {
        let s = svcs.iter_mut().find(|s| s.key() == out.service).unwrap();
        out.patch.unwrap().apply(s);
    }
    let before: Vec<_> = svcs.iter().map(|s| ipam.allocation(&s.key()).map(|(p, i)| (p.to_string(), i))).collect();
    assert!(before.iter().all(Option::is_some));
    let mut restarted = Ipam::new(&ipam.pools());
    assert!(restarted.warnings().is_empty(), "{:?}", restarted.warnings());
    let after: Vec<_> = svcs.iter().map(|s| restarted.allocation(&s.key()).map(|(p, i)| (p.to_string(), i))).collect();
    assert_eq!(before, after);
    for out in restarted.reconcile_all(&svcs, &[]) {
        assert!(matches!(out.change, Change::Kept { .. }), "{out:?}");
    }
    assert_eq!(restarted.pools(), ipam.pools());
    assert_eq!(
        ipam.pool_status("vip-eip").unwrap().used.get("192.168.0.99").map(String::as_str),
        Some("other/c;other/d")
    );
}

#[test]
fn rebuild_warns_about_unparsable_used_entries() {
    let mut p = pool("p", "10.0.0.0/29", Protocol::Bgp);
    p.used = BTreeMap::from([
        ("10.0.0.1".to_string(), "ns/a;garbage;ns/b".to_string()),
        ("nonsense".to_string(), "ns/c".to_string()),
        ("127.0.0.1".to_string(), "ns/e".to_string()),
        ("10.0.0.2".to_string(), "ns/a".to_string()),
    ]);
    let ipam = Ipam::new(&[p]);
    assert_eq!(ipam.allocation(&key("ns", "a")), Some(("p", ip("10.0.0.1"))));
    assert_eq!(ipam.allocation(&key("ns", "b")), Some(("p", ip("10.0.0.1"))));
    assert_eq!(ipam.allocation(&key("ns", "c")), None);
    assert_eq!(ipam.allocation(&key("ns", "e")), None);
    let w = ipam.warnings().join("\n");
    for needle in [
        "\"garbage\"",
        "\"nonsense\"",
        "ns/a is recorded on 10.0.0.1",
        "Eip p: status.used[127.0.0.1] records \"ns/e\" but 127.0.0.1 is a loopback address (127.0.0.0/8)",
    ] {
        assert!(w.contains(needle), "{needle} missing from {w}");
    }
    assert_eq!(ipam.pool_status("p").unwrap().usage, 1);
}

#[test]
fn sharing_allowed_on_different_ports() {
    let mut ipam = Ipam::new(&seed_pools());
    let mut a = with(svc("default", "a"), ANNOTATION_EIP_IP, "192.168.0.95");
    let mut b = with(svc("default", "b"), ANNOTATION_EIP_IP, "192.168.0.95");
    b.ports[0].port = 443;
    let mut c = with(svc("default", "c"), ANNOTATION_EIP_IP, "192.168.0.95");
    c.ports[0].protocol = "UDP".into();
    for s in [&mut a, &mut b, &mut c] {
        assert_eq!(holds(&run(&mut ipam, s)).1, ip("192.168.0.95"));
    }
    let st = ipam.pool_status("vip-eip").unwrap();
    assert_eq!(st.usage, 1);
    assert_eq!(st.used.get("192.168.0.95").map(String::as_str), Some("default/a;default/b;default/c"));
}

#[test]
fn sharing_refused_on_same_port_and_protocol() {
    let mut ipam = Ipam::new(&seed_pools());
    let mut a = with(svc("default", "a"), ANNOTATION_EIP_IP, "192.168.0.95");
    let mut b = with(svc("other", "b"), ANNOTATION_EIP_IP, "192.168.0.95");
    holds(&run(&mut ipam, &mut a));
    let out = run(&mut ipam, &mut b);
    assert_eq!(failure(&out), "cannot share 192.168.0.95 with default/a: both use port 80/TCP");
    let warn = out.events.iter().find(|e| e.type_ == EventType::Warning).unwrap();
    assert!(warn.message.contains("default/a") && warn.message.contains("80/TCP"));
    assert!(b.ingress.is_empty());
    assert_eq!(ipam.pool_status("vip-eip").unwrap().used.get("192.168.0.95").map(String::as_str), Some("default/a"));
}

#[test]
fn sharing_refused_when_local_policy_mixes_selectors() {
    let mut ipam = Ipam::new(&seed_pools());
    let mut a = with(svc("default", "a"), ANNOTATION_EIP_IP, "192.168.0.95");
    a.selector = BTreeMap::from([("app".into(), "a".into())]);
    let mut b = a.clone();
    b.name = "b".into();
    b.ports[0].port = 443;
    b.external_traffic_policy = TrafficPolicy::Local;
    b.selector = BTreeMap::from([("app".into(), "b".into())]);
    holds(&run(&mut ipam, &mut a));
    let reason = failure(&run(&mut ipam, &mut b));
    assert!(reason.contains("default/a") && reason.contains("Local"), "{reason}");
    // Same selector: fine.
    b.selector = a.selector.clone();
    assert_eq!(holds(&run(&mut ipam, &mut b)).1, ip("192.168.0.95"));
}

#[test]
fn kept_sharer_that_now_conflicts_is_warned_not_moved() {
    let mut ipam = Ipam::new(&seed_pools());
    let mut a = with(svc("default", "a"), ANNOTATION_EIP_IP, "192.168.0.95");
    let mut b = with(svc("default", "b"), ANNOTATION_EIP_IP, "192.168.0.95");
    b.ports[0].port = 443;
    holds(&run(&mut ipam, &mut a));
    holds(&run(&mut ipam, &mut b));
    b.ports[0].port = 80;
    let out = run(&mut ipam, &mut b);
    assert_eq!(out.change, Change::Kept { pool: "vip-eip".into(), ip: ip("192.168.0.95") });
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.events[0].reason, EventReason::SharedIpConflict);
    assert!(out.events[0].message.contains("default/a"));
}

#[test]
fn automatic_allocation_never_lands_on_a_shared_or_requested_address() {
    let mut ipam = Ipam::new(&[pool("p", "10.0.0.0/30", Protocol::Bgp)]);
    let mut a = with(svc("default", "a"), ANNOTATION_EIP_IP, "10.0.0.0");
    holds(&run(&mut ipam, &mut a));
    let mut b = svc("default", "b");
    assert_eq!(holds(&run(&mut ipam, &mut b)).1, ip("10.0.0.1"));
}

/// Each release reason of lifecycle: the Service loses its address (and gets a new one where it still wants one).
#[test]
fn release_on_each_reason() {
    type Edit = fn(&mut Service, &mut Ipam);
    let cases: Vec<(&str, Edit, bool, &str)> = vec![
        ("deletion", |s, _| s.deleting = true, false, "being deleted"),
        ("type changed", |s, _| s.type_ = "NodePort".into(), false, "not \"LoadBalancer\""),
        (
            "annotation removed",
            |s, _| {
                s.annotations.remove(ANNOTATION_LB);
            },
            false,
            "neither annotation",
        ),
        ("all annotations removed", |s, _| s.annotations.clear(), false, "neither annotation"),
        (
            "annotation value changed",
            |s, _| {
                s.annotations.insert(ANNOTATION_LB.into(), "porter".into());
            },
            false,
            "neither",
        ),
        (
            "pin changed",
            |s, _| {
                s.annotations.insert(ANNOTATION_EIP_POOL.into(), "bgp-eip".into());
            },
            true,
            "pinned to Eip bgp-eip",
        ),
        (
            "requested ip changed",
            |s, _| {
                s.annotations.insert(ANNOTATION_EIP_IP.into(), "192.168.0.99".into());
            },
            true,
            "192.168.0.99",
        ),
        (
            "protocol changed",
            |s, _| {
                s.annotations.insert(ANNOTATION_PROTOCOL.into(), "bgp".into());
                s.annotations.remove(ANNOTATION_EIP_POOL);
            },
            true,
            "protocol annotation says bgp",
        ),
        (
            "pool removed",
            |_, ipam| {
                ipam.remove_pool("vip-eip");
            },
            true,
            "Eip vip-eip was deleted",
        ),
    ];
    for (name, edit, reassigned, why) in cases {
        let mut ipam = Ipam::new(&seed_pools());
        let mut s = with(svc("default", "s"), ANNOTATION_EIP_POOL, "vip-eip");
        assert_eq!(holds(&run(&mut ipam, &mut s)).1, ip("192.168.0.91"), "{name}");
        edit(&mut s, &mut ipam);
        let out = run(&mut ipam, &mut s);
        let release =
            out.events.iter().find(|e| e.reason == EventReason::ReleaseIp).unwrap_or_else(|| panic!("{name}: {out:?}"));
        assert!(release.message.starts_with("success to release ip: 192.168.0.91"), "{name}: {}", release.message);
        assert!(release.message.contains(why), "{name}: {} lacks {why}", release.message);
        let st = ipam.pool_status("vip-eip");
        assert!(st.is_none_or(|st| !st.used.contains_key("192.168.0.91")), "{name}: still recorded");
        if reassigned {
            match &out.change {
                Change::Assigned { released: Some((_, old)), ip: new, .. } => {
                    assert_eq!(*old, ip("192.168.0.91"), "{name}");
                    assert_ne!(*new, ip("192.168.0.91"), "{name}");
                }
                Change::Failed { released: Some((_, old)), .. } => assert_eq!(*old, ip("192.168.0.91"), "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        } else {
            assert!(matches!(out.change, Change::Released { ip: Some(_), .. }), "{name}: {out:?}");
            assert_eq!(out.patch, Some(ServicePatch::default()), "{name}");
            assert!(s.ingress.is_empty() && s.labels.is_empty() && s.finalizers.is_empty(), "{name}");
            assert_eq!(ipam.allocation(&s.key()), None, "{name}");
        }
    }
}

/// Upstream returns an empty request for a Service without annotations, so it never releases it.
#[test]
fn service_without_annotations_but_with_label_is_released() {
    let mut ipam = Ipam::new(&seed_pools());
    let mut s = svc("default", "a");
    holds(&run(&mut ipam, &mut s));
    s.annotations.clear();
    let out = run(&mut ipam, &mut s);
    assert!(matches!(out.change, Change::Released { .. }));
    assert!(s.labels.is_empty() && s.ingress.is_empty());
    // And once clean, it is not ours any more: no patch at all.
    let again = ipam.reconcile(&s, None);
    assert_eq!((again.change, again.patch), (Change::NotOurs, None));
}

#[test]
fn unrelated_services_are_not_touched() {
    let mut ipam = Ipam::new(&seed_pools());
    let mut other_lb = svc("default", "metallb");
    other_lb.annotations.clear();
    other_lb.ingress = vec!["192.168.0.91".into()];
    let out = ipam.reconcile(&other_lb, None);
    assert_eq!((out.change, out.patch, out.events.len()), (Change::NotOurs, None, 0));
    let mut cluster_ip = svc("default", "plain");
    cluster_ip.type_ = "ClusterIP".into();
    assert_eq!(ipam.reconcile(&cluster_ip, None).change, Change::NotOurs);
}

#[test]
fn load_balancer_class_opts_in() {
    let mut ipam = Ipam::new(&seed_pools());
    let mut s = svc("default", "a");
    s.annotations.clear();
    s.load_balancer_class = Some(LOAD_BALANCER_CLASS.into());
    holds(&run(&mut ipam, &mut s));
    s.load_balancer_class = Some("other.io/lb".into());
    assert!(matches!(run(&mut ipam, &mut s).change, Change::Released { .. }));
}

#[test]
fn ipv6_slash64_pool_works() {
    let mut ipam = Ipam::new(&[pool("v6", "2001:db8:0:1::/64", Protocol::Layer2)]);
    let mut s = svc("default", "a");
    s.ip_families = vec![IpFamily::V6];
    assert_eq!(holds(&run(&mut ipam, &mut s)), ("v6".into(), ip("2001:db8:0:1::")));
    let mut t = with(svc("default", "b"), ANNOTATION_EIP_IP, "2001:db8:0:1:ffff:ffff:ffff:fffe");
    t.ip_families = vec![IpFamily::V6];
    assert_eq!(holds(&run(&mut ipam, &mut t)).1, ip("2001:db8:0:1:ffff:ffff:ffff:fffe"));
    let st = ipam.pool_status("v6").unwrap();
    assert_eq!(st.pool_size, 1u128 << 64);
    assert_eq!(st.pool_size_i64(), i64::MAX);
    assert_eq!((st.usage, st.occupied, st.v4), (2, false, false));
    assert_eq!(st.last_ip.as_deref(), Some("2001:db8:0:1:ffff:ffff:ffff:ffff"));
}

#[test]
fn pool_deleted_reallocates_from_another_pool_or_fails() {
    let mut ipam = Ipam::new(&seed_pools());
    let mut s = with(svc("default", "a"), ANNOTATION_PROTOCOL, "vip");
    assert_eq!(holds(&run(&mut ipam, &mut s)).0, "vip-eip");
    let mut other_vip = pool("vip-2", "10.5.0.0/30", Protocol::Vip);
    other_vip.priority = 3;
    ipam.upsert_pool(other_vip);
    assert_eq!(ipam.remove_pool("vip-eip"), vec![key("default", "a")]);
    let out = run(&mut ipam, &mut s);
    assert_eq!(holds(&out), ("vip-2".into(), ip("10.5.0.0")));
    assert!(matches!(out.change, Change::Assigned { released: Some((ref p, _)), .. } if p == "vip-eip"));
    // No pool of that protocol left: Failed, ingress cleared.
    ipam.remove_pool("vip-2");
    let out = run(&mut ipam, &mut s);
    assert!(failure(&out).starts_with("no Eip matches: bgp-eip is of protocol bgp"));
    assert!(s.ingress.is_empty() && s.labels.is_empty() && s.finalizers.is_empty());
}

/// An Eip being deleted drains: holders keep their addresses (through restarts too), nobody gets a new one
/// (any address, a pinned one, or a share of a holder's address), and only its removal releases the holders.
#[test]
fn pool_being_deleted_drains_until_it_is_gone() {
    let mut ipam = Ipam::new(&seed_pools());
    let mut a = with(svc("default", "a"), ANNOTATION_EIP_POOL, "vip-eip");
    let mut b = with(svc("default", "b"), ANNOTATION_PROTOCOL, "vip");
    assert_eq!(holds(&run(&mut ipam, &mut a)), ("vip-eip".into(), ip("192.168.0.91")));
    assert_eq!(holds(&run(&mut ipam, &mut b)), ("vip-eip".into(), ip("192.168.0.92")));
    let mut deleting = seed_pools()[1].clone();
    deleting.deleting = true;
    ipam.upsert_pool(deleting);

    for s in [&mut a, &mut b] {
        let out = run(&mut ipam, s);
        assert!(matches!(out.change, Change::Kept { ref pool, .. } if pool == "vip-eip"), "{out:?}");
        assert!(out.events.is_empty(), "{out:?}");
    }
    let restarted = Ipam::new(&ipam.pools());
    assert!(restarted.warnings().is_empty(), "{:?}", restarted.warnings());
    assert_eq!(restarted.allocation(&a.key()), Some(("vip-eip", ip("192.168.0.91"))));
    ipam = restarted;
    assert!(matches!(
        ipam.reconcile_all(&[a.clone(), b.clone()], &[])[..],
        [Outcome { change: Change::Kept { .. }, .. }, Outcome { change: Change::Kept { .. }, .. }]
    ));

    let mut pinned = with(svc("default", "pinned"), ANNOTATION_EIP_POOL, "vip-eip");
    assert_eq!(failure(&run(&mut ipam, &mut pinned)), "pinned to Eip vip-eip, which is being deleted");
    let mut any_vip = with(svc("default", "any"), ANNOTATION_PROTOCOL, "vip");
    assert_eq!(
        failure(&run(&mut ipam, &mut any_vip)),
        "no Eip matches: bgp-eip is of protocol bgp but the annotation asks for vip, vip-eip is being deleted"
    );
    let mut sharer = with(svc("default", "sharer"), ANNOTATION_EIP_IP, "192.168.0.91");
    sharer.ports[0].port = 8080;
    assert_eq!(
        failure(&run(&mut ipam, &mut sharer)),
        "requested address 192.168.0.91 is in Eip vip-eip, which is being deleted"
    );
    let st = ipam.pool_status("vip-eip").unwrap();
    assert_eq!((st.usage, st.used.len()), (2, 2), "{st:?}");

    // A holder that goes drains the pool; the last one leaving leaves nothing in use.
    b.deleting = true;
    assert!(matches!(run(&mut ipam, &mut b).change, Change::Released { .. }));
    assert_eq!(ipam.pool_status("vip-eip").unwrap().used.len(), 1);

    // Gone (the finalizer forced off): the remaining holder is released and served elsewhere if it can be.
    assert_eq!(ipam.remove_pool("vip-eip"), vec![key("default", "a")]);
    let out = run(&mut ipam, &mut a);
    assert!(failure(&out).contains("pinned to Eip vip-eip, which does not exist"), "{out:?}");
    assert!(out.events.iter().any(|e| e.message.contains("Eip vip-eip was deleted")), "{out:?}");
    assert!(a.ingress.is_empty() && a.labels.is_empty());
}

/// A Service showing an address whose record was lost is re-adopted in a pool being deleted (it would have
/// kept it had the record survived), but a pool that is gone releases it.
#[test]
fn ingress_without_record_in_a_pool_being_deleted_is_kept() {
    let mut pools = seed_pools();
    pools[1].deleting = true;
    let mut ipam = Ipam::new(&pools);
    let mut s = svc("default", "a");
    s.ingress = vec!["192.168.0.95".into()];
    s.labels.insert(LABEL_EIP_POOL.into(), "vip-eip".into());
    s.finalizers.push(FINALIZER_SERVICE.into());
    let out = run(&mut ipam, &mut s);
    assert_eq!(out.change, Change::Assigned { pool: "vip-eip".into(), ip: ip("192.168.0.95"), released: None });
    assert_eq!(ipam.pool_status("vip-eip").unwrap().used.get("192.168.0.95").map(String::as_str), Some("default/a"));

    let mut gone = Ipam::new(&seed_pools()[..1]);
    let out = run(&mut gone, &mut s);
    assert!(out.events.iter().any(|e| e.message.contains("Eip vip-eip was deleted")), "{out:?}");
    assert_eq!(holds(&out).0, "bgp-eip");
}

#[test]
fn ingress_without_record_is_adopted_when_valid() {
    let mut ipam = Ipam::new(&seed_pools());
    let mut s = svc("default", "a");
    s.ingress = vec!["192.168.0.97".into()];
    s.labels.insert(LABEL_EIP_POOL.into(), "vip-eip".into());
    let out = run(&mut ipam, &mut s);
    assert_eq!(out.change, Change::Assigned { pool: "vip-eip".into(), ip: ip("192.168.0.97"), released: None });
    assert_eq!(ipam.pool_status("vip-eip").unwrap().used.get("192.168.0.97").map(String::as_str), Some("default/a"));
    // Another unrecorded claimant of the same address that did not request it is moved.
    let mut t = svc("default", "b");
    t.ingress = vec!["192.168.0.97".into()];
    let out = run(&mut ipam, &mut t);
    assert!(matches!(out.change, Change::Assigned { released: Some(_), .. }), "{out:?}");
    assert_ne!(holds(&out).1, ip("192.168.0.97"));
}

#[test]
fn ingress_without_record_outside_any_pool_is_released() {
    let mut ipam = Ipam::new(&seed_pools());
    let mut s = with(svc("default", "a"), ANNOTATION_EIP_POOL, "vip-eip");
    s.ingress = vec!["10.99.0.1".into()];
    s.labels.insert(LABEL_EIP_POOL.into(), "gone-eip".into());
    let out = run(&mut ipam, &mut s);
    assert_eq!(out.events[0].reason, EventReason::ReleaseIp);
    assert!(out.events[0].message.contains("Eip gone-eip was deleted"), "{}", out.events[0].message);
    assert_eq!(holds(&out), ("vip-eip".into(), ip("192.168.0.91")));
    assert_eq!(s.ingress, vec!["192.168.0.91".to_string()]);
}

#[test]
fn upsert_keeps_every_allocation() {
    let mut ipam = Ipam::new(&[pool("p", "10.0.0.0/29", Protocol::Bgp)]);
    let mut svcs: Vec<Service> = (0..4).map(|i| svc("default", &format!("s{i}"))).collect();
    for s in svcs.iter_mut() {
        run(&mut ipam, s);
    }
    let mut grown = pool("p", "10.0.0.0/28", Protocol::Bgp);
    grown.priority = 7;
    ipam.upsert_pool(grown);
    assert!(ipam.pool_status("p").unwrap().invalid.is_empty());
    let mut shrunk = pool("p", "10.0.0.2-10.0.0.15", Protocol::Bgp);
    shrunk.priority = 7;
    ipam.upsert_pool(shrunk);
    // Outside the new range, yet kept: a shrink drains, it never renumbers.
    assert_eq!(ipam.allocation(&key("default", "s0")), Some(("p", ip("10.0.0.0"))));
    assert_eq!(ipam.allocation(&key("default", "s1")), Some(("p", ip("10.0.0.1"))));
    assert_eq!(ipam.allocation(&key("default", "s2")), Some(("p", ip("10.0.0.2"))));
    assert_eq!(ipam.allocation(&key("default", "s3")), Some(("p", ip("10.0.0.3"))));
    assert_eq!(ipam.pools()[0].priority, 7);
    let st = ipam.pool_status("p").unwrap();
    assert_eq!((st.pool_size, st.usage), (14, 4));
    assert_eq!(st.invalid.len(), 1, "{:?}", st.invalid);
}

#[test]
fn reconcile_all_serves_holders_first() {
    let mut ipam = Ipam::new(&[pool("p", "10.0.0.0/30", Protocol::Bgp)]);
    let mut z = svc("default", "z");
    run(&mut ipam, &mut z);
    // A restart that lost the Eip status: z shows 10.0.0.0 but nothing records it. "a" sorts first by name yet
    // must not take z's address.
    let mut fresh = Ipam::new(&[pool("p", "10.0.0.0/30", Protocol::Bgp)]);
    let a = svc("default", "a");
    let outs = fresh.reconcile_all(&[a, z.clone()], &[]);
    assert_eq!(outs[0].service, key("default", "z"));
    assert_eq!(holds(&outs[0]).1, ip("10.0.0.0"));
    assert_eq!(holds(&outs[1]).1, ip("10.0.0.1"));
}

#[test]
fn release_absent_frees_addresses_of_vanished_services() {
    let mut ipam = Ipam::new(&seed_pools());
    let mut a = svc("default", "a");
    let mut b = svc("default", "b");
    run(&mut ipam, &mut a);
    run(&mut ipam, &mut b);
    assert_eq!(ipam.release_absent(&[key("default", "b")]), vec![key("default", "a")]);
    assert_eq!(ipam.allocation(&key("default", "a")), None);
    assert_eq!(ipam.release_service(&key("default", "b")), Some(("bgp-eip".into(), ip("172.22.0.3"))));
    assert_eq!(ipam.pool_status("bgp-eip").unwrap().usage, 0);
}

#[test]
fn selection_is_deterministic_whatever_the_pool_order() {
    let mut pools = vec![
        pool("c", "10.0.2.0/30", Protocol::Bgp),
        pool("a", "10.0.0.0/30", Protocol::Bgp),
        pool("b", "10.0.1.0/30", Protocol::Bgp),
    ];
    let s = svc("default", "x");
    let first = holds(&Ipam::new(&pools).reconcile(&s, None));
    pools.reverse();
    assert_eq!(holds(&Ipam::new(&pools).reconcile(&s, None)), first);
    assert_eq!(first.0, "a");
}

#[test]
fn patch_apply_sets_ingress_label_and_finalizer() {
    let mut s = svc("default", "a");
    s.finalizers.push("other".into());
    let p = ServicePatch { ingress: vec!["10.0.0.1".into()], pool_label: Some("p".into()), finalizer: true };
    p.apply(&mut s);
    p.apply(&mut s);
    assert_eq!(s.finalizers, vec!["other".to_string(), FINALIZER_SERVICE.to_string()]);
    assert_eq!(s.labels.get(LABEL_EIP_POOL).map(String::as_str), Some("p"));
    ServicePatch::default().apply(&mut s);
    assert_eq!(s.finalizers, vec!["other".to_string()]);
    assert!(s.labels.is_empty() && s.ingress.is_empty());
}
