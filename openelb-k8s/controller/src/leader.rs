//! Leader election on the `coordination.k8s.io/v1` Lease `openelb-controller`, through kube-lease-manager.
//!
//! kube-lease-manager takes, renews and releases the Lease. Two things are added around it:
//! - **Prompt takeover.** A standby's manager sleeps until the holder's lease would expire, so a leader that
//!   releases the Lease on SIGTERM would still leave the cluster without a writer for up to a lease duration.
//!   A watch on the Lease wakes the standby when the holder lets go, and a fresh manager takes it at once.
//! - **Fencing.** A leader only learns from its manager that the Lease is lost when it can read the Lease
//!   again. While this replica writes, the watch must keep showing it as the holder with an unexpired renewal;
//!   otherwise it stops writing before a standby may take over ([`Lost::NotRenewed`]).

use std::fmt;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Name of the Lease the controller replicas compete for.
pub const LEASE_NAME: &str = "openelb-controller";
/// Namespace of the Lease when neither `--lease-namespace` nor `POD_NAMESPACE` says.
pub const DEFAULT_LEASE_NAMESPACE: &str = "openelb-system";
/// How long a crashed leader keeps the Lease: the longest a cluster waits for a new writer after a crash.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// Shorter leases renew so often that API server hiccups would make leaders flap.
pub const MIN_LEASE_DURATION: Duration = Duration::from_secs(3);
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElectionError {
    #[error("lease duration {0:?} is too short: at least {MIN_LEASE_DURATION:?}")]
    DurationTooShort(Duration),
    #[error("leader election identity is empty")]
    EmptyIdentity,
    #[error("lease namespace is empty")]
    EmptyNamespace,
}

/// Where the Lease lives and who this replica is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElection {
    namespace: String,
    identity: String,
    duration: Duration,
}

impl LeaderElection {
    pub fn new(namespace: String, identity: String, duration: Duration) -> Result<Self, ElectionError> {
        if namespace.is_empty() {
            return Err(ElectionError::EmptyNamespace);
        }
        if identity.is_empty() {
            return Err(ElectionError::EmptyIdentity);
        }
        if duration < MIN_LEASE_DURATION {
            return Err(ElectionError::DurationTooShort(duration));
        }
        Ok(LeaderElection { namespace, identity, duration })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The leader renews this long before its lease would expire; also the clock skew tolerated between
    /// replicas.
    fn grace(&self) -> Duration {
        Duration::from_secs((self.duration.as_secs() / 3).max(1))
    }
}

/// `$POD_NAME`, or `<hostname>-<pid>` so two processes on one machine never share an identity.
pub fn default_identity() -> String {
    if let Some(pod) = std::env::var("POD_NAME").ok().filter(|p| !p.is_empty()) {
        return pod;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".to_string());
    format!("{host}-{}", std::process::id())
}

/// `$POD_NAMESPACE`, or [`DEFAULT_LEASE_NAMESPACE`].
pub fn default_lease_namespace() -> String {
    std::env::var("POD_NAMESPACE").ok().filter(|n| !n.is_empty()).unwrap_or_else(|| DEFAULT_LEASE_NAMESPACE.into())
}

/// Why this replica stopped being the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// The Lease shows another holder.
    TakenBy(String),
    /// The Lease shows no holder, or is gone.
    Released,
    /// No renewal seen in time: the Lease may expire any moment, and then a standby may write.
    NotRenewed,
    /// The lease manager reports that this replica is no longer the holder.
    NotHolder,
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lost::TakenBy(holder) => write!(f, "the Lease is held by {holder}"),
            Lost::Released => f.write_str("the Lease has no holder or was deleted"),
            Lost::NotRenewed => f.write_str("no renewal of the Lease was seen before it could expire"),
            Lost::NotHolder => f.write_str("the lease manager found another holder"),
        }
    }
}

/// What this replica last saw of the Lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Seen {
    holder: Option<String>,
    renewed: Option<SystemTime>,
    duration: Option<Duration>,
}

impl Seen {
    fn of(lease: &Lease) -> Self {
        let spec = lease.spec.clone().unwrap_or_default();
        Seen {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            renewed: spec.renew_time.map(|t| SystemTime::from(t.0)),
            duration: spec.lease_duration_seconds.and_then(|s| u64::try_from(s).ok()).map(Duration::from_secs),
        }
    }
}

/// When a leader that last saw the Lease as `seen` must stop writing, or `None` when `seen` does not show it
/// holding the Lease. Half the grace period is left for the renewal (due a grace period before expiry) to be
/// seen, and the other half covers clock skew with the replica that would take over.
fn fence_deadline(seen: &Seen, identity: &str, config: &LeaderElection) -> Option<SystemTime> {
    if seen.holder.as_deref() != Some(identity) {
        return None;
    }
    let renewed = seen.renewed?;
    let expires = renewed.checked_add(seen.duration.unwrap_or(config.duration))?;
    expires.checked_sub(config.grace() / 2)
}

/// When the leader of a term that began at `since` must stop writing, given what it last saw of the Lease, and
/// whether that sighting confirms the term (a renewal by this replica dated within the term, clock skew
/// tolerated). Until confirmed, the acquisition itself dates the lease: a renewal from before the term (the Lease
/// still names us after an API outage or a restart with the same identity) says nothing about it, and fencing on
/// that stale time would end every term at once, before the manager's first renewal is seen. Once confirmed,
/// a Lease that stops showing this replica ends the term.
fn term_deadline(
    seen: &Seen,
    config: &LeaderElection,
    since: SystemTime,
    confirmed: bool,
) -> Result<(SystemTime, bool), Lost> {
    let fresh = seen.renewed.is_some_and(|r| r + config.grace() >= since);
    match fence_deadline(seen, &config.identity, config) {
        Some(deadline) if confirmed || fresh => Ok((deadline, true)),
        _ if !confirmed => Ok((since + config.duration - config.grace() / 2, false)),
        _ => Err(match &seen.holder {
            Some(holder) if *holder != config.identity => Lost::TakenBy(holder.clone()),
            Some(_) => Lost::NotRenewed,
            None => Lost::Released,
        }),
    }
}

/// Follows the Lease in `namespace`, publishing what it shows (the default when it does not exist).
fn watch_lease(client: Client, namespace: &str, seen: watch::Sender<Seen>) -> JoinHandle<()> {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={LEASE_NAME}"));
    let namespace = namespace.to_string();
    tokio::spawn(async move {
        let publish = |new: Seen| {
            seen.send_if_modified(|current| {
                let changed = *current != new;
                *current = new;
                changed
            });
        };
        let mut relisted: Option<Seen> = None;
        let mut stream = std::pin::pin!(watcher(api, config).default_backoff());
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Apply(lease)) => publish(Seen::of(&lease)),
                Ok(watcher::Event::Delete(_)) => publish(Seen::default()),
                Ok(watcher::Event::Init) => relisted = Some(Seen::default()),
                Ok(watcher::Event::InitApply(lease)) => relisted = Some(Seen::of(&lease)),
                Ok(watcher::Event::InitDone) => publish(relisted.take().unwrap_or_default()),
                Err(e) => tracing::warn!("watch of Lease {namespace}/{LEASE_NAME}: {e}"),
            }
        }
    })
}

/// One replica's side of the election.
pub struct Elector {
    client: Client,
    config: LeaderElection,
    seen: watch::Receiver<Seen>,
    watch_task: JoinHandle<()>,
    manager: Option<LeaseManager>,
}

impl Elector {
    /// Starts following the Lease; competing starts with [`Elector::acquire`].
    pub fn start(client: Client, config: LeaderElection) -> Self {
        let (tx, seen) = watch::channel(Seen::default());
        let watch_task = watch_lease(client.clone(), &config.namespace, tx);
        Elector { client, config, seen, watch_task, manager: None }
    }

    async fn manager(&self) -> Result<LeaseManager, kube_lease_manager::LeaseManagerError> {
        LeaseManagerBuilder::new(self.client.clone(), LEASE_NAME)
            .with_namespace(&self.config.namespace)
            .with_identity(&self.config.identity)
            .with_duration(self.config.duration.as_secs())
            .with_grace(self.config.grace().as_secs())
            .build()
            .await
    }

    /// Returns once this replica holds the Lease. Retries API errors for ever (logging them): a standby has
    /// nothing better to do.
    pub async fn acquire(&mut self) {
        self.manager = None;
        let mut retry = RETRY_FIRST;
        let mut seen = self.seen.clone();
        loop {
            let manager = match self.manager().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(lease = %self.lease(), "cannot set up leader election: {e}; retrying in {retry:?}");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                    continue;
                }
            };
            seen.mark_unchanged();
            loop {
                tokio::select! {
                    changed = manager.changed() => match changed {
                        Ok(true) => {
                            self.manager = Some(manager);
                            return;
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(lease = %self.lease(), "leader election: {e}; retrying in {retry:?}");
                            tokio::time::sleep(retry).await;
                            retry = (retry * 2).min(RETRY_MAX);
                        }
                    },
                    () = released(&mut seen) => {
                        // The manager would sleep until the old lease expired: a fresh one reads the Lease now.
                        tracing::debug!(lease = %self.lease(), "the Lease was let go; competing for it now");
                        break;
                    }
                }
            }
        }
    }

    /// Keeps the Lease renewed while the term runs; returns when it is lost. `since` is when it was acquired.
    pub async fn hold(&self, since: SystemTime) -> Lost {
        let Some(manager) = self.manager.as_ref() else { return Lost::NotHolder };
        let mut seen = self.seen.clone();
        let mut confirmed = false;
        let mut retry = RETRY_FIRST;
        // One renewal future for the whole term: recreating it on every watch event would cut renewals short.
        let mut renewing = Box::pin(manager.changed());
        loop {
            let now_seen = seen.borrow_and_update().clone();
            let deadline = match term_deadline(&now_seen, &self.config, since, confirmed) {
                Ok((deadline, now_confirmed)) => {
                    confirmed = now_confirmed;
                    deadline
                }
                Err(lost) => return lost,
            };
            let Ok(left) = deadline.duration_since(SystemTime::now()) else { return Lost::NotRenewed };
            tokio::select! {
                changed = &mut renewing => {
                    match changed {
                        Ok(true) => {}
                        Ok(false) => return Lost::NotHolder,
                        Err(e) => {
                            tracing::warn!(lease = %self.lease(), "renewing the Lease: {e}; retrying in {retry:?}");
                            tokio::time::sleep(retry.min(left)).await;
                            retry = (retry * 2).min(RETRY_MAX);
                        }
                    }
                    renewing = Box::pin(manager.changed());
                }
                changed = seen.changed() => {
                    if changed.is_err() {
                        // The watch is gone: only the deadline fences from now on.
                        tokio::time::sleep(left).await;
                    }
                }
                () = tokio::time::sleep(left) => {}
            }
        }
    }

    /// Gives the Lease up, so a standby takes over without waiting for it to expire.
    pub async fn release(&mut self) {
        let Some(manager) = self.manager.take() else { return };
        match manager.release().await {
            Ok(()) => tracing::info!(lease = %self.lease(), identity = %self.config.identity, "Lease released"),
            Err(e) => tracing::warn!(lease = %self.lease(), "cannot release the Lease (it expires by itself): {e}"),
        }
    }

    /// The holder as last seen, for logs.
    pub fn holder(&self) -> Option<String> {
        self.seen.borrow().holder.clone()
    }

    fn lease(&self) -> String {
        format!("{}/{LEASE_NAME}", self.config.namespace)
    }
}

impl Drop for Elector {
    fn drop(&mut self) {
        self.watch_task.abort();
    }
}

/// Completes when the Lease is seen without a holder (released, or deleted).
async fn released(seen: &mut watch::Receiver<Seen>) {
    loop {
        if seen.changed().await.is_err() {
            // Without the watch, the manager's own expiry timer is all there is.
            std::future::pending::<()>().await;
        }
        if seen.borrow_and_update().holder.is_none() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(seconds: u64) -> LeaderElection {
        LeaderElection::new("ns".into(), "me".into(), Duration::from_secs(seconds)).unwrap()
    }

    #[test]
    fn settings_are_checked() {
        assert_eq!(
            LeaderElection::new("ns".into(), "me".into(), Duration::from_secs(2)),
            Err(ElectionError::DurationTooShort(Duration::from_secs(2)))
        );
        assert_eq!(
            LeaderElection::new(String::new(), "me".into(), DEFAULT_LEASE_DURATION),
            Err(ElectionError::EmptyNamespace)
        );
        assert_eq!(
            LeaderElection::new("ns".into(), String::new(), DEFAULT_LEASE_DURATION),
            Err(ElectionError::EmptyIdentity)
        );
        assert_eq!(config(15).grace(), Duration::from_secs(5));
        assert_eq!(config(3).grace(), Duration::from_secs(1));
    }

    #[test]
    fn the_leader_stops_half_a_grace_period_before_its_lease_could_expire() {
        let renewed = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let seen = Seen { holder: Some("me".into()), renewed: Some(renewed), duration: Some(Duration::from_secs(15)) };
        let deadline = fence_deadline(&seen, "me", &config(15)).unwrap();
        assert_eq!(deadline, renewed + Duration::from_millis(12_500));
    }

    #[test]
    fn the_lease_of_another_holder_or_none_is_no_deadline() {
        let renewed = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1000));
        let other = Seen { holder: Some("other".into()), renewed, duration: None };
        assert_eq!(fence_deadline(&other, "me", &config(15)), None);
        assert_eq!(fence_deadline(&Seen::default(), "me", &config(15)), None);
        let unrenewed = Seen { holder: Some("me".into()), renewed: None, duration: None };
        assert_eq!(fence_deadline(&unrenewed, "me", &config(15)), None);
    }

    #[test]
    fn the_lease_duration_defaults_to_the_configured_one() {
        let renewed = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let seen = Seen { holder: Some("me".into()), renewed: Some(renewed), duration: None };
        assert_eq!(fence_deadline(&seen, "me", &config(9)), Some(renewed + Duration::from_millis(7_500)));
    }

    #[test]
    fn a_default_identity_is_unique_per_process() {
        if std::env::var_os("POD_NAME").is_some() {
            return;
        }
        let id = default_identity();
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
    }

    #[test]
    fn a_renewal_from_before_the_term_does_not_end_it() {
        let config = LeaderElection::new("ns".into(), "me".into(), Duration::from_secs(15)).unwrap();
        let since = SystemTime::now();
        let stale = Seen {
            holder: Some("me".into()),
            renewed: Some(since - Duration::from_secs(600)),
            duration: Some(Duration::from_secs(15)),
        };
        let (deadline, confirmed) = term_deadline(&stale, &config, since, false).unwrap();
        assert!(!confirmed);
        assert_eq!(deadline, since + Duration::from_secs(15) - config.grace() / 2);
        let renewed = Seen { renewed: Some(since + Duration::from_secs(1)), ..stale.clone() };
        let (deadline, confirmed) = term_deadline(&renewed, &config, since, false).unwrap();
        assert!(confirmed);
        assert_eq!(deadline, since + Duration::from_secs(16) - config.grace() / 2);
        // Once confirmed, the Lease showing someone else (or nobody) ends the term.
        let other = Seen { holder: Some("you".into()), ..renewed.clone() };
        assert_eq!(term_deadline(&other, &config, since, true), Err(Lost::TakenBy("you".into())));
        let none = Seen { holder: None, ..renewed };
        assert_eq!(term_deadline(&none, &config, since, true), Err(Lost::Released));
    }
}
