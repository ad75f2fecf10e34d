//! Cost of turning a cluster into VRRP groups, which every speaker redoes on each relevant change: the VIP list
//! (`announce::targets`: addresses, sharers, candidates, rendezvous order) and the plan (`vrrp::plan::plan`:
//! groups, merges to fit the VRID range, VRIDs). Three shapes:
//! - `20k_vips`: 20,000 `Cluster` Services on 12 nodes, one address each;
//! - `300_nodes_1000_vips`: 1,000 `Cluster` Services on 300 nodes (more first preferences than VRIDs);
//! - `256_nodes_5k_vips`: 5,000 `Cluster` Services on 256 nodes (the size the planner took 424 ms for);
//! - `12_nodes_300_local`: 300 `Local` Services whose endpoints sit on random 2-3 node subsets of 12 nodes
//!   (more candidate sets than VRIDs).
//!
//! Run: `cargo bench --bench vrrp_plan`. The addresses come from 10.0.0.0/16; nothing touches a network.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use openelb::core::announce::{self, VipTarget};
use openelb::core::ipam::Ipam;
use openelb::core::vrrp::plan::{self, Plan, PlanConfig, PlanContext, VipInput};
use openelb::core::{Cluster, Endpoint, Node, Pool, Protocol, Service, ServiceKey, TrafficPolicy};

/// Deterministic xorshift: the same "random" endpoints on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `services` Services of `policy` on `nodes` Ready nodes, each already holding one address of a VIP pool (as
/// the speaker sees them: `status.used` filled in), Local ones with endpoints on 2-3 random nodes.
fn cluster(nodes: usize, services: u32, policy: TrafficPolicy) -> Cluster {
    let nodes: Vec<Node> = (0..nodes)
        .map(|i| Node {
            name: format!("node-{i:03}"),
            ready: true,
            internal_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 1, (i / 250) as u8, (i % 250) as u8 + 1))),
            ..Node::default()
        })
        .collect();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut used = BTreeMap::new();
    let mut svcs = Vec::new();
    let mut endpoints = BTreeMap::new();
    for i in 0..services {
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + i);
        let svc = Service {
            namespace: "bench".into(),
            name: format!("svc-{i:05}"),
            type_: "LoadBalancer".into(),
            external_traffic_policy: policy,
            ..Service::default()
        };
        used.insert(ip.to_string(), format!("bench/svc-{i:05}"));
        if policy == TrafficPolicy::Local {
            let k = 2 + (rng.next() % 2) as usize;
            let mut eps: Vec<Endpoint> = Vec::new();
            while eps.len() < k {
                let n = &nodes[(rng.next() % nodes.len() as u64) as usize].name;
                if !eps.iter().any(|e| e.node_name.as_ref() == Some(n)) {
                    eps.push(Endpoint { node_name: Some(n.clone()), ready: true, ..Endpoint::default() });
                }
            }
            endpoints.insert(ServiceKey::new("bench", format!("svc-{i:05}")), eps);
        }
        svcs.push(svc);
    }
    let pool =
        Pool { name: "vip".into(), address: "10.0.0.0/16".into(), protocol: Protocol::Vip, used, ..Pool::default() };
    Cluster { pools: vec![pool], services: svcs, nodes, endpoints, ..Cluster::default() }
}

fn inputs(targets: &[VipTarget]) -> Vec<VipInput> {
    targets
        .iter()
        .map(|t| VipInput { vip: t.vip, interface: "eth0".into(), candidates: t.preference.clone() })
        .collect()
}

fn run_plan(inputs: &[VipInput]) -> Plan {
    plan::plan(inputs, &PlanConfig::default(), &PlanContext::default())
}

fn bench(c: &mut Criterion) {
    let shapes = [
        ("20k_vips", cluster(12, 20_000, TrafficPolicy::Cluster)),
        ("300_nodes_1000_vips", cluster(300, 1000, TrafficPolicy::Cluster)),
        ("256_nodes_5k_vips", cluster(256, 5000, TrafficPolicy::Cluster)),
        ("12_nodes_300_local", cluster(12, 300, TrafficPolicy::Local)),
    ];
    for (name, cluster) in shapes {
        let ipam = Ipam::new(&cluster.pools);
        let targets = announce::targets(&cluster, &ipam);
        assert_eq!(targets.len(), cluster.services.len(), "{name}: every Service has its address");
        let vips = inputs(&targets);
        let p = run_plan(&vips);
        let placed: usize = p.groups.iter().map(|g| g.vips.len()).sum();
        assert_eq!(placed, vips.len(), "{name}: every VIP is placed");

        let mut g = c.benchmark_group(format!("vrrp_plan/{name}"));
        g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
        g.bench_function("announce", |b| b.iter(|| announce::targets(black_box(&cluster), black_box(&ipam)).len()));
        g.bench_function("plan", |b| b.iter(|| run_plan(black_box(&vips)).groups.len()));
        g.bench_function("announce_and_plan", |b| {
            b.iter(|| run_plan(&inputs(&announce::targets(black_box(&cluster), black_box(&ipam)))).groups.len())
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
