//! End to end (docs/testing.md, rung 6): the seed's walkthrough against a real kube-apiserver, with openelb-controller and one
//! openelb-speaker (Kubernetes source) per worker, in the network-namespace lab.
//!
//! The apiserver and the controller run inside master1's namespace on 192.0.2.2, so the speakers reach the API
//! over the lab's LAN. The test plays kubelet and the endpoints controller: it registers the Node objects
//! (master1 carries the exclude-from-external-load-balancers label kubeadm gives control-plane nodes, and runs
//! no speaker) and publishes the Endpoints of the Pods the lab runs. The seed's three files are applied with
//! kubectl, 192.168.0.x mapped to 192.0.2.x.
//!
//! Needs root and the test apiserver's binaries (`scripts/kapi.sh install`, which scripts/test.sh runs); ignored
//! otherwise. It starts its own apiserver inside the lab, so it needs no KAPI_KUBECONFIG.
//! Nothing here is timed: the timings are `openelb-cli lab kube-bench`'s job. OPENELB_KEEP_LOGS=DIR keeps the
//! logs of the controller, the apiserver, the speakers and the Pods.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use openelb_core::model::{Cluster, TrafficPolicy};
use openelb_lab::kube::{EXCLUDE_LABEL, KubeLab};
use openelb_lab::speaker_program::find_openelb_speaker;
use openelb_lab::{Lab, LabConfig, Layout, Need, OpenelbSpeakerCommand, SpeakerProgram, eventually, require};

/// Speakers start at different moments and the first preference takes a VIP back only after its preempt delay.
const SETTLE: Duration = Duration::from_secs(40);
const SEED_FILES: [&str; 3] = ["vip-eip.yaml", "vip-openelb.yaml", "vip-svc.yaml"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The seed's cluster with master1 excluded from load-balancing (as kubeadm labels control-plane nodes).
fn cluster() -> Cluster {
    let ex = root().join("examples/vip-mode");
    let mut cluster = openelb_k8s::manifest::Manifests::load_paths(&[ex]).unwrap().to_cluster().unwrap();
    for n in cluster.nodes.iter_mut().filter(|n| n.name == "master1") {
        n.labels.insert(EXCLUDE_LABEL.to_string(), String::new());
    }
    cluster
}

/// The seed's files as a user would apply them, on the lab's addresses.
fn seed_yaml() -> String {
    SEED_FILES
        .iter()
        .map(|f| std::fs::read_to_string(root().join("examples/vip-mode").join(f)).unwrap())
        .collect::<Vec<_>>()
        .join("\n---\n")
        .replace("192.168.0.", "192.0.2.")
}

fn binary_beside(speaker: &Path, name: &str) -> PathBuf {
    let p = speaker.with_file_name(name);
    assert!(p.is_file(), "{} not found: run `cargo build --workspace --bins` first", p.display());
    p
}

fn mac_of(lab: &Lab, node: &str) -> String {
    lab.layout.node(node).unwrap().mac_string()
}

/// Waits until the client's `ip neigh` entry for the VIP names `node`'s MAC (pinging so it resolves).
fn assert_client_sees(lab: &Lab, node: &str) {
    let want = mac_of(lab, node);
    let mut neigh = None;
    let seen = eventually(Duration::from_secs(10), Duration::from_millis(100), || {
        let _ = lab.client_pings(1);
        neigh = lab.client_neigh().unwrap();
        (neigh.as_ref().and_then(|n| n.mac.as_deref()) == Some(want.as_str())).then_some(())
    });
    if let Err(e) = seen {
        panic!("client neighbour entry {neigh:?}, want {node}'s MAC {want} ({e})");
    }
}

fn backends(lab: &Lab, holder: &str) -> BTreeSet<String> {
    lab.layout.backends(holder).into_iter().map(|p| p.name.clone()).collect()
}

/// The column `name` of the single object row of a `kubectl get` table, by the header's character positions
/// (kubectl leaves an empty cell blank, so splitting on whitespace would shift the columns after it).
fn column(table: &str, name: &str) -> String {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let start = header.find(&format!(" {name}")).map(|i| i + 1).unwrap_or_else(|| panic!("no {name} in {table}"));
    let row = lines.next().unwrap_or_else(|| panic!("no row in {table}"));
    // The cell ends where the next column's header starts.
    let end = header[start..].find("  ").and_then(|gap| {
        let rest = &header[start + gap..];
        rest.find(|c: char| c != ' ').map(|k| start + gap + k)
    });
    let cell = match end {
        Some(end) => row.get(start..end.min(row.len())),
        None => row.get(start..),
    };
    cell.unwrap_or_default().trim().to_string()
}

fn ingress(kube: &KubeLab) -> String {
    kube.kubectl.jsonpath(&["svc", "vip-svc"], "{.status.loadBalancer.ingress[*].ip}").unwrap_or_default()
}

/// The openelb-speaker and openelb-controller binaries of this build.
fn binaries() -> (PathBuf, PathBuf) {
    let speaker = find_openelb_speaker().expect("openelb-speaker not built: run `cargo build --workspace --bins`");
    let controller = binary_beside(&speaker, "openelb-controller");
    (speaker, controller)
}

/// The apiserver on master1 with the CRDs, the lab's Nodes (master1 excluded from LoadBalancers) and a ready
/// openelb-controller. Declare it after the lab: dropped first, the apiserver stops before the namespaces go.
fn start_kube(lab: &Lab, controller_bin: &Path) -> KubeLab {
    let mut kube =
        KubeLab::start(&lab.layout, &lab.dir, "master1", &root().join("scripts/kapi.sh"), controller_bin).unwrap();
    kube.install_crds(&root().join("deploy/crds")).unwrap();
    kube.register_nodes(&lab.layout, &["master1"]).unwrap();
    kube.start_controller().unwrap();
    kube.wait_for("controller /readyz", SETTLE, || kube.controller_ready().then_some(())).unwrap();
    kube
}

fn holders_of(lab: &Lab) -> Vec<String> {
    lab.holders().unwrap()
}

#[test]
fn table_cells_are_read_by_position() {
    let t = "NAME      CIDR                     USAGE   TOTAL\nvip-eip   192.0.2.91-192.0.2.100           10\n";
    assert_eq!(column(t, "USAGE"), "");
    assert_eq!(column(t, "TOTAL"), "10");
    assert_eq!(column(t, "CIDR"), "192.0.2.91-192.0.2.100");
    let t = "NAME      CIDR                     USAGE   TOTAL\nvip-eip   192.0.2.91-192.0.2.100   1       10\n";
    assert_eq!(column(t, "USAGE"), "1");
}

#[test]
#[ignore = "needs root and the kube-apiserver binaries (scripts/test.sh installs them)"]
fn seed_walkthrough_against_a_real_apiserver() {
    require(&[Need::Lab]);
    require(&[Need::ApiserverBinaries, Need::Tool("kubectl")]);
    let (speaker_bin, controller_bin) = binaries();
    let cfg = LabConfig::unique(PathBuf::from(env!("CARGO_BIN_EXE_openelb-cli")));
    let id = cfg.id.clone();
    let cluster = cluster();
    let layout = Layout::from_cluster(cluster.clone(), &id, Some(TrafficPolicy::Cluster)).unwrap();
    let vip = layout.vip.to_string();
    let workers: Vec<String> = layout.nodes.iter().filter(|n| n.name != "master1").map(|n| n.name.clone()).collect();
    assert_eq!(workers.len(), 2, "{:?}", layout.nodes);
    assert!(!layout.candidates.contains(&"master1".to_string()), "master1 is excluded: {:?}", layout.candidates);

    let mut lab = Lab::build(layout, &cfg).unwrap();
    {
        // Declared after `lab`: dropped first, so the apiserver stops before the namespaces go.
        let mut kube = start_kube(&lab, &controller_bin);
        let speaker = SpeakerProgram::Openelb(OpenelbSpeakerCommand {
            binary: speaker_bin.clone(),
            kubeconfig: Some(kube.kubeconfig.clone()),
            nodes: Some(workers.clone()),
            ..Default::default()
        });
        lab.start_speakers(&speaker).unwrap();

        // Step 3 of the seed: kubectl apply the Eip, the Deployment and the Service.
        kube.kubectl.run_stdin(&["apply", "-f", "-"], &seed_yaml()).unwrap();
        kube.publish_endpoints(&lab.layout, &[]).unwrap();
        kube.wait_for("vip-svc ingress", SETTLE, || (ingress(&kube) == vip).then_some(())).unwrap();
        let svc = kube.kubectl.run(&["get", "svc", "vip-svc"]).unwrap();
        assert_eq!(column(&svc, "EXTERNAL-IP"), vip, "{svc}");
        kube.wait_for("eip usage 1", SETTLE, || {
            let eip = kube.kubectl.run(&["get", "eip", "vip-eip"]).ok()?;
            (column(&eip, "USAGE") == "1").then_some(())
        })
        .unwrap();

        let metrics = kube.controller_metrics().unwrap();
        let pool_size = metrics
            .lines()
            .find(|l| l.starts_with("openelb_eip_pool_size{") && l.contains("\"vip-eip\""))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        assert_eq!(pool_size, Some(10.0), "{metrics}");

        // Step 4, Cluster: the first preference among the workers answers; both Pods serve.
        let holder = lab.wait_holder(None, SETTLE).unwrap();
        assert_eq!(Some(&holder), lab.layout.candidates.first());
        assert_client_sees(&lab, &holder);
        assert_eq!(lab.pods_seen(4).unwrap(), backends(&lab, &holder));

        // Step 4, Local: only nodes with a ready Pod may hold it; the holder serves its own Pods only.
        kube.kubectl.run(&["patch", "svc", "vip-svc", "-p", r#"{"spec":{"externalTrafficPolicy":"Local"}}"#]).unwrap();
        let local = Layout::from_cluster(cluster.clone(), &id, Some(TrafficPolicy::Local)).unwrap();
        lab.layout.policy = TrafficPolicy::Local;
        lab.layout.candidates = local.candidates.clone();
        lab.resync_kube_proxy().unwrap();
        let holder = lab.wait_holder(None, SETTLE).unwrap();
        assert_eq!(Some(&holder), local.candidates.first());
        assert_client_sees(&lab, &holder);
        assert_eq!(lab.pods_seen(4).unwrap(), backends(&lab, &holder));
        assert_eq!(ingress(&kube), vip, "a policy change moves no address");

        // The holder crashes: the next candidate takes over and the client follows it.
        lab.crash(&holder).unwrap();
        let next = lab.wait_holder(Some(&holder), SETTLE).unwrap();
        assert_ne!(next, holder);
        lab.resync_kube_proxy().unwrap();
        assert_client_sees(&lab, &next);
        assert_eq!(lab.pods_seen(2).unwrap(), backends(&lab, &next));
        lab.restore(&holder).unwrap();
        let back = lab.wait_holder(None, SETTLE).unwrap();
        assert_eq!(back, holder, "the first preference takes its VIP back after the preempt delay");
        assert_client_sees(&lab, &back);

        // A controller restart changes no address and writes no Eip.
        let eip_version = kube.kubectl.jsonpath(&["eip", "vip-eip"], "{.metadata.resourceVersion}").unwrap();
        kube.stop_controller();
        kube.start_controller().unwrap();
        kube.wait_for("controller /readyz after restart", SETTLE, || kube.controller_ready().then_some(())).unwrap();
        // Deliberately let time pass: the new leader's first pass over every Service is quick, and a write it
        // should not make would show within it.
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(ingress(&kube), vip);
        assert_eq!(kube.kubectl.jsonpath(&["eip", "vip-eip"], "{.metadata.resourceVersion}").unwrap(), eip_version);

        // The apiserver goes away; a crash still fails over.
        let holder = lab.wait_holder(None, SETTLE).unwrap();
        kube.stop_apiserver().unwrap();
        lab.crash(&holder).unwrap();
        let next = lab.wait_holder(Some(&holder), SETTLE).unwrap();
        lab.resync_kube_proxy().unwrap();
        assert_client_sees(&lab, &next);
        assert!(lab.client_pings(10), "the VIP answers while the apiserver is down");
        kube.start_apiserver(true).unwrap();
        lab.restore(&holder).unwrap();
        let back = lab.wait_holder(None, SETTLE).unwrap();
        assert_eq!(back, holder);
        assert_eq!(ingress(&kube), vip, "the address survives the apiserver restart");

        // Deleting the Service withdraws the VIP and releases the address.
        if let Err(e) = kube.kubectl.run(&["delete", "svc", "vip-svc", "--wait=true", "--timeout=60s"]) {
            panic!("{e:#}\nend of the controller's log:\n{}", kube.controller_log_tail(60));
        }
        kube.wait_for("VIP withdrawn from every node", SETTLE, || holders_of(&lab).is_empty().then_some(())).unwrap();
        // `usage` is omitted at zero (as upstream's `omitempty`), so the column is blank.
        let released = kube.wait_for("eip usage 0", SETTLE, || {
            let eip = kube.kubectl.run(&["get", "eip", "vip-eip"]).ok()?;
            let used = kube.kubectl.jsonpath(&["eip", "vip-eip"], "{.status.used}").ok()?;
            (matches!(column(&eip, "USAGE").as_str(), "" | "0") && used.trim().is_empty()).then_some(())
        });
        if let Err(e) = released {
            let eip = kube.kubectl.run(&["get", "eip", "vip-eip", "-o", "yaml"]).unwrap_or_default();
            panic!("{e:#}\nthe Eip:\n{eip}");
        }
        assert!(!lab.client_pings(2), "nobody answers for the VIP once the Service is gone");
    }
    lab.teardown().unwrap();
    drop(lab);
    let (left, state) = openelb_lab::topology::leftovers(&id).unwrap();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(!state, "state directory of lab {id} left behind");
}

/// Events recorded so far by (object `Kind/name`, reason), an aggregated Event counted as often as it occurred.
fn events(kube: &KubeLab) -> std::collections::BTreeMap<(String, String), u64> {
    let text = kube.kubectl.run(&["get", "events", "-A", "-o", "json"]).unwrap();
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for e in list["items"].as_array().cloned().unwrap_or_default() {
        let object = format!(
            "{}/{}",
            e["involvedObject"]["kind"].as_str().unwrap_or_default(),
            e["involvedObject"]["name"].as_str().unwrap_or_default()
        );
        let reason = e["reason"].as_str().unwrap_or_default().to_string();
        *out.entry((object, reason)).or_insert(0) += e["count"].as_u64().unwrap_or(1).max(1);
    }
    out
}

/// The hostile suite's flood (20k adverts a second for 10 s from 122 spoofed sources, half valid-looking on
/// random VRIDs and ours, half malformed) against speakers that read the API: what they report reaches the
/// API as a handful of Events (at least one ForeignVRRPRouter), at most the documented 4 Node Events per
/// speaker, not a stream.
#[test]
#[ignore = "needs root and the kube-apiserver binaries (scripts/test.sh installs them)"]
fn a_flood_of_spoofed_adverts_records_a_handful_of_events() {
    use openelb_lab::hostile::{self, ATTACKER_IP, ATTACKER_MAC, FLOOD_VARIETY};
    use openelb_lab::spoof::Sender;
    require(&[Need::Lab]);
    require(&[Need::ApiserverBinaries, Need::Tool("kubectl")]);
    let (speaker_bin, controller_bin) = binaries();
    let cfg = LabConfig::unique(PathBuf::from(env!("CARGO_BIN_EXE_openelb-cli")));
    let id = cfg.id.clone();
    let layout = Layout::from_cluster(cluster(), &id, Some(TrafficPolicy::Cluster)).unwrap();
    let workers: Vec<String> = layout.nodes.iter().filter(|n| n.name != "master1").map(|n| n.name.clone()).collect();
    let mut lab = Lab::build(layout, &cfg).unwrap();
    {
        let kube = start_kube(&lab, &controller_bin);
        let speaker = SpeakerProgram::Openelb(OpenelbSpeakerCommand {
            binary: speaker_bin,
            kubeconfig: Some(kube.kubeconfig.clone()),
            nodes: Some(workers.clone()),
            metrics_addr: Some(hostile::METRICS),
            ..Default::default()
        });
        lab.start_speakers(&speaker).unwrap();
        kube.kubectl.run_stdin(&["apply", "-f", "-"], &seed_yaml()).unwrap();
        kube.publish_endpoints(&lab.layout, &[]).unwrap();
        let holder = lab.wait_holder(None, SETTLE).unwrap();
        assert_client_sees(&lab, &holder);
        let vrid = hostile::wait_master_vrid(&lab, &holder, SETTLE).unwrap();
        let attacker = lab.add_host("attacker", ATTACKER_IP, &ATTACKER_MAC.to_string()).unwrap();
        let sender = Sender::open_in(&attacker.ns, "eth0", ATTACKER_MAC).unwrap();
        let frames = sender.frames(&hostile::flood_mix(&lab, vrid).adverts(FLOOD_VARIETY)).unwrap();

        let before = events(&kube);
        let sent = sender.send_paced(&frames, 20_000.0, Duration::from_secs(10));
        // Events leave the speakers through a queue: give the last ones time to land (nothing to wait for).
        std::thread::sleep(Duration::from_secs(5));
        let new: Vec<((String, String), u64)> = events(&kube)
            .into_iter()
            .map(|(k, n)| (k.clone(), n.saturating_sub(before.get(&k).copied().unwrap_or(0))))
            .filter(|(_, n)| *n > 0)
            .collect();
        let total: u64 = new.iter().map(|(_, n)| n).sum();
        println!("{} adverts sent; {total} Events recorded meanwhile: {new:#?}", sent.sent);
        for node in &workers {
            let on_node: u64 = new.iter().filter(|((o, _), _)| *o == format!("Node/{node}")).map(|(_, n)| n).sum();
            assert!(on_node <= 4, "{on_node} Events on Node {node} during the flood: {new:#?}");
        }
        assert!(total <= 4 * workers.len() as u64 + 4, "{total} Events during the flood: {new:#?}");
        // The flood carries our VRID from unknown sources: each speaker reports it on its Node, and that
        // Event reaches the API (an API server before 1.22 refuses Node Events filed in `default`).
        let reported = new.iter().any(|((o, r), _)| o.starts_with("Node/") && r == "ForeignVRRPRouter");
        assert!(reported, "no ForeignVRRPRouter Event on a Node during the flood: {new:#?}");
    }
    lab.teardown().unwrap();
    drop(lab);
    let (left, state) = openelb_lab::topology::leftovers(&id).unwrap();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(!state, "state directory of lab {id} left behind");
}
