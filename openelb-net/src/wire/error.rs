//! Why bytes could not be decoded, and the bounded reason a receiver counts when it drops them.

use std::fmt;

/// Why bytes could not be decoded or a representation could not be encoded. `what` names the layer
/// (e.g. `"VRRP advert"`), so a log line says which header of a frame was at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{what}: truncated, need {need} bytes, have {have}")]
    Truncated { what: &'static str, need: usize, have: usize },
    #[error("{what}: version {got}, expected {expected}")]
    BadVersion { what: &'static str, expected: u8, got: u8 },
    #[error("{what}: type {got}, expected {expected}")]
    BadType { what: &'static str, expected: &'static str, got: u16 },
    #[error("{what}: protocol {got}, expected {expected}")]
    BadProtocol { what: &'static str, expected: u8, got: u8 },
    #[error("{what}: checksum {got:#06x}, expected {expected:#06x}")]
    BadChecksum { what: &'static str, expected: u16, got: u16 },
    #[error("{what}: length {got}, expected {expected}")]
    BadLength { what: &'static str, expected: usize, got: usize },
    #[error("{what}: hop limit {got}, expected 255 (the packet may have crossed a router)")]
    BadHopLimit { what: &'static str, got: u8 },
    #[error("{what}: address {addr} is not of the packet's address family")]
    FamilyMismatch { what: &'static str, addr: std::net::IpAddr },
    #[error("{what}: {count} addresses, at most {max} fit")]
    TooManyAddresses { what: &'static str, count: usize, max: usize },
    #[error("{what}: max advert interval {centis} cs does not fit in 12 bits (at most 4095)")]
    IntervalTooLarge { what: &'static str, centis: u16 },
    #[error("{what}: {reason}")]
    Malformed { what: &'static str, reason: &'static str },
}

impl WireError {
    /// The bounded reason for counting: which check failed, without the values.
    pub fn kind(&self) -> DecodeFailure {
        match self {
            WireError::Truncated { .. } => DecodeFailure::Truncated,
            WireError::BadVersion { .. } => DecodeFailure::BadVersion,
            WireError::BadType { .. } => DecodeFailure::BadType,
            WireError::BadProtocol { .. } => DecodeFailure::BadProtocol,
            WireError::BadChecksum { .. } => DecodeFailure::BadChecksum,
            WireError::BadLength { .. } => DecodeFailure::BadLength,
            WireError::BadHopLimit { .. } => DecodeFailure::BadTtl,
            WireError::FamilyMismatch { .. } => DecodeFailure::FamilyMismatch,
            // Only emitting can exceed these limits (the wire fields cannot), so a receiver never sees them.
            WireError::TooManyAddresses { .. } | WireError::IntervalTooLarge { .. } | WireError::Malformed { .. } => {
                DecodeFailure::Malformed
            }
        }
    }
}

/// Why a received packet did not decode into an advert: a small closed set, so it can be a metric label
/// (`openelb_vrrp_packets_dropped_total{reason}`). Adverts that decode and are then refused are the core's
/// `AdvertRefusal`s, counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecodeFailure {
    Truncated,
    BadVersion,
    BadType,
    BadProtocol,
    BadChecksum,
    BadLength,
    /// TTL / hop limit other than 255: the packet crossed a router (RFC 5798 §7.1).
    BadTtl,
    FamilyMismatch,
    Malformed,
    /// The socket did not report the addresses or hop limit an IPv6 advert is checked against.
    MissingAncillaryData,
}

impl DecodeFailure {
    /// Every reason, e.g. to register each metric label at start-up.
    pub const ALL: [DecodeFailure; 10] = [
        DecodeFailure::Truncated,
        DecodeFailure::BadVersion,
        DecodeFailure::BadType,
        DecodeFailure::BadProtocol,
        DecodeFailure::BadChecksum,
        DecodeFailure::BadLength,
        DecodeFailure::BadTtl,
        DecodeFailure::FamilyMismatch,
        DecodeFailure::Malformed,
        DecodeFailure::MissingAncillaryData,
    ];

    /// The metric label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            DecodeFailure::Truncated => "truncated",
            DecodeFailure::BadVersion => "bad_version",
            DecodeFailure::BadType => "bad_type",
            DecodeFailure::BadProtocol => "bad_protocol",
            DecodeFailure::BadChecksum => "bad_checksum",
            DecodeFailure::BadLength => "bad_length",
            DecodeFailure::BadTtl => "bad_ttl",
            DecodeFailure::FamilyMismatch => "family_mismatch",
            DecodeFailure::Malformed => "malformed",
            DecodeFailure::MissingAncillaryData => "missing_ancillary_data",
        }
    }
}

impl fmt::Display for DecodeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
