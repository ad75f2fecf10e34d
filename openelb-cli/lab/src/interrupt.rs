//! Ctrl-C during `lab demo` or `lab bench`: the labs this process built are removed through their state files
//! before it exits, so an interrupted run leaves nothing behind.

use std::sync::Mutex;

use crate::topology::{self, STATE_ROOT};

/// Labs of this process that a Ctrl-C must remove.
static ACTIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// On Ctrl-C, removes this process's labs through their state files and exits 130, so an interrupted demo
/// or bench leaves nothing behind.
pub fn install_ctrl_c() {
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        if rt.block_on(tokio::signal::ctrl_c()).is_err() {
            return;
        }
        eprintln!("\ninterrupted: removing the lab");
        let ids = ACTIVE.lock().map(|a| a.clone()).unwrap_or_default();
        for id in ids {
            if let Err(e) = topology::down(std::path::Path::new(STATE_ROOT), &id) {
                eprintln!("warning: {e:#}");
            }
        }
        std::process::exit(130);
    });
}

/// Registers a lab for Ctrl-C cleanup while it exists ([`crate::Lab::build`] and [`crate::Lab::teardown`] call
/// it).
pub fn track(id: &str, active: bool) {
    if let Ok(mut a) = ACTIVE.lock() {
        a.retain(|x| x != id);
        if active {
            a.push(id.to_string());
        }
    }
}
