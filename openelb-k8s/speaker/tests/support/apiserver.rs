//! The speaker with its Kubernetes source against the real test apiserver (env `KAPI_KUBECONFIG`), as
//! speaker_k8s and speaker_k8s_vrrp run it: the objects of one test (deleted on drop) and one node's speaker as
//! the binary composes it, its VRRP loop on a thread inside the node's namespace and everything that talks to
//! the API in the host namespace, which reaches the apiserver on 127.0.0.1 (a new namespace cannot).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1 as corev1;
use k8s_openapi::api::events::v1 as eventsv1;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Config};
use openelb_k8s::crd::{Eip, EipProtocol, EipSpec};
use openelb_k8s::serve::{self, Readiness};
use openelb_k8s::vrrp::{Published, SpeakerLease};
use openelb_lab::in_netns::enter as enter_netns;
use openelb_lab::{Host, Need, Segment, eventually, require};
use openelb_net::linux::LinuxNet;
use openelb_speaker::events::{EVENT_QUEUE, publish_events};
use openelb_speaker::lease::keep_lease;
use openelb_speaker::shared::watch_shared;
use openelb_speaker::source::KubeSource;
use openelb_speaker::{
    AddressSource, Control, EventSink, LocalVrrp, ServiceRefs, SharedVrrp, Speaker, SpeakerConfig, SpeakerMetrics,
    first_snapshot,
};
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot, watch};

/// Deadline of every wait: generous, nothing here asserts timings.
pub const WAIT: Duration = Duration::from_secs(30);
/// Where the tests' Services live.
pub const SERVICES_NS: &str = "default";

/// What every test starts with: a segment of nodes `node-a`.. (192.0.2.3..) and a client (.100), a runtime,
/// and a client of the apiserver, which serves the Eip CRD. Panics without root or without an apiserver.
pub struct Setup {
    pub kubeconfig: String,
    pub lab: Segment,
    pub rt: Runtime,
    pub client: Client,
}

impl Setup {
    pub fn new(tag: &str, nodes: u8) -> Setup {
        require(&[Need::Root, Need::Apiserver]);
        let kubeconfig = openelb_lab::require::require_kubeconfig();
        let filter = std::env::var("SPEAKER_RUST_LOG").unwrap_or_else(|_| "info,kube_client=warn".into());
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        let lab = Segment::nodes_and_client(tag, nodes).unwrap_or_else(|e| panic!("{e:#}"));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let client = rt.block_on(async {
            let client = Client::try_from(config_from(&kubeconfig).await).unwrap();
            ensure_crd(&client).await;
            client
        });
        Setup { kubeconfig, lab, rt, client }
    }
}

pub async fn config_from(kubeconfig: &str) -> Config {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await.unwrap()
}

/// Installs the Eip CRD unless present, and waits until Eips can be listed.
async fn ensure_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    if crds.get_opt(openelb_k8s::crd::CRD_NAME).await.unwrap().is_none() {
        match crds.create(&PostParams::default(), &openelb_k8s::crd::crd()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("creating the Eip CRD: {e}"),
        }
    }
    let eips: Api<Eip> = Api::all(client.clone());
    let t0 = Instant::now();
    while eips.list(&ListParams::default().limit(1)).await.is_err() {
        assert!(t0.elapsed() < WAIT, "the Eip CRD is not served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Names of one test's objects: they carry the test's PID, so runs against a shared apiserver do not meet.
pub fn prefix(tag: &str) -> String {
    format!("oelb-spk-{}-{tag}", std::process::id())
}

/// The objects of one test: an Eip `prefix` holding `vip` alone, a Ready Node `prefix-<lab node>` per lab node
/// with only its IPv4 InternalIP (as clusters usually have), and a Local Service `prefix-svc` with Endpoints on
/// every node, without ingress yet; with [`Objects::create_shared`] also a namespace `prefix` for the speaker
/// Leases and the VRID ConfigMap. Deleted on drop.
pub struct Objects {
    client: Client,
    handle: tokio::runtime::Handle,
    pub eip: String,
    pub service: String,
    pub nodes: Vec<String>,
    namespace: Option<String>,
}

impl Objects {
    pub async fn create(client: Client, prefix: &str, vip: &str, lab: &[Host]) -> Objects {
        Self::create_in(client, prefix, vip, lab, None).await
    }

    /// [`Objects::create`], with the namespace for the state the speakers share.
    pub async fn create_shared(client: Client, prefix: &str, vip: &str, lab: &[Host]) -> Objects {
        Self::create_in(client, prefix, vip, lab, Some(prefix.to_string())).await
    }

    async fn create_in(client: Client, prefix: &str, vip: &str, lab: &[Host], namespace: Option<String>) -> Objects {
        let objects = Objects {
            client: client.clone(),
            handle: tokio::runtime::Handle::current(),
            eip: prefix.to_string(),
            service: format!("{prefix}-svc"),
            nodes: lab.iter().map(|n| format!("{prefix}-{}", n.name)).collect(),
            namespace,
        };
        if let Some(name) = &objects.namespace {
            let ns: corev1::Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
            Api::<corev1::Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.unwrap();
        }
        let mut eip = Eip::new(
            &objects.eip,
            EipSpec {
                address: vip.to_string(),
                protocol: Some(EipProtocol::Vip),
                interface: Some("eth0".into()),
                ..Default::default()
            },
        );
        eip.metadata.labels = Some([("test.openelb.kubesphere.io/speaker-k8s".to_string(), prefix.to_string())].into());
        Api::<Eip>::all(client.clone()).create(&PostParams::default(), &eip).await.unwrap();
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
                "name": objects.service,
                "annotations": {"lb.kubesphere.io/v1alpha1": "openelb"},
                "labels": {"eip.openelb.kubesphere.io/v1alpha2": objects.eip}
            },
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]}
        }))
        .unwrap();
        objects.services().create(&PostParams::default(), &svc).await.unwrap();
        let addresses: Vec<serde_json::Value> = objects
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| json!({"ip": format!("10.244.{i}.10"), "nodeName": n}))
            .collect();
        let ep: corev1::Endpoints = serde_json::from_value(json!({
            "metadata": {"name": objects.service},
            "subsets": [{"addresses": addresses, "ports": [{"port": 8080}]}]
        }))
        .unwrap();
        Api::<corev1::Endpoints>::namespaced(client, SERVICES_NS).create(&PostParams::default(), &ep).await.unwrap();
        objects
    }

    fn services(&self) -> Api<corev1::Service> {
        Api::namespaced(self.client.clone(), SERVICES_NS)
    }

    /// The namespace of the speaker Leases and the VRID ConfigMap; panics unless made by
    /// [`Objects::create_shared`].
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().expect("objects made by Objects::create_shared")
    }

    /// What the controller does once it allocated: the address in the Service's status.
    pub async fn set_ingress(&self, ips: &[&str]) {
        let ingress: Vec<serde_json::Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        let ingress = if ingress.is_empty() { serde_json::Value::Null } else { json!(ingress) };
        let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
        self.services().patch_status(&self.service, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    }

    /// The speaker's Events on the Service: (reason, note, reporting instance).
    pub async fn events(&self) -> Vec<(String, String, String)> {
        let api: Api<eventsv1::Event> = Api::namespaced(self.client.clone(), SERVICES_NS);
        let list = api.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(self.service.as_str()))
            .filter(|e| e.reporting_controller.as_deref() == Some("openelb-speaker"))
            .map(|e| {
                (e.reason.unwrap_or_default(), e.note.unwrap_or_default(), e.reporting_instance.unwrap_or_default())
            })
            .collect()
    }

    /// The speaker Leases of this test's nodes, as written.
    pub async fn leases(&self) -> Vec<SpeakerLease> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), self.namespace());
        let list = api.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
        list.iter().filter_map(|l| SpeakerLease::from_lease(l).ok().flatten()).collect()
    }

    /// Writes the VRID ConfigMap as the controller would.
    pub async fn publish(&self, published: &Published) {
        let api: Api<corev1::ConfigMap> = Api::namespaced(self.client.clone(), self.namespace());
        api.create(&PostParams::default(), &published.to_configmap(self.namespace())).await.unwrap();
    }
}

impl Drop for Objects {
    fn drop(&mut self) {
        let client = self.client.clone();
        let (eip, service, nodes, namespace) =
            (self.eip.clone(), self.service.clone(), self.nodes.clone(), self.namespace.clone());
        let cleanup = async move {
            let dp = DeleteParams::default();
            let _ = Api::<corev1::Service>::namespaced(client.clone(), SERVICES_NS).delete(&service, &dp).await;
            let _ = Api::<corev1::Endpoints>::namespaced(client.clone(), SERVICES_NS).delete(&service, &dp).await;
            let _ = Api::<Eip>::all(client.clone()).delete(&eip, &dp).await;
            for n in nodes {
                let _ = Api::<corev1::Node>::all(client.clone()).delete(&n, &dp).await;
            }
            if let Some(ns) = namespace {
                let _ = Api::<corev1::Namespace>::all(client).delete(&ns, &dp).await;
            }
        };
        // Drop runs outside the runtime (tests are synchronous): a fresh thread may block on its handle.
        let handle = self.handle.clone();
        let _ = std::thread::spawn(move || handle.block_on(cleanup)).join();
    }
}

/// One node's speaker: the VRRP loop in the node's namespace; its source, Event publisher and metrics server
/// (on 127.0.0.1) in the host's, and with a shared-state namespace also the watch of the VRID ConfigMap and
/// the writer of its speaker Lease.
pub struct NodeSpeaker {
    control: mpsc::Sender<Control>,
    thread: Option<JoinHandle<Result<(), String>>>,
    stop_host: Option<oneshot::Sender<()>>,
    metrics_addr: SocketAddr,
    readiness: Readiness,
    pub metrics: SpeakerMetrics,
}

impl NodeSpeaker {
    /// The speaker of Node `node` in namespace `lab_ns`; `shared`: the namespace of the speaker Leases and the
    /// VRID ConfigMap, or `None` for a speaker that plans alone.
    pub fn start(rt: &Runtime, client: Client, lab_ns: &str, node: &str, shared: Option<&str>) -> NodeSpeaker {
        let metrics = SpeakerMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.register_api(&mut registry);
        let readiness = Readiness::default();
        let (stop_host, stopped) = oneshot::channel::<()>();
        let stopped = futures::FutureExt::shared(async {
            let _ = stopped.await;
        });
        let (metrics_addr, server) = rt
            .block_on(serve::bind(
                "127.0.0.1:0".parse().unwrap(),
                Arc::new(registry),
                readiness.clone(),
                stopped.clone(),
            ))
            .unwrap();
        rt.spawn(server);

        let (tx, mut rx) = mpsc::channel(8);
        let (_relist_tx, relist_rx) = mpsc::channel(1);
        let refs = ServiceRefs::default();
        let (sink, events) = EventSink::channel(EVENT_QUEUE, metrics.events_dropped.clone());
        rt.spawn(publish_events(client.clone(), node.to_string(), refs.clone(), events));
        let with_shared = shared.map(|namespace| {
            let (shared_tx, shared_rx) = watch::channel(SharedVrrp::default());
            let (local_tx, local_rx) = watch::channel(LocalVrrp::default());
            rt.spawn(watch_shared(client.clone(), namespace.to_string(), shared_tx, stopped.clone()));
            rt.spawn(keep_lease(client.clone(), namespace.to_string(), node.to_string(), local_rx, stopped.clone()));
            (shared_rx, local_tx)
        });
        let source = KubeSource::new(client)
            .with_refs(refs)
            .with_api_gauge(metrics.api_connected.clone())
            .with_undecodable_counter(metrics.objects_undecodable.clone());
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
                let mut speaker = Speaker::new(net, config)
                    .map_err(|e| e.to_string())?
                    .with_metrics(m)
                    .with_events(sink)
                    .with_readiness(ready);
                if let Some((shared_rx, local_tx)) = with_shared {
                    speaker = speaker.with_shared(shared_rx, local_tx);
                }
                match first_snapshot(&mut rx).await {
                    Some(cluster) => speaker.run(cluster, rx).await.map_err(|e| e.to_string()),
                    None => Ok(()),
                }
            })
        });
        NodeSpeaker { control: tx, thread: Some(thread), stop_host: Some(stop_host), metrics_addr, readiness, metrics }
    }

    /// A speaker per lab node, each for the Node `objects` made for it (sharing state when `objects` has a
    /// namespace for it), once each applied its first plan.
    pub fn start_ready(rt: &Runtime, client: &Client, lab: &[Host], objects: &Objects) -> Vec<NodeSpeaker> {
        let shared = objects.namespace.as_deref();
        let speakers: Vec<NodeSpeaker> = lab
            .iter()
            .zip(&objects.nodes)
            .map(|(n, k)| NodeSpeaker::start(rt, client.clone(), &n.ns, k, shared))
            .collect();
        for s in &speakers {
            s.wait_ready();
        }
        speakers
    }

    /// `/metrics` as served.
    pub fn metrics_text(&self) -> String {
        let mut s = TcpStream::connect(self.metrics_addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// The value of the first sample whose line starts with `series` (name and labels as far as given).
    pub fn sample(&self, series: &str) -> Option<f64> {
        self.metrics_text().lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    pub fn wait_sample(&self, series: &str, want: f64) {
        let seen = eventually(WAIT, Duration::from_millis(50), || (self.sample(series) == Some(want)).then_some(()));
        assert!(seen.is_ok(), "{series} never became {want}:\n{}", self.metrics_text());
    }

    pub fn wait_ready(&self) {
        let ready = eventually(WAIT, Duration::from_millis(20), || self.readiness.is_ready().then_some(()));
        assert!(ready.is_ok(), "the first plan was never applied");
    }

    /// VRIDs of the groups this speaker runs (with a state), from its metrics.
    pub fn vrids(&self) -> Vec<u8> {
        let mut out: Vec<u8> = self
            .metrics_text()
            .lines()
            .filter(|l| l.starts_with("openelb_speaker_vrrp_state{"))
            .filter_map(|l| l.split("vrid=\"").nth(1)?.split('"').next()?.parse().ok())
            .collect();
        out.sort_unstable();
        out
    }

    /// SIGTERM's path: priority-0 adverts, VIPs removed; returns how the loop ended.
    pub fn stop(&mut self) -> Result<(), String> {
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
