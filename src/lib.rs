//! Facade over the openelb-rs libraries, so examples, benchmarks and integration tests can use one crate name.
pub use openelb_controller as controller;
pub use openelb_core as core;
pub use openelb_k8s as k8s;
pub use openelb_net as net;
pub use openelb_speaker as speaker;
pub use openelb_webhook as webhook;
