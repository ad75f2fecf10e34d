//! RFC 5798 §6 conformance of one VRRP instance: recorded event sequences and the exact actions each event must
//! produce, plus properties over arbitrary input sequences.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use openelb_core::vrrp::consts::MULTICAST_V4;
use openelb_core::vrrp::refusal::AdvertRefusal;
use openelb_core::vrrp::state::{
    Action, Config, ConfigError, Input, Instance, State, TimerKind, default_peer_interval_bounds, master_down_interval,
    skew_time,
};
use openelb_core::vrrp::transition::TransitionReason;
use openelb_core::vrrp::{Advert, Received, Time};
use proptest::prelude::*;

const VRID: u8 = 7;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

fn ms(v: f64) -> Time {
    Duration::from_nanos((v * 1_000_000.0).round() as u64)
}

fn vips() -> Vec<IpAddr> {
    vec![ip(91), ip(92)]
}

/// Us: 192.0.2.3, priority 100, 100 ms adverts, preempt after 250 ms, 3 GARPs 50 ms apart.
fn config() -> Config {
    Config { preempt_delay: ms(250.0), ..Config::new(VRID, ip(3), vips()) }
}

fn instance(cfg: Config) -> Instance {
    Instance::new(cfg).unwrap()
}

fn advert(priority: u8, interval_cs: u16) -> Advert {
    Advert { vrid: VRID, priority, max_advert_int: interval_cs, addresses: vips() }
}

fn rx(src: u8, priority: u8) -> Input {
    rx_int(src, priority, 10)
}

fn rx_int(src: u8, priority: u8, interval_cs: u16) -> Input {
    Input::Advert(received(src, advert(priority, interval_cs)))
}

/// From 192.0.2.`src` to the VRRP group, TTL 255.
fn received(src: u8, advert: Advert) -> Received {
    Received { src: ip(src), dst: MULTICAST_V4.into(), ttl: 255, advert }
}

fn changed(from: State, to: State, reason: TransitionReason) -> Action {
    Action::StateChanged { from, to, reason }
}

fn arm(kind: TimerKind, at: Time) -> Action {
    Action::ArmTimer { kind, at }
}

/// The actions of becoming Master at `now` with the default config (advert 100 ms).
fn become_master(from: State, now: Time, reason: TransitionReason, cancels: &[TimerKind], priority: u8) -> Vec<Action> {
    let mut v = vec![changed(from, State::Master, reason)];
    v.extend(cancels.iter().map(|k| Action::CancelTimer(*k)));
    v.extend([
        Action::SendAdvert(advert(priority, 10)),
        Action::AddVips(vips()),
        Action::Announce { addresses: vips(), count: 3, spacing: ms(50.0) },
        arm(TimerKind::AdverTimer, now + ms(100.0)),
    ]);
    v
}

fn announce() -> Action {
    Action::Announce { addresses: vips(), count: 3, spacing: ms(50.0) }
}

/// Feeds `steps` and checks every step's actions exactly.
fn run(inst: &mut Instance, steps: Vec<(Time, Input, Vec<Action>)>) {
    for (i, (now, input, expected)) in steps.into_iter().enumerate() {
        let got = inst.handle(now, input.clone());
        assert_eq!(got, expected, "step {i}: {input:?} at {now:?}");
    }
}

#[test]
fn skew_and_master_down_interval_are_exact_in_nanoseconds() {
    // (256 - 100) * 100 ms / 256 = 60.9375 ms; 3 * 100 ms + that = 360.9375 ms.
    assert_eq!(skew_time(100, 10), Duration::from_nanos(60_937_500));
    assert_eq!(master_down_interval(100, 10), Duration::from_nanos(360_937_500));
    assert_eq!(skew_time(250, 10), Duration::from_nanos(2_343_750));
    assert_eq!(master_down_interval(254, 100), Duration::from_nanos(3_007_812_500));
    assert_eq!(skew_time(1, 4095), Duration::from_nanos(255 * 40_950_000_000 / 256));
}

#[test]
fn startup_goes_backup_then_master_after_master_down_interval() {
    let mut i = instance(config());
    let down = Duration::from_nanos(360_937_500);
    run(
        &mut i,
        vec![
            (
                ms(0.0),
                Input::Start,
                vec![
                    changed(State::Initialize, State::Backup, TransitionReason::Startup),
                    arm(TimerKind::MasterDown, down),
                ],
            ),
            // Early or unarmed expiries are ignored.
            (ms(360.0), Input::TimerExpired(TimerKind::MasterDown), vec![]),
            (ms(360.0), Input::TimerExpired(TimerKind::AdverTimer), vec![]),
            (
                down,
                Input::TimerExpired(TimerKind::MasterDown),
                become_master(State::Backup, down, TransitionReason::MasterDown, &[], 100),
            ),
            (
                down + ms(100.0),
                Input::TimerExpired(TimerKind::AdverTimer),
                vec![Action::SendAdvert(advert(100, 10)), arm(TimerKind::AdverTimer, down + ms(200.0))],
            ),
            // A second Start changes nothing.
            (down + ms(150.0), Input::Start, vec![]),
        ],
    );
    assert_eq!(i.state(), State::Master);
    assert_eq!(i.deadline(TimerKind::AdverTimer), Some(down + ms(200.0)));
    assert_eq!(i.deadline(TimerKind::MasterDown), None);
}

#[test]
fn adverts_keep_their_grid_when_the_timer_fires_late_and_restart_it_after_a_stall() {
    let mut i = instance(config());
    let down = Duration::from_nanos(360_937_500);
    i.handle(ms(0.0), Input::Start);
    i.handle(down, Input::TimerExpired(TimerKind::MasterDown));
    let send = || Action::SendAdvert(advert(100, 10));
    run(
        &mut i,
        vec![
            // 1.4 ms late: the next one is still due 100 ms after this one was.
            (
                down + ms(101.4),
                Input::TimerExpired(TimerKind::AdverTimer),
                vec![send(), arm(TimerKind::AdverTimer, down + ms(200.0))],
            ),
            // Late by more than an interval: one advert now, the next a whole interval later (no burst).
            (
                down + ms(350.0),
                Input::TimerExpired(TimerKind::AdverTimer),
                vec![send(), arm(TimerKind::AdverTimer, down + ms(450.0))],
            ),
        ],
    );
}

fn master_at(t: Time, cfg: Config) -> Instance {
    let mut i = instance(cfg);
    i.handle(Duration::ZERO, Input::Start);
    let down = i.deadline(TimerKind::MasterDown).unwrap();
    assert!(down <= t);
    i.handle(t, Input::TimerExpired(TimerKind::MasterDown));
    assert_eq!(i.state(), State::Master);
    i
}

#[test]
fn higher_priority_advert_demotes_master() {
    let mut i = master_at(ms(400.0), config());
    run(
        &mut i,
        vec![(
            ms(450.0),
            rx(2, 200),
            vec![
                changed(State::Master, State::Backup, TransitionReason::HigherPriorityMaster),
                Action::CancelTimer(TimerKind::AdverTimer),
                Action::RemoveVips(vips()),
                arm(TimerKind::MasterDown, ms(450.0) + ms(360.9375)),
            ],
        )],
    );
    assert_eq!(i.master().map(|m| (m.src, m.priority)), Some((ip(2), 200)));
}

#[test]
fn equal_priority_tie_is_broken_by_the_greater_primary_address() {
    // A master at equal priority from a greater address wins.
    let mut i = master_at(ms(400.0), config());
    run(
        &mut i,
        vec![(
            ms(450.0),
            rx(4, 100),
            vec![
                changed(State::Master, State::Backup, TransitionReason::HigherPriorityMaster),
                Action::CancelTimer(TimerKind::AdverTimer),
                Action::RemoveVips(vips()),
                arm(TimerKind::MasterDown, ms(450.0) + ms(360.9375)),
            ],
        )],
    );
    // From a smaller address it loses, and we assert at once (keepalived behaviour), announcing our VIPs again
    // because the other master may have pointed clients at itself.
    let mut i = master_at(ms(400.0), config());
    run(&mut i, vec![(ms(450.0), rx(2, 100), vec![Action::SendAdvert(advert(100, 10)), announce()])]);
    assert_eq!(i.state(), State::Master);
    // Lower priority from a greater address: still ours (no second burst within a second, and no second
    // extra advert within an advert interval).
    run(&mut i, vec![(ms(460.0), rx(9, 99), vec![])]);
    run(&mut i, vec![(ms(550.0), rx(9, 99), vec![Action::SendAdvert(advert(100, 10))])]);
    assert_eq!(i.state(), State::Master);
}

#[test]
fn priority_zero_advert_gives_fast_takeover_at_skew_time() {
    let mut i = instance(config());
    let skew = ms(60.9375);
    run(
        &mut i,
        vec![
            (
                ms(0.0),
                Input::Start,
                vec![
                    changed(State::Initialize, State::Backup, TransitionReason::Startup),
                    arm(TimerKind::MasterDown, ms(360.9375)),
                ],
            ),
            (ms(50.0), rx(4, 200), vec![arm(TimerKind::MasterDown, ms(50.0) + ms(360.9375))]),
            (ms(100.0), rx(4, 0), vec![arm(TimerKind::MasterDown, ms(100.0) + skew)]),
            (
                ms(100.0) + skew,
                Input::TimerExpired(TimerKind::MasterDown),
                become_master(State::Backup, ms(100.0) + skew, TransitionReason::MasterReleased, &[], 100),
            ),
        ],
    );
}

#[test]
fn master_hearing_a_lower_master_answers_at_most_once_per_interval_and_announces_at_most_once_per_second() {
    let mut i = master_at(ms(400.0), config());
    let assert_only = vec![Action::SendAdvert(advert(100, 10))];
    let with_burst = vec![Action::SendAdvert(advert(100, 10)), announce()];
    run(
        &mut i,
        vec![
            // The first lower-priority advert of this mastership: assert and announce.
            (ms(1000.0), rx(2, 50), with_burst.clone()),
            // Within the advert interval: neither (a flood must not become a flood of ours).
            (ms(1050.0), rx(2, 50), vec![]),
            // A persistent lower master (one that cannot hear us): one answer per interval, bursts once a second.
            (ms(1100.0), rx(2, 50), assert_only.clone()),
            (ms(1999.0), rx(2, 50), assert_only.clone()),
            (ms(2050.0), rx(2, 50), vec![announce()]),
            (ms(2100.0), rx(2, 50), assert_only.clone()),
            (ms(2500.0), rx(2, 50), assert_only.clone()),
            // A release is not a competing master: no burst.
            (ms(3500.0), rx(2, 0), vec![Action::SendAdvert(advert(100, 10)), arm(TimerKind::AdverTimer, ms(3600.0))]),
            // Its reassertion counts as this interval's extra advert.
            (ms(3550.0), rx(2, 0), vec![]),
        ],
    );
    // Held back: 1050 (advert and burst), 1100/1999/2100/2500 (burst), 2050 (advert), 3550 (advert).
    assert_eq!(i.counters().replies_suppressed, 8);
    // Losing and winning the role again starts a new mastership: its first lower advert is announced at once.
    i.handle(ms(3600.0), rx(4, 200));
    assert_eq!(i.state(), State::Backup);
    let down = i.deadline(TimerKind::MasterDown).unwrap();
    i.handle(down, Input::TimerExpired(TimerKind::MasterDown));
    assert_eq!(i.state(), State::Master);
    run(&mut i, vec![(down + ms(10.0), rx(2, 50), with_burst.clone())]);
    // No burst without GARPs configured.
    let mut quiet = master_at(ms(400.0), Config { garp_count: 0, ..config() });
    run(&mut quiet, vec![(ms(500.0), rx(2, 50), assert_only)]);
}

#[test]
fn retire_leaves_like_shutdown_without_the_priority_zero_advert() {
    let mut i = master_at(ms(400.0), config());
    run(
        &mut i,
        vec![(
            ms(450.0),
            Input::Retire,
            vec![
                changed(State::Master, State::Initialize, TransitionReason::Retired),
                Action::CancelTimer(TimerKind::AdverTimer),
                Action::RemoveVips(vips()),
            ],
        )],
    );
    assert!(!i.is_enabled());
    assert_eq!(i.handle(ms(500.0), Input::InterfaceUp), vec![]);
}

#[test]
fn master_receiving_priority_zero_reasserts() {
    let mut i = master_at(ms(400.0), config());
    run(
        &mut i,
        vec![(ms(420.0), rx(4, 0), vec![Action::SendAdvert(advert(100, 10)), arm(TimerKind::AdverTimer, ms(520.0))])],
    );
}

#[test]
fn preempt_waits_the_delay_from_the_first_lower_advert_then_takes_over_once() {
    let cfg = Config { priority: 250, ..config() };
    let mdi = master_down_interval(250, 10); // 302.34375 ms
    let mut i = instance(cfg);
    run(
        &mut i,
        vec![
            (
                ms(0.0),
                Input::Start,
                vec![
                    changed(State::Initialize, State::Backup, TransitionReason::Startup),
                    arm(TimerKind::MasterDown, mdi),
                ],
            ),
            (
                ms(10.0),
                rx(4, 100),
                vec![arm(TimerKind::MasterDown, ms(10.0) + mdi), arm(TimerKind::PreemptDelay, ms(260.0))],
            ),
            // Further lower adverts refresh Master_Down_Timer but do not move the delay.
            (ms(110.0), rx(4, 100), vec![arm(TimerKind::MasterDown, ms(110.0) + mdi)]),
            (ms(210.0), rx(4, 100), vec![arm(TimerKind::MasterDown, ms(210.0) + mdi)]),
            (
                ms(260.0),
                Input::TimerExpired(TimerKind::PreemptDelay),
                become_master(
                    State::Backup,
                    ms(260.0),
                    TransitionReason::PreemptDelayElapsed,
                    &[TimerKind::MasterDown],
                    250,
                ),
            ),
            // The old master's next advert is lower: we assert, not flap. It crossed our takeover advert, so it
            // may have refreshed clients' neighbour entries after our takeover burst: we announce once more.
            (ms(310.0), rx(4, 100), vec![Action::SendAdvert(advert(250, 10)), announce()]),
        ],
    );
}

#[test]
fn preempt_delay_is_cancelled_by_a_master_that_deserves_the_role() {
    let cfg = Config { priority: 150, ..config() };
    let mdi = master_down_interval(150, 10);
    let mut i = instance(cfg);
    run(
        &mut i,
        vec![
            (
                ms(0.0),
                Input::Start,
                vec![
                    changed(State::Initialize, State::Backup, TransitionReason::Startup),
                    arm(TimerKind::MasterDown, mdi),
                ],
            ),
            (
                ms(10.0),
                rx(4, 100),
                vec![arm(TimerKind::MasterDown, ms(10.0) + mdi), arm(TimerKind::PreemptDelay, ms(260.0))],
            ),
            (
                ms(60.0),
                rx(5, 200),
                vec![Action::CancelTimer(TimerKind::PreemptDelay), arm(TimerKind::MasterDown, ms(60.0) + mdi)],
            ),
            (ms(260.0), Input::TimerExpired(TimerKind::PreemptDelay), vec![]),
            // A lower master again: the delay restarts from this sighting.
            (
                ms(300.0),
                rx(4, 100),
                vec![arm(TimerKind::MasterDown, ms(300.0) + mdi), arm(TimerKind::PreemptDelay, ms(550.0))],
            ),
            // Our priority drops to the master's: no more reason to preempt.
            (ms(310.0), Input::SetPriority(100), vec![Action::CancelTimer(TimerKind::PreemptDelay)]),
        ],
    );
    assert_eq!(i.state(), State::Backup);
}

#[test]
fn preempt_delay_zero_preempts_on_the_first_lower_advert() {
    let cfg = Config { priority: 250, preempt_delay: Duration::ZERO, ..config() };
    let mut i = instance(cfg);
    i.handle(ms(0.0), Input::Start);
    let got = i.handle(ms(10.0), rx(4, 100));
    assert_eq!(
        got,
        become_master(
            State::Backup,
            ms(10.0),
            TransitionReason::PreemptingLowerPriority,
            &[TimerKind::MasterDown],
            250
        )
    );
}

#[test]
fn no_preempt_follows_a_lower_priority_master() {
    let cfg = Config { priority: 250, preempt: false, ..config() };
    let mdi = master_down_interval(250, 10);
    let mut i = instance(cfg);
    i.handle(ms(0.0), Input::Start);
    for k in 0..50u32 {
        let now = ms(10.0) + ms(100.0) * k;
        assert_eq!(i.handle(now, rx(4, 100)), vec![arm(TimerKind::MasterDown, now + mdi)]);
    }
    assert_eq!(i.state(), State::Backup);
    assert_eq!(i.deadline(TimerKind::PreemptDelay), None);
}

#[test]
fn shutdown_sends_priority_zero_then_removes_vips() {
    let mut i = master_at(ms(400.0), config());
    run(
        &mut i,
        vec![
            (
                ms(450.0),
                Input::Shutdown,
                vec![
                    changed(State::Master, State::Initialize, TransitionReason::Shutdown),
                    Action::CancelTimer(TimerKind::AdverTimer),
                    Action::SendAdvert(advert(0, 10)),
                    Action::RemoveVips(vips()),
                ],
            ),
            (ms(460.0), rx(4, 200), vec![]),
            (ms(470.0), Input::InterfaceUp, vec![]),
        ],
    );
    assert_eq!(i.counters().dropped.get(AdvertRefusal::NotRunning), 1);
    // Shutdown of a Backup just stops its timers.
    let mut b = instance(config());
    b.handle(ms(0.0), Input::Start);
    assert_eq!(
        b.handle(ms(1.0), Input::Shutdown),
        vec![
            changed(State::Backup, State::Initialize, TransitionReason::Shutdown),
            Action::CancelTimer(TimerKind::MasterDown)
        ]
    );
}

#[test]
fn interface_down_goes_to_initialize_with_vips_removed_and_up_restarts() {
    let mut i = master_at(ms(400.0), config());
    run(
        &mut i,
        vec![
            (
                ms(450.0),
                Input::InterfaceDown,
                vec![
                    changed(State::Master, State::Initialize, TransitionReason::InterfaceDown),
                    Action::CancelTimer(TimerKind::AdverTimer),
                    Action::RemoveVips(vips()),
                ],
            ),
            (ms(460.0), Input::Start, vec![]),
            (
                ms(500.0),
                Input::InterfaceUp,
                vec![
                    changed(State::Initialize, State::Backup, TransitionReason::InterfaceUp),
                    arm(TimerKind::MasterDown, ms(500.0) + ms(360.9375)),
                ],
            ),
        ],
    );
}

#[test]
fn master_adver_interval_is_learned_from_a_master_sending_1s_adverts() {
    let mut i = instance(config());
    i.handle(ms(0.0), Input::Start);
    // 3 * 1 s + (256 - 100) * 1 s / 256 = 3.609375 s
    assert_eq!(i.handle(ms(50.0), rx_int(4, 200, 100)), vec![arm(TimerKind::MasterDown, ms(50.0) + ms(3609.375))]);
    assert_eq!(i.master_adver_interval(), 100);
    assert_eq!(i.master_down_interval(), ms(3609.375));
    // A release from it uses the learned interval's skew: 609.375 ms.
    assert_eq!(i.handle(ms(1050.0), rx_int(4, 0, 100)), vec![arm(TimerKind::MasterDown, ms(1050.0) + ms(609.375))]);
    // Our own adverts keep our configured interval.
    i.handle(ms(1659.375), Input::TimerExpired(TimerKind::MasterDown));
    assert_eq!(i.state(), State::Master);
    assert_eq!(i.deadline(TimerKind::AdverTimer), Some(ms(1759.375)));
}

#[test]
fn zero_advert_interval_from_a_peer_counts_as_one_centisecond() {
    let mut i = instance(config());
    i.handle(ms(0.0), Input::Start);
    i.handle(ms(10.0), rx_int(4, 200, 0));
    assert_eq!(i.master_adver_interval(), 1);
    assert_eq!(i.deadline(TimerKind::MasterDown), Some(ms(10.0) + master_down_interval(100, 1)));
}

#[test]
fn adverts_with_bad_ttl_other_vrid_other_family_or_our_own_source_are_dropped() {
    let mut i = instance(config());
    i.handle(ms(0.0), Input::Start);
    let base = received(4, advert(200, 10));
    let bad_ttl = Received { ttl: 254, ..base.clone() };
    let other_vrid = Received { advert: Advert { vrid: VRID + 1, ..base.advert.clone() }, ..base.clone() };
    let v6 = Received { src: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 4)), ..base.clone() };
    let own = Received { src: ip(3), ..base.clone() };
    for r in [bad_ttl, other_vrid, v6, own] {
        assert_eq!(i.handle(ms(10.0), Input::Advert(r.clone())), vec![], "{r:?}");
    }
    let c = i.counters();
    for r in [AdvertRefusal::Ttl, AdvertRefusal::Vrid, AdvertRefusal::Family, AdvertRefusal::OwnAdvert] {
        assert_eq!(c.dropped.get(r), 1, "{r}");
    }
    assert_eq!((c.received, c.accepted, c.dropped.total()), (4, 0, 4));
    assert_eq!(i.deadline(TimerKind::MasterDown), Some(ms(360.9375)));
}

#[test]
fn address_mismatch_is_counted_not_reported_per_advert_and_the_advert_still_counts() {
    let mut i = instance(config());
    i.handle(ms(0.0), Input::Start);
    let other = received(4, Advert { vrid: VRID, priority: 200, max_advert_int: 10, addresses: vec![ip(93), ip(92)] });
    let mdi = ms(360.9375);
    assert_eq!(i.handle(ms(10.0), Input::Advert(other.clone())), vec![arm(TimerKind::MasterDown, ms(10.0) + mdi)]);
    assert_eq!(i.handle(ms(110.0), Input::Advert(other)), vec![arm(TimerKind::MasterDown, ms(110.0) + mdi)]);
    assert_eq!(i.last_mismatch(), Some(&(ip(4), vec![ip(92), ip(93)])));
    // Same list in another order: no mismatch.
    let same = received(4, Advert { addresses: vec![ip(92), ip(91)], ..advert(200, 10) });
    assert_eq!(i.handle(ms(210.0), Input::Advert(same)), vec![arm(TimerKind::MasterDown, ms(210.0) + mdi)]);
    let c = i.counters();
    // Two adverts with another list, one change worth a report.
    assert_eq!((c.address_mismatches, c.mismatch_changes, c.notable()), (2, 1, 1));
}

#[test]
fn address_change_in_master_adds_announces_removes_and_readvertises() {
    let mut i = master_at(ms(400.0), config());
    let got = i.handle(ms(450.0), Input::SetAddresses(vec![ip(93), ip(92), ip(92)]));
    assert_eq!(
        got,
        vec![
            Action::AddVips(vec![ip(93)]),
            Action::Announce { addresses: vec![ip(93)], count: 3, spacing: ms(50.0) },
            Action::RemoveVips(vec![ip(91)]),
            Action::SendAdvert(Advert {
                vrid: VRID,
                priority: 100,
                max_advert_int: 10,
                addresses: vec![ip(92), ip(93)]
            }),
        ]
    );
    assert_eq!(i.addresses(), &[ip(92), ip(93)]);
}

#[test]
fn priority_change_in_master_is_advertised_at_once_and_clamped() {
    let mut i = master_at(ms(400.0), config());
    assert_eq!(i.handle(ms(410.0), Input::SetPriority(0)), vec![Action::SendAdvert(advert(1, 10))]);
    assert_eq!(i.handle(ms(420.0), Input::SetPriority(255)), vec![Action::SendAdvert(advert(254, 10))]);
    assert_eq!(i.handle(ms(430.0), Input::SetPriority(254)), vec![]);
}

#[test]
fn start_as_master_takes_the_vips_without_waiting() {
    let mut i = instance(config());
    assert_eq!(
        i.handle(ms(5.0), Input::StartAsMaster),
        become_master(State::Initialize, ms(5.0), TransitionReason::StartupHoldingReplaced, &[], 100)
    );
}

#[test]
fn start_unclaimed_takes_the_vips_without_waiting_and_says_why() {
    let mut i = instance(config());
    assert_eq!(
        i.handle(ms(5.0), Input::StartUnclaimed),
        become_master(State::Initialize, ms(5.0), TransitionReason::StartupUnclaimed, &[], 100)
    );
}

#[test]
fn start_unclaimed_on_a_down_link_waits_and_comes_back_as_backup() {
    let mut i = instance(config());
    assert_eq!(i.handle(ms(1.0), Input::InterfaceDown), vec![]);
    assert_eq!(i.handle(ms(2.0), Input::StartUnclaimed), vec![]);
    assert_eq!(i.state(), State::Initialize);
    let down = master_down_interval(100, 10);
    assert_eq!(
        i.handle(ms(3.0), Input::InterfaceUp),
        vec![
            changed(State::Initialize, State::Backup, TransitionReason::InterfaceUp),
            arm(TimerKind::MasterDown, ms(3.0) + down)
        ]
    );
}

#[test]
fn two_unclaimed_starts_at_equal_priority_leave_the_higher_primary_address() {
    // Us at 192.0.2.3 against a peer that also started as Master at our priority.
    let mut i = instance(config());
    i.handle(ms(5.0), Input::StartUnclaimed);
    let lower = i.handle(ms(6.0), rx(2, 100));
    assert_eq!(lower, vec![Action::SendAdvert(advert(100, 10)), announce()], "we win and say so at once");
    assert_eq!(i.state(), State::Master);
    let mut j = instance(config());
    j.handle(ms(5.0), Input::StartUnclaimed);
    let higher = j.handle(ms(6.0), rx(4, 100));
    assert_eq!(higher[0], changed(State::Master, State::Backup, TransitionReason::HigherPriorityMaster));
    assert!(higher.contains(&Action::RemoveVips(vips())));
    assert_eq!(j.state(), State::Backup);
}

#[test]
fn invalid_configs_are_refused_with_the_value() {
    let e = |cfg: Config| Instance::new(cfg).unwrap_err();
    assert_eq!(e(Config { vrid: 0, ..config() }), ConfigError::Vrid);
    assert_eq!(e(Config { priority: 255, ..config() }), ConfigError::Priority(255));
    assert_eq!(e(Config { priority: 0, ..config() }), ConfigError::Priority(0));
    assert_eq!(e(Config { advert_interval: 4096, ..config() }), ConfigError::AdvertInterval(4096));
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let err = e(Config { addresses: vec![ip(91), v6], ..config() });
    assert_eq!(err, ConfigError::Family { vip: v6, primary: ip(3) });
    assert!(err.to_string().contains("::1"));
    for (min, max) in [(0, 10), (20, 10), (1, 4096)] {
        let err = e(Config { peer_interval_bounds: Some(min..=max), ..config() });
        assert_eq!(err, ConfigError::PeerIntervalBounds { min, max });
    }
}

// ---- what the LAN may send ----

#[test]
fn default_peer_interval_bounds_are_a_factor_of_ten_around_our_own() {
    assert_eq!(default_peer_interval_bounds(10), 1..=100);
    assert_eq!(default_peer_interval_bounds(100), 10..=1000);
    assert_eq!(default_peer_interval_bounds(1000), 100..=4095);
    assert_eq!(default_peer_interval_bounds(1), 1..=10);
    assert_eq!(config().peer_interval_bounds(), 1..=100);
}

/// A Backup that follows 192.0.2.4 (priority 200) since 50 ms.
fn backup_following_4() -> Instance {
    let mut i = instance(config());
    i.handle(ms(0.0), Input::Start);
    i.handle(ms(50.0), rx(4, 200));
    assert_eq!(i.master().map(|m| m.src), Some(ip(4)));
    i
}

#[test]
fn priority_255_is_never_accepted_in_any_state() {
    let mut b = backup_following_4();
    let deadline = b.deadline(TimerKind::MasterDown);
    assert_eq!(b.handle(ms(60.0), rx(5, 255)), vec![]);
    assert_eq!(
        (b.state(), b.deadline(TimerKind::MasterDown), b.master().map(|m| m.src)),
        (State::Backup, deadline, Some(ip(4)))
    );
    let mut m = master_at(ms(400.0), config());
    assert_eq!(m.handle(ms(450.0), rx(5, 255)), vec![]);
    assert_eq!(m.state(), State::Master);
    assert_eq!(
        b.counters().dropped.get(AdvertRefusal::Priority255) + m.counters().dropped.get(AdvertRefusal::Priority255),
        2
    );
    assert!(AdvertRefusal::Priority255.is_notable());
}

#[test]
fn a_max_adver_int_outside_the_bounds_is_not_adopted() {
    // One advert with 4095 cs used to keep the VIP off every node for 126 s.
    let mut b = backup_following_4();
    let deadline = b.deadline(TimerKind::MasterDown);
    assert_eq!(b.handle(ms(60.0), rx_int(4, 200, 4095)), vec![]);
    assert_eq!((b.master_adver_interval(), b.deadline(TimerKind::MasterDown)), (10, deadline));
    assert_eq!(b.counters().dropped.get(AdvertRefusal::IntervalOutOfBounds), 1);
    // The bound is inclusive, and configurable.
    assert_eq!(b.handle(ms(70.0), rx_int(4, 200, 100)), vec![arm(TimerKind::MasterDown, ms(70.0) + ms(3609.375))]);
    let mut wide = instance(Config { peer_interval_bounds: Some(1..=4095), ..config() });
    wide.handle(ms(0.0), Input::Start);
    wide.handle(ms(10.0), rx_int(4, 200, 4095));
    assert_eq!(wide.master_adver_interval(), 4095);
    // A master ignores one too (it never adopts the interval, but the advert is not one of ours either).
    let mut m = master_at(ms(400.0), config());
    assert_eq!(m.handle(ms(450.0), rx_int(4, 254, 4095)), vec![]);
    assert_eq!(m.state(), State::Master);
}

#[test]
fn a_release_is_honoured_only_from_the_master_the_backup_follows() {
    // Priority-0 adverts unicast to a backup from another node used to flip it 60 times in 30 spoofs.
    let mut b = backup_following_4();
    let deadline = b.deadline(TimerKind::MasterDown);
    let unicast = |src: u8| Input::Advert(Received { dst: ip(3), ..received(src, advert(0, 10)) });
    for k in 0..30 {
        assert_eq!(b.handle(ms(60.0 + f64::from(k)), unicast(5)), vec![], "spoof {k}");
    }
    assert_eq!((b.state(), b.deadline(TimerKind::MasterDown)), (State::Backup, deadline));
    assert_eq!(b.counters().dropped.get(AdvertRefusal::ReleaseNotFromMaster), 30);
    // From the master itself, unicast or multicast: Master_Down_Timer drops to Skew_Time.
    assert_eq!(b.handle(ms(100.0), unicast(4)), vec![arm(TimerKind::MasterDown, ms(100.0) + ms(60.9375))]);
    // A backup that has heard no master yet ignores a release.
    let mut fresh = instance(config());
    fresh.handle(ms(0.0), Input::Start);
    assert_eq!(fresh.handle(ms(10.0), rx(4, 0)), vec![]);
}

#[test]
fn only_adverts_to_the_vrrp_group_or_to_us_are_accepted() {
    let mut b = backup_following_4();
    let to = |dst: IpAddr| Input::Advert(Received { dst, ..received(4, advert(200, 10)) });
    assert_eq!(b.handle(ms(60.0), to(ip(99))), vec![]);
    assert_eq!(b.handle(ms(60.0), to(IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12)))), vec![]);
    assert_eq!(b.counters().dropped.get(AdvertRefusal::BadDestination), 2);
    assert_eq!(b.handle(ms(70.0), to(ip(3))), vec![arm(TimerKind::MasterDown, ms(70.0) + ms(360.9375))]);
    assert_eq!(b.handle(ms(80.0), to(MULTICAST_V4.into())), vec![arm(TimerKind::MasterDown, ms(80.0) + ms(360.9375))]);
    let c = b.counters();
    assert_eq!((c.received, c.accepted, c.dropped.total()), (5, 3, 2));
}

#[test]
fn drop_reasons_have_stable_distinct_labels() {
    let labels: BTreeSet<&str> = AdvertRefusal::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(labels.len(), AdvertRefusal::ALL.len());
    for r in AdvertRefusal::ALL {
        let mut c = openelb_core::vrrp::refusal::RefusalCounts::default();
        c.add(r);
        assert_eq!((c.get(r), c.total()), (1, 1), "{r}");
        assert_eq!(c.to_string(), format!("{} 1", r.as_str()));
    }
    assert_eq!(AdvertRefusal::UnknownSource.as_str(), "unknown_source");
    assert_eq!(AdvertRefusal::IntervalOutOfBounds.as_str(), "interval_out_of_bounds");
}

// ---- properties ----

fn arb_input() -> impl Strategy<Value = Input> {
    let kind = prop_oneof![Just(TimerKind::AdverTimer), Just(TimerKind::MasterDown), Just(TimerKind::PreemptDelay)];
    let addr = prop_oneof![(1u8..8).prop_map(ip), Just(IpAddr::V6(Ipv6Addr::LOCALHOST))];
    let received = (
        addr.clone(),
        prop_oneof![Just(IpAddr::from(MULTICAST_V4)), Just(ip(3)), addr.clone()],
        prop_oneof![Just(255u8), any::<u8>()],
        prop_oneof![Just(VRID), any::<u8>()],
        any::<u8>(),
        any::<u16>(),
        prop::collection::vec(addr.clone(), 0..3),
    )
        .prop_map(|(src, dst, ttl, vrid, priority, max_advert_int, addresses)| {
            Input::Advert(Received { src, dst, ttl, advert: Advert { vrid, priority, max_advert_int, addresses } })
        });
    prop_oneof![
        1 => Just(Input::Start),
        1 => Just(Input::StartAsMaster),
        1 => Just(Input::StartUnclaimed),
        1 => Just(Input::Shutdown),
        1 => Just(Input::Retire),
        1 => Just(Input::InterfaceDown),
        1 => Just(Input::InterfaceUp),
        4 => received,
        4 => kind.prop_map(Input::TimerExpired),
        1 => any::<u8>().prop_map(Input::SetPriority),
        1 => prop::collection::vec(addr, 0..4).prop_map(Input::SetAddresses),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever happens: no panic; VIPs are added only in Master and removed only when Master before; the VIPs a
    /// driver would hold (replaying the actions) are exactly the addresses in Master and nothing otherwise; a
    /// Master always has an armed AdverTimer; and the timers a driver would have armed (replaying ArmTimer,
    /// CancelTimer and the consumed expiry) equal `deadline()`.
    #[test]
    fn actions_keep_vips_and_timers_consistent(
        priority in 1u8..=254,
        preempt in any::<bool>(),
        delay_ms in 0u64..600,
        steps in prop::collection::vec((0u64..400_000_000, arb_input()), 1..120),
    ) {
        let cfg = Config { priority, preempt, preempt_delay: Duration::from_millis(delay_ms), ..config() };
        let mut i = instance(cfg);
        let mut now = Duration::ZERO;
        let mut held: BTreeSet<IpAddr> = BTreeSet::new();
        let mut timers: BTreeMap<TimerKind, Time> = BTreeMap::new();
        for (dt, input) in steps {
            now += Duration::from_nanos(dt);
            let before = i.state();
            if let Input::TimerExpired(k) = &input
                && i.deadline(*k).is_some_and(|d| d <= now)
            {
                timers.remove(k);
            }
            let actions = i.handle(now, input);
            let after = i.state();
            for a in &actions {
                match a {
                    Action::AddVips(v) => {
                        prop_assert_eq!(after, State::Master);
                        held.extend(v.iter().copied());
                    }
                    Action::RemoveVips(v) => {
                        prop_assert_eq!(before, State::Master);
                        for x in v { held.remove(x); }
                    }
                    Action::ArmTimer { kind, at } => {
                        prop_assert!(*at >= now);
                        timers.insert(*kind, *at);
                    }
                    Action::CancelTimer(k) => {
                        prop_assert!(timers.remove(k).is_some(), "cancel of an unarmed timer");
                    }
                    Action::StateChanged { from, to, .. } => prop_assert_ne!(from, to),
                    Action::SendAdvert(adv) => prop_assert_eq!(adv.vrid, VRID),
                    _ => {}
                }
            }
            let expect: BTreeSet<IpAddr> =
                if after == State::Master { i.addresses().iter().copied().collect() } else { BTreeSet::new() };
            prop_assert_eq!(&held, &expect);
            if after == State::Master {
                prop_assert!(i.deadline(TimerKind::AdverTimer).is_some());
            }
            if after == State::Initialize {
                prop_assert!(i.next_deadline().is_none());
            }
            for k in TimerKind::ALL {
                prop_assert_eq!(timers.get(&k).copied(), i.deadline(k), "{:?}", k);
            }
        }
    }
}
