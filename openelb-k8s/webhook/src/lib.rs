//! The validating admission webhook for Eips: the API server asks it before storing an Eip, so a bad address,
//! an overlap with another pool or a second default pool is refused with a message instead of being found later
//! by the controller.
//!
//! - [`admission`]: the decision (pure): AdmissionReview in, AdmissionReview out.
//! - [`certs`]: CA and serving certificate generation and checks (pure, rcgen + rustls/ring).
//! - [`self_managed`]: the shared certificate Secret and the configuration's `caBundle`.
//! - [`server`]: the HTTPS route and certificate reloading.
//! - [`args`]: command-line flags for a binary that serves the webhook.
//!
//! Every replica serves; the webhook holds no state (it lists Eips per request), so it needs no leader.

pub mod admission;
pub mod args;
pub mod certs;
pub mod self_managed;
pub mod server;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use openelb_k8s::background::BackgroundThread;
use tokio::sync::oneshot;

pub use args::WebhookArgs;
pub use certs::{CertBundle, CertError};
pub use server::{Existing, Lister, api_lister, router};

/// The route the API server posts AdmissionReviews to (the configuration's `clientConfig.service.path`).
pub const PATH: &str = "/validate-eip";
pub const DEFAULT_ADDR: &str = "0.0.0.0:9443";
/// How often the served certificate is checked for rotation and the `caBundle` for drift.
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(60);
/// How long in-flight reviews get to finish on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Where the serving certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// `tls.crt` and `tls.key` in a directory (a mounted cert-manager Secret, say). Whoever writes them also
    /// injects the `caBundle`; the files are re-read every recheck, so a renewal needs no restart.
    Dir(PathBuf),
    /// The webhook makes its own CA and serving certificate, keeps them in a Secret that every replica shares,
    /// and sets the `caBundle` of every webhook in the ValidatingWebhookConfiguration `webhook_config_name`.
    SelfManaged {
        secret_namespace: String,
        secret_name: String,
        /// The Service in front of the webhook: the certificate names `<service>.<namespace>.svc` and
        /// `<service>.<namespace>.svc.cluster.local`.
        service_name: String,
        service_namespace: String,
        webhook_config_name: String,
        /// More names or IP addresses for the certificate, for a configuration that calls the webhook by URL
        /// (tests: `https://127.0.0.1:<port>/validate-eip`).
        extra_hosts: Vec<String>,
    },
}

impl CertSource {
    /// The names a self-managed certificate must carry (empty for [`CertSource::Dir`]).
    pub fn hosts(&self) -> Vec<String> {
        match self {
            CertSource::Dir(_) => Vec::new(),
            CertSource::SelfManaged { service_name, service_namespace, extra_hosts, .. } => {
                let mut hosts = certs::service_hosts(service_name, service_namespace);
                hosts.extend(extra_hosts.iter().cloned());
                hosts
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Where to listen (HTTPS); port 0 picks a free port, reported by [`bind`].
    pub addr: SocketAddr,
    pub certs: CertSource,
    pub recheck: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{what} kept changing under us: gave up after {attempts} attempts")]
    Contended { what: String, attempts: usize },
    #[error("webhook certificate: {0}")]
    Cert(#[from] CertError),
    #[error("webhook certificate file {path}: {source}")]
    CertFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr} for the admission webhook: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("admission webhook on {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Client(#[from] openelb_k8s::client::ClientError),
    #[error("cannot start the webhook runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("the webhook thread panicked")]
    Panicked,
}

/// rustls needs a process-wide provider for clients built without one; ring is the one this workspace builds
/// (no aws-lc). Our own TLS configurations name ring explicitly, so this only matters for other users.
fn install_ring() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another thread that installed one is fine: a provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Gets the certificate (creating the Secret and patching the `caBundle` if self-managed), binds `config.addr`
/// and returns the bound address with the server's future, which runs until `shutdown` completes. Fails at once
/// when there is no certificate or the address is taken, so a bad deployment is reported at start.
pub async fn bind(
    client: kube::Client,
    config: WebhookConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl Future<Output = Result<(), WebhookError>>), WebhookError> {
    install_ring();
    let keeper = server::Keeper::new(client.clone(), config.certs.clone());
    let bundle = keeper.current().await?;
    let tls =
        axum_server::tls_rustls::RustlsConfig::from_config(certs::server_config(&bundle.cert_pem, &bundle.key_pem)?);
    let addr = config.addr;
    let bind_err = |source| WebhookError::Bind { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
    let bound = listener.local_addr().map_err(bind_err)?;
    let handle: axum_server::Handle<SocketAddr> = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(listener, tls.clone())
        .map_err(bind_err)?
        .handle(handle.clone())
        .serve(router(api_lister(client)).into_make_service());
    tracing::info!("admission webhook listening on https://{bound}{PATH}");
    let recheck = config.recheck;
    let run = async move {
        let maintenance = tokio::spawn(keeper.maintain(tls, bundle, recheck));
        let mut server = std::pin::pin!(server);
        let mut shutdown = std::pin::pin!(shutdown);
        let result = tokio::select! {
            r = &mut server => r,
            () = &mut shutdown => {
                handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
                server.await
            }
        };
        maintenance.abort();
        result.map_err(|source| WebhookError::Serve { addr: bound, source })
    };
    Ok((bound, run))
}

/// [`bind`], then serve until `shutdown` completes.
pub async fn serve(
    client: kube::Client,
    config: WebhookConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WebhookError> {
    let (_, run) = bind(client, config, shutdown).await?;
    run.await
}

/// A webhook on its own thread and runtime, for callers that have none (integration tests, tools).
pub struct Background {
    addr: SocketAddr,
    thread: BackgroundThread<WebhookError>,
}

impl Background {
    /// Starts a webhook with the client from `kubeconfig` and returns once it listens (or failed to start).
    pub fn spawn(kubeconfig: &Path, config: WebhookConfig) -> Result<Self, WebhookError> {
        let kubeconfig = kubeconfig.to_path_buf();
        let (stop, stopped) = oneshot::channel::<()>();
        let (listening, bound) = std::sync::mpsc::channel::<SocketAddr>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(WebhookError::Runtime)?;
            runtime.block_on(async move {
                let client = openelb_k8s::client::client(Some(&kubeconfig)).await?;
                let (addr, run) = bind(client, config, async move {
                    let _ = stopped.await;
                })
                .await?;
                let _ = listening.send(addr);
                run.await
            })
        });
        match bound.recv() {
            Ok(addr) => Ok(Background {
                addr,
                thread: BackgroundThread::new(
                    move || {
                        let _ = stop.send(());
                    },
                    thread,
                ),
            }),
            // The thread ended before listening: its result says why.
            Err(_) => match thread.join() {
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) | Err(_) => Err(WebhookError::Panicked),
            },
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the webhook and waits for it; returns how it ended.
    pub fn stop(mut self) -> Result<(), WebhookError> {
        self.thread.stop(|| WebhookError::Panicked)
    }
}

#[cfg(test)]
mod tests;
