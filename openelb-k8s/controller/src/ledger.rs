//! The allocation state of one leadership term: one allocator kept across reconciles instead of rebuilt from
//! every Eip's `status.used` for each decision (which made N allocations cost N² work).
//!
//! The API stays the only durable state: the ledger is built from the Eip cache when a term starts, follows
//! what others write to Eips, and every decision it records reaches the API through a write guarded by the
//! Eip's `resourceVersion` ([`crate::eip_commit`]). Each change to an Eip's allocations gets a [`Ticket`]; the
//! decision is carried out (the Service told its address) only once a write including it succeeded. When such
//! a write is refused because someone else wrote the Eip, the pool is reloaded from the server and the tickets
//! it had not written are lost: their Services are decided again. Why: docs/allocation.md#concurrent-writers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use openelb_core::ipam::{Ipam, Outcome, PoolStatus};
use openelb_core::model::{Namespace, Pool, Service, ServiceKey};
use openelb_core::validate::Problem;

use super::eip_status;
use openelb_k8s::convert::{self, ConvertError};
use openelb_k8s::crd::Eip;

/// One decision's change to one Eip, to be written before the decision is carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub eip: String,
    epoch: u64,
    seq: u64,
}

/// Where a [`Ticket`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketState {
    /// A write that includes the change succeeded.
    Written,
    /// Not written yet.
    Pending,
    /// The pool was reloaded from the server (or is gone) before the change was written: decide again.
    Lost,
}

/// An Eip as the ledger follows it.
#[derive(Debug, Clone)]
struct Tracked {
    /// The latest version known: from the cache, or returned by our own write. Its `status.used` is what the
    /// server holds as far as we know; the allocator holds what it should hold.
    object: Arc<Eip>,
    /// Bumped when the pool's allocations are reloaded from the server.
    epoch: u64,
    /// Changes recorded in this epoch, and how many of them a write carried.
    decided: u64,
    written: u64,
}

impl Tracked {
    fn version(&self) -> Option<u64> {
        version_of(&self.object)
    }
}

fn version_of(eip: &Eip) -> Option<u64> {
    eip.metadata.resource_version.as_deref()?.parse().ok()
}

/// Whether `cached` is a later version than the one the ledger knows. `resourceVersion`s are opaque to clients,
/// but every API server in use issues etcd revisions; when one does not parse, any different one counts as later
/// (a wrong guess costs a refused write and a reload, never a second holder).
fn is_later(cached: &Eip, known: &Tracked) -> bool {
    match (version_of(cached), known.version()) {
        (Some(c), Some(k)) => c > k,
        _ => cached.metadata.resource_version != known.object.metadata.resource_version,
    }
}

/// The pool an Eip describes, without its `used` (the allocator has those).
fn spec_of(eip: &Eip) -> Result<Pool, ConvertError> {
    let mut pool = convert::pool_from_eip(eip)?;
    pool.used.clear();
    Ok(pool)
}

#[derive(Debug, Default)]
pub struct Ledger {
    ipam: Ipam,
    eips: BTreeMap<String, Tracked>,
    /// Problems of every Eip's spec, recomputed when a spec changes.
    problems: BTreeMap<String, Vec<Problem>>,
    /// The `resourceVersion` our last write of each Service returned: a cached copy older than that is stale, and
    /// deciding from it could put back an address the Service has since given up.
    services: HashMap<ServiceKey, u64>,
    /// Rebuild warnings not yet logged.
    warnings_seen: usize,
}

/// What a [`Ledger::refresh`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// Services that held addresses in Eips that are gone, or whose allocations were reloaded.
    pub recheck: Vec<ServiceKey>,
    /// Eips whose spec (or deletion) changed.
    pub reshaped: Vec<String>,
}

impl Ledger {
    /// Follows the Eip cache: new Eips, changed specs, Eips gone, and allocations written by someone else
    /// (adopted only while we have nothing unwritten in that Eip; otherwise our write is refused and
    /// [`Ledger::reload`] follows).
    pub fn refresh(&mut self, cached: &[Arc<Eip>]) -> Result<Refreshed, ConvertError> {
        let mut out = Refreshed::default();
        let mut present = std::collections::BTreeSet::new();
        let mut new = Vec::new();
        for eip in cached {
            let name = eip.name_any();
            present.insert(name.clone());
            let Some(known) = self.eips.get(&name) else {
                new.push(eip);
                continue;
            };
            if !is_later(eip, known) {
                continue;
            }
            let spec = spec_of(eip)?;
            if spec != spec_of(&known.object)? {
                self.ipam.upsert_pool(spec);
                out.reshaped.push(name.clone());
            }
            let used = |e: &Eip| e.status.as_ref().map(|s| s.used.clone()).unwrap_or_default();
            let theirs = used(eip);
            let unwritten = known.decided > known.written;
            if theirs == used(&known.object) || (!unwritten && Some(&theirs) == self.used(&name).as_ref()) {
                // Nothing new about allocations: a spec, metadata or condition change, or our own write.
                if let Some(t) = self.eips.get_mut(&name) {
                    t.object = eip.clone();
                }
            } else if !unwritten {
                out.recheck.extend(self.reload(eip.clone())?);
            }
            // Otherwise someone else wrote allocations while ours wait: keep the version ours are guarded by,
            // so our write is refused and the pool reloaded.
        }
        // In name order, as a rebuild reads them: an address recorded in two Eips stays with the same one.
        new.sort_by_key(|e| e.name_any());
        for eip in new {
            let name = eip.name_any();
            self.ipam.upsert_pool(convert::pool_from_eip(eip)?);
            self.eips.insert(name.clone(), Tracked { object: eip.clone(), epoch: 0, decided: 0, written: 0 });
            out.reshaped.push(name);
        }
        let gone: Vec<String> = self.eips.keys().filter(|n| !present.contains(*n)).cloned().collect();
        for name in gone {
            out.recheck.extend(self.ipam.remove_pool(&name));
            self.eips.remove(&name);
            out.reshaped.push(name);
        }
        if !out.reshaped.is_empty() {
            self.problems = eip_status::problems(cached)?;
        }
        Ok(out)
    }

    fn used(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.ipam.pool_status(name).map(|s| s.used)
    }

    /// Replaces an Eip's allocations by what the server holds (after a write of ours was refused); the changes
    /// not yet written are lost. Returns the Services that held addresses in it.
    pub fn reload(&mut self, current: Arc<Eip>) -> Result<Vec<ServiceKey>, ConvertError> {
        let name = current.name_any();
        let pool = convert::pool_from_eip(&current)?;
        let mut recheck = self.ipam.remove_pool(&name);
        self.ipam.upsert_pool(pool);
        recheck.retain(|k| self.ipam.allocation(k).is_none());
        let epoch = self.eips.get(&name).map_or(0, |t| t.epoch + 1);
        self.eips.insert(name, Tracked { object: current, epoch, decided: 0, written: 0 });
        Ok(recheck)
    }

    /// An Eip version our own write returned (a status or a finalizer).
    pub fn saw(&mut self, written: Arc<Eip>) {
        if let Some(t) = self.eips.get_mut(&written.name_any())
            && (is_later(&written, t) || t.object.metadata.resource_version.is_none())
        {
            t.object = written;
        }
    }

    /// Whether the cached copy of a Service is older than what our last write of it returned.
    pub fn is_stale(&self, key: &ServiceKey, resource_version: Option<&str>) -> bool {
        let (Some(ours), Some(cached)) = (self.services.get(key), resource_version.and_then(|v| v.parse::<u64>().ok()))
        else {
            return false;
        };
        cached < *ours
    }

    /// What our write of a Service returned; `None` forgets it (the Service is gone).
    pub fn service_written(&mut self, key: &ServiceKey, resource_version: Option<&str>) {
        match resource_version.and_then(|v| v.parse::<u64>().ok()) {
            Some(v) => {
                self.services.insert(key.clone(), v);
            }
            None => {
                self.services.remove(key);
            }
        }
    }

    /// Decides for one Service and records the decision; a ticket for each Eip whose allocations it changed.
    pub fn decide(&mut self, svc: &Service, namespace: Option<&Namespace>) -> (Outcome, Vec<Ticket>) {
        let key = svc.key();
        let before = self.ipam.allocation(&key).map(|(p, ip)| (p.to_string(), ip));
        let outcome = self.ipam.reconcile(svc, namespace);
        let after = self.ipam.allocation(&key).map(|(p, ip)| (p.to_string(), ip));
        let mut tickets = self.changed(before.clone(), after.clone());
        // Kept, but possibly from a change not written yet (an earlier reconcile of it failed at the write):
        // the Service is told its address only once the Eip records it.
        if let (true, Some((pool, _))) = (tickets.is_empty(), after)
            && let Some(t) = self.eips.get(&pool)
            && t.decided > t.written
        {
            tickets.push(Ticket { eip: pool, epoch: t.epoch, seq: t.decided });
        }
        (outcome, tickets)
    }

    /// Releases what a Service that no longer exists holds.
    pub fn release(&mut self, key: &ServiceKey) -> Option<((String, std::net::IpAddr), Ticket)> {
        let released = self.ipam.release_service(key)?;
        self.services.remove(key);
        let ticket = self.ticket(&released.0)?;
        Some((released, ticket))
    }

    fn changed(
        &mut self,
        before: Option<(String, std::net::IpAddr)>,
        after: Option<(String, std::net::IpAddr)>,
    ) -> Vec<Ticket> {
        if before == after {
            return Vec::new();
        }
        let mut pools: Vec<String> = before.into_iter().chain(after).map(|(p, _)| p).collect();
        pools.dedup();
        pools.iter().filter_map(|p| self.ticket(p)).collect()
    }

    fn ticket(&mut self, eip: &str) -> Option<Ticket> {
        let t = self.eips.get_mut(eip)?;
        t.decided += 1;
        Some(Ticket { eip: eip.to_string(), epoch: t.epoch, seq: t.decided })
    }

    pub fn state(&self, ticket: &Ticket) -> TicketState {
        match self.eips.get(&ticket.eip) {
            Some(t) if t.epoch == ticket.epoch && t.written >= ticket.seq => TicketState::Written,
            Some(t) if t.epoch == ticket.epoch => TicketState::Pending,
            _ => TicketState::Lost,
        }
    }

    /// The Eip with the status it should have now (the known version's `resourceVersion`, so the write is
    /// guarded), and the change count it carries; `None` when the known status already says it all, which marks
    /// every change so far written.
    pub fn due(&mut self, name: &str, now: &Time) -> Option<(Eip, u64)> {
        let pool = self.ipam.pool_status(name)?;
        let problems = self.problems.get(name).map_or(&[][..], Vec::as_slice);
        let t = self.eips.get_mut(name)?;
        let desired = eip_status::desired_status(&t.object, &pool, problems, now);
        if t.object.status.as_ref() == Some(&desired) {
            t.written = t.decided;
            return None;
        }
        let mut eip = Eip::clone(&t.object);
        eip.status = Some(desired);
        Some((eip, t.decided))
    }

    /// A write carrying the first `seq` changes succeeded and returned `written`.
    pub fn written(&mut self, name: &str, seq: u64, written: Arc<Eip>) {
        if let Some(t) = self.eips.get_mut(name) {
            t.written = t.written.max(seq);
            t.object = written;
        }
    }

    /// The known version of an Eip (what its decisions start from).
    pub fn eip(&self, name: &str) -> Option<&Arc<Eip>> {
        self.eips.get(name).map(|t| &t.object)
    }

    pub fn pool_status(&self, name: &str) -> Option<PoolStatus> {
        self.ipam.pool_status(name)
    }

    pub fn problems(&self, name: &str) -> &[Problem] {
        self.problems.get(name).map_or(&[][..], Vec::as_slice)
    }

    /// Services holding an address that are not in `existing`.
    pub fn absent(&self, existing: &[ServiceKey]) -> Vec<ServiceKey> {
        let keep: std::collections::HashSet<&ServiceKey> = existing.iter().collect();
        self.ipam.holders().filter(|k| !keep.contains(k)).cloned().collect()
    }

    /// Releases every allocation whose Service is not in `existing` (the complete list, read after the Eips);
    /// returns what was released, each with its ticket.
    pub fn release_absent(&mut self, existing: &[ServiceKey]) -> Vec<(ServiceKey, String, std::net::IpAddr, Ticket)> {
        let gone: Vec<(ServiceKey, String, std::net::IpAddr)> = self
            .absent(existing)
            .into_iter()
            .filter_map(|key| {
                let (pool, ip) = self.ipam.allocation(&key)?;
                Some((key, pool.to_string(), ip))
            })
            .collect();
        if gone.is_empty() {
            return Vec::new();
        }
        self.ipam.release_absent(existing);
        gone.into_iter()
            .filter_map(|(key, pool, ip)| {
                let ticket = self.ticket(&pool)?;
                Some((key, pool, ip, ticket))
            })
            .collect()
    }

    /// Rebuild warnings not returned before (problems found in `status.used`, worth a log line each once).
    pub fn new_warnings(&mut self) -> Vec<String> {
        let all = self.ipam.warnings();
        let new = all.get(self.warnings_seen..).unwrap_or_default().to_vec();
        self.warnings_seen = all.len();
        new
    }
}

#[cfg(test)]
mod tests;
