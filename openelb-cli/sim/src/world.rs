//! The offline cluster behind `allocate` and `simulate`: core decisions applied to a copy of the objects, the way
//! the controller, kubelet, the endpoints controller and the speakers would apply them, one event at a time.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use openelb_core::announce::{self, VipTarget};
use openelb_core::endpoints;
use openelb_core::ipam::{Change, Ipam, Outcome};
use openelb_core::{Cluster, Pool, Protocol, Service, ServiceKey, TrafficPolicy, positions_by_key};
use openelb_k8s::convert::ConvertError;
use openelb_k8s::crd::Eip;
use openelb_k8s::{convert, offline};

use crate::data_plane::DataPlane;
use crate::report::{ChangeView, NodePriority, VipView};
use crate::scenario::{Event, PodRef, ServicePatchEvent};
use crate::unknown_node::UnknownNode;

/// Why an event could not be applied: it names something the cluster does not have, or holds an object that
/// does not convert.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    #[error(transparent)]
    UnknownNode(#[from] UnknownNode),
    #[error("createService holds an Eip; use createEip")]
    EipInCreateService,
    #[error("createEip holds a Service; use createService")]
    ServiceInCreateEip,
    #[error("deleteService: no Service {0}")]
    NoServiceToDelete(ServiceKey),
    #[error("deleteEip: no Eip {0}")]
    NoEipToDelete(String),
    #[error("patchService: no Service {0}")]
    NoServiceToPatch(ServiceKey),
    #[error("patchService {key}: externalTrafficPolicy {policy:?} is not Cluster or Local")]
    TrafficPolicy { key: ServiceKey, policy: String },
    /// `namespace/name`.
    #[error("no Pod {0}")]
    NoPod(String),
    #[error("a Pod event needs `pod:` or `deployment:` with `replica:`")]
    PodRefIncomplete,
    /// `namespace/name`.
    #[error("no Deployment {0}")]
    NoDeployment(String),
    #[error("Deployment {deployment} has {pods} Pods, no replica {replica}")]
    NoReplica { deployment: String, pods: usize, replica: usize },
    #[error("{0:?} is not namespace/name")]
    NotNamespaceName(String),
    #[error("empty Service name")]
    EmptyServiceName,
    #[error("inline Service")]
    InlineService(#[source] serde_json::Error),
    #[error("inline Eip")]
    InlineEip(#[source] serde_json::Error),
    #[error("inline object has kind {0:?}; expected Service or Eip")]
    InlineKind(String),
    #[error(transparent)]
    Convert(#[from] ConvertError),
}

/// A Deployment's name and selector, to find "replica N" of it.
#[derive(Debug, Clone)]
pub struct DeploymentRef {
    pub namespace: String,
    pub name: String,
    pub selector: BTreeMap<String, String>,
}

pub struct World {
    pub cluster: Cluster,
    pub ipam: Ipam,
    deployments: Vec<DeploymentRef>,
    /// Services whose Endpoints/EndpointSlices came with the manifests; they are not derived from Pods.
    explicit_endpoints: BTreeSet<ServiceKey>,
    /// Last failure reported per Service, so a Service that stays pending is reported once, not every step.
    last_failure: BTreeMap<ServiceKey, String>,
}

/// An object created by a scenario event.
pub enum Created {
    Service(Box<Service>),
    Pool(Box<Pool>),
}

impl World {
    pub fn new(cluster: Cluster, deployments: Vec<DeploymentRef>, explicit_endpoints: BTreeSet<ServiceKey>) -> Self {
        let ipam = Ipam::new(&cluster.pools);
        let mut w = World { cluster, ipam, deployments, explicit_endpoints, last_failure: BTreeMap::new() };
        w.refresh_endpoints();
        w
    }

    /// Warnings from rebuilding allocations out of the pools' status.
    pub fn warnings(&self) -> Vec<String> {
        self.ipam.warnings().to_vec()
    }

    /// Plays the endpoints controller for Services with a selector whose Endpoints the manifests did not give.
    fn refresh_endpoints(&mut self) {
        for svc in &self.cluster.services {
            if svc.selector.is_empty() || self.explicit_endpoints.contains(&svc.key()) {
                continue;
            }
            let eps = endpoints::from_pods(svc, &self.cluster.pods, &self.cluster.nodes);
            self.cluster.endpoints.insert(svc.key(), eps);
        }
    }

    /// Runs the controller over every Service ([`offline::allocate`]) and tells its changes as its Events
    /// would; a Service that stays pending is told once, not at every step.
    pub fn reconcile(&mut self) -> Vec<ChangeView> {
        let outcomes = offline::allocate(&mut self.ipam, &mut self.cluster);
        let mut views = Vec::new();
        for o in &outcomes {
            let repeat = match &o.change {
                Change::Failed { reason, released: None } => self.last_failure.get(&o.service) == Some(reason),
                _ => false,
            };
            match &o.change {
                Change::Failed { reason, .. } => {
                    self.last_failure.insert(o.service.clone(), reason.clone());
                }
                _ => {
                    self.last_failure.remove(&o.service);
                }
            }
            if !repeat && let Some(v) = change_view(o) {
                views.push(v);
            }
        }
        self.refresh_endpoints();
        views
    }

    pub fn apply(&mut self, event: &Event) -> Result<(), WorldError> {
        match event {
            // Machines and the network are the data plane's ([`DataPlane`]); Kubernetes only learns about a crash
            // when the node grace period ends, which the simulate runner schedules.
            Event::NodeDown(n) | Event::NodeStop(n) | Event::NodeUp(n) | Event::LinkDown(n) | Event::LinkUp(n) => {
                self.node_mut(n)?;
            }
            Event::Partition(_) | Event::Heal(_) => {}
            Event::NodeNotReady(n) => self.node_mut(n)?.ready = false,
            Event::NodeReady(n) => self.node_mut(n)?.ready = true,
            Event::LabelNode { node, labels } => {
                let node = self.node_mut(node)?;
                for (k, v) in labels {
                    match v {
                        Some(v) => node.labels.insert(k.clone(), v.clone()),
                        None => node.labels.remove(k),
                    };
                }
            }
            Event::PodReady { pod, ready } => {
                let i = self.find_pod(pod)?;
                self.cluster.pods[i].ready = *ready;
            }
            Event::PodMove { pod, node } => {
                self.node_mut(node)?;
                let i = self.find_pod(pod)?;
                self.cluster.pods[i].node_name = Some(node.clone());
            }
            Event::CreateService(obj) => match created(obj)? {
                Created::Service(svc) => {
                    let key = svc.key();
                    self.cluster.services.retain(|s| !s.has_key(&key));
                    if !self.cluster.namespaces.iter().any(|n| n.name == svc.namespace) {
                        self.cluster
                            .namespaces
                            .push(openelb_core::Namespace { name: svc.namespace.clone(), ..Default::default() });
                    }
                    self.cluster.services.push(*svc);
                }
                Created::Pool(_) => return Err(WorldError::EipInCreateService),
            },
            Event::DeleteService(s) => {
                let key = service_key(s)?;
                let svc = self
                    .cluster
                    .services
                    .iter_mut()
                    .find(|x| x.has_key(&key))
                    .ok_or(WorldError::NoServiceToDelete(key))?;
                svc.deleting = true;
            }
            Event::PatchService(p) => self.patch_service(p)?,
            Event::CreateEip(obj) => match created(obj)? {
                Created::Pool(pool) => {
                    self.cluster.pools.retain(|p| p.name != pool.name);
                    self.cluster.pools.push((*pool).clone());
                    self.ipam.upsert_pool(*pool);
                }
                Created::Service(_) => return Err(WorldError::ServiceInCreateEip),
            },
            Event::DeleteEip(name) => {
                if !self.cluster.pools.iter().any(|p| &p.name == name) {
                    return Err(WorldError::NoEipToDelete(name.clone()));
                }
                self.cluster.pools.retain(|p| &p.name != name);
                self.ipam.remove_pool(name);
            }
        }
        self.refresh_endpoints();
        Ok(())
    }

    /// Sets the Node's Ready condition; true if it changed.
    pub fn set_ready(&mut self, node: &str, ready: bool) -> Result<bool, UnknownNode> {
        let n = self.node_mut(node)?;
        let changed = n.ready != ready;
        n.ready = ready;
        self.refresh_endpoints();
        Ok(changed)
    }

    pub fn is_ready(&self, node: &str) -> bool {
        self.cluster.nodes.iter().any(|n| n.name == node && n.ready)
    }

    fn patch_service(&mut self, p: &ServicePatchEvent) -> Result<(), WorldError> {
        let key = service_key(&p.service)?;
        let svc = self
            .cluster
            .services
            .iter_mut()
            .find(|x| x.has_key(&key))
            .ok_or_else(|| WorldError::NoServiceToPatch(key.clone()))?;
        if let Some(pol) = &p.external_traffic_policy {
            svc.external_traffic_policy = match pol.as_str() {
                "Cluster" => TrafficPolicy::Cluster,
                "Local" => TrafficPolicy::Local,
                other => return Err(WorldError::TrafficPolicy { key, policy: other.to_string() }),
            };
        }
        if let Some(ip) = &p.load_balancer_ip {
            svc.load_balancer_ip = (!ip.is_empty()).then(|| ip.clone());
        }
        if let Some(t) = &p.type_ {
            svc.type_ = t.clone();
        }
        for (k, v) in &p.annotations {
            match v {
                Some(v) => svc.annotations.insert(k.clone(), v.clone()),
                None => svc.annotations.remove(k),
            };
        }
        Ok(())
    }

    fn node_mut(&mut self, name: &str) -> Result<&mut openelb_core::Node, UnknownNode> {
        let known: Vec<String> = self.cluster.nodes.iter().map(|n| n.name.clone()).collect();
        self.cluster
            .nodes
            .iter_mut()
            .find(|n| n.name == name)
            .ok_or_else(|| UnknownNode::new(name, known.iter().map(String::as_str)))
    }

    fn find_pod(&self, r: &PodRef) -> Result<usize, WorldError> {
        let ns = r.namespace.as_deref().unwrap_or("default");
        if let Some(p) = &r.pod {
            let (pns, pname) = p.split_once('/').unwrap_or((ns, p));
            return self
                .cluster
                .pods
                .iter()
                .position(|x| x.namespace == pns && x.name == pname)
                .ok_or_else(|| WorldError::NoPod(format!("{pns}/{pname}")));
        }
        let Some(d) = &r.deployment else { return Err(WorldError::PodRefIncomplete) };
        let dep = self
            .deployments
            .iter()
            .find(|x| x.namespace == ns && &x.name == d)
            .ok_or_else(|| WorldError::NoDeployment(format!("{ns}/{d}")))?;
        let mut pods: Vec<(usize, &str)> = self
            .cluster
            .pods
            .iter()
            .enumerate()
            .filter(|(_, p)| p.namespace == ns && endpoints::selector_matches(&dep.selector, &p.labels))
            .map(|(i, p)| (i, p.name.as_str()))
            .collect();
        pods.sort_by_key(|(_, n)| *n);
        let idx = r.replica.unwrap_or(0);
        pods.get(idx).map(|(i, _)| *i).ok_or_else(|| WorldError::NoReplica {
            deployment: format!("{ns}/{d}"),
            pods: pods.len(),
            replica: idx,
        })
    }

    /// The Service `key` names, through the index [`World::vips_observed`] builds once for all VIPs.
    fn service(&self, at: &HashMap<ServiceKey, usize>, key: &ServiceKey) -> Option<&Service> {
        self.cluster.services.get(*at.get(key)?)
    }

    fn vip_view(&self, t: &VipTarget, at: &HashMap<ServiceKey, usize>) -> VipView {
        let services: Vec<&Service> = t.services.iter().filter_map(|k| self.service(at, k)).collect();
        let l2 = t.protocol != Protocol::Bgp;
        let holder = if l2 { t.preference.first().map(String::as_str) } else { None };
        let holder_mac =
            holder.and_then(|h| self.cluster.nodes.iter().find(|n| n.name == h)).and_then(|n| n.mac).map(fmt_mac);
        let vip = t.vip;
        let ip_neigh = holder.map(|_| match &holder_mac {
            Some(mac) => format!("{vip} dev eth0 lladdr {mac} REACHABLE"),
            None => format!(
                "{vip} dev eth0 lladdr <holder's MAC unknown: add annotation {}> REACHABLE",
                openelb_core::ANNOTATION_NODE_MAC
            ),
        });
        // Nodes that receive the client's traffic: the holder in L2 modes, every candidate with BGP ECMP.
        let entry: BTreeSet<&str> = match holder {
            Some(h) => [h].into_iter().collect(),
            None if !l2 => t.candidates.iter().map(String::as_str).collect(),
            None => BTreeSet::new(),
        };
        let mut reaches = BTreeSet::new();
        for s in &services {
            let eps = self.cluster.endpoints.get(&s.key()).map(Vec::as_slice).unwrap_or_default();
            for ep in eps.iter().filter(|e| e.ready) {
                let on_entry = ep.node_name.as_deref().is_some_and(|n| entry.contains(n));
                let reachable = !entry.is_empty() && (s.external_traffic_policy == TrafficPolicy::Cluster || on_entry);
                if reachable {
                    reaches.insert(ep.pod.clone().unwrap_or_else(|| ep.ip.map(|i| i.to_string()).unwrap_or_default()));
                }
            }
        }
        let policies: BTreeSet<&str> = services
            .iter()
            .map(|s| match s.external_traffic_policy {
                TrafficPolicy::Cluster => "Cluster",
                TrafficPolicy::Local => "Local",
            })
            .collect();
        VipView {
            vip: vip.to_string(),
            pool: t.pool.clone(),
            protocol: t.protocol.to_string(),
            services: t.services.iter().map(ToString::to_string).collect(),
            policy: policies.into_iter().collect::<Vec<_>>().join(","),
            candidates: t.candidates.clone(),
            holder: holder.map(str::to_string),
            holders: holder.map(str::to_string).into_iter().collect(),
            answering: holder.map(str::to_string).into_iter().collect(),
            stale_on: Vec::new(),
            model: "election".into(),
            vrid: None,
            priorities: Vec::new(),
            holder_mac,
            ip_neigh,
            reaches: reaches.into_iter().collect(),
            timeouts: Vec::new(),
        }
    }

    /// Every allocated address with its holder and what a client sees, in pool then address order. `vip` pools
    /// show what the simulated data plane does now; layer2 and BGP pools the election's first preference.
    pub fn vips_observed(&self, dp: &DataPlane) -> Vec<VipView> {
        let at = positions_by_key(&self.cluster.services);
        announce::targets(&self.cluster, &self.ipam)
            .iter()
            .map(|t| if dp.runs_vrrp(t.vip) { self.vrrp_view(t, dp, &at) } else { self.election_view(t, dp, &at) })
            .collect()
    }

    /// Layer2 and BGP: the election decides from Kubernetes readiness alone, so a crashed holder keeps the VIP
    /// until the node grace period ends; meanwhile the client reaches nothing.
    fn election_view(&self, t: &VipTarget, dp: &DataPlane, at: &HashMap<ServiceKey, usize>) -> VipView {
        let mut view = self.vip_view(t, at);
        if let Some(h) = view.holder.clone()
            && dp.node_state(&h) != "up"
        {
            view.answering.clear();
            view.reaches.clear();
            view.ip_neigh = view.ip_neigh.map(|n| n.replace("REACHABLE", "STALE"));
        }
        view
    }

    fn vrrp_view(&self, t: &VipTarget, dp: &DataPlane, at: &HashMap<ServiceKey, usize>) -> VipView {
        let mut view = self.vip_view(t, at);
        let holders = dp.live_holders(t.vip);
        let entry = dp.client_reaches(t.vip);
        let holder = entry.clone().filter(|n| holders.contains(n)).or_else(|| holders.first().cloned());
        view.holder_mac = holder.as_deref().and_then(|h| dp.known_mac(h));
        view.holder = holder;
        view.holders = holders;
        view.answering = dp.answering(t.vip);
        view.stale_on = dp.stale_holders(t.vip);
        view.model = "vrrp".into();
        view.ip_neigh = dp.ip_neigh(t.vip);
        if let Some(g) = dp.plan().group_of(&t.vip) {
            view.vrid = Some(g.vrid);
            view.priorities = g
                .priorities
                .iter()
                .map(|(node, priority)| NodePriority { node: node.clone(), priority: *priority })
                .collect();
        }
        // kube-proxy on the entry node: Cluster spreads over every ready endpoint, Local keeps to its own.
        let mut reaches = BTreeSet::new();
        let mut timeouts = BTreeSet::new();
        if let Some(entry) = entry.as_deref() {
            for key in &t.services {
                let Some(s) = self.service(at, key) else { continue };
                let eps = self.cluster.endpoints.get(key).map(Vec::as_slice).unwrap_or_default();
                for ep in eps.iter().filter(|e| e.ready) {
                    let name = ep.pod.clone().unwrap_or_else(|| ep.ip.map(|i| i.to_string()).unwrap_or_default());
                    let node = ep.node_name.as_deref();
                    if s.external_traffic_policy == TrafficPolicy::Local && node != Some(entry) {
                        continue;
                    }
                    if node.is_none_or(|n| dp.serves(entry, n)) {
                        reaches.insert(name);
                    } else {
                        timeouts.insert(name);
                    }
                }
            }
        }
        view.reaches = reaches.into_iter().collect();
        view.timeouts = timeouts.into_iter().collect();
        view
    }
}

fn change_view(o: &Outcome) -> Option<ChangeView> {
    let service = o.service.to_string();
    let (change, warning) = match &o.change {
        Change::NotOurs | Change::Kept { .. } => return None,
        Change::Assigned { pool, ip, released: None } => (format!("assigned {ip} from {pool}"), false),
        Change::Assigned { pool, ip, released: Some((rp, rip)) } => {
            (format!("moved {rip} ({rp}) -> {ip} ({pool})"), false)
        }
        Change::Released { ip, reason, .. } => match ip {
            Some(ip) => (format!("released {ip}: {reason}"), false),
            None => (format!("released: {reason}"), false),
        },
        Change::Failed { reason, released } => match released {
            Some((p, ip)) => (format!("lost {ip} ({p}) and got no address: {reason}"), true),
            None => (format!("pending: {reason}"), true),
        },
    };
    Some(ChangeView { service, change, warning })
}

pub fn fmt_mac(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn service_key(s: &str) -> Result<ServiceKey, WorldError> {
    if s.contains('/') {
        ServiceKey::parse(s).ok_or_else(|| WorldError::NotNamespaceName(s.to_string()))
    } else if s.is_empty() {
        Err(WorldError::EmptyServiceName)
    } else {
        Ok(ServiceKey::new("default", s))
    }
}

/// Converts the inline object of a `createService` or `createEip` event.
fn created(v: &serde_json::Value) -> Result<Created, WorldError> {
    let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
    match kind {
        "Service" => {
            let svc: k8s_openapi::api::core::v1::Service =
                serde_json::from_value(v.clone()).map_err(WorldError::InlineService)?;
            Ok(Created::Service(Box::new(convert::service_from_k8s(&svc)?)))
        }
        "Eip" => {
            let eip: Eip = serde_json::from_value(v.clone()).map_err(WorldError::InlineEip)?;
            Ok(Created::Pool(Box::new(convert::pool_from_eip(&eip)?)))
        }
        other => Err(WorldError::InlineKind(other.to_string())),
    }
}
