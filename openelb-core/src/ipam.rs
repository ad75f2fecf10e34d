//! The controller's allocation engine over all pools: rebuilds allocations from `Eip.status.used`, decides per
//! Service (keep, assign, release, fail) and says what the Service and the Eips must look like afterwards.
//! It holds no state the API does not hold: dropping it and calling [`Ipam::new`] again gives the same answers.
//!
//! The rules and why: docs/allocation.md (sticky addresses, one set of used addresses, draining pools, sharing,
//! reserved addresses, release then allocate, failure holds nothing, restart rebuild).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::ops::Bound;

use crate::addr::{self, AddrRange, AddressError};
use crate::alloc::HolderId;
use crate::event_reason::EventReason;
use crate::lifecycle::{self, ReleaseReason, Request, ShareProfile};
use crate::model::{FINALIZER_SERVICE, IpFamily, LABEL_EIP_POOL, Namespace, Pool, Service, ServiceKey};
use crate::pool_invalid::{OUTSIDE_LISTED, PoolInvalid, PoolProblem};
use crate::reserved::{self, ReservedIp};
use crate::select::{self, PoolView};
use crate::used::UsedAddresses;

/// What the Service must look like after a decision (desired values; the caller diffs and patches).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServicePatch {
    /// `status.loadBalancer.ingress[*].ip`.
    pub ingress: Vec<String>,
    /// Value of label `eip.openelb.kubesphere.io/v1alpha2`; `None` = label absent.
    pub pool_label: Option<String>,
    /// Whether finalizer `finalizer.lb.kubesphere.io/v1alpha1` is present.
    pub finalizer: bool,
}

impl ServicePatch {
    /// Applies the patch to a copy of the Service as the API server would store it.
    pub fn apply(&self, svc: &mut Service) {
        svc.ingress = self.ingress.clone();
        match &self.pool_label {
            Some(pool) => {
                svc.labels.insert(LABEL_EIP_POOL.to_string(), pool.clone());
            }
            None => {
                svc.labels.remove(LABEL_EIP_POOL);
            }
        }
        let has = svc.finalizers.iter().any(|f| f == FINALIZER_SERVICE);
        if self.finalizer && !has {
            svc.finalizers.push(FINALIZER_SERVICE.to_string());
        } else if !self.finalizer && has {
            svc.finalizers.retain(|f| f != FINALIZER_SERVICE);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// A Kubernetes Event to record on the Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub type_: EventType,
    pub reason: EventReason,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Not an OpenELB Service and nothing to release.
    NotOurs,
    /// Holds a valid address and keeps it.
    Kept { pool: String, ip: IpAddr },
    /// Got an address (possibly after releasing `released`).
    Assigned { pool: String, ip: IpAddr, released: Option<(String, IpAddr)> },
    /// Gave its address back and holds none.
    Released { pool: Option<String>, ip: Option<IpAddr>, reason: String },
    /// Wants an address and cannot get one; `released` is what it lost on the way, if anything.
    Failed { reason: String, released: Option<(String, IpAddr)> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub service: ServiceKey,
    pub change: Change,
    /// `None` when the Service must not be touched (not ours).
    pub patch: Option<ServicePatch>,
    pub events: Vec<Event>,
}

/// What `kubectl get eip -o yaml` shows under `status` for a pool.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PoolStatus {
    /// Exact size; [`PoolStatus::pool_size_i64`] is what fits the status field.
    pub pool_size: u128,
    pub usage: u128,
    pub occupied: bool,
    pub used: BTreeMap<String, String>,
    pub first_ip: Option<String>,
    pub last_ip: Option<String>,
    pub v4: bool,
    /// Why it gives out no new addresses although neither disabled nor being deleted; empty when it is valid.
    pub invalid: Vec<PoolInvalid>,
}

impl PoolStatus {
    /// The status field is an integer: sizes beyond it saturate (the exact size stays in `pool_size`).
    pub fn pool_size_i64(&self) -> i64 {
        i64::try_from(self.pool_size).unwrap_or(i64::MAX)
    }
    pub fn usage_i64(&self) -> i64 {
        i64::try_from(self.usage).unwrap_or(i64::MAX)
    }
}

/// Where a Service's address lives.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    pool: String,
    ip: IpAddr,
}

#[derive(Debug, Clone)]
struct PoolEntry {
    /// The spec as last given; its `used` is left empty, [`Ipam::used`] is the truth.
    spec: Pool,
    /// An error when `spec.address` does not parse: such a pool gives out nothing.
    range: Result<AddrRange, AddressError>,
    /// The lowest address of the range no host can hold, if any.
    reserved: Option<ReservedIp>,
    /// Other pools whose range shares addresses with this one: `(name, spec.address, common part)`.
    overlaps: Vec<(String, String, AddrRange)>,
    /// Addresses held through this pool, inside its range or (after a shrink) not.
    addrs: BTreeSet<IpAddr>,
    /// How many of `addrs` the range does not contain, kept as they change: every allocation reads the pool's
    /// problems, and counting them there would cost O(holders) per Service.
    outside: usize,
}

impl PoolEntry {
    fn new(mut spec: Pool) -> Self {
        spec.used.clear();
        let range = AddrRange::parse(&spec.address);
        let reserved = range.as_ref().ok().and_then(reserved::first_in);
        Self { spec, range, reserved, overlaps: Vec::new(), addrs: BTreeSet::new(), outside: 0 }
    }

    /// A new spec for the same pool: what it holds stays, recounted against the new range.
    fn respec(&mut self, spec: Pool) {
        let addrs = std::mem::take(&mut self.addrs);
        *self = PoolEntry { addrs, ..PoolEntry::new(spec) };
        self.outside = self.outside().count();
    }

    fn range(&self) -> Option<AddrRange> {
        self.range.as_ref().ok().copied()
    }

    fn contains(&self, ip: IpAddr) -> bool {
        self.range.as_ref().is_ok_and(|r| r.contains(&ip))
    }

    fn add(&mut self, ip: IpAddr) {
        if self.addrs.insert(ip) && !self.contains(ip) {
            self.outside += 1;
        }
    }

    fn remove(&mut self, ip: IpAddr) {
        if self.addrs.remove(&ip) && !self.contains(ip) {
            self.outside = self.outside.saturating_sub(1);
        }
    }

    /// Whether some address held through this pool lies outside its range.
    fn has_outside(&self) -> bool {
        self.outside > 0
    }

    /// Whether the allocator refuses this pool ([`Ipam::problems`] says why).
    fn is_invalid(&self) -> bool {
        self.range.is_err() || self.reserved.is_some() || !self.overlaps.is_empty() || self.has_outside()
    }

    /// Addresses held through this pool that its range does not contain, in numeric order.
    fn outside(&self) -> Box<dyn Iterator<Item = &IpAddr> + '_> {
        match &self.range {
            Err(_) => Box::new(self.addrs.iter()),
            // `IpAddr` orders by family then number, so the range is one interval of the set.
            Ok(r) => Box::new(
                self.addrs.range(..r.start()).chain(self.addrs.range((Bound::Excluded(r.end()), Bound::Unbounded))),
            ),
        }
    }
}

/// Interns Service keys to the allocator's small ids. Only holders are interned, and an id is recycled once its
/// Service holds nothing, so memory follows allocations and not the churn of Services over time.
#[derive(Debug, Clone, Default)]
struct Holders {
    ids: BTreeMap<ServiceKey, HolderId>,
    keys: Vec<Option<ServiceKey>>,
    free: Vec<HolderId>,
}

impl Holders {
    fn get(&self, key: &ServiceKey) -> Option<HolderId> {
        self.ids.get(key).copied()
    }

    fn key(&self, id: HolderId) -> Option<&ServiceKey> {
        self.keys.get(usize::try_from(id).ok()?)?.as_ref()
    }

    /// `None` only when 2^32 Services hold addresses at once.
    fn intern(&mut self, key: &ServiceKey) -> Option<HolderId> {
        if let Some(id) = self.get(key) {
            return Some(id);
        }
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                let id = HolderId::try_from(self.keys.len()).ok()?;
                self.keys.push(None);
                id
            }
        };
        let slot = self.keys.get_mut(usize::try_from(id).ok()?)?;
        *slot = Some(key.clone());
        self.ids.insert(key.clone(), id);
        Some(id)
    }

    fn forget(&mut self, key: &ServiceKey) {
        if let Some(id) = self.ids.remove(key) {
            if let Some(slot) = usize::try_from(id).ok().and_then(|i| self.keys.get_mut(i)) {
                *slot = None;
            }
            self.free.push(id);
        }
    }
}

/// Allocation state over all pools; the rules it applies are in docs/allocation.md.
#[derive(Debug, Clone, Default)]
pub struct Ipam {
    pools: BTreeMap<String, PoolEntry>,
    holders: Holders,
    held: BTreeMap<ServiceKey, Held>,
    /// Sharing-relevant spec of holders seen through [`Ipam::reconcile`]. A holder rebuilt from `used` but not
    /// yet reconciled has no entry and is treated as compatible; [`Ipam::reconcile_all`] reconciles holders
    /// first, so after it the picture is complete.
    profiles: BTreeMap<ServiceKey, ShareProfile>,
    used: UsedAddresses,
    warnings: Vec<String>,
}

fn event(type_: EventType, reason: EventReason, message: String) -> Event {
    Event { type_, reason, message }
}

fn assign_event(ip: IpAddr) -> Event {
    event(EventType::Normal, EventReason::AssignIp, format!("success to assign ip: {ip}"))
}

/// Upstream's message, followed by why: "OpenELB keeps changing my address"
/// (<https://github.com/openelb/openelb/issues/322>) is only answerable if the event says what changed.
fn release_event(ip: IpAddr, why: &str) -> Event {
    event(EventType::Normal, EventReason::ReleaseIp, format!("success to release ip: {ip} ({why})"))
}

fn holding_patch(pool: &str, ip: IpAddr) -> ServicePatch {
    ServicePatch { ingress: vec![ip.to_string()], pool_label: Some(pool.to_string()), finalizer: true }
}

/// The address a Service shows in its status, whatever any pool records.
fn shown_ip(svc: &Service) -> Option<IpAddr> {
    svc.ingress.iter().find_map(|s| s.trim().parse::<IpAddr>().ok())
}

impl Ipam {
    /// Rebuilds every allocation from the pools' `status.used`. Entries that do not parse, name an address no
    /// host can hold, or an address already recorded through another pool are dropped and reported in
    /// [`Ipam::warnings`]; entries outside their pool's range are kept (the pool drains, see
    /// [`PoolProblem::Outside`]).
    ///
    /// Pools are read in name order and addresses in numeric order, so a Service recorded twice (a corrupted
    /// status), or an address recorded in two pools, keeps the same one of its records on every restart.
    pub fn new(pools: &[Pool]) -> Self {
        let mut ipam = Ipam::default();
        let mut sorted: Vec<&Pool> = pools.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let mut imported = Vec::new();
        for pool in sorted {
            if ipam.pools.contains_key(&pool.name) {
                ipam.warnings.push(format!("Eip {} is listed more than once; the first one is used", pool.name));
                continue;
            }
            ipam.pools.insert(pool.name.clone(), PoolEntry::new(pool.clone()));
            imported.push(pool);
        }
        ipam.find_overlaps();
        for pool in imported {
            ipam.import_used(pool);
        }
        ipam
    }

    fn import_used(&mut self, pool: &Pool) {
        let name = &pool.name;
        let mut records: Vec<(IpAddr, &str)> = Vec::new();
        for (key, users) in &pool.used {
            match key.trim().parse::<IpAddr>() {
                Err(_) => self
                    .warnings
                    .push(format!("Eip {name}: status.used key {key:?} is not an IP address; entry {users:?} dropped")),
                Ok(ip) => match reserved::classify(ip) {
                    Some(r) => self.warnings.push(format!(
                        "Eip {name}: status.used[{key}] records {users:?} but {r}; dropped, the Service is released \
                         on its next reconcile"
                    )),
                    None => records.push((ip, users)),
                },
            }
        }
        records.sort();
        for (ip, users) in records {
            for user in users.split(';').map(str::trim).filter(|u| !u.is_empty()) {
                self.import(name, ip, user);
            }
        }
    }

    fn import(&mut self, pool: &str, ip: IpAddr, user: &str) {
        let Some(key) = ServiceKey::parse(user) else {
            self.warnings.push(format!("Eip {pool}: status.used[{ip}] holder {user:?} is not namespace/name; dropped"));
            return;
        };
        if let Some(other) = self.held.get(&key) {
            self.warnings.push(format!(
                "{key} is recorded on {} (Eip {}) and on {ip} (Eip {pool}); keeping the first",
                other.ip, other.pool
            ));
            return;
        }
        if let Some(owner) = self.pool_of(ip).filter(|owner| *owner != pool) {
            let others: Vec<String> = self.other_holders(ip, &key).iter().map(ToString::to_string).collect();
            self.warnings.push(format!(
                "Eip {pool}: status.used[{ip}] records {key} but Eip {owner} records {ip} for {}; an address is \
                 held through one Eip only, so {key}'s record is dropped and it is reconciled again",
                others.join(";")
            ));
            return;
        }
        if let Err(e) = self.record(&key, pool, Some(ip), None) {
            self.warnings.push(format!("cannot record {key} on {ip}: {e}"));
        }
    }
    /// Problems found while rebuilding (never fatal).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Decides for one Service. `namespace` is its Namespace object when known (for `namespaceSelector`).
    ///
    /// A Service that holds an address keeps it as long as [`lifecycle::check_holding`] accepts it, whatever
    /// happened to the ranking of pools. Otherwise the address is released first and a new one allocated. A
    /// Service that shows an address no pool records (its status was written, the Eip's was lost, or the Eip
    /// was recreated) adopts it when it still fits its request and nobody incompatible holds it.
    ///
    /// A kept shared address is not taken away when its Service's ports or selector change into a conflict
    /// with another sharer: that would move live traffic for a spec edit. The conflict becomes a Warning event
    /// on every reconcile instead; only newcomers are refused.
    pub fn reconcile(&mut self, svc: &Service, namespace: Option<&Namespace>) -> Outcome {
        let key = svc.key();
        if let Some(reason) = lifecycle::unwanted(svc) {
            return self.release_unwanted(svc, key, &reason);
        }
        let req = match lifecycle::request(svc) {
            Ok(req) => req,
            Err(error) => {
                let reason = ReleaseReason::InvalidRequest { error: error.clone() };
                let released = self.drop_holding(&key).map(|h| (h.pool, h.ip)).or_else(|| {
                    let shown = shown_ip(svc).filter(|_| lifecycle::has_our_marks(svc))?;
                    Some((svc.labels.get(LABEL_EIP_POOL).cloned().unwrap_or_default(), shown))
                });
                return failed(key, error.to_string(), released, &reason.to_string());
            }
        };
        let profile = ShareProfile::of(svc);

        let mut released: Option<(String, IpAddr, String)> = None;
        if let Some(held) = self.held.get(&key).cloned() {
            let entry = self.pools.get(&held.pool);
            match lifecycle::check_holding(&req, &held.pool, entry.map(|e| &e.spec), held.ip) {
                Ok(()) => {
                    let mut events = self.share_warnings(&key, &profile, held.ip);
                    events.extend(entry.and_then(|e| outside_warning(e, held.ip)));
                    self.profiles.insert(key.clone(), profile);
                    return Outcome {
                        service: key,
                        patch: Some(holding_patch(&held.pool, held.ip)),
                        change: Change::Kept { pool: held.pool, ip: held.ip },
                        events,
                    };
                }
                Err(reason) => {
                    self.drop_holding(&key);
                    released = Some((held.pool, held.ip, reason.to_string()));
                }
            }
        } else if let Some(ip) = shown_ip(svc) {
            match self.adopt(svc, &key, &req, &profile, ip) {
                Ok(pool) => {
                    return Outcome {
                        service: key,
                        patch: Some(holding_patch(&pool, ip)),
                        change: Change::Assigned { pool, ip, released: None },
                        events: vec![assign_event(ip)],
                    };
                }
                Err(why) => {
                    let pool = svc.labels.get(LABEL_EIP_POOL).cloned().unwrap_or_default();
                    released = Some((pool, ip, why.to_string()));
                }
            }
        }

        let mut events = Vec::new();
        if let Some((_, ip, why)) = &released {
            events.push(release_event(*ip, why));
        }
        let released = released.map(|(pool, ip, _)| (pool, ip));
        match self.allocate(svc, namespace, &key, &req, profile) {
            Ok((pool, ip)) => {
                events.push(assign_event(ip));
                Outcome {
                    service: key,
                    patch: Some(holding_patch(&pool, ip)),
                    change: Change::Assigned { pool, ip, released },
                    events,
                }
            }
            Err(reason) => {
                events.push(event(EventType::Warning, EventReason::AssignIpFailed, reason.clone()));
                Outcome {
                    service: key,
                    patch: Some(ServicePatch::default()),
                    change: Change::Failed { reason, released },
                    events,
                }
            }
        }
    }

    fn release_unwanted(&mut self, svc: &Service, key: ServiceKey, reason: &ReleaseReason) -> Outcome {
        let held = self.drop_holding(&key);
        if held.is_none() && !lifecycle::has_our_marks(svc) {
            return Outcome { service: key, change: Change::NotOurs, patch: None, events: Vec::new() };
        }
        let (pool, ip) = match held {
            Some(h) => (Some(h.pool), Some(h.ip)),
            None => (svc.labels.get(LABEL_EIP_POOL).cloned(), shown_ip(svc)),
        };
        let why = reason.to_string();
        let events = ip.map(|ip| release_event(ip, &why)).into_iter().collect();
        Outcome {
            service: key,
            change: Change::Released { pool, ip, reason: why },
            patch: Some(ServicePatch::default()),
            events,
        }
    }

    /// Takes over an address the Service shows but no pool records, when that is what it would be allowed to
    /// keep had the record survived. Returns the pool, or why not.
    fn adopt(
        &mut self,
        svc: &Service,
        key: &ServiceKey,
        req: &Request,
        profile: &ShareProfile,
        ip: IpAddr,
    ) -> Result<String, ReleaseReason> {
        if let Some(r) = reserved::classify(ip) {
            return Err(ReleaseReason::Reserved(r));
        }
        let not_adoptable = |why: String| ReleaseReason::NotAdoptable { ip, why };
        let pool = match self.pool_of(ip) {
            // Its holders hold it through one pool: that is the only one to join.
            Some(owner) => owner.to_string(),
            None => self.adoptive_pool(svc, ip)?,
        };
        lifecycle::check_holding(req, &pool, self.pools.get(&pool).map(|e| &e.spec), ip)?;
        let others = self.other_holders(ip, key);
        if !others.is_empty() {
            if req.ip != Some(ip) {
                let names: Vec<String> = others.iter().map(ToString::to_string).collect();
                return Err(not_adoptable(format!("it is held by {}", names.join(", "))));
            }
            if let Some(why) = self.share_refusal(ip, profile, &others) {
                return Err(not_adoptable(why));
            }
        }
        self.record(key, &pool, Some(ip), Some(profile.clone())).map(|_| pool).map_err(not_adoptable)
    }

    /// The pool a free address the Service shows would have been recorded in: the one its label names when
    /// that contains it, else the best containing one.
    fn adoptive_pool(&self, svc: &Service, ip: IpAddr) -> Result<String, ReleaseReason> {
        let label = svc.labels.get(LABEL_EIP_POOL);
        // A pool being deleted or invalid still counts: the record would have been kept there (it drains, see
        // `lifecycle::check_holding`), so losing the record must not move the Service either.
        let fits = |e: &PoolEntry| e.range().is_some_and(|r| r.contains(&ip));
        if let Some(e) = label.and_then(|l| self.pools.get(l)).filter(|e| fits(e)) {
            return Ok(e.spec.name.clone());
        }
        let mut containing: Vec<&PoolEntry> = self.pools.values().filter(|e| fits(e)).collect();
        // Overlapping pools are invalid anyway; if they exist, a live one is the better home.
        containing.sort_by_key(|e| (e.spec.deleting, e.spec.priority, &e.spec.name));
        match (containing.first(), label.map(|l| (l, self.pools.get(l)))) {
            (Some(e), _) => Ok(e.spec.name.clone()),
            (None, Some((l, None))) => Err(ReleaseReason::PoolDeleted { pool: l.clone() }),
            (None, Some((l, Some(_)))) => Err(ReleaseReason::OutsidePool { ip, pool: l.clone() }),
            (None, None) => Err(ReleaseReason::NotAdoptable { ip, why: "no Eip contains it".to_string() }),
        }
    }

    /// Picks a pool and an address for a Service that holds nothing.
    fn allocate(
        &mut self,
        svc: &Service,
        namespace: Option<&Namespace>,
        key: &ServiceKey,
        req: &Request,
        profile: ShareProfile,
    ) -> Result<(String, IpAddr), String> {
        let selected = {
            let invalid: Vec<Option<PoolInvalid>> = self
                .pools
                .values()
                .map(|e| if e.is_invalid() { self.problems(e).into_iter().next() } else { None })
                .collect();
            let views: Vec<PoolView<'_>> = self
                .pools
                .values()
                .zip(&invalid)
                .map(|(e, invalid)| PoolView {
                    pool: &e.spec,
                    range: e.range(),
                    full: e.range().is_none_or(|r| self.used.lowest_free_in(&r).is_none()),
                    invalid: invalid.as_ref(),
                })
                .collect();
            select::select_pool(&views, svc, namespace, req).map_err(|e| e.to_string())?
        };
        if let Some(ip) = req.ip {
            let others = self.other_holders(ip, key);
            if let Some(owner) = self.pool_of(ip).filter(|owner| *owner != selected.pool) {
                let names: Vec<String> = others.iter().map(ToString::to_string).collect();
                return Err(format!("{ip} is held by {} through Eip {owner}", names.join(", ")));
            }
            if let Some(why) = self.share_refusal(ip, &profile, &others) {
                return Err(why);
            }
        }
        let ip = self.record(key, &selected.pool, req.ip, Some(profile))?;
        Ok((selected.pool, ip))
    }

    /// Makes `key` hold `ip` (or the lowest free address of the pool's range) through `pool`. With `ip`, the
    /// caller has made sure it is free or held through `pool` by Services `key` may share it with.
    fn record(
        &mut self,
        key: &ServiceKey,
        pool: &str,
        ip: Option<IpAddr>,
        profile: Option<ShareProfile>,
    ) -> Result<IpAddr, String> {
        let id = self.holders.intern(key).ok_or_else(|| format!("too many Services hold addresses to add {key}"))?;
        let Some(entry) = self.pools.get_mut(pool) else {
            self.holders.forget(key);
            return Err(format!("Eip {pool} does not exist"));
        };
        let result = match (ip, entry.range()) {
            (Some(ip), _) => self.used.join(ip, id).map(|()| ip).map_err(|e| format!("Eip {pool}: {e}")),
            (None, Some(range)) => self.used.allocate_any_in(&range, id).map_err(|e| format!("Eip {pool}: {e}")),
            (None, None) => Err(format!("Eip {pool} gives out no addresses")),
        };
        match result {
            Ok(ip) => {
                entry.add(ip);
                self.held.insert(key.clone(), Held { pool: pool.to_string(), ip });
                if let Some(profile) = profile {
                    self.profiles.insert(key.clone(), profile);
                }
                Ok(ip)
            }
            Err(e) => {
                self.holders.forget(key);
                Err(e)
            }
        }
    }

    /// The pool the holders of `ip` hold it through, `None` when it is free.
    fn pool_of(&self, ip: IpAddr) -> Option<&str> {
        let first = *self.used.holders(ip).first()?;
        self.holders.key(first).and_then(|k| self.held.get(k)).map(|h| h.pool.as_str())
    }

    /// Services other than `key` holding `ip`, sorted.
    fn other_holders(&self, ip: IpAddr, key: &ServiceKey) -> Vec<ServiceKey> {
        let mut keys: Vec<ServiceKey> = self
            .used
            .holders(ip)
            .into_iter()
            .filter_map(|id| self.holders.key(id))
            .filter(|k| *k != key)
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    /// Why a newcomer may not join the holders of `ip`, naming the first incompatible one.
    fn share_refusal(&self, ip: IpAddr, profile: &ShareProfile, others: &[ServiceKey]) -> Option<String> {
        others.iter().find_map(|other| {
            let conflict = profile.conflict_with(self.profiles.get(other)?)?;
            Some(format!("cannot share {ip} with {other}: {conflict}"))
        })
    }

    fn share_warnings(&self, key: &ServiceKey, profile: &ShareProfile, ip: IpAddr) -> Vec<Event> {
        self.other_holders(ip, key)
            .iter()
            .filter_map(|other| {
                let conflict = profile.conflict_with(self.profiles.get(other)?)?;
                Some(event(
                    EventType::Warning,
                    EventReason::SharedIpConflict,
                    format!("keeps {ip} shared with {other} although {conflict}"),
                ))
            })
            .collect()
    }

    /// Forgets a Service's allocation, returning it.
    fn drop_holding(&mut self, key: &ServiceKey) -> Option<Held> {
        let held = self.held.remove(key)?;
        if let Some(id) = self.holders.get(key) {
            self.used.release(held.ip, id);
            if self.used.holders(held.ip).is_empty()
                && let Some(entry) = self.pools.get_mut(&held.pool)
            {
                entry.remove(held.ip);
            }
        }
        self.holders.forget(key);
        self.profiles.remove(key);
        Some(held)
    }

    /// Releases the address of a Service that no longer exists at all (deleted without our finalizer, or while
    /// the controller was away). Returns what it held.
    pub fn release_service(&mut self, key: &ServiceKey) -> Option<(String, IpAddr)> {
        self.drop_holding(key).map(|h| (h.pool, h.ip))
    }

    /// Releases every allocation whose Service is not in `existing`, like upstream's Eip garbage collection but
    /// without its leak when a Service and an Eip go together (docs/compatibility.md#records-of-deleted-services).
    /// Only call it with the complete list of Services. Returns the released Services, sorted.
    pub fn release_absent(&mut self, existing: &[ServiceKey]) -> Vec<ServiceKey> {
        let keep: std::collections::BTreeSet<&ServiceKey> = existing.iter().collect();
        let gone: Vec<ServiceKey> = self.held.keys().filter(|k| !keep.contains(k)).cloned().collect();
        for key in &gone {
            self.drop_holding(key);
        }
        gone
    }

    /// Reconciles many Services in a deterministic order: those already holding an address first, then the rest
    /// by namespace and name, so the same input always gives the same addresses.
    ///
    /// Among the rest, Services that show an address in their status come before those that do not, so that a
    /// lost `status.used` is re-adopted before a newcomer can be given the same lowest-free address. Outcomes
    /// come back in processing order.
    pub fn reconcile_all(&mut self, services: &[Service], namespaces: &[Namespace]) -> Vec<Outcome> {
        let by_name: BTreeMap<&str, &Namespace> = namespaces.iter().map(|n| (n.name.as_str(), n)).collect();
        let mut order: Vec<(u8, ServiceKey, usize)> = services
            .iter()
            .enumerate()
            .map(|(i, svc)| {
                let key = svc.key();
                let group = if self.held.contains_key(&key) {
                    0
                } else if shown_ip(svc).is_some() {
                    1
                } else {
                    2
                };
                (group, key, i)
            })
            .collect();
        order.sort();
        order
            .into_iter()
            .filter_map(|(_, _, i)| services.get(i))
            .map(|svc| self.reconcile(svc, by_name.get(svc.namespace.as_str()).copied()))
            .collect()
    }

    /// Adds or replaces a pool's spec. Nothing held moves: addresses a new `spec.address` no longer contains
    /// stay with their Services and the pool drains ([`PoolProblem::Outside`]) instead of renumbering them.
    ///
    /// The `used` of a pool already known is ignored (ours is newer than any copy the caller has); a new pool's
    /// `used` is imported as [`Ipam::new`] does.
    pub fn upsert_pool(&mut self, pool: Pool) {
        match self.pools.get_mut(&pool.name) {
            Some(entry) => {
                entry.respec(pool);
                self.find_overlaps();
            }
            None => {
                self.pools.insert(pool.name.clone(), PoolEntry::new(pool.clone()));
                self.find_overlaps();
                self.import_used(&pool);
            }
        }
    }

    /// Removes a pool; returns the Services that held addresses in it, sorted (they must be reconciled again).
    /// O(the pool's holders): every holder of an address the pool records holds it through this pool.
    pub fn remove_pool(&mut self, name: &str) -> Vec<ServiceKey> {
        let Some(entry) = self.pools.get(name) else {
            return Vec::new();
        };
        let mut keys: Vec<ServiceKey> = entry
            .addrs
            .iter()
            .flat_map(|ip| self.used.holders(*ip))
            .filter_map(|id| self.holders.key(id))
            .filter(|k| self.held.get(*k).is_some_and(|h| h.pool == name))
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        for key in &keys {
            self.drop_holding(key);
        }
        self.pools.remove(name);
        self.find_overlaps();
        keys
    }

    /// Recomputes which pools overlap which, after the set of pools or a range changed.
    fn find_overlaps(&mut self) {
        let ranges: Vec<Option<AddrRange>> = self.pools.values().map(PoolEntry::range).collect();
        let ids: Vec<(String, String)> =
            self.pools.values().map(|e| (e.spec.name.clone(), e.spec.address.clone())).collect();
        let mut found: Vec<Vec<(String, String, AddrRange)>> = vec![Vec::new(); ids.len()];
        for (i, j, common) in addr::overlapping_pairs(&ranges) {
            if let (Some((ni, ai)), Some((nj, aj))) = (ids.get(i), ids.get(j)) {
                if let Some(f) = found.get_mut(i) {
                    f.push((nj.clone(), aj.clone(), common));
                }
                if let Some(f) = found.get_mut(j) {
                    f.push((ni.clone(), ai.clone(), common));
                }
            }
        }
        for (entry, overlaps) in self.pools.values_mut().zip(found) {
            entry.overlaps = overlaps;
        }
    }

    /// Why `entry` gives out no new addresses, in a fixed order (address, reserved, overlaps, outside).
    fn problems(&self, entry: &PoolEntry) -> Vec<PoolInvalid> {
        let mut problems = Vec::new();
        if let Err(e) = &entry.range {
            problems.push(PoolProblem::from(e));
        }
        if let Some(r) = entry.reserved {
            problems.push(PoolProblem::Reserved(r));
        }
        for (other, other_address, common) in &entry.overlaps {
            problems.push(PoolProblem::Overlap {
                other: other.clone(),
                other_address: other_address.clone(),
                common: *common,
            });
        }
        if entry.has_outside() {
            let listed = entry.outside().take(OUTSIDE_LISTED).map(|ip| (*ip, self.holder_list(*ip))).collect();
            problems.push(PoolProblem::Outside { listed, total: entry.outside });
        }
        problems
            .into_iter()
            .map(|problem| PoolInvalid { pool: entry.spec.name.clone(), address: entry.spec.address.clone(), problem })
            .collect()
    }

    /// Every Service holding an address.
    pub fn holders(&self) -> impl Iterator<Item = &ServiceKey> {
        self.held.keys()
    }

    /// Current allocation of a Service.
    pub fn allocation(&self, key: &ServiceKey) -> Option<(&str, IpAddr)> {
        self.held.get(key).map(|h| (h.pool.as_str(), h.ip))
    }

    pub fn pool_status(&self, name: &str) -> Option<PoolStatus> {
        let entry = self.pools.get(name)?;
        let usage = entry.addrs.len() as u128;
        let status =
            PoolStatus { usage, used: self.used_map(entry), invalid: self.problems(entry), ..PoolStatus::default() };
        let Some(range) = entry.range() else { return Some(status) };
        Some(PoolStatus {
            pool_size: range.size(),
            occupied: self.used.lowest_free_in(&range).is_none(),
            first_ip: Some(range.start().to_string()),
            last_ip: Some(range.end().to_string()),
            v4: range.family() == IpFamily::V4,
            ..status
        })
    }

    /// The pools as they are now, their `used` maps updated.
    pub fn pools(&self) -> Vec<Pool> {
        self.pools.values().map(|e| Pool { used: self.used_map(e), ..e.spec.clone() }).collect()
    }

    /// `status.used`: address → holders sorted and joined with `;` as upstream writes them.
    fn used_map(&self, entry: &PoolEntry) -> BTreeMap<String, String> {
        entry.addrs.iter().map(|ip| (ip.to_string(), self.holder_list(*ip))).collect()
    }

    /// Holders of `ip` as `status.used` writes them: `ns/a;ns/b`, sorted.
    fn holder_list(&self, ip: IpAddr) -> String {
        let mut keys: Vec<String> =
            self.used.holders(ip).into_iter().filter_map(|id| self.holders.key(id)).map(ToString::to_string).collect();
        keys.sort();
        keys.join(";")
    }
}

/// The Warning a holder gets on every reconcile while its pool no longer contains its address.
fn outside_warning(entry: &PoolEntry, ip: IpAddr) -> Option<Event> {
    if entry.range().is_some_and(|r| r.contains(&ip)) {
        return None;
    }
    Some(event(
        EventType::Warning,
        EventReason::IpOutsideEip,
        format!(
            "keeps {ip} although Eip {}'s spec.address {:?} no longer contains it; the Eip gives out no new \
             addresses until it is released",
            entry.spec.name, entry.spec.address
        ),
    ))
}

fn failed(service: ServiceKey, reason: String, released: Option<(String, IpAddr)>, why: &str) -> Outcome {
    let mut events: Vec<Event> = released.iter().map(|(_, ip)| release_event(*ip, why)).collect();
    events.push(event(EventType::Warning, EventReason::AssignIpFailed, reason.clone()));
    Outcome { service, change: Change::Failed { reason, released }, patch: Some(ServicePatch::default()), events }
}
