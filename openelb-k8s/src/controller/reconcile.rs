//! The reconcile step for one Service and what to do when it fails.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1 as corev1;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use openelb_core::ipam::Change;

use super::plan::{self, Plan};
use crate::convert::{self, ConvertError};
use crate::crd::Eip;

/// Field manager shown in `managedFields` for what the controller writes.
pub const FIELD_MANAGER: &str = "openelb-controller";
/// A lost race is cheap to retry once the caches have caught up.
const CONFLICT_RETRY: Duration = Duration::from_millis(200);
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Periodic re-check, so a write lost without an error is repaired eventually.
const RESYNC: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("cannot read the objects of Service {service}: {source}")]
    Convert {
        service: String,
        #[source]
        source: ConvertError,
    },
    #[error("{action} {object}: {source}")]
    Write {
        action: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
}

impl ReconcileError {
    /// Someone wrote the object since our cache saw it: not a failure, a retry after the cache catches up.
    pub fn is_conflict(&self) -> bool {
        matches!(self, ReconcileError::Write { source: kube::Error::Api(status), .. } if status.is_conflict())
    }
}

/// What every reconcile shares: the client, the caches and the per-Service failure counts for back-off.
pub struct Context {
    pub client: Client,
    pub eips: Store<Eip>,
    pub namespaces: Store<corev1::Namespace>,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, eips: Store<Eip>, namespaces: Store<corev1::Namespace>) -> Self {
        Context { client, eips, namespaces, failures: Mutex::new(HashMap::new()) }
    }

    fn record_failure(&self, key: &str) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    fn clear_failures(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

fn service_key(svc: &corev1::Service) -> String {
    format!("{}/{}", convert::namespace_of(&svc.metadata), svc.name_any())
}

/// Exponential: 0.5 s, 1 s, 2 s ... capped at a minute.
pub fn backoff(failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
    BACKOFF_FIRST.saturating_mul(factor).min(BACKOFF_MAX)
}

pub async fn reconcile(svc: Arc<corev1::Service>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let key = service_key(&svc);
    let eips = ctx.eips.state();
    let namespaces = ctx.namespaces.state();
    let plan = plan::plan(&svc, &eips, &namespaces)
        .map_err(|source| ReconcileError::Convert { service: key.clone(), source })?;
    for warning in &plan.warnings {
        tracing::warn!(service = %key, "{warning}");
    }
    if write(&ctx.client, &svc, &plan).await? {
        log_outcome(&key, &plan);
    } else {
        tracing::debug!(service = %key, "gone before its writes; the cached copy was stale");
    }
    ctx.clear_failures(&key);
    Ok(Action::requeue(RESYNC))
}

fn log_outcome(key: &str, plan: &Plan) {
    match &plan.outcome.change {
        Change::NotOurs | Change::Kept { .. } => tracing::debug!(service = %key, change = ?plan.outcome.change),
        Change::Assigned { pool, ip, .. } => tracing::info!(service = %key, %pool, %ip, "assigned"),
        Change::Released { pool, ip, reason } => {
            tracing::info!(service = %key, ?pool, ?ip, %reason, "released")
        }
        Change::Failed { reason, .. } => tracing::warn!(service = %key, %reason, "no address"),
    }
}

/// Carries the plan out in its order; stops at the first failure so nothing later is written on top of it.
/// `false` when the Service turned out to be gone.
async fn write(client: &Client, svc: &corev1::Service, plan: &Plan) -> Result<bool, ReconcileError> {
    let eip_api: Api<Eip> = Api::all(client.clone());
    for eip in &plan.eips {
        let name = eip.name_any();
        eip_api.replace_subresource("status", &name, &PostParams::default(), eip).await.map_err(|source| {
            ReconcileError::Write { action: "write status of", object: format!("Eip {name}"), source }
        })?;
    }
    let ns = convert::namespace_of(&svc.metadata);
    let name = svc.name_any();
    let svc_api: Api<corev1::Service> = Api::namespaced(client.clone(), &ns);
    let pp = PatchParams { field_manager: Some(FIELD_MANAGER.to_string()), ..Default::default() };
    let object = || format!("Service {ns}/{name}");
    let mut version = svc.metadata.resource_version.clone();
    if let Some(status) = &plan.service_status {
        match svc_api.patch_status(&name, &pp, &Patch::Merge(status)).await {
            // Our own status write bumped the version the metadata patch is guarded by.
            Ok(written) => version = written.metadata.resource_version,
            Err(source) if is_not_found(&source) => return Ok(false),
            Err(source) => return Err(ReconcileError::Write { action: "write status of", object: object(), source }),
        }
    }
    if let Some(meta) = &plan.service_meta {
        let mut meta = meta.clone();
        meta["metadata"]["resourceVersion"] = serde_json::json!(version);
        match svc_api.patch(&name, &pp, &Patch::Merge(&meta)).await {
            Ok(_) => {}
            Err(source) if is_not_found(&source) => return Ok(false),
            Err(source) => {
                return Err(ReconcileError::Write { action: "write label and finalizer of", object: object(), source });
            }
        }
    }
    Ok(true)
}

/// A Service that is gone needs nothing more: its cached copy was stale (typically the last one seen while it
/// was being deleted, after our finalizer came off).
fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.is_not_found())
}

pub fn error_policy(svc: Arc<corev1::Service>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    if error.is_conflict() {
        tracing::debug!("{error}; retrying");
        return Action::requeue(CONFLICT_RETRY);
    }
    let failures = ctx.record_failure(&service_key(&svc));
    let delay = backoff(failures);
    tracing::warn!("{error}; retry {failures} in {delay:?}");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_and_stops_at_a_minute() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(8), Duration::from_secs(60));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(60));
    }
}
