//! One Service's decision, taken in the term's [`Ledger`], turned into the writes that carry it out (pure: no
//! client). The Eips it changes are written through their tickets first ([`crate::eip_commit`]); that is what
//! keeps two decisions from handing out one address twice, here or in another replica.

use k8s_openapi::api::core::v1 as corev1;
use openelb_core::ipam::{Change, Outcome};
use openelb_core::lifecycle;
use openelb_core::model::{LABEL_EIP_POOL, Protocol, ServiceKey};
use openelb_core::protocol_support;
use serde_json::{Value, json};

use super::ledger::{Ledger, Ticket};
use openelb_k8s::convert::{self, ConvertError};

/// What to write, in the order the caller must write it: Eips first (they claim or free addresses), then the
/// Service's status, then its metadata (removing the finalizer last lets a deleted Service go only once
/// everything else is written).
#[derive(Debug, Clone)]
pub struct ServiceWrites {
    pub outcome: Outcome,
    /// The changes to Eips, each written before the Service is.
    pub tickets: Vec<Ticket>,
    /// Merge patch for the Service's `/status`.
    pub service_status: Option<Value>,
    /// Merge patch for the Service's label and finalizers, guarded by its `resourceVersion`.
    pub service_meta: Option<Value>,
}

impl ServiceWrites {
    pub fn is_empty(&self) -> bool {
        self.tickets.is_empty() && self.service_status.is_none() && self.service_meta.is_none()
    }
}

/// Whether a Service is one the controller must look at when an Eip or Namespace changes: ours now, or marked
/// by us earlier (it must then be cleaned up).
pub fn concerns_us(svc: &corev1::Service) -> bool {
    convert::service_from_k8s(svc).is_ok_and(|s| lifecycle::is_ours(&s) || lifecycle::has_our_marks(&s))
}

/// Decides for `svc` in `ledger` (recording the decision) and says what must be written; `None` when the cached
/// copy of `svc` is older than our last write of it. `namespace` is its Namespace, when cached.
pub fn decide(
    svc: &corev1::Service,
    ledger: &mut Ledger,
    namespace: Option<&corev1::Namespace>,
) -> Result<Option<ServiceWrites>, ConvertError> {
    let service = convert::service_from_k8s(svc)?;
    let key = ServiceKey::new(service.namespace.clone(), service.name.clone());
    if ledger.is_stale(&key, svc.metadata.resource_version.as_deref()) {
        return Ok(None);
    }
    let namespace = namespace.map(convert::namespace_from_k8s).transpose()?;
    let (mut outcome, tickets) = ledger.decide(&service, namespace.as_ref());
    // Once per assignment: a Service that keeps its address is not told again on every reconcile.
    if let Change::Assigned { pool, ip, .. } = &outcome.change
        && let Some(eip) = ledger.eip(pool)
        && let Some(event) =
            protocol_support::assignment_event(pool, Protocol::from_spec(eip.spec.protocol.map(|p| p.as_str())), *ip)
    {
        outcome.events.push(event);
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
    Ok(Some(ServiceWrites { outcome, tickets, service_status, service_meta }))
}

#[cfg(test)]
mod tests;
