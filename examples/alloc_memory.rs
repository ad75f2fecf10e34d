//! Heap bytes the address allocator keeps per live allocation, measured with a counting global allocator.
//! Run: `cargo run --release --example alloc_memory`. Target: under 64 bytes per allocation at 100k.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use openelb::core::addr::AddrRange;
use openelb::core::alloc::PoolAllocator;

/// Counts bytes currently allocated, so a difference of two readings is what a structure keeps.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; only a counter is updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// `count` allocations lowest-first: one contiguous block.
fn contiguous(range: AddrRange, count: u32) -> (usize, u128) {
    let before = live();
    let mut pool = PoolAllocator::new(range);
    for h in 0..count {
        if pool.allocate_any(h).is_err() {
            break;
        }
    }
    (live() - before, pool.used())
}

/// `count` allocations lowest-first, then every other one released: the worst case for run bookkeeping.
fn scattered(range: AddrRange, count: u32) -> (usize, u128) {
    let before = live();
    let mut pool = PoolAllocator::new(range);
    let mut ips: Vec<IpAddr> = Vec::with_capacity(count as usize);
    for h in 0..count {
        match pool.allocate_any(h) {
            Ok(ip) => ips.push(ip),
            Err(_) => break,
        }
    }
    for (h, ip) in ips.iter().enumerate().step_by(2) {
        pool.release(*ip, h as u32);
    }
    let vec_bytes = ips.capacity() * std::mem::size_of::<IpAddr>();
    (live() - before - vec_bytes, pool.used())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("{:<16} {:<40} {:>8} {:>12} {:>10}", "pool", "pattern", "live", "heap bytes", "bytes/live");
    for pool in ["10.0.0.0/16", "10.0.0.0/8", "2001:db8::/64", "2001:db8::/48"] {
        let range = AddrRange::parse(pool)?;
        let cases = [
            ("100k allocate_any (capped at pool size)", contiguous(range, 100_000)),
            ("200k allocate_any, release every other", scattered(range, 200_000)),
        ];
        for (pattern, (bytes, used)) in cases {
            let per = bytes as f64 / used.max(1) as f64;
            println!("{pool:<16} {pattern:<40} {used:>8} {bytes:>12} {per:>10.1}");
        }
    }
    Ok(())
}
