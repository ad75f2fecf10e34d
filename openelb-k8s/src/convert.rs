//! Kubernetes objects → the core's plain values, and the core's decisions → Kubernetes objects.
//!
//! Namespaced objects without `metadata.namespace` (hand-written manifests) are read as in
//! [`DEFAULT_NAMESPACE`], as `kubectl apply` would place them. Objects written by hand usually have no
//! `status`; a Node or Pod with no conditions at all is therefore taken as ready (a real API server's objects
//! always carry conditions once the kubelet has reported), while one that has conditions must say `Ready=True`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1 as corev1;
use k8s_openapi::api::discovery::v1 as discoveryv1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use openelb_core::ipam::{PoolStatus, ServicePatch};
use openelb_core::model::{
    self, ANNOTATION_DEFAULT_EIP, ANNOTATION_NODE_MAC, Endpoint, FINALIZER_SERVICE, IpFamily, LABEL_EIP_POOL, Protocol,
    ServiceKey, TrafficPolicy,
};

use crate::crd::{Eip, EipStatus};

/// Namespace of namespaced objects that do not name one.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Label linking an EndpointSlice to its Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("{kind} has no metadata.name")]
    MissingName { kind: &'static str },
    #[error("{kind} {name}: {field} {value:?} is not valid: {reason}")]
    InvalidField { kind: &'static str, name: String, field: String, value: String, reason: String },
    #[error("EndpointSlice {name}: no label {LABEL_SERVICE_NAME} naming its Service")]
    SliceWithoutService { name: String },
}

impl ConvertError {
    fn invalid(kind: &'static str, name: &str, field: &str, value: &str, reason: &str) -> Self {
        ConvertError::InvalidField {
            kind,
            name: name.to_string(),
            field: field.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        }
    }
}

fn name_of(meta: &ObjectMeta, kind: &'static str) -> Result<String, ConvertError> {
    match meta.name.as_deref() {
        Some(n) if !n.is_empty() => Ok(n.to_string()),
        _ => Err(ConvertError::MissingName { kind }),
    }
}

/// `metadata.namespace`, or [`DEFAULT_NAMESPACE`] when absent or empty.
pub fn namespace_of(meta: &ObjectMeta) -> String {
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => ns.to_string(),
        _ => DEFAULT_NAMESPACE.to_string(),
    }
}

pub fn pool_from_eip(eip: &Eip) -> Result<model::Pool, ConvertError> {
    let name = name_of(&eip.metadata, "Eip")?;
    let default_annotation = eip.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_DEFAULT_EIP)).cloned();
    let spec = &eip.spec;
    Ok(model::Pool {
        name,
        address: spec.address.clone(),
        protocol: Protocol::from_spec(spec.protocol.map(|p| p.as_str())),
        interface: spec.interface.clone(),
        disable: spec.disable.unwrap_or(false),
        priority: spec.priority.unwrap_or(0),
        namespaces: spec.namespaces.clone(),
        namespace_selector: spec.namespace_selector.clone(),
        is_default: default_annotation.as_deref() == Some("true"),
        default_annotation,
        deleting: eip.metadata.deletion_timestamp.is_some(),
        used: eip.status.as_ref().map(|s| s.used.clone()).unwrap_or_default(),
    })
}

fn parse_ip_family(svc: &str, value: &str) -> Result<IpFamily, ConvertError> {
    match value {
        "IPv4" => Ok(IpFamily::V4),
        "IPv6" => Ok(IpFamily::V6),
        _ => Err(ConvertError::invalid("Service", svc, "spec.ipFamilies", value, "expected IPv4 or IPv6")),
    }
}

/// Accepts the API's `Cluster`/`Local` in any case, and the beta annotation's `Global`/`OnlyLocal`.
fn parse_traffic_policy(svc: &str, value: &str) -> Result<TrafficPolicy, ConvertError> {
    match value.to_ascii_lowercase().as_str() {
        "cluster" | "global" => Ok(TrafficPolicy::Cluster),
        "local" | "onlylocal" => Ok(TrafficPolicy::Local),
        _ => {
            Err(ConvertError::invalid("Service", svc, "spec.externalTrafficPolicy", value, "expected Cluster or Local"))
        }
    }
}

fn service_port(p: &corev1::ServicePort) -> model::ServicePort {
    model::ServicePort {
        name: p.name.clone(),
        port: p.port,
        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
        node_port: p.node_port,
        target_port: p.target_port.as_ref().map(|t| match t {
            IntOrString::Int(i) => i.to_string(),
            IntOrString::String(s) => s.clone(),
        }),
    }
}

/// `status.loadBalancer.ingress[*].ip` of a Service.
pub fn ingress_ips(svc: &corev1::Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone())
        .collect()
}

pub fn service_from_k8s(svc: &corev1::Service) -> Result<model::Service, ConvertError> {
    let name = name_of(&svc.metadata, "Service")?;
    let namespace = namespace_of(&svc.metadata);
    let qualified = format!("{namespace}/{name}");
    let spec = svc.spec.clone().unwrap_or_default();
    let mut ip_families =
        spec.ip_families.iter().flatten().map(|f| parse_ip_family(&qualified, f)).collect::<Result<Vec<_>, _>>()?;
    // Clusters without dual-stack (before 1.21, or with the feature off) leave ipFamilies empty; the family of
    // the cluster IP is then the Service's family (an IPv6-only cluster must not be treated as IPv4).
    if ip_families.is_empty()
        && let Some(ip) = spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
    {
        ip_families.push(model::IpFamily::of(&ip));
    }
    let external_traffic_policy = match spec.external_traffic_policy.as_deref() {
        None | Some("") => TrafficPolicy::default(),
        Some(p) => parse_traffic_policy(&qualified, p)?,
    };
    let ingress = ingress_ips(svc);
    Ok(model::Service {
        namespace,
        name,
        annotations: svc.metadata.annotations.clone().unwrap_or_default(),
        labels: svc.metadata.labels.clone().unwrap_or_default(),
        finalizers: svc.metadata.finalizers.clone().unwrap_or_default(),
        type_: spec.type_.filter(|t| !t.is_empty()).unwrap_or_else(|| "ClusterIP".to_string()),
        load_balancer_class: spec.load_balancer_class,
        load_balancer_ip: spec.load_balancer_ip.filter(|ip| !ip.is_empty()),
        ip_families,
        external_traffic_policy,
        ports: spec.ports.iter().flatten().map(service_port).collect(),
        selector: spec.selector.unwrap_or_default(),
        cluster_ip: spec.cluster_ip.filter(|ip| !ip.is_empty()),
        deleting: svc.metadata.deletion_timestamp.is_some(),
        ingress,
    })
}

/// Parses `aa:bb:cc:dd:ee:ff` (either case); `None` for anything else.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn condition_status<'a>(conditions: &'a [(String, String)], type_: &str) -> Option<&'a str> {
    conditions.iter().find(|(t, _)| t == type_).map(|(_, s)| s.as_str())
}

pub fn node_from_k8s(node: &corev1::Node) -> Result<model::Node, ConvertError> {
    let name = name_of(&node.metadata, "Node")?;
    let status = node.status.clone().unwrap_or_default();
    let conditions: Vec<(String, String)> =
        status.conditions.iter().flatten().map(|c| (c.type_.clone(), c.status.clone())).collect();
    let ready = conditions.is_empty()
        || (condition_status(&conditions, "Ready") == Some("True")
            && condition_status(&conditions, "NetworkUnavailable") != Some("True"));
    let internal_ip = match status.addresses.iter().flatten().find(|a| a.type_ == "InternalIP") {
        None => None,
        Some(a) => Some(a.address.parse::<IpAddr>().map_err(|_| {
            ConvertError::invalid("Node", &name, "status.addresses[InternalIP]", &a.address, "not an IP address")
        })?),
    };
    // Hostname and DNS entries are names, not addresses: only what parses as an IP counts.
    let mut addresses: Vec<IpAddr> =
        status.addresses.iter().flatten().filter_map(|a| a.address.trim().parse::<IpAddr>().ok()).collect();
    addresses.sort_unstable();
    addresses.dedup();
    let mac = match node.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_NODE_MAC)) {
        None => None,
        Some(raw) => Some(parse_mac(raw).ok_or_else(|| {
            ConvertError::invalid(
                "Node",
                &name,
                &format!("annotation {ANNOTATION_NODE_MAC}"),
                raw,
                "expected a MAC address like 52:54:22:3a:e6:6e",
            )
        })?),
    };
    Ok(model::Node {
        name,
        labels: node.metadata.labels.clone().unwrap_or_default(),
        ready,
        unschedulable: node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
        internal_ip,
        addresses,
        mac,
    })
}

pub fn namespace_from_k8s(ns: &corev1::Namespace) -> Result<model::Namespace, ConvertError> {
    Ok(model::Namespace {
        name: name_of(&ns.metadata, "Namespace")?,
        labels: ns.metadata.labels.clone().unwrap_or_default(),
    })
}

/// Ready when the `Ready` condition is `True`; with no conditions at all (hand-written manifests), when the
/// phase is absent or `Running`.
pub fn pod_from_k8s(pod: &corev1::Pod) -> Result<model::Pod, ConvertError> {
    let name = name_of(&pod.metadata, "Pod")?;
    let namespace = namespace_of(&pod.metadata);
    let status = pod.status.clone().unwrap_or_default();
    let conditions: Vec<(String, String)> =
        status.conditions.iter().flatten().map(|c| (c.type_.clone(), c.status.clone())).collect();
    let ready = if conditions.is_empty() {
        matches!(status.phase.as_deref(), None | Some("Running"))
    } else {
        condition_status(&conditions, "Ready") == Some("True")
    };
    let ip = match status.pod_ip.as_deref().filter(|ip| !ip.is_empty()) {
        None => None,
        Some(raw) => Some(raw.parse::<IpAddr>().map_err(|_| {
            ConvertError::invalid("Pod", &format!("{namespace}/{name}"), "status.podIP", raw, "not an IP address")
        })?),
    };
    Ok(model::Pod {
        namespace,
        name,
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
        ip,
        ready,
    })
}

fn pod_name(target: Option<&corev1::ObjectReference>) -> Option<String> {
    let target = target?;
    match target.kind.as_deref() {
        None | Some("Pod") => target.name.clone(),
        Some(_) => None,
    }
}

fn parse_endpoint_ip(kind: &'static str, object: &str, field: &str, raw: &str) -> Result<IpAddr, ConvertError> {
    raw.parse().map_err(|_| ConvertError::invalid(kind, object, field, raw, "not an IP address"))
}

/// `subsets[*].addresses` are ready, `subsets[*].notReadyAddresses` are not.
pub fn endpoints_from_k8s(ep: &corev1::Endpoints) -> Result<(ServiceKey, Vec<Endpoint>), ConvertError> {
    let key = ServiceKey::new(namespace_of(&ep.metadata), name_of(&ep.metadata, "Endpoints")?);
    let object = key.to_string();
    let mut out = Vec::new();
    for (i, subset) in ep.subsets.iter().flatten().enumerate() {
        for (field, addresses, ready) in
            [("addresses", &subset.addresses, true), ("notReadyAddresses", &subset.not_ready_addresses, false)]
        {
            for (j, a) in addresses.iter().flatten().enumerate() {
                let ip = parse_endpoint_ip("Endpoints", &object, &format!("subsets[{i}].{field}[{j}].ip"), &a.ip)?;
                out.push(Endpoint {
                    ip: Some(ip),
                    node_name: a.node_name.clone(),
                    pod: pod_name(a.target_ref.as_ref()),
                    ready,
                });
            }
        }
    }
    Ok((key, out))
}

/// One endpoint per address; `conditions.ready` unset counts as ready (the API's rule). Addresses of an
/// `FQDN` slice are not IPs and are kept with `ip: None`.
pub fn endpoints_from_slice(slice: &discoveryv1::EndpointSlice) -> Result<(ServiceKey, Vec<Endpoint>), ConvertError> {
    let slice_name = slice.metadata.name.clone().unwrap_or_default();
    let service = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_SERVICE_NAME))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ConvertError::SliceWithoutService { name: slice_name.clone() })?;
    let key = ServiceKey::new(namespace_of(&slice.metadata), service.clone());
    let object = format!("{}/{}", key.namespace, slice_name);
    let is_ip = slice.address_type != "FQDN";
    let mut out = Vec::new();
    for (i, e) in slice.endpoints.iter().enumerate() {
        let ready = e.conditions.as_ref().and_then(|c| c.ready) != Some(false);
        for (j, raw) in e.addresses.iter().enumerate() {
            let ip = if is_ip {
                Some(parse_endpoint_ip("EndpointSlice", &object, &format!("endpoints[{i}].addresses[{j}]"), raw)?)
            } else {
                None
            };
            out.push(Endpoint { ip, node_name: e.node_name.clone(), pod: pod_name(e.target_ref.as_ref()), ready });
        }
    }
    Ok((key, out))
}

/// Writes what the allocator computed into the Eip's status. `ready` (dead upstream) and `conditions` (decided
/// by the controller from more than the pool's numbers) are left as found.
pub fn apply_pool_status(eip: &mut Eip, status: &PoolStatus) {
    let ready = eip.status.as_ref().is_some_and(|s| s.ready);
    let conditions = eip.status.as_mut().map(|s| std::mem::take(&mut s.conditions)).unwrap_or_default();
    eip.status = Some(EipStatus {
        occupied: status.occupied,
        usage: status.usage_i64(),
        pool_size: status.pool_size_i64(),
        used: status.used.clone(),
        first_ip: status.first_ip.clone(),
        last_ip: status.last_ip.clone(),
        ready,
        v4: status.v4,
        conditions,
    });
}

/// Makes the Service look as the patch says: ingress, the pool label and the finalizer. An empty ingress
/// list leaves `status.loadBalancer: {}`, which is how the API server shows a released Service.
pub fn apply_service_patch(svc: &mut corev1::Service, patch: &ServicePatch) {
    let status = svc.status.get_or_insert_with(Default::default);
    let lb = status.load_balancer.get_or_insert_with(Default::default);
    lb.ingress = if patch.ingress.is_empty() {
        None
    } else {
        Some(
            patch
                .ingress
                .iter()
                .map(|ip| corev1::LoadBalancerIngress { ip: Some(ip.clone()), ..Default::default() })
                .collect(),
        )
    };

    let labels = svc.metadata.labels.get_or_insert_with(BTreeMap::new);
    match &patch.pool_label {
        Some(pool) => {
            labels.insert(LABEL_EIP_POOL.to_string(), pool.clone());
        }
        None => {
            labels.remove(LABEL_EIP_POOL);
        }
    }
    if labels.is_empty() {
        svc.metadata.labels = None;
    }

    let finalizers = svc.metadata.finalizers.get_or_insert_with(Vec::new);
    let present = finalizers.iter().any(|f| f == FINALIZER_SERVICE);
    if patch.finalizer && !present {
        finalizers.push(FINALIZER_SERVICE.to_string());
    } else if !patch.finalizer {
        finalizers.retain(|f| f != FINALIZER_SERVICE);
    }
    if finalizers.is_empty() {
        svc.metadata.finalizers = None;
    }
}

#[cfg(test)]
mod tests;
