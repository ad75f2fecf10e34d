//! `lab hostile`: the seed's lab on a LAN that is not clean. Each case builds a fresh lab (openelb-speaker on
//! every node, a client pinging the VIP every 10 ms) with a host at 192.0.2.250 that is no node, does one
//! hostile thing from there, and records what the client and the nodes saw: pings lost, every change of the
//! VIP's address on a node and of the client's neighbour entry for it, the speakers' VRRP state changes, their
//! CPU and the lines they logged. The tests assert on the [`Outcome`]s; the command prints them, for any
//! speaker build (`OPENELB_SPEAKER`), so builds compare case by case.

use std::fmt;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use openelb_core::vrrp::Advert;
use openelb_net::wire::ethernet::MacAddr;

use crate::demo::HOLDER_TIMEOUT;
use crate::eventually::eventually;
use crate::keepalived;
use crate::layout::Layout;
use crate::netns::{self, Sig};
use crate::probe::{LineTap, PingOutcome, PingProbe, clock_ticks, lost_between, now_epoch, proc_usage};
use crate::process::Process;
use crate::segment::Host;
use crate::speaker_program::{OpenelbSpeakerCommand, SpeakerProgram};
use crate::spoof::{FloodMix, SendReport, Sender, Spoof};
use crate::topology::{Lab, LabConfig};

/// The host that is no node: the spoofer and the flood's sender.
pub const ATTACKER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 250);
pub const ATTACKER_MAC: MacAddr = MacAddr([0x02, 0x42, 0xc0, 0x00, 0x02, 0xfa]);
/// The foreign VRRP router's host, and the VIP it holds.
pub const FOREIGN_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 251);
pub const FOREIGN_MAC: MacAddr = MacAddr([0x02, 0x42, 0xc0, 0x00, 0x02, 0xfb]);
pub const FOREIGN_VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
/// Where every speaker serves its metrics, inside its node's namespace (both builds accept the flag).
pub const METRICS: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8477);
/// The speakers' advert interval (their default, 100 ms), in centiseconds: what a plausible spoof carries.
const ADVERT_INTERVAL_CS: u16 = 10;
/// Spoofs are sent like a VRRP master sends adverts at the default interval: 10 a second, for 3 s (30).
const SPOOF_RATE: f64 = 10.0;
const SPOOF_FOR: Duration = Duration::from_secs(3);
/// How long the nodes are watched after the hostile part (a VIP dropped by a spoof would come back, or not,
/// within it).
const AFTER: Duration = Duration::from_secs(3);
/// keepalived's advert interval as in its sample configuration and most apiserver setups.
const FOREIGN_ADVERT: Duration = Duration::from_secs(1);
/// How long to give our speakers to report a foreign router and move our group off its VRID: 5 s of
/// sightings confirm it; the rest is margin for a loaded machine.
const FOREIGN_SETTLE: Duration = Duration::from_secs(20);

/// Where a spoofed advert is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// 224.0.0.18, as every VRRP router sends.
    Group,
    /// Unicast to the node that holds the VIP.
    Master,
    /// Unicast to the VIP's second preference.
    Backup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// 30 adverts on the VIP's VRID from the non-node, carrying the VIP, 10 a second.
    Spoof { priority: u8, max_advert_int: u16, target: Target },
    /// keepalived (VRRPv3, advert 1 s) on the VIP's VRID with its own VIP, until our group moved off its VRID,
    /// then stopped (its priority-0 advert).
    Keepalived { priority: u8 },
    /// `rate` adverts a second for `seconds`: half valid-looking, half malformed.
    Flood { rate: u32, seconds: u64 },
}

impl Case {
    /// Every case of the suite, in the order `lab hostile` runs them.
    pub fn all() -> Vec<Case> {
        let mut out = Vec::new();
        for target in [Target::Group, Target::Master, Target::Backup] {
            for (priority, max_advert_int) in [(255, ADVERT_INTERVAL_CS), (254, ADVERT_INTERVAL_CS), (254, 4095)] {
                out.push(Case::Spoof { priority, max_advert_int, target });
            }
        }
        out.push(Case::Spoof { priority: 0, max_advert_int: ADVERT_INTERVAL_CS, target: Target::Backup });
        out.push(Case::Keepalived { priority: 254 });
        out.push(Case::Keepalived { priority: 100 });
        out.push(Case::Flood { rate: 20_000, seconds: 10 });
        out
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Case::Spoof { priority, max_advert_int, target } => {
                let to = match target {
                    Target::Group => "224.0.0.18",
                    Target::Master => "master",
                    Target::Backup => "backup",
                };
                write!(f, "spoof prio {priority}")?;
                if *max_advert_int != ADVERT_INTERVAL_CS {
                    write!(f, " maxadv {max_advert_int}")?;
                }
                write!(f, " to {to}")
            }
            Case::Keepalived { priority } => write!(f, "keepalived prio {priority} on our VRID"),
            Case::Flood { rate, seconds } => write!(f, "flood {}k/s for {seconds}s", rate / 1000),
        }
    }
}

/// What the foreign keepalived cases saw besides our VIP.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ForeignOutcome {
    /// The VRID of our group once the speakers had time to move it (the same as before if they did not).
    pub vrid_after: Option<u8>,
    /// A speaker reported the router: `openelb_vrrp_foreign_routers` on its VRID, or a log line.
    pub reported: bool,
    /// Pings to keepalived's VIP lost while it was master (before it was stopped).
    pub lost_pings: u64,
    /// Who held keepalived's VIP just before it was stopped: `keepalived` alone, nodes never.
    pub holders: Vec<String>,
    /// keepalived's state changes after it first became master, while it ran.
    pub master_changes: u64,
}

/// What one case did to the LAN, as the client and the nodes saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub case: String,
    /// The node holding the VIP when the case began.
    pub holder: String,
    /// The VIP's VRID when the case began, from the holder's metrics.
    pub vrid: Option<u8>,
    /// Pings to the VIP lost from the start of the hostile part to the end of the watch.
    pub lost_pings: u64,
    /// Replies to one ping from two hosts.
    pub duplicate_replies: u64,
    /// The VIP added to or removed from a node's interface.
    pub address_changes: u64,
    /// The client's neighbour entry for the VIP changed its MAC.
    pub neighbour_changes: u64,
    /// Nodes holding the VIP at the end.
    pub holders_after: Vec<String>,
    /// VRRP state changes BACKUP -> MASTER or MASTER -> BACKUP of any speaker.
    pub master_changes: u64,
    /// The busiest speaker's CPU (% of one core): over the flood for the flood, over the watch otherwise.
    pub cpu_percent: f64,
    /// Lines all speakers logged during the watch.
    pub log_lines: u64,
    /// The most lines one speaker logged during the watch.
    pub log_lines_max: u64,
    pub sent: SendReport,
    pub foreign: Option<ForeignOutcome>,
}

impl Outcome {
    /// The VIP moved or was doubled: an address change, a neighbour change, a duplicate reply, or anyone but
    /// the holder holding it at the end.
    pub fn vip_moves(&self) -> u64 {
        let end = u64::from(self.holders_after != [self.holder.clone()]);
        self.address_changes + self.neighbour_changes + self.duplicate_replies + end
    }
}

#[derive(Debug, Clone)]
pub struct HostileInput {
    pub paths: Vec<PathBuf>,
    pub cli_exe: PathBuf,
    pub speaker: PathBuf,
}

impl HostileInput {
    fn speaker(&self) -> SpeakerProgram {
        SpeakerProgram::Openelb(OpenelbSpeakerCommand {
            binary: self.speaker.clone(),
            metrics_addr: Some(METRICS),
            ..Default::default()
        })
    }
}

/// The speakers' /metrics, read inside `node`'s namespace.
pub fn metrics(lab: &Lab, node: &str) -> Result<String> {
    let ns = &lab.layout.node(node).ok_or_else(|| anyhow!("no node {node}"))?.ns;
    netns::exec(ns, &["curl", "-sS", "--max-time", "2", &format!("http://{METRICS}/metrics")])
}

/// The value of the label `name` in one exposition line.
fn label<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let rest = line.split_once('{')?.1.split_once('}')?.0;
    rest.split(',').find_map(|kv| kv.strip_prefix(name)?.strip_prefix("=\"")?.strip_suffix('"'))
}

/// VRIDs of the IPv4 groups this speaker is master of (`openelb_speaker_vrrp_state` 2).
pub fn master_vrids(metrics: &str) -> Vec<u8> {
    metrics
        .lines()
        .filter(|l| l.starts_with("openelb_speaker_vrrp_state{") && l.ends_with(" 2"))
        .filter(|l| label(l, "family").is_none_or(|f| f == "IPv4"))
        .filter_map(|l| label(l, "vrid")?.parse().ok())
        .collect()
}

/// Whether the speaker reports a foreign router on `vrid` (`openelb_vrrp_foreign_routers` above 0).
pub fn reports_foreign(metrics: &str, vrid: u8) -> bool {
    metrics.lines().filter(|l| l.starts_with("openelb_vrrp_foreign_routers{")).any(|l| {
        label(l, "vrid") == Some(vrid.to_string().as_str())
            && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).is_some_and(|v| v > 0.0)
    })
}

/// Waits for the VRID of the group `node` is master of.
pub fn wait_master_vrid(lab: &Lab, node: &str, timeout: Duration) -> Result<u8> {
    let mut last = String::new();
    eventually(timeout, Duration::from_millis(100), || {
        last = metrics(lab, node).unwrap_or_else(|e| format!("{e:#}"));
        master_vrids(&last).first().copied()
    })
    .map_err(|e| anyhow!("{node} is master of no IPv4 group in its metrics ({e}); last read:\n{last}"))
}

/// Lines of `ip -o monitor ...` that name `ip` as an address (`inet IP/`) or a neighbour (`IP dev`).
fn about(line: &str, ip: Ipv4Addr) -> bool {
    let line = line.strip_prefix("Deleted ").unwrap_or(line);
    line.contains(&format!(" inet {ip}/")) || line.starts_with(&format!("{ip} "))
}

/// How often the MAC of the client's neighbour entry for the VIP changed, starting from `holder_mac`.
fn neighbour_changes(lines: &[(f64, String)], vip: Ipv4Addr, holder_mac: &str) -> u64 {
    let mut current = holder_mac.to_ascii_lowercase();
    let mut changes = 0;
    for (_, line) in lines.iter().filter(|(_, l)| about(l, vip)) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let mac = words.iter().position(|w| *w == "lladdr").and_then(|i| words.get(i + 1));
        if let Some(mac) = mac.map(|m| m.to_ascii_lowercase())
            && mac != current
        {
            changes += 1;
            current = mac;
        }
    }
    changes
}

/// VRRP state changes a speaker's log text records between BACKUP and MASTER (both builds log them alike).
pub fn master_changes_in(log: &str) -> u64 {
    let n = |s: &str| log.matches(s).count() as u64;
    n("VRRP state BACKUP -> MASTER") + n("VRRP state MASTER -> BACKUP")
}

/// keepalived's state changes after it first became master.
pub fn keepalived_changes_after_master(log: &str) -> u64 {
    let Some(first) = log.find("Entering MASTER STATE") else { return 0 };
    let rest = &log[first + "Entering MASTER STATE".len()..];
    (rest.matches("Entering MASTER STATE").count() + rest.matches("Entering BACKUP STATE").count()) as u64
}

/// CPU ticks of each speaker process now.
fn cpu_ticks(lab: &Lab) -> Vec<u64> {
    lab.speakers().iter().map(|s| proc_usage(s.pid()).map_or(0, |u| u.1)).collect()
}

/// The busiest speaker's CPU (% of one core) between two [`cpu_ticks`] taken `secs` apart.
fn busiest(before: &[u64], after: &[u64], secs: f64) -> f64 {
    let ticks = before.iter().zip(after).map(|(b, a)| a.saturating_sub(*b)).max().unwrap_or(0);
    ticks as f64 / clock_ticks() / secs.max(1e-3) * 100.0
}

/// Everything watched while a case runs.
struct Watch {
    ping: PingProbe,
    /// `ip -o monitor address` in every node.
    addresses: Vec<LineTap>,
    /// `ip -o monitor neigh` in the client.
    neigh: LineTap,
    /// Each speaker's log and its length when the watch began.
    logs: Vec<(PathBuf, u64)>,
    cpu: Vec<u64>,
    started: Instant,
}

impl Watch {
    fn start(lab: &Lab) -> Result<Watch> {
        let mut addresses = Vec::new();
        for node in &lab.layout.nodes {
            addresses.push(LineTap::start(&node.ns, &["ip", "-o", "monitor", "address"])?);
        }
        let neigh = LineTap::start(&lab.layout.client_ns, &["ip", "-o", "monitor", "neigh"])?;
        for tap in addresses.iter().chain([&neigh]) {
            if !tap.wait_socket(Duration::from_secs(5)) {
                bail!("`ip monitor` did not start listening");
            }
        }
        let logs = lab
            .speakers()
            .iter()
            .filter_map(|s| s.log_path())
            .map(|p| (p.to_path_buf(), fs::metadata(p).map_or(0, |m| m.len())))
            .collect();
        let ping = PingProbe::start(&lab.layout.client_ns, lab.layout.vip)?;
        if !ping.wait_replies_after(now_epoch(), 50, Duration::from_secs(10)) {
            bail!("lab {}: the client gets no replies from {}", lab.layout.id, lab.layout.vip);
        }
        Ok(Watch { ping, addresses, neigh, logs, cpu: cpu_ticks(lab), started: Instant::now() })
    }

    /// Stops watching and fills in what the LAN saw since `from` (epoch seconds).
    fn finish(self, lab: &Lab, from: f64, out: &mut Outcome) -> Result<()> {
        let to = now_epoch();
        let secs = self.started.elapsed().as_secs_f64();
        let cpu = cpu_ticks(lab);
        // Replies to the last requests are still in flight.
        let _ = self.ping.wait_replies_after(to, 5, Duration::from_secs(1));
        let lines = self.ping.stop_lines();
        out.lost_pings = lost_between(&lines, from, to);
        out.duplicate_replies =
            lines.iter().filter(|l| l.ts >= from && l.outcome == PingOutcome::Duplicate).count() as u64;
        let vip = lab.layout.vip;
        out.address_changes =
            self.addresses.into_iter().flat_map(LineTap::stop).filter(|(ts, l)| *ts >= from && about(l, vip)).count()
                as u64;
        let holder_mac = lab.layout.node(&out.holder).map(|n| n.mac_string()).unwrap_or_default();
        let neigh: Vec<(f64, String)> = self.neigh.stop().into_iter().filter(|(ts, _)| *ts >= from).collect();
        out.neighbour_changes = neighbour_changes(&neigh, vip, &holder_mac);
        out.holders_after = lab.holders()?;
        if out.cpu_percent == 0.0 {
            out.cpu_percent = busiest(&self.cpu, &cpu, secs);
        }
        for (path, offset) in &self.logs {
            let text = fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
            let new = String::from_utf8_lossy(text.get(usize::try_from(*offset).unwrap_or(0)..).unwrap_or_default());
            let lines = new.lines().count() as u64;
            out.log_lines += lines;
            out.log_lines_max = out.log_lines_max.max(lines);
            out.master_changes += master_changes_in(&new);
        }
        Ok(())
    }
}

/// Distinct adverts a flood cycles through.
pub const FLOOD_VARIETY: usize = 8192;

/// The flood of the lab's LAN: our VRID `vrid` and VIP among random ones, unicast to any node, from 122
/// spoofed sources (192.0.2.128-249, none of them a node, the client or the VIP).
pub fn flood_mix(lab: &Lab, vrid: u8) -> FloodMix {
    FloodMix {
        our_vrid: vrid,
        our_vips: vec![lab.layout.vip],
        nodes: lab.layout.nodes.iter().map(|n| (n.ip, MacAddr(n.mac))).collect(),
        sources: (128..=249).map(|o| Ipv4Addr::new(192, 0, 2, o)).collect(),
        seed: u64::from(vrid),
    }
}

/// Runs one case in a fresh lab and removes it again.
pub fn run_case(input: &HostileInput, case: Case) -> Result<Outcome> {
    let cfg = LabConfig::unique(input.cli_exe.clone());
    let layout = Layout::from_paths(&input.paths, &cfg.id, None)?;
    let mut lab = Lab::build(layout, &cfg)?;
    let result = run_in(&mut lab, input, case);
    let slug: String = case.to_string().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    crate::topology::keep_logs(&[&lab.dir], &slug);
    let removed = lab.teardown();
    let outcome = result.with_context(|| format!("case {case} (lab logs were in {})", lab.dir.display()))?;
    removed?;
    Ok(outcome)
}

fn run_in(lab: &mut Lab, input: &HostileInput, case: Case) -> Result<Outcome> {
    let attacker = lab.add_host("attacker", ATTACKER_IP, &ATTACKER_MAC.to_string())?;
    lab.start_speakers(&input.speaker())?;
    let holder = lab.wait_holder(None, HOLDER_TIMEOUT)?;
    let vrid = wait_master_vrid(lab, &holder, HOLDER_TIMEOUT)?;
    let mut out = Outcome { case: case.to_string(), holder: holder.clone(), vrid: Some(vrid), ..Default::default() };
    let sender = Sender::open_in(&attacker.ns, "eth0", ATTACKER_MAC)?;
    let watch = Watch::start(lab)?;
    let from = now_epoch();
    match case {
        Case::Spoof { priority, max_advert_int, target } => {
            let node = match target {
                Target::Group => None,
                Target::Master => Some(holder.clone()),
                Target::Backup => lab.layout.candidates.iter().find(|c| **c != holder).cloned(),
            };
            let advert =
                Advert { vrid, priority, max_advert_int, addresses: vec![std::net::IpAddr::V4(lab.layout.vip)] };
            let spoof = match node.as_deref().and_then(|n| lab.layout.node(n)) {
                Some(n) => Spoof::to_host(ATTACKER_IP, n.ip, MacAddr(n.mac), advert),
                None if target == Target::Group => Spoof::to_group(ATTACKER_IP, advert),
                None => bail!("the VIP has no second candidate to spoof a backup"),
            };
            out.sent = sender.send_paced(&sender.frames(&[spoof])?, SPOOF_RATE, SPOOF_FOR);
            // Watching what the nodes do after the spoofs is the point: nothing to wait for.
            std::thread::sleep(AFTER);
        }
        Case::Keepalived { priority } => {
            out.foreign = Some(foreign_router(lab, &holder, vrid, priority)?);
        }
        Case::Flood { rate, seconds } => {
            let frames = sender.frames(&flood_mix(lab, vrid).adverts(FLOOD_VARIETY))?;
            let (before, t0) = (cpu_ticks(lab), Instant::now());
            out.sent = sender.send_paced(&frames, f64::from(rate), Duration::from_secs(seconds));
            out.cpu_percent = busiest(&before, &cpu_ticks(lab), t0.elapsed().as_secs_f64());
            std::thread::sleep(AFTER);
        }
    }
    watch.finish(lab, from, &mut out)?;
    Ok(out)
}

/// keepalived in its own namespace on `vrid` with [`FOREIGN_VIP`]: started, given time to become master and
/// for our speakers to move off its VRID, then stopped (SIGTERM: it sends a priority-0 advert).
fn foreign_router(lab: &mut Lab, holder: &str, vrid: u8, priority: u8) -> Result<ForeignOutcome> {
    let host: Host = lab.add_host("keepalived", FOREIGN_IP, &FOREIGN_MAC.to_string())?;
    let conf = lab.dir.join("foreign-keepalived.conf");
    fs::write(&conf, keepalived::config_on_vrid("foreign", vrid, FOREIGN_VIP, priority, FOREIGN_ADVERT))
        .with_context(|| format!("{}: cannot write", conf.display()))?;
    let (pid, vrrp_pid, log) = (
        lab.dir.join("foreign-keepalived.pid"),
        lab.dir.join("foreign-keepalived.vrrp.pid"),
        lab.dir.join("foreign-keepalived.log"),
    );
    let argv = keepalived::argv(&conf, &pid, &vrrp_pid);
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut ka = Process::spawn_in("keepalived", &host.ns, &refs, &log)?.with_pidfiles(vec![vrrp_pid]);
    let holds = |ns: &str| {
        netns::ip_in(ns, &["-o", "-4", "addr", "show", "dev", "eth0"])
            .is_ok_and(|a| a.contains(&format!(" {FOREIGN_VIP}/")))
    };
    eventually(HOLDER_TIMEOUT, Duration::from_millis(50), || holds(&host.ns).then_some(()))
        .map_err(|e| anyhow!("keepalived never held {FOREIGN_VIP} ({e}):\n{}", ka.log_text()))?;
    let foreign_ping = PingProbe::start(&lab.layout.client_ns, FOREIGN_VIP)?;
    let from = now_epoch();
    // Our speakers: reported and moved off the VRID, or not (a build without that), within FOREIGN_SETTLE.
    let mut seen = (None, false);
    let _ = eventually(FOREIGN_SETTLE, Duration::from_millis(250), || {
        let text = metrics(lab, holder).unwrap_or_default();
        let reported =
            lab.layout.nodes.iter().any(|n| reports_foreign(&metrics(lab, &n.name).unwrap_or_default(), vrid));
        let logged = lab.speakers().iter().any(|s| s.log_text().contains("foreign VRRP router"));
        seen = (master_vrids(&text).first().copied(), reported || logged);
        (seen.0.is_some_and(|v| v != vrid) && seen.1).then_some(())
    });
    // The VRID moved; watch both sides side by side a little longer (nothing to wait for).
    std::thread::sleep(AFTER);
    let to = now_epoch();
    let mut holders: Vec<String> = lab.layout.nodes.iter().filter(|n| holds(&n.ns)).map(|n| n.name.clone()).collect();
    if holds(&host.ns) {
        holders.push("keepalived".into());
    }
    let log = ka.log_text();
    ka.stop(Sig::Term, Duration::from_secs(5));
    let lines = foreign_ping.stop_lines();
    // After its priority-0 advert: does our side move? (Watched by the case's own watch.)
    std::thread::sleep(AFTER);
    Ok(ForeignOutcome {
        vrid_after: seen.0,
        reported: seen.1,
        lost_pings: lost_between(&lines, from, to),
        holders,
        master_changes: keepalived_changes_after_master(&log),
    })
}

/// The table's header and one row per outcome.
pub fn header() -> String {
    format!(
        "{:<42} {:>10} {:>9} {:>14} {:>11} {:>9}  {}",
        "case", "lost pings", "VIP moves", "master changes", "speaker CPU", "log lines", "notes"
    )
}

pub fn row(o: &Outcome) -> String {
    let mut notes = Vec::new();
    if let Some(f) = &o.foreign {
        let vrids = match (o.vrid, f.vrid_after) {
            (Some(a), Some(b)) if a != b => format!("VRID {a} -> {b}"),
            (Some(a), _) => format!("VRID {a} kept"),
            _ => "VRID ?".into(),
        };
        notes.push(vrids);
        notes.push(if f.reported { "reported".into() } else { "not reported".into() });
        notes.push(format!(
            "its VIP: lost {}, held by {:?}, its master changes {}",
            f.lost_pings, f.holders, f.master_changes
        ));
    }
    if o.sent.sent > 0 || o.sent.failed > 0 {
        notes.push(format!("{} sent", o.sent.sent));
    }
    format!(
        "{:<42} {:>10} {:>9} {:>14} {:>9.1} % {:>9}  {}",
        o.case,
        o.lost_pings,
        o.vip_moves(),
        o.master_changes,
        o.cpu_percent,
        o.log_lines,
        notes.join("; ")
    )
}

/// Runs `cases` one after the other, printing a row as each ends; a case that fails prints its error and the
/// others still run.
pub fn run(input: &HostileInput, cases: &[Case]) -> Vec<Result<Outcome>> {
    println!("speaker: {}", input.speaker.display());
    println!("{}", header());
    cases
        .iter()
        .map(|case| {
            let r = run_case(input, *case);
            match &r {
                Ok(o) => println!("{}", row(o)),
                Err(e) => println!("{:<42} error: {e:#}", case.to_string()),
            }
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vrid_of_a_master_group_is_read_from_either_builds_metrics() {
        let m = "# HELP x\nopenelb_speaker_vrrp_state{vrid=\"141\",interface=\"eth0\",family=\"IPv4\"} 2\n\
                 openelb_speaker_vrrp_state{vrid=\"38\",interface=\"eth0\",family=\"IPv4\"} 0\n\
                 openelb_speaker_vrrp_state{vrid=\"7\",interface=\"eth0\",family=\"IPv6\"} 2\n\
                 openelb_vrrp_foreign_routers{family=\"IPv4\",vrid=\"38\"} 1\n\
                 openelb_vrrp_foreign_routers{family=\"IPv4\",vrid=\"39\"} 0\n";
        assert_eq!(master_vrids(m), vec![141]);
        assert!(reports_foreign(m, 38));
        assert!(!reports_foreign(m, 39) && !reports_foreign(m, 141));
    }

    #[test]
    fn logs_and_monitors_are_counted_as_changes() {
        let log = "a VRRP state INITIALIZE -> BACKUP x\nVRRP state BACKUP -> MASTER\nVRRP state MASTER -> BACKUP\n";
        assert_eq!(master_changes_in(log), 2);
        let ka = "Entering BACKUP STATE (init)\n(VI_38) Entering MASTER STATE\nfoo\n";
        assert_eq!(keepalived_changes_after_master(ka), 0);
        assert_eq!(keepalived_changes_after_master(&format!("{ka}(VI_38) Entering BACKUP STATE\n")), 1);
        let vip: Ipv4Addr = "192.0.2.91".parse().unwrap();
        let line = |l: &str| (0.0, l.to_string());
        let neigh = [
            line("192.0.2.91 dev eth0 lladdr 52:54:22:37:6c:7b REACHABLE"),
            line("192.0.2.910 dev eth0 lladdr 00:00:00:00:00:01 REACHABLE"),
            line("192.0.2.91 dev eth0 lladdr 52:54:22:3a:e6:6e STALE"),
            line("192.0.2.91 dev eth0 lladdr 52:54:22:37:6c:7b REACHABLE"),
        ];
        assert_eq!(neighbour_changes(&neigh, vip, "52:54:22:37:6C:7B"), 2);
        assert!(about("3: eth0    inet 192.0.2.91/32 scope global eth0", vip));
        assert!(about("Deleted 3: eth0    inet 192.0.2.91/32 scope global eth0", vip));
        assert!(!about("3: eth0    inet 192.0.2.4/24 scope global eth0", vip));
    }

    #[test]
    fn every_case_has_its_own_label() {
        let labels: Vec<String> = Case::all().iter().map(ToString::to_string).collect();
        let mut unique = labels.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), labels.len(), "{labels:?}");
        assert!(labels.contains(&"spoof prio 254 maxadv 4095 to backup".to_string()), "{labels:?}");
    }
}
