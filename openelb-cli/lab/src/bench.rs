//! `lab bench`: client-observed outage for crash failover and graceful handover, takeover-to-GARP latency and
//! speaker resources, for every speaker configuration in one run so the figures compare like with like.
//! Each run gets a fresh lab, so no run inherits a neighbour entry or a stale VIP from the one before.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow};

use crate::demo::HOLDER_TIMEOUT;
use crate::kube_bench::percentile;
use crate::layout::Layout;
use crate::probe::{Capture, PingProbe, echo_replies, first_advert, first_garp, largest_gap, now_epoch, sample_usage};
use crate::speaker_program::{OpenelbSpeakerCommand, SpeakerProgram, find_openelb_speaker};
use crate::topology::{Lab, LabConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failover {
    /// Holder's link down, its speaker frozen then killed.
    Crash,
    /// Holder's speaker gets SIGTERM.
    Graceful,
}

impl Failover {
    fn label(self) -> &'static str {
        match self {
            Failover::Crash => "crash",
            Failover::Graceful => "graceful",
        }
    }
}

/// What one failover looked like.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunResult {
    /// Largest gap between the echo replies the switch's bridge forwarded to the client, ending after the event:
    /// normally from the old holder's last reply to the new holder's first (s).
    pub outage: Option<f64>,
    /// Largest gap between the replies the client's ping printed (s): the same outage at the client's clock.
    pub client_gap: Option<f64>,
    /// From the crash/stop to the new holder's first gratuitous ARP for the VIP (s).
    pub event_to_garp: Option<f64>,
    /// From the new holder's first advert as master (its decision) to its first GARP (s).
    pub advert_to_garp: Option<f64>,
    pub old: String,
    pub new: String,
}

pub struct BenchInput {
    pub paths: Vec<PathBuf>,
    pub cli_exe: PathBuf,
    pub runs: usize,
    /// Wait before sampling RSS/CPU, so the figure is the steady state and not start-up (1000 VIPs added and
    /// announced, preemption after the preempt delay).
    pub settle: Duration,
    pub window: Duration,
    /// keepalived and openelb-speaker are compared at each of these advert intervals; empty: keepalived at 1 s
    /// and 100 ms, openelb-speaker with its defaults and at 1 s.
    pub advert_intervals: Vec<Duration>,
    /// How often the client pings the VIP: the outage's resolution.
    pub probe_interval: Duration,
}

/// One fresh lab, one failover, measured.
pub fn one_run(input: &BenchInput, speaker: &SpeakerProgram, failover: Failover) -> Result<RunResult> {
    let cfg = LabConfig::unique(input.cli_exe.clone());
    let layout = Layout::from_paths(&input.paths, &cfg.id, None)?;
    let mut lab = Lab::build(layout, &cfg)?;
    lab.start_speakers(speaker)?;
    let old = lab.wait_holder(None, HOLDER_TIMEOUT)?;
    let vip = lab.layout.vip;
    let probe = PingProbe::start_every(&lab.layout.client_ns, vip, input.probe_interval)?;
    if !probe.wait_replies_after(now_epoch(), 30, Duration::from_secs(5)) {
        return Err(anyhow!("lab {}: no ping replies from {vip} before the failover", lab.layout.id));
    }
    let capture = Capture::start(&lab.layout.switch_ns, &lab.dir, "capture")?;
    // Replies the capture sees from the old holder before the event.
    std::thread::sleep(Duration::from_millis(20));
    let t = now_epoch();
    match failover {
        Failover::Crash => lab.crash(&old)?,
        Failover::Graceful => lab.stop_speaker(&old)?,
    }
    let new = lab.wait_holder(Some(&old), HOLDER_TIMEOUT)?;
    let recovered = probe.wait_replies_after(t, 30, Duration::from_secs(10));
    let replies = probe.stop();
    std::thread::sleep(Duration::from_millis(50));
    let frames = capture.stop();
    let new_mac = lab.layout.node(&new).map(|n| n.mac_string()).unwrap_or_default();
    let garp = first_garp(&frames, vip, &new_mac, t);
    let advert = first_advert(&frames, &new_mac, t);
    lab.teardown()?;
    Ok(RunResult {
        outage: if recovered { largest_gap(&echo_replies(&frames), t) } else { None },
        client_gap: if recovered { largest_gap(&replies, t) } else { None },
        event_to_garp: garp.map(|g| g - t),
        advert_to_garp: garp.zip(advert).map(|(g, a)| g - a),
        old,
        new,
    })
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{:.1} ms", v * 1000.0))
}

/// One table line: how many runs gave a value, p50, p90, p99 and max (nearest rank: with fewer than 100 runs
/// p99 is the largest value) and the range of the 1-minute load average over the runs.
fn row(speaker: &str, what: &str, values: &[f64], runs: usize, load: (f64, f64)) {
    let p = |q| percentile(values, q);
    println!(
        "{speaker:<30} {what:<30} {:>3}/{runs:<3} {:>9} {:>9} {:>9} {:>9}  {:.1}-{:.1}",
        values.len(),
        ms(p(50.0)),
        ms(p(90.0)),
        ms(p(99.0)),
        ms(p(100.0)),
        load.0,
        load.1
    );
}

/// The 1-minute load average (`/proc/loadavg`), 0 if unreadable.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|l| l.parse().ok()))
        .unwrap_or(0.0)
}

/// Resource use of the holder's speaker with the lab's VIPs (plus `extra` IPv6 VIPs for openelb-speaker).
fn resources(input: &BenchInput, speaker: &SpeakerProgram) -> Result<(String, f64, f64)> {
    let cfg = LabConfig::unique(input.cli_exe.clone());
    let layout = Layout::from_paths(&input.paths, &cfg.id, None)?;
    let mut lab = Lab::build(layout, &cfg)?;
    lab.start_speakers(speaker)?;
    let holder = lab.wait_holder(None, HOLDER_TIMEOUT)?;
    std::thread::sleep(input.settle);
    let mut worst = (0.0f64, 0.0f64);
    for s in lab.speakers() {
        if let Some((rss, cpu)) = sample_usage(&s.pids(), input.window) {
            worst = (worst.0.max(rss), worst.1.max(cpu));
        }
    }
    lab.teardown()?;
    Ok((holder, worst.0, worst.1))
}

/// The configurations compared: both speakers at each interval asked for, else the classic set.
fn speakers(input: &BenchInput, openelb: Option<&PathBuf>) -> Vec<SpeakerProgram> {
    let ours = |advert_interval| {
        openelb.map(|binary| {
            SpeakerProgram::Openelb(OpenelbSpeakerCommand {
                binary: binary.clone(),
                advert_interval,
                ..Default::default()
            })
        })
    };
    if input.advert_intervals.is_empty() {
        let mut v = vec![
            SpeakerProgram::keepalived(Duration::from_secs(1)),
            SpeakerProgram::keepalived(Duration::from_millis(100)),
        ];
        v.extend(ours(None));
        v.extend(ours(Some(Duration::from_secs(1))));
        return v;
    }
    input
        .advert_intervals
        .iter()
        .flat_map(|&i| std::iter::once(SpeakerProgram::keepalived(i)).chain(ours(Some(i))))
        .collect()
}

pub fn run(input: &BenchInput) -> Result<()> {
    let openelb = find_openelb_speaker();
    if openelb.is_none() {
        println!(
            "note: openelb-speaker not found (set OPENELB_SPEAKER or build it next to openelb-cli); its rows are skipped"
        );
    }
    let speakers = speakers(input, openelb.as_ref());
    let runs = input.runs;
    // Runs interleave the configurations, so a change in the machine's load touches them all alike.
    let cases: Vec<(&SpeakerProgram, Failover)> =
        speakers.iter().flat_map(|s| [(s, Failover::Crash), (s, Failover::Graceful)]).collect();
    let mut results: Vec<Vec<RunResult>> = vec![Vec::new(); cases.len()];
    let mut loads: Vec<(f64, f64)> = vec![(f64::MAX, 0.0); cases.len()];
    for i in 0..runs {
        for (k, (speaker, failover)) in cases.iter().enumerate() {
            let load = load_average();
            loads[k] = (loads[k].0.min(load), loads[k].1.max(load));
            match one_run(input, speaker, *failover) {
                Ok(r) => {
                    eprintln!(
                        "{} {} run {}: {} -> {}, outage {} (client's ping {}), load1 {load:.1}",
                        speaker.label(),
                        failover.label(),
                        i + 1,
                        r.old,
                        r.new,
                        ms(r.outage),
                        ms(r.client_gap)
                    );
                    results[k].push(r)
                }
                Err(e) => eprintln!("{} {} run {}: {e:#}", speaker.label(), failover.label(), i + 1),
            }
        }
    }
    if runs > 0 {
        println!(
            "client probe: ping every {:?}; outage = largest gap between echo replies on the bridge after the event",
            input.probe_interval
        );
        println!(
            "{:<30} {:<30} {:>7} {:>9} {:>9} {:>9} {:>9}  load1",
            "speaker", "measure", "ok/runs", "p50", "p90", "p99", "max"
        );
    }
    for (k, (speaker, failover)) in cases.iter().enumerate().filter(|_| runs > 0) {
        let results = &results[k];
        let pick = |f: fn(&RunResult) -> Option<f64>| results.iter().filter_map(f).collect::<Vec<f64>>();
        let (label, f) = (speaker.label(), failover.label());
        row(&label, &format!("{f} outage"), &pick(|r| r.outage), runs, loads[k]);
        row(&label, &format!("{f} outage (client's ping)"), &pick(|r| r.client_gap), runs, loads[k]);
        row(&label, &format!("{f} event->first GARP"), &pick(|r| r.event_to_garp), runs, loads[k]);
        row(&label, &format!("{f} advert->first GARP"), &pick(|r| r.advert_to_garp), runs, loads[k]);
    }
    println!();
    println!("{:<30} {:<28} {:>11} {:>11}  load1", "speaker", "resources (worst node)", "RSS", "CPU");
    let mut usage: Vec<(String, SpeakerProgram)> = speakers
        .iter()
        .filter(|s| matches!(s, SpeakerProgram::Keepalived { .. }))
        .map(|s| ("1 VIP".to_string(), s.clone()))
        .collect();
    let ours: Vec<&SpeakerProgram> = speakers.iter().filter(|s| matches!(s, SpeakerProgram::Openelb(_))).collect();
    for s in ours.iter().filter(|s| !input.advert_intervals.is_empty() || s.label().ends_with("defaults")) {
        if let SpeakerProgram::Openelb(o) = s {
            for (what, extra_v6_vips) in [("1 VIP", 0), ("1000 IPv6 VIPs + 1", 1000)] {
                let command = OpenelbSpeakerCommand { extra_v6_vips, ..o.clone() };
                usage.push((what.to_string(), SpeakerProgram::Openelb(command)));
            }
        }
    }
    if openelb.is_none() {
        println!("(openelb-speaker with 1000 VIPs skipped: binary not found)");
    }
    // CPU of openelb-speaker by VIP count: VIPs share instances, so 1000 should cost about what 1 does.
    let mut openelb_cpu = Vec::new();
    for (what, speaker) in usage {
        let load = load_average();
        match resources(input, &speaker) {
            Ok((_, rss, cpu)) => {
                println!("{:<30} {:<28} {:>8.1} MB {:>9.2} %  {load:.1}", speaker.label(), what, rss, cpu);
                if let SpeakerProgram::Openelb(o) = &speaker {
                    openelb_cpu.push((speaker.label(), o.extra_v6_vips, cpu));
                }
            }
            Err(e) => eprintln!("{} resources: {e:#}", speaker.label()),
        }
    }
    // One ratio per setting (each --advert-interval), from its 1-VIP and 1000-VIP rows.
    for (label, _, one) in openelb_cpu.iter().filter(|(_, extra, _)| *extra == 0) {
        let thousand = openelb_cpu.iter().find(|(l, extra, _)| l == label && *extra > 0).map(|(.., c)| *c);
        if let Some(thousand) = thousand.filter(|_| *one > 0.0) {
            println!("ratio speaker-cpu 1000-vips/1-vip ({label}): {:.2}", thousand / one);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(advert_intervals: Vec<Duration>) -> BenchInput {
        BenchInput {
            paths: Vec::new(),
            cli_exe: PathBuf::new(),
            runs: 1,
            settle: Duration::ZERO,
            window: Duration::ZERO,
            advert_intervals,
            probe_interval: Duration::from_millis(1),
        }
    }

    #[test]
    fn both_speakers_run_at_every_interval_asked_for() {
        let bin = PathBuf::from("/x/openelb-speaker");
        let labels = |v: Vec<SpeakerProgram>| v.iter().map(SpeakerProgram::label).collect::<Vec<_>>();
        let ms = Duration::from_millis;
        assert_eq!(
            labels(speakers(&input(vec![ms(10), ms(20)]), Some(&bin))),
            [
                "keepalived advert 10ms",
                "openelb-speaker advert 10ms",
                "keepalived advert 20ms",
                "openelb-speaker advert 20ms"
            ]
        );
        assert_eq!(labels(speakers(&input(vec![ms(10)]), None)), ["keepalived advert 10ms"]);
        assert_eq!(
            labels(speakers(&input(Vec::new()), Some(&bin))),
            [
                "keepalived advert 1s",
                "keepalived advert 100ms",
                "openelb-speaker defaults",
                "openelb-speaker advert 1s"
            ]
        );
    }
}
