//! Real-time scheduling for the VRRP thread (keepalived's `vrrp_rt_priority`): a master whose adverts wait
//! behind busy processes for about two intervals loses its VIPs to a backup, which at 10-20 ms intervals is a
//! few milliseconds of CPU contention or CFS throttling. SCHED_RR runs the thread ahead of every normal task; it
//! cannot starve the machine because the loop sleeps between adverts, and the kernel caps real-time tasks
//! (`kernel.sched_rt_runtime_us`, 95 % of each second by default). Threads the VRRP thread starts (tokio's
//! blocking pool) go back to normal scheduling (`SCHED_RESET_ON_FORK`).

use std::io;

/// The real-time priority the VRRP thread asks for by default (1-99; keepalived's examples use low values too).
pub const DEFAULT_RT_PRIORITY: u8 = 10;

/// `SCHED_RESET_ON_FORK` (linux/sched.h; not in the libc crate): children start with normal scheduling.
const SCHED_RESET_ON_FORK: libc::c_int = 0x4000_0000;

#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    #[error("real-time priority {0}: must be 1-99")]
    Priority(u8),
    #[error(
        "SCHED_RR priority {priority} refused: {source} (needs CAP_SYS_NICE or RLIMIT_RTPRIO >= {priority}, and a \
         cgroup allowed real-time time)"
    )]
    Refused { priority: u8, source: io::Error },
}

/// Puts the calling thread under SCHED_RR at `priority`. On error nothing changed: the thread keeps its normal
/// scheduling.
pub fn raise_current_thread(priority: u8) -> Result<(), RealtimeError> {
    if !(1..=99).contains(&priority) {
        return Err(RealtimeError::Priority(priority));
    }
    let param = libc::sched_param { sched_priority: libc::c_int::from(priority) };
    // SAFETY: `param` is a valid sched_param for the duration of the call; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_RR | SCHED_RESET_ON_FORK, &param) };
    if rc == 0 { Ok(()) } else { Err(RealtimeError::Refused { priority, source: io::Error::last_os_error() }) }
}

/// The calling thread's scheduling policy (without the reset-on-fork flag).
pub fn current_policy() -> libc::c_int {
    // SAFETY: no pointer arguments; pid 0 is the calling thread.
    unsafe { libc::sched_getscheduler(0) & !SCHED_RESET_ON_FORK }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_priorities_are_refused_without_a_system_call() {
        assert!(matches!(raise_current_thread(0), Err(RealtimeError::Priority(0))));
        assert!(matches!(raise_current_thread(100), Err(RealtimeError::Priority(100))));
    }

    #[test]
    fn a_granted_priority_is_the_thread_policy_and_a_thread_it_starts_is_normal() {
        let outcome = std::thread::spawn(|| {
            let raised = raise_current_thread(DEFAULT_RT_PRIORITY);
            let child = std::thread::spawn(current_policy).join().ok();
            (raised.is_ok(), current_policy(), child)
        })
        .join()
        .ok();
        let Some((raised, policy, child)) = outcome else { panic!("test thread panicked") };
        if raised {
            assert_eq!(policy, libc::SCHED_RR);
            assert_eq!(child, Some(libc::SCHED_OTHER), "reset on fork");
        } else {
            // Not permitted here (no CAP_SYS_NICE): the fallback leaves the thread as it was.
            assert_eq!(policy, libc::SCHED_OTHER);
        }
    }
}
