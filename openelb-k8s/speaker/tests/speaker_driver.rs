//! The speaker's event loop over a recording fake backend, in tokio's paused (virtual) time: no root, no
//! network. Checks what the loop does with the agent's decisions: startup cleanup, takeover with a burst,
//! stepping down on a better advert, graceful shutdown, and giving up after VIP additions keep failing.

mod support;

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openelb_core::model::Cluster;
use openelb_core::vrrp::consts::TTL;
use openelb_core::vrrp::{Advert, Received};
use openelb_k8s::manifest::Manifests;
use openelb_speaker::{Control, IpvsArpFilter, Speaker, SpeakerConfig, desired};
use support::fake_net::{FakeNet, Op};
use support::{VIP, vip};
use tokio::sync::mpsc;

fn cluster() -> Cluster {
    let mut y = String::from(
        "apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata:\n  name: vip-eip\nspec:\n  \
         address: 192.0.2.91-192.0.2.95\n  protocol: vip\n  interface: eth0\n---\n\
         apiVersion: v1\nkind: Service\nmetadata:\n  name: svc\n  namespace: default\n  annotations:\n    \
         lb.kubesphere.io/v1alpha1: openelb\nspec:\n  type: LoadBalancer\n  ports:\n    - port: 80\n",
    );
    for (name, ip) in [("node-a", "192.0.2.3"), ("node-b", "192.0.2.4")] {
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\nstatus:\n  addresses:\n    - type: InternalIP\n      \
             address: {ip}\n  conditions:\n    - type: Ready\n      status: \"True\"\n"
        ));
    }
    Manifests::parse_str(Path::new("test.yaml"), &y).unwrap().to_cluster().unwrap()
}

/// The speaker on `node-a`, running in a task, with its control channel.
fn start(
    net: Arc<FakeNet>,
) -> (mpsc::Sender<Control>, tokio::task::JoinHandle<Result<(), openelb_speaker::SpeakerError>>, u8) {
    let config = SpeakerConfig::new("node-a");
    let vrid = desired(&cluster(), &config, None).plan.group_of(&VIP.parse().unwrap()).unwrap().vrid;
    let speaker = Speaker::new(net, config).unwrap();
    let (tx, rx) = mpsc::channel(4);
    let task = tokio::spawn(speaker.run(cluster(), rx));
    (tx, task, vrid)
}

#[tokio::test(start_paused = true)]
async fn startup_removes_stale_pool_addresses_only_then_takes_over_with_a_burst() {
    let (net, _inject) = FakeNet::new(&["192.0.2.93", "198.51.100.7"], false);
    let (ctl, task, _) = start(Arc::clone(&net));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let ev = net.ops();
    assert_eq!(ev.first(), Some(&Op::Remove("192.0.2.93".parse().unwrap())), "{ev:?}");
    assert!(!ev.contains(&Op::Remove("198.51.100.7".parse().unwrap())), "outside VIP pools: not ours to touch");
    let add = ev.iter().position(|e| *e == Op::Add(vip())).expect("takeover adds the VIP");
    let first_garp = ev.iter().position(|e| *e == Op::Announce(vip())).expect("GARP");
    assert!(add < first_garp, "the address exists before it is announced: {ev:?}");
    assert_eq!(net.count(&Op::Announce(vip())), 3, "default burst of three");
    assert!(net.adverts().len() >= 10, "a master advertises every 100 ms: {ev:?}");

    // Graceful shutdown: a priority-0 advert, the VIP removed, run() returns.
    ctl.send(Control::Shutdown).await.unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(net.adverts().last(), Some(&0));
    assert_eq!(net.ops().last(), Some(&Op::Remove(vip())));
}

#[tokio::test(start_paused = true)]
async fn a_better_master_makes_it_step_down_and_drop_the_vip() {
    let (net, inject) = FakeNet::new(&[], false);
    let (ctl, task, vrid) = start(Arc::clone(&net));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(net.ops().contains(&Op::Add(vip())));

    let better = Received {
        src: "192.0.2.4".parse().unwrap(),
        dst: "224.0.0.18".parse().unwrap(),
        ttl: TTL,
        advert: Advert { vrid, priority: 254, max_advert_int: 10, addresses: vec![vip()] },
    };
    inject.send(better.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(net.ops().last(), Some(&Op::Remove(vip())), "{:?}", net.ops());

    // As a backup it sends nothing and, on shutdown, has nothing to release.
    let before = net.adverts().len();
    inject.send(better).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(net.adverts().len(), before);
    ctl.send(Control::Shutdown).await.unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(net.adverts().len(), before, "a backup sends no release advert");
}

#[tokio::test(start_paused = true)]
async fn persistent_add_failures_make_the_node_give_up_mastership() {
    let (net, _inject) = FakeNet::new(&[], true);
    let (ctl, task, _) = start(Arc::clone(&net));
    // 1 s maintenance period, five failures, then the interface counts as down for 30 s.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let adds = net.count(&Op::Add(vip()));
    assert!((5..=7).contains(&adds), "retried, then gave up: {adds} adds");
    let adverts = net.adverts().len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(net.adverts().len(), adverts, "no adverts while given up, so a backup takes over");
    assert_eq!(net.count(&Op::Add(vip())), adds);

    // After the cool-off it tries again (and, alone on the segment, becomes master again).
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(net.count(&Op::Add(vip())) > adds);
    ctl.send(Control::Shutdown).await.unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn reload_without_the_service_releases_the_vip() {
    let (net, _inject) = FakeNet::new(&[], false);
    let (ctl, task, _) = start(Arc::clone(&net));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(net.ops().contains(&Op::Add(vip())));

    let mut c = cluster();
    c.services.clear();
    ctl.send(Control::Reload(Box::new(c))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ev = net.ops();
    assert_eq!(ev.iter().rev().find(|e| matches!(e, Op::Remove(_))), Some(&Op::Remove(vip())), "{ev:?}");
    assert_eq!(net.adverts().last(), Some(&0), "the group is released with priority 0");
    ctl.send(Control::Shutdown).await.unwrap();
    task.await.unwrap().unwrap();
}

/// Plans like the speaker, but panics for a cluster without Services: a bug in planning, as the loop sees it.
fn panics_without_services(
    cluster: &Cluster,
    config: &SpeakerConfig,
    context: &openelb_core::vrrp::plan::PlanContext<'_>,
) -> openelb_speaker::Desired {
    assert!(!cluster.services.is_empty(), "planning bug (injected by the test)");
    openelb_speaker::desired_in(cluster, config, context)
}

#[tokio::test(start_paused = true)]
async fn a_plan_that_panics_keeps_the_running_plan_and_the_next_change_plans_again() {
    let (net, _inject) = FakeNet::new(&[], false);
    let metrics = openelb_speaker::SpeakerMetrics::default();
    let speaker = Speaker::new(Arc::clone(&net), SpeakerConfig::new("node-a"))
        .unwrap()
        .with_metrics(metrics.clone())
        .with_plan_fn(panics_without_services);
    let (ctl, rx) = mpsc::channel(4);
    let task = tokio::spawn(speaker.run(cluster(), rx));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(net.ops().contains(&Op::Add(vip())));

    let mut empty = cluster();
    empty.services.clear();
    ctl.send(Control::Reload(Box::new(empty))).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(metrics.plan_failures.get(), 1);
    assert!(!net.ops().contains(&Op::Remove(vip())), "the running plan stays: {:?}", net.ops());
    let adverts = net.adverts().len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(net.adverts().len() >= adverts + 9, "still advertising every 100 ms");

    // The next change plans again: the Service is no LoadBalancer any more, so its VIP is released.
    let mut other = cluster();
    other.services[0].type_ = "ClusterIP".into();
    ctl.send(Control::Reload(Box::new(other))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(metrics.plan_failures.get(), 1);
    assert_eq!(net.ops().last(), Some(&Op::Remove(vip())), "{:?}", net.ops());
    assert_eq!(net.adverts().last(), Some(&0), "released with priority 0");
    ctl.send(Control::Shutdown).await.unwrap();
    task.await.unwrap().unwrap();
}

/// Counts the WARN and ERROR lines the speaker logs, whatever their text.
#[derive(Clone, Default)]
struct WarnCount(Arc<Mutex<Vec<String>>>);

impl std::io::Write for WarnCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = String::from_utf8_lossy(buf).into_owned();
        if line.contains("WARN") || line.contains("ERROR") {
            self.0.lock().unwrap().push(line);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_spoofed_adverts_costs_a_bounded_number_of_log_lines_and_events_and_no_vip() {
    let warns = WarnCount::default();
    let writer = warns.clone();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    let _log = tracing::subscriber::set_default(subscriber);

    let (net, inject) = FakeNet::new(&[], false);
    let metrics = openelb_speaker::SpeakerMetrics::default();
    let (sink, mut events) = openelb_speaker::EventSink::channel(1024, metrics.events_dropped.clone());
    let config = SpeakerConfig::new("node-a");
    let vrid = desired(&cluster(), &config, None).plan.group_of(&vip()).unwrap().vrid;
    let speaker = Speaker::new(Arc::clone(&net), config).unwrap().with_metrics(metrics.clone()).with_events(sink);
    let (ctl, rx) = mpsc::channel(4);
    let task = tokio::spawn(speaker.run(cluster(), rx));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(net.ops().contains(&Op::Add(vip())));
    let warns_before = warns.0.lock().unwrap().len();

    // 20k adverts per second for 10 s, from ever new sources that are no node, on our VRID and others, at
    // priority 255 and 254, claiming our VIP or other addresses, with Max_Adver_Int 4095.
    let mut sent = 0u32;
    for burst in 0..1000u32 {
        for i in 0..200u32 {
            let n = burst * 200 + i;
            let src = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(198, 51, 100, 0)) + n % 250 + 1);
            let spoof = Received {
                src: IpAddr::V4(src),
                dst: "224.0.0.18".parse().unwrap(),
                ttl: TTL,
                advert: Advert {
                    vrid: if n % 3 == 0 { vrid } else { (n % 255 + 1) as u8 },
                    priority: if n % 2 == 0 { 255 } else { 254 },
                    max_advert_int: 4095,
                    addresses: if n % 5 == 0 {
                        vec![vip()]
                    } else {
                        vec![IpAddr::from([203, 0, 113, (n % 250) as u8])]
                    },
                },
            };
            inject.send(spoof).await.unwrap();
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    assert!(!net.ops().contains(&Op::Remove(vip())), "the VIP never moved");
    let warned = warns.0.lock().unwrap().len() - warns_before;
    let mut node_events = 0;
    while let Ok(e) = events.try_recv() {
        if matches!(e, openelb_speaker::SpeakerEvent::Node(_)) {
            node_events += 1;
        }
    }
    println!("{sent} spoofed adverts in 10 s: {warned} warning lines, {node_events} Node Events");
    // The agent reports foreign routers at most 16 per minute, anomalies once per instance per minute; the
    // Events on top of that at most 4 per minute.
    assert!(warned <= 20, "{warned} warning lines: {:#?}", warns.0.lock().unwrap());
    assert!((1..=4).contains(&node_events), "{node_events} Node Events");
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let dropped: f64 = text
        .lines()
        .filter(|l| l.starts_with("openelb_vrrp_adverts_dropped_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(dropped, f64::from(sent), "every spoofed advert is counted as dropped:\n{text}");
    assert!(text.contains("openelb_vrrp_foreign_adverts_total{family=\"IPv4\"}"), "{text}");
    ctl.send(Control::Shutdown).await.unwrap();
    task.await.unwrap().unwrap();
}

/// The seed's shape with an IPv6 pool and a single-stack IPv6 Service; Nodes publish only their IPv4 InternalIP.
fn cluster_v6() -> Cluster {
    let mut y = String::from(
        "apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata:\n  name: vip6\nspec:\n  \
         address: 2001:db8::91-2001:db8::95\n  protocol: vip\n  interface: eth0\n---\n\
         apiVersion: v1\nkind: Service\nmetadata:\n  name: svc6\n  namespace: default\n  annotations:\n    \
         lb.kubesphere.io/v1alpha1: openelb\nspec:\n  type: LoadBalancer\n  ipFamilies: [IPv6]\n  ports:\n    - port: 80\n",
    );
    for (name, ip) in [("node-a", "192.0.2.3"), ("node-b", "192.0.2.4")] {
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\nstatus:\n  addresses:\n    - type: InternalIP\n      \
             address: {ip}\n  conditions:\n    - type: Ready\n      status: \"True\"\n"
        ));
    }
    Manifests::parse_str(Path::new("test6.yaml"), &y).unwrap().to_cluster().unwrap()
}

#[tokio::test(start_paused = true)]
async fn ipv6_adverts_count_once_the_senders_link_local_source_is_in_its_speaker_lease() {
    use openelb_k8s::vrrp::SpeakerLease;
    use openelb_speaker::{LocalVrrp, SharedVrrp};
    let (net, inject) = FakeNet::new(&[], false);
    let config = SpeakerConfig::new("node-a");
    let d = desired(&cluster_v6(), &config, None);
    let group = d.plan.groups.first().expect("an IPv6 group").clone();
    let vip6 = group.vips[0];
    let metrics = openelb_speaker::SpeakerMetrics::default();
    let (shared_tx, shared_rx) = tokio::sync::watch::channel(SharedVrrp { synced: true, ..SharedVrrp::default() });
    let (local_tx, mut local_rx) = tokio::sync::watch::channel(LocalVrrp::default());
    let speaker =
        Speaker::new(Arc::clone(&net), config).unwrap().with_metrics(metrics.clone()).with_shared(shared_rx, local_tx);
    let (ctl, rx) = mpsc::channel(4);
    let task = tokio::spawn(speaker.run(cluster_v6(), rx));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(net.ops().contains(&Op::Add(vip6)), "alone, it holds the VIP: {:?}", net.ops());
    // Its own link-local source goes to its Lease.
    local_rx.changed().await.unwrap();
    assert_eq!(local_rx.borrow().sources, ["fe80::3".parse::<IpAddr>().unwrap()]);

    // node-b's advert, from its link-local address, which no Node object shows: dropped as a stranger's.
    let better = Received {
        src: "fe80::4".parse().unwrap(),
        dst: "ff02::12".parse().unwrap(),
        ttl: TTL,
        advert: Advert { vrid: group.vrid, priority: 254, max_advert_int: 10, addresses: vec![vip6] },
    };
    inject.send(better.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!net.ops().contains(&Op::Remove(vip6)), "an unknown source never moves a VIP");

    // node-b's Lease publishes that source: the same advert now counts, and the higher priority wins.
    let lease = SpeakerLease { node: "node-b".into(), sources: vec![better.src], ..SpeakerLease::default() };
    shared_tx.send_modify(|s| s.leases = vec![lease]);
    tokio::time::sleep(Duration::from_millis(10)).await;
    inject.send(better).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(net.ops().last(), Some(&Op::Remove(vip6)), "{:?}", net.ops());
    assert_eq!(metrics.known_peers.get(), 3, "two InternalIPs and node-b's link-local source");
    ctl.send(Control::Shutdown).await.unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn without_the_shared_state_listed_the_first_plan_waits_then_plans_alone() {
    use openelb_speaker::driver::SHARED_WAIT_MAX;
    use openelb_speaker::{LocalVrrp, SharedVrrp};
    let (net, _inject) = FakeNet::new(&[], false);
    // Never synced: the Lease and ConfigMap watches are refused, say.
    let (_shared_tx, shared_rx) = tokio::sync::watch::channel(SharedVrrp::default());
    let (local_tx, _local_rx) = tokio::sync::watch::channel(LocalVrrp::default());
    let speaker =
        Speaker::new(Arc::clone(&net), SpeakerConfig::new("node-a")).unwrap().with_shared(shared_rx, local_tx);
    let (ctl, rx) = mpsc::channel(4);
    let task = tokio::spawn(speaker.run(cluster(), rx));
    tokio::time::sleep(SHARED_WAIT_MAX - Duration::from_secs(5)).await;
    assert!(net.ops().is_empty(), "waits for the published assignment first: {:?}", net.ops());
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(net.ops().contains(&Op::Add(vip())), "then plans alone: {:?}", net.ops());
    ctl.send(Control::Shutdown).await.unwrap();
    task.await.unwrap().unwrap();
}

fn loose_arp() -> openelb_core::ipvs_arp::IpvsArp {
    use openelb_core::ipvs_arp::{ArpConf, NicArp};
    openelb_core::ipvs_arp::IpvsArp::Loose(vec![NicArp { nic: "eth0".into(), conf: ArpConf::default() }])
}

/// A running speaker: its control channel, its task, the VIP's VRID, its metrics and its Events.
struct Running {
    ctl: mpsc::Sender<Control>,
    task: tokio::task::JoinHandle<Result<(), openelb_speaker::SpeakerError>>,
    vrid: u8,
    metrics: openelb_speaker::SpeakerMetrics,
    events: mpsc::Receiver<openelb_speaker::SpeakerEvent>,
}

/// The speaker on node-a with metrics and Events, kube-ipvs0 present with default ARP settings.
fn start_ipvs(net: Arc<FakeNet>, mode: IpvsArpFilter) -> Running {
    net.set_ipvs(loose_arp());
    let mut config = SpeakerConfig::new("node-a");
    config.ipvs_arp_filter = mode;
    let vrid = desired(&cluster(), &config, None).plan.group_of(&vip()).unwrap().vrid;
    let metrics = openelb_speaker::SpeakerMetrics::default();
    let (sink, events) = openelb_speaker::EventSink::channel(64, metrics.events_dropped.clone());
    let speaker = Speaker::new(net, config).unwrap().with_metrics(metrics.clone()).with_events(sink);
    let (tx, rx) = mpsc::channel(4);
    let task = tokio::spawn(speaker.run(cluster(), rx));
    Running { ctl: tx, task, vrid, metrics, events }
}

fn node_events(rx: &mut mpsc::Receiver<openelb_speaker::SpeakerEvent>) -> Vec<openelb_speaker::NodeEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let openelb_speaker::SpeakerEvent::Node(n) = e {
            out.push(n);
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn with_kube_ipvs0_the_arp_filter_follows_the_vips_held_here() {
    let (net, inject) = FakeNet::new(&[], false);
    let Running { ctl, task, vrid, metrics, mut events } = start_ipvs(Arc::clone(&net), IpvsArpFilter::Auto);
    let v4: std::net::Ipv4Addr = VIP.parse().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Planned (nothing held yet: the VIP is filtered), then master alone: nothing filtered.
    assert_eq!(net.filters(), vec![Some(vec![v4]), Some(vec![])], "{:?}", net.ops());
    assert_eq!(metrics.ipvs_arp_filter.get(), 1);

    // Another node takes over: the VIP is filtered again once it is removed here.
    inject
        .send(Received {
            src: "192.0.2.4".parse().unwrap(),
            dst: "224.0.0.18".parse().unwrap(),
            ttl: TTL,
            advert: Advert { vrid, priority: 254, max_advert_int: 10, addresses: vec![vip()] },
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(net.ops().last(), Some(&Op::Remove(vip())));
    assert_eq!(net.filters().last(), Some(&Some(vec![v4])));
    assert_eq!(metrics.ipvs_arp_filtered.get(), 1);

    // The other master falls silent: this node takes the VIP back and stops filtering it. The periodic check
    // (every 10 s) sets nothing when nothing changed; strict ARP later takes the filter down.
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(net.count(&Op::Add(vip())), 2);
    assert_eq!(net.filters(), vec![Some(vec![v4]), Some(vec![]), Some(vec![v4]), Some(vec![])]);
    net.set_ipvs(openelb_core::ipvs_arp::IpvsArp::Strict);
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(net.filters().last(), Some(&None));
    assert_eq!(metrics.ipvs_arp_filter.get(), 0);
    assert!(node_events(&mut events).iter().all(|e| e.reason != openelb_speaker::NodeReason::IpvsArpUnfiltered));
    ctl.send(Control::Shutdown).await.unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_filter_that_cannot_be_set_is_reported_counted_and_retried() {
    let (net, _inject) = FakeNet::new(&[], false);
    net.fail_filter(true);
    let Running { ctl, task, metrics, mut events, .. } = start_ipvs(Arc::clone(&net), IpvsArpFilter::Auto);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(metrics.ipvs_arp_filter.get(), 3);
    let failures = metrics.ipvs_arp_filter_failures.get();
    assert!(failures >= 3, "retried every maintenance tick: {failures}");
    let reported = node_events(&mut events);
    let ipvs: Vec<_> = reported.iter().filter(|e| e.reason == openelb_speaker::NodeReason::IpvsArpUnfiltered).collect();
    assert_eq!(ipvs.len(), 1, "one Event for one failure, however often retried: {reported:?}");
    for needle in ["eth0 (arp_ignore=0, arp_announce=0)", "strictARP: true", "arp_ignore=1", "openelb-ipvs-arp"] {
        assert!(ipvs[0].note.contains(needle), "{needle}: {}", ipvs[0].note);
    }

    // It works again: filtering, and the VIP this node holds is not in it.
    net.fail_filter(false);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(metrics.ipvs_arp_filter.get(), 1);
    assert_eq!(net.filters().last(), Some(&Some(vec![])));
    ctl.send(Control::Shutdown).await.unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn turned_off_it_only_reports_and_clears_a_filter_left_by_an_earlier_run() {
    let (net, _inject) = FakeNet::new(&[], false);
    let Running { ctl, task, metrics, mut events, .. } = start_ipvs(Arc::clone(&net), IpvsArpFilter::Off);
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(net.filters(), vec![None], "only the removal of a leftover");
    assert_eq!(metrics.ipvs_arp_filter.get(), 2);
    let reported = node_events(&mut events);
    let ipvs: Vec<_> = reported.iter().filter(|e| e.reason == openelb_speaker::NodeReason::IpvsArpUnfiltered).collect();
    assert_eq!(ipvs.len(), 1, "{reported:?}");
    assert!(ipvs[0].note.contains("--ipvs-arp-filter off") && ipvs[0].note.contains("strictARP"), "{}", ipvs[0].note);
    ctl.send(Control::Shutdown).await.unwrap();
    task.await.unwrap().unwrap();
}
