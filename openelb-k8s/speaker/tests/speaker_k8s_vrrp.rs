//! VRRP state shared through the API, with real speakers in network namespaces and the real test apiserver (env
//! `KAPI_KUBECONFIG`; root only; ignored otherwise):
//! - an IPv6 group elects exactly one master: IPv6 adverts come from link-local addresses that no Node object
//!   publishes, so each speaker publishes its sources in its Lease and the others accept them from there;
//! - speakers follow the VRID assignment in the ConfigMap `openelb-vrrp`, whenever each of them (re)started.
//!
//! Each node's VRRP loop runs on a thread inside its namespace; its Kubernetes source, shared-state watch, Lease
//! writer and Event publisher run in the host namespace, which reaches the apiserver on 127.0.0.1 (as in
//! speaker_k8s.rs). The speaker Leases and the ConfigMap live in a namespace of the test's own. Object names
//! carry the test's PID; the VIPs are this file's own. Every wait polls with a generous deadline.

use std::net::IpAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1 as corev1;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Config};
use openelb_core::election;
use openelb_core::model::IpFamily;
use openelb_core::vrrp::plan::{self, GroupId, VipInput, VridAssignment};
use openelb_k8s::crd::{Eip, EipProtocol, EipSpec};
use openelb_k8s::serve::Readiness;
use openelb_k8s::vrrp::{ANNOTATION_SOURCES, Published, SpeakerLease};
use openelb_lab::in_netns::enter as enter_netns;
use openelb_lab::segment::CLIENT;
use openelb_lab::{Host, Need, Segment, eventually_with, netns, require};
use openelb_net::linux::LinuxNet;
use openelb_speaker::events::{EVENT_QUEUE, publish_events};
use openelb_speaker::lease::keep_lease;
use openelb_speaker::shared::watch_shared;
use openelb_speaker::source::KubeSource;
use openelb_speaker::{
    AddressSource, Control, EventSink, LocalVrrp, ServiceRefs, SharedVrrp, Speaker, SpeakerConfig, SpeakerMetrics,
    first_snapshot,
};
use serde_json::json;
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot, watch};

const WAIT: Duration = Duration::from_secs(30);
const SERVICES_NS: &str = "default";

/// The apiserver's kubeconfig; panics without root or without an apiserver.
fn prerequisites() -> String {
    require(&[Need::Root, Need::Apiserver]);
    openelb_lab::require::require_kubeconfig()
}

fn ip(args: &[&str]) -> Result<String, String> {
    netns::ip(args).map_err(|e| format!("{e:#}"))
}

fn tracing_init() {
    let filter = std::env::var("SPEAKER_RUST_LOG").unwrap_or_else(|_| "info,kube_client=warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn client(kubeconfig: &str) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await.unwrap();
    Client::try_from(config).unwrap()
}

/// Polls `check` until it gives a value, failing with `what` and the last miss after [`WAIT`].
fn wait_for<T>(what: &str, check: impl FnMut() -> Result<T, String>) -> T {
    eventually_with(what, WAIT, Duration::from_millis(50), check).unwrap_or_else(|e| panic!("timed out: {e}"))
}

/// The Eip CRD, the objects of one test (an Eip holding `vip`, a Ready Node per lab node with only its IPv4
/// InternalIP, as clusters usually have, a Local Service with Endpoints on every node) and a namespace for the
/// speaker Leases and the ConfigMap. Deleted on drop.
struct Objects {
    client: Client,
    handle: tokio::runtime::Handle,
    prefix: String,
    nodes: Vec<String>,
    namespace: String,
}

impl Objects {
    async fn create(client: Client, prefix: &str, vip: &str, lab: &[Host]) -> Objects {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        if crds.get_opt(openelb_k8s::crd::CRD_NAME).await.unwrap().is_none() {
            match crds.create(&PostParams::default(), &openelb_k8s::crd::crd()).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => panic!("creating the Eip CRD: {e}"),
            }
        }
        let eips: Api<Eip> = Api::all(client.clone());
        let t0 = Instant::now();
        while eips.list(&ListParams::default().limit(1)).await.is_err() {
            assert!(t0.elapsed() < WAIT, "the Eip CRD is not served");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let objects = Objects {
            client: client.clone(),
            handle: tokio::runtime::Handle::current(),
            prefix: prefix.to_string(),
            nodes: lab.iter().map(|n| format!("{prefix}-{}", n.name)).collect(),
            namespace: prefix.to_string(),
        };
        let ns: corev1::Namespace = serde_json::from_value(json!({"metadata": {"name": objects.namespace}})).unwrap();
        Api::<corev1::Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.unwrap();
        let eip = Eip::new(
            prefix,
            EipSpec {
                address: vip.to_string(),
                protocol: Some(EipProtocol::Vip),
                interface: Some("eth0".into()),
                ..Default::default()
            },
        );
        eips.create(&PostParams::default(), &eip).await.unwrap();
        for (n, name) in lab.iter().zip(&objects.nodes) {
            let node: corev1::Node = serde_json::from_value(json!({
                "metadata": {"name": name},
                "status": {
                    "addresses": [{"type": "InternalIP", "address": n.ip()}],
                    "conditions": [{"type": "Ready", "status": "True"}]
                }
            }))
            .unwrap();
            Api::<corev1::Node>::all(client.clone()).create(&PostParams::default(), &node).await.unwrap();
        }
        let svc: corev1::Service = serde_json::from_value(json!({
            "metadata": {
                "name": prefix,
                "annotations": {"lb.kubesphere.io/v1alpha1": "openelb"},
                "labels": {"eip.openelb.kubesphere.io/v1alpha2": prefix}
            },
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]}
        }))
        .unwrap();
        let services: Api<corev1::Service> = Api::namespaced(client.clone(), SERVICES_NS);
        services.create(&PostParams::default(), &svc).await.unwrap();
        let addresses: Vec<serde_json::Value> = objects
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| json!({"ip": format!("10.244.{i}.10"), "nodeName": n}))
            .collect();
        let ep: corev1::Endpoints = serde_json::from_value(json!({
            "metadata": {"name": prefix},
            "subsets": [{"addresses": addresses, "ports": [{"port": 8080}]}]
        }))
        .unwrap();
        Api::<corev1::Endpoints>::namespaced(client.clone(), SERVICES_NS)
            .create(&PostParams::default(), &ep)
            .await
            .unwrap();
        // What the controller does once it allocated: the address in the Service's status.
        let patch = json!({"status": {"loadBalancer": {"ingress": [{"ip": vip}]}}});
        services.patch_status(prefix, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        objects
    }

    /// The speaker Leases of this test's nodes, as written.
    async fn leases(&self) -> Vec<SpeakerLease> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        let list = api.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
        list.iter().filter_map(|l| SpeakerLease::from_lease(l).ok().flatten()).collect()
    }

    /// Writes the ConfigMap as the controller would.
    async fn publish(&self, published: &Published) {
        let api: Api<corev1::ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        api.create(&PostParams::default(), &published.to_configmap(&self.namespace)).await.unwrap();
    }
}

impl Drop for Objects {
    fn drop(&mut self) {
        let (client, prefix, nodes, ns) =
            (self.client.clone(), self.prefix.clone(), self.nodes.clone(), self.namespace.clone());
        let cleanup = async move {
            let dp = DeleteParams::default();
            let _ = Api::<corev1::Service>::namespaced(client.clone(), SERVICES_NS).delete(&prefix, &dp).await;
            let _ = Api::<corev1::Endpoints>::namespaced(client.clone(), SERVICES_NS).delete(&prefix, &dp).await;
            let _ = Api::<Eip>::all(client.clone()).delete(&prefix, &dp).await;
            for n in nodes {
                let _ = Api::<corev1::Node>::all(client.clone()).delete(&n, &dp).await;
            }
            let _ = Api::<corev1::Namespace>::all(client).delete(&ns, &dp).await;
        };
        let handle = self.handle.clone();
        let _ = std::thread::spawn(move || handle.block_on(cleanup)).join();
    }
}

/// One node's speaker as the binary composes it for the Kubernetes source: the VRRP loop in the node's
/// namespace, the source, the shared-state watch, the Lease writer and the Event publisher in the host's.
struct NodeSpeaker {
    control: mpsc::Sender<Control>,
    thread: Option<JoinHandle<Result<(), String>>>,
    stop_host: Option<oneshot::Sender<()>>,
    readiness: Readiness,
    metrics: SpeakerMetrics,
}

impl NodeSpeaker {
    fn start(rt: &Runtime, client: Client, lab_ns: &str, node: &str, namespace: &str) -> NodeSpeaker {
        let metrics = SpeakerMetrics::default();
        let readiness = Readiness::default();
        let (tx, mut rx) = mpsc::channel(8);
        let (_relist_tx, relist_rx) = mpsc::channel(1);
        let refs = ServiceRefs::default();
        let (sink, events) = EventSink::channel(EVENT_QUEUE, metrics.events_dropped.clone());
        rt.spawn(publish_events(client.clone(), node.to_string(), refs.clone(), events));
        let (stop_host, stopped) = oneshot::channel::<()>();
        let stopped = futures::FutureExt::shared(async {
            let _ = stopped.await;
        });
        let (shared_tx, shared_rx) = watch::channel(SharedVrrp::default());
        let (local_tx, local_rx) = watch::channel(LocalVrrp::default());
        rt.spawn(watch_shared(client.clone(), namespace.to_string(), shared_tx, stopped.clone()));
        rt.spawn(keep_lease(client.clone(), namespace.to_string(), node.to_string(), local_rx, stopped.clone()));
        let source = KubeSource::new(client).with_refs(refs).with_api_gauge(metrics.api_connected.clone());
        rt.spawn(source.run(tx.clone(), relist_rx, stopped));

        let config = SpeakerConfig { addresses: AddressSource::Ingress, ..SpeakerConfig::new(node) };
        let (lab_ns, ready, m) = (lab_ns.to_string(), readiness.clone(), metrics.clone());
        let thread = std::thread::spawn(move || -> Result<(), String> {
            enter_netns(&lab_ns)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let net = Arc::new(LinuxNet::new().map_err(|e| e.to_string())?);
                let speaker = Speaker::new(net, config)
                    .map_err(|e| e.to_string())?
                    .with_metrics(m)
                    .with_events(sink)
                    .with_readiness(ready)
                    .with_shared(shared_rx, local_tx);
                match first_snapshot(&mut rx).await {
                    Some(cluster) => speaker.run(cluster, rx).await.map_err(|e| e.to_string()),
                    None => Ok(()),
                }
            })
        });
        NodeSpeaker { control: tx, thread: Some(thread), stop_host: Some(stop_host), readiness, metrics }
    }

    fn wait_ready(&self) {
        wait_for("the first plan", || self.readiness.is_ready().then_some(()).ok_or_else(String::new));
    }

    /// VRIDs of the groups this speaker runs (with a state), from its metrics.
    fn vrids(&self) -> Vec<u8> {
        let mut registry = prometheus_client::registry::Registry::default();
        self.metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let mut out: Vec<u8> = text
            .lines()
            .filter(|l| l.starts_with("openelb_speaker_vrrp_state{"))
            .filter_map(|l| l.split("vrid=\"").nth(1)?.split('"').next()?.parse().ok())
            .collect();
        out.sort_unstable();
        out
    }

    fn stop(&mut self) -> Result<(), String> {
        let _ = self.control.try_send(Control::Shutdown);
        let result = match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| Err("speaker thread panicked".into())),
            None => Ok(()),
        };
        if let Some(s) = self.stop_host.take() {
            let _ = s.send(());
        }
        result
    }
}

impl Drop for NodeSpeaker {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Nodes among the lab's that have `vip` on eth0 (IPv4 or IPv6).
fn holders(lab: &Segment, vip: &str) -> Vec<String> {
    lab.nodes()
        .iter()
        .filter(|n| ip(&["-n", &n.ns, "addr", "show", "dev", "eth0"]).is_ok_and(|s| s.contains(&format!(" {vip}/"))))
        .map(|n| n.name.clone())
        .collect()
}

/// Samples the holders of `vip` for `span`: exactly `want` every time.
fn assert_steady(lab: &Segment, vip: &str, want: &str, span: Duration) {
    // Sampling for the whole span is the point: the holder must not change during it.
    let t0 = Instant::now();
    while t0.elapsed() < span {
        assert_eq!(holders(lab, vip), [want], "exactly one holder of {vip}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
#[ignore = "needs root and the test kube-apiserver: KAPI_KUBECONFIG, started by scripts/test.sh"]
fn an_ipv6_group_elects_exactly_one_master_through_the_sources_in_the_speaker_leases() {
    let kc = prerequisites();
    tracing_init();
    let lab = Segment::nodes_and_client("k8s6", 3).unwrap_or_else(|e| panic!("{e:#}"));
    let lab_nodes = lab.nodes();
    for (i, n) in lab_nodes.iter().enumerate() {
        ip(&["-n", &n.ns, "addr", "add", &format!("2001:db8::{}/64", 3 + i), "dev", "eth0", "nodad"]).unwrap();
    }
    ip(&["-n", &lab.host(CLIENT).unwrap().ns, "addr", "add", "2001:db8::100/64", "dev", "eth0", "nodad"]).unwrap();
    let vip = "2001:db8::91";
    let rt = runtime();
    let client = rt.block_on(client(&kc));
    let pfx = format!("oelb-v6-{}", std::process::id());
    let objects = rt.block_on(Objects::create(client.clone(), &pfx, vip, &lab_nodes));

    let mut speakers: Vec<NodeSpeaker> = lab_nodes
        .iter()
        .zip(&objects.nodes)
        .map(|(n, k)| NodeSpeaker::start(&rt, client.clone(), &n.ns, k, &objects.namespace))
        .collect();
    for s in &speakers {
        s.wait_ready();
    }

    // Every speaker publishes its IPv6 link-local source; no Node object shows one.
    let leases = wait_for("three Leases with IPv6 link-local sources", || {
        let leases = rt.block_on(objects.leases());
        let v6 =
            leases.iter().filter(|l| l.sources.iter().any(|s| matches!(s, IpAddr::V6(a) if a.segments()[0] == 0xfe80)));
        if v6.count() == 3 { Ok(leases) } else { Err(format!("{leases:?}")) }
    });
    println!("Leases: {:?}", leases.iter().map(|l| (&l.node, &l.sources)).collect::<Vec<_>>());
    let raw = rt.block_on(Api::<Lease>::namespaced(client.clone(), &objects.namespace).list(&ListParams::default()));
    assert!(
        raw.unwrap().items.iter().all(|l| l
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(ANNOTATION_SOURCES)))
    );

    // The first preference holds the VIP, alone, and keeps holding it; the client reaches it there.
    let vip_ip: IpAddr = vip.parse().unwrap();
    let names: Vec<&str> = objects.nodes.iter().map(String::as_str).collect();
    let first = names.iter().position(|n| *n == election::rank(&vip_ip, &names)[0]).unwrap();
    let first_lab = lab_nodes[first].name.clone();
    wait_for("exactly the first preference to hold the IPv6 VIP", || {
        let h = holders(&lab, vip);
        if h == [first_lab.clone()] { Ok(()) } else { Err(format!("{h:?}")) }
    });
    assert_steady(&lab, vip, &first_lab, Duration::from_secs(2));
    lab.wait_reaches(CLIENT, vip, &lab_nodes[first].mac, WAIT).unwrap();
    // Known peers: three InternalIPs from the Nodes, three link-local sources from the Leases.
    for s in &speakers {
        wait_for("six known peers", || match s.metrics.known_peers.get() {
            6 => Ok(()),
            n => Err(n.to_string()),
        });
    }

    // The holder goes: exactly one of the others takes over.
    assert_eq!(speakers[first].stop(), Ok(()));
    wait_for("one other node to take the IPv6 VIP over", || {
        let h = holders(&lab, vip);
        if h.len() == 1 && h[0] != first_lab { Ok(()) } else { Err(format!("{h:?}")) }
    });
    for s in &mut speakers {
        let _ = s.stop();
    }
    drop(speakers);
    drop(objects);
}

#[test]
#[ignore = "needs root and the test kube-apiserver: KAPI_KUBECONFIG, started by scripts/test.sh"]
fn speakers_restarted_at_different_moments_follow_the_published_vrids() {
    let kc = prerequisites();
    tracing_init();
    let lab = Segment::nodes_and_client("k8sp", 2).unwrap_or_else(|e| panic!("{e:#}"));
    let lab_nodes = lab.nodes();
    let vip = "192.0.2.202";
    let rt = runtime();
    let client = rt.block_on(client(&kc));
    let pfx = format!("oelb-pub-{}", std::process::id());
    let objects = rt.block_on(Objects::create(client.clone(), &pfx, vip, &lab_nodes));

    // The group as every speaker plans it, and a VRID it would not pick by itself (as after an earlier
    // collision): the published one.
    let vip_ip: IpAddr = vip.parse().unwrap();
    let names: Vec<&str> = objects.nodes.iter().map(String::as_str).collect();
    let mut candidates: Vec<String> = objects.nodes.clone();
    candidates.sort();
    let id = GroupId {
        interface: "eth0".into(),
        family: IpFamily::V4,
        first: election::rank(&vip_ip, &names)[0].to_string(),
        candidates,
        part: 0,
    };
    let input = VipInput {
        vip: vip_ip,
        interface: "eth0".into(),
        candidates: election::rank(&vip_ip, &names).into_iter().map(str::to_string).collect(),
    };
    let own = plan::plan(&[input], &Default::default(), &Default::default());
    let natural = own.group(&id).expect("the speakers' group").vrid;
    let published_vrid = if natural == 255 { 100 } else { natural + 1 };
    let published = Published {
        vrids: plan::DEFAULT_VRIDS,
        offset: 0,
        assignment: VridAssignment { vrids: [(id.clone(), published_vrid)].into() },
        foreign: Vec::new(),
    };
    rt.block_on(objects.publish(&published));

    let lab_ns = |i: usize| lab_nodes[i].ns.clone();
    let mut a = NodeSpeaker::start(&rt, client.clone(), &lab_ns(0), &objects.nodes[0], &objects.namespace);
    a.wait_ready();
    assert_eq!(a.vrids(), [published_vrid], "the first plan follows the published VRID, not {natural}");
    // The other node starts later, then the first restarts: each plan follows the publication.
    let b = NodeSpeaker::start(&rt, client.clone(), &lab_ns(1), &objects.nodes[1], &objects.namespace);
    b.wait_ready();
    assert_eq!(b.vrids(), [published_vrid]);
    assert_eq!(a.stop(), Ok(()));
    drop(a);
    let a = NodeSpeaker::start(&rt, client.clone(), &lab_ns(0), &objects.nodes[0], &objects.namespace);
    a.wait_ready();
    assert_eq!(a.vrids(), [published_vrid]);

    // Agreeing, they hear each other: exactly the first preference holds the VIP.
    let first = names.iter().position(|n| *n == id.first).unwrap();
    let first_lab = lab_nodes[first].name.clone();
    wait_for("exactly the first preference to hold the VIP", || {
        let h = holders(&lab, vip);
        if h == [first_lab.clone()] { Ok(()) } else { Err(format!("{h:?}")) }
    });
    assert_steady(&lab, vip, &first_lab, Duration::from_secs(1));
    drop(a);
    drop(b);
    drop(objects);
}
