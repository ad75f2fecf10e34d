//! Kubernetes side of openelb-rs: the Eip CRD, conversion of API objects into core values, manifest loading.

pub mod client;
pub mod controller;
pub mod convert;
pub mod crd;
pub mod manifest;
pub mod serve;
pub mod speaker;
pub mod webhook;

pub use crd::{Eip, EipSpec, EipStatus};
pub use manifest::{ManifestError, ManifestErrorKind, Manifests, ObjectKind, Origin, to_cluster};
