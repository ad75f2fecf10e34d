//! Facade over the openelb-rs libraries, so examples, benchmarks and integration tests can use one crate name.
pub use openelb_core as core;
pub use openelb_k8s as k8s;
pub use openelb_net as net;
