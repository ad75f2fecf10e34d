//! What the speaker's test files share. Each test file is its own crate and uses only a part of this.
#![allow(dead_code)]

pub mod apiserver;
pub mod cli;
pub mod fake_net;
pub mod segment;

use std::net::IpAddr;

/// The VIP the tests announce: the first address of their Eip's pool.
pub const VIP: &str = "192.0.2.91";

pub fn vip() -> IpAddr {
    VIP.parse().unwrap()
}
