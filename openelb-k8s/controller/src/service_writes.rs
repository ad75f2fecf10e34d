//! One Service's decision turned into the writes that carry it out (pure: no client; the clock is an argument).
//!
//! The API is the only state: every call rebuilds the allocator from the Eips' `status.used` as the caller's
//! caches show them. Caches may lag behind the server, so every Eip write carries the `resourceVersion` it was
//! computed from; the server refuses a stale one (409) and the caller recomputes from fresher caches. That is
//! what keeps two decisions from handing out one address twice.

use std::sync::Arc;

use k8s_openapi::api::core::v1 as corev1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use openelb_core::ipam::{Change, Ipam, Outcome};
use openelb_core::lifecycle;
use openelb_core::model::LABEL_EIP_POOL;
use openelb_core::protocol_support;
use serde_json::{Value, json};

use super::eip_status;
use openelb_k8s::convert::{self, ConvertError};
use openelb_k8s::crd::Eip;

/// What to write, in the order the caller must write it: Eips first (they claim or free addresses), then the
/// Service's status, then its metadata (removing the finalizer last lets a deleted Service go only once
/// everything else is written).
#[derive(Debug, Clone)]
pub struct ServiceWrites {
    pub outcome: Outcome,
    /// Eips whose allocations changed: whole objects (with the `resourceVersion` read) for a status replace,
    /// their conditions brought up to date on the way.
    pub eips: Vec<Eip>,
    /// Merge patch for the Service's `/status`.
    pub service_status: Option<Value>,
    /// Merge patch for the Service's label and finalizers, guarded by its `resourceVersion`.
    pub service_meta: Option<Value>,
    /// Problems met while rebuilding allocations from the Eips (never fatal; worth a log line).
    pub warnings: Vec<String>,
}

impl ServiceWrites {
    pub fn is_empty(&self) -> bool {
        self.eips.is_empty() && self.service_status.is_none() && self.service_meta.is_none()
    }
}

/// Whether a Service is one the controller must look at when an Eip or Namespace changes: ours now, or marked
/// by us earlier (it must then be cleaned up).
pub fn concerns_us(svc: &corev1::Service) -> bool {
    convert::service_from_k8s(svc).is_ok_and(|s| lifecycle::is_ours(&s) || lifecycle::has_our_marks(&s))
}

/// Decides for `svc` against `eips` and `namespaces` as cached, and says what must be written. `now` dates
/// the conditions that change.
pub fn decide(
    svc: &corev1::Service,
    eips: &[Arc<Eip>],
    namespaces: &[Arc<corev1::Namespace>],
    now: &Time,
) -> Result<ServiceWrites, ConvertError> {
    let service = convert::service_from_k8s(svc)?;
    let pools = eip_status::pools(eips)?;
    let namespace = namespaces
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(service.namespace.as_str()))
        .map(|n| convert::namespace_from_k8s(n))
        .transpose()?;
    let mut ipam = Ipam::new(&pools);
    let mut outcome = ipam.reconcile(&service, namespace.as_ref());
    // Once per assignment: a Service that keeps its address is not told again on every reconcile.
    if let Change::Assigned { pool, ip, .. } = &outcome.change
        && let Some(event) = pools
            .iter()
            .find(|p| &p.name == pool)
            .and_then(|p| protocol_support::assignment_event(pool, p.protocol, *ip))
    {
        outcome.events.push(event);
    }

    let mut changed_eips = Vec::new();
    // Validation compares every pair of Eips: only worth it when a status is written anyway.
    let mut problems = None;
    for eip in eips {
        let Some(name) = eip.metadata.name.as_deref() else { continue };
        let Some(status) = ipam.pool_status(name) else { continue };
        let mut typed = Eip::clone(eip);
        convert::apply_pool_status(&mut typed, &status);
        if typed.status == eip.status {
            continue;
        }
        let problems = match &problems {
            Some(p) => p,
            None => problems.insert(eip_status::problems(eips)?),
        };
        let found = problems.get(name).map_or(&[][..], Vec::as_slice);
        let mut updated = Eip::clone(eip);
        updated.status = Some(eip_status::desired_status(eip, &status, found, now));
        changed_eips.push(updated);
    }

    let (mut service_status, mut service_meta) = (None, None);
    if let Some(patch) = &outcome.patch {
        let mut desired = svc.clone();
        convert::apply_service_patch(&mut desired, patch);
        if convert::ingress_ips(&desired) != convert::ingress_ips(svc) {
            let ingress: Vec<Value> = patch.ingress.iter().map(|ip| json!({ "ip": ip })).collect();
            let ingress = if ingress.is_empty() { Value::Null } else { Value::Array(ingress) };
            service_status = Some(json!({ "status": { "loadBalancer": { "ingress": ingress } } }));
        }
        let label_of = |s: &corev1::Service| s.metadata.labels.as_ref().and_then(|l| l.get(LABEL_EIP_POOL)).cloned();
        let finalizers_of = |s: &corev1::Service| s.metadata.finalizers.clone().unwrap_or_default();
        if label_of(&desired) != label_of(svc) || finalizers_of(&desired) != finalizers_of(svc) {
            let finalizers = desired.metadata.finalizers.clone();
            service_meta = Some(json!({
                "metadata": {
                    "resourceVersion": svc.metadata.resource_version,
                    "labels": { LABEL_EIP_POOL: label_of(&desired) },
                    "finalizers": finalizers,
                }
            }));
        }
    }
    Ok(ServiceWrites { outcome, eips: changed_eips, service_status, service_meta, warnings: ipam.warnings().to_vec() })
}

#[cfg(test)]
mod tests;
