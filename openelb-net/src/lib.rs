//! Network actions of openelb-rs. This issue only fixes the crate's place in the workspace; the `NetOps`
//! trait, the Linux and in-memory implementations and the packet codecs arrive with the VIP data plane.

pub use openelb_core as core;
