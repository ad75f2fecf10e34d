//! openelb-controller against a real kube-apiserver (v1.20.2, `scripts/kapi.sh`): the seed's Eip and Service
//! get their address, a restart changes nothing, a deletion gives the address back.
//!
//! The controller runs in-process on its own thread (`controller::Background`), so the test needs no binary
//! path; kubectl is the client, as a user would check. Without `KAPI_KUBECONFIG` the test passes as a skip.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openelb::k8s::controller::Background;
use serde_json::Value;

mod common;
use common::{crd_ready, kubeconfig, kubectl, root, run, run_with_stdin};

fn apply_stdin(kc: &str, manifest: &str) {
    let out = run_with_stdin(kc, &["apply", "-f", "-"], manifest);
    assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
}

const SEED_EIP: &str = "examples/vip-mode/vip-eip.yaml";
const SEED_SVC: &str = "examples/vip-mode/vip-svc.yaml";
const LABEL: &str = "eip.openelb.kubesphere.io/v1alpha2";
const FINALIZER: &str = "finalizer.lb.kubesphere.io/v1alpha1";
const TIMEOUT: Duration = Duration::from_secs(30);
/// Every controller a test starts acts on every Service: tests that run one take turns.
static SERIAL: Mutex<()> = Mutex::new(());

/// The object as JSON, or `None` when it does not exist.
fn get(kc: &str, kind: &str, name: &str) -> Option<Value> {
    let out = run(kc, &["get", kind, name, "-o", "json"]);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("NotFound"), "kubectl get {kind} {name}: {stderr}");
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn ingress_ip(kc: &str, svc: &str) -> String {
    kubectl(kc, &["get", "svc", svc, "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"])
}

/// Polls `check` until it returns `Some`, failing with `what` and the last value seen after [`TIMEOUT`].
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if start.elapsed() > TIMEOUT => {
                panic!("timed out after {TIMEOUT:?} waiting for {what}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn eip_status(kc: &str) -> Value {
    get(kc, "eip", "vip-eip").map(|e| e["status"].clone()).unwrap_or(Value::Null)
}

/// Removes what the test created, also after a failure: finalizers first, since no controller may be left.
struct Cleanup<'a>(&'a str);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for svc in ["vip-svc", "vip-svc-2"] {
            let _ = run(self.0, &["patch", "svc", svc, "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
            let _ = run(self.0, &["delete", "svc", svc, "--ignore-not-found", "--wait=false"]);
        }
        let _ = run(self.0, &["delete", "eip", "vip-eip", "--ignore-not-found", "--wait=false"]);
    }
}

fn second_service() -> String {
    std::fs::read_to_string(root().join(SEED_SVC)).unwrap().replacen("name: vip-svc", "name: vip-svc-2", 1)
}

#[test]
fn seed_service_gets_keeps_and_releases_its_address() {
    let Some(kc) = kubeconfig() else { return };
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    crd_ready(&kc);
    let _cleanup = Cleanup(&kc);
    kubectl(&kc, &["apply", "-f", SEED_EIP]);
    kubectl(&kc, &["apply", "-f", SEED_SVC]);

    let controller = Background::spawn(PathBuf::from(&kc));
    let started = Instant::now();
    wait_for("vip-svc to show 192.168.0.91", || {
        let ip = ingress_ip(&kc, "vip-svc");
        if ip == "192.168.0.91" { Ok(()) } else { Err(ip) }
    });
    println!("vip-svc got its address {:?} after the controller started", started.elapsed());

    let svc = get(&kc, "svc", "vip-svc").unwrap();
    assert_eq!(svc["metadata"]["labels"][LABEL], "vip-eip", "labels: {}", svc["metadata"]["labels"]);
    assert_eq!(svc["metadata"]["finalizers"], serde_json::json!([FINALIZER]));
    let status = wait_for("Eip usage 1", || {
        let s = eip_status(&kc);
        if s["usage"] == 1 { Ok(s) } else { Err(s.to_string()) }
    });
    assert_eq!(status["used"], serde_json::json!({"192.168.0.91": "default/vip-svc"}), "status: {status}");
    assert_eq!(status["poolSize"], 10, "status: {status}");
    assert_eq!(status["firstIP"], "192.168.0.91");
    assert_eq!(status["lastIP"], "192.168.0.100");

    // A restart rebuilds the allocation from the Eip: nothing moves, and the next Service gets the next address.
    let version_before = svc["metadata"]["resourceVersion"].clone();
    controller.stop().unwrap();
    let controller = Background::spawn(PathBuf::from(&kc));
    apply_stdin(&kc, &second_service());
    wait_for("vip-svc-2 to show 192.168.0.92", || {
        let ip = ingress_ip(&kc, "vip-svc-2");
        if ip == "192.168.0.92" { Ok(()) } else { Err(ip) }
    });
    let after = get(&kc, "svc", "vip-svc").unwrap();
    assert_eq!(after["status"]["loadBalancer"]["ingress"][0]["ip"], "192.168.0.91", "the restart moved vip-svc");
    assert_eq!(after["metadata"]["resourceVersion"], version_before, "the restart wrote to vip-svc: {after}");
    let status = wait_for("Eip usage 2", || {
        let s = eip_status(&kc);
        if s["usage"] == 2 { Ok(s) } else { Err(s.to_string()) }
    });
    assert_eq!(
        status["used"],
        serde_json::json!({"192.168.0.91": "default/vip-svc", "192.168.0.92": "default/vip-svc-2"})
    );

    // Deleting a Service: the finalizer holds it until its address is released, then it goes.
    kubectl(&kc, &["delete", "svc", "vip-svc", "--wait=false"]);
    wait_for("vip-svc to disappear", || match get(&kc, "svc", "vip-svc") {
        None => Ok(()),
        Some(s) => Err(s["metadata"].to_string()),
    });
    let status = eip_status(&kc);
    assert_eq!(status["used"], serde_json::json!({"192.168.0.92": "default/vip-svc-2"}), "status: {status}");
    assert_eq!(status["usage"], 1);
    kubectl(&kc, &["delete", "svc", "vip-svc-2", "--wait=false"]);
    wait_for("vip-svc-2 to disappear", || match get(&kc, "svc", "vip-svc-2") {
        None => Ok(()),
        Some(s) => Err(s["metadata"].to_string()),
    });
    let status = eip_status(&kc);
    assert!(status["usage"].as_i64().unwrap_or(0) == 0, "usage after both deletions: {status}");
    assert!(status.get("used").is_none_or(|u| u.as_object().is_none_or(|m| m.is_empty())), "status: {status}");
    controller.stop().unwrap();
}

const BURST: usize = 12;

fn burst_manifests() -> String {
    let mut out = String::from(
        "apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata:\n  name: burst-eip\n\
         spec:\n  address: 192.168.1.1-192.168.1.20\n  protocol: vip\n",
    );
    for i in 0..BURST {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: burst-{i}\n  namespace: default\n  annotations:\n\
             \x20   lb.kubesphere.io/v1alpha1: openelb\n    eip.openelb.kubesphere.io/v1alpha2: burst-eip\n\
             spec:\n  type: LoadBalancer\n  selector:\n    app: burst\n  ports:\n  - port: {port}\n",
            port = 8000 + i
        ));
    }
    out
}

struct BurstCleanup<'a>(&'a str);

impl Drop for BurstCleanup<'_> {
    fn drop(&mut self) {
        for i in 0..BURST {
            let svc = format!("burst-{i}");
            let _ = run(self.0, &["patch", "svc", &svc, "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
            let _ = run(self.0, &["delete", "svc", &svc, "--ignore-not-found", "--wait=false"]);
        }
        let _ = run(self.0, &["delete", "eip", "burst-eip", "--ignore-not-found", "--wait=false"]);
    }
}

/// Two controllers (as during a rolling update, before leader election exists) deciding on a burst of
/// Services from caches that lag: every address must stay unique and recorded. Both controllers tend to decide
/// the same Service from the same state (and so agree), so this is a smoke test of the write path under
/// contention; that every Eip write carries the resourceVersion it was computed from is checked in
/// `controller::plan`'s unit tests.
#[test]
fn two_controllers_never_hand_out_one_address_twice() {
    let Some(kc) = kubeconfig() else { return };
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    crd_ready(&kc);
    let _cleanup = BurstCleanup(&kc);
    let first = Background::spawn(PathBuf::from(&kc));
    let second = Background::spawn(PathBuf::from(&kc));
    apply_stdin(&kc, &burst_manifests());

    let started = Instant::now();
    let ips: Vec<String> = (0..BURST)
        .map(|i| {
            let svc = format!("burst-{i}");
            wait_for(&format!("{svc} to get an address"), || {
                let ip = ingress_ip(&kc, &svc);
                if ip.is_empty() { Err(ip) } else { Ok(ip) }
            })
        })
        .collect();
    println!("{BURST} Services addressed by two controllers in {:?}", started.elapsed());
    let distinct: BTreeSet<&String> = ips.iter().collect();
    assert_eq!(distinct.len(), BURST, "an address was handed out twice: {ips:?}");

    let status = wait_for("burst-eip to record every Service", || {
        let s = get(&kc, "eip", "burst-eip").map(|e| e["status"].clone()).unwrap_or(Value::Null);
        if s["usage"] == BURST { Ok(s) } else { Err(s.to_string()) }
    });
    for (i, ip) in ips.iter().enumerate() {
        assert_eq!(status["used"][ip], format!("default/burst-{i}"), "status: {status}");
    }

    for i in 0..BURST {
        kubectl(&kc, &["delete", "svc", &format!("burst-{i}"), "--wait=false"]);
    }
    for i in 0..BURST {
        let svc = format!("burst-{i}");
        wait_for(&format!("{svc} to disappear"), || match get(&kc, "svc", &svc) {
            None => Ok(()),
            Some(s) => Err(s["metadata"].to_string()),
        });
    }
    let status = get(&kc, "eip", "burst-eip").map(|e| e["status"].clone()).unwrap_or(Value::Null);
    assert!(status["usage"].as_i64().unwrap_or(0) == 0, "usage after deleting the burst: {status}");
    first.stop().unwrap();
    second.stop().unwrap();
}
