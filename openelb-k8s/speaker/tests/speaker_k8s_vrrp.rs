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

mod support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use openelb_core::election;
use openelb_core::model::IpFamily;
use openelb_core::vrrp::plan::{self, GroupId, VipInput, VridAssignment};
use openelb_k8s::vrrp::{ANNOTATION_SOURCES, Published};
use openelb_lab::segment::CLIENT;
use openelb_lab::{Segment, eventually_with, netns};
use support::apiserver::{NodeSpeaker, Objects, Setup, WAIT, prefix};

fn ip(args: &[&str]) -> Result<String, String> {
    netns::ip(args).map_err(|e| format!("{e:#}"))
}

/// Polls `check` until it gives a value, failing with `what` and the last miss after [`WAIT`].
fn wait_for<T>(what: &str, check: impl FnMut() -> Result<T, String>) -> T {
    eventually_with(what, WAIT, Duration::from_millis(50), check).unwrap_or_else(|e| panic!("timed out: {e}"))
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
    let Setup { lab, rt, client, .. } = Setup::new("k8s6", 3);
    let lab_nodes = lab.nodes();
    for (i, n) in lab_nodes.iter().enumerate() {
        ip(&["-n", &n.ns, "addr", "add", &format!("2001:db8::{}/64", 3 + i), "dev", "eth0", "nodad"]).unwrap();
    }
    ip(&["-n", &lab.host(CLIENT).unwrap().ns, "addr", "add", "2001:db8::100/64", "dev", "eth0", "nodad"]).unwrap();
    let vip = "2001:db8::91";
    let objects = rt.block_on(async {
        let objects = Objects::create_shared(client.clone(), &prefix("v6"), vip, &lab_nodes).await;
        objects.set_ingress(&[vip]).await;
        objects
    });

    let mut speakers = NodeSpeaker::start_ready(&rt, &client, &lab_nodes, &objects);

    // Every speaker publishes its IPv6 link-local source; no Node object shows one.
    let leases = wait_for("three Leases with IPv6 link-local sources", || {
        let leases = rt.block_on(objects.leases());
        let v6 =
            leases.iter().filter(|l| l.sources.iter().any(|s| matches!(s, IpAddr::V6(a) if a.segments()[0] == 0xfe80)));
        if v6.count() == 3 { Ok(leases) } else { Err(format!("{leases:?}")) }
    });
    println!("Leases: {:?}", leases.iter().map(|l| (&l.node, &l.sources)).collect::<Vec<_>>());
    let raw = rt.block_on(Api::<Lease>::namespaced(client.clone(), objects.namespace()).list(&ListParams::default()));
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
    let Setup { lab, rt, client, .. } = Setup::new("k8sp", 2);
    let lab_nodes = lab.nodes();
    let vip = "192.0.2.202";
    let objects = rt.block_on(async {
        let objects = Objects::create_shared(client.clone(), &prefix("pub"), vip, &lab_nodes).await;
        objects.set_ingress(&[vip]).await;
        objects
    });

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
    let mut a = NodeSpeaker::start(&rt, client.clone(), &lab_ns(0), &objects.nodes[0], Some(objects.namespace()));
    a.wait_ready();
    assert_eq!(a.vrids(), [published_vrid], "the first plan follows the published VRID, not {natural}");
    // The other node starts later, then the first restarts: each plan follows the publication.
    let b = NodeSpeaker::start(&rt, client.clone(), &lab_ns(1), &objects.nodes[1], Some(objects.namespace()));
    b.wait_ready();
    assert_eq!(b.vrids(), [published_vrid]);
    assert_eq!(a.stop(), Ok(()));
    drop(a);
    let a = NodeSpeaker::start(&rt, client.clone(), &lab_ns(0), &objects.nodes[0], Some(objects.namespace()));
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
