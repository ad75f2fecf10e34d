//! `lab bench`: client-observed outage for crash failover and graceful handover, takeover-to-GARP latency and
//! speaker resources, for every speaker configuration in one run so the figures compare like with like.
//! Each run gets a fresh lab, so no run inherits a neighbour entry or a stale VIP from the one before.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow};

use crate::demo::HOLDER_TIMEOUT;
use crate::layout::Layout;
use crate::probe::{Capture, PingProbe, first_advert, first_garp, largest_gap, now_epoch, sample_usage};
use crate::speaker_program::{OpenelbSpeakerCommand, SpeakerProgram, find_openelb_speaker};
use crate::topology::{Lab, LabConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failover {
    /// Holder's speaker frozen then killed, its link down.
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
    /// Largest gap between the client's 10 ms ping replies (s).
    pub outage: Option<f64>,
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
}

/// One fresh lab, one failover, measured.
pub fn one_run(input: &BenchInput, speaker: &SpeakerProgram, failover: Failover) -> Result<RunResult> {
    let cfg = LabConfig::unique(input.cli_exe.clone());
    let layout = Layout::from_paths(&input.paths, &cfg.id, None)?;
    let mut lab = Lab::build(layout, &cfg)?;
    lab.start_speakers(speaker)?;
    let old = lab.wait_holder(None, HOLDER_TIMEOUT)?;
    let vip = lab.layout.vip;
    let probe = PingProbe::start(&lab.layout.client_ns, vip)?;
    if !probe.wait_replies_after(now_epoch(), 30, Duration::from_secs(5)) {
        return Err(anyhow!("lab {}: no ping replies from {vip} before the failover", lab.layout.id));
    }
    let capture = Capture::start(&lab.layout.switch_ns, &lab.dir, "capture")?;
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
    let mac = lab.layout.node(&new).map(|n| n.mac_string()).unwrap_or_default();
    let garp = first_garp(&frames, vip, &mac, t);
    let advert = first_advert(&frames, &mac, t);
    lab.teardown()?;
    Ok(RunResult {
        outage: if recovered { largest_gap(&replies, t) } else { None },
        event_to_garp: garp.map(|g| g - t),
        advert_to_garp: garp.zip(advert).map(|(g, a)| g - a),
        old,
        new,
    })
}

/// Median and nearest-rank p90 of the values (seconds).
pub fn median_p90(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    let rank = (0.9 * n as f64).ceil() as usize;
    Some((median, v[rank.clamp(1, n) - 1]))
}

fn ms(v: f64) -> String {
    format!("{:.1} ms", v * 1000.0)
}

fn row(speaker: &str, what: &str, values: &[f64], runs: usize) {
    match median_p90(values) {
        Some((m, p)) => println!("{speaker:<30} {what:<28} {:>3}/{runs:<3} {:>11} {:>11}", values.len(), ms(m), ms(p)),
        None => println!("{speaker:<30} {what:<28} {:>3}/{runs:<3} {:>11} {:>11}", 0, "-", "-"),
    }
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

pub fn run(input: &BenchInput) -> Result<()> {
    let mut speakers = vec![
        SpeakerProgram::keepalived(Duration::from_secs(1)),
        SpeakerProgram::keepalived(Duration::from_millis(100)),
    ];
    let openelb = find_openelb_speaker();
    match &openelb {
        Some(binary) => {
            speakers
                .push(SpeakerProgram::Openelb(OpenelbSpeakerCommand { binary: binary.clone(), ..Default::default() }));
            speakers.push(SpeakerProgram::Openelb(OpenelbSpeakerCommand {
                binary: binary.clone(),
                advert_interval: Some(Duration::from_secs(1)),
                ..Default::default()
            }));
        }
        None => println!(
            "note: openelb-speaker not found (set OPENELB_SPEAKER or build it next to openelb-cli); its rows are skipped"
        ),
    }
    let runs = input.runs;
    if runs > 0 {
        println!("{:<30} {:<28} {:>7} {:>11} {:>11}", "speaker", "measure", "ok/runs", "median", "p90");
    }
    for speaker in speakers.iter().filter(|_| runs > 0) {
        for failover in [Failover::Crash, Failover::Graceful] {
            let mut results = Vec::new();
            for i in 0..runs {
                match one_run(input, speaker, failover) {
                    Ok(r) => results.push(r),
                    Err(e) => eprintln!("{} {} run {}: {e:#}", speaker.label(), failover.label(), i + 1),
                }
            }
            let pick = |f: fn(&RunResult) -> Option<f64>| results.iter().filter_map(f).collect::<Vec<f64>>();
            let label = speaker.label();
            row(&label, &format!("{} outage", failover.label()), &pick(|r| r.outage), runs);
            row(&label, &format!("{} event->first GARP", failover.label()), &pick(|r| r.event_to_garp), runs);
            row(&label, &format!("{} advert->first GARP", failover.label()), &pick(|r| r.advert_to_garp), runs);
        }
    }
    println!();
    println!("{:<30} {:<28} {:>11} {:>11}", "speaker", "resources (worst node)", "RSS", "CPU");
    let mut usage: Vec<(String, SpeakerProgram)> = speakers
        .iter()
        .filter(|s| matches!(s, SpeakerProgram::Keepalived { .. }))
        .map(|s| ("1 VIP".to_string(), s.clone()))
        .collect();
    if let Some(binary) = openelb {
        usage.push((
            "1000 IPv6 VIPs + 1".to_string(),
            SpeakerProgram::Openelb(OpenelbSpeakerCommand { binary, extra_v6_vips: 1000, ..Default::default() }),
        ));
    } else {
        println!("(openelb-speaker with 1000 VIPs skipped: binary not found)");
    }
    for (what, speaker) in usage {
        match resources(input, &speaker) {
            Ok((_, rss, cpu)) => {
                println!("{:<30} {:<28} {:>8.1} MB {:>9.2} %", speaker.label(), what, rss, cpu)
            }
            Err(e) => eprintln!("{} resources: {e:#}", speaker.label()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p90_use_nearest_rank() {
        assert_eq!(median_p90(&[]), None);
        assert_eq!(median_p90(&[3.0]), Some((3.0, 3.0)));
        assert_eq!(median_p90(&[4.0, 1.0, 3.0, 2.0]), Some((2.5, 4.0)));
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(median_p90(&ten), Some((5.5, 9.0)));
    }
}
