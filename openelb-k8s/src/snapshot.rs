//! Watched Kubernetes objects → the [`Cluster`] VIP mode plans from. Pure: the speaker's source (and the
//! controller, which publishes the VRID assignment from the same plan) keeps the converted values per object
//! and calls [`build`] after each burst of changes.
//!
//! The snapshot holds only what the VRRP plan reads (with addresses taken from ingress, see
//! `openelb_core::vrrp::inputs::PlanInputs::from_ingress`), so that changes that cannot matter never cause a
//! re-plan:
//! - Eips without `status.used` (the allocation record is the controller's business; ingress is what counts);
//! - Services of ours that show an address in `status.loadBalancer.ingress`; the rest are dropped, so a
//!   Service waiting for the controller makes the speaker announce nothing;
//! - Nodes;
//! - endpoints only of those Services with `externalTrafficPolicy: Local` (the only ones whose candidates
//!   depend on them), reduced to (node, ready), so Pods moving within a node change nothing.
//!
//! Namespaces are not watched: they matter only for choosing a pool (`namespaceSelector`), which the controller
//! does.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1 as corev1;
use k8s_openapi::api::discovery::v1 as discoveryv1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIGroupList;
use openelb_core::lifecycle;
use openelb_core::model::{Cluster, Endpoint, Node, Pool, Service, ServiceKey, TrafficPolicy};

use crate::convert::{self, ConvertError};
use crate::crd::Eip;

/// API group of EndpointSlices.
pub const DISCOVERY_GROUP: &str = "discovery.k8s.io";

/// Which object publishes a Service's endpoints on this API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointsKind {
    /// `discovery.k8s.io/v1` EndpointSlices (Kubernetes 1.21 and later).
    Slices,
    /// `core/v1` Endpoints, where `discovery.k8s.io/v1` is not served (1.20 serves only v1beta1, which the
    /// API types here no longer include).
    Endpoints,
}

impl EndpointsKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointsKind::Slices => "EndpointSlice (discovery.k8s.io/v1)",
            EndpointsKind::Endpoints => "Endpoints (v1)",
        }
    }
}

/// EndpointSlices when the server's discovery lists `discovery.k8s.io/v1`, Endpoints otherwise.
pub fn endpoints_kind(groups: &APIGroupList) -> EndpointsKind {
    let serves_v1 = groups
        .groups
        .iter()
        .filter(|g| g.name == DISCOVERY_GROUP)
        .flat_map(|g| g.versions.iter())
        .any(|v| v.version == "v1");
    if serves_v1 { EndpointsKind::Slices } else { EndpointsKind::Endpoints }
}

/// A Service as the source keeps it: the reference Events attach to (kept for every Service, so that a
/// withdrawal can still be recorded after the Service lost its address or opted out), and the Service itself
/// when the speaker has something to announce for it.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchedService {
    pub reference: corev1::ObjectReference,
    pub service: Option<Service>,
}

/// The Eip as a pool, without its allocation record.
pub fn pool(eip: &Eip) -> Result<Pool, ConvertError> {
    let mut pool = convert::pool_from_eip(eip)?;
    pool.used.clear();
    Ok(pool)
}

/// The Service is `None` when the speaker has nothing to announce for it: not `LoadBalancer`, not ours, being
/// deleted, or without an address in `status.loadBalancer.ingress` yet.
pub fn service(svc: &corev1::Service) -> Result<WatchedService, ConvertError> {
    let reference = corev1::ObjectReference {
        api_version: Some("v1".to_string()),
        kind: Some("Service".to_string()),
        name: svc.metadata.name.clone(),
        namespace: Some(convert::namespace_of(&svc.metadata)),
        uid: svc.metadata.uid.clone(),
        ..Default::default()
    };
    // Checked before converting, so that odd fields of Services that are not ours are never reported.
    if svc.spec.as_ref().and_then(|s| s.type_.as_deref()) != Some("LoadBalancer")
        || convert::ingress_ips(svc).is_empty()
    {
        return Ok(WatchedService { reference, service: None });
    }
    let service = Some(convert::service_from_k8s(svc)?).filter(|s| lifecycle::unwanted(s).is_none());
    Ok(WatchedService { reference, service })
}

pub fn node(node: &corev1::Node) -> Result<Node, ConvertError> {
    convert::node_from_k8s(node)
}

/// One (node, ready) entry per distinct pair: all the candidate rule reads.
fn compact(endpoints: Vec<Endpoint>) -> Vec<Endpoint> {
    let mut pairs: Vec<(Option<String>, bool)> = endpoints.into_iter().map(|e| (e.node_name, e.ready)).collect();
    pairs.sort();
    pairs.dedup();
    pairs.into_iter().map(|(node_name, ready)| Endpoint { ip: None, node_name, pod: None, ready }).collect()
}

pub fn endpoints(ep: &corev1::Endpoints) -> Result<(ServiceKey, Vec<Endpoint>), ConvertError> {
    let (key, eps) = convert::endpoints_from_k8s(ep)?;
    Ok((key, compact(eps)))
}

pub fn slice(slice: &discoveryv1::EndpointSlice) -> Result<(ServiceKey, Vec<Endpoint>), ConvertError> {
    let (key, eps) = convert::endpoints_from_slice(slice)?;
    Ok((key, compact(eps)))
}

/// The snapshot, and the references of every Service for Events. Inputs may come in any order; the output is
/// sorted, so equal inputs give equal snapshots. `endpoints` may list a Service several times (one entry per
/// EndpointSlice); its entries are merged.
pub fn build<'a>(
    pools: impl IntoIterator<Item = &'a Pool>,
    services: impl IntoIterator<Item = &'a WatchedService>,
    nodes: impl IntoIterator<Item = &'a Node>,
    endpoints: impl IntoIterator<Item = &'a (ServiceKey, Vec<Endpoint>)>,
) -> (Cluster, HashMap<ServiceKey, corev1::ObjectReference>) {
    let mut pools: Vec<Pool> = pools.into_iter().cloned().collect();
    pools.sort_by(|a, b| a.name.cmp(&b.name));
    let mut nodes: Vec<Node> = nodes.into_iter().cloned().collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let watched = services;
    let mut refs = HashMap::new();
    let mut services: Vec<Service> = Vec::new();
    for w in watched {
        if let (Some(namespace), Some(name)) = (&w.reference.namespace, &w.reference.name) {
            refs.insert(ServiceKey::new(namespace, name), w.reference.clone());
        }
        services.extend(w.service.iter().cloned());
    }
    services.sort_by_key(Service::key);
    let local: BTreeMap<ServiceKey, ()> =
        services.iter().filter(|s| s.external_traffic_policy == TrafficPolicy::Local).map(|s| (s.key(), ())).collect();
    let mut merged: BTreeMap<ServiceKey, Vec<Endpoint>> = BTreeMap::new();
    for (key, eps) in endpoints {
        if local.contains_key(key) {
            merged.entry(key.clone()).or_default().extend(eps.iter().cloned());
        }
    }
    let endpoints = merged.into_iter().map(|(k, eps)| (k, compact(eps))).collect();
    let cluster = Cluster { pools, services, namespaces: Vec::new(), nodes, pods: Vec::new(), endpoints };
    (cluster, refs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIGroup, GroupVersionForDiscovery, ObjectMeta};
    use openelb_core::model::ANNOTATION_LB;

    use openelb_core::vrrp::inputs::PlanInputs;

    fn k8s_service(name: &str, ingress: &[&str], policy: &str) -> corev1::Service {
        corev1::Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("web".into()),
                uid: Some(format!("uid-{name}")),
                annotations: Some([(ANNOTATION_LB.to_string(), "openelb".to_string())].into()),
                ..Default::default()
            },
            spec: Some(corev1::ServiceSpec {
                type_: Some("LoadBalancer".into()),
                external_traffic_policy: Some(policy.into()),
                ..Default::default()
            }),
            status: Some(corev1::ServiceStatus {
                load_balancer: Some(corev1::LoadBalancerStatus {
                    ingress: Some(
                        ingress
                            .iter()
                            .map(|ip| corev1::LoadBalancerIngress { ip: Some(ip.to_string()), ..Default::default() })
                            .collect(),
                    ),
                }),
                ..Default::default()
            }),
        }
    }

    fn k8s_node(name: &str, ip: &str) -> corev1::Node {
        corev1::Node {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            status: Some(corev1::NodeStatus {
                addresses: Some(vec![corev1::NodeAddress { type_: "InternalIP".into(), address: ip.into() }]),
                conditions: Some(vec![corev1::NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn eip() -> Eip {
        let mut e = Eip::new(
            "vip",
            crate::crd::EipSpec {
                address: "192.0.2.91-192.0.2.95".into(),
                protocol: Some(crate::crd::EipProtocol::Vip),
                interface: Some("eth0".into()),
                ..Default::default()
            },
        );
        e.status = Some(crate::crd::EipStatus {
            used: [("192.0.2.91".to_string(), "web/gone".to_string())].into(),
            ..Default::default()
        });
        e
    }

    fn group_list(versions: &[&str]) -> APIGroupList {
        APIGroupList {
            groups: vec![APIGroup {
                name: DISCOVERY_GROUP.into(),
                versions: versions
                    .iter()
                    .map(|v| GroupVersionForDiscovery {
                        group_version: format!("{DISCOVERY_GROUP}/{v}"),
                        version: v.to_string(),
                    })
                    .collect(),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn endpoint_slices_only_where_discovery_v1_is_served() {
        assert_eq!(endpoints_kind(&group_list(&["v1beta1"])), EndpointsKind::Endpoints, "kube-apiserver 1.20");
        assert_eq!(endpoints_kind(&group_list(&["v1", "v1beta1"])), EndpointsKind::Slices, "1.21 to 1.24");
        assert_eq!(endpoints_kind(&group_list(&["v1"])), EndpointsKind::Slices);
        assert_eq!(endpoints_kind(&APIGroupList { groups: vec![] }), EndpointsKind::Endpoints);
    }

    #[test]
    fn services_without_ingress_or_not_ours_are_left_out() {
        let waiting = service(&k8s_service("waiting", &[], "Cluster")).unwrap();
        assert!(waiting.service.is_none(), "no address written yet");
        assert_eq!(waiting.reference.uid.as_deref(), Some("uid-waiting"), "still known for Events");
        let mut not_ours = k8s_service("other", &["192.0.2.92"], "Cluster");
        not_ours.metadata.annotations = None;
        assert!(service(&not_ours).unwrap().service.is_none());
        let mut cluster_ip = k8s_service("cip", &["192.0.2.92"], "Cluster");
        cluster_ip.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
        // Not ours, so its invalid policy is never an error.
        cluster_ip.spec.as_mut().unwrap().external_traffic_policy = Some("Bogus".into());
        assert!(service(&cluster_ip).unwrap().service.is_none());
        let w = service(&k8s_service("ok", &["192.0.2.92"], "Cluster")).unwrap();
        assert_eq!(w.service.as_ref().map(|s| s.ingress.clone()), Some(vec!["192.0.2.92".to_string()]));
        assert_eq!(w.reference.uid.as_deref(), Some("uid-ok"));
        assert_eq!(w.reference.kind.as_deref(), Some("Service"));
        assert!(w.reference.resource_version.is_none(), "Events of one Service must share a key");
    }

    #[test]
    fn a_service_without_ingress_is_not_announced_even_with_a_free_pool() {
        let pools = [pool(&eip()).unwrap()];
        assert!(pools[0].used.is_empty(), "the allocation record is dropped");
        let nodes = [node(&k8s_node("a", "192.0.2.3")).unwrap()];
        let svcs: Vec<WatchedService> =
            [k8s_service("waiting", &[], "Cluster"), k8s_service("s", &["192.0.2.93"], "Cluster")]
                .iter()
                .map(|s| service(s).unwrap())
                .collect();
        let (cluster, refs) = build(&pools, &svcs, &nodes, &[]);
        assert_eq!(cluster.services.len(), 1);
        assert!(refs.contains_key(&ServiceKey::new("web", "s")));
        assert!(refs.contains_key(&ServiceKey::new("web", "waiting")), "a withdrawal must find its Service");
        let (inputs, _) = PlanInputs::from_ingress(&cluster);
        let vips: Vec<String> = inputs.targets.iter().map(|t| t.vip.to_string()).collect();
        assert_eq!(vips, ["192.0.2.93"], "exactly the written address; .91 is neither free-picked nor taken from used");
        assert_eq!(inputs.vips[0].candidates, ["a"]);
    }

    fn k8s_endpoints(service: &str, ready: &[(&str, &str)], not_ready: &[(&str, &str)]) -> corev1::Endpoints {
        let addr = |(ip, node): &(&str, &str)| corev1::EndpointAddress {
            ip: ip.to_string(),
            node_name: Some(node.to_string()),
            ..Default::default()
        };
        corev1::Endpoints {
            metadata: ObjectMeta { name: Some(service.into()), namespace: Some("web".into()), ..Default::default() },
            subsets: Some(vec![corev1::EndpointSubset {
                addresses: Some(ready.iter().map(addr).collect()),
                not_ready_addresses: Some(not_ready.iter().map(addr).collect()),
                ..Default::default()
            }]),
        }
    }

    fn k8s_slice(name: &str, service: &str, eps: &[(&str, &str, bool)]) -> discoveryv1::EndpointSlice {
        discoveryv1::EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("web".into()),
                labels: Some([(convert::LABEL_SERVICE_NAME.to_string(), service.to_string())].into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: eps
                .iter()
                .map(|(ip, node, ready)| discoveryv1::Endpoint {
                    addresses: vec![ip.to_string()],
                    node_name: Some(node.to_string()),
                    conditions: Some(discoveryv1::EndpointConditions { ready: Some(*ready), ..Default::default() }),
                    ..Default::default()
                })
                .collect(),
            ports: None,
        }
    }

    #[test]
    fn endpoints_and_slices_give_the_same_compact_endpoints() {
        let from_endpoints =
            endpoints(&k8s_endpoints("s", &[("10.0.0.1", "a"), ("10.0.0.2", "a")], &[("10.0.0.3", "b")])).unwrap();
        let s1 = slice(&k8s_slice("s-1", "s", &[("10.0.0.1", "a", true), ("10.0.0.3", "b", false)])).unwrap();
        let s2 = slice(&k8s_slice("s-2", "s", &[("10.0.0.2", "a", true)])).unwrap();
        assert_eq!(from_endpoints.0, ServiceKey::new("web", "s"));
        assert_eq!(s1.0, from_endpoints.0);
        let expected = vec![
            Endpoint { ip: None, node_name: Some("a".into()), pod: None, ready: true },
            Endpoint { ip: None, node_name: Some("b".into()), pod: None, ready: false },
        ];
        assert_eq!(from_endpoints.1, expected, "two Pods on one node: one entry");

        let svcs = [service(&k8s_service("s", &["192.0.2.92"], "Local")).unwrap()];
        let (via_endpoints, _) = build(&[], &svcs, &[], std::slice::from_ref(&from_endpoints));
        let (via_slices, _) = build(&[], &svcs, &[], &[s1, s2]);
        assert_eq!(via_endpoints.endpoints, via_slices.endpoints, "slices of one Service are merged");
        assert_eq!(via_endpoints.endpoints[&ServiceKey::new("web", "s")], expected);
    }

    #[test]
    fn endpoints_are_kept_only_for_local_services_of_the_snapshot() {
        let eps = [
            endpoints(&k8s_endpoints("local", &[("10.0.0.1", "a")], &[])).unwrap(),
            endpoints(&k8s_endpoints("cluster", &[("10.0.0.2", "a")], &[])).unwrap(),
            endpoints(&k8s_endpoints("unrelated", &[("10.0.0.3", "a")], &[])).unwrap(),
        ];
        let svcs = [
            service(&k8s_service("local", &["192.0.2.92"], "Local")).unwrap(),
            service(&k8s_service("cluster", &["192.0.2.93"], "Cluster")).unwrap(),
        ];
        let (cluster, _) = build(&[], &svcs, &[], &eps);
        let keys: Vec<&str> = cluster.endpoints.keys().map(|k| k.name.as_str()).collect();
        assert_eq!(keys, ["local"]);
    }

    #[test]
    fn equal_inputs_in_any_order_give_equal_snapshots() {
        let svcs = [
            service(&k8s_service("b", &["192.0.2.92"], "Cluster")).unwrap(),
            service(&k8s_service("a", &["192.0.2.93"], "Cluster")).unwrap(),
        ];
        let nodes = [node(&k8s_node("n2", "192.0.2.4")).unwrap(), node(&k8s_node("n1", "192.0.2.3")).unwrap()];
        let (one, _) = build(&[], &svcs, &nodes, &[]);
        let rev_svcs: Vec<WatchedService> = svcs.iter().rev().cloned().collect();
        let rev_nodes: Vec<Node> = nodes.iter().rev().cloned().collect();
        let (two, _) = build(&[], &rev_svcs, &rev_nodes, &[]);
        assert_eq!(one, two);
        assert_eq!(one.services[0].name, "a");
        assert_eq!(one.services.len(), 2);
        assert_eq!(one.nodes[0].name, "n1");
    }
}
