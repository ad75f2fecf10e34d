//! A watch of one kind kept in a reflector cache: the controller's process-wide caches (Eips, Namespaces) and
//! the VRID publisher's per-term ones are all made here.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use openelb_k8s::decoded::{Decoded, Undecodable};
use tokio::sync::broadcast;
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
/// with backoff). `changes`, when given, hears of every object the watch applied or deleted, once the cache
/// took it in ([`Changes`]). The returned task keeps the cache current until aborted.
pub fn mirror<K: Mirrored>(
    api: Api<Decoded<K>>,
    config: watcher::Config,
    writer: reflector::store::Writer<K>,
    reporter: Reporter,
    salvage: fn(&Undecodable) -> Option<K>,
    changes: Option<Changes<K>>,
    mut seen: impl FnMut(Result<(), watcher::Error>) + Send + 'static,
) -> (Store<K>, JoinHandle<()>) {
    let store = writer.as_reader();
    let decoded = watcher(api, config).default_backoff();
    let lean = undecodable::typed(decoded, reporter, salvage).modify(K::lean);
    let stream = reflector::reflector(writer, lean);
    let cache = store.clone();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let (Some(changes), Ok(event)) = (&changes, &event) {
                changes.publish(event, &cache);
            }
            seen(event.map(|_| ()));
        }
    });
    (store, task)
}

/// Objects changed in one cache, fanned out to every controller that triggers on them, so a kind is watched
/// and held once per process. Unlike kube's shared streams it also passes deletions on, and a subscriber that
/// falls behind is handed every cached object again instead of stalling the watch.
pub struct Changes<K: Mirrored> {
    tx: broadcast::Sender<Arc<K>>,
}

impl<K: Mirrored> Clone for Changes<K> {
    fn clone(&self) -> Self {
        Changes { tx: self.tx.clone() }
    }
}

/// Changes a subscriber may fall behind by before it is handed the whole cache again.
const CHANGES_BUFFER: usize = 256;

impl<K: Mirrored> Default for Changes<K> {
    fn default() -> Self {
        Changes { tx: broadcast::channel(CHANGES_BUFFER).0 }
    }
}

impl<K: Mirrored> Changes<K> {
    /// Passes on what `event` changed: an applied object as the cache holds it (shared, not copied), a deleted
    /// one as the watch last saw it, and, after a (re)listing, every cached object.
    fn publish(&self, event: &watcher::Event<K>, cache: &Store<K>) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let send = |obj: Arc<K>| {
            let _ = self.tx.send(obj);
        };
        match event {
            watcher::Event::Apply(obj) => {
                if let Some(cached) = cache.get(&ObjectRef::from_obj(obj)) {
                    send(cached);
                }
            }
            watcher::Event::Delete(obj) => send(Arc::new(obj.clone())),
            watcher::Event::InitDone => cache.state().into_iter().for_each(send),
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }

    /// Every object `cache` holds now, then every change from now on (with no gap between the two).
    pub fn subscribe(&self, cache: &Store<K>) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let rx = self.tx.subscribe();
        let now = futures::stream::iter(cache.state());
        let cache = cache.clone();
        let later = futures::stream::unfold(rx, move |mut rx| {
            let cache = cache.clone();
            async move {
                match rx.recv().await {
                    Ok(obj) => Some((vec![obj], rx)),
                    // Some changes were missed: hand over every object, which includes their outcome.
                    Err(broadcast::error::RecvError::Lagged(_)) => Some((cache.state(), rx)),
                    Err(broadcast::error::RecvError::Closed) => None,
                }
            }
        })
        .flat_map(futures::stream::iter);
        now.chain(later)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use kube::ResourceExt;
    use openelb_k8s::crd::Eip;

    fn eip(name: &str, version: &str) -> Eip {
        let mut e = Eip::default();
        e.metadata.name = Some(name.into());
        e.metadata.resource_version = Some(version.into());
        e
    }

    fn names(objs: &[Arc<Eip>]) -> Vec<String> {
        let mut n: Vec<String> =
            objs.iter().map(|e| format!("{}@{}", e.name_any(), e.resource_version().unwrap_or_default())).collect();
        n.sort();
        n
    }

    /// Applies `event` to the cache and publishes it, as the mirror's task does.
    fn feed(writer: &mut reflector::store::Writer<Eip>, changes: &Changes<Eip>, event: watcher::Event<Eip>) {
        writer.apply_watcher_event(&event);
        changes.publish(&event, &writer.as_reader());
    }

    #[tokio::test]
    async fn a_subscriber_gets_the_cache_then_every_apply_and_delete() {
        let mut writer = reflector::store::Writer::<Eip>::default();
        let changes = Changes::default();
        // Nobody listens yet: nothing is buffered.
        for event in [watcher::Event::Init, watcher::Event::InitApply(eip("a", "1")), watcher::Event::InitDone] {
            feed(&mut writer, &changes, event);
        }
        let mut sub = std::pin::pin!(changes.subscribe(&writer.as_reader()));
        assert_eq!(names(&[sub.next().await.unwrap()]), ["a@1"]);
        feed(&mut writer, &changes, watcher::Event::Apply(eip("b", "2")));
        feed(&mut writer, &changes, watcher::Event::Delete(eip("a", "3")));
        assert_eq!(names(&[sub.next().await.unwrap(), sub.next().await.unwrap()]), ["a@3", "b@2"]);
        // A relisting hands over every cached object again.
        for event in [watcher::Event::Init, watcher::Event::InitApply(eip("c", "4")), watcher::Event::InitDone] {
            feed(&mut writer, &changes, event);
        }
        assert_eq!(names(&[sub.next().await.unwrap()]), ["c@4"]);
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_gets_the_whole_cache() {
        let mut writer = reflector::store::Writer::<Eip>::default();
        let changes = Changes::default();
        let mut sub = std::pin::pin!(changes.subscribe(&writer.as_reader()));
        for i in 0..CHANGES_BUFFER + 10 {
            feed(&mut writer, &changes, watcher::Event::Apply(eip(&format!("e{}", i % 3), &i.to_string())));
        }
        let last = CHANGES_BUFFER + 9;
        let got: Vec<Arc<Eip>> = sub.by_ref().take(3).collect().await;
        // The missed changes are replaced by the cache as it is now: each Eip at its latest version.
        let mut want: Vec<String> = (last - 2..=last).map(|i| format!("e{}@{i}", i % 3)).collect();
        want.sort();
        assert_eq!(names(&got), want);
    }
}
