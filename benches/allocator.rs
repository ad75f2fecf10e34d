//! Allocator against upstream's address walk, on pools prefilled lowest-first (one contiguous block: the
//! worst case for the walk, and what a pool looks like after steady allocation).
//!
//! Each benchmark keeps the live count constant: it allocates and releases the same address. The baseline
//! does what upstream's `assignIPFromEip` does: walk offsets from 0, format each address as a string and look
//! it up in the `used` map (`map[string]string` there, `HashMap<String, String>` here) until one is missing.
//! Run: `cargo bench --bench allocator`.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use openelb::core::addr::AddrRange;
use openelb::core::alloc::PoolAllocator;

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

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
