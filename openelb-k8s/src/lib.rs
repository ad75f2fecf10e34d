//! What the openelb-rs programs share on the Kubernetes side: the Eip CRD, conversion of API objects into core
//! values, manifest loading, the snapshot VIP mode plans from, the controller's decisions applied offline
//! ([`offline`]), and (by feature) the client builder, the `/metrics` and health endpoints and the
//! log setup. The programs themselves are the crates beside it: `openelb-controller`, `openelb-webhook`,
//! `openelb-speaker` (docs/crates.md).

pub mod background;
#[cfg(feature = "client")]
pub mod client;
pub mod convert;
pub mod crd;
pub mod decoded;
pub mod duration;
pub mod event;
pub mod heap;
#[cfg(feature = "logging")]
pub mod logging;
pub mod manifest;
pub mod offline;
#[cfg(feature = "serve")]
pub mod serve;
pub mod snapshot;
pub mod vrrp;

pub use crd::{Eip, EipSpec, EipStatus};
pub use decoded::{Decoded, Undecodable};
pub use manifest::{ManifestError, ManifestErrorKind, Manifests, ObjectKind, Origin, to_cluster};
