//! Writing the controller's decisions back into the manifests' objects, for `allocate -o yaml|json`.

use anyhow::Result;
use openelb_core::ipam::ServicePatch;
use openelb_core::{FINALIZER_SERVICE, LABEL_EIP_POOL, ServiceKey};
use openelb_k8s::convert;
use openelb_sim::{Loaded, World};

/// The manifests' Services and Eips with what the controller would have written into them.
pub fn updated_objects(loaded: &Loaded, world: &World) -> Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for eip in &loaded.manifests.eips {
        let mut eip = eip.clone();
        let name = eip.metadata.name.clone().unwrap_or_default();
        if let Some(status) = world.ipam.pool_status(&name) {
            convert::apply_pool_status(&mut eip, &status);
        }
        out.push(serde_json::to_value(&eip)?);
    }
    for svc in &loaded.manifests.services {
        let mut svc = svc.clone();
        let key = ServiceKey::new(
            svc.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            svc.metadata.name.clone().unwrap_or_default(),
        );
        if let Some(now) = world.cluster.services.iter().find(|s| s.key() == key) {
            let patch = ServicePatch {
                ingress: now.ingress.clone(),
                pool_label: now.labels.get(LABEL_EIP_POOL).cloned(),
                finalizer: now.finalizers.iter().any(|f| f == FINALIZER_SERVICE),
            };
            convert::apply_service_patch(&mut svc, &patch);
        }
        let mut v = serde_json::to_value(&svc)?;
        if let Some(o) = v.as_object_mut() {
            o.entry("apiVersion").or_insert("v1".into());
            o.entry("kind").or_insert("Service".into());
        }
        out.push(v);
    }
    Ok(out)
}
