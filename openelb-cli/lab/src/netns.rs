//! Running programs inside network namespaces through iproute2, and ending only the processes we started.
//!
//! Everything goes through `ip netns exec` rather than `setns(2)` from this process: iproute2 execs the target
//! in place (no extra fork), so a spawned `Child`'s PID is the program's own PID, and no thread of ours ever
//! changes namespace by accident.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Every namespace the lab creates starts with this, so `lab down` and the tests can tell ours from others.
pub const PREFIX: &str = "oelb-";

fn describe(program: &str, args: &[&str]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

fn checked(program: &str, args: &[&str], out: Output) -> Result<String> {
    if !out.status.success() {
        bail!("`{}` failed ({}): {}", describe(program, args), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `program args` on the host and returns stdout; a non-zero exit is an error carrying stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{}`", describe(program, args)))?;
    checked(program, args, out)
}

/// `ip ARGS`.
pub fn ip(args: &[&str]) -> Result<String> {
    run("ip", args)
}

/// `ip -n NS ARGS` (iproute2 commands only, no exec).
pub fn ip_in(ns: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    run("ip", &full)
}

fn exec_args<'a>(ns: &'a str, argv: &[&'a str]) -> Vec<&'a str> {
    let mut full = vec!["netns", "exec", ns];
    full.extend_from_slice(argv);
    full
}

/// Runs `argv` inside `ns` and returns stdout; a non-zero exit is an error.
pub fn exec(ns: &str, argv: &[&str]) -> Result<String> {
    run("ip", &exec_args(ns, argv))
}

/// Runs `argv` with only the network namespace of `ns` and returns stdout; a non-zero exit is an error.
/// `ip netns exec` also gives the program a mount namespace with `/sys` remounted, which hides the cgroup
/// mounts a kubelet needs and keeps containerd's mounts from the host's view (and from its cleanup).
pub fn enter(ns: &str, argv: &[&str]) -> Result<String> {
    let net = format!("--net=/run/netns/{ns}");
    let mut args = vec![net.as_str(), "--"];
    args.extend_from_slice(argv);
    run("nsenter", &args)
}

/// Runs `argv` inside `ns` and returns its whole output whatever the exit status (ping, curl report failure
/// through it and the caller decides).
pub fn exec_output(ns: &str, argv: &[&str]) -> Result<Output> {
    let args = exec_args(ns, argv);
    Command::new("ip")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{}`", describe("ip", &args)))
}

/// Starts `argv` inside `ns` in the background. The returned child's PID is the program's own.
pub fn spawn(ns: &str, argv: &[&str], stdout: Stdio, stderr: Stdio) -> Result<Child> {
    let args = exec_args(ns, argv);
    Command::new("ip")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("cannot start `{}`", describe("ip", &args)))
}

/// Opens `path` for a child's output (appending, so restarts keep the earlier log).
pub fn log_file(path: &Path) -> Result<Stdio> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("{}: cannot open log file", path.display()))?;
    Ok(Stdio::from(f))
}

pub fn add(name: &str) -> Result<()> {
    if !name.starts_with(PREFIX) {
        bail!("{name:?}: lab namespaces must start with {PREFIX:?}");
    }
    ip(&["netns", "add", name]).map(drop)
}

/// Names of all network namespaces (`ip netns list` prints `name (id: N)`).
pub fn list() -> Result<Vec<String>> {
    let out = ip(&["netns", "list"])?;
    Ok(out.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect())
}

/// PIDs of the processes living in `ns`; empty when the namespace is gone.
pub fn pids(ns: &str) -> Vec<u32> {
    ip(&["netns", "pids", ns])
        .map(|out| out.split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    Term,
    Kill,
    Stop,
    Int,
    Hup,
}

impl Sig {
    fn raw(self) -> libc::c_int {
        match self {
            Sig::Term => libc::SIGTERM,
            Sig::Kill => libc::SIGKILL,
            Sig::Stop => libc::SIGSTOP,
            Sig::Int => libc::SIGINT,
            Sig::Hup => libc::SIGHUP,
        }
    }
}

/// Sends `sig` to one process we started. Returns false when it no longer exists.
pub fn signal(pid: u32, sig: Sig) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    if pid <= 0 {
        // 0 and negative values address process groups; never do that.
        return false;
    }
    // SAFETY: kill(2) has no memory-safety preconditions; pid is a single positive process id.
    unsafe { libc::kill(pid, sig.raw()) == 0 }
}

/// Waits for `child` to exit, killing it after `grace`; reaps it either way.
pub fn stop_child(child: &mut Child, sig: Sig, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    signal(child.id(), sig);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Kills every process inside `ns` (all of them are ours: the namespace is), then deletes it. Errors are
/// collected rather than stopping half-way, so one stuck namespace does not leave the others behind.
pub fn destroy(ns: &str) -> Result<()> {
    if !ns.starts_with(PREFIX) {
        bail!("{ns:?}: refusing to delete a namespace without the {PREFIX:?} prefix");
    }
    for pid in pids(ns) {
        signal(pid, Sig::Kill);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while !pids(ns).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    match ip(&["netns", "del", ns]) {
        Ok(_) => Ok(()),
        Err(_) if !list()?.iter().any(|n| n == ns) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// Why the lab cannot run here, or `None` when it can: root, iproute2 with working namespaces, and `tools`
/// on the PATH.
pub fn unavailable(tools: &[&str]) -> Option<String> {
    if !is_root() {
        return Some("not running as root (network namespaces need CAP_SYS_ADMIN)".into());
    }
    // Unique per call: tests of one process check their prerequisites in parallel.
    static PROBES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = format!("{PREFIX}probe{}x{n}", std::process::id());
    if let Err(e) = ip(&["netns", "add", &probe]) {
        return Some(format!("`ip netns add` does not work here: {e:#}"));
    }
    let _ = ip(&["netns", "del", &probe]);
    for tool in tools {
        if which(tool).is_none() {
            return Some(format!("`{tool}` is not installed (scripts/test.sh installs it)"));
        }
    }
    None
}

/// A namespace this process created; dropping it kills what runs inside and deletes it (with its veths).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `name` (which must carry [`PREFIX`]) with its loopback up.
    pub fn create(name: &str) -> Result<Netns> {
        add(name)?;
        let ns = Netns { name: name.to_string() };
        ip_in(name, &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Leaves the namespace in place: someone else removes it (`lab down`).
    pub fn release(mut self) {
        self.name.clear();
    }

    /// Deletes it now, reporting what went wrong (dropping it does the same, with a warning).
    pub fn destroy(mut self) -> Result<()> {
        let name = std::mem::take(&mut self.name);
        destroy(&name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.name.is_empty()
            && let Err(e) = destroy(&self.name)
        {
            eprintln!("warning: {e:#}");
        }
    }
}

/// Full path of `tool` on the PATH, also looking in the sbin directories a non-login root shell may lack.
pub fn which(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].into_iter().map(std::path::PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}
