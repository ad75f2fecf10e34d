//! API objects decoded one at a time. kube-runtime decodes a list page into typed objects all at once, so a
//! single object that does not fit our types (a value past what the CRD's schema enforced, an object written
//! under an older or another project's CRD) fails the whole page, and a watcher re-lists for ever: the
//! controller never becomes ready, a restarted speaker never gets its first snapshot. A watch of
//! `Decoded<K>` reads each object into a JSON value first and then into `K`, so a bad object becomes an
//! [`Undecodable`] naming its field and value, and the others are read as usual.

use std::borrow::Cow;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// How much of a bad value an error message quotes.
const VALUE_SHOWN: usize = 200;

/// An object of kind `K` as listed or watched: the typed value, or why it is not one.
#[derive(Debug, Clone)]
pub enum Decoded<K> {
    Ok(K),
    Undecodable(Box<Undecodable>),
}

/// An object that does not decode as its kind: enough to name it, report it and drop it from caches.
#[derive(Debug, Clone, PartialEq)]
pub struct Undecodable {
    /// Its metadata as far as it reads (name, namespace and resourceVersion at least, when they are strings).
    pub meta: ObjectMeta,
    /// Path of the field that did not decode, such as `spec.priority`; `.` for the object itself.
    pub field: String,
    /// That field's value as JSON, cut to a readable length; empty when the field is missing.
    pub value: String,
    /// What did not fit, as serde says it ("invalid type: string \"high\", expected i64").
    pub error: String,
    /// The object as received, for callers that can still read parts of it.
    pub raw: Value,
}

impl<K: DeserializeOwned> Decoded<K> {
    /// Reads `raw` as a `K`; never fails.
    pub fn from_value(raw: Value) -> Self {
        // Tracking the path costs a good part of decoding a listing: only an object that does not decode needs it.
        if let Ok(k) = K::deserialize(&raw) {
            return Decoded::Ok(k);
        }
        match serde_path_to_error::deserialize::<_, K>(&raw) {
            Ok(k) => Decoded::Ok(k),
            Err(e) => {
                let field = e.path().to_string();
                let error = e.into_inner().to_string();
                Decoded::Undecodable(Box::new(Undecodable::new(raw, field, error)))
            }
        }
    }
}

impl<K> Decoded<K> {
    pub fn as_result(&self) -> Result<&K, &Undecodable> {
        match self {
            Decoded::Ok(k) => Ok(k),
            Decoded::Undecodable(u) => Err(u),
        }
    }

    pub fn into_result(self) -> Result<K, Box<Undecodable>> {
        match self {
            Decoded::Ok(k) => Ok(k),
            Decoded::Undecodable(u) => Err(u),
        }
    }
}

impl Undecodable {
    fn new(raw: Value, field: String, error: String) -> Self {
        let meta = raw.get("metadata").map(metadata).unwrap_or_default();
        let value = value_at(&raw, &field).map(shown).unwrap_or_default();
        Undecodable { meta, field, value, error, raw }
    }

    pub fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or_default()
    }

    /// `namespace/name`, or `name` for cluster-scoped objects.
    pub fn key(&self) -> String {
        match self.meta.namespace.as_deref().filter(|ns| !ns.is_empty()) {
            Some(ns) => format!("{ns}/{}", self.name()),
            None => self.name().to_string(),
        }
    }

    /// The string at `pointer` (RFC 6901, e.g. `/spec/address`) of the object as received.
    pub fn str_at(&self, pointer: &str) -> Option<&str> {
        self.raw.pointer(pointer).and_then(Value::as_str)
    }

    /// The part at `pointer` read as `T`, if it reads.
    pub fn read_at<T: DeserializeOwned>(&self, pointer: &str) -> Option<T> {
        self.raw.pointer(pointer).and_then(|v| T::deserialize(v).ok())
    }
}

impl fmt::Display for Undecodable {
    /// `spec.priority "high": invalid type: string "high", expected i64`; the caller names the object.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: {}", self.field, self.error)
        } else {
            write!(f, "{} {}: {}", self.field, self.value, self.error)
        }
    }
}

/// The metadata, or what of it is plain strings when it does not read as a whole.
fn metadata(v: &Value) -> ObjectMeta {
    ObjectMeta::deserialize(v).unwrap_or_else(|_| {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        ObjectMeta {
            name: s("name"),
            namespace: s("namespace"),
            resource_version: s("resourceVersion"),
            uid: s("uid"),
            ..Default::default()
        }
    })
}

/// The value at a `serde_path_to_error` path (`spec.ports[0].port`, `metadata.labels.a`); `None` when a step is
/// missing (the error was then about a missing field, and there is no value to quote).
fn value_at<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    if path == "." {
        return Some(root);
    }
    let mut here = root;
    for step in split_path(path) {
        here = match step {
            Step::Key(k) => here.get(k)?,
            Step::Index(i) => here.get(i)?,
        };
    }
    Some(here)
}

enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Steps of a path as `serde_path_to_error` writes it: keys separated by `.`, indices as `[n]`. A key holding
/// `.` or `[` is not told apart (the value is then not found, and only the error is shown).
fn split_path(path: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(at) => part.split_at(at),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Step::Key(key));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(end) = inner.find(']') else { break };
            match inner[..end].parse() {
                Ok(i) => out.push(Step::Index(i)),
                Err(_) => out.push(Step::Key(&inner[..end])),
            }
            rest = &inner[end + 1..];
        }
    }
    out
}

/// JSON text of `v`, cut to [`VALUE_SHOWN`] bytes on a character boundary.
fn shown(v: &Value) -> String {
    let text = v.to_string();
    if text.len() <= VALUE_SHOWN {
        return text;
    }
    let mut end = VALUE_SHOWN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Decoded<K> {
    /// Fails only on input that is not JSON at all (the API server never sends that). The managed fields are
    /// dropped before the object is typed: nothing here reads them, they are often most of a small object, and
    /// a listing holds every object of a page (of a whole list from the watch cache) typed at once. A write
    /// without them leaves the server's as they are.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut raw = Value::deserialize(deserializer)?;
        if let Some(meta) = raw.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
        Ok(Decoded::from_value(raw))
    }
}

impl<K: Serialize> Serialize for Decoded<K> {
    /// The typed value, or the object exactly as received.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Decoded::Ok(k) => k.serialize(serializer),
            Decoded::Undecodable(u) => u.raw.serialize(serializer),
        }
    }
}

/// Served at `K`'s path, so `Api<Decoded<K>>` lists and watches what `Api<K>` would.
impl<K: Resource<DynamicType = ()>> Resource for Decoded<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        match self {
            Decoded::Ok(k) => k.meta(),
            Decoded::Undecodable(u) => &u.meta,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Decoded::Ok(k) => k.meta_mut(),
            Decoded::Undecodable(u) => &mut u.meta,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Eip;
    use k8s_openapi::api::core::v1 as corev1;
    use kube::core::ObjectList;
    use proptest::prelude::*;
    use serde_json::json;

    fn eip(name: &str, priority: Value) -> Value {
        json!({"apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip",
               "metadata": {"name": name, "resourceVersion": "7"},
               "spec": {"address": "192.0.2.1-192.0.2.9", "protocol": "vip", "priority": priority}})
    }

    #[test]
    fn one_bad_object_does_not_fail_its_list() {
        let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "9"},
                          "items": [eip("good", json!(5)), eip("bad", json!("high")), eip("far", json!(3000000000u64))]});
        let typed: Result<ObjectList<Eip>, _> = serde_json::from_value(list.clone());
        assert!(typed.is_err(), "a typed list fails as a whole on one bad object");
        let list: ObjectList<Decoded<Eip>> = serde_json::from_value(list).unwrap();
        let read: Vec<_> = list.items.iter().map(|d| d.as_result().map(|e| e.spec.priority)).collect();
        assert!(matches!(read[0], Ok(Some(5))), "{read:?}");
        assert!(matches!(read[2], Ok(Some(3_000_000_000))), "the schema's int bounds are validation's business");
        let Err(bad) = read[1] else { panic!("{read:?}") };
        assert_eq!(bad.name(), "bad");
        assert_eq!(bad.meta.resource_version.as_deref(), Some("7"));
        assert_eq!((bad.field.as_str(), bad.value.as_str()), ("spec.priority", "\"high\""));
        assert_eq!(bad.to_string(), "spec.priority \"high\": invalid type: string \"high\", expected i64");
        assert_eq!(list.items[1].meta().name.as_deref(), Some("bad"));
    }

    #[test]
    fn a_watch_event_of_a_bad_object_is_read() {
        let line = json!({"type": "MODIFIED", "object": eip("bad", json!(1.5))}).to_string();
        let event: kube::core::WatchEvent<Decoded<Eip>> = serde_json::from_str(&line).unwrap();
        let kube::core::WatchEvent::Modified(Decoded::Undecodable(u)) = event else { panic!("{line}") };
        assert_eq!((u.field.as_str(), u.value.as_str()), ("spec.priority", "1.5"));
    }

    #[test]
    fn paths_with_indices_find_their_value_and_missing_fields_have_none() {
        let svc = json!({"metadata": {"name": "s", "namespace": "ns"},
                         "spec": {"ports": [{"port": 80}, {"port": "eighty"}]}});
        let Decoded::Undecodable(u) = Decoded::<corev1::Service>::from_value(svc) else { panic!() };
        assert_eq!((u.field.as_str(), u.value.as_str()), ("spec.ports[1].port", "\"eighty\""));
        assert_eq!(u.key(), "ns/s");

        let no_address = json!({"metadata": {"name": "x"}, "spec": {}});
        let Decoded::Undecodable(u) = Decoded::<Eip>::from_value(no_address) else { panic!() };
        assert_eq!(u.field, "spec");
        assert!(u.error.contains("missing field `address`"), "{u}");
    }

    #[test]
    fn metadata_that_does_not_read_still_names_the_object() {
        let odd = json!({"metadata": {"name": "x", "resourceVersion": "3", "labels": "not-a-map"}, "spec": {}});
        let Decoded::Undecodable(u) = Decoded::<Eip>::from_value(odd) else { panic!() };
        assert_eq!((u.name(), u.meta.resource_version.as_deref()), ("x", Some("3")));
        assert_eq!(u.field, "metadata.labels");
    }

    #[test]
    fn long_values_are_cut() {
        let long = "x".repeat(1000);
        let Decoded::Undecodable(u) = Decoded::<Eip>::from_value(eip("a", json!(long))) else { panic!() };
        assert!(u.value.len() <= VALUE_SHOWN + '…'.len_utf8() && u.value.ends_with('…'), "{}", u.value);
    }

    #[test]
    fn a_good_object_serialises_as_itself_and_a_bad_one_as_received() {
        let good = eip("good", json!(5));
        let d: Decoded<Eip> = serde_json::from_value(good.clone()).unwrap();
        assert_eq!(serde_json::to_value(&d).unwrap(), good);
        let bad = eip("bad", json!("high"));
        let d: Decoded<Eip> = serde_json::from_value(bad.clone()).unwrap();
        assert_eq!(serde_json::to_value(&d).unwrap(), bad);
        assert_eq!(Decoded::<Eip>::url_path(&(), None), Eip::url_path(&(), None));
    }

    fn arbitrary_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-z0-9.\\[\\]]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("metadata".to_string()),
                        Just("spec".to_string()),
                        Just("status".to_string()),
                        Just("name".to_string()),
                        Just("address".to_string()),
                        Just("priority".to_string()),
                        "[a-z.\\[\\]0-9]{0,6}"
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any JSON at all decodes to one or the other, and a value quoted is the one at the path.
        #[test]
        fn any_json_is_read_without_failing(v in arbitrary_json()) {
            match Decoded::<Eip>::from_value(v.clone()) {
                Decoded::Ok(_) => {}
                Decoded::Undecodable(u) => {
                    if let Some(at) = value_at(&v, &u.field) {
                        prop_assert_eq!(&u.value, &shown(at));
                    }
                    let _ = u.to_string();
                }
            }
            let _ = Decoded::<corev1::Service>::from_value(v);
        }
    }
}
