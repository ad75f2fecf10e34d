//! The endpoints controller's rule, for tools that have Pods but no Endpoints objects (the CLI, the lab):
//! one endpoint per Pod the Service's selector matches, ready when the Pod is ready and its node is Ready.

use std::collections::BTreeMap;

use crate::model::{Endpoint, Node, Pod, Service};

/// Endpoints of `svc` from `pods`, sorted by Pod name. A Service without a selector has none (its Endpoints
/// are written by hand). Pods without an IP are skipped, as Kubernetes does. A Pod on a node that is not Ready
/// (or not in `nodes`) is a not-ready endpoint: the node lifecycle controller marks it so once the node is lost.
pub fn from_pods(svc: &Service, pods: &[Pod], nodes: &[Node]) -> Vec<Endpoint> {
    if svc.selector.is_empty() {
        return Vec::new();
    }
    let mut eps: Vec<(&str, Endpoint)> = pods
        .iter()
        .filter(|p| p.namespace == svc.namespace && selector_matches(&svc.selector, &p.labels))
        .filter_map(|p| {
            let ip = p.ip?;
            let node_ready = p.node_name.as_deref().is_some_and(|n| nodes.iter().any(|x| x.name == n && x.ready));
            Some((
                p.name.as_str(),
                Endpoint {
                    ip: Some(ip),
                    node_name: p.node_name.clone(),
                    pod: Some(p.name.clone()),
                    ready: p.ready && node_ready,
                },
            ))
        })
        .collect();
    eps.sort_by(|a, b| a.0.cmp(b.0));
    eps.into_iter().map(|(_, e)| e).collect()
}

/// Equality-based selector of a Service: every key present with the same value. An empty selector matches
/// nothing here (Kubernetes manages no endpoints for it).
pub fn selector_matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn pod(name: &str, node: &str, ready: bool, app: &str) -> Pod {
        Pod {
            namespace: "default".into(),
            name: name.into(),
            labels: BTreeMap::from([("app".to_string(), app.to_string())]),
            node_name: Some(node.into()),
            ip: Some(IpAddr::from([10, 233, 0, name.len() as u8])),
            ready,
        }
    }

    fn node(name: &str, ready: bool) -> Node {
        Node { name: name.into(), ready, ..Default::default() }
    }

    #[test]
    fn selected_pods_become_endpoints_ready_only_on_ready_nodes() {
        let svc = Service {
            namespace: "default".into(),
            selector: BTreeMap::from([("app".to_string(), "web".to_string())]),
            ..Default::default()
        };
        let pods = [
            pod("b", "n1", true, "web"),
            pod("a", "n2", true, "web"),
            pod("c", "n1", false, "web"),
            pod("d", "n1", true, "db"),
        ];
        let eps = from_pods(&svc, &pods, &[node("n1", true), node("n2", false)]);
        let got: Vec<(&str, bool)> = eps.iter().map(|e| (e.pod.as_deref().unwrap_or(""), e.ready)).collect();
        assert_eq!(got, [("a", false), ("b", true), ("c", false)]);
    }

    #[test]
    fn no_selector_no_endpoints() {
        let svc = Service { namespace: "default".into(), ..Default::default() };
        assert!(from_pods(&svc, &[pod("a", "n1", true, "web")], &[node("n1", true)]).is_empty());
    }
}
