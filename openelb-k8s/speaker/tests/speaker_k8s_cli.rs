//! The `openelb-speaker` command line for the Kubernetes source: help, the node name from `NODE_NAME`, flag
//! refusals, and a speaker that cannot reach its API server (it waits, says so, is not ready, and stops cleanly
//! on SIGTERM). No root and no API server needed: nothing here touches the network beyond 127.0.0.1.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use openelb_lab::eventually;
use support::cli::{speaker, stderr};

#[test]
fn help_explains_the_kubernetes_source() {
    let o = speaker(&["--help"], &[]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for idea in [
        "--kubeconfig",
        "--manifests",
        "--metrics-addr",
        "NODE_NAME",
        "status.loadBalancer.ingress",
        "VIPAnnounced",
        "VIPWithdrawn",
        "endpointslices",
        "events.k8s.io",
        "openelb_speaker_vrrp_state",
        "/readyz",
        "re-list",
    ] {
        assert!(text.contains(idea), "{idea:?} missing from --help:\n{text}");
    }
}

#[test]
fn the_node_name_comes_from_the_flag_or_node_name() {
    let o = speaker(&["--manifests", "/nonexistent/oelb-m"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("NODE_NAME") && stderr(&o).contains("--node-name"), "{}", stderr(&o));

    // With NODE_NAME set, the run gets as far as reading the manifests.
    let o = speaker(&["--manifests", "/nonexistent/oelb-m"], &[("NODE_NAME", "n1")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("/nonexistent/oelb-m"), "{}", stderr(&o));
}

#[test]
fn bad_source_flags_are_refused() {
    let o = speaker(&["--node-name", "n1", "--manifests", "/tmp", "--kubeconfig", "/tmp/kc"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--kubeconfig") && stderr(&o).contains("--manifests"), "{}", stderr(&o));

    let o = speaker(&["--node-name", "n1", "--metrics-addr", "localhost"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--metrics-addr") && stderr(&o).contains("localhost"), "{}", stderr(&o));

    let o = speaker(&["--node-name", "n1", "--kubeconfig", "/nonexistent/oelb-kubeconfig"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("/nonexistent/oelb-kubeconfig"), "{}", stderr(&o));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn get(port: u16, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool, context: impl Fn() -> String) {
    let seen = eventually(timeout, Duration::from_millis(50), || done().then_some(()));
    assert!(seen.is_ok(), "{what}:\n{}", context());
}

fn write_kubeconfig(dir: &Path, server: &str) -> String {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    \
             insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  \
             context:\n    cluster: c\n    user: u\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn without_an_api_server_it_waits_says_so_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = write_kubeconfig(dir.path(), &format!("https://127.0.0.1:{}", free_port()));
    let metrics = free_port();
    let log = dir.path().join("speaker.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_openelb-speaker"))
        .args(["--kubeconfig", &kubeconfig, "--metrics-addr", &format!("127.0.0.1:{metrics}")])
        .env("NODE_NAME", "oelb-cli-node")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for(
        "no word about the unreachable API server",
        Duration::from_secs(20),
        || text().contains("cannot reach the Kubernetes API server"),
        text,
    );
    assert!(get(metrics, "/readyz").starts_with("HTTP/1.1 503"), "not ready before the first plan");
    let m = get(metrics, "/metrics");
    assert!(m.contains("openelb_speaker_api_connected 0"), "{m}");
    assert_eq!(text().matches("cannot reach the Kubernetes API server").count(), 1, "said once:\n{}", text());

    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = eventually(Duration::from_secs(20), Duration::from_millis(50), || child.try_wait().unwrap());
    let Ok(status) = status else {
        let _ = child.kill();
        panic!("no exit after SIGTERM:\n{}", text());
    };
    assert_eq!(status.code(), Some(0), "{}", text());
    assert!(text().contains("stopped before the first complete listing"), "{}", text());
}
