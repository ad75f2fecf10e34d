//! A recording fake backend for the speaker's loop: node-a's eth0 (192.0.2.3, link-local fe80::3), every VIP
//! change, GARP and advert recorded with the (tokio, possibly paused) time it happened, and adverts injected
//! through a channel as if received. kube-ipvs0 and the ARP settings are whatever the test says
//! ([`FakeNet::set_ipvs`]); the ARP filters set are recorded apart from the other operations.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use openelb_core::ipvs_arp::IpvsArp;
use openelb_core::model::IpFamily;
use openelb_core::vrrp::{Advert, Received};
use openelb_net::ops::{AdvertReceiver, IfaceSpec, Incoming, Interface, NetError, NetOps};
use openelb_net::wire::MacAddr;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What the speaker did on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Add(IpAddr),
    Remove(IpAddr),
    Announce(IpAddr),
    /// An advert sent, by its priority.
    Advert(u8),
}

pub struct FakeNet {
    ops: Mutex<Vec<(Instant, Op)>>,
    ours: Mutex<Vec<IpAddr>>,
    fail_adds: bool,
    inject: Mutex<Option<mpsc::Receiver<Received>>>,
    ipvs: Mutex<IpvsArp>,
    fail_filter: Mutex<bool>,
    /// Every ARP filter set (`Some(drop)`) or removed (`None`), in order.
    filters: Mutex<Vec<Option<Vec<Ipv4Addr>>>>,
}

impl FakeNet {
    /// `stale`: VIPs already on eth0 as ours. `fail_adds`: every VIP addition fails. The sender injects adverts
    /// into the first receiver the speaker opens (later ones hear nothing).
    pub fn new(stale: &[&str], fail_adds: bool) -> (Arc<Self>, mpsc::Sender<Received>) {
        let (tx, rx) = mpsc::channel(16);
        let net = FakeNet {
            ops: Mutex::new(Vec::new()),
            ours: Mutex::new(stale.iter().map(|s| s.parse().unwrap()).collect()),
            fail_adds,
            inject: Mutex::new(Some(rx)),
            ipvs: Mutex::new(IpvsArp::NoIpvs),
            fail_filter: Mutex::new(false),
            filters: Mutex::new(Vec::new()),
        };
        (Arc::new(net), tx)
    }

    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap().iter().map(|(_, op)| op.clone()).collect()
    }

    pub fn count(&self, op: &Op) -> usize {
        self.ops().iter().filter(|x| *x == op).count()
    }

    /// The priorities of the adverts sent, in order.
    pub fn adverts(&self) -> Vec<u8> {
        self.ops()
            .into_iter()
            .filter_map(|op| match op {
                Op::Advert(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// When `op` first happened.
    pub fn first(&self, op: &Op) -> Option<Instant> {
        self.ops.lock().unwrap().iter().find(|(_, o)| o == op).map(|(t, _)| *t)
    }

    /// What `ipvs_arp` reports from now on.
    pub fn set_ipvs(&self, seen: IpvsArp) {
        *self.ipvs.lock().unwrap() = seen;
    }

    /// Whether setting the ARP filter fails (as without NET_ADMIN or nf_tables).
    pub fn fail_filter(&self, fail: bool) {
        *self.fail_filter.lock().unwrap() = fail;
    }

    pub fn filters(&self) -> Vec<Option<Vec<Ipv4Addr>>> {
        self.filters.lock().unwrap().clone()
    }

    fn push(&self, op: Op) {
        self.ops.lock().unwrap().push((Instant::now(), op));
    }
}

/// The injected adverts, or silence.
pub struct FakeReceiver(Option<mpsc::Receiver<Received>>);

impl AdvertReceiver for FakeReceiver {
    async fn recv(&mut self) -> Result<Incoming, NetError> {
        let Some(rx) = &mut self.0 else { return std::future::pending().await };
        match rx.recv().await {
            Some(r) => Ok(Incoming::Advert(r)),
            None => std::future::pending().await,
        }
    }
}

impl NetOps for FakeNet {
    type Receiver = FakeReceiver;

    async fn resolve(&self, spec: &IfaceSpec) -> Result<Interface, NetError> {
        assert_eq!(spec, &IfaceSpec::Name("eth0".into()));
        Ok(Interface { name: "eth0".into(), index: 2, mac: Some(MacAddr([2, 0, 0, 0, 0, 3])) })
    }

    async fn source_address(&self, _: &Interface, family: IpFamily) -> Result<IpAddr, NetError> {
        // IPv6 adverts go out from the interface's link-local address.
        Ok(match family {
            IpFamily::V4 => "192.0.2.3".parse().unwrap(),
            IpFamily::V6 => "fe80::3".parse().unwrap(),
        })
    }

    async fn add_vip(&self, iface: &Interface, ip: IpAddr) -> Result<(), NetError> {
        self.push(Op::Add(ip));
        if self.fail_adds {
            return Err(NetError::NotOurs { iface: iface.name.clone(), ip, op: "add" });
        }
        self.ours.lock().unwrap().push(ip);
        Ok(())
    }

    async fn remove_vip(&self, _: &Interface, ip: IpAddr) -> Result<bool, NetError> {
        self.push(Op::Remove(ip));
        let mut ours = self.ours.lock().unwrap();
        let had = ours.contains(&ip);
        ours.retain(|x| *x != ip);
        Ok(had)
    }

    async fn list_our_vips(&self, _: &Interface) -> Result<Vec<IpAddr>, NetError> {
        Ok(self.ours.lock().unwrap().clone())
    }

    async fn announce(&self, _: &Interface, ip: IpAddr, _: MacAddr) -> Result<(), NetError> {
        self.push(Op::Announce(ip));
        Ok(())
    }

    async fn send_advert(&self, _: &Interface, _: IpAddr, advert: &Advert, _: &[IpAddr]) -> Result<(), NetError> {
        self.push(Op::Advert(advert.priority));
        Ok(())
    }

    async fn ipvs_arp(&self, _: &[Interface]) -> Result<IpvsArp, NetError> {
        Ok(self.ipvs.lock().unwrap().clone())
    }

    async fn set_arp_filter(&self, drop: &[Ipv4Addr]) -> Result<(), NetError> {
        if *self.fail_filter.lock().unwrap() {
            let source = Box::new(std::io::Error::from_raw_os_error(libc_eperm()));
            return Err(NetError::ArpFilter { table: "openelb-ipvs-arp", op: "replace", source });
        }
        self.filters.lock().unwrap().push(Some(drop.to_vec()));
        Ok(())
    }

    async fn remove_arp_filter(&self) -> Result<(), NetError> {
        self.filters.lock().unwrap().push(None);
        Ok(())
    }

    fn advert_receiver(&self, _: &Interface, _: IpFamily) -> Result<FakeReceiver, NetError> {
        Ok(FakeReceiver(self.inject.lock().unwrap().take()))
    }
}

/// EPERM, what the kernel answers a process without NET_ADMIN.
fn libc_eperm() -> i32 {
    1
}
