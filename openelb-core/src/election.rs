//! Who answers for a VIP: the candidate nodes (DESIGN §4) and their rendezvous (highest-random-weight) order.
//! Every speaker computes the same order from the same objects, and a node joining or leaving moves only the
//! VIPs it wins or held.

use std::net::IpAddr;

use crate::model::{Endpoint, Node, Service};

/// Candidate nodes for one Service, sorted by name. `Cluster`: Ready nodes without the exclude label.
/// `Local`: of those, nodes with a ready endpoint of the Service.
pub fn candidates<'a>(service: &Service, nodes: &'a [Node], endpoints: &[Endpoint]) -> Vec<&'a str> {
    todo!("{service:?}{nodes:?}{endpoints:?}")
}

/// Rendezvous weight of `node` for `vip`; a stable hash, identical on every platform and release.
pub fn weight(node: &str, vip: &IpAddr) -> u64 {
    todo!("{node}{vip}")
}

/// Candidates in preference order (highest weight first; ties broken by name).
pub fn rank<'a>(vip: &IpAddr, candidates: &[&'a str]) -> Vec<&'a str> {
    todo!("{vip}{candidates:?}")
}

/// The first-preference candidate, `None` when there are no candidates (the VIP must be withdrawn).
pub fn holder<'a>(vip: &IpAddr, candidates: &[&'a str]) -> Option<&'a str> {
    todo!("{vip}{candidates:?}")
}
