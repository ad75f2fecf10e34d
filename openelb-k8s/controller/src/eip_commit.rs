//! Group commit of Eip statuses: the decisions recorded in the [`Ledger`](super::ledger::Ledger) reach the API
//! in as few writes as they can. One write per Eip is in flight at a time (its *slot*); whoever waits for a
//! change writes the Eip's whole due status, which carries every change decided so far, so the reconciles that
//! queued behind it find theirs written. A burst of N allocations from one Eip costs a handful of Eip writes
//! instead of N.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::api::Api;

use super::eip_status;
use super::ledger::{Ticket, TicketState};
use super::reconcile::{Context, ReconcileError, is_not_found};
use openelb_k8s::crd::Eip;
use openelb_k8s::decoded::Decoded;

/// One async lock per Eip: its writes are serialised, whatever reconcile carries them.
#[derive(Default)]
pub struct Slots(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl Slots {
    pub fn of(&self, eip: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut slots = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(eip.to_string()).or_default().clone()
    }
}

/// Waits until every ticket is written, writing the Eips' due statuses when it is its turn.
pub async fn commit(ctx: &Context, tickets: &[Ticket]) -> Result<(), ReconcileError> {
    futures::future::try_join_all(tickets.iter().map(|t| commit_one(ctx, t))).await.map(|_| ())
}

async fn commit_one(ctx: &Context, ticket: &Ticket) -> Result<(), ReconcileError> {
    let lost = || ReconcileError::Stale { object: format!("Eip {}", ticket.eip) };
    loop {
        let state = ctx.ledger().state(ticket);
        match state {
            TicketState::Written => return Ok(()),
            TicketState::Lost => return Err(lost()),
            TicketState::Pending => {}
        }
        let slot = ctx.slots.of(&ticket.eip);
        let _turn = slot.lock().await;
        // The write just before ours may have carried this change.
        let state = ctx.ledger().state(ticket);
        match state {
            TicketState::Written => return Ok(()),
            TicketState::Lost => return Err(lost()),
            TicketState::Pending => write_due(ctx, &ticket.eip).await?,
        }
    }
}

/// Writes the status an Eip is due, if any; the caller holds its slot. A write refused because the Eip changed
/// reloads its allocations from the server: what was not written is lost, and its Services are decided again.
pub async fn write_due(ctx: &Context, name: &str) -> Result<(), ReconcileError> {
    let object = || format!("Eip {name}");
    let due = {
        let mut ledger = ctx.ledger();
        let before = ledger.eip(name).map(|e| eip_status::conditions(e).to_vec()).unwrap_or_default();
        ledger.due(name, &eip_status::now()).map(|(eip, seq)| (eip, seq, before))
    };
    let Some((eip, seq, before)) = due else { return Ok(()) };
    ctx.may_write("write status of", object)?;
    match ctx.write_eip_status(&before, &eip).await {
        Ok(version) => {
            let mut stored = eip;
            stored.metadata.resource_version = version;
            ctx.ledger().written(name, seq, Arc::new(stored));
            Ok(())
        }
        Err(source) if is_conflict(&source) => {
            reload(ctx, name).await?;
            Err(ReconcileError::Stale { object: object() })
        }
        Err(source) if is_not_found(&source) => Err(ReconcileError::Stale { object: object() }),
        Err(source) => Err(ReconcileError::Write { action: "write status of", object: object(), source }),
    }
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.is_conflict())
}

/// Reads the Eip from the server and takes its allocations as they are there.
async fn reload(ctx: &Context, name: &str) -> Result<(), ReconcileError> {
    let api: Api<Decoded<Eip>> = Api::all(ctx.client.clone());
    let read = |source| ReconcileError::Read { action: "read", object: format!("Eip {name}"), source };
    let Some(current) = api.get_opt(name).await.map_err(read)? else { return Ok(()) };
    let current = match current {
        Decoded::Ok(eip) => eip,
        Decoded::Undecodable(u) => openelb_k8s::crd::salvaged(&u),
    };
    let reloaded = ctx.ledger().reload(Arc::new(current));
    let recheck = reloaded
        .map_err(|source| ReconcileError::Convert { object: format!("Eip {name}"), source: Box::new(source) })?;
    tracing::warn!(
        eip = %name,
        services = recheck.len(),
        "the Eip's allocations were written by someone else; reloaded from the server, decisions not yet written \
         are taken again"
    );
    for key in recheck {
        tracing::debug!(eip = %name, service = %key, "held an address the server does not record; re-checked at its next reconcile");
    }
    Ok(())
}
