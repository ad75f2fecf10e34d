//! Cost of electing a holder for every VIP of a large cluster: 10k IPv4 VIPs over 100 Ready nodes, `Cluster`
//! policy. Every speaker recomputes this on each node or endpoint change, so it bounds the reaction time.
//!
//! Run: `cargo bench --bench election`. Criterion's per-iteration time is one full election; the throughput
//! line (elements/s) gives the per-VIP figure.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use openelb::core::election::{assign, candidates, holder, rank};
use openelb::core::{Node, Service, TrafficPolicy};

const VIPS: u32 = 10_000;
const NODES: usize = 100;

fn cluster_nodes() -> Vec<Node> {
    (0..NODES).map(|i| Node { name: format!("worker-{i:03}"), ready: true, ..Node::default() }).collect()
}

/// Consecutive addresses from 198.51.100.0 on (TEST-NET-2 and beyond): neighbouring VIPs are the worst case
/// for a weak hash.
fn vips() -> Vec<IpAddr> {
    let base = u32::from(Ipv4Addr::new(198, 51, 100, 0));
    (0..VIPS).map(|i| IpAddr::V4(Ipv4Addr::from(base + i))).collect()
}

fn election(c: &mut Criterion) {
    let nodes = cluster_nodes();
    let svc =
        Service { type_: "LoadBalancer".into(), external_traffic_policy: TrafficPolicy::Cluster, ..Service::default() };
    let cands = candidates(&svc, &nodes, &[]);
    assert_eq!(cands.len(), NODES);
    let vips = vips();

    let mut g = c.benchmark_group("election_10k_vips_100_nodes");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(u64::from(VIPS)));
    g.bench_function("holder", |b| {
        b.iter(|| {
            let mut held = 0usize;
            for vip in &vips {
                held += usize::from(holder(black_box(vip), black_box(&cands)).is_some());
            }
            held
        })
    });
    g.bench_function("rank", |b| {
        b.iter(|| vips.iter().map(|vip| rank(black_box(vip), black_box(&cands)).len()).sum::<usize>())
    });
    g.bench_function("assign", |b| b.iter(|| assign(vips.iter().map(|v| (*v, black_box(&cands[..])))).len()));
    g.finish();
}

criterion_group!(benches, election);
criterion_main!(benches);
