//! The controller's VRID assignment against a real kube-apiserver (`scripts/kapi.sh`; ignored
//! without `KAPI_KUBECONFIG`): the leader publishes ConfigMap `openelb-vrrp` for the groups the speakers plan,
//! keeps a group's published VRID across a restart (even one the planner would not pick itself), adds a foreign
//! VRID a speaker reports in its Lease and moves the group off it, and writes nothing when nothing changed.
//!
//! Objects carry the test's PID; the ConfigMap and the speaker Lease live in a namespace of the test's own, so a
//! shared apiserver's other users see none of it. A controller acts on every object of the cluster, so the
//! assertions only concern this test's groups (identified by its own node names).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use openelb::controller::{Background, Options, VridPublishing, VridSettings};
use openelb::core::election;
use openelb::core::model::IpFamily;
use openelb::core::vrrp::plan::{ForeignVrid, GroupId};
use openelb::k8s::vrrp::{CONFIGMAP_KEY, CONFIGMAP_NAME, ForeignSeen, Published, SpeakerLease};
use serde_json::Value;

use openelb_lab::eventually_with;
use openelb_lab::kubectl::{self, crd_ready, run, run_with_stdin};
use openelb_lab::require::require_kubeconfig;

const TIMEOUT: Duration = Duration::from_secs(30);

fn apply(kc: &str, manifest: &str) {
    let out = run_with_stdin(kc, &["apply", "-f", "-"], manifest);
    assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
}

fn wait_for<T>(what: &str, check: impl FnMut() -> Result<T, String>) -> T {
    eventually_with(what, TIMEOUT, Duration::from_millis(200), check).unwrap_or_else(|e| panic!("timed out: {e}"))
}

/// The ConfigMap: its publication and resourceVersion, or why not.
fn published(kc: &str, ns: &str) -> Result<(Published, String), String> {
    let out = run(kc, &["-n", ns, "get", "configmap", CONFIGMAP_NAME, "-o", "json"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let cm: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let raw = cm["data"][CONFIGMAP_KEY].as_str().ok_or("no data key")?;
    let p = Published::from_json("test", raw).map_err(|e| e.to_string())?;
    Ok((p, cm["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string()))
}

/// The published groups whose candidates are this test's nodes.
fn ours(p: &Published, nodes: &[String]) -> BTreeMap<GroupId, u8> {
    p.assignment.vrids.iter().filter(|(id, _)| id.candidates == nodes).map(|(id, v)| (id.clone(), *v)).collect()
}

fn metric(addr: SocketAddr, series: &str) -> Option<f64> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Removes what the test created, also after a failure.
struct Cleanup {
    kc: String,
    ns: String,
    services: Vec<String>,
    nodes: Vec<String>,
    eip: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let kc = self.kc.as_str();
        let none = r#"{"metadata":{"finalizers":null}}"#;
        for svc in &self.services {
            let _ = run(kc, &["patch", "svc", svc, "--type=merge", "-p", none]);
            let _ = run(kc, &["delete", "svc", svc, "--ignore-not-found", "--wait=false"]);
        }
        let _ = run(kc, &["patch", "eip", &self.eip, "--type=merge", "-p", none]);
        let _ = run(kc, &["delete", "eip", &self.eip, "--ignore-not-found", "--wait=false"]);
        for n in &self.nodes {
            let _ = run(kc, &["delete", "node", n, "--ignore-not-found", "--wait=false"]);
        }
        let _ = run(kc, &["delete", "namespace", &self.ns, "--ignore-not-found", "--wait=false"]);
    }
}

fn controller(kc: &str, ns: &str) -> Background {
    let options = Options {
        vrid_publishing: Some(VridPublishing { namespace: ns.to_string(), settings: VridSettings::default() }),
        ..Options::default()
    };
    Background::spawn_with(PathBuf::from(kc), options, Some("127.0.0.1:0".parse().unwrap()))
}

#[test]
#[ignore = "needs the test kube-apiserver: KAPI_KUBECONFIG, started by scripts/test.sh"]
fn the_leader_publishes_vrids_keeps_them_across_a_restart_and_moves_off_foreign_ones() {
    let kc = require_kubeconfig();
    crd_ready(&kc);
    let pid = std::process::id();
    let ns = format!("oelb-vrrp-{pid}");
    let eip = format!("oelb-vrrp-{pid}");
    let nodes: Vec<String> = (1..=3).map(|i| format!("oelb-vrrp-{pid}-n{i}")).collect();
    let services: Vec<String> = (1..=4).map(|i| format!("oelb-vrrp-{pid}-s{i}")).collect();
    let _cleanup =
        Cleanup { kc: kc.clone(), ns: ns.clone(), services: services.clone(), nodes: nodes.clone(), eip: eip.clone() };

    kubectl::stdout(&kc, &["create", "namespace", &ns]);
    let mut y = format!(
        "apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata:\n  name: {eip}\nspec:\n  \
         address: 198.51.100.10-198.51.100.29\n  protocol: vip\n  interface: eth0\n"
    );
    for (i, n) in nodes.iter().enumerate() {
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {n}\nstatus:\n  addresses:\n    - type: InternalIP\n      \
             address: 198.51.100.{}\n  conditions:\n    - type: Ready\n      status: \"True\"\n",
            100 + i
        ));
    }
    // Local policy with endpoints on this test's nodes only: other tests' Nodes never join these groups.
    for s in &services {
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {s}\n  namespace: default\n  annotations:\n    \
             lb.kubesphere.io/v1alpha1: openelb\n    eip.openelb.kubesphere.io/v1alpha2: {eip}\nspec:\n  \
             type: LoadBalancer\n  externalTrafficPolicy: Local\n  ports:\n    - port: 80\n---\n\
             apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: {s}\n  namespace: default\nsubsets:\n  - addresses:\n"
        ));
        for (i, n) in nodes.iter().enumerate() {
            y.push_str(&format!("      - ip: 10.244.{i}.10\n        nodeName: {n}\n"));
        }
        y.push_str("    ports:\n      - port: 8080\n");
    }
    apply(&kc, &y);

    // The leader publishes a group per first preference of this test's VIPs.
    let c = controller(&kc, &ns);
    let addr = c.metrics_addr().expect("metrics served");
    let vips: Vec<IpAddr> = services
        .iter()
        .map(|s| {
            wait_for(&format!("{s} to get an address"), || {
                let ip =
                    kubectl::stdout(&kc, &["get", "svc", s, "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"]);
                ip.parse::<IpAddr>().map_err(|_| ip)
            })
        })
        .collect();
    let names: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let firsts: BTreeSet<String> = vips.iter().map(|v| election::rank(v, &names)[0].to_string()).collect();
    let (first, _) = wait_for("the ConfigMap with this test's groups", || {
        let (p, v) = published(&kc, &ns)?;
        let mine = ours(&p, &nodes);
        let got: BTreeSet<String> = mine.keys().map(|g| g.first.clone()).collect();
        if got == firsts { Ok((p, v)) } else { Err(format!("groups {mine:?}, want firsts {firsts:?}")) }
    });
    let mine = ours(&first, &nodes);
    assert!(mine.values().all(|v| (100..=255).contains(v)), "default range: {mine:?}");
    assert_eq!(first.vrids, 100..=255);
    c.stop().expect("controller stops");

    // An operator (or an older plan) gave one group another VRID: a restarted leader keeps it, writes nothing.
    let (id, vrid) = mine.iter().next().map(|(i, v)| (i.clone(), *v)).unwrap();
    let taken: Vec<u8> = first.assignment.vrids.values().copied().collect();
    let other = (100..=255u8).rev().find(|v| !taken.contains(v)).unwrap();
    let mut edited = first.clone();
    edited.assignment.vrids.insert(id.clone(), other);
    let json = serde_json::to_string(&serde_json::json!({"data": {CONFIGMAP_KEY: edited.to_json()}})).unwrap();
    kubectl::stdout(&kc, &["-n", &ns, "patch", "configmap", CONFIGMAP_NAME, "--type=merge", "-p", &json]);
    let (_, edited_version) = published(&kc, &ns).unwrap();

    let c = controller(&kc, &ns);
    let addr2 = c.metrics_addr().expect("metrics served");
    assert_ne!(addr, addr2);
    wait_for("the restarted leader to plan", || match metric(addr2, "openelb_vrrp_published_groups ") {
        Some(n) if n >= mine.len() as f64 => Ok(()),
        other => Err(format!("{other:?}")),
    });
    let (after, version) = published(&kc, &ns).unwrap();
    assert_eq!(ours(&after, &nodes).get(&id), Some(&other), "the published VRID {other} stays, not {vrid}");
    assert_eq!(version, edited_version, "nothing changed: nothing written");
    assert_eq!(metric(addr2, "openelb_vrrp_assignment_writes_total"), Some(0.0));

    // A speaker reports a foreign router on that VRID: it is published, and the group moves off it.
    let report = SpeakerLease {
        node: nodes[0].clone(),
        sources: vec!["198.51.100.100".parse().unwrap()],
        foreign: vec![ForeignSeen {
            vrid: ForeignVrid { interface: "eth0".into(), family: IpFamily::V4, vrid: other },
            last_seen: SystemTime::now(),
        }],
        renewed: None,
    }
    .to_lease(&ns, SystemTime::now(), Duration::from_secs(150));
    apply(&kc, &serde_json::to_string(&report).unwrap());
    let moved = wait_for("the group to move off the foreign VRID", || {
        let (p, _) = published(&kc, &ns)?;
        let v = ours(&p, &nodes).get(&id).copied();
        let listed = p.foreign.iter().any(|f| f.vrid.vrid == other);
        if listed && v.is_some() && v != Some(other) { Ok(p) } else { Err(format!("{v:?}, foreign {:?}", p.foreign)) }
    });
    assert!(moved.assignment.vrids.values().all(|v| *v != other), "no group on the foreign VRID");
    for (g, v) in ours(&after, &nodes).iter().filter(|(g, _)| **g != id) {
        assert_eq!(ours(&moved, &nodes).get(g), Some(v), "{g} keeps its VRID");
    }
    assert_eq!(metric(addr2, "openelb_vrrp_assignment_writes_total"), Some(1.0));
    c.stop().expect("controller stops");
}
