//! The `simulate` timeline: plays a scenario against the allocation-level [`World`] (what Kubernetes and the
//! controller decide) and the [`DataPlane`] (what the speakers and the client's network do), in virtual time.
//!
//! A step starts at its event and lasts until the next one; its VIP block shows the state *at the end* of the
//! step (just before the next event, or at the end of the run), and its timeline what happened in between.
//! Kubernetes learns about a crashed or stopped machine only when the node grace period ends (like the node
//! lifecycle controller's `node-monitor-grace-period`, 40 s by default); that moment becomes a step of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use openelb_core::announce;
use openelb_core::vrrp::Time;

use crate::data_plane::{DataPlane, DataPlaneError, NeighRecord, OutageRecord, fmt_duration, fmt_time, ms_f64};
use crate::report::{ChangeView, NodeView, Report, Step, Takeover};
use crate::scenario::{Event, Heal, Scenario, SimTime};
use crate::timing::{AdvertIntervalError, Timing};
use crate::unknown_node::UnknownNode;
use crate::world::{World, WorldError};

/// Why a run stopped: settings the speakers refuse, or an event that names what is not there.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    AdvertInterval(#[from] AdvertIntervalError),
    #[error(transparent)]
    DataPlane(#[from] DataPlaneError),
    #[error(transparent)]
    World(#[from] WorldError),
    #[error(transparent)]
    UnknownNode(#[from] UnknownNode),
    #[error("scenario event {0} is missing")]
    MissingEvent(usize),
    #[error("scenario events[{index}] ({at} {event})")]
    Event { index: usize, at: SimTime, event: String, source: Box<RunError> },
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

pub fn run(world: &mut World, scenario: Option<&Scenario>, flags: &Timing) -> Result<Report, RunError> {
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
                let Some(ev) = events.get(i) else { return Err(RunError::MissingEvent(i)) };
                apply(world, &mut dp, &ev.event, flags, &mut notready).map_err(|source| RunError::Event {
                    index: i,
                    at: ev.at,
                    event: ev.event.to_string(),
                    source: Box::new(source),
                })?;
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
    flags: &Timing,
    notready: &mut BTreeMap<String, Time>,
) -> Result<(), RunError> {
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
    // The step's neighbour changes and first outage per VIP, in record order: a takeover looks its VIP up here
    // instead of searching every record (a start with 20k VIPs would otherwise take 20k x 20k steps).
    let mut neigh_of: BTreeMap<IpAddr, Vec<&NeighRecord>> = BTreeMap::new();
    for n in dp.neigh.iter().filter(|n| n.at >= t0 && n.at <= end) {
        neigh_of.entry(n.vip).or_default().push(n);
    }
    let mut outage_of: BTreeMap<IpAddr, &OutageRecord> = BTreeMap::new();
    for o in dp.outages.iter().filter(|o| o.start >= t0 && o.start <= end) {
        outage_of.entry(o.vip).or_insert(o);
    }
    for rec in dp.masters.iter().filter(|r| r.at >= t0 && r.at <= end) {
        for vip in &rec.vips {
            let before = open.before.get(vip);
            if before.is_some_and(|b| b.contains(&rec.node)) || !seen.insert(*vip) {
                continue;
            }
            let neigh = neigh_of
                .get(vip)
                .and_then(|list| list.iter().find(|n| n.at >= rec.at && n.node.as_deref() == Some(rec.node.as_str())))
                .map(|n| ms_f64(n.at.saturating_sub(t0)));
            let outage = outage_of.get(vip).and_then(|o| o.end.map(|e| ms_f64(e.saturating_sub(o.start))));
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
