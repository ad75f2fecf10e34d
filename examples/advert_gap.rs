//! Measures how regular a speaker's adverts stay while it re-plans a large cluster: the speaker (its real
//! driver, on a single-threaded runtime like the binary's VRRP loop) runs over a backend that records the
//! moment of every advert it sends, holds the groups of one node of 20,000 VIPs, then gets a changed snapshot
//! and re-plans all of it. Printed: how long the plan took and the worst gap between two adverts of one group
//! around the re-plan, against the advert interval (backups declare a silent master dead after ~3 intervals
//! plus skew). A measurement, not a test: nothing is asserted.
//!
//! Run: `cargo run --release --example advert_gap [VIPS] [NODES]` (defaults 20000 and 12). The addresses come
//! from 2001:db8::/112 (documentation addresses); nothing touches a network.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openelb::core::model::{ANNOTATION_LB, ANNOTATION_LB_VALUE, IpFamily};
use openelb::core::vrrp::Advert;
use openelb::core::{Cluster, Node, Pool, Protocol, Service, TrafficPolicy};
use openelb::net::ops::{AdvertReceiver, IfaceSpec, Incoming, Interface, NetError, NetOps};
use openelb::net::wire::MacAddr;
use openelb::speaker::{AddressSource, Control, Speaker, SpeakerConfig, SpeakerMetrics};
use tokio::sync::mpsc;

/// A backend that does nothing but note when each advert (by VRID) was sent.
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<(Instant, u8)>>,
}

struct Silent;

impl AdvertReceiver for Silent {
    async fn recv(&mut self) -> Result<Incoming, NetError> {
        std::future::pending().await
    }
}

impl NetOps for Recorder {
    type Receiver = Silent;

    async fn resolve(&self, _: &IfaceSpec) -> Result<Interface, NetError> {
        Ok(Interface { name: "eth0".into(), index: 2, mac: Some(MacAddr([2, 0, 0, 0, 0, 1])) })
    }

    async fn source_address(&self, _: &Interface, family: IpFamily) -> Result<IpAddr, NetError> {
        Ok(match family {
            IpFamily::V4 => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            IpFamily::V6 => IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
        })
    }

    async fn add_vip(&self, _: &Interface, _: IpAddr) -> Result<(), NetError> {
        Ok(())
    }

    async fn remove_vip(&self, _: &Interface, _: IpAddr) -> Result<bool, NetError> {
        Ok(true)
    }

    async fn list_our_vips(&self, _: &Interface) -> Result<Vec<IpAddr>, NetError> {
        Ok(Vec::new())
    }

    async fn announce(&self, _: &Interface, _: IpAddr, _: MacAddr) -> Result<(), NetError> {
        Ok(())
    }

    async fn send_advert(&self, _: &Interface, _: IpAddr, advert: &Advert, _: &[IpAddr]) -> Result<(), NetError> {
        if let Ok(mut sent) = self.sent.lock() {
            sent.push((Instant::now(), advert.vrid));
        }
        Ok(())
    }

    fn advert_receiver(&self, _: &Interface, _: IpFamily) -> Result<Silent, NetError> {
        Ok(Silent)
    }
}

/// `vips` Cluster-policy Services on `nodes` Ready nodes, each showing its address in its ingress.
fn cluster(vips: u32, nodes: usize) -> Cluster {
    let nodes: Vec<Node> = (0..nodes)
        .map(|i| Node {
            name: format!("node-{i:03}"),
            ready: true,
            // Node addresses from 198.51.100.0/24, wrapping past 250 nodes (only names matter to the plan).
            internal_ip: Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, (i % 250) as u8 + 1))),
            ..Node::default()
        })
        .collect();
    let services = (0..vips)
        .map(|i| Service {
            namespace: "gap".into(),
            name: format!("svc-{i:05}"),
            type_: "LoadBalancer".into(),
            annotations: BTreeMap::from([(ANNOTATION_LB.to_string(), ANNOTATION_LB_VALUE.to_string())]),
            external_traffic_policy: TrafficPolicy::Cluster,
            ip_families: vec![IpFamily::V6],
            ingress: vec![
                Ipv6Addr::from(u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)) + u128::from(i)).to_string(),
            ],
            ..Service::default()
        })
        .collect();
    let pool = Pool {
        name: "vip".into(),
        address: "2001:db8::/112".into(),
        protocol: Protocol::Vip,
        interface: Some("eth0".into()),
        ..Pool::default()
    };
    Cluster { pools: vec![pool], services, nodes, ..Cluster::default() }
}

/// The worst gap between two adverts of one VRID sent between `from` and `to`, with that VRID.
fn worst_gap(sent: &[(Instant, u8)], from: Instant, to: Instant) -> Option<(Duration, u8)> {
    let mut last: BTreeMap<u8, Instant> = BTreeMap::new();
    let mut worst: Option<(Duration, u8)> = None;
    for (at, vrid) in sent.iter().filter(|(at, _)| *at >= from && *at <= to) {
        if let Some(prev) = last.insert(*vrid, *at) {
            let gap = at.duration_since(prev);
            if worst.is_none_or(|(w, _)| gap > w) {
                worst = Some((gap, *vrid));
            }
        }
    }
    worst
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let vips: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(20_000).min(65_000);
    let nodes: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(12).max(1);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let net = Arc::new(Recorder::default());
        let config = SpeakerConfig { addresses: AddressSource::Ingress, ..SpeakerConfig::new("node-000") };
        let interval = Duration::from_millis(u64::from(config.advert_interval_cs) * 10);
        let metrics = SpeakerMetrics::default();
        let speaker = Speaker::new(Arc::clone(&net), config)?.with_metrics(metrics.clone());
        let (control, rx) = mpsc::channel(4);
        let started = Instant::now();
        let task = tokio::spawn(speaker.run(cluster(vips, nodes), rx));
        // Alone on its segment, it becomes master of every group it takes part in (after its first plan and
        // Master_Down_Interval, and after adding every VIP); wait until no new group appears for 2 s.
        let groups = || net.sent.lock().map(|s| s.iter().map(|(_, v)| *v).collect::<BTreeSet<u8>>().len()).unwrap_or(0);
        let (mut seen, mut since) = (0, Instant::now());
        while seen == 0 || since.elapsed() < Duration::from_secs(2) {
            if started.elapsed() > Duration::from_secs(120) {
                anyhow::bail!("the speaker never settled");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = groups();
            if now != seen {
                (seen, since) = (now, Instant::now());
            }
        }
        let first_plan = metrics.plan_seconds.get();

        // A changed snapshot (one Service gone): the whole cluster is planned again.
        let mut changed = cluster(vips, nodes);
        changed.services.pop();
        let reload = Instant::now();
        control.send(Control::Reload(Box::new(changed))).await?;
        let baseline_end = reload;
        let baseline_start = reload - Duration::from_secs(2);
        while metrics.plan_seconds.get() == first_plan && reload.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let plan = Duration::from_secs_f64(metrics.plan_seconds.get());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let end = Instant::now();
        control.send(Control::Shutdown).await?;
        task.await??;

        let sent = net.sent.lock().map(|s| s.clone()).unwrap_or_default();
        let groups: BTreeSet<u8> = sent.iter().map(|(_, v)| *v).collect();
        println!(
            "{vips} VIPs on {nodes} nodes; node-000 masters {} VRRP groups; advert interval {interval:?}",
            groups.len()
        );
        println!(
            "first plan: {:.0} ms; re-plan after the change: {:.0} ms",
            first_plan * 1000.0,
            plan.as_secs_f64() * 1000.0
        );
        if let Some((gap, vrid)) = worst_gap(&sent, baseline_start, baseline_end) {
            println!(
                "worst advert gap in the 2 s before the change: {:.1} ms (VRID {vrid})",
                gap.as_secs_f64() * 1000.0
            );
        }
        if let Some((gap, vrid)) = worst_gap(&sent, reload, end) {
            println!(
                "worst advert gap while re-planning and after: {:.1} ms (VRID {vrid}); backups wait {:.0} ms",
                gap.as_secs_f64() * 1000.0,
                (interval * 3).as_secs_f64() * 1000.0 + interval.as_secs_f64() * 1000.0 * 0.5
            );
        }
        Ok(())
    })
}
