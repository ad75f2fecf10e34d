//! VRRP state shared through the API (docs/vrrp.md): what the other speakers publish in their Leases (their
//! VRRP source addresses, which make them known peers) and what the controller publishes in its ConfigMap (the
//! VRID assignment to follow, the VRIDs foreign routers use). [`watch_shared`] keeps a [`SharedVrrp`] current
//! from two watches; the driver reads it through a `tokio::sync::watch` channel, which always holds the
//! latest value, so nothing published before the loop starts is lost.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use openelb_k8s::vrrp::{CONFIGMAP_NAME, ForeignSeen, LEASE_LABEL, LEASE_LABEL_VALUE, Published, SpeakerLease};
use tokio::sync::watch;

/// The API's VRRP state as the driver plans from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SharedVrrp {
    /// Both watches have listed once. The first plan waits for it: it must follow the published assignment,
    /// or a restarted speaker would pick VRIDs of its own.
    pub synced: bool,
    /// Every speaker's Lease that could be read, this node's included, by node name.
    pub leases: Vec<SpeakerLease>,
    /// The controller's ConfigMap, when it exists and can be read.
    pub published: Option<Arc<Published>>,
}

/// What this node publishes in its Lease: the driver updates it, the Lease writer ([`super::lease`]) renews it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalVrrp {
    /// The addresses this node sends VRRP adverts from (sorted).
    pub sources: Vec<IpAddr>,
    /// The VRIDs its agent sees foreign routers use (sorted).
    pub foreign: Vec<ForeignSeen>,
}

impl LocalVrrp {
    /// What a change must be written for at once; the times of the foreign VRIDs wait for the next renewal.
    pub fn shape(&self) -> (Vec<IpAddr>, Vec<&openelb_core::vrrp::plan::ForeignVrid>) {
        (self.sources.clone(), self.foreign.iter().map(|f| &f.vrid).collect())
    }
}

/// One event of either watch.
enum Msg {
    Lease(Result<watcher::Event<Lease>, watcher::Error>),
    Config(Result<watcher::Event<ConfigMap>, watcher::Error>),
}

/// The two caches, keyed by object name, with reflector semantics (a listing replaces them once complete).
#[derive(Default)]
struct State {
    leases: BTreeMap<String, SpeakerLease>,
    leases_buffer: Option<BTreeMap<String, SpeakerLease>>,
    leases_synced: bool,
    published: Option<Arc<Published>>,
    config_buffer: Option<Option<Arc<Published>>>,
    config_synced: bool,
    /// Per object: the last problem logged, so a bad object is logged once per distinct message.
    problems: BTreeMap<String, String>,
}

impl State {
    fn shared(&self) -> SharedVrrp {
        SharedVrrp {
            synced: self.leases_synced && self.config_synced,
            leases: self.leases.values().cloned().collect(),
            published: self.published.clone(),
        }
    }

    fn problem(&mut self, object: String, message: String) {
        if self.problems.get(&object) != Some(&message) {
            tracing::warn!(%object, "{message}");
            self.problems.insert(object, message);
        }
    }

    fn lease(&mut self, lease: &Lease) -> Option<(String, SpeakerLease)> {
        let name = lease.meta().name.clone().unwrap_or_default();
        match SpeakerLease::from_lease(lease) {
            Ok(Some(l)) => {
                self.problems.remove(&name);
                Some((name, l))
            }
            Ok(None) => None,
            Err(e) => {
                self.problem(name, format!("ignoring speaker Lease: {e}"));
                None
            }
        }
    }

    fn config(&mut self, cm: &ConfigMap) -> Option<Arc<Published>> {
        match Published::from_configmap(cm) {
            Ok(p) => {
                self.problems.remove(CONFIGMAP_NAME);
                p.map(Arc::new)
            }
            Err(e) => {
                self.problem(
                    CONFIGMAP_NAME.to_string(),
                    format!("ignoring the published VRID assignment, planning VRIDs locally: {e}"),
                );
                None
            }
        }
    }

    fn apply(&mut self, msg: Msg) -> Result<(), (&'static str, watcher::Error)> {
        match msg {
            Msg::Lease(r) => match r.map_err(|e| ("speaker Leases", e))? {
                watcher::Event::Init => self.leases_buffer = Some(BTreeMap::new()),
                watcher::Event::InitApply(l) => {
                    if let Some((k, v)) = self.lease(&l) {
                        self.leases_buffer.get_or_insert_with(BTreeMap::new).insert(k, v);
                    }
                }
                watcher::Event::InitDone => {
                    self.leases = self.leases_buffer.take().unwrap_or_default();
                    self.leases_synced = true;
                }
                watcher::Event::Apply(l) => {
                    let name = l.meta().name.clone().unwrap_or_default();
                    match self.lease(&l) {
                        Some((k, v)) => self.leases.insert(k, v),
                        None => self.leases.remove(&name),
                    };
                }
                watcher::Event::Delete(l) => {
                    let name = l.meta().name.clone().unwrap_or_default();
                    self.problems.remove(&name);
                    self.leases.remove(&name);
                }
            },
            Msg::Config(r) => match r.map_err(|e| ("the VRRP ConfigMap", e))? {
                watcher::Event::Init => self.config_buffer = Some(None),
                watcher::Event::InitApply(cm) => self.config_buffer = Some(self.config(&cm)),
                watcher::Event::InitDone => {
                    self.published = self.config_buffer.take().flatten();
                    self.config_synced = true;
                }
                watcher::Event::Apply(cm) => self.published = self.config(&cm),
                watcher::Event::Delete(_) => {
                    self.problems.remove(CONFIGMAP_NAME);
                    self.published = None;
                }
            },
        }
        Ok(())
    }
}

/// Keeps `tx` current with the speaker Leases and the controller's ConfigMap in `namespace` until `shutdown`
/// (or until nobody reads `tx`). Watches retry with kube-runtime's back-off; a refusal or loss is logged once
/// per distinct message, and the last state stays meanwhile.
pub async fn watch_shared(
    client: Client,
    namespace: String,
    tx: watch::Sender<SharedVrrp>,
    shutdown: impl Future<Output = ()>,
) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
    let configs: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let lease_config = watcher::Config::default().labels(&format!("{LEASE_LABEL}={LEASE_LABEL_VALUE}"));
    // A name field selector: RBAC can then grant this one ConfigMap by name (list/watch carry the name).
    let config_config = watcher::Config::default().fields(&format!("metadata.name={CONFIGMAP_NAME}"));
    let lease_stream = watcher(leases, lease_config).default_backoff().map(Msg::Lease).boxed();
    let config_stream = watcher(configs, config_config).default_backoff().map(Msg::Config).boxed();
    let mut streams = futures::stream::select(lease_stream, config_stream);
    let mut state = State::default();
    let mut errors: BTreeMap<&'static str, String> = BTreeMap::new();
    tokio::pin!(shutdown);
    loop {
        let msg = tokio::select! {
            () = &mut shutdown => return,
            () = tx.closed() => return,
            m = streams.next() => match m {
                Some(m) => m,
                None => return,
            },
        };
        match state.apply(msg) {
            Ok(()) => {
                let shared = state.shared();
                tx.send_if_modified(|old| {
                    let changed = *old != shared;
                    if changed {
                        *old = shared;
                    }
                    changed
                });
            }
            Err((what, e)) => {
                let message = e.to_string();
                if errors.get(what) != Some(&message) {
                    tracing::warn!(
                        namespace = %namespace,
                        "watching {what}: {message}; retrying with back-off (VRRP keeps the last known peers and \
                         assignment)"
                    );
                    errors.insert(what, message);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use openelb_k8s::vrrp::SpeakerLease;

    use super::*;

    fn lease(node: &str, source: &str) -> Lease {
        let l = SpeakerLease { node: node.into(), sources: vec![source.parse().unwrap()], ..Default::default() };
        l.to_lease("openelb-system", SystemTime::now(), Duration::from_secs(60))
    }

    #[test]
    fn nothing_is_synced_before_both_listings_and_a_relist_replaces_the_leases() {
        let mut s = State::default();
        for m in [
            Msg::Lease(Ok(watcher::Event::Init)),
            Msg::Lease(Ok(watcher::Event::InitApply(lease("a", "fe80::a")))),
            Msg::Lease(Ok(watcher::Event::InitDone)),
        ] {
            s.apply(m).ok();
        }
        assert!(!s.shared().synced, "the ConfigMap was not listed yet");
        s.apply(Msg::Config(Ok(watcher::Event::Init))).ok();
        s.apply(Msg::Config(Ok(watcher::Event::InitDone))).ok();
        let shared = s.shared();
        assert!(shared.synced && shared.published.is_none());
        assert_eq!(shared.leases.len(), 1);

        s.apply(Msg::Lease(Ok(watcher::Event::Init))).ok();
        s.apply(Msg::Lease(Ok(watcher::Event::InitApply(lease("b", "fe80::b"))))).ok();
        assert_eq!(s.shared().leases[0].node, "a", "the old listing serves until the new one is complete");
        s.apply(Msg::Lease(Ok(watcher::Event::InitDone))).ok();
        let nodes: Vec<String> = s.shared().leases.iter().map(|l| l.node.clone()).collect();
        assert_eq!(nodes, ["b"]);
    }

    #[test]
    fn an_unreadable_published_state_counts_as_none() {
        let mut s = State::default();
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(CONFIGMAP_NAME.into());
        cm.data = Some([(openelb_k8s::vrrp::CONFIGMAP_KEY.to_string(), "{\"version\":9}".to_string())].into());
        s.apply(Msg::Config(Ok(watcher::Event::Apply(cm)))).ok();
        assert!(s.shared().published.is_none());
        assert!(s.problems.get(CONFIGMAP_NAME).is_some_and(|m| m.contains("version 9")));
    }
}
