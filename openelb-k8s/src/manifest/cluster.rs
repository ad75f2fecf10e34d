//! Manifests → the core's [`Cluster`], playing the controllers a real cluster would have run: the
//! Deployment controller and scheduler (Pods for Deployments that have none) and the endpoints controller
//! (Endpoints for Services that have none). Everything is derived from names, never from randomness, so the
//! same files always give the same cluster.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::apps::v1 as appsv1;
use k8s_openapi::api::core::v1 as corev1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use openelb_core::model::{Cluster, Endpoint, Namespace, Pod, ServiceKey};
use xxhash_rust::xxh3::xxh3_64;

use super::{ManifestError, ManifestErrorKind, Manifests, ObjectKind};
use crate::convert::{
    endpoints_from_k8s, endpoints_from_slice, namespace_from_k8s, namespace_of, node_from_k8s, pod_from_k8s,
    pool_from_eip, service_from_k8s,
};

/// Label the Deployment controller puts on its Pods; synthetic Pods carry it too.
pub const LABEL_POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// More replicas than this is certainly a typo in a simulated cluster, and would only exhaust memory.
pub const MAX_REPLICAS: i32 = 10_000;
/// Characters Kubernetes uses in generated names (no vowels, no look-alikes).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Synthetic Pod addresses: node `i` gets the /22 starting at 10.233.64.0 + 1024·i, like kubespray's
/// 10.233.64.0/18 pod network. They are only ever printed, never configured on any interface.
const POD_NETWORK_BASE: u32 = u32::from_be_bytes([10, 233, 64, 0]);
const POD_BLOCK: u32 = 1024;

fn origin_label(m: &Manifests, kind: ObjectKind, index: usize) -> String {
    m.origin(kind, index).map_or_else(|| format!("{kind} #{}", index + 1), |o| o.to_string())
}

/// Converts one vector of objects, naming the object's origin in any error.
fn convert_all<T, U>(
    m: &Manifests,
    kind: ObjectKind,
    items: &[T],
    f: impl Fn(&T) -> Result<U, crate::convert::ConvertError>,
) -> Result<Vec<U>, ManifestError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            f(item).map_err(|error| {
                ManifestError::from(ManifestErrorKind::Convert { origin: origin_label(m, kind, i), error })
            })
        })
        .collect()
}

fn check_unique<'a>(
    m: &Manifests,
    kind: ObjectKind,
    names: impl Iterator<Item = String> + 'a,
) -> Result<(), ManifestError> {
    let mut first: HashMap<String, usize> = HashMap::new();
    for (i, name) in names.enumerate() {
        if let Some(&j) = first.get(&name) {
            return Err(ManifestError::from(ManifestErrorKind::Duplicate {
                kind,
                name,
                first: origin_label(m, kind, j),
                second: origin_label(m, kind, i),
            }));
        }
        first.insert(name, i);
    }
    Ok(())
}

/// Builds the cluster the manifests describe. Services, Pods and Endpoints without a namespace are in
/// `default`; namespaces that objects live in but that are not declared are created without labels.
pub fn to_cluster(m: &Manifests) -> Result<Cluster, ManifestError> {
    let pools = convert_all(m, ObjectKind::Eip, &m.eips, pool_from_eip)?;
    check_unique(m, ObjectKind::Eip, pools.iter().map(|p| p.name.clone()))?;
    let services = convert_all(m, ObjectKind::Service, &m.services, service_from_k8s)?;
    check_unique(m, ObjectKind::Service, services.iter().map(|s| s.key().to_string()))?;
    let nodes = convert_all(m, ObjectKind::Node, &m.nodes, node_from_k8s)?;
    check_unique(m, ObjectKind::Node, nodes.iter().map(|n| n.name.clone()))?;
    let mut namespaces = convert_all(m, ObjectKind::Namespace, &m.namespaces, namespace_from_k8s)?;
    check_unique(m, ObjectKind::Namespace, namespaces.iter().map(|n| n.name.clone()))?;
    let mut pods = convert_all(m, ObjectKind::Pod, &m.pods, pod_from_k8s)?;
    check_unique(m, ObjectKind::Pod, pods.iter().map(|p| format!("{}/{}", p.namespace, p.name)))?;
    check_unique(
        m,
        ObjectKind::Deployment,
        m.deployments
            .iter()
            .map(|d| format!("{}/{}", namespace_of(&d.metadata), d.metadata.name.clone().unwrap_or_default())),
    )?;

    let mut scheduler = Scheduler::new(&m.nodes, &nodes, &pods);
    for (i, deployment) in m.deployments.iter().enumerate() {
        let generated = pods_for_deployment(m, i, deployment, &pods, &mut scheduler)?;
        pods.extend(generated);
    }

    let mut endpoints: BTreeMap<ServiceKey, Vec<Endpoint>> = BTreeMap::new();
    for (key, eps) in convert_all(m, ObjectKind::EndpointSlice, &m.endpoint_slices, endpoints_from_slice)? {
        endpoints.entry(key).or_default().extend(eps);
    }
    // With both kinds present for a Service, the slices win: they are what kube-proxy reads.
    let from_slices: BTreeSet<ServiceKey> = endpoints.keys().cloned().collect();
    for (key, eps) in convert_all(m, ObjectKind::Endpoints, &m.endpoints, endpoints_from_k8s)? {
        if !from_slices.contains(&key) {
            endpoints.entry(key).or_default().extend(eps);
        }
    }
    for svc in &services {
        if svc.selector.is_empty() || endpoints.contains_key(&svc.key()) {
            continue;
        }
        endpoints.insert(svc.key(), openelb_core::endpoints::from_pods(svc, &pods, &nodes));
    }

    let declared: HashSet<String> = namespaces.iter().map(|n| n.name.clone()).collect();
    let referenced: BTreeSet<String> = services
        .iter()
        .map(|s| s.namespace.clone())
        .chain(pods.iter().map(|p| p.namespace.clone()))
        .chain(m.deployments.iter().map(|d| namespace_of(&d.metadata)))
        .chain(endpoints.keys().map(|k| k.namespace.clone()))
        .filter(|ns| !declared.contains(ns))
        .collect();
    namespaces.extend(referenced.into_iter().map(|name| Namespace { name, labels: BTreeMap::new() }));

    Ok(Cluster { pools, services, namespaces, nodes, pods, endpoints })
}

/// Equality labels of a Service selector.
fn labels_match(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A Deployment's `LabelSelector`, with `matchExpressions`. Unknown operators match nothing (the API server
/// would have refused them).
pub(crate) fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let eq = selector.match_labels.as_ref().is_none_or(|ml| labels_match(ml, labels));
    eq && selector.match_expressions.iter().flatten().all(|req| {
        let values = req.values.as_deref().unwrap_or_default();
        let value = labels.get(&req.key);
        match req.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    })
}

/// Places synthetic Pods round-robin, continuing across Deployments so single-replica ones spread too.
struct Scheduler {
    /// Names of the nodes Pods may go to, sorted.
    targets: Vec<String>,
    /// Index of every node in name order, which picks its block of Pod addresses.
    block: HashMap<String, u32>,
    next_host: HashMap<String, u32>,
    taken: HashSet<IpAddr>,
    turn: usize,
}

impl Scheduler {
    fn new(k8s_nodes: &[corev1::Node], nodes: &[openelb_core::model::Node], pods: &[Pod]) -> Self {
        let mut names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        names.sort_unstable();
        let block = names.iter().enumerate().map(|(i, n)| (n.to_string(), i as u32)).collect();
        let ready: Vec<(&corev1::Node, &openelb_core::model::Node)> =
            k8s_nodes.iter().zip(nodes).filter(|(_, n)| n.ready).collect();
        let mut targets: Vec<String> =
            ready.iter().filter(|(k, n)| is_worker(k) && !n.unschedulable).map(|(_, n)| n.name.clone()).collect();
        if targets.is_empty() {
            targets = ready.iter().map(|(_, n)| n.name.clone()).collect();
        }
        targets.sort();
        Scheduler {
            targets,
            block,
            next_host: HashMap::new(),
            taken: pods.iter().filter_map(|p| p.ip).collect(),
            turn: 0,
        }
    }

    /// The next node and a free address on it; `None` when no node can take Pods.
    fn place(&mut self) -> Option<(String, IpAddr)> {
        let node = self.targets.get(self.turn % self.targets.len().max(1))?.clone();
        self.turn = self.turn.wrapping_add(1);
        let base = POD_NETWORK_BASE.wrapping_add(self.block.get(&node).copied().unwrap_or(0).wrapping_mul(POD_BLOCK));
        let host = self.next_host.entry(node.clone()).or_insert(2);
        loop {
            let ip = IpAddr::V4(Ipv4Addr::from(base.wrapping_add(*host)));
            *host = host.wrapping_add(1);
            if self.taken.insert(ip) {
                return Some((node, ip));
            }
        }
    }
}

/// A node regular Pods land on: not a control-plane node and not tainted against scheduling.
fn is_worker(node: &corev1::Node) -> bool {
    let labels = node.metadata.labels.as_ref();
    let role = |r: &str| labels.is_some_and(|l| l.contains_key(&format!("node-role.kubernetes.io/{r}")));
    let tainted = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.effect == "NoSchedule" || t.effect == "NoExecute"));
    !role("master") && !role("control-plane") && !tainted
}

fn hash_name(seed: &str, len: usize) -> String {
    let mut h = xxh3_64(seed.as_bytes());
    (0..len)
        .map(|_| {
            let c = NAME_ALPHABET[(h % NAME_ALPHABET.len() as u64) as usize] as char;
            h /= NAME_ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// The Pods a Deployment with no matching Pods would have: `<name>-<10 hex>-<5 chars>`, sorted by name,
/// replica `i` of that order on the scheduler's next node.
fn pods_for_deployment(
    m: &Manifests,
    index: usize,
    d: &appsv1::Deployment,
    existing: &[Pod],
    scheduler: &mut Scheduler,
) -> Result<Vec<Pod>, ManifestError> {
    let origin = || origin_label(m, ObjectKind::Deployment, index);
    let name = match d.metadata.name.as_deref() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => {
            return Err(ManifestError::from(ManifestErrorKind::Deployment {
                origin: origin(),
                name: String::new(),
                message: "no metadata.name".into(),
            }));
        }
    };
    let namespace = namespace_of(&d.metadata);
    let spec = d.spec.clone().unwrap_or_default();
    if existing.iter().any(|p| p.namespace == namespace && selector_matches(&spec.selector, &p.labels)) {
        return Ok(Vec::new());
    }
    let replicas = spec.replicas.unwrap_or(1);
    if !(0..=MAX_REPLICAS).contains(&replicas) {
        return Err(ManifestError::from(ManifestErrorKind::Deployment {
            origin: origin(),
            name: format!("{namespace}/{name}"),
            message: format!("spec.replicas {replicas} is outside 0..={MAX_REPLICAS}"),
        }));
    }
    let template_hash = format!("{:010x}", xxh3_64(format!("{namespace}/{name}").as_bytes()) & 0xff_ffff_ffff);
    let mut labels = spec.template.metadata.and_then(|m| m.labels).unwrap_or_default();
    labels.insert(LABEL_POD_TEMPLATE_HASH.to_string(), template_hash.clone());

    let mut names = BTreeSet::new();
    for replica in 0..replicas {
        let mut salt = 0u32;
        loop {
            let suffix = hash_name(&format!("{namespace}/{name}/{replica}/{salt}"), 5);
            if names.insert(format!("{name}-{template_hash}-{suffix}")) {
                break;
            }
            salt += 1;
        }
    }
    Ok(names
        .into_iter()
        .map(|pod_name| {
            let placed = scheduler.place();
            Pod {
                namespace: namespace.clone(),
                name: pod_name,
                labels: labels.clone(),
                ready: placed.is_some(),
                node_name: placed.as_ref().map(|(n, _)| n.clone()),
                ip: placed.map(|(_, ip)| ip),
            }
        })
        .collect())
}
