//! The VIP-mode speaker: one per node, running the built-in VRRPv3 engine of `openelb_core::vrrp` over a
//! `openelb_net::ops::NetOps` backend. Today it reads its cluster objects from manifests (the
//! `openelb-speaker` binary, runnable without Kubernetes); Kubernetes watches will feed the same
//! [`driver::Control::Reload`] later.
//!
//! - [`config`]: settings and their command-line parsers.
//! - [`desired`]: cluster objects → allocation → VIP-mode targets → VRRP plan, and per-node interface
//!   resolution (pure).
//! - [`driver`]: the event loop that runs the agent and carries out its actions.
//! - [`announce_burst`]: gratuitous ARP / NA bursts that never block the loop.

pub mod announce_burst;
pub mod config;
pub mod desired;
pub mod driver;

pub use config::SpeakerConfig;
pub use desired::{Desired, INTERNAL_IP_SPEC, desired};
pub use driver::{Control, Speaker, SpeakerError};
