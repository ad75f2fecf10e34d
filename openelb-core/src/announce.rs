//! What must be announced where: every allocated address with the Services sharing it, its candidate nodes and
//! their preference order. The simulator, the speaker and the VRRP planner all start from this one list, so
//! they can never disagree about who may hold a VIP.

use std::net::IpAddr;

use crate::election;
use crate::ipam::Ipam;
use crate::model::{Cluster, Protocol, ServiceKey, TrafficPolicy, positions_by_key};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipTarget {
    pub vip: IpAddr,
    pub pool: String,
    pub protocol: Protocol,
    /// The pool's `spec.interface` (a NIC name or `can_reach:<ip>`); `None` means the node's InternalIP NIC.
    pub interface: Option<String>,
    /// Services sharing the address, sorted.
    pub services: Vec<ServiceKey>,
    /// Nodes that may hold the VIP (union over the sharers), sorted by name.
    pub candidates: Vec<String>,
    /// `candidates` in rendezvous preference order: the first one holds the VIP while it is alive.
    pub preference: Vec<String>,
}

/// Targets of every pool, in pool-name then address order. Services named in `used` but absent from the
/// cluster are ignored (they contribute no candidates); a VIP whose sharers are all absent has no candidates.
///
/// O(n log n) in Services and addresses (times the node count for candidates and ranking): Services are looked
/// up through one index, and the `Cluster`-policy candidate list, the same for every Service, is computed once.
pub fn targets(cluster: &Cluster, ipam: &Ipam) -> Vec<VipTarget> {
    // The first Service of a key wins, should the list name one twice.
    let by_key = positions_by_key(&cluster.services);
    let mut cluster_wide: Option<Vec<&str>> = None;
    let mut pools: Vec<_> = cluster.pools.iter().collect();
    pools.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::new();
    for pool in pools {
        let Some(status) = ipam.pool_status(&pool.name) else { continue };
        for (ip, holders) in &status.used {
            let Ok(vip) = ip.parse::<IpAddr>() else { continue };
            let mut keys: Vec<ServiceKey> = holders.split(';').filter_map(ServiceKey::parse).collect();
            keys.sort();
            keys.dedup();
            let mut sets: Vec<Vec<&str>> = Vec::with_capacity(keys.len());
            for s in keys.iter().filter_map(|k| cluster.services.get(*by_key.get(k)?)) {
                sets.push(match s.external_traffic_policy {
                    TrafficPolicy::Cluster => {
                        cluster_wide.get_or_insert_with(|| election::candidates(s, &cluster.nodes, &[])).clone()
                    }
                    TrafficPolicy::Local => {
                        let eps = cluster.endpoints.get(&s.key()).map(Vec::as_slice).unwrap_or_default();
                        election::candidates(s, &cluster.nodes, eps)
                    }
                });
            }
            // One sharer (the usual case): its list is sorted and deduplicated already.
            let candidates: Vec<&str> = match sets.len() {
                1 => sets.pop().unwrap_or_default(),
                _ => election::candidates_union(&sets),
            };
            let preference = election::rank(&vip, &candidates).into_iter().map(str::to_string).collect();
            out.push(VipTarget {
                vip,
                pool: pool.name.clone(),
                protocol: pool.protocol,
                interface: pool.interface.clone().filter(|i| !i.is_empty()),
                services: keys,
                candidates: candidates.into_iter().map(str::to_string).collect(),
                preference,
            });
        }
    }
    out
}
