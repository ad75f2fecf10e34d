//! `openelb-cli lab`: its flags and subcommands over the openelb-lab library. Needs root.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Subcommand, ValueEnum};
use openelb_core::model::TrafficPolicy;
use openelb_k8s::duration::parse_duration;
use openelb_lab::interrupt::install_ctrl_c;
use openelb_lab::speaker_program::{self, find_openelb_speaker};
use openelb_lab::{
    Lab, LabConfig, Layout, Need, OpenelbSpeakerCommand, STATE_ROOT, SpeakerProgram, TOOLS, arp_probe, bench,
    cluster_walkthrough, demo, hostile, kube_bench, netns, pod, soak, topology,
};

#[derive(clap::Args)]
pub struct LabArgs {
    #[command(subcommand)]
    pub command: LabCommand,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum SpeakerKind {
    /// Debian's keepalived (VRRPv3), the reference.
    Keepalived,
    /// openelb-speaker ($OPENELB_SPEAKER or next to openelb-cli).
    Openelb,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum PolicyArg {
    #[value(name = "Cluster", alias = "cluster")]
    Cluster,
    #[value(name = "Local", alias = "local")]
    Local,
}

impl From<PolicyArg> for TrafficPolicy {
    fn from(p: PolicyArg) -> Self {
        match p {
            PolicyArg::Cluster => TrafficPolicy::Cluster,
            PolicyArg::Local => TrafficPolicy::Local,
        }
    }
}

#[derive(clap::Args, Clone)]
pub struct LabOpts {
    /// Manifests (files or directories), as for the other subcommands; 192.168.0.x becomes 192.0.2.x.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1.., value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Which VRRP speaker runs on the nodes: ours, or keepalived as the reference to compare against.
    #[arg(long, value_enum, default_value_t = SpeakerKind::Openelb)]
    pub speaker: SpeakerKind,
    /// Overrides every Service's externalTrafficPolicy.
    #[arg(long, value_enum)]
    pub policy: Option<PolicyArg>,
    /// VRRP advert interval (`1s`, `100ms`); default: keepalived 1s, openelb-speaker its own default.
    #[arg(long, value_parser = parse_duration)]
    pub advert_interval: Option<Duration>,
}

#[derive(Subcommand)]
pub enum LabCommand {
    /// Build the lab, show the seed's Step 4 from the client (ping, ip neigh, curl), crash the VIP's holder,
    /// show the takeover and the outage the client saw, then remove everything.
    Demo(LabOpts),
    /// The seed in a real cluster: a control plane with RBAC (etcd, kube-apiserver, kube-controller-manager,
    /// kube-scheduler) and on each node containerd, a kubelet and kube-proxy (iptables mode); openelb from
    /// deploy/ in its image, the seed's files applied with kubectl; prints the seed's Step 4, each phase's time
    /// and the lab's memory, then removes everything. Needs root and `scripts/cluster.sh install`.
    Cluster {
        /// The seed's directory (cluster.yaml gives the nodes, their addresses, taints and labels).
        #[arg(short = 'f', long = "filename", value_name = "DIR", default_value = "examples/vip-mode")]
        seed: PathBuf,
        /// Then create this many Services one at a time and print created -> address and -> the client's ARP
        /// (p50/p99) through the real kube-proxy (at most 64).
        #[arg(long, default_value_t = 0)]
        services: usize,
    },
    /// Build the lab and leave it running for exploration (`ip netns exec oelb-<id>-client ...`).
    Up {
        #[command(flatten)]
        opts: LabOpts,
        /// Lab id, part of every namespace name (`oelb-<id>-...`).
        #[arg(long, default_value = "lab")]
        id: String,
    },
    /// Remove a lab left by `lab up` (or by a killed run): its recorded namespaces and processes.
    Down {
        /// Lab id; without it, every recorded lab.
        #[arg(long)]
        id: Option<String>,
    },
    /// Failover figures for keepalived (advert 1 s and 0.1 s) and openelb-speaker (defaults and 1 s), or for
    /// both at each --advert-interval, crash and graceful, N runs each (interleaved); GARP latency; speaker RSS
    /// and CPU (openelb-speaker with 1000 VIPs).
    Bench {
        #[arg(short = 'f', long = "filename", num_args = 1.., value_name = "PATH", default_value = "examples/vip-mode")]
        paths: Vec<PathBuf>,
        /// Runs of each failover measurement per speaker configuration (0: resources only).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Compare keepalived (VRRPv3 `advert_int`) and openelb-speaker at this advert interval (repeatable).
        #[arg(long = "advert-interval", value_name = "DURATION", value_parser = parse_duration)]
        advert_intervals: Vec<Duration>,
        /// How often the client pings the VIP (the outage's resolution).
        #[arg(long, default_value = "1ms", value_parser = parse_duration)]
        probe_interval: Duration,
        /// How long to let the speakers settle (all groups elected, preemption done, bursts sent) before the
        /// RSS/CPU sample starts.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        settle: std::time::Duration,
        /// Length of the RSS/CPU sampling window.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        window: std::time::Duration,
    },
    /// The lab's speakers left running for --duration beside busy loops pinned to --busy-cpu: master changes
    /// (on the wire and in the logs), advert gaps against the interval, client pings lost, speaker CPU.
    Soak {
        #[command(flatten)]
        opts: LabOpts,
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        duration: Duration,
        /// A CPU to keep busy with `taskset -c CPU sh -c 'while :; do :; done'` (repeatable; none by default).
        #[arg(long = "busy-cpu", value_name = "CPU")]
        busy_cpus: Vec<usize>,
        /// Wait after the first holder is elected before counting (preemption, start-up bursts).
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        settle: Duration,
    },
    /// Spoofed adverts, foreign keepalived and a flood against openelb-speaker in the lab: per case, pings lost,
    /// VIP moves, master changes, speaker CPU and log lines (`--help` explains each case).
    #[command(long_about = HOSTILE_ABOUT)]
    Hostile {
        #[arg(short = 'f', long = "filename", num_args = 1.., value_name = "PATH", default_value = "examples/vip-mode")]
        paths: Vec<PathBuf>,
        /// Run only the cases whose label contains this text (e.g. `keepalived`, `prio 255`).
        #[arg(long, value_name = "TEXT")]
        only: Option<String>,
    },
    /// Against a real kube-apiserver (scripts/kapi.sh install), each figure beside the apiserver alone doing
    /// the same in the same run (`ratio ...` lines). In the lab (openelb-controller, a speaker per worker):
    /// Service created -> address in status and -> the client's ARP resolves it (p50/p99 over --services, one
    /// at a time), then again while --filler-services are assigned, beside a bare status patch's round trip.
    /// On a loopback apiserver per N of --burst and --restart-services: N Services created at once until every
    /// one has its address, beside a bare client writing N statuses (run before the controller starts); for
    /// N = --restart-services a controller restart (ready and every Service verified, writes made) beside a
    /// bare LIST of Services and Eips. RSS of the controller after each phase and of the speakers.
    KubeBench {
        #[arg(short = 'f', long = "filename", num_args = 1.., value_name = "PATH", default_value = "examples/vip-mode")]
        paths: Vec<PathBuf>,
        /// Services created one after the other in the lab (at most 64: the bench pool is 192.0.2.128/26; 0:
        /// skip the lab). As many again (at most 63, from 192.0.2.192-254) are measured during the filler burst.
        #[arg(long, default_value_t = 50)]
        services: usize,
        /// Services for the controller-restart measurement, created as a burst first (0: skip it).
        #[arg(long, default_value_t = 5000)]
        restart_services: usize,
        /// Burst sizes on the loopback apiserver, comma-separated (each on a fresh apiserver; a size equal to
        /// --restart-services runs once, with the restart; 0: none).
        #[arg(long, value_delimiter = ',', default_value = "1000", value_name = "N,...")]
        burst: Vec<usize>,
        /// Requests in flight at once in the bursts, the filler burst and the bare writes.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// IPv6 filler Services (from a bgp Eip nobody announces) assigned while the lab measures Services one
        /// at a time (0: skip that).
        #[arg(long, default_value_t = 1000)]
        filler_services: usize,
        /// Status patches of one unclaimed Service, one after the other: the bare round trip.
        #[arg(long, default_value_t = 100)]
        bare_patches: usize,
        /// How long a burst may take before it is reported unfinished.
        #[arg(long, default_value = "20m", value_parser = parse_duration)]
        burst_timeout: Duration,
        /// scripts/kapi.sh of this checkout.
        #[arg(long, default_value = "scripts/kapi.sh")]
        kapi_script: PathBuf,
    },
    /// The measuring side of kube-bench (run inside the apiserver's namespace by the lab).
    #[command(hide = true)]
    KubeBenchClient {
        #[arg(long)]
        kubeconfig: PathBuf,
        #[arg(long)]
        client_ns: String,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 0)]
        bare_patches: usize,
        #[arg(long, default_value_t = 0)]
        filler: usize,
        #[arg(long, default_value_t = 0)]
        burst_probes: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// ARP requests for --target every --interval until it answers (run inside the client namespace by
    /// kube-bench); exit 0 on a reply, 1 on timeout.
    #[command(hide = true)]
    ArpProbe {
        #[arg(long, default_value = "eth0")]
        iface: String,
        #[arg(long)]
        source: std::net::Ipv4Addr,
        #[arg(long)]
        target: std::net::Ipv4Addr,
        #[arg(long, default_value = "2ms", value_parser = parse_duration)]
        interval: Duration,
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// The Pods' HTTP responder (run inside a Pod namespace by the lab).
    #[command(hide = true)]
    PodHttp {
        /// The name it answers with; default: the host name (a container's is its Pod's name).
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
    },
}

const HOSTILE_ABOUT: &str = "\
The seed's lab on a LAN that is not clean. Each case builds a fresh lab: openelb-speaker ($OPENELB_SPEAKER, else
next to openelb-cli) on every node with metrics on 127.0.0.1:8477 in its namespace, a client pinging the VIP every
10 ms, and a host at 192.0.2.250 that is no node. Cases:

  spoof prio 255 / 254 to 224.0.0.18, master, backup
      30 VRRPv3 adverts on the VIP's VRID (read from the holder's metrics), carrying the VIP, 10 a second, from
      192.0.2.250: to the VRRP group, or unicast to the holder or to the VIP's second preference. 255 claims to
      own the address; 254 outranks every speaker.
  spoof prio 254 maxadv 4095 to ...
      The same with Max_Adver_Int 4095 (40.95 s): a backup adopting it would wait two minutes to take over.
  spoof prio 0 to backup
      30 priority-0 adverts (\"the master is leaving\") unicast to the second preference.
  keepalived prio 254 / 100 on our VRID
      Debian's keepalived (VRRPv3, advert 1 s) at 192.0.2.251 on the VIP's VRID with its own VIP 192.0.2.200,
      until our speakers report it and move off its VRID (at most 20 s), then stopped (its priority-0 advert).
      Notes: our VRID before -> after, reported or not, its VIP's lost pings and holders, its state changes.
  flood 20k/s for 10s
      200,000 adverts from 122 spoofed sources: half valid-looking (random VRIDs, ours among them, random
      priorities and Max_Adver_Int, varying address lists sometimes carrying the VIP, to the group or a node),
      half malformed (bad checksum, truncated, TTL 254, VRRP version 2). The CPU column is over the flood.

Columns: pings lost from the start of the hostile part to 3 s after it; VIP moves (the VIP added to or removed
from a node, the client's neighbour entry changing MAC, duplicate echo replies, anyone but the first holder holding
it at the end); BACKUP<->MASTER changes in the speakers' logs; the busiest speaker's CPU (% of one core); lines all
speakers logged meanwhile. Needs root, keepalived and the lab's tools.";

impl LabOpts {
    pub fn to_speaker(&self) -> Result<SpeakerProgram> {
        Ok(match self.speaker {
            SpeakerKind::Keepalived => {
                SpeakerProgram::keepalived(self.advert_interval.unwrap_or(Duration::from_secs(1)))
            }
            SpeakerKind::Openelb => {
                let binary = find_openelb_speaker().ok_or_else(|| {
                    anyhow!("openelb-speaker not found: build it, or set {} to its path", speaker_program::ENV_SPEAKER)
                })?;
                SpeakerProgram::Openelb(OpenelbSpeakerCommand {
                    binary,
                    advert_interval: self.advert_interval,
                    ..Default::default()
                })
            }
        })
    }
}

fn require_lab(extra: &[&str]) -> Result<()> {
    let mut tools = TOOLS.to_vec();
    tools.extend_from_slice(extra);
    if let Some(why) = netns::unavailable(&tools) {
        bail!("the lab cannot run here: {why}");
    }
    Ok(())
}

fn cli_exe() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find the openelb-cli executable to run the Pods")
}

pub fn run(args: LabArgs) -> Result<ExitCode> {
    match args.command {
        LabCommand::PodHttp { name, listen } => {
            let name = match name {
                Some(n) => n,
                None => pod::hostname()?,
            };
            pod::serve(&name, listen)?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Demo(opts) => {
            let speaker = opts.to_speaker()?;
            require_lab(if matches!(speaker, SpeakerProgram::Keepalived { .. }) { &["keepalived"] } else { &[] })?;
            install_ctrl_c();
            let cfg = LabConfig::unique(cli_exe()?);
            let layout = Layout::from_paths(&opts.paths, &cfg.id, opts.policy.map(Into::into))?;
            let result = Lab::build(layout, &cfg).and_then(|mut lab| {
                let shown = demo::run(&mut lab, &speaker);
                let removed = lab.teardown();
                println!("\nlab {} removed", cfg.id);
                shown.and(removed)
            });
            result.map(|_| ExitCode::SUCCESS)
        }
        LabCommand::Cluster { seed, services } => {
            require_lab(&[])?;
            if let Some(why) = Need::ClusterParts.missing() {
                bail!("the cluster lab cannot run here: {why}");
            }
            install_ctrl_c();
            let repo = std::env::current_dir().context("cannot read the current directory")?;
            if !repo.join("deploy").is_dir() || !repo.join("scripts/cluster.sh").is_file() {
                bail!(
                    "run `openelb-cli lab cluster` from the repository's root (it applies deploy/ and runs scripts/)"
                );
            }
            let input = cluster_walkthrough::ClusterInput { seed, repo, cli_exe: cli_exe()?, services };
            cluster_walkthrough::run(&input)?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Up { opts, id } => {
            let speaker = opts.to_speaker()?;
            require_lab(if matches!(speaker, SpeakerProgram::Keepalived { .. }) { &["keepalived"] } else { &[] })?;
            let cfg = LabConfig { id: id.clone(), cli_exe: cli_exe()?, state_root: PathBuf::from(STATE_ROOT) };
            let layout = Layout::from_paths(&opts.paths, &id, opts.policy.map(Into::into))?;
            let mut lab = Lab::build(layout, &cfg)?;
            lab.start_speakers(&speaker)?;
            let holder = lab.wait_holder(None, demo::HOLDER_TIMEOUT)?;
            let layout = lab.layout.clone();
            let state = lab.detach();
            println!("lab {id} is up: VIP {} held by {holder}; namespaces:", layout.vip);
            for ns in &state.namespaces {
                println!("  {ns}");
            }
            println!("try:  ip netns exec {} curl http://{}/", layout.client_ns, layout.vip);
            println!("done: openelb-cli lab down --id {id}");
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Down { id } => {
            let root = std::path::Path::new(STATE_ROOT);
            let ids = match id {
                Some(id) => vec![id],
                None => topology::recorded(root),
            };
            if ids.is_empty() {
                println!("no lab recorded under {STATE_ROOT}");
            }
            for id in ids {
                let state = topology::down(root, &id)?;
                println!("lab {id}: removed {} namespaces", state.namespaces.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Bench { paths, runs, advert_intervals, probe_interval, settle, window } => {
            require_lab(&["keepalived", "tcpdump"])?;
            install_ctrl_c();
            let input = bench::BenchInput {
                paths,
                cli_exe: cli_exe()?,
                runs,
                settle,
                window,
                advert_intervals,
                probe_interval,
            };
            bench::run(&input)?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Soak { opts, duration, busy_cpus, settle } => {
            let speaker = opts.to_speaker()?;
            let mut tools = vec!["tcpdump", "taskset"];
            if matches!(speaker, SpeakerProgram::Keepalived { .. }) {
                tools.push("keepalived");
            }
            require_lab(&tools)?;
            install_ctrl_c();
            let input = soak::SoakInput {
                paths: opts.paths,
                cli_exe: cli_exe()?,
                speaker,
                policy: opts.policy.map(Into::into),
                duration,
                busy_cpus,
                settle,
            };
            let outcome = soak::run(&input)?;
            soak::print(&input, &outcome);
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Hostile { paths, only } => {
            require_lab(&["keepalived"])?;
            let speaker = find_openelb_speaker().ok_or_else(|| {
                anyhow!("openelb-speaker not found: build it, or set {} to its path", speaker_program::ENV_SPEAKER)
            })?;
            install_ctrl_c();
            let input = hostile::HostileInput { paths, cli_exe: cli_exe()?, speaker };
            let cases: Vec<hostile::Case> = hostile::Case::all()
                .into_iter()
                .filter(|c| only.as_deref().is_none_or(|o| c.to_string().contains(o)))
                .collect();
            let results = hostile::run(&input, &cases);
            Ok(if results.iter().all(Result::is_ok) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        LabCommand::KubeBench {
            paths,
            services,
            restart_services,
            burst,
            concurrency,
            filler_services,
            bare_patches,
            burst_timeout,
            kapi_script,
        } => {
            require_lab(&["kubectl"])?;
            install_ctrl_c();
            let input = kube_bench::KubeBenchInput {
                paths,
                services,
                restart_services,
                bursts: burst,
                concurrency,
                filler_services,
                bare_patches,
                burst_timeout,
                script: std::path::absolute(&kapi_script)
                    .with_context(|| format!("{}: cannot resolve", kapi_script.display()))?,
                cli_exe: cli_exe()?,
            };
            kube_bench::run(&input)?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::ArpProbe { iface, source, target, interval, timeout } => {
            Ok(match arp_probe::probe(&iface, source, target, interval, timeout)? {
                Some(reply) => {
                    // When the reply arrived, on the wall clock: the caller places it against its own start
                    // without counting this process's exit.
                    println!("{}", reply.at_unix_us);
                    ExitCode::SUCCESS
                }
                None => ExitCode::FAILURE,
            })
        }
        LabCommand::KubeBenchClient {
            kubeconfig,
            client_ns,
            count,
            bare_patches,
            filler,
            burst_probes,
            concurrency,
        } => {
            let plan = kube_bench::ClientPlan { count, bare_patches, filler, burst_probes, concurrency };
            kube_bench::client(&kubeconfig, &client_ns, &plan)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
