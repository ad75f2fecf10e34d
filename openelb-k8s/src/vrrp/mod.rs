//! What VIP mode shares through the API besides the Eips and Services (docs/vrrp.md): each speaker's Lease
//! ([`SpeakerLease`]: its VRRP source addresses and the VRIDs it sees foreign routers use) and the controller's
//! ConfigMap ([`Published`]: the VRID assignment every speaker follows and the foreign VRIDs to avoid). Both
//! sides read and write them through these types, so the formats are defined once.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openelb_core::model::IpFamily;
use openelb_core::vrrp::plan::ForeignVrid;
use serde::{Deserialize, Serialize};

mod flags;
mod published;
mod speaker_lease;

pub use flags::parse_vrid_range;
pub use published::{CONFIGMAP_KEY, CONFIGMAP_NAME, FORMAT_VERSION, Published};
pub use speaker_lease::{
    ANNOTATION_FOREIGN, ANNOTATION_SOURCES, LEASE_LABEL, LEASE_LABEL_VALUE, LEASE_PREFIX, SpeakerLease, known_peers,
};

/// Where the speakers' Leases and the controller's ConfigMap live when nothing says otherwise (`POD_NAMESPACE`).
pub const DEFAULT_NAMESPACE: &str = "openelb-system";

/// A shared VRRP object that cannot be read; the message names the object, the field and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {field}: {message}")]
pub struct FormatError {
    pub object: String,
    pub field: String,
    pub message: String,
}

impl FormatError {
    fn new(object: &str, field: &str, message: impl Into<String>) -> Self {
        FormatError { object: object.to_string(), field: field.to_string(), message: message.into() }
    }
}

/// A VRID a foreign router was seen using, and when last (wall clock: it crosses processes and restarts).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ForeignSeen {
    pub vrid: ForeignVrid,
    pub last_seen: SystemTime,
}

/// [`ForeignSeen`] on the wire: `{"interface":"eth0","family":"IPv4","vrid":51,"lastSeen":1700000000}`, the time
/// in whole seconds since the Unix epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ForeignJson {
    interface: String,
    family: String,
    vrid: u8,
    last_seen: u64,
}

impl ForeignJson {
    fn of(f: &ForeignSeen) -> Self {
        ForeignJson {
            interface: f.vrid.interface.clone(),
            family: f.vrid.family.to_string(),
            vrid: f.vrid.vrid,
            last_seen: unix_seconds(f.last_seen),
        }
    }

    fn parse(self, object: &str, field: &str) -> Result<ForeignSeen, FormatError> {
        let family = parse_family(&self.family).ok_or_else(|| {
            FormatError::new(object, field, format!("family {:?}: expected IPv4 or IPv6", self.family))
        })?;
        if self.vrid == 0 {
            return Err(FormatError::new(object, field, "VRID 0 is reserved"));
        }
        Ok(ForeignSeen {
            vrid: ForeignVrid { interface: self.interface, family, vrid: self.vrid },
            last_seen: UNIX_EPOCH + Duration::from_secs(self.last_seen),
        })
    }
}

fn parse_family(s: &str) -> Option<IpFamily> {
    match s {
        "IPv4" => Some(IpFamily::V4),
        "IPv6" => Some(IpFamily::V6),
        _ => None,
    }
}

/// Whole seconds since the Unix epoch (0 for a clock before it).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Sorted and without duplicates, so that equal contents compare and serialize equal.
fn normalized<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v.dedup();
    v
}

/// A comma-separated address list, as in [`ANNOTATION_SOURCES`].
fn parse_addresses(object: &str, field: &str, raw: &str) -> Result<Vec<IpAddr>, FormatError> {
    let mut out = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let ip = part
            .parse::<IpAddr>()
            .map_err(|_| FormatError::new(object, field, format!("{part:?} is not an IP address")))?;
        out.push(ip);
    }
    Ok(normalized(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_vrids_round_trip_to_the_second() {
        let seen = ForeignSeen {
            vrid: ForeignVrid { interface: "eth0".into(), family: IpFamily::V6, vrid: 51 },
            last_seen: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        };
        let json = serde_json::to_string(&ForeignJson::of(&seen)).unwrap();
        assert_eq!(json, r#"{"interface":"eth0","family":"IPv6","vrid":51,"lastSeen":1700000000}"#);
        let back: ForeignJson = serde_json::from_str(&json).unwrap();
        assert_eq!(back.parse("x", "y"), Ok(seen));
        let bad: ForeignJson =
            serde_json::from_str(r#"{"interface":"e","family":"v4","vrid":1,"lastSeen":0}"#).unwrap();
        assert!(bad.parse("lease a", "annotation b").unwrap_err().to_string().contains("\"v4\""));
    }

    #[test]
    fn address_lists_name_the_bad_entry() {
        assert_eq!(
            parse_addresses("o", "f", " 192.0.2.4, fe80::1 ,192.0.2.4"),
            Ok(vec!["192.0.2.4".parse().unwrap(), "fe80::1".parse().unwrap()])
        );
        let e = parse_addresses("lease x", "annotation y", "192.0.2.4,nope").unwrap_err();
        assert_eq!(e.to_string(), "lease x: annotation y: \"nope\" is not an IP address");
    }
}
