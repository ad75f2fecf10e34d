//! Linux backend against real kernels, inside network namespaces these tests create and always delete.
//!
//! How code runs "inside" a namespace: openelb-lab's `in_netns` (a thread that entered the namespace, with a
//! current-thread tokio runtime). Netlink, raw and packet sockets belong to the namespace of the thread that
//! creates them, so everything the closure opens lives in that namespace.
//!
//! Topology per test: a harness segment (a switch namespace with a bridge), nodes n1 and n2 and a client, each
//! with `eth0` on the bridge; addresses from 192.0.2.0/24 and 2001:db8::/64 only. The tests need root (ignored
//! otherwise; scripts/test.sh runs them).
#![cfg(target_os = "linux")]

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;

use openelb_core::model::IpFamily;
use openelb_core::vrrp::consts::{MULTICAST_V4, PROTOCOL, TTL};
use openelb_core::vrrp::{Advert, Received};
use openelb_lab::in_netns::{run_in, spawn_in as in_ns};
use openelb_lab::{HostSpec, Need, Segment, eventually_with, netns, require, test_prefix};
use openelb_net::linux::LinuxNet;
use openelb_net::ops::{AdvertReceiver, IfaceSpec, Incoming, NetError, NetOps};
use openelb_net::wire::{self, DecodeFailure, MacAddr, vrrp};

const N1_MAC: MacAddr = MacAddr([0x02, 0x42, 0xc0, 0x00, 0x02, 0x0b]);
const N2_MAC: MacAddr = MacAddr([0x02, 0x42, 0xc0, 0x00, 0x02, 0x0c]);
const CL_MAC: MacAddr = MacAddr([0x02, 0x42, 0xc0, 0x00, 0x02, 0x64]);

fn ip(args: &[&str]) -> Result<String, String> {
    netns::ip(args).map_err(|e| format!("{e:#}"))
}

/// The namespaces of one test: n1, n2 and the client on one segment; dropping it deletes them all.
struct Hosts {
    // Held for its drop: it deletes the namespaces.
    _segment: Segment,
    n1: String,
    n2: String,
    cl: String,
}

impl Hosts {
    fn new(tag: &str) -> Hosts {
        require(&[Need::Root]);
        let base = test_prefix(tag);
        let hosts =
            [("n1", N1_MAC, "11"), ("n2", N2_MAC, "12"), ("cl", CL_MAC, "100")].map(|(short, mac, host)| HostSpec {
                name: short.into(),
                ns: format!("{base}-{short}"),
                mac: mac.to_string(),
                addrs: vec![format!("192.0.2.{host}/24"), format!("2001:db8::{host}/64")],
            });
        let segment = Segment::with_hosts(&format!("{base}-sw"), hosts.to_vec())
            .unwrap_or_else(|e| panic!("building the lab failed: {e:#}"));
        let ns = |name: &str| segment.host(name).map(|h| h.ns.clone()).unwrap_or_default();
        let (n1, n2, cl) = (ns("n1"), ns("n2"), ns("cl"));
        Hosts { _segment: segment, n1, n2, cl }
    }
}

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Makes the client resolve `vip` (a UDP datagram to the discard port triggers ARP/NDP), like a first ping.
fn prime_neighbour(ns: &str, vip: IpAddr) {
    run_in(ns, move || async move {
        let bind: SocketAddr = if vip.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
        let sock = UdpSocket::bind(bind).unwrap();
        let _ = sock.send_to(b"x", SocketAddr::new(vip, 9));
    });
}

/// Waits up to 3 s for the client's neighbour entry for `vip` to show `mac`; how long it took.
fn wait_neigh(ns: &str, vip: IpAddr, mac: MacAddr) -> Result<Duration, String> {
    let want = mac.to_string();
    let t0 = std::time::Instant::now();
    eventually_with(
        &format!("neighbour entry for {vip} showing {want}"),
        Duration::from_secs(3),
        Duration::from_millis(10),
        || {
            let last = ip(&["-n", ns, "neigh", "show", &vip.to_string(), "dev", "eth0"])?;
            if last.contains(&want) { Ok(t0.elapsed()) } else { Err(format!("{last:?}")) }
        },
    )
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test.sh runs it)"]
fn vip_add_list_remove_recognises_our_mark() {
    let lab = Hosts::new("addr");
    let out = run_in(&lab.n1, || async {
        let net = LinuxNet::new().unwrap();
        let eth0 = net.resolve(&IfaceSpec::Name("eth0".into())).await.unwrap();
        assert_eq!(eth0.mac, Some(N1_MAC));
        assert_eq!(net.list_our_vips(&eth0).await.unwrap(), Vec::<IpAddr>::new(), "node addresses are not ours");
        let vips = [v4("192.0.2.91"), v4("2001:db8::91")];
        for vip in vips {
            net.add_vip(&eth0, vip).await.unwrap();
            net.add_vip(&eth0, vip).await.unwrap(); // idempotent
        }
        let listed = net.list_our_vips(&eth0).await.unwrap();
        // A node address is never ours: refuse to remove it or to claim it.
        let not_ours = net.remove_vip(&eth0, v4("192.0.2.11")).await;
        let claim = net.add_vip(&eth0, v4("192.0.2.11")).await;
        (listed, not_ours, claim)
    });
    assert_eq!(out.0, vec![v4("192.0.2.91"), v4("2001:db8::91")]);
    assert!(matches!(out.1, Err(NetError::NotOurs { .. })), "{:?}", out.1);
    let msg = out.2.unwrap_err().to_string();
    assert!(msg.contains("eth0") && msg.contains("192.0.2.11"), "{msg}");

    let shown = ip(&["-n", &lab.n1, "addr", "show", "dev", "eth0"]).unwrap();
    assert!(shown.contains("192.0.2.91/32"), "{shown}");
    assert!(shown.contains("eth0:oelb"), "IPv4 label missing: {shown}");
    assert!(shown.contains("2001:db8::91/128"), "{shown}");
    // iproute2 6.1 does not print IFA_PROTO; the IPv6 VIP being listed as ours (it has no label) shows the
    // protocol mark is stored and read back.

    // A new backend instance (a restarted speaker) finds and removes them.
    let after = run_in(&lab.n1, || async {
        let net = LinuxNet::new().unwrap();
        let eth0 = net.resolve(&IfaceSpec::Name("eth0".into())).await.unwrap();
        let found = net.list_our_vips(&eth0).await.unwrap();
        let mut removed = vec![];
        for vip in &found {
            removed.push(net.remove_vip(&eth0, *vip).await.unwrap());
        }
        let again = net.remove_vip(&eth0, v4("192.0.2.91")).await.unwrap();
        (found, removed, again, net.list_our_vips(&eth0).await.unwrap())
    });
    assert_eq!(after.0.len(), 2);
    assert_eq!(after.1, vec![true, true]);
    assert!(!after.2, "removing an absent VIP reports false");
    assert!(after.3.is_empty());
    let shown = ip(&["-n", &lab.n1, "addr", "show", "dev", "eth0"]).unwrap();
    assert!(!shown.contains("192.0.2.91") && shown.contains("192.0.2.11/24"), "{shown}");
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test.sh runs it)"]
fn vips_added_in_one_batch_each_get_their_own_result() {
    let lab = Hosts::new("batch");
    // 300 addresses: more than the additions kept in flight at once, so several rounds of acks come back.
    let mut vips: Vec<IpAddr> = (1..=150u16).map(|i| v4(&format!("2001:db8::1:{i:x}"))).collect();
    vips.extend((101..=250u8).map(|i| v4(&format!("192.0.2.{i}"))));
    // The node's own address sits in the middle: refused, and only it.
    vips.insert(77, v4("192.0.2.11"));
    let want = vips.clone();
    let (results, listed) = run_in(&lab.n1, move || async move {
        let net = LinuxNet::new().unwrap();
        let eth0 = net.resolve(&IfaceSpec::Name("eth0".into())).await.unwrap();
        let results = net.add_vips(&eth0, &vips).await;
        let again = net.add_vips(&eth0, &vips[..10]).await; // idempotent, as one by one
        assert!(again.iter().all(Result::is_ok), "{again:?}");
        let results: Vec<Result<(), String>> = results.into_iter().map(|r| r.map_err(|e| e.to_string())).collect();
        (results, net.list_our_vips(&eth0).await.unwrap())
    });
    assert_eq!(results.len(), want.len());
    for (vip, result) in want.iter().zip(&results) {
        match vip {
            v if *v == v4("192.0.2.11") => {
                assert!(result.as_ref().is_err_and(|e| e.contains("192.0.2.11")), "{result:?}")
            }
            _ => assert!(result.is_ok(), "{vip}: {result:?}"),
        }
    }
    let mut ours: Vec<IpAddr> = want.into_iter().filter(|v| *v != v4("192.0.2.11")).collect();
    ours.sort();
    assert_eq!(listed, ours);
}

fn move_vip_and_check_client(lab: &Hosts, vip: IpAddr) {
    run_in(&lab.n1, move || async move {
        let net = LinuxNet::new().unwrap();
        let eth0 = net.resolve(&IfaceSpec::Name("eth0".into())).await.unwrap();
        net.add_vip(&eth0, vip).await.unwrap();
    });
    prime_neighbour(&lab.cl, vip);
    wait_neigh(&lab.cl, vip, N1_MAC).unwrap();

    run_in(&lab.n1, move || async move {
        let net = LinuxNet::new().unwrap();
        let eth0 = net.resolve(&IfaceSpec::Name("eth0".into())).await.unwrap();
        assert!(net.remove_vip(&eth0, vip).await.unwrap());
    });
    run_in(&lab.n2, move || async move {
        let net = LinuxNet::new().unwrap();
        let eth0 = net.resolve(&IfaceSpec::Name("eth0".into())).await.unwrap();
        net.add_vip(&eth0, vip).await.unwrap();
        net.announce(&eth0, vip, eth0.mac.unwrap()).await.unwrap();
    });
    let took = wait_neigh(&lab.cl, vip, N2_MAC).unwrap();
    eprintln!("client entry for {vip} flipped to n2 {took:?} after the announcement");
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test.sh runs it)"]
fn gratuitous_arp_updates_existing_client_entry() {
    let lab = Hosts::new("garp");
    move_vip_and_check_client(&lab, v4("192.0.2.91"));
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test.sh runs it)"]
fn unsolicited_na_updates_existing_client_entry() {
    let lab = Hosts::new("na");
    move_vip_and_check_client(&lab, v4("2001:db8::91"));
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test.sh runs it)"]
fn gratuitous_arp_does_not_create_client_entry() {
    let lab = Hosts::new("noarp");
    let vip = v4("192.0.2.92");
    run_in(&lab.n1, move || async move {
        let net = LinuxNet::new().unwrap();
        let eth0 = net.resolve(&IfaceSpec::Name("eth0".into())).await.unwrap();
        net.add_vip(&eth0, vip).await.unwrap();
        net.announce(&eth0, vip, N1_MAC).await.unwrap();
    });
    // Deliberately let time pass: the GARP must have arrived (and been ignored) before we look.
    std::thread::sleep(Duration::from_millis(100));
    let neigh = ip(&["-n", &lab.cl, "neigh", "show", "192.0.2.92"]).unwrap();
    assert!(neigh.trim().is_empty(), "arp_accept=0 must ignore a GARP without an entry: {neigh}");
}

fn advert_of(incoming: Incoming) -> Received {
    match incoming {
        Incoming::Advert(rx) => rx,
        Incoming::Dropped(reason) => panic!("our own advert was dropped: {reason}"),
    }
}

fn advert_round_trip(lab: &Hosts, family: IpFamily, unicast: bool) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let receiver = in_ns(&lab.n2, move || async move {
        let net = LinuxNet::new().unwrap();
        let eth0 = net.resolve(&IfaceSpec::Name("eth0".into())).await.unwrap();
        let mine = net.source_address(&eth0, family).await.unwrap();
        let mut rx = net.advert_receiver(&eth0, family).unwrap();
        ready_tx.send(mine).unwrap();
        tokio::time::timeout(Duration::from_secs(3), AdvertReceiver::recv(&mut rx))
            .await
            .expect("no advert within 3 s")
            .unwrap()
    });
    let n2_src = ready_rx.recv().unwrap();
    let addresses = match family {
        IpFamily::V4 => vec![v4("192.0.2.91"), v4("192.0.2.92")],
        IpFamily::V6 => vec![v4("2001:db8::91")],
    };
    let advert = Advert { vrid: 42, priority: 200, max_advert_int: 10, addresses };
    let sent = advert.clone();
    let src = run_in(&lab.n1, move || async move {
        let net = LinuxNet::new().unwrap();
        let eth0 = net.resolve(&IfaceSpec::Name("eth0".into())).await.unwrap();
        let src = net.source_address(&eth0, family).await.unwrap();
        let peers = if unicast { vec![n2_src] } else { vec![] };
        // A few sends, in case the receiver's group join is still settling.
        for _ in 0..5 {
            net.send_advert(&eth0, src, &sent, &peers).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        src
    });
    let got = advert_of(receiver.join().unwrap());
    assert_eq!(got.ttl, TTL);
    assert_eq!(got.src, src);
    assert_eq!(got.advert, advert);
    if family == IpFamily::V4 {
        assert_eq!(src, v4("192.0.2.11"));
    } else {
        assert!(matches!(src, IpAddr::V6(v6) if v6.segments()[0] == 0xfe80), "IPv6 source must be link-local: {src}");
    }
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test.sh runs it)"]
fn vrrp_advert_v4_multicast_received_with_ttl_255() {
    let lab = Hosts::new("vr4");
    advert_round_trip(&lab, IpFamily::V4, false);
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test.sh runs it)"]
fn vrrp_advert_v4_unicast_received_with_ttl_255() {
    let lab = Hosts::new("vr4u");
    advert_round_trip(&lab, IpFamily::V4, true);
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test.sh runs it)"]
fn vrrp_advert_v6_multicast_received_with_hop_limit_255() {
    let lab = Hosts::new("vr6");
    advert_round_trip(&lab, IpFamily::V6, false);
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test.sh runs it)"]
fn interface_resolution() {
    let lab = Hosts::new("res");
    run_in(&lab.n1, || async {
        let net = LinuxNet::new().unwrap();
        let by_route = net.resolve(&"can_reach:192.0.2.12".parse().unwrap()).await.unwrap();
        assert_eq!(by_route.name, "eth0");
        let by_route6 = net.resolve(&"can_reach:2001:db8::12".parse().unwrap()).await.unwrap();
        assert_eq!(by_route6.name, "eth0");
        let holding = net.resolve(&IfaceSpec::Holding(v4("192.0.2.11"))).await.unwrap();
        assert_eq!(holding, by_route);
        // A loopback target is refused when an Eip names it; built directly, the route lookup refuses it too.
        assert!("can_reach:127.0.0.1".parse::<IfaceSpec>().is_err());
        assert!(matches!(net.resolve(&IfaceSpec::CanReach(v4("127.0.0.1"))).await, Err(NetError::RouteViaLoopback(_))));
        // No default route in the namespace.
        let none = net.resolve(&"can_reach:198.51.100.1".parse().unwrap()).await;
        assert!(matches!(none, Err(NetError::NoRoute(_))), "{none:?}");
        let missing = net.resolve(&IfaceSpec::Name("nope0".into())).await;
        assert!(matches!(missing, Err(NetError::NoSuchInterface(ref n)) if n == "nope0"), "{missing:?}");
        let nobody = net.resolve(&IfaceSpec::Holding(v4("192.0.2.200"))).await;
        assert!(matches!(nobody, Err(NetError::NoInterfaceHolds(_))), "{nobody:?}");
        assert_eq!(net.source_address(&by_route, IpFamily::V4).await.unwrap(), v4("192.0.2.11"));
    });
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test.sh runs it)"]
fn vrrp_advert_with_ttl_below_255_is_dropped() {
    let lab = Hosts::new("ttl");
    let (ready_tx, ready_rx) = mpsc::channel();
    let receiver = in_ns(&lab.n2, move || async move {
        let net = LinuxNet::new().unwrap();
        let eth0 = net.resolve(&IfaceSpec::Name("eth0".into())).await.unwrap();
        let mut rx = net.advert_receiver(&eth0, IpFamily::V4).unwrap();
        ready_tx.send(()).unwrap();
        let mut drops = Vec::new();
        loop {
            let next = tokio::time::timeout(Duration::from_secs(3), AdvertReceiver::recv(&mut rx));
            match next.await.expect("no advert").unwrap() {
                Incoming::Advert(rx) => return (drops, rx),
                Incoming::Dropped(reason) => drops.push(reason),
            }
        }
    });
    ready_rx.recv().unwrap();
    run_in(&lab.n1, || async {
        let src = v4("192.0.2.11");
        let group = IpAddr::V4(MULTICAST_V4);
        let forged = Advert { vrid: 7, priority: 254, max_advert_int: 10, addresses: vec![v4("192.0.2.91")] };
        let payload = wire::encode(&forged, vrrp::Context::new(src, group), &[]).unwrap();
        let protocol = i32::from(PROTOCOL).into();
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::RAW, Some(protocol)).unwrap();
        sock.bind_device(Some(b"eth0")).unwrap();
        sock.bind(&SocketAddr::new(src, 0).into()).unwrap();
        sock.set_multicast_ttl_v4(254).unwrap();
        sock.send_to(&payload, &SocketAddr::new(group, 0).into()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let net = LinuxNet::new().unwrap();
        let eth0 = net.resolve(&IfaceSpec::Name("eth0".into())).await.unwrap();
        let genuine = Advert { priority: 100, ..forged };
        net.send_advert(&eth0, src, &genuine, &[]).await.unwrap();
    });
    let (drops, got) = receiver.join().unwrap();
    assert_eq!((got.ttl, got.advert.priority), (TTL, 100), "the TTL-254 advert must not surface");
    assert_eq!(drops, vec![DecodeFailure::BadTtl], "the TTL-254 advert is reported as a drop");
}

/// What kube-proxy's IPVS mode does to a node: `vip` bound to `kube-ipvs0` (a bridge without ports stands in for
/// the dummy device this kernel lacks), kernel default ARP settings.
fn bind_to_kube_ipvs0(ns: &str, vip: &str) {
    ip(&["-n", ns, "link", "add", "kube-ipvs0", "type", "bridge"]).unwrap();
    ip(&["-n", ns, "addr", "add", &format!("{vip}/32"), "dev", "kube-ipvs0"]).unwrap();
}

#[test]
#[ignore = "needs root: network namespaces, arping (scripts/test.sh runs it)"]
fn arp_filter_silences_a_node_for_vips_on_kube_ipvs0_and_goes_away() {
    require(&[Need::Root, Need::Tool("arping")]);
    let lab = Hosts::new("ipvsarp");
    let vip = "192.0.2.95";
    let target: std::net::Ipv4Addr = vip.parse().unwrap();
    let answerers = || openelb_lab::arping::answerers(&lab.cl, "eth0", target, 2).unwrap();
    let (n1_mac, n2_mac) = (N1_MAC.to_string().to_uppercase(), N2_MAC.to_string().to_uppercase());

    // Before kube-ipvs0: nothing to handle.
    let before = run_in(&lab.n2, || async {
        let net = LinuxNet::new().unwrap();
        let eth0 = net.resolve(&IfaceSpec::Name("eth0".into())).await.unwrap();
        net.ipvs_arp(&[eth0]).await.unwrap()
    });
    assert_eq!(before, openelb_core::ipvs_arp::IpvsArp::NoIpvs);

    bind_to_kube_ipvs0(&lab.n1, vip);
    bind_to_kube_ipvs0(&lab.n2, vip);
    assert_eq!(answerers(), [n1_mac.clone(), n2_mac.clone()].into(), "the negative control: both nodes answer");

    let (seen, filtered) = run_in(&lab.n2, move || async move {
        let net = LinuxNet::new().unwrap();
        let eth0 = net.resolve(&IfaceSpec::Name("eth0".into())).await.unwrap();
        let seen = net.ipvs_arp(&[eth0]).await.unwrap();
        (seen, net.set_arp_filter(&[target]).await)
    });
    assert!(seen.needs_filter() && seen.describe().contains("eth0 (arp_ignore=0, arp_announce=0)"), "{seen:?}");
    filtered.unwrap();
    assert_eq!(answerers(), [n1_mac.clone()].into(), "n2 filtered: only n1 answers");
    // n2's own gratuitous ARP still leaves (a packet socket, not the arp family's output hook).
    prime_neighbour(&lab.cl, v4(vip));
    run_in(&lab.n2, move || async move {
        let net = LinuxNet::new().unwrap();
        let eth0 = net.resolve(&IfaceSpec::Name("eth0".into())).await.unwrap();
        net.announce(&eth0, v4(vip), N2_MAC).await.unwrap();
    });
    wait_neigh(&lab.cl, v4(vip), N2_MAC).unwrap();

    // A new instance (a restarted speaker) replaces the table, then removes it: both answer again.
    let removed = run_in(&lab.n2, || async {
        let net = LinuxNet::new().unwrap();
        net.set_arp_filter(&[]).await.unwrap();
        let listed = std::process::Command::new("nft").args(["list", "tables"]).output();
        net.remove_arp_filter().await.unwrap();
        net.remove_arp_filter().await.unwrap(); // nothing left: still fine
        listed.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
    });
    if netns::which("nft").is_some() {
        assert!(removed.contains("table arp openelb-ipvs-arp"), "{removed}");
    }
    assert_eq!(answerers(), [n1_mac.clone(), n2_mac].into());

    // strictARP's sysctls: no longer the situation.
    ip(&["netns", "exec", &lab.n1, "sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=1"]).unwrap();
    ip(&["netns", "exec", &lab.n1, "sysctl", "-q", "-w", "net.ipv4.conf.all.arp_announce=2"]).unwrap();
    let strict = run_in(&lab.n1, || async {
        let net = LinuxNet::new().unwrap();
        let eth0 = net.resolve(&IfaceSpec::Name("eth0".into())).await.unwrap();
        net.ipvs_arp(&[eth0]).await.unwrap()
    });
    assert_eq!(strict, openelb_core::ipvs_arp::IpvsArp::Strict);
}

/// Why the ARP filter has no IPv6 half: the kernel answers a Neighbor Solicitation only for an address of the
/// interface it arrived on, so a VIP on kube-ipvs0 is not answered on eth0 (docs/ipvs.md).
#[test]
#[ignore = "needs root: network namespaces, ndisc6 (scripts/test.sh runs it)"]
fn ipv6_addresses_on_kube_ipvs0_are_not_answered_on_eth0() {
    require(&[Need::Root, Need::Tool("ndisc6")]);
    let lab = Hosts::new("ipvsnd");
    ip(&["-n", &lab.n1, "link", "add", "kube-ipvs0", "type", "bridge"]).unwrap();
    ip(&["-n", &lab.n1, "addr", "add", "2001:db8::95/128", "dev", "kube-ipvs0", "nodad"]).unwrap();
    let solicit = |target: &str| {
        let out = netns::exec_output(&lab.cl, &["ndisc6", "-r", "3", "-w", "500", target, "eth0"]).unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The control: the node's own address is answered (once its DAD is done), so the tool and the link work.
    let own = eventually_with(
        "n1 answering for its eth0 address",
        Duration::from_secs(5),
        Duration::from_millis(200),
        || {
            let out = solicit("2001:db8::11");
            if out.contains("Target link-layer address") { Ok(out) } else { Err(out) }
        },
    );
    assert!(own.is_ok(), "{own:?}");
    let on_ipvs = solicit("2001:db8::95");
    assert!(!on_ipvs.contains("Target link-layer address"), "answered for an address on kube-ipvs0: {on_ipvs}");
}
