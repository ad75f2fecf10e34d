//! The network-namespace lab of `openelb-cli lab` and the harness every root test builds on.
//!
//! The lab: the seed's network rebuilt in Linux network namespaces, with real VRRP speakers, real Pods
//! answering HTTP and kube-proxy's DNAT, so VIP mode is shown and measured end to end ([`Layout`] decides what
//! to build, [`Lab`] builds it, [`SpeakerProgram`] runs on its nodes, [`kube::KubeLab`] adds an apiserver and
//! the controller, [`hostile`] puts it on a LAN that is not clean: spoofed and malformed adverts from
//! [`spoof`], a foreign keepalived, floods). Only 192.0.2.0/24, 198.51.100.0/24 and 2001:db8::/32 are ever
//! configured, and only inside namespaces named `oelb-<id>-...` that the lab creates and removes.
//!
//! The harness, shared by the net, speaker, lab and end-to-end tests: [`require`](fn@require) and [`Need`] (what a test
//! needs from the machine), [`eventually`](fn@eventually) (waiting with a deadline), [`Netns`] and [`Segment`] (namespaces,
//! a bridge and veths, removed on drop), [`Process`] (by PID, killed on drop), [`in_netns`] (running our own
//! code inside a namespace) and [`Kubectl`].

pub mod arp_probe;
pub mod arping;
pub mod bench;
pub mod cluster;
pub mod cluster_walkthrough;
pub mod demo;
pub mod eventually;
pub mod hostile;
pub mod images;
pub mod in_netns;
pub mod interrupt;
pub mod keepalived;
pub mod kube;
pub mod kube_bench;
pub mod kubectl;
pub mod layout;
pub mod netns;
pub mod packet_socket;
pub mod pod;
pub mod probe;
pub mod process;
pub mod require;
pub mod segment;
pub mod soak;
pub mod speaker_manifests;
pub mod speaker_program;
pub mod spoof;
pub mod topology;

pub use eventually::{eventually, eventually_with};
pub use kubectl::Kubectl;
pub use layout::Layout;
pub use netns::{Netns, Sig};
pub use process::Process;
pub use require::{Need, require};
pub use segment::{Host, HostSpec, Segment, test_prefix};
pub use speaker_program::{OpenelbSpeakerCommand, SpeakerProgram};
pub use topology::{Lab, LabConfig, STATE_ROOT};

/// Tools every lab needs.
pub const TOOLS: &[&str] = &["ip", "iptables", "ping", "curl", "sysctl"];
