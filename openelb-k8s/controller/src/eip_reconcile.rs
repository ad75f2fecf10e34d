//! The reconcile step for one Eip: finalizer, status and conditions, and the end of a deletion.

use std::sync::Arc;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::eip_status;
use super::eip_writes::{self, EipWrites};
use super::events::EventReason;
use super::reconcile::{CACHE_RETRY, Context, FIELD_MANAGER, RESYNC, ReconcileError, is_not_found, retry_after, run};
use openelb_k8s::crd::{Eip, EipStatus};
use openelb_k8s::decoded::Decoded;
use openelb_k8s::manifest::ObjectKind;

/// The Eip comes as the watch read it (it may not decode); the decision reads the shared cache, which holds
/// every Eip as far as it reads.
pub async fn reconcile(eip: Arc<Decoded<Eip>>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    run(&ctx, ObjectKind::Eip, reconcile_eip(&eip.name_any(), &ctx)).await
}

async fn reconcile_eip(name: &str, ctx: &Context) -> Result<Action, ReconcileError> {
    let object = || format!("Eip {name}");
    ctx.may_write("reconcile", object)?;
    let (current, writes) = {
        let _writer = ctx.write_lock().await;
        // Decide from the same cache the Service reconciles use, so both agree on every Eip.
        let all = ctx.eips.state();
        let Some(current) = all.iter().find(|e| e.name_any() == name).cloned() else {
            // The shared cache has not caught up with this controller's own watch yet (or the Eip is gone,
            // and the retry finds nothing to do).
            return Ok(Action::requeue(CACHE_RETRY));
        };
        let writes = eip_writes::decide(&current, &all, &eip_status::now())
            .map_err(|source| ReconcileError::Convert { object: object(), source: Box::new(source) })?;
        if !write(ctx, &current, &writes).await? {
            return Ok(Action::await_change());
        }
        (current, writes)
    };
    log_changes(&current, &writes);
    if let Some(held_by) = &writes.held_by {
        let note = format!("deletion waits until no Service uses its addresses; in use: {held_by}");
        ctx.events.publish(&current.object_ref(&()), true, EventReason::DeletionHeld, &note).await;
    }
    ctx.clear_failures(&object());
    Ok(Action::requeue(RESYNC))
}

fn condition_line(status: Option<&EipStatus>, type_: &str) -> Option<(String, String)> {
    let c = status?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), format!("{}: {}", c.reason, c.message)))
}

fn log_changes(before: &Eip, writes: &EipWrites) {
    if writes.remove_finalizer {
        tracing::info!("deleted: no address in use any more, finalizer removed");
    }
    if writes.add_finalizer {
        tracing::debug!("finalizer added");
    }
    let Some(status) = &writes.status else { return };
    for type_ in [super::conditions::READY, super::conditions::INVALID, super::conditions::ANNOUNCED] {
        let old = condition_line(before.status.as_ref(), type_);
        let new = condition_line(Some(status), type_);
        if let Some((state, detail)) = new.filter(|n| old.as_ref().is_none_or(|o| o.0 != n.0)) {
            tracing::info!("{type_}={state} ({detail})");
        }
    }
    if let Some(held_by) = &writes.held_by {
        tracing::info!("deletion held: addresses in use: {held_by}");
    }
}

/// Carries the writes out; each step is guarded by the `resourceVersion` they were computed from (or that the
/// previous step produced). `false` when the Eip turned out to be gone.
async fn write(ctx: &Context, eip: &Eip, writes: &EipWrites) -> Result<bool, ReconcileError> {
    let name = eip.name_any();
    let object = || format!("Eip {name}");
    // Read back as `Decoded`: the write of an object that does not decode succeeds, and its answer must not
    // look like a failure.
    let api: Api<Decoded<Eip>> = Api::all(ctx.client.clone());
    let pp = PatchParams { field_manager: Some(FIELD_MANAGER.to_string()), ..Default::default() };
    let mut version = eip.metadata.resource_version.clone();
    if writes.add_finalizer {
        ctx.may_write("add the finalizer to", object)?;
        let patch =
            json!({"metadata": {"resourceVersion": version, "finalizers": eip_writes::finalizers_with(eip, true)}});
        match api.patch(&name, &pp, &Patch::Merge(&patch)).await {
            Ok(written) => version = written.meta().resource_version.clone(),
            Err(source) if is_not_found(&source) => return Ok(false),
            Err(source) => {
                return Err(ReconcileError::Write { action: "add the finalizer to", object: object(), source });
            }
        }
    }
    if let Some(status) = &writes.status {
        ctx.may_write("write status of", object)?;
        let mut updated = eip.clone();
        updated.metadata.resource_version = version.clone();
        updated.status = Some(status.clone());
        match ctx.write_eip_status(eip_status::conditions(eip), &updated).await {
            Ok(written) => version = written,
            Err(source) if is_not_found(&source) => return Ok(false),
            Err(source) => return Err(ReconcileError::Write { action: "write status of", object: object(), source }),
        }
    }
    if writes.remove_finalizer {
        ctx.may_write("remove the finalizer of", object)?;
        let patch =
            json!({"metadata": {"resourceVersion": version, "finalizers": eip_writes::finalizers_with(eip, false)}});
        match api.patch(&name, &pp, &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(source) if is_not_found(&source) => return Ok(false),
            Err(source) => {
                return Err(ReconcileError::Write { action: "remove the finalizer of", object: object(), source });
            }
        }
    }
    Ok(true)
}

pub fn error_policy(eip: Arc<Decoded<Eip>>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    retry_after(error, &format!("Eip {}", eip.name_any()), &ctx)
}
