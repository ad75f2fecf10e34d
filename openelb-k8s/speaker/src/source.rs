//! The speaker's Kubernetes source: watches of Eips, Services, Nodes and the endpoints objects the API server
//! serves ([`EndpointsKind`], chosen from discovery at start), kept as converted values per object, turned into a
//! [`Cluster`] snapshot and sent as [`Control::Reload`] when it changed ([`COALESCE`]).
//!
//! Every kind is watched as [`Decoded`] objects (one that does not decode is logged, counted and left out; an
//! Eip is salvaged, [`openelb_k8s::crd::salvaged`], so its Services keep their VIPs) and as a reflector, so no
//! snapshot is ever built from a partial listing. When the API goes away the last snapshot stays
//! ([`PROBE_PERIOD_LOST`]); a refusal (403, 404) is not a loss. Why: docs/election.md#api-server-outage and
//! docs/architecture.md#the-api-is-the-only-durable-state. SIGHUP re-lists everything.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::{BoxStream, SelectAll};
use k8s_openapi::api::core::v1 as corev1;
use k8s_openapi::api::discovery::v1 as discoveryv1;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use openelb_core::model::{Cluster, Endpoint, Node, Pool, ServiceKey};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::desired::without_unannounced;
use super::driver::Control;
use super::events::ServiceRefs;
use super::snapshot::{self, EndpointsKind, WatchedService};
use openelb_k8s::convert::ConvertError;
use openelb_k8s::crd::{self, Eip};
use openelb_k8s::decoded::{Decoded, Undecodable};
use openelb_k8s::serve::KindLabels;

/// The least time between two snapshots. A change after a quiet spell is taken at once (the Service status
/// write that gives a VIP is what a client waits for); changes within this long of the last snapshot are
/// gathered into the next one, so a burst costs one snapshot per interval. Changes that cannot alter the
/// snapshot (Node heartbeats, Eip status, Services that are not ours) do not arm it, and an unchanged snapshot
/// is not sent.
pub const COALESCE: Duration = Duration::from_millis(5);
/// How often the wait for the first complete listing is logged.
pub const WAIT_LOG_PERIOD: Duration = Duration::from_secs(10);
/// How often `/version` is probed while the API server is lost, so its return is noticed without a change. Loss
/// and return are logged once each, and `openelb_speaker_api_connected` follows; the watches themselves retry
/// with kube-runtime's default back-off (0.8 s doubling to 30 s, jittered).
pub const PROBE_PERIOD_LOST: Duration = Duration::from_secs(2);
/// How often it is probed while connected (a silent network partition shows no watch error for minutes).
pub const PROBE_PERIOD_CONNECTED: Duration = Duration::from_secs(30);
/// Longest a probe or a discovery request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const DISCOVERY_BACKOFF_MAX: Duration = Duration::from_secs(30);

pub use openelb_k8s::client::client;

type WatchItem<K> = Result<watcher::Event<Decoded<K>>, watcher::Error>;

/// One watch event of any kind, so that one task owns every cache and no lock is needed.
// Each message is moved once, from the watch into its cache: boxing would only add an allocation per event.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Eip(WatchItem<Eip>),
    Service(WatchItem<corev1::Service>),
    Node(WatchItem<corev1::Node>),
    Endpoints(WatchItem<corev1::Endpoints>),
    Slice(WatchItem<discoveryv1::EndpointSlice>),
}

/// Converted values of one kind, keyed by `namespace/name` (or `name`), with kube-runtime's reflector
/// semantics: a listing replaces the contents only once it is complete.
struct Cache<V> {
    kind: &'static str,
    synced: bool,
    items: BTreeMap<String, V>,
    buffer: Option<BTreeMap<String, V>>,
    /// Objects whose conversion failed, with the message logged for them (logged again only if it changes).
    bad: BTreeMap<String, String>,
    /// Objects that did not decode, counted once per distinct error.
    undecodable: Counter,
}

fn key_of<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    let name = meta.name.as_deref().unwrap_or_default();
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

impl<V: PartialEq> Cache<V> {
    fn new(kind: &'static str, undecodable: Counter) -> Self {
        Cache { kind, synced: false, items: BTreeMap::new(), buffer: None, bad: BTreeMap::new(), undecodable }
    }

    fn convert<K: Resource<DynamicType = ()>>(
        &mut self,
        obj: &Decoded<K>,
        read: &Reader<'_, K, V>,
    ) -> (String, Option<V>) {
        let key = key_of(obj);
        let obj = match obj {
            Decoded::Ok(obj) => obj,
            Decoded::Undecodable(u) => {
                let salvaged = (read.salvage)(u);
                let message = format!(
                    "{u}; {}",
                    if salvaged.is_some() {
                        "read as far as it reads, as a disabled Eip: its Services keep their VIPs, nothing new is \
                         planned from it"
                    } else {
                        "left out"
                    }
                );
                if self.bad.get(&key) != Some(&message) {
                    tracing::warn!(kind = self.kind, object = %key, "cannot decode object: {message}");
                    self.undecodable.inc();
                    self.bad.insert(key.clone(), message);
                }
                return (key, salvaged);
            }
        };
        match (read.convert)(obj) {
            Ok(v) => {
                if self.bad.remove(&key).is_some() {
                    tracing::info!(kind = self.kind, object = %key, "object readable again");
                }
                (key, v)
            }
            Err(e) => {
                let message = e.to_string();
                if self.bad.get(&key) != Some(&message) {
                    tracing::warn!(kind = self.kind, object = %key, "ignoring object: {message}");
                    self.bad.insert(key.clone(), message);
                }
                (key, None)
            }
        }
    }

    /// Applies one watch event; `true` when the values changed (a completed listing always counts).
    fn apply<K: Resource<DynamicType = ()>>(
        &mut self,
        event: watcher::Event<Decoded<K>>,
        read: Reader<'_, K, V>,
    ) -> bool {
        let convert = &read;
        match event {
            watcher::Event::Init => {
                self.buffer = Some(BTreeMap::new());
                false
            }
            watcher::Event::InitApply(obj) => {
                let (key, value) = self.convert(&obj, convert);
                if let Some(v) = value {
                    self.buffer.get_or_insert_with(BTreeMap::new).insert(key, v);
                }
                false
            }
            watcher::Event::InitDone => {
                self.items = self.buffer.take().unwrap_or_default();
                self.bad.retain(|k, _| !self.items.contains_key(k));
                if !self.synced {
                    tracing::debug!(kind = self.kind, objects = self.items.len(), "first listing complete");
                }
                self.synced = true;
                true
            }
            watcher::Event::Apply(obj) => match self.convert(&obj, convert) {
                (key, Some(v)) => {
                    if self.items.get(&key) == Some(&v) {
                        false
                    } else {
                        tracing::debug!(kind = self.kind, object = %key, "changed");
                        self.items.insert(key, v);
                        true
                    }
                }
                (key, None) => {
                    let removed = self.items.remove(&key).is_some();
                    if removed {
                        tracing::debug!(kind = self.kind, object = %key, "no longer relevant");
                    }
                    removed
                }
            },
            watcher::Event::Delete(obj) => {
                let key = key_of(&obj);
                self.bad.remove(&key);
                let removed = self.items.remove(&key).is_some();
                if removed {
                    tracing::debug!(kind = self.kind, object = %key, "deleted");
                }
                removed
            }
        }
    }
}

/// How one kind's objects become cached values: `convert` for those that decode, `salvage` for those that do not
/// (`None`: the object is left out).
struct Reader<'a, K, V> {
    convert: &'a dyn Fn(&K) -> Result<Option<V>, ConvertError>,
    salvage: &'a dyn Fn(&Undecodable) -> Option<V>,
}

impl<'a, K, V> Reader<'a, K, V> {
    /// Objects that do not decode are left out.
    fn strict(convert: &'a dyn Fn(&K) -> Result<Option<V>, ConvertError>) -> Self {
        Reader { convert, salvage: &|_| None }
    }
}

/// Every cache; the endpoints kind in use decides which of the two endpoint caches counts.
struct Watched {
    eips: Cache<Pool>,
    services: Cache<WatchedService>,
    nodes: Cache<Node>,
    endpoints: Cache<(ServiceKey, Vec<Endpoint>)>,
    slices: Cache<(ServiceKey, Vec<Endpoint>)>,
    kind: EndpointsKind,
}

impl Watched {
    fn new(kind: EndpointsKind, undecodable: &Family<KindLabels, Counter>) -> Self {
        let counter = |kind: &'static str| undecodable.get_or_create_owned(&KindLabels { kind });
        Watched {
            eips: Cache::new("Eip", counter("Eip")),
            services: Cache::new("Service", counter("Service")),
            nodes: Cache::new("Node", counter("Node")),
            endpoints: Cache::new("Endpoints", counter("Endpoints")),
            slices: Cache::new("EndpointSlice", counter("EndpointSlice")),
            kind,
        }
    }

    fn endpoint_cache(&self) -> &Cache<(ServiceKey, Vec<Endpoint>)> {
        match self.kind {
            EndpointsKind::Slices => &self.slices,
            EndpointsKind::Endpoints => &self.endpoints,
        }
    }

    /// Kinds not listed completely yet.
    fn unsynced(&self) -> Vec<&'static str> {
        [
            (self.eips.kind, self.eips.synced),
            (self.services.kind, self.services.synced),
            (self.nodes.kind, self.nodes.synced),
            (self.endpoint_cache().kind, self.endpoint_cache().synced),
        ]
        .into_iter()
        .filter(|(_, synced)| !synced)
        .map(|(kind, _)| kind)
        .collect()
    }

    /// The cluster as the planner reads it: without the Services that plan nothing (a speaker fed from the API
    /// reads the addresses from the ingress), so their changes send no snapshot.
    fn snapshot(&self) -> (Cluster, std::collections::HashMap<ServiceKey, corev1::ObjectReference>) {
        let (mut cluster, refs) = snapshot::build(
            self.eips.items.values(),
            self.services.items.values(),
            self.nodes.items.values(),
            self.endpoint_cache().items.values(),
        );
        without_unannounced(&mut cluster);
        (cluster, refs)
    }

    /// Applies a message; `Ok(changed)`, or the kind and error of a failed watch call.
    fn apply(&mut self, msg: Msg) -> Result<bool, (&'static str, watcher::Error)> {
        fn some<T>(r: Result<T, ConvertError>) -> Result<Option<T>, ConvertError> {
            r.map(Some)
        }
        match msg {
            Msg::Eip(r) => {
                let read = Reader {
                    convert: &|o: &Eip| some(snapshot::pool(o)),
                    salvage: &|u: &Undecodable| snapshot::pool(&crd::salvaged(u)).ok(),
                };
                r.map(|e| self.eips.apply(e, read)).map_err(|e| ("Eip", e))
            }
            Msg::Service(r) => r
                .map(|e| self.services.apply(e, Reader::strict(&|o| some(snapshot::service(o)))))
                .map_err(|e| ("Service", e)),
            Msg::Node(r) => {
                r.map(|e| self.nodes.apply(e, Reader::strict(&|o| some(snapshot::node(o))))).map_err(|e| ("Node", e))
            }
            Msg::Endpoints(r) => r
                .map(|e| self.endpoints.apply(e, Reader::strict(&|o| some(snapshot::endpoints(o)))))
                .map_err(|e| ("Endpoints", e)),
            Msg::Slice(r) => r
                .map(|e| self.slices.apply(e, Reader::strict(&|o| some(snapshot::slice(o)))))
                .map_err(|e| ("EndpointSlice", e)),
        }
    }
}

/// What a failed watch call means for the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// The server did not answer, or answered that it cannot serve (5xx): the API is lost.
    Lost(String),
    /// The server answered and refused (403, 404, ...): a configuration problem of this kind's watch.
    Refused(String),
    /// The resource version expired (410): kube-runtime re-lists on its own.
    Expired,
}

fn classify(error: &watcher::Error) -> Failure {
    let (phase, client_error) = match error {
        watcher::Error::InitialListFailed(e) => ("list", e),
        watcher::Error::WatchStartFailed(e) => ("watch", e),
        watcher::Error::WatchFailed(e) => ("watch stream", e),
        watcher::Error::WatchError(status) if status.code == 410 => return Failure::Expired,
        watcher::Error::WatchError(status) if status.code >= 500 => {
            return Failure::Lost(format!("watch: HTTP {} {}", status.code, status.message));
        }
        watcher::Error::WatchError(status) => {
            return Failure::Refused(format!("watch: HTTP {} {}{}", status.code, status.message, hint(status.code)));
        }
        watcher::Error::NoResourceVersion => return Failure::Refused(error.to_string()),
    };
    match client_error {
        kube::Error::Api(status) if status.code == 410 => Failure::Expired,
        kube::Error::Api(status) if status.code < 500 => {
            Failure::Refused(format!("{phase}: HTTP {} {}{}", status.code, status.message, hint(status.code)))
        }
        kube::Error::Api(status) => Failure::Lost(format!("{phase}: HTTP {} {}", status.code, status.message)),
        other => Failure::Lost(format!("{phase}: {other}")),
    }
}

fn hint(code: u16) -> &'static str {
    match code {
        401 => " (the speaker's credentials are not accepted)",
        403 => " (the speaker's RBAC does not allow it)",
        404 => " (not served: is the Eip CRD installed?)",
        _ => "",
    }
}

/// Whether a message shows that the API server answered. `Init` does not: kube-runtime emits it before it
/// even tries to list.
fn shows_contact(msg: &Msg) -> bool {
    fn ok<K>(r: &WatchItem<K>) -> bool {
        matches!(r, Ok(e) if !matches!(e, watcher::Event::Init))
    }
    match msg {
        Msg::Eip(r) => ok(r),
        Msg::Service(r) => ok(r),
        Msg::Node(r) => ok(r),
        Msg::Endpoints(r) => ok(r),
        Msg::Slice(r) => ok(r),
    }
}

/// Connectivity as the logs and `openelb_speaker_api_connected` show it: each change logged once.
struct Health {
    connected: Option<bool>,
    /// Shared with the probe task, which probes more often while this is false.
    flag: Arc<AtomicBool>,
    gauge: Gauge,
    lost_at: Option<Instant>,
    have_snapshot: bool,
}

impl Health {
    fn new(gauge: Gauge) -> Self {
        Health { connected: None, flag: Arc::new(AtomicBool::new(false)), gauge, lost_at: None, have_snapshot: false }
    }

    fn ok(&mut self) {
        if self.connected == Some(true) {
            return;
        }
        match self.lost_at.take() {
            Some(at) => tracing::info!(
                after_s = at.elapsed().as_secs(),
                "Kubernetes API server reachable again; watches resume from where they were"
            ),
            None => tracing::info!("connected to the Kubernetes API server"),
        }
        self.connected = Some(true);
        self.flag.store(true, Ordering::Relaxed);
        self.gauge.set(1);
    }

    fn lost(&mut self, what: &str, error: &str) {
        if self.connected == Some(false) {
            tracing::debug!(what, %error, "Kubernetes API server still unreachable");
            return;
        }
        if self.have_snapshot {
            tracing::warn!(
                what, %error,
                "lost the Kubernetes API server: keeping the last snapshot (VIPs stay announced, VRRP failover \
                 goes on); watches retry with back-off"
            );
        } else {
            tracing::warn!(
                what, %error,
                "cannot reach the Kubernetes API server; retrying with back-off, no VIPs until the first complete \
                 listing"
            );
        }
        self.connected = Some(false);
        self.flag.store(false, Ordering::Relaxed);
        self.gauge.set(0);
        self.lost_at = Some(Instant::now());
    }
}

/// Probes `/version` and reports each result: every [`PROBE_PERIOD_LOST`] while the API is lost (checked at
/// every step, so a loss shortens the wait at once), every [`PROBE_PERIOD_CONNECTED`] otherwise.
async fn probe_loop(client: Client, connected: Arc<AtomicBool>, tx: mpsc::Sender<Result<(), String>>) {
    let mut last = Instant::now();
    loop {
        tokio::time::sleep(PROBE_PERIOD_LOST).await;
        let period = if connected.load(Ordering::Relaxed) { PROBE_PERIOD_CONNECTED } else { PROBE_PERIOD_LOST };
        if last.elapsed() < period {
            continue;
        }
        let result = match tokio::time::timeout(REQUEST_TIMEOUT, client.apiserver_version()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("GET /version: no answer within {}s", REQUEST_TIMEOUT.as_secs())),
        };
        last = Instant::now();
        if tx.send(result).await.is_err() {
            return;
        }
    }
}

/// This node's InternalIP as its Node object shows it (`Ok(None)`: the Node shows none); one attempt.
pub async fn node_internal_ip(client: &Client, node: &str) -> Result<Option<std::net::IpAddr>, String> {
    let api: Api<corev1::Node> = Api::all(client.clone());
    match tokio::time::timeout(REQUEST_TIMEOUT, api.get(node)).await {
        Ok(Ok(n)) => snapshot::node(&n).map(|n| n.internal_ip).map_err(|e| e.to_string()),
        Ok(Err(e)) => Err(format!("reading Node {node}: {e}")),
        Err(_) => Err(format!("reading Node {node}: no answer within {}s", REQUEST_TIMEOUT.as_secs())),
    }
}

/// The speaker's view of the cluster from the Kubernetes API (see the module documentation).
pub struct KubeSource {
    client: Client,
    refs: ServiceRefs,
    api_connected: Gauge,
    undecodable: Family<KindLabels, Counter>,
    coalesce: Duration,
}

impl KubeSource {
    pub fn new(client: Client) -> Self {
        KubeSource {
            client,
            refs: ServiceRefs::default(),
            api_connected: Gauge::default(),
            undecodable: Family::default(),
            coalesce: COALESCE,
        }
    }

    /// Where objects that do not decode are counted (`openelb_objects_undecodable_total{kind}`).
    pub fn with_undecodable_counter(mut self, family: Family<KindLabels, Counter>) -> Self {
        self.undecodable = family;
        self
    }

    /// Where the Service references for Events are published at every snapshot.
    pub fn with_refs(mut self, refs: ServiceRefs) -> Self {
        self.refs = refs;
        self
    }

    /// The gauge that shows connectivity (`openelb_speaker_api_connected`).
    pub fn with_api_gauge(mut self, gauge: Gauge) -> Self {
        self.api_connected = gauge;
        self
    }

    /// Asks discovery which endpoints kind is served; one attempt.
    async fn discover(&self) -> Result<EndpointsKind, String> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.client.list_api_groups()).await {
            Ok(Ok(groups)) => Ok(snapshot::endpoints_kind(&groups)),
            Ok(Err(e)) => Err(format!("GET /apis: {e}")),
            Err(_) => Err(format!("GET /apis: no answer within {}s", REQUEST_TIMEOUT.as_secs())),
        }
    }

    /// Discovery, retried with doubling back-off until it answers; the wait is logged every
    /// [`WAIT_LOG_PERIOD`].
    async fn discover_until_answered(&self, health: &mut Health) -> EndpointsKind {
        let started = Instant::now();
        let mut logged = started;
        let mut delay = Duration::from_millis(500);
        loop {
            match self.discover().await {
                Ok(kind) => {
                    health.ok();
                    return kind;
                }
                Err(e) => {
                    health.lost("discovery", &e);
                    if logged.elapsed() >= WAIT_LOG_PERIOD {
                        logged = Instant::now();
                        tracing::warn!(
                            waited_s = started.elapsed().as_secs(), error = %e,
                            "still waiting for the Kubernetes API server; no VIPs are planned until it answers"
                        );
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(DISCOVERY_BACKOFF_MAX);
                }
            }
        }
    }

    fn streams(&self, kind: EndpointsKind) -> SelectAll<BoxStream<'static, Msg>> {
        // Any semantic: the first listing comes from the API server's watch cache, not etcd (one speaker per node
        // lists everything at once after a rollout).
        let config = watcher::Config::default().any_semantic();
        fn watch<K>(client: &Client, config: &watcher::Config, wrap: fn(WatchItem<K>) -> Msg) -> BoxStream<'static, Msg>
        where
            K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
        {
            let api = Api::<Decoded<K>>::all(client.clone());
            watcher(api, config.clone()).default_backoff().map(wrap).boxed()
        }
        let c = &self.client;
        let mut all = SelectAll::new();
        all.push(watch::<Eip>(c, &config, Msg::Eip));
        all.push(watch::<corev1::Service>(c, &config, Msg::Service));
        all.push(watch::<corev1::Node>(c, &config, Msg::Node));
        match kind {
            EndpointsKind::Slices => all.push(watch::<discoveryv1::EndpointSlice>(c, &config, Msg::Slice)),
            EndpointsKind::Endpoints => all.push(watch::<corev1::Endpoints>(c, &config, Msg::Endpoints)),
        }
        all
    }

    /// Runs until `shutdown` completes or the speaker stops taking snapshots. `relist` (SIGHUP) restarts every
    /// watch with a full listing.
    pub async fn run(
        self,
        control: mpsc::Sender<Control>,
        mut relist: mpsc::Receiver<()>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut health = Health::new(self.api_connected.clone());
        let kind = tokio::select! {
            k = self.discover_until_answered(&mut health) => k,
            () = &mut shutdown => return,
        };
        tracing::info!(endpoints = kind.as_str(), "watching Eips, Services, Nodes and endpoints");
        let (probe_tx, mut probes) = mpsc::channel(4);
        let probe = tokio::spawn(probe_loop(self.client.clone(), Arc::clone(&health.flag), probe_tx));
        let mut watched = Watched::new(kind, &self.undecodable);
        let mut streams = self.streams(kind);
        let mut last: Option<Cluster> = None;
        let mut due: Option<Instant> = None;
        let mut last_snapshot: Option<Instant> = None;
        let mut relist_open = true;
        let started = Instant::now();
        let mut wait_log = tokio::time::interval_at(started + WAIT_LOG_PERIOD, WAIT_LOG_PERIOD);
        // Per kind: the last refusal logged (cleared by the kind's next success), and the last error of any sort
        // (for the wait log).
        let mut refused: BTreeMap<&'static str, String> = BTreeMap::new();
        let mut last_error: BTreeMap<&'static str, String> = BTreeMap::new();
        loop {
            let sleep = async move {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut shutdown => break,
                Some(msg) = streams.next() => {
                    let kind_of = msg_kind(&msg);
                    let contact = shows_contact(&msg);
                    match watched.apply(msg) {
                        Ok(changed) => {
                            if contact {
                                health.ok();
                                last_error.remove(kind_of);
                                if refused.remove(kind_of).is_some() {
                                    tracing::info!(kind = kind_of, "watch works again");
                                }
                            }
                            if changed && due.is_none() && watched.unsynced().is_empty() {
                                let now = Instant::now();
                                due = Some(last_snapshot.map_or(now, |t| (t + self.coalesce).max(now)));
                            }
                        }
                        Err((kind, error)) => {
                            let failure = classify(&error);
                            match &failure {
                                Failure::Lost(e) => health.lost(kind, e),
                                Failure::Refused(e) => {
                                    health.ok();
                                    if refused.get(kind) != Some(e) {
                                        tracing::warn!(
                                            kind, error = %e,
                                            "watch refused by the API server; retrying with back-off"
                                        );
                                        refused.insert(kind, e.clone());
                                    }
                                }
                                Failure::Expired => tracing::debug!(kind, "watch expired; re-listing"),
                            }
                            last_error.insert(kind, match failure {
                                Failure::Lost(e) | Failure::Refused(e) => e,
                                Failure::Expired => "resource version expired".to_string(),
                            });
                        }
                    }
                }
                () = sleep => {
                    due = None;
                    last_snapshot = Some(Instant::now());
                    let (cluster, refs) = watched.snapshot();
                    self.refs.replace(refs);
                    if last.as_ref() != Some(&cluster) {
                        if last.is_none() {
                            tracing::info!(
                                services = cluster.services.len(),
                                eips = cluster.pools.len(),
                                nodes = cluster.nodes.len(),
                                after_ms = started.elapsed().as_millis() as u64,
                                "first complete listing: planning"
                            );
                        }
                        health.have_snapshot = true;
                        last = Some(cluster.clone());
                        tracing::debug!(services = cluster.services.len(), "snapshot sent");
                        if control.send(Control::Reload(Box::new(cluster))).await.is_err() {
                            break;
                        }
                    }
                }
                r = relist.recv(), if relist_open => match r {
                    Some(()) => {
                        let kind = match self.discover().await {
                            Ok(k) => k,
                            Err(e) => {
                                let kept = watched.kind.as_str();
                                tracing::warn!(error = %e, "re-list: discovery failed; keeping {kept}");
                                watched.kind
                            }
                        };
                        if kind != watched.kind {
                            tracing::info!(from = watched.kind.as_str(), to = kind.as_str(), "endpoints kind changed");
                            watched.kind = kind;
                        }
                        tracing::info!("re-listing every watched kind");
                        streams = self.streams(kind);
                    }
                    None => relist_open = false,
                },
                Some(result) = probes.recv() => match result {
                    Ok(()) => health.ok(),
                    Err(e) => health.lost("probe", &e),
                },
                _ = wait_log.tick(), if last.is_none() => {
                    let missing: Vec<String> = watched
                        .unsynced()
                        .into_iter()
                        .map(|k| match last_error.get(k) {
                            Some(e) => format!("{k} (last error: {e})"),
                            None => k.to_string(),
                        })
                        .collect();
                    tracing::warn!(
                        waited_s = started.elapsed().as_secs(),
                        "still waiting for the first complete listing of: {}; no VIPs are planned until then",
                        missing.join(", ")
                    );
                }
            }
        }
        probe.abort();
    }
}

fn msg_kind(msg: &Msg) -> &'static str {
    match msg {
        Msg::Eip(_) => "Eip",
        Msg::Service(_) => "Service",
        Msg::Node(_) => "Node",
        Msg::Endpoints(_) => "Endpoints",
        Msg::Slice(_) => "EndpointSlice",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, ip: &str, ready: &str) -> Decoded<corev1::Node> {
        Decoded::Ok(corev1::Node {
            metadata: ObjectMeta { name: Some(name.into()), resource_version: Some("1".into()), ..Default::default() },
            status: Some(corev1::NodeStatus {
                addresses: Some(vec![corev1::NodeAddress { type_: "InternalIP".into(), address: ip.into() }]),
                conditions: Some(vec![corev1::NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn conv_node(n: &corev1::Node) -> Result<Option<Node>, ConvertError> {
        snapshot::node(n).map(Some)
    }

    fn conv() -> Reader<'static, corev1::Node, Node> {
        Reader::strict(&conv_node)
    }

    fn cache<V: PartialEq>(kind: &'static str) -> Cache<V> {
        Cache::new(kind, Counter::default())
    }

    #[test]
    fn a_listing_replaces_the_cache_only_when_complete() {
        let mut c: Cache<Node> = cache("Node");
        assert!(!c.apply(watcher::Event::Init, conv()));
        assert!(!c.apply(watcher::Event::InitApply(node("a", "192.0.2.3", "True")), conv()));
        assert!(!c.synced && c.items.is_empty(), "nothing visible mid-listing");
        assert!(c.apply(watcher::Event::InitDone, conv()));
        assert!(c.synced);
        assert_eq!(c.items.len(), 1);

        // A re-list keeps serving the old contents until it is done, then drops what it did not see.
        c.apply(watcher::Event::Init, conv());
        c.apply(watcher::Event::InitApply(node("b", "192.0.2.4", "True")), conv());
        assert!(c.items.contains_key("a"));
        c.apply(watcher::Event::InitDone, conv());
        assert_eq!(c.items.keys().collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn only_changes_of_the_converted_value_count() {
        let mut c: Cache<Node> = cache("Node");
        c.apply(watcher::Event::Init, conv());
        c.apply(watcher::Event::InitDone, conv());
        assert!(c.apply(watcher::Event::Apply(node("a", "192.0.2.3", "True")), conv()));
        let mut heartbeat = node("a", "192.0.2.3", "True");
        heartbeat.meta_mut().resource_version = Some("2".into());
        assert!(!c.apply(watcher::Event::Apply(heartbeat), conv()), "a heartbeat changes nothing we read");
        assert!(c.apply(watcher::Event::Apply(node("a", "192.0.2.3", "False")), conv()));
        assert!(c.apply(watcher::Event::Delete(node("a", "192.0.2.3", "False")), conv()));
        assert!(!c.apply(watcher::Event::Delete(node("a", "192.0.2.3", "False")), conv()));
    }

    #[test]
    fn an_unreadable_object_is_dropped_and_remembered() {
        let mut c: Cache<Node> = cache("Node");
        c.apply(watcher::Event::Apply(node("a", "192.0.2.3", "True")), conv());
        assert!(c.apply(watcher::Event::Apply(node("a", "not-an-ip", "True")), conv()));
        assert!(c.items.is_empty());
        assert!(c.bad.get("a").is_some_and(|m| m.contains("not-an-ip")));
        assert!(c.apply(watcher::Event::Apply(node("a", "192.0.2.3", "True")), conv()));
        assert!(c.bad.is_empty());
    }

    /// One object that does not decode is counted and logged once, and never hides the others.
    #[test]
    fn an_undecodable_node_is_left_out_and_counted_once() {
        let undecodable = Counter::default();
        let mut c: Cache<Node> = Cache::new("Node", undecodable.clone());
        c.apply(watcher::Event::Init, conv());
        c.apply(watcher::Event::InitApply(node("a", "192.0.2.3", "True")), conv());
        let bad = serde_json::json!({"metadata": {"name": "b"}, "status": {"addresses": [{"type": 5}]}});
        let bad = Decoded::<corev1::Node>::from_value(bad);
        assert!(matches!(bad, Decoded::Undecodable(_)));
        c.apply(watcher::Event::InitApply(bad.clone()), conv());
        assert!(c.apply(watcher::Event::InitDone, conv()));
        assert_eq!(c.items.keys().collect::<Vec<_>>(), ["a"]);
        assert!(c.bad.get("b").is_some_and(|m| m.contains("status.addresses[0].type")), "{:?}", c.bad);
        assert!(!c.apply(watcher::Event::Apply(bad), conv()));
        assert_eq!(undecodable.get(), 1, "the same error is counted once");
    }

    /// An Eip that does not decode keeps its Services' VIPs: it is read as far as it reads.
    #[test]
    fn an_undecodable_eip_is_read_as_a_disabled_pool() {
        let mut w = Watched::new(EndpointsKind::Endpoints, &Family::default());
        let bad = serde_json::json!({"metadata": {"name": "odd"},
            "spec": {"address": "192.0.2.10-192.0.2.20", "protocol": "vip", "interface": "eth0", "priority": "x"}});
        let msg = Msg::Eip(Ok(watcher::Event::Apply(Decoded::from_value(bad))));
        assert_eq!(w.apply(msg).ok(), Some(true));
        let pool = &w.eips.items["odd"];
        assert_eq!((pool.address.as_str(), pool.interface.as_deref()), ("192.0.2.10-192.0.2.20", Some("eth0")));
        assert!(pool.disable && pool.protocol == openelb_core::model::Protocol::Vip, "{pool:?}");
        assert!(w.eips.bad["odd"].contains("spec.priority \"x\""), "{:?}", w.eips.bad);
    }

    #[test]
    fn no_snapshot_before_every_kind_is_listed() {
        let mut w = Watched::new(EndpointsKind::Endpoints, &Family::default());
        assert_eq!(w.unsynced(), ["Eip", "Service", "Node", "Endpoints"]);
        for msg in [
            Msg::Eip(Ok(watcher::Event::InitDone)),
            Msg::Service(Ok(watcher::Event::InitDone)),
            Msg::Node(Ok(watcher::Event::InitDone)),
            Msg::Slice(Ok(watcher::Event::InitDone)),
        ] {
            assert_eq!(w.apply(msg).ok(), Some(true));
        }
        assert_eq!(w.unsynced(), ["Endpoints"], "slices do not stand in for Endpoints");
        w.apply(Msg::Endpoints(Ok(watcher::Event::InitDone))).ok();
        assert!(w.unsynced().is_empty());
        w.kind = EndpointsKind::Slices;
        assert!(w.unsynced().is_empty());
    }

    #[test]
    fn refusals_losses_and_expiries_are_told_apart() {
        let status =
            |code: u16| Box::new(kube::core::Status { code, message: format!("code {code}"), ..Default::default() });
        let api = |code| watcher::Error::InitialListFailed(kube::Error::Api(status(code)));
        assert_eq!(
            classify(&api(403)),
            Failure::Refused("list: HTTP 403 code 403 (the speaker's RBAC does not allow it)".into())
        );
        assert!(matches!(classify(&api(404)), Failure::Refused(m) if m.contains("CRD")));
        assert!(matches!(classify(&api(503)), Failure::Lost(_)));
        assert_eq!(classify(&watcher::Error::WatchError(status(410))), Failure::Expired);
        assert!(matches!(classify(&watcher::Error::WatchError(status(500))), Failure::Lost(_)));
        let io = kube::Error::Service(Box::new(std::io::Error::other("connection refused")));
        assert!(
            matches!(classify(&watcher::Error::WatchFailed(io)), Failure::Lost(m) if m.contains("connection refused"))
        );
    }

    #[test]
    fn only_answers_show_contact_not_the_start_of_a_listing() {
        assert!(!shows_contact(&Msg::Eip(Ok(watcher::Event::Init))));
        assert!(shows_contact(&Msg::Eip(Ok(watcher::Event::InitDone))));
        assert!(!shows_contact(&Msg::Node(Err(watcher::Error::NoResourceVersion))));
    }
}
