//! The VIP-mode speaker: one per node, running the built-in VRRPv3 engine of `openelb_core::vrrp` over a
//! `openelb_net::ops::NetOps` backend. Its cluster objects come from the Kubernetes API ([`source`]) or, offline,
//! from manifests (the binary's `--manifests`); both feed the same [`driver::Control::Reload`].
//!
//! - [`config`]: settings and their command-line parsers.
//! - [`desired`]: cluster objects → addresses → VIP-mode targets → VRRP plan, and per-node interface
//!   resolution (pure).
//! - [`driver`]: the event loop that runs the agent and carries out its actions.
//! - [`announce_burst`]: gratuitous ARP / NA bursts that never block the loop.
//! - [`source`]: the Kubernetes watches, their caches, coalescing and API connectivity.
//! - [`events`]: `VIPAnnounced` / `VIPWithdrawn` Events, queued without blocking the loop.
//! - [`metrics`]: the Prometheus series; [`metrics_addr`]: where they are served.

pub mod announce_burst;
pub mod config;
pub mod desired;
pub mod driver;
pub mod events;
pub mod metrics;
pub mod metrics_addr;
pub mod source;

/// Moved to the shared crate (the controller plans from the same snapshot); kept here under its old path.
pub use openelb_k8s::snapshot;

pub use config::{AddressSource, SpeakerConfig};
pub use desired::{Desired, INTERNAL_IP_SPEC, desired};
pub use driver::{Control, Speaker, SpeakerError, first_snapshot};
pub use events::{EventSink, ServiceRefs, VipChange, VipEvent};
pub use metrics::SpeakerMetrics;
