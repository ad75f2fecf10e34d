//! At the start of each leadership term: give back the addresses of Services that no longer exist.
//!
//! A Service carries our finalizer once it holds an address, so normally it cannot go without us. It can
//! when the finalizer is removed by hand, when the Service and its namespace are force-deleted, or when the
//! Eip's status was restored from a backup: such records would hold their addresses forever, and nothing else
//! repairs them, since no Service event will ever name them again (docs/compatibility.md#records-of-deleted-services).
//!
//! The term's Service cache says which Services exist; it is listed from the API server's watch cache, which
//! may be a little behind the Eips the ledger followed, so a holder the cache lacks is looked up on the server
//! (a read from etcd) before its address is given back. A consistent state costs no request at all. The
//! term's reconciles wait for the sweep, so nothing is decided meanwhile.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1 as corev1;
use kube::api::Api;
use openelb_core::model::ServiceKey;

use super::eip_commit;
use super::ledger::{Ledger, Ticket};
use super::reconcile::{Context, ReconcileError};

/// Releases, in `ledger`, every address whose Service is not in `existing`: the complete list, taken *after* the
/// ledger followed the Eips (a Service recorded in an Eip existed when it was recorded, so it is in a later list
/// unless it was deleted since). What was released, each with the Eip change to write.
pub fn plan(ledger: &mut Ledger, existing: &[ServiceKey]) -> Vec<(ServiceKey, String, IpAddr, Ticket)> {
    ledger.release_absent(existing)
}

/// Whether the Service exists now, read from etcd.
async fn exists(client: &kube::Client, key: &ServiceKey) -> Result<bool, ReconcileError> {
    let api: Api<corev1::Service> = Api::namespaced(client.clone(), &key.namespace);
    let found = api.get_metadata_opt(&key.name).await.map_err(|source| ReconcileError::Read {
        action: "read",
        object: format!("Service {key}"),
        source,
    })?;
    Ok(found.is_some())
}

/// Runs the sweep once, `cached` being every Service of the term's cache (listed after the ledger followed the
/// Eips); returns what it released.
pub async fn run(ctx: &Context, cached: Vec<ServiceKey>) -> Result<Vec<(ServiceKey, String, IpAddr)>, ReconcileError> {
    let absent = ctx.current_ledger()?.absent(&cached);
    let mut existing = cached;
    for key in absent {
        if exists(&ctx.client, &key).await? {
            existing.push(key);
        }
    }
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
