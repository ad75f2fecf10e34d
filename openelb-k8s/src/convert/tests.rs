use super::*;
use crate::crd::EipProtocol;

fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
    serde_yaml::from_str(s).unwrap()
}

fn eip(extra_meta: &str, spec: &str, status: &str) -> Eip {
    yaml(&format!(
        "apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata:\n  name: p\n{extra_meta}\nspec: {spec}\n{status}\n"
    ))
}

#[test]
fn default_annotation_must_be_exactly_true() {
    for (value, is_default) in [("true", true), ("True", false), ("TRUE", false), ("yes", false), ("", false)] {
        let e = eip(
            &format!("  annotations:\n    eip.openelb.kubesphere.io/is-default-eip: {value:?}"),
            "{address: 10.0.0.1}",
            "",
        );
        let p = pool_from_eip(&e).unwrap();
        assert_eq!(p.is_default, is_default, "value {value:?}");
        assert_eq!(p.default_annotation.as_deref(), Some(value));
    }
    let p = pool_from_eip(&eip("", "{address: 10.0.0.1}", "")).unwrap();
    assert!(!p.is_default);
    assert_eq!(p.default_annotation, None);
}

#[test]
fn eip_spec_deletion_and_used_carry_over() {
    let e = eip(
        "  deletionTimestamp: \"2024-01-01T00:00:00Z\"",
        "{address: 192.168.0.91-192.168.0.100, protocol: vip, interface: eth0, disable: true, priority: 3, \
         namespaces: [a], namespaceSelector: {team: x}}",
        "status:\n  used:\n    192.168.0.91: default/vip-svc\n",
    );
    let p = pool_from_eip(&e).unwrap();
    assert_eq!(p.name, "p");
    assert_eq!(p.address, "192.168.0.91-192.168.0.100");
    assert_eq!(p.protocol, Protocol::Vip);
    assert_eq!(p.interface.as_deref(), Some("eth0"));
    assert!(p.disable && p.deleting);
    assert_eq!(p.priority, 3);
    assert_eq!(p.namespaces, ["a"]);
    assert_eq!(p.namespace_selector.get("team").map(String::as_str), Some("x"));
    assert_eq!(p.used.get("192.168.0.91").map(String::as_str), Some("default/vip-svc"));
}

#[test]
fn eip_protocol_absent_means_bgp() {
    let p = pool_from_eip(&eip("", "{address: 10.0.0.1}", "")).unwrap();
    assert_eq!(p.protocol, Protocol::Bgp);
    assert!(!p.disable && !p.deleting && p.used.is_empty());
}

#[test]
fn eip_without_name_is_an_error() {
    let e: Eip = yaml("apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata: {}\nspec: {address: 1.1.1.1}");
    assert_eq!(pool_from_eip(&e), Err(ConvertError::MissingName { kind: "Eip" }));
}

fn svc(body: &str) -> corev1::Service {
    yaml(&format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n{body}"))
}

#[test]
fn service_defaults_type_namespace_and_port_protocol() {
    let s = service_from_k8s(&svc("spec:\n  ports: [{port: 80, targetPort: 8080}]\n")).unwrap();
    assert_eq!(s.namespace, "default");
    assert_eq!(s.type_, "ClusterIP");
    assert_eq!(s.external_traffic_policy, TrafficPolicy::Cluster);
    assert!(s.ip_families.is_empty());
    assert_eq!(
        s.ports,
        [model::ServicePort {
            name: None,
            port: 80,
            protocol: "TCP".into(),
            node_port: None,
            target_port: Some("8080".into())
        }]
    );
}

#[test]
fn service_traffic_policy_accepts_api_legacy_and_any_case() {
    for (value, want) in [
        ("Local", TrafficPolicy::Local),
        ("local", TrafficPolicy::Local),
        ("OnlyLocal", TrafficPolicy::Local),
        ("Cluster", TrafficPolicy::Cluster),
        ("CLUSTER", TrafficPolicy::Cluster),
        ("Global", TrafficPolicy::Cluster),
    ] {
        let s = service_from_k8s(&svc(&format!("spec:\n  externalTrafficPolicy: {value}\n"))).unwrap();
        assert_eq!(s.external_traffic_policy, want, "{value}");
    }
    let err = service_from_k8s(&svc("spec:\n  externalTrafficPolicy: Nearby\n")).unwrap_err();
    assert!(err.to_string().contains("default/s") && err.to_string().contains("\"Nearby\""), "{err}");
}

#[test]
fn service_ip_families_parse_and_reject_unknown() {
    let s = service_from_k8s(&svc("spec:\n  ipFamilies: [IPv6, IPv4]\n")).unwrap();
    assert_eq!(s.ip_families, [IpFamily::V6, IpFamily::V4]);
    let err = service_from_k8s(&svc("spec:\n  ipFamilies: [IPv5]\n")).unwrap_err();
    assert!(err.to_string().contains("spec.ipFamilies") && err.to_string().contains("IPv5"), "{err}");
}

#[test]
fn service_metadata_spec_and_status_carry_over() {
    let s = service_from_k8s(&svc(
        "  namespace: web\n  annotations: {lb.kubesphere.io/v1alpha1: openelb}\n  labels: {a: b}\n  \
         finalizers: [x]\n  deletionTimestamp: \"2024-01-01T00:00:00Z\"\n\
         spec:\n  type: LoadBalancer\n  loadBalancerClass: kubesphere.io/openelb\n  loadBalancerIP: 1.2.3.4\n  \
         selector: {app: x}\n  clusterIP: 10.233.0.9\n  \
         ports: [{name: dns, port: 53, protocol: UDP, nodePort: 30053, targetPort: dns}]\n\
         status:\n  loadBalancer:\n    ingress: [{ip: 192.168.0.91}, {hostname: lb.example}]\n",
    ))
    .unwrap();
    assert_eq!(s.key(), ServiceKey::new("web", "s"));
    assert_eq!(s.type_, "LoadBalancer");
    assert_eq!(s.annotations.get("lb.kubesphere.io/v1alpha1").map(String::as_str), Some("openelb"));
    assert_eq!(s.labels.len(), 1);
    assert_eq!(s.finalizers, ["x"]);
    assert!(s.deleting);
    assert_eq!(s.load_balancer_class.as_deref(), Some("kubesphere.io/openelb"));
    assert_eq!(s.load_balancer_ip.as_deref(), Some("1.2.3.4"));
    assert_eq!(s.cluster_ip.as_deref(), Some("10.233.0.9"));
    assert_eq!(s.selector.get("app").map(String::as_str), Some("x"));
    assert_eq!(s.ports[0].protocol, "UDP");
    assert_eq!(s.ports[0].node_port, Some(30053));
    assert_eq!(s.ports[0].target_port.as_deref(), Some("dns"));
    assert_eq!(s.ingress, ["192.168.0.91"]);
}

fn node(meta: &str, rest: &str) -> corev1::Node {
    yaml(&format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n{meta}{rest}"))
}

#[test]
fn node_ready_needs_ready_true_and_network_available() {
    let cond = |c: &str| format!("status:\n  conditions: {c}\n");
    for (conditions, ready) in [
        ("[{type: Ready, status: \"True\"}]", true),
        ("[{type: Ready, status: \"False\"}]", false),
        ("[{type: Ready, status: Unknown}]", false),
        ("[{type: Ready, status: \"True\"}, {type: NetworkUnavailable, status: \"True\"}]", false),
        ("[{type: Ready, status: \"True\"}, {type: NetworkUnavailable, status: \"False\"}]", true),
        ("[{type: MemoryPressure, status: \"False\"}]", false),
    ] {
        assert_eq!(node_from_k8s(&node("", &cond(conditions))).unwrap().ready, ready, "{conditions}");
    }
    assert!(node_from_k8s(&node("", "")).unwrap().ready, "a hand-written node without status is ready");
}

#[test]
fn node_internal_ip_unschedulable_and_mac() {
    let n = node_from_k8s(&node(
        "  annotations: {lab.openelb.kubesphere.io/mac-address: \"52:54:22:3A:e6:6e\"}\n",
        "spec: {unschedulable: true}\nstatus:\n  addresses: [{type: Hostname, address: n1}, \
         {type: InternalIP, address: 192.168.0.3}]\n",
    ))
    .unwrap();
    assert!(n.unschedulable);
    assert_eq!(n.internal_ip, Some("192.168.0.3".parse().unwrap()));
    assert_eq!(n.mac, Some([0x52, 0x54, 0x22, 0x3a, 0xe6, 0x6e]));
}

#[test]
fn node_malformed_mac_names_node_and_value() {
    for bad in ["52:54:22:3a:e6", "52:54:22:3a:e6:6e:00", "52-54-22-3a-e6-6e", "zz:54:22:3a:e6:6e", "5:54:22:3a:e6:6e0"]
    {
        let err =
            node_from_k8s(&node(&format!("  annotations: {{lab.openelb.kubesphere.io/mac-address: \"{bad}\"}}\n"), ""))
                .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("Node n1") && msg.contains(bad), "{msg}");
    }
}

#[test]
fn node_bad_internal_ip_is_an_error() {
    let err = node_from_k8s(&node("", "status:\n  addresses: [{type: InternalIP, address: nope}]\n")).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn namespace_keeps_labels() {
    let ns: corev1::Namespace = yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: web, labels: {team: x}}\n");
    let ns = namespace_from_k8s(&ns).unwrap();
    assert_eq!(ns.name, "web");
    assert_eq!(ns.labels.get("team").map(String::as_str), Some("x"));
}

fn pod(rest: &str) -> corev1::Pod {
    yaml(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: p1, labels: {{app: a}}}}\nspec:\n  nodeName: w1\n  containers: []\n{rest}"
    ))
}

#[test]
fn pod_ready_follows_ready_condition_or_running_when_unreported() {
    for (status, ready) in [
        ("", true),
        ("status: {phase: Running}", true),
        ("status: {phase: Pending}", false),
        ("status: {phase: Running, conditions: [{type: Ready, status: \"False\"}]}", false),
        ("status: {conditions: [{type: Ready, status: \"True\"}]}", true),
        ("status: {conditions: [{type: PodScheduled, status: \"True\"}]}", false),
    ] {
        assert_eq!(pod_from_k8s(&pod(status)).unwrap().ready, ready, "{status}");
    }
}

#[test]
fn pod_fields_carry_over() {
    let p = pod_from_k8s(&pod("status: {podIP: 10.233.92.38}")).unwrap();
    assert_eq!((p.namespace.as_str(), p.name.as_str()), ("default", "p1"));
    assert_eq!(p.node_name.as_deref(), Some("w1"));
    assert_eq!(p.ip, Some("10.233.92.38".parse().unwrap()));
    assert_eq!(p.labels.get("app").map(String::as_str), Some("a"));
    let err = pod_from_k8s(&pod("status: {podIP: 10.233.92}")).unwrap_err();
    assert!(err.to_string().contains("default/p1") && err.to_string().contains("status.podIP"), "{err}");
}

#[test]
fn endpoints_ready_and_not_ready_addresses() {
    let ep: corev1::Endpoints = yaml(
        "apiVersion: v1\nkind: Endpoints\nmetadata: {name: s, namespace: web}\nsubsets:\n\
         - addresses: [{ip: 10.0.0.1, nodeName: w1, targetRef: {kind: Pod, name: p1}}]\n  \
           notReadyAddresses: [{ip: 10.0.0.2, nodeName: w2}]\n",
    );
    let (key, eps) = endpoints_from_k8s(&ep).unwrap();
    assert_eq!(key, ServiceKey::new("web", "s"));
    assert_eq!(
        eps,
        [
            Endpoint {
                ip: Some("10.0.0.1".parse().unwrap()),
                node_name: Some("w1".into()),
                pod: Some("p1".into()),
                ready: true
            },
            Endpoint { ip: Some("10.0.0.2".parse().unwrap()), node_name: Some("w2".into()), pod: None, ready: false },
        ]
    );
    let bad: corev1::Endpoints =
        yaml("apiVersion: v1\nkind: Endpoints\nmetadata: {name: s}\nsubsets: [{addresses: [{ip: x}]}]\n");
    let err = endpoints_from_k8s(&bad).unwrap_err().to_string();
    assert!(err.contains("subsets[0].addresses[0].ip") && err.contains("default/s"), "{err}");
}

#[test]
fn endpoint_slice_ready_unless_false_and_keyed_by_service_label() {
    let slice: discoveryv1::EndpointSlice = yaml(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\naddressType: IPv4\n\
         metadata: {name: s-abc, namespace: web, labels: {kubernetes.io/service-name: s}}\nendpoints:\n\
         - {addresses: [10.0.0.1], nodeName: w1, targetRef: {kind: Pod, name: p1}}\n\
         - {addresses: [10.0.0.2], conditions: {ready: true}}\n\
         - {addresses: [10.0.0.3], conditions: {ready: false}}\n",
    );
    let (key, eps) = endpoints_from_slice(&slice).unwrap();
    assert_eq!(key, ServiceKey::new("web", "s"));
    assert_eq!(eps.iter().map(|e| e.ready).collect::<Vec<_>>(), [true, true, false]);
    assert_eq!(eps[0].pod.as_deref(), Some("p1"));
    assert_eq!(eps[0].node_name.as_deref(), Some("w1"));

    let orphan: discoveryv1::EndpointSlice = yaml(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\naddressType: IPv4\nmetadata: {name: x}\nendpoints: []\n",
    );
    assert_eq!(endpoints_from_slice(&orphan), Err(ConvertError::SliceWithoutService { name: "x".into() }));
}

#[test]
fn apply_pool_status_saturates_and_keeps_ready_and_conditions() {
    let mut e = eip(
        "",
        "{address: 2001:db8::/64}",
        "status: {ready: true, conditions: [{type: Ready, status: 'True', reason: Available, message: m, \
         lastTransitionTime: '2026-01-02T03:04:05Z'}]}",
    );
    let st = PoolStatus {
        pool_size: 1u128 << 64,
        usage: 1,
        occupied: false,
        used: [("2001:db8::".to_string(), "default/s".to_string())].into(),
        first_ip: Some("2001:db8::".into()),
        last_ip: Some("2001:db8::ffff:ffff:ffff:ffff".into()),
        v4: false,
        invalid: Vec::new(),
    };
    apply_pool_status(&mut e, &st);
    let s = e.status.clone().unwrap();
    assert_eq!(s.pool_size, i64::MAX);
    assert_eq!(s.usage, 1);
    assert!(s.ready);
    assert_eq!(s.conditions.len(), 1);
    assert_eq!((s.conditions[0].type_.as_str(), s.conditions[0].reason.as_str()), ("Ready", "Available"));
    assert_eq!(s.used, st.used);
    assert_eq!(s.first_ip.as_deref(), Some("2001:db8::"));
    assert_eq!(pool_from_eip(&e).unwrap().used, st.used);
    assert_eq!(e.spec.protocol, None::<EipProtocol>);
}

#[test]
fn apply_service_patch_sets_and_clears_ingress_label_finalizer() {
    let mut s = svc("  finalizers: [other]\nspec: {type: LoadBalancer}\n");
    let assign =
        ServicePatch { ingress: vec!["192.168.0.91".into()], pool_label: Some("vip-eip".into()), finalizer: true };
    apply_service_patch(&mut s, &assign);
    apply_service_patch(&mut s, &assign);
    let m = service_from_k8s(&s).unwrap();
    assert_eq!(m.ingress, ["192.168.0.91"]);
    assert_eq!(m.labels.get(LABEL_EIP_POOL).map(String::as_str), Some("vip-eip"));
    assert_eq!(m.finalizers, ["other", FINALIZER_SERVICE], "finalizer added once");

    apply_service_patch(&mut s, &ServicePatch::default());
    let m = service_from_k8s(&s).unwrap();
    assert!(m.ingress.is_empty());
    assert!(m.labels.is_empty());
    assert_eq!(m.finalizers, ["other"]);
    assert_eq!(s.metadata.labels, None);
    let yaml = serde_yaml::to_string(&s).unwrap();
    assert!(yaml.contains("loadBalancer: {}"), "{yaml}");
}

#[test]
fn parse_mac_round_trip() {
    assert_eq!(parse_mac("00:ff:10:aB:cd:Ef"), Some([0, 0xff, 0x10, 0xab, 0xcd, 0xef]));
    assert_eq!(parse_mac(""), None);
    assert_eq!(parse_mac("00:ff:10:ab:cd:"), None);
    assert_eq!(parse_mac("+0:ff:10:ab:cd:ef"), None);
}

#[test]
fn without_ip_families_the_cluster_ip_gives_the_family() {
    let v6 = service_from_k8s(&svc("spec:\n  type: LoadBalancer\n  clusterIP: \"2001:db8:ffff::12\"\n")).unwrap();
    assert_eq!(v6.ip_families, [model::IpFamily::V6]);
    let v4 = service_from_k8s(&svc("spec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.12\n")).unwrap();
    assert_eq!(v4.ip_families, [model::IpFamily::V4]);
    let headless = service_from_k8s(&svc("spec:\n  clusterIP: None\n")).unwrap();
    assert!(headless.ip_families.is_empty());
    let explicit = service_from_k8s(&svc("spec:\n  clusterIP: 10.96.0.12\n  ipFamilies: [IPv4, IPv6]\n")).unwrap();
    assert_eq!(explicit.ip_families, [model::IpFamily::V4, model::IpFamily::V6]);
}
