//! One VRRPv3 instance (RFC 5798 §6): the Initialize/Backup/Master machine as a function from
//! `(now, input)` to actions. The caller owns the clock, the sockets and the timers; this module only decides.
//!
//! Where it departs from, or chooses within, the RFC (never the address owner, preemption delay, answers to a
//! lower-priority master, retire, accepted address mismatches, checked timer expiries), each pinned by a test in
//! `tests/vrrp_state.rs`: docs/election.md#choices-within-rfc-5798. What it drops: [`AdvertRefusal`], in check order.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use thiserror::Error;

use super::consts::{MAX_ADDRESSES, MAX_ADVERT_INT, TTL};
use super::refusal::{AdvertRefusal, RefusalCounts};
use super::transition::TransitionReason;
use super::{Advert, PRIORITY_OWNER, PRIORITY_RELEASE, Received, Time, group_address};
use crate::model::IpFamily;

/// RFC 5798 default Advertisement_Interval is 1 s; we default to 100 ms so a crash costs about 0.35 s.
pub const DEFAULT_ADVERT_INTERVAL_CS: u16 = 10;
pub const DEFAULT_PRIORITY: u8 = 100;
pub const DEFAULT_PREEMPT_DELAY: Duration = Duration::from_secs(3);
pub const DEFAULT_GARP_COUNT: u32 = 3;
pub const DEFAULT_GARP_SPACING: Duration = Duration::from_millis(50);
/// Most addresses an IPv4 advert carries: 20 + 8 + 4 × 255 = 1048 bytes, so the 8-bit count, not the MTU, is
/// the limit.
pub const DEFAULT_ADVERT_ADDRESSES_IPV4: usize = MAX_ADDRESSES;
/// Most addresses an IPv6 advert carries: 40 + 8 + 16 × 90 = 1488 ≤ 1500 bytes (91 would be 1504).
pub const DEFAULT_ADVERT_ADDRESSES_IPV6: usize = 90;
/// Least time between two announcements a Master makes because it heard a lower-priority master.
pub const LOWER_PRIORITY_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(1);
/// How far a peer's Max_Adver_Int may stray from our own Advertisement_Interval, either way, by default: our
/// speakers share one configuration (a DaemonSet), so a peer ten times faster or slower is not one of ours, or is
/// mid-rollout of a change larger than that (then set the bounds explicitly).
pub const PEER_INTERVAL_FACTOR: u16 = 10;

/// The Max_Adver_Int values a Backup adopts by default: `own / 10 ..= own × 10`, within 1..=4095 centiseconds.
/// With the default 10 cs that is 1..=100 cs, so the longest Master_Down_Interval a peer can impose is about
/// 3.6 s (instead of the 126 s of Max_Adver_Int 4095).
pub fn default_peer_interval_bounds(own_cs: u16) -> RangeInclusive<u16> {
    let low = (own_cs / PEER_INTERVAL_FACTOR).max(1);
    let high = own_cs.saturating_mul(PEER_INTERVAL_FACTOR).clamp(low, MAX_ADVERT_INT);
    low..=high
}

const NANOS_PER_CENTISECOND: u64 = 10_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    Initialize,
    Backup,
    Master,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Initialize => "INITIALIZE",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKind {
    /// Master: time to send the next advert.
    AdverTimer,
    /// Backup: the master is presumed dead when this fires.
    MasterDown,
    /// Backup: the preempt delay against a lower-priority master has elapsed.
    PreemptDelay,
}

impl TimerKind {
    pub const ALL: [TimerKind; 3] = [TimerKind::AdverTimer, TimerKind::MasterDown, TimerKind::PreemptDelay];

    fn index(self) -> usize {
        match self {
            TimerKind::AdverTimer => 0,
            TimerKind::MasterDown => 1,
            TimerKind::PreemptDelay => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// RFC Startup event: Initialize → Backup (when the interface is up).
    Start,
    /// Start directly as Master, holding the VIPs of a replaced group (docs/election.md#new-vips-and-re-grouping).
    StartAsMaster,
    /// Start directly as Master of VIPs nobody holds yet, as their first preference
    /// (docs/election.md#new-vips-and-re-grouping).
    StartUnclaimed,
    /// RFC Shutdown event: a Master sends priority 0 and removes its VIPs.
    Shutdown,
    /// Shutdown without the priority-0 advert: this node keeps the VIPs through another instance, and a release
    /// would invite the old group's backups to take them.
    Retire,
    Advert(Received),
    TimerExpired(TimerKind),
    /// Clamped to 1..=254.
    SetPriority(u8),
    /// The group's VIPs; addresses of the other family than the primary address are ignored.
    SetAddresses(Vec<IpAddr>),
    InterfaceDown,
    InterfaceUp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    SendAdvert(Advert),
    AddVips(Vec<IpAddr>),
    RemoveVips(Vec<IpAddr>),
    /// Gratuitous ARP (IPv4) / unsolicited NA (IPv6) burst: the first one immediately, then `count - 1` more,
    /// `spacing` apart.
    Announce {
        addresses: Vec<IpAddr>,
        count: u32,
        spacing: Duration,
    },
    /// Arms or re-arms the timer of this kind (one per kind).
    ArmTimer {
        kind: TimerKind,
        at: Time,
    },
    CancelTimer(TimerKind),
    StateChanged {
        from: State,
        to: State,
        reason: TransitionReason,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub vrid: u8,
    /// 1..=254; the first preference gets the highest.
    pub priority: u8,
    /// Advertisement_Interval in centiseconds, 1..=4095.
    pub advert_interval: u16,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub garp_count: u32,
    pub garp_spacing: Duration,
    /// This node's own address on the interface: the advert source, and the tie-breaker at equal priority.
    pub primary: IpAddr,
    /// The VIPs, all of the primary address's family.
    pub addresses: Vec<IpAddr>,
    /// How many of `addresses` (the first, in address order) an advert carries, 1..=255 (clamped): a group
    /// may hold more VIPs than one advert fits, and backups recognise it by any address it shares with
    /// theirs (docs/election.md#large-groups).
    pub advert_addresses: usize,
    /// Max_Adver_Int values (centiseconds) accepted from peers; `None`: [`default_peer_interval_bounds`] of
    /// `advert_interval`.
    pub peer_interval_bounds: Option<RangeInclusive<u16>>,
}

impl Config {
    pub fn new(vrid: u8, primary: IpAddr, addresses: Vec<IpAddr>) -> Self {
        Config {
            vrid,
            priority: DEFAULT_PRIORITY,
            advert_interval: DEFAULT_ADVERT_INTERVAL_CS,
            preempt: true,
            preempt_delay: DEFAULT_PREEMPT_DELAY,
            garp_count: DEFAULT_GARP_COUNT,
            garp_spacing: DEFAULT_GARP_SPACING,
            primary,
            addresses,
            advert_addresses: default_advert_addresses(IpFamily::of(&primary)),
            peer_interval_bounds: None,
        }
    }

    /// The Max_Adver_Int values accepted from peers.
    pub fn peer_interval_bounds(&self) -> RangeInclusive<u16> {
        self.peer_interval_bounds.clone().unwrap_or_else(|| default_peer_interval_bounds(self.advert_interval))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("VRID 0: VRIDs are 1-255 (0 is reserved)")]
    Vrid,
    #[error("priority {0}: must be 1-254 (0 means release, 255 is the address owner, which we never are)")]
    Priority(u8),
    #[error("advert interval {0} cs: must be 1-4095 centiseconds")]
    AdvertInterval(u16),
    #[error("VIP {vip}: not of the same address family as the primary address {primary}")]
    Family { vip: IpAddr, primary: IpAddr },
    #[error("peer advert interval bounds {min}-{max} cs: must be 1-4095 centiseconds with min <= max")]
    PeerIntervalBounds { min: u16, max: u16 },
}

/// The master a Backup last accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub src: IpAddr,
    pub priority: u8,
}

/// What was received and what was dropped, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Every advert offered to this instance, dropped or not.
    pub received: u64,
    /// Adverts the state machine acted upon.
    pub accepted: u64,
    pub dropped: RefusalCounts,
    /// Accepted adverts whose address list differs from ours.
    pub address_mismatches: u64,
    /// Of those, the ones whose (sender, list) differs from the previous mismatch: something new to report.
    pub mismatch_changes: u64,
    /// Extra adverts and announcement bursts a Master held back (rate limit of its answers).
    pub replies_suppressed: u64,
}

impl Counters {
    /// Grows whenever there is something new worth a warning: a notable drop or a new address mismatch.
    pub fn notable(&self) -> u64 {
        self.dropped.notable().saturating_add(self.mismatch_changes)
    }
}

/// [`DEFAULT_ADVERT_ADDRESSES_IPV4`] or [`DEFAULT_ADVERT_ADDRESSES_IPV6`].
pub fn default_advert_addresses(family: IpFamily) -> usize {
    match family {
        IpFamily::V4 => DEFAULT_ADVERT_ADDRESSES_IPV4,
        IpFamily::V6 => DEFAULT_ADVERT_ADDRESSES_IPV6,
    }
}

/// Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256, computed in integer nanoseconds and rounded
/// down: one centisecond is 10^7 ns, so the result is exact whenever `(256 - priority) * interval_cs` is even and
/// 0.5 ns short otherwise (priority 100, 10 cs: exactly 60.9375 ms).
pub fn skew_time(priority: u8, master_adver_interval_cs: u16) -> Duration {
    let factor = 256 - u64::from(priority);
    let interval = u64::from(master_adver_interval_cs) * NANOS_PER_CENTISECOND;
    Duration::from_nanos(factor * interval / 256)
}

/// Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time.
pub fn master_down_interval(priority: u8, master_adver_interval_cs: u16) -> Duration {
    let interval = Duration::from_nanos(u64::from(master_adver_interval_cs) * NANOS_PER_CENTISECOND);
    interval.saturating_mul(3).saturating_add(skew_time(priority, master_adver_interval_cs))
}

/// A received Max_Adver_Int as used: the low 12 bits, and 0 taken as 1 so a malformed peer cannot make us spin
/// on zero-length timers.
fn peer_interval(raw: u16) -> u16 {
    match raw & MAX_ADVERT_INT {
        0 => 1,
        i => i,
    }
}

/// When the advert after one due at `due` and sent at `now` goes out: one interval after `due`, so a timer that
/// fires late (tokio rounds sleeps up to the next millisecond: 10 ms adverts went out every 11.4 ms) does not
/// stretch every interval; one interval after `now` when even that has passed (after a stall, no burst).
pub fn next_advert(due: Time, now: Time, interval_cs: u16) -> Time {
    let interval = interval_duration(interval_cs);
    let on_grid = due.saturating_add(interval);
    if on_grid > now { on_grid } else { now.saturating_add(interval) }
}

fn interval_duration(cs: u16) -> Duration {
    Duration::from_nanos(u64::from(cs) * NANOS_PER_CENTISECOND)
}

fn same_family(a: &IpAddr, b: &IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

fn normalize(addresses: Vec<IpAddr>, primary: &IpAddr) -> Vec<IpAddr> {
    let set: BTreeSet<IpAddr> = addresses.into_iter().filter(|a| same_family(a, primary)).collect();
    set.into_iter().collect()
}

#[derive(Debug, Clone)]
pub struct Instance {
    cfg: Config,
    state: State,
    /// Start seen and no Shutdown since.
    enabled: bool,
    link_up: bool,
    master_adver_interval: u16,
    timers: [Option<Time>; 3],
    master: Option<Peer>,
    /// When this Backup first saw a lower-priority master (preempt delay start).
    lower_since: Option<Time>,
    /// The last master released (priority 0): Master_Down_Timer now runs at Skew_Time.
    release_seen: bool,
    mismatch: Option<(IpAddr, Vec<IpAddr>)>,
    /// When this Master last announced because of a lower-priority advert (None since it became Master).
    lower_announced: Option<Time>,
    /// When this Master last sent an advert out of schedule (None since it became Master).
    extra_advert_at: Option<Time>,
    counters: Counters,
}

impl Instance {
    pub fn new(mut cfg: Config) -> Result<Self, ConfigError> {
        if cfg.vrid == 0 {
            return Err(ConfigError::Vrid);
        }
        if cfg.priority == PRIORITY_RELEASE || cfg.priority == PRIORITY_OWNER {
            return Err(ConfigError::Priority(cfg.priority));
        }
        if cfg.advert_interval == 0 || cfg.advert_interval > MAX_ADVERT_INT {
            return Err(ConfigError::AdvertInterval(cfg.advert_interval));
        }
        if let Some(vip) = cfg.addresses.iter().find(|a| !same_family(a, &cfg.primary)) {
            return Err(ConfigError::Family { vip: *vip, primary: cfg.primary });
        }
        if let Some(b) = &cfg.peer_interval_bounds {
            let (min, max) = (*b.start(), *b.end());
            if min == 0 || min > max || max > MAX_ADVERT_INT {
                return Err(ConfigError::PeerIntervalBounds { min, max });
            }
        }
        cfg.addresses = normalize(std::mem::take(&mut cfg.addresses), &cfg.primary);
        let master_adver_interval = cfg.advert_interval;
        Ok(Instance {
            cfg,
            state: State::Initialize,
            enabled: false,
            link_up: true,
            master_adver_interval,
            timers: [None; 3],
            master: None,
            lower_since: None,
            release_seen: false,
            mismatch: None,
            lower_announced: None,
            extra_advert_at: None,
            counters: Counters::default(),
        })
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn deadline(&self, kind: TimerKind) -> Option<Time> {
        self.timers[kind.index()]
    }

    /// The earliest armed timer (ties: in [`TimerKind::ALL`] order).
    /// A Master whose next advert is due before `by` sends it now and restarts its advert timer from `now`;
    /// nothing otherwise. An advert sent early never hurts: backups only restart their Master_Down timer sooner.
    pub fn advertise_early(&mut self, now: Time, by: Time) -> Vec<Action> {
        let mut out = Vec::new();
        let slot = TimerKind::AdverTimer.index();
        if self.state == State::Master && self.timers[slot].is_some_and(|at| at < by) {
            self.timers[slot] = Some(now);
            self.on_timer(now, TimerKind::AdverTimer, &mut out);
        }
        out
    }

    pub fn next_deadline(&self) -> Option<(Time, TimerKind)> {
        TimerKind::ALL.iter().filter_map(|k| self.deadline(*k).map(|t| (t, *k))).min_by_key(|(t, _)| *t)
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn priority(&self) -> u8 {
        self.cfg.priority
    }

    /// Sorted, deduplicated.
    pub fn addresses(&self) -> &[IpAddr] {
        &self.cfg.addresses
    }

    pub fn master_adver_interval(&self) -> u16 {
        self.master_adver_interval
    }

    pub fn skew_time(&self) -> Duration {
        skew_time(self.cfg.priority, self.master_adver_interval)
    }

    pub fn master_down_interval(&self) -> Duration {
        master_down_interval(self.cfg.priority, self.master_adver_interval)
    }

    /// The master this Backup last accepted, if any.
    pub fn master(&self) -> Option<Peer> {
        self.master
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The last accepted advert whose address list differed from ours: (sender, its sorted list).
    pub fn last_mismatch(&self) -> Option<&(IpAddr, Vec<IpAddr>)> {
        self.mismatch.as_ref()
    }

    /// Counts an advert the caller (the agent) dropped before it reached this instance, so that every advert
    /// offered for this instance shows up in its counters.
    pub fn note_dropped(&mut self, reason: AdvertRefusal) {
        self.counters.received = self.counters.received.saturating_add(1);
        self.counters.dropped.add(reason);
    }

    /// The checks that do not depend on the advert's content (in [`AdvertRefusal`]'s order): whether
    /// this instance would even look at `rx`.
    pub fn screen(&self, rx: &Received) -> Result<(), AdvertRefusal> {
        if self.state == State::Initialize {
            return Err(AdvertRefusal::NotRunning);
        }
        if rx.ttl != TTL {
            return Err(AdvertRefusal::Ttl);
        }
        if rx.advert.vrid != self.cfg.vrid {
            return Err(AdvertRefusal::Vrid);
        }
        if !same_family(&rx.src, &self.cfg.primary) {
            return Err(AdvertRefusal::Family);
        }
        if rx.src == self.cfg.primary {
            return Err(AdvertRefusal::OwnAdvert);
        }
        if rx.dst != self.cfg.primary && rx.dst != group_address(IpFamily::of(&self.cfg.primary)) {
            return Err(AdvertRefusal::BadDestination);
        }
        Ok(())
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn handle(&mut self, now: Time, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Start => {
                self.enabled = true;
                if self.state == State::Initialize && self.link_up {
                    self.enter_backup(now, TransitionReason::Startup, &mut out);
                }
            }
            Input::StartAsMaster => {
                self.enabled = true;
                if self.state == State::Initialize && self.link_up {
                    self.enter_master(now, TransitionReason::StartupHoldingReplaced, &mut out);
                }
            }
            Input::StartUnclaimed => {
                self.enabled = true;
                if self.state == State::Initialize && self.link_up {
                    self.enter_master(now, TransitionReason::StartupUnclaimed, &mut out);
                }
            }
            Input::Shutdown => {
                self.enabled = false;
                self.enter_initialize(TransitionReason::Shutdown, true, &mut out);
            }
            Input::Retire => {
                self.enabled = false;
                self.enter_initialize(TransitionReason::Retired, false, &mut out);
            }
            Input::InterfaceDown => {
                self.link_up = false;
                self.enter_initialize(TransitionReason::InterfaceDown, false, &mut out);
            }
            Input::InterfaceUp => {
                self.link_up = true;
                if self.enabled && self.state == State::Initialize {
                    self.enter_backup(now, TransitionReason::InterfaceUp, &mut out);
                }
            }
            Input::Advert(rx) => self.on_advert(now, rx, &mut out),
            Input::TimerExpired(kind) => self.on_timer(now, kind, &mut out),
            Input::SetPriority(p) => self.set_priority(p, &mut out),
            Input::SetAddresses(a) => self.set_addresses(a, &mut out),
        }
        out
    }

    /// The addresses an advert carries: the first [`Config::advert_addresses`] of the group's, so that every
    /// speaker with the same plan sends and expects the same list.
    pub fn advertised(&self) -> &[IpAddr] {
        let n = self.cfg.advert_addresses.clamp(1, MAX_ADDRESSES);
        self.cfg.addresses.get(..n).unwrap_or(&self.cfg.addresses)
    }

    fn advert(&self, priority: u8) -> Advert {
        Advert {
            vrid: self.cfg.vrid,
            priority,
            max_advert_int: self.cfg.advert_interval,
            addresses: self.advertised().to_vec(),
        }
    }

    fn arm(&mut self, kind: TimerKind, at: Time, out: &mut Vec<Action>) {
        self.timers[kind.index()] = Some(at);
        out.push(Action::ArmTimer { kind, at });
    }

    fn cancel(&mut self, kind: TimerKind, out: &mut Vec<Action>) {
        if self.timers[kind.index()].take().is_some() {
            out.push(Action::CancelTimer(kind));
        }
    }

    fn change(&mut self, to: State, reason: TransitionReason, out: &mut Vec<Action>) {
        out.push(Action::StateChanged { from: self.state, to, reason });
        self.state = to;
    }

    fn enter_backup(&mut self, now: Time, reason: TransitionReason, out: &mut Vec<Action>) {
        self.master_adver_interval = self.cfg.advert_interval;
        self.master = None;
        self.lower_since = None;
        self.release_seen = false;
        self.change(State::Backup, reason, out);
        self.arm(TimerKind::MasterDown, now.saturating_add(self.master_down_interval()), out);
    }

    fn enter_master(&mut self, now: Time, reason: TransitionReason, out: &mut Vec<Action>) {
        self.change(State::Master, reason, out);
        self.cancel(TimerKind::MasterDown, out);
        self.cancel(TimerKind::PreemptDelay, out);
        self.master = None;
        self.lower_since = None;
        self.release_seen = false;
        self.lower_announced = None;
        self.extra_advert_at = None;
        out.push(Action::SendAdvert(self.advert(self.cfg.priority)));
        if !self.cfg.addresses.is_empty() {
            out.push(Action::AddVips(self.cfg.addresses.clone()));
            self.announce(out);
        }
        self.arm(TimerKind::AdverTimer, now.saturating_add(interval_duration(self.cfg.advert_interval)), out);
    }

    fn announce(&self, out: &mut Vec<Action>) {
        if self.cfg.garp_count > 0 && !self.cfg.addresses.is_empty() {
            out.push(Action::Announce {
                addresses: self.cfg.addresses.clone(),
                count: self.cfg.garp_count,
                spacing: self.cfg.garp_spacing,
            });
        }
    }

    fn enter_initialize(&mut self, reason: TransitionReason, release: bool, out: &mut Vec<Action>) {
        match self.state {
            State::Initialize => {}
            State::Backup => {
                self.change(State::Initialize, reason, out);
                for kind in TimerKind::ALL {
                    self.cancel(kind, out);
                }
            }
            State::Master => {
                self.change(State::Initialize, reason, out);
                self.cancel(TimerKind::AdverTimer, out);
                if release {
                    out.push(Action::SendAdvert(self.advert(PRIORITY_RELEASE)));
                }
                if !self.cfg.addresses.is_empty() {
                    out.push(Action::RemoveVips(self.cfg.addresses.clone()));
                }
            }
        }
        self.master = None;
        self.lower_since = None;
        self.release_seen = false;
    }

    fn on_timer(&mut self, now: Time, kind: TimerKind, out: &mut Vec<Action>) {
        let due = match self.timers[kind.index()] {
            Some(at) if at <= now => at,
            _ => return,
        };
        self.timers[kind.index()] = None;
        match (self.state, kind) {
            (State::Master, TimerKind::AdverTimer) => {
                out.push(Action::SendAdvert(self.advert(self.cfg.priority)));
                self.arm(TimerKind::AdverTimer, next_advert(due, now, self.cfg.advert_interval), out);
            }
            (State::Backup, TimerKind::MasterDown) => {
                let reason =
                    if self.release_seen { TransitionReason::MasterReleased } else { TransitionReason::MasterDown };
                self.enter_master(now, reason, out);
            }
            (State::Backup, TimerKind::PreemptDelay) => {
                self.enter_master(now, TransitionReason::PreemptDelayElapsed, out);
            }
            // Timers are cancelled on every state change, so these cannot be armed; nothing to do.
            _ => {}
        }
    }

    fn on_advert(&mut self, now: Time, rx: Received, out: &mut Vec<Action>) {
        if let Err(reason) = self.check(&rx) {
            self.note_dropped(reason);
            return;
        }
        let c = &mut self.counters;
        c.received = c.received.saturating_add(1);
        c.accepted = c.accepted.saturating_add(1);
        self.check_addresses(&rx);

        let prio = rx.advert.priority;
        let interval = peer_interval(rx.advert.max_advert_int);
        let peer = Peer { src: rx.src, priority: prio };
        match self.state {
            State::Initialize => {}
            State::Backup => {
                if prio == PRIORITY_RELEASE {
                    // RFC §6.4.2: Master_Down_Timer = Skew_Time; the highest-priority backup wins the race.
                    self.cancel(TimerKind::PreemptDelay, out);
                    self.master = None;
                    self.lower_since = None;
                    self.release_seen = true;
                    self.arm(TimerKind::MasterDown, now.saturating_add(self.skew_time()), out);
                } else if !self.cfg.preempt || prio >= self.cfg.priority {
                    self.master_adver_interval = interval;
                    self.master = Some(peer);
                    self.lower_since = None;
                    self.release_seen = false;
                    self.cancel(TimerKind::PreemptDelay, out);
                    self.arm(TimerKind::MasterDown, now.saturating_add(self.master_down_interval()), out);
                } else {
                    self.master_adver_interval = interval;
                    self.master = Some(peer);
                    self.release_seen = false;
                    let since = *self.lower_since.get_or_insert(now);
                    let due = since.saturating_add(self.cfg.preempt_delay);
                    if due <= now {
                        self.enter_master(now, TransitionReason::PreemptingLowerPriority, out);
                    } else {
                        self.arm(TimerKind::MasterDown, now.saturating_add(self.master_down_interval()), out);
                        if self.deadline(TimerKind::PreemptDelay).is_none() {
                            self.arm(TimerKind::PreemptDelay, due, out);
                        }
                    }
                }
            }
            State::Master => {
                if prio == PRIORITY_RELEASE {
                    // RFC §6.4.3: another master released; re-assert at once so backups keep following us.
                    if self.extra_advert_due(now) {
                        out.push(Action::SendAdvert(self.advert(self.cfg.priority)));
                        self.arm(
                            TimerKind::AdverTimer,
                            now.saturating_add(interval_duration(self.cfg.advert_interval)),
                            out,
                        );
                    }
                } else if prio > self.cfg.priority || (prio == self.cfg.priority && rx.src > self.cfg.primary) {
                    self.change(State::Backup, TransitionReason::HigherPriorityMaster, out);
                    self.cancel(TimerKind::AdverTimer, out);
                    if !self.cfg.addresses.is_empty() {
                        out.push(Action::RemoveVips(self.cfg.addresses.clone()));
                    }
                    self.master_adver_interval = interval;
                    self.master = Some(peer);
                    self.lower_since = None;
                    self.release_seen = false;
                    self.arm(TimerKind::MasterDown, now.saturating_add(self.master_down_interval()), out);
                } else {
                    if self.extra_advert_due(now) {
                        out.push(Action::SendAdvert(self.advert(self.cfg.priority)));
                    }
                    let due =
                        self.lower_announced.is_none_or(|t| now >= t.saturating_add(LOWER_PRIORITY_ANNOUNCE_INTERVAL));
                    if due {
                        self.lower_announced = Some(now);
                        self.announce(out);
                    } else if self.cfg.garp_count > 0 && !self.cfg.addresses.is_empty() {
                        self.suppressed();
                    }
                }
            }
        }
    }

    /// [`Instance::screen`], then the content checks: priority 255, Max_Adver_Int bounds, and a release only
    /// from the master a Backup follows.
    fn check(&self, rx: &Received) -> Result<(), AdvertRefusal> {
        self.screen(rx)?;
        if rx.advert.priority == PRIORITY_OWNER {
            return Err(AdvertRefusal::Priority255);
        }
        if !self.cfg.peer_interval_bounds().contains(&peer_interval(rx.advert.max_advert_int)) {
            return Err(AdvertRefusal::IntervalOutOfBounds);
        }
        if self.state == State::Backup
            && rx.advert.priority == PRIORITY_RELEASE
            && self.master.is_none_or(|m| m.src != rx.src)
        {
            return Err(AdvertRefusal::ReleaseNotFromMaster);
        }
        Ok(())
    }

    /// Whether a Master may send an advert out of schedule now (at most one per Advertisement_Interval); records
    /// it when so, counts it as suppressed otherwise.
    fn extra_advert_due(&mut self, now: Time) -> bool {
        let interval = interval_duration(self.cfg.advert_interval);
        if self.extra_advert_at.is_some_and(|t| now < t.saturating_add(interval)) {
            self.suppressed();
            return false;
        }
        self.extra_advert_at = Some(now);
        true
    }

    fn suppressed(&mut self) {
        self.counters.replies_suppressed = self.counters.replies_suppressed.saturating_add(1);
    }

    fn check_addresses(&mut self, rx: &Received) {
        let theirs: BTreeSet<IpAddr> = rx.advert.addresses.iter().copied().collect();
        if theirs.iter().eq(self.advertised().iter()) {
            return;
        }
        self.counters.address_mismatches = self.counters.address_mismatches.saturating_add(1);
        let key = (rx.src, theirs.into_iter().collect::<Vec<IpAddr>>());
        if self.mismatch.as_ref() != Some(&key) {
            self.counters.mismatch_changes = self.counters.mismatch_changes.saturating_add(1);
            self.mismatch = Some(key);
        }
    }

    fn set_priority(&mut self, p: u8, out: &mut Vec<Action>) {
        let p = p.clamp(PRIORITY_RELEASE + 1, PRIORITY_OWNER - 1);
        if p == self.cfg.priority {
            return;
        }
        self.cfg.priority = p;
        match self.state {
            State::Initialize => {}
            // Tell backups at once: a lowered master may now be preempted.
            State::Master => out.push(Action::SendAdvert(self.advert(p))),
            State::Backup => {
                if self.master.is_some_and(|m| m.priority >= p) {
                    self.lower_since = None;
                    self.cancel(TimerKind::PreemptDelay, out);
                }
            }
        }
    }

    fn set_addresses(&mut self, addresses: Vec<IpAddr>, out: &mut Vec<Action>) {
        let new = normalize(addresses, &self.cfg.primary);
        if new == self.cfg.addresses {
            return;
        }
        let old = std::mem::replace(&mut self.cfg.addresses, new);
        self.mismatch = None;
        if self.state != State::Master {
            return;
        }
        let added: Vec<IpAddr> = self.cfg.addresses.iter().filter(|a| !old.contains(a)).copied().collect();
        let removed: Vec<IpAddr> = old.iter().filter(|a| !self.cfg.addresses.contains(a)).copied().collect();
        if !added.is_empty() {
            out.push(Action::AddVips(added.clone()));
            if self.cfg.garp_count > 0 {
                out.push(Action::Announce {
                    addresses: added,
                    count: self.cfg.garp_count,
                    spacing: self.cfg.garp_spacing,
                });
            }
        }
        if !removed.is_empty() {
            out.push(Action::RemoveVips(removed));
        }
        out.push(Action::SendAdvert(self.advert(self.cfg.priority)));
    }
}
