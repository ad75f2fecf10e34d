//! The speaker with its Kubernetes source against the real test apiserver (env `KAPI_KUBECONFIG`), each node's
//! speaker in a network namespace of a harness segment. Needs root and the test apiserver (ignored otherwise;
//! scripts/test.sh starts the apiserver and runs them).
//!
//! How the namespaces reach the API server: the apiserver listens on 127.0.0.1 of the host namespace, which a
//! new namespace cannot reach. The speaker library is split the way the binary composes it, so the test runs
//! each node's pieces where they belong: the VRRP loop with its `LinuxNet` backend on a thread that entered the
//! node's namespace (setns(2) on that thread; its tokio runtime's workers inherit the namespace), and that
//! node's Kubernetes source, Event publisher and metrics server on a runtime in the host namespace. They talk
//! over the same `Control` channel as in the binary. Nothing in the host network is touched, and the metrics
//! endpoint is reachable from the test on 127.0.0.1.
//!
//! No controller runs: the test writes the Service's `status.loadBalancer.ingress` itself, as the controller
//! would. Object names carry the test's PID and the VIPs (192.0.2.201, .202) are the tests' own, so runs
//! against a shared apiserver do not see each other's addresses. Local traffic policy with Endpoints on the
//! lab's nodes keeps other tests' Nodes out of the candidates. Every wait polls with a generous timeout:
//! nothing here asserts timings.

mod support;

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use openelb_core::election;
use openelb_k8s::crd::Eip;
use openelb_lab::in_netns::enter as enter_netns;
use openelb_lab::{Segment, eventually, netns};
use openelb_net::linux::LinuxNet;
use openelb_net::ops::{IfaceSpec, NetOps};
use openelb_speaker::VipChange;
use serde_json::json;
use support::apiserver::{NodeSpeaker, Objects, Setup, WAIT, config_from, prefix};

/// Whether `node`'s eth0 carries `vip` as a /32 with the label openelb gives its IPv4 VIPs.
fn has_marked_ip(lab: &Segment, node: &str, vip: &str) -> bool {
    let Some(h) = lab.host(node) else { return false };
    netns::ip_in(&h.ns, &["addr", "show", "dev", "eth0"])
        .is_ok_and(|s| s.lines().any(|l| l.contains(&format!("inet {vip}/32")) && l.trim_end().ends_with("eth0:oelb")))
}

#[test]
#[ignore = "needs root and the test kube-apiserver: KAPI_KUBECONFIG, started by scripts/test.sh"]
fn the_vip_follows_the_ingress_the_controller_wrote() {
    let Setup { lab, rt, client, .. } = Setup::new("k8sv", 2);
    let lab_nodes = lab.nodes();
    let vip = "192.0.2.201";
    let objects = rt.block_on(Objects::create(client.clone(), &prefix("v"), vip, &lab_nodes));
    let k8s_names = objects.nodes.clone();
    let lab_names: Vec<String> = lab_nodes.iter().map(|n| n.name.clone()).collect();

    let mut speakers = NodeSpeaker::start_ready(&rt, &client, &lab_nodes, &objects);

    // A Service of ours without an address: nothing is announced, whatever the pool has free. Watching for a
    // second is the point: nothing may appear during it.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(1) {
        assert!(lab.holders_of(vip, &lab_names).is_empty(), "announced before the controller wrote an address");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Counted from here: objects other test binaries left in a shared apiserver may give these nodes VIPs too.
    let mut held_before = Vec::new();
    for s in &speakers {
        assert_eq!(s.sample("openelb_speaker_api_connected "), Some(1.0));
        held_before.push(s.sample("openelb_speaker_vips ").expect("the vips gauge"));
    }

    // The controller writes the address: the first preference holds it, marked as ours, and the client gets there.
    let vip_ip: IpAddr = vip.parse().unwrap();
    let refs: Vec<&str> = k8s_names.iter().map(String::as_str).collect();
    let first_k8s = election::rank(&vip_ip, &refs)[0].to_string();
    let first = k8s_names.iter().position(|k| *k == first_k8s).unwrap();
    let (first_lab, other_lab) = (lab_names[first].clone(), lab_names[1 - first].clone());
    let written = Instant::now();
    rt.block_on(objects.set_ingress(&[vip]));
    lab.wait_holders_of(vip, &lab_names, &[&first_lab], WAIT).unwrap();
    lab.wait_reaches("client", vip, &lab.host(&first_lab).unwrap().mac.clone(), WAIT).unwrap();
    eprintln!("ingress written → client reaches {vip} via {first_lab}: {:?} (informational)", written.elapsed());
    assert!(has_marked_ip(&lab, &first_lab, vip), "the VIP must carry openelb's label");
    let ns = lab.host(&first_lab).unwrap().ns.clone();
    let ours = std::thread::spawn(move || -> Result<Vec<IpAddr>, String> {
        enter_netns(&ns)?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(async {
            let net = LinuxNet::new().map_err(|e| e.to_string())?;
            let eth0 = net.resolve(&IfaceSpec::Name("eth0".into())).await.map_err(|e| e.to_string())?;
            net.list_our_vips(&eth0).await.map_err(|e| e.to_string())
        })
    })
    .join()
    .unwrap()
    .unwrap();
    assert!(ours.contains(&vip_ip), "the VIP must carry openelb's address protocol mark: {ours:?}");

    // An Event on the Service names the node, the address, the interface and the group's VRID.
    let mut events = Vec::new();
    let (note, instance) = eventually(WAIT, Duration::from_millis(100), || {
        events = rt.block_on(objects.events());
        events
            .iter()
            .find(|(reason, _, _)| reason == VipChange::Announced.reason())
            .map(|(_, n, i)| (n.clone(), i.clone()))
    })
    .unwrap_or_else(|e| panic!("no VIPAnnounced Event ({e}): {events:?}"));
    assert!(note.contains(&first_k8s) && note.contains(vip) && note.contains("eth0"), "{note}");
    assert_eq!(instance, first_k8s);
    let vrid = note.split("VRID ").nth(1).and_then(|r| r.trim_end_matches(')').parse::<u8>().ok());
    let vrid = vrid.unwrap_or_else(|| panic!("no VRID in {note:?}"));

    // Metrics: the holder runs that group as master, the other node as backup, hearing the master's adverts.
    let group = format!(r#"{{vrid="{vrid}",interface="eth0",family="IPv4"}}"#);
    let holder = &speakers[first];
    holder.wait_sample(&format!("openelb_speaker_vrrp_state{group}"), 2.0);
    holder.wait_sample("openelb_speaker_vips ", held_before[first] + 1.0);
    assert!(holder.sample(&format!("openelb_speaker_vrrp_adverts_sent_total{group}")).is_some_and(|n| n > 0.0));
    assert!(holder.sample(&format!("openelb_speaker_garps_total{group}")).is_some_and(|n| n > 0.0));
    assert!(holder.sample(&format!("openelb_speaker_vrrp_transitions_total{group}")).is_some_and(|n| n > 0.0));
    let backup = &speakers[1 - first];
    backup.wait_sample(&format!("openelb_speaker_vrrp_state{group}"), 1.0);
    let heard = eventually(WAIT, Duration::from_millis(50), || {
        backup
            .sample(&format!("openelb_speaker_vrrp_adverts_received_total{group}"))
            .is_some_and(|n| n > 0.0)
            .then_some(())
    });
    assert!(heard.is_ok(), "the backup never heard an advert:\n{}", backup.metrics_text());

    // The controller takes the address away: the VIP goes, and the withdrawal is recorded.
    rt.block_on(objects.set_ingress(&[]));
    lab.wait_holders_of(vip, &lab_names, &[], WAIT).unwrap();
    holder.wait_sample("openelb_speaker_vips ", held_before[first]);
    let withdrawn = eventually(WAIT, Duration::from_millis(100), || {
        let events = rt.block_on(objects.events());
        events.iter().any(|(r, n, _)| r == VipChange::Withdrawn.reason() && n.contains(vip)).then_some(())
    });
    assert!(withdrawn.is_ok(), "no VIPWithdrawn Event");
    assert!(lab.holders_of(vip, &[other_lab]).is_empty());

    for s in &mut speakers {
        assert_eq!(s.stop(), Ok(()));
    }
    drop(speakers);
    drop(objects);
}

/// A TCP relay to the apiserver that the test can cut (every connection reset, new ones refused) and restore.
struct Relay {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c, s, k) = (Arc::clone(&cut), Arc::clone(&stop), Arc::clone(&conns));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((down, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                if c.load(Ordering::Relaxed) {
                    continue; // dropped: the client sees the connection closed at once
                }
                let _ = down.set_nonblocking(false);
                let Ok(up) = TcpStream::connect(upstream) else { continue };
                let pairs = [(down.try_clone(), up.try_clone()), (up.try_clone(), down.try_clone())];
                {
                    let mut list = k.lock().unwrap();
                    list.extend([down, up]);
                }
                for pair in pairs {
                    if let (Ok(mut from), Ok(mut to)) = pair {
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut from, &mut to);
                            let _ = to.shutdown(std::net::Shutdown::Both);
                        });
                    }
                }
            }
        });
        Relay { addr, cut, stop, conns, thread: Some(thread) }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::Relaxed);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
#[ignore = "needs root and the test kube-apiserver: KAPI_KUBECONFIG, started by scripts/test.sh"]
fn without_the_api_server_the_vips_stay_and_failover_goes_on() {
    let Setup { kubeconfig, lab, rt, client } = Setup::new("k8sa", 2);
    let lab_nodes = lab.nodes();
    let vip = "192.0.2.202";
    let (relay, relayed) = rt.block_on(async {
        let config = config_from(&kubeconfig).await;
        let upstream =
            format!("{}:{}", config.cluster_url.host().unwrap(), config.cluster_url.port_u16().unwrap_or(443));
        let upstream: SocketAddr = upstream.parse().expect("the test apiserver listens on an IP address");
        let relay = Relay::start(upstream);
        let mut via_relay = config.clone();
        via_relay.cluster_url = format!("https://{}", relay.addr).parse().unwrap();
        (relay, Client::try_from(via_relay).unwrap())
    });
    let objects = rt.block_on(Objects::create(client.clone(), &prefix("a"), vip, &lab_nodes));
    rt.block_on(objects.set_ingress(&[vip]));
    let k8s_names = objects.nodes.clone();
    let lab_names: Vec<String> = lab_nodes.iter().map(|n| n.name.clone()).collect();
    let mut speakers = NodeSpeaker::start_ready(&rt, &relayed, &lab_nodes, &objects);
    let vip_ip: IpAddr = vip.parse().unwrap();
    let refs: Vec<&str> = k8s_names.iter().map(String::as_str).collect();
    let first_k8s = election::rank(&vip_ip, &refs)[0].to_string();
    let first = k8s_names.iter().position(|k| *k == first_k8s).unwrap();
    let second = 1 - first;
    lab.wait_holders_of(vip, &lab_names, &[&lab_names[first]], WAIT).unwrap();

    // The API server goes away: both speakers notice, and the holder keeps the VIP.
    relay.cut();
    for s in &speakers {
        s.wait_sample("openelb_speaker_api_connected ", 0.0);
    }
    // Watching for a second is the point: the VIP must not move during it.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(1) {
        assert_eq!(lab.holders_of(vip, &lab_names), vec![lab_names[first].clone()], "the VIP must stay");
        std::thread::sleep(Duration::from_millis(50));
    }

    // VRRP does not need the API: the holder stops (SIGTERM's path) and the other node takes over.
    assert_eq!(speakers[first].stop(), Ok(()));
    assert!(!lab.has_ip(&lab_names[first], vip), "a stopped speaker removes its VIP");
    lab.wait_holders_of(vip, &lab_names, &[&lab_names[second]], WAIT).unwrap();
    lab.wait_reaches("client", vip, &lab.host(&lab_names[second]).unwrap().mac.clone(), WAIT).unwrap();

    // The API server returns: noticed without any object changing, and nothing moves.
    relay.restore();
    speakers[second].wait_sample("openelb_speaker_api_connected ", 1.0);
    assert_eq!(lab.holders_of(vip, &lab_names), vec![lab_names[second].clone()]);

    for s in &mut speakers {
        assert_eq!(s.stop(), Ok(()));
    }
    drop(speakers);
    drop(objects);
    drop(relay);
}

/// The Eip CRD with `spec.priority` left unchecked (`x-kubernetes-int-or-string`), as an older or another
/// project's CRD may have it: what lets an Eip past the schema that the speaker's types cannot read. The
/// checked-in CRD is put back on drop.
struct LooseCrd {
    client: Client,
    handle: tokio::runtime::Handle,
}

impl LooseCrd {
    async fn new(client: Client) -> LooseCrd {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
        let api: Api<CustomResourceDefinition> = Api::all(client.clone());
        let mut crd = api.get(openelb_k8s::crd::CRD_NAME).await.unwrap();
        for v in &mut crd.spec.versions {
            let spec = v
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
                .and_then(|r| r.properties.as_mut()?.get_mut("spec")?.properties.as_mut());
            if let Some(props) = spec {
                props.insert(
                    "priority".into(),
                    JSONSchemaProps { x_kubernetes_int_or_string: Some(true), ..Default::default() },
                );
            }
        }
        api.replace(openelb_k8s::crd::CRD_NAME, &PostParams::default(), &crd).await.unwrap();
        LooseCrd { client, handle: tokio::runtime::Handle::current() }
    }
}

impl Drop for LooseCrd {
    fn drop(&mut self) {
        let client = self.client.clone();
        let restore = async move {
            let api: Api<CustomResourceDefinition> = Api::all(client);
            let Ok(current) = api.get(openelb_k8s::crd::CRD_NAME).await else { return };
            let mut crd = openelb_k8s::crd::crd();
            crd.metadata.resource_version = current.metadata.resource_version;
            let _ = api.replace(openelb_k8s::crd::CRD_NAME, &PostParams::default(), &crd).await;
        };
        let handle = self.handle.clone();
        let _ = std::thread::spawn(move || handle.block_on(restore)).join();
    }
}

/// An Eip written past the schema (a priority the speaker's types cannot decode) does not keep a restarted
/// speaker from its first snapshot: it plans, the Eip is read as far as it reads, so its Service's VIP is held
/// by the first preference, and the object is counted.
#[test]
#[ignore = "needs root and the test kube-apiserver: KAPI_KUBECONFIG, started by scripts/test.sh"]
fn an_eip_that_does_not_decode_never_stops_a_restarted_speaker() {
    let Setup { lab, rt, client, .. } = Setup::new("k8su", 2);
    let lab_nodes = lab.nodes();
    let vip = "192.0.2.203";
    let loose = rt.block_on(LooseCrd::new(client.clone()));
    let objects = rt.block_on(Objects::create(client.clone(), &prefix("u"), vip, &lab_nodes));
    rt.block_on(objects.set_ingress(&[vip]));
    let eips: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &kube::api::ApiResource::erase::<Eip>(&()));
    let bad = json!({"spec": {"priority": "high"}});
    // The API server takes the loosened schema a moment after the CRD is replaced.
    let patched = eventually(WAIT, Duration::from_millis(100), || {
        rt.block_on(eips.patch(&objects.eip, &PatchParams::default(), &Patch::Merge(&bad))).ok()
    });
    assert!(patched.is_ok(), "the Eip never took a priority past the schema");

    let k8s_names = objects.nodes.clone();
    let lab_names: Vec<String> = lab_nodes.iter().map(|n| n.name.clone()).collect();
    let mut speakers = NodeSpeaker::start_ready(&rt, &client, &lab_nodes, &objects);
    let vip_ip: IpAddr = vip.parse().unwrap();
    let refs: Vec<&str> = k8s_names.iter().map(String::as_str).collect();
    let first_k8s = election::rank(&vip_ip, &refs)[0].to_string();
    let first = k8s_names.iter().position(|k| *k == first_k8s).unwrap();
    lab.wait_holders_of(vip, &lab_names, &[&lab_names[first]], WAIT).unwrap();
    let undecodable = speakers[first].sample(r#"openelb_objects_undecodable_total{kind="Eip"}"#);
    assert!(undecodable.is_some_and(|n| n >= 1.0), "{}", speakers[first].metrics_text());

    for s in &mut speakers {
        assert_eq!(s.stop(), Ok(()));
    }
    drop(speakers);
    // The Eip goes while the CRD still admits it.
    drop(objects);
    drop(loose);
}
