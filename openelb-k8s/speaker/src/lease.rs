//! This node's Lease `openelb-speaker-<node>` (docs/vrrp.md): written at once when its VRRP sources or the set
//! of foreign VRIDs it sees change (peers accept our adverts only once they know our sources), and renewed every
//! [`LEASE_RENEW`] otherwise.
//!
//! Why not renew every few seconds: every speaker watches every speaker's Lease, so renewals cost N² watch
//! events per period across the cluster, and nothing needs fresh liveness: a Lease counts for known peers as
//! long as its Node exists, and for [`LEASE_STALE`] after its last renewal otherwise. Writes are server-side
//! apply (one request creates or updates, no read first); a failed write is retried every `RETRY`.

use std::future::Future;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use openelb_k8s::vrrp::SpeakerLease;
use tokio::sync::watch;
use tokio::time::Instant;

use super::shared::LocalVrrp;

/// How often the Lease is renewed when nothing changes.
pub const LEASE_RENEW: Duration = Duration::from_secs(60);
/// A Lease not renewed for this long no longer counts for known peers unless its Node exists.
pub const LEASE_STALE: Duration = Duration::from_secs(300);
/// `spec.leaseDurationSeconds` written (informational: two renewals and some).
pub const LEASE_DURATION: Duration = Duration::from_secs(150);
/// Least time between two writes caused by changes.
const DEBOUNCE: Duration = Duration::from_secs(1);
const RETRY: Duration = Duration::from_secs(2);
const FIELD_MANAGER: &str = "openelb-speaker";

/// Writes `node`'s Lease in `namespace` from what `local` holds, until `shutdown` (or until nobody sends on
/// `local` any more).
pub async fn keep_lease(
    client: Client,
    namespace: String,
    node: String,
    mut local: watch::Receiver<LocalVrrp>,
    shutdown: impl Future<Output = ()>,
) {
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    let name = SpeakerLease::name_for(&node);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    tokio::pin!(shutdown);
    let mut written: Option<LocalVrrp> = None;
    let mut next_renewal = Instant::now();
    let mut not_before = Instant::now();
    let mut last_error: Option<String> = None;
    loop {
        let current = local.borrow_and_update().clone();
        let now = Instant::now();
        let changed = written.as_ref().is_none_or(|w| w.shape() != current.shape());
        if (changed || now >= next_renewal) && now >= not_before {
            let lease = SpeakerLease {
                node: node.clone(),
                sources: current.sources.clone(),
                foreign: current.foreign.clone(),
                renewed: None,
            }
            .to_lease(&namespace, SystemTime::now(), LEASE_DURATION);
            match api.patch(&name, &params, &Patch::Apply(&lease)).await {
                Ok(_) => {
                    if last_error.take().is_some() {
                        tracing::info!(lease = %name, "writing the speaker Lease works again");
                    }
                    tracing::debug!(lease = %name, sources = ?current.sources, foreign = current.foreign.len(), "Lease written");
                    written = Some(current);
                    next_renewal = now + LEASE_RENEW;
                    not_before = now + DEBOUNCE;
                }
                Err(e) => {
                    let message = e.to_string();
                    if last_error.as_ref() != Some(&message) {
                        tracing::warn!(
                            lease = %format!("{namespace}/{name}"), error = %message,
                            "cannot write this node's speaker Lease (other speakers do not accept adverts from \
                             sources they do not know yet); retrying"
                        );
                        last_error = Some(message);
                    }
                    not_before = now + RETRY;
                }
            }
        }
        let pending = written.as_ref().is_none_or(|w| w.shape() != local.borrow().shape());
        let wake = if pending { not_before } else { next_renewal.max(not_before) };
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            r = local.changed() => if r.is_err() { return },
            () = &mut shutdown => return,
        }
    }
}
