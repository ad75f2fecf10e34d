//! The reconcile step for one Service, what every reconcile shares, and what to do when one fails.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1 as corev1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use openelb_core::ipam::{Change, EventType};
use openelb_core::model::ServiceKey;
use openelb_k8s::manifest::ObjectKind;

use super::conditions;
use super::eip_commit::{self, Slots};
use super::eip_status;
use super::events::{EventReason, Events, RateLimiter, WARNING_INTERVAL};
use super::ledger::Ledger;
use super::metrics::{ErrorLabels, FailureLabels, Metrics, failure_kind};
use super::service_writes::{self, ServiceWrites};
use super::undecodable::Reporter;
use openelb_k8s::convert::{self, ConvertError};
use openelb_k8s::crd::Eip;
use openelb_k8s::decoded::Decoded;
use openelb_k8s::serve::KindLabels;

/// Field manager shown in `managedFields` for what the controller writes.
pub const FIELD_MANAGER: &str = "openelb-controller";
/// A lost race is cheap to retry once the caches have caught up.
const CONFLICT_RETRY: Duration = Duration::from_millis(200);
/// How soon to look again when the shared Eip cache is behind a controller's own watch.
pub(super) const CACHE_RETRY: Duration = Duration::from_millis(200);
/// How soon a Service that got no address is tried again without any change: the Eip that would serve it
/// may have reached the shared cache only after the event that re-enqueued the Service.
const FAILED_RETRY: Duration = Duration::from_secs(30);
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Periodic re-check, so a write lost without an error is repaired eventually.
pub(super) const RESYNC: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("cannot read the objects of {object}: {source}")]
    Convert {
        object: String,
        #[source]
        source: Box<ConvertError>,
    },
    #[error("{action} {object}: {source}")]
    Write {
        action: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("{action} {object}: {source}")]
    Read {
        action: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("{action} {object}: this replica no longer holds the Lease, so it writes nothing more")]
    NotLeading { action: &'static str, object: String },
    #[error("{object} changed since the cache saw it; deciding again once the cache catches up")]
    Stale { object: String },
}

/// What kind of failure ended a reconcile: the `error` label of `openelb_reconcile_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReconcileErrorKind {
    /// An object the decision needs does not convert to core values.
    InvalidObject,
    ApiRead,
    ApiWrite,
    /// Someone wrote the object since our cache saw it (a stale copy, or a write refused with 409).
    Conflict,
    /// The Lease was lost during the reconcile.
    NotLeading,
}

impl ReconcileErrorKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ReconcileErrorKind::InvalidObject => "invalid_object",
            ReconcileErrorKind::ApiRead => "api_read",
            ReconcileErrorKind::ApiWrite => "api_write",
            ReconcileErrorKind::Conflict => "conflict",
            ReconcileErrorKind::NotLeading => "not_leading",
        }
    }
}

impl ReconcileError {
    /// Someone wrote the object since our cache saw it: not a failure, a retry after the cache catches up.
    pub fn is_conflict(&self) -> bool {
        matches!(self, ReconcileError::Stale { .. })
            || matches!(self, ReconcileError::Write { source: kube::Error::Api(status), .. } if status.is_conflict())
    }

    pub fn kind(&self) -> ReconcileErrorKind {
        match self {
            _ if self.is_conflict() => ReconcileErrorKind::Conflict,
            ReconcileError::Convert { .. } => ReconcileErrorKind::InvalidObject,
            ReconcileError::Read { .. } => ReconcileErrorKind::ApiRead,
            ReconcileError::Write { .. } => ReconcileErrorKind::ApiWrite,
            ReconcileError::NotLeading { .. } => ReconcileErrorKind::NotLeading,
            ReconcileError::Stale { .. } => ReconcileErrorKind::Conflict,
        }
    }
}

/// What every reconcile of one leadership term shares: the client, the caches, Events, metrics, whether this
/// replica may still write, and the per-object failure counts for back-off.
pub struct Context {
    pub client: Client,
    pub eips: Store<Eip>,
    pub namespaces: Store<corev1::Namespace>,
    pub events: Events,
    pub metrics: Metrics,
    /// Open while this replica holds the Lease (or runs without leader election).
    leading: AtomicBool,
    /// The term's allocations; every decision is taken and recorded under this lock (a short one: no I/O).
    ledger: Mutex<Ledger>,
    /// Each Eip's writes, one at a time.
    pub(super) slots: Slots,
    failures: Mutex<HashMap<String, u32>>,
    log_limiter: Mutex<RateLimiter>,
    /// Services whose last decision gave them no address: tried again on every Eip change.
    waiting: Mutex<std::collections::BTreeSet<(String, String)>>,
    /// Services whose objects do not decode, reported once per distinct error.
    undecodable_services: Mutex<Reporter>,
    /// Services found with nothing to write this term (`openelb_services_verified`), by a hash of their key:
    /// 8 bytes each rather than two strings, at the price of a collision undercounting one in billions.
    verified: Mutex<std::collections::HashSet<u64>>,
}

impl Context {
    pub fn new(
        client: Client,
        eips: Store<Eip>,
        namespaces: Store<corev1::Namespace>,
        events: Events,
        metrics: Metrics,
    ) -> Self {
        let undecodable_services = Mutex::new(Reporter::new(
            ObjectKind::Service.as_str(),
            metrics.undecodable(ObjectKind::Service.as_str()),
            "not reconciled until it decodes: its address, label and finalizer stay as they are",
        ));
        // A new term verifies every Service again.
        metrics.services_verified.set(0);
        Context {
            client,
            eips,
            namespaces,
            events,
            metrics,
            leading: AtomicBool::new(true),
            ledger: Mutex::new(Ledger::default()),
            slots: Slots::default(),
            failures: Mutex::new(HashMap::new()),
            log_limiter: Mutex::new(RateLimiter::new(WARNING_INTERVAL)),
            undecodable_services,
            waiting: Mutex::default(),
            verified: Mutex::default(),
        }
    }

    /// Counts `svc`, one of ours, in `openelb_services_verified` (once per term) when its decision wrote nothing.
    fn verified(&self, svc: &ServiceKey) {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let hash = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(svc);
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.insert(hash) {
            self.metrics.services_verified.set(verified.len().try_into().unwrap_or(i64::MAX));
        }
    }

    /// Stops every write from now on: the Lease is lost or the process is stopping.
    pub fn stop_writing(&self) {
        self.leading.store(false, Ordering::SeqCst);
    }

    /// Checked before each write, so a reconcile running when the Lease is lost stops at its next write.
    pub fn may_write(&self, action: &'static str, object: impl FnOnce() -> String) -> Result<(), ReconcileError> {
        if self.leading.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(ReconcileError::NotLeading { action, object: object() })
        }
    }

    /// Replaces an Eip's status, conditions included, guarded by the `resourceVersion` `eip` carries; the new
    /// `resourceVersion`. The answer is read as [`Decoded`], so writing the status of an Eip whose spec does not
    /// decode (`eip` is then what of it reads, and the API server takes only its status) is no failure.
    ///
    /// `before` are the conditions the write replaces (those of the version `eip` was computed from): each reason
    /// the Eip becomes invalid for gets one Warning Event, whichever reconcile writes the change, and a restart
    /// repeats none.
    pub(super) async fn write_eip_status(
        &self,
        before: &[Condition],
        eip: &Eip,
    ) -> Result<Option<String>, kube::Error> {
        let api: Api<Decoded<Eip>> = Api::all(self.client.clone());
        let written = api.replace_status(&eip.name_any(), &PostParams::default(), &Decoded::Ok(eip.clone())).await?;
        for (reason, note) in conditions::appeared(before, eip_status::conditions(eip)) {
            if let Some(event) = reason.event_reason() {
                self.events.publish(&eip.object_ref(&()), true, event, &note).await;
            }
        }
        Ok(written.meta().resource_version.clone())
    }

    pub(super) fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ledger, brought up to date with the Eip cache first.
    pub(super) fn current_ledger(&self) -> Result<std::sync::MutexGuard<'_, Ledger>, ReconcileError> {
        let mut ledger = self.ledger();
        let eips = self.eips.state();
        let refreshed = ledger
            .refresh(&eips)
            .map_err(|source| ReconcileError::Convert { object: "the Eips".to_string(), source: Box::new(source) })?;
        for warning in ledger.new_warnings() {
            tracing::warn!("{warning}");
        }
        if !refreshed.recheck.is_empty() {
            tracing::info!(
                services = refreshed.recheck.len(),
                eips = ?refreshed.reshaped,
                "Eips gone or rewritten by someone else: their former holders are decided again at their next reconcile"
            );
        }
        Ok(ledger)
    }

    /// Services waiting for an address, as (namespace, name).
    pub fn waiting(&self) -> Vec<(String, String)> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    pub(super) fn set_waiting(&self, key: ServiceKey, waiting: bool) {
        let mut set = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let entry = (key.namespace, key.name);
        if waiting {
            set.insert(entry);
        } else {
            set.remove(&entry);
        }
    }

    pub(super) fn record_failure(&self, key: &str) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    pub(super) fn clear_failures(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    fn observe_duration(&self, kind: ObjectKind, started: Instant) {
        let labels = KindLabels { kind: kind.as_str() };
        self.metrics.reconcile_duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    }
}

/// Runs one reconcile of a `kind` object, times it and counts its failure. kube-runtime runs it, and its error
/// policy, inside its `reconciling object{object.ref,object.reason}` span, so log lines need not name the object.
pub(super) async fn run(
    ctx: &Context,
    kind: ObjectKind,
    reconcile: impl Future<Output = Result<Action, ReconcileError>>,
) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let result = reconcile.await;
    ctx.observe_duration(kind, started);
    if let Err(e) = &result {
        let labels = ErrorLabels { kind: kind.as_str(), error: e.kind() };
        ctx.metrics.reconcile_errors.get_or_create(&labels).inc();
    }
    result
}

/// The Service as the core names it.
fn core_key(svc: &corev1::Service) -> ServiceKey {
    ServiceKey::new(convert::namespace_of(&svc.metadata), svc.name_any())
}

fn service_key(svc: &impl Resource) -> String {
    format!("Service {}/{}", convert::namespace_of(svc.meta()), svc.name_any())
}

/// Exponential: 0.5 s, 1 s, 2 s ... capped at a minute.
pub fn backoff(failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
    BACKOFF_FIRST.saturating_mul(factor).min(BACKOFF_MAX)
}

/// A Service that does not decode is reported and left as it is (nothing is decided from a guess about it).
pub async fn reconcile(svc: Arc<Decoded<corev1::Service>>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    match (*svc).as_result() {
        Ok(svc) => run(&ctx, ObjectKind::Service, reconcile_service(svc, &ctx)).await,
        Err(u) => {
            ctx.undecodable_services.lock().unwrap_or_else(|p| p.into_inner()).bad(u);
            Ok(Action::await_change())
        }
    }
}

async fn reconcile_service(svc: &corev1::Service, ctx: &Context) -> Result<Action, ReconcileError> {
    let key = service_key(svc);
    tracing::debug!(stage = "start", version = ?svc.metadata.resource_version, "reconcile stage");
    ctx.may_write("reconcile", || key.clone())?;
    let namespace = ctx.namespaces.get(&ObjectRef::new(&convert::namespace_of(&svc.metadata)));
    let writes = {
        let mut ledger = ctx.current_ledger()?;
        let decided = service_writes::decide(svc, &mut ledger, namespace.as_deref())
            .map_err(|source| ReconcileError::Convert { object: key.clone(), source: Box::new(source) })?;
        match decided {
            Some(writes) => writes,
            // Our own later write has not reached the cache yet: its event brings the current copy.
            None => return Ok(Action::requeue(CACHE_RETRY)),
        }
    };
    tracing::debug!(stage = "decided", tickets = writes.tickets.len(), "reconcile stage");
    if writes.is_empty() && service_writes::concerns_us(svc) {
        ctx.verified(&core_key(svc));
    }
    eip_commit::commit(ctx, &writes.tickets).await?;
    tracing::debug!(stage = "eips-written", "reconcile stage");
    if write(ctx, svc, &writes).await? {
        log_outcome(ctx, &key, &writes);
        count_outcome(ctx, &writes);
        publish_events(ctx, svc, &writes).await;
        tracing::debug!(stage = "events-published", "reconcile stage");
    } else {
        tracing::debug!("gone before its writes; the cached copy was stale");
        forget(ctx, svc).await?;
    }
    ctx.clear_failures(&key);
    let failed = matches!(writes.outcome.change, Change::Failed { .. });
    ctx.set_waiting(core_key(svc), failed);
    match writes.outcome.change {
        Change::Failed { .. } => Ok(Action::requeue(FAILED_RETRY)),
        _ => Ok(Action::requeue(RESYNC)),
    }
}

/// A Service found gone while its decision was carried out gives back what the decision gave it.
async fn forget(ctx: &Context, svc: &corev1::Service) -> Result<(), ReconcileError> {
    let key = core_key(svc);
    let released = ctx.ledger().release(&key);
    if let Some(((pool, ip), ticket)) = released {
        tracing::info!(%pool, %ip, "released: the Service is gone");
        eip_commit::commit(ctx, &[ticket]).await?;
    }
    Ok(())
}

fn log_outcome(ctx: &Context, key: &str, writes: &ServiceWrites) {
    match &writes.outcome.change {
        Change::NotOurs | Change::Kept { .. } => tracing::debug!(change = ?writes.outcome.change),
        Change::Assigned { pool, ip, released: None } => tracing::info!(%pool, %ip, "assigned"),
        Change::Assigned { pool, ip, released: Some((old_pool, old_ip)) } => {
            tracing::info!(%pool, %ip, %old_pool, %old_ip, "assigned after releasing its address")
        }
        Change::Released { pool, ip, reason } => {
            tracing::info!(?pool, ?ip, %reason, "released")
        }
        // Retried on every Eip change: the same failure is a warning once per interval, like its Event.
        Change::Failed { reason, released } => {
            let mut limiter = ctx.log_limiter.lock().unwrap_or_else(|p| p.into_inner());
            if released.is_some() || limiter.admit(key, "no address", reason, Instant::now()) {
                tracing::warn!(%reason, ?released, "no address")
            } else {
                tracing::debug!(%reason, "still no address")
            }
        }
    }
}

fn count_outcome(ctx: &Context, writes: &ServiceWrites) {
    match &writes.outcome.change {
        Change::Assigned { .. } => {
            ctx.metrics.allocations.inc();
        }
        Change::Failed { reason, .. } => {
            ctx.metrics.allocation_failures.get_or_create(&FailureLabels { reason: failure_kind(reason) }).inc();
        }
        Change::NotOurs | Change::Kept { .. } | Change::Released { .. } => {}
    }
}

/// The core's Events, on the Service. `AssignIP` also names the Eip (the core's message, kept upstream's,
/// names the address only).
async fn publish_events(ctx: &Context, svc: &corev1::Service, writes: &ServiceWrites) {
    if writes.outcome.events.is_empty() {
        return;
    }
    let regarding = svc.object_ref(&());
    for event in &writes.outcome.events {
        let note = match &writes.outcome.change {
            Change::Assigned { pool, .. } if event.reason == EventReason::AssignIp => {
                format!("{} (Eip {pool})", event.message)
            }
            _ => event.message.clone(),
        };
        ctx.events.publish(&regarding, event.type_ == EventType::Warning, event.reason, &note).await;
    }
}

/// Carries the Service's writes out once its Eips are written: status, then label and finalizer, each guarded
/// by the `resourceVersion` the decision was taken from (or the previous write returned). `false` when the
/// Service turned out to be gone.
async fn write(ctx: &Context, svc: &corev1::Service, writes: &ServiceWrites) -> Result<bool, ReconcileError> {
    let ns = convert::namespace_of(&svc.metadata);
    let name = svc.name_any();
    let svc_api: Api<corev1::Service> = Api::namespaced(ctx.client.clone(), &ns);
    let pp = PatchParams { field_manager: Some(FIELD_MANAGER.to_string()), ..Default::default() };
    let object = || format!("Service {ns}/{name}");
    let mut version = svc.metadata.resource_version.clone();
    for (action, patch, status) in [
        ("write status of", &writes.service_status, true),
        ("write label and finalizer of", &writes.service_meta, false),
    ] {
        let Some(patch) = patch else { continue };
        let mut patch = patch.clone();
        patch["metadata"]["resourceVersion"] = serde_json::json!(version);
        ctx.may_write(action, object)?;
        let result = if status {
            svc_api.patch_status(&name, &pp, &Patch::Merge(&patch)).await
        } else {
            svc_api.patch(&name, &pp, &Patch::Merge(&patch)).await
        };
        match result {
            // Each write bumps the version the next one is guarded by.
            Ok(written) => {
                tracing::debug!(stage = action, "reconcile stage");
                version = written.metadata.resource_version
            }
            Err(source) if is_not_found(&source) => return Ok(false),
            Err(source) => return Err(ReconcileError::Write { action, object: object(), source }),
        }
    }
    if version != svc.metadata.resource_version {
        ctx.ledger().service_written(&core_key(svc), version.as_deref());
    }
    Ok(true)
}

/// An object that is gone needs nothing more: its cached copy was stale (typically the last one seen while it
/// was being deleted, after our finalizer came off).
pub(super) fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.is_not_found())
}

/// What to do after a failed reconcile of the object called `key`: retry soon after a conflict, back off
/// after anything else, and wait for the next term when the Lease is gone.
pub(super) fn retry_after(error: &ReconcileError, key: &str, ctx: &Context) -> Action {
    if matches!(error, ReconcileError::NotLeading { .. }) {
        tracing::debug!("{error}");
        return Action::await_change();
    }
    if error.is_conflict() {
        tracing::debug!("{error}; retrying");
        return Action::requeue(CONFLICT_RETRY);
    }
    let failures = ctx.record_failure(key);
    let delay = backoff(failures);
    tracing::warn!("{error}; retry {failures} in {delay:?}");
    Action::requeue(delay)
}

pub fn error_policy(svc: Arc<Decoded<corev1::Service>>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    retry_after(error, &service_key(&*svc), &ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An API server's refusal, as it reports one: the reason with its code.
    fn api_error(code: u16) -> kube::Error {
        let reason = if code == 409 { "Conflict" } else { "InternalError" };
        kube::Error::Api(Box::new(kube::core::Status::failure("refused", reason).with_code(code)))
    }

    #[test]
    fn errors_fall_into_a_few_kinds() {
        let object = || "Service ns/a".to_string();
        let write =
            |code| ReconcileError::Write { action: "write status of", object: object(), source: api_error(code) };
        assert_eq!(write(409).kind(), ReconcileErrorKind::Conflict);
        assert_eq!(ReconcileError::Stale { object: object() }.kind(), ReconcileErrorKind::Conflict);
        assert_eq!(write(500).kind(), ReconcileErrorKind::ApiWrite);
        let read = ReconcileError::Read { action: "read", object: object(), source: api_error(500) };
        assert_eq!(read.kind(), ReconcileErrorKind::ApiRead);
        assert_eq!(
            ReconcileError::NotLeading { action: "reconcile", object: object() }.kind(),
            ReconcileErrorKind::NotLeading
        );
        let source = Box::new(ConvertError::MissingName { kind: "Service" });
        assert_eq!(ReconcileError::Convert { object: object(), source }.kind(), ReconcileErrorKind::InvalidObject);
    }

    #[test]
    fn backoff_doubles_from_half_a_second_and_stops_at_a_minute() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(8), Duration::from_secs(60));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(60));
    }
}
