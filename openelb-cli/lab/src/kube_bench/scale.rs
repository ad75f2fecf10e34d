//! Bursts on a loopback apiserver: N Services created at once until every one has an address, beside a bare
//! client writing the same N statuses; for N = `--restart-services`, then a controller restart.
//!
//! The bare client runs before the controller is started: the controller cannot react to its Services and
//! takes no CPU from the apiserver, so the figure is the apiserver's alone, the floor the issue compares with.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use super::bare;
use super::burst::Burst;
use super::loopback::{Controller, LoopbackApi};
use super::stats::{Summary, ratio_line, secs};
use super::{KubeBenchInput, controller_exe, rss_line};
use crate::kubectl::Kubectl;

/// Eips the Services are spread over (each a /116 of 2001:db8:1::/64: 4096 addresses).
const POOLS: usize = 50;
const BARE_NAMESPACE: &str = "bare";

/// The Ns to run: every `--burst` N and `--restart-services`, each once, smallest first.
pub fn sizes(bursts: &[usize], restart: usize) -> Vec<usize> {
    let mut v: Vec<usize> = bursts.iter().copied().chain((restart > 0).then_some(restart)).filter(|n| *n > 0).collect();
    v.sort_unstable();
    v.dedup();
    v
}

pub fn run(input: &KubeBenchInput) -> Result<()> {
    for n in sizes(&input.bursts, input.restart_services) {
        scenario(input, n, n == input.restart_services)?;
    }
    Ok(())
}

fn pool_service(i: usize, per_pool: usize) -> Result<Service> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": format!("burst-{i}"), "annotations": {
            "lb.kubesphere.io/v1alpha1": "openelb",
            "eip.openelb.kubesphere.io/v1alpha2": format!("pool-{}", i / per_pool) } },
        "spec": { "type": "LoadBalancer", "ports": [{ "port": 80 }] },
    }))?)
}

async fn create_pools(client: &kube::Client) -> Result<()> {
    let eips: Api<openelb_k8s::Eip> = Api::all(client.clone());
    for p in 0..POOLS {
        let eip: openelb_k8s::Eip = serde_json::from_value(json!({
            "apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip",
            "metadata": { "name": format!("pool-{p}") },
            "spec": { "address": format!("2001:db8:1:{p:x}::/116"), "protocol": "bgp" },
        }))?;
        eips.create(&PostParams::default(), &eip).await.with_context(|| format!("creating Eip pool-{p}"))?;
    }
    Ok(())
}

fn scenario(input: &KubeBenchInput, n: usize, restart: bool) -> Result<()> {
    let exe = controller_exe()?;
    let c = input.concurrency;
    // A fresh apiserver per N: every burst starts from an empty cluster.
    let api = LoopbackApi::start(&input.script, &n.to_string())?;
    let kc = api.kubeconfig();
    Kubectl::new(&kc).install_crd(&input.crd_dir())?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let client = rt.block_on(openelb_k8s::client::client(Some(&kc)))?;
    rt.block_on(create_pools(&client))?;
    println!("burst of {n} Services over {POOLS} Eips, {c} requests at a time (IPv6 single-stack loopback apiserver):");

    // The floors first, before the controller exists.
    let bare_api: Api<Service> = Api::namespaced(client.clone(), BARE_NAMESPACE);
    rt.block_on(bare::ensure_namespace(&client, BARE_NAMESPACE))?;
    let patches = rt.block_on(bare::patch_round_trips(
        &bare_api,
        "bare-latency",
        ["2001:db8:ba2e::1", "2001:db8:ba2e::2"],
        input.bare_patches,
    ))?;
    if let Some(s) = Summary::of(&patches) {
        println!("  bare status patch, one at a time ({} patches)     {}", patches.len(), s.columns());
    }
    let names: Vec<String> = (0..n).map(|i| format!("bare-{i}")).collect();
    let bare = rt.block_on(bare::writes(&bare_api, &names, |i| format!("2001:db8:ba2e:1::{i:x}"), c))?;
    println!(
        "  bare client: {n} Services created in {:.2} s, their {n} status writes in {:.2} s",
        bare.created_in.as_secs_f64(),
        bare.written_in.as_secs_f64()
    );
    rt.block_on(bare::delete_all(&bare_api, &names, c))?;

    let mut controller = Controller::new(&exe, &api);
    controller.start()?;
    crate::eventually(Duration::from_secs(60), Duration::from_millis(20), || controller.ready().then_some(()))
        .map_err(|e| anyhow!("the loopback controller never answered /readyz: {e}"))?;
    let per_pool = n.div_ceil(POOLS);
    let services = (0..n).map(|i| pool_service(i, per_pool)).collect::<Result<Vec<_>>>()?;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let burst = Burst { services, concurrency: c, timeout: input.burst_timeout };
    let out = rt.block_on(burst.run(&svcs))?;
    // The creates are part of the burst's time: a controller that keeps pace ends right after the last one.
    let after_creates = out.assigned_in.map(|a| a.saturating_sub(out.created_in));
    println!(
        "  burst: {n} created in {:.2} s; every one with its address after {} ({} after the last create; {} of {n} assigned{})",
        out.created_in.as_secs_f64(),
        secs(out.assigned_in),
        secs(after_creates),
        out.assigned,
        if out.relists > 0 { format!(", the watch listed again {} times", out.relists) } else { String::new() }
    );
    if let Some(s) = Summary::of(&out.latencies_ms) {
        println!("  each Service created -> address in status      {}", s.columns());
    }
    println!("{}", rss_line(controller.pid(), &format!("after the burst of {n}")));
    println!(
        "{}",
        ratio_line(
            &format!("burst-allocate/bare-writes N={n}"),
            out.assigned_in.map(|d| d.as_secs_f64()),
            Some(bare.written_in.as_secs_f64())
        )
    );
    if restart {
        if out.assigned_in.is_some() {
            super::restart::run(&rt, &client, &mut controller, n, "burst-")?;
        } else {
            println!("  controller restart skipped: not every Service got an address");
        }
    }
    controller.stop();
    drop(api);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_size_once_smallest_first() {
        assert_eq!(sizes(&[5000, 1000], 5000), vec![1000, 5000]);
        assert_eq!(sizes(&[1000], 5000), vec![1000, 5000]);
        assert_eq!(sizes(&[], 0), Vec::<usize>::new());
        assert_eq!(sizes(&[0, 10], 0), vec![10]);
    }
}
