//! `lab cluster`: the seed's walkthrough in a real cluster, as a user runs it with kubectl, with the time each
//! phase took, the whole lab's memory and, optionally, created -> ARP latencies through real kube-proxy.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use openelb_core::model::TrafficPolicy;

use crate::cluster::Cluster;
use crate::kube_bench;
use crate::layout::Layout;
use crate::topology::LabConfig;

const ROLLOUT: Duration = Duration::from_secs(180);

pub struct ClusterInput {
    /// The seed's directory: cluster.yaml, vip-eip.yaml, vip-openelb.yaml, vip-svc.yaml.
    pub seed: PathBuf,
    /// The checkout: deploy/ and scripts/.
    pub repo: PathBuf,
    pub cli_exe: PathBuf,
    /// Services created one at a time afterwards to measure created -> ARP (0: none).
    pub services: usize,
}

pub fn run(input: &ClusterInput) -> Result<()> {
    kube_bench::check_count(input.services)?;
    let cluster_yaml = std::fs::read_to_string(input.seed.join("cluster.yaml"))
        .with_context(|| format!("{}: cannot read", input.seed.join("cluster.yaml").display()))?;
    let cfg = LabConfig::unique(input.cli_exe.clone());
    let layout = Layout::from_paths(std::slice::from_ref(&input.seed), &cfg.id, Some(TrafficPolicy::Cluster))?;
    let t0 = Instant::now();
    let mut cluster = Cluster::start(layout, &cfg, &input.repo.join("scripts"), &cluster_yaml)?;
    let t = Instant::now();
    cluster.deploy_openelb(&input.repo, ROLLOUT)?;
    cluster.timings.push(("kubectl apply -f deploy/crds/ -f deploy/ until rolled out".into(), t.elapsed()));
    let t = Instant::now();
    cluster.apply_seed(&input.seed, ROLLOUT)?;
    let vip = cluster.wait_service_ip(Duration::from_secs(60))?;
    cluster.lab.wait_holder(None, Duration::from_secs(60))?;
    cluster.timings.push(("the seed applied until the VIP answers".into(), t.elapsed()));
    println!("{}", cluster.step4()?);
    println!("cluster {} (VIP {vip}), up in {:.1} s:", cluster.lab.layout.id, t0.elapsed().as_secs_f64());
    for (phase, took) in &cluster.timings {
        println!("  {phase:<62} {:6.1} s", took.as_secs_f64());
    }
    let memory = cluster.memory();
    let total: f64 = memory.iter().map(|m| m.1).sum();
    let procs: usize = memory.iter().map(|m| m.2).sum();
    println!("memory of the whole lab: {total:.0} MB RSS over {procs} processes (control plane, nodes, containers):");
    for (name, mb, count) in &memory {
        println!("  {name:<24} {mb:7.1} MB  ({count} process{})", if *count == 1 { "" } else { "es" });
    }
    if input.services > 0 {
        kube_bench::apply_bench_pool(&cluster.kubectl)?;
        let host = cluster.lab.layout.nodes.first().ok_or_else(|| anyhow!("the lab has no node"))?;
        kube_bench::create_to_arp(
            &host.ns,
            cluster.kubectl.kubeconfig(),
            &cluster.lab.layout.client_ns,
            &input.cli_exe,
            input.services,
            "real cluster: kube-proxy iptables, speakers in Pods",
        )?;
    }
    let errors = cluster.stop();
    drop(cluster);
    println!("cluster lab {} removed", cfg.id);
    if errors.is_empty() { Ok(()) } else { Err(anyhow!("cleanup: {}", errors.join("; "))) }
}
