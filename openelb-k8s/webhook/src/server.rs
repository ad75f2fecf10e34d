//! HTTP side of the webhook: the `/validate-eip` route, reading the other Eips, and keeping the served
//! certificate current (reloaded in place, without dropping the listener).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum_server::tls_rustls::RustlsConfig;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::{Api, Client};

use super::admission;
use super::certs::{self, CertBundle};
use super::self_managed::{self, CaBundle};
use super::{CertSource, WebhookError};
use openelb_k8s::crd::Eip;
use openelb_k8s::decoded::Decoded;

/// Below the configuration's `timeoutSeconds` (5), so a slow list is answered with our message rather than cut
/// off by the API server.
const LIST_TIMEOUT: Duration = Duration::from_secs(4);

/// The Eips the decision compares against.
#[derive(Debug, Clone, Default)]
pub struct Existing {
    pub eips: Vec<Eip>,
    /// `Eip/<name> (<why>)` for stored objects that do not read as an Eip.
    pub unreadable: Vec<String>,
}

pub type ListFuture = Pin<Box<dyn Future<Output = Result<Existing, String>> + Send>>;
/// Lists the Eips that exist now; a function so tests can serve without an API server.
pub type Lister = Arc<dyn Fn() -> ListFuture + Send + Sync>;

/// Lists Eips from the API on every review. A quorum read rather than a watch cache: `kubectl apply -f dir/`
/// sends Eips milliseconds apart, and the second must be checked against the first. Eip writes are rare, and a
/// list of pools is small.
pub fn api_lister(client: Client) -> Lister {
    // Each object decoded on its own: one that does not decode is named in a warning, never fails the list.
    let api: Api<Decoded<Eip>> = Api::all(client);
    Arc::new(move || {
        let api = api.clone();
        Box::pin(async move {
            let list = api.list(&ListParams::default()).await.map_err(|e| format!("listing Eips: {e}"))?;
            let mut existing = Existing::default();
            for item in list.items {
                match item {
                    Decoded::Ok(eip) => existing.eips.push(eip),
                    Decoded::Undecodable(u) => existing.unreadable.push(format!("Eip/{} ({u})", u.name())),
                }
            }
            Ok(existing)
        })
    })
}

/// The webhook's routes (plain HTTP; [`super::bind`] puts TLS in front).
pub fn router(lister: Lister) -> Router {
    Router::new().route(super::PATH, post(validate)).with_state(lister)
}

async fn validate(State(lister): State<Lister>, body: Bytes) -> Response {
    let request = match admission::decode(&body) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("refusing a malformed admission review ({} bytes): {e}", body.len());
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    let existing = if admission::needs_existing(&request) {
        let listed = tokio::time::timeout(LIST_TIMEOUT, lister())
            .await
            .unwrap_or_else(|_| Err(format!("listing Eips took longer than {LIST_TIMEOUT:?}")));
        match listed {
            Ok(x) => x,
            Err(e) => {
                // An error status lets the configuration's failurePolicy decide, as for an unreachable webhook.
                tracing::warn!(uid = %request.uid, name = %request.name, "cannot review: {e}");
                let msg = format!("cannot check Eip {:?} against the other Eips: {e}\n", request.name);
                return (StatusCode::SERVICE_UNAVAILABLE, msg).into_response();
            }
        }
    } else {
        Existing::default()
    };
    let response = admission::review(&request, &existing.eips, &existing.unreadable);
    match &response.status {
        Some(s) if !response.allowed => {
            tracing::info!(uid = %request.uid, name = %request.name, op = ?request.operation, "denied: {}", s.message)
        }
        _ => tracing::debug!(uid = %request.uid, name = %request.name, op = ?request.operation, "allowed"),
    }
    axum::Json(response.into_review()).into_response()
}

/// Where the served certificate comes from, and how to keep it current.
pub struct Keeper {
    client: Client,
    source: CertSource,
}

impl Keeper {
    pub fn new(client: Client, source: CertSource) -> Self {
        Keeper { client, source }
    }

    /// The bundle to serve now. Self-managed: also makes the webhook configuration trust it (a missing
    /// configuration or a failed update is logged and retried by [`Keeper::maintain`], not fatal: the
    /// controller's other work must not stop over it).
    pub async fn current(&self) -> Result<CertBundle, WebhookError> {
        match &self.source {
            CertSource::Dir(dir) => read_dir(dir),
            CertSource::SelfManaged { secret_namespace, secret_name, webhook_config_name, .. } => {
                let secrets: Api<Secret> = Api::namespaced(self.client.clone(), secret_namespace);
                let bundle =
                    self_managed::ensure_secret(&secrets, secret_namespace, secret_name, &self.source.hosts()).await?;
                let configs: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
                match self_managed::ensure_ca_bundle(&configs, webhook_config_name, &bundle.ca_pem).await {
                    Ok(CaBundle::Patched(n)) => {
                        tracing::info!(
                            "ValidatingWebhookConfiguration {webhook_config_name}: caBundle set on {n} webhook(s)"
                        )
                    }
                    Ok(CaBundle::Unchanged) => {}
                    Ok(CaBundle::NoConfiguration) => tracing::warn!(
                        "ValidatingWebhookConfiguration {webhook_config_name} does not exist: the API server does not \
                         call this webhook (apply deploy/ or pass --no-webhook)"
                    ),
                    Err(e) => tracing::warn!("{e}"),
                }
                Ok(bundle)
            }
        }
    }

    /// Every `every`, re-reads the certificate (rotated by another replica, renewed by cert-manager, or due
    /// for renewal here) and reloads the TLS configuration when it changed. Runs until dropped.
    pub async fn maintain(self, tls: RustlsConfig, mut serving: CertBundle, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match self.current().await {
                Ok(b) if b == serving => {}
                Ok(b) => match certs::server_config(&b.cert_pem, &b.key_pem) {
                    Ok(config) => {
                        tls.reload_from_config(config);
                        tracing::info!("webhook certificate reloaded");
                        serving = b;
                    }
                    Err(e) => tracing::warn!("keeping the current webhook certificate: {e}"),
                },
                Err(e) => tracing::warn!("keeping the current webhook certificate: {e}"),
            }
        }
    }
}

fn read_dir(dir: &std::path::Path) -> Result<CertBundle, WebhookError> {
    // Two small files: reading them blocks for less time than a task switch would cost.
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| WebhookError::CertFile { path, source })
    };
    let cert_pem = read(self_managed::KEY_CERT)?;
    let key_pem = read(self_managed::KEY_KEY)?;
    // Validates the pair now, so a bad mount is reported at start and never replaces a working certificate.
    certs::server_config(&cert_pem, &key_pem)?;
    Ok(CertBundle { ca_pem: String::new(), cert_pem, key_pem })
}
