//! `openelb-speaker` processes on a real (namespaced) Linux network: election, client reachability, crash
//! failover, graceful handover, restart with a stale VIP, partition and heal. Root only (ignored otherwise;
//! scripts/test.sh runs them).
//! Every wait polls with a generous timeout: nothing here asserts timings (the lab bench measures them).

mod support;

use std::time::Duration;

use openelb_lab::in_netns::call_in;
use openelb_lab::{Sig, eventually, netns};
use openelb_net::wire::DecodeFailure;
use openelb_speaker::metrics_addr::DEFAULT_METRICS_PORT;
use support::VIP;
use support::segment::SpeakerSegment;

const SETTLE: Duration = Duration::from_secs(10);
const STEADY: Duration = Duration::from_secs(1);

/// Starts a speaker on every node and waits for the first preference to hold the VIP alone.
fn elected(tag: &str, extra: &[&str]) -> (SpeakerSegment, Vec<String>) {
    let mut lab = SpeakerSegment::new(tag, 3);
    let all = lab.all();
    for n in &all {
        lab.start_speaker(n, extra);
    }
    let pref = lab.preference(&all);
    lab.wait_holders(&all, &[&pref[0]], SETTLE);
    (lab, pref)
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test.sh runs it)"]
fn the_first_preference_holds_the_vip_and_the_client_reaches_it() {
    let (lab, pref) = elected("elect", &[]);
    let all = lab.all();
    lab.assert_steady(&all, &pref[0], STEADY);
    let holder = lab.node(&pref[0]).clone();
    lab.wait_client_reaches(&holder.mac, SETTLE);

    // The logs tell the story: the VRID every node planned, and the holder's transition to MASTER.
    let (vrid, priorities) = lab.group();
    assert_eq!(priorities.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), pref, "priorities follow preference");
    let log = lab.procs[&pref[0]].log_text();
    assert!(log.contains(&format!("vrid={vrid}")), "{log}");
    assert!(log.contains("VRRP state BACKUP -> MASTER"), "{log}");
    assert!(log.contains("gratuitous ARP burst"), "{log}");
    if std::env::var_os("SPEAKER_SHOW_LOGS").is_some() {
        eprintln!("{}", lab.logs());
    }
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test.sh runs it)"]
fn crash_of_the_holder_moves_the_vip_to_the_second_preference() {
    let (mut lab, pref) = elected("crash", &[]);
    lab.wait_client_reaches(&lab.node(&pref[0]).mac.clone(), SETTLE);

    // Crash: the speaker dies without a word and the node drops off the segment.
    lab.proc(&pref[0]).signal(Sig::Kill);
    assert!(lab.proc(&pref[0]).wait_exit(Duration::from_secs(5)).is_some());
    netns::ip_in(&lab.node(&pref[0]).ns, &["link", "set", "eth0", "down"]).unwrap();

    let alive = vec![pref[1].clone(), pref[2].clone()];
    lab.wait_holders(&alive, &[&pref[1]], SETTLE);
    lab.assert_steady(&alive, &pref[1], STEADY);
    lab.wait_client_reaches(&lab.node(&pref[1]).mac.clone(), SETTLE);
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test.sh runs it)"]
fn sigterm_releases_the_vip_exits_zero_and_the_next_node_takes_over() {
    let (mut lab, pref) = elected("term", &[]);
    lab.wait_client_reaches(&lab.node(&pref[0]).mac.clone(), SETTLE);

    lab.proc(&pref[0]).signal(Sig::Term);
    let code = lab.proc(&pref[0]).wait_exit(SETTLE);
    assert_eq!(code, Some(0), "graceful exit\n{}", lab.logs());
    assert!(!lab.segment.has_ip(&pref[0], VIP), "the VIP must be gone from the stopped node");

    let all = lab.all();
    lab.wait_holders(&all, &[&pref[1]], SETTLE);
    lab.assert_steady(&all, &pref[1], STEADY);
    lab.wait_client_reaches(&lab.node(&pref[1]).mac.clone(), SETTLE);
    let log = lab.procs[&pref[1]].log_text();
    assert!(log.contains("priority 0"), "the takeover follows the release advert:\n{log}");
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test.sh runs it)"]
fn a_restarted_speaker_removes_its_stale_vip_and_never_makes_a_second_holder() {
    let mut lab = SpeakerSegment::new("stale", 3);
    let all = lab.all();
    let pref = lab.preference(&all);
    let last = pref[2].clone();

    // Leave a stale VIP behind: the last preference runs alone (so it becomes master), then is killed.
    lab.start_speaker(&last, &[]);
    lab.wait_holders(&all, &[&last], SETTLE);
    lab.proc(&last).signal(Sig::Kill);
    assert!(lab.proc(&last).wait_exit(Duration::from_secs(5)).is_some());
    assert!(lab.segment.has_ip(&last, VIP), "SIGKILL leaves the address behind (the situation under test)");

    lab.start_speaker(&pref[0], &[]);
    lab.start_speaker(&pref[1], &[]);
    lab.wait_holders(&all, &[&pref[0], &last], SETTLE);

    // Restart: the stale copy goes at once, and the node stays a backup.
    lab.start_speaker(&last, &[]);
    lab.wait_holders(&all, &[&pref[0]], SETTLE);
    lab.assert_steady(&all, &pref[0], Duration::from_secs(2));
    let log = lab.procs[&last].log_text();
    assert!(log.contains("removed stale VIP"), "{log}");
    assert!(!log.contains("-> MASTER"), "{log}");
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test.sh runs it)"]
fn a_crashed_holder_restarts_cleanly_and_takes_the_vip_back_once() {
    let (mut lab, pref) = elected("back", &["--preempt-delay", "1s"]);
    let all = lab.all();
    lab.proc(&pref[0]).signal(Sig::Kill);
    assert!(lab.proc(&pref[0]).wait_exit(Duration::from_secs(5)).is_some());
    // The dead node still has the address (nobody removes it), the second preference takes over.
    lab.wait_holders(&all, &[&pref[0], &pref[1]], SETTLE);

    lab.start_speaker(&pref[0], &["--preempt-delay", "1s"]);
    // First the stale copy goes, then after the preempt delay the first preference takes the VIP back.
    lab.wait_holders(&all, &[&pref[0]], SETTLE);
    lab.assert_steady(&all, &pref[0], STEADY);
    let log = lab.procs[&pref[0]].log_text();
    assert!(log.contains("removed stale VIP"), "{log}");
    lab.wait_client_reaches(&lab.node(&pref[0]).mac.clone(), SETTLE);
}

/// Blocks VRRP between two nodes: iptables in both, or bridge port isolation where iptables is unusable.
fn partition(lab: &SpeakerSegment, a: &str, b: &str, on: bool) {
    let (na, nb) = (lab.node(a).clone(), lab.node(b).clone());
    let op = if on { "-A" } else { "-D" };
    let rule = |ns: &str, src: &str| netns::exec(ns, &["iptables", op, "INPUT", "-p", "112", "-s", src, "-j", "DROP"]);
    if rule(&na.ns, nb.ip()).and_then(|_| rule(&nb.ns, na.ip())).is_ok() {
        return;
    }
    eprintln!("iptables unusable in the namespaces; isolating bridge ports instead");
    let flag = if on { "on" } else { "off" };
    for n in [a, b] {
        let port = lab.node(n).port.clone();
        netns::run("bridge", &["-n", lab.segment.switch(), "link", "set", "dev", &port, "isolated", flag]).unwrap();
    }
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test.sh runs it)"]
fn a_partition_makes_two_masters_and_healing_leaves_exactly_one() {
    let (lab, pref) = elected("part", &[]);
    let all = lab.all();
    partition(&lab, &pref[0], &pref[1], true);
    lab.wait_holders(&all, &[&pref[0], &pref[1]], SETTLE);

    partition(&lab, &pref[0], &pref[1], false);
    lab.wait_holders(&all, &[&pref[0]], SETTLE);
    lab.assert_steady(&all, &pref[0], STEADY);
    lab.wait_client_reaches(&lab.node(&pref[0]).mac.clone(), SETTLE);
    assert_eq!(lab.holders(&all), vec![pref[0].clone()], "{VIP}");
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test.sh runs it)"]
fn sighup_reloads_the_manifests_and_moves_the_vip_to_an_eligible_node() {
    let (lab, pref) = elected("hup", &[]);
    let all = lab.all();
    // The holder's Node disappears from the objects: it is no longer a candidate anywhere.
    lab.write_manifests(&[pref[1].clone(), pref[2].clone()]);
    for n in &all {
        lab.procs[n].signal(Sig::Hup);
    }
    lab.wait_holders(&all, &[&pref[1]], SETTLE);
    lab.assert_steady(&all, &pref[1], STEADY);
    let log = lab.procs[&pref[0]].log_text();
    assert!(log.contains("reloaded cluster objects"), "{log}");

    // Back again: the first preference takes it back (after its preempt delay).
    lab.write_manifests(&all);
    for n in &all {
        lab.procs[n].signal(Sig::Hup);
    }
    lab.wait_holders(&all, &[&pref[0]], SETTLE);
    lab.assert_steady(&all, &pref[0], STEADY);
}

/// Sends one VRRPv3 advert for VRID `vrid` from the client to 224.0.0.18 with IP TTL 254: well formed, but
/// it crossed a router as far as RFC 5798 §7.1 is concerned, so every receiver must drop it.
fn send_advert_with_ttl_254(lab: &SpeakerSegment, vrid: u8) {
    use openelb_core::vrrp::Advert;
    use openelb_net::wire::{self, vrrp};
    use std::net::{IpAddr, SocketAddr};
    let client = lab.segment.host("client").unwrap();
    let src: IpAddr = client.ip().parse().unwrap();
    let group: IpAddr = "224.0.0.18".parse().unwrap();
    let advert = Advert { vrid, priority: 254, max_advert_int: 10, addresses: vec![VIP.parse().unwrap()] };
    let payload = wire::encode(&advert, vrrp::Context::new(src, group), &[]).unwrap();
    call_in(&client.ns, move || {
        let protocol = socket2::Protocol::from(112);
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::RAW, Some(protocol)).unwrap();
        sock.bind_device(Some(b"eth0")).unwrap();
        sock.bind(&SocketAddr::new(src, 0).into()).unwrap();
        sock.set_multicast_ttl_v4(254).unwrap();
        sock.send_to(&payload, &SocketAddr::new(group, 0).into()).unwrap();
    });
}

/// `GET path` on `node`'s InternalIP and `port`, from inside its namespace; the whole response.
fn http_get(lab: &SpeakerSegment, node: &str, port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let host = lab.node(node);
    let addr: std::net::IpAddr = host.ip().parse().unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    call_in(&host.ns, move || {
        let Ok(mut s) = std::net::TcpStream::connect((addr, port)) else { return String::new() };
        let _ = s.write_all(request.as_bytes());
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
}

/// The value of `series` (name and labels exactly as exposed) in a /metrics response.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// A backup's interface is deleted and re-created three times: each time the speaker closes the old VRRP
/// socket and its task (the process holds no more sockets than before), resolves the new interface and rejoins
/// as backup, and the VIP never moves. Its /metrics (on the node's InternalIP, the default) count a malformed
/// advert by reason.
#[test]
#[ignore = "needs root: network namespaces (scripts/test.sh runs it)"]
fn a_recreated_interface_leaks_no_socket_and_rejoins_as_backup() {
    let (lab, pref) = elected("recr", &[]);
    let all = lab.all();
    let backup = pref[1].clone();
    let speaker = &lab.procs[&backup];
    let before = speaker.socket_count();
    assert!(before > 0, "the speaker holds sockets");
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let seen = eventually(SETTLE, Duration::from_millis(50), || done().then_some(()));
        assert!(seen.is_ok(), "{what}:\n{}", speaker.log_text());
    };
    for round in 1..=3 {
        lab.segment.recreate_eth0(&backup).unwrap();
        let log = || speaker.log_text();
        wait("the vanished interface noticed", &|| log().matches("interface vanished").count() >= round);
        wait("the old receiver closed", &|| log().matches("closed the VRRP receiver").count() >= round);
        wait("rejoined as backup", &|| log().matches("link up: rejoining as backup").count() >= round);
        wait("no socket more than before", &|| speaker.socket_count() <= before);
    }
    lab.wait_holders(&all, &[&pref[0]], SETTLE);
    lab.assert_steady(&all, &pref[0], STEADY);
    assert_eq!(speaker.socket_count(), before, "sockets after three re-creations:\n{}", speaker.log_text());

    let (vrid, _) = lab.group();
    let series = format!("openelb_vrrp_packets_dropped_total{{reason=\"{}\"}}", DecodeFailure::BadTtl.as_str());
    let dropped = || sample(&http_get(&lab, &backup, DEFAULT_METRICS_PORT, "/metrics"), &series);
    assert_eq!(dropped(), Some(0.0), "every reason is exposed from the start, on the node's InternalIP");
    send_advert_with_ttl_254(&lab, vrid);
    wait("the TTL-254 advert counted", &|| dropped().is_some_and(|n| n >= 1.0));
    lab.assert_steady(&all, &pref[0], STEADY);
}
