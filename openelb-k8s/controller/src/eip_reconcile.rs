//! The reconcile step for one Eip: finalizer, status and conditions, and the end of a deletion.

use std::sync::Arc;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::eip_commit;
use super::eip_status;
use super::eip_writes::{self, EipWrites};
use super::events::EventReason;
use super::reconcile::{CACHE_RETRY, Context, FIELD_MANAGER, RESYNC, ReconcileError, is_not_found, retry_after, run};
use openelb_k8s::crd::{Eip, EipStatus};
use openelb_k8s::decoded::Decoded;
use openelb_k8s::manifest::ObjectKind;

/// The Eip comes from the shared cache, which holds every Eip as far as it reads; the decision reads the ledger.
pub async fn reconcile(eip: Arc<Eip>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    run(&ctx, ObjectKind::Eip, reconcile_eip(&eip.name_any(), &ctx)).await
}

async fn reconcile_eip(name: &str, ctx: &Context) -> Result<Action, ReconcileError> {
    let object = || format!("Eip {name}");
    ctx.may_write("reconcile", object)?;
    // Its writes take their turn with those of Service reconciles.
    let slot = ctx.slots.of(name);
    let _turn = slot.lock().await;
    let (current, writes) = {
        // Decide from the ledger the Service reconciles use, so both agree on every Eip.
        let ledger = ctx.current_ledger()?;
        let Some(current) = ledger.eip(name).cloned() else {
            // The ledger has not caught up with the cache yet (or the Eip is gone,
            // and the retry finds nothing to do).
            return Ok(Action::requeue(CACHE_RETRY));
        };
        let pool = ledger.pool_status(name).unwrap_or_default();
        let writes = eip_writes::decide(&current, pool, ledger.problems(name), &eip_status::now());
        (current, writes)
    };
    if !write(ctx, &current, &writes).await? {
        return Ok(Action::await_change());
    }
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

/// Carries the writes out, holding the Eip's slot; each step is guarded by the `resourceVersion` the ledger knows
/// (the previous step's). `false` when the Eip turned out to be gone.
async fn write(ctx: &Context, eip: &Eip, writes: &EipWrites) -> Result<bool, ReconcileError> {
    let name = eip.name_any();
    if writes.add_finalizer
        && !patch_finalizers(ctx, &name, "add the finalizer to", eip_writes::finalizers_with(eip, true)).await?
    {
        return Ok(false);
    }
    if writes.status.is_some() {
        // The status the Eip is due now, which also carries allocations decided since `writes`.
        match eip_commit::write_due(ctx, &name).await {
            Err(ReconcileError::Stale { .. }) if ctx.ledger().eip(&name).is_none() => return Ok(false),
            other => other?,
        }
    }
    if writes.remove_finalizer
        && !patch_finalizers(ctx, &name, "remove the finalizer of", eip_writes::finalizers_with(eip, false)).await?
    {
        return Ok(false);
    }
    Ok(true)
}

/// Sets `metadata.finalizers`, guarded by the version the ledger knows; `false` when the Eip is gone.
async fn patch_finalizers(
    ctx: &Context,
    name: &str,
    action: &'static str,
    finalizers: Option<Vec<String>>,
) -> Result<bool, ReconcileError> {
    let object = || format!("Eip {name}");
    ctx.may_write(action, object)?;
    let version = ctx.ledger().eip(name).and_then(|e| e.metadata.resource_version.clone());
    // Read back as `Decoded`: the write of an object that does not decode succeeds, and its answer must not
    // look like a failure.
    let api: Api<Decoded<Eip>> = Api::all(ctx.client.clone());
    let pp = PatchParams { field_manager: Some(FIELD_MANAGER.to_string()), ..Default::default() };
    let patch = json!({"metadata": {"resourceVersion": version, "finalizers": finalizers}});
    match api.patch(name, &pp, &Patch::Merge(&patch)).await {
        Ok(written) => {
            let known = ctx.ledger().eip(name).map(|e| Eip::clone(e));
            if let Some(mut known) = known {
                known.metadata.resource_version = written.meta().resource_version.clone();
                known.metadata.finalizers = written.meta().finalizers.clone();
                ctx.ledger().saw(Arc::new(known));
            }
            Ok(true)
        }
        Err(source) if is_not_found(&source) => Ok(false),
        Err(source) => Err(ReconcileError::Write { action, object: object(), source }),
    }
}

pub fn error_policy(eip: Arc<Eip>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    retry_after(error, &format!("Eip {}", eip.name_any()), &ctx)
}
