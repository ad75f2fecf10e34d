//! `openelb-controller`: gives LoadBalancer Services addresses from Eips, against the Kubernetes API.
//!
//! A process mirrors the Eips and Namespaces into caches ([`mirror`]) and is ready (`/readyz`) once they are synced. One
//! replica at a time holds the Lease ([`leader`]) and runs a *term*: it gives back the addresses of Services
//! deleted while no one watched ([`sweep`]), then, until the Lease is lost or the process stops, runs:
//! - on Services ([`reconcile`], decisions in [`service_writes`]): allocation, Service status, label and
//!   finalizer, the Eip's `used`; Eip and Namespace changes re-enqueue the Services they can concern;
//! - on Eips ([`eip_reconcile`], decisions in [`eip_writes`], status in [`eip_status`] and [`conditions`]):
//!   finalizer, status, conditions, the end of a deletion; any Eip change re-enqueues every Eip (overlaps and a
//!   second default depend on the others);
//! - [`vrid_publish`] (decisions in [`vrid_plan`]): the ConfigMap `openelb-vrrp` with the VRID assignment.
//!
//! Watches decode objects one at a time ([`undecodable`]). Every write is guarded by the `resourceVersion` it was
//! computed from and by the term. Why: docs/architecture.md, docs/allocation.md#concurrent-writers, docs/vrrp.md.

pub mod conditions;
pub mod eip_commit;
pub mod eip_reconcile;
pub mod eip_status;
pub mod eip_writes;
pub mod events;
pub mod leader;
pub mod lean;
pub mod ledger;
pub mod metrics;
pub mod mirror;
pub mod reconcile;
pub mod service_writes;
pub mod sweep;
pub mod undecodable;
pub mod vrid_plan;
pub mod vrid_publish;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1 as corev1;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, controller, watcher};
use kube::{Api, Client, ResourceExt};
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;

pub use leader::{ElectionError, LeaderElection};
pub use reconcile::{Context, FIELD_MANAGER, ReconcileError};
pub use vrid_plan::VridSettings;
pub use vrid_publish::VridPublishing;

use events::Events;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use metrics::Metrics;
use mirror::{Changes, Tasks, mirror};
use openelb_core::model::ServiceKey;
use openelb_k8s::background::BackgroundThread;
use openelb_k8s::convert;
use openelb_k8s::crd::Eip;
use openelb_k8s::decoded::Decoded;
use openelb_k8s::serve::{self, Readiness, ServeError};
use undecodable::Reporter;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the {0} cache stopped before its first listing")]
    CacheNeverReady(&'static str),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("cannot start the controller runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("the controller thread panicked")]
    Panicked,
}

pub use openelb_k8s::client::{ClientError, client};

/// How a controller process runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// `None`: this replica always writes (a single replica, or tests).
    pub leader_election: Option<LeaderElection>,
    /// Names this replica in Events (`reportingInstance`); the Lease identity when electing.
    pub identity: String,
    /// Where and how the leader publishes the VRID assignment; `None`: it does not.
    pub vrid_publishing: Option<VridPublishing>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            leader_election: None,
            identity: leader::default_identity(),
            vrid_publishing: Some(VridPublishing::default()),
        }
    }
}

/// What the controller shares with its HTTP endpoints: the metrics registry, readiness, and the Eip cache
/// (the per-Eip gauges read it at each scrape, so it exists before the controller fills it).
pub struct Telemetry {
    registry: Arc<Registry>,
    readiness: Readiness,
    metrics: Metrics,
    eip_cache: reflector::store::Writer<Eip>,
}

impl Default for Telemetry {
    fn default() -> Self {
        let (store, eip_cache) = reflector::store();
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry, store);
        Telemetry { registry: Arc::new(registry), readiness: Readiness::default(), metrics, eip_cache }
    }
}

impl Telemetry {
    /// Binds `/metrics`, `/healthz` and `/readyz` on `addr`; the returned future serves until `shutdown`.
    pub async fn serve<F>(
        &self,
        addr: SocketAddr,
        shutdown: F,
    ) -> Result<(SocketAddr, impl Future<Output = Result<(), ServeError>> + use<F>), ServeError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        serve::bind(addr, self.registry.clone(), self.readiness.clone(), shutdown).await
    }
}

/// Stops a term or the whole process; every part waiting on it gets a clone.
type Stop = Shared<BoxFuture<'static, ()>>;

/// The Services of the Service controller's cache, as far as they decode (one that does not is left as it is).
type ServiceStore = Store<Decoded<corev1::Service>>;

/// Every Service in the cache that a change of its pools or namespace could concern.
fn services_to_recheck(services: &ServiceStore, namespace: Option<&str>) -> Vec<ObjectRef<Decoded<corev1::Service>>> {
    services
        .state()
        .iter()
        .filter(|s| (***s).as_result().is_ok_and(service_writes::concerns_us))
        .filter(|s| namespace.is_none_or(|ns| s.namespace().as_deref() == Some(ns)))
        .map(|s| ObjectRef::from_obj(&**s))
        .collect()
}

/// What of an Eip decides what a change of it concerns: its spec (by generation), its deletion and whether it
/// claims to be the default (an annotation, which no generation counts).
type EipShape = (Option<i64>, bool, Option<String>);

/// Whether `eip` changed shape since `shapes` last saw it (and remembers it).
fn reshaped(eip: &ObjectMeta, shapes: &std::sync::Mutex<std::collections::HashMap<String, EipShape>>) -> bool {
    let name = eip.name.clone().unwrap_or_default();
    let default = eip.annotations.as_ref().and_then(|a| a.get(openelb_core::model::ANNOTATION_DEFAULT_EIP)).cloned();
    let shape = (eip.generation, eip.deletion_timestamp.is_some(), default);
    let mut shapes = shapes.lock().unwrap_or_else(|p| p.into_inner());
    shapes.insert(name, shape.clone()) != Some(shape)
}

/// The Services an Eip change may concern: those still waiting for an address (a pool appeared, grew, was
/// enabled or freed one), and, when its shape changed, those holding an address from it or pinned to it. A status
/// write (many per burst of allocations) concerns nobody else: re-checking every Service on each made
/// allocating N Services cost N² reconciles.
fn services_for_eip(
    services: &ServiceStore,
    ctx: &Context,
    eip: &ObjectMeta,
    shapes: &std::sync::Mutex<std::collections::HashMap<String, EipShape>>,
) -> Vec<ObjectRef<Decoded<corev1::Service>>> {
    let mut out = Vec::new();
    for (ns, name) in ctx.waiting() {
        let service = ObjectRef::new(&name).within(&ns);
        if services.get(&service).is_some() {
            out.push(service);
        } else {
            // Deleted while it waited.
            ctx.set_waiting(openelb_core::model::ServiceKey::new(ns, name), false);
        }
    }
    if !reshaped(eip, shapes) {
        return out;
    }
    let name = eip.name.clone().unwrap_or_default();
    out.extend(
        services
            .state()
            .iter()
            .filter(|d| {
                let Ok(s) = (***d).as_result() else { return false };
                let label = s.metadata.labels.as_ref().and_then(|l| l.get(openelb_core::model::LABEL_EIP_POOL));
                let pin = s.metadata.annotations.as_ref().and_then(|a| a.get(openelb_core::model::ANNOTATION_EIP_POOL));
                (label == Some(&name) || pin == Some(&name)) && service_writes::concerns_us(s)
            })
            .map(|s| ObjectRef::from_obj(&**s)),
    );
    out
}

/// What each term takes from the process.
struct Parts {
    client: Client,
    eips: Store<Eip>,
    /// The Eips that change, from the one watch that fills `eips`: both controllers trigger on them.
    eip_changes: Changes<Eip>,
    namespaces: Store<corev1::Namespace>,
    metrics: Metrics,
    identity: String,
    vrid_publishing: Option<VridPublishing>,
    /// Woken on every change of the caches the VRID publisher reads.
    vrid_inputs_changed: Arc<tokio::sync::Notify>,
}

/// Service reconciles running at once: enough to keep a few Eip writes and many Service writes in flight.
const SERVICE_CONCURRENCY: u16 = 32;
const SWEEP_RETRY_FIRST: Duration = Duration::from_millis(500);
const SWEEP_RETRY_MAX: Duration = Duration::from_secs(30);

/// The Services are listed in one answer from the API server's watch cache (`resourceVersion=0` without a
/// limit) rather than page by page from etcd: at a term's start that is most of the wait for 5000 Services. The
/// copy may be a little behind etcd; every write a decision makes is guarded by the `resourceVersion` it was
/// taken from, so a stale copy costs a refused write and a retry, never a wrong one.
fn whole_list_from_cache() -> watcher::Config {
    watcher::Config { page_size: None, ..watcher::Config::default().any_semantic() }
}

/// Gives back the addresses of Services gone while nobody watched ([`sweep`]) once `services` is listed, retrying
/// until it succeeds, then sets `swept` (also when the term stops first).
async fn sweep_once_listed(
    ctx: &Context,
    services: &ServiceStore,
    swept: tokio::sync::watch::Sender<bool>,
    stop: Stop,
) {
    let run = async {
        if services.wait_until_ready().await.is_err() {
            return;
        }
        let mut retry = SWEEP_RETRY_FIRST;
        loop {
            let cached = services
                .state()
                .iter()
                .map(|s| ServiceKey::new(convert::namespace_of(s.meta()), s.name_any()))
                .collect();
            match sweep::run(ctx, cached).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!("releasing the addresses of deleted Services: {e}; retrying in {retry:?}");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(SWEEP_RETRY_MAX);
                }
            }
        }
    };
    tokio::select! {
        () = run => {}
        () = stop => {}
    }
    let _ = swept.send(true);
}

/// One leadership term: both controllers until `stop`, their reconciles held until the sweep is done.
async fn term(parts: &Parts, stop: Stop) {
    let events = Events::new(parts.client.clone(), parts.identity.clone());
    let ctx = Arc::new(Context::new(
        parts.client.clone(),
        parts.eips.clone(),
        parts.namespaces.clone(),
        events,
        parts.metrics.clone(),
    ));
    tracing::info!(eips = parts.eips.state().len(), "starting the Service and Eip controllers");
    let wc = watcher::Config::default;
    // Decisions are taken one at a time in the ledger; their writes overlap. Eips are few.
    let services_config = controller::Config::default().concurrency(SERVICE_CONCURRENCY);
    let one_at_a_time = || controller::Config::default().concurrency(1);

    // Every watch of the two controllers reads `Decoded` objects: one that does not decode never fails a listing.
    let (services_cache, services_writer) = reflector::store();
    let changed = parts.vrid_inputs_changed.clone();
    let services_watch = watcher(Api::<Decoded<corev1::Service>>::all(parts.client.clone()), whole_list_from_cache())
        .default_backoff()
        .modify(lean::Lean::lean)
        .reflect(services_writer)
        .inspect(move |event| match event {
            Ok(watcher::Event::InitDone) => {
                tracing::info!("Services listed");
                // The listing was the term's largest transient allocation.
                openelb_k8s::heap::release_free_pages();
                changed.notify_one();
            }
            Ok(_) => changed.notify_one(),
            Err(_) => {}
        })
        .applied_objects();
    let svc_controller = Controller::for_stream(services_watch, services_cache).with_config(services_config);
    let services = svc_controller.store();
    let (swept_tx, swept_rx) = tokio::sync::watch::channel(false);
    let listed = services.clone();
    let sweep = sweep_once_listed(&ctx, &listed, swept_tx, stop.clone());
    // Reconciles wait until the sweep is done (or the term stops).
    let swept = move || {
        let mut swept = swept_rx.clone();
        async move {
            let _ = swept.wait_for(|done| *done).await;
        }
    };
    let swept_for_eips = swept.clone();
    let shared = vrid_publish::Shared {
        eips: parts.eips.clone(),
        services: services.clone(),
        changed: parts.vrid_inputs_changed.clone(),
    };
    let for_eips = services.clone();
    let shapes = std::sync::Mutex::new(std::collections::HashMap::new());
    let ctx_for_eips = ctx.clone();
    let services_done = svc_controller
        .watches_shared_stream(parts.eip_changes.subscribe(&parts.eips), move |eip: Arc<Eip>| {
            services_for_eip(&for_eips, &ctx_for_eips, eip.meta(), &shapes)
        })
        .watches(
            Api::<Decoded<corev1::Namespace>>::all(parts.client.clone()),
            wc(),
            move |ns: Decoded<corev1::Namespace>| services_to_recheck(&services, Some(&ns.name_any())),
        )
        .graceful_shutdown_on(stop.clone())
        .run(
            move |svc, ctx| {
                let swept = swept();
                async move {
                    swept.await;
                    reconcile::reconcile(svc, ctx).await
                }
            },
            reconcile::error_policy,
            ctx.clone(),
        )
        .for_each(|result| async move {
            match result {
                Ok((svc, _)) => tracing::trace!(service = %svc, "reconciled"),
                Err(controller::Error::ReconcilerFailed(e, svc)) => tracing::debug!(service = %svc, "{e}"),
                // Re-enqueued by an Eip or Namespace change just after it was deleted: nothing to do.
                Err(controller::Error::ObjectNotFound(svc)) => tracing::debug!(service = %svc, "gone"),
                Err(e) => tracing::warn!("Service controller: {e}"),
            }
        });

    // The process's Eip cache and watch, not a copy of their own: each Eip may hold thousands of `used` entries.
    let eip_controller = Controller::for_shared_stream(parts.eip_changes.subscribe(&parts.eips), parts.eips.clone())
        .with_config(one_at_a_time());
    let all_eips = parts.eips.clone();
    let eip_shapes = std::sync::Mutex::new(std::collections::HashMap::new());
    // Overlaps and a second default make one Eip's conditions depend on the others' shape.
    let eips_done = eip_controller
        .watches_shared_stream(parts.eip_changes.subscribe(&parts.eips), move |eip: Arc<Eip>| {
            if !reshaped(eip.meta(), &eip_shapes) {
                return Vec::new();
            }
            all_eips.state().iter().map(|e| ObjectRef::from_obj(e.as_ref())).collect::<Vec<_>>()
        })
        .graceful_shutdown_on(stop.clone())
        .run(
            move |eip, ctx| {
                let swept = swept_for_eips();
                async move {
                    swept.await;
                    eip_reconcile::reconcile(eip, ctx).await
                }
            },
            eip_reconcile::error_policy,
            ctx.clone(),
        )
        .for_each(|result| async move {
            match result {
                Ok((eip, _)) => tracing::trace!(eip = %eip, "reconciled"),
                Err(controller::Error::ReconcilerFailed(e, eip)) => tracing::debug!(eip = %eip, "{e}"),
                Err(controller::Error::ObjectNotFound(eip)) => tracing::debug!(eip = %eip, "gone"),
                Err(e) => tracing::warn!("Eip controller: {e}"),
            }
        });

    // The gate closes the moment the term is told to stop; running reconciles then stop at their next write.
    let close_gate = async {
        stop.clone().await;
        ctx.stop_writing();
    };
    let publish = async {
        if let Some(p) = parts.vrid_publishing.clone() {
            vrid_publish::run(parts.client.clone(), p, shared, parts.metrics.clone(), stop.clone()).await;
        }
    };
    futures::join!(sweep, services_done, eips_done, close_gate, publish);
}

/// Runs the controller until `shutdown` completes; see the module documentation.
pub async fn run(
    client: Client,
    options: Options,
    telemetry: Telemetry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ControllerError> {
    let stop: Stop = shutdown.boxed().shared();
    let Telemetry { readiness, metrics, eip_cache, .. } = telemetry;
    let eip_reporter = Reporter::new(
        "Eip",
        metrics.undecodable("Eip"),
        "read as far as it reads, as a disabled Eip: its Services keep their addresses, nobody gets a new one from \
         it, and its conditions say why",
    );
    let warn = |kind: &'static str| {
        move |seen: Result<(), watcher::Error>| {
            if let Err(e) = seen {
                tracing::warn!("watch of {kind}: {e}");
            }
        }
    };
    let all = watcher::Config::default;
    let vrid_inputs_changed = Arc::new(tokio::sync::Notify::new());
    let eip_seen = {
        let changed = vrid_inputs_changed.clone();
        let warn = warn("Eip");
        move |seen: Result<(), watcher::Error>| {
            if seen.is_ok() {
                changed.notify_one();
            }
            warn(seen);
        }
    };
    let eip_changes = Changes::default();
    let (eips, eip_task) = mirror(
        Api::all(client.clone()),
        all(),
        eip_cache,
        eip_reporter,
        undecodable::salvage_eip,
        Some(eip_changes.clone()),
        eip_seen,
    );
    let ns_reporter = Reporter::new(
        "Namespace",
        metrics.undecodable("Namespace"),
        "left out: its Services are decided as if it had no labels",
    );
    let (namespaces, ns_task) = mirror(
        Api::all(client.clone()),
        all(),
        Default::default(),
        ns_reporter,
        undecodable::leave_out,
        None,
        warn("Namespace"),
    );
    let _tasks = Tasks(vec![eip_task, ns_task]);
    let ready = async {
        eips.wait_until_ready().await.map_err(|_| ControllerError::CacheNeverReady("Eip"))?;
        namespaces.wait_until_ready().await.map_err(|_| ControllerError::CacheNeverReady("Namespace"))
    };
    tokio::select! {
        r = ready => r?,
        () = stop.clone() => return Ok(()),
    }
    readiness.set(true);
    tracing::info!(eips = eips.state().len(), identity = %options.identity, "caches ready");

    let parts = Parts {
        client: client.clone(),
        eips,
        eip_changes,
        namespaces,
        metrics: metrics.clone(),
        identity: options.identity,
        vrid_publishing: options.vrid_publishing,
        vrid_inputs_changed,
    };
    match options.leader_election {
        None => {
            tracing::info!("leader election disabled: this replica writes");
            metrics.leader.set(1);
            term(&parts, stop.clone()).await;
        }
        Some(election) => elect_and_run(&parts, election, stop.clone()).await,
    }
    metrics.leader.set(0);
    readiness.set(false);
    Ok(())
}

/// Standby until this replica holds the Lease, leader for a term, and again, until `stop`.
async fn elect_and_run(parts: &Parts, election: LeaderElection, stop: Stop) {
    let lease = format!("{}/{}", election.namespace(), leader::LEASE_NAME);
    let mut elector = leader::Elector::start(parts.client.clone(), election);
    loop {
        tracing::info!(%lease, "standby: waiting for the Lease");
        tokio::select! {
            () = elector.acquire() => {}
            () = stop.clone() => break,
        }
        let since = SystemTime::now();
        parts.metrics.leader.set(1);
        tracing::info!(%lease, identity = %parts.identity, "leader acquired: this replica writes");

        let (lost_tx, lost_rx) = oneshot::channel::<()>();
        let term_stop: Stop = futures::future::select(stop.clone(), lost_rx).map(|_| ()).boxed().shared();
        let lost = {
            let mut running = std::pin::pin!(term(parts, term_stop));
            let holding = elector.hold(since);
            tokio::select! {
                lost = holding => {
                    // Stop writing first, then let the term wind down.
                    let _ = lost_tx.send(());
                    running.await;
                    Some(lost)
                }
                () = &mut running => None,
            }
        };
        parts.metrics.leader.set(0);
        match lost {
            Some(why) => {
                tracing::warn!(%lease, holder = ?elector.holder(), "leader lost: {why}; writes stopped");
                // Whatever ended the term, never compete again in a tight loop.
                if since.elapsed().unwrap_or_default() < MIN_TERM_GAP {
                    tokio::select! {
                        () = tokio::time::sleep(MIN_TERM_GAP) => {}
                        () = stop.clone() => break,
                    }
                }
            }
            // The term ended because the process stops.
            None => break,
        }
    }
    // A leader lets a standby take over now rather than when the Lease expires.
    elector.release().await;
}

/// A term shorter than this is followed by a pause before competing again.
const MIN_TERM_GAP: Duration = Duration::from_secs(1);

/// A controller on its own thread and runtime, for callers that have none (tests, tools).
pub struct Background {
    thread: BackgroundThread<ControllerError>,
    metrics_addr: Option<SocketAddr>,
}

impl Background {
    /// Starts a controller with the client from `kubeconfig`, without leader election or HTTP endpoints.
    pub fn spawn(kubeconfig: PathBuf) -> Self {
        Self::spawn_with(kubeconfig, Options::default(), None)
    }

    /// Starts a controller with `options`, serving `/metrics`, `/healthz` and `/readyz` on `metrics_addr`
    /// when given (port 0 picks a free port: see [`Background::metrics_addr`]). Returns once they are bound.
    pub fn spawn_with(kubeconfig: PathBuf, options: Options, metrics_addr: Option<SocketAddr>) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let (bound_tx, bound_rx) = std::sync::mpsc::channel::<Option<SocketAddr>>();
        let thread = std::thread::spawn(move || {
            let bound_tx2 = bound_tx.clone();
            let result = (|| {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(ControllerError::Runtime)?;
                runtime.block_on(async move {
                    let stop: Stop = async move {
                        let _ = stopped.await;
                    }
                    .boxed()
                    .shared();
                    let telemetry = Telemetry::default();
                    let server = match metrics_addr {
                        Some(addr) => {
                            let (bound, server) = telemetry.serve(addr, stop.clone()).await?;
                            let _ = bound_tx.send(Some(bound));
                            Some(tokio::spawn(server))
                        }
                        None => {
                            let _ = bound_tx.send(None);
                            None
                        }
                    };
                    let client = client(Some(&kubeconfig)).await?;
                    let result = run(client, options, telemetry, stop).await;
                    if let Some(server) = server {
                        match server.await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => tracing::warn!("{e}"),
                            Err(e) => tracing::warn!("metrics server task: {e}"),
                        }
                    }
                    result
                })
            })();
            // Unblocks `spawn_with` when setting up failed before the address was known.
            let _ = bound_tx2.send(None);
            result
        });
        let metrics_addr = bound_rx.recv().ok().flatten();
        let stop = move || {
            let _ = stop.send(());
        };
        Background { thread: BackgroundThread::new(stop, thread), metrics_addr }
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served, if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Stops the controller (a leader releases its Lease) and waits for it; returns how it ended.
    pub fn stop(mut self) -> Result<(), ControllerError> {
        self.thread.stop(|| ControllerError::Panicked)
    }
}
