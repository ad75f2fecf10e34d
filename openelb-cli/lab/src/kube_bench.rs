//! `openelb-cli lab kube-bench`: what a user waits for, measured against a real kube-apiserver.
//!
//! 1. In the lab (apiserver in master1's namespace, controller, a speaker per worker): for each of N Services
//!    created one after the other, the time from the create call to the address in `status`, and to the
//!    client's first ARP reply for it (`arping -f`, a request every 5 ms, started before the create). The
//!    measuring process runs inside master1's namespace (`lab kube-bench-client`), next to the apiserver.
//! 2. On a loopback apiserver whose Services are single-stack IPv6 (so thousands of them get documentation
//!    addresses): M Services over 50 Eips, then a controller restart: time to /readyz, time until it has
//!    reconciled every Service once, and how many addresses changed (must be 0) and Eips it rewrote.
//! 3. RSS of the controller and of the speakers.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1 as corev1;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;

use crate::kube::KubeLab;
use crate::kubectl::Kubectl;
use crate::layout::{CLIENT_IP, Layout};
use crate::netns::{self, Sig};
use crate::probe::proc_usage;
use crate::speaker_program::{OpenelbSpeakerCommand, SpeakerProgram, find_openelb_speaker};
use crate::topology::{Lab, LabConfig};
use openelb_core::model::TrafficPolicy;

/// Pool of the create→ARP measurement: on the lab LAN, clear of the nodes, the client and the seed's pool.
pub const BENCH_POOL: &str = "192.0.2.128/26";
const BENCH_POOL_FIRST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 128);
const BENCH_POOL_SIZE: usize = 64;
/// Ports of the loopback apiserver of the restart measurement (clear of the test suite's 16443/23790/23800).
const RESTART_PORTS: (&str, &str, &str) = ("17443", "25790", "25800");
const RESTART_METRICS: &str = "127.0.0.1:18080";

pub struct KubeBenchInput {
    pub paths: Vec<PathBuf>,
    pub services: usize,
    pub restart_services: usize,
    pub script: PathBuf,
    pub cli_exe: PathBuf,
}

/// Percentile by nearest rank.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v.get(rank.min(v.len()) - 1).copied()
}

fn controller_exe() -> Result<PathBuf> {
    let speaker = find_openelb_speaker().ok_or_else(|| anyhow!("openelb-speaker not found: cargo build --bins"))?;
    let c = speaker.with_file_name("openelb-controller");
    if !c.is_file() {
        bail!("{} not found: cargo build --workspace --bins", c.display());
    }
    Ok(c)
}

fn rss_mb(pid: u32) -> Option<f64> {
    proc_usage(pid).map(|(kb, _)| kb as f64 / 1024.0)
}

pub fn run(input: &KubeBenchInput) -> Result<()> {
    if input.services > 0 {
        lab_part(input)?;
    }
    if input.restart_services > 0 {
        restart_part(input)?;
    }
    Ok(())
}

/// Refuses more Services than [`BENCH_POOL`] holds, before anything is built.
pub fn check_count(count: usize) -> Result<()> {
    if count > BENCH_POOL_SIZE {
        bail!("--services {count}: the bench pool {BENCH_POOL} holds {BENCH_POOL_SIZE}");
    }
    Ok(())
}

fn lab_part(input: &KubeBenchInput) -> Result<()> {
    check_count(input.services)?;
    let speaker_bin = find_openelb_speaker().ok_or_else(|| anyhow!("openelb-speaker not found"))?;
    let cfg = LabConfig::unique(input.cli_exe.clone());
    let mut cluster = openelb_k8s::manifest::Manifests::load_paths(&input.paths)
        .and_then(|m| m.to_cluster())
        .context("loading the lab's manifests")?;
    for n in cluster.nodes.iter_mut().filter(|n| n.name == "master1") {
        n.labels.insert(crate::kube::EXCLUDE_LABEL.to_string(), String::new());
    }
    let layout = Layout::from_cluster(cluster, &cfg.id, Some(TrafficPolicy::Cluster))?;
    let host = layout.nodes.first().map(|n| n.name.clone()).ok_or_else(|| anyhow!("the lab has no nodes"))?;
    let workers: Vec<String> = layout.nodes.iter().skip(1).map(|n| n.name.clone()).collect();
    let mut lab = Lab::build(layout, &cfg)?;
    let result = (|| -> Result<()> {
        let mut kube = KubeLab::start(&lab.layout, &lab.dir, &host, &input.script, &controller_exe()?)?;
        let root = input.script.parent().and_then(Path::parent).unwrap_or(Path::new("."));
        kube.install_crds(&root.join("deploy/crds"))?;
        kube.register_nodes(&lab.layout, &[host.as_str()])?;
        kube.start_controller()?;
        kube.wait_for("controller /readyz", Duration::from_secs(60), || kube.controller_ready().then_some(()))?;
        let speaker = SpeakerProgram::Openelb(OpenelbSpeakerCommand {
            binary: speaker_bin,
            kubeconfig: Some(kube.kubeconfig.clone()),
            nodes: Some(workers),
            ..Default::default()
        });
        lab.start_speakers(&speaker)?;
        apply_bench_pool(&kube.kubectl)?;
        let count = create_to_arp(
            &kube.host_ns,
            &kube.kubeconfig,
            &lab.layout.client_ns,
            &input.cli_exe,
            input.services,
            "cluster of 2 speakers",
        )?;
        if let Some(pid) = kube.controller_pid().and_then(rss_mb) {
            println!("RSS: controller {pid:.1} MB");
        }
        for s in lab.speakers() {
            if let Some(mb) = rss_mb(s.pid()) {
                println!("RSS: speaker on {} {mb:.1} MB ({count} VIPs in the cluster)", s.name);
            }
        }
        drop(kube);
        Ok(())
    })();
    let down = lab.teardown();
    result.and(down)
}

/// The Eip the measured Services draw from ([`BENCH_POOL`]).
pub fn apply_bench_pool(kubectl: &Kubectl) -> Result<()> {
    kubectl.apply(&[json!({
        "apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip",
        "metadata": { "name": "bench" },
        "spec": { "address": BENCH_POOL, "protocol": "vip" },
    })])?;
    // Let the speakers sync their caches before the first measured Service.
    std::thread::sleep(Duration::from_secs(3));
    Ok(())
}

/// Creates `count` Services one after the other from inside `host_ns` ([`client`]) and prints the p50/p99 of
/// created -> address in status and created -> the client's ARP resolves it; returns how many got an address.
pub fn create_to_arp(
    host_ns: &str,
    kubeconfig: &Path,
    client_ns: &str,
    cli_exe: &Path,
    count: usize,
    setting: &str,
) -> Result<usize> {
    check_count(count)?;
    let kc = kubeconfig.display().to_string();
    let n = count.to_string();
    let exe = cli_exe.display().to_string();
    let argv = [exe.as_str(), "lab", "kube-bench-client", "--kubeconfig", &kc, "--client-ns", client_ns, "--count", &n];
    let out = netns::exec(host_ns, &argv)?;
    let (mut status, mut arp, mut wrong) = (Vec::new(), Vec::new(), 0usize);
    for line in out.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if let Some(s) = v["status_ms"].as_f64() {
            status.push(s);
        }
        match v["arp_ms"].as_f64() {
            Some(a) => arp.push(a),
            None => wrong += 1,
        }
    }
    println!("Service created -> ... ({} Services, one at a time, {setting}):", status.len());
    for (what, v) in [("address in status", &status), ("client's ARP resolves", &arp)] {
        let (Some(p50), Some(p99), Some(max)) = (percentile(v, 50.0), percentile(v, 99.0), percentile(v, 100.0)) else {
            bail!("no measurement of {what}");
        };
        println!("  {what:<24} p50 {p50:7.1} ms   p99 {p99:7.1} ms   max {max:7.1} ms");
    }
    if wrong > 0 {
        println!("  {wrong} Services never resolved or got an unexpected address (see the client's output)");
    }
    Ok(status.len())
}

/// The measuring side of the lab part, run inside the apiserver's namespace: one JSON line per Service.
pub fn client(kubeconfig: &Path, client_ns: &str, count: usize) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let client = openelb_k8s::client::client(Some(kubeconfig)).await?;
        let api: Api<corev1::Service> = Api::namespaced(client.clone(), "default");
        for i in 0..count {
            let expected = Ipv4Addr::from(u32::from(BENCH_POOL_FIRST) + u32::try_from(i)?);
            let name = format!("bench-{i}");
            let arping = spawn_arping(client_ns, expected)?;
            let svc: corev1::Service = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": { "name": name, "annotations": {
                    "lb.kubesphere.io/v1alpha1": "openelb", "eip.openelb.kubesphere.io/v1alpha2": "bench" } },
                "spec": { "type": "LoadBalancer", "ports": [{ "port": 80, "targetPort": 8080 }] },
            }))?;
            let t0 = Instant::now();
            api.create(&PostParams::default(), &svc).await.with_context(|| format!("creating Service {name}"))?;
            let mut status = None;
            while t0.elapsed() < Duration::from_secs(10) {
                let s = api.get_status(&name).await?;
                if let Some(ip) = openelb_k8s::convert::ingress_ips(&s).first() {
                    status = Some((t0.elapsed(), ip.clone()));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let arp = arping.wait(t0);
            let (status_ms, ip) = match &status {
                Some((d, ip)) => (Some(d.as_secs_f64() * 1000.0), Some(ip.clone())),
                None => (None, None),
            };
            let arp_ms = match (&ip, arp) {
                (Some(ip), Some(d)) if ip.parse::<IpAddr>().ok() == Some(IpAddr::V4(expected)) => {
                    Some(d.as_secs_f64() * 1000.0)
                }
                _ => None,
            };
            println!(
                "{}",
                json!({ "i": i, "ip": ip, "expected": expected.to_string(), "status_ms": status_ms, "arp_ms": arp_ms })
            );
        }
        anyhow::Ok(())
    })
}

/// `lab arp-probe` in the client namespace, a request every 2 ms; its exit time is when the VIP resolved.
struct Arping {
    child: Child,
}

fn spawn_arping(client_ns: &str, vip: Ipv4Addr) -> Result<Arping> {
    let exe = std::env::current_exe().context("cannot find openelb-cli to run the ARP probe")?;
    let vip = vip.to_string();
    let source = CLIENT_IP.to_string();
    let child = Command::new("ip")
        .args(["netns", "exec", client_ns])
        .arg(exe)
        .args(["lab", "arp-probe", "--source", &source, "--target", &vip, "--interval", "2ms", "--timeout", "10s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot run the ARP probe in the client namespace")?;
    // Give it time to open its socket: the first requests must precede the Service.
    std::thread::sleep(Duration::from_millis(50));
    Ok(Arping { child })
}

impl Arping {
    /// Time from `t0` to arping's exit, or `None` if it got no reply.
    fn wait(mut self, t0: Instant) -> Option<Duration> {
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.success().then(|| t0.elapsed()),
                Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                Err(_) => return None,
            }
        }
    }
}

/// A loopback apiserver for the restart measurement; stopped (and its directory removed) on drop.
struct LoopbackApi {
    dir: PathBuf,
    script: PathBuf,
}

impl LoopbackApi {
    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("KAPI_DIR".into(), self.dir.display().to_string()),
            ("KAPI_PORT".into(), RESTART_PORTS.0.into()),
            ("KAPI_ETCD_CLIENT_PORT".into(), RESTART_PORTS.1.into()),
            ("KAPI_ETCD_PEER_PORT".into(), RESTART_PORTS.2.into()),
            ("KAPI_SERVICE_CIDR".into(), "2001:db8:ffff::/108".into()),
            // Every LoadBalancer Service takes a NodePort: the default range holds 2768.
            ("KAPI_NODE_PORT_RANGE".into(), "20000-32767".into()),
        ]
    }

    fn kapi(&self, verb: &str) -> Result<()> {
        let out = Command::new("bash").arg(&self.script).arg(verb).envs(self.env()).output()?;
        if !out.status.success() {
            bail!("scripts/kapi.sh {verb}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
}

impl Drop for LoopbackApi {
    fn drop(&mut self) {
        let _ = self.kapi("stop");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_controller(exe: &Path, kubeconfig: &Path, log: &Path) -> Result<Child> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    Command::new(exe)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--metrics-addr", RESTART_METRICS, "--no-webhook", "--lease-namespace", "kube-system"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start openelb-controller")
}

fn http_get(path: &str) -> Option<String> {
    let out =
        Command::new("curl").args(["-sf", "--max-time", "1", &format!("http://{RESTART_METRICS}{path}")]).output();
    out.ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Sum of a metric's samples (all label sets) in Prometheus text.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn restart_part(input: &KubeBenchInput) -> Result<()> {
    let exe = controller_exe()?;
    let dir = std::env::temp_dir().join(format!("openelb-kube-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let api = LoopbackApi { dir: dir.clone(), script: input.script.clone() };
    api.kapi("start")?;
    let kc = api.kubeconfig();
    let root = input.script.parent().and_then(Path::parent).unwrap_or(Path::new("."));
    let crd = root.join("deploy/crds");
    Kubectl::new(&kc).install_crd(&crd)?;
    let n = input.restart_services;
    let pools = 50usize;
    let per_pool = n.div_ceil(pools);
    let log = dir.join("controller.log");
    let mut controller = start_controller(&exe, &kc, &log)?;
    let result = (|| -> Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let client = rt.block_on(openelb_k8s::client::client(Some(&kc)))?;
        rt.block_on(create_many(&client, n, pools, per_pool))?;
        println!("controller restart with {n} Services over {pools} Eips (IPv6 single-stack apiserver):");
        let t0 = Instant::now();
        let assigned = rt.block_on(wait_assigned(&client, n, Duration::from_secs(1800)))?;
        println!("  first controller assigned all {n} in {:.1} s", t0.elapsed().as_secs_f64());
        if let Some(mb) = rss_mb(controller.id()) {
            println!("  RSS: controller {mb:.1} MB with {n} Services");
        }
        // Quiet first: the Eip reconciles that follow the last allocations must be done before the snapshot.
        let mut versions_before = rt.block_on(eip_versions(&client))?;
        for _ in 0..30 {
            std::thread::sleep(Duration::from_secs(2));
            let now = rt.block_on(eip_versions(&client))?;
            if now == versions_before {
                break;
            }
            versions_before = now;
        }
        netns::stop_child(&mut controller, Sig::Term, Duration::from_secs(10));
        let t0 = Instant::now();
        controller = start_controller(&exe, &kc, &log)?;
        let mut ready_at = None;
        let mut done_at = None;
        while t0.elapsed() < Duration::from_secs(600) && done_at.is_none() {
            if ready_at.is_none() && http_get("/readyz").is_some() {
                ready_at = Some(t0.elapsed());
            }
            if let Some(m) = http_get("/metrics")
                && metric_sum(&m, "openelb_reconcile_duration_seconds_count") >= n as f64
            {
                done_at = Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let after = rt.block_on(wait_assigned(&client, n, Duration::from_secs(60)))?;
        let changed = assigned.iter().filter(|(k, v)| after.get(*k) != Some(v)).count();
        let versions_after = rt.block_on(eip_versions(&client))?;
        let rewritten = versions_before.iter().filter(|(k, v)| versions_after.get(*k) != Some(v)).count();
        let secs = |d: Option<Duration>| d.map_or("never".to_string(), |d| format!("{:.2} s", d.as_secs_f64()));
        println!("  restart: /readyz after {}, every Service reconciled after {}", secs(ready_at), secs(done_at));
        println!("  addresses changed: {changed} of {n}; Eips rewritten: {rewritten} of {pools}");
        if let Some(mb) = rss_mb(controller.id()) {
            println!("  RSS: restarted controller {mb:.1} MB");
        }
        Ok(())
    })();
    netns::stop_child(&mut controller, Sig::Term, Duration::from_secs(10));
    drop(api);
    result
}

async fn create_many(client: &kube::Client, n: usize, pools: usize, per_pool: usize) -> Result<()> {
    use futures::StreamExt;
    let eips: Api<openelb_k8s::Eip> = Api::all(client.clone());
    for p in 0..pools {
        let eip: openelb_k8s::Eip = serde_json::from_value(json!({
            "apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip",
            "metadata": { "name": format!("restart-{p}") },
            "spec": { "address": format!("2001:db8:1:{p:x}::/116"), "protocol": "bgp" },
        }))?;
        eips.create(&PostParams::default(), &eip).await.with_context(|| format!("creating Eip restart-{p}"))?;
    }
    let svcs: Api<corev1::Service> = Api::namespaced(client.clone(), "default");
    let results = futures::stream::iter(0..n)
        .map(|i| {
            let svcs = svcs.clone();
            async move {
                let svc: corev1::Service = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": { "name": format!("restart-{i}"), "annotations": {
                        "lb.kubesphere.io/v1alpha1": "openelb",
                        "eip.openelb.kubesphere.io/v1alpha2": format!("restart-{}", i / per_pool) } },
                    "spec": { "type": "LoadBalancer", "ports": [{ "port": 80 }] },
                }))?;
                svcs.create(&PostParams::default(), &svc)
                    .await
                    .with_context(|| format!("creating Service restart-{i}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    results.into_iter().collect::<Result<Vec<_>>>()?;
    Ok(())
}

/// Waits until `n` Services named restart-* have an address; returns name → address.
async fn wait_assigned(
    client: &kube::Client,
    n: usize,
    timeout: Duration,
) -> Result<std::collections::BTreeMap<String, String>> {
    let svcs: Api<corev1::Service> = Api::namespaced(client.clone(), "default");
    let t0 = Instant::now();
    loop {
        let list = svcs.list(&ListParams::default()).await?;
        let got: std::collections::BTreeMap<String, String> = list
            .items
            .iter()
            .filter_map(|s| {
                let name = s.metadata.name.clone()?;
                let ip = openelb_k8s::convert::ingress_ips(s).into_iter().next()?;
                name.starts_with("restart-").then_some((name, ip))
            })
            .collect();
        if got.len() >= n {
            return Ok(got);
        }
        if t0.elapsed() > timeout {
            bail!("only {} of {n} Services got an address after {timeout:?}", got.len());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn eip_versions(client: &kube::Client) -> Result<std::collections::BTreeMap<String, String>> {
    let eips: Api<openelb_k8s::Eip> = Api::all(client.clone());
    Ok(eips
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|e| Some((e.metadata.name?, e.metadata.resource_version?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn metric_sums_every_label_set_and_only_that_metric() {
        let text = "a_count{x=\"1\"} 2\na_count{x=\"2\"} 3\na_count_other 7\na_count 1\n";
        assert_eq!(metric_sum(text, "a_count"), 6.0);
    }
}
