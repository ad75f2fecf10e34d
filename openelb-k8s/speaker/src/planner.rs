//! Planning off the VRRP loop. A plan of 20k VIPs takes hundreds of milliseconds, longer than the ~306 ms after
//! which backups declare a silent master dead, so it runs on tokio's blocking pool while the loop goes on
//! sending adverts and answering timers; the finished [`Desired`] comes back to the loop, which applies it.
//!
//! - **One plan at a time.** Changes that arrive while a plan runs only mark the inputs dirty; when it
//!   finishes, the next plan starts from the latest inputs and the plan just applied (so `previous` is always
//!   the plan that runs). Bursts of changes therefore cost at most two plans.
//! - **A failed plan changes nothing.** A panic in planning (a bug: planning itself never fails) is logged and
//!   counted, the running plan stays, and the next change plans again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openelb_core::model::Cluster;
use openelb_core::vrrp::plan::{ForeignVrid, Plan, PlanContext};
use openelb_k8s::vrrp::Published;
use tokio::task::{JoinError, JoinHandle};

use super::config::SpeakerConfig;
use super::desired::{Desired, desired_in};

/// The function that plans: [`desired_in`], or a stand-in in tests of the loop's resilience.
pub type PlanFn = fn(&Cluster, &SpeakerConfig, &PlanContext<'_>) -> Desired;

/// Everything one plan reads, owned so that it can move to the blocking pool.
#[derive(Debug, Clone)]
pub struct PlanJob {
    pub cluster: Arc<Cluster>,
    pub config: Arc<SpeakerConfig>,
    pub previous: Option<Arc<Plan>>,
    /// The controller's published state: its assignment is followed.
    pub published: Option<Arc<Published>>,
    pub avoid: Vec<ForeignVrid>,
}

impl PlanJob {
    fn run(&self, plan: PlanFn) -> Desired {
        let context = PlanContext {
            previous: self.previous.as_deref(),
            avoid: &self.avoid,
            published: self.published.as_deref().map(|p| &p.assignment),
        };
        plan(&self.cluster, &self.config, &context)
    }
}

/// A plan that did not come back.
#[derive(Debug, thiserror::Error)]
#[error("planning {what}; the running plan stays and the next change plans again")]
pub struct PlanFailed {
    what: String,
}

impl PlanFailed {
    fn from_join(e: JoinError) -> Self {
        let what = if e.is_panic() {
            let payload = e.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-text payload".to_string());
            format!("panicked: {message}")
        } else {
            "was cancelled".to_string()
        };
        PlanFailed { what }
    }
}

/// The loop's handle on planning: at most one plan running, and whether the inputs changed since it started.
pub struct Planner {
    plan: PlanFn,
    running: Option<(JoinHandle<Desired>, Instant)>,
    dirty: bool,
}

impl Default for Planner {
    fn default() -> Self {
        Planner::new(desired_in)
    }
}

impl Planner {
    pub fn new(plan: PlanFn) -> Self {
        Planner { plan, running: None, dirty: false }
    }

    /// The inputs changed: plan again as soon as no plan runs.
    pub fn request(&mut self) {
        self.dirty = true;
    }

    /// Whether a plan should start now.
    pub fn should_start(&self) -> bool {
        self.dirty && self.running.is_none()
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Starts planning `job` on the blocking pool.
    pub fn start(&mut self, job: PlanJob) {
        self.dirty = false;
        let plan = self.plan;
        self.running = Some((tokio::task::spawn_blocking(move || job.run(plan)), Instant::now()));
    }

    /// Waits for the running plan with how long it took; never completes while none runs (for `select!`).
    pub async fn finished(&mut self) -> (Result<Desired, PlanFailed>, Duration) {
        let Some((handle, started)) = self.running.as_mut() else { return std::future::pending().await };
        let result = handle.await.map_err(PlanFailed::from_join);
        let took = started.elapsed();
        self.running = None;
        (result, took)
    }
}

impl Drop for Planner {
    fn drop(&mut self) {
        // A plan still running when the speaker stops is of no use to anyone.
        if let Some((handle, _)) = &self.running {
            handle.abort();
        }
    }
}
