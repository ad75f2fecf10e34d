//! The lab part: apiserver in master1's namespace, controller, a speaker per worker; Services created one at
//! a time, measured to their address in status and to the client's ARP, quiet and during a burst of filler.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use super::client::ClientPlan;
use super::stats::{Summary, ratio_line};
use super::{KubeBenchInput, controller_exe, rss_line};
use crate::kube::KubeLab;
use crate::kubectl::Kubectl;
use crate::layout::Layout;
use crate::netns;
use crate::probe::proc_usage;
use crate::speaker_program::{OpenelbSpeakerCommand, SpeakerProgram, find_openelb_speaker};
use crate::topology::{Lab, LabConfig};
use openelb_core::model::TrafficPolicy;

/// Pool of the create→ARP measurement: on the lab LAN, clear of the nodes, the client and the seed's pool.
pub const BENCH_POOL: &str = "192.0.2.128/26";
pub const BENCH_POOL_FIRST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 128);
const BENCH_POOL_SIZE: usize = 64;
pub const EIP_BENCH: &str = "bench";
/// Pool of the Services measured during the filler burst: the rest of the lab LAN, short of its broadcast.
const BURST_POOL: &str = "192.0.2.192-192.0.2.254";
pub const BURST_POOL_FIRST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 192);
pub const BURST_POOL_SIZE: usize = 63;
pub const EIP_BURST: &str = "bench-burst";
/// The filler's pool: protocol bgp, which no speaker announces, IPv6 so a thousand fit in documentation space.
const FILLER_POOL: &str = "2001:db8:f::/112";
pub const EIP_FILLER: &str = "bench-filler";
/// The lab's apiserver is dual-stack (1.20: a feature gate) so filler Services can be IPv6 while the measured
/// ones stay IPv4, answered by ARP.
const DUAL_STACK: [(&str, &str); 2] =
    [("KAPI_SERVICE_CIDR", "10.96.0.0/24,2001:db8:ffff::/108"), ("KAPI_FEATURE_GATES", "IPv6DualStack=true")];

/// Refuses more Services than [`BENCH_POOL`] holds, before anything is built.
pub fn check_count(count: usize) -> Result<()> {
    if count > BENCH_POOL_SIZE {
        bail!("--services {count}: the bench pool {BENCH_POOL} holds {BENCH_POOL_SIZE}");
    }
    Ok(())
}

pub fn lab_part(input: &KubeBenchInput) -> Result<()> {
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
        let env: Vec<(String, String)> = DUAL_STACK.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut kube = KubeLab::start_with_env(&lab.layout, &lab.dir, &host, &input.script, &controller_exe()?, env)?;
        kube.install_crds(&input.crd_dir())?;
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
        apply_pools(&kube.kubectl, input.filler_services > 0)?;
        let run = |plan: &ClientPlan| {
            client_lines(&kube.host_ns, &kube.kubeconfig, &lab.layout.client_ns, &input.cli_exe, plan)
        };
        let setting = "cluster of 2 speakers";
        let quiet = run(&ClientPlan { count: input.services, bare_patches: input.bare_patches, ..Default::default() })?;
        let count = print_one_at_a_time(&quiet, "one", &format!("one at a time, {setting}"))?;
        let bare = samples(&quiet, "bare-patch", "ms");
        let bare_p99 = Summary::of(&bare).map(|s| s.p99);
        if let Some(s) = Summary::of(&bare) {
            println!("  bare status patch ({} one at a time)    {}", bare.len(), s.columns());
        }
        let status_p99 = Summary::of(&samples(&quiet, "one", "status_ms")).map(|s| s.p99);
        println!("{}", ratio_line("create-to-status-p99/bare-patch-p99", status_p99, bare_p99));
        let answered_p99 = Summary::of(&after_create(&quiet, "one", "status_ms")).map(|s| s.p99);
        println!("{}", ratio_line("create-answered-to-status-p99/bare-patch-p99", answered_p99, bare_p99));
        println!("{}", rss_line(kube.controller_pid(), "after the Services one at a time"));
        if input.filler_services > 0 {
            let f = input.filler_services;
            let plan = ClientPlan {
                filler: f,
                burst_probes: input.services,
                concurrency: input.concurrency,
                ..Default::default()
            };
            let busy = run(&plan)?;
            let what =
                format!("one at a time while {f} IPv6 filler Services from an unannounced Eip are assigned, {setting}");
            print_one_at_a_time(&busy, "burst", &what)?;
            if let Some(filler) = busy.iter().find(|v| v["phase"] == "filler") {
                let secs =
                    filler["assigned_ms"].as_f64().map_or("never".to_string(), |m| format!("{:.2} s", m / 1000.0));
                println!("  filler: {} of {f} with their address after {secs}", filler["assigned"]);
            }
            let status_p99 = Summary::of(&samples(&busy, "burst", "status_ms")).map(|s| s.p99);
            println!(
                "{}",
                ratio_line(&format!("create-to-status-p99/bare-patch-p99 during burst N={f}"), status_p99, bare_p99)
            );
            let answered_p99 = Summary::of(&after_create(&busy, "burst", "status_ms")).map(|s| s.p99);
            let what = format!("create-answered-to-status-p99/bare-patch-p99 during burst N={f}");
            println!("{}", ratio_line(&what, answered_p99, bare_p99));
            println!("{}", rss_line(kube.controller_pid(), &format!("after the burst of {f}")));
        }
        for s in lab.speakers() {
            if let Some(mb) = proc_usage(s.pid()).map(|(kb, _)| kb as f64 / 1024.0) {
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
    apply_pools(kubectl, false)
}

fn eip(name: &str, address: &str, protocol: &str) -> Value {
    json!({
        "apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip",
        "metadata": { "name": name },
        "spec": { "address": address, "protocol": protocol },
    })
}

/// [`BENCH_POOL`], and with `burst` the pools of the measurement during a burst.
fn apply_pools(kubectl: &Kubectl, burst: bool) -> Result<()> {
    let mut eips = vec![eip(EIP_BENCH, BENCH_POOL, "vip")];
    if burst {
        eips.push(eip(EIP_BURST, BURST_POOL, "vip"));
        eips.push(eip(EIP_FILLER, FILLER_POOL, "bgp"));
    }
    kubectl.apply(&eips)?;
    // Let the speakers sync their caches before the first measured Service.
    std::thread::sleep(Duration::from_secs(3));
    Ok(())
}

/// Runs [`super::client::client`] inside `host_ns` and returns its JSON lines.
fn client_lines(
    host_ns: &str,
    kubeconfig: &Path,
    client_ns: &str,
    cli_exe: &Path,
    plan: &ClientPlan,
) -> Result<Vec<Value>> {
    let kc = kubeconfig.display().to_string();
    let exe = cli_exe.display().to_string();
    let numbers =
        [plan.count, plan.bare_patches, plan.filler, plan.burst_probes, plan.concurrency].map(|n| n.to_string());
    let [count, bare, filler, probes, c] = numbers.each_ref().map(String::as_str);
    let argv = [
        exe.as_str(),
        "lab",
        "kube-bench-client",
        "--kubeconfig",
        &kc,
        "--client-ns",
        client_ns,
        "--count",
        count,
        "--bare-patches",
        bare,
        "--filler",
        filler,
        "--burst-probes",
        probes,
        "--concurrency",
        c,
    ];
    let out = netns::exec(host_ns, &argv)?;
    // With the lab's logs kept, the measurements go beside them: each line's `t0_unix_us` places it in the
    // controller's and speakers' logs.
    if let Some(dir) = std::env::var_os(crate::topology::ENV_KEEP_LOGS) {
        use std::io::Write;
        let path = std::path::PathBuf::from(dir).join("kube-bench-client.jsonl");
        let _ = std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")));
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
            let _ = f.write_all(out.as_bytes());
        }
    }
    Ok(out.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect())
}

fn samples(lines: &[Value], phase: &str, field: &str) -> Vec<f64> {
    lines.iter().filter(|v| v["phase"] == phase).filter_map(|v| v[field].as_f64()).collect()
}

/// `field` counted from when the API server answered the create (`created_ms`): the part the API server's own
/// create time (IP and port allocation) does not account for.
fn after_create(lines: &[Value], phase: &str, field: &str) -> Vec<f64> {
    lines
        .iter()
        .filter(|v| v["phase"] == phase)
        .filter_map(|v| Some(v[field].as_f64()? - v["created_ms"].as_f64()?))
        .collect()
}

/// Prints p50/p99 of created -> address in status and -> the client's ARP for the lines of `phase`; returns
/// how many got an address.
fn print_one_at_a_time(lines: &[Value], phase: &str, setting: &str) -> Result<usize> {
    let status = samples(lines, phase, "status_ms");
    let arp = samples(lines, phase, "arp_ms");
    let measured = lines.iter().filter(|v| v["phase"] == phase).count();
    println!("Service created -> ... ({} Services, {setting}):", status.len());
    for (what, v) in [("address in status", &status), ("client's ARP resolves", &arp)] {
        let Some(s) = Summary::of(v) else { bail!("no measurement of {what}") };
        println!("  {what:<24} {}", s.columns());
    }
    let created = samples(lines, phase, "created_ms");
    let from_answer = [
        ("the create answered", &created),
        ("... then in status", &after_create(lines, phase, "status_ms")),
        ("... then client's ARP", &after_create(lines, phase, "arp_ms")),
    ];
    for (what, v) in from_answer {
        if let Some(s) = Summary::of(v) {
            println!("  {what:<24} {}", s.columns());
        }
    }
    let wrong = measured - arp.len();
    if wrong > 0 {
        println!("  {wrong} Services never resolved or got an unexpected address (see the client's output)");
    }
    Ok(status.len())
}

/// Creates `count` Services one after the other from inside `host_ns` ([`super::client`]) and prints the
/// p50/p99 of created -> address in status and created -> the client's ARP resolves it; returns how many got
/// an address.
pub fn create_to_arp(
    host_ns: &str,
    kubeconfig: &Path,
    client_ns: &str,
    cli_exe: &Path,
    count: usize,
    setting: &str,
) -> Result<usize> {
    check_count(count)?;
    let lines = client_lines(host_ns, kubeconfig, client_ns, cli_exe, &ClientPlan { count, ..Default::default() })?;
    print_one_at_a_time(&lines, "one", &format!("one at a time, {setting}"))
}
