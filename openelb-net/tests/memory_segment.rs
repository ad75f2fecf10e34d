//! The in-memory segment: delivery timing and order, loss, partitions, heal and client neighbour semantics.

use std::net::IpAddr;
use std::time::Duration;

use openelb_core::vrrp::Advert;
use openelb_core::vrrp::consts::{MULTICAST_V4, TTL};
use openelb_net::memory::{Loss, Message, Segment, SegmentError};
use openelb_net::ops::Incoming;
use openelb_net::wire::{self, DecodeFailure, MacAddr, vrrp};
use proptest::prelude::*;

const NODES: [&str; 3] = ["n1", "n2", "n3"];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn mac(i: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, i])
}

fn segment(delay_ms: u64) -> Segment {
    let mut seg = Segment::new(ms(delay_ms), 7);
    for (i, n) in NODES.iter().enumerate() {
        seg.attach_node(n, mac(i as u8 + 1), ip(&format!("192.0.2.{}", 11 + i))).unwrap();
    }
    seg.attach_client("cl").unwrap();
    seg
}

fn advert(priority: u8) -> Message {
    Message::Advert {
        src: ip("192.0.2.11"),
        advert: Advert { vrid: 1, priority, max_advert_int: 10, addresses: vec![ip("192.0.2.91")] },
    }
}

#[test]
fn advert_reaches_every_other_node_after_the_delay() {
    let mut seg = segment(2);
    assert_eq!(seg.send("n1", advert(100), &[], ms(10)).unwrap(), 2);
    assert_eq!(seg.next_delivery_time(), Some(ms(12)));
    assert!(seg.poll(ms(11)).is_empty(), "nothing arrives before the delay");
    let got = seg.poll(ms(12));
    let to: Vec<_> = got.iter().map(|d| d.to.as_str()).collect();
    assert_eq!(to, vec!["n2", "n3"]);
    assert!(got.iter().all(|d| d.at == ms(12) && d.from == "n1"));
    let Some(Incoming::Advert(rx)) = got[0].incoming() else { panic!("{:?}", got[0]) };
    assert_eq!((rx.ttl, rx.src, rx.advert.priority), (TTL, ip("192.0.2.11"), 100));
    assert_eq!(seg.next_delivery_time(), None);
}

/// Adverts sent as bytes go through the Linux receiver's codec on delivery, so drops carry their reason.
#[test]
fn raw_adverts_are_decoded_on_delivery_and_drops_say_why() {
    let mut seg = segment(1);
    let (src, dst) = (ip("192.0.2.11"), IpAddr::V4(MULTICAST_V4));
    let Message::Advert { advert, .. } = advert(100) else { unreachable!() };
    let bytes = wire::encode(&advert, vrrp::Context::new(src, dst), &[]).unwrap();
    let mut corrupt = bytes.clone();
    corrupt[vrrp::field::PRIORITY] = 101;
    let cases = vec![
        (TTL, bytes.clone(), Incoming::Advert(openelb_core::vrrp::Received { src, dst, ttl: TTL, advert })),
        (254, bytes.clone(), Incoming::Dropped(DecodeFailure::BadTtl)),
        (TTL, corrupt, Incoming::Dropped(DecodeFailure::BadChecksum)),
        (TTL, bytes[..7].to_vec(), Incoming::Dropped(DecodeFailure::Truncated)),
    ];
    for (ttl, message, want) in cases {
        seg.send("n1", Message::Raw { src, dst, ttl, message }, &[ip("192.0.2.12")], ms(0)).unwrap();
        let got = seg.poll(ms(5));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].incoming(), Some(want));
    }
}

#[test]
fn unicast_advert_reaches_only_the_named_peers() {
    let mut seg = segment(1);
    seg.send("n1", advert(100), &[ip("192.0.2.13")], ms(0)).unwrap();
    let got = seg.poll(ms(5));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to, "n3");
}

#[test]
fn down_node_neither_sends_nor_receives_in_flight_messages() {
    let mut seg = segment(5);
    seg.send("n1", advert(100), &[], ms(0)).unwrap();
    seg.set_link("n2", false).unwrap();
    assert_eq!(seg.send("n2", advert(50), &[], ms(1)).unwrap(), 0);
    let to: Vec<_> = seg.poll(ms(10)).into_iter().map(|d| d.to).collect();
    assert_eq!(to, vec!["n3"]);
}

#[test]
fn loss_pattern_is_deterministic() {
    let mut seg = segment(1);
    seg.set_loss(Loss::Pattern(vec![true, false]));
    assert_eq!(seg.send("n1", advert(100), &[], ms(0)).unwrap(), 1, "n2 lost, n3 delivered");
    assert_eq!(seg.poll(ms(1))[0].to, "n3");
}

#[test]
fn random_loss_is_reproducible_from_the_seed() {
    let run = |seed| {
        let mut seg = Segment::new(ms(1), seed);
        seg.attach_node("a", mac(1), ip("192.0.2.1")).unwrap();
        seg.attach_node("b", mac(2), ip("192.0.2.2")).unwrap();
        seg.set_loss(Loss::Random(0.5));
        (0..200).map(|t| seg.send("a", advert(1), &[], ms(t)).unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(run(1), run(1));
    let delivered: usize = run(1).iter().sum();
    assert!((60..140).contains(&delivered), "about half of 200 delivered, got {delivered}");
}

#[test]
fn partition_set_blocks_in_flight_messages_and_heal_restores() {
    let mut seg = segment(5);
    seg.send("n1", advert(100), &[], ms(0)).unwrap();
    seg.partition_sets(&["n1"], &["n2", "n3"]);
    assert!(seg.poll(ms(10)).is_empty(), "partition applies to messages already in flight");
    seg.heal_all();
    seg.send("n1", advert(100), &[], ms(10)).unwrap();
    assert_eq!(seg.poll(ms(20)).len(), 2);
}

#[test]
fn announcement_updates_only_existing_client_entries() {
    let mut seg = segment(1);
    let vip = ip("192.0.2.91");
    seg.add_vip("n1", vip).unwrap();
    seg.send("n1", Message::Announce { ip: vip, mac: mac(1) }, &[], ms(0)).unwrap();
    seg.poll(ms(5));
    assert_eq!(seg.neighbour("cl", vip), None, "arp_accept=0: an announcement never creates an entry");

    assert_eq!(seg.resolve("cl", vip, ms(5)).unwrap(), Some(mac(1)));
    assert_eq!(seg.reaches("cl", vip).as_deref(), Some("n1"));

    // Takeover: n2 adds the VIP and announces; the existing entry flips.
    seg.remove_vip("n1", vip).unwrap();
    seg.add_vip("n2", vip).unwrap();
    assert_eq!(seg.reaches("cl", vip), None, "between the move and the announcement the client sees an outage");
    seg.send("n2", Message::Announce { ip: vip, mac: mac(2) }, &[], ms(6)).unwrap();
    seg.poll(ms(7));
    assert_eq!(seg.neighbour("cl", vip), Some(mac(2)));
    assert_eq!(seg.reaches("cl", vip).as_deref(), Some("n2"));
    assert!(seg.conflicts().is_empty());
}

#[test]
fn two_holders_answering_a_resolve_is_a_conflict() {
    let mut seg = segment(1);
    let vip = ip("192.0.2.91");
    seg.add_vip("n1", vip).unwrap();
    seg.add_vip("n3", vip).unwrap();
    seg.resolve("cl", vip, ms(3)).unwrap();
    assert_eq!(seg.conflicts().len(), 1);
    assert_eq!(seg.conflicts()[0].holders, vec!["n1".to_string(), "n3".to_string()]);
    // A crashed holder (link down) does not answer, so no conflict.
    seg.clear_conflicts();
    seg.set_link("n1", false).unwrap();
    assert_eq!(seg.resolve("cl", vip, ms(4)).unwrap(), Some(mac(3)));
    assert!(seg.conflicts().is_empty());
}

#[test]
fn unknown_names_are_errors_that_name_them() {
    let mut seg = segment(1);
    assert_eq!(seg.send("zz", advert(1), &[], ms(0)), Err(SegmentError::NoSuchNode("zz".into())));
    assert_eq!(seg.attach_node("n1", mac(9), ip("192.0.2.99")), Err(SegmentError::Duplicate("n1".into())));
    let err = seg.resolve("nobody", ip("192.0.2.91"), ms(0)).unwrap_err().to_string();
    assert!(err.contains("\"nobody\""), "{err}");
}

proptest! {
    /// Deliveries come out in time order, each exactly `delay` after its send, and nothing is lost or duplicated.
    #[test]
    fn deliveries_in_time_order(delay in 0u64..50, sends in proptest::collection::vec((0usize..3, 0u64..1000), 1..40)) {
        let mut seg = segment(delay);
        let mut expected = 0;
        let mut sends = sends;
        sends.sort_by_key(|(_, t)| *t);
        for (from, t) in &sends {
            expected += seg.send(NODES[*from], advert(*t as u8), &[], ms(*t)).unwrap();
        }
        prop_assert_eq!(expected, sends.len() * 2);
        let mut got = Vec::new();
        while let Some(at) = seg.next_delivery_time() {
            let batch = seg.poll(at);
            prop_assert!(!batch.is_empty());
            prop_assert!(batch.iter().all(|d| d.at == at));
            got.extend(batch);
        }
        prop_assert_eq!(got.len(), expected);
        prop_assert!(got.windows(2).all(|w| w[0].at <= w[1].at));
        let mut want: Vec<Duration> = sends.iter().flat_map(|(_, t)| [ms(t + delay); 2]).collect();
        want.sort();
        let ats: Vec<Duration> = got.iter().map(|d| d.at).collect();
        prop_assert_eq!(ats, want);
    }

    /// A partition between two sides blocks delivery in both directions; heal restores it.
    #[test]
    fn partitions_block_both_ways_and_heal_restores(side in proptest::collection::vec(any::<bool>(), 3)) {
        let mut seg = segment(1);
        let a: Vec<&str> = NODES.iter().zip(&side).filter(|(_, s)| **s).map(|(n, _)| *n).collect();
        let b: Vec<&str> = NODES.iter().zip(&side).filter(|(_, s)| !**s).map(|(n, _)| *n).collect();
        seg.partition_sets(&a, &b);
        for from in NODES {
            seg.send(from, advert(1), &[], ms(0)).unwrap();
        }
        for d in seg.poll(ms(10)) {
            let same_side = a.contains(&d.from.as_str()) == a.contains(&d.to.as_str());
            prop_assert!(same_side, "{} heard {} across the partition", d.to, d.from);
        }
        seg.heal_all();
        for from in NODES {
            seg.send(from, advert(1), &[], ms(20)).unwrap();
        }
        prop_assert_eq!(seg.poll(ms(30)).len(), 6);
    }

    /// arp_accept=0: announcements only change entries that exist; resolve creates them from a reachable holder.
    #[test]
    fn neighbour_entries_follow_arp_accept_zero(ops in proptest::collection::vec((0usize..3, any::<bool>()), 1..30)) {
        let mut seg = segment(0);
        let vip = ip("192.0.2.91");
        let mut model: Option<MacAddr> = None;
        for (t, (node, resolve)) in ops.iter().enumerate() {
            let now = ms(t as u64);
            for n in NODES {
                seg.remove_vip(n, vip).unwrap();
            }
            seg.add_vip(NODES[*node], vip).unwrap();
            let m = seg.mac_of(NODES[*node]).unwrap();
            if *resolve {
                seg.resolve("cl", vip, now).unwrap();
                model = Some(m);
            } else {
                seg.send(NODES[*node], Message::Announce { ip: vip, mac: m }, &[], now).unwrap();
                seg.poll(now);
                if model.is_some() {
                    model = Some(m);
                }
            }
            prop_assert_eq!(seg.neighbour("cl", vip), model);
        }
        prop_assert!(seg.conflicts().is_empty());
    }
}
