//! At the start of each leadership term: give back the addresses of Services that no longer exist.
//!
//! A Service carries our finalizer once it holds an address, so normally it cannot go without us. It can
//! when the finalizer is removed by hand, when the Service and its namespace are force-deleted, or when the
//! Eip's status was restored from a backup: such records would hold their addresses forever, and nothing else
//! repairs them, since no Service event will ever name them again (docs/compatibility.md#records-of-deleted-services).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1 as corev1;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use openelb_core::model::ServiceKey;

use super::eip_commit;
use super::ledger::{Ledger, Ticket};
use super::reconcile::{Context, ReconcileError};
use openelb_k8s::convert;

/// Services listed per request.
const PAGE: u32 = 500;

/// Releases, in `ledger`, every address whose Service is not in `existing`: the complete list, taken *after* the
/// ledger followed the Eips (a Service recorded in an Eip existed when it was recorded, so it is in a later list
/// unless it was deleted since). What was released, each with the Eip change to write.
pub fn plan(ledger: &mut Ledger, existing: &[ServiceKey]) -> Vec<(ServiceKey, String, IpAddr, Ticket)> {
    ledger.release_absent(existing)
}

/// Every Service's key, page by page.
async fn list_services(client: &kube::Client) -> Result<Vec<ServiceKey>, ReconcileError> {
    let api: Api<corev1::Service> = Api::all(client.clone());
    let mut keys = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = api.list_metadata(&params).await.map_err(|source| ReconcileError::Read {
            action: "list",
            object: "Services".to_string(),
            source,
        })?;
        keys.extend(page.items.iter().map(|s| ServiceKey::new(convert::namespace_of(&s.metadata), s.name_any())));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(keys),
        }
    }
}

/// Runs the sweep once; returns what it released.
pub async fn run(ctx: &Context) -> Result<Vec<(ServiceKey, String, IpAddr)>, ReconcileError> {
    drop(ctx.current_ledger()?);
    let existing = list_services(&ctx.client).await?;
    let released = plan(&mut ctx.ledger(), &existing);
    let tickets: Vec<Ticket> = released.iter().map(|(.., t)| t.clone()).collect();
    eip_commit::commit(ctx, &tickets).await?;
    let mut by_pool: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, pool, ip, _) in &released {
        tracing::info!(service = %key, %pool, %ip, "released: the Service no longer exists");
        *by_pool.entry(pool).or_default() += 1;
    }
    if !released.is_empty() {
        tracing::info!(released = released.len(), ?by_pool, "addresses of deleted Services given back");
    }
    Ok(released.into_iter().map(|(k, p, ip, _)| (k, p, ip)).collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::eip_status;
    use crate::ledger::TicketState;
    use openelb_k8s::crd::{Eip, EipSpec, EipStatus};

    fn eip(name: &str, address: &str, used: &[(&str, &str)]) -> Arc<Eip> {
        let mut e = Eip::new(name, EipSpec { address: address.into(), ..Default::default() });
        e.metadata.resource_version = Some("4".into());
        e.status = Some(EipStatus {
            used: used.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            usage: used.len() as i64,
            ..Default::default()
        });
        Arc::new(e)
    }

    fn ledger(eips: &[Arc<Eip>]) -> Ledger {
        let mut ledger = Ledger::default();
        ledger.refresh(eips).unwrap();
        ledger
    }

    #[test]
    fn absent_services_are_released_and_their_eips_rewritten() {
        let eips = [
            eip("a", "192.0.2.1-192.0.2.10", &[("192.0.2.1", "ns/kept"), ("192.0.2.2", "ns/gone;ns/shared")]),
            eip("b", "198.51.100.1-198.51.100.5", &[("198.51.100.1", "ns/kept-b")]),
        ];
        let existing =
            [ServiceKey::new("ns", "kept"), ServiceKey::new("ns", "shared"), ServiceKey::new("ns", "kept-b")];
        let mut ledger = ledger(&eips);
        let released = plan(&mut ledger, &existing);
        let [(key, pool, ip, ticket)] = released.as_slice() else { panic!("{released:?}") };
        assert_eq!((key, pool.as_str(), *ip), (&ServiceKey::new("ns", "gone"), "a", "192.0.2.2".parse().unwrap()));
        assert_eq!(ticket.eip, "a", "only Eip a changes");
        assert_eq!(ledger.state(ticket), TicketState::Pending);
        let (due, _) = ledger.due("a", &eip_status::now()).unwrap();
        let used = &due.status.as_ref().unwrap().used;
        assert_eq!(used.get("192.0.2.2").map(String::as_str), Some("ns/shared"));
        assert_eq!(used.len(), 2);
        assert_eq!(due.metadata.resource_version.as_deref(), Some("4"), "the write is guarded");
    }

    #[test]
    fn a_consistent_state_releases_nothing() {
        let eips = [eip("a", "192.0.2.1-192.0.2.10", &[("192.0.2.1", "ns/kept")])];
        let released = plan(&mut ledger(&eips), &[ServiceKey::new("ns", "kept")]);
        assert!(released.is_empty(), "{released:?}");
    }
}
