//! Reading the Kubernetes YAML a user would `kubectl apply`: files or directories of multi-document YAML,
//! kept as the original API objects (so the CLI can print them back updated) with where each came from.
//!
//! Kinds openelb does not read are skipped with a warning, so a directory may also hold other files (the
//! CLI's scenarios, for instance). A document that is one of our kinds but does not decode is an error that
//! names the file, the document (1-based), the object and the field.

mod cluster;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1 as appsv1;
use k8s_openapi::api::core::v1 as corev1;
use k8s_openapi::api::discovery::v1 as discoveryv1;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use crate::convert::ConvertError;
use crate::crd::{Eip, v1alpha1};

pub use cluster::{LABEL_POD_TEMPLATE_HASH, MAX_REPLICAS, to_cluster};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    Eip,
    Service,
    Deployment,
    Pod,
    Node,
    Namespace,
    Endpoints,
    EndpointSlice,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Eip => "Eip",
            ObjectKind::Service => "Service",
            ObjectKind::Deployment => "Deployment",
            ObjectKind::Pod => "Pod",
            ObjectKind::Node => "Node",
            ObjectKind::Namespace => "Namespace",
            ObjectKind::Endpoints => "Endpoints",
            ObjectKind::EndpointSlice => "EndpointSlice",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one loaded object came from. `index` points into the [`Manifests`] vector of its `kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub path: PathBuf,
    /// 1-based document number in the file.
    pub document: usize,
    /// 1-based position inside a `kind: List` document.
    pub item: Option<usize>,
    pub kind: ObjectKind,
    /// As written; a v1alpha1 Eip is held as v1alpha2 in [`Manifests::eips`].
    pub api_version: String,
    pub index: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.path.display(), self.document)?;
        if let Some(item) = self.item {
            write!(f, ", item {item}")?;
        }
        Ok(())
    }
}

/// Boxed so the `Result`s that carry it stay small; [`ManifestError::kind`] gives the details.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ManifestError(Box<ManifestErrorKind>);

impl ManifestError {
    pub fn kind(&self) -> &ManifestErrorKind {
        &self.0
    }
}

impl From<ManifestErrorKind> for ManifestError {
    fn from(kind: ManifestErrorKind) -> Self {
        ManifestError(Box::new(kind))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestErrorKind {
    /// `error`, not `source`: the message carries it, and a source would print it twice in an error chain.
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{}: not UTF-8 text", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("{}: document {document}: {message}", path.display())]
    Syntax { path: PathBuf, document: usize, message: String },
    /// A document of a kind we read that does not decode; `field` is the path inside the object, empty for
    /// the object itself (e.g. a missing `spec`).
    #[error("{}: document {document}{}{}: {}{message}", path.display(), item_suffix(*item), object_label(kind.as_deref(), name.as_deref()), field_prefix(field))]
    Document {
        path: PathBuf,
        document: usize,
        item: Option<usize>,
        kind: Option<String>,
        name: Option<String>,
        field: String,
        message: String,
    },
    #[error("{origin}: {error}")]
    Convert { origin: String, error: ConvertError },
    #[error("{kind} {name} is declared twice: {first} and {second}")]
    Duplicate { kind: ObjectKind, name: String, first: String, second: String },
    #[error("{origin}: Deployment {name}: {message}")]
    Deployment { origin: String, name: String, message: String },
}

fn item_suffix(item: Option<usize>) -> String {
    item.map(|i| format!(", item {i}")).unwrap_or_default()
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() { String::new() } else { format!("{field}: ") }
}

fn object_label(kind: Option<&str>, name: Option<&str>) -> String {
    match (kind, name) {
        (Some(k), Some(n)) => format!(" ({k} {n})"),
        (Some(k), None) => format!(" ({k})"),
        (None, Some(n)) => format!(" ({n})"),
        (None, None) => String::new(),
    }
}

/// The objects of one or more manifest files, in load order.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    pub eips: Vec<Eip>,
    pub services: Vec<corev1::Service>,
    pub deployments: Vec<appsv1::Deployment>,
    pub pods: Vec<corev1::Pod>,
    pub nodes: Vec<corev1::Node>,
    pub namespaces: Vec<corev1::Namespace>,
    pub endpoints: Vec<corev1::Endpoints>,
    pub endpoint_slices: Vec<discoveryv1::EndpointSlice>,
    /// Skipped documents, e.g.
    /// `a.yaml: document 3: skipped kind ConfigMap (apiVersion v1) named x: not a kind openelb reads`.
    pub warnings: Vec<String>,
    pub origins: Vec<Origin>,
}

/// Where a document sits, for error messages.
#[derive(Clone, Copy)]
struct DocRef<'a> {
    path: &'a Path,
    document: usize,
    item: Option<usize>,
}

impl DocRef<'_> {
    fn label(&self) -> String {
        format!("{}: document {}{}", self.path.display(), self.document, item_suffix(self.item))
    }

    fn error(&self, kind: Option<&str>, name: Option<&str>, field: &str, message: impl Into<String>) -> ManifestError {
        ManifestError::from(ManifestErrorKind::Document {
            path: self.path.to_path_buf(),
            document: self.document,
            item: self.item,
            kind: kind.map(str::to_string),
            name: name.map(str::to_string),
            field: field.to_string(),
            message: message.into(),
        })
    }
}

impl Manifests {
    /// Loads a file, or every `*.yaml`/`*.yml` under a directory (recursively, in path order).
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let io = |error| ManifestError::from(ManifestErrorKind::Io { path: path.to_path_buf(), error });
        let meta = std::fs::metadata(path).map_err(io)?;
        let mut out = Manifests::default();
        if meta.is_dir() {
            let mut files = Vec::new();
            let mut seen = HashSet::new();
            collect_yaml_files(path, &mut files, &mut seen)?;
            for file in files {
                out.merge(Self::load_file(&file)?);
            }
        } else {
            out = Self::load_file(path)?;
        }
        Ok(out)
    }

    /// [`Manifests::load`] over several `-f` arguments, merged in the order given.
    pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Self, ManifestError> {
        let mut out = Manifests::default();
        for p in paths {
            out.merge(Self::load(p.as_ref())?);
        }
        Ok(out)
    }

    fn load_file(path: &Path) -> Result<Self, ManifestError> {
        let bytes = std::fs::read(path)
            .map_err(|error| ManifestError::from(ManifestErrorKind::Io { path: path.to_path_buf(), error }))?;
        Self::parse_bytes(path, &bytes)
    }

    /// Parses YAML text; `source` only names it in messages and origins.
    pub fn parse_bytes(source: &Path, bytes: &[u8]) -> Result<Self, ManifestError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ManifestError::from(ManifestErrorKind::NotUtf8 { path: source.to_path_buf() }))?;
        Self::parse_str(source, text)
    }

    pub fn parse_str(source: &Path, text: &str) -> Result<Self, ManifestError> {
        use serde::Deserialize;
        let mut out = Manifests::default();
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let at = DocRef { path: source, document: i + 1, item: None };
            let value = Value::deserialize(doc).map_err(|e| {
                ManifestError::from(ManifestErrorKind::Syntax {
                    path: source.to_path_buf(),
                    document: i + 1,
                    message: e.to_string(),
                })
            })?;
            out.add_value(value, at)?;
        }
        Ok(out)
    }

    fn add_value(&mut self, value: Value, at: DocRef<'_>) -> Result<(), ManifestError> {
        if value.is_null() {
            return Ok(());
        }
        if !value.is_mapping() {
            return Err(at.error(None, None, "(document)", "expected a Kubernetes object (a mapping)"));
        }
        let name = value.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).map(str::to_string);
        let field_str = |field: &str| -> Result<String, ManifestError> {
            match value.get(field) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(_) => Err(at.error(None, name.as_deref(), field, "expected a non-empty string")),
                None => Err(at.error(None, name.as_deref(), field, "missing")),
            }
        };
        let api_version = field_str("apiVersion")?;
        let kind = field_str("kind")?;
        let kinded = |k: ObjectKind| (k, api_version.clone());
        let (object_kind, api) = match (api_version.as_str(), kind.as_str()) {
            ("network.kubesphere.io/v1alpha2", "Eip") => kinded(ObjectKind::Eip),
            ("network.kubesphere.io/v1alpha1", "Eip") => {
                let old: v1alpha1::Eip = decode(value, at, &kind, name.as_deref())?;
                self.eips.push(old.into());
                self.record(at, ObjectKind::Eip, api_version, self.eips.len() - 1);
                return Ok(());
            }
            ("v1", "Service") => kinded(ObjectKind::Service),
            ("apps/v1", "Deployment") => kinded(ObjectKind::Deployment),
            ("v1", "Pod") => kinded(ObjectKind::Pod),
            ("v1", "Node") => kinded(ObjectKind::Node),
            ("v1", "Namespace") => kinded(ObjectKind::Namespace),
            ("v1", "Endpoints") => kinded(ObjectKind::Endpoints),
            ("discovery.k8s.io/v1", "EndpointSlice") => kinded(ObjectKind::EndpointSlice),
            ("v1", "List") if at.item.is_none() => return self.add_list(value, at),
            _ => {
                self.warnings.push(format!(
                    "{}: skipped kind {kind} (apiVersion {api_version}){}: not a kind openelb reads",
                    at.label(),
                    name.as_deref().map(|n| format!(" named {n}")).unwrap_or_default()
                ));
                return Ok(());
            }
        };
        let n = name.as_deref();
        let index = match object_kind {
            ObjectKind::Eip => push(&mut self.eips, decode(value, at, &kind, n)?),
            ObjectKind::Service => push(&mut self.services, decode(value, at, &kind, n)?),
            ObjectKind::Deployment => push(&mut self.deployments, decode(value, at, &kind, n)?),
            ObjectKind::Pod => push(&mut self.pods, decode(value, at, &kind, n)?),
            ObjectKind::Node => push(&mut self.nodes, decode(value, at, &kind, n)?),
            ObjectKind::Namespace => push(&mut self.namespaces, decode(value, at, &kind, n)?),
            ObjectKind::Endpoints => push(&mut self.endpoints, decode(value, at, &kind, n)?),
            ObjectKind::EndpointSlice => push(&mut self.endpoint_slices, decode(value, at, &kind, n)?),
        };
        self.record(at, object_kind, api, index);
        Ok(())
    }

    /// `kind: List` (what `kubectl get -o yaml` prints): its items are read as documents of their own.
    fn add_list(&mut self, value: Value, at: DocRef<'_>) -> Result<(), ManifestError> {
        let items = match value.get("items") {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Sequence(items)) => items.clone(),
            Some(_) => {
                return Err(at.error(Some("List"), None, "items", "expected a list of objects"));
            }
        };
        for (j, item) in items.into_iter().enumerate() {
            self.add_value(item, DocRef { item: Some(j + 1), ..at })?;
        }
        Ok(())
    }

    fn record(&mut self, at: DocRef<'_>, kind: ObjectKind, api_version: String, index: usize) {
        self.origins.push(Origin {
            path: at.path.to_path_buf(),
            document: at.document,
            item: at.item,
            kind,
            api_version,
            index,
        });
    }

    /// Appends another set (e.g. the next `-f` argument), keeping every origin pointing at its object.
    pub fn merge(&mut self, other: Manifests) {
        let offsets = [
            (ObjectKind::Eip, self.eips.len()),
            (ObjectKind::Service, self.services.len()),
            (ObjectKind::Deployment, self.deployments.len()),
            (ObjectKind::Pod, self.pods.len()),
            (ObjectKind::Node, self.nodes.len()),
            (ObjectKind::Namespace, self.namespaces.len()),
            (ObjectKind::Endpoints, self.endpoints.len()),
            (ObjectKind::EndpointSlice, self.endpoint_slices.len()),
        ];
        self.origins.extend(other.origins.into_iter().map(|mut o| {
            o.index += offsets.iter().find(|(k, _)| *k == o.kind).map_or(0, |(_, n)| *n);
            o
        }));
        append(&mut self.eips, other.eips);
        append(&mut self.services, other.services);
        append(&mut self.deployments, other.deployments);
        append(&mut self.pods, other.pods);
        append(&mut self.nodes, other.nodes);
        append(&mut self.namespaces, other.namespaces);
        append(&mut self.endpoints, other.endpoints);
        append(&mut self.endpoint_slices, other.endpoint_slices);
        append(&mut self.warnings, other.warnings);
    }

    /// Where the `index`-th object of `kind` came from.
    pub fn origin(&self, kind: ObjectKind, index: usize) -> Option<&Origin> {
        self.origins.iter().find(|o| o.kind == kind && o.index == index)
    }

    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// Same as [`to_cluster`].
    pub fn to_cluster(&self) -> Result<openelb_core::model::Cluster, ManifestError> {
        to_cluster(self)
    }
}

/// `into.extend(from)`, taking `from` whole when `into` is empty (the first file of a load, usually the only
/// one), so a large manifest is not held twice while it is copied.
fn append<T>(into: &mut Vec<T>, from: Vec<T>) {
    if into.is_empty() {
        *into = from;
    } else {
        into.extend(from);
    }
}

fn push<T>(v: &mut Vec<T>, item: T) -> usize {
    v.push(item);
    v.len() - 1
}

fn decode<T: DeserializeOwned>(
    value: Value,
    at: DocRef<'_>,
    kind: &str,
    name: Option<&str>,
) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        at.error(Some(kind), name, &field, e.into_inner().to_string())
    })
}

fn collect_yaml_files(dir: &Path, out: &mut Vec<PathBuf>, seen: &mut HashSet<PathBuf>) -> Result<(), ManifestError> {
    let io = |error| ManifestError::from(ManifestErrorKind::Io { path: dir.to_path_buf(), error });
    // Symlinked directories could loop; visit each real directory once.
    if !seen.insert(std::fs::canonicalize(dir).map_err(io)?) {
        return Ok(());
    }
    let mut entries =
        std::fs::read_dir(dir).map_err(io)?.map(|e| e.map(|e| e.path())).collect::<Result<Vec<_>, _>>().map_err(io)?;
    entries.sort();
    for path in entries {
        let meta = std::fs::metadata(&path)
            .map_err(|error| ManifestError::from(ManifestErrorKind::Io { path: path.clone(), error }))?;
        if meta.is_dir() {
            collect_yaml_files(&path, out, seen)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
        {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
