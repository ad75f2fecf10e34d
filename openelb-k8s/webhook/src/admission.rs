//! The admission decision for Eips: `admission.k8s.io/v1` AdmissionReview in, AdmissionReview out. Pure: the
//! other Eips come in as a value, so every rule is tested without a server. The types are our own few fields
//! rather than kube's `admission` module (a crate feature this workspace does not enable); unknown fields are
//! ignored, as the API server may add some.
//!
//! CREATE and UPDATE run [`openelb_core::validate`] against every other Eip: errors deny, with every message
//! (object, field, value) in the reason; warnings become admission warnings. UPDATE also refuses a new address
//! that strands addresses in use, and ratchets: an error the old object already had is only a warning. An object
//! that does not decode is denied naming the field and value, and ratchets too. DELETE and CONNECT are allowed;
//! other kinds are denied. Why each: docs/compatibility.md#the-admission-webhook.

use std::collections::BTreeSet;

use openelb_core::model::Pool;
use openelb_core::validate::{self, Problem, Severity};
use serde::{Deserialize, Serialize};

use openelb_k8s::convert::pool_from_eip;
use openelb_k8s::crd::{self, Eip, GROUP};
use openelb_k8s::decoded::{Decoded, Undecodable};

/// The admission API group/version we speak; the webhook configuration asks for it (`admissionReviewVersions`).
pub const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";
const REVIEW_KIND: &str = "AdmissionReview";
/// Rejected requests report 403, like the API server's own admission plugins, so clients treat them as final.
const DENIED_CODE: u16 = 403;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

/// The fields of `AdmissionReview.request` the decision needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    pub uid: String,
    pub kind: GroupVersionKind,
    #[serde(default)]
    pub name: String,
    pub operation: Operation,
    #[serde(default)]
    pub object: Option<serde_json::Value>,
    #[serde(default)]
    pub old_object: Option<serde_json::Value>,
    #[serde(default)]
    pub dry_run: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionResponse {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl AdmissionResponse {
    fn allow(uid: &str, warnings: Vec<String>) -> Self {
        AdmissionResponse { uid: uid.to_string(), allowed: true, status: None, warnings }
    }

    fn deny(uid: &str, message: String, warnings: Vec<String>) -> Self {
        AdmissionResponse {
            uid: uid.to_string(),
            allowed: false,
            status: Some(Status { code: DENIED_CODE, reason: "Forbidden".to_string(), message }),
            warnings,
        }
    }

    /// The whole review to send back.
    pub fn into_review(self) -> serde_json::Value {
        serde_json::json!({"apiVersion": REVIEW_API_VERSION, "kind": REVIEW_KIND, "response": self})
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review {
    api_version: String,
    kind: String,
    request: Option<AdmissionRequest>,
}

/// Why a body is not an admission review we can answer (the server sends HTTP 400 with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the body is not an {REVIEW_API_VERSION} AdmissionReview: {0}")]
    Json(String),
    #[error(
        "expected apiVersion {REVIEW_API_VERSION} kind {REVIEW_KIND}, got apiVersion {api_version:?} kind {kind:?}"
    )]
    WrongType { api_version: String, kind: String },
    #[error("the AdmissionReview has no request")]
    NoRequest,
}

/// Reads an AdmissionReview body. Any input gives `Ok` or an error naming the problem; none panics.
pub fn decode(body: &[u8]) -> Result<AdmissionRequest, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let review: Review = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            DecodeError::Json(inner.to_string())
        } else {
            DecodeError::Json(format!("{path}: {inner}"))
        }
    })?;
    de.end().map_err(|e| DecodeError::Json(format!("after the review: {e}")))?;
    if review.api_version != REVIEW_API_VERSION || review.kind != REVIEW_KIND {
        return Err(DecodeError::WrongType { api_version: review.api_version, kind: review.kind });
    }
    review.request.ok_or(DecodeError::NoRequest)
}

/// Whether answering `request` needs the other Eips (so the server lists them only then).
pub fn needs_existing(request: &AdmissionRequest) -> bool {
    matches!(request.operation, Operation::Create | Operation::Update) && is_eip(&request.kind)
}

fn is_eip(kind: &GroupVersionKind) -> bool {
    kind.group == GROUP && kind.kind == "Eip"
}

/// The answer to `request`, given every Eip that exists now (the object under review may be among them; it is
/// left out by name). `unreadable` lists Eips the caller could not read; they become warnings, since the
/// overlap check could not include them.
pub fn review(request: &AdmissionRequest, existing: &[Eip], unreadable: &[String]) -> AdmissionResponse {
    let uid = request.uid.as_str();
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return AdmissionResponse::allow(uid, Vec::new());
    }
    if !is_eip(&request.kind) {
        let k = &request.kind;
        return AdmissionResponse::deny(
            uid,
            format!(
                "this webhook validates {GROUP} Eips only, but was sent {}/{} {}: the ValidatingWebhookConfiguration's \
                 rules are wrong",
                k.group, k.version, k.kind
            ),
            Vec::new(),
        );
    }
    let old = match (request.operation, request.old_object.as_ref()) {
        (Operation::Update, Some(o)) => Some(eip_from(Some(o), &request.kind.version, &request.name, "oldObject")),
        _ => None,
    };
    let new = match eip_from(request.object.as_ref(), &request.kind.version, &request.name, "object") {
        Ok(eip) => eip,
        Err(Unread::Missing(why)) => return AdmissionResponse::deny(uid, why, Vec::new()),
        Err(Unread::Undecodable(problem)) => {
            let before = matches!(&old, Some(Err(Unread::Undecodable(p))) if p.field == problem.field && p.value == problem.value);
            return if before {
                AdmissionResponse::allow(
                    uid,
                    vec![format!("{} (already so before this update, so not refused)", text(&problem))],
                )
            } else {
                AdmissionResponse::deny(uid, text(&problem), Vec::new())
            };
        }
    };
    let mut unread_old = Vec::new();
    let old = match old {
        Some(Ok(eip)) => Some(eip),
        Some(Err(why)) => {
            unread_old.push(format!(
                "the stored object does not decode, so this update is checked on its own: {}",
                why.text()
            ));
            None
        }
        None => None,
    };
    let verdict = judge(&new, old.as_ref(), existing);
    let mut warnings: Vec<String> = unread_old;
    warnings.extend(verdict.warnings.iter().map(|p| {
        if p.is_error() { format!("{} (already so before this update, so not refused)", text(p)) } else { text(p) }
    }));
    warnings.extend(unreadable.iter().map(|u| format!("not checked against {u}")));
    if verdict.errors.is_empty() {
        AdmissionResponse::allow(uid, warnings)
    } else {
        let message = verdict.errors.iter().map(text).collect::<Vec<_>>().join("; ");
        AdmissionResponse::deny(uid, message, warnings)
    }
}

/// What the validation found for one Eip under admission.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

/// The problems of `new` among `existing` (which may contain `new` or `old` itself: same-named Eips are left
/// out), with `old` for an UPDATE.
pub fn judge(new: &Eip, old: Option<&Eip>, existing: &[Eip]) -> Verdict {
    let new_pool = match pool_from_eip(new) {
        Ok(p) => p,
        Err(e) => {
            let p = Problem {
                object: "Eip".to_string(),
                field: "metadata.name".to_string(),
                value: String::new(),
                message: e.to_string(),
                severity: Severity::Error,
            };
            return Verdict { errors: vec![p], warnings: Vec::new() };
        }
    };
    let others: Vec<Pool> = existing
        .iter()
        .filter(|e| e.metadata.name.as_deref() != Some(new_pool.name.as_str()))
        .filter_map(|e| pool_from_eip(e).ok())
        .collect();
    let old_pool = old.and_then(|o| pool_from_eip(o).ok());

    let mut found = problems_of(&new_pool, &others);
    let mut before = BTreeSet::new();
    if let Some(old_pool) = &old_pool {
        // Entries of `status.used` outside the new range are reported once, as stranded, by the update check.
        found.retain(|p| !used_key(p).is_some_and(|k| old_pool.used.contains_key(k)));
        found.extend(
            validate::validate_pool_update(old_pool, &new_pool).into_iter().filter(|p| p.object == object(&new_pool)),
        );
        before = problems_of(old_pool, &others).into_iter().filter(Problem::is_error).collect();
    }
    found.sort();
    found.dedup();

    let mut verdict = Verdict::default();
    for p in found {
        if p.is_error() && !before.contains(&p) {
            verdict.errors.push(p);
        } else {
            verdict.warnings.push(p);
        }
    }
    verdict
}

fn object(pool: &Pool) -> String {
    format!("Eip/{}", pool.name)
}

/// The problems reported on `pool` when it is checked with `others`.
fn problems_of(pool: &Pool, others: &[Pool]) -> Vec<Problem> {
    let mut all = others.to_vec();
    all.push(pool.clone());
    let me = object(pool);
    validate::validate_pools(&all).into_iter().filter(|p| p.object == me).collect()
}

/// The key of a `status.used[<key>]` problem.
fn used_key(p: &Problem) -> Option<&str> {
    p.field.strip_prefix("status.used[")?.strip_suffix(']')
}

/// One line per problem, as `openelb-cli validate` prints it (without its `warning: ` prefix: the API server
/// already labels warnings).
fn text(p: &Problem) -> String {
    format!("{}: {}={:?}: {}", p.object, p.field, p.value, p.message)
}

/// Why an object under review is not an Eip.
#[derive(Debug)]
enum Unread {
    /// Absent, or of a version this webhook does not know: the message says which.
    Missing(String),
    /// It does not decode: the field and value, as a problem of the object.
    Undecodable(Problem),
}

impl Unread {
    fn text(&self) -> String {
        match self {
            Unread::Missing(why) => why.clone(),
            Unread::Undecodable(p) => text(p),
        }
    }
}

/// The problem of an object that does not decode, in the words of every other problem: object, field, value.
fn undecodable(u: &Undecodable, name: &str, version: &str) -> Problem {
    let name = if u.name().is_empty() { name } else { u.name() };
    // A string is shown as itself, anything else as its JSON.
    let value = serde_json::from_str::<String>(&u.value).unwrap_or_else(|_| u.value.clone());
    Problem {
        object: format!("Eip/{name}"),
        field: u.field.clone(),
        value,
        message: format!("does not decode as a {GROUP}/{version} Eip: {}", u.error),
        severity: Severity::Error,
    }
}

/// The Eip in `value` at API `version`, as the storage version; a missing name is taken from the request.
fn eip_from(value: Option<&serde_json::Value>, version: &str, name: &str, what: &str) -> Result<Eip, Unread> {
    let Some(value) = value else {
        return Err(Unread::Missing(format!("the admission request for Eip {name:?} carries no {what}")));
    };
    let read = |u: Box<Undecodable>| Unread::Undecodable(undecodable(&u, name, version));
    let mut eip: Eip = match version {
        "v1alpha2" => Decoded::<Eip>::from_value(value.clone()).into_result().map_err(read)?,
        "v1alpha1" => Decoded::<crd::v1alpha1::Eip>::from_value(value.clone()).into_result().map_err(read)?.into(),
        other => {
            return Err(Unread::Missing(format!(
                "Eip {name:?}: version {other:?} of {GROUP} is not one this webhook knows"
            )));
        }
    };
    if eip.metadata.name.as_deref().is_none_or(str::is_empty) && !name.is_empty() {
        eip.metadata.name = Some(name.to_string());
    }
    Ok(eip)
}

#[cfg(test)]
mod tests;
