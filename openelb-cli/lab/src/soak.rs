//! `lab soak`: the lab's speakers left running for minutes beside busy loops pinned to some cores, counting what
//! a short advert interval risks on a busy node: master changes nobody asked for, pings lost, and how close the
//! master's advert gaps come to the backups' Master_Down_Interval (3 intervals and a skew).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use openelb_core::model::TrafficPolicy;

use crate::bench::load_average;
use crate::demo::HOLDER_TIMEOUT;
use crate::hostile::master_changes_in;
use crate::kube_bench::percentile;
use crate::layout::Layout;
use crate::probe::{Capture, CapturedFrame, PingProbe, clock_ticks, lost_between, now_epoch, proc_usage};
use crate::process::Process;
use crate::speaker_program::SpeakerProgram;
use crate::topology::{Lab, LabConfig};

pub struct SoakInput {
    pub paths: Vec<PathBuf>,
    pub cli_exe: PathBuf,
    pub speaker: SpeakerProgram,
    /// Overrides every Service's externalTrafficPolicy.
    pub policy: Option<TrafficPolicy>,
    pub duration: Duration,
    /// CPUs each given a busy loop (`taskset -c CPU sh -c 'while :; do :; done'`) for the whole window.
    pub busy_cpus: Vec<usize>,
    /// Wait after the holder is elected (preemption done) before counting starts.
    pub settle: Duration,
}

/// What the window showed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SoakOutcome {
    pub holder: String,
    /// Adverts with a non-zero priority on the bridge, and the VRIDs they carried.
    pub adverts: usize,
    pub vrids: usize,
    /// Gaps between consecutive adverts of one VRID (s).
    pub gaps: Vec<f64>,
    /// Times a VRID's adverts came from another MAC than the one before.
    pub wire_master_changes: u64,
    /// BACKUP <-> MASTER changes the speakers logged (keepalived: entering MASTER, BACKUP or FAULT).
    pub logged_state_changes: u64,
    pub pings_lost: u64,
    pub pings_sent: u64,
    /// The busiest speaker's CPU over the window (% of one core).
    pub cpu_percent: f64,
    pub load: (f64, f64),
}

/// A busy loop on one CPU, ended by PID when dropped.
fn busy_loop(cpu: usize) -> Result<Process> {
    let cpu_arg = cpu.to_string();
    let child = Command::new("taskset")
        .args(["-c", &cpu_arg, "sh", "-c", "while :; do :; done"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start a busy loop on CPU {cpu} (taskset)"))?;
    Ok(Process::adopt(&format!("busy-cpu{cpu}"), child, None))
}

/// Non-zero-priority adverts per VRID: how many, the gaps between consecutive ones, and how often the sender's
/// MAC changed.
pub fn advert_stats(frames: &[CapturedFrame], from: f64, to: f64) -> (usize, usize, Vec<f64>, u64) {
    let mut by_vrid: BTreeMap<Option<u8>, Vec<(f64, &str)>> = BTreeMap::new();
    for f in frames {
        if let CapturedFrame::Vrrp { ts, mac, vrid, prio } = f
            && *ts >= from
            && *ts <= to
            && *prio != Some(0)
        {
            by_vrid.entry(*vrid).or_default().push((*ts, mac.as_str()));
        }
    }
    let (mut count, mut gaps, mut changes) = (0, Vec::new(), 0);
    for adverts in by_vrid.values() {
        count += adverts.len();
        for w in adverts.windows(2) {
            gaps.push(w[1].0 - w[0].0);
            changes += u64::from(!w[1].1.eq_ignore_ascii_case(w[0].1));
        }
    }
    (count, by_vrid.len(), gaps, changes)
}

/// State changes in a speaker's log text, ours or keepalived's.
pub fn state_changes_in(log: &str) -> u64 {
    let keepalived = ["Entering MASTER STATE", "Entering BACKUP STATE", "Entering FAULT STATE"];
    master_changes_in(log) + keepalived.iter().map(|s| log.matches(s).count() as u64).sum::<u64>()
}

fn log_from(path: &Path, offset: u64) -> Result<String> {
    let text = fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(String::from_utf8_lossy(text.get(usize::try_from(offset).unwrap_or(0)..).unwrap_or_default()).into_owned())
}

/// Builds a lab, waits for the holder, loads the CPUs, watches for `duration`, removes everything.
pub fn run(input: &SoakInput) -> Result<SoakOutcome> {
    let cfg = LabConfig::unique(input.cli_exe.clone());
    let layout = Layout::from_paths(&input.paths, &cfg.id, input.policy)?;
    let mut lab = Lab::build(layout, &cfg)?;
    let result = watch(&mut lab, input);
    let removed = lab.teardown();
    let outcome = result?;
    removed?;
    Ok(outcome)
}

fn watch(lab: &mut Lab, input: &SoakInput) -> Result<SoakOutcome> {
    lab.start_speakers(&input.speaker)?;
    let holder = lab.wait_holder(None, HOLDER_TIMEOUT)?;
    std::thread::sleep(input.settle);
    let holder_now = lab.wait_holder(None, HOLDER_TIMEOUT)?;
    if holder_now != holder {
        return Err(anyhow!("lab {}: the holder moved from {holder} to {holder_now} while settling", lab.layout.id));
    }
    let ping = PingProbe::start(&lab.layout.client_ns, lab.layout.vip)?;
    if !ping.wait_replies_after(now_epoch(), 20, Duration::from_secs(5)) {
        return Err(anyhow!("lab {}: the client gets no replies from {}", lab.layout.id, lab.layout.vip));
    }
    let capture = Capture::start(&lab.layout.switch_ns, &lab.dir, "soak")?;
    let busy: Vec<Process> = input.busy_cpus.iter().map(|&c| busy_loop(c)).collect::<Result<_>>()?;
    let logs: Vec<(PathBuf, u64)> = lab
        .speakers()
        .iter()
        .filter_map(|s| s.log_path())
        .map(|p| (p.to_path_buf(), fs::metadata(p).map_or(0, |m| m.len())))
        .collect();
    let cpu = |lab: &Lab| -> Vec<u64> {
        lab.speakers().iter().map(|s| s.pids().iter().filter_map(|p| proc_usage(*p)).map(|u| u.1).sum()).collect()
    };
    let cpu_before = cpu(lab);
    let load_before = load_average();
    let (from, started) = (now_epoch(), Instant::now());
    std::thread::sleep(input.duration);
    let (to, secs) = (now_epoch(), started.elapsed().as_secs_f64());
    let cpu_after = cpu(lab);
    let load_after = load_average();
    drop(busy);
    let _ = ping.wait_replies_after(to, 5, Duration::from_secs(1));
    let lines = ping.stop_lines();
    let frames = capture.stop();
    let (adverts, vrids, gaps, wire_master_changes) = advert_stats(&frames, from, to);
    let mut logged_state_changes = 0;
    for (path, offset) in &logs {
        logged_state_changes += state_changes_in(&log_from(path, *offset)?);
    }
    let ticks = cpu_before.iter().zip(&cpu_after).map(|(b, a)| a.saturating_sub(*b)).max().unwrap_or(0);
    Ok(SoakOutcome {
        holder,
        adverts,
        vrids,
        gaps,
        wire_master_changes,
        logged_state_changes,
        pings_lost: lost_between(&lines, from, to),
        pings_sent: lines
            .iter()
            .filter(|l| l.ts >= from && l.ts <= to)
            .map(|l| l.seq)
            .collect::<std::collections::BTreeSet<_>>()
            .len() as u64,
        cpu_percent: ticks as f64 / clock_ticks() / secs.max(1e-3) * 100.0,
        load: (load_before, load_after),
    })
}

/// The report, one fact a line.
pub fn print(input: &SoakInput, o: &SoakOutcome) {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{:.1} ms", v * 1000.0));
    let cpus: Vec<String> = input.busy_cpus.iter().map(ToString::to_string).collect();
    println!(
        "soak: {} for {:?}, busy loops on CPU {}; holder {}; load1 {:.1} at the start, {:.1} at the end",
        input.speaker.label(),
        input.duration,
        if cpus.is_empty() { "none".to_string() } else { cpus.join(",") },
        o.holder,
        o.load.0,
        o.load.1
    );
    let nominal = percentile(&o.gaps, 50.0).unwrap_or(0.0);
    let over = |k: f64| o.gaps.iter().filter(|g| **g > k * nominal).count();
    println!("adverts: {} on {} VRID(s); median gap (the interval) {}", o.adverts, o.vrids, ms(Some(nominal)));
    println!(
        "advert gaps: p99 {}, p99.9 {}, max {}; over 1.5x the interval: {}, over 2x: {}, over 3x (a backup's \
         Master_Down_Interval is 3x + skew): {}",
        ms(percentile(&o.gaps, 99.0)),
        ms(percentile(&o.gaps, 99.9)),
        ms(percentile(&o.gaps, 100.0)),
        over(1.5),
        over(2.0),
        over(3.0)
    );
    println!(
        "master changes: {} on the wire (a VRID's adverts from another MAC), {} state changes in the speakers' logs",
        o.wire_master_changes, o.logged_state_changes
    );
    println!("client pings (every 10 ms) lost: {} of {}", o.pings_lost, o.pings_sent);
    println!("busiest speaker CPU: {:.2} % of one core", o.cpu_percent);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advert(ts: f64, mac: &str, vrid: u8, prio: u8) -> CapturedFrame {
        CapturedFrame::Vrrp { ts, mac: mac.into(), vrid: Some(vrid), prio: Some(prio) }
    }

    #[test]
    fn advert_gaps_and_sender_changes_are_per_vrid() {
        let frames = [
            advert(1.00, "a", 1, 200),
            advert(1.00, "b", 2, 200),
            advert(1.01, "a", 1, 200),
            advert(1.02, "b", 2, 200),
            advert(1.03, "a", 1, 0),
            advert(1.05, "C", 1, 150),
            advert(1.06, "c", 1, 150),
            advert(9.00, "a", 1, 200),
        ];
        let (count, vrids, gaps, changes) = advert_stats(&frames, 0.5, 2.0);
        assert_eq!((count, vrids, changes), (6, 2, 1), "priority 0 is no master advert; MACs compare without case");
        let mut ms: Vec<i64> = gaps.iter().map(|g| (g * 1000.0).round() as i64).collect();
        ms.sort_unstable();
        assert_eq!(ms, [10, 10, 20, 40]);
    }

    #[test]
    fn state_changes_of_both_speakers_are_counted() {
        let ours = "VRRP state BACKUP -> MASTER\nVRRP state MASTER -> BACKUP\n";
        let keepalived = "(VI_91) Entering MASTER STATE\n(VI_91) Entering FAULT STATE\n";
        assert_eq!(state_changes_in(ours), 2);
        assert_eq!(state_changes_in(keepalived), 2);
        assert_eq!(state_changes_in("VRRP state INITIALIZE -> BACKUP"), 0);
    }
}
