//! The VIP-mode speaker: one per node, running the built-in VRRPv3 engine of `openelb_core::vrrp` over a
//! `openelb_net::ops::NetOps` backend. Its cluster objects come from the Kubernetes API ([`source`]) or, offline,
//! from manifests (the binary's `--manifests`); both feed the same [`driver::Control::Reload`].
//!
//! - [`config`]: settings and their command-line parsers.
//! - [`desired`](mod@desired): cluster objects → addresses → VIP-mode targets → VRRP plan, and per-node interface
//!   resolution (pure).
//! - [`driver`]: the event loop that runs the agent and carries out its actions.
//! - [`planner`]: planning beside the loop, one plan at a time.
//! - [`shared`] and [`lease`]: the VRRP state shared through the API (other speakers' Leases, the controller's
//!   VRID assignment) and this node's Lease.
//! - [`notices`]: the agent's reports and plan approximations as bounded logs, metrics and Node Events.
//! - [`announce_burst`]: gratuitous ARP / NA bursts that never block the loop.
//! - [`source`]: the Kubernetes watches, their caches, coalescing and API connectivity.
//! - [`events`]: `VIPAnnounced` / `VIPWithdrawn` Events, queued without blocking the loop.
//! - [`ipvs_filter`]: keeps this node quiet on ARP for VIPs it does not hold when kube-proxy runs in IPVS mode.
//! - [`realtime`]: real-time scheduling for the VRRP thread.
//! - [`metrics`]: the Prometheus series; [`metrics_addr`]: where they are served.
//!
//! The decisions it carries out: docs/election.md and docs/vrrp.md.

pub mod announce_burst;
pub mod config;
pub mod desired;
pub mod driver;
pub mod events;
pub mod ipvs_filter;
pub mod lease;
pub mod metrics;
pub mod metrics_addr;
pub mod notices;
pub mod planner;
pub mod realtime;
pub mod shared;
pub mod source;

/// Moved to the shared crate (the controller plans from the same snapshot); kept here under its old path.
pub use openelb_k8s::snapshot;

pub use config::{AddressSource, IpvsArpFilter, SpeakerConfig};
pub use desired::{Desired, INTERNAL_IP_SPEC, desired, desired_in};
pub use driver::{Control, Speaker, SpeakerError, first_snapshot};
pub use events::{EventSink, NodeEvent, NodeReason, ServiceRefs, SpeakerEvent, VipChange, VipEvent};
pub use metrics::SpeakerMetrics;
pub use shared::{LocalVrrp, SharedVrrp};
