//! N Services created at once, and a watch that notes the moment each one has an address in its status.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};

/// When each watched Service first had an address, and how often the watch had to list again (a `410 Gone`:
/// the Services it found then are timed at the list, late).
#[derive(Debug, Default)]
pub struct Addressed {
    pub at: HashMap<String, Instant>,
    pub relists: usize,
}

/// The current resourceVersion of `api`'s collection, where a watch that misses nothing starts.
pub async fn collection_version(api: &Api<Service>, fields: Option<&str>) -> Result<String> {
    let mut lp = ListParams::default().limit(1);
    if let Some(f) = fields {
        lp = lp.fields(f);
    }
    let list = api.list(&lp).await.context("listing Services for a watch's starting point")?;
    Ok(list.metadata.resource_version.unwrap_or_default())
}

fn has_address(svc: &Service) -> bool {
    !openelb_k8s::convert::ingress_ips(svc).is_empty()
}

/// Watches `api` from `version` until every Service in `wanted` has an address or `deadline` passes.
pub async fn watch_addresses(
    api: Api<Service>,
    wanted: HashSet<String>,
    mut version: String,
    fields: Option<String>,
    deadline: Instant,
) -> Result<Addressed> {
    let mut out = Addressed::default();
    let note = |svc: &Service, at: Instant, out: &mut Addressed| {
        if let Some(name) = svc.metadata.name.as_ref()
            && wanted.contains(name)
            && has_address(svc)
        {
            out.at.entry(name.clone()).or_insert(at);
        }
    };
    while out.at.len() < wanted.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut wp = WatchParams::default().timeout(u32::try_from(left.as_secs().clamp(1, 290)).unwrap_or(290));
        if let Some(f) = &fields {
            wp = wp.fields(f);
        }
        let stream = api.watch(&wp, &version).await.context("watching Services")?;
        let mut stream = std::pin::pin!(stream);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = match tokio::time::timeout(left, stream.try_next()).await {
                Err(_) => return Ok(out),
                // The server ended the watch (its timeout): watch again from the last version seen.
                Ok(Ok(None)) => break,
                Ok(Err(e)) => {
                    eprintln!("warning: Service watch: {e}; watching again from {version}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    break;
                }
                Ok(Ok(Some(event))) => event,
            };
            let now = Instant::now();
            match event {
                WatchEvent::Added(svc) | WatchEvent::Modified(svc) | WatchEvent::Deleted(svc) => {
                    if let Some(v) = &svc.metadata.resource_version {
                        version.clone_from(v);
                    }
                    note(&svc, now, &mut out);
                    if out.at.len() >= wanted.len() {
                        return Ok(out);
                    }
                }
                WatchEvent::Bookmark(b) => version = b.metadata.resource_version,
                WatchEvent::Error(e) if e.code == 410 => {
                    out.relists += 1;
                    let mut lp = ListParams::default();
                    if let Some(f) = &fields {
                        lp = lp.fields(f);
                    }
                    let list = api.list(&lp).await.context("listing Services after the watch expired")?;
                    let now = Instant::now();
                    for svc in &list.items {
                        note(svc, now, &mut out);
                    }
                    version = list.metadata.resource_version.unwrap_or_default();
                    break;
                }
                WatchEvent::Error(e) => bail!("Service watch: {} ({})", e.message, e.code),
            }
        }
    }
    Ok(out)
}

/// A burst: its Services, each with its name, created `concurrency` at a time.
pub struct Burst {
    pub services: Vec<Service>,
    pub concurrency: usize,
    pub timeout: Duration,
}

#[derive(Debug)]
pub struct BurstOutcome {
    pub n: usize,
    /// From the first create call to the last create answered.
    pub created_in: Duration,
    /// From the first create call to the moment the watch saw the last Service's address; `None` if some
    /// never got one before the timeout.
    pub assigned_in: Option<Duration>,
    pub assigned: usize,
    /// Per Service, from its own create call to its address (ms).
    pub latencies_ms: Vec<f64>,
    pub relists: usize,
}

impl Burst {
    /// Creates the Services and waits (watch, not polling) until every one has an address.
    pub async fn run(self, api: &Api<Service>) -> Result<BurstOutcome> {
        let n = self.services.len();
        let wanted: HashSet<String> = self.services.iter().filter_map(|s| s.metadata.name.clone()).collect();
        if wanted.len() != n {
            bail!("a burst needs {n} distinct Service names, got {}", wanted.len());
        }
        let version = collection_version(api, None).await?;
        let t0 = Instant::now();
        let watch = tokio::spawn(watch_addresses(api.clone(), wanted, version, None, t0 + self.timeout));
        let created: Vec<(String, Instant)> = futures::stream::iter(self.services)
            .map(|svc| async move {
                let name = svc.metadata.name.clone().unwrap_or_default();
                let at = Instant::now();
                api.create(&PostParams::default(), &svc).await.with_context(|| format!("creating Service {name}"))?;
                anyhow::Ok((name, at))
            })
            .buffer_unordered(self.concurrency.max(1))
            .try_collect()
            .await?;
        let created_in = t0.elapsed();
        let addressed = watch.await.context("the burst's watch")??;
        let last = addressed.at.values().max().copied();
        let latencies_ms = created
            .iter()
            .filter_map(|(name, at)| {
                Some(addressed.at.get(name)?.saturating_duration_since(*at).as_secs_f64() * 1000.0)
            })
            .collect();
        Ok(BurstOutcome {
            n,
            created_in,
            assigned_in: last.filter(|_| addressed.at.len() >= n).map(|l| l.saturating_duration_since(t0)),
            assigned: addressed.at.len(),
            latencies_ms,
            relists: addressed.relists,
        })
    }
}
