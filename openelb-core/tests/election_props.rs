//! Properties of the candidate sets and the rendezvous order (docs/election.md#candidates,
//! docs/election.md#rendezvous-order).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use openelb_core::election::{assign, candidates, candidates_union, holder, rank, weight};
use openelb_core::{Endpoint, LABEL_EXCLUDE_LB, Node, Service, TrafficPolicy};
use proptest::prelude::*;

fn node(name: &str, ready: bool) -> Node {
    Node { name: name.to_string(), ready, ..Node::default() }
}

fn excluded(name: &str, value: &str) -> Node {
    let mut n = node(name, true);
    n.labels.insert(LABEL_EXCLUDE_LB.to_string(), value.to_string());
    n
}

fn endpoint(node: &str, ready: bool) -> Endpoint {
    Endpoint { node_name: Some(node.to_string()), ready, ..Endpoint::default() }
}

fn service(policy: TrafficPolicy) -> Service {
    Service {
        namespace: "default".into(),
        name: "web".into(),
        type_: "LoadBalancer".into(),
        external_traffic_policy: policy,
        ..Service::default()
    }
}

fn v4(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(n))
}

// ---- candidates: one table test per rule ----

#[test]
fn cluster_policy_takes_every_ready_node_sorted() {
    let nodes = [node("worker-b", true), node("master1", true), node("worker-a", true)];
    let got = candidates(&service(TrafficPolicy::Cluster), &nodes, &[]);
    assert_eq!(got, ["master1", "worker-a", "worker-b"]);
}

#[test]
fn cluster_policy_ignores_endpoints() {
    let nodes = [node("a", true), node("b", true)];
    let got = candidates(&service(TrafficPolicy::Cluster), &nodes, &[endpoint("a", true)]);
    assert_eq!(got, ["a", "b"]);
}

#[test]
fn not_ready_node_is_no_candidate() {
    let nodes = [node("a", true), node("b", false)];
    assert_eq!(candidates(&service(TrafficPolicy::Cluster), &nodes, &[]), ["a"]);
    let eps = [endpoint("a", true), endpoint("b", true)];
    assert_eq!(candidates(&service(TrafficPolicy::Local), &nodes, &eps), ["a"]);
}

#[test]
fn excluded_node_is_no_candidate_whatever_the_label_value() {
    let nodes = [node("a", true), excluded("b", ""), excluded("c", "false"), excluded("d", "true")];
    assert_eq!(candidates(&service(TrafficPolicy::Cluster), &nodes, &[]), ["a"]);
    let eps = [endpoint("a", true), endpoint("b", true), endpoint("c", true), endpoint("d", true)];
    assert_eq!(candidates(&service(TrafficPolicy::Local), &nodes, &eps), ["a"]);
}

#[test]
fn local_policy_takes_nodes_with_a_ready_endpoint() {
    let nodes = [node("a", true), node("b", true), node("c", true), node("d", true)];
    let eps = [
        endpoint("c", true),
        endpoint("a", false),
        endpoint("b", true),
        endpoint("c", true),
        Endpoint { node_name: None, ready: true, ..Endpoint::default() },
        endpoint("not-a-node", true),
    ];
    assert_eq!(candidates(&service(TrafficPolicy::Local), &nodes, &eps), ["b", "c"]);
}

#[test]
fn local_policy_without_endpoints_has_no_candidates() {
    let nodes = [node("a", true), node("b", true)];
    let got = candidates(&service(TrafficPolicy::Local), &nodes, &[]);
    assert!(got.is_empty());
    assert_eq!(holder(&v4(1), &got), None);
}

#[test]
fn no_ready_nodes_means_no_candidates_and_no_holder() {
    let nodes = [node("a", false), excluded("b", "")];
    let got = candidates(&service(TrafficPolicy::Cluster), &nodes, &[]);
    assert!(got.is_empty());
    assert_eq!(holder(&v4(1), &got), None);
    assert!(rank(&v4(1), &got).is_empty());
}

#[test]
fn duplicate_node_objects_are_listed_once() {
    let nodes = [node("a", true), node("a", true)];
    assert_eq!(candidates(&service(TrafficPolicy::Cluster), &nodes, &[]), ["a"]);
}

#[test]
fn union_of_shared_vip_candidates_is_sorted_and_deduplicated() {
    let sets = [vec!["c", "a"], vec!["b", "a"], vec![]];
    assert_eq!(candidates_union(&sets), ["a", "b", "c"]);
    assert!(candidates_union::<Vec<&str>>(&[]).is_empty());
}

// ---- weight encoding ----

#[test]
fn weight_is_pinned() {
    // If this fails the hash input changed: every VIP in a cluster would move during a rolling upgrade.
    let vip4: IpAddr = "192.0.2.91".parse().unwrap();
    let vip6: IpAddr = "2001:db8::5b".parse().unwrap();
    assert_eq!(weight("worker-p001", &vip4), PINNED_V4);
    assert_eq!(weight("worker-p001", &vip6), PINNED_V6);
}

const PINNED_V4: u64 = 16_110_758_802_450_349_619;
const PINNED_V6: u64 = 467_666_766_373_630_544;

#[test]
fn weight_hashes_the_documented_bytes() {
    let vip: IpAddr = "192.0.2.91".parse().unwrap();
    let bytes = b"worker-p001\x00\x04\xc0\x00\x02\x5b";
    assert_eq!(weight("worker-p001", &vip), xxhash_rust_reference(bytes));
    let vip6: IpAddr = "2001:db8::5b".parse().unwrap();
    let mut bytes6 = b"worker-p001\x00\x06".to_vec();
    bytes6.extend_from_slice(&"2001:db8::5b".parse::<Ipv6Addr>().unwrap().octets());
    assert_eq!(weight("worker-p001", &vip6), xxhash_rust_reference(&bytes6));
}

/// The crate under test hashes with XXH3-64 seed 0; this re-derives it through the one-shot API.
fn xxhash_rust_reference(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

#[test]
fn reference_hash_is_xxh3_64_seed_0() {
    // Published XXH3-64 value of the empty input (xxHash's sanity test), so the pin above is portable.
    assert_eq!(xxhash_rust_reference(b""), 0x2D06_8005_38D3_94C2);
}

#[test]
fn weight_tells_ipv4_from_v4_mapped_ipv6() {
    let a = v4(0xc000_025b);
    let mapped = IpAddr::V6(Ipv4Addr::from(0xc000_025b).to_ipv6_mapped());
    assert_ne!(weight("n", &a), weight("n", &mapped));
}

#[test]
fn weight_of_an_overlong_name_does_not_panic() {
    let long = "x".repeat(10_000);
    let vip: IpAddr = "2001:db8::1".parse().unwrap();
    assert_eq!(weight(&long, &vip), weight(&long, &vip));
    let mut bytes = long.into_bytes();
    bytes.extend_from_slice(&[0, 6]);
    bytes.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    assert_eq!(weight(&"x".repeat(10_000), &vip), xxhash_rust_reference(&bytes));
}

#[test]
fn rank_orders_by_weight_then_name() {
    let vip = v4(42);
    let cands = ["n1", "n2", "n3", "n4", "n5"];
    let ranked = rank(&vip, &cands);
    let weights: Vec<u64> = ranked.iter().map(|n| weight(n, &vip)).collect();
    assert!(weights.windows(2).all(|w| w[0] >= w[1]), "{weights:?}");
    assert_eq!(holder(&vip, &cands), ranked.first().copied());
}

#[test]
fn distribution_is_balanced_over_ten_nodes() {
    let names: Vec<String> = (0..10).map(|i| format!("node-{i}")).collect();
    let cands: Vec<&str> = names.iter().map(String::as_str).collect();
    let base = u32::from(Ipv4Addr::new(198, 51, 100, 0));
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for i in 0..10_000 {
        *count.entry(holder(&v4(base + i), &cands).unwrap()).or_default() += 1;
    }
    assert_eq!(count.len(), 10, "{count:?}");
    for (n, c) in &count {
        assert!((700..=1300).contains(c), "{n} holds {c} of 10000 VIPs: {count:?}");
    }
}

// ---- properties ----

fn node_names() -> impl Strategy<Value = Vec<String>> {
    prop::collection::btree_set("[a-z][a-z0-9-]{0,12}", 1..12).prop_map(|s| s.into_iter().collect())
}

fn vips() -> impl Strategy<Value = Vec<IpAddr>> {
    prop::collection::vec(
        prop_oneof![any::<u32>().prop_map(v4), any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(n)))],
        1..60,
    )
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

proptest! {
    #[test]
    fn rank_does_not_depend_on_candidate_order(
        (names, shuffled) in node_names().prop_flat_map(|n| (Just(n.clone()), Just(n).prop_shuffle())),
        vip in any::<u32>().prop_map(v4),
    ) {
        let a = rank(&vip, &refs(&names));
        let b = rank(&vip, &refs(&shuffled));
        prop_assert_eq!(&a, &b);
        // Duplicates in the input do not change the order either.
        let mut doubled = refs(&shuffled);
        doubled.extend(refs(&names));
        prop_assert_eq!(&rank(&vip, &doubled), &a);
        prop_assert_eq!(holder(&vip, &refs(&shuffled)), a.first().copied());
        prop_assert_eq!(holder(&vip, &doubled), a.first().copied());
    }

    #[test]
    fn rank_is_a_permutation_of_the_candidates(names in node_names(), vip in any::<u32>().prop_map(v4)) {
        let ranked = rank(&vip, &refs(&names));
        let got: BTreeSet<&str> = ranked.iter().copied().collect();
        prop_assert_eq!(ranked.len(), names.len());
        prop_assert_eq!(got, refs(&names).into_iter().collect::<BTreeSet<_>>());
    }

    #[test]
    fn holder_is_always_a_candidate(names in node_names(), vips in vips()) {
        let cands = refs(&names);
        for vip in &vips {
            let h = holder(vip, &cands);
            prop_assert!(h.is_some_and(|h| cands.contains(&h)));
        }
    }

    #[test]
    fn removing_a_node_moves_only_the_vips_it_held(names in node_names(), vips in vips(), pick in any::<prop::sample::Index>()) {
        let all = refs(&names);
        let gone = all[pick.index(all.len())];
        let rest: Vec<&str> = all.iter().copied().filter(|n| *n != gone).collect();
        let before = assign(vips.iter().map(|v| (*v, all.clone())));
        let after = assign(vips.iter().map(|v| (*v, rest.clone())));
        for (vip, was) in &before {
            let now = after[vip];
            if *was == Some(gone) {
                prop_assert_ne!(now, Some(gone));
                prop_assert_eq!(now.is_none(), rest.is_empty());
                // It falls to the runner-up of the old order.
                prop_assert_eq!(now, rank(vip, &all).get(1).copied());
            } else {
                prop_assert_eq!(now, *was, "{} moved off {:?} though {} left", vip, was, gone);
            }
        }
    }

    #[test]
    fn adding_a_node_moves_vips_only_to_it(names in node_names(), vips in vips(), newcomer in "[a-z][a-z0-9-]{0,12}") {
        prop_assume!(!names.contains(&newcomer));
        let before_set = refs(&names);
        let mut after_set = before_set.clone();
        after_set.push(&newcomer);
        let before = assign(vips.iter().map(|v| (*v, before_set.clone())));
        let after = assign(vips.iter().map(|v| (*v, after_set.clone())));
        for (vip, was) in &before {
            let now = after[vip];
            prop_assert!(now == *was || now == Some(newcomer.as_str()), "{} moved from {:?} to {:?}", vip, was, now);
        }
    }

    #[test]
    fn assign_unions_the_candidates_of_sharers(a in node_names(), b in node_names(), vip in any::<u32>().prop_map(v4)) {
        let (ra, rb) = (refs(&a), refs(&b));
        let split = assign([(vip, ra.clone()), (vip, rb.clone())]);
        let swapped = assign([(vip, rb.clone()), (vip, ra.clone())]);
        let union = candidates_union(&[ra, rb]);
        prop_assert_eq!(split.len(), 1);
        prop_assert_eq!(split[&vip], holder(&vip, &union));
        prop_assert_eq!(swapped[&vip], holder(&vip, &union));
    }
}

#[test]
fn assign_gives_none_to_vips_without_candidates() {
    let empty: Vec<&str> = Vec::new();
    let got = assign([(v4(1), empty), (v4(2), vec!["a"])]);
    assert_eq!(got[&v4(1)], None);
    assert_eq!(got[&v4(2)], Some("a"));
}
