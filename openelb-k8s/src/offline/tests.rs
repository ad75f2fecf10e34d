use std::path::Path;

use openelb_core::model::FINALIZER_SERVICE;

use super::*;

/// An Eip recording .95 for `gone` and .96 for `held`, both being deleted (`held` also carries someone
/// else's finalizer), and `new`, which wants an address.
const MANIFESTS: &str = "\
apiVersion: network.kubesphere.io/v1alpha2
kind: Eip
metadata: {name: pool}
spec: {address: 192.0.2.91-192.0.2.100, protocol: vip}
status:
  used: {192.0.2.95: default/gone, 192.0.2.96: default/held}
---
apiVersion: v1
kind: Service
metadata:
  name: gone
  namespace: default
  deletionTimestamp: \"2026-01-01T00:00:00Z\"
  finalizers: [finalizer.lb.kubesphere.io/v1alpha1]
  labels: {eip.openelb.kubesphere.io/v1alpha2: pool}
  annotations: {lb.kubesphere.io/v1alpha1: openelb}
spec: {type: LoadBalancer, ports: [{port: 80}]}
status: {loadBalancer: {ingress: [{ip: 192.0.2.95}]}}
---
apiVersion: v1
kind: Service
metadata:
  name: held
  namespace: default
  deletionTimestamp: \"2026-01-01T00:00:00Z\"
  finalizers: [finalizer.lb.kubesphere.io/v1alpha1, example.com/keep]
  labels: {eip.openelb.kubesphere.io/v1alpha2: pool}
  annotations: {lb.kubesphere.io/v1alpha1: openelb}
spec: {type: LoadBalancer, ports: [{port: 81}]}
status: {loadBalancer: {ingress: [{ip: 192.0.2.96}]}}
---
apiVersion: v1
kind: Service
metadata:
  name: new
  namespace: default
  annotations: {lb.kubesphere.io/v1alpha1: openelb}
spec: {type: LoadBalancer, ports: [{port: 82}]}
";

fn run() -> (Manifests, Cluster, Ipam, Vec<Outcome>) {
    let manifests = Manifests::parse_str(Path::new("t.yaml"), MANIFESTS).unwrap();
    let mut cluster = manifests.to_cluster().unwrap();
    let mut ipam = Ipam::new(&cluster.pools);
    let outcomes = allocate(&mut ipam, &mut cluster);
    (manifests, cluster, ipam, outcomes)
}

#[test]
fn deleted_services_release_their_address_and_go_once_no_finalizer_holds_them() {
    let (_, cluster, ipam, outcomes) = run();
    let names: Vec<&str> = cluster.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["held", "new"], "gone has no finalizer left; held keeps someone else's");
    let held = &cluster.services[0];
    assert!(held.ingress.is_empty() && !held.labels.contains_key(LABEL_EIP_POOL));
    assert_eq!(held.finalizers, ["example.com/keep"]);
    let new = &cluster.services[1];
    assert_eq!(new.ingress, ["192.0.2.91"]);
    assert!(new.finalizers.iter().any(|f| f == FINALIZER_SERVICE));
    let used = &ipam.pool_status("pool").unwrap().used;
    assert_eq!(used.keys().collect::<Vec<_>>(), ["192.0.2.91"]);
    assert_eq!(cluster.pools[0].used, *used, "the pools carry the allocator's status");
    assert!(outcomes.iter().any(|o| o.service.name == "gone" && matches!(o.change, Change::Released { .. })));
}

#[test]
fn a_second_pass_runs_only_while_addresses_move() {
    let (_, _, _, outcomes) = run();
    // Pass 1 decides for all three; pass 2 keeps `new` and finds `held` no longer ours; no third pass.
    assert_eq!(outcomes.len(), 5, "{outcomes:?}");
    assert!(matches!(outcomes[4].change, Change::Kept { .. } | Change::NotOurs), "{outcomes:?}");
}

#[test]
fn updated_objects_show_what_the_controller_leaves() {
    let (manifests, cluster, ipam, _) = run();
    let objects = updated_objects(&manifests, &cluster, &ipam).unwrap();
    let names: Vec<&str> = objects.iter().filter_map(|o| o["metadata"]["name"].as_str()).collect();
    assert_eq!(names, ["pool", "held", "new"], "the deleted Service is gone, as the API server removed it");
    let held = &objects[1];
    assert_eq!(held["metadata"]["finalizers"], serde_json::json!(["example.com/keep"]));
    assert!(held["status"]["loadBalancer"].get("ingress").is_none(), "{held}");
    assert!(held["metadata"].get("labels").is_none(), "{held}");
    assert_eq!(objects[2]["status"]["loadBalancer"]["ingress"][0]["ip"], "192.0.2.91");
    assert_eq!(objects[2]["kind"], "Service");
    assert_eq!(objects[0]["status"]["used"], serde_json::json!({"192.0.2.91": "default/new"}));
}
