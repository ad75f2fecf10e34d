//! The VRRP speaker running on each lab node: keepalived (the reference) or openelb-speaker (ours), behind one
//! type so the demo, the tests and the bench treat them alike. A speaker is one process tree per node that we
//! started and end by PID only.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use openelb_core::model::{ANNOTATION_DEFAULT_EIP, ANNOTATION_NODE_MAC, Cluster, IpFamily, TrafficPolicy};
use serde_json::{Value, json};

use super::keepalived;
use super::netns::{self, Sig};
use super::plan::{LabPlan, mac_string};

/// Environment variable naming the openelb-speaker binary to run.
pub const ENV_SPEAKER: &str = "OPENELB_SPEAKER";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Speaker {
    /// Debian's keepalived, one VRRPv3 instance for the VIP.
    Keepalived { advert_int: Duration },
    /// Our speaker, `openelb-speaker --node-name NODE --manifests DIR --interface eth0 [flags]`.
    Openelb(OpenelbSpeaker),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpenelbSpeaker {
    pub binary: PathBuf,
    /// `--advert-interval`; `None` keeps the speaker's default.
    pub advert_interval: Option<Duration>,
    /// `--preempt-delay`.
    pub preempt_delay: Option<Duration>,
    /// `--garp-count N --garp-spacing D`.
    pub garp: Option<(u32, Duration)>,
    /// Appended as given.
    pub extra_args: Vec<String>,
    /// Extra IPv6 VIPs (from 2001:db8:0:91::1) written into the speaker's manifests, for the 1000-VIP
    /// resource measurement; they are not wired into the data plane.
    pub extra_v6_vips: u16,
    /// Kubernetes source: the speaker watches the apiserver of this kubeconfig instead of reading manifests,
    /// and finds its interface itself (the NIC holding its Node's InternalIP).
    pub kubeconfig: Option<PathBuf>,
    /// Nodes that run a speaker; `None`: every node.
    pub nodes: Option<Vec<String>>,
}

/// `100ms`, `1s`: the form the speaker's duration flags take.
pub fn duration_flag(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) { format!("{}s", ms / 1000) } else { format!("{ms}ms") }
}

impl Speaker {
    pub fn keepalived(advert_int: Duration) -> Self {
        Speaker::Keepalived { advert_int }
    }

    /// Our speaker with its defaults, if its binary can be found ([`find_openelb_speaker`]).
    #[allow(dead_code)] // for the root tests (tests/lab_*.rs include this module)
    pub fn openelb_default() -> Option<Self> {
        find_openelb_speaker().map(|binary| Speaker::Openelb(OpenelbSpeaker { binary, ..Default::default() }))
    }

    /// Short name for tables and messages.
    pub fn label(&self) -> String {
        match self {
            Speaker::Keepalived { advert_int } => format!("keepalived advert {}", duration_flag(*advert_int)),
            Speaker::Openelb(o) => match o.advert_interval {
                Some(a) => format!("openelb-speaker advert {}", duration_flag(a)),
                None => "openelb-speaker defaults".to_string(),
            },
        }
    }

    /// Nodes that run this speaker. keepalived knows nothing of Kubernetes, so only the VIP's candidates run
    /// it; openelb-speaker runs on every node and decides from the manifests itself.
    pub fn nodes(&self, plan: &LabPlan) -> Vec<String> {
        match self {
            Speaker::Keepalived { .. } => plan.candidates.clone(),
            Speaker::Openelb(o) => match &o.nodes {
                Some(nodes) => nodes.clone(),
                None => plan.nodes.iter().map(|n| n.name.clone()).collect(),
            },
        }
    }

    /// The full command line for `node` (after `ip netns exec NS`). Writes keepalived's config under `dir`.
    pub fn argv(&self, plan: &LabPlan, node: &str, dir: &Path, manifests: &Path) -> Result<Vec<String>> {
        match self {
            Speaker::Keepalived { advert_int } => {
                let rank = plan.candidates.iter().position(|c| c == node).unwrap_or(plan.candidates.len());
                let conf = dir.join(format!("keepalived-{node}.conf"));
                let text = keepalived::config(node, plan.vip, keepalived::priority(rank), *advert_int);
                fs::write(&conf, text).with_context(|| format!("{}: cannot write", conf.display()))?;
                let (pid, vrrp) = keepalived_pidfiles(dir, node);
                // keepalived refuses to start while a pid file names a live process; stale ones are ours.
                let _ = fs::remove_file(&pid);
                let _ = fs::remove_file(&vrrp);
                Ok(keepalived::argv(&conf, &pid, &vrrp))
            }
            Speaker::Openelb(o) => {
                let mut v: Vec<String> = vec![o.binary.display().to_string(), "--node-name".into(), node.into()];
                match &o.kubeconfig {
                    Some(kc) => v.extend(["--kubeconfig".into(), kc.display().to_string()]),
                    None => v.extend([
                        "--manifests".into(),
                        manifests.display().to_string(),
                        "--interface".into(),
                        "eth0".into(),
                    ]),
                }
                if let Some(a) = o.advert_interval {
                    v.extend(["--advert-interval".into(), duration_flag(a)]);
                }
                if let Some(p) = o.preempt_delay {
                    v.extend(["--preempt-delay".into(), duration_flag(p)]);
                }
                if let Some((count, spacing)) = o.garp {
                    v.extend([
                        "--garp-count".into(),
                        count.to_string(),
                        "--garp-spacing".into(),
                        duration_flag(spacing),
                    ]);
                }
                v.extend(o.extra_args.iter().cloned());
                Ok(v)
            }
        }
    }
}

fn keepalived_pidfiles(dir: &Path, node: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("keepalived-{node}.pid")), dir.join(format!("keepalived-{node}.vrrp.pid")))
}

/// openelb-speaker: `$OPENELB_SPEAKER`, else next to this executable (target/debug/openelb-cli), else one level
/// up (test binaries live in target/debug/deps).
pub fn find_openelb_speaker() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(ENV_SPEAKER).map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join("openelb-speaker"), dir.parent()?.join("openelb-speaker")].into_iter().find(|p| p.is_file())
}

/// A speaker process tree on one node.
#[derive(Debug)]
pub struct RunningSpeaker {
    pub node: String,
    child: Child,
    /// keepalived's VRRP child writes its PID here.
    vrrp_pidfile: Option<PathBuf>,
}

impl RunningSpeaker {
    pub fn start(speaker: &Speaker, plan: &LabPlan, node: &str, dir: &Path, manifests: &Path) -> Result<Self> {
        let Some(spec) = plan.node(node) else { bail!("node {node:?} is not in the lab") };
        let argv = speaker.argv(plan, node, dir, manifests)?;
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let log = dir.join(format!("speaker-{node}.log"));
        let child = netns::spawn(&spec.ns, &refs, netns::log_file(&log)?, netns::log_file(&log)?)?;
        let vrrp_pidfile = match speaker {
            Speaker::Keepalived { .. } => Some(keepalived_pidfiles(dir, node).1),
            Speaker::Openelb(_) => None,
        };
        Ok(RunningSpeaker { node: node.to_string(), child, vrrp_pidfile })
    }

    /// PID of the process we started (keepalived's parent).
    #[allow(dead_code)] // for the root tests (tests/lab_*.rs include this module)
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every PID of the speaker: the process we started and its children (keepalived's VRRP process).
    pub fn pids(&self) -> Vec<u32> {
        let main = self.child.id();
        let mut out = vec![main];
        let children = fs::read_to_string(format!("/proc/{main}/task/{main}/children")).unwrap_or_default();
        out.extend(children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        if let Some(f) = &self.vrrp_pidfile
            && let Ok(text) = fs::read_to_string(f)
            && let Ok(pid) = text.trim().parse::<u32>()
        {
            out.push(pid);
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Graceful stop: SIGTERM (keepalived and openelb-speaker send priority-0 adverts and drop the VIP).
    /// Whether the speaker process is still running (not exited, not reaped).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn terminate(&mut self, grace: Duration) {
        netns::stop_child(&mut self.child, Sig::Term, grace);
    }

    /// Crash semantics as in the anchor measurement: freeze every process first so none can send a last
    /// advert, then kill them all.
    pub fn crash(&mut self) {
        let pids = self.pids();
        for &p in &pids {
            netns::signal(p, Sig::Stop);
        }
        for &p in &pids {
            netns::signal(p, Sig::Kill);
        }
        let _ = self.child.wait();
    }
}

impl Drop for RunningSpeaker {
    fn drop(&mut self) {
        if self.running() {
            self.crash();
        }
    }
}

fn service_doc(svc: &openelb_core::model::Service) -> Value {
    let ports: Vec<Value> = svc
        .ports
        .iter()
        .map(|p| {
            let mut port = json!({"port": p.port, "protocol": p.protocol});
            if let Some(n) = &p.name {
                port["name"] = json!(n);
            }
            if let Some(t) = &p.target_port {
                port["targetPort"] = t.parse::<i64>().map_or_else(|_| json!(t), |n| json!(n));
            }
            port
        })
        .collect();
    let mut spec = json!({
        "type": svc.type_,
        "selector": svc.selector,
        "ports": ports,
        "externalTrafficPolicy": match svc.external_traffic_policy {
            TrafficPolicy::Cluster => "Cluster",
            TrafficPolicy::Local => "Local",
        },
    });
    if let Some(c) = &svc.load_balancer_class {
        spec["loadBalancerClass"] = json!(c);
    }
    if let Some(ip) = &svc.load_balancer_ip {
        spec["loadBalancerIP"] = json!(ip);
    }
    if !svc.ip_families.is_empty() {
        let fams: Vec<&str> =
            svc.ip_families.iter().map(|f| if *f == IpFamily::V4 { "IPv4" } else { "IPv6" }).collect();
        spec["ipFamilies"] = json!(fams);
    }
    let ingress: Vec<Value> = svc.ingress.iter().map(|ip| json!({"ip": ip})).collect();
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": svc.name, "namespace": svc.namespace, "annotations": svc.annotations, "labels": svc.labels},
        "spec": spec,
        "status": {"loadBalancer": {"ingress": ingress}},
    })
}

/// The cluster as Kubernetes objects with the lab's addresses: what every openelb-speaker reads.
pub fn manifest_documents(cluster: &Cluster, extra_v6_vips: u16) -> Vec<Value> {
    let mut docs = Vec::new();
    for ns in &cluster.namespaces {
        docs.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns.name, "labels": ns.labels}}));
    }
    for n in &cluster.nodes {
        let mut annotations = serde_json::Map::new();
        if let Some(mac) = n.mac {
            annotations.insert(ANNOTATION_NODE_MAC.into(), json!(mac_string(&mac)));
        }
        let addresses: Vec<Value> =
            n.internal_ip.iter().map(|ip| json!({"type": "InternalIP", "address": ip.to_string()})).collect();
        docs.push(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": n.name, "labels": n.labels, "annotations": annotations},
            "spec": {"unschedulable": n.unschedulable},
            "status": {
                "addresses": addresses,
                "conditions": [{"type": "Ready", "status": if n.ready { "True" } else { "False" }}],
            },
        }));
    }
    for p in &cluster.pools {
        let mut spec = json!({"address": p.address, "protocol": p.protocol.as_str(), "disable": p.disable,
            "priority": p.priority});
        if let Some(i) = &p.interface {
            spec["interface"] = json!(i);
        }
        if !p.namespaces.is_empty() {
            spec["namespaces"] = json!(p.namespaces);
        }
        if !p.namespace_selector.is_empty() {
            spec["namespaceSelector"] = json!(p.namespace_selector);
        }
        let mut metadata = json!({"name": p.name});
        if let Some(d) = &p.default_annotation {
            metadata["annotations"] = json!({ANNOTATION_DEFAULT_EIP: d});
        }
        docs.push(json!({"apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip", "metadata": metadata,
            "spec": spec}));
    }
    for svc in &cluster.services {
        docs.push(service_doc(svc));
    }
    for p in &cluster.pods {
        let mut status = json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": if p.ready { "True" } else { "False" }}]});
        if let Some(ip) = p.ip {
            status["podIP"] = json!(ip.to_string());
        }
        let mut spec = json!({"containers": [{"name": "http", "image": "openelb-cli-lab-pod"}]});
        if let Some(n) = &p.node_name {
            spec["nodeName"] = json!(n);
        }
        docs.push(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": p.name, "namespace": p.namespace, "labels": p.labels},
            "spec": spec, "status": status}));
    }
    if extra_v6_vips > 0 {
        let (first, last) = LabPlan::bench_v6_range(extra_v6_vips);
        docs.push(json!({"apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip",
            "metadata": {"name": "lab-bench-v6"},
            "spec": {"address": format!("{first}-{last}"), "protocol": "vip"}}));
        let selector = cluster.services.first().map(|s| s.selector.clone()).unwrap_or_default();
        for i in 0..extra_v6_vips {
            docs.push(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("lab-bench-{i:04}"), "namespace": "default",
                    "annotations": {"lb.kubesphere.io/v1alpha1": "openelb",
                        "eip.openelb.kubesphere.io/v1alpha2": "lab-bench-v6"}},
                "spec": {"type": "LoadBalancer", "selector": selector, "ipFamilies": ["IPv6"],
                    "ipFamilyPolicy": "SingleStack", "ports": [{"port": 80, "targetPort": 8080}]}}));
        }
    }
    docs
}

/// Writes [`manifest_documents`] as one multi-document YAML file in `dir` and returns the directory.
pub fn write_manifests(plan: &LabPlan, dir: &Path, extra_v6_vips: u16) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let mut text = String::from("# Written by `openelb-cli lab`: the seed mapped to 192.0.2.0/24 for the speakers.\n");
    for doc in manifest_documents(&plan.cluster, extra_v6_vips) {
        text.push_str("---\n");
        text.push_str(&serde_yaml::to_string(&doc)?);
    }
    let file = dir.join("lab.yaml");
    fs::write(&file, text).with_context(|| format!("{}: cannot write", file.display()))?;
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> LabPlan {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/vip-mode");
        LabPlan::from_paths(&[root], "t1", None).unwrap()
    }

    #[test]
    fn written_manifests_load_back_to_the_same_lab() {
        let plan = plan();
        let dir = tempfile::tempdir().unwrap();
        let out = write_manifests(&plan, dir.path(), 0).unwrap();
        let again = LabPlan::from_paths(&[out], "t1", None).unwrap();
        assert_eq!(again.vip, plan.vip);
        assert_eq!(again.nodes, plan.nodes);
        assert_eq!(again.pods, plan.pods);
        assert_eq!(again.candidates, plan.candidates);
    }

    #[test]
    fn bench_manifests_add_ipv6_vips_only_in_the_documentation_range() {
        let plan = plan();
        let dir = tempfile::tempdir().unwrap();
        write_manifests(&plan, dir.path(), 1000).unwrap();
        let cluster = openelb_k8s::manifest::Manifests::load_paths(&[dir.path()]).unwrap().to_cluster().unwrap();
        let mut ipam = openelb_core::ipam::Ipam::new(&cluster.pools);
        let assigned = ipam
            .reconcile_all(&cluster.services, &cluster.namespaces)
            .into_iter()
            .filter_map(|o| match o.change {
                openelb_core::ipam::Change::Assigned { ip, .. } => Some(ip),
                _ => None,
            })
            .collect::<Vec<_>>();
        assert_eq!(assigned.len(), 1001);
        assert!(assigned.iter().all(super::super::plan::is_documentation));
    }

    #[test]
    fn openelb_command_line_carries_the_flags() {
        let plan = plan();
        let s = Speaker::Openelb(OpenelbSpeaker {
            binary: "/x/openelb-speaker".into(),
            advert_interval: Some(Duration::from_millis(100)),
            preempt_delay: Some(Duration::from_secs(3)),
            garp: Some((3, Duration::from_millis(10))),
            ..Default::default()
        });
        let argv = s.argv(&plan, "master1", Path::new("/nonexistent"), Path::new("/m")).unwrap().join(" ");
        assert_eq!(
            argv,
            "/x/openelb-speaker --node-name master1 --manifests /m --interface eth0 --advert-interval 100ms \
             --preempt-delay 3s --garp-count 3 --garp-spacing 10ms"
        );
    }
}
