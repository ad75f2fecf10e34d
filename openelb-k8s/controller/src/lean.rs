//! What the controller's caches keep of each object: the fields its decisions read, nothing else. Watches apply
//! [`Lean::lean`] to every object before it reaches a cache, so a cache of 5000 Services holds 5000 small
//! Services (managed fields, kubectl's last applied copy and other programs' annotations were most of their
//! size). What is left out here must be what no decision, write guard or Event reads: see each impl.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1 as corev1;
use k8s_openapi::api::discovery::v1 as discoveryv1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use openelb_core::model::ANNOTATION_NODE_MAC;
use openelb_k8s::crd::Eip;
use openelb_k8s::decoded::Decoded;

/// Drops what no reader of a cache uses.
pub trait Lean {
    fn lean(&mut self);
}

/// The managed fields and kubectl's copy of the last applied object: never read, often most of an object.
fn forget_bulk(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Whether an annotation or label key is in one of OpenELB's domains (`*.kubesphere.io/...`): the only ones
/// the core reads on Services.
fn is_ours(key: &str) -> bool {
    key.split_once('/').is_some_and(|(domain, _)| domain == "kubesphere.io" || domain.ends_with(".kubesphere.io"))
}

fn keep_ours(map: Option<BTreeMap<String, String>>) -> Option<BTreeMap<String, String>> {
    let kept: BTreeMap<String, String> = map?.into_iter().filter(|(k, _)| is_ours(k)).collect();
    (!kept.is_empty()).then_some(kept)
}

/// What identifies an object, guards a write of it and names it in an Event (taken out of `meta`).
fn identity(meta: &mut ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        uid: meta.uid.take(),
        resource_version: meta.resource_version.take(),
        generation: meta.generation,
        deletion_timestamp: meta.deletion_timestamp.take(),
        ..ObjectMeta::default()
    }
}

/// A Service as `convert::service_from_k8s` reads it, with what guards its writes (`resourceVersion`,
/// finalizers) and names it in Events: the core reads only OpenELB's annotations and labels, and of the spec
/// the type, class, requested address, families, traffic policy, ports, selector and cluster IP.
impl Lean for corev1::Service {
    fn lean(&mut self) {
        let mut meta = std::mem::take(&mut self.metadata);
        self.metadata = ObjectMeta {
            finalizers: meta.finalizers.take(),
            annotations: keep_ours(meta.annotations.take()),
            labels: keep_ours(meta.labels.take()),
            ..identity(&mut meta)
        };
        if let Some(spec) = self.spec.take() {
            self.spec = Some(corev1::ServiceSpec {
                type_: spec.type_,
                load_balancer_class: spec.load_balancer_class,
                load_balancer_ip: spec.load_balancer_ip,
                ip_families: spec.ip_families,
                external_traffic_policy: spec.external_traffic_policy,
                ports: spec.ports,
                selector: spec.selector,
                cluster_ip: spec.cluster_ip,
                ..corev1::ServiceSpec::default()
            });
        }
        if let Some(status) = self.status.take() {
            self.status = Some(corev1::ServiceStatus { load_balancer: status.load_balancer, conditions: None });
        }
    }
}

/// A Namespace is read for its labels only (`namespaceSelector`).
impl Lean for corev1::Namespace {
    fn lean(&mut self) {
        self.metadata = ObjectMeta { labels: self.metadata.labels.take(), ..identity(&mut self.metadata) };
        self.spec = None;
        self.status = None;
    }
}

/// A Node as `convert::node_from_k8s` reads it: labels, the lab's MAC annotation, addresses, the type and
/// status of each condition, and whether it is unschedulable (its image list alone can be tens of KB).
impl Lean for corev1::Node {
    fn lean(&mut self) {
        let mac = self.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_NODE_MAC)).cloned();
        self.metadata = ObjectMeta {
            labels: self.metadata.labels.take(),
            annotations: mac.map(|m| [(ANNOTATION_NODE_MAC.to_string(), m)].into()),
            ..identity(&mut self.metadata)
        };
        let unschedulable = self.spec.as_ref().and_then(|s| s.unschedulable);
        self.spec = unschedulable.map(|u| corev1::NodeSpec { unschedulable: Some(u), ..Default::default() });
        if let Some(status) = self.status.take() {
            let conditions = status.conditions.map(|cs| {
                cs.into_iter()
                    .map(|c| corev1::NodeCondition { type_: c.type_, status: c.status, ..Default::default() })
                    .collect()
            });
            self.status = Some(corev1::NodeStatus { addresses: status.addresses, conditions, ..Default::default() });
        }
    }
}

/// The Eip is read whole (spec, status, conditions, annotations) by the ledger, the status writes and the
/// webhook's checks.
impl Lean for Eip {
    fn lean(&mut self) {
        forget_bulk(&mut self.metadata);
    }
}

impl Lean for corev1::Endpoints {
    fn lean(&mut self) {
        forget_bulk(&mut self.metadata);
    }
}

impl Lean for discoveryv1::EndpointSlice {
    fn lean(&mut self) {
        forget_bulk(&mut self.metadata);
    }
}

impl Lean for Lease {
    fn lean(&mut self) {
        forget_bulk(&mut self.metadata);
    }
}

/// An object that does not decode is kept as it came (it is reported, not read).
impl<K: Lean + Resource> Lean for Decoded<K> {
    fn lean(&mut self) {
        match self {
            Decoded::Ok(k) => k.lean(),
            Decoded::Undecodable(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use openelb_core::model::{ANNOTATION_EIP_POOL, ANNOTATION_LB, LABEL_EIP_POOL};

    fn service() -> corev1::Service {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {
                "name": "web", "namespace": "shop", "uid": "u1", "resourceVersion": "42",
                "finalizers": ["finalizer.lb.kubesphere.io/v1alpha1"],
                "annotations": {
                    ANNOTATION_LB: "openelb", ANNOTATION_EIP_POOL: "pool",
                    LAST_APPLIED: "{...}", "example.com/other": "x",
                },
                "labels": { LABEL_EIP_POOL: "pool", "app": "web" },
                "managedFields": [{ "manager": "kubectl" }],
                "ownerReferences": [{ "apiVersion": "v1", "kind": "X", "name": "o", "uid": "u" }],
            },
            "spec": {
                "type": "LoadBalancer", "loadBalancerIP": "192.0.2.7", "ipFamilies": ["IPv4"],
                "externalTrafficPolicy": "Local", "ports": [{ "port": 80, "nodePort": 30080 }],
                "selector": { "app": "web" }, "clusterIP": "198.51.100.3", "clusterIPs": ["198.51.100.3"],
                "sessionAffinity": "None", "healthCheckNodePort": 31000,
            },
            "status": {
                "loadBalancer": { "ingress": [{ "ip": "192.0.2.7" }] },
                "conditions": [{ "type": "X", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z",
                                 "reason": "R", "message": "m" }],
            },
        }))
        .unwrap()
    }

    #[test]
    fn a_lean_service_converts_exactly_as_the_whole_one() {
        let whole = service();
        let mut lean = whole.clone();
        lean.lean();
        assert_eq!(
            openelb_k8s::convert::service_from_k8s(&lean).unwrap(),
            openelb_k8s::convert::service_from_k8s(&{
                let mut w = whole.clone();
                w.metadata.annotations.as_mut().unwrap().retain(|k, _| is_ours(k));
                w.metadata.labels.as_mut().unwrap().retain(|k, _| is_ours(k));
                w
            })
            .unwrap()
        );
        let core = openelb_k8s::convert::service_from_k8s(&lean).unwrap();
        assert_eq!(core.annotations.len(), 2, "{:?}", core.annotations);
        assert_eq!(core.labels.keys().collect::<Vec<_>>(), [LABEL_EIP_POOL]);
        assert_eq!(core.ports[0].node_port, Some(30080));
        assert_eq!(core.ingress, ["192.0.2.7"]);
        assert_eq!(lean.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(lean.metadata.uid.as_deref(), Some("u1"));
        assert!(lean.metadata.managed_fields.is_none() && lean.metadata.owner_references.is_none());
        let spec = lean.spec.as_ref().unwrap();
        assert!(spec.cluster_ips.is_none() && spec.session_affinity.is_none() && spec.health_check_node_port.is_none());
        assert!(lean.status.as_ref().unwrap().conditions.is_none());
    }

    #[test]
    fn only_kubesphere_domains_count_as_ours() {
        assert!(is_ours(ANNOTATION_LB));
        assert!(is_ours(LABEL_EIP_POOL));
        assert!(is_ours("kubesphere.io/x"));
        assert!(!is_ours("notkubesphere.io/x"));
        assert!(!is_ours("app"));
        assert!(!is_ours(LAST_APPLIED));
    }

    #[test]
    fn a_lean_node_converts_exactly_as_the_whole_one() {
        let whole: corev1::Node = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": "n1", "labels": { "zone": "a" },
                          "annotations": { ANNOTATION_NODE_MAC: "52:54:22:3a:e6:6e", "big": "x" } },
            "spec": { "unschedulable": true, "podCIDR": "198.51.100.0/28" },
            "status": {
                "addresses": [{ "type": "InternalIP", "address": "192.0.2.3" }],
                "conditions": [{ "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok" }],
                "images": [{ "names": ["registry.example/app:1"], "sizeBytes": 1 }],
            },
        }))
        .unwrap();
        let mut lean = whole.clone();
        lean.lean();
        let convert = openelb_k8s::convert::node_from_k8s;
        assert_eq!(convert(&lean).unwrap(), convert(&whole).unwrap());
        assert!(lean.status.as_ref().unwrap().images.is_none());
        assert_eq!(lean.metadata.annotations.as_ref().map(BTreeMap::len), Some(1));
    }

    #[test]
    fn bulk_is_forgotten_and_undecodable_objects_are_kept() {
        let mut eip = Eip::new("e", Default::default());
        eip.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
        eip.metadata.annotations = Some([(LAST_APPLIED.to_string(), "{}".to_string())].into());
        eip.lean();
        assert!(eip.metadata.managed_fields.is_none());
        assert_eq!(eip.metadata.annotations.as_ref().map(BTreeMap::len), Some(0));
        let raw = serde_json::json!({ "metadata": { "name": "x" }, "spec": 7 });
        let mut bad = Decoded::<corev1::Service>::from_value(raw);
        bad.lean();
        assert!(bad.as_result().is_err());
    }
}
