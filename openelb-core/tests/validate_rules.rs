//! One table test per validation rule, plus properties over arbitrary input.

use std::collections::BTreeMap;

use openelb_core::validate::{Problem, validate_cluster, validate_pool_update, validate_pools};
use openelb_core::{
    ANNOTATION_DEFAULT_EIP, ANNOTATION_EIP_IP, ANNOTATION_EIP_POOL, ANNOTATION_LB, ANNOTATION_PROTOCOL, AddrRange,
    Cluster, LOAD_BALANCER_CLASS, PRIORITY_MAX, PRIORITY_MIN, Pool, Protocol, Service, ServicePort, TrafficPolicy,
};
use proptest::prelude::*;

/// A VIP-mode pool with its interface: the protocol this build announces, so no warning says otherwise.
fn pool(name: &str, address: &str) -> Pool {
    Pool {
        name: name.into(),
        address: address.into(),
        protocol: Protocol::Vip,
        interface: Some("eth0".into()),
        ..Pool::default()
    }
}

/// The problems of `problems` other than the warning that a pool's protocol is not announced.
fn announced(problems: Vec<Problem>) -> Vec<Problem> {
    problems.into_iter().filter(|p| p.field != "spec.protocol").collect()
}

fn l2(name: &str, address: &str, iface: &str) -> Pool {
    Pool { protocol: Protocol::Layer2, interface: Some(iface.into()), ..pool(name, address) }
}

fn with_default(mut p: Pool, value: &str) -> Pool {
    p.is_default = value == "true";
    p.default_annotation = Some(value.into());
    p
}

fn with_used(mut p: Pool, used: &[(&str, &str)]) -> Pool {
    p.used = used.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    p
}

fn svc(name: &str, annotations: &[(&str, &str)]) -> Service {
    Service {
        namespace: "default".into(),
        name: name.into(),
        type_: "LoadBalancer".into(),
        annotations: annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Service::default()
    }
}

fn lb(name: &str, extra: &[(&str, &str)]) -> Service {
    let mut a = vec![(ANNOTATION_LB, "openelb")];
    a.extend_from_slice(extra);
    svc(name, &a)
}

fn cluster(pools: Vec<Pool>, services: Vec<Service>) -> Cluster {
    Cluster { pools, services, ..Cluster::default() }
}

fn ann(key: &str) -> String {
    format!("metadata.annotations[{key}]")
}

fn errors(problems: Vec<Problem>) -> Vec<Problem> {
    problems.into_iter().filter(Problem::is_error).collect()
}

/// The single problem of `problems`, failing with the whole list otherwise.
fn only(problems: &[Problem]) -> &Problem {
    assert_eq!(problems.len(), 1, "{problems:#?}");
    &problems[0]
}

// ---- pools ----

#[test]
fn good_pools_have_no_problems() {
    let pools = [
        pool("eth0-pool", "192.0.2.0/31"),
        Pool { protocol: Protocol::Vip, interface: Some("can_reach:192.0.2.1".into()), ..pool("vip", "2001:db8::/64") },
        with_default(pool("default", "198.51.100.7"), "true"),
    ];
    assert_eq!(validate_pools(&pools), []);
}

/// Until a speaker implements them, layer2 and bgp pools (bgp also when `spec.protocol` is omitted) allocate
/// but nothing announces their addresses: a warning naming the field and value, never an error.
#[test]
fn pools_of_a_protocol_nobody_announces_are_a_warning() {
    let pools = [
        Pool { protocol: Protocol::Bgp, ..pool("bgp-pool", "192.0.2.0-192.0.2.1") },
        l2("eip-l2", "192.0.2.91-192.0.2.100", "eth0"),
        Pool { protocol: Protocol::from_spec(None), ..pool("omitted", "198.51.100.1") },
    ];
    let got = validate_pools(&pools);
    let seen: Vec<(&str, &str, &str)> =
        got.iter().map(|p| (p.object.as_str(), p.field.as_str(), p.value.as_str())).collect();
    assert_eq!(
        seen,
        [
            ("Eip/bgp-pool", "spec.protocol", "bgp"),
            ("Eip/eip-l2", "spec.protocol", "layer2"),
            ("Eip/omitted", "spec.protocol", "bgp")
        ]
    );
    for p in &got {
        assert!(!p.is_error(), "{p}");
        let why = openelb_core::protocol_support::not_announced(Protocol::from_spec(Some(&p.value)));
        assert_eq!(Some(&p.message), why.as_ref());
        assert!(p.to_string().starts_with(&format!("warning: {}: spec.protocol=", p.object)), "{p}");
    }
}

#[test]
fn address_must_parse_and_the_message_is_the_parser_error() {
    for bad in ["192.168.0.100-192.168.0.91", "nonsense", "1.2.3.4-5.6.7.8-9.9.9.9", "10.0.0.0/33", ""] {
        let got = validate_pools(&[pool("p", bad)]);
        let p = only(&got);
        assert_eq!((p.object.as_str(), p.field.as_str(), p.value.as_str()), ("Eip/p", "spec.address", bad));
        assert_eq!(p.message, AddrRange::parse(bad).unwrap_err().to_string());
    }
}

#[test]
fn interface_is_required_for_layer2() {
    for iface in [None, Some("")] {
        let p = Pool { protocol: Protocol::Layer2, interface: iface.map(String::from), ..pool("p", "10.0.0.1") };
        let got = announced(validate_pools(&[p]));
        let pr = only(&got);
        assert_eq!(pr.field, "spec.interface");
        assert!(pr.is_error());
        assert_eq!(pr.message, "spec.interface is required for protocol layer2");
    }
    let bgp = Pool { protocol: Protocol::Bgp, interface: None, ..pool("bgp", "10.0.0.1") };
    assert_eq!(announced(validate_pools(&[bgp])), []);
}

/// The seed's vip-eip.yaml sets no interface; VIP mode then uses the InternalIP's NIC. Upstream v0.6 rejects it,
/// so it is reported, but as a warning that does not fail validation.
#[test]
fn missing_interface_for_vip_is_a_warning() {
    for iface in [None, Some("")] {
        let p = Pool { protocol: Protocol::Vip, interface: iface.map(String::from), ..pool("p", "10.0.0.1") };
        let got = validate_pools(&[p]);
        let pr = only(&got);
        assert_eq!(pr.field, "spec.interface");
        assert!(!pr.is_error(), "{pr}");
        assert!(pr.to_string().starts_with("warning: Eip/p: spec.interface"), "{pr}");
    }
}

#[test]
fn interface_must_be_a_nic_name_or_can_reach_ip() {
    let good = ["eth0", "ens3.100", "br-lan", "a", "x23456789012345", "can_reach:10.0.0.1", "can_reach:fe80::1"];
    for iface in good {
        assert_eq!(announced(validate_pools(&[l2("p", "10.0.0.1", iface)])), [], "{iface}");
    }
    let bad = [
        ("x234567890123456", "at most 15"),
        ("eth 0", "cannot contain ' '"),
        ("eth0/1", "cannot contain '/'"),
        ("eth0\t", "cannot contain '\\t'"),
        (".", "not interface names"),
        ("..", "not interface names"),
        ("eth\u{1}", "cannot contain '\\u{1}'"),
        ("can_reach:127.0.0.1", "loopback"),
        ("can_reach:", "not an IP address"),
        ("can_reach:10.0.0.256", "not an IP address"),
        ("can_reach:10.0.0.0/24", "not an IP address"),
        ("can_reach 10.0.0.1", "cannot contain ' '"),
        ("can-reach:10.0.0.1", "unknown prefix \"can-reach\""),
        ("name:eth0", "unknown prefix \"name\""),
        (":eth0", "unknown prefix \"\""),
    ];
    for (iface, why) in bad {
        let got = announced(validate_pools(&[l2("p", "10.0.0.1", iface)]));
        let p = only(&got);
        assert_eq!((p.field.as_str(), p.value.as_str()), ("spec.interface", iface));
        assert!(p.message.contains(why), "{iface}: {}", p.message);
    }
}

#[test]
fn overlapping_pools_name_both_pools_and_addresses() {
    let pools = [pool("b", "10.0.0.128-10.0.1.5"), pool("a", "10.0.0.0/24"), pool("c", "10.0.2.0/24")];
    let got = errors(validate_pools(&pools));
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!((got[0].object.as_str(), got[0].value.as_str()), ("Eip/a", "10.0.0.0/24"));
    assert_eq!((got[1].object.as_str(), got[1].value.as_str()), ("Eip/b", "10.0.0.128-10.0.1.5"));
    for p in &got {
        assert_eq!(p.field, "spec.address");
        for needle in ["Eip/a", "Eip/b", "10.0.0.0/24", "10.0.0.128-10.0.1.5", "10.0.0.128-10.0.0.255"] {
            assert!(p.to_string().contains(needle), "{needle} missing in {p}");
        }
    }
}

#[test]
fn overlap_is_reported_for_a_single_shared_address() {
    let got = validate_pools(&[pool("a", "10.0.0.0-10.0.0.5"), pool("b", "10.0.0.5-10.0.0.9")]);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|p| p.message.contains(" on 10.0.0.5;")), "{got:#?}");
}

#[test]
fn overlap_ignores_pools_of_other_families() {
    // Upstream's integer test would call these overlapping: both start at integer 0x0a00_0000.
    // (`::/104` and `0.0.0.0/8` were the example before addresses no host can hold were refused.)
    let pools = [pool("v4", "10.0.0.0-10.0.0.255"), pool("v6", "::a00:0/120")];
    assert_eq!(validate_pools(&pools), []);
}

#[test]
fn several_default_pools_are_named_together() {
    let pools = [
        with_default(pool("a", "10.0.0.1"), "true"),
        with_default(pool("b", "10.0.0.2"), "true"),
        pool("c", "10.0.0.3"),
        with_default(pool("d", "10.0.0.4"), "false"),
    ];
    let got = validate_pools(&pools);
    assert_eq!(got.len(), 2, "{got:#?}");
    for (p, name) in got.iter().zip(["Eip/a", "Eip/b"]) {
        assert_eq!(p.object, name);
        assert_eq!(p.field, ann(ANNOTATION_DEFAULT_EIP));
        assert!(p.message.contains("2 pools are marked default (Eip/a, Eip/b)"), "{p}");
    }
}

#[test]
fn default_uniqueness_is_case_insensitive_like_upstream_webhook() {
    let pools = [with_default(pool("a", "10.0.0.1"), "true"), with_default(pool("b", "10.0.0.2"), "TRUE")];
    let got = validate_pools(&pools);
    let multi: Vec<&Problem> = got.iter().filter(|p| p.message.contains("marked default")).collect();
    assert_eq!(multi.len(), 2, "{got:#?}");
}

#[test]
fn default_annotation_must_be_exactly_lowercase_true() {
    for value in ["True", "TRUE", "tRuE"] {
        let got = validate_pools(&[with_default(pool("a", "10.0.0.1"), value)]);
        let p = only(&got);
        assert_eq!((p.field.as_str(), p.value.as_str()), (ann(ANNOTATION_DEFAULT_EIP).as_str(), value));
        assert!(p.message.contains("IPAM requires exactly \"true\""), "{p}");
        assert!(!p.is_error());
    }
    for value in ["true", "false", "", "yes"] {
        assert_eq!(validate_pools(&[with_default(pool("a", "10.0.0.1"), value)]), [], "{value}");
    }
}

#[test]
fn negative_priority_is_allowed() {
    assert_eq!(validate_pools(&[Pool { priority: -5, ..pool("a", "10.0.0.1") }]), []);
}

/// The schema bounds priority to int32; an object that bypassed it (upstream declares a Go int) is reported
/// with the field and the value.
#[test]
fn priority_outside_the_schema_bounds_is_an_error() {
    for ok in [PRIORITY_MIN, PRIORITY_MAX, 0] {
        assert_eq!(validate_pools(&[Pool { priority: ok, ..pool("a", "10.0.0.1") }]), [], "{ok}");
    }
    for bad in [3_000_000_000, PRIORITY_MAX + 1, PRIORITY_MIN - 1, i64::MIN] {
        let got = validate_pools(&[Pool { priority: bad, ..pool("a", "10.0.0.1") }]);
        let p = only(&got);
        assert!(p.is_error());
        assert_eq!((p.object.as_str(), p.field.as_str(), p.value.clone()), ("Eip/a", "spec.priority", bad.to_string()));
        assert!(p.message.contains("-2147483648 to 2147483647"), "{p}");
    }
}

/// Each of these used to be accepted and handed out. Now an error naming the Eip, the field and the value.
#[test]
fn addresses_no_host_can_hold_are_refused() {
    let cases = [
        ("0.0.0.0/0", "0.0.0.0, the unspecified address"),
        ("0.0.0.0", "0.0.0.0, the unspecified address"),
        ("255.255.255.255", "255.255.255.255, the limited broadcast address"),
        ("224.0.0.18", "224.0.0.18, a multicast address (224.0.0.0/4)"),
        ("239.0.0.1-239.0.0.9", "239.0.0.1, a multicast address"),
        ("127.0.0.1", "127.0.0.1, a loopback address (127.0.0.0/8)"),
        ("126.255.255.0-127.0.0.3", "127.0.0.0, a loopback address"),
        ("169.254.10.0/24", "169.254.10.0, a link-local address (169.254.0.0/16)"),
        ("fe80::/10", "fe80::, a link-local address (fe80::/10)"),
        ("::ffff:192.0.2.1", "::ffff:192.0.2.1, an IPv4-mapped IPv6 address (::ffff:0:0/96)"),
        ("::", ":: , the unspecified address"),
        ("::1", "::1, a loopback address (::1/128)"),
        ("ff02::12", "ff02::12, a multicast address (ff00::/8)"),
    ];
    for (address, why) in cases {
        let why = why.replace(":: ,", "::,");
        let got = validate_pools(&[pool("p", address)]);
        let p = only(&got);
        assert!(p.is_error(), "{p}");
        assert_eq!((p.object.as_str(), p.field.as_str(), p.value.as_str()), ("Eip/p", "spec.address", address));
        assert!(p.message.starts_with(&format!("contains {why}")), "{address}: {p}");
        assert!(
            p.message
                .ends_with("which no host can hold as a VIP; the allocator gives out no new addresses from this Eip"),
            "{p}"
        );
    }
    for fine in ["192.0.2.1", "223.255.255.255", "240.0.0.1", "169.255.0.0", "fec0::1", "2001:db8::/32", "::2"] {
        assert_eq!(validate_pools(&[pool("p", fine)]), [], "{fine}");
    }
}

#[test]
fn network_and_broadcast_of_an_ipv4_cidr_are_a_warning_saying_they_are_handed_out() {
    let got = validate_pools(&[pool("p", "192.0.2.0/24")]);
    let p = only(&got);
    assert!(!p.is_error());
    assert_eq!((p.field.as_str(), p.value.as_str()), ("spec.address", "192.0.2.0/24"));
    assert_eq!(
        p.message,
        "the CIDR includes its network address 192.0.2.0 and broadcast address 192.0.2.255, and they are handed out \
         like the others (as upstream OpenELB does); some hosts and routers do not reach them, so write a range such \
         as 192.0.2.1-192.0.2.254 to leave them out"
    );
    assert!(only(&validate_pools(&[pool("p", "192.0.2.4/30")])).message.contains("192.0.2.5-192.0.2.6"));
    for quiet in ["192.0.2.0/31", "192.0.2.7/32", "192.0.2.0-192.0.2.255", "2001:db8::/64"] {
        assert_eq!(validate_pools(&[pool("p", quiet)]), [], "{quiet}");
    }
}

#[test]
fn pool_name_must_be_a_dns1123_subdomain() {
    for good in ["a", "eip-1", "eip.pool.1", "0a", &"a".repeat(253)] {
        assert_eq!(validate_pools(&[pool(good, "10.0.0.1")]), [], "{good}");
    }
    for bad in ["", "Eip", "-a", "a-", "a..b", ".a", "a_b", "a b", &"a".repeat(254)] {
        let got = validate_pools(&[pool(bad, "10.0.0.1")]);
        let p = only(&got);
        assert_eq!((p.field.as_str(), p.value.as_str()), ("metadata.name", bad));
        assert!(p.message.starts_with("not a DNS-1123 subdomain"), "{p}");
    }
}

#[test]
fn duplicate_pool_names_are_a_problem() {
    let got = validate_pools(&[pool("a", "10.0.0.1"), pool("a", "10.0.0.2")]);
    let p = only(&got);
    assert_eq!((p.object.as_str(), p.field.as_str()), ("Eip/a", "metadata.name"));
}

#[test]
fn namespaces_must_be_dns1123_labels() {
    let p = Pool {
        namespaces: vec!["default".into(), "kube-system".into(), "Bad".into(), "a.b".into(), "x".repeat(64)],
        ..pool("p", "10.0.0.1")
    };
    let got = validate_pools(&[p]);
    let fields: Vec<&str> = got.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["spec.namespaces[2]", "spec.namespaces[3]", "spec.namespaces[4]"], "{got:#?}");
}

#[test]
fn used_entries_must_be_inside_the_range() {
    let p = with_used(
        pool("p", "10.0.0.0-10.0.0.3"),
        &[("10.0.0.1", "default/a"), ("10.0.0.9", "default/b;ns/c"), ("2001:db8::1", "ns/d"), ("oops", "ns/e")],
    );
    let got = validate_pools(&[p]);
    let fields: Vec<&str> = got.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["status.used[10.0.0.9]", "status.used[2001:db8::1]", "status.used[oops]"], "{got:#?}");
    assert_eq!(got[0].value, "default/b;ns/c");
    assert!(got[0].message.contains("outside the pool's range 10.0.0.0-10.0.0.3; the Service keeps it"), "{}", got[0]);
    assert!(got[2].message.contains("not an IP address"));
}

#[test]
fn problems_come_back_sorted_whatever_the_input_order() {
    let pools = vec![
        pool("z", "bad"),
        l2("b", "10.0.0.0/24", ""),
        pool("a", "10.0.0.5"),
        with_default(pool("c", "10.1.0.0"), "True"),
    ];
    let forward = validate_pools(&pools);
    let mut rev = pools.clone();
    rev.reverse();
    assert_eq!(validate_pools(&rev), forward);
    let mut sorted = forward.clone();
    sorted.sort();
    assert_eq!(forward, sorted);
    assert!(forward.len() >= 4, "{forward:#?}");
}

// ---- updates ----

#[test]
fn update_may_grow_or_shrink_the_range_while_used_addresses_stay_inside() {
    let old = with_used(pool("p", "10.0.0.0/24"), &[("10.0.0.10", "ns/a")]);
    for address in ["10.0.0.0/16", "10.0.0.10", "10.0.0.5-10.0.0.20"] {
        assert_eq!(errors(validate_pool_update(&old, &pool("p", address))), [], "{address}");
    }
}

#[test]
fn update_that_strands_used_addresses_names_them() {
    let used: Vec<(String, String)> = (1..=8).map(|i| (format!("10.0.0.{i}"), format!("ns/s{i}"))).collect();
    let used_refs: Vec<(&str, &str)> = used.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let old = with_used(pool("p", "10.0.0.0/24"), &used_refs);
    let new = with_used(pool("p", "10.0.0.8-10.0.0.20"), &used_refs);
    let got = validate_pool_update(&old, &new);
    let p = only(&got);
    assert_eq!(
        (p.object.as_str(), p.field.as_str(), p.value.as_str()),
        ("Eip/p", "spec.address", "10.0.0.8-10.0.0.20")
    );
    assert!(
        p.message.contains(
            "10.0.0.1 (ns/s1), 10.0.0.2 (ns/s2), 10.0.0.3 (ns/s3), 10.0.0.4 (ns/s4), 10.0.0.5 (ns/s5) and 2 more"
        ),
        "{p}"
    );
    assert!(!p.message.contains("10.0.0.6"), "{p}");
}

#[test]
fn stranded_addresses_are_listed_in_numeric_order() {
    let old = with_used(pool("p", "10.0.0.0/24"), &[("10.0.0.10", "ns/b"), ("10.0.0.9", "ns/a")]);
    let got = validate_pool_update(&old, &pool("p", "10.0.1.0-10.0.1.255"));
    assert!(only(&got).message.contains("10.0.0.9 (ns/a), 10.0.0.10 (ns/b);"), "{got:#?}");
}

#[test]
fn update_to_another_family_strands_everything() {
    let old = with_used(pool("p", "10.0.0.0/24"), &[("10.0.0.1", "ns/a")]);
    let got = validate_pool_update(&old, &pool("p", "2001:db8::/64"));
    assert!(only(&got).message.contains("10.0.0.1 (ns/a)"));
}

#[test]
fn update_checks_the_new_pool_like_create() {
    let old = pool("p", "10.0.0.0/24");
    let new = Pool { interface: None, ..pool("p", "10.0.0.0/24-") };
    let got = validate_pool_update(&old, &new);
    let fields: Vec<&str> = got.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["spec.address", "spec.interface"], "{got:#?}");
}

// ---- services ----

/// A pool the Service tests request from (a range: a CIDR would add the network/broadcast warning).
const P: &str = "10.0.0.0-10.0.0.255";

#[test]
fn service_with_valid_requests_has_no_problems() {
    let pools = vec![pool("bgp", P), l2("l2", "192.0.2.91-192.0.2.100", "eth0")];
    let services = vec![
        lb("a", &[(ANNOTATION_EIP_IP, "10.0.0.7")]),
        lb("b", &[(ANNOTATION_EIP_POOL, "l2"), (ANNOTATION_PROTOCOL, "layer2"), (ANNOTATION_EIP_IP, "192.0.2.95")]),
        Service { load_balancer_ip: Some("192.0.2.91".into()), ..lb("c", &[]) },
        Service { load_balancer_class: Some(LOAD_BALANCER_CLASS.into()), ..svc("d", &[]) },
        Service { external_traffic_policy: TrafficPolicy::Local, ..lb("e", &[]) },
        Service { load_balancer_ip: Some(String::new()), ..lb("f", &[]) },
    ];
    assert_eq!(announced(validate_cluster(&cluster(pools, services))), []);
}

#[test]
fn requested_ip_must_be_an_ip() {
    let c = cluster(vec![pool("p", P)], vec![Service { load_balancer_ip: Some("10.0.0.x".into()), ..lb("a", &[]) }]);
    let got = validate_cluster(&c);
    let p = only(&got);
    assert_eq!(
        (p.object.as_str(), p.field.as_str(), p.value.as_str()),
        ("Service/default/a", "spec.loadBalancerIP", "10.0.0.x")
    );
}

#[test]
fn requested_ip_no_host_can_hold_is_an_error_naming_field_and_value() {
    let c = cluster(
        vec![pool("p", P)],
        vec![
            Service { load_balancer_ip: Some("127.0.0.1".into()), ..lb("a", &[]) },
            lb("b", &[(ANNOTATION_EIP_IP, "ff02::12")]),
        ],
    );
    let got = validate_cluster(&c);
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(
        got[0].to_string(),
        "Service/default/a: spec.loadBalancerIP=\"127.0.0.1\": 127.0.0.1 is a loopback address (127.0.0.0/8), which \
         no host can hold as a VIP"
    );
    assert_eq!((got[1].field.as_str(), got[1].value.as_str()), (ann(ANNOTATION_EIP_IP).as_str(), "ff02::12"));
}

#[test]
fn service_port_out_of_range_is_an_error() {
    let mut s = lb("a", &[]);
    s.ports = vec![
        ServicePort { port: 80, protocol: "TCP".into(), ..Default::default() },
        ServicePort { port: 0, ..Default::default() },
        ServicePort { port: 70000, ..Default::default() },
    ];
    let got = validate_cluster(&cluster(vec![pool("p", P)], vec![s]));
    let fields: Vec<(&str, &str)> = got.iter().map(|p| (p.field.as_str(), p.value.as_str())).collect();
    assert_eq!(fields, [("spec.ports[1].port", "0"), ("spec.ports[2].port", "70000")]);
}

#[test]
fn requested_ip_must_be_inside_some_pool() {
    let c = cluster(vec![pool("p", P)], vec![lb("a", &[(ANNOTATION_EIP_IP, "10.0.1.1")])]);
    let got = validate_cluster(&c);
    let p = only(&got);
    assert_eq!((p.field.as_str(), p.value.as_str()), (ann(ANNOTATION_EIP_IP).as_str(), "10.0.1.1"));
    assert!(p.message.contains("not inside any Eip"));
}

#[test]
fn ip_annotation_wins_over_load_balancer_ip() {
    let s = Service { load_balancer_ip: Some("garbage".into()), ..lb("a", &[(ANNOTATION_EIP_IP, "10.0.0.1")]) };
    assert_eq!(validate_cluster(&cluster(vec![pool("p", P)], vec![s])), []);
}

#[test]
fn requested_ip_must_be_inside_the_pinned_pool() {
    let pools = vec![pool("p", P), pool("q", "10.0.1.0-10.0.1.255")];
    let c = cluster(pools, vec![lb("a", &[(ANNOTATION_EIP_POOL, "q"), (ANNOTATION_EIP_IP, "10.0.0.1")])]);
    let got = validate_cluster(&c);
    assert!(only(&got).message.contains("outside the pinned Eip/q"), "{got:#?}");
}

#[test]
fn pin_must_name_an_existing_pool() {
    let c = cluster(vec![pool("p", P)], vec![lb("a", &[(ANNOTATION_EIP_POOL, "nope")])]);
    let got = validate_cluster(&c);
    let p = only(&got);
    assert_eq!((p.field.as_str(), p.value.as_str()), (ann(ANNOTATION_EIP_POOL).as_str(), "nope"));
    assert!(p.message.contains("no Eip named \"nope\""));
}

#[test]
fn protocol_annotation_must_be_known() {
    let c = cluster(vec![pool("p", P)], vec![lb("a", &[(ANNOTATION_PROTOCOL, "arp")])]);
    let got = validate_cluster(&c);
    assert_eq!(only(&got).field, ann(ANNOTATION_PROTOCOL));
}

#[test]
fn protocol_annotation_must_match_the_pinned_pool() {
    let bgp = Pool { protocol: Protocol::Bgp, ..pool("p", P) };
    let c = cluster(vec![bgp], vec![lb("a", &[(ANNOTATION_EIP_POOL, "p"), (ANNOTATION_PROTOCOL, "vip")])]);
    let got = announced(validate_cluster(&c));
    let p = only(&got);
    assert_eq!((p.field.as_str(), p.value.as_str()), (ann(ANNOTATION_PROTOCOL).as_str(), "vip"));
    assert!(p.message.contains("Eip/p has protocol bgp, not vip"), "{p}");
}

#[test]
fn lb_annotation_on_a_non_load_balancer_service_has_no_effect() {
    let s = Service { type_: "ClusterIP".into(), ..lb("a", &[(ANNOTATION_EIP_POOL, "missing")]) };
    let got = validate_cluster(&cluster(vec![], vec![s]));
    let p = only(&got);
    assert_eq!((p.field.as_str(), p.value.as_str()), (ann(ANNOTATION_LB).as_str(), "openelb"));
    assert!(p.message.starts_with("annotation has no effect"), "{p}");
}

#[test]
fn lb_annotation_value_must_be_exactly_openelb() {
    let got = validate_cluster(&cluster(vec![], vec![svc("a", &[(ANNOTATION_LB, "porter")])]));
    assert_eq!(only(&got).value, "porter");
}

#[test]
fn services_not_for_openelb_are_not_checked() {
    let s = Service { load_balancer_ip: Some("junk".into()), ..svc("a", &[(ANNOTATION_EIP_POOL, "missing")]) };
    assert_eq!(validate_cluster(&cluster(vec![], vec![s])), []);
}

#[test]
fn cluster_report_includes_pool_problems() {
    let got = validate_cluster(&cluster(vec![pool("p", "bad")], vec![]));
    assert_eq!(only(&got).object, "Eip/p");
}

// ---- properties ----

fn v4_range() -> impl Strategy<Value = String> {
    (any::<u8>(), any::<u8>(), 0u8..=32).prop_map(|(a, b, len)| format!("10.{a}.{b}.0/{}", len.max(8)))
}

fn any_range() -> impl Strategy<Value = String> {
    prop_oneof![
        v4_range(),
        (any::<u16>(), 16u8..=128).prop_map(|(w, len)| format!("2001:db8:{w:x}::/{len}")),
        (any::<u32>(), any::<u32>()).prop_map(|(a, b)| {
            let (a, b) = (a.min(b), a.max(b));
            format!("{}-{}", std::net::Ipv4Addr::from(a), std::net::Ipv4Addr::from(b))
        }),
        any::<u128>().prop_map(|a| std::net::Ipv6Addr::from(a).to_string()),
    ]
}

proptest! {
    #[test]
    fn validate_pools_never_panics(
        address in ".{0,40}",
        iface in prop::option::of(".{0,24}"),
        name in ".{0,20}",
        used in prop::collection::btree_map(".{0,20}", ".{0,10}", 0..4),
        default in prop::option::of("(?i)true|.{0,5}"),
        proto in prop_oneof![Just(Protocol::Bgp), Just(Protocol::Layer2), Just(Protocol::Vip)],
    ) {
        let p = Pool { name, address, interface: iface, used, default_annotation: default, protocol: proto, ..Pool::default() };
        let other = pool("other", "10.0.0.0/8");
        let _ = validate_pools(&[p.clone(), other.clone()]);
        let _ = validate_pool_update(&other, &p);
        let _ = validate_pool_update(&p, &other);
        let s = lb("s", &[(ANNOTATION_EIP_POOL, &p.name), (ANNOTATION_EIP_IP, &p.address)]);
        let _ = validate_cluster(&cluster(vec![p, other], vec![s]));
    }

    #[test]
    fn overlap_is_symmetric_and_family_aware(a in any_range(), b in any_range()) {
        let ab = validate_pools(&[pool("a", &a), pool("b", &b)]);
        let ba = validate_pools(&[pool("b", &b), pool("a", &a)]);
        prop_assert_eq!(&ab, &ba);
        let (ra, rb) = (AddrRange::parse(&a).unwrap(), AddrRange::parse(&b).unwrap());
        let overlap: Vec<&Problem> = ab.iter().filter(|p| p.message.starts_with("overlaps")).collect();
        if ra.family() != rb.family() {
            prop_assert!(overlap.is_empty(), "{:#?}", overlap);
        }
        prop_assert_eq!(overlap.len(), if ra.overlaps(&rb) { 2 } else { 0 });
        // Overlap is the only cross-pool rule these pools can break: the rest is what each has on its own.
        let alone = validate_pools(&[pool("a", &a)]).len() + validate_pools(&[pool("b", &b)]).len();
        prop_assert_eq!(ab.len(), overlap.len() + alone, "{:#?}", ab);
    }

    #[test]
    fn overlap_matches_an_address_in_common(a in 0u32..64, al in 0u32..16, b in 0u32..64, bl in 0u32..16) {
        let ip = |n: u32| std::net::Ipv4Addr::from(0x0a00_0000 + n);
        let pa = pool("a", &format!("{}-{}", ip(a), ip(a + al)));
        let pb = pool("b", &format!("{}-{}", ip(b), ip(b + bl)));
        let common = (a..=a + al).any(|x| (b..=b + bl).contains(&x));
        prop_assert_eq!(!validate_pools(&[pa, pb]).is_empty(), common);
    }
}

#[test]
fn used_map_order_does_not_matter() {
    // BTreeMap keys sort as strings; stranded addresses must still sort numerically.
    let mut used = BTreeMap::new();
    used.insert("10.0.0.100".to_string(), "ns/x".to_string());
    used.insert("10.0.0.20".to_string(), "ns/y".to_string());
    let old = Pool { used, ..pool("p", "10.0.0.0/24") };
    let got = validate_pool_update(&old, &pool("p", "10.0.1.0-10.0.1.255"));
    assert!(only(&got).message.contains("10.0.0.20 (ns/y), 10.0.0.100 (ns/x);"), "{got:#?}");
}

#[test]
fn a_plan_that_must_merge_groups_is_a_warning_naming_the_vips() {
    use openelb_core::model::Node;
    use openelb_core::validate;
    use openelb_core::vrrp::plan::PlanConfig;
    // 20 Cluster Services on 8 nodes: up to 8 first preferences, 8 groups, in a range of 2 VRIDs.
    let mut c = cluster(vec![pool("p", "192.0.2.10-192.0.2.40")], Vec::new());
    c.pools[0].protocol = Protocol::Vip;
    c.nodes = (0..8).map(|i| Node { name: format!("n{i}"), ready: true, ..Node::default() }).collect();
    for i in 0..20 {
        let mut s = svc(&format!("s{i}"), &[(ANNOTATION_LB, "openelb")]);
        s.external_traffic_policy = TrafficPolicy::Cluster;
        c.services.push(s);
    }
    assert_eq!(validate::vrrp_plan(&c, &PlanConfig::default()), [], "8 groups fit the default range");
    let narrow = PlanConfig { vrids: 100..=101, ..PlanConfig::default() };
    let got = validate::vrrp_plan(&c, &narrow);
    assert!(!got.is_empty());
    assert!(got.iter().all(|p| !p.is_error() && p.object == "VRRP plan"), "{got:?}");
    let merged = got.iter().find(|p| p.field == "merged").expect("a merge");
    assert!(merged.value.contains("192.0.2."), "names the VIPs: {merged:?}");
    assert!(merged.message.contains("VRID range full"), "{merged:?}");
}
