//! `openelb-speaker`: the per-node VIP-mode speaker. Reads the Kubernetes API by default, or manifests offline.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser};
use openelb_core::model::Cluster;
use openelb_k8s::duration::parse_duration;
use openelb_k8s::logging::{self, LogFormat};
use openelb_k8s::manifest::Manifests;
use openelb_k8s::serve::{self, Readiness};
use openelb_net::linux::LinuxNet;
use openelb_speaker::config::{parse_advert_interval, parse_vrid_range};
use openelb_speaker::events::{EVENT_QUEUE, publish_events};
use openelb_speaker::lease::keep_lease;
use openelb_speaker::metrics_addr::{MetricsAddr, parse_metrics_addr};
use openelb_speaker::realtime;
use openelb_speaker::shared::watch_shared;
use openelb_speaker::source::{self, KubeSource};
use openelb_speaker::{
    AddressSource, Control, EventSink, IpvsArpFilter, LocalVrrp, ServiceRefs, SharedVrrp, Speaker, SpeakerConfig,
    SpeakerMetrics, first_snapshot,
};
use prometheus_client::registry::Registry;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot, watch};

const ABOUT: &str = "OpenELB VIP-mode speaker: holds LoadBalancer VIPs on this node with built-in VRRPv3.";

const LONG_ABOUT: &str = "\
OpenELB VIP-mode speaker: holds LoadBalancer VIPs on this node with built-in VRRPv3 (RFC 5798).

Runs on every node (a DaemonSet). By default it watches the Kubernetes API (in-cluster service account,
--kubeconfig, or $KUBECONFIG): Eips, Services, Nodes, and EndpointSlices (discovery.k8s.io/v1) or, where the
API server does not serve them, Endpoints. It announces exactly the addresses openelb-controller wrote to
the Services' status.loadBalancer.ingress, never one of its own choosing. It plans nothing before every kind
has been listed once, and re-plans a few milliseconds after a change. If the API server goes away it keeps
the last state: VIPs stay announced and VRRP failover goes on while the watches retry. When this node takes or
gives up a Service's VIP it records an Event on the Service (VIPAnnounced / VIPWithdrawn), without ever
delaying VRRP. It needs list/watch on eips (network.kubesphere.io), services, nodes, endpoints and
endpointslices (discovery.k8s.io), and create/patch on events (events.k8s.io); in --namespace, leases
(get/list/watch/create/update/patch) and the ConfigMap openelb-vrrp (get/list/watch).

VRRP on a shared LAN (docs/vrrp.md): adverts are accepted only from known peers, i.e. the addresses the Node
objects publish, the VRRP sources other speakers publish in their Leases `openelb-speaker-<node>` (IPv6 adverts
come from link-local addresses), and --unicast-peer. Each speaker writes its own Lease in --namespace. VRIDs
follow the assignment openelb-controller publishes in the ConfigMap openelb-vrrp (so speakers restarted at
different moments agree), falling back to this speaker's own deterministic computation for groups it does not
cover; the first plan waits until both are listed. VRRP routers that are not ours are ignored, reported (log,
metrics, a ForeignVRRPRouter Event on this Node) and our groups move off their VRIDs.

With --manifests it runs without Kubernetes: it reads Eips, Services, Nodes, Endpoints and Pods from YAML
files (the same files `kubectl apply` takes) and allocates addresses exactly as the controller would; no
Events are recorded. Known peers are then the addresses the Node objects list (any type: list an IPv6 VRRP
peer's link-local address there) and --unicast-peer.

For every Eip with `protocol: vip` the VIPs are grouped by candidate nodes and first preference into VRRP
instances; every node computes the same groups, VRIDs and priorities from the same objects. The master of an
instance adds its VIPs (/32 or /128, with this node's MAC) to the interface and sends a burst of gratuitous
ARPs / unsolicited NAs; backups take over when adverts stop. With kube-proxy in IPVS mode and ARP not strict,
it keeps this node from answering ARP for VIPs other nodes hold (--ipvs-arp-filter, docs/ipvs.md). On start
it removes addresses it added earlier (marked as openelb's) inside VIP-mode pools that it does not hold.

Metrics (Prometheus) on --metrics-addr, by default port 8477 of the node's InternalIP only (never the VIP
LAN's other addresses): /metrics with openelb_speaker_vrrp_state{vrid,interface,family} (0 init, 1 backup,
2 master), _vrrp_transitions_total, _vrrp_adverts_sent_total, _vrrp_adverts_received_total, _garps_total,
_vips, _api_connected, _events_dropped_total, _plan_duration_seconds, _plan_failures_total,
openelb_vrrp_packets_dropped_total{reason} (packets that did not decode), openelb_vrrp_adverts_dropped_total{reason}
(adverts the agent screened out), openelb_vrrp_foreign_routers{family,vrid},
openelb_vrrp_foreign_adverts_total{family}, openelb_vrrp_plan_issues{kind}, openelb_vrrp_known_peers,
openelb_objects_undecodable_total{kind}, openelb_ipvs_arp_filter (0 nothing to do, 1 filtering, 2 off,
3 failing), openelb_ipvs_arp_filtered_vips, openelb_ipvs_arp_filter_failures_total; /healthz; /readyz (ready
once the first plan is applied). Plans are computed beside the VRRP loop, never in it.

SIGTERM/SIGINT: priority-0 adverts, VIPs removed, exit 0. SIGHUP: re-read the manifests, or re-list every
watched kind from the API, and re-plan (running groups keep their VRIDs). Logs go to stderr; RUST_LOG sets
the level (default info).";

/// How long queued Events may still be written after the speaker stopped (SIGTERM's withdrawals).
const EVENT_FLUSH: Duration = Duration::from_secs(2);
/// How often the Node object is read again while the metrics address waits for its InternalIP.
const INTERNAL_IP_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, Parser)]
#[command(name = "openelb-speaker", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Args {
    /// This node's name, as in its Node object (decides its candidacies and priorities). Defaults to the
    /// environment variable NODE_NAME.
    #[arg(long, value_name = "NAME")]
    node_name: Option<String>,

    /// Kubeconfig for the API server; without it the in-cluster service account, else $KUBECONFIG.
    #[arg(long, value_name = "PATH", conflicts_with = "manifests")]
    kubeconfig: Option<PathBuf>,

    /// Run offline from a manifest file or a directory of *.yaml/*.yml files (read recursively) instead of
    /// the Kubernetes API.
    #[arg(long, value_name = "PATH")]
    manifests: Option<PathBuf>,

    /// Where to serve /metrics, /healthz and /readyz: `internal-ip:PORT` (this node's InternalIP from its Node
    /// object: reachable by the kubelet's probes and Prometheus, not on the node's other addresses),
    /// `ADDRESS:PORT` (`0.0.0.0:PORT` for every interface) or `off`. Port 8477 is used by no well-known
    /// project (outside the Prometheus exporters' 9100-9999; not MetalLB's, kube-vip's, Cilium's or Calico's).
    #[arg(long, value_name = "ADDR", default_value_t = MetricsAddr::default(), value_parser = parse_metrics_addr)]
    metrics_addr: MetricsAddr,

    /// Interface for the VIPs of every VIP-mode pool on this node, overriding the Eips' `interface`
    /// (a NIC name or `can_reach:<ip>`). Without it: the Eip's interface, else the NIC holding the node's
    /// InternalIP.
    #[arg(long, value_name = "IFACE")]
    interface: Option<String>,

    /// VRRP advertisement interval: 10ms to 40.95s in steps of 10ms (sent in centiseconds). A dead master
    /// is detected after about 3.5 intervals; shorter ones cost CPU in proportion, and a stall of the master
    /// longer than about 2 intervals (a busy node) moves its VIPs (README: the advert interval's trade-off).
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = parse_advert_interval)]
    advert_interval: u16,

    /// VRIDs the planner may use, `FIRST-LAST` (1-255). The default leaves 1-99 to the usual hand-made VRRP
    /// setups (keepalived for the apiserver VIP commonly uses 51); keep it clear of other VRRP users.
    #[arg(long, value_name = "FIRST-LAST", default_value = "100-255", value_parser = parse_vrid_range)]
    vrid_range: std::ops::RangeInclusive<u8>,

    /// Rotates every group's VRID within the range; give clusters that share a segment different offsets.
    #[arg(long, value_name = "N", default_value_t = 0)]
    vrid_offset: u8,

    /// Gratuitous ARPs / unsolicited NAs sent per VIP on takeover (0: none), the first one at once.
    #[arg(long, value_name = "N", default_value_t = 3)]
    garp_count: u32,

    /// Spacing between the announcements of one burst (e.g. 50ms).
    #[arg(long, value_name = "DURATION", default_value = "50ms", value_parser = parse_duration)]
    garp_spacing: Duration,

    /// How long a returning higher-priority node waits before taking its VIPs back from a lower-priority
    /// master (0s: at once).
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    preempt_delay: Duration,

    /// Never take a VIP back from a live lower-priority master.
    #[arg(long)]
    no_preempt: bool,

    /// Send adverts to this address instead of the VRRP multicast group (repeat for every peer).
    #[arg(long = "unicast-peer", value_name = "IP")]
    unicast_peers: Vec<IpAddr>,

    /// Namespace of the speakers' Leases and of the controller's ConfigMap openelb-vrrp [default:
    /// $POD_NAMESPACE, else openelb-system].
    #[arg(long, value_name = "NAMESPACE", conflicts_with = "manifests")]
    namespace: Option<String>,

    /// With kube-proxy in IPVS mode (an interface kube-ipvs0) and ARP not strict (arp_ignore < 1 or arp_announce
    /// < 2), every node answers ARP for every VIP. `auto`: this node then does not answer ARP for the VIPs it
    /// does not hold (nftables table `arp openelb-ipvs-arp`, needs NET_ADMIN). `off`: no filter; the situation is
    /// reported (log, IPVSARPNotFiltered Event on the Node, openelb_ipvs_arp_filter 2) and kube-proxy's
    /// strictARP must be set by hand.
    #[arg(long, value_enum, value_name = "MODE", default_value = "auto")]
    ipvs_arp_filter: IpvsArpFilter,

    /// Real-time priority (SCHED_RR, 1-99) of the VRRP thread, so adverts leave on time on a busy node (like
    /// keepalived's vrrp_rt_priority); 0: normal scheduling. Needs CAP_SYS_NICE (or RLIMIT_RTPRIO); without it
    /// the speaker says so and runs with normal scheduling.
    #[arg(long, value_name = "N", default_value_t = realtime::DEFAULT_RT_PRIORITY, value_parser = clap::value_parser!(u8).range(0..=99))]
    vrrp_rt_priority: u8,

    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

impl Args {
    fn config(&self, node_name: String, addresses: AddressSource) -> SpeakerConfig {
        SpeakerConfig {
            interface: self.interface.clone(),
            advert_interval_cs: self.advert_interval,
            vrids: self.vrid_range.clone(),
            vrid_offset: self.vrid_offset,
            garp_count: self.garp_count,
            garp_spacing: self.garp_spacing,
            preempt: !self.no_preempt,
            preempt_delay: self.preempt_delay,
            unicast_peers: self.unicast_peers.clone(),
            addresses,
            ipvs_arp_filter: self.ipvs_arp_filter,
            ..SpeakerConfig::new(node_name)
        }
    }
}

/// `--node-name`, else `$NODE_NAME`; exits like any other usage error (status 2) when neither is set.
fn node_name(args: &Args) -> String {
    let from_env = || std::env::var("NODE_NAME").ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    match args.node_name.clone().filter(|s| !s.trim().is_empty()).or_else(from_env) {
        Some(name) => name,
        None => Args::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "this node's name is required: --node-name NAME or the environment variable NODE_NAME",
            )
            .exit(),
    }
}

fn load(path: &Path) -> Result<Cluster> {
    // Manifest errors name the file, document and field already, and repeat their cause in their message.
    let manifests = Manifests::load_paths(&[path]).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &manifests.warnings {
        tracing::debug!("{w}");
    }
    manifests.to_cluster().map_err(|e| anyhow::anyhow!("{e}"))
}

/// What SIGHUP does.
enum Hangup {
    /// Re-read the manifests and reload.
    Reload(PathBuf),
    /// Ask the Kubernetes source to re-list.
    Relist(mpsc::Sender<()>),
}

/// Maps signals to controls: TERM/INT shut down, HUP reloads or re-lists (a bad reload is logged and ignored).
fn forward_signals(hangup: Hangup, tx: mpsc::Sender<Control>) -> Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM"); let _ = tx.send(Control::Shutdown).await; }
                _ = int.recv() => { tracing::info!("SIGINT"); let _ = tx.send(Control::Shutdown).await; }
                _ = hup.recv() => match &hangup {
                    Hangup::Reload(manifests) => {
                        tracing::info!(manifests = %manifests.display(), "SIGHUP: reloading manifests");
                        match load(manifests) {
                            Ok(c) => { let _ = tx.send(Control::Reload(Box::new(c))).await; }
                            Err(e) => tracing::error!("reload failed, keeping the running plan: {e:#}"),
                        }
                    }
                    Hangup::Relist(relist) => {
                        tracing::info!("SIGHUP: re-listing from the API server");
                        // A full queue means a re-list is pending already.
                        let _ = relist.try_send(());
                    }
                },
            }
        }
    });
    Ok(())
}

/// The metrics server, running until [`MetricsServer::stop`].
struct MetricsServer {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), serve::ServeError>>,
}

impl MetricsServer {
    async fn start(addr: Option<SocketAddr>, registry: Registry, readiness: Readiness) -> Result<Option<Self>> {
        let Some(addr) = addr else { return Ok(None) };
        let (stop, stopped) = oneshot::channel::<()>();
        let (bound, server) = serve::bind(addr, Arc::new(registry), readiness, async {
            let _ = stopped.await;
        })
        .await?;
        tracing::info!(addr = %bound, "serving /metrics, /healthz and /readyz");
        Ok(Some(MetricsServer { stop, task: tokio::spawn(server) }))
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(2), self.task).await {
            tracing::warn!("{e}");
        }
    }
}

/// The metrics server of the Kubernetes source: started at once, or once the node's InternalIP is known.
enum Server {
    Now(Option<MetricsServer>),
    Pending(tokio::task::JoinHandle<Option<MetricsServer>>),
}

impl Server {
    async fn stop(self) {
        let server = match self {
            Server::Now(s) => s,
            Server::Pending(task) if task.is_finished() => task.await.ok().flatten(),
            Server::Pending(task) => {
                task.abort();
                None
            }
        };
        if let Some(s) = server {
            s.stop().await;
        }
    }
}

/// Serves the metrics on the node's InternalIP once its Node object can be read and shows one; until then the
/// Node is read again every [`INTERNAL_IP_RETRY`] (each distinct problem logged once).
async fn serve_on_internal_ip(
    client: kube::Client,
    node: String,
    port: u16,
    registry: Registry,
    readiness: Readiness,
) -> Option<MetricsServer> {
    let mut logged = String::new();
    let ip = loop {
        let problem = match source::node_internal_ip(&client, &node).await {
            Ok(Some(ip)) => break ip,
            Ok(None) => MetricsAddr::InternalIp(port).resolve(None).err().unwrap_or_default(),
            Err(e) => e,
        };
        if problem != logged {
            tracing::warn!("metrics not served yet: {problem}; retrying every {}s", INTERNAL_IP_RETRY.as_secs());
            logged = problem;
        }
        tokio::time::sleep(INTERNAL_IP_RETRY).await;
    };
    start_metrics(MetricsAddr::InternalIp(port), Some(SocketAddr::new(ip, port)), registry, readiness)
        .await
        .unwrap_or_default()
}

/// Starts the metrics server on `addr`. Failing to bind is fatal only for an address the operator wrote: on the
/// node's InternalIP it is logged and the speaker's work goes on without metrics.
async fn start_metrics(
    chosen: MetricsAddr,
    addr: Option<SocketAddr>,
    registry: Registry,
    readiness: Readiness,
) -> Result<Option<MetricsServer>> {
    match MetricsServer::start(addr, registry, readiness).await {
        Err(e) if matches!(chosen, MetricsAddr::InternalIp(_)) => {
            tracing::error!("metrics not served: {e:#}");
            Ok(None)
        }
        other => other,
    }
}

async fn run(args: Args, node: String) -> Result<()> {
    let metrics = SpeakerMetrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let readiness = Readiness::default();
    let (tx, mut rx) = mpsc::channel(8);

    if let Some(path) = args.manifests.clone() {
        let config = args.config(node, AddressSource::Allocate);
        let cluster = load(&path)?;
        let internal_ip = cluster.nodes.iter().find(|n| n.name == config.node_name).and_then(|n| n.internal_ip);
        let addr = args.metrics_addr.resolve(internal_ip).unwrap_or_else(|why| {
            let loopback = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), args.metrics_addr.port());
            tracing::warn!("{why}; serving metrics on {loopback} only");
            Some(loopback)
        });
        let server = start_metrics(args.metrics_addr, addr, registry, readiness.clone()).await?;
        forward_signals(Hangup::Reload(path.clone()), tx)?;
        tracing::info!(
            node = %config.node_name, manifests = %path.display(),
            advert_interval_ms = u64::from(config.advert_interval_cs) * 10,
            vrids = ?config.vrids, "openelb-speaker starting from manifests"
        );
        let result = on_vrrp_thread(args.vrrp_rt_priority, move || async move {
            let net = Arc::new(LinuxNet::new().context("opening the Linux network backend")?);
            let speaker = Speaker::new(net, config)?.with_metrics(metrics).with_readiness(readiness);
            speaker.run(cluster, rx).await.map_err(Into::into)
        })
        .await;
        if let Some(s) = server {
            s.stop().await;
        }
        return result;
    }

    let config = args.config(node.clone(), AddressSource::Ingress);
    let client = source::client(args.kubeconfig.as_deref()).await?;
    metrics.register_api(&mut registry);
    let server = match args.metrics_addr {
        MetricsAddr::InternalIp(port) => {
            let task = serve_on_internal_ip(client.clone(), node.clone(), port, registry, readiness.clone());
            Server::Pending(tokio::spawn(task))
        }
        other => {
            let addr = other.resolve(None).map_err(anyhow::Error::msg)?;
            Server::Now(start_metrics(other, addr, registry, readiness.clone()).await?)
        }
    };
    let (relist_tx, relist_rx) = mpsc::channel(1);
    forward_signals(Hangup::Relist(relist_tx), tx.clone())?;

    let refs = ServiceRefs::default();
    let (sink, events) = EventSink::channel(EVENT_QUEUE, metrics.events_dropped.clone());
    let publisher = tokio::spawn(publish_events(client.clone(), node.clone(), refs.clone(), events));
    let (stop_source, source_stopped) = oneshot::channel::<()>();
    let source_stopped = futures::FutureExt::shared(async {
        let _ = source_stopped.await;
    });
    let namespace = args
        .namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| openelb_k8s::vrrp::DEFAULT_NAMESPACE.to_string());
    let (shared_tx, shared_rx) = watch::channel(SharedVrrp::default());
    let (local_tx, local_rx) = watch::channel(LocalVrrp::default());
    let shared = tokio::spawn(watch_shared(client.clone(), namespace.clone(), shared_tx, source_stopped.clone()));
    let lease =
        tokio::spawn(keep_lease(client.clone(), namespace.clone(), node.clone(), local_rx, source_stopped.clone()));
    let source = KubeSource::new(client)
        .with_refs(refs)
        .with_api_gauge(metrics.api_connected.clone())
        .with_undecodable_counter(metrics.objects_undecodable.clone());
    let source = tokio::spawn(source.run(tx, relist_rx, source_stopped));
    tracing::info!(
        node = %config.node_name,
        advert_interval_ms = u64::from(config.advert_interval_cs) * 10,
        vrids = ?config.vrids, %namespace, "openelb-speaker starting from the Kubernetes API"
    );
    let result = on_vrrp_thread(args.vrrp_rt_priority, move || async move {
        let net = Arc::new(LinuxNet::new().context("opening the Linux network backend")?);
        let speaker = Speaker::new(net, config)?
            .with_metrics(metrics)
            .with_events(sink)
            .with_readiness(readiness)
            .with_shared(shared_rx, local_tx);
        match first_snapshot(&mut rx).await {
            Some(cluster) => speaker.run(cluster, rx).await.map_err(Into::into),
            None => {
                tracing::info!("stopped before the first complete listing; nothing was announced");
                Ok(())
            }
        }
    })
    .await;
    let _ = stop_source.send(());
    let _ = source.await;
    let _ = shared.await;
    let _ = lease.await;
    // The speaker (and with it the last event sink) is gone: the publisher writes what is queued, then ends.
    if tokio::time::timeout(EVENT_FLUSH, publisher).await.is_err() {
        tracing::warn!("Events still queued after {}s were not recorded", EVENT_FLUSH.as_secs());
    }
    server.stop().await;
    result
}

/// Runs the VRRP loop (built by `run`, with its network backend) on a thread and a single-threaded runtime of
/// its own, and waits for it. Its timers, received adverts, netlink replies and announcement bursts then wake
/// that one thread only: with a shared multi-threaded runtime, every advert cost a wake-up of another thread
/// (most of the speaker's CPU with 1000 VIPs, measured). Everything else (API watches decoding large lists,
/// Events, the Lease, metrics) runs on the main thread, so it never delays an advert either. With `rt_priority`
/// above 0 the thread asks for real-time scheduling first (`realtime`), and runs on either way.
async fn on_vrrp_thread<F, Fut>(rt_priority: u8, run: F) -> Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>>,
{
    let (done, result) = oneshot::channel();
    std::thread::Builder::new()
        .name("vrrp".into())
        .spawn(move || {
            match rt_priority {
                0 => tracing::info!("VRRP thread: normal scheduling (--vrrp-rt-priority 0)"),
                p => match realtime::raise_current_thread(p) {
                    Ok(()) => tracing::info!(priority = p, "VRRP thread: real-time scheduling granted (SCHED_RR)"),
                    Err(e) => tracing::warn!("VRRP thread: normal scheduling: {e}"),
                },
            }
            let outcome = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime.block_on(run()),
                Err(e) => Err(anyhow::anyhow!("cannot start the VRRP loop's runtime: {e}")),
            };
            let _ = done.send(outcome);
        })
        .context("starting the VRRP loop's thread")?;
    result.await.unwrap_or_else(|_| Err(anyhow::anyhow!("the VRRP loop's thread ended without a result")))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let node = node_name(&args);
    openelb_k8s::heap::limit_arenas();
    logging::init(args.log_format);
    // The VRRP loop has a thread of its own (`on_vrrp_thread`); this one serves the rest.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("openelb-speaker: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, node)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
