//! What the lab will build, decided before anything is touched: the seed's addresses moved into the
//! documentation ranges, the VIP the allocator gives the Service, the Pods behind each node and every name.
//! Pure, so the mapping and the refusal of foreign addresses are tested without root.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use openelb_core::addr::AddrRange;
use openelb_core::ipam::{Change, Ipam};
use openelb_core::model::{ANNOTATION_EIP_IP, Cluster, Endpoint, Protocol, ServiceKey, TrafficPolicy};
use openelb_core::{election, endpoints};
use openelb_k8s::offline;

use crate::netns::PREFIX;

/// The seed's LAN; its hosts keep their last octet in [`LAB_NET`].
pub const SEED_NET: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 0);
/// The lab's LAN (TEST-NET-1).
pub const LAB_NET: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 0);
/// Pod subnets, one /28 per node (TEST-NET-2).
pub const POD_NET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 0);
pub const POD_BLOCK: u8 = 16;
/// The seed's client (it has no Node object).
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 5);
pub const CLIENT_MAC: [u8; 6] = [0x52, 0x54, 0x22, 0xfa, 0xb9, 0x3b];
/// Port the Pods listen on when the Service names none we can use.
pub const DEFAULT_TARGET_PORT: u16 = 8080;

/// Moves an address of the seed's 192.168.0.0/24 to 192.0.2.0/24 (same last octet); others are unchanged.
pub fn map_seed_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.octets()[..3] == SEED_NET.octets()[..3] => {
            let o = LAB_NET.octets();
            IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], v4.octets()[3]))
        }
        other => other,
    }
}

/// The only ranges the lab may ever configure: TEST-NET-1, TEST-NET-2 and 2001:db8::/32.
pub fn is_documentation(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            (o[..3] == [192, 0, 2]) || (o[..3] == [198, 51, 100])
        }
        IpAddr::V6(v6) => v6.segments()[..2] == [0x2001, 0x0db8],
    }
}

fn checked_ip(what: &str, ip: IpAddr) -> Result<IpAddr> {
    let mapped = map_seed_ip(ip);
    if !is_documentation(&mapped) {
        bail!(
            "{what} {ip}: the lab only uses 192.0.2.0/24, 198.51.100.0/24 and 2001:db8::/32 \
             (192.168.0.x maps to 192.0.2.x); refusing to configure it"
        );
    }
    Ok(mapped)
}

fn checked_ip_str(what: &str, raw: &str) -> Result<String> {
    let ip: IpAddr = raw.trim().parse().map_err(|_| anyhow!("{what} {raw:?}: not an IP address"))?;
    Ok(checked_ip(what, ip)?.to_string())
}

/// Maps a pool's `spec.address` (address, `first-last` or CIDR) and checks that the whole mapped range lies
/// in one documentation range.
pub fn map_pool_address(pool: &str, spec: &str) -> Result<String> {
    let what = format!("Eip {pool} address");
    let range = AddrRange::parse(spec).map_err(|e| anyhow!("{what} {spec:?}: {e}"))?;
    let mapped = if let Some((base, prefix)) = spec.split_once('/') {
        format!("{}/{}", checked_ip_str(&what, base)?, prefix.trim())
    } else if let Some((first, last)) = spec.split_once('-') {
        format!("{}-{}", checked_ip_str(&what, first)?, checked_ip_str(&what, last)?)
    } else {
        checked_ip_str(&what, spec)?
    };
    let out = AddrRange::parse(&mapped).map_err(|e| anyhow!("{what} {spec:?} mapped to {mapped:?}: {e}"))?;
    let (start, end) = (out.start(), out.end());
    let same_block = match (start, end) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets()[..3] == b.octets()[..3],
        _ => true,
    };
    if !is_documentation(&start) || !is_documentation(&end) || !same_block || out.size() != range.size() {
        bail!("{what} {spec:?} maps to {mapped:?}, which leaves the documentation ranges; refusing it");
    }
    Ok(mapped)
}

/// Applies [`map_seed_ip`] to every address the lab could configure (pools, node IPs, requested and held
/// VIPs) and refuses anything that would then lie outside the documentation ranges.
pub fn map_cluster(cluster: &mut Cluster) -> Result<()> {
    for pool in &mut cluster.pools {
        pool.address = map_pool_address(&pool.name, &pool.address)?;
        let used = std::mem::take(&mut pool.used);
        for (ip, holders) in used {
            pool.used.insert(checked_ip_str(&format!("Eip {} status.used", pool.name), &ip)?, holders);
        }
    }
    for node in &mut cluster.nodes {
        if let Some(ip) = node.internal_ip {
            node.internal_ip = Some(checked_ip(&format!("Node {} InternalIP", node.name), ip)?);
        }
    }
    for svc in &mut cluster.services {
        let what = format!("Service {}", svc.key());
        if let Some(ip) = svc.load_balancer_ip.as_mut() {
            *ip = checked_ip_str(&format!("{what} spec.loadBalancerIP"), ip)?;
        }
        if let Some(ip) = svc.annotations.get_mut(ANNOTATION_EIP_IP) {
            *ip = checked_ip_str(&format!("{what} annotation {ANNOTATION_EIP_IP}"), ip)?;
        }
        for ip in &mut svc.ingress {
            *ip = checked_ip_str(&format!("{what} status ingress"), ip)?;
        }
    }
    Ok(())
}

pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub name: String,
    pub ns: String,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    /// First address of this node's Pod /28; the node's side of every Pod link is `pod_net + 1`.
    pub pod_net: Ipv4Addr,
}

impl NodeSpec {
    pub fn pod_gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.pod_net) + 1)
    }
    pub fn mac_string(&self) -> String {
        mac_string(&self.mac)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    pub name: String,
    pub node: String,
    pub ns: String,
    pub ip: Ipv4Addr,
    /// The Pod link's name on the node's side (veth names are limited to 15 bytes).
    pub node_if: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub id: String,
    pub switch_ns: String,
    pub client_ns: String,
    pub nodes: Vec<NodeSpec>,
    /// Ready backends of the Service, each in its own namespace behind its node.
    pub pods: Vec<PodSpec>,
    pub service: ServiceKey,
    pub policy: TrafficPolicy,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub target_port: u16,
    /// Candidate nodes for the VIP in preference order (rendezvous rank): who should hold it, then who next.
    pub candidates: Vec<String>,
    /// The mapped cluster with the Service's ingress set and the Pods at their lab addresses, as the speakers'
    /// manifests describe it.
    pub cluster: Cluster,
}

/// Checks an id: it becomes part of namespace and file names.
pub fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 16 || !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        bail!("lab id {id:?}: use 1-16 lowercase letters and digits");
    }
    Ok(())
}

impl Layout {
    pub fn from_paths<P: AsRef<Path>>(paths: &[P], id: &str, policy: Option<TrafficPolicy>) -> Result<Self> {
        let cluster = openelb_k8s::manifest::Manifests::load_paths(paths)
            .and_then(|m| m.to_cluster())
            .context("loading the lab's manifests")?;
        Self::from_cluster(cluster, id, policy)
    }

    /// Plans the lab for the first Service that gets an IPv4 address from a `vip` pool.
    pub fn from_cluster(mut cluster: Cluster, id: &str, policy: Option<TrafficPolicy>) -> Result<Self> {
        check_id(id)?;
        map_cluster(&mut cluster)?;
        if let Some(p) = policy {
            for svc in &mut cluster.services {
                svc.external_traffic_policy = p;
            }
        }
        let vip_pools: Vec<String> =
            cluster.pools.iter().filter(|p| p.protocol == Protocol::Vip).map(|p| p.name.clone()).collect();
        let mut ipam = Ipam::new(&cluster.pools);
        let outcomes = offline::allocate(&mut ipam, &mut cluster);
        let mut chosen: Option<(ServiceKey, Ipv4Addr)> = None;
        for outcome in &outcomes {
            let (pool, ip) = match &outcome.change {
                Change::Assigned { pool, ip, .. } | Change::Kept { pool, ip } => (pool, ip),
                _ => continue,
            };
            if let (None, IpAddr::V4(v4)) = (&chosen, ip)
                && vip_pools.contains(pool)
            {
                chosen = Some((outcome.service.clone(), *v4));
            }
        }
        let (service, vip) =
            chosen.ok_or_else(|| anyhow!("no Service gets an IPv4 address from a pool with protocol: vip"))?;
        if !is_documentation(&IpAddr::V4(vip)) {
            bail!("VIP {vip} is outside the documentation ranges");
        }
        let svc = cluster
            .services
            .iter()
            .find(|s| s.key() == service)
            .cloned()
            .ok_or_else(|| anyhow!("Service {service} vanished"))?;
        let port = svc.ports.first().map(|p| p.port).unwrap_or(80);
        let port = u16::try_from(port).map_err(|_| anyhow!("Service {service}: port {port} is not a TCP port"))?;
        let target_port = svc
            .ports
            .first()
            .and_then(|p| p.target_port.as_deref())
            .and_then(|t| t.parse::<u16>().ok())
            .unwrap_or(DEFAULT_TARGET_PORT);

        let switch_ns = format!("{PREFIX}{id}-sw");
        let client_ns = format!("{PREFIX}{id}-client");
        if cluster.nodes.len() > usize::from(u8::MAX / POD_BLOCK) + 1 {
            bail!("{} nodes: the lab gives each node a /28 of 198.51.100.0/24, so at most 16", cluster.nodes.len());
        }
        let mut nodes = Vec::new();
        for (i, node) in cluster.nodes.iter().enumerate() {
            let ip = match node.internal_ip {
                Some(IpAddr::V4(v4)) if v4.octets()[..3] == LAB_NET.octets()[..3] => v4,
                other => bail!(
                    "Node {}: InternalIP {:?} is not on the lab's LAN 192.0.2.0/24 (seed 192.168.0.0/24)",
                    node.name,
                    other
                ),
            };
            if ip == CLIENT_IP || ip.octets()[3] == 0 || ip.octets()[3] == 255 {
                bail!("Node {}: InternalIP {ip} collides with the client or is not a host address", node.name);
            }
            // `i` is at most 15 here.
            let block = u8::try_from(i).unwrap_or(0).saturating_mul(POD_BLOCK);
            nodes.push(NodeSpec {
                name: node.name.clone(),
                ns: format!("{PREFIX}{id}-{}", node.name),
                ip,
                mac: node.mac.unwrap_or([0x02, 0x00, 0x5e, 0x10, 0x00, ip.octets()[3]]),
                pod_net: Ipv4Addr::new(198, 51, 100, block),
            });
        }
        if let Some(dup) = nodes.iter().enumerate().find(|(i, n)| nodes[..*i].iter().any(|m| m.ip == n.ip)) {
            bail!("Node {}: InternalIP {} is used twice", dup.1.name, dup.1.ip);
        }

        let eps: Vec<Endpoint> = match cluster.endpoints.get(&service) {
            Some(e) => e.clone(),
            None => endpoints::from_pods(&svc, &cluster.pods, &cluster.nodes),
        };
        let mut per_node: BTreeMap<&str, u8> = BTreeMap::new();
        let mut pods = Vec::new();
        for ep in eps.iter().filter(|e| e.ready) {
            let (Some(pod), Some(node_name)) = (ep.pod.as_deref(), ep.node_name.as_deref()) else { continue };
            let Some(node) = nodes.iter().find(|n| n.name == node_name) else { continue };
            let k = per_node.entry(node_name).or_insert(0);
            if *k >= POD_BLOCK - 3 {
                bail!("Node {node_name}: more than {} Pods of {service} do not fit its /28", POD_BLOCK - 3);
            }
            pods.push(PodSpec {
                name: pod.to_string(),
                node: node_name.to_string(),
                ns: format!("{PREFIX}{id}-pod-{pod}"),
                ip: Ipv4Addr::from(u32::from(node.pod_net) + 2 + u32::from(*k)),
                node_if: format!("pod{k}"),
            });
            *k += 1;
        }
        if pods.is_empty() {
            bail!("Service {service} has no ready Pods on the lab's nodes");
        }
        // The speakers read Pods and endpoints with the lab's addresses.
        for p in &mut cluster.pods {
            if let Some(spec) = pods.iter().find(|s| s.name == p.name) {
                p.ip = Some(IpAddr::V4(spec.ip));
            }
        }
        if let Some(list) = cluster.endpoints.get_mut(&service) {
            for ep in list.iter_mut() {
                if let Some(spec) = pods.iter().find(|s| Some(&s.name) == ep.pod.as_ref()) {
                    ep.ip = Some(IpAddr::V4(spec.ip));
                }
            }
        }
        let cands = election::candidates(&svc, &cluster.nodes, &eps);
        let candidates: Vec<String> = election::rank(&IpAddr::V4(vip), &cands).into_iter().map(String::from).collect();
        if candidates.is_empty() {
            bail!("VIP {vip} of {service} has no candidate node");
        }
        Ok(Layout {
            id: id.to_string(),
            switch_ns,
            client_ns,
            nodes,
            pods,
            service,
            policy: svc.external_traffic_policy,
            vip,
            port,
            target_port,
            candidates,
            cluster,
        })
    }

    pub fn node(&self, name: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Node whose eth0 has `mac`, for naming the holder a client's `ip neigh` points to.
    pub fn node_by_mac(&self, mac: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.mac_string().eq_ignore_ascii_case(mac))
    }

    /// Pods `node`'s kube-proxy sends VIP traffic to: all of them under Cluster, its own under Local.
    pub fn backends(&self, node: &str) -> Vec<&PodSpec> {
        self.pods.iter().filter(|p| self.policy == TrafficPolicy::Cluster || p.node == node).collect()
    }

    /// Every namespace the lab creates, the switch last (deleting it removes the bridge ports).
    pub fn namespaces(&self) -> Vec<String> {
        let mut out: Vec<String> = self.pods.iter().map(|p| p.ns.clone()).collect();
        out.extend(self.nodes.iter().map(|n| n.ns.clone()));
        out.push(self.client_ns.clone());
        out.push(self.switch_ns.clone());
        out
    }

    /// 1000-style bench VIPs: `count` IPv6 addresses from 2001:db8:0:91::1 upwards.
    pub fn bench_v6_range(count: u16) -> (Ipv6Addr, Ipv6Addr) {
        let first = Ipv6Addr::new(0x2001, 0xdb8, 0, 0x91, 0, 0, 0, 1);
        let last = Ipv6Addr::from(u128::from(first) + u128::from(count.max(1)) - 1);
        (first, last)
    }
}

/// The seed's lab (examples/vip-mode) as lab `t1`, for the library's unit tests.
#[cfg(test)]
pub(crate) fn seed_layout() -> Layout {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/vip-mode");
    Layout::from_paths(&[root], "t1", None).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Cluster {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/vip-mode");
        openelb_k8s::manifest::Manifests::load_paths(&[root]).and_then(|m| m.to_cluster()).unwrap()
    }

    #[test]
    fn seed_addresses_map_to_test_net_1_keeping_the_last_octet() {
        assert_eq!(map_seed_ip("192.168.0.91".parse().unwrap()), "192.0.2.91".parse::<IpAddr>().unwrap());
        assert_eq!(map_seed_ip("192.168.1.91".parse().unwrap()), "192.168.1.91".parse::<IpAddr>().unwrap());
        assert_eq!(map_pool_address("p", "192.168.0.91-192.168.0.100").unwrap(), "192.0.2.91-192.0.2.100");
        assert_eq!(map_pool_address("p", "192.168.0.64/28").unwrap(), "192.0.2.64/28");
        assert_eq!(map_pool_address("p", "2001:db8::/64").unwrap(), "2001:db8::/64");
    }

    #[test]
    fn addresses_outside_the_documentation_ranges_are_refused() {
        for spec in ["10.0.0.1-10.0.0.9", "192.168.1.5", "192.168.0.0/16", "fd00::/64", "198.51.100.250-198.51.101.3"] {
            let err = map_pool_address("p", spec).unwrap_err().to_string();
            assert!(err.contains("Eip p"), "{spec}: {err}");
        }
        let mut c = seed();
        c.nodes[0].internal_ip = Some("10.1.2.3".parse().unwrap());
        let err = Layout::from_cluster(c, "t1", None).unwrap_err().to_string();
        assert!(err.contains("10.1.2.3"), "{err}");
    }

    #[test]
    fn seed_layout_keeps_the_seeds_hosts_and_macs() {
        let layout = Layout::from_cluster(seed(), "t1", None).unwrap();
        assert_eq!(layout.vip, Ipv4Addr::new(192, 0, 2, 91));
        let by_name: BTreeMap<&str, (Ipv4Addr, String)> =
            layout.nodes.iter().map(|n| (n.name.as_str(), (n.ip, n.mac_string()))).collect();
        assert_eq!(by_name["master1"], (Ipv4Addr::new(192, 0, 2, 2), "52:54:22:a3:9a:d9".to_string()));
        assert_eq!(by_name["worker-p001"], (Ipv4Addr::new(192, 0, 2, 3), "52:54:22:3a:e6:6e".to_string()));
        assert_eq!(by_name["worker-p002"], (Ipv4Addr::new(192, 0, 2, 4), "52:54:22:37:6c:7b".to_string()));
        assert_eq!(layout.pods.len(), 2);
        assert!(layout.pods.iter().all(|p| p.name.starts_with("vip-openelb-")));
        assert!(layout.pods.iter().all(|p| is_documentation(&IpAddr::V4(p.ip))));
        assert_eq!(layout.candidates.len(), 3, "Cluster policy: every Ready node");
        assert_eq!(layout.backends("master1").len(), 2);
        assert!(layout.namespaces().iter().all(|n| n.starts_with("oelb-t1-")));
    }

    #[test]
    fn local_policy_limits_candidates_and_backends_to_nodes_with_pods() {
        let layout = Layout::from_cluster(seed(), "t1", Some(TrafficPolicy::Local)).unwrap();
        assert_eq!(layout.candidates.len(), 2);
        assert!(!layout.candidates.iter().any(|c| c == "master1"));
        assert!(layout.backends("master1").is_empty());
        for c in &layout.candidates {
            let b = layout.backends(c);
            assert_eq!(b.len(), 1);
            assert_eq!(&b[0].node, c);
        }
    }

    #[test]
    fn ids_that_could_escape_a_name_are_refused() {
        for bad in ["", "a/b", "UP", "x-y", "12345678901234567"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
        check_id("t123x4").unwrap();
    }
}
