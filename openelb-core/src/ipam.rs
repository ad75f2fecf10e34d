//! The controller's allocation engine over all pools: rebuilds allocations from `Eip.status.used`, decides per
//! Service (keep, assign, release, fail) and says what the Service and the Eips must look like afterwards.
//! It holds no state the API does not hold: dropping it and calling [`Ipam::new`] again gives the same answers.
//!
//! Rules, and where they part from upstream (reference §5):
//! - **Sticky.** A recorded address is kept while [`lifecycle::check_holding`] accepts it: only a change of the
//!   request (pin, address, protocol), the pool's removal or a range that no longer contains it moves it. A
//!   pool that is re-ranked, full, outranked, disabled or being deleted keeps what it gave out (#322, §5.2
//!   flip-flop); one being deleted drains: it gives out nothing new, not even to a Service asking for an
//!   address its holders share.
//! - **Release, then allocate.** When an address must go, it is released first and a new one chosen by
//!   [`select::select_pool`]; both show in the outcome and in events.
//! - **Sharing** is implicit as upstream (same requested address), but refused when two sharers use one port
//!   and protocol or mix `Local` policy with different selectors. Checks need the other sharers' specs, which
//!   are learnt through [`Ipam::reconcile`]; a holder not seen yet counts as compatible.
//! - **Failure holds nothing**: a Service that cannot get an address gets an empty ingress and no label, so the
//!   speakers never announce an address no pool records for it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::addr::AddrRange;
use crate::alloc::{HolderId, PoolAllocator};
use crate::lifecycle::{self, ReleaseReason, Request, ShareProfile};
use crate::model::{FINALIZER_SERVICE, IpFamily, LABEL_EIP_POOL, Namespace, Pool, Service, ServiceKey};
use crate::select::{self, PoolView};

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

/// A Kubernetes Event to record on the Service (upstream reasons: `AssignIP`, `ReleaseIP`, `AssignIPFailed`...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub type_: EventType,
    pub reason: String,
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
    /// The spec as last given; its `used` is left empty, the allocator is the truth.
    spec: Pool,
    /// `None` when `spec.address` does not parse: such a pool gives out nothing.
    range: Option<AddrRange>,
    alloc: Option<PoolAllocator>,
}

impl PoolEntry {
    fn new(mut spec: Pool) -> Self {
        spec.used.clear();
        let range = AddrRange::parse(&spec.address).ok();
        Self { spec, range, alloc: range.map(PoolAllocator::new) }
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

/// Allocation state over all pools. See the module documentation for the rules it applies.
#[derive(Debug, Clone, Default)]
pub struct Ipam {
    pools: BTreeMap<String, PoolEntry>,
    holders: Holders,
    held: BTreeMap<ServiceKey, Held>,
    /// Sharing-relevant spec of holders seen through [`Ipam::reconcile`]. A holder rebuilt from `used` but not
    /// yet reconciled has no entry and is treated as compatible; [`Ipam::reconcile_all`] reconciles holders
    /// first, so after it the picture is complete.
    profiles: BTreeMap<ServiceKey, ShareProfile>,
    warnings: Vec<String>,
}

const REASON_ASSIGN: &str = "AssignIP";
const REASON_RELEASE: &str = "ReleaseIP";
const REASON_ASSIGN_FAILED: &str = "AssignIPFailed";
/// A Service keeps a shared address although it now conflicts with another sharer (see [`Ipam::reconcile`]).
const REASON_SHARE_CONFLICT: &str = "SharedIPConflict";

fn event(type_: EventType, reason: &str, message: String) -> Event {
    Event { type_, reason: reason.to_string(), message }
}

fn assign_event(ip: IpAddr) -> Event {
    event(EventType::Normal, REASON_ASSIGN, format!("success to assign ip: {ip}"))
}

/// Upstream's message, followed by why: "OpenELB keeps changing my address" (#322) is only answerable if the
/// event says what changed.
fn release_event(ip: IpAddr, why: &str) -> Event {
    event(EventType::Normal, REASON_RELEASE, format!("success to release ip: {ip} ({why})"))
}

fn holding_patch(pool: &str, ip: IpAddr) -> ServicePatch {
    ServicePatch { ingress: vec![ip.to_string()], pool_label: Some(pool.to_string()), finalizer: true }
}

/// The address a Service shows in its status, whatever any pool records.
fn shown_ip(svc: &Service) -> Option<IpAddr> {
    svc.ingress.iter().find_map(|s| s.trim().parse::<IpAddr>().ok())
}

impl Ipam {
    /// Rebuilds every allocation from the pools' `status.used`. Entries that do not parse or lie outside their
    /// pool are dropped and reported in [`Ipam::warnings`].
    ///
    /// Pools are read in name order and addresses in numeric order, so a Service recorded twice (a corrupted
    /// status) keeps the same one of its records on every restart.
    pub fn new(pools: &[Pool]) -> Self {
        let mut ipam = Ipam::default();
        let mut sorted: Vec<&Pool> = pools.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        for pool in sorted {
            if ipam.pools.contains_key(&pool.name) {
                ipam.warnings.push(format!("Eip {} is listed more than once; the first one is used", pool.name));
                continue;
            }
            ipam.insert_new_pool(pool);
        }
        ipam
    }

    fn insert_new_pool(&mut self, pool: &Pool) {
        let entry = PoolEntry::new(pool.clone());
        let name = pool.name.clone();
        if entry.range.is_none() && !pool.used.is_empty() {
            self.warnings.push(format!(
                "Eip {name}: spec.address {:?} does not parse; its {} status.used entries are dropped",
                pool.address,
                pool.used.len()
            ));
        }
        let range = entry.range;
        self.pools.insert(name.clone(), entry);
        let Some(range) = range else { return };
        let mut records: Vec<(IpAddr, &str)> = Vec::new();
        for (key, users) in &pool.used {
            match key.trim().parse::<IpAddr>() {
                Err(_) => self
                    .warnings
                    .push(format!("Eip {name}: status.used key {key:?} is not an IP address; entry {users:?} dropped")),
                Ok(ip) if !range.contains(&ip) => self.warnings.push(format!(
                    "Eip {name}: status.used records {ip} for {users:?} but it is outside {range}; dropped"
                )),
                Ok(ip) => records.push((ip, users)),
            }
        }
        records.sort();
        for (ip, users) in records {
            for user in users.split(';').map(str::trim).filter(|u| !u.is_empty()) {
                self.import(&name, ip, user);
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
        let Some(id) = self.holders.intern(&key) else {
            self.warnings.push(format!("Eip {pool}: too many holders to record {key} on {ip}"));
            return;
        };
        let result = match self.pools.get_mut(pool).and_then(|e| e.alloc.as_mut()) {
            Some(alloc) => alloc.allocate_specific(ip, id, true).map_err(|e| e.to_string()),
            None => Err(format!("Eip {pool} gives out no addresses")),
        };
        match result {
            Ok(()) => {
                self.held.insert(key, Held { pool: pool.to_string(), ip });
            }
            Err(e) => {
                self.holders.forget(&key);
                self.warnings.push(format!("Eip {pool}: cannot record {key} on {ip}: {e}"));
            }
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
            let check = lifecycle::check_holding(
                &req,
                &held.pool,
                entry.map(|e| &e.spec),
                entry.and_then(|e| e.range.as_ref()),
                held.ip,
            );
            match check {
                Ok(()) => {
                    let events = self.share_warnings(&key, &profile, held.ip);
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
                events.push(event(EventType::Warning, REASON_ASSIGN_FAILED, reason.clone()));
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
        let not_adoptable = |why: String| ReleaseReason::NotAdoptable { ip, why };
        let label = svc.labels.get(LABEL_EIP_POOL);
        // A pool being deleted still counts: the record would have been kept there (it drains, see
        // `lifecycle::check_holding`), so losing the record must not move the Service either.
        let fits = |e: &PoolEntry| e.range.is_some_and(|r| r.contains(&ip));
        let labelled = label.and_then(|l| self.pools.get(l)).filter(|e| fits(e));
        let entry = match labelled {
            Some(e) => e,
            None => {
                let mut containing: Vec<&PoolEntry> = self.pools.values().filter(|e| fits(e)).collect();
                // Overlapping pools are invalid anyway; if they exist, a live one is the better home.
                containing.sort_by_key(|e| (e.spec.deleting, e.spec.priority, &e.spec.name));
                match containing.first().copied() {
                    Some(e) => e,
                    None => {
                        return Err(match label.map(|l| (l, self.pools.get(l))) {
                            Some((l, None)) => ReleaseReason::PoolDeleted { pool: l.clone() },
                            Some((l, Some(_))) => ReleaseReason::OutsidePool { ip, pool: l.clone() },
                            None => not_adoptable("no Eip contains it".to_string()),
                        });
                    }
                }
            }
        };
        let pool = entry.spec.name.clone();
        lifecycle::check_holding(req, &pool, Some(&entry.spec), entry.range.as_ref(), ip)?;
        let others = self.other_holders(&pool, ip, key);
        if !others.is_empty() {
            if req.ip != Some(ip) {
                let names: Vec<String> = others.iter().map(ToString::to_string).collect();
                return Err(not_adoptable(format!("it is held by {}", names.join(", "))));
            }
            if let Some(why) = self.share_refusal(ip, profile, &others) {
                return Err(not_adoptable(why));
            }
        }
        self.record(key, &pool, Some(ip), profile.clone()).map(|_| pool).map_err(not_adoptable)
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
            let views: Vec<PoolView<'_>> = self
                .pools
                .values()
                .map(|e| PoolView {
                    pool: &e.spec,
                    range: e.range,
                    full: e.alloc.as_ref().is_none_or(PoolAllocator::is_full),
                })
                .collect();
            select::select_pool(&views, svc, namespace, req).map_err(|e| e.to_string())?
        };
        if let Some(ip) = req.ip {
            let others = self.other_holders(&selected.pool, ip, key);
            if let Some(why) = self.share_refusal(ip, &profile, &others) {
                return Err(why);
            }
        }
        let ip = self.record(key, &selected.pool, req.ip, profile)?;
        Ok((selected.pool, ip))
    }

    /// Allocates in `pool` (`ip` or the lowest free address) and remembers who holds it.
    fn record(
        &mut self,
        key: &ServiceKey,
        pool: &str,
        ip: Option<IpAddr>,
        profile: ShareProfile,
    ) -> Result<IpAddr, String> {
        let id = self.holders.intern(key).ok_or_else(|| format!("too many Services hold addresses to add {key}"))?;
        let result = match self.pools.get_mut(pool).and_then(|e| e.alloc.as_mut()) {
            None => Err(format!("Eip {pool} gives out no addresses")),
            Some(alloc) => match ip {
                Some(ip) => alloc.allocate_specific(ip, id, true).map(|()| ip),
                None => alloc.allocate_any(id),
            }
            .map_err(|e| format!("Eip {pool}: {e}")),
        };
        match result {
            Ok(ip) => {
                self.held.insert(key.clone(), Held { pool: pool.to_string(), ip });
                self.profiles.insert(key.clone(), profile);
                Ok(ip)
            }
            Err(e) => {
                self.holders.forget(key);
                Err(e)
            }
        }
    }

    /// Services other than `key` holding `ip` in `pool`, sorted.
    fn other_holders(&self, pool: &str, ip: IpAddr, key: &ServiceKey) -> Vec<ServiceKey> {
        let Some(alloc) = self.pools.get(pool).and_then(|e| e.alloc.as_ref()) else { return Vec::new() };
        let mut keys: Vec<ServiceKey> = alloc
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
        let Some(held) = self.held.get(key) else { return Vec::new() };
        self.other_holders(&held.pool, ip, key)
            .iter()
            .filter_map(|other| {
                let conflict = profile.conflict_with(self.profiles.get(other)?)?;
                Some(event(
                    EventType::Warning,
                    REASON_SHARE_CONFLICT,
                    format!("keeps {ip} shared with {other} although {conflict}"),
                ))
            })
            .collect()
    }

    /// Forgets a Service's allocation, returning it.
    fn drop_holding(&mut self, key: &ServiceKey) -> Option<Held> {
        let held = self.held.remove(key)?;
        if let Some(id) = self.holders.get(key)
            && let Some(alloc) = self.pools.get_mut(&held.pool).and_then(|e| e.alloc.as_mut())
        {
            alloc.release(held.ip, id);
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

    /// Releases every allocation whose Service is not in `existing`, like upstream's Eip garbage collection
    /// (reference §4.2) but without its leak when a Service and an Eip go together (#271). Only call it with
    /// the complete list of Services. Returns the released Services, sorted.
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

    /// Adds or replaces a pool's spec; allocations inside it are kept.
    ///
    /// The `used` of a pool already known is ignored (ours is newer than any copy the caller has); a new pool's
    /// `used` is imported as [`Ipam::new`] does. When the range changes, allocations outside the new range are
    /// dropped; their Services then show an address no pool records and are released on their next reconcile.
    pub fn upsert_pool(&mut self, pool: Pool) {
        let Some(entry) = self.pools.get_mut(&pool.name) else {
            self.insert_new_pool(&pool);
            return;
        };
        let fresh = PoolEntry::new(pool);
        let old_range = entry.range;
        let old_alloc = entry.alloc.take();
        entry.spec = fresh.spec;
        entry.range = fresh.range;
        if old_range == entry.range {
            entry.alloc = old_alloc;
            return;
        }
        entry.alloc = fresh.alloc;
        let mut dropped = Vec::new();
        for (ip, ids) in old_alloc.iter().flat_map(|a| a.iter()) {
            for id in ids {
                let kept = match entry.alloc.as_mut() {
                    Some(a) if a.range().contains(&ip) => a.allocate_specific(ip, id, true).is_ok(),
                    _ => false,
                };
                if !kept {
                    dropped.push(id);
                }
            }
        }
        for id in dropped {
            if let Some(key) = self.holders.key(id).cloned() {
                self.held.remove(&key);
                self.profiles.remove(&key);
                self.holders.forget(&key);
            }
        }
    }

    /// Removes a pool; returns the Services that held addresses in it (they must be reconciled again).
    pub fn remove_pool(&mut self, name: &str) -> Vec<ServiceKey> {
        if self.pools.remove(name).is_none() {
            return Vec::new();
        }
        let keys: Vec<ServiceKey> = self.held.iter().filter(|(_, h)| h.pool == name).map(|(k, _)| k.clone()).collect();
        for key in &keys {
            self.held.remove(key);
            self.profiles.remove(key);
            self.holders.forget(key);
        }
        keys
    }

    /// Current allocation of a Service.
    pub fn allocation(&self, key: &ServiceKey) -> Option<(&str, IpAddr)> {
        self.held.get(key).map(|h| (h.pool.as_str(), h.ip))
    }

    pub fn pool_status(&self, name: &str) -> Option<PoolStatus> {
        let entry = self.pools.get(name)?;
        let Some(range) = entry.range else {
            return Some(PoolStatus::default());
        };
        let usage = entry.alloc.as_ref().map_or(0, PoolAllocator::used);
        let pool_size = range.size();
        Some(PoolStatus {
            pool_size,
            usage,
            occupied: usage >= pool_size,
            used: self.used_map(entry),
            first_ip: Some(range.start().to_string()),
            last_ip: Some(range.end().to_string()),
            v4: range.family() == IpFamily::V4,
        })
    }

    /// The pools as they are now, their `used` maps updated.
    pub fn pools(&self) -> Vec<Pool> {
        self.pools.values().map(|e| Pool { used: self.used_map(e), ..e.spec.clone() }).collect()
    }

    /// `status.used`: address → holders sorted and joined with `;` as upstream writes them.
    fn used_map(&self, entry: &PoolEntry) -> BTreeMap<String, String> {
        let Some(alloc) = entry.alloc.as_ref() else { return BTreeMap::new() };
        alloc
            .iter()
            .map(|(ip, ids)| {
                let mut keys: Vec<String> =
                    ids.into_iter().filter_map(|id| self.holders.key(id)).map(ToString::to_string).collect();
                keys.sort();
                (ip.to_string(), keys.join(";"))
            })
            .collect()
    }
}

fn failed(service: ServiceKey, reason: String, released: Option<(String, IpAddr)>, why: &str) -> Outcome {
    let mut events: Vec<Event> = released.iter().map(|(_, ip)| release_event(*ip, why)).collect();
    events.push(event(EventType::Warning, REASON_ASSIGN_FAILED, reason.clone()));
    Outcome { service, change: Change::Failed { reason, released }, patch: Some(ServicePatch::default()), events }
}
