//! The manifests a simulation starts from, read into core values.

use std::collections::BTreeSet;
use std::path::PathBuf;

use openelb_core::{Cluster, ServiceKey};
use openelb_k8s::convert;
use openelb_k8s::manifest::{ManifestError, Manifests};

use crate::world::{DeploymentRef, World};

pub struct Loaded {
    pub manifests: Manifests,
    pub cluster: Cluster,
    pub deployments: Vec<DeploymentRef>,
    /// Services whose Endpoints or EndpointSlices the manifests hold.
    pub explicit_endpoints: BTreeSet<ServiceKey>,
    pub warnings: Vec<String>,
}

impl Loaded {
    /// Reads manifest files and directories.
    pub fn load(paths: &[PathBuf]) -> Result<Self, ManifestError> {
        Self::from_manifests(Manifests::load_paths(paths)?)
    }

    pub fn from_manifests(manifests: Manifests) -> Result<Self, ManifestError> {
        let cluster = manifests.to_cluster()?;
        let warnings = manifests
            .warnings
            .iter()
            // Scenario files may sit beside the manifests (examples/vip-mode does this); they are not objects.
            .filter(|w| !w.contains("kind Scenario") && !w.contains("kind \"Scenario\""))
            .cloned()
            .collect();
        let deployments = manifests
            .deployments
            .iter()
            .map(|d| DeploymentRef {
                namespace: d.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
                name: d.metadata.name.clone().unwrap_or_default(),
                selector: d
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.match_labels.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            })
            .collect();
        let explicit_endpoints = manifests
            .endpoints
            .iter()
            .map(|e| &e.metadata)
            .map(|m| ServiceKey::new(convert::namespace_of(m), m.name.clone().unwrap_or_default()))
            .chain(manifests.endpoint_slices.iter().filter_map(|s| {
                let svc = s.metadata.labels.as_ref()?.get(convert::LABEL_SERVICE_NAME)?;
                Some(ServiceKey::new(convert::namespace_of(&s.metadata), svc.clone()))
            }))
            .collect();
        Ok(Loaded { manifests, cluster, deployments, explicit_endpoints, warnings })
    }

    /// The world these manifests describe, before the controller has run.
    pub fn world(&self) -> World {
        World::new(self.cluster.clone(), self.deployments.clone(), self.explicit_endpoints.clone())
    }

    /// [`Loaded::world`] without copying the cluster, and the manifests it came from (to print them back
    /// updated, or to drop before allocating when they are not needed).
    pub fn into_world(self) -> (Manifests, World) {
        (self.manifests, World::new(self.cluster, self.deployments, self.explicit_endpoints))
    }
}
