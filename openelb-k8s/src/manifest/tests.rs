use std::path::Path;

use openelb_core::model::{Protocol, ServiceKey, TrafficPolicy};
use proptest::prelude::*;

use super::*;

const VIP_EIP: &str = "apiVersion: network.kubesphere.io/v1alpha2
kind: Eip
metadata:
  name: vip-eip
spec:
  address: 192.168.0.91-192.168.0.100
  protocol: vip
";

const VIP_OPENELB: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: vip-openelb
spec:
  replicas: 2
  selector:
    matchLabels:
      app: vip-openelb
  template:
    metadata:
      labels:
        app: vip-openelb
    spec:
      containers:
        - image: luksa/kubia
          name: kubia
          ports:
            - containerPort: 8080
";

const VIP_SVC: &str = "kind: Service
apiVersion: v1
metadata:
  name: vip-svc
  annotations:
    lb.kubesphere.io/v1alpha1: openelb
    protocol.openelb.kubesphere.io/v1alpha1: vip
    eip.openelb.kubesphere.io/v1alpha2: vip-eip
spec:
  selector:
    app: vip-openelb
  type: LoadBalancer
  ports:
    - name: http
      port: 80
      targetPort: 8080
  externalTrafficPolicy: Cluster
";

fn node_doc(name: &str, ip: &str, mac: &str, master: bool) -> String {
    let (role, taint) = if master {
        (
            "node-role.kubernetes.io/master: \"\"",
            "spec:\n  taints:\n    - {key: node-role.kubernetes.io/master, effect: NoSchedule}\n",
        )
    } else {
        ("node-role.kubernetes.io/worker: \"\"", "")
    };
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n    {role}\n  annotations:\n    \
         lab.openelb.kubesphere.io/mac-address: \"{mac}\"\n{taint}status:\n  addresses:\n    - type: InternalIP\n      \
         address: {ip}\n  conditions:\n    - type: Ready\n      status: \"True\"\n"
    )
}

fn cluster_yaml() -> String {
    [
        node_doc("master1", "192.168.0.2", "52:54:22:a3:9a:d9", true),
        node_doc("worker-p001", "192.168.0.3", "52:54:22:3a:e6:6e", false),
        node_doc("worker-p002", "192.168.0.4", "52:54:22:37:6c:7b", false),
    ]
    .join("---\n")
}

fn seed_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vip-eip.yaml"), VIP_EIP).unwrap();
    std::fs::write(dir.path().join("vip-openelb.yaml"), VIP_OPENELB).unwrap();
    std::fs::write(dir.path().join("vip-svc.yaml"), VIP_SVC).unwrap();
    std::fs::write(dir.path().join("cluster.yaml"), cluster_yaml()).unwrap();
    std::fs::write(dir.path().join("README.md"), "not yaml: [").unwrap();
    dir
}

fn parse(text: &str) -> Result<Manifests, ManifestError> {
    Manifests::parse_str(Path::new("test.yaml"), text)
}

#[test]
fn seed_directory_loads_every_object_in_path_order() {
    let dir = seed_dir();
    let m = Manifests::load(dir.path()).unwrap();
    assert_eq!((m.eips.len(), m.deployments.len(), m.services.len(), m.nodes.len()), (1, 1, 1, 3));
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    let files: Vec<_> = m.origins.iter().map(|o| o.path.file_name().unwrap().to_str().unwrap().to_string()).collect();
    assert_eq!(
        files,
        ["cluster.yaml", "cluster.yaml", "cluster.yaml", "vip-eip.yaml", "vip-openelb.yaml", "vip-svc.yaml"]
    );
    assert_eq!(m.origin(ObjectKind::Node, 2).unwrap().document, 3);
}

#[test]
fn seed_deployment_yields_two_pods_on_the_workers_and_endpoints() {
    let dir = seed_dir();
    let c = Manifests::load(dir.path()).unwrap().to_cluster().unwrap();
    assert_eq!(c.pods.len(), 2);
    let mut nodes: Vec<_> = c.pods.iter().map(|p| p.node_name.clone().unwrap()).collect();
    nodes.sort();
    assert_eq!(nodes, ["worker-p001", "worker-p002"]);
    for p in &c.pods {
        assert_eq!(p.namespace, "default");
        assert!(p.ready);
        assert_eq!(p.labels.get("app").map(String::as_str), Some("vip-openelb"));
        let parts: Vec<&str> = p.name.rsplitn(3, '-').collect();
        assert_eq!(parts[2], "vip-openelb", "{}", p.name);
        assert_eq!(parts[1].len(), 10, "{}", p.name);
        assert!(parts[1].chars().all(|c| c.is_ascii_hexdigit()), "{}", p.name);
        assert_eq!(parts[0].len(), 5, "{}", p.name);
        assert!(p.ip.unwrap().to_string().starts_with("10.233."), "{:?}", p.ip);
    }
    assert_ne!(c.pods[0].ip, c.pods[1].ip);
    let key = ServiceKey::new("default", "vip-svc");
    let eps = &c.endpoints[&key];
    assert_eq!(eps.len(), 2);
    for (ep, pod) in eps.iter().zip(&c.pods) {
        assert_eq!(ep.pod.as_deref(), Some(pod.name.as_str()));
        assert_eq!(ep.node_name, pod.node_name);
        assert_eq!(ep.ip, pod.ip);
        assert!(ep.ready);
    }
    assert_eq!(c.pools.len(), 1);
    assert_eq!(c.pools[0].protocol, Protocol::Vip);
    assert_eq!(c.services[0].external_traffic_policy, TrafficPolicy::Cluster);
    assert_eq!(c.namespaces.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["default"]);
    let master = c.nodes.iter().find(|n| n.name == "master1").unwrap();
    assert_eq!(master.mac, Some([0x52, 0x54, 0x22, 0xa3, 0x9a, 0xd9]));
}

#[test]
fn synthetic_pods_are_deterministic() {
    let a = seed_dir();
    let b = seed_dir();
    let ca = Manifests::load(a.path()).unwrap().to_cluster().unwrap();
    let cb = Manifests::load(b.path()).unwrap().to_cluster().unwrap();
    assert_eq!(ca.pods, cb.pods);
    assert_eq!(ca.endpoints, cb.endpoints);
}

#[test]
fn replica_order_is_name_order_and_round_robin_over_workers() {
    let text = format!("{}---\n{}", cluster_yaml(), VIP_OPENELB.replace("replicas: 2", "replicas: 4"));
    let c = parse(&text).unwrap().to_cluster().unwrap();
    let names: Vec<_> = c.pods.iter().map(|p| p.name.clone()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    let nodes: Vec<_> = c.pods.iter().map(|p| p.node_name.as_deref().unwrap()).collect();
    assert_eq!(nodes, ["worker-p001", "worker-p002", "worker-p001", "worker-p002"]);
}

#[test]
fn no_schedulable_worker_falls_back_to_ready_nodes_and_none_leaves_pods_unscheduled() {
    let master_only = format!("{}---\n{}", node_doc("master1", "192.168.0.2", "52:54:22:a3:9a:d9", true), VIP_OPENELB);
    let c = parse(&master_only).unwrap().to_cluster().unwrap();
    assert!(c.pods.iter().all(|p| p.node_name.as_deref() == Some("master1") && p.ready));

    let c = parse(VIP_OPENELB).unwrap().to_cluster().unwrap();
    assert_eq!(c.pods.len(), 2);
    assert!(c.pods.iter().all(|p| p.node_name.is_none() && p.ip.is_none() && !p.ready));
}

#[test]
fn declared_pods_suppress_synthetic_ones_and_feed_endpoints() {
    let text = format!(
        "{VIP_OPENELB}---\n{VIP_SVC}---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: mine\n  labels: {{app: vip-openelb}}\n\
         spec:\n  nodeName: worker-p002\n  containers: []\nstatus:\n  podIP: 10.233.90.31\n  \
         conditions: [{{type: Ready, status: \"False\"}}]\n"
    );
    let c = parse(&text).unwrap().to_cluster().unwrap();
    assert_eq!(c.pods.len(), 1);
    let eps = &c.endpoints[&ServiceKey::new("default", "vip-svc")];
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0].pod.as_deref(), Some("mine"));
    assert!(!eps[0].ready, "a not-ready Pod is a not-ready endpoint");
}

#[test]
fn declared_endpoints_win_over_derivation_and_slices_over_endpoints() {
    let text = format!(
        "{VIP_SVC}---\napiVersion: v1\nkind: Endpoints\nmetadata: {{name: vip-svc}}\nsubsets: [{{addresses: [{{ip: 10.0.0.1}}]}}]\n"
    );
    let c = parse(&text).unwrap().to_cluster().unwrap();
    assert_eq!(c.endpoints[&ServiceKey::new("default", "vip-svc")][0].ip, Some("10.0.0.1".parse().unwrap()));

    let with_slice = format!(
        "{text}---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\naddressType: IPv4\n\
         metadata: {{name: vip-svc-x, labels: {{kubernetes.io/service-name: vip-svc}}}}\nendpoints: [{{addresses: [10.0.0.2]}}]\n"
    );
    let c = parse(&with_slice).unwrap().to_cluster().unwrap();
    let eps = &c.endpoints[&ServiceKey::new("default", "vip-svc")];
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0].ip, Some("10.0.0.2".parse().unwrap()));
}

#[test]
fn services_default_namespace_and_referenced_namespaces_are_created() {
    let text = format!(
        "{VIP_SVC}---\n{}---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: declared, labels: {{a: b}}}}\n",
        VIP_SVC.replace("name: vip-svc", "name: other\n  namespace: web")
    );
    let c = parse(&text).unwrap().to_cluster().unwrap();
    let ns: Vec<_> = c.namespaces.iter().map(|n| (n.name.as_str(), n.labels.len())).collect();
    assert_eq!(ns, [("declared", 1), ("default", 0), ("web", 0)]);
    assert_eq!(c.services[0].namespace, "default");
    assert_eq!(c.services[1].namespace, "web");
}

#[test]
fn v1alpha1_eip_is_held_as_v1alpha2_with_its_origin_version() {
    let m = parse(&VIP_EIP.replace("v1alpha2", "v1alpha1").replace("protocol: vip", "protocol: layer2")).unwrap();
    assert!(serde_yaml::to_string(&m.eips[0]).unwrap().starts_with("apiVersion: network.kubesphere.io/v1alpha2\n"));
    assert_eq!(m.origins[0].api_version, "network.kubesphere.io/v1alpha1");
    assert_eq!(m.to_cluster().unwrap().pools[0].protocol, Protocol::Layer2);
    let err = parse(&VIP_EIP.replace("v1alpha2", "v1alpha1")).unwrap_err().to_string();
    assert!(err.contains("spec.protocol") && err.contains("vip"), "v1alpha1 has no vip protocol: {err}");
}

#[test]
fn unknown_kinds_and_empty_documents_are_skipped_with_warnings() {
    let text = format!(
        "---\n---\n# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm}}\n---\n{VIP_EIP}---\n\
         apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata: {{name: old}}\n"
    );
    let m = parse(&text).unwrap();
    assert_eq!(m.eips.len(), 1);
    assert_eq!(m.warnings.len(), 2, "{:?}", m.warnings);
    assert!(
        m.warnings[0].contains("test.yaml") && m.warnings[0].contains("kind ConfigMap (apiVersion v1) named cm"),
        "{}",
        m.warnings[0]
    );
    assert!(m.warnings[1].contains("discovery.k8s.io/v1beta1"), "{}", m.warnings[1]);
}

#[test]
fn list_items_are_read_with_item_positions() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n\
                - apiVersion: v1\n  kind: Service\n  metadata: {name: s}\n  spec: {ports: [{port: x}]}\n";
    let err = parse(text).unwrap_err().to_string();
    assert!(err.contains("document 1, item 2 (Service s)"), "{err}");
    let m = parse(&text.replace("port: x", "port: 80")).unwrap();
    assert_eq!((m.namespaces.len(), m.services.len()), (1, 1));
    assert_eq!(m.origins[1].item, Some(2));
}

#[test]
fn bad_document_error_names_file_index_kind_name_and_field() {
    let text = format!("{VIP_EIP}---\n{}", VIP_SVC.replace("port: 80", "port: eighty"));
    let err = parse(&text).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("test.yaml: document 2 (Service vip-svc): spec.ports[0].port: "), "{msg}");
    assert!(msg.contains("eighty") || msg.contains("i32"), "{msg}");
    match err.kind() {
        ManifestErrorKind::Document { document, kind, name, field, .. } => {
            assert_eq!((*document, kind.as_deref(), name.as_deref()), (2, Some("Service"), Some("vip-svc")));
            assert_eq!(field, "spec.ports[0].port");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn missing_required_field_and_kind_are_named() {
    let err =
        parse("apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata: {name: e}\nspec: {protocol: vip}\n")
            .unwrap_err()
            .to_string();
    assert!(err.contains("(Eip e)") && err.contains("address"), "{err}");
    let err =
        parse("apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata: {name: e}\n").unwrap_err().to_string();
    assert_eq!(err, "test.yaml: document 1 (Eip e): missing field `spec`");
    let err = parse("apiVersion: v1\nmetadata: {name: x}\n").unwrap_err().to_string();
    assert_eq!(err, "test.yaml: document 1 (x): kind: missing");
    let err = parse("- a\n- b\n").unwrap_err().to_string();
    assert!(err.contains("document 1") && err.contains("mapping"), "{err}");
}

#[test]
fn syntax_error_names_file_and_document() {
    let err = parse(&format!("{VIP_EIP}---\nkind: [unclosed\n")).unwrap_err();
    assert!(matches!(err.kind(), ManifestErrorKind::Syntax { document: 2, .. }), "{err:?}");
    assert!(err.to_string().starts_with("test.yaml: document 2: "), "{err}");
}

#[test]
fn conversion_errors_name_the_origin() {
    let bad_mac = node_doc("w1", "192.168.0.3", "52:54:22", false);
    let err = parse(&format!("{VIP_EIP}---\n{bad_mac}")).unwrap().to_cluster().unwrap_err().to_string();
    assert!(err.contains("test.yaml: document 2") && err.contains("Node w1") && err.contains("52:54:22"), "{err}");
}

#[test]
fn duplicates_are_refused_naming_both_places() {
    let m = parse(&format!("{VIP_EIP}---\n{VIP_EIP}")).unwrap();
    let err = m.to_cluster().unwrap_err().to_string();
    assert_eq!(err, "Eip vip-eip is declared twice: test.yaml: document 1 and test.yaml: document 2");
}

#[test]
fn replicas_out_of_range_is_an_error() {
    let err = parse(&VIP_OPENELB.replace("replicas: 2", "replicas: 2000000000")).unwrap().to_cluster().unwrap_err();
    assert!(err.to_string().contains("default/vip-openelb") && err.to_string().contains("spec.replicas"), "{err}");
    let c = parse(&VIP_OPENELB.replace("  replicas: 2\n", "")).unwrap().to_cluster().unwrap();
    assert_eq!(c.pods.len(), 1, "replicas defaults to 1");
}

#[test]
fn merge_keeps_origins_pointing_at_their_objects() {
    let mut a = Manifests::parse_str(Path::new("a.yaml"), VIP_SVC).unwrap();
    let b = Manifests::parse_str(Path::new("b.yaml"), &VIP_SVC.replace("vip-svc", "second")).unwrap();
    a.merge(b);
    assert_eq!(a.services.len(), 2);
    let o = a.origin(ObjectKind::Service, 1).unwrap();
    assert_eq!(o.path, Path::new("b.yaml"));
    assert_eq!(a.services[1].metadata.name.as_deref(), Some("second"));
}

#[test]
fn load_paths_merges_paths_and_reports_missing_ones() {
    let dir = seed_dir();
    let extra = dir.path().join("extra.yml");
    std::fs::write(&extra, "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n").unwrap();
    let m = Manifests::load_paths(&[dir.path().join("vip-eip.yaml"), extra.clone()]).unwrap();
    assert_eq!((m.eips.len(), m.namespaces.len()), (1, 1));
    let missing = dir.path().join("nope.yaml");
    let err = Manifests::load_paths(std::slice::from_ref(&missing)).unwrap_err().to_string();
    assert!(err.contains("nope.yaml"), "{err}");
}

#[test]
fn nested_directories_are_walked_in_sorted_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("b")).unwrap();
    std::fs::write(dir.path().join("b/2.yml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: two}\n").unwrap();
    std::fs::write(dir.path().join("a.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: one}\n").unwrap();
    std::fs::write(dir.path().join("c.YAML"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: three}\n").unwrap();
    std::fs::write(dir.path().join("d.json"), "{}").unwrap();
    let m = Manifests::load(dir.path()).unwrap();
    let names: Vec<_> = m.namespaces.iter().map(|n| n.metadata.name.clone().unwrap()).collect();
    assert_eq!(names, ["one", "two", "three"]);
}

#[test]
fn not_utf8_is_an_error_not_a_panic() {
    let err = Manifests::parse_bytes(Path::new("bin.yaml"), &[0xff, 0xfe, 0x00]).unwrap_err();
    assert_eq!(err.to_string(), "bin.yaml: not UTF-8 text");
}

#[test]
fn selector_match_expressions() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    let sel: LabelSelector = serde_yaml::from_str(
        "matchLabels: {app: a}\nmatchExpressions:\n- {key: tier, operator: In, values: [web, api]}\n\
         - {key: canary, operator: DoesNotExist}\n",
    )
    .unwrap();
    let labels = |s: &str| serde_yaml::from_str::<std::collections::BTreeMap<String, String>>(s).unwrap();
    assert!(cluster::selector_matches(&sel, &labels("{app: a, tier: web}")));
    assert!(!cluster::selector_matches(&sel, &labels("{app: a, tier: db}")));
    assert!(!cluster::selector_matches(&sel, &labels("{app: a, tier: web, canary: x}")));
    assert!(!cluster::selector_matches(&sel, &labels("{tier: web}")));
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic(text in "\\PC*") {
        if let Ok(m) = parse(&text) {
            let _ = m.to_cluster();
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(m) = Manifests::parse_bytes(Path::new("fuzz.yaml"), &bytes) {
            let _ = m.to_cluster();
        }
    }

    #[test]
    fn arbitrary_yaml_like_text_never_panics(text in "(apiVersion: v1\n|kind: (Service|Pod|Node|List|Eip)\n|---\n|metadata: \\{name: [a-z]{1,3}\\}\n|spec: [{}\\[\\]a-z0-9:, -]{0,20}\n|items: \\[[^\n]{0,20}\\]\n|[ -~]{0,12}\n){0,12}") {
        if let Ok(m) = parse(&text) {
            let _ = m.to_cluster();
        }
    }
}
