//! Reading the manifests into core values, and writing decisions back into the original objects.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use openelb_core::ipam::ServicePatch;
use openelb_core::{Cluster, FINALIZER_SERVICE, LABEL_EIP_POOL, Service, ServiceKey};
use openelb_k8s::convert;
use openelb_k8s::crd::Eip;
use openelb_k8s::manifest::Manifests;

use crate::sim::{Converter, Created, DeploymentRef, World};

pub struct Loaded {
    pub manifests: Manifests,
    pub cluster: Cluster,
    pub deployments: Vec<DeploymentRef>,
    /// Services whose Endpoints or EndpointSlices the manifests hold.
    pub explicit_endpoints: BTreeSet<ServiceKey>,
    pub warnings: Vec<String>,
    /// Cluster IP and node ports per Service, as the API server would have filled them in.
    display: BTreeMap<ServiceKey, (String, Vec<Option<i32>>)>,
}

pub fn load(paths: &[PathBuf]) -> Result<Loaded> {
    let manifests = Manifests::load_paths(paths)?;
    let cluster = manifests.to_cluster()?;
    let warnings = manifests
        .warnings
        .iter()
        // Scenario files may sit beside the manifests (examples/vip-mode does this); they are not objects.
        .filter(|w| !w.contains("kind Scenario") && !w.contains("kind \"Scenario\""))
        .cloned()
        .collect();
    let deployments = manifests
        .deployments
        .iter()
        .map(|d| DeploymentRef {
            namespace: d.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            name: d.metadata.name.clone().unwrap_or_default(),
            selector: d
                .spec
                .as_ref()
                .and_then(|s| s.selector.match_labels.clone())
                .unwrap_or_default()
                .into_iter()
                .collect(),
        })
        .collect();
    let explicit_endpoints = manifests
        .endpoints
        .iter()
        .map(|e| &e.metadata)
        .map(|m| ServiceKey::new(convert::namespace_of(m), m.name.clone().unwrap_or_default()))
        .chain(manifests.endpoint_slices.iter().filter_map(|s| {
            let svc = s.metadata.labels.as_ref()?.get(convert::LABEL_SERVICE_NAME)?;
            Some(ServiceKey::new(convert::namespace_of(&s.metadata), svc.clone()))
        }))
        .collect();
    let display = display_fields(&cluster.services);
    Ok(Loaded { manifests, cluster, deployments, explicit_endpoints, warnings, display })
}

/// Fills in cluster IPs (from the seed's 10.233.0.0/18 service range) and node ports (30000-32767) that the
/// manifests leave out, deterministically, so `allocate` can print what `kubectl get svc` would.
fn display_fields(services: &[Service]) -> BTreeMap<ServiceKey, (String, Vec<Option<i32>>)> {
    let mut used_ports: BTreeSet<i32> =
        services.iter().flat_map(|s| s.ports.iter().filter_map(|p| p.node_port)).collect();
    let mut next_port = 30000;
    let mut next_ip = 10u32;
    let mut sorted: Vec<&Service> = services.iter().collect();
    sorted.sort_by_key(|s| s.key());
    let mut out = BTreeMap::new();
    for s in sorted {
        let cluster_ip = s.cluster_ip.clone().unwrap_or_else(|| {
            let ip = format!("10.233.{}.{}", next_ip / 256, next_ip % 256);
            next_ip += 1;
            ip
        });
        let wants_node_port = s.type_ == "LoadBalancer" || s.type_ == "NodePort";
        let ports = s
            .ports
            .iter()
            .map(|p| {
                p.node_port.or_else(|| {
                    wants_node_port.then(|| {
                        while used_ports.contains(&next_port) {
                            next_port += 1;
                        }
                        used_ports.insert(next_port);
                        next_port
                    })
                })
            })
            .collect();
        out.insert(s.key(), (cluster_ip, ports));
    }
    out
}

/// `CLUSTER-IP` and `PORT(S)` columns of `kubectl get svc` for a Service.
pub fn display_ports(loaded: &Loaded, svc: &Service) -> (String, String) {
    let (ip, node_ports) = loaded.display.get(&svc.key()).cloned().unwrap_or_else(|| ("<none>".into(), Vec::new()));
    let ports: Vec<String> = svc
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let proto = if p.protocol.is_empty() { "TCP" } else { p.protocol.as_str() };
            match node_ports.get(i).copied().flatten().or(p.node_port) {
                Some(np) => format!("{}:{np}/{proto}", p.port),
                None => format!("{}/{proto}", p.port),
            }
        })
        .collect();
    (ip, if ports.is_empty() { "<none>".into() } else { ports.join(",") })
}

/// Converts the inline objects of scenario events.
pub fn converter() -> Converter {
    Box::new(|v: &serde_json::Value| {
        let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
        match kind {
            "Service" => {
                let svc: k8s_openapi::api::core::v1::Service =
                    serde_json::from_value(v.clone()).context("inline Service")?;
                Ok(Created::Service(Box::new(convert::service_from_k8s(&svc)?)))
            }
            "Eip" => {
                let eip: Eip = serde_json::from_value(v.clone()).context("inline Eip")?;
                Ok(Created::Pool(Box::new(convert::pool_from_eip(&eip)?)))
            }
            other => bail!("inline object has kind {other:?}; expected Service or Eip"),
        }
    })
}

/// The manifests' Services and Eips with what the controller would have written into them.
pub fn updated_objects(loaded: &Loaded, world: &World) -> Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for eip in &loaded.manifests.eips {
        let mut eip = eip.clone();
        let name = eip.metadata.name.clone().unwrap_or_default();
        if let Some(status) = world.ipam.pool_status(&name) {
            convert::apply_pool_status(&mut eip, &status);
        }
        out.push(serde_json::to_value(&eip)?);
    }
    for svc in &loaded.manifests.services {
        let mut svc = svc.clone();
        let key = ServiceKey::new(
            svc.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            svc.metadata.name.clone().unwrap_or_default(),
        );
        if let Some(now) = world.cluster.services.iter().find(|s| s.key() == key) {
            let patch = ServicePatch {
                ingress: now.ingress.clone(),
                pool_label: now.labels.get(LABEL_EIP_POOL).cloned(),
                finalizer: now.finalizers.iter().any(|f| f == FINALIZER_SERVICE),
            };
            convert::apply_service_patch(&mut svc, &patch);
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
