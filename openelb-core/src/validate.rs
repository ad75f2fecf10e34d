//! Checks on pools and Services that the CLI's `validate` and, later, the admission webhook share.
//! Every problem names the object, the field and the value.

use std::fmt;

use crate::model::{Cluster, Pool};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `Eip/<name>` or `Service/<ns>/<name>`.
    pub object: String,
    /// JSON path of the field, e.g. `spec.address`.
    pub field: String,
    pub value: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}={:?}: {}", self.object, self.field, self.value, self.message)
    }
}

/// Problems of a set of pools taken together (parse errors, overlaps, missing interface, several defaults).
pub fn validate_pools(pools: &[Pool]) -> Vec<Problem> {
    todo!("{pools:?}")
}

/// Problems of changing `old` into `new` (admission UPDATE): the new address must still contain every address
/// in `old.used`.
pub fn validate_pool_update(old: &Pool, new: &Pool) -> Vec<Problem> {
    todo!("{old:?}{new:?}")
}

/// Everything `openelb-cli validate` reports: pools, plus Services whose requests cannot be honoured
/// (bad `loadBalancerIP`, pin to a missing pool, pin against the protocol annotation).
pub fn validate_cluster(cluster: &Cluster) -> Vec<Problem> {
    todo!("{cluster:?}")
}
