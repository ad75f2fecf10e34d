//! The `simulate` timeline: plays a scenario against the allocation-level [`World`] (what Kubernetes and the
//! controller decide) and the [`DataPlane`] (what the speakers and the client's network do), in virtual time.
//!
//! A step starts at its event and lasts until the next one; its VIP block shows the state *at the end* of the
//! step (just before the next event, or at the end of the run), and its timeline what happened in between.
//! Kubernetes learns about a crashed or stopped machine only when the node grace period ends (like the node
//! lifecycle controller's `node-monitor-grace-period`, 40 s by default); that moment becomes a step of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use openelb_core::announce;
use openelb_core::vrrp::Time;
use openelb_core::vrrp::agent::AgentConfig;
use openelb_core::vrrp::consts::MAX_ADVERT_INT;
use openelb_core::vrrp::plan::PlanConfig;
use openelb_core::vrrp::state::{
    DEFAULT_ADVERT_INTERVAL_CS, DEFAULT_GARP_COUNT, DEFAULT_GARP_SPACING, DEFAULT_PREEMPT_DELAY,
};
use serde::Serialize;

use crate::scenario::{Event, Heal, Scenario, parse_duration};
use crate::sim::{ChangeView, VipView, World};
use crate::vrrp_sim::{Conflict, DataPlane, DataPlaneConfig, Entry, fmt_duration, fmt_time, ms_f64};

/// Timing of the simulated speakers and network. Defaults are the speaker's own.
#[derive(clap::Args, Clone, Debug)]
pub struct SimFlags {
    /// VRRP advertisement interval (a multiple of 10ms, 10ms to 40.95s).
    #[arg(long, value_parser = parse_duration, default_value = "100ms", value_name = "DURATION")]
    pub advert_interval: Duration,
    /// How long a returning higher-priority node waits before taking its VIPs back.
    #[arg(long, value_parser = parse_duration, default_value = "3s", value_name = "DURATION")]
    pub preempt_delay: Duration,
    /// Gratuitous ARPs / unsolicited NAs sent on takeover (the first one immediately).
    #[arg(long, default_value_t = DEFAULT_GARP_COUNT, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub garp_count: u32,
    #[arg(long, value_parser = parse_duration, default_value = "50ms", value_name = "DURATION")]
    pub garp_spacing: Duration,
    /// One-way delivery delay on the simulated L2 segment.
    #[arg(long, value_parser = parse_duration, default_value = "0.1ms", value_name = "DURATION")]
    pub delay: Duration,
    /// Probability (0-1) that a message copy is lost on the segment.
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Seed of the loss generator: the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How long Kubernetes keeps a crashed or stopped node Ready (node-monitor-grace-period).
    #[arg(long, value_parser = parse_duration, default_value = "40s", value_name = "DURATION")]
    pub node_grace: Duration,
    /// How long the run continues after the last event.
    #[arg(long, value_parser = parse_duration, default_value = "5s", value_name = "DURATION")]
    pub settle: Duration,
}

impl SimFlags {
    fn data_plane_config(&self) -> Result<DataPlaneConfig> {
        let nanos = self.advert_interval.as_nanos();
        let cs = nanos / 10_000_000;
        if !nanos.is_multiple_of(10_000_000) || cs == 0 || cs > u128::from(MAX_ADVERT_INT) {
            bail!(
                "--advert-interval {}: must be a multiple of 10ms between 10ms and 40.95s (VRRPv3 counts centiseconds)",
                fmt_duration(self.advert_interval)
            );
        }
        let advert_interval = u16::try_from(cs).unwrap_or(DEFAULT_ADVERT_INTERVAL_CS);
        Ok(DataPlaneConfig {
            agent: AgentConfig {
                advert_interval,
                preempt: true,
                preempt_delay: self.preempt_delay,
                garp_count: self.garp_count,
                garp_spacing: self.garp_spacing,
                peer_interval_bounds: None,
            },
            delay: self.delay,
            loss: self.loss,
            seed: self.seed,
            plan: PlanConfig::default(),
        })
    }

    fn settings(&self) -> Settings {
        Settings {
            advert_interval_ms: ms_f64(self.advert_interval),
            preempt_delay_ms: ms_f64(self.preempt_delay),
            garp_count: self.garp_count,
            garp_spacing_ms: ms_f64(self.garp_spacing),
            delay_ms: ms_f64(self.delay),
            loss: self.loss,
            seed: self.seed,
            node_grace_ms: ms_f64(self.node_grace),
            settle_ms: ms_f64(self.settle),
        }
    }
}

impl Default for SimFlags {
    fn default() -> Self {
        SimFlags {
            advert_interval: Duration::from_millis(u64::from(DEFAULT_ADVERT_INTERVAL_CS) * 10),
            preempt_delay: DEFAULT_PREEMPT_DELAY,
            garp_count: DEFAULT_GARP_COUNT,
            garp_spacing: DEFAULT_GARP_SPACING,
            delay: Duration::from_micros(100),
            loss: 0.0,
            seed: 1,
            node_grace: Duration::from_secs(40),
            settle: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub advert_interval_ms: f64,
    pub preempt_delay_ms: f64,
    pub garp_count: u32,
    pub garp_spacing_ms: f64,
    pub delay_ms: f64,
    pub loss: f64,
    pub seed: u64,
    pub node_grace_ms: f64,
    pub settle_ms: f64,
}

/// A VIP that got a new master during a step, with the client's side of it.
#[derive(Debug, Clone, Serialize)]
pub struct Takeover {
    pub vip: String,
    /// Who held it when the step's event happened.
    pub from: Option<String>,
    pub to: String,
    /// From the event to `to` becoming Master (detection plus decision).
    pub master_after_ms: f64,
    /// From the event to the client's neighbour entry pointing at `to`.
    pub neigh_after_ms: Option<f64>,
    /// The client's outage for the VIP that began in this step, if it ended.
    pub outage_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub name: String,
    /// `up`, `crashed`, `stopped` or `link down`.
    pub machine: String,
    /// The Node's Ready condition as Kubernetes sees it.
    pub ready: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub at_ms: u64,
    pub at: String,
    pub event: String,
    pub changes: Vec<ChangeView>,
    pub timeline: Vec<Entry>,
    pub takeovers: Vec<Takeover>,
    /// The VIP block below shows the state at this time (the next step's start, or the end of the run).
    pub state_at_ms: f64,
    pub state_at: String,
    pub vips: Vec<VipView>,
    pub nodes: Vec<NodeView>,
    /// Pairs that cannot hear each other.
    pub partitions: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: Option<String>,
    pub settings: Settings,
    pub steps: Vec<Step>,
    /// Two nodes answering ARP for one VIP for longer than a handover.
    pub conflicts: Vec<Conflict>,
    /// The run's end: the last step's state time.
    pub end_ms: f64,
}

struct Open {
    at: Time,
    event: String,
    changes: Vec<ChangeView>,
    before: BTreeMap<IpAddr, Vec<String>>,
}

enum Next {
    Scenario(usize),
    NotReady(String),
}

pub fn run(world: &mut World, scenario: Option<&Scenario>, flags: &SimFlags) -> Result<Report> {
    let mut dp = DataPlane::new(&world.cluster.nodes, flags.data_plane_config()?)?;
    let events = scenario.map(|s| s.events.as_slice()).unwrap_or_default();
    let mut steps = Vec::new();

    let changes = world.reconcile();
    dp.note("event", None, "start: every node boots its speaker; the client pings every VIP".into());
    dp.set_targets(&announce::targets(&world.cluster, &world.ipam))?;
    dp.process_instant();
    let mut open = Open { at: Time::ZERO, event: "start".into(), changes, before: BTreeMap::new() };
    let mut idx = 0;
    // Crashed or stopped nodes Kubernetes has not noticed yet, with the moment it will.
    let mut notready: BTreeMap<String, Time> = BTreeMap::new();

    loop {
        let scn = events.get(idx).map(|e| (e.at.as_duration(), Next::Scenario(idx)));
        let int = notready.iter().min_by_key(|(_, t)| **t).map(|(n, t)| (*t, Next::NotReady(n.clone())));
        let next = match (scn, int) {
            (Some(s), Some(i)) => Some(if i.0 < s.0 { i } else { s }),
            (s, i) => s.or(i),
        };
        let Some((t, what)) = next else { break };
        dp.run_until(t, false);
        steps.push(close(open, world, &mut dp, t));
        let before = holders(world, &dp);
        let event = match what {
            Next::Scenario(i) => {
                idx += 1;
                let Some(ev) = events.get(i) else { bail!("scenario event {i} is missing") };
                apply(world, &mut dp, &ev.event, flags, &mut notready)
                    .with_context(|| format!("scenario events[{i}] ({} {})", ev.at, ev.event))?;
                ev.event.to_string()
            }
            Next::NotReady(node) => {
                notready.remove(&node);
                world.set_ready(&node, false)?;
                let text = format!(
                    "{node} NotReady: no kubelet heartbeat for {} (--node-grace); it leaves the candidate sets and its Pods stop being ready endpoints",
                    fmt_duration(flags.node_grace)
                );
                dp.note("kubernetes", Some(&node), text);
                format!("{node} NotReady (node grace expired)")
            }
        };
        let changes = world.reconcile();
        dp.set_targets(&announce::targets(&world.cluster, &world.ipam))?;
        dp.process_instant();
        open = Open { at: t, event, changes, before };
    }
    let end = dp.now().saturating_add(flags.settle);
    dp.run_until(end, true);
    steps.push(close(open, world, &mut dp, end));
    Ok(Report {
        scenario: scenario.and_then(|s| s.name()).map(str::to_string),
        settings: flags.settings(),
        steps,
        conflicts: dp.conflicts.clone(),
        end_ms: ms_f64(end),
    })
}

/// Live holders of every VRRP VIP now.
fn holders(world: &World, dp: &DataPlane) -> BTreeMap<IpAddr, Vec<String>> {
    announce::targets(&world.cluster, &world.ipam)
        .iter()
        .filter(|t| dp.runs_vrrp(t.vip))
        .map(|t| (t.vip, dp.live_holders(t.vip)))
        .collect()
}

fn apply(
    world: &mut World,
    dp: &mut DataPlane,
    event: &Event,
    flags: &SimFlags,
    notready: &mut BTreeMap<String, Time>,
) -> Result<()> {
    // Names are checked by the World first, so a typo fails before anything happens.
    world.apply(event)?;
    let now = dp.now();
    match event {
        Event::NodeDown(n) | Event::NodeStop(n) => {
            if !dp.is_running(n) {
                dp.note("event", Some(n), format!("{event}: {n} is not running, nothing happens"));
                return Ok(());
            }
            let at = now.saturating_add(flags.node_grace);
            let what = if matches!(event, Event::NodeDown(_)) {
                "crashes: its speaker stops without a word, its link goes down, its VIPs stay on the dead NIC"
            } else {
                "shuts down: its speaker sends priority-0 adverts and removes its VIPs, then the machine powers off"
            };
            let k8s = if world.is_ready(n) {
                format!("; Kubernetes keeps it Ready until {} unless it returns", fmt_time(at))
            } else {
                String::new()
            };
            dp.note("event", Some(n), format!("{n} {what}{k8s}"));
            if matches!(event, Event::NodeDown(_)) {
                dp.crash(n)?;
            } else {
                dp.stop(n)?;
            }
            if world.is_ready(n) {
                notready.insert(n.clone(), at);
            }
        }
        Event::NodeUp(n) => {
            let booting = !dp.is_running(n);
            let ready = world.is_ready(n);
            let what = match (booting, ready) {
                (true, true) => "boots: a fresh speaker, no VIPs on its NIC; Kubernetes never saw it NotReady",
                (true, false) => "boots: a fresh speaker, no VIPs on its NIC; its kubelet reports Ready",
                (false, false) => "is running already; its kubelet reports Ready",
                (false, true) => "is running and Ready already: nothing happens",
            };
            dp.note("event", Some(n), format!("{n} {what}"));
            notready.remove(n);
            world.set_ready(n, true)?;
            dp.boot(n)?;
        }
        Event::LinkDown(n) | Event::LinkUp(n) => {
            let up = matches!(event, Event::LinkUp(_));
            dp.note("event", Some(n), format!("{event}"));
            if !dp.set_link(n, up)? {
                dp.note(
                    "event",
                    Some(n),
                    format!("{n}: not running or link already {}", if up { "up" } else { "down" }),
                );
            }
        }
        Event::Partition(s) => {
            dp.note(
                "event",
                None,
                format!("{event}: the two sides stop hearing each other (Kubernetes is not affected)"),
            );
            dp.partition(&s.a, &s.b)?;
        }
        Event::Heal(h) => {
            dp.note("event", None, format!("{event}"));
            match h {
                Heal::All => dp.heal(None)?,
                Heal::Sides(s) => dp.heal(Some((&s.a, &s.b)))?,
            }
        }
        _ => dp.note("event", None, format!("{event}")),
    }
    Ok(())
}

/// Ends a step at `end`: its timeline, takeovers and the state it leaves behind.
fn close(open: Open, world: &World, dp: &mut DataPlane, end: Time) -> Step {
    let timeline = dp.take_log();
    let t0 = open.at;
    let mut takeovers = Vec::new();
    let mut seen: BTreeSet<IpAddr> = BTreeSet::new();
    for rec in dp.masters.iter().filter(|r| r.at >= t0 && r.at <= end) {
        for vip in &rec.vips {
            let before = open.before.get(vip);
            if before.is_some_and(|b| b.contains(&rec.node)) || !seen.insert(*vip) {
                continue;
            }
            let neigh = dp
                .neigh
                .iter()
                .find(|n| {
                    n.vip == *vip && n.at >= rec.at && n.at <= end && n.node.as_deref() == Some(rec.node.as_str())
                })
                .map(|n| ms_f64(n.at.saturating_sub(t0)));
            let outage = dp
                .outages
                .iter()
                .find(|o| o.vip == *vip && o.start >= t0 && o.start <= end)
                .and_then(|o| o.end.map(|e| ms_f64(e.saturating_sub(o.start))));
            takeovers.push(Takeover {
                vip: vip.to_string(),
                from: before.and_then(|b| b.first().cloned()),
                to: rec.node.clone(),
                master_after_ms: ms_f64(rec.at.saturating_sub(t0)),
                neigh_after_ms: neigh,
                outage_ms: outage,
            });
        }
    }
    let nodes = dp
        .node_names()
        .map(|n| NodeView { name: n.to_string(), machine: dp.node_state(n).to_string(), ready: world.is_ready(n) })
        .collect();
    Step {
        at_ms: u64::try_from(t0.as_millis()).unwrap_or(u64::MAX),
        at: fmt_time(t0),
        event: open.event,
        changes: open.changes,
        timeline,
        takeovers,
        state_at_ms: ms_f64(end),
        state_at: fmt_time(end),
        vips: world.vips_observed(dp),
        nodes,
        partitions: dp.partitions(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        flags: SimFlags,
    }

    #[test]
    fn flag_defaults_are_the_speakers_defaults() {
        let parsed = Wrap::parse_from(["x"]).flags;
        let d = SimFlags::default();
        assert_eq!(parsed.advert_interval, d.advert_interval);
        assert_eq!(parsed.preempt_delay, d.preempt_delay);
        assert_eq!(parsed.garp_count, d.garp_count);
        assert_eq!(parsed.garp_spacing, d.garp_spacing);
        assert_eq!(parsed.delay, d.delay);
        assert_eq!(parsed.node_grace, d.node_grace);
        assert_eq!(parsed.data_plane_config().unwrap().agent, AgentConfig::default());
    }

    #[test]
    fn advert_interval_must_be_whole_centiseconds() {
        let bad = SimFlags { advert_interval: Duration::from_millis(105), ..SimFlags::default() };
        let err = bad.data_plane_config().unwrap_err().to_string();
        assert!(err.contains("--advert-interval") && err.contains("multiple of 10ms"), "{err}");
        let zero = SimFlags { advert_interval: Duration::ZERO, ..SimFlags::default() };
        assert!(zero.data_plane_config().is_err());
    }
}
