//! One L2 segment in namespaces: a switch namespace with bridge `br0`, and hosts whose `eth0` is a veth on it.
//! The lab's nodes and client, and the net and speaker tests' nodes, are hosts of a segment. Dropping it
//! deletes every host and then the switch (taking the veths along), killing whatever still runs inside.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};

use crate::eventually::eventually_with;
use crate::netns::{self, Netns, PREFIX};

/// A namespace-name prefix unique to this test process and `tag`: `oelb-<pid>-<tag>`.
pub fn test_prefix(tag: &str) -> String {
    format!("{PREFIX}{}-{tag}", std::process::id())
}

/// A host to attach: its namespace, `eth0`'s MAC and its addresses with prefix length (`192.0.2.3/24`,
/// `2001:db8::11/64`; IPv6 ones are added without duplicate address detection, so they work at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    pub name: String,
    pub ns: String,
    pub mac: String,
    pub addrs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub ns: String,
    pub mac: String,
    pub addrs: Vec<String>,
    /// The host's port on the bridge, in the switch namespace.
    pub port: String,
}

#[derive(Debug)]
pub struct Segment {
    // Dropped in this order: hosts before the switch that holds their ports.
    hosts: Vec<(Host, Netns)>,
    switch: Netns,
}

impl Host {
    /// The host's first address without its prefix length.
    pub fn ip(&self) -> &str {
        self.addrs.first().and_then(|a| a.split('/').next()).unwrap_or_default()
    }
}

/// The host the node segments of [`Segment::nodes_and_client`] call the client.
pub const CLIENT: &str = "client";

impl Segment {
    /// The speaker and net tests' segment: nodes `node-a`, `node-b`.. with 192.0.2.3.. and MACs
    /// 02:42:c0:00:02:03.., and [`CLIENT`] at 192.0.2.100, in namespaces `oelb-<pid>-<tag>-n<i>` and `-cl`.
    pub fn nodes_and_client(tag: &str, nodes: u8) -> Result<Segment> {
        let base = test_prefix(tag);
        let host = |name: String, ns: String, last: u8| HostSpec {
            name,
            ns,
            mac: format!("02:42:c0:00:02:{last:02x}"),
            addrs: vec![format!("192.0.2.{last}/24")],
        };
        let mut hosts: Vec<HostSpec> = (0..nodes.min(26))
            .map(|i| host(format!("node-{}", char::from(b'a' + i)), format!("{base}-n{i}"), 3 + i))
            .collect();
        hosts.push(host(CLIENT.into(), format!("{base}-cl"), 100));
        Segment::with_hosts(&format!("{base}-sw"), hosts)
    }

    /// Every host but [`CLIENT`], in the order they were added.
    pub fn nodes(&self) -> Vec<Host> {
        self.hosts().filter(|h| h.name != CLIENT).cloned().collect()
    }

    /// A segment with `hosts` attached in order; whatever was created is removed again on error.
    pub fn with_hosts(switch_ns: &str, hosts: Vec<HostSpec>) -> Result<Segment> {
        let mut segment = Segment::new(switch_ns)?;
        for h in hosts {
            segment.add_host(h)?;
        }
        Ok(segment)
    }

    /// Creates namespace `switch_ns` with bridge `br0` up.
    pub fn new(switch_ns: &str) -> Result<Segment> {
        let switch = Netns::create(switch_ns)?;
        netns::ip_in(switch_ns, &["link", "add", "br0", "type", "bridge"])?;
        netns::ip_in(switch_ns, &["link", "set", "br0", "up"])?;
        Ok(Segment { hosts: Vec::new(), switch })
    }

    pub fn switch(&self) -> &str {
        self.switch.name()
    }

    /// Creates the host's namespace with `eth0` on the bridge, its MAC, its addresses, and the link up.
    pub fn add_host(&mut self, spec: HostSpec) -> Result<&Host> {
        if self.hosts.iter().any(|(h, _)| h.name == spec.name) {
            bail!("host {:?} is already on the segment", spec.name);
        }
        let ns = Netns::create(&spec.ns)?;
        let port = format!("p{}", self.hosts.len());
        if spec.addrs.iter().any(|a| a.contains(':')) {
            // No DAD, so link-local and test addresses are usable at once.
            for key in ["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"] {
                netns::exec(&spec.ns, &["sysctl", "-qw", key])?;
            }
        }
        self.attach(&spec.ns, &spec.mac, &spec.addrs, &port)?;
        let host = Host { name: spec.name, ns: spec.ns, mac: spec.mac, addrs: spec.addrs, port };
        self.hosts.push((host, ns));
        self.hosts.last().map(|(h, _)| h).ok_or_else(|| anyhow!("host list is empty after adding one"))
    }

    /// Creates the veth pair `eth0` (in `ns`) / `port` (on the bridge), gives `eth0` its MAC and addresses and
    /// brings it up.
    fn attach(&self, ns: &str, mac: &str, addrs: &[String], port: &str) -> Result<()> {
        let sw = self.switch();
        netns::ip_in(ns, &["link", "add", "eth0", "address", mac, "type", "veth", "peer", "name", port, "netns", sw])?;
        netns::ip_in(sw, &["link", "set", port, "master", "br0", "up"])?;
        for addr in addrs {
            let mut args = vec!["addr", "add", addr.as_str(), "dev", "eth0"];
            if addr.contains(':') {
                args.push("nodad");
            }
            netns::ip_in(ns, &args)?;
        }
        netns::ip_in(ns, &["link", "set", "eth0", "up"])?;
        Ok(())
    }

    /// Deletes `host`'s veth pair and creates it again with the same names, MAC and addresses: for the host,
    /// `eth0` vanishes and comes back under a new interface index.
    pub fn recreate_eth0(&self, host: &str) -> Result<()> {
        let h = self.host(host).ok_or_else(|| anyhow!("no host {host:?} on the segment"))?;
        netns::ip_in(self.switch(), &["link", "del", &h.port])?;
        self.attach(&h.ns, &h.mac, &h.addrs, &h.port)
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().map(|(h, _)| h).find(|h| h.name == name)
    }

    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().map(|(h, _)| h)
    }

    /// Every namespace of the segment, the switch last.
    pub fn namespaces(&self) -> Vec<String> {
        let mut out: Vec<String> = self.hosts().map(|h| h.ns.clone()).collect();
        out.push(self.switch().to_string());
        out
    }

    /// Whether `host`'s `eth0` carries `ip` (any prefix length).
    pub fn has_ip(&self, host: &str, ip: &str) -> bool {
        let Some(h) = self.host(host) else { return false };
        netns::ip_in(&h.ns, &["addr", "show", "dev", "eth0"])
            .is_ok_and(|s| s.contains(&format!("inet {ip}/")) || s.contains(&format!("inet6 {ip}/")))
    }

    /// The hosts among `among` whose `eth0` carries `ip`.
    pub fn holders_of(&self, ip: &str, among: &[String]) -> Vec<String> {
        among.iter().filter(|h| self.has_ip(h, ip)).cloned().collect()
    }

    /// Waits until exactly the hosts `want` (in any order) among `among` carry `ip`; the error names who did.
    pub fn wait_holders_of(&self, ip: &str, among: &[String], want: &[&str], timeout: Duration) -> Result<(), String> {
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        eventually_with(&format!("holders of {ip} to be {want:?}"), timeout, Duration::from_millis(20), || {
            let mut h = self.holders_of(ip, among);
            h.sort();
            if h == want { Ok(()) } else { Err(format!("{h:?}")) }
        })
    }

    /// Waits until host `from` pings `ip` and its neighbour entry for it shows `mac`.
    pub fn wait_reaches(&self, from: &str, ip: &str, mac: &str, timeout: Duration) -> Result<(), String> {
        let ns = self.host(from).map(|h| h.ns.clone()).ok_or_else(|| format!("no host {from}"))?;
        eventually_with(&format!("{from} reaching {ip} at {mac}"), timeout, Duration::from_millis(50), || {
            let ping = netns::exec(&ns, &["ping", "-c", "1", "-W", "1", ip]).is_ok();
            let neigh = netns::ip_in(&ns, &["neigh", "show", ip, "dev", "eth0"]).unwrap_or_default();
            if ping && neigh.contains(mac) { Ok(()) } else { Err(format!("ping ok {ping}, neigh {neigh:?}")) }
        })
    }

    /// Deletes every namespace now (hosts first), reporting what could not be removed.
    pub fn destroy(self) -> Result<()> {
        let Segment { hosts, switch } = self;
        let mut errors = Vec::new();
        for (_, ns) in hosts.into_iter().rev() {
            if let Err(e) = ns.destroy() {
                errors.push(format!("{e:#}"));
            }
        }
        if let Err(e) = switch.destroy() {
            errors.push(format!("{e:#}"));
        }
        if errors.is_empty() { Ok(()) } else { bail!("{}", errors.join("; ")) }
    }

    /// Leaves every namespace in place (`lab up` hands them over to `lab down`).
    pub fn release(self) {
        let Segment { hosts, switch } = self;
        for (_, ns) in hosts {
            ns.release();
        }
        switch.release();
    }
}
