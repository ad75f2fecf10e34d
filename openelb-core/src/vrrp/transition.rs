//! Why an instance changed state: one variant per transition of the state machine, so tests and callers match on
//! the cause instead of comparing sentences, and logs and the simulator print the sentence.

use std::fmt;

/// The cause of an [`Action::StateChanged`](super::state::Action::StateChanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TransitionReason {
    /// Initialize → Backup on the RFC Startup event.
    Startup,
    /// Initialize → Master holding the VIPs of a replaced group (docs/election.md#new-vips-and-re-grouping).
    StartupHoldingReplaced,
    /// Initialize → Master of VIPs nobody holds yet, as their first preference.
    StartupUnclaimed,
    /// → Initialize on the RFC Shutdown event (a Master sends priority 0).
    Shutdown,
    /// → Initialize without a release: another instance of this node keeps the VIPs.
    Retired,
    InterfaceDown,
    InterfaceUp,
    /// Backup → Master: the master sent priority 0 and Skew_Time passed.
    MasterReleased,
    /// Backup → Master: Master_Down_Interval passed without an advert.
    MasterDown,
    /// Backup → Master: the preempt delay against a lower-priority master passed.
    PreemptDelayElapsed,
    /// Backup → Master at once: the preempt delay against a lower-priority master had already passed.
    PreemptingLowerPriority,
    /// Master → Backup.
    HigherPriorityMaster,
}

impl TransitionReason {
    pub const ALL: [TransitionReason; 12] = [
        TransitionReason::Startup,
        TransitionReason::StartupHoldingReplaced,
        TransitionReason::StartupUnclaimed,
        TransitionReason::Shutdown,
        TransitionReason::Retired,
        TransitionReason::InterfaceDown,
        TransitionReason::InterfaceUp,
        TransitionReason::MasterReleased,
        TransitionReason::MasterDown,
        TransitionReason::PreemptDelayElapsed,
        TransitionReason::PreemptingLowerPriority,
        TransitionReason::HigherPriorityMaster,
    ];

    /// The sentence logs and the simulator show.
    pub fn as_str(self) -> &'static str {
        match self {
            TransitionReason::Startup => "startup",
            TransitionReason::StartupHoldingReplaced => "startup holding the VIPs of a replaced group",
            TransitionReason::StartupUnclaimed => "startup as first preference of VIPs new to the plan",
            TransitionReason::Shutdown => "shutdown",
            TransitionReason::Retired => "retired: another instance of this node keeps the VIPs",
            TransitionReason::InterfaceDown => "interface down",
            TransitionReason::InterfaceUp => "interface up",
            TransitionReason::MasterReleased => "master released (priority 0), skew time elapsed",
            TransitionReason::MasterDown => "master down interval elapsed without an advert",
            TransitionReason::PreemptDelayElapsed => "preempt delay elapsed: higher priority than the master",
            TransitionReason::PreemptingLowerPriority => "preempting a lower-priority master",
            TransitionReason::HigherPriorityMaster => "advert from a higher-priority master",
        }
    }
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
