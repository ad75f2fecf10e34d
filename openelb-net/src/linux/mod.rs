//! [`NetOps`] on Linux: rtnetlink for addresses, links and routes; raw IP sockets for VRRP; `AF_PACKET` for
//! gratuitous ARP and unsolicited NA frames. Everything is created in the network namespace of the thread
//! that constructs it (sockets keep their namespace for life), which is how the tests target namespaces.

pub mod arp_filter;
mod codec;
mod frames;
pub mod netlink;
mod sysctl;
pub mod vrrp_socket;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use openelb_core::ipvs_arp::{IPVS_INTERFACE, IpvsArp, NicArp};
use openelb_core::vrrp::Advert;
use openelb_core::vrrp::consts::{MULTICAST_V4, MULTICAST_V6};
use rtnetlink::Handle;

use crate::ops::{AdvertReceiver, IfaceSpec, Incoming, Interface, NetError, NetOps};
use crate::wire::MacAddr;
pub use netlink::{VIP_ADDR_PROTO, VIP_LABEL_SUFFIX, vip_label};
use openelb_core::model::IpFamily;
pub use vrrp_socket::{VrrpReceiver, VrrpSender};

/// The Linux backend. Cheap to share behind an `Arc`; VRRP send sockets are opened on first use per
/// interface and family and kept.
pub struct LinuxNet {
    handle: Handle,
    senders: Mutex<HashMap<(u32, IpFamily), Arc<VrrpSender>>>,
    /// Opened on first use and kept: see [`frames`] for why.
    frames: Mutex<Option<Arc<frames::FrameSocket>>>,
    snapshots: Mutex<HashMap<u32, ForeignListing>>,
    /// Opened with the rest, so that it lives in the same namespace; the error is reported when a filter is
    /// wanted.
    arp_filter: Result<arp_filter::ArpFilter, Arc<arp_filter::FilterError>>,
}

/// The node's own addresses on one interface and when they were listed.
type ForeignListing = (std::time::Instant, Arc<Vec<IpAddr>>);

/// How old an address listing may be when adding or removing VIPs.
const SNAPSHOT_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Address additions in flight on the netlink socket at once. Each ack waits in the socket's receive buffer
/// (about 1 kB of it) until the connection task reads it; 64 stay well inside the default 208 kB, so no ack is
/// ever dropped for want of room (ENOBUFS).
const ADDS_IN_FLIGHT: usize = 64;

/// The error of an addition that could not start: the node's own addresses could not be listed.
fn listing_failed(iface: &Interface, ip: IpAddr, why: &str) -> NetError {
    NetError::Io {
        iface: iface.name.clone(),
        op: format!("add VIP {ip}"),
        source: std::io::Error::other(format!("cannot list the interface's addresses: {why}")),
    }
}

impl LinuxNet {
    /// Opens a netlink connection in the calling thread's network namespace and spawns its driver task, so
    /// it must be called inside a tokio runtime.
    pub fn new() -> Result<Self, NetError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|source| NetError::Io {
            iface: "*".into(),
            op: "open netlink socket".into(),
            source,
        })?;
        tokio::spawn(conn);
        Ok(LinuxNet {
            handle,
            senders: Mutex::new(HashMap::new()),
            frames: Mutex::new(None),
            snapshots: Mutex::new(HashMap::new()),
            arp_filter: arp_filter::ArpFilter::open().map_err(Arc::new),
        })
    }

    fn arp_filter(&self, op: &'static str) -> Result<&arp_filter::ArpFilter, NetError> {
        self.arp_filter.as_ref().map_err(|e| NetError::ArpFilter {
            table: arp_filter::TABLE,
            op,
            source: Box::new(std::io::Error::other(e.to_string())),
        })
    }

    /// The raw rtnetlink handle, for callers that need more than the trait offers.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The node's own addresses on the interface, listed at most [`SNAPSHOT_TTL`] ago: adding or removing a
    /// VIP must never touch them, and a dump per VIP made a 1000-VIP takeover quadratic.
    async fn foreign(&self, iface: &Interface) -> Result<Arc<Vec<IpAddr>>, NetError> {
        {
            let cache = self.snapshots.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, snap)) = cache.get(&iface.index)
                && at.elapsed() < SNAPSHOT_TTL
            {
                return Ok(Arc::clone(snap));
            }
        }
        let snap = Arc::new(netlink::foreign(&self.handle, iface).await?);
        let mut cache = self.snapshots.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(iface.index, (std::time::Instant::now(), Arc::clone(&snap)));
        Ok(snap)
    }

    fn frame_socket(&self) -> std::io::Result<Arc<frames::FrameSocket>> {
        let mut slot = self.frames.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sock) = slot.as_ref() {
            return Ok(Arc::clone(sock));
        }
        let sock = Arc::new(frames::FrameSocket::open()?);
        *slot = Some(Arc::clone(&sock));
        Ok(sock)
    }

    fn sender(&self, iface: &Interface, family: IpFamily) -> Result<Arc<VrrpSender>, NetError> {
        let mut map = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(&(iface.index, family)) {
            return Ok(Arc::clone(s));
        }
        let sender = Arc::new(VrrpSender::open(iface, family)?);
        map.insert((iface.index, family), Arc::clone(&sender));
        Ok(sender)
    }

    /// Forgets cached send sockets of an interface, e.g. after it was recreated with a new index.
    pub fn forget_interface(&self, index: u32) {
        self.senders.lock().unwrap_or_else(|p| p.into_inner()).retain(|(i, _), _| *i != index);
    }
}

impl NetOps for LinuxNet {
    type Receiver = VrrpReceiver;

    async fn resolve(&self, spec: &IfaceSpec) -> Result<Interface, NetError> {
        netlink::resolve(&self.handle, spec).await
    }

    async fn source_address(&self, iface: &Interface, family: IpFamily) -> Result<IpAddr, NetError> {
        netlink::source_address(&self.handle, iface, family).await
    }

    async fn add_vip(&self, iface: &Interface, ip: IpAddr) -> Result<(), NetError> {
        let foreign = self.foreign(iface).await?;
        netlink::add_vip(&self.handle, iface, ip, &foreign).await?;
        tracing::debug!(iface = %iface.name, %ip, "VIP added");
        Ok(())
    }

    async fn add_vips(&self, iface: &Interface, ips: &[IpAddr]) -> Vec<Result<(), NetError>> {
        let foreign = match self.foreign(iface).await {
            Ok(f) => f,
            Err(e) => {
                let why = e.to_string();
                return ips.iter().map(|ip| Err(listing_failed(iface, *ip, &why))).collect();
            }
        };
        let results: Vec<Result<(), NetError>> = futures::stream::iter(ips.iter().copied())
            .map(|ip| netlink::add_vip(&self.handle, iface, ip, &foreign))
            .buffered(ADDS_IN_FLIGHT)
            .collect()
            .await;
        tracing::debug!(
            iface = %iface.name, vips = ips.len(), failed = results.iter().filter(|r| r.is_err()).count(),
            "VIPs added"
        );
        results
    }

    async fn remove_vip(&self, iface: &Interface, ip: IpAddr) -> Result<bool, NetError> {
        let foreign = self.foreign(iface).await?;
        let removed = netlink::remove_vip(&self.handle, iface, ip, &foreign).await?;
        tracing::debug!(iface = %iface.name, %ip, removed, "VIP removed");
        Ok(removed)
    }

    async fn link_up(&self, iface: &Interface) -> Result<bool, NetError> {
        netlink::link_up(&self.handle, iface).await
    }

    async fn list_our_vips(&self, iface: &Interface) -> Result<Vec<IpAddr>, NetError> {
        netlink::list_our_vips(&self.handle, iface).await
    }

    async fn announce(&self, iface: &Interface, ip: IpAddr, mac: MacAddr) -> Result<(), NetError> {
        let frame = match ip {
            IpAddr::V4(v4) => codec::garp(mac, v4),
            IpAddr::V6(v6) => codec::unsolicited_na(mac, v6),
        };
        let what = if ip.is_ipv4() { "gratuitous ARP" } else { "unsolicited NA" };
        let frame = frame.map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e));
        let sent = frame.and_then(|frame| self.frame_socket().and_then(|sock| sock.send(iface.index, &frame)));
        sent.map_err(|source| NetError::Io { iface: iface.name.clone(), op: format!("send {what} for {ip}"), source })
    }

    async fn send_advert(
        &self,
        iface: &Interface,
        src: IpAddr,
        advert: &Advert,
        peers: &[IpAddr],
    ) -> Result<(), NetError> {
        let family = IpFamily::of(&src);
        let group = match family {
            IpFamily::V4 => IpAddr::V4(MULTICAST_V4),
            IpFamily::V6 => IpAddr::V6(MULTICAST_V6),
        };
        let sender = self.sender(iface, family)?;
        let dsts: &[IpAddr] = if peers.is_empty() { std::slice::from_ref(&group) } else { peers };
        for dst in dsts {
            let payload = codec::emit_advert(src, *dst, advert)
                .map_err(|e| NetError::BadAdvert { vrid: advert.vrid, reason: format!("{src} -> {dst}: {e}") })?;
            sender.send(src, *dst, &payload).await?;
        }
        Ok(())
    }

    async fn ipvs_arp(&self, nics: &[Interface]) -> Result<IpvsArp, NetError> {
        let present = match netlink::link_by_name(&self.handle, IPVS_INTERFACE).await {
            Ok(_) => true,
            Err(NetError::NoSuchInterface(_)) => false,
            Err(e) => return Err(e),
        };
        if !present {
            return Ok(IpvsArp::NoIpvs);
        }
        let all = sysctl::arp_conf("all")?;
        let mut confs = Vec::with_capacity(nics.len());
        for nic in nics {
            confs.push(NicArp { nic: nic.name.clone(), conf: sysctl::effective(all, &nic.name)? });
        }
        Ok(IpvsArp::assess(true, &confs))
    }

    async fn set_arp_filter(&self, drop: &[Ipv4Addr]) -> Result<(), NetError> {
        let op = "replace";
        self.arp_filter(op)?.replace(drop).map_err(|e| NetError::ArpFilter {
            table: arp_filter::TABLE,
            op,
            source: Box::new(e),
        })
    }

    async fn remove_arp_filter(&self) -> Result<(), NetError> {
        let op = "remove";
        self.arp_filter(op)?.remove().map_err(|e| NetError::ArpFilter {
            table: arp_filter::TABLE,
            op,
            source: Box::new(e),
        })
    }

    fn advert_receiver(&self, iface: &Interface, family: IpFamily) -> Result<VrrpReceiver, NetError> {
        VrrpReceiver::open(iface, family)
    }
}

impl AdvertReceiver for VrrpReceiver {
    async fn recv(&mut self) -> Result<Incoming, NetError> {
        VrrpReceiver::recv(self).await
    }
}
