//! Network actions of openelb-rs: the [`ops::NetOps`] trait the speaker drives, its Linux implementation
//! ([`linux`]), an in-memory L2 segment in virtual time for simulation ([`memory`]) and the packet codecs.

pub use openelb_core as core;

#[cfg(target_os = "linux")]
pub mod linux;
pub mod memory;
pub mod ops;

pub use ops::{AdvertReceiver, IfaceSpec, Incoming, Interface, NetError, NetOps};
pub mod wire;
