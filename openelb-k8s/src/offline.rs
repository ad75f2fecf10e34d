//! The controller's decisions over a whole cluster at once, without an API server: what `openelb-cli allocate`
//! and `simulate`, the namespace lab and the speaker's manifest mode all start from. Every Service is
//! reconciled as the controller would, and each decision is applied to the objects the way the API server
//! stores it: the Service's patch, the Eips' status, and a Service being deleted gone once no finalizer holds
//! it any more.

use openelb_core::ipam::{Change, Ipam, Outcome, ServicePatch};
use openelb_core::model::{Cluster, FINALIZER_SERVICE, LABEL_EIP_POOL, ServiceKey, positions_by_key};
use serde_json::Value;

use crate::convert;
use crate::manifest::Manifests;

/// Passes over the Services at most. A release in one pass can make room for a Service that failed earlier in
/// it, so the controller (which re-checks waiting Services when an Eip's status changes) needs a second; a
/// pass that moves no address ends it.
const MAX_PASSES: usize = 4;

/// Runs the controller over every Service of `cluster` until a pass moves no address, applying each decision
/// to `cluster`; its pools then carry the allocator's status. Returns every decision, pass after pass, in the
/// order they were taken.
pub fn allocate(ipam: &mut Ipam, cluster: &mut Cluster) -> Vec<Outcome> {
    let mut all = Vec::new();
    for _ in 0..MAX_PASSES {
        let outcomes = ipam.reconcile_all(&cluster.services, &cluster.namespaces);
        let moved = outcomes.iter().any(moves_an_address);
        let at = positions_by_key(&cluster.services);
        for o in &outcomes {
            if let Some(patch) = &o.patch
                && let Some(svc) = at.get(&o.service).and_then(|&i| cluster.services.get_mut(i))
            {
                patch.apply(svc);
            }
        }
        // The API server removes an object being deleted once its last finalizer is gone.
        cluster.services.retain(|s| !s.deleting || !s.finalizers.is_empty());
        all.extend(outcomes);
        if !moved {
            break;
        }
    }
    cluster.pools = ipam.pools();
    all
}

fn moves_an_address(o: &Outcome) -> bool {
    matches!(o.change, Change::Assigned { .. } | Change::Released { .. } | Change::Failed { released: Some(_), .. })
}

/// The manifests' Eips and Services as the controller leaves them once [`allocate`] ran over them into
/// `cluster` and `ipam`: Eips with their status; Services with their address, pool label and finalizer; a
/// Service being deleted that no finalizer holds any more is left out, as the API server removed it.
pub fn updated_objects(manifests: &Manifests, cluster: &Cluster, ipam: &Ipam) -> Result<Vec<Value>, serde_json::Error> {
    let mut out = Vec::new();
    let at = positions_by_key(&cluster.services);
    for eip in &manifests.eips {
        let mut eip = eip.clone();
        let name = eip.metadata.name.clone().unwrap_or_default();
        if let Some(status) = ipam.pool_status(&name) {
            convert::apply_pool_status(&mut eip, &status);
        }
        out.push(serde_json::to_value(&eip)?);
    }
    for svc in &manifests.services {
        let mut svc = svc.clone();
        let key = ServiceKey::new(convert::namespace_of(&svc.metadata), svc.metadata.name.clone().unwrap_or_default());
        match at.get(&key).and_then(|&i| cluster.services.get(i)) {
            Some(now) => {
                let patch = ServicePatch {
                    ingress: now.ingress.clone(),
                    pool_label: now.labels.get(LABEL_EIP_POOL).cloned(),
                    finalizer: now.finalizers.iter().any(|f| f == FINALIZER_SERVICE),
                };
                convert::apply_service_patch(&mut svc, &patch);
            }
            None if svc.metadata.deletion_timestamp.is_some() => continue,
            None => {}
        }
        let mut v = serde_json::to_value(&svc)?;
        if let Some(o) = v.as_object_mut() {
            o.entry("apiVersion").or_insert("v1".into());
            o.entry("kind").or_insert("Service".into());
        }
        out.push(v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
