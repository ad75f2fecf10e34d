//! Gratuitous ARP / unsolicited NA bursts after a takeover, in a spawned task whose first round goes out at
//! once (takeover-to-first-GARP latency is what clients feel), so the VRRP loop never waits on the spacing. A
//! round only announces addresses the node still holds: a node that steps down mid-burst (a partition heals, a
//! graceful handover) must not keep pulling traffic to itself.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openelb_net::ops::{Interface, NetOps};
use prometheus_client::metrics::counter::Counter;

/// Announcements sent between two chances for the rest of the thread to run (about 1 ms of sending).
const YIELD_EVERY: usize = 128;

/// The (interface index, address) pairs this node currently has configured as VIPs, shared with burst tasks.
#[derive(Debug, Clone, Default)]
pub struct HeldSet(Arc<Mutex<HashSet<(u32, IpAddr)>>>);

impl HeldSet {
    pub fn insert(&self, index: u32, ip: IpAddr) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert((index, ip));
    }

    pub fn remove(&self, index: u32, ip: IpAddr) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&(index, ip));
    }

    pub fn contains(&self, index: u32, ip: IpAddr) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).contains(&(index, ip))
    }

    /// Forgets every address held on the interface `index` (it is gone, and its addresses with it).
    pub fn forget_interface(&self, index: u32) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).retain(|(i, _)| *i != index);
    }

    /// Every (interface index, address) held now.
    pub fn snapshot(&self) -> Vec<(u32, IpAddr)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect()
    }
}

/// Sends one announcement per held address in `addresses`; returns how many went out (also added to `sent`).
/// Errors are logged, never returned: a lost GARP costs a client a retry, not the node its role.
pub async fn send_round<N: NetOps>(
    net: &N,
    iface: &Interface,
    addresses: &[IpAddr],
    held: &HeldSet,
    sent_counter: &Counter,
) -> usize {
    let Some(mac) = iface.mac else {
        tracing::error!(interface = %iface.name, "interface has no Ethernet address: cannot announce VIPs");
        return 0;
    };
    let mut sent = 0;
    for (i, ip) in addresses.iter().filter(|ip| held.contains(iface.index, **ip)).enumerate() {
        // Sending never waits, so a round of thousands would hold the thread (the VRRP loop's) for tens of
        // milliseconds: let it send its adverts in between.
        if i > 0 && i % YIELD_EVERY == 0 {
            tokio::task::yield_now().await;
        }
        match net.announce(iface, *ip, mac).await {
            Ok(()) => {
                sent += 1;
                sent_counter.inc();
            }
            Err(e) => tracing::warn!(interface = %iface.name, vip = %ip, error = %e, "announcement failed"),
        }
    }
    sent
}

/// Sends `count` rounds, `spacing` apart, the first at once, in a spawned task, so the caller (the VRRP loop)
/// never waits for the spacing; rounds yield to it every [`YIELD_EVERY`] announcements.
pub fn spawn_burst<N: NetOps + 'static>(
    net: Arc<N>,
    iface: Interface,
    addresses: Vec<IpAddr>,
    count: u32,
    spacing: Duration,
    held: HeldSet,
    sent_counter: Counter,
) {
    if count == 0 {
        return;
    }
    tokio::spawn(async move {
        for round in 0..count {
            if round > 0 {
                tokio::time::sleep(spacing).await;
            }
            if send_round(net.as_ref(), &iface, &addresses, &held, &sent_counter).await == 0 {
                // Nothing held any more (stepped down) or nothing can be sent: the burst is over.
                return;
            }
        }
    });
}
