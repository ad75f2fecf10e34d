use std::collections::BTreeMap;
use std::sync::Arc;

use openelb_core::model::{ANNOTATION_LB, IpFamily, Service};
use openelb_k8s::crd::{EipSpec, EipStatus};
use proptest::prelude::*;

use super::*;

const RANGE: &str = "192.0.2.1-192.0.2.8";

fn eip(version: u64, used: &[(&str, &str)]) -> Arc<Eip> {
    let mut e = Eip::new("pool", EipSpec { address: RANGE.into(), ..Default::default() });
    e.metadata.resource_version = Some(version.to_string());
    e.metadata.generation = Some(1);
    e.status = Some(EipStatus {
        used: used.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
        ..Default::default()
    });
    Arc::new(e)
}

fn service(name: &str, ingress: Option<&str>, deleting: bool) -> Service {
    Service {
        namespace: "ns".into(),
        name: name.into(),
        annotations: BTreeMap::from([(ANNOTATION_LB.to_string(), "openelb".to_string())]),
        type_: "LoadBalancer".into(),
        ip_families: vec![IpFamily::V4],
        deleting,
        ingress: ingress.map(str::to_string).into_iter().collect(),
        ..Default::default()
    }
}

fn following(eips: &[Arc<Eip>]) -> Ledger {
    let mut ledger = Ledger::default();
    ledger.refresh(eips).unwrap();
    ledger
}

fn now() -> Time {
    eip_status::now()
}

/// The server's answer to a write of `due`: the object with a new version.
fn stored(due: Eip, version: u64) -> Arc<Eip> {
    let mut e = due;
    e.metadata.resource_version = Some(version.to_string());
    Arc::new(e)
}

#[test]
fn one_write_carries_every_change_decided_before_it() {
    let mut ledger = following(&[eip(10, &[])]);
    let (_, a) = ledger.decide(&service("a", None, false), None);
    let (_, b) = ledger.decide(&service("b", None, false), None);
    assert_eq!((a.len(), b.len()), (1, 1));
    assert_eq!(ledger.state(&a[0]), TicketState::Pending);
    let (due, seq) = ledger.due("pool", &now()).unwrap();
    assert_eq!(due.metadata.resource_version.as_deref(), Some("10"), "guarded by the known version");
    assert_eq!(due.status.as_ref().unwrap().used.len(), 2);
    // Decided while the write is in flight: not carried by it.
    let (_, c) = ledger.decide(&service("c", None, false), None);
    ledger.written("pool", seq, stored(due, 11));
    assert_eq!((ledger.state(&a[0]), ledger.state(&b[0])), (TicketState::Written, TicketState::Written));
    assert_eq!(ledger.state(&c[0]), TicketState::Pending);
    let (due, _) = ledger.due("pool", &now()).unwrap();
    assert_eq!(due.metadata.resource_version.as_deref(), Some("11"));
    assert_eq!(due.status.as_ref().unwrap().used.len(), 3);
}

#[test]
fn keeping_an_address_changes_no_eip() {
    let mut ledger = following(&[eip(10, &[("192.0.2.1", "ns/a")])]);
    let (outcome, tickets) = ledger.decide(&service("a", Some("192.0.2.1"), false), None);
    assert!(matches!(outcome.change, openelb_core::ipam::Change::Kept { .. }), "{outcome:?}");
    assert!(tickets.is_empty());
}

#[test]
fn our_own_write_seen_again_in_the_cache_changes_nothing_and_an_older_copy_is_ignored() {
    let mut ledger = following(&[eip(10, &[])]);
    let (_, t) = ledger.decide(&service("a", None, false), None);
    let (due, seq) = ledger.due("pool", &now()).unwrap();
    let ours = stored(due, 11);
    ledger.written("pool", seq, ours.clone());
    assert_eq!(ledger.refresh(&[ours]).unwrap(), Refreshed::default());
    assert_eq!(ledger.refresh(&[eip(10, &[])]).unwrap(), Refreshed::default(), "the cache lags: nothing reloaded");
    assert_eq!(ledger.state(&t[0]), TicketState::Written);
    assert!(ledger.pool_status("pool").unwrap().used.contains_key("192.0.2.1"));
}

#[test]
fn allocations_written_by_someone_else_are_adopted_when_nothing_of_ours_waits() {
    let mut ledger = following(&[eip(10, &[])]);
    let out = ledger.refresh(&[eip(12, &[("192.0.2.1", "ns/theirs")])]).unwrap();
    assert!(out.recheck.is_empty() && out.reshaped.is_empty(), "{out:?}");
    let (outcome, _) = ledger.decide(&service("a", None, false), None);
    assert!(
        matches!(outcome.change, openelb_core::ipam::Change::Assigned { ip, .. } if ip.to_string() == "192.0.2.2"),
        "{outcome:?}"
    );
}

#[test]
fn a_rival_write_while_ours_waits_keeps_our_guard_and_a_reload_loses_our_change() {
    let mut ledger = following(&[eip(10, &[])]);
    let (_, t) = ledger.decide(&service("a", None, false), None);
    ledger.refresh(&[eip(12, &[("192.0.2.1", "ns/theirs")])]).unwrap();
    let (due, _) = ledger.due("pool", &now()).unwrap();
    assert_eq!(due.metadata.resource_version.as_deref(), Some("10"), "the server refuses this write");
    let recheck = ledger.reload(eip(12, &[("192.0.2.1", "ns/theirs")])).unwrap();
    assert_eq!(recheck, vec![ServiceKey::new("ns", "a")]);
    assert_eq!(ledger.state(&t[0]), TicketState::Lost);
    // Decided again: the next address.
    let (outcome, t) = ledger.decide(&service("a", None, false), None);
    assert!(
        matches!(outcome.change, openelb_core::ipam::Change::Assigned { ip, .. } if ip.to_string() == "192.0.2.2"),
        "{outcome:?}"
    );
    assert_eq!(ledger.state(&t[0]), TicketState::Pending);
}

#[test]
fn a_spec_change_keeps_every_allocation_and_a_gone_eip_loses_them() {
    let mut ledger = following(&[eip(10, &[("192.0.2.1", "ns/a")])]);
    let mut grown = Eip::clone(&eip(11, &[("192.0.2.1", "ns/a")]));
    grown.spec.address = "192.0.2.1-192.0.2.20".into();
    grown.metadata.generation = Some(2);
    let out = ledger.refresh(&[Arc::new(grown)]).unwrap();
    assert_eq!(out.reshaped, vec!["pool".to_string()]);
    assert_eq!(ledger.pool_status("pool").unwrap().pool_size, 20);
    assert!(ledger.pool_status("pool").unwrap().used.contains_key("192.0.2.1"));
    let (_, t) = ledger.decide(&service("b", None, false), None);
    let out = ledger.refresh(&[]).unwrap();
    assert_eq!(out.recheck.len(), 2, "{out:?}");
    assert_eq!(ledger.state(&t[0]), TicketState::Lost);
}

#[test]
fn a_cached_service_older_than_our_write_is_stale() {
    let mut ledger = Ledger::default();
    let key = ServiceKey::new("ns", "a");
    assert!(!ledger.is_stale(&key, Some("5")));
    ledger.service_written(&key, Some("7"));
    assert!(ledger.is_stale(&key, Some("5")));
    assert!(!ledger.is_stale(&key, Some("7")) && !ledger.is_stale(&key, Some("9")));
    assert!(!ledger.is_stale(&key, Some("not-a-number")), "unknown versions are never called stale");
    ledger.service_written(&key, None);
    assert!(!ledger.is_stale(&key, Some("5")));
}

/// What happens to the term's ledger, the API server and the other replica.
#[derive(Debug, Clone)]
enum Op {
    /// Service `i` is reconciled (deleting: it gives its address back).
    Decide(usize, bool),
    /// The Eip's due status is written (or refused and reloaded).
    Commit,
    /// Reconciles whose tickets are settled write their Services.
    Finish,
    /// The ledger follows the cache (the server as it is now).
    Sync,
    /// Another replica (a split brain) gives the lowest free address, as the server shows it, to one of its own.
    Rival,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..6usize, any::<bool>()).prop_map(|(i, d)| Op::Decide(i, d)),
        3 => Just(Op::Commit),
        3 => Just(Op::Finish),
        2 => Just(Op::Sync),
        1 => Just(Op::Rival),
    ]
}

proptest! {
    /// Whatever the interleaving of decisions, group commits, lagging caches and a rival writer, no two Services
    /// that want an address ever show the same one, and every address such a Service shows is recorded for it by
    /// the server.
    #[test]
    fn no_address_is_ever_shown_by_two_services(ops in proptest::collection::vec(op(), 1..80)) {
        let mut version = 10u64;
        let mut server = eip(version, &[]);
        let mut ledger = following(std::slice::from_ref(&server));
        // Service name -> the address its status shows.
        let mut shown: BTreeMap<String, String> = BTreeMap::new();
        let mut in_flight: Vec<(String, Option<String>, Vec<Ticket>)> = Vec::new();
        let mut rivals = 0;
        for op in ops {
            match op {
                Op::Decide(i, deleting) => {
                    let name = format!("s{i}");
                    // kube-runtime never reconciles one object twice at once.
                    if in_flight.iter().any(|(n, ..)| *n == name) {
                        continue;
                    }
                    let svc = service(&name, shown.get(&name).map(String::as_str), deleting);
                    let (outcome, tickets) = ledger.decide(&svc, None);
                    if deleting {
                        // Its address is given back Eip first, as it was claimed: from here on it is on its way
                        // out and may show the address until its own write clears it.
                        shown.remove(&name);
                    }
                    let ingress = outcome.patch.and_then(|p| p.ingress.first().cloned());
                    in_flight.push((name, ingress, tickets));
                }
                Op::Commit => {
                    if let Some((due, seq)) = ledger.due("pool", &now()) {
                        if due.metadata.resource_version == server.metadata.resource_version {
                            version += 1;
                            server = stored(due, version);
                            ledger.written("pool", seq, server.clone());
                        } else {
                            ledger.reload(server.clone()).unwrap();
                        }
                    }
                }
                Op::Finish => {
                    in_flight.retain(|(name, ingress, tickets)| {
                        let states: Vec<TicketState> = tickets.iter().map(|t| ledger.state(t)).collect();
                        if states.contains(&TicketState::Pending) {
                            return true;
                        }
                        if !states.contains(&TicketState::Lost) {
                            match ingress {
                                Some(ip) => shown.insert(name.clone(), ip.clone()),
                                None => shown.remove(name),
                            };
                        }
                        false
                    });
                }
                Op::Sync => {
                    ledger.refresh(std::slice::from_ref(&server)).unwrap();
                }
                Op::Rival => {
                    let used = server.status.as_ref().map(|s| s.used.clone()).unwrap_or_default();
                    if let Some(ip) = (1..=8).map(|n| format!("192.0.2.{n}")).find(|ip| !used.contains_key(ip)) {
                        rivals += 1;
                        let name = format!("rival{rivals}");
                        let mut taken = Eip::clone(&server);
                        if let Some(s) = taken.status.as_mut() {
                            s.used.insert(ip.clone(), format!("ns/{name}"));
                        }
                        version += 1;
                        server = stored(taken, version);
                        shown.insert(name, ip);
                    }
                }
            }
            let mut seen = BTreeMap::new();
            for (name, ip) in &shown {
                if let Some(other) = seen.insert(ip.clone(), name.clone()) {
                    prop_assert!(false, "{ip} shown by {other} and {name}");
                }
                let used = server.status.as_ref().map(|s| s.used.clone()).unwrap_or_default();
                prop_assert_eq!(used.get(ip), Some(&format!("ns/{name}")), "{} shows {} the server does not record for it", name, ip);
            }
        }
    }
}
