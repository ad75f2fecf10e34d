//! What a test needs from the machine. Tests that need a prerequisite carry a static
//! `#[ignore = "needs ..."]` (so a plain `cargo test` reports them as ignored, with the reason) and call
//! [`require`] first: run with `--include-ignored`, a missing prerequisite fails the test instead of letting
//! it pass having tested nothing.

use std::path::Path;

use crate::netns;

/// Where `scripts/kapi.sh install` keeps the apiserver binaries unless `KAPI_CACHE` says otherwise.
pub const KAPI_CACHE: &str = "/var/cache/openelb-kapi/v1.20.2";
/// The test apiserver's kubeconfig, set by `scripts/test.sh` after `scripts/kapi.sh start`.
pub const ENV_KUBECONFIG: &str = "KAPI_KUBECONFIG";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Root with working network namespaces (`ip netns add`).
    Root,
    /// What every namespace lab needs: [`Need::Root`] and the tools of [`crate::TOOLS`].
    Lab,
    /// A program on the PATH.
    Tool(&'static str),
    /// A running test apiserver: [`ENV_KUBECONFIG`] names its kubeconfig.
    Apiserver,
    /// The apiserver binaries installed (`scripts/kapi.sh install`), for tests that start their own.
    ApiserverBinaries,
    /// What a real cluster needs (`scripts/cluster.sh install`): every kube component built, containerd, runc,
    /// the CNI plugins and the images of `scripts/image.sh`.
    ClusterParts,
    /// The archives of every image `scripts/image.sh` builds ([`crate::images::ALL`]).
    Images,
}

impl Need {
    /// Why this run cannot meet the need, or `None` when it can.
    pub fn missing(self) -> Option<String> {
        match self {
            Need::Root => netns::unavailable(&[]),
            Need::Lab => netns::unavailable(crate::TOOLS),
            Need::Tool(t) => {
                netns::which(t).is_none().then(|| format!("`{t}` is not installed (scripts/test.sh installs it)"))
            }
            Need::Apiserver => kubeconfig().is_none().then(|| {
                format!(
                    "no test apiserver: {ENV_KUBECONFIG} is unset (scripts/test.sh starts one with scripts/kapi.sh)"
                )
            }),
            Need::ClusterParts => {
                let cache = crate::cluster::kube_cache();
                let mut missing: Vec<String> = crate::cluster::COMPONENTS
                    .iter()
                    .filter(|c| !cache.join(c).is_file())
                    .map(|c| format!("{c} in {}", cache.display()))
                    .collect();
                missing.extend(
                    ["containerd", "runc", "ctr", "nsenter"]
                        .iter()
                        .filter(|t| netns::which(t).is_none())
                        .map(|t| t.to_string()),
                );
                if !Path::new("/usr/lib/cni/bridge").is_file() {
                    missing.push("/usr/lib/cni/bridge (containernetworking-plugins)".into());
                }
                missing.extend(Need::Images.missing());
                (!missing.is_empty()).then(|| {
                    format!("cluster parts missing: {} (run `bash scripts/cluster.sh install`)", missing.join(", "))
                })
            }
            Need::ApiserverBinaries => {
                let cache = std::env::var("KAPI_CACHE").unwrap_or_else(|_| KAPI_CACHE.into());
                (!Path::new(&cache).join("kube-apiserver").is_file())
                    .then(|| format!("no kube-apiserver in {cache} (run `bash scripts/kapi.sh install`)"))
            }
            Need::Images => {
                let absent: Vec<String> = crate::images::ALL
                    .iter()
                    .map(|i| i.archive_path())
                    .filter(|p| !p.is_file())
                    .map(|p| p.display().to_string())
                    .collect();
                (!absent.is_empty())
                    .then(|| format!("no image archive {} (run `bash scripts/image.sh`)", absent.join(", ")))
            }
        }
    }
}

/// Panics naming every prerequisite this run lacks.
pub fn require(needs: &[Need]) {
    let missing: Vec<String> = needs.iter().filter_map(|n| n.missing()).collect();
    if !missing.is_empty() {
        panic!("prerequisite missing: {}", missing.join("; "));
    }
}

/// The test apiserver's kubeconfig path, if one runs.
pub fn kubeconfig() -> Option<String> {
    std::env::var(ENV_KUBECONFIG).ok().filter(|s| !s.is_empty())
}

/// The test apiserver's kubeconfig; panics (like [`require`]) without one.
pub fn require_kubeconfig() -> String {
    require(&[Need::Apiserver]);
    kubeconfig().unwrap_or_default()
}
