//! `events.k8s.io/v1` Events as every API server version accepts them, for the controller and the speaker.
//! kube's `Recorder` files Events about cluster-scoped objects (Eips, Nodes) in `default`, which API servers
//! before 1.22 refuse (`involvedObject.namespace: does not match event.namespace`); `kube-system` is accepted
//! by every version.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;

/// Where Events about cluster-scoped objects go.
pub const CLUSTER_EVENTS_NAMESPACE: &str = "kube-system";
/// API limits on `note` (bytes) and on `reportingInstance`, `action` and `reason` (characters).
pub const MAX_NOTE: usize = 1024;
pub const MAX_SHORT: usize = 128;

/// What an Event says, apart from the object it is about.
#[derive(Debug, Clone, Copy)]
pub struct EventText<'a> {
    pub warning: bool,
    pub reason: &'a str,
    pub action: &'a str,
    pub note: &'a str,
}

/// Who reports it: the program (`reportingController`) and which replica or node (`reportingInstance`).
#[derive(Debug, Clone, Copy)]
pub struct EventSource<'a> {
    pub controller: &'a str,
    pub instance: &'a str,
}

/// The Event as the API wants it: in the object's namespace (or [`CLUSTER_EVENTS_NAMESPACE`]), with a name
/// unique per object and instant, text cut to the API's limits.
pub fn event(regarding: &ObjectReference, source: EventSource<'_>, text: EventText<'_>, now: Timestamp) -> Event {
    let namespace = regarding.namespace.clone().unwrap_or_else(|| CLUSTER_EVENTS_NAMESPACE.to_string());
    let object = regarding.name.as_deref().unwrap_or(source.controller);
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{object}.{:x}", now.as_nanosecond())),
            namespace: Some(namespace),
            ..Default::default()
        },
        action: Some(bounded(text.action, MAX_SHORT)),
        reason: Some(bounded(text.reason, MAX_SHORT)),
        note: Some(bounded(text.note, MAX_NOTE)),
        type_: Some(if text.warning { "Warning" } else { "Normal" }.to_string()),
        event_time: Some(MicroTime(now)),
        regarding: Some(regarding.clone()),
        reporting_controller: Some(source.controller.to_string()),
        reporting_instance: Some(bounded(source.instance, MAX_SHORT)),
        ..Default::default()
    }
}

/// `s` cut to at most `max` bytes on a character boundary, marked with an ellipsis when cut.
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
