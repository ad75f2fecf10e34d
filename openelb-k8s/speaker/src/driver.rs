//! The speaker's event loop: feeds the core's VRRP [`Agent`] with received adverts, timer expiries, plan
//! changes and shutdown, and carries out the actions it returns through a [`NetOps`] backend. Generic over
//! the backend so tests can drive it without root; the binary uses `openelb_net::linux::LinuxNet`.
//!
//! Time is a `tokio::time::Instant` origin taken at construction, and timers are driven by polling
//! [`Agent::next_deadline`] (the agent's timer actions are ignored). Interfaces are resolved once per plan
//! interface spec; several specs may resolve to one NIC, so adverts received on a NIC are offered under every
//! spec that maps to it. Nothing stops the loop or makes it wait: network errors are logged (rate-limited) and
//! retried ([`MAINTENANCE_PERIOD`]); bursts, Events, metrics and [`Notices`] never block it; planning runs beside
//! it ([`Planner`]). What it does and why: docs/election.md (takeover, stale VIPs, link loss, new VIPs) and
//! docs/vrrp.md (known peers from the Nodes and the speaker Leases, published VRIDs, planning beside the loop).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use openelb_core::model::{Cluster, IpFamily, ServiceKey};
use openelb_core::vrrp::agent::{Agent, InstanceKey, NodeAction};
use openelb_core::vrrp::plan::{ForeignVrid, GroupId};
use openelb_core::vrrp::state::{Action, ConfigError, TimerKind};
use openelb_core::vrrp::{Received, Time};
use openelb_k8s::vrrp::{ForeignSeen, known_peers};
use openelb_net::ops::{AdvertReceiver, IfaceSpec, Incoming, Interface, NetError, NetOps};
use openelb_net::wire::DecodeFailure;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::announce_burst::{self, HeldSet};
use super::config::SpeakerConfig;
use super::desired::Desired;
use super::events::{EventSink, VipChange, VipEvent};
use super::ipvs_filter::IpvsFilter;
use super::lease::LEASE_STALE;
use super::metrics::{GroupLabels, GroupMetrics, SpeakerMetrics, state_value};
use super::notices::Notices;
use super::planner::{PlanFailed, PlanFn, PlanJob, Planner};
use super::shared::{LocalVrrp, SharedVrrp};
use openelb_k8s::serve::Readiness;

/// How often failed VIP additions, missing source addresses and missing receivers are retried.
pub const MAINTENANCE_PERIOD: Duration = Duration::from_secs(1);
/// How often link state is read (one netlink request per interface): a link that goes down loses its VIPs
/// within this, and one that returns rejoins as backup instead of claiming its VIPs at once. An interface that
/// vanishes (deleted, or re-created with a new index) goes down the same way: the receiver of its old index is
/// closed (task and raw socket), and its spec is resolved again every [`MAINTENANCE_PERIOD`] until it is back.
pub const LINK_CHECK_PERIOD: Duration = Duration::from_millis(200);
/// Consecutive `add_vip` failures after which the node gives up mastership on that interface. Until then a
/// failed add is retried every [`MAINTENANCE_PERIOD`] while the agent holds the VIP, and the node keeps
/// advertising: the usual causes are transient (netlink busy), and moving the VIP would not help a peer with the
/// same problem. Giving up makes the agent see the interface as down (VIPs removed, adverts stop, a backup takes
/// over within Master_Down_Interval) for [`GIVE_UP_COOLDOWN`].
pub const ADD_ATTEMPTS_BEFORE_GIVING_UP: u32 = 5;
/// How long an interface stays "down" for the agent after giving up.
pub const GIVE_UP_COOLDOWN: Duration = Duration::from_secs(30);
/// Log one of this many consecutive send or receive failures (the first one always).
const LOG_EVERY: u64 = 100;
/// How often the wait for the shared VRRP state's first listing is logged.
const SHARED_WAIT_LOG: Duration = Duration::from_secs(10);
/// Longest the first plan waits for the shared VRRP state. Listing takes milliseconds when it works; when it
/// cannot (RBAC not updated, say), planning alone beats announcing nothing: VRIDs then come from this speaker's
/// own computation and only the Nodes' addresses are known peers, until the listing arrives.
pub const SHARED_WAIT_MAX: Duration = Duration::from_secs(30);

/// Commands from outside the loop (the binary maps signals to these).
#[derive(Debug)]
pub enum Control {
    /// New cluster objects (SIGHUP re-read the manifests, or a watch saw a change).
    Reload(Box<Cluster>),
    /// Release everything (priority-0 adverts, VIPs removed) and return.
    Shutdown,
}

/// Waits for the first [`Control::Reload`], for sources that deliver the cluster later than the speaker starts
/// (the Kubernetes watches): the first plan is made from a complete snapshot or not at all. `None` when a
/// shutdown (or the channel's end) comes first.
pub async fn first_snapshot(control: &mut mpsc::Receiver<Control>) -> Option<Cluster> {
    match control.recv().await {
        Some(Control::Reload(cluster)) => Some(*cluster),
        Some(Control::Shutdown) | None => None,
    }
}

/// A VIP this node holds, as its Events described it (kept so that the withdrawal names the same Services even
/// when the snapshot that caused it no longer lists them).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Announced {
    nic: String,
    services: Vec<ServiceKey>,
    vrid: Option<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    #[error("VRRP settings: {0}")]
    Agent(#[from] ConfigError),
}

type NicKey = (u32, IpFamily);

pub struct Speaker<N: NetOps> {
    net: Arc<N>,
    config: Arc<SpeakerConfig>,
    agent: Agent,
    origin: Instant,
    desired: Option<Desired>,
    /// Plan interface spec → the NIC it resolved to on this node.
    nics: BTreeMap<String, Interface>,
    /// What was given to `Agent::set_primary`, also the source of our adverts (kept here because the agent
    /// forgets instances on shutdown, when the priority-0 adverts still need a source).
    primaries: BTreeMap<(String, IpFamily), IpAddr>,
    receivers: HashMap<NicKey, JoinHandle<()>>,
    advert_tx: mpsc::Sender<(NicKey, Received)>,
    advert_rx: Option<mpsc::Receiver<(NicKey, Received)>>,
    held: HeldSet,
    failed_adds: BTreeMap<(String, IpAddr), u32>,
    given_up: BTreeMap<String, Time>,
    /// Plan interface specs whose link is down: the agent was told (`interface_down`), so VIPs are off it and
    /// its instances wait in Initialize until the link returns (then Backup, so preemption waits its delay).
    links_down: BTreeSet<String>,
    /// Problems already logged (cleared when they go away), so retries do not flood the log.
    reported: BTreeSet<String>,
    send_failures: BTreeMap<InstanceKey, u64>,
    metrics: SpeakerMetrics,
    /// Cached series handles per running instance.
    groups: HashMap<InstanceKey, GroupMetrics>,
    /// One span per running instance, with the NIC index it was made for: what is logged about an instance
    /// carries its VRID, interface and family.
    spans: HashMap<InstanceKey, (u32, tracing::Span)>,
    events: EventSink,
    readiness: Option<Readiness>,
    announced: BTreeMap<IpAddr, Announced>,
    /// The latest cluster snapshot: plans start from it, known peers read its Nodes.
    cluster: Option<Arc<Cluster>>,
    planner: Planner,
    /// The API's VRRP state (Kubernetes only) and its value as last read.
    shared: Option<watch::Receiver<SharedVrrp>>,
    shared_now: SharedVrrp,
    /// What this node publishes in its Lease (Kubernetes only).
    local: Option<watch::Sender<LocalVrrp>>,
    known: Vec<IpAddr>,
    /// [`Driver::warn_ipv6_without_peers`] said its piece.
    ipv6_peers_warned: bool,
    /// The foreign VRIDs the running plan avoided: when the set in use changes, plan again.
    avoided: Vec<ForeignVrid>,
    notices: Notices,
    ipvs: IpvsFilter,
}

impl<N: NetOps + 'static> Speaker<N>
where
    N::Receiver: 'static,
{
    pub fn new(net: Arc<N>, config: SpeakerConfig) -> Result<Self, SpeakerError> {
        let agent = Agent::new(config.node_name.clone(), config.agent_config())?;
        let (advert_tx, advert_rx) = mpsc::channel(1024);
        let ipvs = IpvsFilter::new(config.ipvs_arp_filter, SpeakerMetrics::default());
        Ok(Speaker {
            net,
            config: Arc::new(config),
            agent,
            origin: Instant::now(),
            desired: None,
            nics: BTreeMap::new(),
            primaries: BTreeMap::new(),
            receivers: HashMap::new(),
            advert_tx,
            advert_rx: Some(advert_rx),
            held: HeldSet::default(),
            failed_adds: BTreeMap::new(),
            given_up: BTreeMap::new(),
            links_down: BTreeSet::new(),
            reported: BTreeSet::new(),
            send_failures: BTreeMap::new(),
            metrics: SpeakerMetrics::default(),
            groups: HashMap::new(),
            spans: HashMap::new(),
            events: EventSink::disabled(),
            readiness: None,
            announced: BTreeMap::new(),
            cluster: None,
            planner: Planner::default(),
            shared: None,
            shared_now: SharedVrrp::default(),
            local: None,
            known: Vec::new(),
            ipv6_peers_warned: false,
            avoided: Vec::new(),
            notices: Notices::new(EventSink::disabled(), SpeakerMetrics::default()),
            ipvs,
        })
    }

    /// Counts into `metrics` (register them in a registry to expose them).
    pub fn with_metrics(mut self, metrics: SpeakerMetrics) -> Self {
        self.ipvs = IpvsFilter::new(self.config.ipvs_arp_filter, metrics.clone());
        self.metrics = metrics;
        self.notices = Notices::new(self.events.clone(), self.metrics.clone());
        self
    }

    /// Records `VIPAnnounced` / `VIPWithdrawn` on Services and VRRP warnings on the Node through `events`
    /// (disabled by default).
    pub fn with_events(mut self, events: EventSink) -> Self {
        self.events = events;
        self.notices = Notices::new(self.events.clone(), self.metrics.clone());
        self
    }

    /// Follows the VRRP state the API shares (other speakers' Leases, the controller's VRID assignment) and
    /// publishes this node's in `local` (for its Lease). Without it (manifests) the speaker plans alone and
    /// accepts adverts from the Nodes' addresses and the unicast peers only.
    pub fn with_shared(mut self, shared: watch::Receiver<SharedVrrp>, local: watch::Sender<LocalVrrp>) -> Self {
        self.shared = Some(shared);
        self.local = Some(local);
        self
    }

    /// Plans with `plan` instead of [`super::desired::desired_in`] (tests of the loop's resilience).
    pub fn with_plan_fn(mut self, plan: PlanFn) -> Self {
        self.planner = Planner::new(plan);
        self
    }

    /// Marked ready once the first plan is applied, not ready again once shut down.
    pub fn with_readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = Some(readiness);
        self
    }

    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    pub fn desired(&self) -> Option<&Desired> {
        self.desired.as_ref()
    }

    fn now(&self) -> Time {
        self.origin.elapsed()
    }

    /// Runs until [`Control::Shutdown`] (or until the control channel closes, which also shuts down). Plans
    /// never stop it: a plan that fails is logged and counted, and the running plan stays.
    pub async fn run(mut self, cluster: Cluster, mut control: mpsc::Receiver<Control>) -> Result<(), SpeakerError> {
        self.cluster = Some(Arc::new(cluster));
        if !self.wait_shared(&mut control).await {
            self.shutdown().await;
            return Ok(());
        }
        self.refresh_peers();
        self.planner.request();
        let Some(mut adverts) = self.advert_rx.take() else { return Ok(()) };
        let mut tick = tokio::time::interval(MAINTENANCE_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut link_tick = tokio::time::interval(LINK_CHECK_PERIOD);
        link_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.planner.should_start() {
                self.start_plan();
            }
            let deadline = self.agent.next_deadline();
            let wake = deadline.as_ref().map(|(t, _)| self.origin + *t);
            let sleep = async move {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ctl = control.recv() => match ctl {
                    Some(Control::Reload(cluster)) => self.reload(*cluster),
                    Some(Control::Shutdown) | None => {
                        self.shutdown().await;
                        return Ok(());
                    }
                },
                Some((nic, rx)) = adverts.recv() => self.on_advert(nic, rx).await,
                _ = sleep => {
                    if let Some((at, key)) = deadline {
                        // sleep_until never wakes early, but a clock read can round below the deadline; the
                        // agent ignores early expiries, which would spin.
                        let now = self.now().max(at);
                        let mut actions = self.agent.timer_fired(now, &key);
                        if key.kind == TimerKind::AdverTimer {
                            // The other Masters advertise with this one: one wake-up per interval for all.
                            let interval = Duration::from_millis(u64::from(self.config.advert_interval_cs) * 10);
                            actions.extend(self.agent.advertise_due_by(now, now + interval));
                        }
                        self.execute(actions).await;
                    }
                }
                (result, took) = self.planner.finished() => self.planned(result, took).await,
                () = changed(&mut self.shared) => self.on_shared(),
                _ = tick.tick() => self.maintain().await,
                _ = link_tick.tick() => self.check_links().await,
            }
        }
    }

    /// Waits until the shared VRRP state has been listed once (at once without one); `false` when told to shut
    /// down meanwhile. Snapshots arriving meanwhile replace the one to plan from.
    async fn wait_shared(&mut self, control: &mut mpsc::Receiver<Control>) -> bool {
        let Some(mut rx) = self.shared.take() else { return true };
        let started = Instant::now();
        let mut log = tokio::time::interval_at(started + SHARED_WAIT_LOG, SHARED_WAIT_LOG);
        let go_on = loop {
            if rx.borrow_and_update().synced {
                break true;
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() {
                    tracing::warn!("the shared VRRP state is not watched any more; planning without it");
                    break true;
                },
                ctl = control.recv() => match ctl {
                    Some(Control::Reload(cluster)) => self.cluster = Some(Arc::new(*cluster)),
                    Some(Control::Shutdown) | None => break false,
                },
                _ = log.tick() => {
                    if started.elapsed() >= SHARED_WAIT_MAX {
                        tracing::warn!(
                            waited_s = started.elapsed().as_secs(),
                            "the speaker Leases and the openelb-vrrp ConfigMap are still not listed (see the watch \
                             errors; RBAC?): planning without them until they are"
                        );
                        break true;
                    }
                    tracing::warn!(
                        waited_s = started.elapsed().as_secs(),
                        "still waiting for the first listing of the speaker Leases and the openelb-vrrp ConfigMap; \
                         nothing is planned until then"
                    );
                }
            }
        };
        self.shared_now = rx.borrow().clone();
        self.shared = Some(rx);
        go_on
    }

    fn reload(&mut self, cluster: Cluster) {
        tracing::info!(
            services = cluster.services.len(),
            nodes = cluster.nodes.len(),
            "reloaded cluster objects; planning beside the VRRP loop"
        );
        self.cluster = Some(Arc::new(cluster));
        self.metrics.reloads.inc();
        self.refresh_peers();
        self.planner.request();
    }

    /// The API's VRRP state changed: new peers take effect at once, a new assignment through a plan.
    fn on_shared(&mut self) {
        let Some(rx) = self.shared.as_mut() else { return };
        let new = rx.borrow_and_update().clone();
        if new.published != self.shared_now.published {
            if let Some(p) = &new.published
                && (p.vrids != self.config.vrids || p.offset != self.config.vrid_offset)
            {
                tracing::warn!(
                    published = ?p.vrids, published_offset = p.offset, ours = ?self.config.vrids,
                    our_offset = self.config.vrid_offset,
                    "the controller plans VRIDs with another range or offset than this speaker (--vrid-range, \
                     --vrid-offset); published VRIDs outside our range are ignored"
                );
            }
            self.planner.request();
        }
        self.shared_now = new;
        self.refresh_peers();
    }

    /// Gives the agent the addresses adverts are accepted from, when they changed.
    fn refresh_peers(&mut self) {
        let Some(cluster) = &self.cluster else { return };
        let known = known_peers(
            &cluster.nodes,
            &self.shared_now.leases,
            &self.config.unicast_peers,
            SystemTime::now(),
            LEASE_STALE,
        );
        if known != self.known {
            tracing::debug!(peers = ?known, "known VRRP peers");
            self.metrics.known_peers.set(i64::try_from(known.len()).unwrap_or(i64::MAX));
            self.agent.set_known_peers(known.iter().copied());
            self.known = known;
        }
    }

    /// Without the API (manifest mode) nothing tells the speakers each other's IPv6 link-local addresses, which
    /// IPv6 adverts come from: unless the Node objects list them, every candidate holds the IPv6 VIPs. Said once.
    fn warn_ipv6_without_peers(&mut self) {
        if self.shared.is_some() || self.ipv6_peers_warned {
            return;
        }
        let Some(d) = &self.desired else { return };
        let me = self.config.node_name.as_str();
        let shared_v6 = d
            .plan
            .groups
            .iter()
            .any(|g| g.id.family == IpFamily::V6 && g.priorities.len() > 1 && g.priority_of(me).is_some());
        let link_locals =
            self.known.iter().filter(|a| matches!(a, IpAddr::V6(v6) if v6.is_unicast_link_local())).count();
        if shared_v6 && link_locals < 2 {
            self.ipv6_peers_warned = true;
            tracing::warn!(
                "IPv6 VRRP groups with other candidates, but the Node objects list no IPv6 link-local address of \
                 the other nodes: their adverts (sent from link-local addresses) are refused as unknown sources \
                 and every candidate holds these VIPs; list each node's link-local address in its Node's \
                 status.addresses"
            );
        }
    }

    /// VRIDs to keep our groups off: those the controller published and those our agent sees in use.
    fn avoid_now(&self) -> Vec<ForeignVrid> {
        let published = self.shared_now.published.iter().flat_map(|p| p.foreign.iter().map(|f| f.vrid.clone()));
        let local = self.agent.foreign_vrids(self.now()).into_iter().map(|f| f.vrid);
        let mut all: Vec<ForeignVrid> = published.chain(local).collect();
        all.sort();
        all.dedup();
        all
    }

    fn start_plan(&mut self) {
        let Some(cluster) = self.cluster.clone() else { return };
        self.avoided = self.avoid_now();
        let job = PlanJob {
            cluster,
            config: Arc::clone(&self.config),
            previous: self.desired.as_ref().map(|d| Arc::new(d.plan.clone())),
            published: self.shared_now.published.clone(),
            avoid: self.avoided.clone(),
        };
        self.planner.start(job);
    }

    async fn planned(&mut self, result: Result<Desired, PlanFailed>, took: Duration) {
        self.metrics.plan_seconds.set(took.as_secs_f64());
        match result {
            Ok(d) => {
                let took_ms = took.as_millis() as u64;
                tracing::info!(groups = d.plan.groups.len(), vips = d.targets.len(), took_ms, "planned");
                let first = self.desired.is_none();
                self.apply(d).await;
                if first && let Some(r) = &self.readiness {
                    r.set(true);
                }
            }
            Err(e) => {
                self.metrics.plan_failures.inc();
                tracing::error!("{e}");
            }
        }
    }

    /// Publishes this node's VRRP sources and the foreign VRIDs its agent sees, for its Lease.
    fn publish_local(&self) {
        let Some(tx) = &self.local else { return };
        let mut sources: Vec<IpAddr> = self.primaries.values().copied().collect();
        sources.sort_unstable();
        sources.dedup();
        let (now, wall) = (self.now(), SystemTime::now());
        let foreign: Vec<ForeignSeen> = self
            .agent
            .foreign_vrids(now)
            .into_iter()
            .map(|f| ForeignSeen { vrid: f.vrid, last_seen: wall - now.saturating_sub(f.last_seen) })
            .collect();
        let local = LocalVrrp { sources, foreign };
        tx.send_if_modified(|old| {
            let changed = *old != local;
            if changed {
                *old = local;
            }
            changed
        });
    }

    /// Brings the node in line with `d`: resolve interfaces, apply the plan, set primaries, open receivers,
    /// remove stale addresses.
    async fn apply(&mut self, d: Desired) {
        // Frequent reloads (every watched change) must not repeat the same warnings: only new ones are logged.
        let known: BTreeSet<&String> = self.desired.iter().flat_map(|d| d.warnings.iter()).collect();
        for w in d.warnings.iter().filter(|w| !known.contains(w)) {
            tracing::warn!("{w}");
        }
        // Re-resolve every spec: an interface may have been recreated since the last plan.
        let before = std::mem::take(&mut self.nics);
        let replaced = self.desired.take();
        self.desired = Some(d);
        self.resolve_missing().await;
        for (spec, old) in before {
            let planned = self.desired.as_ref().is_some_and(|d| d.specs.contains_key(&spec));
            if planned && self.nics.get(&spec).is_none_or(|new| new.index != old.index) {
                self.release_nic(&spec, &old).await;
            }
        }
        let Some(d) = &self.desired else { return };
        // New and changed groups only, with their VIP count and range: a 20k-VIP plan must not spend the loop's
        // time formatting every address (the full list is at debug level).
        let previous = replaced.as_ref().map(|r| &r.plan);
        for g in d.plan.groups.iter().filter(|g| previous.and_then(|p| p.group(&g.id)) != Some(*g)) {
            let me = g.priority_of(&self.config.node_name);
            let range = match (g.vips.first(), g.vips.last()) {
                (Some(a), Some(b)) if a != b => format!("{a}..{b}"),
                (Some(a), _) => a.to_string(),
                _ => String::new(),
            };
            // Preference order: who takes over next, and proof that a NotReady or excluded node left the plan.
            let candidates = g.priorities.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(",");
            tracing::info!(
                vrid = g.vrid,
                interface = %g.id.interface,
                family = %g.id.family,
                first = %g.id.first,
                priority = me.map(i64::from).unwrap_or(-1),
                vips = g.vips.len(),
                %range,
                %candidates,
                "VRRP group{}",
                if me.is_some() { "" } else { " (this node is not a candidate)" }
            );
            tracing::debug!(vrid = g.vrid, vips = ?g.vips, "VRRP group addresses");
        }
        // Freeing a 20k-VIP plan's targets takes tens of milliseconds: not in the loop. Then what planning and
        // the replaced plan used goes back to the system (heap.rs says why).
        tokio::task::spawn_blocking(move || {
            drop(replaced);
            openelb_k8s::heap::release_free_pages();
        });
        let now = self.now();
        // Counters of instances the plan replaces are taken now, before they go.
        self.notices.sync_counters(now, &self.agent);
        let actions = self.agent.apply_plan(now, &d.plan);
        self.notices.sync_counters(now, &self.agent);
        self.notices.plan_applied(now, &d.plan);
        self.warn_ipv6_without_peers();
        self.execute(actions).await;
        self.ensure_primaries().await;
        self.ensure_receivers();
        self.cleanup_stale().await;
        self.sync_held();
        self.check_ipvs_arp().await;
        self.prune_group_metrics();
    }

    /// Series handles of an instance, created on first use.
    fn group_metrics(&mut self, key: &InstanceKey) -> &GroupMetrics {
        if !self.groups.contains_key(key) {
            let nic = self.nics.get(&key.interface).map_or(key.interface.as_str(), |n| n.name.as_str());
            let handles = self.metrics.group(GroupLabels::new(key.vrid, nic, key.family));
            self.groups.insert(key.clone(), handles);
        }
        // Inserted just above when missing.
        &self.groups[key]
    }

    /// The span of an instance on `nic` (a new one when the instance moved to another NIC).
    fn span_of(&mut self, key: &InstanceKey, nic: &Interface) -> tracing::Span {
        if let Some((index, span)) = self.spans.get(key)
            && *index == nic.index
        {
            return span.clone();
        }
        let span = tracing::info_span!("vrrp", vrid = key.vrid, interface = %nic.name, family = %key.family);
        self.spans.insert(key.clone(), (nic.index, span.clone()));
        span
    }

    /// Forgets the series of instances that no longer run (their state gauge disappears from /metrics), and
    /// their spans.
    fn prune_group_metrics(&mut self) {
        let gone: Vec<InstanceKey> = self.groups.keys().filter(|k| self.agent.instance(k).is_none()).cloned().collect();
        for key in gone {
            if let Some(g) = self.groups.remove(&key) {
                self.metrics.forget_group(&g.labels);
            }
        }
        self.spans.retain(|k, _| self.agent.instance(k).is_some());
    }

    /// Brings the `vips` gauge and the Events in line with the addresses configured now: `VIPAnnounced` for
    /// each Service of a newly held VIP (or a new sharer of a held one), `VIPWithdrawn` for each one given up.
    fn sync_held(&mut self) {
        let held: BTreeMap<IpAddr, u32> = self.held.snapshot().into_iter().map(|(index, ip)| (ip, index)).collect();
        self.metrics.vips.set(i64::try_from(held.len()).unwrap_or(i64::MAX));
        let node = self.config.node_name.clone();
        let gone: Vec<IpAddr> = self.announced.keys().filter(|ip| !held.contains_key(ip)).copied().collect();
        for ip in gone {
            if let Some(a) = self.announced.remove(&ip) {
                for service in a.services {
                    self.emit(VipChange::Withdrawn, service, &node, ip, &a.nic, a.vrid);
                }
            }
        }
        for (ip, index) in held {
            let Some(d) = self.desired.as_ref() else { break };
            let Some(target) = d.target(&ip) else { continue };
            let vrid = d.group_of(&ip).map(|g| g.vrid);
            let nic_name = self.nics.values().find(|n| n.index == index).map(|n| n.name.as_str());
            // Nothing changed for most held VIPs: compare before allocating (20k VIPs per plan).
            if self.announced.get(&ip).is_some_and(|a| {
                a.vrid == vrid && a.services == target.services && nic_name.is_some_and(|n| n == a.nic)
            }) {
                continue;
            }
            let services = target.services.clone();
            let nic = match nic_name {
                Some(n) => n.to_string(),
                None => format!("interface #{index}"),
            };
            let before = self.announced.insert(ip, Announced { nic: nic.clone(), services: services.clone(), vrid });
            let old = before.map(|a| a.services).unwrap_or_default();
            for s in services.iter().filter(|s| !old.contains(s)) {
                self.emit(VipChange::Announced, s.clone(), &node, ip, &nic, vrid);
            }
            for s in old.into_iter().filter(|s| !services.contains(s)) {
                self.emit(VipChange::Withdrawn, s, &node, ip, &nic, vrid);
            }
        }
    }

    fn emit(&self, change: VipChange, service: ServiceKey, node: &str, vip: IpAddr, nic: &str, vrid: Option<u8>) {
        self.events.emit(VipEvent { service, change, node: node.to_string(), vip, interface: nic.to_string(), vrid });
    }

    /// Resolves the specs of the current plan that have no NIC yet (failures are logged once and retried by
    /// the maintenance tick, so an interface that appears later is picked up).
    async fn resolve_missing(&mut self) -> bool {
        let Some(d) = &self.desired else { return false };
        let missing: Vec<(String, Result<IfaceSpec, String>)> =
            d.specs.iter().filter(|(s, _)| !self.nics.contains_key(*s)).map(|(s, l)| (s.clone(), l.clone())).collect();
        let mut resolved = false;
        for (spec, local) in missing {
            let what = format!("resolve {spec}");
            match local {
                Ok(ifspec) => match self.net.resolve(&ifspec).await {
                    Ok(nic) => {
                        tracing::info!(interface = %spec, nic = %nic.name, index = nic.index, "interface resolved");
                        self.reported.remove(&what);
                        self.nics.insert(spec, nic);
                        resolved = true;
                    }
                    Err(e) => self.report(what, format!("interface {spec}: {e}")),
                },
                Err(why) => self.report(what, format!("interface {spec}: {why}")),
            }
        }
        resolved
    }

    /// Gives the agent this node's address on every (interface, family) its groups need and does not have.
    async fn ensure_primaries(&mut self) {
        let Some(d) = &self.desired else { return };
        let needed: BTreeSet<(String, IpFamily)> = d
            .plan
            .for_node(&self.config.node_name)
            .map(|(g, _)| (g.id.interface.clone(), g.id.family))
            .filter(|k| !self.primaries.contains_key(k))
            .collect();
        for (spec, family) in needed {
            let Some(nic) = self.nics.get(&spec).cloned() else { continue };
            let what = format!("source {spec} {family}");
            match self.net.source_address(&nic, family).await {
                Ok(addr) => {
                    self.reported.remove(&what);
                    tracing::info!(interface = %spec, nic = %nic.name, %family, source = %addr, "VRRP source address");
                    self.primaries.insert((spec.clone(), family), addr);
                    let actions = self.agent.set_primary(self.now(), &spec, addr);
                    self.execute(actions).await;
                    self.publish_local();
                }
                Err(e) => self.report(what, format!("{e}; its VRRP groups wait until it has one")),
            }
        }
    }

    /// The (NIC index, family) pairs that need a receiver: those of the resolved specs with a source address.
    fn wanted_receivers(&self) -> BTreeSet<NicKey> {
        self.primaries.keys().filter_map(|(spec, fam)| self.nics.get(spec).map(|n| (n.index, *fam))).collect()
    }

    /// Closes the receivers no resolved interface needs any more (an interface re-created under a new index, or
    /// gone): aborting the task drops its socket.
    fn prune_receivers(&mut self) {
        let wanted = self.wanted_receivers();
        self.receivers.retain(|key, task| {
            let keep = wanted.contains(key);
            if !keep {
                task.abort();
                tracing::info!(index = key.0, family = %key.1, "closed the VRRP receiver of an interface no longer in use");
            }
            keep
        });
    }

    fn ensure_receivers(&mut self) {
        self.prune_receivers();
        let wanted = self.wanted_receivers();
        for key in wanted {
            if self.receivers.get(&key).is_some_and(|h| !h.is_finished()) {
                continue;
            }
            let Some(nic) = self.nics.values().find(|n| n.index == key.0).cloned() else { continue };
            let what = format!("receiver {} {}", nic.name, key.1);
            match self.net.advert_receiver(&nic, key.1) {
                Ok(rx) => {
                    self.reported.remove(&what);
                    tracing::debug!(nic = %nic.name, family = %key.1, "listening for VRRP adverts");
                    let task = spawn_receiver(rx, key, nic.name.clone(), self.advert_tx.clone(), self.metrics.clone());
                    self.receivers.insert(key, task);
                }
                Err(e) => self.report(what, format!("cannot receive VRRP adverts: {e}")),
            }
        }
    }

    /// Removes our addresses inside VIP-mode pools that the agent does not hold.
    async fn cleanup_stale(&mut self) {
        let Some(d) = &self.desired else { return };
        let held = self.agent.held_vips();
        let mut by_index: BTreeMap<u32, (Interface, BTreeSet<IpAddr>)> = BTreeMap::new();
        for (spec, nic) in &self.nics {
            let entry = by_index.entry(nic.index).or_insert_with(|| (nic.clone(), BTreeSet::new()));
            entry.1.extend(held.get(spec).into_iter().flatten().copied());
        }
        for (_, (nic, keep)) in by_index {
            let ours = match self.net.list_our_vips(&nic).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(nic = %nic.name, error = %e, "cannot list our addresses for cleanup");
                    continue;
                }
            };
            for ip in ours.into_iter().filter(|ip| d.in_vip_pool(ip) && !keep.contains(ip)) {
                match self.net.remove_vip(&nic, ip).await {
                    Ok(_) => {
                        self.held.remove(nic.index, ip);
                        tracing::info!(nic = %nic.name, vip = %ip, "removed stale VIP this node does not hold");
                    }
                    Err(e) => tracing::warn!(nic = %nic.name, vip = %ip, error = %e, "cannot remove stale VIP"),
                }
            }
        }
    }

    async fn on_advert(&mut self, nic: NicKey, rx: Received) {
        let specs: Vec<String> = self.nics.iter().filter(|(_, n)| n.index == nic.0).map(|(s, _)| s.clone()).collect();
        let now = self.now();
        let mut actions = Vec::new();
        for spec in specs {
            let key = InstanceKey { interface: spec, family: IpFamily::of(&rx.src), vrid: rx.advert.vrid };
            if self.agent.instance(&key).is_some() {
                self.group_metrics(&key).received.inc();
            }
            actions.extend(self.agent.handle_advert(now, &key.interface, rx.clone()));
        }
        self.execute(actions).await;
    }

    /// Tells the agent when a link goes down or comes back. Down: VIPs removed and adverts stopped at once
    /// (the peers take over after their Master_Down_Interval, whatever we do). Up: the instances restart as
    /// Backup, so this node takes its VIPs back only after the preempt delay instead of at once.
    async fn check_links(&mut self) {
        let nics: Vec<(String, Interface)> = self.nics.iter().map(|(s, n)| (s.clone(), n.clone())).collect();
        for (spec, nic) in nics {
            let up = match self.net.link_up(&nic).await {
                Ok(up) => up,
                Err(NetError::NoSuchIndex(_)) => {
                    self.vanished(&spec, &nic).await;
                    continue;
                }
                Err(e) => {
                    self.report(format!("link {}", nic.name), format!("cannot read link state: {e}"));
                    continue;
                }
            };
            let was_down = self.links_down.contains(&spec);
            let now = self.now();
            if !up && !was_down {
                tracing::warn!(interface = %spec, nic = %nic.name, "link down: releasing its VIPs and stopping adverts");
                self.links_down.insert(spec.clone());
                let actions = self.agent.interface_down(now, &spec);
                self.execute(actions).await;
            } else if up && was_down {
                self.links_down.remove(&spec);
                if self.given_up.contains_key(&spec) {
                    continue;
                }
                tracing::info!(interface = %spec, nic = %nic.name, "link up: rejoining as backup");
                let actions = self.agent.interface_up(now, &spec);
                self.execute(actions).await;
            }
        }
    }

    /// The NIC `spec` resolved to is gone (deleted, or re-created under a new index): its groups go down as for
    /// a lost link, what was bound to the old index is dropped (receiver task and socket, source address), and
    /// the spec waits to be resolved again by [`Speaker::maintain`].
    async fn vanished(&mut self, spec: &str, nic: &Interface) {
        self.nics.remove(spec);
        self.release_nic(spec, nic).await;
    }

    /// Lets go of `nic`, which `spec` no longer resolves to: its groups go down (they come back up as backup
    /// through [`Speaker::check_links`] once `spec` resolves again), and what was bound to its index goes.
    async fn release_nic(&mut self, spec: &str, nic: &Interface) {
        tracing::warn!(
            interface = %spec, nic = %nic.name, index = nic.index,
            "interface vanished: releasing its VIPs, closing its VRRP receiver; resolving it again until it is back"
        );
        self.primaries.retain(|(s, _), _| s != spec);
        self.failed_adds.retain(|(s, _), _| s != spec);
        if self.links_down.insert(spec.to_string()) {
            let actions = self.agent.interface_down(self.now(), spec);
            self.execute_vanished(actions, nic).await;
        }
        self.held.forget_interface(nic.index);
        self.prune_receivers();
    }

    /// Actions of a vanished interface: only the state changes are still meaningful (its addresses went with
    /// it, and nothing can be sent on it).
    async fn execute_vanished(&mut self, actions: Vec<NodeAction>, nic: &Interface) {
        for NodeAction { key, action } in actions {
            if let Action::StateChanged { .. } = action {
                let span = self.span_of(&key, nic);
                self.execute_one(key, nic.clone(), action).instrument(span).await;
            }
        }
        self.sync_held();
        self.sync_arp_filter().await;
    }

    async fn maintain(&mut self) {
        let now = self.now();
        // Interfaces given up on come back after the cool-off.
        let back: Vec<String> = self.given_up.iter().filter(|(_, t)| **t <= now).map(|(s, _)| s.clone()).collect();
        for spec in back {
            self.given_up.remove(&spec);
            if self.links_down.contains(&spec) {
                continue;
            }
            tracing::info!(interface = %spec, "retrying mastership after giving up");
            let actions = self.agent.interface_up(now, &spec);
            self.execute(actions).await;
        }
        let events = self.agent.take_events(now);
        self.notices.agent_events(now, events);
        self.notices.sync_counters(now, &self.agent);
        self.refresh_peers();
        self.publish_local();
        if !self.planner.is_running() && self.desired.is_some() && self.avoid_now() != self.avoided {
            tracing::info!("foreign routers' VRIDs changed: planning again");
            self.planner.request();
        }
        self.retry_failed_adds().await;
        let unresolved = self.desired.as_ref().is_some_and(|d| d.specs.keys().any(|s| !self.nics.contains_key(s)));
        if (unresolved || !self.agent.waiting().is_empty()) && self.resolve_missing().await {
            self.cleanup_stale().await;
        }
        // Also after an interface came back: the agent still knows the old source address, this loop does not.
        self.ensure_primaries().await;
        self.ensure_receivers();
        // Not before the first plan: it would filter nothing, then everything, for nothing.
        if self.desired.is_some() {
            if self.ipvs.check_due(now) {
                self.check_ipvs_arp().await;
            } else if self.ipvs.failing() {
                self.sync_arp_filter().await;
            }
        }
    }

    /// The plan's VIPs (every node's) and the ones configured here: what the ARP filter is computed from.
    fn filter_inputs(&self) -> (Vec<IpAddr>, Vec<IpAddr>) {
        let plan = self.desired.as_ref().map(|d| d.targets.iter().map(|t| t.vip).collect()).unwrap_or_default();
        let held = self.held.snapshot().into_iter().map(|(_, ip)| ip).collect();
        (plan, held)
    }

    /// Reads kube-ipvs0 and the ARP settings of the resolved interfaces, and filters ARP accordingly.
    async fn check_ipvs_arp(&mut self) {
        let mut nics: Vec<Interface> = self.nics.values().cloned().collect();
        nics.sort_by_key(|n| n.index);
        nics.dedup_by_key(|n| n.index);
        let (plan, held) = self.filter_inputs();
        let now = self.now();
        self.ipvs.assess(self.net.as_ref(), &nics, now, &plan, &held, &mut self.notices).await;
    }

    /// Brings the ARP filter in line with the VIPs held here (after a takeover or a release).
    async fn sync_arp_filter(&mut self) {
        let (plan, held) = self.filter_inputs();
        let now = self.now();
        self.ipvs.sync(self.net.as_ref(), now, &plan, &held, &mut self.notices).await;
    }

    async fn retry_failed_adds(&mut self) {
        let held = self.agent.held_vips();
        let pending: Vec<((String, IpAddr), u32)> = self.failed_adds.iter().map(|(k, v)| (k.clone(), *v)).collect();
        for ((spec, ip), attempts) in pending {
            if !held.get(&spec).is_some_and(|h| h.contains(&ip)) {
                self.failed_adds.remove(&(spec, ip));
                continue;
            }
            let Some(nic) = self.nics.get(&spec).cloned() else { continue };
            match self.net.add_vip(&nic, ip).await {
                Ok(()) => {
                    tracing::info!(interface = %spec, nic = %nic.name, vip = %ip, attempts, "VIP added after retrying");
                    self.failed_adds.remove(&(spec.clone(), ip));
                    self.held.insert(nic.index, ip);
                    let group = self.desired.as_ref().and_then(|d| d.group_of(&ip)).map(|g| InstanceKey {
                        interface: g.id.interface.clone(),
                        family: g.id.family,
                        vrid: g.vrid,
                    });
                    let garps = match group {
                        Some(key) => self.group_metrics(&key).garps.clone(),
                        None => Default::default(),
                    };
                    announce_burst::spawn_burst(
                        Arc::clone(&self.net),
                        nic,
                        vec![ip],
                        self.config.garp_count,
                        self.config.garp_spacing,
                        self.held.clone(),
                        garps,
                    );
                    self.sync_held();
                    self.sync_arp_filter().await;
                }
                Err(e) if attempts + 1 >= ADD_ATTEMPTS_BEFORE_GIVING_UP => {
                    tracing::error!(
                        interface = %spec, nic = %nic.name, vip = %ip, error = %e, attempts = attempts + 1,
                        "cannot add VIP: giving up mastership on this interface for {}s", GIVE_UP_COOLDOWN.as_secs()
                    );
                    self.failed_adds.retain(|(s, _), _| *s != spec);
                    self.given_up.insert(spec.clone(), self.now() + GIVE_UP_COOLDOWN);
                    let actions = self.agent.interface_down(self.now(), &spec);
                    self.execute(actions).await;
                }
                Err(e) => {
                    tracing::warn!(interface = %spec, vip = %ip, error = %e, attempts = attempts + 1, "VIP add failed again");
                    self.failed_adds.insert((spec, ip), attempts + 1);
                }
            }
        }
    }

    async fn shutdown(&mut self) {
        tracing::info!("shutting down: releasing VRRP groups");
        let actions = self.agent.shutdown(self.now());
        self.execute(actions).await;
        // Anything still configured (e.g. added by a retry the agent no longer knows about) goes too.
        let nics: Vec<Interface> = self.nics.values().cloned().collect();
        for nic in nics {
            if let Ok(ours) = self.net.list_our_vips(&nic).await {
                for ip in ours.into_iter().filter(|ip| self.held.contains(nic.index, *ip)) {
                    if self.net.remove_vip(&nic, ip).await.is_ok() {
                        self.held.remove(nic.index, ip);
                    }
                }
            }
        }
        for (_, h) in self.receivers.drain() {
            h.abort();
        }
        self.sync_held();
        // The filter stays, now with every VIP: removing it would make this node answer ARP for all of them
        // until the next speaker starts (a rolling update); that one replaces it in one step (docs/ipvs.md).
        self.sync_arp_filter().await;
        self.prune_group_metrics();
        if let Some(r) = &self.readiness {
            r.set(false);
        }
        tracing::info!("shut down");
    }

    fn report(&mut self, key: String, message: String) {
        if self.reported.insert(key) {
            tracing::warn!("{message}");
        }
    }

    /// The VIPs of an instance, also after the agent dropped it (shutdown), from the plan.
    fn vips_of(&self, key: &InstanceKey) -> Vec<IpAddr> {
        if let Some(i) = self.agent.instance(key) {
            return i.addresses().to_vec();
        }
        self.desired
            .as_ref()
            .and_then(|d| {
                d.plan
                    .groups
                    .iter()
                    .find(|g| g.vrid == key.vrid && g.id.interface == key.interface && g.id.family == key.family)
            })
            .map(|g| g.vips.clone())
            .unwrap_or_default()
    }

    async fn execute(&mut self, actions: Vec<NodeAction>) {
        let held_changes = actions.iter().any(|a| matches!(a.action, Action::AddVips(_) | Action::RemoveVips(_)));
        let mut runs = add_runs(&actions).into_iter().peekable();
        for (i, NodeAction { key, action }) in actions.into_iter().enumerate() {
            if let Action::AddVips(_) = action {
                if let Some((_, adds)) = runs.next_if(|(first, _)| *first == i) {
                    self.add_vips(adds).await;
                }
                continue;
            }
            let Some(nic) = self.nics.get(&key.interface).cloned() else {
                tracing::warn!(interface = %key.interface, vrid = key.vrid, ?action, "no resolved interface for action");
                continue;
            };
            let span = self.span_of(&key, &nic);
            self.execute_one(key, nic, action).instrument(span).await;
        }
        if held_changes {
            self.sync_held();
            self.sync_arp_filter().await;
        }
    }

    /// Adds the VIPs of one run of additions, every interface's in one batch ([`NetOps::add_vips`]). What fails
    /// is retried every [`MAINTENANCE_PERIOD`] while this node holds it.
    async fn add_vips(&mut self, adds: BTreeMap<String, Vec<IpAddr>>) {
        for (spec, ips) in adds {
            let Some(nic) = self.nics.get(&spec).cloned() else {
                tracing::warn!(interface = %spec, vips = ips.len(), "no resolved interface to add VIPs on");
                continue;
            };
            let results = self.net.add_vips(&nic, &ips).await;
            tracing::debug!(interface = %spec, vips = ?ips, "VIPs added");
            for (ip, result) in ips.into_iter().zip(results) {
                match result {
                    Ok(()) => {
                        self.held.insert(nic.index, ip);
                        self.failed_adds.remove(&(spec.clone(), ip));
                    }
                    Err(e) => {
                        tracing::error!(
                            interface = %spec, nic = %nic.name, vip = %ip, error = %e,
                            "cannot add VIP; retrying while this node is master"
                        );
                        self.failed_adds.entry((spec.clone(), ip)).or_insert(0);
                    }
                }
            }
        }
    }

    /// Carries out one action of the instance `key`, inside its span.
    async fn execute_one(&mut self, key: InstanceKey, nic: Interface, action: Action) {
        match action {
            Action::SendAdvert(advert) => {
                let Some(src) = self.primaries.get(&(key.interface.clone(), key.family)).copied() else {
                    return;
                };
                let peers = self.config.peers_of(src.is_ipv4());
                match self.net.send_advert(&nic, src, &advert, &peers).await {
                    Ok(()) => {
                        self.group_metrics(&key).sent.inc();
                        if self.send_failures.remove(&key).is_some() {
                            tracing::info!("sending adverts works again");
                        }
                    }
                    Err(e) => {
                        let n = self.send_failures.entry(key.clone()).or_default();
                        if n.is_multiple_of(LOG_EVERY) {
                            tracing::warn!(failures = *n + 1, error = %e, "advert not sent");
                        }
                        *n += 1;
                    }
                }
            }
            // Carried out by `execute`, in runs (`add_runs`).
            Action::AddVips(_) => {}
            Action::RemoveVips(ips) => {
                for ip in ips {
                    self.failed_adds.remove(&(key.interface.clone(), ip));
                    // Mark first so a running burst stops announcing it at once.
                    self.held.remove(nic.index, ip);
                    if let Err(e) = self.net.remove_vip(&nic, ip).await {
                        tracing::error!(vip = %ip, error = %e, "cannot remove VIP");
                    }
                }
            }
            Action::Announce { addresses, count, spacing } => {
                tracing::info!(
                    vips = ?addresses, count, spacing_ms = spacing.as_millis() as u64,
                    "{} burst", if key.family == IpFamily::V4 { "gratuitous ARP" } else { "unsolicited NA" }
                );
                let garps = self.group_metrics(&key).garps.clone();
                announce_burst::spawn_burst(
                    Arc::clone(&self.net),
                    nic,
                    addresses,
                    count,
                    spacing,
                    self.held.clone(),
                    garps,
                );
            }
            Action::StateChanged { from, to, reason } => {
                let g = self.group_metrics(&key);
                g.state.set(state_value(to));
                g.transitions.inc();
                let group = self.agent.group_id(&key).map(GroupId::to_string).unwrap_or_default();
                tracing::info!(
                    from = %from, to = %to, %reason, vips = ?self.vips_of(&key), group = %group,
                    "VRRP state {from} -> {to}"
                );
            }
            Action::ArmTimer { .. } | Action::CancelTimer(_) => {}
        }
    }
}

/// The additions among `actions`, in runs that no removal interrupts: the index of each run's first addition,
/// and the run's addresses per interface spec. Carrying out a run at its first addition moves additions only
/// ahead of adverts, announcements and state reports, never across a removal.
fn add_runs(actions: &[NodeAction]) -> Vec<(usize, BTreeMap<String, Vec<IpAddr>>)> {
    let mut runs = Vec::new();
    let mut current: Option<(usize, BTreeMap<String, Vec<IpAddr>>)> = None;
    for (i, a) in actions.iter().enumerate() {
        match &a.action {
            Action::AddVips(ips) => {
                let run = current.get_or_insert_with(|| (i, BTreeMap::new()));
                run.1.entry(a.key.interface.clone()).or_default().extend(ips.iter().copied());
            }
            Action::RemoveVips(_) => runs.extend(current.take()),
            _ => {}
        }
    }
    runs.extend(current);
    runs
}

/// Completes when the shared VRRP state changes; never without one, or once its source is gone.
async fn changed(shared: &mut Option<watch::Receiver<SharedVrrp>>) {
    let gone = match shared {
        Some(rx) => rx.changed().await.is_err(),
        None => true,
    };
    if gone {
        std::future::pending::<()>().await;
    }
}

fn spawn_receiver<R: AdvertReceiver + 'static>(
    mut rx: R,
    key: NicKey,
    nic: String,
    tx: mpsc::Sender<(NicKey, Received)>,
    metrics: SpeakerMetrics,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let dropped: HashMap<DecodeFailure, Counter> =
            DecodeFailure::ALL.into_iter().map(|r| (r, metrics.decode_failures(r))).collect();
        let mut failures: u64 = 0;
        loop {
            match rx.recv().await {
                Ok(Incoming::Advert(r)) => {
                    failures = 0;
                    if tx.send((key, r)).await.is_err() {
                        return;
                    }
                }
                Ok(Incoming::Dropped(reason)) => {
                    failures = 0;
                    if let Some(counter) = dropped.get(&reason) {
                        counter.inc();
                    }
                }
                Err(e) => {
                    if failures.is_multiple_of(LOG_EVERY) {
                        tracing::warn!(%nic, family = %key.1, error = %e, failures = failures + 1, "advert receive failed");
                    }
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(interface: &str, vrid: u8, action: Action) -> NodeAction {
        NodeAction { key: InstanceKey { interface: interface.into(), family: IpFamily::V4, vrid }, action }
    }

    fn ips(last: &[u8]) -> Vec<IpAddr> {
        last.iter().map(|l| IpAddr::from([192, 0, 2, *l])).collect()
    }

    #[test]
    fn additions_run_together_until_a_removal() {
        let actions = vec![
            on("eth0", 1, Action::CancelTimer(TimerKind::MasterDown)),
            on("eth0", 1, Action::AddVips(ips(&[1, 2]))),
            on("eth1", 2, Action::AddVips(ips(&[3]))),
            on("eth0", 3, Action::AddVips(ips(&[4]))),
            on("eth0", 4, Action::RemoveVips(ips(&[5]))),
            on("eth0", 5, Action::AddVips(ips(&[5]))),
        ];
        let runs = add_runs(&actions);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].0, 1);
        assert_eq!(runs[0].1.get("eth0"), Some(&ips(&[1, 2, 4])));
        assert_eq!(runs[0].1.get("eth1"), Some(&ips(&[3])));
        assert_eq!(runs[1].0, 5, "the addition after a removal waits for it");
        assert_eq!(runs[1].1.get("eth0"), Some(&ips(&[5])));
        assert!(add_runs(&actions[4..5]).is_empty());
    }
}
