//! At the start of each leadership term: give back the addresses of Services that no longer exist.
//!
//! A Service carries our finalizer once it holds an address, so normally it cannot go without us. It can
//! when the finalizer is removed by hand, when the Service and its namespace are force-deleted, or when the
//! Eip's status was restored from a backup: such records would hold their addresses forever, and nothing else
//! repairs them, since no Service event will ever name them again (docs/compatibility.md#records-of-deleted-services).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1 as corev1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use openelb_core::ipam::Ipam;
use openelb_core::model::ServiceKey;

use super::eip_status;
use super::reconcile::{Context, ReconcileError};
use openelb_k8s::convert::{self, ConvertError};
use openelb_k8s::crd::Eip;

/// Services listed per request.
const PAGE: u32 = 500;

#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    /// What was released: the Service, its Eip and address.
    pub released: Vec<(ServiceKey, String, IpAddr)>,
    /// Eips whose status must be written (with the `resourceVersion` they were read at).
    pub eips: Vec<Eip>,
}

/// Decides the sweep (pure). `existing` must list every Service, taken *after* `eips` were read: a Service
/// recorded in an Eip existed when it was recorded, so it is in a later list unless it was deleted since.
pub fn plan(eips: &[Arc<Eip>], existing: &[ServiceKey], now: &Time) -> Result<Sweep, ConvertError> {
    let before = Ipam::new(&eip_status::pools(eips)?);
    let mut after = before.clone();
    let gone = after.release_absent(existing);
    let released = gone
        .into_iter()
        .filter_map(|key| {
            let (pool, ip) = before.allocation(&key)?;
            Some((key, pool.to_string(), ip))
        })
        .collect::<Vec<_>>();
    let mut changed = Vec::new();
    if !released.is_empty() {
        let problems = eip_status::problems(eips)?;
        for eip in eips {
            let name = eip.name_any();
            let (Some(old), Some(new)) = (before.pool_status(&name), after.pool_status(&name)) else { continue };
            if old == new {
                continue;
            }
            let found = problems.get(&name).map_or(&[][..], Vec::as_slice);
            let mut updated = Eip::clone(eip);
            updated.status = Some(eip_status::desired_status(eip, &new, found, now));
            changed.push(updated);
        }
    }
    Ok(Sweep { released, eips: changed })
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
    let _writer = ctx.write_lock().await;
    let eips = ctx.eips.state();
    let existing = list_services(&ctx.client).await?;
    let sweep = plan(&eips, &existing, &eip_status::now())
        .map_err(|source| ReconcileError::Convert { object: "the Eips".to_string(), source: Box::new(source) })?;
    ctx.write_eip_statuses(&sweep.eips).await?;
    let mut by_pool: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, pool, ip) in &sweep.released {
        tracing::info!(service = %key, %pool, %ip, "released: the Service no longer exists");
        *by_pool.entry(pool).or_default() += 1;
    }
    if !sweep.released.is_empty() {
        tracing::info!(released = sweep.released.len(), ?by_pool, "addresses of deleted Services given back");
    }
    Ok(sweep.released)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openelb_k8s::crd::{EipSpec, EipStatus};

    fn eip(name: &str, address: &str, used: &[(&str, &str)]) -> Arc<Eip> {
        let mut e = Eip::new(name, EipSpec { address: address.into(), ..Default::default() });
        e.status = Some(EipStatus {
            used: used.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            usage: used.len() as i64,
            ..Default::default()
        });
        Arc::new(e)
    }

    fn now() -> Time {
        eip_status::now()
    }

    #[test]
    fn absent_services_are_released_and_their_eips_rewritten() {
        let eips = [
            eip("a", "192.0.2.1-192.0.2.10", &[("192.0.2.1", "ns/kept"), ("192.0.2.2", "ns/gone;ns/shared")]),
            eip("b", "198.51.100.1-198.51.100.5", &[("198.51.100.1", "ns/kept-b")]),
        ];
        let existing =
            [ServiceKey::new("ns", "kept"), ServiceKey::new("ns", "shared"), ServiceKey::new("ns", "kept-b")];
        let sweep = plan(&eips, &existing, &now()).unwrap();
        assert_eq!(sweep.released, [(ServiceKey::new("ns", "gone"), "a".to_string(), "192.0.2.2".parse().unwrap())]);
        assert_eq!(sweep.eips.len(), 1, "only Eip a changes");
        let used = &sweep.eips[0].status.as_ref().unwrap().used;
        assert_eq!(used.get("192.0.2.2").map(String::as_str), Some("ns/shared"));
        assert_eq!(used.len(), 2);
    }

    #[test]
    fn a_consistent_state_needs_no_write() {
        let eips = [eip("a", "192.0.2.1-192.0.2.10", &[("192.0.2.1", "ns/kept")])];
        let sweep = plan(&eips, &[ServiceKey::new("ns", "kept")], &now()).unwrap();
        assert!(sweep.released.is_empty() && sweep.eips.is_empty(), "{sweep:?}");
    }
}
