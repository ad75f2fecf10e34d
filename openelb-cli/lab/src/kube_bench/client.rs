//! The measuring side of the lab part, run inside the apiserver's namespace (`lab kube-bench-client`): one
//! JSON line per measurement on stdout, read by [`super::lab`].

use std::collections::HashSet;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use super::bare;
use super::burst::{Burst, collection_version, watch_addresses};
use super::lab::{BENCH_POOL_FIRST, BURST_POOL_FIRST, BURST_POOL_SIZE, EIP_BENCH, EIP_BURST, EIP_FILLER};
use super::stats::ms;
use crate::layout::CLIENT_IP;

/// What one client run measures, in this order.
#[derive(Debug, Clone, Default)]
pub struct ClientPlan {
    /// Services created one after the other, each measured to its address and the client's ARP.
    pub count: usize,
    /// Status patches of one unclaimed Service, one after the other (0: none).
    pub bare_patches: usize,
    /// IPv6 filler Services created at once from [`EIP_FILLER`] (0: none)...
    pub filler: usize,
    /// ...while at most this many Services of [`EIP_BURST`] are measured one after the other, until the filler
    /// all have addresses.
    pub burst_probes: usize,
    /// Create requests of the filler burst in flight at once.
    pub concurrency: usize,
}

/// One Service measured to its address in status and to the client's first ARP reply.
struct Probe<'a> {
    name: String,
    eip: &'a str,
    expected: Ipv4Addr,
    timeout: Duration,
}

pub fn client(kubeconfig: &Path, client_ns: &str, plan: &ClientPlan) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let client = openelb_k8s::client::client(Some(kubeconfig)).await?;
        let api: Api<Service> = Api::namespaced(client.clone(), "default");
        if plan.bare_patches > 0 {
            let addresses = ["198.51.100.201", "198.51.100.202"];
            for ms in bare::patch_round_trips(&api, "bench-bare", addresses, plan.bare_patches).await? {
                println!("{}", json!({ "phase": "bare-patch", "ms": ms }));
            }
        }
        for i in 0..plan.count {
            let expected = Ipv4Addr::from(u32::from(BENCH_POOL_FIRST) + u32::try_from(i)?);
            let probe =
                Probe { name: format!("bench-{i}"), eip: EIP_BENCH, expected, timeout: Duration::from_secs(10) };
            println!("{}", probe.run(&api, client_ns).await?.with_phase("one"));
        }
        if plan.filler > 0 {
            during_burst(&api, client_ns, plan).await?;
        }
        anyhow::Ok(())
    })
}

/// Filler Services all at once and, while they are being assigned, one measured Service after the other.
async fn during_burst(api: &Api<Service>, client_ns: &str, plan: &ClientPlan) -> Result<()> {
    let services = (0..plan.filler).map(filler_service).collect::<Result<Vec<_>>>()?;
    let done = Arc::new(AtomicBool::new(false));
    let burst = Burst { services, concurrency: plan.concurrency, timeout: Duration::from_secs(1800) };
    let task = {
        let (api, done) = (api.clone(), done.clone());
        tokio::spawn(async move {
            let out = burst.run(&api).await;
            done.store(true, Ordering::SeqCst);
            out
        })
    };
    let mut i = 0;
    while !done.load(Ordering::SeqCst) && i < plan.burst_probes.min(BURST_POOL_SIZE) {
        let expected = Ipv4Addr::from(u32::from(BURST_POOL_FIRST) + u32::try_from(i)?);
        let probe =
            Probe { name: format!("bench-burst-{i}"), eip: EIP_BURST, expected, timeout: Duration::from_secs(300) };
        println!("{}", probe.run(api, client_ns).await?.with_phase("burst"));
        i += 1;
    }
    let out = task.await.context("the filler burst")??;
    println!(
        "{}",
        json!({ "phase": "filler", "n": out.n, "assigned": out.assigned,
                "assigned_ms": out.assigned_in.map(ms), "created_ms": ms(out.created_in) })
    );
    Ok(())
}

/// A filler Service: single-stack IPv6 (the lab's apiserver is dual-stack), from the unannounced [`EIP_FILLER`].
fn filler_service(i: usize) -> Result<Service> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": format!("filler-{i}"), "annotations": {
            "lb.kubesphere.io/v1alpha1": "openelb", "eip.openelb.kubesphere.io/v1alpha2": EIP_FILLER } },
        "spec": { "type": "LoadBalancer", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"],
                  "ports": [{ "port": 80 }] },
    }))?)
}

/// A measurement, as the line the client prints.
struct Measured(serde_json::Value);

impl Measured {
    fn with_phase(mut self, phase: &str) -> serde_json::Value {
        self.0["phase"] = json!(phase);
        self.0
    }
}

impl Probe<'_> {
    async fn run(&self, api: &Api<Service>, client_ns: &str) -> Result<Measured> {
        let name = &self.name;
        let svc: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": name, "annotations": {
                "lb.kubesphere.io/v1alpha1": "openelb", "eip.openelb.kubesphere.io/v1alpha2": self.eip } },
            "spec": { "type": "LoadBalancer", "ports": [{ "port": 80, "targetPort": 8080 }] },
        }))?;
        let fields = format!("metadata.name={name}");
        let version = collection_version(api, Some(&fields)).await?;
        let arping = Arping::spawn(client_ns, self.expected, self.timeout).await?;
        let t0 = Instant::now();
        let t0_unix_us =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros());
        let wanted = HashSet::from([name.clone()]);
        let watch = tokio::spawn(watch_addresses(api.clone(), wanted, version, Some(fields), t0 + self.timeout));
        api.create(&PostParams::default(), &svc).await.with_context(|| format!("creating Service {name}"))?;
        // The controller can do nothing before the Service exists: the API server's create time is its own.
        let created = t0.elapsed();
        let addressed = watch.await.context("the Service's watch")??;
        let status = addressed.at.get(name).map(|at| at.saturating_duration_since(t0));
        let arp = arping.wait(t0_unix_us).await;
        let ip = match status {
            Some(_) => openelb_k8s::convert::ingress_ips(&api.get_status(name).await?).into_iter().next(),
            None => None,
        };
        let arp_ms = match (&ip, arp) {
            (Some(ip), Some(d)) if ip.parse::<IpAddr>().ok() == Some(IpAddr::V4(self.expected)) => Some(ms(d)),
            _ => None,
        };
        Ok(Measured(json!({
            "name": name, "ip": ip, "expected": self.expected.to_string(),
            "status_ms": status.map(ms), "arp_ms": arp_ms, "created_ms": ms(created), "t0_unix_us": t0_unix_us,
        })))
    }
}

/// `lab arp-probe` in the client namespace, a request every 2 ms; its exit time is when the VIP resolved.
struct Arping {
    child: Child,
}

impl Arping {
    async fn spawn(client_ns: &str, vip: Ipv4Addr, timeout: Duration) -> Result<Arping> {
        let exe = std::env::current_exe().context("cannot find openelb-cli to run the ARP probe")?;
        let (vip, source) = (vip.to_string(), CLIENT_IP.to_string());
        let timeout = format!("{}ms", timeout.as_millis());
        let child = Command::new("ip")
            .args(["netns", "exec", client_ns])
            .arg(exe)
            .args(["lab", "arp-probe", "--source", &source, "--target", &vip, "--interval", "2ms"])
            .args(["--timeout", &timeout])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot run the ARP probe in the client namespace")?;
        // Give it time to open its socket: the first requests must precede the Service.
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(Arping { child })
    }

    /// Time from `t0_unix_us` (the wall clock, as the probe reports) to the reply, or `None` if it got none.
    async fn wait(mut self, t0_unix_us: u128) -> Option<Duration> {
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => break,
                Ok(Some(_)) | Err(_) => return None,
                Ok(None) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
        let mut out = String::new();
        self.child.stdout.take()?.read_to_string(&mut out).ok()?;
        let at: u128 = out.trim().parse().ok()?;
        let us = u64::try_from(at.checked_sub(t0_unix_us)?).ok()?;
        Some(Duration::from_micros(us))
    }
}

impl Drop for Arping {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
