//! The shipped Eip CRD and the seed manifests against a real kube-apiserver (v1.20.2, `scripts/kapi.sh`).
//!
//! A schema that only our own serde accepts proves nothing: the apiserver is the one that validates structural
//! schemas, prunes unknown fields, serves both versions and renders printer columns. kubectl is driven through
//! `std::process::Command` so the test needs no client stack. Without `KAPI_KUBECONFIG` the tests are ignored
//! (they fail when run with `--include-ignored`); `scripts/test.sh` starts the server and sets it.

use std::path::Path;

use serde_json::Value;

use openelb_lab::kubectl::{self, crd_ready, repo_root as root, run, run_with_stdin};
use openelb_lab::require::require_kubeconfig;

const SEED_EIP: &str = "examples/vip-mode/vip-eip.yaml";
const SEED_SVC: &str = "examples/vip-mode/vip-svc.yaml";
const SEED_DEPLOYMENT: &str = "examples/vip-mode/vip-openelb.yaml";
const SEED_NODES: &str = "examples/vip-mode/cluster.yaml";

fn get_json(kc: &str, args: &[&str]) -> Value {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "json"]);
    let text = kubectl::stdout(kc, &full);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("kubectl get {args:?}: not JSON ({e}):\n{text}"))
}

/// Deletes the named Eips when a test ends, also when it fails half-way.
struct Cleanup<'a> {
    kc: &'a str,
    eips: Vec<&'static str>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for name in &self.eips {
            let _ = run(self.kc, &["delete", "eip", name, "--ignore-not-found", "--wait=false"]);
        }
    }
}

fn manifest_exists(path: &str) {
    assert!(Path::new(&root().join(path)).is_file(), "{path}: missing from the repository");
}

#[test]
#[ignore = "needs the test kube-apiserver: KAPI_KUBECONFIG, started by scripts/test.sh"]
fn crd_is_established_with_both_versions_served_and_v1alpha2_stored() {
    let kc = require_kubeconfig();
    crd_ready(&kc);
    let crd = get_json(&kc, &["crd", "eips.network.kubesphere.io"]);
    let conds = crd["status"]["conditions"].as_array().cloned().unwrap_or_default();
    assert!(
        conds.iter().any(|c| c["type"] == "Established" && c["status"] == "True"),
        "CRD not established: {conds:?}"
    );
    assert_eq!(crd["status"]["storedVersions"], serde_json::json!(["v1alpha2"]));
    let resources = kubectl::stdout(&kc, &["api-resources", "--api-group=network.kubesphere.io", "-o", "name"]);
    assert_eq!(resources.trim(), "eips.network.kubesphere.io");
}

#[test]
#[ignore = "needs the test kube-apiserver: KAPI_KUBECONFIG, started by scripts/test.sh"]
fn seed_eip_round_trips_and_status_subresource_sets_usage() {
    let kc = require_kubeconfig();
    manifest_exists(SEED_EIP);
    crd_ready(&kc);
    let _cleanup = Cleanup { kc: &kc, eips: vec!["vip-eip"] };

    kubectl::stdout(&kc, &["apply", "-f", SEED_EIP]);
    let eip = get_json(&kc, &["eip", "vip-eip"]);
    assert_eq!(eip["apiVersion"], "network.kubesphere.io/v1alpha2");
    assert_eq!(eip["spec"]["address"], "192.168.0.91-192.168.0.100");
    assert_eq!(eip["spec"]["protocol"], "vip");

    // The status subresource: a main-resource write must not touch status, a /status write must.
    let patched = kubectl::stdout(
        &kc,
        &[
            "patch",
            "eip",
            "vip-eip",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"usage":1,"poolSize":10}}"#,
        ],
    );
    assert!(patched.contains("vip-eip"), "unexpected patch output: {patched}");
    let eip = get_json(&kc, &["eip", "vip-eip"]);
    assert_eq!(eip["status"]["usage"], 1, "status after /status patch: {}", eip["status"]);
    assert_eq!(eip["status"]["poolSize"], 10);

    kubectl::stdout(&kc, &["patch", "eip", "vip-eip", "--type=merge", "-p", r#"{"status":{"usage":7}}"#]);
    let eip = get_json(&kc, &["eip", "vip-eip"]);
    assert_eq!(eip["status"]["usage"], 1, "a main-resource patch changed status: {}", eip["status"]);

    // Printer columns come from the CRD, rendered by the server.
    let table = kubectl::stdout(&kc, &["get", "eip", "vip-eip"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(&header[..4], ["NAME", "CIDR", "USAGE", "TOTAL"], "table:\n{table}");
    let row: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(&row[..4], ["vip-eip", "192.168.0.91-192.168.0.100", "1", "10"], "table:\n{table}");
}

#[test]
#[ignore = "needs the test kube-apiserver: KAPI_KUBECONFIG, started by scripts/test.sh"]
fn eip_created_as_v1alpha1_is_read_as_v1alpha2() {
    let kc = require_kubeconfig();
    crd_ready(&kc);
    let _cleanup = Cleanup { kc: &kc, eips: vec!["kapi-v1alpha1-eip"] };
    let manifest = "apiVersion: network.kubesphere.io/v1alpha1\nkind: Eip\nmetadata:\n  name: kapi-v1alpha1-eip\n\
                    spec:\n  address: 10.11.12.0/30\n  protocol: layer2\n  interface: eth0\n";
    let out = run_with_stdin(&kc, &["apply", "-f", "-"], manifest);
    assert!(out.status.success(), "v1alpha1 create: {}", String::from_utf8_lossy(&out.stderr));

    let v2 = get_json(&kc, &["eips.v1alpha2.network.kubesphere.io", "kapi-v1alpha1-eip"]);
    assert_eq!(v2["apiVersion"], "network.kubesphere.io/v1alpha2");
    assert_eq!(v2["spec"]["address"], "10.11.12.0/30");
    assert_eq!(v2["spec"]["protocol"], "layer2");
    assert_eq!(v2["spec"]["interface"], "eth0");
    let v1 = get_json(&kc, &["eips.v1alpha1.network.kubesphere.io", "kapi-v1alpha1-eip"]);
    assert_eq!(v1["apiVersion"], "network.kubesphere.io/v1alpha1");
}

#[test]
#[ignore = "needs the test kube-apiserver: KAPI_KUBECONFIG, started by scripts/test.sh"]
fn v1alpha1_rejects_the_vip_protocol_it_never_had() {
    let kc = require_kubeconfig();
    crd_ready(&kc);
    let manifest = "apiVersion: network.kubesphere.io/v1alpha1\nkind: Eip\nmetadata:\n  name: kapi-v1alpha1-vip\n\
                    spec:\n  address: 10.11.13.0/30\n  protocol: vip\n";
    let out = run_with_stdin(&kc, &["apply", "--dry-run=server", "-f", "-"], manifest);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "v1alpha1 accepted protocol vip");
    assert!(stderr.contains("spec.protocol"), "unexpected rejection: {stderr}");
}

#[test]
#[ignore = "needs the test kube-apiserver: KAPI_KUBECONFIG, started by scripts/test.sh"]
fn seed_service_deployment_and_nodes_pass_server_dry_run() {
    let kc = require_kubeconfig();
    for path in [SEED_SVC, SEED_DEPLOYMENT, SEED_NODES] {
        manifest_exists(path);
        let out = kubectl::stdout(&kc, &["apply", "--dry-run=server", "-f", path]);
        assert!(out.contains("(server dry run)"), "{path}: {out}");
    }
}

#[test]
#[ignore = "needs the test kube-apiserver: KAPI_KUBECONFIG, started by scripts/test.sh"]
fn deploy_manifests_pass_server_dry_run() {
    let kc = require_kubeconfig();
    crd_ready(&kc);
    // A server dry run creates nothing, so the namespaced objects need their namespace to exist for real.
    let ns = kubectl::stdout(&kc, &["apply", "-f", "deploy/00-namespace.yaml"]);
    assert!(ns.contains("openelb-system"), "{ns}");
    // The documented install order: the top directory (namespace first), then the CRD.
    let out = kubectl::stdout(&kc, &["apply", "--dry-run=server", "-f", "deploy/", "-f", "deploy/crds/"]);
    for object in [
        "customresourcedefinition.apiextensions.k8s.io/eips.network.kubesphere.io",
        "serviceaccount/openelb-controller",
        "clusterrole.rbac.authorization.k8s.io/openelb-controller",
        "clusterrolebinding.rbac.authorization.k8s.io/openelb-controller",
        "role.rbac.authorization.k8s.io/openelb-controller",
        "rolebinding.rbac.authorization.k8s.io/openelb-controller",
        "deployment.apps/openelb-controller",
        "service/openelb-webhook",
        "validatingwebhookconfiguration.admissionregistration.k8s.io/openelb-eip-validator",
        "serviceaccount/openelb-speaker",
        "clusterrole.rbac.authorization.k8s.io/openelb-speaker",
        "clusterrolebinding.rbac.authorization.k8s.io/openelb-speaker",
        "daemonset.apps/openelb-speaker",
    ] {
        assert!(out.contains(object), "deploy/ lacks {object}: {out}");
    }
}

/// The objects of `deploy/` as the server would store them (defaults filled in), by kind and name.
fn deploy_objects(kc: &str) -> Vec<Value> {
    kubectl::stdout(kc, &["apply", "-f", "deploy/00-namespace.yaml"]);
    let list = kubectl::stdout(kc, &["apply", "--dry-run=server", "-R", "-f", "deploy", "-o", "json"]);
    let list: Value = serde_json::from_str(&list).unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("deploy/ has no {kind} {name}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
}

fn env_field(container: &Value, name: &str) -> String {
    let env = container["env"].as_array().cloned().unwrap_or_default();
    let var = env.iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("no env {name}: {env:?}"));
    var["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap_or_default().to_string()
}

fn port(container: &Value, name: &str) -> i64 {
    let ports = container["ports"].as_array().cloned().unwrap_or_default();
    ports.iter().find(|p| p["name"] == name).and_then(|p| p["containerPort"].as_i64()).unwrap_or(-1)
}

#[test]
#[ignore = "needs the test kube-apiserver: KAPI_KUBECONFIG, started by scripts/test.sh"]
fn deployed_controller_and_webhook_agree_with_each_other_and_with_the_code() {
    use openelb::webhook::{PATH, args};
    let kc = require_kubeconfig();
    crd_ready(&kc);
    let objects = deploy_objects(&kc);

    let deployment = object(&objects, "Deployment", "openelb-controller");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(env_field(c, "POD_NAME"), "metadata.name");
    assert_eq!(env_field(c, "POD_NAMESPACE"), "metadata.namespace");
    assert_eq!(port(c, "metrics"), 8080);
    assert_eq!(port(c, "webhook"), 9443);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(strings(&c["securityContext"]["capabilities"]["drop"]), ["ALL"]);
    assert!(c["securityContext"]["capabilities"].get("add").is_none());
    assert!(c["resources"]["requests"]["memory"].is_string() && c["resources"]["limits"]["memory"].is_string());

    let service = object(&objects, "Service", args::DEFAULT_SERVICE);
    assert_eq!(service["metadata"]["namespace"], args::DEFAULT_NAMESPACE);
    assert_eq!(service["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"]);
    assert_eq!(service["spec"]["ports"][0]["port"], 443);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "webhook");

    let config = object(&objects, "ValidatingWebhookConfiguration", args::DEFAULT_CONFIG_NAME);
    let hook = &config["webhooks"][0];
    assert_eq!(hook["clientConfig"]["service"]["name"], args::DEFAULT_SERVICE);
    assert_eq!(hook["clientConfig"]["service"]["namespace"], args::DEFAULT_NAMESPACE);
    assert_eq!(hook["clientConfig"]["service"]["path"], PATH);
    assert!(hook["clientConfig"].get("caBundle").is_none(), "caBundle is the controller's to fill in");
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(hook["sideEffects"], "None");
    assert_eq!(hook["timeoutSeconds"], 5);
    assert_eq!(strings(&hook["admissionReviewVersions"]), ["v1"]);
    assert_eq!(strings(&hook["rules"][0]["apiVersions"]), ["v1alpha1", "v1alpha2"]);
    assert_eq!(strings(&hook["rules"][0]["operations"]), ["CREATE", "UPDATE"]);

    // The controller may touch its own webhook configuration and certificate Secret, and no others.
    let cluster_role = object(&objects, "ClusterRole", "openelb-controller");
    let rules = cluster_role["rules"].as_array().cloned().unwrap_or_default();
    let vwc = rules.iter().find(|r| strings(&r["resources"]) == ["validatingwebhookconfigurations"]).unwrap();
    assert_eq!(strings(&vwc["resourceNames"]), [args::DEFAULT_CONFIG_NAME]);
    let role = object(&objects, "Role", "openelb-controller");
    let rules = role["rules"].as_array().cloned().unwrap_or_default();
    assert!(rules.iter().any(|r| strings(&r["resources"]) == ["leases"]), "{rules:?}");
    let named = rules.iter().find(|r| r.get("resourceNames").is_some() && strings(&r["resources"]) == ["secrets"]);
    assert_eq!(strings(&named.unwrap()["resourceNames"]), [args::DEFAULT_SECRET]);
    // The VRID assignment: its one ConfigMap by name (create cannot be limited by name).
    let cm = rules.iter().find(|r| r.get("resourceNames").is_some() && strings(&r["resources"]) == ["configmaps"]);
    assert_eq!(strings(&cm.unwrap()["resourceNames"]), [openelb::k8s::vrrp::CONFIGMAP_NAME]);
}

#[test]
#[ignore = "needs the test kube-apiserver: KAPI_KUBECONFIG, started by scripts/test.sh"]
fn deployed_speaker_has_host_network_three_capabilities_and_reads_only() {
    let kc = require_kubeconfig();
    crd_ready(&kc);
    let objects = deploy_objects(&kc);
    let ds = object(&objects, "DaemonSet", "openelb-speaker");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    assert_eq!(pod["serviceAccountName"], "openelb-speaker");
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    assert_eq!(pod["tolerations"], serde_json::json!([{"operator": "Exists"}]));
    let c = &pod["containers"][0];
    assert_eq!(strings(&c["command"]), ["/usr/local/bin/openelb-speaker"]);
    assert!(strings(&c["args"]).contains(&"--node-name=$(NODE_NAME)".to_string()), "{}", c["args"]);
    assert_eq!(env_field(c, "NODE_NAME"), "spec.nodeName");
    // Probed where the speaker serves by default; no port list, which the API server would turn into hostPorts.
    let metrics_port = i64::from(openelb::speaker::metrics_addr::DEFAULT_METRICS_PORT);
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"].as_i64(), Some(metrics_port), "{probe}: {}", c[probe]);
    }
    assert!(c["ports"].as_array().is_none_or(|p| p.iter().all(|p| p.get("hostPort").is_none())), "{}", c["ports"]);
    assert_eq!(strings(&c["securityContext"]["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(strings(&c["securityContext"]["capabilities"]["add"]), ["NET_ADMIN", "NET_RAW", "SYS_NICE"]);
    assert_ne!(c["securityContext"]["privileged"], true);

    // Read-only apart from Events: no Service or Eip field is the speaker's to write.
    let role = object(&objects, "ClusterRole", "openelb-speaker");
    for rule in role["rules"].as_array().cloned().unwrap_or_default() {
        let verbs = strings(&rule["verbs"]);
        if strings(&rule["resources"]) == ["events"] {
            assert_eq!(verbs, ["create", "patch"]);
        } else if strings(&rule["resources"]) == ["nodes"] {
            // `get` for its own Node's InternalIP (where its metrics listen), found with RBAC enforced.
            assert_eq!(verbs, ["get", "list", "watch"], "{rule}");
        } else {
            assert_eq!(verbs, ["list", "watch"], "{rule}");
        }
    }
    // In its namespace: Leases (its own and the other speakers'), and the controller's ConfigMap read-only by name.
    assert_eq!(env_field(c, "POD_NAMESPACE"), "metadata.namespace");
    let role = object(&objects, "Role", "openelb-speaker");
    let rules = role["rules"].as_array().cloned().unwrap_or_default();
    assert!(rules.iter().any(|r| strings(&r["resources"]) == ["leases"]), "{rules:?}");
    let cm = rules.iter().find(|r| strings(&r["resources"]) == ["configmaps"]).expect("the VRRP ConfigMap");
    assert_eq!(strings(&cm["resourceNames"]), [openelb::k8s::vrrp::CONFIGMAP_NAME]);
    assert_eq!(strings(&cm["verbs"]), ["get", "list", "watch"]);
    assert!(object(&objects, "RoleBinding", "openelb-speaker")["roleRef"]["name"] == "openelb-speaker");
}
