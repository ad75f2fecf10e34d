//! `openelb-cli lab kube-bench`: what a user waits for, measured against a real kube-apiserver, each figure
//! beside what the apiserver alone does for the same work in the same run (the `ratio ...` lines).
//!
//! 1. [`lab`]: in the namespace lab (apiserver in master1's namespace, controller, a speaker per worker),
//!    Services created one at a time, measured to their address in status and to the client's first ARP
//!    reply, quiet and while a burst of filler Services is assigned; beside a bare status patch's round trip.
//! 2. [`scale`]: on a loopback apiserver per N, a burst of N Services until every one has an address, beside a
//!    bare client making the same N status writes; for N = `--restart-services`, a controller restart beside
//!    a bare LIST ([`restart`]).
//! 3. RSS of the controller after each phase and of the speakers.

mod bare;
mod burst;
mod client;
mod lab;
mod loopback;
mod restart;
mod scale;
mod stats;
mod verified;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};

pub use client::{ClientPlan, client};
pub use lab::{BENCH_POOL, apply_bench_pool, check_count, create_to_arp};
pub use stats::percentile;

use crate::probe::proc_usage;
use crate::speaker_program::find_openelb_speaker;

pub struct KubeBenchInput {
    pub paths: Vec<PathBuf>,
    /// Services measured one at a time in the lab (0: skip the lab part).
    pub services: usize,
    /// N of the controller-restart measurement (0: skip it).
    pub restart_services: usize,
    /// Further burst sizes on the loopback apiserver.
    pub bursts: Vec<usize>,
    /// Requests in flight at once in every burst and bare run.
    pub concurrency: usize,
    /// Filler Services assigned while the lab measures one at a time (0: skip that).
    pub filler_services: usize,
    /// Status patches of the bare round-trip measurement.
    pub bare_patches: usize,
    /// How long a burst may take before it is reported unfinished.
    pub burst_timeout: Duration,
    pub script: PathBuf,
    pub cli_exe: PathBuf,
}

impl KubeBenchInput {
    fn crd_dir(&self) -> PathBuf {
        let root = self.script.parent().and_then(std::path::Path::parent).unwrap_or(std::path::Path::new("."));
        root.join("deploy/crds")
    }
}

pub fn run(input: &KubeBenchInput) -> Result<()> {
    // Every figure is relative to the same run's floor, but a busy machine still shifts both: say how busy.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        println!(
            "machine: {cores} cores, load average {} at the start",
            load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        );
    }
    if input.services > 0 {
        lab::lab_part(input)?;
    }
    scale::run(input)
}

fn controller_exe() -> Result<PathBuf> {
    let speaker = find_openelb_speaker().ok_or_else(|| anyhow!("openelb-speaker not found: cargo build --bins"))?;
    let c = speaker.with_file_name("openelb-controller");
    if !c.is_file() {
        bail!("{} not found: cargo build --workspace --bins", c.display());
    }
    Ok(c)
}

/// `RSS: controller <MB> MB <when>`.
fn rss_line(pid: Option<u32>, when: &str) -> String {
    match pid.and_then(proc_usage) {
        Some((kb, _)) => format!("RSS: controller {:.1} MB {when}", kb as f64 / 1024.0),
        None => format!("RSS: controller unknown {when} (not running)"),
    }
}
