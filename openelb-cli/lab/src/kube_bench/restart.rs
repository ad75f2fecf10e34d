//! A controller restart with every Service assigned: time to ready and to every Service verified, beside a
//! bare LIST of what it must read, and the writes it made (there must be none).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::ListParams;

use super::bare;
use super::loopback::Controller;
use super::stats::{ratio_line, secs};
use super::verified::{Measure, verified};
use crate::probe::proc_usage;

/// resourceVersion of every Service in `namespace` and every Eip, keyed `Service/<name>` and `Eip/<name>`,
/// and each Service's first address.
pub struct Snapshot {
    versions: BTreeMap<String, String>,
    addresses: BTreeMap<String, String>,
}

impl Snapshot {
    pub async fn take(client: &kube::Client, namespace: &str, prefix: &str) -> Result<Snapshot> {
        let svcs: Api<Service> = Api::namespaced(client.clone(), namespace);
        let eips: Api<openelb_k8s::Eip> = Api::all(client.clone());
        let mut versions = BTreeMap::new();
        let mut addresses = BTreeMap::new();
        for s in svcs.list(&ListParams::default()).await?.items {
            let Some(name) = s.metadata.name.clone().filter(|n| n.starts_with(prefix)) else { continue };
            if let Some(ip) = openelb_k8s::convert::ingress_ips(&s).into_iter().next() {
                addresses.insert(name.clone(), ip);
            }
            versions.insert(format!("Service/{name}"), s.metadata.resource_version.unwrap_or_default());
        }
        for e in eips.list(&ListParams::default()).await?.items {
            let Some(name) = e.metadata.name else { continue };
            versions.insert(format!("Eip/{name}"), e.metadata.resource_version.unwrap_or_default());
        }
        Ok(Snapshot { versions, addresses })
    }

    /// Objects of `kind` whose resourceVersion differs in `after` (or that went away).
    fn changed(&self, after: &Snapshot, kind: &str) -> usize {
        let prefix = format!("{kind}/");
        self.versions.iter().filter(|(k, v)| k.starts_with(&prefix) && after.versions.get(*k) != Some(v)).count()
    }

    fn count(&self, kind: &str) -> usize {
        let prefix = format!("{kind}/");
        self.versions.keys().filter(|k| k.starts_with(&prefix)).count()
    }
}

/// Waits until nothing the controller writes changes for `quiet` (at most `limit`): the Eip and Service
/// writes that follow the last allocations are done before the snapshot.
async fn settle(
    client: &kube::Client,
    (ns, prefix): (&str, &str),
    quiet: Duration,
    limit: Duration,
) -> Result<Snapshot> {
    let t0 = Instant::now();
    let mut last = Snapshot::take(client, ns, prefix).await?;
    while t0.elapsed() < limit {
        tokio::time::sleep(quiet).await;
        let now = Snapshot::take(client, ns, prefix).await?;
        if now.versions == last.versions {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

/// Restarts `controller`, whose `n` Services are those named `prefix*` in `default`.
pub fn run(
    rt: &tokio::runtime::Runtime,
    client: &kube::Client,
    controller: &mut Controller,
    n: usize,
    prefix: &str,
) -> Result<()> {
    let namespace = ("default", prefix);
    println!("  controller restart with {n} Services assigned:");
    rt.block_on(settle(client, namespace, Duration::from_secs(2), Duration::from_secs(60)))?;
    controller.stop();
    let before = rt.block_on(Snapshot::take(client, namespace.0, prefix))?;
    // The floor, with nothing else on the apiserver: read what a restarted controller has to read.
    let bare_list = rt.block_on(bare::list_services_and_eips(client, 5))?;
    let t0 = Instant::now();
    controller.start()?;
    let (mut ready_at, mut done_at, mut measure) = (None, None, None);
    while t0.elapsed() < Duration::from_secs(600) && (ready_at.is_none() || done_at.is_none()) {
        if ready_at.is_none() && controller.ready() {
            ready_at = Some(t0.elapsed());
        }
        if done_at.is_none()
            && let Some(m) = controller.metrics().and_then(|text| verified(&text, n))
        {
            done_at = Some(t0.elapsed());
            measure = Some(m);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let both = ready_at.zip(done_at).map(|(r, d)| r.max(d));
    // Writes a restart makes come right after its first reads; a quiet period shows they are over.
    let after = rt.block_on(settle(client, namespace, Duration::from_secs(3), Duration::from_secs(60)))?;
    let moved = before.addresses.iter().filter(|(k, v)| after.addresses.get(*k) != Some(v)).count();
    let how = measure.map_or_else(String::new, |m: Measure| format!(" ({})", m.name()));
    println!(
        "    /readyz after {}, every Service verified after {}{how}, both after {}",
        secs(ready_at),
        secs(done_at),
        secs(both)
    );
    println!(
        "    bare LIST of Services and Eips (median of 5): {:.1} ms",
        bare_list.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    );
    println!(
        "    writes during the restart: {} of {} Services and {} of {} Eips changed resourceVersion; addresses changed: {moved}",
        before.changed(&after, "Service"),
        before.count("Service"),
        before.changed(&after, "Eip"),
        before.count("Eip"),
    );
    if let Some(mb) = controller.pid().and_then(proc_usage).map(|(kb, _)| kb as f64 / 1024.0) {
        println!("    RSS: controller {mb:.1} MB after the restart");
    }
    println!(
        "{}",
        ratio_line(
            &format!("restart/bare-list N={n}"),
            both.map(|d| d.as_secs_f64()),
            bare_list.map(|d| d.as_secs_f64())
        )
    );
    Ok(())
}
