//! Building the seed's network in namespaces (docs/testing.md#the-namespace-lab) and taking it down again on
//! every path out.
//!
//! A [`Lab`] owns what it created: its namespaces (recorded in a state file before they exist, so `lab down`
//! or a later run can remove them after a crash of this process), the Pod processes and the speakers. Dropping
//! it removes everything unless [`Lab::detach`] handed it over to `lab down`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::eventually::eventually;
use crate::layout::{CLIENT_IP, CLIENT_MAC, LAB_NET, Layout, POD_NET, mac_string};
use crate::netns::{self, Netns, PREFIX, Sig};
use crate::pod;
use crate::process::Process;
use crate::segment::{Host, HostSpec, Segment};
use crate::speaker_manifests::write_manifests;
use crate::speaker_program::SpeakerProgram;

/// Where labs record what to clean up.
pub const STATE_ROOT: &str = "/run/openelb-lab";

/// What `lab down` needs to remove a lab this process may no longer know about.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    pub id: String,
    pub namespaces: Vec<String>,
    pub vip: Ipv4Addr,
}

/// How to build a lab: its id (unique among running labs) and the binary that serves the Pods.
#[derive(Debug, Clone)]
pub struct LabConfig {
    pub id: String,
    /// openelb-cli, run as `lab pod-http` inside each Pod namespace.
    pub cli_exe: PathBuf,
    pub state_root: PathBuf,
}

impl LabConfig {
    /// `id` from this process and a counter, so parallel tests and runs never share names.
    pub fn unique(cli_exe: PathBuf) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = format!("{}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        LabConfig { id, cli_exe, state_root: PathBuf::from(STATE_ROOT) }
    }
}

/// A client-side neighbour entry, `ip neigh show VIP dev eth0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neigh {
    pub line: String,
    pub mac: Option<String>,
    pub state: String,
}

pub struct Lab {
    pub layout: Layout,
    /// State file, keepalived configs, logs and the speakers' manifests.
    pub dir: PathBuf,
    // Dropped in this order: processes before the namespaces they run in.
    speakers: Vec<Process>,
    pods: Vec<Process>,
    pod_namespaces: Vec<Netns>,
    segment: Option<Segment>,
    /// Namespaces of the hosts on the LAN that are no node ([`Lab::add_host`]).
    guests: Vec<String>,
    speaker: Option<SpeakerProgram>,
    /// Nodes crashed by [`Lab::crash`]: they may still carry the VIP on a dead link.
    down: BTreeSet<String>,
    detached: bool,
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

impl Lab {
    /// Creates every namespace, link, address, route and kube-proxy rule of the layout and starts the Pods.
    /// On error, what was created is removed before returning.
    pub fn build(layout: Layout, cfg: &LabConfig) -> Result<Lab> {
        if layout.id != cfg.id {
            bail!("lab layout id {:?} differs from the config's {:?}", layout.id, cfg.id);
        }
        let dir = cfg.state_root.join(&cfg.id);
        if dir.exists() {
            bail!(
                "{}: a lab with id {:?} exists; run `openelb-cli lab down --id {}` first",
                dir.display(),
                cfg.id,
                cfg.id
            );
        }
        fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        crate::interrupt::track(&layout.id, true);
        let mut lab = Lab {
            layout,
            dir,
            speakers: Vec::new(),
            pods: Vec::new(),
            pod_namespaces: Vec::new(),
            segment: None,
            guests: Vec::new(),
            speaker: None,
            down: BTreeSet::new(),
            detached: false,
        };
        // On failure `lab` drops here and removes what exists.
        lab.write_state()?;
        lab.create(&cfg.cli_exe)?;
        Ok(lab)
    }

    /// Every namespace of the lab, guests included, the switch last (deleting it removes the bridge ports).
    pub fn namespaces(&self) -> Vec<String> {
        let mut out = self.layout.namespaces();
        let switch = out.pop();
        out.extend(self.guests.iter().cloned());
        out.extend(switch);
        out
    }

    /// Records what `lab down` must remove, before it exists.
    fn write_state(&self) -> Result<()> {
        let state = State { id: self.layout.id.clone(), namespaces: self.namespaces(), vip: self.layout.vip };
        fs::write(state_path(&self.dir), serde_json::to_vec_pretty(&state)?)
            .with_context(|| format!("{}: cannot write the state file", self.dir.display()))
    }

    /// Attaches a host that is no node (an attacker, a foreign VRRP router) to the lab's LAN with `ip` and
    /// `mac`, in namespace `oelb-<id>-<name>`. The address must be a free one of 192.0.2.0/24.
    pub fn add_host(&mut self, name: &str, ip: Ipv4Addr, mac: &str) -> Result<Host> {
        let taken = ip == CLIENT_IP || ip == self.layout.vip || self.layout.nodes.iter().any(|n| n.ip == ip);
        let host_octet = ip.octets()[3] != 0 && ip.octets()[3] != 255;
        if ip.octets()[..3] != LAB_NET.octets()[..3] || !host_octet || taken {
            bail!("host {name}: {ip} is not a free host address of the lab's LAN {LAB_NET}/24");
        }
        let ns = format!("{PREFIX}{}-{name}", self.layout.id);
        if self.namespaces().contains(&ns) {
            bail!("host {name}: namespace {ns} exists in lab {}", self.layout.id);
        }
        self.guests.push(ns.clone());
        self.write_state()?;
        let segment = self.segment.as_mut().ok_or_else(|| anyhow!("lab {} has no segment", self.layout.id))?;
        let spec = HostSpec { name: name.to_string(), ns, mac: mac.to_string(), addrs: vec![format!("{ip}/24")] };
        Ok(segment.add_host(spec)?.clone())
    }

    fn create(&mut self, cli_exe: &Path) -> Result<()> {
        let layout = self.layout.clone();
        let mut segment = Segment::new(&layout.switch_ns)?;
        let mut hosts: Vec<(String, String, Ipv4Addr, String)> =
            layout.nodes.iter().map(|n| (n.name.clone(), n.ns.clone(), n.ip, n.mac_string())).collect();
        hosts.push(("client".into(), layout.client_ns.clone(), CLIENT_IP, mac_string(&CLIENT_MAC)));
        for (name, ns, ip, mac) in hosts {
            segment.add_host(HostSpec { name, ns, mac, addrs: vec![format!("{ip}/24")] })?;
        }
        self.segment = Some(segment);

        for node in &layout.nodes {
            netns::exec(&node.ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
            // Other nodes' Pods are reached through those nodes, as a flat Pod network would route them.
            for other in layout.nodes.iter().filter(|o| o.name != node.name) {
                let net = format!("{}/28", other.pod_net);
                netns::ip_in(&node.ns, &["route", "add", &net, "via", &other.ip.to_string()])?;
            }
        }
        for pod in &layout.pods {
            let node =
                layout.node(&pod.node).ok_or_else(|| anyhow!("Pod {} on unknown node {}", pod.name, pod.node))?;
            self.pod_namespaces.push(Netns::create(&pod.ns)?);
            netns::ip_in(
                &node.ns,
                &["link", "add", &pod.node_if, "type", "veth", "peer", "name", "eth0", "netns", &pod.ns],
            )?;
            let gw = node.pod_gateway();
            // The node's side carries the /28's gateway address once; more Pods reuse it through /32 routes.
            let _ = netns::ip_in(&node.ns, &["addr", "add", &format!("{gw}/32"), "dev", &pod.node_if]);
            netns::ip_in(&node.ns, &["link", "set", &pod.node_if, "up"])?;
            netns::ip_in(&node.ns, &["route", "add", &format!("{}/32", pod.ip), "dev", &pod.node_if])?;
            netns::ip_in(&pod.ns, &["addr", "add", &format!("{}/32", pod.ip), "dev", "eth0"])?;
            netns::ip_in(&pod.ns, &["link", "set", "eth0", "up"])?;
            netns::ip_in(&pod.ns, &["route", "add", &format!("{gw}/32"), "dev", "eth0"])?;
            netns::ip_in(&pod.ns, &["route", "add", "default", "via", &gw.to_string(), "dev", "eth0"])?;
        }
        for node in &layout.nodes {
            self.kube_proxy(&node.name)?;
        }
        for pod in &layout.pods {
            self.start_pod(cli_exe, &pod.ns, &pod.name)?;
        }
        Ok(())
    }

    /// kube-proxy's part: DNAT VIP:port to the node's backends in turn (nth, so four requests alternate
    /// deterministically between two Pods), and masquerade what crosses to another node under Cluster so the
    /// reply comes back through this node. Local keeps the client's address and only local Pods.
    fn kube_proxy(&self, node: &str) -> Result<()> {
        let Some(spec) = self.layout.node(node) else { bail!("unknown node {node}") };
        let backends: Vec<_> =
            self.layout.backends(node).into_iter().filter(|p| !self.down.contains(&p.node)).collect();
        let vip = format!("{}/32", self.layout.vip);
        let port = self.layout.port.to_string();
        let n = backends.len();
        for (k, pod) in backends.iter().enumerate() {
            let to = format!("{}:{}", pod.ip, self.layout.target_port);
            let every = (n - k).to_string();
            let mut rule =
                vec!["iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-d", &vip, "-p", "tcp", "--dport", &port];
            if k + 1 < n {
                rule.extend(["-m", "statistic", "--mode", "nth", "--every", &every, "--packet", "0"]);
            }
            rule.extend(["-j", "DNAT", "--to-destination", &to]);
            netns::exec(&spec.ns, &rule)?;
        }
        if self.layout.policy == openelb_core::model::TrafficPolicy::Cluster && !backends.is_empty() {
            let pods = format!("{POD_NET}/24");
            netns::exec(
                &spec.ns,
                &["iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-o", "eth0", "-d", &pods, "-j", "MASQUERADE"],
            )?;
        }
        Ok(())
    }

    /// The endpoints controller's eventual answer to a lost node: every live node's rules are rewritten
    /// without the Pods of crashed nodes (kube-proxy only learns of it once the node is NotReady).
    pub fn resync_kube_proxy(&self) -> Result<()> {
        for node in self.layout.nodes.iter().filter(|n| !self.down.contains(&n.name)) {
            for chain in ["PREROUTING", "POSTROUTING"] {
                netns::exec(&node.ns, &["iptables", "-w", "-t", "nat", "-F", chain])?;
            }
            self.kube_proxy(&node.name)?;
        }
        Ok(())
    }

    fn start_pod(&mut self, cli_exe: &Path, ns: &str, name: &str) -> Result<()> {
        let exe = cli_exe.display().to_string();
        let listen = format!("0.0.0.0:{}", self.layout.target_port);
        let log = self.dir.join(format!("pod-{name}.log"));
        let child = netns::spawn(
            ns,
            &[&exe, "lab", "pod-http", "--name", name, "--listen", &listen],
            Stdio::piped(),
            netns::log_file(&log)?,
        )?;
        let mut pod = Process::adopt(name, child, Some(log.clone()));
        let ready = pod.take_stdout().map(|out| {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            line
        });
        let ok = ready.as_deref().is_some_and(|l| l.starts_with(pod::READY));
        self.pods.push(pod);
        if !ok {
            let log = fs::read_to_string(&log).unwrap_or_default();
            bail!("Pod {name}: the HTTP responder did not start: {}", log.trim());
        }
        Ok(())
    }

    /// Writes the openelb-speakers' manifests (`layout.cluster`, the nodes' link-local addresses) in the lab's
    /// directory and returns that directory.
    pub fn write_manifests(&self, extra_v6_vips: u16) -> Result<PathBuf> {
        write_manifests(&self.layout, &self.dir.join("manifests"), extra_v6_vips, &self.link_locals()?)
    }

    /// Each node's IPv6 link-local address on eth0 (the kernel gives one as soon as the link is up).
    fn link_locals(&self) -> Result<BTreeMap<String, Ipv6Addr>> {
        let mut out = BTreeMap::new();
        for n in &self.layout.nodes {
            let text = netns::ip_in(&n.ns, &["-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"])?;
            let found = text.split_whitespace().skip_while(|w| *w != "inet6").nth(1);
            if let Some(ip) = found.and_then(|a| a.split('/').next()).and_then(|a| a.parse::<Ipv6Addr>().ok()) {
                out.insert(n.name.clone(), ip);
            }
        }
        Ok(out)
    }

    /// Starts `speaker` on every node it runs on (see [`SpeakerProgram::nodes`]).
    pub fn start_speakers(&mut self, speaker: &SpeakerProgram) -> Result<()> {
        let manifests = match speaker {
            SpeakerProgram::Openelb(o) => self.write_manifests(o.extra_v6_vips)?,
            SpeakerProgram::Keepalived { .. } => self.dir.join("manifests"),
        };
        for node in speaker.nodes(&self.layout) {
            let s = speaker.start(&self.layout, &node, &self.dir, &manifests)?;
            self.speakers.push(s);
        }
        self.speaker = Some(speaker.clone());
        Ok(())
    }

    pub fn speakers(&self) -> &[Process] {
        &self.speakers
    }

    pub fn speaker_on(&mut self, node: &str) -> Option<&mut Process> {
        self.speakers.iter_mut().find(|s| s.name == node)
    }

    /// Nodes that are up and have the VIP on eth0.
    pub fn holders(&self) -> Result<Vec<String>> {
        let vip = format!(" {}/", self.layout.vip);
        let mut out = Vec::new();
        for node in self.layout.nodes.iter().filter(|n| !self.down.contains(&n.name)) {
            let addrs = netns::ip_in(&node.ns, &["-o", "-4", "addr", "show", "dev", "eth0"])?;
            if addrs.contains(&vip) {
                out.push(node.name.clone());
            }
        }
        Ok(out)
    }

    /// Waits until exactly one live node holds the VIP (other than `not`) and returns it.
    pub fn wait_holder(&mut self, not: Option<&str>, timeout: Duration) -> Result<String> {
        let mut seen = Vec::new();
        let mut error = None;
        let found = eventually(timeout, Duration::from_millis(10), || {
            match self.holders() {
                Ok(h) => seen = h,
                Err(e) => {
                    error = Some(e);
                    return Some(None);
                }
            }
            // Steady state, not the first holder seen: speakers that start at different moments may elect a
            // lower-preference node first, until the first preference preempts it after its preempt delay.
            let expected = self.expected_holder();
            match seen.as_slice() {
                [one] if Some(one.as_str()) != not && expected.as_deref().is_none_or(|e| e == one) => {
                    Some(Some(one.clone()))
                }
                _ => None,
            }
        });
        if let Some(e) = error {
            return Err(e);
        }
        match found {
            Ok(Some(holder)) => Ok(holder),
            _ => bail!(
                "no single holder of {} after {:?} (holders: {seen:?}); speaker logs in {}",
                self.layout.vip,
                timeout,
                self.dir.display()
            ),
        }
    }

    /// The node that should hold the VIP once things settle: the first candidate in preference order that is
    /// up and whose speaker runs. `None` when speakers are not started.
    fn expected_holder(&mut self) -> Option<String> {
        let cands = self.layout.candidates.clone();
        cands
            .into_iter()
            .find(|c| !self.down.contains(c) && self.speakers.iter_mut().any(|s| &s.name == c && s.is_running()))
    }

    /// Node crash: the node's link down, then its speaker frozen and killed. The link goes first because a
    /// crash silences adverts and echo replies at the same instant: with the speaker frozen first, the node
    /// went on answering the client for the few milliseconds `ip` takes, which shortened measured outages.
    pub fn crash(&mut self, node: &str) -> Result<()> {
        let ns = self.layout.node(node).map(|n| n.ns.clone()).ok_or_else(|| anyhow!("unknown node {node}"))?;
        let down = netns::ip_in(&ns, &["link", "set", "eth0", "down"]);
        if let Some(s) = self.speaker_on(node) {
            s.crash();
        }
        down?;
        self.down.insert(node.to_string());
        Ok(())
    }

    /// Planned stop of the speaker on `node` (SIGTERM; it hands the VIP over).
    pub fn stop_speaker(&mut self, node: &str) -> Result<()> {
        let s = self.speaker_on(node).ok_or_else(|| anyhow!("no speaker runs on {node}"))?;
        s.stop(Sig::Term, Duration::from_secs(5));
        Ok(())
    }

    /// Brings a crashed node back: stale VIP removed (a killed keepalived leaves it), link up, speaker
    /// restarted.
    pub fn restore(&mut self, node: &str) -> Result<()> {
        let ns = self.layout.node(node).map(|n| n.ns.clone()).ok_or_else(|| anyhow!("unknown node {node}"))?;
        let _ = netns::ip_in(&ns, &["addr", "del", &format!("{}/32", self.layout.vip), "dev", "eth0"]);
        netns::ip_in(&ns, &["link", "set", "eth0", "up"])?;
        self.down.remove(node);
        self.resync_kube_proxy()?;
        if let Some(speaker) = self.speaker.clone() {
            self.speakers.retain(|s| s.name != node);
            let s = speaker.start(&self.layout, node, &self.dir, &self.dir.join("manifests"))?;
            self.speakers.push(s);
        }
        Ok(())
    }

    /// Whether the client gets an echo reply from the VIP within `tries` half-second pings (right after a
    /// takeover the first echo may still be in flight, and a stale neighbour entry takes a moment to re-resolve).
    pub fn client_pings(&self, tries: usize) -> bool {
        let vip = self.layout.vip.to_string();
        (0..tries).any(|_| {
            self.client(&["ping", "-c", "1", "-W", "0.5", "-n", &vip]).is_ok_and(|o| o.contains(" bytes from "))
        })
    }

    /// Runs `argv` in the client namespace, returning stdout whatever the exit status.
    pub fn client(&self, argv: &[&str]) -> Result<String> {
        let out = netns::exec_output(&self.layout.client_ns, argv)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `ip neigh show VIP dev eth0` in the client.
    pub fn client_neigh(&self) -> Result<Option<Neigh>> {
        let vip = self.layout.vip.to_string();
        let out = netns::ip_in(&self.layout.client_ns, &["neigh", "show", &vip, "dev", "eth0"])?;
        Ok(out.lines().next().filter(|l| !l.trim().is_empty()).map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let mac = words.iter().position(|w| *w == "lladdr").and_then(|i| words.get(i + 1)).map(|m| m.to_string());
            // `ip neigh show ADDR dev eth0` omits the device; print it as plain `ip neigh` (and the seed) do.
            let rest = words.get(1..).unwrap_or_default().join(" ");
            Neigh { line: format!("{vip} dev eth0 {rest}"), mac, state: words.last().unwrap_or(&"").to_string() }
        }))
    }

    /// One `curl http://VIP:port/` from the client; the body, or an error naming what curl said.
    pub fn curl(&self) -> Result<String> {
        let url = format!("http://{}:{}/", self.layout.vip, self.layout.port);
        let out = netns::exec_output(&self.layout.client_ns, &["curl", "-sS", "--max-time", "2", &url])?;
        if !out.status.success() {
            bail!("curl {url}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The Pods that answered `requests` curls from the client (`You've hit <pod>`); a failed request or any
    /// other reply is an error.
    pub fn pods_seen(&self, requests: usize) -> Result<BTreeSet<String>> {
        (0..requests)
            .map(|_| {
                let body = self.curl()?;
                body.strip_prefix("You've hit ")
                    .map(|pod| pod.trim().to_string())
                    .ok_or_else(|| anyhow!("unexpected reply {body:?}"))
            })
            .collect()
    }

    /// Hands the lab over to `lab down`: dropping it no longer removes anything.
    pub fn detach(mut self) -> State {
        self.detached = true;
        crate::interrupt::track(&self.layout.id, false);
        // The guards would end the processes and remove the namespaces; `lab down` does that now.
        for p in std::mem::take(&mut self.speakers).into_iter().chain(std::mem::take(&mut self.pods)) {
            p.release();
        }
        for ns in std::mem::take(&mut self.pod_namespaces) {
            ns.release();
        }
        if let Some(s) = self.segment.take() {
            s.release();
        }
        State { id: self.layout.id.clone(), namespaces: self.namespaces(), vip: self.layout.vip }
    }

    /// Removes everything, then checks that none of its namespaces and not its state directory is left (what
    /// every lab test ends with).
    pub fn finish(mut self) -> Result<()> {
        let id = self.layout.id.clone();
        self.teardown()?;
        drop(self);
        check_removed(&id)
    }

    /// Removes everything; safe to call more than once.
    pub fn teardown(&mut self) -> Result<()> {
        for s in &mut self.speakers {
            s.crash();
        }
        self.speakers.clear();
        for p in &mut self.pods {
            p.stop(Sig::Kill, Duration::from_millis(500));
        }
        self.pods.clear();
        let mut errors = Vec::new();
        for ns in self.pod_namespaces.drain(..).rev() {
            if let Err(e) = ns.destroy() {
                errors.push(format!("{e:#}"));
            }
        }
        if let Some(segment) = self.segment.take()
            && let Err(e) = segment.destroy()
        {
            errors.push(format!("{e:#}"));
        }
        if self.dir.exists()
            && let Err(e) = fs::remove_dir_all(&self.dir)
        {
            errors.push(format!("{}: {e}", self.dir.display()));
        }
        crate::interrupt::track(&self.layout.id, false);
        if errors.is_empty() { Ok(()) } else { Err(anyhow!("lab {} cleanup: {}", self.layout.id, errors.join("; "))) }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        if let Err(e) = self.teardown() {
            eprintln!("warning: {e:#}");
        }
    }
}

/// Environment variable naming a directory where a lab copies its logs (speakers, Pods, keepalived, a kube lab's
/// controller and apiserver) before it goes away: the lab's own directory is removed with it.
pub const ENV_KEEP_LOGS: &str = "OPENELB_KEEP_LOGS";

/// Copies the `*.log` files of `dirs` into `$OPENELB_KEEP_LOGS/under` when that is set; best effort.
pub fn keep_logs(dirs: &[&Path], under: &str) {
    let Some(to) = std::env::var_os(ENV_KEEP_LOGS).map(|d| PathBuf::from(d).join(under)) else { return };
    if fs::create_dir_all(&to).is_err() {
        return;
    }
    for dir in dirs {
        let Ok(entries) = fs::read_dir(dir) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "log")
                && let Some(name) = path.file_name()
            {
                let _ = fs::copy(&path, to.join(name));
            }
        }
    }
}

/// Ids of the labs recorded under `root`.
pub fn recorded(root: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(root) else { return Vec::new() };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| state_path(&e.path()).is_file())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .collect();
    ids.sort();
    ids
}

/// `lab down`: removes the namespaces recorded for `id` (only those with our prefix), killing what runs in
/// them, and the lab's directory.
pub fn down(root: &Path, id: &str) -> Result<State> {
    crate::layout::check_id(id)?;
    let dir = root.join(id);
    let path = state_path(&dir);
    let text = fs::read(&path).with_context(|| format!("{}: no lab with id {id:?}", path.display()))?;
    let state: State =
        serde_json::from_slice(&text).with_context(|| format!("{}: not a lab state file", path.display()))?;
    let existing = netns::list()?;
    let mut errors = Vec::new();
    for ns in &state.namespaces {
        if !ns.starts_with(&format!("{PREFIX}{id}-")) {
            errors.push(format!("{ns:?}: not one of lab {id}'s namespaces, left alone"));
            continue;
        }
        if existing.contains(ns)
            && let Err(e) = netns::destroy(ns)
        {
            errors.push(format!("{e:#}"));
        }
    }
    fs::remove_dir_all(&dir).with_context(|| format!("{}: cannot remove", dir.display()))?;
    if errors.is_empty() { Ok(state) } else { Err(anyhow!("lab {id}: {}", errors.join("; "))) }
}

/// What a removed lab left behind: its namespaces, and whether its state directory still exists. Tests assert
/// both are empty, so a cleanup bug shows up where it happens.
/// An error naming what lab `id` left behind, if anything.
pub fn check_removed(id: &str) -> Result<()> {
    let (left, state) = leftovers(id)?;
    if !left.is_empty() || state {
        bail!("lab {id} left behind: namespaces {left:?}, state directory: {state}");
    }
    Ok(())
}

pub fn leftovers(id: &str) -> Result<(Vec<String>, bool)> {
    let prefix = format!("{}{id}-", crate::netns::PREFIX);
    let left = crate::netns::list()?.into_iter().filter(|n| n.starts_with(&prefix)).collect();
    Ok((left, Path::new(STATE_ROOT).join(id).exists()))
}
