//! `openelb-cli`: OpenELB's decisions, offline. It reads the YAML you would `kubectl apply` and shows what the
//! controller and the speakers would do with it, without a cluster.

mod commands;
mod lab_commands;
mod output;
mod sim_flags;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "openelb-cli",
    version,
    about = "OpenELB's address allocation and VIP election, offline",
    long_about = "openelb-cli reads the Kubernetes YAML you would `kubectl apply` (Eip pools, Services, Deployments, \
Pods, Nodes, Namespaces, Endpoints, EndpointSlices) and shows what an OpenELB controller and its speakers would do: \
which address each LoadBalancer Service gets, how full each pool is, which node answers for each VIP and what a \
client on the LAN then sees. Nothing here talks to a cluster or to the network.",
    after_help = "Quick start:\n  openelb-cli simulate -f examples/vip-mode\n  openelb-cli simulate -f examples/vip-mode --scenario examples/vip-mode/scenario-node-failure.yaml\n  openelb-cli allocate -f examples/vip-mode -o yaml\n  openelb-cli validate -f examples/vip-mode"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Human-readable tables, like kubectl.
    Table,
    /// YAML documents.
    Yaml,
    /// One JSON document.
    Json,
}

#[derive(clap::Args, Clone)]
pub struct Inputs {
    /// Manifest files or directories (searched recursively for *.yaml / *.yml); repeat or list several.
    /// Multi-document YAML is fine. Documents of unknown kinds are skipped with a warning.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1.., value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Allocate addresses to the LoadBalancer Services and print what `kubectl get svc` and `kubectl get eip`
    /// would show; with `-o yaml|json`, the updated Services and Eips (status, labels, finalizers).
    Allocate {
        #[command(flatten)]
        inputs: Inputs,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Allocate, then run every node's VRRP speaker and a client on a simulated L2 segment in virtual time, and
    /// replay a scenario's timeline of events. Each step shows when states changed, how long detection and
    /// takeover took, and then the holder of every VIP, the client's `ip neigh` entry and the Pods it reaches.
    Simulate {
        #[command(flatten)]
        inputs: Inputs,
        /// Timeline of events (node down/stopped/up, NotReady/Ready, link down/up, partition/heal, Pod
        /// ready/moved, Service created/deleted/patched, Eip created/deleted). See
        /// examples/vip-mode/scenario-*.yaml for the format.
        #[arg(long, value_name = "FILE")]
        scenario: Option<PathBuf>,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
        #[command(flatten)]
        timing: sim_flags::SimFlags,
    },
    /// Check pools and Services for problems (bad addresses, overlapping pools, missing interface, several
    /// default pools, requests no pool can honour). Exit status 1 with every problem listed, 0 when clean.
    Validate {
        #[command(flatten)]
        inputs: Inputs,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Print the Eip CustomResourceDefinition (v1alpha2 storage, v1alpha1 served) as YAML.
    Crd,
    /// The seed's network in Linux network namespaces with real VRRP speakers (needs root): `lab demo`,
    /// `lab up` / `lab down`, `lab bench`.
    Lab(lab_commands::LabArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Allocate { inputs, output } => commands::allocate(&inputs, output),
        Command::Simulate { inputs, scenario, output, timing } => {
            commands::simulate(&inputs, scenario.as_deref(), output, &timing)
        }
        Command::Validate { inputs, output } => commands::validate(&inputs, output),
        Command::Crd => commands::crd(),
        Command::Lab(args) => lab_commands::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
