//! kubectl against an apiserver, from the host or from inside a lab namespace: what the tests check as a user
//! would, and how the Kubernetes lab applies its objects.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The Eip CRD's name, as `kubectl wait` names it.
pub const EIP_CRD: &str = "crd/eips.network.kubesphere.io";

#[derive(Debug, Clone)]
pub struct Kubectl {
    kubeconfig: PathBuf,
    /// Namespace to run kubectl in (`ip netns exec`); the host's when `None`.
    netns: Option<String>,
    /// Working directory, for relative manifest paths.
    dir: Option<PathBuf>,
    /// The kubectl binary; `kubectl` from the PATH when `None`.
    program: Option<PathBuf>,
}

impl Kubectl {
    pub fn new(kubeconfig: impl Into<PathBuf>) -> Kubectl {
        Kubectl { kubeconfig: kubeconfig.into(), netns: None, dir: None, program: None }
    }

    /// Runs kubectl inside namespace `ns` (an apiserver listening on a lab address is reached from there).
    pub fn in_netns(mut self, ns: &str) -> Kubectl {
        self.netns = Some(ns.to_string());
        self
    }

    /// Resolves relative paths of `-f` from `dir`.
    pub fn in_dir(mut self, dir: &Path) -> Kubectl {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// Runs this kubectl binary (e.g. the cluster's own v1.20 build) instead of the PATH's.
    pub fn program(mut self, path: &Path) -> Kubectl {
        self.program = Some(path.to_path_buf());
        self
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    fn command(&self, args: &[&str]) -> Command {
        let program = self.program.as_deref().unwrap_or(Path::new("kubectl"));
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        };
        c.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        if let Some(d) = &self.dir {
            c.current_dir(d);
        }
        c
    }

    /// kubectl with `input` on stdin; its whole output whatever the exit status.
    pub fn output(&self, args: &[&str], input: &str) -> Result<Output> {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run kubectl {}", args.join(" ")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes()).with_context(|| format!("kubectl {}: writing stdin", args.join(" ")))?;
        }
        child.wait_with_output().with_context(|| format!("kubectl {}", args.join(" ")))
    }

    /// kubectl's stdout, or an error with its status and stderr.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        self.run_stdin(args, "")
    }

    /// [`Kubectl::run`] with `input` on stdin (`apply -f -`).
    pub fn run_stdin(&self, args: &[&str], input: &str) -> Result<String> {
        let out = self.output(args, input)?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `kubectl apply -f -` of JSON objects.
    pub fn apply(&self, objects: &[Value]) -> Result<String> {
        let list = json!({ "apiVersion": "v1", "kind": "List", "items": objects });
        self.run_stdin(&["apply", "-f", "-"], &list.to_string())
    }

    /// One JSONPath value of one object, e.g. `jsonpath(&["svc", "vip-svc"], "{.status.loadBalancer.ingress[0].ip}")`.
    pub fn jsonpath(&self, what: &[&str], path: &str) -> Result<String> {
        let output = format!("jsonpath={path}");
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.extend(["-o", &output]);
        self.run(&args)
    }

    /// Applies the CRD manifests at `path` (a file or directory) and waits until the Eip kind is served.
    pub fn install_crd(&self, path: &Path) -> Result<()> {
        let p = path.display().to_string();
        self.run(&["apply", "-f", &p])?;
        let timeout = format!("--timeout={}s", Duration::from_secs(60).as_secs());
        self.run(&["wait", "--for", "condition=established", &timeout, EIP_CRD])?;
        Ok(())
    }

    /// [`Kubectl::install_crd`] once per test binary; panics if it fails.
    pub fn crd_ready(&self, path: &Path) {
        static DONE: OnceLock<()> = OnceLock::new();
        DONE.get_or_init(|| {
            if let Err(e) = self.install_crd(path) {
                panic!("installing the Eip CRD: {e:#}");
            }
        });
    }
}

/// The repository's root, where relative manifest paths of the tests (`deploy/crds`, `examples/`) start.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Eip CRD manifest, relative to [`repo_root`].
pub const CRD: &str = "deploy/crds/network.kubesphere.io_eips.yaml";

fn for_tests(kc: &str) -> Kubectl {
    Kubectl::new(kc).in_dir(&repo_root())
}

/// Test helper: kubectl against the apiserver of `kc` from [`repo_root`], its whole output; panics when kubectl
/// cannot be run at all.
pub fn run(kc: &str, args: &[&str]) -> Output {
    run_with_stdin(kc, args, "")
}

/// Test helper: [`run`] with `input` on stdin, so ad-hoc manifests need no files.
pub fn run_with_stdin(kc: &str, args: &[&str], input: &str) -> Output {
    for_tests(kc).output(args, input).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Test helper: kubectl's stdout; panics with its stderr when it fails.
pub fn stdout(kc: &str, args: &[&str]) -> String {
    for_tests(kc).run(args).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Test helper: applies the Eip CRD once per test binary and waits until the apiserver serves it.
pub fn crd_ready(kc: &str) {
    for_tests(kc).crd_ready(Path::new(CRD));
}
