//! `simulate`'s timing flags, turned into the simulator's [`Timing`].

use std::time::Duration;

use openelb_core::vrrp::state::DEFAULT_GARP_COUNT;
use openelb_k8s::duration::parse_duration;
use openelb_sim::Timing;

/// Timing of the simulated speakers and network. Defaults are the speaker's own.
#[derive(clap::Args, Clone, Debug)]
pub struct SimFlags {
    /// VRRP advertisement interval (a multiple of 10ms, 10ms to 40.95s).
    #[arg(long, value_parser = parse_duration, default_value = "100ms", value_name = "DURATION")]
    pub advert_interval: Duration,
    /// How long a returning higher-priority node waits before taking its VIPs back.
    #[arg(long, value_parser = parse_duration, default_value = "3s", value_name = "DURATION")]
    pub preempt_delay: Duration,
    /// Gratuitous ARPs / unsolicited NAs sent on takeover (the first one immediately).
    #[arg(long, default_value_t = DEFAULT_GARP_COUNT, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub garp_count: u32,
    #[arg(long, value_parser = parse_duration, default_value = "50ms", value_name = "DURATION")]
    pub garp_spacing: Duration,
    /// One-way delivery delay on the simulated L2 segment.
    #[arg(long, value_parser = parse_duration, default_value = "0.1ms", value_name = "DURATION")]
    pub delay: Duration,
    /// Probability (0-1) that a message copy is lost on the segment.
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Seed of the loss generator: the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How long Kubernetes keeps a crashed or stopped node Ready (node-monitor-grace-period).
    #[arg(long, value_parser = parse_duration, default_value = "40s", value_name = "DURATION")]
    pub node_grace: Duration,
    /// How long the run continues after the last event.
    #[arg(long, value_parser = parse_duration, default_value = "5s", value_name = "DURATION")]
    pub settle: Duration,
}

impl From<&SimFlags> for Timing {
    fn from(f: &SimFlags) -> Self {
        Timing {
            advert_interval: f.advert_interval,
            preempt_delay: f.preempt_delay,
            garp_count: f.garp_count,
            garp_spacing: f.garp_spacing,
            delay: f.delay,
            loss: f.loss,
            seed: f.seed,
            node_grace: f.node_grace,
            settle: f.settle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        flags: SimFlags,
    }

    #[test]
    fn flag_defaults_are_the_simulators_defaults() {
        let parsed = Wrap::parse_from(["x"]).flags;
        assert_eq!(Timing::from(&parsed), Timing::default());
    }
}
