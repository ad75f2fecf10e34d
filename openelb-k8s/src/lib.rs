//! Kubernetes side of openelb-rs: the Eip CRD, conversion of API objects into core values, manifest loading.
