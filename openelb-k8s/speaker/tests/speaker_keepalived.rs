//! Interop: one `openelb-speaker` and one keepalived (Debian package, VRRPv3) in one VRRP group on the VRID
//! our planner gives, with the priorities it gives. Each is master in turn and the VIP fails over in both
//! directions; a capture decoded by tshark shows our adverts are valid VRRPv3. Needs root, keepalived, tcpdump
//! and tshark (ignored otherwise; scripts/test.sh installs them and runs it).

mod support;

use std::fs;
use std::process::Command;
use std::time::Duration;

use openelb_lab::{Need, Sig, eventually, require};
use support::VIP;
use support::segment::SpeakerSegment;

const SETTLE: Duration = Duration::from_secs(10);

fn keepalived_config(node: &str, vrid: u8, priority: u8) -> String {
    format!(
        "global_defs {{\n  router_id {node}\n  vrrp_version 3\n  vrrp_garp_master_delay 0\n  \
         vrrp_garp_master_repeat 3\n  enable_script_security\n}}\n\
         vrrp_instance VI_{vrid} {{\n  state BACKUP\n  interface eth0\n  virtual_router_id {vrid}\n  \
         priority {priority}\n  advert_int 0.1\n  virtual_ipaddress {{\n    {VIP}/32 dev eth0\n  }}\n}}\n"
    )
}

fn start_keepalived(lab: &mut SpeakerSegment, node: &str, vrid: u8, priority: u8) {
    let dir = lab.dir.path().to_path_buf();
    let conf = dir.join(format!("keepalived-{node}.conf"));
    fs::write(&conf, keepalived_config(node, vrid, priority)).unwrap();
    let pid = dir.join(format!("keepalived-{node}.pid"));
    let vrrp_pid = dir.join(format!("keepalived-{node}.vrrp.pid"));
    let (c, p, v) = (conf.display().to_string(), pid.display().to_string(), vrrp_pid.display().to_string());
    let argv: Vec<String> =
        ["keepalived", "-P", "-n", "-l", "-D", "-f", &c, "-p", &p, "-r", &v].into_iter().map(String::from).collect();
    lab.spawn("keepalived", node, &argv, vec![vrrp_pid.clone()]);
}

/// `ip.src|vrrp.version|vrrp.type|vrrp.virt_rtr_id|vrrp.checksum.status` per captured VRRP packet.
fn tshark_rows(pcap: &std::path::Path) -> Vec<Vec<String>> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-o", "vrrp.v3_checksum_as_in_v2:FALSE", "-Y", "vrrp", "-T", "fields", "-E", "separator=|"])
        .args(["-e", "ip.src", "-e", "vrrp.version", "-e", "vrrp.type", "-e", "vrrp.virt_rtr_id"])
        .args(["-e", "vrrp.checksum.status"])
        .output()
        .unwrap();
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split('|').map(str::to_string).collect()).collect()
}

#[test]
#[ignore = "needs root, keepalived and tshark (scripts/test.sh installs them and runs it)"]
fn openelb_speaker_and_keepalived_share_a_group_and_fail_over_both_ways() {
    require(&[Need::Root, Need::Tool("keepalived"), Need::Tool("tcpdump"), Need::Tool("tshark")]);
    let mut lab = SpeakerSegment::new("kad", 2);
    let all = lab.all();
    let pref = lab.preference(&all);
    let (ours, theirs) = (pref[0].clone(), pref[1].clone());
    let (vrid, priorities) = lab.group();
    let their_priority = priorities.iter().find(|(n, _)| *n == theirs).map(|(_, p)| *p).unwrap();

    let pcap = lab.dir.path().join("vrrp.pcap");
    let file = pcap.display().to_string();
    let argv: Vec<String> =
        ["tcpdump", "-i", "eth0", "-U", "-w", &file, "ip proto 112"].into_iter().map(String::from).collect();
    lab.spawn("tcpdump", &theirs, &argv, vec![]);
    let listening = eventually(SETTLE, Duration::from_millis(20), || {
        lab.procs["tcpdump"].log_text().contains("listening on").then_some(())
    });
    assert!(listening.is_ok(), "tcpdump did not start:\n{}", lab.logs());

    // 1. Both run; ours is the first preference and becomes master; keepalived accepts our adverts (else it
    //    would take over after 3 x 100 ms and we would see two holders).
    //    Ours starts first: on a loaded machine keepalived could otherwise win the start-up race and hold the
    //    VIP until our preempt delay ends, which is correct VRRP but not what this step checks.
    lab.start_speaker(&ours, &[]);
    lab.wait_holders(&all, &[&ours], SETTLE);
    start_keepalived(&mut lab, &theirs, vrid, their_priority);
    let backup = eventually(SETTLE, Duration::from_millis(20), || {
        lab.procs["keepalived"].log_text().contains("Entering BACKUP STATE").then_some(())
    });
    assert!(backup.is_ok(), "keepalived must run as our backup:\n{}", lab.logs());
    lab.assert_steady(&all, &ours, Duration::from_secs(1));

    {
        lab.proc("tcpdump").signal(Sig::Int);
        lab.proc("tcpdump").wait_exit(Duration::from_secs(5));
        let rows = tshark_rows(&pcap);
        let our_ip = lab.node(&ours).ip().to_string();
        let mine: Vec<&Vec<String>> = rows.iter().filter(|r| r.first() == Some(&our_ip)).collect();
        assert!(!mine.is_empty(), "no adverts from {our_ip} captured: {rows:?}");
        eprintln!("tshark decoded {} of our adverts (of {} VRRP packets) as valid VRRPv3", mine.len(), rows.len());
        for r in mine {
            assert_eq!(r[1..], ["3", "1", &vrid.to_string(), "1"], "version, type, VRID, checksum status: {r:?}");
        }
    }

    // 2. openelb -> keepalived: a graceful stop of ours (priority 0), keepalived takes over.
    lab.proc(&ours).signal(Sig::Term);
    assert_eq!(lab.proc(&ours).wait_exit(SETTLE), Some(0), "{}", lab.logs());
    lab.wait_holders(&all, &[&theirs], SETTLE);
    lab.wait_client_reaches(&lab.node(&theirs).mac.clone(), SETTLE);

    // 3. keepalived is master; ours comes back without preemption and must accept keepalived's adverts.
    lab.start_speaker(&ours, &["--no-preempt"]);
    let backup = eventually(SETTLE, Duration::from_millis(20), || {
        lab.procs[&ours].log_text().contains("INITIALIZE -> BACKUP").then_some(())
    });
    assert!(backup.is_ok(), "ours must come back as a backup:\n{}", lab.logs());
    lab.assert_steady(&all, &theirs, Duration::from_secs(1));
    let log = lab.procs[&ours].log_text();
    assert!(log.contains("INITIALIZE -> BACKUP") && !log.contains("-> MASTER"), "{log}");

    // 4. keepalived -> openelb: keepalived stops (it sends priority 0 and removes the VIP), ours takes over.
    lab.proc("keepalived").signal(Sig::Term);
    assert!(lab.proc("keepalived").wait_exit(SETTLE).is_some(), "keepalived did not stop");
    lab.wait_holders(&all, &[&ours], SETTLE);
    lab.assert_steady(&all, &ours, Duration::from_secs(1));
    lab.wait_client_reaches(&lab.node(&ours).mac.clone(), SETTLE);
}
