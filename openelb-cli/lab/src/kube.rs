//! The lab as a Kubernetes cluster: a real kube-apiserver + etcd (`scripts/kapi.sh`) running inside one node's
//! namespace on its lab address, so every node reaches it over the lab's LAN as in a real cluster, with
//! `openelb-controller` beside it. The lab plays kubelet and the endpoints controller: it registers the Node
//! objects and publishes the Endpoints of the Pods it runs.
//!
//! Nothing here touches the host's network: the apiserver listens on the host node's 192.0.2.x address inside
//! its namespace, and kubectl runs there too (`ip netns exec`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::eventually::eventually;
use crate::kubectl::Kubectl;
use crate::layout::Layout;
use crate::netns::{self, Sig};

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
    /// kubectl inside the host namespace, against this apiserver.
    pub kubectl: Kubectl,
    script: PathBuf,
    controller_exe: PathBuf,
    controller: Option<Child>,
    api_running: bool,
    /// Further `KAPI_*` settings of the apiserver (`scripts/kapi.sh`'s header lists them).
    env: Vec<(String, String)>,
}

impl KubeLab {
    /// Starts the apiserver on `host`'s lab address. `script` is `scripts/kapi.sh` (the binaries must be
    /// installed: `scripts/kapi.sh install`).
    pub fn start(layout: &Layout, lab_dir: &Path, host: &str, script: &Path, controller_exe: &Path) -> Result<Self> {
        Self::start_with_env(layout, lab_dir, host, script, controller_exe, Vec::new())
    }

    /// [`KubeLab::start`] with further `KAPI_*` settings, e.g. a dual-stack Service range.
    pub fn start_with_env(
        layout: &Layout,
        lab_dir: &Path,
        host: &str,
        script: &Path,
        controller_exe: &Path,
        env: Vec<(String, String)>,
    ) -> Result<Self> {
        let node = layout.node(host).ok_or_else(|| anyhow!("node {host:?} is not in the lab"))?;
        let dir = lab_dir.join("kapi");
        fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        let kubeconfig = dir.join("kubeconfig");
        let mut kube = KubeLab {
            host_ns: node.ns.clone(),
            host_ip: node.ip.to_string(),
            kubectl: Kubectl::new(&kubeconfig).in_netns(&node.ns),
            kubeconfig,
            dir,
            script: script.to_path_buf(),
            controller_exe: controller_exe.to_path_buf(),
            controller: None,
            api_running: false,
            env,
        };
        kube.start_apiserver(false)?;
        Ok(kube)
    }

    fn kapi(&self, verb: &str, keep_data: bool) -> Result<String> {
        let dir = format!("KAPI_DIR={}", self.dir.display());
        let addr = format!("KAPI_ADDR={}", self.host_ip);
        let keep = format!("KAPI_KEEP_DATA={}", u8::from(keep_data));
        let script = self.script.display().to_string();
        let extra: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut argv = vec!["env", dir.as_str(), addr.as_str(), keep.as_str()];
        argv.extend(extra.iter().map(String::as_str));
        argv.extend(["bash", script.as_str(), verb]);
        netns::exec(&self.host_ns, &argv)
            .with_context(|| format!("scripts/kapi.sh {verb} in {} (logs in {})", self.host_ns, self.dir.display()))
    }

    /// Starts (or restarts) the apiserver; `keep_data` keeps the objects of the previous run.
    pub fn start_apiserver(&mut self, keep_data: bool) -> Result<()> {
        self.api_running = true;
        self.kapi("start", keep_data)?;
        Ok(())
    }

    /// Stops the apiserver and etcd (the speakers and the controller lose the API; the lab keeps running).
    pub fn stop_apiserver(&mut self) -> Result<()> {
        self.kapi("stop", false)?;
        self.api_running = false;
        Ok(())
    }

    /// Polls `f` every 20 ms until it returns `Some`, or fails after `timeout` naming `what` with the end of
    /// the controller's log.
    pub fn wait_for<T>(&self, what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> Result<T> {
        eventually(timeout, Duration::from_millis(20), f)
            .map_err(|e| anyhow!("{what}: {e}; end of the controller's log:\n{}", self.controller_log_tail(40)))
    }

    /// Applies the CRDs in `crd_dir` and waits until the Eip kind is served.
    pub fn install_crds(&self, crd_dir: &Path) -> Result<()> {
        self.kubectl.install_crd(crd_dir)
    }

    /// Plays kubelet: a Ready Node object for every lab node, with its InternalIP; nodes in `excluded` carry
    /// [`EXCLUDE_LABEL`] (a control-plane node that runs no speaker).
    pub fn register_nodes(&self, layout: &Layout, excluded: &[&str]) -> Result<()> {
        let nodes: Vec<Value> = layout
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
        self.kubectl.apply(&nodes)?;
        Ok(())
    }

    /// Plays the endpoints controller: the Endpoints of the lab's Service list its Pods with their lab
    /// addresses and nodes; Pods on nodes in `down` are listed as not ready.
    pub fn publish_endpoints(&self, layout: &Layout, down: &[&str]) -> Result<()> {
        let address = |p: &crate::layout::PodSpec| {
            json!({
                "ip": p.ip.to_string(), "nodeName": p.node,
                "targetRef": { "kind": "Pod", "name": p.name, "namespace": layout.service.namespace },
            })
        };
        let ready: Vec<Value> = layout.pods.iter().filter(|p| !down.contains(&p.node.as_str())).map(address).collect();
        let not_ready: Vec<Value> =
            layout.pods.iter().filter(|p| down.contains(&p.node.as_str())).map(address).collect();
        let mut subset = json!({ "ports": [{ "name": "http", "port": layout.target_port, "protocol": "TCP" }] });
        if !ready.is_empty() {
            subset["addresses"] = Value::Array(ready);
        }
        if !not_ready.is_empty() {
            subset["notReadyAddresses"] = Value::Array(not_ready);
        }
        let endpoints = json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": { "name": layout.service.name, "namespace": layout.service.namespace },
            "subsets": [subset],
        });
        self.kubectl.apply(&[endpoints])?;
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
    pub fn controller_metrics(&self) -> Result<String> {
        let url = format!("http://{CONTROLLER_METRICS}/metrics");
        netns::exec(&self.host_ns, &["curl", "-sSf", "--max-time", "2", &url])
    }

    pub fn controller_pid(&self) -> Option<u32> {
        self.controller.as_ref().map(Child::id)
    }
}

impl Drop for KubeLab {
    fn drop(&mut self) {
        self.stop_controller();
        if let Some(lab_dir) = self.dir.parent() {
            crate::topology::keep_logs(&[lab_dir, &self.dir], "");
        }
        if self.api_running
            && let Err(e) = self.kapi("stop", false)
        {
            eprintln!("warning: {e:#}");
        }
    }
}
