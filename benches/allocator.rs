//! Allocator against upstream's address walk, on pools prefilled lowest-first (one contiguous block: the
//! worst case for the walk, and what a pool looks like after steady allocation).
//!
//! Each benchmark keeps the live count constant: it allocates and releases the same address. The baseline
//! does what upstream's `assignIPFromEip` does: walk offsets from 0, format each address as a string and look
//! it up in the `used` map (`map[string]string` there, `HashMap<String, String>` here) until one is missing.
//!
//! `services/*` is the IPAM over whole clusters of 1k, 10k and 20k Services: `allocate` is what
//! `openelb-cli allocate` does after reading the YAML (every Service from scratch, each decision applied to the
//! cluster, a second pass that moves nothing), `restart` a controller rebuilding from the written status and
//! keeping everything, `reconcile_one` and `pool_status` one call on an IPAM that holds N Services (the
//! controller keeps one IPAM across reconciles, so neither may grow with N).
//! Run: `cargo bench --bench allocator`.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use openelb::core::addr::AddrRange;
use openelb::core::alloc::PoolAllocator;
use openelb::core::ipam::Ipam;
use openelb::core::{
    ANNOTATION_EIP_IP, ANNOTATION_EIP_POOL, ANNOTATION_LB, Cluster, IpFamily, Pool, Protocol, Service, ServiceKey,
    ServicePort,
};
use openelb::k8s::offline;

const POOLS: [(&str, &str); 3] = [("ipv4_16", "10.0.0.0/16"), ("ipv4_8", "10.0.0.0/8"), ("ipv6_64", "2001:db8::/64")];
const LIVE: [u32; 2] = [10_000, 100_000];
/// A /16 holds 65,536 addresses: its "100k" case is capped here, leaving room for the benchmarked allocation.
const V4_16_CAP: u32 = 60_000;

fn prefilled(range: AddrRange, live: u32) -> PoolAllocator {
    let mut pool = PoolAllocator::new(range);
    for h in 0..live {
        let _ = pool.allocate_any(h);
    }
    pool
}

/// Upstream's `used` map for the same allocations: address string → `namespace/name`.
fn upstream_used(range: AddrRange, live: u32) -> HashMap<String, String> {
    (0..live)
        .filter_map(|o| range.nth(u128::from(o)))
        .enumerate()
        .map(|(i, ip)| (ip.to_string(), format!("default/svc-{i}")))
        .collect()
}

/// Upstream's lowest-free walk: O(live) string formatting and hashing per allocation.
fn upstream_allocate(range: &AddrRange, used: &mut HashMap<String, String>, key: &str) -> Option<String> {
    let mut offset = 0u128;
    while let Some(ip) = range.nth(offset) {
        let s = ip.to_string();
        if !used.contains_key(&s) {
            used.insert(s.clone(), key.to_string());
            return Some(s);
        }
        offset += 1;
    }
    None
}

fn bench(c: &mut Criterion) {
    for (name, cidr) in POOLS {
        let Ok(range) = AddrRange::parse(cidr) else { continue };
        let mut group = c.benchmark_group(format!("alloc/{name}"));
        for live in LIVE {
            let live = if range.size() < 100_000 { live.min(V4_16_CAP) } else { live };
            let mut pool = prefilled(range, live);

            group.bench_with_input(BenchmarkId::new("allocate_any", live), &live, |b, _| {
                b.iter(|| {
                    if let Ok(ip) = pool.allocate_any(black_box(u32::MAX)) {
                        pool.release(black_box(ip), u32::MAX);
                    }
                })
            });

            // A free address near the end of the allocated block.
            let hole: Option<IpAddr> = range.nth(u128::from(live - 10));
            if let Some(hole) = hole {
                pool.release(hole, live - 10);
                group.bench_with_input(BenchmarkId::new("allocate_specific", live), &live, |b, _| {
                    b.iter(|| {
                        if pool.allocate_specific(black_box(hole), u32::MAX, false).is_ok() {
                            pool.release(hole, u32::MAX);
                        }
                    })
                });
            }

            let mut used = upstream_used(range, live);
            group.bench_with_input(BenchmarkId::new("upstream_walk", live), &live, |b, _| {
                b.iter(|| {
                    if let Some(ip) = upstream_allocate(&range, &mut used, black_box("default/bench")) {
                        used.remove(&ip);
                    }
                })
            });
        }
        group.finish();
    }
}

const SERVICES: [usize; 3] = [1_000, 10_000, 20_000];

/// N Services over three pools: a namespace-bound IPv4 pool that fills up (its namespace's later Services
/// fail, listing every pool), a pool 1 % of the Services are pinned to, and a default IPv6 /104 the rest draw
/// from, 1 % of them sharing requested addresses.
fn cluster(n: usize) -> Cluster {
    let pool = |name: &str, address: &str| Pool {
        name: name.into(),
        address: address.into(),
        protocol: Protocol::Vip,
        ..Default::default()
    };
    let mut bound = pool("v4-ns", "192.0.2.0-192.0.2.127");
    bound.namespaces = vec!["ns-1".into()];
    let mut default = pool("v6-default", "2001:db8::/104");
    default.is_default = true;
    default.default_annotation = Some("true".into());
    let pools = vec![bound, pool("v4-pinned", "198.51.100.0/24"), default];
    let services = (0..n)
        .map(|i| {
            let mut s = Service {
                namespace: format!("ns-{}", i % 20),
                name: format!("svc-{i}"),
                type_: "LoadBalancer".into(),
                ip_families: vec![IpFamily::V6],
                ports: vec![ServicePort {
                    port: 8000 + (i % 1000) as i32,
                    protocol: "TCP".into(),
                    ..Default::default()
                }],
                ..Default::default()
            };
            s.annotations.insert(ANNOTATION_LB.into(), "openelb".into());
            s.selector.insert("app".into(), format!("svc-{i}"));
            if i % 100 == 7 {
                s.annotations.insert(ANNOTATION_EIP_POOL.into(), "v4-pinned".into());
                s.ip_families = vec![IpFamily::V4];
            } else if i % 100 == 13 {
                s.annotations.insert(ANNOTATION_EIP_IP.into(), format!("2001:db8::ff:{:x}", (i / 100) % 16));
            } else if i % 20 == 1 {
                s.ip_families = vec![IpFamily::V4];
            }
            s
        })
        .collect();
    Cluster { pools, services, ..Default::default() }
}

/// The cluster after `openelb-cli allocate`, with the IPAM that allocated it.
fn allocated(n: usize) -> (Cluster, Ipam) {
    let mut cluster = cluster(n);
    let mut ipam = Ipam::new(&cluster.pools);
    offline::allocate(&mut ipam, &mut cluster);
    (cluster, ipam)
}

fn bench_services(c: &mut Criterion) {
    let mut group = c.benchmark_group("services");
    for n in SERVICES {
        let fresh = cluster(n);
        group.bench_with_input(BenchmarkId::new("allocate", n), &n, |b, _| {
            b.iter_batched(
                || fresh.clone(),
                |mut cluster| {
                    let mut ipam = Ipam::new(&cluster.pools);
                    offline::allocate(&mut ipam, &mut cluster)
                },
                BatchSize::LargeInput,
            )
        });

        let (done, mut ipam) = allocated(n);
        group.bench_with_input(BenchmarkId::new("restart", n), &n, |b, _| {
            b.iter(|| {
                let mut ipam = Ipam::new(black_box(&done.pools));
                ipam.reconcile_all(&done.services, &done.namespaces)
            })
        });

        // A newcomer drawing from the default pool, released again so the IPAM stays at N.
        let mut newcomer = cluster(1).services.remove(0);
        newcomer.name = "newcomer".into();
        newcomer.namespace = "ns-0".into();
        let key = ServiceKey::new("ns-0", "newcomer");
        group.bench_with_input(BenchmarkId::new("reconcile_one", n), &n, |b, _| {
            b.iter(|| {
                let out = ipam.reconcile(black_box(&newcomer), None);
                ipam.release_service(&key);
                out
            })
        });
        // The small pinned pool, beside N Services held through the default one.
        group.bench_with_input(BenchmarkId::new("pool_status", n), &n, |b, _| {
            b.iter(|| ipam.pool_status(black_box("v4-pinned")))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = bench, bench_services
}
criterion_main!(benches);
