//! A speaker's Lease `openelb-speaker-<node>`: renewed periodically by the speaker, read by every other speaker
//! (its addresses make the node a known VRRP peer: IPv6 adverts come from link-local addresses that no Node
//! object publishes) and by the controller (the foreign VRIDs it sees).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use openelb_core::model::Node;
use xxhash_rust::xxh3::xxh3_64;

use super::{ForeignJson, ForeignSeen, FormatError, normalized, parse_addresses};

/// Name prefix of the speakers' Leases; the node name follows.
pub const LEASE_PREFIX: &str = "openelb-speaker-";
/// Label every speaker Lease carries (what the watches select on), with [`LEASE_LABEL_VALUE`].
pub const LEASE_LABEL: &str = "app.kubernetes.io/name";
pub const LEASE_LABEL_VALUE: &str = "openelb-speaker";
/// The node's VRRP source addresses, comma-separated: the primary IPv4 address and the IPv6 link-local
/// address of every interface it runs VRRP on.
pub const ANNOTATION_SOURCES: &str = "vrrp.openelb.kubesphere.io/sources";
/// The VRIDs this node sees foreign routers use: a JSON list of `{"interface","family","vrid","lastSeen"}`.
pub const ANNOTATION_FOREIGN: &str = "vrrp.openelb.kubesphere.io/foreign-vrids";
/// Longest object name the API server takes.
const NAME_MAX: usize = 253;

/// What one speaker publishes about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpeakerLease {
    /// The Node the speaker runs on (`spec.holderIdentity`).
    pub node: String,
    /// Sorted.
    pub sources: Vec<IpAddr>,
    /// Sorted.
    pub foreign: Vec<ForeignSeen>,
    /// `spec.renewTime`: when the speaker last wrote it.
    pub renewed: Option<SystemTime>,
}

impl SpeakerLease {
    /// The Lease name of `node`: the prefix and the node name, or for a name too long for that, its first
    /// characters and a hash (node names are unique, so Lease names are too).
    pub fn name_for(node: &str) -> String {
        let name = format!("{LEASE_PREFIX}{node}");
        if name.len() <= NAME_MAX {
            return name;
        }
        let hash = format!("-{:016x}", xxh3_64(node.as_bytes()));
        let mut keep = NAME_MAX - LEASE_PREFIX.len() - hash.len();
        while !node.is_char_boundary(keep) {
            keep -= 1;
        }
        format!("{LEASE_PREFIX}{}{hash}", node.get(..keep).unwrap_or_default())
    }

    /// Reads a speaker Lease; `Ok(None)` for a Lease that is no speaker's (another name or no holder).
    pub fn from_lease(lease: &Lease) -> Result<Option<Self>, FormatError> {
        let name = lease.metadata.name.as_deref().unwrap_or_default();
        if !name.starts_with(LEASE_PREFIX) {
            return Ok(None);
        }
        let object = format!("Lease {}/{name}", lease.metadata.namespace.as_deref().unwrap_or_default());
        let spec = lease.spec.clone().unwrap_or_default();
        let Some(node) = spec.holder_identity.filter(|h| !h.is_empty()) else { return Ok(None) };
        let annotations = lease.metadata.annotations.clone().unwrap_or_default();
        let field = |key: &str| format!("annotation {key}");
        let sources = match annotations.get(ANNOTATION_SOURCES) {
            Some(raw) => parse_addresses(&object, &field(ANNOTATION_SOURCES), raw)?,
            None => Vec::new(),
        };
        let foreign = match annotations.get(ANNOTATION_FOREIGN).map(|s| s.trim()).filter(|s| !s.is_empty()) {
            Some(raw) => {
                let f = field(ANNOTATION_FOREIGN);
                let list: Vec<ForeignJson> = serde_json::from_str(raw)
                    .map_err(|e| FormatError::new(&object, &f, format!("{raw:?}: not a foreign-VRID list: {e}")))?;
                normalized(list.into_iter().map(|j| j.parse(&object, &f)).collect::<Result<_, _>>()?)
            }
            None => Vec::new(),
        };
        let renewed = spec.renew_time.map(|t| SystemTime::from(t.0));
        Ok(Some(SpeakerLease { node, sources, foreign, renewed }))
    }

    /// The Lease to write (create or replace) in `namespace`, renewed at `now`, lasting `duration`.
    pub fn to_lease(&self, namespace: &str, now: SystemTime, duration: Duration) -> Lease {
        let sources: Vec<String> = self.sources.iter().map(ToString::to_string).collect();
        let foreign: Vec<ForeignJson> = self.foreign.iter().map(ForeignJson::of).collect();
        let foreign = serde_json::to_string(&foreign).unwrap_or_else(|_| "[]".to_string());
        let annotations: BTreeMap<String, String> =
            [(ANNOTATION_SOURCES.to_string(), sources.join(",")), (ANNOTATION_FOREIGN.to_string(), foreign)].into();
        let renew_time = k8s_openapi::jiff::Timestamp::try_from(now).ok().map(MicroTime);
        Lease {
            metadata: ObjectMeta {
                name: Some(Self::name_for(&self.node)),
                namespace: Some(namespace.to_string()),
                labels: Some([(LEASE_LABEL.to_string(), LEASE_LABEL_VALUE.to_string())].into()),
                annotations: Some(annotations),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.node.clone()),
                lease_duration_seconds: i32::try_from(duration.as_secs()).ok(),
                renew_time,
                ..Default::default()
            }),
        }
    }

    /// Whether its addresses still count at `now`: its Node exists, or it was renewed within `stale` (a
    /// crashed speaker's node is still a legitimate peer; a Lease outliving its Node is not, once stale).
    pub fn counts(&self, nodes: &BTreeSet<&str>, now: SystemTime, stale: Duration) -> bool {
        nodes.contains(self.node.as_str())
            || self.renewed.is_some_and(|r| now.duration_since(r).map_or(true, |age| age <= stale))
    }
}

/// The addresses VRRP adverts are accepted from: every address a Node object publishes, the sources of every
/// speaker Lease that [`SpeakerLease::counts`], and the configured unicast peers. Sorted, no duplicates.
pub fn known_peers(
    nodes: &[Node],
    leases: &[SpeakerLease],
    unicast: &[IpAddr],
    now: SystemTime,
    stale: Duration,
) -> Vec<IpAddr> {
    let names: BTreeSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let from_nodes = nodes.iter().flat_map(|n| n.internal_ip.iter().chain(&n.addresses));
    let from_leases = leases.iter().filter(|l| l.counts(&names, now, stale)).flat_map(|l| &l.sources);
    normalized(from_nodes.chain(from_leases).chain(unicast).copied().collect())
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use openelb_core::model::IpFamily;
    use openelb_core::vrrp::plan::ForeignVrid;

    use super::*;

    fn lease(node: &str) -> SpeakerLease {
        SpeakerLease {
            node: node.into(),
            sources: vec!["192.0.2.3".parse().unwrap(), "fe80::3".parse().unwrap()],
            foreign: vec![ForeignSeen {
                vrid: ForeignVrid { interface: "eth0".into(), family: IpFamily::V4, vrid: 51 },
                last_seen: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            }],
            renewed: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_010)),
        }
    }

    #[test]
    fn a_lease_round_trips_through_the_api_object() {
        let l = lease("node-a");
        let obj =
            l.to_lease("openelb-system", UNIX_EPOCH + Duration::from_secs(1_700_000_010), Duration::from_secs(30));
        assert_eq!(obj.metadata.name.as_deref(), Some("openelb-speaker-node-a"));
        let ann = obj.metadata.annotations.clone().unwrap();
        assert_eq!(ann[ANNOTATION_SOURCES], "192.0.2.3,fe80::3");
        assert_eq!(SpeakerLease::from_lease(&obj), Ok(Some(l)));
        let json = serde_json::to_value(&obj).unwrap();
        assert_eq!(json["spec"]["leaseDurationSeconds"], 30);
    }

    #[test]
    fn other_leases_are_not_speakers_and_bad_annotations_name_the_lease() {
        let mut obj = lease("node-a").to_lease("ns", SystemTime::now(), Duration::from_secs(30));
        obj.metadata.name = Some("openelb-controller".into());
        assert_eq!(SpeakerLease::from_lease(&obj), Ok(None));
        obj.metadata.name = Some("openelb-speaker-node-a".into());
        obj.metadata.annotations.as_mut().unwrap().insert(ANNOTATION_FOREIGN.into(), "{".into());
        let e = SpeakerLease::from_lease(&obj).unwrap_err().to_string();
        assert!(e.starts_with("Lease ns/openelb-speaker-node-a: annotation vrrp.openelb.kubesphere.io/foreign-vrids"));
    }

    #[test]
    fn long_node_names_still_give_valid_distinct_lease_names() {
        let a = "a".repeat(250);
        let b = format!("{}b", "a".repeat(249));
        let (na, nb) = (SpeakerLease::name_for(&a), SpeakerLease::name_for(&b));
        assert!(na.len() <= NAME_MAX && nb.len() <= NAME_MAX);
        assert_ne!(na, nb);
        assert_eq!(SpeakerLease::name_for("w1"), "openelb-speaker-w1");
    }

    #[test]
    fn known_peers_keep_a_silent_speakers_node_but_not_a_stale_lease_without_node() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_001_000);
        let nodes =
            [Node { name: "node-a".into(), internal_ip: Some("192.0.2.3".parse().unwrap()), ..Node::default() }];
        // Renewed 990 s before `now`: stale, but its Node exists.
        let a = lease("node-a");
        let mut gone = lease("node-z");
        gone.sources = vec!["fe80::9".parse().unwrap()];
        let mut fresh = lease("node-new");
        fresh.sources = vec!["fe80::7".parse().unwrap()];
        fresh.renewed = Some(now);
        let stale = Duration::from_secs(300);
        let peers = known_peers(&nodes, &[a, gone, fresh], &["198.51.100.9".parse().unwrap()], now, stale);
        let peers: Vec<String> = peers.iter().map(ToString::to_string).collect();
        assert_eq!(peers, ["192.0.2.3", "198.51.100.9", "fe80::3", "fe80::7"]);
    }
}
