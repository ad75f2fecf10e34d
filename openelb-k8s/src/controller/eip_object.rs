//! The Eip as the controller reads and writes it: the CRD's spec and status plus `status.conditions`.
//!
//! [`crate::crd::EipStatus`] has no `conditions` field, and a typed object drops what its type does not name,
//! so a controller working on [`Eip`] could neither see the conditions it wrote nor keep them when it replaces
//! the status. This type carries them next to the CRD's own status fields. Until the CRD's schema lists
//! `status.conditions` the API server prunes them on write, and the controller only ever sees them empty.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::core::ClusterResourceScope;
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Serialize};

use crate::crd::{Eip, EipSpec, EipStatus};

/// `status` as the controller writes it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct EipObjectStatus {
    #[serde(flatten)]
    pub pool: EipStatus,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// An `Eip` of the storage version (`network.kubesphere.io/v1alpha2`), conditions included.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct EipObject {
    #[serde(rename = "apiVersion", default = "api_version")]
    pub api_version: String,
    #[serde(default = "kind")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: EipSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<EipObjectStatus>,
}

fn api_version() -> String {
    Eip::api_version(&()).into_owned()
}

fn kind() -> String {
    Eip::kind(&()).into_owned()
}

impl Resource for EipObject {
    type DynamicType = ();
    type Scope = ClusterResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Eip::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        Eip::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        Eip::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        Eip::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl EipObject {
    /// The typed CRD object the conversions work on (conditions left out).
    pub fn to_eip(&self) -> Eip {
        let mut eip = Eip::new(&self.name_any(), self.spec.clone());
        eip.metadata = self.metadata.clone();
        eip.status = self.status.as_ref().map(|s| s.pool.clone());
        eip
    }

    pub fn pool_status(&self) -> Option<&EipStatus> {
        self.status.as_ref().map(|s| &s.pool)
    }

    pub fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| s.conditions.as_slice())
    }

    pub fn is_deleting(&self) -> bool {
        self.metadata.deletion_timestamp.is_some()
    }

    pub fn has_finalizer(&self, finalizer: &str) -> bool {
        self.metadata.finalizers.iter().flatten().any(|f| f == finalizer)
    }
}

impl From<Eip> for EipObject {
    fn from(eip: Eip) -> Self {
        EipObject {
            api_version: api_version(),
            kind: kind(),
            metadata: eip.metadata,
            spec: eip.spec,
            status: eip.status.map(|pool| EipObjectStatus { pool, conditions: Vec::new() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WITH_CONDITIONS: &str = r#"{
        "apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip",
        "metadata": {"name": "pool", "resourceVersion": "12"},
        "spec": {"address": "192.0.2.1-192.0.2.9", "protocol": "vip"},
        "status": {"poolSize": 9, "usage": 1, "used": {"192.0.2.1": "ns/a"}, "firstIP": "192.0.2.1",
                   "lastIP": "192.0.2.9", "v4": true,
                   "conditions": [{"type": "Ready", "status": "True", "reason": "Available", "message": "m",
                                   "lastTransitionTime": "2026-01-02T03:04:05Z", "observedGeneration": 2}]}
    }"#;

    #[test]
    fn conditions_survive_a_round_trip_next_to_the_crd_status() {
        let eip: EipObject = serde_json::from_str(WITH_CONDITIONS).unwrap();
        assert_eq!(eip.conditions().len(), 1);
        assert_eq!(eip.conditions()[0].reason, "Available");
        let pool = eip.pool_status().unwrap();
        assert_eq!((pool.pool_size, pool.usage, pool.v4), (9, 1, true));
        let again: serde_json::Value = serde_json::to_value(&eip).unwrap();
        let original: serde_json::Value = serde_json::from_str(WITH_CONDITIONS).unwrap();
        assert_eq!(again, original);
    }

    #[test]
    fn converts_to_the_crd_type_without_conditions() {
        let object: EipObject = serde_json::from_str(WITH_CONDITIONS).unwrap();
        let eip = object.to_eip();
        assert_eq!(eip.metadata.resource_version.as_deref(), Some("12"));
        assert_eq!(eip.status.as_ref().map(|s| s.usage), Some(1));
        let back = EipObject::from(eip);
        assert!(back.conditions().is_empty());
        assert_eq!(back.api_version, "network.kubesphere.io/v1alpha2");
        assert_eq!(back.kind, "Eip");
    }
}
