//! Pools that got past the webhook (it was down, two Eips were created at once, or they predate a rule):
//! overlapping, shrunk under their holders, including addresses no host can hold. Each test is one rule of
//! docs/allocation.md: one set of used addresses across pools, invalid pools drain, nothing held is renumbered,
//! and every refusal names the Eip, the field and the value.

use std::collections::BTreeMap;
use std::net::IpAddr;

use openelb_core::event_reason::EventReason;
use openelb_core::ipam::{Change, EventType, Ipam, Outcome};
use openelb_core::pool_invalid::PoolProblem;
use openelb_core::{
    ANNOTATION_EIP_IP, ANNOTATION_EIP_POOL, ANNOTATION_LB, IpFamily, LABEL_EIP_POOL, Pool, Service, ServiceKey,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pool(name: &str, address: &str) -> Pool {
    Pool { name: name.into(), address: address.into(), ..Default::default() }
}

fn with_used(mut p: Pool, used: &[(&str, &str)]) -> Pool {
    p.used = used.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    p
}

fn svc(name: &str) -> Service {
    let mut s =
        Service { namespace: "ns".into(), name: name.into(), type_: "LoadBalancer".into(), ..Default::default() };
    s.annotations.insert(ANNOTATION_LB.into(), "openelb".into());
    s
}

fn with(mut s: Service, key: &str, value: &str) -> Service {
    s.annotations.insert(key.into(), value.into());
    s
}

/// A Service as the API holds it after the controller wrote `ip` from `pool` for it.
fn holding(name: &str, pool: &str, ip: &str) -> Service {
    let mut s = svc(name);
    s.labels.insert(LABEL_EIP_POOL.into(), pool.into());
    s.ingress = vec![ip.into()];
    s
}

fn run(ipam: &mut Ipam, s: &mut Service) -> Outcome {
    let out = ipam.reconcile(s, None);
    if let Some(p) = &out.patch {
        p.apply(s);
    }
    out
}

fn key(name: &str) -> ServiceKey {
    ServiceKey::new("ns", name)
}

fn failure(out: &Outcome) -> &str {
    match &out.change {
        Change::Failed { reason, .. } => reason,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn reasons(ipam: &Ipam, pool: &str) -> Vec<&'static str> {
    ipam.pool_status(pool).unwrap().invalid.iter().map(|i| i.problem.reason()).collect()
}

/// Two overlapping pools that got past the webhook used to give 192.0.2.1 to two Services, one from each.
#[test]
fn overlapping_pools_give_nothing_new_and_name_each_other() {
    let mut ipam = Ipam::new(&[pool("a", "192.0.2.1-192.0.2.9"), pool("b", "192.0.2.1/32")]);
    let mut x = with(svc("x"), ANNOTATION_EIP_POOL, "a");
    let mut y = with(svc("y"), ANNOTATION_EIP_POOL, "b");
    let fx = run(&mut ipam, &mut x);
    assert_eq!(
        failure(&fx),
        "pinned to Eip a, which is invalid: spec.address \"192.0.2.1-192.0.2.9\" overlaps Eip b (spec.address \
         \"192.0.2.1/32\") on 192.0.2.1"
    );
    assert!(failure(&run(&mut ipam, &mut y)).contains("overlaps Eip a (spec.address \"192.0.2.1-192.0.2.9\")"));
    let mut z = svc("z");
    let fz = run(&mut ipam, &mut z);
    assert!(failure(&fz).starts_with("no Eip matches: a is invalid: spec.address"), "{}", failure(&fz));
    let status = ipam.pool_status("a").unwrap();
    assert_eq!(status.invalid.len(), 1);
    let invalid = &status.invalid[0];
    assert_eq!(invalid.problem.reason(), "OverlappingEip");
    assert_eq!(
        invalid.to_string(),
        "Eip a: spec.address \"192.0.2.1-192.0.2.9\" overlaps Eip b (spec.address \"192.0.2.1/32\") on 192.0.2.1; \
         the Eip gives out no new addresses until this is fixed"
    );
    assert_eq!(reasons(&ipam, "b"), ["OverlappingEip"]);
}

/// The state the bug left behind (each pool records 192.0.2.1 for another Service) is repaired on rebuild: the
/// address stays with one of them, the other is released and gets nothing from the invalid pools.
#[test]
fn an_address_recorded_in_two_pools_stays_with_one_service() {
    let pools = [
        with_used(pool("a", "192.0.2.1-192.0.2.9"), &[("192.0.2.1", "ns/x")]),
        with_used(pool("b", "192.0.2.1/32"), &[("192.0.2.1", "ns/y")]),
    ];
    let mut ipam = Ipam::new(&pools);
    let w = ipam.warnings().join("\n");
    assert!(w.contains("Eip b: status.used[192.0.2.1] records ns/y but Eip a records 192.0.2.1 for ns/x"), "{w}");
    let mut services = vec![holding("x", "a", "192.0.2.1"), holding("y", "b", "192.0.2.1")];
    for out in ipam.reconcile_all(&services, &[]) {
        if let (Some(p), Some(s)) = (&out.patch, services.iter_mut().find(|s| s.key() == out.service)) {
            p.apply(s);
        }
    }
    assert_eq!(ipam.allocation(&key("x")), Some(("a", ip("192.0.2.1"))));
    assert_eq!(ipam.allocation(&key("y")), None);
    assert!(services[1].ingress.is_empty());
    let st_b = ipam.pool_status("b").unwrap();
    assert!(st_b.used.is_empty(), "{:?}", st_b.used);
}

/// An overlapping Eip created later stops new allocations in both; holders keep theirs; removing it resumes.
#[test]
fn a_later_overlap_keeps_holders_and_its_removal_resumes_allocation() {
    let mut ipam = Ipam::new(&[pool("a", "192.0.2.1-192.0.2.9")]);
    let mut s1 = svc("s1");
    assert!(matches!(run(&mut ipam, &mut s1).change, Change::Assigned { .. }));
    ipam.upsert_pool(pool("b", "192.0.2.5-192.0.2.20"));
    let kept = run(&mut ipam, &mut s1);
    assert_eq!(kept.change, Change::Kept { pool: "a".into(), ip: ip("192.0.2.1") });
    let mut s2 = svc("s2");
    assert!(failure(&run(&mut ipam, &mut s2)).contains("on 192.0.2.5-192.0.2.9"));
    ipam.remove_pool("b");
    assert!(ipam.pool_status("a").unwrap().invalid.is_empty());
    assert_eq!(
        run(&mut ipam, &mut s2).change,
        Change::Assigned { pool: "a".into(), ip: ip("192.0.2.2"), released: None }
    );
}

/// A pool shrunk under its holders used to renumber a Service silently, 192.0.2.5 -> 192.0.2.1.
#[test]
fn a_shrunk_pool_drains_and_never_renumbers() {
    let mut ipam = Ipam::new(&[pool("p", "192.0.2.1-192.0.2.9")]);
    let mut s: Vec<Service> = (1..=5).map(|i| svc(&format!("s{i}"))).collect();
    for x in s.iter_mut() {
        run(&mut ipam, x);
    }
    // s1 and s2 go, s3..s5 keep .3-.5; then the webhook is bypassed and the pool shrinks to .1-.3.
    for x in s.iter_mut().take(2) {
        x.deleting = true;
        run(&mut ipam, x);
    }
    ipam.upsert_pool(pool("p", "192.0.2.1-192.0.2.3"));
    for (x, held) in s.iter_mut().zip(["", "", "192.0.2.3", "192.0.2.4", "192.0.2.5"]).skip(2) {
        let out = run(&mut ipam, x);
        assert_eq!(out.change, Change::Kept { pool: "p".into(), ip: ip(held) }, "{}", x.name);
        let outside = out.events.iter().find(|e| e.reason == EventReason::IpOutsideEip);
        if held == "192.0.2.3" {
            assert_eq!(outside, None);
        } else {
            let e = outside.unwrap_or_else(|| panic!("{}: {:?}", x.name, out.events));
            assert_eq!(e.type_, EventType::Warning);
            assert_eq!(
                e.message,
                format!(
                    "keeps {held} although Eip p's spec.address \"192.0.2.1-192.0.2.3\" no longer contains it; the \
                     Eip gives out no new addresses until it is released"
                )
            );
        }
    }
    let status = ipam.pool_status("p").unwrap();
    assert_eq!((status.pool_size, status.usage), (3, 3));
    assert_eq!(status.invalid.len(), 1);
    assert_eq!(
        status.invalid[0].to_string(),
        "Eip p: spec.address \"192.0.2.1-192.0.2.3\" no longer contains 2 address(es) in use: 192.0.2.4 (ns/s4), \
         192.0.2.5 (ns/s5); their Services keep them until released; the Eip gives out no new addresses until this \
         is fixed"
    );
    // Free addresses inside the new range are not handed out while it drains.
    let mut newcomer = svc("new");
    assert!(failure(&run(&mut ipam, &mut newcomer)).contains("no longer contains 2 address(es) in use"));
    // A restart keeps everything (status.used is the record).
    let mut restarted = Ipam::new(&ipam.pools());
    assert!(restarted.warnings().is_empty(), "{:?}", restarted.warnings());
    assert_eq!(restarted.allocation(&key("s5")), Some(("p", ip("192.0.2.5"))));
    // Once the holders outside are gone, the pool is valid again and allocates lowest-first.
    for x in s.iter_mut().skip(3) {
        x.deleting = true;
        run(&mut restarted, x);
    }
    assert!(restarted.pool_status("p").unwrap().invalid.is_empty());
    assert_eq!(
        run(&mut restarted, &mut newcomer).change,
        Change::Assigned { pool: "p".into(), ip: ip("192.0.2.1"), released: None }
    );
}

/// A spec.address that stops parsing is the extreme shrink: holders stay, nothing new, the reason is the parser's.
#[test]
fn an_unparsable_address_drains_too() {
    let mut ipam = Ipam::new(&[pool("p", "192.0.2.1-192.0.2.9")]);
    let mut a = svc("a");
    run(&mut ipam, &mut a);
    ipam.upsert_pool(pool("p", "192.0.2.1-"));
    assert_eq!(run(&mut ipam, &mut a).change, Change::Kept { pool: "p".into(), ip: ip("192.0.2.1") });
    let st = ipam.pool_status("p").unwrap();
    assert_eq!(st.used.get("192.0.2.1").map(String::as_str), Some("ns/a"));
    assert_eq!(reasons(&ipam, "p"), ["InvalidAddress", "AddressesOutsidePool"]);
    assert!(st.invalid[0].to_string().contains("does not parse: range end is missing after '-'"));
    assert_eq!(Ipam::new(&ipam.pools()).allocation(&key("a")), Some(("p", ip("192.0.2.1"))));
}

/// A pool that no longer contains an address held through it must not lend it to another pool's newcomer.
#[test]
fn an_address_held_outside_its_pool_is_not_handed_out_by_another() {
    let mut ipam = Ipam::new(&[pool("p", "192.0.2.1-192.0.2.9")]);
    let mut a = svc("a");
    run(&mut ipam, &mut a);
    ipam.upsert_pool(pool("p", "192.0.2.5-192.0.2.9"));
    ipam.upsert_pool(pool("q", "192.0.2.1-192.0.2.4"));
    let mut b = with(svc("b"), ANNOTATION_EIP_POOL, "q");
    assert_eq!(
        run(&mut ipam, &mut b).change,
        Change::Assigned { pool: "q".into(), ip: ip("192.0.2.2"), released: None }
    );
    let mut c = with(svc("c"), ANNOTATION_EIP_IP, "192.0.2.1");
    assert_eq!(failure(&run(&mut ipam, &mut c)), "192.0.2.1 is held by ns/a through Eip p");
}

/// Every kind of address no host can hold, once accepted and handed out: the pool is invalid (the error names
/// Eip, field, value).
#[test]
fn pools_with_addresses_no_host_can_hold_give_out_nothing() {
    let cases = [
        ("0.0.0.0/0", "contains 0.0.0.0, the unspecified address (0.0.0.0/32)"),
        ("255.255.255.255", "contains 255.255.255.255, the limited broadcast address (255.255.255.255/32)"),
        ("224.0.0.18", "contains 224.0.0.18, a multicast address (224.0.0.0/4)"),
        ("127.0.0.1", "contains 127.0.0.1, a loopback address (127.0.0.0/8)"),
        ("169.254.0.0/16", "contains 169.254.0.0, a link-local address (169.254.0.0/16)"),
        ("fe80::/10", "contains fe80::, a link-local address (fe80::/10)"),
        ("::ffff:192.0.2.1", "contains ::ffff:192.0.2.1, an IPv4-mapped IPv6 address (::ffff:0:0/96)"),
        ("::1", "contains ::1, a loopback address (::1/128)"),
        ("ff02::12", "contains ff02::12, a multicast address (ff00::/8)"),
    ];
    for (address, why) in cases {
        let mut ipam = Ipam::new(&[pool("p", address)]);
        let mut s = with(svc("s"), ANNOTATION_EIP_POOL, "p");
        s.ip_families = vec![IpFamily::of(&ip(address.split('/').next().unwrap()))];
        let reason = failure(&run(&mut ipam, &mut s)).to_string();
        let want = format!("pinned to Eip p, which is invalid: spec.address {address:?} {why}");
        assert!(reason.starts_with(&want), "{address}: {reason}");
        assert_eq!(reasons(&ipam, "p"), ["ReservedAddress"], "{address}");
        assert!(ipam.pool_status("p").unwrap().used.is_empty());
    }
}

/// Requests for such addresses fail naming the field and the value, whatever pool contains them.
#[test]
fn requests_for_addresses_no_host_can_hold_fail_naming_field_and_value() {
    let mut ipam = Ipam::new(&[pool("p", "192.0.2.0-192.0.2.9")]);
    let mut s = svc("s");
    s.load_balancer_ip = Some("224.0.0.18".into());
    assert_eq!(
        failure(&run(&mut ipam, &mut s)),
        "spec.loadBalancerIP=\"224.0.0.18\": 224.0.0.18 is a multicast address (224.0.0.0/4), which no host can \
         hold as a VIP"
    );
    let mut t = with(svc("t"), ANNOTATION_EIP_IP, "0.0.0.0");
    assert!(failure(&run(&mut ipam, &mut t)).starts_with(&format!("annotation {ANNOTATION_EIP_IP}=\"0.0.0.0\": ")));
}

/// An allocation of such an address that predates the rule never worked: its record is dropped on rebuild,
/// the Service released with that reason and given a valid address; other holders of the same pool keep theirs.
#[test]
fn a_predating_allocation_of_such_an_address_is_released_and_replaced() {
    let pools = [
        with_used(pool("old", "126.255.255.250-127.0.0.5"), &[("127.0.0.1", "ns/lo"), ("126.255.255.251", "ns/fine")]),
        pool("good", "192.0.2.1-192.0.2.9"),
    ];
    let mut ipam = Ipam::new(&pools);
    assert!(ipam.warnings().iter().any(|w| w.contains("127.0.0.1 is a loopback address")), "{:?}", ipam.warnings());
    let mut lo = holding("lo", "old", "127.0.0.1");
    let mut fine = holding("fine", "old", "126.255.255.251");
    let out = run(&mut ipam, &mut lo);
    assert_eq!(
        out.change,
        Change::Assigned { pool: "good".into(), ip: ip("192.0.2.1"), released: Some(("old".into(), ip("127.0.0.1"))) }
    );
    let release = out.events.iter().find(|e| e.reason == EventReason::ReleaseIp).unwrap();
    assert_eq!(
        release.message,
        "success to release ip: 127.0.0.1 (127.0.0.1 is a loopback address (127.0.0.0/8), which no host can hold as \
         a VIP)"
    );
    assert_eq!(run(&mut ipam, &mut fine).change, Change::Kept { pool: "old".into(), ip: ip("126.255.255.251") });
    assert_eq!(reasons(&ipam, "old"), ["ReservedAddress"]);
    let used: BTreeMap<String, String> = ipam.pool_status("old").unwrap().used;
    assert_eq!(used.keys().collect::<Vec<_>>(), ["126.255.255.251"]);
}

#[test]
fn problems_come_in_a_fixed_order_with_typed_reasons() {
    let pools = [with_used(pool("p", "127.0.0.0-127.0.0.9"), &[("192.0.2.7", "ns/a")]), pool("q", "127.0.0.5")];
    let ipam = Ipam::new(&pools);
    let st = ipam.pool_status("p").unwrap();
    let kinds: Vec<&'static str> = st.invalid.iter().map(|i| i.problem.reason()).collect();
    assert_eq!(kinds, ["ReservedAddress", "OverlappingEip", "AddressesOutsidePool"]);
    assert!(matches!(&st.invalid[2].problem, PoolProblem::Outside { total: 1, .. }));
}
