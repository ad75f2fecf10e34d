//! What the client sees: a ping (10 ms, or as fine as 1 ms) whose largest gap between replies is the outage,
//! and a capture on the switch's bridge that times gratuitous ARPs, VRRP adverts and the echo replies with the
//! MAC that sent them. Both run as processes in lab namespaces and are parsed from their text output; the
//! capture's clock is the kernel's receive timestamp, not our scheduling.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};

use crate::netns::{self, Sig};

/// Seconds since the epoch, the clock `ping -D` and `tcpdump -tt` print.
pub fn now_epoch() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// `[1732723200.123456] 64 bytes from 192.0.2.91: icmp_seq=7 ttl=64 time=0.05 ms` → the timestamp.
pub fn parse_ping_reply(line: &str) -> Option<f64> {
    if !line.contains(" bytes from ") {
        return None;
    }
    let rest = line.strip_prefix('[')?;
    let (ts, _) = rest.split_once(']')?;
    ts.parse().ok()
}

/// What one line of `ping -D -O` says about one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PingLine {
    pub ts: f64,
    pub seq: u16,
    pub outcome: PingOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingOutcome {
    Reply,
    /// A second reply to one request: two hosts answered for the address.
    Duplicate,
    /// No reply before the next request went out (`-O`), or an error about it (unreachable).
    NoAnswerYet,
}

/// Any line of `ping -D -O` that names an `icmp_seq`.
pub fn parse_ping_line(line: &str) -> Option<PingLine> {
    let (ts, rest) = line.strip_prefix('[')?.split_once(']')?;
    let ts: f64 = ts.parse().ok()?;
    let seq = rest.split("icmp_seq=").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
    let outcome = match (rest.contains(" bytes from "), rest.contains("(DUP!)")) {
        (true, true) => PingOutcome::Duplicate,
        (true, false) => PingOutcome::Reply,
        (false, _) => PingOutcome::NoAnswerYet,
    };
    Some(PingLine { ts, seq, outcome })
}

/// Requests lost among `lines` (in arrival order): every request from the first to the last one that a line
/// between `from` and `to` (epoch seconds) names, that got no reply at any time. Sequence numbers wrap at
/// 65536; a run shorter than 10 minutes at 10 ms never sees two wraps inside one window.
pub fn lost_between(lines: &[PingLine], from: f64, to: f64) -> u64 {
    let mut unwrapped: Vec<(f64, u64, PingOutcome)> = Vec::with_capacity(lines.len());
    let (mut epoch, mut last) = (0u64, None::<u16>);
    for l in lines {
        if let Some(prev) = last
            && prev > l.seq
            && prev - l.seq > u16::MAX / 2
        {
            epoch += 1;
        }
        last = Some(l.seq);
        unwrapped.push((l.ts, (epoch << 16) | u64::from(l.seq), l.outcome));
    }
    let replied: std::collections::BTreeSet<u64> =
        unwrapped.iter().filter(|l| l.2 != PingOutcome::NoAnswerYet).map(|l| l.1).collect();
    let window = unwrapped.iter().filter(|l| l.0 >= from && l.0 <= to).map(|l| l.1);
    let (Some(first), Some(last)) = (window.clone().min(), window.max()) else { return 0 };
    (first..=last).filter(|s| !replied.contains(s)).count() as u64
}

/// Largest gap between consecutive timestamps that ends after `from` (earlier gaps are steady state).
pub fn largest_gap(replies: &[f64], from: f64) -> Option<f64> {
    replies
        .windows(2)
        .filter(|w| w[1] >= from)
        .map(|w| w[1] - w[0])
        .fold(None, |m, g| Some(m.map_or(g, |m: f64| m.max(g))))
}

/// A program inside a namespace whose stdout lines are collected in the background, each with the time it was
/// read (epoch seconds): `ping`, `ip monitor`. Dropping it kills the program.
pub struct LineTap {
    child: Child,
    lines: Arc<Mutex<Vec<(f64, String)>>>,
    reader: Option<JoinHandle<()>>,
}

impl LineTap {
    pub fn start(ns: &str, argv: &[&str]) -> Result<Self> {
        let mut child = netns::spawn(ns, argv, Stdio::piped(), Stdio::null())?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let reader = child.stdout.take().map(|out| {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut v) = sink.lock() {
                        v.push((now_epoch(), line));
                    }
                }
            })
        });
        Ok(LineTap { child, lines, reader })
    }

    /// Waits until the program holds a socket (`ip monitor` listens from then on); false on timeout.
    pub fn wait_socket(&self, timeout: Duration) -> bool {
        let fd_dir = format!("/proc/{}/fd", self.child.id());
        crate::eventually::eventually(timeout, Duration::from_millis(5), || {
            let dir = fs::read_dir(&fd_dir).ok()?;
            dir.flatten()
                .any(|e| fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:")))
                .then_some(())
        })
        .is_ok()
    }

    /// Every line so far with the time it was read.
    pub fn lines(&self) -> Vec<(f64, String)> {
        self.lines.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Stops the program (SIGINT, so ping prints what it has) and returns every line.
    pub fn stop(mut self) -> Vec<(f64, String)> {
        netns::stop_child(&mut self.child, Sig::Int, Duration::from_secs(1));
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.lines()
    }
}

impl Drop for LineTap {
    fn drop(&mut self) {
        netns::stop_child(&mut self.child, Sig::Kill, Duration::from_millis(100));
    }
}

/// `ping -D -O -n -i 0.01 -W 0.1 VIP` in the client (or another interval).
pub struct PingProbe {
    tap: LineTap,
}

impl PingProbe {
    pub fn start(client_ns: &str, vip: Ipv4Addr) -> Result<Self> {
        Self::start_every(client_ns, vip, Duration::from_millis(10))
    }

    /// A ping every `interval` (iputils takes intervals below 2 ms from root only; the lab runs as root).
    pub fn start_every(client_ns: &str, vip: Ipv4Addr, interval: Duration) -> Result<Self> {
        let (vip, every) = (vip.to_string(), format!("{:.3}", interval.as_secs_f64()));
        let tap = LineTap::start(client_ns, &["ping", "-D", "-O", "-n", "-i", &every, "-W", "0.1", &vip])?;
        Ok(PingProbe { tap })
    }

    /// Every line naming a request so far, in arrival order.
    pub fn lines(&self) -> Vec<PingLine> {
        self.tap.lines().iter().filter_map(|(_, l)| parse_ping_line(l)).collect()
    }

    pub fn replies(&self) -> Vec<f64> {
        self.tap.lines().iter().filter_map(|(_, l)| parse_ping_reply(l)).collect()
    }

    /// Waits until `count` replies arrived after `after` (epoch seconds); false on timeout.
    pub fn wait_replies_after(&self, after: f64, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.replies().iter().filter(|t| **t > after).count() >= count {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Stops ping and returns every reply timestamp.
    pub fn stop(self) -> Vec<f64> {
        self.tap.stop().iter().filter_map(|(_, l)| parse_ping_reply(l)).collect()
    }

    /// Stops ping and returns every line naming a request.
    pub fn stop_lines(self) -> Vec<PingLine> {
        self.tap.stop().iter().filter_map(|(_, l)| parse_ping_line(l)).collect()
    }
}

/// One frame of interest on the bridge.
#[derive(Debug, Clone, PartialEq)]
pub enum CapturedFrame {
    /// A gratuitous ARP (sender IP = target IP, request or reply) for `ip`, from `mac`.
    Garp { ts: f64, mac: String, ip: Ipv4Addr },
    /// A VRRP advertisement from `mac` for `vrid` with `prio`.
    Vrrp { ts: f64, mac: String, vrid: Option<u8>, prio: Option<u8> },
    /// An ICMP echo reply from `mac` (the client's probe answered by whoever holds the VIP).
    EchoReply { ts: f64, mac: String },
}

/// Parses one line of `tcpdump -n -e -tt -l`.
pub fn parse_tcpdump(line: &str) -> Option<CapturedFrame> {
    let mut words = line.split_whitespace();
    let ts: f64 = words.next()?.parse().ok()?;
    let mac = words.next()?.to_ascii_lowercase();
    let rest = line.split_once(": ").map(|(_, r)| r)?;
    if let Some(r) = rest.strip_prefix("Request who-has ") {
        let mut w = r.split_whitespace();
        let target = w.next()?;
        // A non-zero target MAC is printed in parentheses after the target address.
        let mut next = w.next()?;
        if next.starts_with('(') {
            next = w.next()?;
        }
        let ("tell", Some(sender)) = (next, w.next()) else { return None };
        let sender = sender.trim_end_matches(',');
        return (target == sender).then(|| target.parse().ok().map(|ip| CapturedFrame::Garp { ts, mac, ip }))?;
    }
    // A reply is gratuitous when broadcast (`arping -A` style); a unicast reply answers someone's request.
    if let Some(r) = rest.strip_prefix("Reply ")
        && words.nth(1) == Some("ff:ff:ff:ff:ff:ff,")
    {
        let ip = r.split_whitespace().next()?.parse().ok()?;
        return Some(CapturedFrame::Garp { ts, mac, ip });
    }
    if rest.contains("VRRP") {
        let field = |name: &str| {
            rest.split(name)
                .nth(1)
                .and_then(|p| p.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|p| p.parse().ok())
        };
        return Some(CapturedFrame::Vrrp { ts, mac, vrid: field("vrid "), prio: field("prio ") });
    }
    if rest.contains(": ICMP echo reply,") {
        return Some(CapturedFrame::EchoReply { ts, mac });
    }
    None
}

/// `tcpdump` on the switch's bridge: ARP, VRRP and echo replies, written to a file and parsed after it stops.
pub struct Capture {
    child: Child,
    out: PathBuf,
}

impl Capture {
    pub fn start(switch_ns: &str, dir: &Path, name: &str) -> Result<Self> {
        let out = dir.join(format!("{name}.txt"));
        let err = dir.join(format!("{name}.err"));
        let _ = fs::remove_file(&out);
        let _ = fs::remove_file(&err);
        let child = netns::spawn(
            switch_ns,
            &[
                "tcpdump",
                "--immediate-mode",
                "-i",
                "br0",
                "-n",
                "-e",
                "-tt",
                "-l",
                "arp or ip proto 112 or icmp[icmptype] == icmp-echoreply",
            ],
            netns::log_file(&out)?,
            netns::log_file(&err)?,
        )?;
        let mut cap = Capture { child, out };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if fs::read_to_string(&err).unwrap_or_default().contains("listening on") {
                return Ok(cap);
            }
            if Instant::now() >= deadline || !matches!(cap.child.try_wait(), Ok(None)) {
                let msg = fs::read_to_string(&err).unwrap_or_default();
                netns::stop_child(&mut cap.child, Sig::Kill, Duration::from_millis(100));
                bail!("tcpdump on br0 did not start: {}", msg.trim());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops tcpdump (SIGINT flushes its output) and returns the parsed frames.
    pub fn stop(mut self) -> Vec<CapturedFrame> {
        netns::stop_child(&mut self.child, Sig::Int, Duration::from_secs(2));
        fs::read_to_string(&self.out).unwrap_or_default().lines().filter_map(parse_tcpdump).collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        netns::stop_child(&mut self.child, Sig::Kill, Duration::from_millis(100));
    }
}

/// First gratuitous ARP for `vip` from `mac` at or after `from`.
pub fn first_garp(frames: &[CapturedFrame], vip: Ipv4Addr, mac: &str, from: f64) -> Option<f64> {
    frames.iter().find_map(|f| match f {
        CapturedFrame::Garp { ts, mac: m, ip } if *ts >= from && *ip == vip && m.eq_ignore_ascii_case(mac) => Some(*ts),
        _ => None,
    })
}

/// First VRRP advert from `mac` at or after `from`: the new master announcing itself, i.e. its decision.
pub fn first_advert(frames: &[CapturedFrame], mac: &str, from: f64) -> Option<f64> {
    frames.iter().find_map(|f| match f {
        CapturedFrame::Vrrp { ts, mac: m, prio, .. }
            if *ts >= from && m.eq_ignore_ascii_case(mac) && *prio != Some(0) =>
        {
            Some(*ts)
        }
        _ => None,
    })
}

/// Timestamps of the echo replies on the bridge (any sender): what the client got, at the kernel's clock.
pub fn echo_replies(frames: &[CapturedFrame]) -> Vec<f64> {
    frames
        .iter()
        .filter_map(|f| match f {
            CapturedFrame::EchoReply { ts, .. } => Some(*ts),
            _ => None,
        })
        .collect()
}

/// RSS (kB) and CPU time (clock ticks) of one process from /proc.
pub fn proc_usage(pid: u32) -> Option<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at state; utime/stime are 14 and 15.
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((rss, utime + stime))
}

pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Summed RSS (MB) and CPU (% of one core) of `pids` over `window`.
pub fn sample_usage(pids: &[u32], window: Duration) -> Option<(f64, f64)> {
    let before: Vec<(u64, u64)> = pids.iter().filter_map(|p| proc_usage(*p)).collect();
    if before.is_empty() {
        return None;
    }
    let t0 = Instant::now();
    std::thread::sleep(window);
    let after: Vec<(u64, u64)> = pids.iter().filter_map(|p| proc_usage(*p)).collect();
    let secs = t0.elapsed().as_secs_f64();
    let rss_kb: u64 = after.iter().map(|u| u.0).sum();
    let ticks = after.iter().map(|u| u.1).sum::<u64>().saturating_sub(before.iter().map(|u| u.1).sum());
    Some((rss_kb as f64 / 1024.0, ticks as f64 / clock_ticks() / secs * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_lines_with_replies_give_their_timestamp() {
        assert_eq!(
            parse_ping_reply("[1732723200.123456] 64 bytes from 192.0.2.91: icmp_seq=7 ttl=64 time=0.05 ms"),
            Some(1732723200.123456)
        );
        assert_eq!(parse_ping_reply("[1732723200.1] From 192.0.2.5 icmp_seq=9 Destination Host Unreachable"), None);
        assert_eq!(parse_ping_reply("PING 192.0.2.91 (192.0.2.91) 56(84) bytes of data."), None);
    }

    #[test]
    fn ping_lines_name_their_request_and_what_became_of_it() {
        let reply = "[100.5] 64 bytes from 192.0.2.91: icmp_seq=7 ttl=64 time=0.05 ms";
        assert_eq!(parse_ping_line(reply), Some(PingLine { ts: 100.5, seq: 7, outcome: PingOutcome::Reply }));
        let dup = "[100.6] 64 bytes from 192.0.2.91: icmp_seq=7 ttl=64 time=0.07 ms (DUP!)";
        assert_eq!(parse_ping_line(dup).map(|l| l.outcome), Some(PingOutcome::Duplicate));
        let none = "[100.7] no answer yet for icmp_seq=8";
        assert_eq!(parse_ping_line(none), Some(PingLine { ts: 100.7, seq: 8, outcome: PingOutcome::NoAnswerYet }));
        let unreachable = "[100.8] From 192.0.2.5 icmp_seq=9 Destination Host Unreachable";
        assert_eq!(parse_ping_line(unreachable).map(|l| (l.seq, l.outcome)), Some((9, PingOutcome::NoAnswerYet)));
        assert_eq!(parse_ping_line("PING 192.0.2.91 (192.0.2.91) 56(84) bytes of data."), None);
    }

    #[test]
    fn lost_requests_are_those_of_the_window_that_never_got_a_reply() {
        let line = |ts: f64, seq: u16, outcome| PingLine { ts, seq, outcome };
        use PingOutcome::*;
        let lines = [
            line(1.0, 1, Reply),
            line(1.1, 2, NoAnswerYet),
            line(1.2, 3, NoAnswerYet),
            // A late reply to 3 counts; 4 is never named but lies between named requests.
            line(1.25, 3, Reply),
            line(1.3, 5, Reply),
            line(1.4, 6, NoAnswerYet),
            line(9.0, 7, Reply),
        ];
        assert_eq!(lost_between(&lines, 1.0, 1.4), 3, "2, 4 and 6");
        assert_eq!(lost_between(&lines, 1.3, 1.3), 0);
        assert_eq!(lost_between(&lines, 5.0, 6.0), 0, "nothing in the window");
        let wrapped =
            [line(1.0, 65534, Reply), line(1.1, 65535, NoAnswerYet), line(1.2, 0, Reply), line(1.3, 1, Reply)];
        assert_eq!(lost_between(&wrapped, 0.0, 2.0), 1);
    }

    #[test]
    fn outage_is_the_largest_gap_ending_after_the_event() {
        let r = [0.0, 0.5, 0.51, 0.52, 0.9, 0.91];
        assert_eq!(largest_gap(&r, 0.51), Some(0.9 - 0.52));
        assert_eq!(largest_gap(&r, 0.0).map(|g| (g * 100.0).round()), Some(50.0));
        assert_eq!(largest_gap(&[1.0], 0.0), None);
    }

    #[test]
    fn tcpdump_garps_and_adverts_are_recognised() {
        let g = "1732723200.500001 52:54:22:3a:e6:6e > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: \
                 Request who-has 192.0.2.91 tell 192.0.2.91, length 28";
        assert_eq!(
            parse_tcpdump(g),
            Some(CapturedFrame::Garp {
                ts: 1732723200.500001,
                mac: "52:54:22:3a:e6:6e".into(),
                ip: Ipv4Addr::new(192, 0, 2, 91)
            })
        );
        let keepalived = "1.5 52:54:22:37:6c:7b > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: \
                          Request who-has 192.0.2.91 (ff:ff:ff:ff:ff:ff) tell 192.0.2.91, length 28";
        assert_eq!(
            parse_tcpdump(keepalived),
            Some(CapturedFrame::Garp { ts: 1.5, mac: "52:54:22:37:6c:7b".into(), ip: Ipv4Addr::new(192, 0, 2, 91) })
        );
        let normal = "1.0 52:54:22:fa:b9:3b > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: \
                      Request who-has 192.0.2.91 tell 192.0.2.5, length 28";
        assert_eq!(parse_tcpdump(normal), None);
        let v = "2.5 52:54:22:37:6c:7b > 01:00:5e:00:00:12, ethertype IPv4 (0x0800), length 54: 192.0.2.4 > \
                 224.0.0.18: VRRPv3, Advertisement, vrid 91, prio 200, intvl 10cs, length 12";
        assert_eq!(
            parse_tcpdump(v),
            Some(CapturedFrame::Vrrp { ts: 2.5, mac: "52:54:22:37:6c:7b".into(), vrid: Some(91), prio: Some(200) })
        );
        let answer = "3.0 52:54:22:37:6c:7b > 52:54:22:fa:b9:3b, ethertype ARP (0x0806), length 42: \
                      Reply 192.0.2.91 is-at 52:54:22:37:6c:7b, length 28";
        assert_eq!(parse_tcpdump(answer), None);
        let broadcast = answer.replace("> 52:54:22:fa:b9:3b,", "> ff:ff:ff:ff:ff:ff,");
        assert!(matches!(parse_tcpdump(&broadcast), Some(CapturedFrame::Garp { .. })));
        let frames = [parse_tcpdump(v).unwrap(), parse_tcpdump(g).unwrap()];
        assert_eq!(
            first_garp(&frames, Ipv4Addr::new(192, 0, 2, 91), "52:54:22:3A:E6:6E", 0.0),
            Some(1732723200.500001)
        );
        assert_eq!(first_advert(&frames, "52:54:22:37:6c:7b", 3.0), None);
    }

    #[test]
    fn echo_replies_are_the_bridges_replies_from_any_node() {
        let reply = |ts: f64, mac: &str| {
            let line = format!(
                "{ts} {mac} > 52:54:22:fa:b9:3b, ethertype IPv4 (0x0800), length 98: 192.0.2.91 > 192.0.2.5: \
                 ICMP echo reply, id 7, seq 1, length 64"
            );
            parse_tcpdump(&line).unwrap()
        };
        let request = "1.0 52:54:22:fa:b9:3b > 52:54:22:00:00:01, ethertype IPv4 (0x0800), length 98: 192.0.2.5 > \
                       192.0.2.91: ICMP echo request, id 7, seq 1, length 64";
        assert_eq!(parse_tcpdump(request), None);
        let frames = [reply(1.0, "52:54:22:00:00:01"), reply(1.031, "52:54:22:00:00:02")];
        assert_eq!(frames[1], CapturedFrame::EchoReply { ts: 1.031, mac: "52:54:22:00:00:02".into() });
        assert_eq!(largest_gap(&echo_replies(&frames), 1.0005).map(|g| (g * 1000.0).round()), Some(31.0));
    }

    #[test]
    fn this_process_has_an_rss_and_cpu_time() {
        let (rss, _) = proc_usage(std::process::id()).unwrap();
        assert!(rss > 0);
    }
}
