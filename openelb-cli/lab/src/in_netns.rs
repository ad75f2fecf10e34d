//! Running code of this process inside a network namespace: a thread enters it with setns(2) (only that thread
//! moves; threads it creates afterwards inherit it) and runs a tokio runtime there, so every socket the code
//! opens belongs to the namespace. No re-exec needed.

use std::os::fd::AsRawFd;
use std::thread::JoinHandle;

/// Moves the calling thread into namespace `ns`.
pub fn enter(ns: &str) -> Result<(), String> {
    let path = format!("/var/run/netns/{ns}");
    let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    // SAFETY: a valid namespace fd; setns only changes this thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Runs blocking `f` on a new thread inside `ns` and returns its result; a panic inside is re-raised here.
pub fn call_in<T, F>(ns: &str, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let ns = ns.to_string();
    let thread = std::thread::spawn(move || {
        if let Err(e) = enter(&ns) {
            panic!("{e}");
        }
        f()
    });
    match thread.join() {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// Runs `f` on a new thread inside `ns`, on a current-thread tokio runtime; panics (on that thread, surfacing
/// at `join`) if the namespace cannot be entered.
pub fn spawn_in<T, F, Fut>(ns: &str, f: F) -> JoinHandle<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    let ns = ns.to_string();
    std::thread::spawn(move || {
        if let Err(e) = enter(&ns) {
            panic!("{e}");
        }
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(f()),
            Err(e) => panic!("tokio runtime in {ns}: {e}"),
        }
    })
}

/// [`spawn_in`] and wait for the result; a panic inside is re-raised here.
pub fn run_in<T, F, Fut>(ns: &str, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    match spawn_in(ns, f).join() {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}
