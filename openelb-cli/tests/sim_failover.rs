//! `simulate` with the VRRP speakers in virtual time: detection and takeover figures of the timeline, through the
//! real binary and the seed's files. Virtual time is deterministic, so exact bounds are fine here.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use openelb_core::vrrp::state::{master_down_interval, skew_time};
use serde_json::Value;

const ADVERT_CS: u16 = 10;
const DELAY_MS: f64 = 0.1;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_openelb-cli")).args(args).current_dir(root()).output().expect("run openelb-cli")
}

fn json(args: &[&str]) -> Value {
    let o = cli(args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("json output")
}

fn scenario(file: &str, extra: &[&str]) -> Value {
    let path = format!("examples/vip-mode/{file}");
    let mut args = vec!["simulate", "-f", "examples/vip-mode", "--scenario", &path, "-o", "json"];
    args.extend_from_slice(extra);
    json(&args)
}

fn ms(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

fn steps(doc: &Value) -> &Vec<Value> {
    doc["steps"].as_array().expect("steps")
}

/// The VRRP priorities of the seed VIP's group, highest first.
fn priorities(vip: &Value) -> Vec<(String, u8)> {
    vip["priorities"]
        .as_array()
        .expect("priorities")
        .iter()
        .map(|p| (p["node"].as_str().unwrap().to_string(), p["priority"].as_u64().unwrap() as u8))
        .collect()
}

fn mac_of(node: &str) -> &'static str {
    match node {
        "master1" => "52:54:22:a3:9a:d9",
        "worker-p001" => "52:54:22:3a:e6:6e",
        "worker-p002" => "52:54:22:37:6c:7b",
        other => panic!("unexpected node {other}"),
    }
}

fn states(step: &Value, to: &str) -> Vec<(f64, String)> {
    step["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "state" && e["to"] == to)
        .map(|e| (e["at_ms"].as_f64().unwrap(), e["node"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn steady_state_holder_is_the_first_preference_elected_after_its_master_down_interval() {
    let doc = json(&["simulate", "-f", "examples/vip-mode", "-o", "json"]);
    let start = &steps(&doc)[0];
    let vip = &start["vips"][0];
    let prios = priorities(vip);
    assert_eq!(vip["holder"], prios[0].0.as_str(), "{vip}");
    assert_eq!(vip["model"], "vrrp");
    let t = &start["takeovers"][0];
    assert!(t["from"].is_null());
    assert_eq!(t["to"], prios[0].0.as_str());
    // Every node starts as Backup; the highest priority's Master_Down_Interval runs out first.
    let expect = ms(master_down_interval(prios[0].1, ADVERT_CS));
    assert!((t["master_after_ms"].as_f64().unwrap() - expect).abs() < 1e-3, "{t} vs {expect}");
    assert!(doc["conflicts"].as_array().unwrap().is_empty());
}

/// A Service created while the speakers run gets a VIP that is new to every node's plan: its first preference
/// takes it the moment the plan changes instead of after Master_Down_Interval, and nobody else becomes Master.
/// The seed without its Service, so the speakers' first plan has no VRRP group at all: it still counts as one.
#[test]
fn a_service_created_later_is_taken_by_its_first_preference_at_once() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["cluster.yaml", "vip-eip.yaml", "vip-openelb.yaml"] {
        std::fs::copy(root().join("examples/vip-mode").join(f), dir.path().join(f)).unwrap();
    }
    // Not beside the manifests: `-f DIR` reads every file in it.
    let scenario_dir = tempfile::tempdir().unwrap();
    let file = scenario_dir.path().join("scenario.yaml");
    std::fs::write(
        &file,
        "events:\n\
         - at: 5s\n  \
           createService:\n    \
             apiVersion: v1\n    kind: Service\n    metadata: {name: web, namespace: default, annotations: \
             {lb.kubesphere.io/v1alpha1: openelb, eip.openelb.kubesphere.io/v1alpha2: vip-eip}}\n    \
             spec: {selector: {app: vip-openelb}, type: LoadBalancer, ports: [{port: 80, targetPort: 8080}]}\n",
    )
    .unwrap();
    let files = dir.path().to_str().unwrap();
    let doc = json(&["simulate", "-f", files, "--scenario", file.to_str().unwrap(), "-o", "json"]);
    let steps = steps(&doc);
    assert!(steps[0]["vips"].as_array().unwrap().is_empty(), "no Service at start: {}", steps[0]);
    let created = &steps[1];
    let vip = &created["vips"][0];
    let prios = priorities(vip);
    assert_eq!(vip["holder"], prios[0].0.as_str(), "{vip}");
    let t = &created["takeovers"][0];
    assert!(t["from"].is_null(), "{t}");
    assert_eq!(t["to"], prios[0].0.as_str());
    assert_eq!(t["master_after_ms"].as_f64().unwrap(), 0.0, "no Master_Down_Interval to wait: {t}");
    // The client resolves as soon as it pings; well within one advert interval either way.
    assert!(t["neigh_after_ms"].as_f64().unwrap() <= DELAY_MS, "{t}");
    let masters = states(created, "MASTER");
    assert_eq!(masters, vec![(5000.0, prios[0].0.clone())], "only the first preference becomes Master");
    let backups = states(created, "BACKUP");
    assert_eq!(backups.len(), prios.len() - 1, "{backups:?}");
    assert!(doc["conflicts"].as_array().unwrap().is_empty());
}

#[test]
fn node_crash_is_taken_over_by_the_next_preference_within_master_down_interval() {
    let doc = scenario("scenario-node-failure.yaml", &[]);
    let steps = steps(&doc);
    let prios = priorities(&steps[0]["vips"][0]);
    let (first, second) = (&prios[0].0, &prios[1].0);
    let crash = &steps[1];
    assert_eq!(crash["event"], format!("{first} down"), "the scenario crashes the holder");
    let t = &crash["takeovers"][0];
    assert_eq!(t["from"], first.as_str());
    assert_eq!(t["to"], second.as_str());
    // The backup's timer was last restarted by an advert less than one interval before the crash.
    let mdi = ms(master_down_interval(prios[1].1, ADVERT_CS));
    let advert = f64::from(ADVERT_CS) * 10.0;
    let after = t["master_after_ms"].as_f64().unwrap();
    assert!(after > mdi - advert && after <= mdi + DELAY_MS, "MASTER {after} ms after the crash, MDI {mdi} ms");
    // The first gratuitous ARP reaches the client one delivery delay later, which ends the outage.
    let neigh = t["neigh_after_ms"].as_f64().unwrap();
    assert!((neigh - after - DELAY_MS).abs() < 1e-3, "{t}");
    assert!((t["outage_ms"].as_f64().unwrap() - neigh).abs() < 1e-3, "{t}");
    // The timeline says so in words, at that time.
    let masters = states(crash, "MASTER");
    assert_eq!(masters.len(), 1, "{masters:?}");
    assert_eq!(&masters[0].1, second);
    let line = crash["timeline"].as_array().unwrap().iter().find(|e| e["to"] == "MASTER").unwrap();
    assert!(line["text"].as_str().unwrap().contains("GARP sent"), "{line}");
    // State at the end of the step: the data plane shows the new holder, the crashed one keeps a stale address.
    let vip = &crash["vips"][0];
    assert_eq!(vip["holder"], second.as_str());
    assert_eq!(vip["stale_on"][0], first.as_str());
    assert_eq!(vip["ip_neigh"], format!("192.168.0.91 dev eth0 lladdr {} REACHABLE", mac_of(second)));
    // Kubernetes still lists the dead node's Pod as ready: the client reaches one Pod, the other times out.
    assert_eq!(vip["reaches"].as_array().unwrap().len(), 1, "{vip}");
    assert_eq!(vip["timeouts"].as_array().unwrap().len(), 1, "{vip}");
    // The returning first preference takes the VIP back once, after the preempt delay.
    let back = &steps[2]["takeovers"][0];
    assert_eq!(back["to"], first.as_str());
    let after = back["master_after_ms"].as_f64().unwrap();
    assert!((3000.0..=3000.0 + advert + 1.0).contains(&after), "{back}");
    assert!(back["outage_ms"].is_null(), "preemption costs the client nothing: {back}");
}

#[test]
fn graceful_stop_hands_over_in_skew_time() {
    let doc = scenario("scenario-graceful.yaml", &[]);
    let steps = steps(&doc);
    let prios = priorities(&steps[0]["vips"][0]);
    let stop = &steps[1];
    assert_eq!(stop["event"], format!("{} stopped", prios[0].0));
    let t = &stop["takeovers"][0];
    assert_eq!(t["to"], prios[1].0.as_str());
    let expect = ms(skew_time(prios[1].1, ADVERT_CS)) + DELAY_MS;
    let after = t["master_after_ms"].as_f64().unwrap();
    assert!((after - expect).abs() < 1e-3, "MASTER {after} ms after the stop, expected {expect}");
    assert!(t["outage_ms"].as_f64().unwrap() < 10.0, "{t}");
    assert!(stop["vips"][0]["stale_on"].as_array().unwrap().is_empty(), "a graceful stop removes its VIPs");
    // Kubernetes notices after the grace period: a step of its own, and the plan drops the node.
    let notready = &steps[2];
    assert_eq!(notready["event"], format!("{} NotReady (node grace expired)", prios[0].0));
    assert_eq!(notready["at_ms"], 50_000);
    let cands: Vec<&str> =
        notready["vips"][0]["candidates"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(!cands.contains(&prios[0].0.as_str()), "{cands:?}");
    // The handover by the new plan keeps the holder: no outage.
    assert_eq!(notready["vips"][0]["holder"], prios[1].0.as_str());
    assert!(notready["timeline"].as_array().unwrap().iter().all(|e| e["kind"] != "lost"), "{notready}");
}

#[test]
fn link_down_on_the_holder_moves_the_vip_and_link_up_takes_it_back() {
    let doc = scenario("scenario-graceful.yaml", &[]);
    let steps = steps(&doc);
    let down = steps.iter().find(|s| s["event"].as_str().unwrap().ends_with("link down")).unwrap();
    let up = steps.iter().find(|s| s["event"].as_str().unwrap().ends_with("link up")).unwrap();
    let node = down["event"].as_str().unwrap().trim_end_matches(" link down");
    assert_ne!(down["vips"][0]["holder"], node);
    assert_eq!(down["takeovers"].as_array().unwrap().len(), 1);
    assert_eq!(up["vips"][0]["holder"], node);
}

#[test]
fn partition_yields_two_masters_and_heal_returns_to_one_holder() {
    let doc = scenario("scenario-partition.yaml", &[]);
    let steps = steps(&doc);
    let prios = priorities(&steps[0]["vips"][0]);
    let first = prios[0].0.as_str();

    // Split: the far side elects its own master; the client hears both, a conflict is reported.
    let split = &steps[1];
    let masters = states(split, "MASTER");
    assert_eq!(masters.len(), 1, "one new MASTER beside the one that kept running: {masters:?}");
    let vip = &split["vips"][0];
    let holders: Vec<&str> = vip["holders"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
    assert_eq!(holders.len(), 2, "{vip}");
    assert!(holders.contains(&first) && holders.contains(&prios[1].0.as_str()));
    assert_eq!(vip["answering"].as_array().unwrap().len(), 2);
    let conflicts = doc["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let at = conflicts[0]["at_ms"].as_f64().unwrap();
    assert!((10_000.0..20_000.0).contains(&at), "conflicts only while the partition lasts: {at}");

    // Heal: the lower master steps down at once; one holder, and the client finds it again.
    let heal = &steps[2];
    let backups = states(heal, "BACKUP");
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert!(backups[0].0 - 20_000.0 <= f64::from(ADVERT_CS) * 10.0, "{backups:?}");
    let vip = &heal["vips"][0];
    assert_eq!(vip["holders"].as_array().unwrap().len(), 1, "{vip}");
    assert_eq!(vip["holder"], first);
    assert_eq!(vip["ip_neigh"], format!("192.168.0.91 dev eth0 lladdr {} REACHABLE", mac_of(first)));

    // Client on the holder's side: the far side has its own master, but the client never sees two answers.
    let side = &steps[3];
    let vip = &side["vips"][0];
    assert_eq!(vip["holders"].as_array().unwrap().len(), 2, "{vip}");
    assert_eq!(vip["answering"].as_array().unwrap().len(), 1, "{vip}");
    assert_eq!(vip["holder"], first);
    assert!(side["timeline"].as_array().unwrap().iter().all(|e| e["kind"] != "lost"), "{side}");
    let last = steps.last().unwrap();
    assert_eq!(last["vips"][0]["holders"].as_array().unwrap().len(), 1);
    assert!(last["partitions"].as_array().unwrap().is_empty());
}

#[test]
fn local_policy_and_pod_moves_carry_the_vip_to_a_node_with_a_ready_pod() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scenario.yaml");
    // Replica 1 of the seed's Deployment runs on worker-p002, the VIP's first preference.
    std::fs::write(
        &file,
        "events:\n\
         - {at: 5s, patchService: {service: default/vip-svc, externalTrafficPolicy: Local}}\n\
         - {at: 10s, podReady: {deployment: vip-openelb, replica: 1, ready: false}}\n\
         - {at: 20s, podMove: {deployment: vip-openelb, replica: 0, node: master1}}\n",
    )
    .unwrap();
    let doc = json(&["simulate", "-f", "examples/vip-mode", "--scenario", file.to_str().unwrap(), "-o", "json"]);
    let steps = steps(&doc);
    let local = &steps[1]["vips"][0];
    assert_eq!(local["holder"], "worker-p002", "{local}");
    // The Pod on the holder is not ready: only worker-p001 has one, and it takes the VIP.
    let moved = &steps[2];
    let vip = &moved["vips"][0];
    assert_eq!(vip["candidates"], serde_json::json!(["worker-p001"]));
    assert_eq!(vip["holder"], "worker-p001", "{vip}");
    assert_eq!(vip["ip_neigh"], format!("192.168.0.91 dev eth0 lladdr {} REACHABLE", mac_of("worker-p001")));
    assert_eq!(vip["reaches"].as_array().unwrap().len(), 1);
    assert_eq!(moved["takeovers"][0]["to"], "worker-p001");
    // The ready Pod is rescheduled to master1: the VIP follows it.
    let vip = &steps[3]["vips"][0];
    assert_eq!(vip["holder"], "master1", "{vip}");
    assert_eq!(vip["holders"].as_array().unwrap().len(), 1);
    assert!(doc["conflicts"].as_array().unwrap().is_empty());
}

#[test]
fn a_one_second_advert_interval_fails_over_like_keepalived_at_its_default() {
    let doc = scenario("scenario-node-failure.yaml", &["--advert-interval", "1s"]);
    let crash = &steps(&doc)[1];
    let t = &crash["takeovers"][0];
    let prio = priorities(&steps(&doc)[0]["vips"][0])[1].1;
    let mdi = ms(master_down_interval(prio, 100));
    let after = t["master_after_ms"].as_f64().unwrap();
    assert!(after > mdi - 1000.0 && after <= mdi + DELAY_MS, "{after} vs {mdi}");
    assert_eq!(doc["settings"]["advert_interval_ms"], 1000.0);
}

#[test]
fn table_output_shows_the_timeline_with_virtual_times() {
    let o = cli(&["simulate", "-f", "examples/vip-mode", "--scenario", "examples/vip-mode/scenario-node-failure.yaml"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(out.contains("t=10.000  worker-p002 crashes"), "{out}");
    let line =
        out.lines().find(|l| l.contains("MASTER for 192.168.0.91") && l.contains("t=10.")).expect("takeover line");
    assert!(line.contains("GARP sent"), "{line}");
    assert!(out.contains("takeover 192.168.0.91: worker-p002 -> "), "{out}");
}

#[test]
fn partition_warnings_go_to_stderr() {
    let o = cli(&["simulate", "-f", "examples/vip-mode", "--scenario", "examples/vip-mode/scenario-partition.yaml"]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("warning:") && err.contains("answer ARP for 192.168.0.91"), "{err}");
}

#[test]
fn bad_inputs_fail_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.yaml");
    std::fs::write(&file, "events:\n- {at: 1s, partition: {a: [nosuchnode]}}\n").unwrap();
    let o = cli(&["simulate", "-f", "examples/vip-mode", "--scenario", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nosuchnode") && err.contains("events[0]"), "{err}");

    let o = cli(&["simulate", "-f", "examples/vip-mode", "--advert-interval", "15ms"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--advert-interval"));
}

#[test]
fn lossy_runs_are_reproducible_from_their_seed() {
    let a = cli(&[
        "simulate",
        "-f",
        "examples/vip-mode",
        "--scenario",
        "examples/vip-mode/scenario-node-failure.yaml",
        "-o",
        "json",
        "--loss",
        "0.2",
        "--seed",
        "42",
    ]);
    let b = cli(&[
        "simulate",
        "-f",
        "examples/vip-mode",
        "--scenario",
        "examples/vip-mode/scenario-node-failure.yaml",
        "-o",
        "json",
        "--loss",
        "0.2",
        "--seed",
        "42",
    ]);
    assert!(a.status.success() && b.status.success());
    assert_eq!(a.stdout, b.stdout);
    let lossless = scenario("scenario-node-failure.yaml", &[]);
    let lossy: Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_ne!(lossy["steps"], lossless["steps"], "a lossy segment changes the timeline");
    let bad = cli(&["simulate", "-f", "examples/vip-mode", "--loss", "1.5"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--loss 1.5"));
}
