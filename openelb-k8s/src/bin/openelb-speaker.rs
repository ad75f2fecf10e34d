//! `openelb-speaker`: the per-node VIP-mode speaker, runnable without Kubernetes.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use openelb_core::model::Cluster;
use openelb_k8s::manifest::Manifests;
use openelb_k8s::speaker::config::{parse_advert_interval, parse_duration, parse_vrid_range};
use openelb_k8s::speaker::{Control, Speaker, SpeakerConfig};
use openelb_net::linux::LinuxNet;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

const ABOUT: &str = "OpenELB VIP-mode speaker: holds LoadBalancer VIPs on this node with built-in VRRPv3.";

const LONG_ABOUT: &str = "\
OpenELB VIP-mode speaker: holds LoadBalancer VIPs on this node with built-in VRRPv3 (RFC 5798).

It reads Eips, Services, Nodes, Endpoints and Pods from YAML manifests (the same files `kubectl apply` takes),
allocates addresses exactly as the controller would, and for every Eip with `protocol: vip` groups the VIPs by
candidate nodes and first preference into VRRP instances. Every node computes the same groups, VRIDs and
priorities from the same manifests. The master of an instance adds its VIPs (/32 or /128, with this node's MAC)
to the interface and sends a burst of gratuitous ARPs / unsolicited NAs; backups take over when adverts stop.

On start it removes addresses it added earlier (marked as openelb's) inside VIP-mode pools that it does not
hold. SIGTERM/SIGINT: priority-0 adverts, VIPs removed, exit 0. SIGHUP: re-read the manifests and re-plan
(running groups keep their VRIDs). Logs go to stderr; RUST_LOG sets the level (default info).";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Parser)]
#[command(name = "openelb-speaker", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Args {
    /// This node's name, as in its Node object (decides its candidacies and priorities).
    #[arg(long, value_name = "NAME")]
    node_name: String,

    /// A manifest file or a directory of *.yaml/*.yml files (read recursively).
    #[arg(long, value_name = "DIR")]
    manifests: PathBuf,

    /// Interface for the VIPs of every VIP-mode pool on this node, overriding the Eips' `interface`
    /// (a NIC name or `can_reach:<ip>`). Without it: the Eip's interface, else the NIC holding the node's
    /// InternalIP.
    #[arg(long, value_name = "IFACE")]
    interface: Option<String>,

    /// VRRP advertisement interval: 10ms to 40.95s in steps of 10ms (sent in centiseconds). A dead master
    /// is detected after about 3.5 intervals.
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = parse_advert_interval)]
    advert_interval: u16,

    /// VRIDs the planner may use, `FIRST-LAST` (1-255). Keep it clear of other VRRP users on the segment.
    #[arg(long, value_name = "FIRST-LAST", default_value = "1-255", value_parser = parse_vrid_range)]
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

    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

impl Args {
    fn config(&self) -> SpeakerConfig {
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
            ..SpeakerConfig::new(self.node_name.clone())
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
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

/// Maps signals to controls: TERM/INT shut down, HUP reloads (a bad reload is logged and ignored).
async fn forward_signals(manifests: PathBuf, tx: mpsc::Sender<Control>) -> Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM"); let _ = tx.send(Control::Shutdown).await; }
                _ = int.recv() => { tracing::info!("SIGINT"); let _ = tx.send(Control::Shutdown).await; }
                _ = hup.recv() => {
                    tracing::info!(manifests = %manifests.display(), "SIGHUP: reloading manifests");
                    match load(&manifests) {
                        Ok(c) => { let _ = tx.send(Control::Reload(Box::new(c))).await; }
                        Err(e) => tracing::error!("reload failed, keeping the running plan: {e:#}"),
                    }
                }
            }
        }
    });
    Ok(())
}

async fn run(args: Args) -> Result<()> {
    let config = args.config();
    let cluster = load(&args.manifests)?;
    let (tx, rx) = mpsc::channel(8);
    forward_signals(args.manifests.clone(), tx).await?;
    let net = Arc::new(LinuxNet::new().context("opening the Linux network backend")?);
    tracing::info!(
        node = %config.node_name, manifests = %args.manifests.display(),
        advert_interval_ms = u64::from(config.advert_interval_cs) * 10,
        vrids = ?config.vrids, "openelb-speaker starting"
    );
    let speaker = Speaker::new(net, config)?;
    speaker.run(cluster, rx).await?;
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    // Two workers: bursts of announcements (each one may block its thread for a few ms in the kernel) run
    // beside the VRRP loop instead of delaying its adverts.
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("openelb-speaker: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
