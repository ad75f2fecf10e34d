//! The controller's allocation engine over all pools: rebuilds allocations from `Eip.status.used`, decides per
//! Service (keep, assign, release, fail) and says what the Service and the Eips must look like afterwards.
//! It holds no state the API does not hold: dropping it and calling [`Ipam::new`] again gives the same answers.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::model::{Namespace, Pool, Service, ServiceKey};

/// What the Service must look like after a decision (desired values; the caller diffs and patches).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServicePatch {
    /// `status.loadBalancer.ingress[*].ip`.
    pub ingress: Vec<String>,
    /// Value of label `eip.openelb.kubesphere.io/v1alpha2`; `None` = label absent.
    pub pool_label: Option<String>,
    /// Whether finalizer `finalizer.lb.kubesphere.io/v1alpha1` is present.
    pub finalizer: bool,
}

impl ServicePatch {
    /// Applies the patch to a copy of the Service as the API server would store it.
    pub fn apply(&self, svc: &mut Service) {
        todo!("{svc:?}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// A Kubernetes Event to record on the Service (upstream reasons: `AssignIP`, `ReleaseIP`, `AssignIPFailed`...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub type_: EventType,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Not an OpenELB Service and nothing to release.
    NotOurs,
    /// Holds a valid address and keeps it.
    Kept { pool: String, ip: IpAddr },
    /// Got an address (possibly after releasing `released`).
    Assigned { pool: String, ip: IpAddr, released: Option<(String, IpAddr)> },
    /// Gave its address back and holds none.
    Released { pool: Option<String>, ip: Option<IpAddr>, reason: String },
    /// Wants an address and cannot get one; `released` is what it lost on the way, if anything.
    Failed { reason: String, released: Option<(String, IpAddr)> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub service: ServiceKey,
    pub change: Change,
    /// `None` when the Service must not be touched (not ours).
    pub patch: Option<ServicePatch>,
    pub events: Vec<Event>,
}

/// What `kubectl get eip -o yaml` shows under `status` for a pool.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PoolStatus {
    /// Exact size; [`PoolStatus::pool_size_i64`] is what fits the status field.
    pub pool_size: u128,
    pub usage: u128,
    pub occupied: bool,
    pub used: BTreeMap<String, String>,
    pub first_ip: Option<String>,
    pub last_ip: Option<String>,
    pub v4: bool,
}

impl PoolStatus {
    /// The status field is an integer: sizes beyond it saturate (the exact size stays in `pool_size`).
    pub fn pool_size_i64(&self) -> i64 {
        i64::try_from(self.pool_size).unwrap_or(i64::MAX)
    }
    pub fn usage_i64(&self) -> i64 {
        i64::try_from(self.usage).unwrap_or(i64::MAX)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Ipam {}

impl Ipam {
    /// Rebuilds every allocation from the pools' `status.used`. Entries that do not parse or lie outside their
    /// pool are dropped and reported in [`Ipam::warnings`].
    pub fn new(pools: &[Pool]) -> Self {
        todo!("{pools:?}")
    }

    /// Problems found while rebuilding (never fatal).
    pub fn warnings(&self) -> &[String] {
        todo!()
    }

    /// Decides for one Service. `namespace` is its Namespace object when known (for `namespaceSelector`).
    pub fn reconcile(&mut self, svc: &Service, namespace: Option<&Namespace>) -> Outcome {
        todo!("{svc:?}{namespace:?}")
    }

    /// Reconciles many Services in a deterministic order: those already holding an address first, then the rest
    /// by namespace and name, so the same input always gives the same addresses.
    pub fn reconcile_all(&mut self, services: &[Service], namespaces: &[Namespace]) -> Vec<Outcome> {
        todo!("{services:?}{namespaces:?}")
    }

    /// Adds or replaces a pool's spec; allocations inside it are kept.
    pub fn upsert_pool(&mut self, pool: Pool) {
        todo!("{pool:?}")
    }

    /// Removes a pool; returns the Services that held addresses in it (they must be reconciled again).
    pub fn remove_pool(&mut self, name: &str) -> Vec<ServiceKey> {
        todo!("{name}")
    }

    /// Current allocation of a Service.
    pub fn allocation(&self, key: &ServiceKey) -> Option<(&str, IpAddr)> {
        todo!("{key}")
    }

    pub fn pool_status(&self, name: &str) -> Option<PoolStatus> {
        todo!("{name}")
    }

    /// The pools as they are now, their `used` maps updated.
    pub fn pools(&self) -> Vec<Pool> {
        todo!()
    }
}
