//! Why the allocator gives out no new addresses from a pool that is neither disabled nor being deleted. Each is
//! what validation (and so the webhook) refuses, found again on objects that got past it: the webhook was down,
//! two Eips were created at once, or they predate a rule. The pool then drains: holders keep their addresses
//! (sticky), newcomers get none from it, until the spec is fixed.
//!
//! The controller shows each as the Eip's `Invalid` condition (reason [`PoolProblem::reason`], message the
//! [`PoolInvalid`] text) and records a Warning Event with the same reason when it appears.

use std::fmt;
use std::net::IpAddr;

use crate::addr::{AddrRange, AddressError};
use crate::reserved::ReservedIp;

/// A pool and one reason it gives out nothing new. Shows as `Eip <name>: spec.address "<value>" <problem>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PoolInvalid {
    pub pool: String,
    /// `spec.address` as written.
    pub address: String,
    pub problem: PoolProblem,
}

/// How many addresses outside the pool a message lists before summarising the rest.
pub const OUTSIDE_LISTED: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PoolProblem {
    /// `spec.address` does not parse.
    Unparsable { reason: String },
    /// `spec.address` includes an address no host can hold.
    Reserved(ReservedIp),
    /// Another Eip's `spec.address` shares addresses with this one: both give out nothing new, so the common
    /// addresses can never be handed out by either (the one set of used addresses already keeps any address
    /// from being held twice).
    Overlap { other: String, other_address: String, common: AddrRange },
    /// `spec.address` changed under its holders and no longer contains some addresses in use. They stay
    /// (never renumbered); the pool drains like a disabled one until they are released.
    Outside {
        /// The first [`OUTSIDE_LISTED`] addresses in numeric order with their holders (`ns/name[;ns/name]`).
        listed: Vec<(IpAddr, String)>,
        /// How many addresses in all.
        total: usize,
    },
}

impl PoolProblem {
    /// CamelCase reason for the condition and the Event.
    pub fn reason(&self) -> &'static str {
        match self {
            PoolProblem::Unparsable { .. } => "InvalidAddress",
            PoolProblem::Reserved(_) => "ReservedAddress",
            PoolProblem::Overlap { .. } => "OverlappingEip",
            PoolProblem::Outside { .. } => "AddressesOutsidePool",
        }
    }
}

impl From<&AddressError> for PoolProblem {
    fn from(e: &AddressError) -> Self {
        let AddressError::Invalid { reason, .. } = e;
        PoolProblem::Unparsable { reason: reason.clone() }
    }
}

impl fmt::Display for PoolProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolProblem::Unparsable { reason } => write!(f, "does not parse: {reason}"),
            PoolProblem::Reserved(r) => f.write_str(&r.contained()),
            PoolProblem::Overlap { other, other_address, common } => {
                write!(f, "overlaps Eip {other} (spec.address {other_address:?}) on {common}")
            }
            PoolProblem::Outside { listed, total } => {
                let parts: Vec<String> = listed.iter().map(|(ip, users)| format!("{ip} ({users})")).collect();
                let more = total.saturating_sub(listed.len());
                let tail = if more > 0 { format!(" and {more} more") } else { String::new() };
                write!(
                    f,
                    "no longer contains {total} address(es) in use: {}{tail}; their Services keep them until released",
                    parts.join(", ")
                )
            }
        }
    }
}

impl fmt::Display for PoolInvalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Eip {}: spec.address {:?} {}; the Eip gives out no new addresses until this is fixed",
            self.pool, self.address, self.problem
        )
    }
}
