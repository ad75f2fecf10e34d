//! Kubernetes Events (`events.k8s.io/v1`): on a Service when this node takes or gives up one of its VIPs, and
//! on this node's Node when VRRP has something to say that concerns no Service (a foreign router, a plan that had
//! to be approximated; the driver rate-limits those, see [`super::notices`]).
//!
//! The VRRP loop must never wait for the API server: it hands a [`SpeakerEvent`] to an [`EventSink`], which puts
//! it on a bounded queue without waiting and drops (and counts) it when the queue is full. A separate task,
//! [`publish_events`], turns queued events into API writes, each bounded by [`PUBLISH_TIMEOUT`], so a slow or
//! absent API server costs dropped Events, never a late advert.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, ObjectReference};
use k8s_openapi::api::events;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource};
use openelb_core::model::ServiceKey;
use openelb_k8s::event::{EventSource, EventText};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// Events waiting for the publisher; a takeover of many VIPs at once beyond this drops the rest.
pub const EVENT_QUEUE: usize = 1024;
/// Longest an Event write may take before the publisher gives up on it and moves on.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// `reportingController` of the speaker's Events.
pub const REPORTING_CONTROLLER: &str = "openelb-speaker";

/// What happened to a VIP on this node: the reason of the Event recorded on its Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VipChange {
    /// This node started answering for the VIP.
    Announced,
    /// This node stopped answering for it.
    Withdrawn,
}

impl VipChange {
    /// The Event's `reason` on the wire.
    pub const fn reason(self) -> &'static str {
        match self {
            VipChange::Announced => "VIPAnnounced",
            VipChange::Withdrawn => "VIPWithdrawn",
        }
    }

    const fn action(self) -> &'static str {
        match self {
            VipChange::Announced => "Announce",
            VipChange::Withdrawn => "Withdraw",
        }
    }
}

/// One VIP of one Service that this node took or gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipEvent {
    pub service: ServiceKey,
    pub change: VipChange,
    pub node: String,
    pub vip: IpAddr,
    /// The NIC the VIP is (or was) configured on.
    pub interface: String,
    /// The VRRP group's VRID, when the plan still names one.
    pub vrid: Option<u8>,
}

impl VipEvent {
    pub fn note(&self) -> String {
        let vrid = self.vrid.map(|v| format!(" (VRRP VRID {v})")).unwrap_or_default();
        match self.change {
            VipChange::Announced => {
                format!("node {} announces {} on {}{vrid}", self.node, self.vip, self.interface)
            }
            VipChange::Withdrawn => {
                format!("node {} no longer announces {} on {}{vrid}", self.node, self.vip, self.interface)
            }
        }
    }
}

/// What VRRP reports on this node's Node object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeReason {
    /// A VRRP router that is not ours uses one of our VRIDs (or our VIPs' addresses).
    ForeignRouter,
    /// The plan could not do everything exactly (VRID range full, conflicting VIPs, ...).
    PlanApproximated,
    /// kube-proxy's IPVS mode makes this node answer ARP for VIPs it does not hold, and the speaker does not
    /// filter those answers (turned off, or the filter cannot be set up).
    IpvsArpUnfiltered,
}

impl NodeReason {
    /// The Event's `reason` on the wire.
    pub const fn reason(self) -> &'static str {
        match self {
            NodeReason::ForeignRouter => "ForeignVRRPRouter",
            NodeReason::PlanApproximated => "VRRPPlanApproximated",
            NodeReason::IpvsArpUnfiltered => "IPVSARPNotFiltered",
        }
    }

    const fn action(self) -> &'static str {
        match self {
            NodeReason::ForeignRouter => "Ignore",
            NodeReason::PlanApproximated => "Plan",
            NodeReason::IpvsArpUnfiltered => "FilterARP",
        }
    }
}

/// A Warning Event on this node's Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEvent {
    pub reason: NodeReason,
    pub note: String,
}

/// Anything the speaker records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpeakerEvent {
    Vip(VipEvent),
    Node(NodeEvent),
}

impl SpeakerEvent {
    pub fn vip(self) -> Option<VipEvent> {
        match self {
            SpeakerEvent::Vip(v) => Some(v),
            SpeakerEvent::Node(_) => None,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            SpeakerEvent::Vip(v) => v.change.reason(),
            SpeakerEvent::Node(n) => n.reason.reason(),
        }
    }
}

/// Where the driver drops its events. Never blocks; a disabled sink (manifest mode) discards everything.
#[derive(Debug, Clone, Default)]
pub struct EventSink {
    tx: Option<mpsc::Sender<SpeakerEvent>>,
    dropped: Counter,
    /// Whether a drop was logged already (one warning, then the counter tells).
    warned: Arc<AtomicBool>,
}

impl EventSink {
    pub fn disabled() -> Self {
        EventSink::default()
    }

    /// A sink and the receiving end of its queue of `capacity`; drops are counted in `dropped`.
    pub fn channel(capacity: usize, dropped: Counter) -> (Self, mpsc::Receiver<SpeakerEvent>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (EventSink { tx: Some(tx), dropped, warned: Arc::default() }, rx)
    }

    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues `event` if there is room; `false` when it was dropped (full, or the publisher is gone).
    pub fn emit(&self, event: VipEvent) -> bool {
        self.push(SpeakerEvent::Vip(event))
    }

    /// Queues an Event on this node's Node, like [`EventSink::emit`].
    pub fn emit_node(&self, event: NodeEvent) -> bool {
        self.push(SpeakerEvent::Node(event))
    }

    fn push(&self, event: SpeakerEvent) -> bool {
        let Some(tx) = &self.tx else { return false };
        match tx.try_send(event) {
            Ok(()) => true,
            Err(TrySendError::Full(e) | TrySendError::Closed(e)) => {
                self.dropped.inc();
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        reason = e.reason(),
                        "Event dropped: the queue to the API server is full (counted in \
                         openelb_speaker_events_dropped_total)"
                    );
                }
                false
            }
        }
    }
}

/// The object references of the Services the speaker knows, for attaching Events (uid included, so that
/// `kubectl describe` finds them). Written by the source at every snapshot, read by the publisher.
#[derive(Debug, Clone, Default)]
pub struct ServiceRefs(Arc<RwLock<HashMap<ServiceKey, ObjectReference>>>);

impl ServiceRefs {
    pub fn replace(&self, refs: HashMap<ServiceKey, ObjectReference>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = refs;
    }

    pub fn get(&self, key: &ServiceKey) -> Option<ObjectReference> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }
}

/// The reference of `node`'s Node object (uid included, so that `kubectl describe node` finds the Events), or
/// why there is none.
async fn node_reference(client: &Client, node: &str) -> Result<ObjectReference, String> {
    // A list by name: the speaker may list Nodes, and needs no `get` for this.
    let params = ListParams::default().fields(&format!("metadata.name={node}"));
    let list = Api::<Node>::all(client.clone()).list(&params).await.map_err(|e| e.to_string())?;
    let found = list.items.into_iter().next().ok_or_else(|| format!("no Node named {node:?}"))?;
    Ok(found.object_ref(&()))
}

/// Publishes queued events until the queue closes (every sink dropped). Events of Services the source no
/// longer knows (deleted) are skipped: there is nothing to attach them to; so are node Events while this
/// node's Node object cannot be found (looked up again for the next one).
pub async fn publish_events(client: Client, node: String, refs: ServiceRefs, mut rx: mpsc::Receiver<SpeakerEvent>) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter { controller: REPORTING_CONTROLLER.to_string(), instance: Some(node.clone()) },
    );
    let mut node_ref: Option<ObjectReference> = None;
    let mut failures: u64 = 0;
    while let Some(ev) = rx.recv().await {
        let (event, reference) = match &ev {
            SpeakerEvent::Vip(v) => {
                let Some(reference) = refs.get(&v.service) else {
                    tracing::debug!(service = %v.service, reason = v.change.reason(), "Service gone; Event not recorded");
                    continue;
                };
                let event = Event {
                    type_: EventType::Normal,
                    reason: v.change.reason().to_string(),
                    note: Some(v.note()),
                    action: v.change.action().to_string(),
                    secondary: None,
                };
                (event, reference)
            }
            SpeakerEvent::Node(n) => {
                if node_ref.is_none() {
                    match tokio::time::timeout(PUBLISH_TIMEOUT, node_reference(&client, &node)).await {
                        Ok(Ok(r)) => node_ref = Some(r),
                        Ok(Err(e)) => tracing::debug!(%node, error = %e, "Node not found; Event not recorded"),
                        Err(_) => tracing::debug!(%node, "Node lookup timed out; Event not recorded"),
                    }
                }
                let Some(reference) = node_ref.clone() else { continue };
                // Not through the recorder: it files Events about a Node where API servers before 1.22 refuse them.
                let source = EventSource { controller: REPORTING_CONTROLLER, instance: &node };
                let text =
                    EventText { warning: true, reason: n.reason.reason(), action: n.reason.action(), note: &n.note };
                let event = openelb_k8s::event::event(&reference, source, text, Timestamp::now());
                let namespace = event.metadata.namespace.clone().unwrap_or_default();
                let api: Api<events::v1::Event> = Api::namespaced(client.clone(), &namespace);
                let write = async { api.create(&PostParams::default(), &event).await.map(|_| ()) };
                let result = tokio::time::timeout(PUBLISH_TIMEOUT, write).await;
                match failed(result) {
                    None => failures = recovered(failures),
                    Some(error) => failures = report_failure(&reference, ev.reason(), &error, failures),
                }
                continue;
            }
        };
        let result = tokio::time::timeout(PUBLISH_TIMEOUT, recorder.publish(&event, &reference)).await;
        match failed(result) {
            None => failures = recovered(failures),
            Some(error) => failures = report_failure(&reference, ev.reason(), &error, failures),
        }
    }
}

/// Why a write did not happen, if it did not.
fn failed<E: std::fmt::Display>(result: Result<Result<(), E>, tokio::time::error::Elapsed>) -> Option<String> {
    match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {}s", PUBLISH_TIMEOUT.as_secs())),
    }
}

/// A write worked: says so once after failures; the failure count starts again.
fn recovered(failures: u64) -> u64 {
    if failures > 0 {
        tracing::info!(failed_before = failures, "recording Events works again");
    }
    0
}

/// The first failure in a row is a warning, the next ones debug lines; returns the new count.
fn report_failure(reference: &ObjectReference, reason: &str, error: &str, failures: u64) -> u64 {
    let object = reference.name.clone().unwrap_or_default();
    if failures == 0 {
        tracing::warn!(%object, reason, %error, "cannot record Event");
    } else {
        tracing::debug!(%object, reason, %error, "cannot record Event");
    }
    failures + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(change: VipChange) -> VipEvent {
        VipEvent {
            service: ServiceKey::new("default", "web"),
            change,
            node: "node-a".into(),
            vip: "192.0.2.91".parse().unwrap(),
            interface: "eth0".into(),
            vrid: Some(7),
        }
    }

    #[test]
    fn notes_name_node_address_and_interface() {
        let a = ev(VipChange::Announced);
        assert_eq!((a.change.reason(), a.change.action()), ("VIPAnnounced", "Announce"));
        assert_eq!(a.note(), "node node-a announces 192.0.2.91 on eth0 (VRRP VRID 7)");
        let w = VipEvent { vrid: None, ..ev(VipChange::Withdrawn) };
        assert_eq!((w.change.reason(), w.change.action()), ("VIPWithdrawn", "Withdraw"));
        assert_eq!(w.note(), "node node-a no longer announces 192.0.2.91 on eth0");
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let dropped = Counter::default();
        let (sink, mut rx) = EventSink::channel(2, dropped.clone());
        assert!(sink.emit(ev(VipChange::Announced)));
        assert!(sink.emit(ev(VipChange::Withdrawn)));
        assert!(!sink.emit(ev(VipChange::Announced)));
        assert_eq!(dropped.get(), 1);
        assert_eq!(rx.try_recv().ok().and_then(SpeakerEvent::vip).map(|e| e.change), Some(VipChange::Announced));
        assert!(sink.emit(ev(VipChange::Announced)), "room again after the publisher took one");
        drop(rx);
        assert!(!sink.emit(ev(VipChange::Announced)), "publisher gone");
        assert_eq!(dropped.get(), 2);
    }

    #[test]
    fn a_disabled_sink_discards_without_counting() {
        let sink = EventSink::disabled();
        assert!(!sink.is_enabled());
        assert!(!sink.emit(ev(VipChange::Announced)));
        assert_eq!(sink.dropped.get(), 0);
    }
}
