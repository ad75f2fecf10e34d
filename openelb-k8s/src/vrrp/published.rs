//! The controller's ConfigMap `openelb-vrrp`: one data key holding versioned JSON with the VRID of every VRRP
//! group (by group identity, per family) and the VRIDs foreign routers were seen using. Speakers follow it so
//! that they agree on VRIDs whatever plans they made before (restarts at different moments).
//!
//! Group identities repeat node names many times (a `Cluster`-policy group lists every node), so the JSON
//! lists each node name once and each candidate set once, and groups refer to them by index: 156 groups of
//! 256 nodes take a few kilobytes instead of most of a ConfigMap's megabyte.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use openelb_core::vrrp::plan::{GroupId, VridAssignment};
use serde::{Deserialize, Serialize};

use super::{ForeignJson, ForeignSeen, FormatError, normalized, parse_family};

pub const CONFIGMAP_NAME: &str = "openelb-vrrp";
pub const CONFIGMAP_KEY: &str = "vrrp.json";
/// The JSON's `version`; a reader ignores (and reports) any other, and plans on its own meanwhile.
pub const FORMAT_VERSION: u32 = 1;

/// What the controller publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The VRID range and offset the assignment was planned with: a speaker configured otherwise says so.
    pub vrids: RangeInclusive<u8>,
    pub offset: u8,
    pub assignment: VridAssignment,
    /// Sorted.
    pub foreign: Vec<ForeignSeen>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc {
    version: u32,
    #[serde(default)]
    vrid_range: Option<(u8, u8)>,
    #[serde(default)]
    vrid_offset: u8,
    #[serde(default)]
    nodes: Vec<String>,
    #[serde(default)]
    candidate_sets: Vec<Vec<usize>>,
    #[serde(default)]
    groups: Vec<GroupJson>,
    #[serde(default)]
    foreign: Vec<ForeignJson>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupJson {
    interface: String,
    family: String,
    /// Index into `nodes`.
    first: usize,
    /// Index into `candidateSets`.
    candidates: usize,
    #[serde(default)]
    part: u32,
    vrid: u8,
}

impl Published {
    /// The JSON stored under [`CONFIGMAP_KEY`]; equal contents give equal text.
    pub fn to_json(&self) -> String {
        let mut nodes: BTreeMap<&str, usize> = BTreeMap::new();
        for id in self.assignment.vrids.keys() {
            nodes.entry(id.first.as_str()).or_default();
            for c in &id.candidates {
                nodes.entry(c.as_str()).or_default();
            }
        }
        for (i, v) in nodes.values_mut().enumerate() {
            *v = i;
        }
        let index = |n: &str| nodes.get(n).copied().unwrap_or_default();
        let mut sets: BTreeMap<Vec<usize>, usize> = BTreeMap::new();
        let mut groups = Vec::with_capacity(self.assignment.vrids.len());
        for (id, vrid) in &self.assignment.vrids {
            let set: Vec<usize> = id.candidates.iter().map(|c| index(c)).collect();
            let next = sets.len();
            let candidates = *sets.entry(set).or_insert(next);
            groups.push(GroupJson {
                interface: id.interface.clone(),
                family: id.family.to_string(),
                first: index(&id.first),
                candidates,
                part: id.part,
                vrid: *vrid,
            });
        }
        let mut candidate_sets = vec![Vec::new(); sets.len()];
        for (set, i) in sets {
            if let Some(slot) = candidate_sets.get_mut(i) {
                *slot = set;
            }
        }
        let doc = Doc {
            version: FORMAT_VERSION,
            vrid_range: Some((*self.vrids.start(), *self.vrids.end())),
            vrid_offset: self.offset,
            nodes: nodes.keys().map(|s| s.to_string()).collect(),
            candidate_sets,
            groups,
            foreign: self.foreign.iter().map(ForeignJson::of).collect(),
        };
        // Serializing plain strings and numbers cannot fail; an empty document is read back as unusable.
        serde_json::to_string(&doc).unwrap_or_default()
    }

    /// Reads the JSON of [`CONFIGMAP_KEY`]; `object` names the ConfigMap in errors.
    pub fn from_json(object: &str, raw: &str) -> Result<Self, FormatError> {
        let field = format!("data.{CONFIGMAP_KEY}");
        let bad = |message: String| FormatError::new(object, &field, message);
        let doc: Doc = serde_json::from_str(raw).map_err(|e| bad(format!("not the published VRRP state: {e}")))?;
        if doc.version != FORMAT_VERSION {
            return Err(bad(format!("version {} is not {FORMAT_VERSION} (written by another release)", doc.version)));
        }
        let node = |i: usize| doc.nodes.get(i).cloned().ok_or_else(|| bad(format!("node index {i} out of range")));
        let mut vrids = BTreeMap::new();
        for g in &doc.groups {
            let family =
                parse_family(&g.family).ok_or_else(|| bad(format!("family {:?}: expected IPv4 or IPv6", g.family)))?;
            let set = doc
                .candidate_sets
                .get(g.candidates)
                .ok_or_else(|| bad(format!("candidate set {} out of range", g.candidates)))?;
            let candidates = normalized(set.iter().map(|i| node(*i)).collect::<Result<Vec<_>, _>>()?);
            let id =
                GroupId { interface: g.interface.clone(), family, first: node(g.first)?, candidates, part: g.part };
            if g.vrid == 0 {
                return Err(bad(format!("group {id}: VRID 0 is reserved")));
            }
            vrids.insert(id, g.vrid);
        }
        let foreign = normalized(doc.foreign.into_iter().map(|f| f.parse(object, &field)).collect::<Result<_, _>>()?);
        let (first, last) = doc.vrid_range.unwrap_or((1, 255));
        Ok(Published { vrids: first..=last, offset: doc.vrid_offset, assignment: VridAssignment { vrids }, foreign })
    }

    /// Reads the ConfigMap; a ConfigMap without the key holds nothing yet.
    pub fn from_configmap(cm: &ConfigMap) -> Result<Option<Self>, FormatError> {
        let object = format!(
            "ConfigMap {}/{}",
            cm.metadata.namespace.as_deref().unwrap_or_default(),
            cm.metadata.name.as_deref().unwrap_or_default()
        );
        match cm.data.as_ref().and_then(|d| d.get(CONFIGMAP_KEY)) {
            Some(raw) => Self::from_json(&object, raw).map(Some),
            None => Ok(None),
        }
    }

    /// The ConfigMap to create or replace in `namespace` (set `resourceVersion` to replace).
    pub fn to_configmap(&self, namespace: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIGMAP_NAME.to_string()),
                namespace: Some(namespace.to_string()),
                labels: Some([("app.kubernetes.io/name".to_string(), "openelb-controller".to_string())].into()),
                ..Default::default()
            },
            data: Some([(CONFIGMAP_KEY.to_string(), self.to_json())].into()),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use openelb_core::model::IpFamily;
    use openelb_core::vrrp::plan::ForeignVrid;
    use proptest::prelude::*;

    use super::*;

    fn id(first: &str, candidates: &[&str], family: IpFamily, part: u32) -> GroupId {
        GroupId {
            interface: "eth0".into(),
            family,
            first: first.into(),
            candidates: candidates.iter().map(|s| s.to_string()).collect(),
            part,
        }
    }

    fn sample() -> Published {
        let vrids = [
            (id("a", &["a", "b", "c"], IpFamily::V4, 0), 120),
            (id("b", &["a", "b", "c"], IpFamily::V4, 0), 200),
            (id("b", &["a", "b", "c"], IpFamily::V4, 1), 201),
            (id("c", &["b", "c"], IpFamily::V6, 0), 120),
        ]
        .into();
        Published {
            vrids: 100..=255,
            offset: 3,
            assignment: VridAssignment { vrids },
            foreign: vec![ForeignSeen {
                vrid: ForeignVrid { interface: "eth0".into(), family: IpFamily::V4, vrid: 51 },
                last_seen: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            }],
        }
    }

    #[test]
    fn the_assignment_round_trips_with_each_node_and_set_listed_once() {
        let p = sample();
        let cm = p.to_configmap("openelb-system");
        assert_eq!(cm.metadata.name.as_deref(), Some(CONFIGMAP_NAME));
        assert_eq!(Published::from_configmap(&cm), Ok(Some(p.clone())));
        let doc: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
        assert_eq!(doc["version"], 1);
        assert_eq!(doc["nodes"], serde_json::json!(["a", "b", "c"]));
        assert_eq!(doc["candidateSets"].as_array().unwrap().len(), 2);
        assert_eq!(p.to_json(), sample().to_json(), "equal contents give equal text");
    }

    #[test]
    fn another_version_or_broken_indices_are_refused_with_the_field_named() {
        let e = Published::from_json("ConfigMap x/y", r#"{"version":2}"#).unwrap_err().to_string();
        assert!(e.contains("ConfigMap x/y: data.vrrp.json: version 2"), "{e}");
        let raw = r#"{"version":1,"nodes":["a"],"candidateSets":[[0,4]],
            "groups":[{"interface":"eth0","family":"IPv4","first":0,"candidates":0,"vrid":9}]}"#;
        assert!(Published::from_json("c", raw).unwrap_err().to_string().contains("node index 4"));
        assert!(Published::from_json("c", "not json").is_err());
        let empty = ConfigMap::default();
        assert_eq!(Published::from_configmap(&empty), Ok(None));
    }

    proptest! {
        #[test]
        fn any_assignment_round_trips(
            groups in proptest::collection::vec(
                (0usize..6, proptest::collection::btree_set(0usize..6, 1..5), any::<bool>(), 0u32..3, 1u8..=255),
                0..40,
            )
        ) {
            let names = ["n0", "n1", "n2", "n3", "n4", "n5"];
            let mut vrids = BTreeMap::new();
            for (first, set, v6, part, vrid) in groups {
                let cands: Vec<&str> = set.iter().map(|i| names[*i]).collect();
                let family = if v6 { IpFamily::V6 } else { IpFamily::V4 };
                vrids.insert(id(names[first], &cands, family, part), vrid);
            }
            let p = Published { vrids: 1..=255, offset: 0, assignment: VridAssignment { vrids }, foreign: Vec::new() };
            prop_assert_eq!(Published::from_json("c", &p.to_json()), Ok(p));
        }

        #[test]
        fn arbitrary_text_never_panics(raw in ".*") {
            let _ = Published::from_json("c", &raw);
        }
    }
}
