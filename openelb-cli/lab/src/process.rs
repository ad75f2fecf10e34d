//! A process we started, known by its PID: the lab's speakers, Pods and helpers, and the tests' daemons.
//! Dropping it kills it (and the extra PIDs its pid files name, e.g. keepalived's VRRP child) and reaps it, so
//! a failing test leaves nothing running.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use anyhow::Result;

use crate::eventually::eventually;
use crate::netns::{self, Sig};

#[derive(Debug)]
pub struct Process {
    /// What the process is to its owner: a node name, `keepalived`, `tcpdump`.
    pub name: String,
    child: Child,
    log: Option<PathBuf>,
    /// Files in which the process writes the PIDs of children it forks (they are killed with it).
    pidfiles: Vec<PathBuf>,
}

impl Process {
    /// Starts `argv` inside namespace `ns`, stdout and stderr appended to `log`.
    pub fn spawn_in(name: &str, ns: &str, argv: &[&str], log: &Path) -> Result<Process> {
        let child = netns::spawn(ns, argv, netns::log_file(log)?, netns::log_file(log)?)?;
        Ok(Process::adopt(name, child, Some(log.to_path_buf())))
    }

    /// Takes over a child spawned by the caller (e.g. with a piped stdout).
    pub fn adopt(name: &str, child: Child, log: Option<PathBuf>) -> Process {
        Process { name: name.to_string(), child, log, pidfiles: Vec::new() }
    }

    /// Also kill the PIDs written into `pidfiles` when this process is ended.
    pub fn with_pidfiles(mut self, pidfiles: Vec<PathBuf>) -> Process {
        self.pidfiles = pidfiles;
        self
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every PID of the process tree: ours, its direct children, and those its pid files name.
    pub fn pids(&self) -> Vec<u32> {
        let main = self.child.id();
        let mut out = vec![main];
        let children = fs::read_to_string(format!("/proc/{main}/task/{main}/children")).unwrap_or_default();
        out.extend(children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        out.extend(self.pidfile_pids());
        out.sort_unstable();
        out.dedup();
        out
    }

    fn pidfile_pids(&self) -> Vec<u32> {
        self.pidfiles.iter().filter_map(|f| fs::read_to_string(f).ok()?.trim().parse::<u32>().ok()).collect()
    }

    /// How many sockets the process has open (0 once it is gone).
    pub fn socket_count(&self) -> usize {
        let Ok(dir) = fs::read_dir(format!("/proc/{}/fd", self.child.id())) else { return 0 };
        dir.flatten()
            .filter(|e| fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:")))
            .count()
    }

    /// The log file's text so far (empty without a log).
    pub fn log_text(&self) -> String {
        self.log.as_deref().and_then(|l| fs::read_to_string(l).ok()).unwrap_or_default()
    }

    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// Whether it is still running (not exited, not reaped).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `sig` to the process we started; false when it no longer exists.
    pub fn signal(&self, sig: Sig) -> bool {
        netns::signal(self.child.id(), sig)
    }

    /// Waits up to `timeout` for it to exit; its exit code (-1 for a signal) if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = &mut self.child;
        eventually(timeout, Duration::from_millis(20), || match child.try_wait() {
            Ok(Some(status)) => Some(status.code().unwrap_or(-1)),
            Ok(None) => None,
            Err(_) => Some(-1),
        })
        .ok()
    }

    /// Sends `sig` and waits `grace` for an exit, then kills it; reaps it either way.
    pub fn stop(&mut self, sig: Sig, grace: Duration) {
        netns::stop_child(&mut self.child, sig, grace);
    }

    /// A crash: every process of the tree frozen first so none can send a last word, then all killed.
    pub fn crash(&mut self) {
        let pids = self.pids();
        for &p in &pids {
            netns::signal(p, Sig::Stop);
        }
        for &p in &pids {
            netns::signal(p, Sig::Kill);
        }
        let _ = self.child.wait();
    }

    /// Takes the child's piped stdout, if it was spawned with one.
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// Keeps running after this value is gone (`lab up` hands its processes over to `lab down`).
    pub fn release(self) {
        std::mem::forget(self);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        for pid in self.pidfile_pids() {
            netns::signal(pid, Sig::Kill);
        }
        if self.is_running() {
            self.crash();
        }
    }
}
