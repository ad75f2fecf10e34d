//! Root tests of the network-namespace lab with keepalived as the VRRP speaker: the seed's Step 4 under
//! `Cluster` and `Local`, crash failover, graceful handover and `lab down`. Each test builds its own lab
//! (`oelb-<pid>x<n>-...`) and checks at the end that none of its namespaces is left. They need root and
//! keepalived (ignored otherwise; `scripts/test.sh` runs them). Nothing here is timed: timings belong to
//! `lab bench`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use openelb_core::model::TrafficPolicy;
use openelb_lab::{Lab, LabConfig, Layout, Need, SpeakerProgram, netns, require};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/vip-mode")
}

fn require_lab() {
    require(&[Need::Lab]);
    require(&[Need::Tool("keepalived")]);
}

fn speaker() -> SpeakerProgram {
    SpeakerProgram::keepalived(Duration::from_millis(100))
}

fn build(policy: TrafficPolicy) -> Lab {
    require_lab();
    let cfg = LabConfig::unique(PathBuf::from(env!("CARGO_BIN_EXE_openelb-cli")));
    let layout = Layout::from_paths(&[examples()], &cfg.id, Some(policy)).unwrap();
    let mut lab = Lab::build(layout, &cfg).unwrap();
    lab.start_speakers(&speaker()).unwrap();
    lab
}

fn assert_removed(id: &str) {
    let (left, state) = openelb_lab::topology::leftovers(id).unwrap();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(!state, "state directory of lab {id} left behind");
}

fn client_pings(lab: &Lab) -> bool {
    lab.client_pings(20)
}

fn holder_mac(lab: &Lab, node: &str) -> String {
    lab.layout.node(node).unwrap().mac_string()
}

#[test]
#[ignore = "needs root and keepalived: network namespaces (scripts/test.sh runs it)"]
fn seed_step4_cluster_client_sees_holder_mac_and_both_pods() {
    let mut lab = build(TrafficPolicy::Cluster);
    let id = lab.layout.id.clone();
    let holder = lab.wait_holder(None, Duration::from_secs(10)).unwrap();
    assert!(lab.layout.candidates.contains(&holder));
    assert!(client_pings(&lab));
    let neigh = lab.client_neigh().unwrap().expect("the client has a neighbour entry for the VIP");
    assert_eq!(neigh.mac.as_deref(), Some(holder_mac(&lab, &holder).as_str()), "{neigh:?}");
    let all: BTreeSet<String> = lab.layout.pods.iter().map(|p| p.name.clone()).collect();
    assert_eq!(all.len(), 2);
    assert_eq!(lab.pods_seen(4).unwrap(), all, "Cluster: requests reach the Pods on every node");
    lab.teardown().unwrap();
    drop(lab);
    assert_removed(&id);
}

#[test]
#[ignore = "needs root and keepalived: network namespaces (scripts/test.sh runs it)"]
fn seed_step4_local_client_reaches_only_the_holders_pod() {
    let mut lab = build(TrafficPolicy::Local);
    let id = lab.layout.id.clone();
    assert!(!lab.layout.candidates.iter().any(|c| c == "master1"), "master1 runs no Pod");
    let holder = lab.wait_holder(None, Duration::from_secs(10)).unwrap();
    assert!(client_pings(&lab));
    let neigh = lab.client_neigh().unwrap().expect("neighbour entry");
    assert_eq!(neigh.mac.as_deref(), Some(holder_mac(&lab, &holder).as_str()));
    let local: BTreeSet<String> = lab.layout.pods.iter().filter(|p| p.node == holder).map(|p| p.name.clone()).collect();
    assert_eq!(local.len(), 1);
    assert_eq!(lab.pods_seen(4).unwrap(), local, "Local: only the holder's Pod answers");
    lab.teardown().unwrap();
    drop(lab);
    assert_removed(&id);
}

#[test]
#[ignore = "needs root and keepalived: network namespaces (scripts/test.sh runs it)"]
fn crash_of_the_holder_moves_the_vip_and_the_clients_neighbour_entry() {
    let mut lab = build(TrafficPolicy::Cluster);
    let id = lab.layout.id.clone();
    let old = lab.wait_holder(None, Duration::from_secs(10)).unwrap();
    assert!(client_pings(&lab), "prime the client's entry: Linux only updates existing entries from GARP");
    lab.crash(&old).unwrap();
    let new = lab.wait_holder(Some(&old), Duration::from_secs(10)).unwrap();
    assert_ne!(new, old);
    assert!(client_pings(&lab), "the client reaches the VIP again after the takeover");
    let neigh = lab.client_neigh().unwrap().expect("neighbour entry");
    assert_eq!(neigh.mac.as_deref(), Some(holder_mac(&lab, &new).as_str()), "{neigh:?}");
    lab.resync_kube_proxy().unwrap();
    let alive: BTreeSet<String> = lab.layout.pods.iter().filter(|p| p.node != old).map(|p| p.name.clone()).collect();
    assert_eq!(lab.pods_seen(2).unwrap(), alive);
    drop(lab); // the guard alone must clean up
    assert_removed(&id);
}

#[test]
#[ignore = "needs root and keepalived: network namespaces (scripts/test.sh runs it)"]
fn graceful_stop_of_the_holder_hands_the_vip_over() {
    let mut lab = build(TrafficPolicy::Cluster);
    let id = lab.layout.id.clone();
    let old = lab.wait_holder(None, Duration::from_secs(10)).unwrap();
    assert!(client_pings(&lab));
    lab.stop_speaker(&old).unwrap();
    let new = lab.wait_holder(Some(&old), Duration::from_secs(10)).unwrap();
    assert_eq!(lab.holders().unwrap(), vec![new.clone()], "keepalived removes the VIP on SIGTERM");
    assert!(client_pings(&lab));
    let neigh = lab.client_neigh().unwrap().expect("neighbour entry");
    assert_eq!(neigh.mac.as_deref(), Some(holder_mac(&lab, &new).as_str()));
    drop(lab);
    assert_removed(&id);
}

#[test]
#[ignore = "needs root and keepalived: network namespaces (scripts/test.sh runs it)"]
fn lab_down_removes_a_detached_lab() {
    require_lab();
    let cfg = LabConfig::unique(PathBuf::from(env!("CARGO_BIN_EXE_openelb-cli")));
    let layout = Layout::from_paths(&[examples()], &cfg.id, None).unwrap();
    let namespaces = layout.namespaces();
    let state = Lab::build(layout, &cfg).unwrap().detach();
    assert_eq!(state.namespaces, namespaces);
    let listed = netns::list().unwrap();
    assert!(namespaces.iter().all(|n| listed.contains(n)), "detached lab still exists");
    openelb_lab::topology::down(&cfg.state_root, &cfg.id).unwrap();
    assert_removed(&cfg.id);
}
