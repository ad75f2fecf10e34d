//! How fast the simulated speakers and network are: the speaker's flags, the segment's delay and loss, and how
//! long Kubernetes takes to notice a lost node.

use std::time::Duration;

use openelb_core::vrrp::agent::AgentConfig;
use openelb_core::vrrp::consts::MAX_ADVERT_INT;
use openelb_core::vrrp::plan::PlanConfig;
use openelb_core::vrrp::state::{
    DEFAULT_ADVERT_INTERVAL_CS, DEFAULT_GARP_COUNT, DEFAULT_GARP_SPACING, DEFAULT_PREEMPT_DELAY,
};

use crate::data_plane::{DataPlaneConfig, fmt_duration, ms_f64};
use crate::report::Settings;

/// An advert interval VRRPv3 cannot carry.
#[derive(Debug, thiserror::Error)]
#[error(
    "--advert-interval {}: must be a multiple of 10ms between 10ms and 40.95s (VRRPv3 counts centiseconds)",
    fmt_duration(*.0)
)]
pub struct AdvertIntervalError(pub Duration);

/// Timing of the simulated speakers and network. Defaults are the speaker's own.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    /// VRRP advertisement interval (a multiple of 10ms, 10ms to 40.95s).
    pub advert_interval: Duration,
    /// How long a returning higher-priority node waits before taking its VIPs back.
    pub preempt_delay: Duration,
    /// Gratuitous ARPs / unsolicited NAs sent on takeover (the first one immediately).
    pub garp_count: u32,
    pub garp_spacing: Duration,
    /// One-way delivery delay on the simulated L2 segment.
    pub delay: Duration,
    /// Probability (0-1) that a message copy is lost on the segment.
    pub loss: f64,
    /// Seed of the loss generator: the same seed gives the same run.
    pub seed: u64,
    /// How long Kubernetes keeps a crashed or stopped node Ready (node-monitor-grace-period).
    pub node_grace: Duration,
    /// How long the run continues after the last event.
    pub settle: Duration,
}

impl Timing {
    /// The data plane's settings; refuses an advert interval VRRPv3 cannot carry.
    pub fn data_plane_config(&self) -> Result<DataPlaneConfig, AdvertIntervalError> {
        let nanos = self.advert_interval.as_nanos();
        let cs = nanos / 10_000_000;
        if !nanos.is_multiple_of(10_000_000) || cs == 0 || cs > u128::from(MAX_ADVERT_INT) {
            return Err(AdvertIntervalError(self.advert_interval));
        }
        let advert_interval = u16::try_from(cs).unwrap_or(DEFAULT_ADVERT_INTERVAL_CS);
        Ok(DataPlaneConfig {
            agent: AgentConfig {
                advert_interval,
                preempt: true,
                preempt_delay: self.preempt_delay,
                garp_count: self.garp_count,
                garp_spacing: self.garp_spacing,
                peer_interval_bounds: None,
                ..AgentConfig::default()
            },
            delay: self.delay,
            loss: self.loss,
            seed: self.seed,
            plan: PlanConfig::default(),
        })
    }

    pub fn settings(&self) -> Settings {
        Settings {
            advert_interval_ms: ms_f64(self.advert_interval),
            preempt_delay_ms: ms_f64(self.preempt_delay),
            garp_count: self.garp_count,
            garp_spacing_ms: ms_f64(self.garp_spacing),
            delay_ms: ms_f64(self.delay),
            loss: self.loss,
            seed: self.seed,
            node_grace_ms: ms_f64(self.node_grace),
            settle_ms: ms_f64(self.settle),
        }
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            advert_interval: Duration::from_millis(u64::from(DEFAULT_ADVERT_INTERVAL_CS) * 10),
            preempt_delay: DEFAULT_PREEMPT_DELAY,
            garp_count: DEFAULT_GARP_COUNT,
            garp_spacing: DEFAULT_GARP_SPACING,
            delay: Duration::from_micros(100),
            loss: 0.0,
            seed: 1,
            node_grace: Duration::from_secs(40),
            settle: Duration::from_secs(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_timing_is_the_speakers_default() {
        assert_eq!(Timing::default().data_plane_config().unwrap().agent, AgentConfig::default());
    }

    #[test]
    fn advert_interval_must_be_whole_centiseconds() {
        let bad = Timing { advert_interval: Duration::from_millis(105), ..Timing::default() };
        let err = bad.data_plane_config().unwrap_err().to_string();
        assert!(err.contains("--advert-interval") && err.contains("multiple of 10ms"), "{err}");
        let zero = Timing { advert_interval: Duration::ZERO, ..Timing::default() };
        assert!(zero.data_plane_config().is_err());
    }
}
