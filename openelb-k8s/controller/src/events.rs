//! Kubernetes Events (`events.k8s.io/v1`) for what the controller did or could not do, with repeated warnings
//! held back: a Service that cannot get an address is reconciled again on every Eip change, and a deletion
//! held by addresses in use on every Service change, which must not become an Event each time.
//!
//! The Events are built by [`openelb_k8s::event`] rather than by kube's `Recorder`, for two reasons: the
//! recorder folds events of one reason about one object into a series that keeps the first note (a second
//! `AssignIP` would show the old address), and it files events about cluster-scoped objects (Eips) where API
//! servers before 1.22 refuse them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
pub use openelb_core::event_reason::EventReason;
pub use openelb_k8s::event::CLUSTER_EVENTS_NAMESPACE;
use openelb_k8s::event::{EventSource, EventText};

/// The same warning about the same object at most once per this long.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(60);
/// Remembers when each warning was last let through. Memory is bounded by the warnings of the last interval.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    last: HashMap<(String, String, String), Instant>,
}

impl RateLimiter {
    pub fn new(interval: Duration) -> Self {
        RateLimiter { interval, last: HashMap::new() }
    }

    /// Whether a warning `reason`/`note` about `object` may go out at `now`; if so it counts as sent.
    pub fn admit(&mut self, object: &str, reason: &str, note: &str, now: Instant) -> bool {
        let interval = self.interval;
        self.last.retain(|_, sent| now.saturating_duration_since(*sent) < interval);
        let key = (object.to_string(), reason.to_string(), note.to_string());
        if self.last.contains_key(&key) {
            return false;
        }
        self.last.insert(key, now);
        true
    }
}

/// The controller's Event about `regarding` ([`openelb_k8s::event::event`]).
pub fn event(
    regarding: &ObjectReference,
    instance: &str,
    warning: bool,
    reason: EventReason,
    note: &str,
    now: Timestamp,
) -> Event {
    let source = EventSource { controller: super::reconcile::FIELD_MANAGER, instance };
    let text = EventText { warning, reason: reason.as_str(), action: reason.action(), note };
    openelb_k8s::event::event(regarding, source, text, now)
}

/// Publishes Events as the controller, holding back repeated warnings.
pub struct Events {
    client: Client,
    instance: String,
    limiter: Mutex<RateLimiter>,
}

impl Events {
    /// `instance` tells replicas apart (the leader-election identity).
    pub fn new(client: Client, instance: String) -> Self {
        Events { client, instance, limiter: Mutex::new(RateLimiter::new(WARNING_INTERVAL)) }
    }

    /// Publishes one event about `regarding`. Failures are logged, never returned: an Event that cannot be
    /// written must not undo or repeat the work it describes.
    pub async fn publish(&self, regarding: &ObjectReference, warning: bool, reason: EventReason, note: &str) {
        let object = format!(
            "{}/{}/{}",
            regarding.kind.as_deref().unwrap_or_default(),
            regarding.namespace.as_deref().unwrap_or_default(),
            regarding.name.as_deref().unwrap_or_default()
        );
        if warning {
            let mut limiter = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
            if !limiter.admit(&object, reason.as_str(), note, Instant::now()) {
                tracing::debug!(%object, %reason, "event held back: sent less than {WARNING_INTERVAL:?} ago");
                return;
            }
        }
        let event = event(regarding, &self.instance, warning, reason, note, Timestamp::now());
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::warn!(%object, %reason, "cannot record event: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openelb_k8s::event::{MAX_NOTE, bounded};

    #[test]
    fn the_same_warning_goes_out_once_per_interval() {
        let mut limiter = RateLimiter::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(limiter.admit("Service/ns/a", "AssignIPFailed", "no Eip matches", t0));
        assert!(!limiter.admit("Service/ns/a", "AssignIPFailed", "no Eip matches", t0 + Duration::from_secs(59)));
        assert!(limiter.admit("Service/ns/a", "AssignIPFailed", "no Eip matches", t0 + Duration::from_secs(60)));
    }

    #[test]
    fn another_object_reason_or_message_is_not_held_back() {
        let mut limiter = RateLimiter::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(limiter.admit("Service/ns/a", "AssignIPFailed", "no Eip matches", t0));
        assert!(limiter.admit("Service/ns/b", "AssignIPFailed", "no Eip matches", t0));
        assert!(limiter.admit("Service/ns/a", "SharedIPConflict", "no Eip matches", t0));
        assert!(limiter.admit("Service/ns/a", "AssignIPFailed", "pinned to Eip x, which does not exist", t0));
    }

    #[test]
    fn old_entries_are_forgotten() {
        let mut limiter = RateLimiter::new(Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..100 {
            limiter.admit(&format!("Service/ns/{i}"), "AssignIPFailed", "x", t0);
        }
        limiter.admit("Service/ns/late", "AssignIPFailed", "x", t0 + Duration::from_secs(2));
        assert_eq!(limiter.last.len(), 1);
    }

    fn reference(namespace: Option<&str>) -> ObjectReference {
        ObjectReference {
            kind: Some("Eip".into()),
            name: Some("pool".into()),
            namespace: namespace.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn events_about_cluster_scoped_objects_go_to_kube_system() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let e = event(&reference(None), "replica-1", true, EventReason::DeletionHeld, "in use", now);
        assert_eq!(e.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(e.regarding.as_ref().and_then(|r| r.namespace.clone()), None);
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.action.as_deref(), Some("Delete"));
        assert_eq!(e.reporting_controller.as_deref(), Some("openelb-controller"));
        assert_eq!(e.reporting_instance.as_deref(), Some("replica-1"));
        assert!(e.metadata.name.as_deref().is_some_and(|n| n.starts_with("pool.")));
        let namespaced = event(&reference(Some("ns")), "replica-1", false, EventReason::AssignIp, "ok", now);
        assert_eq!(namespaced.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(namespaced.type_.as_deref(), Some("Normal"));
        assert_eq!(namespaced.reason.as_deref(), Some("AssignIP"));
    }

    #[test]
    fn long_notes_are_cut_to_the_api_limit_on_a_character_boundary() {
        let note = "é".repeat(1000);
        let e = event(&reference(None), "r", true, EventReason::AssignIpFailed, &note, Timestamp::UNIX_EPOCH);
        let cut = e.note.unwrap();
        assert!(cut.len() <= MAX_NOTE, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert_eq!(bounded("short", MAX_NOTE), "short");
    }

    #[test]
    fn reasons_and_actions_on_the_wire_are_upstreams() {
        let wire: Vec<(&str, &str)> = EventReason::ALL.iter().map(|r| (r.as_str(), r.action())).collect();
        assert_eq!(
            wire,
            [
                ("AssignIP", "Assign"),
                ("AssignIPFailed", "Assign"),
                ("ReleaseIP", "Release"),
                ("SharedIPConflict", "Share"),
                ("AddressNotAnnounced", "Announce"),
                ("DeletionHeld", "Delete"),
                ("IPOutsideEip", "Keep"),
                ("InvalidSpec", "Validate"),
                ("Undecodable", "Validate"),
                ("InvalidAddress", "Validate"),
                ("ReservedAddress", "Validate"),
                ("OverlappingEip", "Validate"),
                ("AddressesOutsidePool", "Validate"),
            ]
        );
    }
}
