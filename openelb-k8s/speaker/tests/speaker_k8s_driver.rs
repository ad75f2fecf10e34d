//! What the speaker's loop adds for the Kubernetes source, over a recording fake backend in tokio's paused
//! (virtual) time: no root, no network, no API server. Addresses come from the Services' ingress only; a VIP
//! that appears on a reload is taken by its first preference at once instead of after Master_Down_Interval
//! (the agent's rule for VIPs new to the plan; the first plan after start still waits); Events and metrics
//! follow what the node holds, and a full Event queue never holds the loop up.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openelb_core::model::{Cluster, ServiceKey};
use openelb_k8s::manifest::Manifests;
use openelb_k8s::serve::Readiness;
use openelb_speaker::{
    AddressSource, Control, EventSink, Speaker, SpeakerConfig, SpeakerEvent, SpeakerMetrics, VipChange, VipEvent,
};
use prometheus_client::registry::Registry;
use support::fake_net::{FakeNet, Op};
use support::{VIP, vip};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// An Eip on eth0, Services `a` (and `b` when `shared`) with `ingress`, and node-a alone: it is the first
/// preference of everything.
fn cluster(ingress: &[&str], shared: bool) -> Cluster {
    let mut y = String::from(
        "apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata:\n  name: vip-eip\nspec:\n  \
         address: 192.0.2.91-192.0.2.95\n  protocol: vip\n  interface: eth0\n---\n\
         apiVersion: v1\nkind: Node\nmetadata:\n  name: node-a\nstatus:\n  addresses:\n    - type: InternalIP\n      \
         address: 192.0.2.3\n  conditions:\n    - type: Ready\n      status: \"True\"\n",
    );
    for name in if shared { &["a", "b"][..] } else { &["a"][..] } {
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n  annotations:\n    \
             lb.kubesphere.io/v1alpha1: openelb\nspec:\n  type: LoadBalancer\n  ports:\n    - port: 80\n"
        ));
    }
    let mut c = Manifests::parse_str(Path::new("t.yaml"), &y).unwrap().to_cluster().unwrap();
    for s in &mut c.services {
        s.ingress = ingress.iter().map(|i| i.to_string()).collect();
    }
    c
}

struct Running {
    net: Arc<FakeNet>,
    control: mpsc::Sender<Control>,
    task: tokio::task::JoinHandle<Result<(), openelb_speaker::SpeakerError>>,
    metrics: SpeakerMetrics,
    registry: Registry,
    readiness: Readiness,
}

fn start(initial: Cluster, events: EventSink) -> Running {
    let (net, _) = FakeNet::new(&[], false);
    let metrics = SpeakerMetrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let readiness = Readiness::default();
    let config = SpeakerConfig { addresses: AddressSource::Ingress, ..SpeakerConfig::new("node-a") };
    let speaker = Speaker::new(Arc::clone(&net), config)
        .unwrap()
        .with_metrics(metrics.clone())
        .with_events(events)
        .with_readiness(readiness.clone());
    let (control, rx) = mpsc::channel(4);
    let task = tokio::spawn(speaker.run(initial, rx));
    Running { net, control, task, metrics, registry, readiness }
}

impl Running {
    fn text(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).unwrap();
        out
    }

    async fn stop(self) {
        self.control.send(Control::Shutdown).await.unwrap();
        self.task.await.unwrap().unwrap();
        assert!(!self.readiness.is_ready(), "not ready once shut down");
    }
}

#[tokio::test(start_paused = true)]
async fn without_ingress_nothing_is_announced_and_a_written_address_is_taken_at_once() {
    let run = start(cluster(&[], false), EventSink::disabled());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(run.readiness.is_ready(), "ready once the first plan is applied");
    assert_eq!(run.net.first(&Op::Add(vip())), None, "no address was written: nothing to announce");
    assert_eq!(run.metrics.vips.get(), 0);

    let written = Instant::now();
    run.control.send(Control::Reload(Box::new(cluster(&[VIP], false)))).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let added = run.net.first(&Op::Add(vip())).expect("the written address is announced");
    // Master_Down_Interval is 3 × 100 ms + skew; a VIP nobody can hold yet is taken while the reload is applied,
    // at the same virtual instant (not even Skew_Time, 2.3 ms at priority 250, passes).
    assert_eq!(added, written, "taken {:?} after the reload", added - written);
    assert_eq!(run.metrics.vips.get(), 1);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_first_plan_after_start_still_waits_master_down_interval() {
    let started = Instant::now();
    let run = start(cluster(&[VIP], false), EventSink::disabled());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let added = run.net.first(&Op::Add(vip())).expect("announced after Master_Down_Interval");
    assert!(added - started >= Duration::from_millis(300), "another node may hold it: {:?}", added - started);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn events_and_metrics_follow_what_the_node_holds() {
    let dropped = prometheus_client::metrics::counter::Counter::default();
    let (sink, mut events) = EventSink::channel(16, dropped.clone());
    let run = start(cluster(&[], true), sink);
    tokio::time::sleep(Duration::from_millis(500)).await;
    run.control.send(Control::Reload(Box::new(cluster(&[VIP], true)))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut got: Vec<VipEvent> = Vec::new();
    while let Ok(e) = events.try_recv() {
        got.extend(e.vip());
    }
    let services: Vec<&str> = got.iter().map(|e| e.service.name.as_str()).collect();
    assert_eq!(services, ["a", "b"], "one VIPAnnounced per sharer: {got:?}");
    for e in &got {
        assert_eq!(e.change, VipChange::Announced);
        assert_eq!((e.node.as_str(), e.vip, e.interface.as_str()), ("node-a", vip(), "eth0"));
        assert!(e.vrid.is_some());
    }
    let vrid = got[0].vrid.unwrap();
    let group = format!(r#"{{vrid="{vrid}",interface="eth0",family="IPv4"}}"#);
    let t = run.text();
    assert!(t.contains(&format!("openelb_speaker_vrrp_state{group} 2")), "{t}");
    assert!(t.contains(&format!("openelb_speaker_garps_total{group} 3")), "a burst of three: {t}");
    assert!(t.contains("openelb_speaker_vips 1"), "{t}");
    assert!(t.contains("openelb_speaker_reloads_total 1"), "{t}");

    // The controller takes the address back from one sharer: its withdrawal only; then from the other.
    let mut only_a = cluster(&[VIP], true);
    only_a.services.retain(|s| s.name == "a");
    run.control.send(Control::Reload(Box::new(only_a))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let e = events.try_recv().ok().and_then(SpeakerEvent::vip).expect("a withdrawal for b");
    assert_eq!((e.service, e.change), (ServiceKey::new("default", "b"), VipChange::Withdrawn));
    assert!(events.try_recv().is_err(), "a keeps its VIP: no Event for it");

    run.control.send(Control::Reload(Box::new(cluster(&[], true)))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let e = events.try_recv().ok().and_then(SpeakerEvent::vip).expect("a withdrawal for a");
    assert_eq!((e.service.name.as_str(), e.change), ("a", VipChange::Withdrawn));
    assert!(run.net.first(&Op::Remove(vip())).is_some());
    let t = run.text();
    assert!(t.contains("openelb_speaker_vips 0"), "{t}");
    assert!(!t.contains(&format!("openelb_speaker_vrrp_state{group}")), "a group that is gone has no state: {t}");
    assert_eq!(dropped.get(), 0);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_full_event_queue_drops_and_counts_but_the_vip_is_taken_all_the_same() {
    let dropped = prometheus_client::metrics::counter::Counter::default();
    // Nobody reads the queue, and it has room for one: the second sharer's Event cannot go in.
    let (sink, _events) = EventSink::channel(1, dropped.clone());
    let run = start(cluster(&[], true), sink);
    tokio::time::sleep(Duration::from_millis(500)).await;
    run.control.send(Control::Reload(Box::new(cluster(&[VIP], true)))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(run.net.first(&Op::Add(vip())).is_some());
    assert_eq!(dropped.get(), 1);
    run.stop().await;
}
