//! An in-memory Layer-2 segment in virtual time, for the simulator and tests.
//!
//! Design choice: this is a synchronous value driven by the caller, not an implementation of
//! [`crate::ops::NetOps`]. The simulator owns time: it calls [`Segment::send`] with the current virtual time,
//! asks [`Segment::next_delivery_time`] how far it may jump, and collects [`Segment::poll`]'s deliveries.
//! There is no tokio, no clock, no thread and no global randomness: loss is either a fixed pattern or a
//! xorshift generator seeded by the caller, so every run with the same inputs is identical.
//!
//! What is modelled: nodes (name, MAC, primary address, link up/down), VRRP adverts (multicast to every
//! node, or unicast to named peers; as values, or as bytes decoded on delivery like a socket's), gratuitous ARP / unsolicited NA announcements, a fixed delivery delay,
//! loss, partitions (pairs of parties that cannot hear each other, both ways) and heal. Clients attached to
//! the segment keep a neighbour table with Linux's `arp_accept=0` semantics: an announcement only *updates*
//! an existing entry; an entry is *created* by [`Segment::resolve`] (an ARP request answered by the node
//! holding the VIP). If two reachable nodes hold the VIP when a client resolves it, a [`Conflict`] is
//! recorded; tests assert none happen in steady state.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::IpAddr;

use openelb_core::model::IpFamily;
use openelb_core::vrrp::consts::TTL;
use openelb_core::vrrp::{Advert, Received, Time, group_address};

use crate::ops::Incoming;
use crate::wire::MacAddr;
use crate::wire::vrrp::{self, V4Checksum};

/// What travels on the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A VRRP advert from `src` (the sender's primary address). Delivered to nodes only.
    Advert { src: IpAddr, advert: Advert },
    /// A VRRP message as bytes, with the IP header's addresses and TTL, for malformed or foreign adverts:
    /// decoded on delivery by the codec the Linux receiver uses. Delivered to nodes only.
    Raw { src: IpAddr, dst: IpAddr, ttl: u8, message: Vec<u8> },
    /// A gratuitous ARP (IPv4) or unsolicited NA (IPv6): `ip` is at `mac`. Delivered to clients only, where
    /// it updates existing neighbour entries.
    Announce { ip: IpAddr, mac: MacAddr },
}

/// A message arriving at node `to` at time `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub to: String,
    pub from: String,
    pub at: Time,
    pub message: Message,
}

impl Delivery {
    /// What a node's advert receiver reports for this delivery (adverts as values arrive with TTL 255:
    /// nothing on one segment decrements it, and as sent to the family's VRRP group, also when unicast, which
    /// the segment does not tell apart); None for announcements, which reach clients only.
    pub fn incoming(&self) -> Option<Incoming> {
        match &self.message {
            Message::Advert { src, advert } => {
                let dst = group_address(IpFamily::of(src));
                Some(Incoming::Advert(Received { src: *src, dst, ttl: TTL, advert: advert.clone() }))
            }
            Message::Raw { src, dst, ttl, message } => {
                let cx = vrrp::Context { src: *src, dst: *dst, v4_checksum: V4Checksum::PseudoHeader };
                Some(vrrp::receive(message, cx, *ttl).into())
            }
            Message::Announce { .. } => None,
        }
    }
}

/// Two nodes answered one client's ARP request for the same VIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub at: Time,
    pub client: String,
    pub ip: IpAddr,
    pub holders: Vec<String>,
}

/// How messages get lost.
#[derive(Debug, Clone, PartialEq)]
pub enum Loss {
    None,
    /// Each (message, receiver) pair is lost with this probability, drawn from the segment's seeded generator.
    Random(f64),
    /// Cycles through the pattern, one entry per (message, receiver) pair; `true` = lost.
    Pattern(Vec<bool>),
}

/// The segment's errors: all about names the caller got wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    #[error("{0:?} is already attached to the segment")]
    Duplicate(String),
    #[error("{0:?} is not a node on the segment")]
    NoSuchNode(String),
    #[error("{0:?} is not a client on the segment")]
    NoSuchClient(String),
}

/// xorshift64*: tiny, deterministic, good enough to decide packet loss.
#[derive(Debug, Clone)]
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug, Clone)]
struct Node {
    mac: MacAddr,
    primary: IpAddr,
    up: bool,
    vips: BTreeSet<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    at: Time,
    seq: u64,
    to: String,
    from: String,
    message: Msg,
}

/// `Message` without Ord; wrapped so the heap can order by (at, seq) only.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Msg(Message);

impl PartialOrd for Msg {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Msg {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

/// The simulated segment. See the module docs.
#[derive(Debug, Clone)]
pub struct Segment {
    delay: Time,
    loss: Loss,
    pattern_pos: usize,
    rng: XorShift,
    nodes: BTreeMap<String, Node>,
    clients: BTreeMap<String, BTreeMap<IpAddr, MacAddr>>,
    /// Unordered pairs (smaller name first) that cannot hear each other.
    blocked: BTreeSet<(String, String)>,
    queue: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    conflicts: Vec<Conflict>,
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b { (a.to_string(), b.to_string()) } else { (b.to_string(), a.to_string()) }
}

impl Segment {
    /// A segment delivering after `delay`, with loss decisions drawn from a generator seeded with `seed`.
    pub fn new(delay: Time, seed: u64) -> Self {
        Segment {
            delay,
            loss: Loss::None,
            pattern_pos: 0,
            rng: XorShift::new(seed),
            nodes: BTreeMap::new(),
            clients: BTreeMap::new(),
            blocked: BTreeSet::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            conflicts: Vec::new(),
        }
    }

    pub fn set_delay(&mut self, delay: Time) {
        self.delay = delay;
    }

    pub fn set_loss(&mut self, loss: Loss) {
        self.loss = loss;
        self.pattern_pos = 0;
    }

    fn known(&self, name: &str) -> bool {
        self.nodes.contains_key(name) || self.clients.contains_key(name)
    }

    /// Attaches a node with its link up and no VIPs.
    pub fn attach_node(&mut self, name: &str, mac: MacAddr, primary: IpAddr) -> Result<(), SegmentError> {
        if self.known(name) {
            return Err(SegmentError::Duplicate(name.to_string()));
        }
        self.nodes.insert(name.to_string(), Node { mac, primary, up: true, vips: BTreeSet::new() });
        Ok(())
    }

    /// Attaches a client with an empty neighbour table.
    pub fn attach_client(&mut self, name: &str) -> Result<(), SegmentError> {
        if self.known(name) {
            return Err(SegmentError::Duplicate(name.to_string()));
        }
        self.clients.insert(name.to_string(), BTreeMap::new());
        Ok(())
    }

    fn node_mut(&mut self, name: &str) -> Result<&mut Node, SegmentError> {
        self.nodes.get_mut(name).ok_or_else(|| SegmentError::NoSuchNode(name.to_string()))
    }

    /// Link up or down. A down node sends nothing, receives nothing (also what was in flight to it) and does
    /// not answer ARP, but keeps its VIPs configured, like a crashed machine.
    pub fn set_link(&mut self, node: &str, up: bool) -> Result<(), SegmentError> {
        self.node_mut(node)?.up = up;
        Ok(())
    }

    pub fn is_up(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(|n| n.up)
    }

    pub fn mac_of(&self, node: &str) -> Option<MacAddr> {
        self.nodes.get(node).map(|n| n.mac)
    }

    pub fn primary_of(&self, node: &str) -> Option<IpAddr> {
        self.nodes.get(node).map(|n| n.primary)
    }

    /// Every attached node, in name order.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// `a` and `b` stop hearing each other, both ways (nodes or clients).
    pub fn partition(&mut self, a: &str, b: &str) {
        if a != b {
            self.blocked.insert(pair(a, b));
        }
    }

    /// Every member of `side_a` stops hearing every member of `side_b`.
    pub fn partition_sets(&mut self, side_a: &[&str], side_b: &[&str]) {
        for a in side_a {
            for b in side_b {
                self.partition(a, b);
            }
        }
    }

    pub fn heal(&mut self, a: &str, b: &str) {
        self.blocked.remove(&pair(a, b));
    }

    pub fn heal_all(&mut self) {
        self.blocked.clear();
    }

    /// Whether `a` and `b` can hear each other now (ignoring link state and loss).
    pub fn connected(&self, a: &str, b: &str) -> bool {
        a == b || !self.blocked.contains(&pair(a, b))
    }

    fn lost(&mut self) -> bool {
        match &self.loss {
            Loss::None => false,
            Loss::Random(p) => {
                let p = *p;
                self.rng.next_f64() < p
            }
            Loss::Pattern(pattern) if pattern.is_empty() => false,
            Loss::Pattern(pattern) => {
                let lost = pattern[self.pattern_pos % pattern.len()];
                self.pattern_pos = self.pattern_pos.wrapping_add(1);
                lost
            }
        }
    }

    fn enqueue(&mut self, from: &str, to: &str, message: &Message, now: Time) {
        if !self.connected(from, to) || self.lost() {
            return;
        }
        self.seq += 1;
        self.queue.push(Reverse(Pending {
            at: now + self.delay,
            seq: self.seq,
            to: to.to_string(),
            from: from.to_string(),
            message: Msg(message.clone()),
        }));
    }

    /// Sends from node `from` at `now`. Adverts go to every other node, or only to the nodes whose primary
    /// address is in `unicast` when it is non-empty; announcements go to every client. Returns how many
    /// copies were queued (after partitions and loss).
    pub fn send(&mut self, from: &str, message: Message, unicast: &[IpAddr], now: Time) -> Result<usize, SegmentError> {
        let sender = self.nodes.get(from).ok_or_else(|| SegmentError::NoSuchNode(from.to_string()))?;
        if !sender.up {
            return Ok(0);
        }
        let targets: Vec<String> = match &message {
            Message::Advert { .. } | Message::Raw { .. } => self
                .nodes
                .iter()
                .filter(|(name, n)| *name != from && (unicast.is_empty() || unicast.contains(&n.primary)))
                .map(|(name, _)| name.clone())
                .collect(),
            Message::Announce { .. } => self.clients.keys().cloned().collect(),
        };
        let before = self.queue.len();
        for to in &targets {
            self.enqueue(from, to, &message, now);
        }
        Ok(self.queue.len() - before)
    }

    /// When the next queued message arrives, if any: how far a simulator may jump.
    pub fn next_delivery_time(&self) -> Option<Time> {
        self.queue.peek().map(|Reverse(p)| p.at)
    }

    /// Delivers everything due by `now`, in time order (ties in send order). Node deliveries are returned;
    /// client deliveries update the clients' neighbour tables here. Messages whose receiver went down or got
    /// partitioned from the sender while in flight are dropped.
    pub fn poll(&mut self, now: Time) -> Vec<Delivery> {
        let mut out = Vec::new();
        while self.queue.peek().is_some_and(|Reverse(p)| p.at <= now) {
            let Some(Reverse(p)) = self.queue.pop() else { break };
            if !self.connected(&p.from, &p.to) {
                continue;
            }
            if let Some(table) = self.clients.get_mut(&p.to) {
                if let Message::Announce { ip, mac } = p.message.0
                    && let Some(entry) = table.get_mut(&ip)
                {
                    *entry = mac;
                }
                continue;
            }
            if !self.is_up(&p.to) {
                continue;
            }
            out.push(Delivery { to: p.to, from: p.from, at: p.at, message: p.message.0 });
        }
        out
    }

    /// Configures `ip` on `node` (what `add_vip` does on Linux).
    pub fn add_vip(&mut self, node: &str, ip: IpAddr) -> Result<(), SegmentError> {
        self.node_mut(node)?.vips.insert(ip);
        Ok(())
    }

    /// Removes `ip` from `node`; false if it was not there.
    pub fn remove_vip(&mut self, node: &str, ip: IpAddr) -> Result<bool, SegmentError> {
        Ok(self.node_mut(node)?.vips.remove(&ip))
    }

    pub fn vips_of(&self, node: &str) -> Vec<IpAddr> {
        self.nodes.get(node).map(|n| n.vips.iter().copied().collect()).unwrap_or_default()
    }

    /// Nodes with `ip` configured, up or not.
    pub fn holders(&self, ip: IpAddr) -> Vec<String> {
        self.nodes.iter().filter(|(_, n)| n.vips.contains(&ip)).map(|(name, _)| name.clone()).collect()
    }

    /// Nodes that would answer an ARP request for `ip` from `client` now: holders that are up and reachable.
    pub fn answering(&self, client: &str, ip: IpAddr) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(name, n)| n.up && n.vips.contains(&ip) && self.connected(client, name))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The client resolves `ip` (ARP request / NS), creating or refreshing its entry from the answer.
    /// Instantaneous: request and reply take no virtual time. With several answers the last one (in name
    /// order) wins, as on Linux where a later reply overwrites, and a [`Conflict`] is recorded. With no answer
    /// the entry is left as it was. Returns the MAC now in the entry.
    pub fn resolve(&mut self, client: &str, ip: IpAddr, now: Time) -> Result<Option<MacAddr>, SegmentError> {
        if !self.clients.contains_key(client) {
            return Err(SegmentError::NoSuchClient(client.to_string()));
        }
        let answering = self.answering(client, ip);
        if answering.len() > 1 {
            self.conflicts.push(Conflict { at: now, client: client.to_string(), ip, holders: answering.clone() });
        }
        let mac = answering.last().and_then(|n| self.mac_of(n));
        let table = self.clients.get_mut(client).ok_or_else(|| SegmentError::NoSuchClient(client.to_string()))?;
        if let Some(mac) = mac {
            table.insert(ip, mac);
        }
        Ok(table.get(&ip).copied())
    }

    /// The client's neighbour entry for `ip`.
    pub fn neighbour(&self, client: &str, ip: IpAddr) -> Option<MacAddr> {
        self.clients.get(client).and_then(|t| t.get(&ip).copied())
    }

    /// The node the client's traffic to `ip` reaches now: the owner of the entry's MAC, if it is up,
    /// reachable and holds `ip`. None means the client sees an outage.
    pub fn reaches(&self, client: &str, ip: IpAddr) -> Option<String> {
        let mac = self.neighbour(client, ip)?;
        self.nodes
            .iter()
            .find(|(name, n)| n.mac == mac && n.up && n.vips.contains(&ip) && self.connected(client, name))
            .map(|(name, _)| name.clone())
    }

    /// Every ARP conflict seen so far.
    pub fn conflicts(&self) -> &[Conflict] {
        &self.conflicts
    }

    pub fn clear_conflicts(&mut self) {
        self.conflicts.clear();
    }

    /// Messages still in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }
}
