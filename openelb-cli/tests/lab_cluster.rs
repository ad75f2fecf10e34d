//! The seed end to end in a real cluster, nothing played by the test (docs/testing.md#the-real-cluster): a
//! control plane with RBAC enforced, kubelets with containerd and kube-proxy in iptables mode on the seed's three
//! nodes, openelb from `deploy/` in its image, the seed's three files. The scheduler places the Pods, the
//! endpoints controller publishes them, kube-proxy routes to them, and the node lifecycle controller notices
//! a dead node. One cluster serves every step (starting one costs about a minute); each step says what it shows.
//! Needs root and `scripts/cluster.sh install` (scripts/test.sh runs it); ignored otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use openelb_core::model::TrafficPolicy;
use openelb_lab::cluster::Cluster;
use openelb_lab::probe::{PingProbe, largest_gap, now_epoch};
use openelb_lab::{LabConfig, Layout, Need, arping, eventually, netns, require};

const ROLLOUT: Duration = Duration::from_secs(180);
/// VRRP moves a VIP in well under a second; the controller and the speakers' watches add a little.
const SETTLE: Duration = Duration::from_secs(30);
/// The node lifecycle controller's grace period in the lab is 16 s (scripts/kapi.sh); then endpoints update.
const NODE_LOST: Duration = Duration::from_secs(90);
const APP: &str = "app=vip-openelb";
const SPEAKERS: &str = "app.kubernetes.io/name=openelb-speaker";
const CONTROLLERS: &str = "app.kubernetes.io/name=openelb-controller";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn examples() -> PathBuf {
    repo().join("examples/vip-mode")
}

fn start() -> Cluster {
    require(&[Need::Lab, Need::ClusterParts]);
    let cfg = LabConfig::unique(PathBuf::from(env!("CARGO_BIN_EXE_openelb-cli")));
    let layout = Layout::from_paths(&[examples()], &cfg.id, Some(TrafficPolicy::Cluster)).unwrap();
    let yaml = fs::read_to_string(examples().join("cluster.yaml")).unwrap();
    let cluster = Cluster::start(layout, &cfg, &repo().join("scripts"), &yaml).unwrap();
    for (phase, took) in &cluster.timings {
        eprintln!("cluster start: {phase}: {:.1} s", took.as_secs_f64());
    }
    cluster.deploy_openelb(&repo(), ROLLOUT).unwrap();
    cluster.apply_seed(&examples(), ROLLOUT).unwrap();
    cluster
}

fn mac_of(c: &Cluster, node: &str) -> String {
    c.lab.layout.node(node).unwrap().mac_string()
}

/// Waits until exactly one node holds the VIP and `ok` accepts it; returns it.
fn wait_holder(c: &Cluster, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let mut seen = Vec::new();
    eventually(SETTLE, Duration::from_millis(50), || {
        seen = c.lab.holders().unwrap_or_default();
        match seen.as_slice() {
            [one] if ok(one) => Some(one.clone()),
            _ => None,
        }
    })
    .unwrap_or_else(|e| {
        panic!("no single holder {what}: {e} (holders {seen:?})\n{}", c.describe_pods("openelb-system"))
    })
}

/// The client's `ip neigh` names `node`'s MAC for the VIP (after a ping refreshes it).
fn assert_client_sees(c: &Cluster, node: &str) {
    let want = mac_of(c, node);
    let mut last = None;
    let seen = eventually(SETTLE, Duration::from_millis(100), || {
        c.lab.client_pings(2);
        last = c.lab.client_neigh().unwrap().and_then(|n| n.mac);
        (last.as_deref() == Some(want.as_str())).then_some(())
    });
    assert!(seen.is_ok(), "client's neighbour entry for the VIP is {last:?}, not {node}'s {want}");
}

/// Curls until the Pods that answered since the last stray answer are exactly `want` (kube-proxy picks at random
/// and applies a change a moment after the API has it).
fn assert_curl_reaches(c: &Cluster, want: &BTreeSet<String>, what: &str) {
    let (mut seen, mut stray) = (BTreeSet::new(), BTreeSet::new());
    let ok = eventually(SETTLE, Duration::from_millis(100), || {
        let batch = c.lab.pods_seen(4).unwrap_or_default();
        if !batch.is_subset(want) {
            stray = batch;
            seen.clear();
            return None;
        }
        seen.extend(batch);
        (seen == *want).then_some(())
    });
    assert!(ok.is_ok(), "{what}: curl reached {seen:?} of {want:?} (last stray answers: {stray:?})");
}

fn pods_on(pods: &BTreeMap<String, String>, node: &str) -> BTreeSet<String> {
    pods.iter().filter(|(_, n)| n.as_str() == node).map(|(p, _)| p.clone()).collect()
}

/// What kube-proxy's IPVS mode does to every node (this kernel has no IPVS): the LoadBalancer IP on
/// `kube-ipvs0` (a bridge without ports stands in for the dummy device), the kernel's default ARP settings.
fn add_kube_ipvs0(c: &Cluster) {
    let vip = format!("{}/32", c.lab.layout.vip);
    for node in &c.lab.layout.nodes {
        netns::ip_in(&node.ns, &["link", "add", "kube-ipvs0", "type", "bridge"]).unwrap();
        netns::ip_in(&node.ns, &["addr", "add", &vip, "dev", "kube-ipvs0"]).unwrap();
        for (key, value) in [("arp_ignore", "0"), ("arp_announce", "0")] {
            let all = format!("net.ipv4.conf.all.{key}={value}");
            netns::exec(&node.ns, &["sysctl", "-qw", &all]).unwrap();
        }
    }
}

/// `arping` from the client: only `node` answers for the VIP (the speakers filter the others' ARP replies).
fn assert_only_answerer(c: &Cluster, node: &str) {
    let want = BTreeSet::from([mac_of(c, node).to_uppercase()]);
    let mut last = BTreeSet::new();
    let ok = eventually(SETTLE, Duration::from_millis(200), || {
        last = arping::answerers(&c.lab.layout.client_ns, "eth0", c.lab.layout.vip, 3).ok()?;
        (last == want).then_some(())
    });
    assert!(ok.is_ok(), "ARP answerers for the VIP: {last:?}, want only {node} {want:?}");
}

/// A real 403 for each write the speaker's token tries, and the authorizer's "no" for the status
/// subresources the controller alone writes; the controller and speakers logged no refusal of their own.
fn assert_rbac(c: &Cluster) {
    let token = c.service_account_token("openelb-system", "openelb-speaker").unwrap();
    let tries: [&[&str]; 3] = [
        &["patch", "svc", "vip-svc", "-p", r#"{"metadata":{"labels":{"rbac-test":"x"}}}"#],
        &["patch", "eip", "vip-eip", "--type", "merge", "-p", r#"{"spec":{"disable":true}}"#],
        &["delete", "eip", "vip-eip", "--dry-run=server"],
    ];
    for args in tries {
        let mut full = vec!["--token", token.as_str()];
        full.extend_from_slice(args);
        let out = c.kubectl.output(&full, "").unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "the speaker's token could `kubectl {}`", args.join(" "));
        assert!(stderr.contains("Forbidden") || stderr.contains("forbidden"), "not a 403: {stderr}");
    }
    for resource in ["services/status", "eips.network.kubesphere.io/status", "eips.network.kubesphere.io"] {
        let out = c.kubectl.output(&["--token", &token, "auth", "can-i", "patch", resource], "").unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no", "the speaker may patch {resource}");
    }
    for selector in [SPEAKERS, CONTROLLERS] {
        let logs = c.kubectl.run(&["logs", "-n", "openelb-system", "-l", selector, "--tail=-1", "--prefix"]).unwrap();
        assert!(logs.lines().count() > 3, "{selector}: no logs to check ({logs:?})");
        let refused: Vec<&str> = logs.lines().filter(|l| l.to_lowercase().contains("forbidden")).collect();
        assert!(refused.is_empty(), "{selector} was refused by RBAC:\n{}", refused.join("\n"));
    }
}

/// The last `candidates=` list a speaker logged for a VRRP group, from its Pod's log; or why there is none.
fn logged_candidates(c: &Cluster, node: &str) -> Result<String, String> {
    let field = format!("spec.nodeName={node}");
    let pod = c
        .kubectl
        .run(&["get", "pods", "-n", "openelb-system", "-l", SPEAKERS, "--field-selector", &field, "-o", "name"])
        .map_err(|e| format!("{e:#}"))?;
    let logs = c.kubectl.run(&["logs", "-n", "openelb-system", pod.trim()]).map_err(|e| format!("{e:#}"))?;
    let line = logs
        .lines()
        .rev()
        .find(|l| l.contains("VRRP group") && l.contains("candidates="))
        .ok_or_else(|| format!("no VRRP group line in {}'s log:\n{logs}", pod.trim()))?;
    let rest = line.split_once("candidates=").map(|(_, r)| r).unwrap_or_default();
    Ok(rest.split_whitespace().next().unwrap_or_default().trim_matches('"').to_string())
}

#[test]
#[ignore = "needs root and the cluster parts (scripts/cluster.sh install: kube components, containerd, images)"]
fn seed_in_a_real_cluster() {
    let mut c = start();
    let id = c.lab.layout.id.clone();
    let host = c.lab.layout.nodes[0].name.clone();

    // Step 4 under Cluster: the scheduler put the two Pods on the two workers (master1 is tainted), the
    // controller wrote the seed's first address, one node answers for it, and curl reaches both Pods.
    let vip = c.wait_service_ip(SETTLE).unwrap();
    assert_eq!(vip, c.lab.layout.vip.to_string());
    let pods = c.ready_pods("default", APP).unwrap();
    let nodes: BTreeSet<&str> = pods.values().map(String::as_str).collect();
    assert_eq!(nodes, BTreeSet::from(["worker-p001", "worker-p002"]), "Pods placed on {pods:?}");
    let holder = wait_holder(&c, "under Cluster", |_| true);
    assert!(c.lab.client_pings(30), "the client cannot ping {vip}");
    assert_client_sees(&c, &holder);
    let all: BTreeSet<String> = pods.keys().cloned().collect();
    assert_curl_reaches(&c, &all, "under Cluster");
    eprintln!("{}", c.step4().unwrap());

    // kube-proxy in IPVS mode would bind the VIP to kube-ipvs0 on every node: still one ARP answerer.
    add_kube_ipvs0(&c);
    assert_only_answerer(&c, &holder);

    // RBAC: deploy/'s roles are enough for both programs and no more than they need.
    assert_rbac(&c);

    // The webhook, served by the controller Pods behind deploy/'s Service, refuses a bad Eip for the API server.
    let bad = r#"{"apiVersion":"network.kubesphere.io/v1alpha2","kind":"Eip","metadata":{"name":"bad"},"spec":{"address":"192.0.2.300","protocol":"vip"}}"#;
    let out = c.kubectl.output(&["apply", "-f", "-"], bad).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("denied the request") && stderr.contains("192.0.2.300"),
        "{stderr}"
    );

    // Local: only a node with a ready Pod holds the VIP, and kube-proxy sends the client to that Pod only.
    c.kubectl.run(&["patch", "svc", "vip-svc", "-p", r#"{"spec":{"externalTrafficPolicy":"Local"}}"#]).unwrap();
    let holder = wait_holder(&c, "under Local", |h| !pods_on(&pods, h).is_empty());
    assert_client_sees(&c, &holder);
    assert_curl_reaches(&c, &pods_on(&pods, &holder), "under Local (only the holder's Pod)");

    // The Pod moves: its node cordoned and the Pod deleted, the ReplicaSet recreates it on the other worker and
    // the VIP follows it.
    c.kubectl.run(&["cordon", &holder]).unwrap();
    let probe = PingProbe::start(&c.lab.layout.client_ns, c.lab.layout.vip).unwrap();
    let t0 = now_epoch();
    for pod in pods_on(&pods, &holder) {
        c.kubectl.run(&["delete", "pod", &pod, "--wait=false"]).unwrap();
    }
    let moved_from = holder.clone();
    let holder = wait_holder(&c, "after the Pod moved", |h| h != moved_from);
    let pods = eventually(ROLLOUT, Duration::from_millis(200), || {
        let p = c.ready_pods("default", APP).ok()?;
        (p.len() == 2 && p.values().all(|n| *n == holder)).then_some(p)
    })
    .unwrap_or_else(|e| panic!("the ReplicaSet did not recreate the Pod on {holder}: {e}"));
    assert!(probe.wait_replies_after(now_epoch(), 5, SETTLE), "no echo replies after the Pod moved");
    let outage = largest_gap(&probe.stop(), t0).unwrap_or(f64::NAN);
    eprintln!("Pod moved {moved_from} -> {holder}: client outage {:.0} ms", outage * 1000.0);
    assert_client_sees(&c, &holder);
    assert_curl_reaches(&c, &pods_on(&pods, &holder), "after the Pod moved");
    c.kubectl.run(&["uncordon", &moved_from]).unwrap();

    // A node dies (containers, kubelet, link): VRRP moves the VIP long before Kubernetes notices; once the node
    // lifecycle controller marks it NotReady the speakers' plan drops it, and curl reaches only live Pods.
    c.kubectl.run(&["patch", "svc", "vip-svc", "-p", r#"{"spec":{"externalTrafficPolicy":"Cluster"}}"#]).unwrap();
    c.kubectl.run(&["scale", "deployment", "vip-openelb", "--replicas=3"]).unwrap();
    c.rollout("deployment/vip-openelb", "default", ROLLOUT).unwrap();
    let holder = wait_holder(&c, "back under Cluster", |_| true);
    let victim = if holder == host { moved_from.clone() } else { holder.clone() };
    let probe = PingProbe::start(&c.lab.layout.client_ns, c.lab.layout.vip).unwrap();
    assert!(probe.wait_replies_after(now_epoch(), 5, SETTLE), "no echo replies before the crash");
    let t0 = now_epoch();
    c.crash_node(&victim).unwrap();
    let after = wait_holder(&c, "after the crash", |h| h != victim);
    let ready_then = c.node_ready(&victim).unwrap();
    if victim == holder {
        assert_eq!(ready_then, "True", "VRRP should move the VIP before the node lifecycle controller acts");
    }
    assert!(probe.wait_replies_after(now_epoch(), 5, SETTLE), "no echo replies after the crash");
    let outage = largest_gap(&probe.stop(), t0).unwrap_or(f64::NAN);
    assert_only_answerer(&c, &after);
    eprintln!(
        "node {victim} crashed (held the VIP: {}): {after} holds it, client outage {:.0} ms",
        victim == holder,
        outage * 1000.0
    );
    eventually(NODE_LOST, Duration::from_millis(500), || (c.node_ready(&victim).ok()? != "True").then_some(()))
        .unwrap_or_else(|e| panic!("node {victim} never NotReady: {e}"));
    let mut last = Err(String::new());
    eventually(SETTLE, Duration::from_millis(500), || {
        last = logged_candidates(&c, &after);
        last.as_deref().ok().filter(|l| !l.split(',').any(|n| n == victim)).map(|_| ())
    })
    .unwrap_or_else(|e| panic!("{after}'s speaker still plans with {victim}: {e}; last candidates {last:?}"));
    let live: BTreeSet<String> =
        c.ready_pods("default", APP).unwrap().into_iter().filter(|(_, n)| *n != victim).map(|(p, _)| p).collect();
    let seen = eventually(NODE_LOST, Duration::from_millis(500), || {
        let seen = c.lab.pods_seen(6).ok()?;
        (seen.is_subset(&live) && !seen.is_empty()).then_some(seen)
    });
    assert!(seen.is_ok(), "curl still reaches Pods of the dead node {victim}");

    // Everything goes: namespaces, processes, mounts, the kubelets' logs under /var/log/pods.
    let dir = c.lab.dir.clone();
    drop(c);
    assert_nothing_left(&id, &dir);
}

fn assert_nothing_left(id: &str, dir: &Path) {
    openelb_lab::topology::check_removed(id).unwrap();
    let d = dir.display().to_string();
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&d), "mounts left under {d}");
    let mut procs = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(&d)
        {
            procs.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    assert!(procs.is_empty(), "processes of the cluster left: {procs:?}");
}
