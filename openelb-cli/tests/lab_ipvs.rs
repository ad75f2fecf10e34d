//! Root tests of what kube-proxy's IPVS mode does to the nodes: every node binds the LoadBalancer IP to
//! `kube-ipvs0` (here a bridge without ports: this kernel has no `dummy` link) with the kernel's default ARP
//! settings, so without help every node answers ARP for the VIP. With openelb-speaker's ARP filter (the default)
//! the client's `arping` sees exactly one answerer, the holder, before and after the holder crashes; with
//! `--ipvs-arp-filter off` (the negative control) it sees more than one. docs/ipvs.md says why and how.
//! Each test builds its own lab and checks that none of its namespaces is left; nothing here is timed.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use openelb_core::model::TrafficPolicy;
use openelb_lab::speaker_program::{ENV_SPEAKER, find_openelb_speaker};
use openelb_lab::{Lab, LabConfig, Layout, Need, OpenelbSpeakerCommand, SpeakerProgram, eventually, netns, require};

const SETTLE: Duration = Duration::from_secs(30);
/// ARP requests per count: one a second.
const REQUESTS: u32 = 3;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/vip-mode")
}

/// The seed's lab with kube-ipvs0 on every node, then the speakers (with `extra_args`) started.
fn build(extra_args: &[&str]) -> Lab {
    require(&[Need::Lab, Need::Tool("arping")]);
    let binary = find_openelb_speaker().unwrap_or_else(|| {
        panic!("openelb-speaker binary not found (${ENV_SPEAKER} or next to the test binary): run `cargo build --workspace`")
    });
    let extra_args = extra_args.iter().map(|s| s.to_string()).collect();
    let speaker = SpeakerProgram::Openelb(OpenelbSpeakerCommand { binary, extra_args, ..Default::default() });
    let cfg = LabConfig::unique(PathBuf::from(env!("CARGO_BIN_EXE_openelb-cli")));
    let layout = Layout::from_paths(&[examples()], &cfg.id, Some(TrafficPolicy::Cluster)).unwrap();
    let mut lab = Lab::build(layout, &cfg).unwrap();
    let vip = format!("{}/32", lab.layout.vip);
    for node in &lab.layout.nodes {
        netns::ip_in(&node.ns, &["link", "add", "kube-ipvs0", "type", "bridge"]).unwrap();
        netns::ip_in(&node.ns, &["addr", "add", &vip, "dev", "kube-ipvs0"]).unwrap();
        let ignore = netns::exec(&node.ns, &["sysctl", "-n", "net.ipv4.conf.all.arp_ignore"]).unwrap();
        assert_eq!(ignore.trim(), "0", "{}: the kernel's default ARP settings", node.name);
    }
    lab.start_speakers(&speaker).unwrap();
    lab
}

fn finish(lab: Lab) {
    lab.finish().unwrap();
}

fn vip(lab: &Lab) -> Ipv4Addr {
    lab.layout.vip
}

fn mac(lab: &Lab, node: &str) -> String {
    lab.layout.node(node).unwrap().mac_string().to_uppercase()
}

fn answerers(lab: &Lab) -> BTreeSet<String> {
    openelb_lab::arping::answerers(&lab.layout.client_ns, "eth0", vip(lab), REQUESTS).unwrap()
}

/// Node names of the answering MACs, for messages.
fn named(lab: &Lab, macs: &BTreeSet<String>) -> Vec<String> {
    macs.iter()
        .map(|m| lab.layout.nodes.iter().find(|n| mac(lab, &n.name) == *m).map_or(m.clone(), |n| n.name.clone()))
        .collect()
}

/// Waits until the client's arping sees only `holder` answer, then checks it holds for another round.
fn assert_only_answerer(lab: &Lab, holder: &str) {
    let want = BTreeSet::from([mac(lab, holder)]);
    let mut seen = BTreeSet::new();
    let settled = eventually(SETTLE, Duration::from_millis(100), || {
        seen = answerers(lab);
        (seen == want).then_some(())
    });
    assert!(
        settled.is_ok(),
        "ARP answerers for {} should be only the holder {holder}, saw {:?}; speaker logs in {}",
        vip(lab),
        named(lab, &seen),
        lab.dir.display()
    );
    let again = answerers(lab);
    assert_eq!(again, want, "a later round: {:?}", named(lab, &again));
}

/// The speaker's log lines about the ARP filter and its VRRP state changes on `node`.
fn filter_log(lab: &mut Lab, node: &str) -> Vec<String> {
    let text = lab.speaker_on(node).map(|s| s.log_text()).unwrap_or_default();
    let wanted = ["ARP filter", "kube-ipvs0", "VRRP state"];
    text.lines().filter(|l| wanted.iter().any(|w| l.contains(w))).map(str::to_string).collect()
}

#[test]
#[ignore = "needs root: network namespaces, arping (scripts/test.sh runs it)"]
fn kube_ipvs0_with_the_filter_has_one_arp_answerer_before_and_after_a_failover() {
    let mut lab = build(&[]);
    let holder = lab.wait_holder(None, SETTLE).unwrap();
    assert_only_answerer(&lab, &holder);
    for node in lab.layout.nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>() {
        let log = filter_log(&mut lab, &node);
        assert!(log.iter().any(|l| l.contains("ARP filter set up")), "{node}: {log:#?}");
    }

    lab.crash(&holder).unwrap();
    let next = lab.wait_holder(Some(&holder), SETTLE).unwrap();
    assert_only_answerer(&lab, &next);
    let log = filter_log(&mut lab, &next);
    eprintln!("{next} after the takeover: {log:#?}");
    assert!(log.iter().any(|l| l.contains("ARP filter updated")), "{next}: {log:#?}");
    finish(lab);
}

#[test]
#[ignore = "needs root: network namespaces, arping (scripts/test.sh runs it)"]
fn kube_ipvs0_without_the_filter_has_every_node_answer() {
    let mut lab = build(&["--ipvs-arp-filter", "off"]);
    let holder = lab.wait_holder(None, SETTLE).unwrap();
    let seen = answerers(&lab);
    eprintln!("answerers with the filter off: {:?}", named(&lab, &seen));
    assert!(
        seen.len() > 1,
        "the negative control: with the filter off more than one node answers: {:?}",
        named(&lab, &seen)
    );
    assert!(seen.contains(&mac(&lab, &holder)));
    let log = filter_log(&mut lab, &holder);
    assert!(log.iter().any(|l| l.contains("--ipvs-arp-filter off") && l.contains("strictARP")), "{log:#?}");
    finish(lab);
}
