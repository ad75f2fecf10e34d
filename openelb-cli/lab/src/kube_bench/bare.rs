//! What the apiserver alone does, measured by the same client in the same run: the floors kube-bench's
//! figures are divided by. None of these Services carries OpenELB's annotations.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::stats::{median, ms};

/// A LoadBalancer Service no controller claims.
pub fn unclaimed_service(name: &str) -> Result<Service> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": name },
        "spec": { "type": "LoadBalancer", "ports": [{ "port": 80 }] },
    }))?)
}

/// The write the controller makes per Service: a merge patch of `status.loadBalancer.ingress`.
pub fn ingress_patch(ip: &str) -> serde_json::Value {
    json!({ "status": { "loadBalancer": { "ingress": [{ "ip": ip }] } } })
}

pub async fn ensure_namespace(client: &kube::Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } }))?;
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating Namespace {name}")),
    }
}

/// `count` status patches of one Service, one after the other, each changing the address (`addresses`
/// alternate, so every patch is a real write); the round trip of each (ms). A few unmeasured patches first
/// warm the connection.
pub async fn patch_round_trips(api: &Api<Service>, name: &str, addresses: [&str; 2], count: usize) -> Result<Vec<f64>> {
    match api.create(&PostParams::default(), &unclaimed_service(name)?).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e).with_context(|| format!("creating Service {name}")),
    }
    let pp = PatchParams::default();
    let mut out = Vec::with_capacity(count);
    for i in 0..count + 5 {
        let patch = ingress_patch(addresses[i % 2]);
        let t = Instant::now();
        api.patch_status(name, &pp, &Patch::Merge(&patch))
            .await
            .with_context(|| format!("patching the status of Service {name}"))?;
        if i >= 5 {
            out.push(ms(t.elapsed()));
        }
    }
    Ok(out)
}

/// N Services created, then N status writes like the controller's at `concurrency`: the writes' wall time.
pub struct BareWrites {
    pub created_in: Duration,
    pub written_in: Duration,
}

/// Creates `names.len()` unclaimed Services in `api`'s namespace, then writes each one's status
/// (`address(i)`), `concurrency` at a time.
pub async fn writes(
    api: &Api<Service>,
    names: &[String],
    address: impl Fn(usize) -> String,
    concurrency: usize,
) -> Result<BareWrites> {
    let t0 = Instant::now();
    futures::stream::iter(names)
        .map(|name| async move {
            api.create(&PostParams::default(), &unclaimed_service(name)?)
                .await
                .with_context(|| format!("creating Service {name}"))?;
            anyhow::Ok(())
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    let created_in = t0.elapsed();
    let pp = PatchParams::default();
    let t0 = Instant::now();
    futures::stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let patch = ingress_patch(&address(i));
            let pp = &pp;
            async move {
                api.patch_status(name, pp, &Patch::Merge(&patch))
                    .await
                    .with_context(|| format!("patching the status of Service {name}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(BareWrites { created_in, written_in: t0.elapsed() })
}

/// Deletes the named Services, `concurrency` at a time.
pub async fn delete_all(api: &Api<Service>, names: &[String], concurrency: usize) -> Result<()> {
    futures::stream::iter(names)
        .map(|name| async move {
            api.delete(name, &DeleteParams::default()).await.with_context(|| format!("deleting Service {name}"))?;
            anyhow::Ok(())
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// A LIST of every Service and every Eip, `runs` times: the median (what a restarted controller must read
/// at least once).
pub async fn list_services_and_eips(client: &kube::Client, runs: usize) -> Result<Option<Duration>> {
    let svcs: Api<Service> = Api::all(client.clone());
    let eips: Api<openelb_k8s::Eip> = Api::all(client.clone());
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        svcs.list(&ListParams::default()).await.context("listing Services")?;
        eips.list(&ListParams::default()).await.context("listing Eips")?;
        times.push(ms(t.elapsed()));
    }
    Ok(median(&times).map(|m| Duration::from_secs_f64(m / 1000.0)))
}
