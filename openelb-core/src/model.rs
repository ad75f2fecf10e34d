//! Plain values the core decides over. They are what the Kubernetes objects (or the CLI's manifests) hold,
//! stripped of everything the decisions do not read, so the core never depends on an API client.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

/// Annotation that opts a Service in (value must be exactly `openelb`).
pub const ANNOTATION_LB: &str = "lb.kubesphere.io/v1alpha1";
pub const ANNOTATION_LB_VALUE: &str = "openelb";
/// `spec.loadBalancerClass` value that opts a Service in without the annotation.
pub const LOAD_BALANCER_CLASS: &str = "kubesphere.io/openelb";
/// Annotation pinning a Service to a pool; also the label the controller writes once it allocated.
pub const ANNOTATION_EIP_POOL: &str = "eip.openelb.kubesphere.io/v1alpha2";
pub const LABEL_EIP_POOL: &str = ANNOTATION_EIP_POOL;
/// Annotation requesting a specific address; wins over `spec.loadBalancerIP`.
pub const ANNOTATION_EIP_IP: &str = "eip.openelb.kubesphere.io/v1alpha1";
/// Annotation selecting among pools of one protocol when no pool is pinned (seed behaviour).
pub const ANNOTATION_PROTOCOL: &str = "protocol.openelb.kubesphere.io/v1alpha1";
/// Annotation on an Eip marking the cluster default pool (value exactly `true` for IPAM).
pub const ANNOTATION_DEFAULT_EIP: &str = "eip.openelb.kubesphere.io/is-default-eip";
pub const FINALIZER_SERVICE: &str = "finalizer.lb.kubesphere.io/v1alpha1";
pub const FINALIZER_EIP: &str = "finalizer.ipam.kubesphere.io/v1alpha1";
/// Bounds of `Eip.spec.priority` in the CRD schema (an `int32`, as Kubernetes integers usually are).
pub const PRIORITY_MIN: i64 = i32::MIN as i64;
pub const PRIORITY_MAX: i64 = i32::MAX as i64;
/// Node label that removes a node from the candidates for every VIP.
pub const LABEL_EXCLUDE_LB: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// `"namespace/name"` of a Service, the key upstream stores in `Eip.status.used`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self { namespace: namespace.into(), name: name.into() }
    }

    /// Parses `ns/name`; `None` when either side is empty or there is no slash.
    pub fn parse(s: &str) -> Option<Self> {
        let (ns, name) = s.split_once('/')?;
        if ns.is_empty() || name.is_empty() || name.contains('/') {
            return None;
        }
        Some(Self::new(ns, name))
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// How a pool's addresses are announced. Upstream maps anything that is not `layer2` or `vip` to `bgp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Protocol {
    #[default]
    Bgp,
    Layer2,
    Vip,
}

impl Protocol {
    /// Upstream's `GetProtocol`: unknown strings and empty mean `bgp`.
    pub fn from_spec(s: Option<&str>) -> Self {
        match s {
            Some("layer2") => Protocol::Layer2,
            Some("vip") => Protocol::Vip,
            _ => Protocol::Bgp,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Bgp => "bgp",
            Protocol::Layer2 => "layer2",
            Protocol::Vip => "vip",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    pub fn of(ip: &IpAddr) -> Self {
        if ip.is_ipv4() { IpFamily::V4 } else { IpFamily::V6 }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        })
    }
}

/// An `Eip` as the core sees it: its spec, the metadata that matters and the `status.used` map it was last
/// written with (the only allocation state that survives a restart).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pool {
    pub name: String,
    /// `spec.address` exactly as written; parsed with [`crate::addr::AddrRange::parse`].
    pub address: String,
    pub protocol: Protocol,
    pub interface: Option<String>,
    pub disable: bool,
    /// `spec.priority`, lower wins. Upstream declares a Go `int` (64 bits); our CRD bounds it to
    /// [`PRIORITY_MIN`]..=[`PRIORITY_MAX`], and validation reports a value outside that an object that bypassed
    /// the schema carries. The allocator ranks by any value.
    pub priority: i64,
    pub namespaces: Vec<String>,
    pub namespace_selector: BTreeMap<String, String>,
    /// Annotation `eip.openelb.kubesphere.io/is-default-eip` is exactly `"true"`.
    pub is_default: bool,
    /// Raw value of the default annotation, for the webhook's case-insensitive uniqueness check.
    pub default_annotation: Option<String>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `status.used`: address → `ns/name[;ns/name...]`.
    pub used: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: i32,
    /// `TCP`, `UDP` or `SCTP`; Kubernetes defaults it to `TCP`.
    pub protocol: String,
    pub node_port: Option<i32>,
    /// Numeric target port when known (a named port is resolved against the Pod's container ports).
    pub target_port: Option<String>,
}

/// A Service as the core sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub annotations: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub finalizers: Vec<String>,
    /// `spec.type`; Kubernetes defaults it to `ClusterIP`.
    pub type_: String,
    pub load_balancer_class: Option<String>,
    pub load_balancer_ip: Option<String>,
    /// `spec.ipFamilies`; empty means "not set" and is treated as `[IPv4]` like a single-stack cluster.
    pub ip_families: Vec<IpFamily>,
    pub external_traffic_policy: TrafficPolicy,
    pub ports: Vec<ServicePort>,
    pub selector: BTreeMap<String, String>,
    pub cluster_ip: Option<String>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `status.loadBalancer.ingress[*].ip`.
    pub ingress: Vec<String>,
}

impl Service {
    pub fn key(&self) -> ServiceKey {
        ServiceKey::new(&self.namespace, &self.name)
    }

    /// Whether this is the Service `key` names, without building a key.
    pub fn has_key(&self, key: &ServiceKey) -> bool {
        self.namespace == key.namespace && self.name == key.name
    }
}

/// Position of each key's Service in `services`, so callers that look Services up by key do not search the
/// list once per lookup (quadratic over a cluster). A list naming a key twice maps it to its first Service, as
/// a search from the front would find.
pub fn positions_by_key(services: &[Service]) -> HashMap<ServiceKey, usize> {
    let mut index = HashMap::with_capacity(services.len());
    for (i, s) in services.iter().enumerate() {
        index.entry(s.key()).or_insert(i);
    }
    index
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Namespace {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// A Node as the election sees it. `mac` is not a Kubernetes field: the CLI reads it from the annotation
/// [`ANNOTATION_NODE_MAC`] so simulations can show what a client's `ip neigh` would hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `Ready` condition is `True` (and `NetworkUnavailable` is not `True`).
    pub ready: bool,
    pub unschedulable: bool,
    pub internal_ip: Option<IpAddr>,
    /// Every IP address the Node object publishes (`status.addresses` of any type, both families): VRRP adverts
    /// from them are accepted as coming from a cluster node.
    pub addresses: Vec<IpAddr>,
    pub mac: Option<[u8; 6]>,
}

/// Annotation carrying a node's MAC address in the CLI's cluster description (not used by Kubernetes).
pub const ANNOTATION_NODE_MAC: &str = "lab.openelb.kubesphere.io/mac-address";

/// One backend address of a Service, as Endpoints/EndpointSlices publish it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoint {
    pub ip: Option<IpAddr>,
    pub node_name: Option<String>,
    /// The Pod behind it, when the object names one.
    pub pod: Option<String>,
    pub ready: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub node_name: Option<String>,
    pub ip: Option<IpAddr>,
    pub ready: bool,
}

/// Everything the offline tools and the controller decide over.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cluster {
    pub pools: Vec<Pool>,
    pub services: Vec<Service>,
    pub namespaces: Vec<Namespace>,
    pub nodes: Vec<Node>,
    pub pods: Vec<Pod>,
    /// Keyed by Service; a Service with no entry has its endpoints derived from Pods by the caller.
    pub endpoints: BTreeMap<ServiceKey, Vec<Endpoint>>,
}
