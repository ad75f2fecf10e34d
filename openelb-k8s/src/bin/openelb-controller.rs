//! `openelb-controller`: assigns LoadBalancer addresses from Eips and records them in the API.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use openelb_k8s::controller;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// OpenELB controller: gives `type: LoadBalancer` Services an address from an Eip, writes it to the Service's
/// status and records it in the Eip's status. The API holds all state: a restart rebuilds every allocation from
/// the Eips and changes none.
#[derive(Debug, Parser)]
#[command(name = "openelb-controller", version)]
struct Args {
    /// Kubeconfig to use; without it the in-cluster service account or $KUBECONFIG (~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
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

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let result = async {
        let client = controller::client(args.kubeconfig.as_deref()).await?;
        controller::run(client, terminated()).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("openelb-controller: {e}");
            ExitCode::FAILURE
        }
    }
}
