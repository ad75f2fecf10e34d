//! A watch of one kind kept in a reflector cache: the controller's process-wide caches (Eips, Namespaces) and
//! the VRID publisher's per-term ones are all made here.

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use openelb_k8s::decoded::{Decoded, Undecodable};
use tokio::task::JoinHandle;

use super::lean::Lean;
use super::undecodable::{self, Reporter};

/// What a kind needs to be watched and cached.
pub trait Mirrored:
    Resource<DynamicType = ()>
    + Lean
    + Default
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<K> Mirrored for K where
    K: Resource<DynamicType = ()>
        + Lean
        + Default
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// Mirrors what `api` lists under `config` into `writer`'s cache, each object decoded on its own and kept
/// [`Lean`]: one that does not decode is reported and replaced by `salvage(u)` or left out ([`undecodable::typed`]). `seen` hears of
/// every event of the watch: `Ok` once the cache took it in, the watch's error otherwise (the watch goes on,
/// with backoff). The returned task keeps the cache current until aborted.
pub fn mirror<K: Mirrored>(
    api: Api<Decoded<K>>,
    config: watcher::Config,
    writer: reflector::store::Writer<K>,
    reporter: Reporter,
    salvage: fn(&Undecodable) -> Option<K>,
    mut seen: impl FnMut(Result<(), watcher::Error>) + Send + 'static,
) -> (Store<K>, JoinHandle<()>) {
    let store = writer.as_reader();
    let decoded = watcher(api, config).default_backoff();
    let lean = undecodable::typed(decoded, reporter, salvage).modify(K::lean);
    let stream = reflector::reflector(writer, lean);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            seen(event.map(|_| ()));
        }
    });
    (store, task)
}

/// Aborts its tasks however their owner ends.
pub struct Tasks(pub Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
