//! kube-proxy's IPVS mode binds every VIP to kube-ipvs0 on every node; with the kernel's default ARP settings
//! every node then answers ARP for every VIP (docs/ipvs.md). This keeps the node quiet about the VIPs it does not
//! hold (through [`NetOps::set_arp_filter`]), or, when it cannot or must not, says so loudly: a warning naming the
//! interfaces and their settings, a Node Event and `openelb_ipvs_arp_filter`.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use openelb_core::ipvs_arp::{IpvsArp, unheld_ipv4};
use openelb_core::vrrp::Time;
use openelb_net::ops::{Interface, NetOps};

use super::config::IpvsArpFilter;
use super::events::NodeReason;
use super::metrics::SpeakerMetrics;
use super::notices::Notices;

/// How often kube-ipvs0 and the ARP settings are read again (kube-proxy may start, or switch mode, after us).
pub const IPVS_CHECK_PERIOD: Duration = Duration::from_secs(10);

/// What to set by hand instead, in every message that says the node answers for every VIP.
const BY_HAND: &str = "set strictARP: true in kube-proxy's IPVS configuration (or the sysctls \
                       net.ipv4.conf.all.arp_ignore=1 and net.ipv4.conf.all.arp_announce=2)";

/// Where the node stands; the value of `openelb_ipvs_arp_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterState {
    /// No kube-ipvs0, or ARP already strict.
    NotNeeded = 0,
    Filtering = 1,
    /// Every node answers for every VIP, and `--ipvs-arp-filter off` says not to filter.
    Off = 2,
    /// Every node answers for every VIP, and the filter cannot be set up.
    Failing = 3,
}

pub struct IpvsFilter {
    mode: IpvsArpFilter,
    seen: IpvsArp,
    /// What the filter drops now, as last set successfully; `None`: no filter of ours (or unknown after a failure).
    installed: Option<Vec<Ipv4Addr>>,
    state: FilterState,
    last_check: Option<Time>,
    /// The last failure reported, so a retry that fails the same way is counted, not logged again.
    failure: Option<String>,
    metrics: SpeakerMetrics,
}

impl IpvsFilter {
    pub fn new(mode: IpvsArpFilter, metrics: SpeakerMetrics) -> Self {
        metrics.ipvs_arp_filter.set(FilterState::NotNeeded as i64);
        IpvsFilter {
            mode,
            seen: IpvsArp::NoIpvs,
            installed: None,
            state: FilterState::NotNeeded,
            last_check: None,
            failure: None,
            metrics,
        }
    }

    pub fn state(&self) -> FilterState {
        self.state
    }

    pub fn check_due(&self, now: Time) -> bool {
        self.last_check.is_none_or(|t| now >= t.saturating_add(IPVS_CHECK_PERIOD))
    }

    /// Whether the last attempt failed (the maintenance tick retries).
    pub fn failing(&self) -> bool {
        self.state == FilterState::Failing
    }

    /// Reads kube-ipvs0 and the ARP settings of `nics` (the interfaces VIPs are announced on) again, and sets the
    /// filter up or takes it down accordingly.
    pub async fn assess<N: NetOps>(
        &mut self,
        net: &N,
        nics: &[Interface],
        now: Time,
        plan_vips: &[IpAddr],
        held: &[IpAddr],
        notices: &mut Notices,
    ) {
        // A filter left by an earlier process goes whenever this one will not filter: it could drop ARP for a VIP
        // this node takes over.
        let first = self.last_check.replace(now).is_none();
        let seen = match net.ipvs_arp(nics).await {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("cannot tell whether kube-proxy's IPVS mode needs ARP filtering: {e}");
                if self.failure.as_deref() != Some(msg.as_str()) {
                    tracing::warn!("{msg}");
                    self.failure = Some(msg);
                }
                return;
            }
        };
        if seen != self.seen {
            match &seen {
                IpvsArp::Loose(_) => tracing::warn!(
                    situation = %seen.describe(), mode = ?self.mode,
                    "kube-ipvs0 exists (kube-proxy in IPVS mode) and these interfaces answer ARP for addresses on \
                     other interfaces: every node would answer ARP for every VIP"
                ),
                other => tracing::info!(situation = %other.describe(), "kube-proxy IPVS ARP check"),
            }
            self.seen = seen;
        }
        if !self.seen.needs_filter() {
            if first || self.installed.is_some() || self.state == FilterState::Failing {
                self.remove(net).await;
            }
            self.set_state(FilterState::NotNeeded);
            return;
        }
        match self.mode {
            IpvsArpFilter::Off => {
                if first {
                    self.remove(net).await;
                }
                if self.state != FilterState::Off {
                    let msg = format!(
                        "every node answers ARP for every VIP: kube-proxy's IPVS mode binds them to kube-ipvs0 and \
                         {} answer for addresses on other interfaces; the speaker's ARP filter is turned off \
                         (--ipvs-arp-filter off): {BY_HAND}",
                        self.seen.describe()
                    );
                    tracing::warn!("{msg}");
                    notices.node_event(now, NodeReason::IpvsArpUnfiltered, msg);
                }
                self.set_state(FilterState::Off);
            }
            IpvsArpFilter::Auto => self.sync(net, now, plan_vips, held, notices).await,
        }
    }

    /// Brings the filter in line with the VIPs of the plan this node does not hold, when filtering is on and
    /// needed; nothing when it already is.
    pub async fn sync<N: NetOps>(
        &mut self,
        net: &N,
        now: Time,
        plan_vips: &[IpAddr],
        held: &[IpAddr],
        notices: &mut Notices,
    ) {
        if self.mode == IpvsArpFilter::Off || !self.seen.needs_filter() {
            return;
        }
        let want = unheld_ipv4(plan_vips, held);
        if self.installed.as_ref() == Some(&want) {
            return;
        }
        let started = std::time::Instant::now();
        match net.set_arp_filter(&want).await {
            Ok(()) => {
                let took_us = started.elapsed().as_micros() as u64;
                if self.failure.take().is_some() || self.installed.is_none() {
                    tracing::info!(
                        vips = want.len(), took_us, situation = %self.seen.describe(),
                        "ARP filter set up: this node does not answer ARP for VIPs held elsewhere (kube-ipvs0)"
                    );
                } else {
                    tracing::info!(vips = want.len(), took_us, "ARP filter updated");
                }
                self.metrics.ipvs_arp_filtered.set(i64::try_from(want.len()).unwrap_or(i64::MAX));
                self.installed = Some(want);
                self.set_state(FilterState::Filtering);
            }
            Err(e) => {
                self.metrics.ipvs_arp_filter_failures.inc();
                self.installed = None;
                let msg = format!(
                    "every node answers ARP for every VIP: kube-proxy's IPVS mode binds them to kube-ipvs0 and {} \
                     answer for addresses on other interfaces, and the speaker cannot filter ARP ({e}): {BY_HAND}",
                    self.seen.describe()
                );
                if self.failure.as_deref() != Some(msg.as_str()) {
                    tracing::warn!("{msg}");
                    notices.node_event(now, NodeReason::IpvsArpUnfiltered, msg.clone());
                    self.failure = Some(msg);
                }
                self.set_state(FilterState::Failing);
            }
        }
    }

    /// Takes our filter down (graceful exit, or no longer needed).
    pub async fn remove<N: NetOps>(&mut self, net: &N) {
        match net.remove_arp_filter().await {
            Ok(()) => {
                if self.installed.take().is_some() {
                    tracing::info!("ARP filter removed");
                }
                self.metrics.ipvs_arp_filtered.set(0);
            }
            // Only the check for a leftover: a node without nf_tables has none, and nothing to report.
            Err(e) if self.installed.is_none() && self.state != FilterState::Failing => {
                tracing::debug!(error = %e, "no ARP filter left by an earlier speaker removed");
            }
            Err(e) => {
                self.metrics.ipvs_arp_filter_failures.inc();
                tracing::warn!(error = %e, "cannot remove the ARP filter");
            }
        }
    }

    fn set_state(&mut self, state: FilterState) {
        self.state = state;
        self.metrics.ipvs_arp_filter.set(state as i64);
    }
}
