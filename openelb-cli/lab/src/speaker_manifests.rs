//! The manifests every openelb-speaker of the lab reads: the lab's cluster as Kubernetes objects, on the lab's
//! addresses.

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use openelb_core::model::{ANNOTATION_DEFAULT_EIP, ANNOTATION_NODE_MAC, Cluster, IpFamily, TrafficPolicy};
use serde_json::{Value, json};

use crate::layout::{Layout, mac_string};

fn service_doc(svc: &openelb_core::model::Service) -> Value {
    let ports: Vec<Value> = svc
        .ports
        .iter()
        .map(|p| {
            let mut port = json!({"port": p.port, "protocol": p.protocol});
            if let Some(n) = &p.name {
                port["name"] = json!(n);
            }
            if let Some(t) = &p.target_port {
                port["targetPort"] = t.parse::<i64>().map_or_else(|_| json!(t), |n| json!(n));
            }
            port
        })
        .collect();
    let mut spec = json!({
        "type": svc.type_,
        "selector": svc.selector,
        "ports": ports,
        "externalTrafficPolicy": match svc.external_traffic_policy {
            TrafficPolicy::Cluster => "Cluster",
            TrafficPolicy::Local => "Local",
        },
    });
    if let Some(c) = &svc.load_balancer_class {
        spec["loadBalancerClass"] = json!(c);
    }
    if let Some(ip) = &svc.load_balancer_ip {
        spec["loadBalancerIP"] = json!(ip);
    }
    if !svc.ip_families.is_empty() {
        let fams: Vec<&str> =
            svc.ip_families.iter().map(|f| if *f == IpFamily::V4 { "IPv4" } else { "IPv6" }).collect();
        spec["ipFamilies"] = json!(fams);
    }
    let ingress: Vec<Value> = svc.ingress.iter().map(|ip| json!({"ip": ip})).collect();
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": svc.name, "namespace": svc.namespace, "annotations": svc.annotations, "labels": svc.labels},
        "spec": spec,
        "status": {"loadBalancer": {"ingress": ingress}},
    })
}

/// The cluster as Kubernetes objects with the lab's addresses: what every openelb-speaker reads. A node's
/// IPv6 link-local address in `link_locals` is listed after its InternalIP: IPv6 adverts come from link-local
/// addresses, and without an apiserver (no speaker Leases) a speaker accepts adverts only from the addresses
/// the Node objects list.
pub fn manifest_documents(
    cluster: &Cluster,
    extra_v6_vips: u16,
    link_locals: &BTreeMap<String, Ipv6Addr>,
) -> Vec<Value> {
    let mut docs = Vec::new();
    for ns in &cluster.namespaces {
        docs.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns.name, "labels": ns.labels}}));
    }
    for n in &cluster.nodes {
        let mut annotations = serde_json::Map::new();
        if let Some(mac) = n.mac {
            annotations.insert(ANNOTATION_NODE_MAC.into(), json!(mac_string(&mac)));
        }
        let link_local = link_locals.get(&n.name).map(|ip| IpAddr::V6(*ip));
        let addresses: Vec<Value> = n
            .internal_ip
            .iter()
            .chain(&link_local)
            .map(|ip| json!({"type": "InternalIP", "address": ip.to_string()}))
            .collect();
        docs.push(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": n.name, "labels": n.labels, "annotations": annotations},
            "spec": {"unschedulable": n.unschedulable},
            "status": {
                "addresses": addresses,
                "conditions": [{"type": "Ready", "status": if n.ready { "True" } else { "False" }}],
            },
        }));
    }
    for p in &cluster.pools {
        let mut spec = json!({"address": p.address, "protocol": p.protocol.as_str(), "disable": p.disable,
            "priority": p.priority});
        if let Some(i) = &p.interface {
            spec["interface"] = json!(i);
        }
        if !p.namespaces.is_empty() {
            spec["namespaces"] = json!(p.namespaces);
        }
        if !p.namespace_selector.is_empty() {
            spec["namespaceSelector"] = json!(p.namespace_selector);
        }
        let mut metadata = json!({"name": p.name});
        if let Some(d) = &p.default_annotation {
            metadata["annotations"] = json!({ANNOTATION_DEFAULT_EIP: d});
        }
        docs.push(json!({"apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip", "metadata": metadata,
            "spec": spec}));
    }
    for svc in &cluster.services {
        docs.push(service_doc(svc));
    }
    for p in &cluster.pods {
        let mut status = json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": if p.ready { "True" } else { "False" }}]});
        if let Some(ip) = p.ip {
            status["podIP"] = json!(ip.to_string());
        }
        let mut spec = json!({"containers": [{"name": "http", "image": "openelb-cli-lab-pod"}]});
        if let Some(n) = &p.node_name {
            spec["nodeName"] = json!(n);
        }
        docs.push(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": p.name, "namespace": p.namespace, "labels": p.labels},
            "spec": spec, "status": status}));
    }
    if extra_v6_vips > 0 {
        let (first, last) = Layout::bench_v6_range(extra_v6_vips);
        docs.push(json!({"apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip",
            "metadata": {"name": "lab-bench-v6"},
            "spec": {"address": format!("{first}-{last}"), "protocol": "vip"}}));
        let selector = cluster.services.first().map(|s| s.selector.clone()).unwrap_or_default();
        for i in 0..extra_v6_vips {
            docs.push(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("lab-bench-{i:04}"), "namespace": "default",
                    "annotations": {"lb.kubesphere.io/v1alpha1": "openelb",
                        "eip.openelb.kubesphere.io/v1alpha2": "lab-bench-v6"}},
                "spec": {"type": "LoadBalancer", "selector": selector, "ipFamilies": ["IPv6"],
                    "ipFamilyPolicy": "SingleStack", "ports": [{"port": 80, "targetPort": 8080}]}}));
        }
    }
    docs
}

/// Writes [`manifest_documents`] as one multi-document YAML file in `dir` and returns the directory.
pub fn write_manifests(
    layout: &Layout,
    dir: &Path,
    extra_v6_vips: u16,
    link_locals: &BTreeMap<String, Ipv6Addr>,
) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let mut text = String::from("# Written by `openelb-cli lab`: the seed mapped to 192.0.2.0/24 for the speakers.\n");
    for doc in manifest_documents(&layout.cluster, extra_v6_vips, link_locals) {
        text.push_str("---\n");
        text.push_str(&serde_yaml::to_string(&doc)?);
    }
    let file = dir.join("lab.yaml");
    fs::write(&file, text).with_context(|| format!("{}: cannot write", file.display()))?;
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::layout::seed_layout as layout;

    #[test]
    fn written_manifests_load_back_to_the_same_lab() {
        let layout = layout();
        let dir = tempfile::tempdir().unwrap();
        let out = write_manifests(&layout, dir.path(), 0, &BTreeMap::new()).unwrap();
        let again = Layout::from_paths(&[out], "t1", None).unwrap();
        assert_eq!(again.vip, layout.vip);
        assert_eq!(again.nodes, layout.nodes);
        assert_eq!(again.pods, layout.pods);
        assert_eq!(again.candidates, layout.candidates);
    }

    #[test]
    fn bench_manifests_add_ipv6_vips_only_in_the_documentation_range() {
        let layout = layout();
        let dir = tempfile::tempdir().unwrap();
        write_manifests(&layout, dir.path(), 1000, &BTreeMap::new()).unwrap();
        let cluster = openelb_k8s::manifest::Manifests::load_paths(&[dir.path()]).unwrap().to_cluster().unwrap();
        let mut ipam = openelb_core::ipam::Ipam::new(&cluster.pools);
        let assigned = ipam
            .reconcile_all(&cluster.services, &cluster.namespaces)
            .into_iter()
            .filter_map(|o| match o.change {
                openelb_core::ipam::Change::Assigned { ip, .. } => Some(ip),
                _ => None,
            })
            .collect::<Vec<_>>();
        assert_eq!(assigned.len(), 1001);
        assert!(assigned.iter().all(crate::layout::is_documentation));
    }
}
