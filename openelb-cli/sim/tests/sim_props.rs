//! Property: whatever crashes, stops, boots, link failures and partitions happen, once everything heals and a
//! bounded quiet time has passed, every VIP has exactly one holder, it is the live node the VRRP plan prefers,
//! and the client's neighbour entry points at it. No ARP conflict begins once the partitions have healed and
//! the masters have heard each other.
//!
//! Runs the simulator library on generated manifests and scenarios (virtual time: each case takes milliseconds).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use openelb_core::vrrp::state::master_down_interval;
use openelb_k8s::manifest::Manifests;
use openelb_sim::{Loaded, Report, Scenario, Timing};
use proptest::prelude::*;

const GRACE: Duration = Duration::from_secs(2);
const PREEMPT: Duration = Duration::from_secs(1);
/// The simulated client gives up an entry whose MAC stopped answering after 8 s ([`openelb_sim::data_plane::NEIGH_GIVE_UP`]): after
/// a split brain heals, the surviving master sends no new gratuitous ARP, so that is how the client recovers.
const NEIGH_GIVE_UP: Duration = Duration::from_secs(8);

fn quiet_time() -> Duration {
    // Kubernetes notices the last crash, the plan changes and a master is elected, a returning first preference
    // waits out its preempt delay, the client gives up a dead entry; margin of one second.
    let mdi = master_down_interval(1, 10);
    GRACE + mdi + PREEMPT + mdi + NEIGH_GIVE_UP + Duration::from_secs(1)
}

#[derive(Debug, Clone)]
enum Ev {
    Crash(usize),
    Stop(usize),
    Up(usize),
    LinkDown(usize),
    LinkUp(usize),
    /// Nodes in the bitmask (and the client, if set) against everyone else.
    Partition(u8, bool),
    Heal,
}

fn arb_ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        3 => (0usize..4).prop_map(Ev::Crash),
        1 => (0usize..4).prop_map(Ev::Stop),
        3 => (0usize..4).prop_map(Ev::Up),
        1 => (0usize..4).prop_map(Ev::LinkDown),
        1 => (0usize..4).prop_map(Ev::LinkUp),
        2 => (1u8..16, any::<bool>()).prop_map(|(m, c)| Ev::Partition(m, c)),
        1 => Just(Ev::Heal),
    ]
}

fn node(i: usize) -> String {
    format!("node-{i}")
}

fn mac(i: usize) -> String {
    format!("02:00:00:00:01:{i:02x}")
}

fn manifests(nodes: usize, services: usize) -> String {
    let mut s = String::from(
        "apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata: {name: pool}\n\
         spec: {address: 192.0.2.100-192.0.2.120, protocol: vip}\n",
    );
    for i in 0..nodes {
        write!(
            s,
            "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {}\n  annotations: {{lab.openelb.kubesphere.io/mac-address: \"{}\"}}\n\
             status:\n  addresses: [{{type: InternalIP, address: 192.0.2.{}}}]\n  conditions: [{{type: Ready, status: \"True\"}}]\n",
            node(i),
            mac(i),
            10 + i
        )
        .unwrap();
    }
    for k in 0..services {
        write!(
            s,
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{k}\n  namespace: default\n  annotations: {{lb.kubesphere.io/v1alpha1: openelb}}\n\
             spec:\n  type: LoadBalancer\n  ports: [{{port: 80, protocol: TCP}}]\n"
        )
        .unwrap();
    }
    s
}

fn scenario(nodes: usize, events: &[(u64, Ev)]) -> (String, u64) {
    let mut s = String::from("events:\n");
    let mut t = 1000;
    for (gap, ev) in events {
        t += gap;
        let line = match ev {
            Ev::Crash(i) => format!("nodeDown: {}", node(i % nodes)),
            Ev::Stop(i) => format!("nodeStop: {}", node(i % nodes)),
            Ev::Up(i) => format!("nodeUp: {}", node(i % nodes)),
            Ev::LinkDown(i) => format!("linkDown: {}", node(i % nodes)),
            Ev::LinkUp(i) => format!("linkUp: {}", node(i % nodes)),
            Ev::Partition(mask, client) => {
                let mut a: Vec<String> = (0..nodes).filter(|i| mask & (1 << i) != 0).map(node).collect();
                if *client {
                    a.push("client".into());
                }
                if a.is_empty() {
                    a.push("client".into());
                }
                format!("partition: {{a: [{}]}}", a.join(", "))
            }
            Ev::Heal => "heal: all".to_string(),
        };
        writeln!(s, "- at: {t}ms\n  {line}").unwrap();
    }
    writeln!(s, "- at: {t}ms\n  heal: all").unwrap();
    (s, t)
}

fn run(nodes: usize, services: usize, events: &[(u64, Ev)]) -> (Report, u64) {
    let manifests = Manifests::parse_str(Path::new("cluster.yaml"), &manifests(nodes, services)).unwrap();
    let loaded = Loaded::from_manifests(manifests).unwrap();
    let (text, heal_at) = scenario(nodes, events);
    let scenario = Scenario::parse(&text, "scenario.yaml").unwrap();
    let timing = Timing {
        node_grace: Duration::from_secs(2),
        preempt_delay: Duration::from_secs(1),
        settle: quiet_time(),
        ..Timing::default()
    };
    let mut world = loaded.world();
    (openelb_sim::run(&mut world, Some(&scenario), &timing).unwrap(), heal_at)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn one_holder_per_vip_after_the_last_event_and_a_quiet_time(
        nodes in 3usize..=4,
        services in 1usize..=3,
        events in prop::collection::vec((0u64..3000, arb_ev()), 0..10),
    ) {
        let (report, heal_at) = run(nodes, services, &events);
        let last = report.steps.last().unwrap();
        let up: Vec<&str> = last.nodes.iter().filter(|n| n.machine == "up").map(|n| n.name.as_str()).collect();
        prop_assert!(last.partitions.is_empty());
        prop_assert_eq!(last.vips.len(), services);
        for vip in &last.vips {
            // The plan's order among Ready candidates; the live one ranked highest must hold the VIP.
            let expected = vip.priorities.iter().map(|p| p.node.as_str()).find(|n| up.contains(n));
            match expected {
                Some(h) => {
                    prop_assert_eq!(&vip.holders, &vec![h.to_string()], "{:?}", vip);
                    prop_assert_eq!(vip.answering.len(), 1);
                    let i: usize = h.trim_start_matches("node-").parse().unwrap();
                    prop_assert_eq!(
                        vip.ip_neigh.clone().unwrap_or_default(),
                        format!("{} dev eth0 lladdr {} REACHABLE", vip.vip, mac(i)),
                        "{:?}", vip
                    );
                }
                None => prop_assert!(vip.holders.is_empty(), "{:?}", vip),
            }
        }
        // Conflicts belong to partitions. Right after the heal, two masters coexist until the next advert of
        // the higher one (at most one advert interval plus the delivery delay); none begins after that.
        for c in &report.conflicts {
            prop_assert!(c.at_ms <= heal_at as f64 + 100.0 + 0.1, "{:?}", c);
        }
    }
}
