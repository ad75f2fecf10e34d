//! Interop: one `openelb-speaker` and one keepalived (Debian package, VRRPv3) in one VRRP group on the VRID
//! our planner gives, with the priorities it gives. Each is master in turn and the VIP fails over in both
//! directions; a capture decoded by tshark shows our adverts are valid VRRPv3. Root only; skips without
//! keepalived (tshark's part skips without tcpdump/tshark).

mod speaker_common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use speaker_common::{Lab, VIP, have, signal};

const SETTLE: Duration = Duration::from_secs(10);

fn keepalived_config(node: &str, vrid: u8, priority: u8) -> String {
    format!(
        "global_defs {{\n  router_id {node}\n  vrrp_version 3\n  vrrp_garp_master_delay 0\n  \
         vrrp_garp_master_repeat 3\n  enable_script_security\n}}\n\
         vrrp_instance VI_{vrid} {{\n  state BACKUP\n  interface eth0\n  virtual_router_id {vrid}\n  \
         priority {priority}\n  advert_int 0.1\n  virtual_ipaddress {{\n    {VIP}/32 dev eth0\n  }}\n}}\n"
    )
}

fn start_keepalived(lab: &mut Lab, node: &str, vrid: u8, priority: u8) {
    let dir = lab.dir.path().to_path_buf();
    let conf = dir.join(format!("keepalived-{node}.conf"));
    fs::write(&conf, keepalived_config(node, vrid, priority)).unwrap();
    let pid = dir.join(format!("keepalived-{node}.pid"));
    let vrrp_pid = dir.join(format!("keepalived-{node}.vrrp.pid"));
    let ns = lab.node(node).ns.clone();
    let (c, p, v) = (conf.display().to_string(), pid.display().to_string(), vrrp_pid.display().to_string());
    let args = ["netns", "exec", &ns, "keepalived", "-P", "-n", "-l", "-D", "-f", &c, "-p", &p, "-r", &v];
    lab.spawn("keepalived", "keepalived", &args, vec![vrrp_pid.clone()]);
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
fn openelb_speaker_and_keepalived_share_a_group_and_fail_over_both_ways() {
    if !have("keepalived") {
        eprintln!("SKIP: keepalived is not installed (apt-get install -y keepalived)");
        return;
    }
    let Some(mut lab) = Lab::new("kad", 2) else { return };
    let all = lab.all();
    let pref = lab.preference(&all);
    let (ours, theirs) = (pref[0].clone(), pref[1].clone());
    let (vrid, priorities) = lab.group();
    let their_priority = priorities.iter().find(|(n, _)| *n == theirs).map(|(_, p)| *p).unwrap();

    let capture = have("tcpdump") && have("tshark");
    let pcap = lab.dir.path().join("vrrp.pcap");
    if capture {
        let ns = lab.node(&theirs).ns.clone();
        let file = pcap.display().to_string();
        lab.spawn(
            "tcpdump",
            "tcpdump",
            &["netns", "exec", &ns, "tcpdump", "-i", "eth0", "-U", "-w", &file, "ip proto 112"],
            vec![],
        );
        std::thread::sleep(Duration::from_millis(1000));
    } else {
        eprintln!("note: tcpdump or tshark missing; the decoding check is skipped");
    }

    // 1. Both run; ours is the first preference and becomes master; keepalived accepts our adverts (else it
    //    would take over after 3 x 100 ms and we would see two holders).
    //    Ours starts first: on a loaded machine keepalived could otherwise win the start-up race and hold the
    //    VIP until our preempt delay ends, which is correct VRRP but not what this step checks.
    lab.start_speaker(&ours, &[]);
    lab.wait_holders(&all, &[&ours], SETTLE);
    start_keepalived(&mut lab, &theirs, vrid, their_priority);
    std::thread::sleep(Duration::from_millis(500));
    lab.assert_steady(&all, &ours, Duration::from_secs(1));
    let klog = lab.procs["keepalived"].log_text();
    assert!(klog.contains("Entering BACKUP STATE"), "keepalived must run as our backup:\n{klog}");

    if capture {
        let pid = lab.proc("tcpdump").pid();
        signal(pid, "INT");
        lab.proc("tcpdump").wait_exit(Duration::from_secs(5));
        let rows = tshark_rows(&pcap);
        let our_ip = lab.node(&ours).ip.clone();
        let mine: Vec<&Vec<String>> = rows.iter().filter(|r| r.first() == Some(&our_ip)).collect();
        assert!(!mine.is_empty(), "no adverts from {our_ip} captured: {rows:?}");
        eprintln!("tshark decoded {} of our adverts (of {} VRRP packets) as valid VRRPv3", mine.len(), rows.len());
        for r in mine {
            assert_eq!(r[1..], ["3", "1", &vrid.to_string(), "1"], "version, type, VRID, checksum status: {r:?}");
        }
    }

    // 2. openelb -> keepalived: a graceful stop of ours (priority 0), keepalived takes over.
    let pid = lab.proc(&ours).pid();
    signal(pid, "TERM");
    assert_eq!(lab.proc(&ours).wait_exit(SETTLE), Some(0), "{}", lab.logs());
    lab.wait_holders(&all, &[&theirs], SETTLE);
    lab.wait_client_reaches(&lab.node(&theirs).mac.clone(), SETTLE);

    // 3. keepalived is master; ours comes back without preemption and must accept keepalived's adverts.
    lab.start_speaker(&ours, &["--no-preempt"]);
    std::thread::sleep(Duration::from_millis(500));
    lab.assert_steady(&all, &theirs, Duration::from_secs(1));
    let log = lab.procs[&ours].log_text();
    assert!(log.contains("INITIALIZE -> BACKUP") && !log.contains("-> MASTER"), "{log}");

    // 4. keepalived -> openelb: keepalived stops (it sends priority 0 and removes the VIP), ours takes over.
    let pid = lab.proc("keepalived").pid();
    signal(pid, "TERM");
    assert!(lab.proc("keepalived").wait_exit(SETTLE).is_some(), "keepalived did not stop");
    lab.wait_holders(&all, &[&ours], SETTLE);
    lab.assert_steady(&all, &ours, Duration::from_secs(1));
    lab.wait_client_reaches(&lab.node(&ours).mac.clone(), SETTLE);
}
