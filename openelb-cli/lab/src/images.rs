//! The container images `scripts/image.sh` builds and saves for the cluster lab's containerds: their names as
//! containerd knows them and the archives `ctr -n k8s.io images import` loads.

use std::path::PathBuf;

/// Where `scripts/image.sh` saves the archives unless [`ENV_DIR`] says otherwise.
pub const DIR: &str = "/var/cache/openelb-images";
/// Overrides [`DIR`], for the script and for the lab alike.
pub const ENV_DIR: &str = "OPENELB_IMAGE_DIR";

/// One image built by `scripts/image.sh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Image {
    /// The name containerd stores it under; a Pod's `image:` normalises to it.
    pub name: &'static str,
    /// Its archive's file name in the image directory.
    pub archive: &'static str,
}

/// openelb-controller, openelb-speaker and openelb-cli: deploy/'s `image: openelb-rs:0.1.0`.
pub const OPENELB: Image = Image { name: "docker.io/library/openelb-rs:0.1.0", archive: "openelb-rs_0.1.0.tar" };
/// The seed's `luksa/kubia`: `You've hit <pod name>` on 8080 (`openelb-cli lab pod-http`).
pub const KUBIA: Image = Image { name: "docker.io/library/kubia-lab:1", archive: "kubia-lab_1.tar" };
/// containerd's `sandbox_image`.
pub const PAUSE: Image = Image { name: "localhost/pause:lab", archive: "pause_lab.tar" };
pub const ALL: [Image; 3] = [OPENELB, KUBIA, PAUSE];

/// The image directory: [`ENV_DIR`], else [`DIR`].
pub fn dir() -> PathBuf {
    std::env::var_os(ENV_DIR).filter(|d| !d.is_empty()).map(PathBuf::from).unwrap_or_else(|| DIR.into())
}

impl Image {
    /// Its archive in [`dir`].
    pub fn archive_path(self) -> PathBuf {
        dir().join(self.archive)
    }
}
