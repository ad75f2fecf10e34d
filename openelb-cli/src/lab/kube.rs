//! The lab as a Kubernetes cluster: a real kube-apiserver + etcd (`scripts/kapi.sh`) running inside one node's
//! namespace on its lab address, so every node reaches it over the lab's LAN as in a real cluster, with
//! `openelb-controller` beside it. The lab plays kubelet and the endpoints controller: it registers the Node
//! objects and publishes the Endpoints of the Pods it runs.
//!
//! Nothing here touches the host's network: the apiserver listens on the host node's 192.0.2.x address inside
//! its namespace, and kubectl runs there too (`ip netns exec`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use super::netns::{self, Sig};
use super::plan::LabPlan;

/// Label that keeps a node out of every candidate set (kubeadm puts it on control-plane nodes).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// Where the controller of a kube lab serves /metrics, /healthz and /readyz (inside the host namespace).
pub const CONTROLLER_METRICS: &str = "127.0.0.1:8080";

/// An apiserver and a controller inside one node namespace of a lab. Dropping it stops both (before the lab's
/// own teardown kills whatever is left in its namespaces).
pub struct KubeLab {
    /// Namespace of the node hosting the control plane.
    pub host_ns: String,
    pub host_ip: String,
    /// `KAPI_DIR`: etcd data, logs, kubeconfig.
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    script: PathBuf,
    controller_exe: PathBuf,
    controller: Option<Child>,
    api_running: bool,
}

impl KubeLab {
    /// Starts the apiserver on `host`'s lab address. `script` is `scripts/kapi.sh` (the binaries must be
    /// installed: `scripts/kapi.sh install`).
    pub fn start(plan: &LabPlan, lab_dir: &Path, host: &str, script: &Path, controller_exe: &Path) -> Result<Self> {
        let node = plan.node(host).ok_or_else(|| anyhow!("node {host:?} is not in the lab"))?;
        let dir = lab_dir.join("kapi");
        fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        let mut kube = KubeLab {
            host_ns: node.ns.clone(),
            host_ip: node.ip.to_string(),
            kubeconfig: dir.join("kubeconfig"),
            dir,
            script: script.to_path_buf(),
            controller_exe: controller_exe.to_path_buf(),
            controller: None,
            api_running: false,
        };
        kube.start_apiserver(false)?;
        Ok(kube)
    }

    fn kapi(&self, verb: &str, keep_data: bool) -> Result<String> {
        let dir = format!("KAPI_DIR={}", self.dir.display());
        let addr = format!("KAPI_ADDR={}", self.host_ip);
        let keep = format!("KAPI_KEEP_DATA={}", u8::from(keep_data));
        let script = self.script.display().to_string();
        netns::exec(&self.host_ns, &["env", &dir, &addr, &keep, "bash", &script, verb])
            .with_context(|| format!("scripts/kapi.sh {verb} in {} (logs in {})", self.host_ns, self.dir.display()))
    }

    /// Starts (or restarts) the apiserver; `keep_data` keeps the objects of the previous run.
    pub fn start_apiserver(&mut self, keep_data: bool) -> Result<()> {
        self.api_running = true;
        self.kapi("start", keep_data)?;
        Ok(())
    }

    /// Stops the apiserver and etcd (the speakers and the controller lose the API; the lab keeps running).
    #[allow(dead_code)] // for tests/e2e_kube.rs
    pub fn stop_apiserver(&mut self) -> Result<()> {
        self.kapi("stop", false)?;
        self.api_running = false;
        Ok(())
    }

    fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.host_ns, "kubectl", "--kubeconfig"]).arg(&self.kubeconfig).args(args);
        c
    }

    /// kubectl against the lab's apiserver; stdout, or an error with kubectl's stderr.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        self.kubectl_stdin(args, "")
    }

    /// kubectl with `input` on stdin (`apply -f -`).
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Result<String> {
        let mut child = self
            .kubectl_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run kubectl {}", args.join(" ")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes()).with_context(|| format!("kubectl {}: writing stdin", args.join(" ")))?;
        }
        let out = child.wait_with_output().with_context(|| format!("kubectl {}", args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `kubectl apply -f -` of JSON objects.
    pub fn apply(&self, objects: &[Value]) -> Result<String> {
        let list = json!({ "apiVersion": "v1", "kind": "List", "items": objects });
        self.kubectl_stdin(&["apply", "-f", "-"], &list.to_string())
    }

    /// One JSONPath value of one object, e.g. `get(&["svc", "vip-svc"], "{.status.loadBalancer.ingress[0].ip}")`.
    #[allow(dead_code)] // for tests/e2e_kube.rs
    pub fn jsonpath(&self, what: &[&str], path: &str) -> Result<String> {
        let output = format!("jsonpath={path}");
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.extend(["-o", &output]);
        self.kubectl(&args)
    }

    /// Polls `f` every 20 ms until it returns `Some`, or fails after `timeout` naming `what`.
    pub fn wait_for<T>(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{what}: not seen after {timeout:?}; end of the controller's log:\n{}",
                    self.controller_log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Applies the CRDs in `crd_dir` and waits until the Eip kind is served.
    pub fn install_crds(&self, crd_dir: &Path) -> Result<()> {
        let dir = crd_dir.display().to_string();
        self.kubectl(&["apply", "-f", &dir])?;
        self.kubectl(&["wait", "--for", "condition=established", "--timeout=60s", "crd/eips.network.kubesphere.io"])?;
        Ok(())
    }

    /// Plays kubelet: a Ready Node object for every lab node, with its InternalIP; nodes in `excluded` carry
    /// [`EXCLUDE_LABEL`] (a control-plane node that runs no speaker).
    pub fn register_nodes(&self, plan: &LabPlan, excluded: &[&str]) -> Result<()> {
        let nodes: Vec<Value> = plan
            .nodes
            .iter()
            .map(|n| {
                let mut labels = json!({ "kubernetes.io/hostname": n.name });
                if excluded.contains(&n.name.as_str()) {
                    labels[EXCLUDE_LABEL] = json!("");
                }
                json!({
                    "apiVersion": "v1", "kind": "Node",
                    "metadata": { "name": n.name, "labels": labels },
                    "status": {
                        "addresses": [{ "type": "InternalIP", "address": n.ip.to_string() }],
                        "conditions": [{ "type": "Ready", "status": "True", "reason": "KubeletReady" }],
                    }
                })
            })
            .collect();
        self.apply(&nodes)?;
        Ok(())
    }

    /// Plays the endpoints controller: the Endpoints of the lab's Service list its Pods with their lab
    /// addresses and nodes; Pods on nodes in `down` are listed as not ready.
    #[allow(dead_code)] // for tests/e2e_kube.rs
    pub fn publish_endpoints(&self, plan: &LabPlan, down: &[&str]) -> Result<()> {
        let address = |p: &super::plan::PodSpec| {
            json!({
                "ip": p.ip.to_string(), "nodeName": p.node,
                "targetRef": { "kind": "Pod", "name": p.name, "namespace": plan.service.namespace },
            })
        };
        let ready: Vec<Value> = plan.pods.iter().filter(|p| !down.contains(&p.node.as_str())).map(address).collect();
        let not_ready: Vec<Value> = plan.pods.iter().filter(|p| down.contains(&p.node.as_str())).map(address).collect();
        let mut subset = json!({ "ports": [{ "name": "http", "port": plan.target_port, "protocol": "TCP" }] });
        if !ready.is_empty() {
            subset["addresses"] = Value::Array(ready);
        }
        if !not_ready.is_empty() {
            subset["notReadyAddresses"] = Value::Array(not_ready);
        }
        let endpoints = json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": { "name": plan.service.name, "namespace": plan.service.namespace },
            "subsets": [subset],
        });
        self.apply(&[endpoints])?;
        Ok(())
    }

    pub fn controller_log(&self) -> PathBuf {
        self.dir.join("controller.log")
    }

    /// The last `lines` lines of the controller's log, for failure messages (the lab's directory goes away).
    pub fn controller_log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(self.controller_log()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Starts openelb-controller in the host namespace (leader election on, metrics on [`CONTROLLER_METRICS`]).
    pub fn start_controller(&mut self) -> Result<()> {
        if self.controller.is_some() {
            bail!("the controller is already running");
        }
        let exe = self.controller_exe.display().to_string();
        let kc = self.kubeconfig.display().to_string();
        let log = self.controller_log();
        let argv = [
            exe.as_str(),
            "--kubeconfig",
            &kc,
            "--metrics-addr",
            CONTROLLER_METRICS,
            "--lease-namespace",
            "kube-system",
            "--no-webhook",
        ];
        let child = netns::spawn(&self.host_ns, &argv, netns::log_file(&log)?, netns::log_file(&log)?)?;
        self.controller = Some(child);
        Ok(())
    }

    /// SIGTERM, as a rolling update would: the controller finishes and releases its Lease.
    pub fn stop_controller(&mut self) {
        if let Some(mut c) = self.controller.take() {
            netns::stop_child(&mut c, Sig::Term, Duration::from_secs(10));
        }
    }

    /// Whether the controller answers `/readyz` with 200.
    pub fn controller_ready(&self) -> bool {
        let url = format!("http://{CONTROLLER_METRICS}/readyz");
        netns::exec_output(&self.host_ns, &["curl", "-sf", "--max-time", "1", &url]).is_ok_and(|o| o.status.success())
    }

    /// The controller's `/metrics` text.
    #[allow(dead_code)] // for tests/e2e_kube.rs
    pub fn controller_metrics(&self) -> Result<String> {
        let url = format!("http://{CONTROLLER_METRICS}/metrics");
        netns::exec(&self.host_ns, &["curl", "-sSf", "--max-time", "2", &url])
    }

    pub fn controller_pid(&self) -> Option<u32> {
        self.controller.as_ref().map(Child::id)
    }
}

/// Environment variable naming a directory where a kube lab copies its logs (controller, apiserver, speakers,
/// Pods) before it goes away: the lab's own directory is removed with it.
pub const ENV_KEEP_LOGS: &str = "OPENELB_KEEP_LOGS";

fn keep_logs(lab_dir: &Path, kapi_dir: &Path) {
    let Some(to) = std::env::var_os(ENV_KEEP_LOGS).map(PathBuf::from) else { return };
    if fs::create_dir_all(&to).is_err() {
        return;
    }
    for dir in [lab_dir, kapi_dir] {
        let Ok(entries) = fs::read_dir(dir) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "log")
                && let Some(name) = path.file_name()
            {
                let _ = fs::copy(&path, to.join(name));
            }
        }
    }
}

impl Drop for KubeLab {
    fn drop(&mut self) {
        self.stop_controller();
        if let Some(lab_dir) = self.dir.parent() {
            keep_logs(lab_dir, &self.dir);
        }
        if self.api_running
            && let Err(e) = self.kapi("stop", false)
        {
            eprintln!("warning: {e:#}");
        }
    }
}
