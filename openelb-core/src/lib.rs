//! The pure decision core of openelb-rs. Nothing here touches a socket, a clock, a thread or the API server:
//! inputs and outputs are plain values, time and randomness are arguments. That is what lets the CLI simulate a
//! whole cluster offline and lets property tests explore it.

pub mod addr;
pub mod alloc;
pub mod announce;
pub mod election;
pub mod endpoints;
pub mod event_reason;
pub mod iface;
pub mod ipam;
pub mod ipvs_arp;
pub mod lifecycle;
pub mod model;
pub mod pool_invalid;
pub mod protocol_support;
pub mod reserved;
pub mod select;
pub mod used;
pub mod validate;
pub mod vrrp;

pub use addr::{AddrRange, AddressError};
pub use model::*;
