//! The lab as a real cluster: the seed's namespaces and LAN from [`Lab`], a control plane in the first node's
//! namespace (etcd, kube-apiserver with Node,RBAC, kube-controller-manager, kube-scheduler: `scripts/kapi.sh`
//! with `KAPI_CLUSTER=1`) and on every node containerd, a kubelet and kube-proxy in iptables mode
//! (`scripts/cluster.sh`). Nothing plays Kubernetes: the scheduler places Pods, the kubelet runs them from
//! images built here (`scripts/image.sh`), the endpoints controller publishes them, kube-proxy routes to them,
//! and openelb runs from `deploy/` with only its own RBAC.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use serde_json::Value;

use crate::eventually::eventually;
use crate::images;
use crate::kubectl::Kubectl;
use crate::layout::{Layout, POD_BLOCK, map_pool_address};
use crate::netns;
use crate::require::KAPI_CACHE;
use crate::topology::{Lab, LabConfig, keep_logs};

/// ClusterIPs: the upper half of 198.51.100.0/24; the nodes' Pod blocks fill the lower half (at most [`MAX_NODES`]).
pub const SERVICE_CIDR: &str = "198.51.100.128/25";
/// Every node's Pod block together (kube-proxy's `clusterCIDR`).
pub const POD_CIDR: &str = "198.51.100.0/25";
pub const MAX_NODES: usize = 8;
/// What `scripts/kapi.sh install cluster` builds.
pub const COMPONENTS: &[&str] =
    &["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubelet", "kubectl"];

/// Taints and labels a node registers with, from the cluster description's Node objects.
#[derive(Debug, Clone, Default)]
pub struct NodeRole {
    pub taints: Vec<String>,
    /// `key=value` the kubelet registers with.
    pub labels: Vec<String>,
    /// Labels the kubelet may not set on itself, applied by the admin once the Node exists.
    pub admin_labels: BTreeMap<String, String>,
}

/// Reads `spec.taints` and the labels a kubelet may set on itself (NodeRestriction refuses
/// `node-role.kubernetes.io/*`; those are applied by the admin afterwards, see [`Cluster::label_nodes`]).
pub fn node_roles(cluster_yaml: &str) -> Result<BTreeMap<String, NodeRole>> {
    let mut out = BTreeMap::new();
    for doc in serde_yaml::Deserializer::from_str(cluster_yaml) {
        let v = Value::deserialize(doc).context("cluster description: not YAML")?;
        if v.get("kind").and_then(Value::as_str) != Some("Node") {
            continue;
        }
        let name = v
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("a Node without metadata.name"))?
            .to_string();
        let mut role = NodeRole::default();
        for t in v.pointer("/spec/taints").and_then(Value::as_array).into_iter().flatten() {
            let key = t.get("key").and_then(Value::as_str).unwrap_or_default();
            let value = t.get("value").and_then(Value::as_str).unwrap_or_default();
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or_default();
            if key.is_empty() || effect.is_empty() {
                bail!("Node {name}: a taint needs key and effect ({t})");
            }
            role.taints.push(format!("{key}={value}:{effect}"));
        }
        for (k, v) in v.pointer("/metadata/labels").and_then(Value::as_object).into_iter().flatten() {
            let v = v.as_str().unwrap_or_default().to_string();
            if k == "kubernetes.io/hostname" {
                continue;
            }
            if k.starts_with("node-role.kubernetes.io/") {
                role.admin_labels.insert(k.clone(), v);
            } else {
                role.labels.push(format!("{k}={v}"));
            }
        }
        out.insert(name, role);
    }
    Ok(out)
}

/// A running cluster on a lab. Dropping it stops every node (its kubelet, kube-proxy, containerd and
/// containers, by PID), the control plane, then the lab's namespaces.
pub struct Cluster {
    /// Its namespaces go only after `Cluster::drop` has stopped every node and the control plane in them.
    pub lab: Lab,
    /// `<lab dir>/cluster`: the control plane's run dir (`kapi/`) and one folder per node (`nodes/`).
    pub dir: PathBuf,
    pub kapi_dir: PathBuf,
    /// kubectl v1.20 (the cluster's own build) as cluster-admin, inside the control-plane node's namespace.
    pub kubectl: Kubectl,
    scripts: PathBuf,
    started: Vec<String>,
    api_running: bool,
    /// How long each phase took, for `lab cluster` and the note.
    pub timings: Vec<(String, Duration)>,
}

impl Cluster {
    /// Builds the lab (no Pods of its own: the kubelets run them), starts the control plane in `layout`'s first
    /// node and a kubelet, kube-proxy and containerd on every node, imports [`images::ALL`] and waits until every
    /// Node is Ready. `cluster_yaml` gives taints and labels. On error, everything started is stopped.
    pub fn start(mut layout: Layout, cfg: &LabConfig, scripts: &Path, cluster_yaml: &str) -> Result<Self> {
        if layout.nodes.len() > MAX_NODES {
            bail!("{} nodes: the cluster lab runs at most {MAX_NODES}", layout.nodes.len());
        }
        let roles = node_roles(cluster_yaml)?;
        layout.pods.clear();
        let t0 = Instant::now();
        let lab = Lab::build(layout, cfg)?;
        let dir = lab.dir.join("cluster");
        let kapi_dir = dir.join("kapi");
        fs::create_dir_all(&kapi_dir).with_context(|| format!("{}: cannot create", kapi_dir.display()))?;
        let host = lab.layout.nodes.first().ok_or_else(|| anyhow!("the lab has no node"))?.clone();
        let kubectl_exe = kube_cache().join("kubectl");
        let mut cluster = Cluster {
            kubectl: Kubectl::new(kapi_dir.join("kubeconfig")).in_netns(&host.ns).program(&kubectl_exe),
            lab,
            dir,
            kapi_dir,
            scripts: scripts.to_path_buf(),
            started: Vec::new(),
            api_running: false,
            timings: Vec::new(),
        };
        cluster.timings.push(("namespaces and LAN".into(), t0.elapsed()));
        let t = Instant::now();
        cluster.start_control_plane()?;
        cluster.timings.push(("control plane (etcd, apiserver, controller-manager, scheduler)".into(), t.elapsed()));
        let t = Instant::now();
        for node in cluster.lab.layout.nodes.clone() {
            let role = roles.get(&node.name).cloned().unwrap_or_default();
            let pod_cidr = format!("{}/{}", node.pod_net, 32 - POD_BLOCK.trailing_zeros());
            let ip = node.ip.to_string();
            let mut args = vec!["node-start", node.name.as_str(), ip.as_str(), pod_cidr.as_str()];
            for t in &role.taints {
                args.extend(["--taint", t.as_str()]);
            }
            for l in &role.labels {
                args.extend(["--label", l.as_str()]);
            }
            cluster.started.push(node.name.clone());
            cluster.script(&node.ns, "cluster.sh", &args)?;
            let mut import = vec!["import", node.name.as_str()];
            let archives: Vec<String> = images::ALL.iter().map(|i| i.archive_path().display().to_string()).collect();
            import.extend(archives.iter().map(String::as_str));
            cluster.script(&node.ns, "cluster.sh", &import)?;
        }
        cluster.timings.push(("nodes (containerd, kubelet, kube-proxy, image import)".into(), t.elapsed()));
        let t = Instant::now();
        cluster.wait_nodes_ready(Duration::from_secs(90))?;
        cluster.label_nodes(&roles)?;
        cluster.timings.push(("every Node Ready".into(), t.elapsed()));
        Ok(cluster)
    }

    fn host_ns(&self) -> Result<String> {
        self.lab.layout.nodes.first().map(|n| n.ns.clone()).ok_or_else(|| anyhow!("the lab has no node"))
    }

    /// Runs `scripts/<script> args...` inside `ns` with the cluster's directories in its environment.
    fn script(&self, ns: &str, script: &str, args: &[&str]) -> Result<String> {
        let host = self.lab.layout.nodes.first().ok_or_else(|| anyhow!("the lab has no node"))?;
        let nodes: Vec<&str> = self.lab.layout.nodes.iter().map(|n| n.name.as_str()).collect();
        let env = [
            format!("KAPI_DIR={}", self.kapi_dir.display()),
            format!("CLUSTER_DIR={}", self.dir.join("nodes").display()),
            format!("KAPI_ADDR={}", host.ip),
            format!("KAPI_SERVICE_CIDR={SERVICE_CIDR}"),
            format!("CLUSTER_POD_CIDR={POD_CIDR}"),
            format!("CLUSTER_SANDBOX_IMAGE={}", images::PAUSE.name),
            "KAPI_CLUSTER=1".to_string(),
            format!("KAPI_NODES={}", nodes.join(" ")),
        ];
        let path = self.scripts.join(script).display().to_string();
        let mut argv: Vec<&str> = vec!["env"];
        argv.extend(env.iter().map(String::as_str));
        argv.extend(["bash", path.as_str()]);
        argv.extend(args);
        netns::enter(ns, &argv).with_context(|| format!("scripts/{script} {} in {ns}", args.join(" ")))
    }

    fn start_control_plane(&mut self) -> Result<()> {
        let ns = self.host_ns()?;
        self.api_running = true;
        self.script(&ns, "kapi.sh", &["start"])?;
        Ok(())
    }

    /// Applies the labels the kubelets may not set on themselves (`node-role.kubernetes.io/*`).
    fn label_nodes(&self, roles: &BTreeMap<String, NodeRole>) -> Result<()> {
        for (node, NodeRole { admin_labels: labels, .. }) in roles {
            if labels.is_empty() || self.lab.layout.node(node).is_none() {
                continue;
            }
            let mut args = vec!["label".to_string(), "node".to_string(), node.clone(), "--overwrite".to_string()];
            args.extend(labels.iter().map(|(k, v)| format!("{k}={v}")));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            self.kubectl.run(&args)?;
        }
        Ok(())
    }

    /// Waits until every node of the layout has a Ready Node object.
    pub fn wait_nodes_ready(&self, timeout: Duration) -> Result<()> {
        let want = self.lab.layout.nodes.len();
        let mut last = String::new();
        eventually(timeout, Duration::from_millis(500), || {
            last = self
                .kubectl
                .jsonpath(
                    &["nodes"],
                    r#"{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}"#,
                )
                .unwrap_or_default();
            (last.matches("=True").count() == want).then_some(())
        })
        .map_err(|e| {
            anyhow!("Nodes not Ready: {e} (last: {last:?}); kubelet logs in {}", self.dir.join("nodes").display())
        })
    }

    /// The node's readiness as the API says it (`True`, `False`, `Unknown`).
    pub fn node_ready(&self, node: &str) -> Result<String> {
        self.kubectl.jsonpath(&["node", node], r#"{.status.conditions[?(@.type=="Ready")].status}"#)
    }

    /// `kubectl apply -f deploy/crds/ -f deploy/` from the repository, unchanged, and waits until the speaker
    /// DaemonSet runs on every node and the controller Deployment is available.
    pub fn deploy_openelb(&self, repo: &Path, timeout: Duration) -> Result<()> {
        let k = self.kubectl.clone().in_dir(repo);
        k.run(&["apply", "-f", "deploy/crds/", "-f", "deploy/"])?;
        self.rollout("daemonset/openelb-speaker", "openelb-system", timeout)?;
        self.rollout("deployment/openelb-controller", "openelb-system", timeout)
    }

    /// `kubectl rollout status` until done or `timeout`.
    pub fn rollout(&self, what: &str, namespace: &str, timeout: Duration) -> Result<()> {
        let t = format!("--timeout={}s", timeout.as_secs().max(1));
        self.kubectl
            .run(&["rollout", "status", what, "-n", namespace, &t])
            .map(|_| ())
            .with_context(|| format!("{what} in {namespace}: {}", self.describe_pods(namespace)))
    }

    /// `kubectl get pods -o wide` of a namespace, for failure messages.
    pub fn describe_pods(&self, namespace: &str) -> String {
        let pods =
            self.kubectl.run(&["get", "pods", "-o", "wide", "-n", namespace]).unwrap_or_else(|e| format!("{e:#}"));
        let events = self
            .kubectl
            .run(&["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"])
            .unwrap_or_else(|e| format!("{e:#}"));
        let tail: Vec<&str> = events.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        format!("{pods}\nlast events:\n{}", tail.join("\n"))
    }

    /// Applies the seed's three files from `seed_dir`: the Eip and the Service unchanged, the Deployment with
    /// `luksa/kubia` replaced by [`images::KUBIA`] (no registry here), then waits for its Pods.
    pub fn apply_seed(&self, seed_dir: &Path, timeout: Duration) -> Result<()> {
        let k = self.kubectl.clone().in_dir(seed_dir);
        let path = seed_dir.join("vip-eip.yaml");
        let text = fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        let mut eip: Value = serde_yaml::from_str(&text).with_context(|| format!("{}: not YAML", path.display()))?;
        // The seed's 192.168.0.x pool moves to the lab's LAN, as every lab address does.
        let name = eip.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        if let Some(address) = eip.pointer("/spec/address").and_then(Value::as_str) {
            let mapped = map_pool_address(&name, address)?;
            if let Some(spec) = eip.get_mut("spec") {
                spec["address"] = Value::String(mapped);
            }
        }
        self.kubectl.apply(&[eip])?;
        let deployment = fs::read_to_string(seed_dir.join("vip-openelb.yaml"))
            .with_context(|| format!("{}: cannot read", seed_dir.join("vip-openelb.yaml").display()))?;
        let deployment = local_image(&deployment);
        self.kubectl.run_stdin(&["apply", "-f", "-"], &deployment)?;
        k.run(&["apply", "-f", "vip-svc.yaml"])?;
        self.rollout("deployment/vip-openelb", "default", timeout)
    }

    /// The Service's address as `kubectl get svc` reports it, once there is one.
    pub fn wait_service_ip(&self, timeout: Duration) -> Result<String> {
        let svc = &self.lab.layout.service;
        let mut last = String::new();
        eventually(timeout, Duration::from_millis(100), || {
            last = self
                .kubectl
                .jsonpath(&["svc", &svc.name, "-n", &svc.namespace], "{.status.loadBalancer.ingress[0].ip}")
                .unwrap_or_default();
            (!last.is_empty()).then(|| last.clone())
        })
        .map_err(|e| anyhow!("Service {svc} got no address: {e}; {}", self.describe_pods("openelb-system")))
    }

    /// The seed's Step 4 as a user sees it: `kubectl get svc`, `kubectl get nodes -o wide`,
    /// `kubectl get pod -o wide`, then from the client `ping`, `ip neigh` and `curl` (four times).
    pub fn step4(&self) -> Result<String> {
        let mut out = String::new();
        for args in [&["get", "svc"][..], &["get", "nodes", "-o", "wide"], &["get", "pod", "-o", "wide"]] {
            out += &format!("$ kubectl {}\n{}\n", args.join(" "), self.kubectl.run(args)?);
        }
        let vip = self.lab.layout.vip.to_string();
        out += &format!("client$ ping -c 3 {vip}\n{}\n", self.lab.client(&["ping", "-c", "3", "-W", "1", "-n", &vip])?);
        out += &format!("client$ ip neigh\n{}\n", self.lab.client(&["ip", "neigh"])?);
        let url = format!("http://{vip}:{}/", self.lab.layout.port);
        out += &format!("client$ curl {url}   (four times)\n");
        for _ in 0..4 {
            out += &self.lab.client(&["curl", "-sS", "--max-time", "2", &url])?;
        }
        Ok(out)
    }

    /// Pod name → node name for the Pods with `selector` in `namespace` that are Ready.
    pub fn ready_pods(&self, namespace: &str, selector: &str) -> Result<BTreeMap<String, String>> {
        let text = self.kubectl.jsonpath(
            &["pods", "-n", namespace, "-l", selector],
            r#"{range .items[*]}{.metadata.name} {.spec.nodeName} {.status.conditions[?(@.type=="Ready")].status} {.metadata.deletionTimestamp}{"\n"}{end}"#,
        )?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.len() == 3 && w[2] == "True").then(|| (w[0].to_string(), w[1].to_string()))
            })
            .collect())
    }

    /// The kubelet of `node` killed: the node goes silent to the API, its containers keep running.
    pub fn kill_kubelet(&self, node: &str) -> Result<()> {
        let ns = self.node_ns(node)?;
        self.script(&ns, "cluster.sh", &["kubelet-kill", node]).map(|_| ())
    }

    /// A node dies: its containers (the speaker among them) frozen then killed, its kubelet killed, its link
    /// down. Kubernetes learns of it only through the node lifecycle controller.
    pub fn crash_node(&mut self, node: &str) -> Result<()> {
        let ns = self.node_ns(node)?;
        let listing = self.script(&ns, "cluster.sh", &["containers", node])?;
        let pids: Vec<u32> = listing.lines().filter_map(|l| l.split_whitespace().nth(1)?.parse().ok()).collect();
        for &p in &pids {
            netns::signal(p, netns::Sig::Stop);
        }
        self.kill_kubelet(node)?;
        for &p in &pids {
            netns::signal(p, netns::Sig::Kill);
        }
        self.lab.crash(node)
    }

    fn node_ns(&self, node: &str) -> Result<String> {
        self.lab.layout.node(node).map(|n| n.ns.clone()).ok_or_else(|| anyhow!("unknown node {node}"))
    }

    /// The token of ServiceAccount `name` in `namespace` (its legacy Secret, as 1.20 mints them).
    pub fn service_account_token(&self, namespace: &str, name: &str) -> Result<String> {
        let secret = eventually(Duration::from_secs(30), Duration::from_millis(200), || {
            self.kubectl
                .jsonpath(&["serviceaccount", name, "-n", namespace], "{.secrets[0].name}")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .map_err(|e| anyhow!("ServiceAccount {namespace}/{name} has no token Secret: {e}"))?;
        self.kubectl.run(&[
            "get",
            "secret",
            &secret,
            "-n",
            namespace,
            "-o",
            "go-template={{.data.token | base64decode}}",
        ])
    }

    /// Resident memory of every process of the lab (those naming its directory, the control plane's and the
    /// nodes', and their descendants: shims and containers), in MB per program name, largest first.
    pub fn memory(&self) -> Vec<(String, f64, usize)> {
        let dir = self.lab.dir.display().to_string();
        let mut parent = BTreeMap::new();
        let mut roots = Vec::new();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
            let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // The parent is the second field after the command, which is in parentheses and may contain spaces.
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            parent.insert(pid, ppid.unwrap_or(0));
            let cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains(&dir) {
                roots.push(pid);
            }
        }
        let in_lab = |mut p: u32| {
            for _ in 0..64 {
                if roots.contains(&p) {
                    return true;
                }
                match parent.get(&p) {
                    Some(&pp) if pp > 1 => p = pp,
                    _ => return false,
                }
            }
            false
        };
        let mut by_name: BTreeMap<String, (u64, usize)> = BTreeMap::new();
        for pid in parent.keys().copied().filter(|p| in_lab(*p)) {
            let Some((kb, _)) = crate::probe::proc_usage(pid) else { continue };
            let name = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string();
            let e = by_name.entry(name).or_default();
            e.0 += kb;
            e.1 += 1;
        }
        let mut out: Vec<(String, f64, usize)> =
            by_name.into_iter().map(|(n, (kb, count))| (n, kb as f64 / 1024.0, count)).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }

    /// Stops every node and the control plane (the lab's namespaces stay until the lab drops).
    pub fn stop(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        keep_logs(&[&self.kapi_dir], "cluster");
        for node in std::mem::take(&mut self.started).into_iter().rev() {
            let Ok(ns) = self.node_ns(&node) else { continue };
            for f in ["containerd.log", "kubelet.log", "kube-proxy.log"] {
                let from = self.dir.join("nodes").join(&node).join(f);
                let to = self.dir.join(format!("{node}-{f}"));
                let _ = fs::copy(&from, &to);
            }
            if let Err(e) = self.script(&ns, "cluster.sh", &["node-stop", &node]) {
                errors.push(format!("{e:#}"));
            }
        }
        keep_logs(&[&self.dir], "cluster");
        if self.api_running {
            self.api_running = false;
            if let Ok(ns) = self.host_ns()
                && let Err(e) = self.script(&ns, "kapi.sh", &["stop"])
            {
                errors.push(format!("{e:#}"));
            }
        }
        errors
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for e in self.stop() {
            eprintln!("warning: {e}");
        }
    }
}

/// Where the cluster's kube binaries are (`KAPI_CACHE`).
pub fn kube_cache() -> PathBuf {
    std::env::var_os("KAPI_CACHE").map_or_else(|| PathBuf::from(KAPI_CACHE), PathBuf::from)
}

/// The seed's Deployment with its image replaced by [`images::KUBIA`], never pulled (no registry here).
pub fn local_image(deployment: &str) -> String {
    deployment
        .replace("image: luksa/kubia", &format!("image: {}\n          imagePullPolicy: Never", images::KUBIA.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_the_seed_nodes() {
        let yaml =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/vip-mode/cluster.yaml"))
                .unwrap();
        let roles = node_roles(&yaml).unwrap();
        assert_eq!(roles["master1"].taints, ["node-role.kubernetes.io/master=:NoSchedule"]);
        assert!(roles["worker-p001"].taints.is_empty());
        // NodeRestriction refuses node-role labels from a kubelet: the admin sets them.
        assert_eq!(
            roles["worker-p002"].admin_labels.get("node-role.kubernetes.io/worker").map(String::as_str),
            Some("")
        );
        assert!(roles["worker-p002"].labels.iter().all(|l| !l.starts_with("node-role.")));
    }

    #[test]
    fn a_taint_without_effect_is_refused() {
        let yaml = "apiVersion: v1\nkind: Node\nmetadata: {name: n}\nspec: {taints: [{key: k}]}\n";
        let e = node_roles(yaml).unwrap_err().to_string();
        assert!(e.contains("Node n") && e.contains("effect"), "{e}");
        assert!(node_roles("kind: [").is_err());
    }

    #[test]
    fn the_seed_deployment_runs_the_local_image_never_pulled() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/vip-mode/vip-openelb.yaml"))
                .unwrap();
        let local = local_image(&text);
        let v: Value = serde_yaml::from_str(&local).unwrap();
        let c = &v["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], images::KUBIA.name);
        assert_eq!(c["imagePullPolicy"], "Never");
        assert!(!local.contains("luksa/kubia"));
    }
}
