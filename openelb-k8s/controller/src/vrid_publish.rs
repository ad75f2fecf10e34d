//! The leader keeps the ConfigMap `openelb-vrrp` equal to [`vrid_plan::publication`] (docs/vrrp.md): it reads
//! what the speakers plan from (the controller's own Eip and Service caches, [`Shared`]; its own watches of
//! Nodes, Endpoints or EndpointSlices and the speakers' Leases), and after each burst of changes ([`COALESCE`])
//! builds the same snapshot the speakers build, of the Services VIP mode can announce only ([`announced`]),
//! plans it beside its runtime's workers (`spawn_blocking`), and writes only when the result differs from what
//! the ConfigMap holds.
//!
//! - **Restarts keep VRIDs**: each term starts by reading the ConfigMap; its assignment is what the next plan
//!   keeps.
//! - **Writes** create the ConfigMap or replace it guarded by its `resourceVersion`; on a conflict (someone
//!   else changed it) it is read again and the publication recomputed. A failed write is logged once per
//!   distinct error and retried after `RETRY`, doubling up to `RETRY_MAX`; nothing is written in a loop, since
//!   an unchanged publication is never written.
//! - Every [`RECHECK`] the publication is recomputed even without a change, so that foreign VRIDs nobody
//!   reports any more are forgotten.

use std::collections::HashSet;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1 as corev1;
use k8s_openapi::api::discovery::v1 as discoveryv1;
use kube::api::PostParams;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client};
use openelb_core::addr::AddrRange;
use openelb_core::model::{Cluster, Endpoint, LABEL_EIP_POOL, Node, Pool, Protocol, ServiceKey};
use openelb_core::vrrp::plan::PlanIssue;
use openelb_k8s::convert;
use openelb_k8s::crd::Eip;
use openelb_k8s::decoded::{Decoded, Undecodable};
use openelb_k8s::snapshot::{self, EndpointsKind, WatchedService};
use openelb_k8s::vrrp::{CONFIGMAP_NAME, LEASE_LABEL, LEASE_LABEL_VALUE, Published, SpeakerLease};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;

use super::metrics::Metrics;
use super::mirror::{Mirrored, Tasks, mirror};
use super::undecodable::{self, Reporter};
use super::vrid_plan::{self, VridSettings};
use openelb_k8s::serve::KindLabels;

/// How long changes are gathered before the publication is recomputed, at least.
pub const COALESCE: Duration = Duration::from_secs(1);
/// ...and at most: a big cluster changing all the time (5000 Services created one by one) is planned again at
/// most every [`COALESCE_MAX`], each plan costing it at most a tenth of the time; speakers plan groups not
/// published yet by their own rule meanwhile.
pub const COALESCE_MAX: Duration = Duration::from_secs(30);

/// The gathering time after a plan that took `took`.
fn coalesce(took: Duration) -> Duration {
    took.saturating_mul(10).clamp(COALESCE, COALESCE_MAX)
}
pub const RECHECK: Duration = Duration::from_secs(600);
const RETRY: Duration = Duration::from_secs(5);
/// Failed writes are retried after [`RETRY`], doubling up to this (each retry plans the whole cluster again).
const RETRY_MAX: Duration = Duration::from_secs(300);
/// A ConfigMap holds at most 1 MiB; a publication this large is refused (and reported) rather than written.
const MAX_BYTES: usize = 900 * 1024;

/// Where the publication lives and how VRIDs are planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VridPublishing {
    pub namespace: String,
    pub settings: VridSettings,
}

impl Default for VridPublishing {
    fn default() -> Self {
        VridPublishing { namespace: super::leader::default_lease_namespace(), settings: VridSettings::default() }
    }
}

/// The controller's caches the publisher reads instead of watching the same objects again.
#[derive(Clone)]
pub struct Shared {
    pub eips: Store<Eip>,
    /// The Service controller's cache.
    pub services: Store<Decoded<corev1::Service>>,
    /// Woken on every change of either cache (and of the publisher's own watches).
    pub changed: Arc<Notify>,
}

/// The watched objects, each in a reflector store.
struct Watched {
    eips: Store<Eip>,
    services: Store<Decoded<corev1::Service>>,
    nodes: Store<corev1::Node>,
    endpoints: Option<Store<corev1::Endpoints>>,
    slices: Option<Store<discoveryv1::EndpointSlice>>,
    leases: Store<Lease>,
}

impl Watched {
    async fn ready(&self) -> bool {
        let waits = [
            self.eips.wait_until_ready().await.is_ok(),
            self.services.wait_until_ready().await.is_ok(),
            self.nodes.wait_until_ready().await.is_ok(),
            self.leases.wait_until_ready().await.is_ok(),
            match &self.endpoints {
                Some(s) => s.wait_until_ready().await.is_ok(),
                None => true,
            },
            match &self.slices {
                Some(s) => s.wait_until_ready().await.is_ok(),
                None => true,
            },
        ];
        waits.iter().all(|ok| *ok)
    }

    /// The snapshot the speakers plan from, and the speakers' Leases. Objects that cannot be converted are left
    /// out, as the speakers leave them out.
    fn snapshot(&self) -> (Cluster, Vec<SpeakerLease>) {
        let pools: Vec<Pool> = self.eips.state().iter().filter_map(|e| snapshot::pool(e).ok()).collect();
        let services = announced(&pools, &self.services.state());
        let nodes: Vec<Node> = self.nodes.state().iter().filter_map(|n| snapshot::node(n).ok()).collect();
        let mut endpoints: Vec<(ServiceKey, Vec<Endpoint>)> = Vec::new();
        if let Some(store) = &self.endpoints {
            endpoints.extend(store.state().iter().filter_map(|e| snapshot::endpoints(e).ok()));
        }
        if let Some(store) = &self.slices {
            endpoints.extend(store.state().iter().filter_map(|s| snapshot::slice(s).ok()));
        }
        let (cluster, _) = snapshot::build(&pools, &services, &nodes, &endpoints);
        let leases = self.leases.state().iter().filter_map(|l| SpeakerLease::from_lease(l).ok().flatten()).collect();
        (cluster, leases)
    }
}

/// The Services whose ingress can give a VIP-mode target, as the snapshot keeps them: those holding an address
/// in a VIP pool's range or labelled with a VIP pool, and every other holder of such an address (so each address
/// is counted in the pool the whole cluster would give it, `PlanInputs::from_ingress`). The others (most
/// Services of most clusters) can give none, so the plan is the same without them, and so much cheaper.
fn announced(pools: &[Pool], services: &[Arc<Decoded<corev1::Service>>]) -> Vec<WatchedService> {
    let vip: Vec<&Pool> = pools.iter().filter(|p| p.protocol == Protocol::Vip).collect();
    if vip.is_empty() {
        return Vec::new();
    }
    let ranges: Vec<AddrRange> = vip.iter().filter_map(|p| AddrRange::parse(&p.address).ok()).collect();
    let names: HashSet<&str> = vip.iter().map(|p| p.name.as_str()).collect();
    let holders: Vec<(&corev1::Service, Vec<IpAddr>)> = services
        .iter()
        .filter_map(|d| (**d).as_result().ok())
        .map(|s| (s, convert::ingress_ips(s).iter().filter_map(|raw| raw.trim().parse().ok()).collect::<Vec<_>>()))
        .filter(|(_, ips)| !ips.is_empty())
        .collect();
    let mut vip_addresses: HashSet<IpAddr> = HashSet::new();
    for (svc, ips) in &holders {
        let label = svc.metadata.labels.as_ref().and_then(|l| l.get(LABEL_EIP_POOL));
        let labelled = label.is_some_and(|l| names.contains(l.as_str()));
        vip_addresses.extend(ips.iter().filter(|ip| labelled || ranges.iter().any(|r| r.contains(ip))));
    }
    holders
        .into_iter()
        .filter(|(_, ips)| ips.iter().any(|ip| vip_addresses.contains(ip)))
        .filter_map(|(svc, _)| snapshot::service(svc).ok())
        .collect()
}

/// Mirrors `api` into a store and wakes `notify` on every change; errors are logged once per distinct message.
/// Objects are decoded one at a time, as the speakers decode them: an undecodable one is `salvage`d (an Eip, as
/// a disabled pool) or left out, and never stops the others.
fn reflect<K: Mirrored>(
    kind: &'static str,
    api: Api<Decoded<K>>,
    config: watcher::Config,
    salvage: fn(&Undecodable) -> Option<K>,
    notify: Arc<Notify>,
    tasks: &mut Tasks,
) -> Store<K> {
    // The controller's own watches count and log these objects; this one only keeps them out of its plan.
    let reporter = Reporter::new(kind, Counter::default(), "left out of the VRID plan");
    let mut last_error: Option<String> = None;
    let seen = move |event: Result<(), watcher::Error>| match event {
        Ok(()) => {
            last_error = None;
            notify.notify_one();
        }
        Err(e) => {
            let message = e.to_string();
            if last_error.as_ref() != Some(&message) {
                tracing::warn!("VRID assignment: watch of {kind}: {message}");
                last_error = Some(message);
            }
        }
    };
    let (store, task) = mirror(api, config, Default::default(), reporter, salvage, None, seen);
    tasks.0.push(task);
    store
}

/// EndpointSlices where `discovery.k8s.io/v1` is served, Endpoints otherwise (as the speakers decide).
async fn endpoints_kind(client: &Client) -> Result<EndpointsKind, String> {
    client.list_api_groups().await.map(|g| snapshot::endpoints_kind(&g)).map_err(|e| format!("GET /apis: {e}"))
}

/// The ConfigMap as it is: its publication (`None` when missing or unreadable) and its `resourceVersion`.
async fn read(api: &Api<corev1::ConfigMap>) -> Result<Option<(Option<Published>, String)>, kube::Error> {
    let Some(cm) = api.get_opt(CONFIGMAP_NAME).await? else { return Ok(None) };
    let version = cm.metadata.resource_version.clone().unwrap_or_default();
    let published = match Published::from_configmap(&cm) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("{e}; it will be rewritten");
            None
        }
    };
    Ok(Some((published, version)))
}

/// Keeps the ConfigMap current until `stop`; see the module notes.
pub async fn run(
    client: Client,
    publishing: VridPublishing,
    shared: Shared,
    metrics: Metrics,
    stop: impl Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    let kind = loop {
        tokio::select! {
            r = endpoints_kind(&client) => match r {
                Ok(k) => break k,
                Err(e) => tracing::warn!("VRID assignment: {e}; retrying"),
            },
            () = &mut stop => return,
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY) => {}
            () = &mut stop => return,
        }
    };
    let notify = shared.changed;
    let mut tasks = Tasks(Vec::new());
    let wc = watcher::Config::default;
    let ns = publishing.namespace.as_str();
    let lease_config = wc().labels(&format!("{LEASE_LABEL}={LEASE_LABEL_VALUE}"));
    let n = || Arc::clone(&notify);
    let watched = Watched {
        eips: shared.eips,
        services: shared.services,
        nodes: reflect("Node", Api::all(client.clone()), wc(), undecodable::leave_out, n(), &mut tasks),
        endpoints: (kind == EndpointsKind::Endpoints)
            .then(|| reflect("Endpoints", Api::all(client.clone()), wc(), undecodable::leave_out, n(), &mut tasks)),
        slices: (kind == EndpointsKind::Slices)
            .then(|| reflect("EndpointSlice", Api::all(client.clone()), wc(), undecodable::leave_out, n(), &mut tasks)),
        leases: reflect(
            "Lease",
            Api::namespaced(client.clone(), ns),
            lease_config,
            undecodable::leave_out,
            n(),
            &mut tasks,
        ),
    };
    tokio::select! {
        ok = watched.ready() => if !ok { return },
        () = &mut stop => return,
    }
    let api: Api<corev1::ConfigMap> = Api::namespaced(client, ns);
    let mut current = loop {
        tokio::select! {
            r = read(&api) => match r {
                Ok(c) => break c,
                Err(e) => tracing::warn!(namespace = ns, "VRID assignment: reading ConfigMap {CONFIGMAP_NAME}: {e}; retrying"),
            },
            () = &mut stop => return,
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY) => {}
            () = &mut stop => return,
        }
    };
    tracing::info!(
        namespace = ns,
        existing = current.as_ref().is_some_and(|c| c.0.is_some()),
        "publishing the VRID assignment in ConfigMap {CONFIGMAP_NAME}"
    );
    let mut last_inputs: Option<(Cluster, Vec<SpeakerLease>)> = None;
    let mut issues_logged: Vec<String> = Vec::new();
    let mut last_error: Option<String> = None;
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut retry_delay = RETRY;
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
    let mut force = true;
    let mut last_took = Duration::ZERO;
    loop {
        if !force {
            let retry = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = notify.notified() => {}
                () = retry => force = true,
                _ = recheck.tick() => force = true,
                () = &mut stop => return,
            }
            tokio::select! {
                () = tokio::time::sleep(coalesce(last_took)) => {}
                () = &mut stop => return,
            }
        }
        let started = tokio::time::Instant::now();
        let inputs = watched.snapshot();
        if !force && last_inputs.as_ref() == Some(&inputs) {
            continue;
        }
        force = false;
        retry_at = None;
        let published = current.as_ref().and_then(|c| c.0.clone());
        let settings = publishing.settings.clone();
        // The inputs go to the planning thread and come back, to be compared with the next snapshot: one copy
        // of every Service, not two.
        let planned = tokio::task::spawn_blocking(move || {
            let (cluster, leases) = &inputs;
            let planned = vrid_plan::publication(cluster, leases, published.as_ref(), &settings, SystemTime::now());
            // A plan of every Service is the controller's largest transient allocation by far.
            openelb_k8s::heap::release_free_pages();
            (planned, inputs)
        })
        .await;
        last_took = started.elapsed();
        let ((publication, issues), inputs) = match planned {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("VRID assignment: planning failed ({e}); the published assignment stays");
                continue;
            }
        };
        report_issues(&metrics, &issues, &mut issues_logged);
        // The gauges follow the ConfigMap: set once it holds this publication (written now, or already).
        let gauges = |p: &Published| {
            metrics.vrrp_published_groups.set(i64::try_from(p.assignment.vrids.len()).unwrap_or(i64::MAX));
            metrics.vrrp_foreign_vrids.set(i64::try_from(p.foreign.len()).unwrap_or(i64::MAX));
        };
        if current.as_ref().and_then(|c| c.0.as_ref()) == Some(&publication) {
            gauges(&publication);
            last_inputs = Some(inputs);
            continue;
        }
        match write(&api, &publishing.namespace, &publication, current.as_ref().map(|c| c.1.as_str())).await {
            Ok(version) => {
                metrics.vrrp_assignment_writes.inc();
                if last_error.take().is_some() {
                    tracing::info!("writing the VRID assignment works again");
                }
                tracing::info!(
                    groups = publication.assignment.vrids.len(),
                    foreign = publication.foreign.len(),
                    "published the VRID assignment"
                );
                gauges(&publication);
                retry_delay = RETRY;
                current = Some((Some(publication), version));
                last_inputs = Some(inputs);
            }
            Err(e) => {
                metrics.vrrp_assignment_errors.inc();
                let message = e.to_string();
                if last_error.as_ref() != Some(&message) {
                    tracing::warn!(namespace = %publishing.namespace, "VRID assignment: {message}; retrying");
                    last_error = Some(message);
                }
                if matches!(&e, WriteError::Api(kube::Error::Api(s)) if s.code == 409) {
                    // Someone else wrote it: start again from what it holds now.
                    if let Ok(c) = read(&api).await {
                        current = c;
                    }
                }
                retry_at = Some(tokio::time::Instant::now() + retry_delay);
                retry_delay = (retry_delay * 2).min(RETRY_MAX);
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("writing ConfigMap {CONFIGMAP_NAME}: {0}")]
    Api(#[from] kube::Error),
    #[error("ConfigMap {CONFIGMAP_NAME}: the publication takes {0} bytes, more than a ConfigMap holds; not written")]
    TooLarge(usize),
}

/// Creates the ConfigMap, or replaces the version `version`; returns the new `resourceVersion`.
async fn write(
    api: &Api<corev1::ConfigMap>,
    namespace: &str,
    publication: &Published,
    version: Option<&str>,
) -> Result<String, WriteError> {
    let mut cm = publication.to_configmap(namespace);
    let size: usize = cm.data.iter().flatten().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_BYTES {
        return Err(WriteError::TooLarge(size));
    }
    let written = match version {
        None => api.create(&PostParams::default(), &cm).await?,
        Some(v) => {
            cm.metadata.resource_version = Some(v.to_string());
            api.replace(CONFIGMAP_NAME, &PostParams::default(), &cm).await?
        }
    };
    Ok(written.metadata.resource_version.unwrap_or_default())
}

/// The issue gauge at every plan; a warning per issue when the set changed.
fn report_issues(metrics: &Metrics, issues: &[PlanIssue], logged: &mut Vec<String>) {
    for kind in PlanIssue::KINDS {
        let n = issues.iter().filter(|i| i.kind() == kind).count();
        metrics.vrrp_plan_issues.get_or_create(&KindLabels { kind }).set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    let texts: Vec<String> = issues.iter().map(ToString::to_string).collect();
    if texts != *logged {
        for t in texts.iter().filter(|t| !logged.contains(t)) {
            tracing::warn!("VRRP plan: {t}");
        }
        *logged = texts;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, address: &str, protocol: Protocol) -> Pool {
        Pool {
            name: name.into(),
            address: address.into(),
            protocol,
            interface: None,
            disable: false,
            priority: 0,
            namespaces: Vec::new(),
            namespace_selector: Default::default(),
            is_default: false,
            default_annotation: None,
            deleting: false,
            used: Default::default(),
        }
    }

    fn held(name: &str, ip: &str, label: Option<&str>) -> Arc<Decoded<corev1::Service>> {
        let labels = label.map(|l| serde_json::json!({ LABEL_EIP_POOL: l })).unwrap_or(serde_json::json!({}));
        Arc::new(Decoded::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": name, "namespace": "ns", "labels": labels,
                          "annotations": { openelb_core::model::ANNOTATION_LB: "openelb" } },
            "spec": { "type": "LoadBalancer", "ports": [{ "port": 80 }] },
            "status": { "loadBalancer": { "ingress": [{ "ip": ip }] } },
        })))
    }

    #[test]
    fn only_holders_of_vip_addresses_are_planned_and_the_plan_is_the_same_without_the_others() {
        let pools = [
            pool("vip", "192.0.2.0/28", Protocol::Vip),
            pool("bgp", "198.51.100.0/28", Protocol::Bgp),
            pool("bgp-other", "192.0.2.64/28", Protocol::Bgp),
        ];
        let services = [
            held("in-vip-range", "192.0.2.1", None),
            held("bgp", "198.51.100.1", None),
            // Labelled with the VIP pool, outside its range: a holder it keeps (a shrunk pool).
            held("labelled-vip", "198.51.100.9", Some("vip")),
            // Shares that address through another pool: kept, so the address lands where it would anyway.
            held("a-sharer", "198.51.100.9", Some("bgp")),
            held("bgp-other", "192.0.2.70", Some("bgp-other")),
            held("waiting", "", None),
        ];
        let kept = announced(&pools, &services);
        let mut names: Vec<&str> = kept.iter().filter_map(|w| w.reference.name.as_deref()).collect();
        names.sort_unstable();
        assert_eq!(names, ["a-sharer", "in-vip-range", "labelled-vip"]);

        let all: Vec<WatchedService> =
            services.iter().filter_map(|s| snapshot::service((**s).as_result().ok()?).ok()).collect();
        let node: corev1::Node = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Node", "metadata": { "name": "n1" },
            "status": { "addresses": [{ "type": "InternalIP", "address": "192.0.2.250" }] },
        }))
        .unwrap();
        let nodes = [snapshot::node(&node).unwrap()];
        let plan = |svcs: &[WatchedService]| {
            let (cluster, _) = snapshot::build(&pools, svcs, &nodes, &[]);
            openelb_core::vrrp::inputs::PlanInputs::from_ingress(&cluster).0.targets
        };
        assert_eq!(plan(&kept), plan(&all));
        assert!(!plan(&kept).is_empty());
        assert!(announced(&pools[1..], &services).is_empty(), "no VIP pool: nothing to plan");
    }

    #[test]
    fn a_slow_plan_spaces_the_next_one_within_bounds() {
        assert_eq!(coalesce(Duration::ZERO), COALESCE);
        assert_eq!(coalesce(Duration::from_millis(500)), Duration::from_secs(5));
        assert_eq!(coalesce(Duration::from_secs(60)), COALESCE_MAX);
    }
}
