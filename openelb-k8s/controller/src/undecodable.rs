//! What the controller does with watched objects that do not decode (see [`openelb_k8s::decoded`]): each
//! distinct error is logged once, with the object, field and value, and counted in
//! `openelb_objects_undecodable_total{kind}`. The Eip cache keeps such an Eip as far as it reads
//! ([`crd::salvaged`]: a disabled pool, so its Services keep their addresses, nobody gets a new one from it, and
//! its conditions say why); the Namespace cache leaves such a Namespace out; the Service reconcile leaves such a
//! Service as it is.

use std::collections::BTreeMap;

use futures::{Stream, StreamExt, future};
use kube::Resource;
use kube::runtime::watcher::{self, Event};
use openelb_k8s::crd::{self, Eip};
use openelb_k8s::decoded::{Decoded, Undecodable};
use prometheus_client::metrics::counter::Counter;

/// Reports the undecodable objects of one kind: once per object and distinct error.
#[derive(Debug)]
pub struct Reporter {
    kind: &'static str,
    counter: Counter,
    /// What happens to such an object, for the log line.
    consequence: &'static str,
    reported: BTreeMap<String, String>,
}

impl Reporter {
    pub fn new(kind: &'static str, counter: Counter, consequence: &'static str) -> Self {
        Reporter { kind, counter, consequence, reported: BTreeMap::new() }
    }

    /// Logs and counts `u`, unless this error of this object was reported already.
    pub fn bad(&mut self, u: &Undecodable) {
        let detail = u.to_string();
        if self.reported.get(&u.key()) != Some(&detail) {
            tracing::warn!(kind = self.kind, object = %u.key(), "cannot decode: {detail}; {}", self.consequence);
            self.counter.inc();
            self.reported.insert(u.key(), detail);
        }
    }

    /// The object `key` reads again (or is gone).
    pub fn good(&mut self, key: &str) {
        if self.reported.remove(key).is_some() {
            tracing::info!(kind = self.kind, object = %key, "decodes again");
        }
    }
}

/// `namespace/name`, or `name`.
fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    let name = meta.name.as_deref().unwrap_or_default();
    match meta.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// An object of `K` with only the metadata of `u`: what removes it from a cache.
fn placeholder<K: Resource + Default>(u: &Undecodable) -> K {
    let mut k = K::default();
    *k.meta_mut() = u.meta.clone();
    k
}

/// One watch event of `Decoded<K>` as an event of `K`. An object that does not decode is reported and replaced
/// by `salvage(u)`, or, when that is `None`, left out: an update that made it unreadable removes the copy a
/// cache has.
fn typed_event<K: Resource + Default>(
    event: Event<Decoded<K>>,
    reporter: &mut Reporter,
    salvage: &impl Fn(&Undecodable) -> Option<K>,
) -> Option<Event<K>> {
    let mut read = |d: Decoded<K>| match d {
        Decoded::Ok(k) => {
            reporter.good(&key_of(k.meta()));
            Ok(k)
        }
        Decoded::Undecodable(u) => {
            reporter.bad(&u);
            salvage(&u).ok_or(u)
        }
    };
    match event {
        Event::Init => Some(Event::Init),
        Event::InitDone => Some(Event::InitDone),
        Event::InitApply(d) => read(d).ok().map(Event::InitApply),
        Event::Apply(d) => Some(match read(d) {
            Ok(k) => Event::Apply(k),
            Err(u) => Event::Delete(placeholder(&u)),
        }),
        Event::Delete(d) => {
            let k = match d {
                Decoded::Ok(k) => k,
                Decoded::Undecodable(u) => salvage(&u).unwrap_or_else(|| placeholder(&u)),
            };
            reporter.good(&key_of(k.meta()));
            Some(Event::Delete(k))
        }
    }
}

/// The events of a watch of `Decoded<K>` as events of `K` (see `typed_event`).
pub fn typed<K, S>(
    events: S,
    mut reporter: Reporter,
    salvage: impl Fn(&Undecodable) -> Option<K>,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>>
where
    K: Resource + Default,
    S: Stream<Item = Result<Event<Decoded<K>>, watcher::Error>>,
{
    events.filter_map(move |item| {
        let out = match item {
            Ok(event) => typed_event(event, &mut reporter, &salvage).map(Ok),
            Err(e) => Some(Err(e)),
        };
        future::ready(out)
    })
}

/// [`crd::salvaged`], for [`typed`].
pub fn salvage_eip(u: &Undecodable) -> Option<Eip> {
    Some(crd::salvaged(u))
}

/// Leaves every undecodable object out, for [`typed`].
pub fn leave_out<K>(_: &Undecodable) -> Option<K> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1 as corev1;
    use serde_json::json;

    fn decoded<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> Decoded<K> {
        Decoded::from_value(v)
    }

    fn reporter(counter: &Counter) -> Reporter {
        Reporter::new("Namespace", counter.clone(), "left out")
    }

    #[test]
    fn an_object_that_turns_undecodable_leaves_the_cache_and_is_counted_once() {
        let counter = Counter::default();
        let mut r = reporter(&counter);
        let good = decoded::<corev1::Namespace>(json!({"metadata": {"name": "ns", "labels": {"a": "b"}}}));
        let bad = decoded::<corev1::Namespace>(json!({"metadata": {"name": "ns", "labels": {"a": 5}}}));
        assert!(
            matches!(typed_event(Event::Apply(good), &mut r, &leave_out), Some(Event::Apply(n)) if n.metadata.labels.is_some())
        );
        let Some(Event::Delete(gone)) = typed_event(Event::Apply(bad.clone()), &mut r, &leave_out) else { panic!() };
        assert_eq!(gone.metadata.name.as_deref(), Some("ns"));
        assert!(typed_event(Event::InitApply(bad.clone()), &mut r, &leave_out).is_none(), "not listed");
        assert_eq!(counter.get(), 1, "the same error is counted once");
        assert!(matches!(typed_event(Event::Delete(bad), &mut r, &leave_out), Some(Event::Delete(_))));
        assert!(r.reported.is_empty(), "forgotten once deleted");
    }

    #[test]
    fn an_undecodable_eip_is_kept_as_far_as_it_reads() {
        let counter = Counter::default();
        let mut r = Reporter::new("Eip", counter.clone(), "read as disabled");
        let bad = decoded::<Eip>(json!({"metadata": {"name": "odd"},
                                        "spec": {"address": "192.0.2.1-192.0.2.9", "priority": "high"}}));
        let Some(Event::Apply(eip)) = typed_event(Event::Apply(bad), &mut r, &salvage_eip) else { panic!() };
        assert_eq!((eip.spec.address.as_str(), eip.spec.disable), ("192.0.2.1-192.0.2.9", Some(true)));
        assert_eq!(eip.spec.undecodable.as_ref().map(|u| u.field.as_str()), Some("spec.priority"));
        assert_eq!(counter.get(), 1);
        let fixed = decoded::<Eip>(json!({"metadata": {"name": "odd"}, "spec": {"address": "192.0.2.1-192.0.2.9"}}));
        let Some(Event::Apply(eip)) = typed_event(Event::Apply(fixed), &mut r, &salvage_eip) else { panic!() };
        assert!(eip.spec.undecodable.is_none() && eip.spec.disable.is_none());
        assert!(r.reported.is_empty());
    }
}
