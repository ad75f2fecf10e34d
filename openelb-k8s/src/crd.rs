//! The `Eip` custom resource (`network.kubesphere.io`), in the two versions upstream serves.
//!
//! Both versions share one schema shape (upstream has no conversion webhook, so the API server only rewrites
//! `apiVersion`); v1alpha1 differs in its protocol enum (no `vip`) and has no status subresource. Every
//! optional field is an `Option` or a skipped-when-empty collection and [`crd`] strips every `default` from
//! the schema: kube-apiserver 1.20 rejects the `default: ''` schemars emits for defaulted strings.
//! `status.conditions` (upstream has none) is in both versions' schema: the API server prunes what a schema
//! does not name, and it serves one stored object as either version.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{CustomResourceDefinition, JSONSchemaProps};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResourceExt;
use openelb_core::model::{PRIORITY_MAX, PRIORITY_MIN};

use crate::decoded::Undecodable;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Name of the CRD object, and of the file under `deploy/crds/` that holds its YAML.
pub const CRD_NAME: &str = "eips.network.kubesphere.io";
pub const GROUP: &str = "network.kubesphere.io";
/// The version objects are stored in, and the one the rest of the code works with.
pub const STORAGE_VERSION: &str = "v1alpha2";

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

// Upstream declares the sizes and `priority` as Go `int`; `i64` is what that is on every platform upstream
// ships. Sizes beyond it saturate (see `PoolStatus::pool_size_i64`). `priority` is read as `i64` so an object
// written past the schema's bounds (an older CRD, or an API server that did not enforce them) still decodes and
// validation names its value, instead of the whole object being unreadable. Doc comments here become CRD
// descriptions.
/// Written by the controller only.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
pub struct EipStatus {
    #[serde(default, skip_serializing_if = "is_false")]
    pub occupied: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = 0))]
    pub usage: i64,
    #[serde(rename = "poolSize", default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = 0))]
    pub pool_size: i64,
    /// Address → `ns/name[;ns/name...]`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub used: BTreeMap<String, String>,
    #[serde(rename = "firstIP", skip_serializing_if = "Option::is_none")]
    pub first_ip: Option<String>,
    #[serde(rename = "lastIP", skip_serializing_if = "Option::is_none")]
    pub last_ip: Option<String>,
    /// Dead in upstream v0.6; kept so objects round-trip unchanged.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ready: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub v4: bool,
    /// `Ready` (gives out new addresses now), `Invalid` (the spec breaks a validation rule) and `Announced`
    /// (this build announces the protocol: false for layer2 and bgp, whose addresses are allocated but reach no
    /// network), each with a reason and a message saying why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

pub mod v1alpha2 {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum EipProtocol {
        Bgp,
        Layer2,
        Vip,
    }

    impl EipProtocol {
        pub fn as_str(self) -> &'static str {
            match self {
                EipProtocol::Bgp => "bgp",
                EipProtocol::Layer2 => "layer2",
                EipProtocol::Vip => "vip",
            }
        }
    }

    pub use super::EipStatus;

    /// A pool of addresses for LoadBalancer Services.
    #[derive(kube::CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
    #[kube(
        group = "network.kubesphere.io",
        version = "v1alpha2",
        kind = "Eip",
        plural = "eips",
        singular = "eip",
        shortname = "eip",
        category = "networking",
        status = "EipStatus",
        derive = "PartialEq",
        derive = "Default",
        doc = "Eip is a pool of external addresses OpenELB assigns to LoadBalancer Services.",
        printcolumn = r#"{"name": "cidr", "type": "string", "jsonPath": ".spec.address"}"#,
        printcolumn = r#"{"name": "usage", "type": "integer", "jsonPath": ".status.usage"}"#,
        printcolumn = r#"{"name": "total", "type": "integer", "jsonPath": ".status.poolSize"}"#
    )]
    pub struct EipSpec {
        /// A single address, a `first-last` range or a CIDR (network and broadcast addresses included).
        pub address: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub protocol: Option<EipProtocol>,
        /// A NIC name or `can_reach:<ip>`; required for `layer2` and `vip`.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub interface: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub disable: Option<bool>,
        #[serde(rename = "usingKnownIPs", skip_serializing_if = "Option::is_none")]
        pub using_known_ips: Option<bool>,
        /// Lower wins among namespace-bound pools.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = PRIORITY_MIN, max = PRIORITY_MAX))]
        pub priority: Option<i64>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub namespaces: Vec<String>,
        #[serde(rename = "namespaceSelector", default, skip_serializing_if = "BTreeMap::is_empty")]
        pub namespace_selector: BTreeMap<String, String>,
        /// Held in memory only, never read from or written to the API: set by [`super::salvaged`] on an Eip
        /// built from an object that did not decode, with what did not, so the controller can say so in its
        /// conditions.
        #[serde(skip)]
        #[schemars(skip)]
        pub undecodable: Option<Box<Undecodable>>,
    }
}

pub mod v1alpha1 {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum EipProtocol {
        Bgp,
        Layer2,
    }

    pub use super::EipStatus;

    // Served for old clients; objects are stored as v1alpha2. The status subresource is removed by
    // `super::crd`, since the derive ties the status field to the subresource.
    /// A pool of addresses for LoadBalancer Services.
    #[derive(kube::CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
    #[kube(
        group = "network.kubesphere.io",
        version = "v1alpha1",
        kind = "Eip",
        plural = "eips",
        singular = "eip",
        shortname = "eip",
        category = "networking",
        status = "EipStatus",
        derive = "PartialEq",
        derive = "Default",
        storage = false,
        doc = "Eip is a pool of external addresses OpenELB assigns to LoadBalancer Services.",
        printcolumn = r#"{"name": "cidr", "type": "string", "jsonPath": ".spec.address"}"#,
        printcolumn = r#"{"name": "usage", "type": "integer", "jsonPath": ".status.usage"}"#,
        printcolumn = r#"{"name": "total", "type": "integer", "jsonPath": ".status.poolSize"}"#
    )]
    pub struct EipSpec {
        pub address: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub protocol: Option<EipProtocol>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub interface: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub disable: Option<bool>,
        #[serde(rename = "usingKnownIPs", skip_serializing_if = "Option::is_none")]
        pub using_known_ips: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = PRIORITY_MIN, max = PRIORITY_MAX))]
        pub priority: Option<i64>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub namespaces: Vec<String>,
        #[serde(rename = "namespaceSelector", default, skip_serializing_if = "BTreeMap::is_empty")]
        pub namespace_selector: BTreeMap<String, String>,
    }

    impl From<EipProtocol> for super::v1alpha2::EipProtocol {
        fn from(p: EipProtocol) -> Self {
            match p {
                EipProtocol::Bgp => super::v1alpha2::EipProtocol::Bgp,
                EipProtocol::Layer2 => super::v1alpha2::EipProtocol::Layer2,
            }
        }
    }

    /// What the API server does without a conversion webhook: same fields, new `apiVersion`.
    impl From<Eip> for super::v1alpha2::Eip {
        fn from(old: Eip) -> Self {
            let s = old.spec;
            let mut new = super::v1alpha2::Eip::new(
                "",
                super::v1alpha2::EipSpec {
                    address: s.address,
                    protocol: s.protocol.map(Into::into),
                    interface: s.interface,
                    disable: s.disable,
                    using_known_ips: s.using_known_ips,
                    priority: s.priority,
                    namespaces: s.namespaces,
                    namespace_selector: s.namespace_selector,
                    undecodable: None,
                },
            );
            new.metadata = old.metadata;
            new.status = old.status;
            new
        }
    }
}

/// The storage version, which the rest of the code works with.
pub use v1alpha2::{Eip, EipProtocol, EipSpec};

/// An Eip that did not decode, as far as it reads: its metadata, and `spec.address`, `spec.protocol`,
/// `spec.interface` and `status` (or its `used` and `conditions`) where each reads on its own, with
/// `spec.disable: true`. The allocator then
/// drains it like any Eip it cannot trust (its Services keep their addresses, nobody gets a new one from it), and
/// the speaker keeps announcing what those Services hold. Everything else is left at its default.
pub fn salvaged(u: &Undecodable) -> Eip {
    let spec = EipSpec {
        address: u.str_at("/spec/address").unwrap_or_default().to_string(),
        protocol: u.read_at("/spec/protocol"),
        interface: u.str_at("/spec/interface").map(str::to_string),
        disable: Some(true),
        undecodable: Some(Box::new(u.clone())),
        ..Default::default()
    };
    let mut eip = Eip::new(u.name(), spec);
    eip.metadata = u.meta.clone();
    // The whole status if it reads, else its allocation record and conditions (what keeps the holders, and lets
    // the controller see which of its conditions it wrote already).
    eip.status = u.read_at("/status").or_else(|| {
        let used: Option<BTreeMap<String, String>> = u.read_at("/status/used");
        let conditions: Option<Vec<Condition>> = u.read_at("/status/conditions");
        (used.is_some() || conditions.is_some()).then(|| EipStatus {
            used: used.unwrap_or_default(),
            conditions: conditions.unwrap_or_default(),
            ..Default::default()
        })
    });
    eip
}

#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    #[error("merging the Eip CRD versions: {0}")]
    Merge(String),
    #[error("serialising the Eip CRD to YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

/// The one CRD holding both versions, v1alpha2 stored. Fails only if the derive's output changes shape (a
/// programming error caught by the tests), never on input.
pub fn try_crd() -> Result<CustomResourceDefinition, CrdError> {
    let mut crd = kube::core::crd::merge_crds(vec![v1alpha2::Eip::crd(), v1alpha1::Eip::crd()], STORAGE_VERSION)
        .map_err(|e| CrdError::Merge(e.to_string()))?;
    for version in &mut crd.spec.versions {
        if version.name != STORAGE_VERSION {
            version.subresources = None;
        }
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            strip_defaults(schema);
        }
    }
    Ok(crd)
}

/// [`try_crd`] for callers that only want the object; the merge of two derived CRDs of one kind cannot fail
/// (the tests check it does not), so this falls back to the storage version alone rather than panicking.
pub fn crd() -> CustomResourceDefinition {
    try_crd().unwrap_or_else(|_| v1alpha2::Eip::crd())
}

/// The YAML `openelb-cli crd` prints and `deploy/crds/network.kubesphere.io_eips.yaml` holds.
pub fn crd_yaml() -> Result<String, CrdError> {
    Ok(serde_yaml::to_string(&try_crd()?)?)
}

/// Removes `default` everywhere in a schema (the fields are all optional and 1.20 rejects some defaults), and
/// the `null` kube lists among an optional enum's values (`nullable: true` already admits it, and a null in
/// `enum` is one more thing old API servers may refuse).
fn strip_defaults(schema: &mut JSONSchemaProps) {
    schema.default = None;
    if let Some(values) = schema.enum_.as_mut() {
        values.retain(|v| !v.0.is_null());
    }
    let children = schema
        .properties
        .iter_mut()
        .flat_map(|p| p.values_mut())
        .chain(schema.pattern_properties.iter_mut().flat_map(|p| p.values_mut()))
        .chain(schema.definitions.iter_mut().flat_map(|p| p.values_mut()))
        .chain(schema.all_of.iter_mut().flatten())
        .chain(schema.any_of.iter_mut().flatten())
        .chain(schema.one_of.iter_mut().flatten())
        .chain(schema.not.as_deref_mut());
    for child in children {
        strip_defaults(child);
    }
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    };
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(s)) => strip_defaults(s),
        Some(JSONSchemaPropsOrArray::Schemas(v)) => v.iter_mut().for_each(strip_defaults),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(s)) = schema.additional_properties.as_mut() {
        strip_defaults(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn checked_in_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds/network.kubesphere.io_eips.yaml")
    }

    #[test]
    fn crd_yaml_matches_checked_in_file() {
        let generated = crd_yaml().unwrap();
        let path = checked_in_path();
        if std::env::var_os("UPDATE_CRDS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "{} differs from the generated CRD; regenerate it with `UPDATE_CRDS=1 cargo test -p openelb-k8s crd`",
            path.display()
        );
    }

    #[test]
    fn crd_holds_both_versions_with_v1alpha2_stored() {
        let crd = try_crd().unwrap();
        assert_eq!(crd.metadata.name.as_deref(), Some(CRD_NAME));
        assert_eq!(crd.spec.scope, "Cluster");
        let names: Vec<_> = crd.spec.versions.iter().map(|v| (v.name.as_str(), v.served, v.storage)).collect();
        assert_eq!(names, vec![("v1alpha2", true, true), ("v1alpha1", true, false)]);
        assert_eq!(crd.spec.names.short_names, Some(vec!["eip".to_string()]));
        assert_eq!(crd.spec.names.categories, Some(vec!["networking".to_string()]));
        assert_eq!(crd.spec.names.plural, "eips");
    }

    #[test]
    fn status_subresource_only_on_storage_version() {
        let crd = try_crd().unwrap();
        for v in &crd.spec.versions {
            let has_status = v.subresources.as_ref().is_some_and(|s| s.status.is_some());
            assert_eq!(has_status, v.name == "v1alpha2", "version {}", v.name);
        }
    }

    #[test]
    fn printer_columns_cidr_usage_total() {
        let crd = try_crd().unwrap();
        for v in &crd.spec.versions {
            let cols: Vec<_> = v
                .additional_printer_columns
                .iter()
                .flatten()
                .map(|c| (c.name.as_str(), c.json_path.as_str()))
                .collect();
            assert_eq!(
                cols,
                vec![("cidr", ".spec.address"), ("usage", ".status.usage"), ("total", ".status.poolSize")]
            );
        }
    }

    #[test]
    fn yaml_has_no_defaults_apiserver_1_20_rejects() {
        let yaml = crd_yaml().unwrap();
        assert!(!yaml.contains("default: ''"));
        assert!(!yaml.contains("default:"), "no schema defaults at all:\n{yaml}");
    }

    #[test]
    fn yaml_names_upstream_fields_and_protocols() {
        let yaml = crd_yaml().unwrap();
        for field in [
            "address:",
            "protocol:",
            "interface:",
            "disable:",
            "usingKnownIPs:",
            "priority:",
            "namespaces:",
            "namespaceSelector:",
            "occupied:",
            "usage:",
            "poolSize:",
            "used:",
            "firstIP:",
            "lastIP:",
            "ready:",
            "v4:",
        ] {
            assert!(yaml.contains(field), "missing {field}");
        }
        let crd = try_crd().unwrap();
        let protocols = |name: &str| {
            let v = crd.spec.versions.iter().find(|v| v.name == name).unwrap();
            let spec =
                &v.schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap().properties.as_ref().unwrap()["spec"];
            let p = &spec.properties.as_ref().unwrap()["protocol"];
            p.enum_.clone().unwrap().into_iter().map(|j| j.0.as_str().unwrap().to_string()).collect::<Vec<_>>()
        };
        assert_eq!(protocols("v1alpha2"), ["bgp", "layer2", "vip"]);
        assert_eq!(protocols("v1alpha1"), ["bgp", "layer2"]);
    }

    /// Without `status.conditions` in the schema the API server prunes the controller's Ready and Invalid
    /// conditions on every write. Both versions carry them: the API server serves one stored object as either.
    #[test]
    fn both_versions_keep_status_conditions() {
        let crd = try_crd().unwrap();
        for v in &crd.spec.versions {
            let root = v.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()).unwrap();
            let status = &root.properties.as_ref().unwrap()["status"];
            let conditions = &status.properties.as_ref().unwrap()["conditions"];
            assert_eq!(conditions.type_.as_deref(), Some("array"), "version {}", v.name);
            let Some(
                k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(
                    item,
                ),
            ) = conditions.items.as_ref()
            else {
                panic!("version {}: conditions has no item schema", v.name)
            };
            let fields: Vec<&str> = item.properties.as_ref().unwrap().keys().map(String::as_str).collect();
            assert_eq!(fields, ["lastTransitionTime", "message", "observedGeneration", "reason", "status", "type"]);
            assert!(item.required.as_ref().unwrap().contains(&"type".to_string()), "version {}", v.name);
        }
    }

    const V1ALPHA2_WITH_CONDITIONS: &str = r#"{
        "apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip",
        "metadata": {"name": "pool", "resourceVersion": "12"},
        "spec": {"address": "192.0.2.1-192.0.2.9", "protocol": "layer2", "interface": "eth0"},
        "status": {"poolSize": 9, "usage": 1, "used": {"192.0.2.1": "ns/a"}, "firstIP": "192.0.2.1",
                   "lastIP": "192.0.2.9", "v4": true,
                   "conditions": [{"type": "Ready", "status": "True", "reason": "Available", "message": "8 of 9",
                                   "lastTransitionTime": "2026-01-02T03:04:05Z", "observedGeneration": 2}]}
    }"#;

    #[test]
    fn conditions_survive_serde_and_both_versions() {
        let original: serde_json::Value = serde_json::from_str(V1ALPHA2_WITH_CONDITIONS).unwrap();
        let eip: Eip = serde_json::from_value(original.clone()).unwrap();
        let conditions = &eip.status.as_ref().unwrap().conditions;
        assert_eq!(conditions.len(), 1);
        assert_eq!((conditions[0].reason.as_str(), conditions[0].observed_generation), ("Available", Some(2)));
        assert_eq!(serde_json::to_value(&eip).unwrap(), original, "nothing lost or added on a round trip");

        // Served as v1alpha1 (the API server only rewrites apiVersion), then read back as v1alpha2.
        let mut as_old = original.clone();
        as_old["apiVersion"] = "network.kubesphere.io/v1alpha1".into();
        let old: v1alpha1::Eip = serde_json::from_value(as_old).unwrap();
        assert_eq!(old.status.as_ref().unwrap().conditions, *conditions);
        let back: Eip = old.into();
        assert_eq!(back, eip);
    }

    #[test]
    fn an_undecodable_eip_is_salvaged_as_a_disabled_pool_keeping_its_holders() {
        let raw = serde_json::json!({
            "apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip",
            "metadata": {"name": "odd", "resourceVersion": "4", "finalizers": ["f"]},
            "spec": {"address": "192.0.2.1-192.0.2.9", "protocol": "vip", "interface": "eth0", "priority": "high",
                     "namespaces": "not-a-list"},
            "status": {"used": {"192.0.2.1": "ns/a"}, "usage": "one"}
        });
        let crate::Decoded::Undecodable(u) = crate::Decoded::<Eip>::from_value(raw) else { panic!("decoded") };
        let eip = salvaged(&u);
        assert_eq!(eip.metadata, u.meta);
        assert_eq!(eip.metadata.finalizers, Some(vec!["f".to_string()]));
        assert_eq!(eip.spec.address, "192.0.2.1-192.0.2.9");
        assert_eq!((eip.spec.protocol, eip.spec.interface.as_deref()), (Some(EipProtocol::Vip), Some("eth0")));
        assert_eq!((eip.spec.disable, eip.spec.priority), (Some(true), None));
        assert_eq!(eip.spec.undecodable.as_deref(), Some(&*u));
        let written = serde_json::to_value(&eip).unwrap();
        assert!(written["spec"].get("undecodable").is_none(), "never written: {written}");
        assert_eq!(eip.status.unwrap().used.get("192.0.2.1").map(String::as_str), Some("ns/a"));

        let nothing = serde_json::json!({"metadata": {"name": "bare"}, "spec": {"address": 7, "protocol": "ospf"}});
        let crate::Decoded::Undecodable(u) = crate::Decoded::<Eip>::from_value(nothing) else { panic!("decoded") };
        let eip = salvaged(&u);
        assert_eq!((eip.spec.address.as_str(), eip.spec.protocol, eip.status), ("", None, None));
    }

    #[test]
    fn priority_is_bounded_by_the_schema_in_both_versions() {
        let crd = try_crd().unwrap();
        for v in &crd.spec.versions {
            let root = v.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()).unwrap();
            let props = |s: &JSONSchemaProps, name: &str| s.properties.as_ref().unwrap()[name].clone();
            let priority = props(&props(root, "spec"), "priority");
            assert_eq!(priority.minimum, Some(PRIORITY_MIN as f64), "version {}", v.name);
            assert_eq!(priority.maximum, Some(PRIORITY_MAX as f64), "version {}", v.name);
            for field in ["usage", "poolSize"] {
                assert_eq!(props(&props(root, "status"), field).minimum, Some(0.0), "version {} {field}", v.name);
            }
        }
    }

    #[test]
    fn v1alpha1_converts_to_v1alpha2_keeping_fields() {
        let old: v1alpha1::Eip = serde_yaml::from_str(
            "apiVersion: network.kubesphere.io/v1alpha1\nkind: Eip\nmetadata: {name: old}\n\
             spec: {address: 10.0.0.1-10.0.0.9, protocol: layer2, interface: eth0}\n",
        )
        .unwrap();
        let new: Eip = old.into();
        assert_eq!(new.metadata.name.as_deref(), Some("old"));
        assert_eq!(new.spec.protocol, Some(EipProtocol::Layer2));
        assert_eq!(new.spec.interface.as_deref(), Some("eth0"));
        let yaml = serde_yaml::to_string(&new).unwrap();
        assert!(yaml.contains("apiVersion: network.kubesphere.io/v1alpha2"), "{yaml}");
    }
}
