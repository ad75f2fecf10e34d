//! The seed walkthrough through the real binary: the same files a user would `kubectl apply`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_openelb-cli")).args(args).current_dir(root()).output().expect("run openelb-cli")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ok(args: &[&str]) -> String {
    let o = cli(args);
    assert!(o.status.success(), "{args:?} failed: {}\n{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    stdout(&o)
}

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&ok(args)).expect("json output")
}

/// MAC addresses of the seed's nodes, as cluster.yaml gives them.
fn seed_mac(node: &str) -> &'static str {
    match node {
        "master1" => "52:54:22:a3:9a:d9",
        "worker-p001" => "52:54:22:3a:e6:6e",
        "worker-p002" => "52:54:22:37:6c:7b",
        other => panic!("unexpected holder {other}"),
    }
}

#[test]
fn allocate_prints_kubectl_views_with_the_seed_address() {
    let out = ok(&["allocate", "-f", "examples/vip-mode"]);
    let svc_line = out.lines().find(|l| l.contains("vip-svc")).expect("vip-svc row");
    assert!(svc_line.contains("LoadBalancer"), "{svc_line}");
    assert!(svc_line.contains("192.168.0.91"), "{svc_line}");
    assert!(svc_line.contains("80:") && svc_line.ends_with("/TCP"), "{svc_line}");
    let eip_line = out.lines().find(|l| l.starts_with("vip-eip")).expect("vip-eip row");
    let cols: Vec<&str> = eip_line.split_whitespace().collect();
    assert_eq!(&cols[..5], &["vip-eip", "192.168.0.91-192.168.0.100", "1", "10", "vip"], "{eip_line}");
}

#[test]
fn allocate_yaml_holds_the_updated_objects() {
    let list = json(&["allocate", "-f", "examples/vip-mode", "-o", "json"]);
    let items = list["items"].as_array().expect("items");
    let svc = items.iter().find(|o| o["kind"] == "Service" && o["metadata"]["name"] == "vip-svc").expect("svc");
    assert_eq!(svc["status"]["loadBalancer"]["ingress"][0]["ip"], "192.168.0.91");
    assert_eq!(svc["metadata"]["labels"]["eip.openelb.kubesphere.io/v1alpha2"], "vip-eip");
    let fins = svc["metadata"]["finalizers"].as_array().expect("finalizers");
    assert!(fins.iter().any(|f| f == "finalizer.lb.kubesphere.io/v1alpha1"));
    let eip = items.iter().find(|o| o["kind"] == "Eip").expect("eip");
    assert_eq!(eip["status"]["usage"], 1);
    assert_eq!(eip["status"]["poolSize"], 10);
    assert_eq!(eip["status"]["used"]["192.168.0.91"], "default/vip-svc");
    assert_eq!(eip["status"]["firstIP"], "192.168.0.91");
    assert_eq!(eip["status"]["lastIP"], "192.168.0.100");
    assert_eq!(eip["status"]["v4"], true);

    // The YAML form carries the same objects.
    let yaml = ok(&["allocate", "-f", "examples/vip-mode", "-o", "yaml"]);
    assert!(yaml.contains("ip: 192.168.0.91"), "{yaml}");
}

#[test]
fn simulate_shows_holder_mac_and_both_pods_under_cluster() {
    let doc = json(&["simulate", "-f", "examples/vip-mode", "-o", "json"]);
    let vip = &doc["steps"][0]["vips"][0];
    assert_eq!(vip["vip"], "192.168.0.91");
    let holder = vip["holder"].as_str().expect("a holder");
    let mac = seed_mac(holder);
    assert_eq!(vip["holder_mac"], mac);
    assert_eq!(vip["ip_neigh"], format!("192.168.0.91 dev eth0 lladdr {mac} REACHABLE"));
    let reaches = vip["reaches"].as_array().expect("reaches");
    assert_eq!(reaches.len(), 2, "Cluster policy reaches both Pods: {reaches:?}");
    assert!(reaches.iter().all(|p| p.as_str().is_some_and(|p| p.starts_with("vip-openelb-"))));
    let table = ok(&["simulate", "-f", "examples/vip-mode"]);
    assert!(table.contains(&format!("lladdr {mac}")), "{table}");
}

#[test]
fn node_failure_moves_the_vip_to_a_live_candidate() {
    let doc = json(&[
        "simulate",
        "-f",
        "examples/vip-mode",
        "--scenario",
        "examples/vip-mode/scenario-node-failure.yaml",
        "-o",
        "json",
    ]);
    let steps = doc["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 5);
    let mut down: Vec<String> = Vec::new();
    for step in steps {
        let ev = step["event"].as_str().unwrap_or_default();
        if let Some(n) = ev.strip_suffix(" down") {
            down.push(n.to_string());
        }
        if let Some(n) = ev.strip_suffix(" up") {
            down.retain(|d| d != n);
        }
        let vip = &step["vips"][0];
        assert_eq!(vip["vip"], "192.168.0.91", "the address never changes: {step}");
        let holder = vip["holder"].as_str().expect("some node is always up");
        assert!(!down.iter().any(|d| d == holder), "a down node holds the VIP: {step}");
        let cands: Vec<&str> = vip["candidates"].as_array().unwrap().iter().filter_map(|c| c.as_str()).collect();
        assert!(cands.contains(&holder));
        assert_eq!(vip["holder_mac"], seed_mac(holder));
        // The data plane agrees: one live holder, and the client's entry points at it.
        assert_eq!(vip["holders"].as_array().unwrap().len(), 1, "{step}");
        assert_eq!(vip["ip_neigh"], format!("192.168.0.91 dev eth0 lladdr {} REACHABLE", seed_mac(holder)));
    }
}

#[test]
fn local_policy_keeps_the_vip_on_a_node_with_a_ready_pod() {
    let doc = json(&[
        "simulate",
        "-f",
        "examples/vip-mode",
        "--scenario",
        "examples/vip-mode/scenario-local.yaml",
        "-o",
        "json",
    ]);
    let steps = doc["steps"].as_array().expect("steps");
    // Step 1: patched to Local; both Pods ready: the holder is a worker and the client reaches one Pod.
    let local = &steps[1]["vips"][0];
    assert_eq!(local["policy"], "Local");
    let holder = local["holder"].as_str().expect("holder");
    assert!(holder.starts_with("worker-"), "only nodes with a Pod are candidates: {local}");
    assert_eq!(local["candidates"].as_array().unwrap().len(), 2);
    assert_eq!(local["reaches"].as_array().unwrap().len(), 1, "{local}");
    // Step 3: both Pods not ready: no candidate, VIP withdrawn. The client keeps its old neighbour entry (a
    // real neighbour table), but nothing answers behind it any more.
    let none = &steps[3]["vips"][0];
    assert!(none["holder"].is_null(), "{none}");
    assert_eq!(none["holders"].as_array().unwrap().len(), 0, "{none}");
    let neigh = none["ip_neigh"].as_str().unwrap_or_default();
    assert!(!neigh.contains("REACHABLE"), "{none}");
    assert_eq!(none["reaches"].as_array().unwrap().len(), 0, "{none}");
    // Step 5: back to Cluster, the VIP is held again and the address never changed.
    assert_eq!(steps[5]["vips"][0]["policy"], "Cluster");
    assert!(steps[5]["vips"][0]["holder"].is_string());
    for s in &steps[..6] {
        assert_eq!(s["vips"][0]["vip"], "192.168.0.91");
    }
    // Step 6: deleted: the address is released.
    assert_eq!(steps[6]["vips"].as_array().unwrap().len(), 0);
    assert!(steps[6]["changes"].to_string().contains("released 192.168.0.91"), "{}", steps[6]);
}

#[test]
fn validate_clean_seed_exits_zero_with_a_summary() {
    let out = ok(&["validate", "-f", "examples/vip-mode"]);
    assert!(out.starts_with("ok:"), "{out}");
    assert_eq!(out.lines().count(), 1);
}

#[test]
fn validate_lists_every_problem_and_exits_one() {
    let dir = std::env::temp_dir().join(format!("openelb-cli-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.yaml");
    std::fs::write(
        &f,
        "apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata: {name: a}\nspec: {address: 192.168.0.100-192.168.0.91, protocol: vip, interface: eth0}\n---\n\
apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata: {name: b}\nspec: {address: 192.0.2.0/24, protocol: layer2}\n---\n\
apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata: {name: c}\nspec: {address: 192.0.2.128/25, protocol: bgp}\n",
    )
    .unwrap();
    let o = cli(&["validate", "-f", f.to_str().unwrap()]);
    let out = stdout(&o);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("Eip/a") && out.contains("range end is before its start"), "{out}");
    assert!(out.contains("Eip/b") && out.contains("spec.interface"), "{out}");
    assert!(out.contains("Eip/c") || out.contains("overlap"), "{out}");
}

/// Pools of a protocol this build does not announce (layer2, bgp, and bgp by omission) are a warning on stderr,
/// naming field and value; validation still passes (exit 0), as for any warning.
#[test]
fn validate_warns_for_pools_nobody_announces_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pools.yaml");
    std::fs::write(
        &f,
        "apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata: {name: l2}\nspec: {address: 192.0.2.1-192.0.2.9, protocol: layer2, interface: eth0}\n---\n\
apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata: {name: omitted}\nspec: {address: 192.0.2.10-192.0.2.19}\n---\n\
apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata: {name: vip}\nspec: {address: 192.0.2.20-192.0.2.29, protocol: vip, interface: eth0}\n",
    )
    .unwrap();
    let o = cli(&["validate", "-f", f.to_str().unwrap()]);
    let (out, err) = (stdout(&o), String::from_utf8_lossy(&o.stderr).into_owned());
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.starts_with("ok: 3 Eip(s)") && out.contains("2 warning(s)"), "{out}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("spec.protocol")).collect();
    assert_eq!(warnings.len(), 2, "{err}");
    assert!(
        warnings[0].starts_with("warning: Eip/l2: spec.protocol=\"layer2\": protocol layer2 is not implemented"),
        "{err}"
    );
    assert!(
        warnings[1].starts_with("warning: Eip/omitted: spec.protocol=\"bgp\": protocol bgp is not implemented"),
        "{err}"
    );
    assert!(warnings.iter().all(|w| w.contains("no node announces them")), "{err}");
    let json = json(&["validate", "-f", f.to_str().unwrap(), "-o", "json"]);
    let found: Vec<(&str, &str)> = json["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["field"] == "spec.protocol")
        .map(|p| (p["object"].as_str().unwrap_or(""), p["severity"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(found, [("Eip/l2", "warning"), ("Eip/omitted", "warning")]);
}

#[test]
fn crd_output_is_the_checked_in_file() {
    let out = ok(&["crd"]);
    let file = std::fs::read_to_string(root().join("deploy/crds/network.kubesphere.io_eips.yaml")).unwrap();
    assert_eq!(out, file);
}

#[test]
fn unreadable_input_exits_two_naming_the_file() {
    for command in ["allocate", "validate", "simulate"] {
        let o = cli(&[command, "-f", "does/not/exist.yaml"]);
        assert_eq!(o.status.code(), Some(2), "{command}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("does/not/exist.yaml"), "{command}: {err}");
        // Said once: the file and the OS's reason, not the reason again as the error's cause.
        assert_eq!(err.matches("No such file or directory").count(), 1, "{command}: {err}");
    }
}

#[test]
fn allocate_output_shows_what_the_controller_leaves_of_services_being_deleted() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["cluster.yaml", "vip-openelb.yaml", "vip-svc.yaml"] {
        std::fs::copy(root().join("examples/vip-mode").join(f), dir.path().join(f)).unwrap();
    }
    let eip = std::fs::read_to_string(root().join("examples/vip-mode/vip-eip.yaml")).unwrap()
        + "status:\n  used: {192.168.0.95: default/gone, 192.168.0.96: default/held}\n";
    std::fs::write(dir.path().join("vip-eip.yaml"), eip).unwrap();
    let deleting = |name: &str, finalizers: &str, ip: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n  \
             deletionTimestamp: \"2026-01-01T00:00:00Z\"\n  finalizers: [{finalizers}]\n  \
             labels: {{eip.openelb.kubesphere.io/v1alpha2: vip-eip}}\n  \
             annotations: {{lb.kubesphere.io/v1alpha1: openelb}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n\
             status: {{loadBalancer: {{ingress: [{{ip: {ip}}}]}}}}\n"
        )
    };
    let fin = "finalizer.lb.kubesphere.io/v1alpha1";
    let text = deleting("gone", fin, "192.168.0.95")
        + "---\n"
        + &deleting("held", &format!("{fin}, example.com/keep"), "192.168.0.96");
    std::fs::write(dir.path().join("deleting.yaml"), text).unwrap();

    let path = dir.path().display().to_string();
    let list = json(&["allocate", "-f", &path, "-o", "json"]);
    let items = list["items"].as_array().expect("items");
    let names: Vec<&str> = items.iter().filter_map(|o| o["metadata"]["name"].as_str()).collect();
    assert_eq!(names, ["vip-eip", "held", "vip-svc"], "gone lost its last finalizer: the API server removed it");
    let held = &items[1];
    assert_eq!(held["metadata"]["finalizers"], serde_json::json!(["example.com/keep"]), "{held}");
    assert!(held["metadata"].get("labels").is_none(), "{held}");
    assert!(held["status"]["loadBalancer"].get("ingress").is_none(), "its address was released: {held}");
    assert_eq!(items[0]["status"]["used"], serde_json::json!({"192.168.0.91": "default/vip-svc"}));
    let yaml = ok(&["allocate", "-f", &path, "-o", "yaml"]);
    assert!(!yaml.contains("name: gone") && !yaml.contains("192.168.0.95"), "{yaml}");
}
