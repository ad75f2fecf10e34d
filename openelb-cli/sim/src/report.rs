//! What a simulation run reports: per step, the allocation changes, the timeline, the takeovers and the state
//! it leaves; `openelb-cli simulate` prints it as a table, JSON or YAML.

use serde::Serialize;

use crate::data_plane::{ConflictView, Entry};

/// One allocation change, as the controller's Events would tell it.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeView {
    pub service: String,
    pub change: String,
    pub warning: bool,
}

/// Who answers for one VIP and what a client on the LAN sees.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VipView {
    pub vip: String,
    pub pool: String,
    pub protocol: String,
    pub services: Vec<String>,
    pub policy: String,
    pub candidates: Vec<String>,
    /// The node answering ARP/NDP for the VIP (vip and layer2 pools); `None` for BGP or without candidates.
    /// For `vip` pools this is what the simulated data plane shows: the node holding the VIP that the client's
    /// traffic reaches, or else the first node holding it.
    pub holder: Option<String>,
    /// Every running node with its link up and the VIP configured, on any side of a partition.
    pub holders: Vec<String>,
    /// The holders that answer the client's ARP requests: more than one is a split brain the client sees.
    pub answering: Vec<String>,
    /// Down nodes that still have the VIP configured (a crashed machine keeps its addresses).
    pub stale_on: Vec<String>,
    /// `vrrp` (simulated speakers) or `election` (the first preference, for layer2 and BGP pools).
    pub model: String,
    /// The VRRP group of the VIP, when it has candidates.
    pub vrid: Option<u8>,
    pub priorities: Vec<NodePriority>,
    pub holder_mac: Option<String>,
    /// The client's neighbour entry for the VIP, as `ip neigh` prints it.
    pub ip_neigh: Option<String>,
    /// Pods a client's requests to the VIP reach.
    pub reaches: Vec<String>,
    /// Pods Kubernetes still lists as ready that requests cannot reach (their node is down or cut off): the
    /// share of requests kube-proxy sends there times out.
    pub timeouts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodePriority {
    pub node: String,
    pub priority: u8,
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
    pub conflicts: Vec<ConflictView>,
    /// The run's end: the last step's state time.
    pub end_ms: f64,
}
