//! `openelb-controller`: assigns LoadBalancer addresses from Eips and records them in the API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use futures::FutureExt;
use openelb_controller::{LeaderElection, Options, Telemetry, VridPublishing, VridSettings, leader};
use openelb_k8s::logging::{self, LogFormat};
use openelb_webhook::WebhookArgs;
use tokio::signal::unix::{SignalKind, signal};

const LONG_ABOUT: &str = "\
OpenELB controller: gives `type: LoadBalancer` Services an address from an Eip, writes it to the Service's status
and records it in the Eip's status, with the Eip's finalizer, sizes and Ready/Invalid conditions. The API holds all
state: a restart rebuilds every allocation from the Eips and changes none.

The leader also publishes the VRID assignment of VIP mode in the ConfigMap openelb-vrrp (docs/vrrp.md): it plans
the same VRRP groups the speakers plan (from Eips, Services' ingress, Nodes and endpoints), keeps each group's
VRID across restarts, moves groups off the VRIDs foreign VRRP routers use (reported in the speakers' Leases
openelb-speaker-<node>) and writes only when the assignment changed. Speakers follow it, so they agree on VRIDs
whenever they restarted.

Replicas elect a leader on the Lease `openelb-controller` (coordination.k8s.io/v1); only the leader writes, and a
standby is ready as soon as its caches are synced. On SIGTERM/SIGINT the leader finishes its running reconciles and
releases the Lease, so a standby takes over at once. /metrics, /healthz and /readyz are served on --metrics-addr.

Every replica (leader or not) also serves the validating admission webhook for Eips on --webhook-addr (HTTPS):
Eips with a bad address, protocol, interface or namespace selector, or overlapping another Eip, are refused with
the field and value named. By default it keeps its own CA and serving certificate in the Secret --webhook-secret
(created when missing, renewed 30 days before expiry) and writes the CA into the caBundle of the
ValidatingWebhookConfiguration --webhook-config-name; --webhook-cert-dir serves certificates issued elsewhere.
Logs go to stderr; RUST_LOG sets the level (default info).";

#[derive(Debug, Parser)]
#[command(name = "openelb-controller", version, about = "OpenELB controller", long_about = LONG_ABOUT)]
struct Args {
    /// Kubeconfig to use; without it the in-cluster service account or $KUBECONFIG (~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the Lease, of the ConfigMap openelb-vrrp (the published VRID assignment) and of the
    /// speakers' Leases [default: $POD_NAMESPACE, else openelb-system].
    #[arg(long, value_name = "NAMESPACE")]
    lease_namespace: Option<String>,
    /// This replica's name in the Lease and in Events [default: $POD_NAME, else <hostname>-<pid>].
    #[arg(long, value_name = "NAME")]
    identity: Option<String>,
    /// How long the Lease stays with a leader that stopped renewing it, in seconds (at least 3).
    #[arg(long, value_name = "SECONDS", default_value_t = leader::DEFAULT_LEASE_DURATION.as_secs())]
    lease_duration: u64,
    /// Write without electing a leader: for a single replica only.
    #[arg(long)]
    no_leader_election: bool,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// VRIDs VIP mode plans with, `FIRST-LAST`: the same as every speaker's --vrid-range.
    #[arg(long, value_name = "FIRST-LAST", default_value = "100-255", value_parser = openelb_k8s::vrrp::parse_vrid_range)]
    vrid_range: std::ops::RangeInclusive<u8>,
    /// The speakers' --vrid-offset.
    #[arg(long, value_name = "N", default_value_t = 0)]
    vrid_offset: u8,
    /// Do not publish the VRID assignment (speakers then plan VRIDs on their own only).
    #[arg(long)]
    no_vrid_publishing: bool,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    webhook: WebhookArgs,
}

async fn terminated() {
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("signal received; finishing running reconciles");
}

async fn main_async(args: Args) -> anyhow::Result<()> {
    let identity = args.identity.filter(|i| !i.is_empty()).unwrap_or_else(leader::default_identity);
    let namespace = args.lease_namespace.filter(|n| !n.is_empty()).unwrap_or_else(leader::default_lease_namespace);
    let leader_election = if args.no_leader_election {
        None
    } else {
        Some(LeaderElection::new(namespace.clone(), identity.clone(), Duration::from_secs(args.lease_duration))?)
    };
    let vrid_publishing = (!args.no_vrid_publishing).then(|| VridPublishing {
        namespace,
        settings: VridSettings { vrids: args.vrid_range.clone(), offset: args.vrid_offset },
    });
    let options = Options { leader_election, identity, vrid_publishing };
    let stop = terminated().boxed().shared();
    let telemetry = Telemetry::default();
    let (bound, server) = telemetry.serve(args.metrics_addr, stop.clone()).await?;
    tracing::info!(addr = %bound, "serving /metrics, /healthz and /readyz");
    let server = tokio::spawn(server);
    let client = openelb_controller::client(args.kubeconfig.as_deref()).await?;
    let webhook = match args.webhook.config_from_env() {
        Some(config) => {
            let (addr, run) = openelb_webhook::bind(client.clone(), config, stop.clone()).await?;
            tracing::info!(%addr, "serving the Eip admission webhook");
            Some(tokio::spawn(run))
        }
        None => None,
    };
    openelb_controller::run(client, options, telemetry, stop).await?;
    server.await.context("metrics server task")??;
    if let Some(webhook) = webhook {
        webhook.await.context("admission webhook task")??;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    openelb_k8s::heap::limit_arenas();
    let args = Args::parse();
    logging::init(args.log_format);
    match main_async(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("openelb-controller: {e:#}");
            ExitCode::FAILURE
        }
    }
}
