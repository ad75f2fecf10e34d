//! Root tests of the hostile-LAN suite (openelb-lab's `hostile`): the seed's lab with openelb-speaker on every
//! node, a client pinging the VIP every 10 ms, and a host at 192.0.2.250 that is no node. Spoofed adverts on
//! the VIP's VRID (priority 255 and 254, Max_Adver_Int 4095, to the group, the master and a backup; priority 0
//! to a backup), a foreign keepalived on the VIP's VRID with its own VIP, and a flood of valid-looking and
//! malformed adverts: the client loses at most one ping, the VIP never leaves its holder, no speaker changes
//! between BACKUP and MASTER, and a flood costs a bounded number of log lines. Each case builds its own lab;
//! the cases run one at a time (a flood or a second lab would disturb the pings of another). Nothing is timed:
//! the speakers' CPU is printed, not asserted (`openelb-cli lab hostile` prints the whole table).

use std::path::PathBuf;
use std::sync::Mutex;

use openelb_lab::hostile::{Case, HostileInput, Outcome, Target, header, row, run_case};
use openelb_lab::speaker_program::{ENV_SPEAKER, find_openelb_speaker};
use openelb_lab::{Need, require};

/// One lab at a time: the machine's CPU is part of what a lost ping measures.
static SERIAL: Mutex<()> = Mutex::new(());

/// Lines one speaker may log during a 10 s flood: a few reports and plan changes, never one per advert.
const FLOOD_LOG_LINES: u64 = 40;

fn input() -> HostileInput {
    let speaker = find_openelb_speaker().unwrap_or_else(|| {
        panic!(
            "openelb-speaker binary not found (looked at ${ENV_SPEAKER} and next to the test binary): run \
             `cargo build --workspace` first"
        )
    });
    HostileInput {
        paths: vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/vip-mode")],
        cli_exe: PathBuf::from(env!("CARGO_BIN_EXE_openelb-cli")),
        speaker,
    }
}

fn run(case: Case) -> Outcome {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let outcome = run_case(&input(), case).unwrap_or_else(|e| panic!("{e:#}"));
    println!("{}\n{}", header(), row(&outcome));
    outcome
}

/// The client lost at most one ping, the VIP never left its holder and nobody else held it, and no speaker
/// went from BACKUP to MASTER or back.
fn assert_undisturbed(o: &Outcome) {
    assert!(o.lost_pings <= 1, "{}: {} pings lost: {o:#?}", o.case, o.lost_pings);
    assert_eq!(o.address_changes, 0, "{}: the VIP was added to or removed from a node: {o:#?}", o.case);
    assert_eq!(o.neighbour_changes, 0, "{}: the client's neighbour entry changed: {o:#?}", o.case);
    assert_eq!(o.duplicate_replies, 0, "{}: two hosts answered for the VIP: {o:#?}", o.case);
    assert_eq!(o.holders_after, vec![o.holder.clone()], "{}: holders at the end: {o:#?}", o.case);
    assert_eq!(o.master_changes, 0, "{}: a speaker changed between BACKUP and MASTER: {o:#?}", o.case);
}

fn spoofs(priority: u8, max_advert_int: u16) {
    require(&[Need::Lab]);
    for target in [Target::Group, Target::Master, Target::Backup] {
        let o = run(Case::Spoof { priority, max_advert_int, target });
        assert_eq!(o.sent.sent, 30, "{}: every spoof went out: {o:#?}", o.case);
        assert_undisturbed(&o);
    }
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test.sh runs it)"]
fn spoofed_priority_255_to_the_group_the_master_or_a_backup_moves_nothing() {
    spoofs(255, 10);
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test.sh runs it)"]
fn spoofed_priority_254_to_the_group_the_master_or_a_backup_moves_nothing() {
    spoofs(254, 10);
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test.sh runs it)"]
fn spoofed_max_adver_int_4095_to_the_group_the_master_or_a_backup_moves_nothing() {
    spoofs(254, 4095);
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test.sh runs it)"]
fn spoofed_priority_0_to_a_backup_moves_nothing() {
    require(&[Need::Lab]);
    let o = run(Case::Spoof { priority: 0, max_advert_int: 10, target: Target::Backup });
    assert_eq!(o.sent.sent, 30);
    assert_undisturbed(&o);
}

/// keepalived on our VIP's VRID: our speakers report it and move off its VRID without an outage; it stays
/// master of its own VIP, which no node ever holds; its priority-0 advert when it stops moves nothing of ours.
fn foreign_keepalived(priority: u8) {
    require(&[Need::Lab, Need::Tool("keepalived")]);
    let o = run(Case::Keepalived { priority });
    assert_undisturbed(&o);
    let f = o.foreign.clone().unwrap_or_else(|| panic!("no foreign outcome: {o:#?}"));
    assert!(f.reported, "no speaker reported the foreign router: {o:#?}");
    assert!(f.vrid_after.is_some() && f.vrid_after != o.vrid, "our group stayed on the foreign VRID: {o:#?}");
    assert!(f.lost_pings <= 1, "keepalived's VIP lost {} pings: {o:#?}", f.lost_pings);
    assert_eq!(f.holders, vec!["keepalived".to_string()], "holders of keepalived's VIP: {o:#?}");
    assert_eq!(f.master_changes, 0, "keepalived changed state after becoming master: {o:#?}");
}

#[test]
#[ignore = "needs root and keepalived: network namespaces (scripts/test.sh runs it)"]
fn a_foreign_keepalived_at_priority_254_on_our_vrid_moves_nothing_and_is_left_alone() {
    foreign_keepalived(254);
}

#[test]
#[ignore = "needs root and keepalived: network namespaces (scripts/test.sh runs it)"]
fn a_foreign_keepalived_at_priority_100_on_our_vrid_moves_nothing_and_is_left_alone() {
    foreign_keepalived(100);
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test.sh runs it)"]
fn a_flood_of_valid_looking_and_malformed_adverts_moves_nothing_and_logs_a_few_lines() {
    require(&[Need::Lab]);
    let o = run(Case::Flood { rate: 20_000, seconds: 10 });
    assert_eq!(o.sent.sent + o.sent.failed, 200_000, "{o:#?}");
    assert_undisturbed(&o);
    assert!(
        o.log_lines_max <= FLOOD_LOG_LINES,
        "a speaker logged {} lines during the flood (at most {FLOOD_LOG_LINES}): {o:#?}",
        o.log_lines_max
    );
}
