//! Why the controller records a Kubernetes Event. On the wire these are upstream OpenELB's reasons, so whatever
//! watches for them keeps working. The allocator decides the Service ones ([`crate::ipam::Event`]); the
//! controller decides the Eip ones from its conditions and deletions.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventReason {
    /// A Service got an address.
    AssignIp,
    /// A Service wanted an address and got none.
    AssignIpFailed,
    /// A Service gave its address back.
    ReleaseIp,
    /// A Service keeps a shared address although it now conflicts with another sharer.
    SharedIpConflict,
    /// A Service got an address from an Eip whose protocol this build does not announce
    /// ([`crate::protocol_support`]).
    AddressNotAnnounced,
    /// An Eip's deletion waits for addresses in use.
    DeletionHeld,
    /// A Service keeps an address its Eip's range no longer contains (the Eip drains).
    IpOutsideEip,
    /// An Eip's spec breaks a validation rule (the `Invalid` condition says the same).
    InvalidSpec,
    /// An Eip does not decode; it is read as disabled.
    Undecodable,
    /// An Eip gives out no new addresses for one of the allocator's reasons ([`crate::pool_invalid`]).
    InvalidAddress,
    ReservedAddress,
    OverlappingEip,
    AddressesOutsidePool,
}

impl EventReason {
    pub const ALL: [EventReason; 13] = [
        EventReason::AssignIp,
        EventReason::AssignIpFailed,
        EventReason::ReleaseIp,
        EventReason::SharedIpConflict,
        EventReason::AddressNotAnnounced,
        EventReason::DeletionHeld,
        EventReason::IpOutsideEip,
        EventReason::InvalidSpec,
        EventReason::Undecodable,
        EventReason::InvalidAddress,
        EventReason::ReservedAddress,
        EventReason::OverlappingEip,
        EventReason::AddressesOutsidePool,
    ];

    /// The Event's `reason` on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventReason::AssignIp => "AssignIP",
            EventReason::AssignIpFailed => "AssignIPFailed",
            EventReason::ReleaseIp => "ReleaseIP",
            EventReason::SharedIpConflict => "SharedIPConflict",
            EventReason::AddressNotAnnounced => "AddressNotAnnounced",
            EventReason::DeletionHeld => "DeletionHeld",
            EventReason::IpOutsideEip => "IPOutsideEip",
            EventReason::InvalidSpec => "InvalidSpec",
            EventReason::Undecodable => "Undecodable",
            EventReason::InvalidAddress => "InvalidAddress",
            EventReason::ReservedAddress => "ReservedAddress",
            EventReason::OverlappingEip => "OverlappingEip",
            EventReason::AddressesOutsidePool => "AddressesOutsidePool",
        }
    }

    /// What the controller was doing (the Event's `action`); `kubectl describe` shows the reason.
    pub const fn action(self) -> &'static str {
        match self {
            EventReason::AssignIp | EventReason::AssignIpFailed => "Assign",
            EventReason::ReleaseIp => "Release",
            EventReason::SharedIpConflict => "Share",
            EventReason::AddressNotAnnounced => "Announce",
            EventReason::DeletionHeld => "Delete",
            EventReason::IpOutsideEip => "Keep",
            EventReason::InvalidSpec
            | EventReason::Undecodable
            | EventReason::InvalidAddress
            | EventReason::ReservedAddress
            | EventReason::OverlappingEip
            | EventReason::AddressesOutsidePool => "Validate",
        }
    }
}

impl fmt::Display for EventReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
