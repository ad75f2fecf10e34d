//! kubectl plumbing shared by the tests against the test apiserver (`scripts/kapi.sh`).
#![allow(dead_code)] // each test binary uses a different subset

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub const CRD: &str = "deploy/crds/network.kubesphere.io_eips.yaml";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The test apiserver's kubeconfig, or `None` (and a note) when the suite runs without one.
pub fn kubeconfig() -> Option<String> {
    let kc = std::env::var("KAPI_KUBECONFIG").ok().filter(|s| !s.is_empty());
    if kc.is_none() {
        println!("skipping: no test apiserver (scripts/kapi.sh start)");
    }
    kc
}

pub fn run(kc: &str, args: &[&str]) -> Output {
    run_with_stdin(kc, args, "")
}

/// Runs kubectl with `input` on stdin, so ad-hoc manifests need no files in the shared target dir.
pub fn run_with_stdin(kc: &str, args: &[&str], input: &str) -> Output {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kc)
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("kubectl {args:?}: cannot run: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// Runs kubectl and returns stdout, failing the test with kubectl's stderr otherwise.
pub fn kubectl(kc: &str, args: &[&str]) -> String {
    let out = run(kc, args);
    assert!(
        out.status.success(),
        "kubectl {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Applies the CRD once per test binary and waits until the apiserver serves it.
pub fn crd_ready(kc: &str) {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        kubectl(kc, &["apply", "-f", CRD]);
        kubectl(kc, &["wait", "--for", "condition=established", "--timeout=60s", "crd/eips.network.kubesphere.io"]);
    });
}
