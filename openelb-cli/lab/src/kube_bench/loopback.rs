//! A kube-apiserver on loopback whose Services are single-stack IPv6 (so thousands of them get documentation
//! addresses), and an openelb-controller against it; both stopped on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::verified::parse_response;
use crate::netns::{self, Sig};

/// Ports of the loopback apiserver (clear of the test suite's 16443/23790/23800).
const PORTS: (&str, &str, &str) = ("17443", "25790", "25800");
/// Where the loopback controller serves /metrics and /readyz.
const METRICS: &str = "127.0.0.1:18080";

pub struct LoopbackApi {
    dir: PathBuf,
    script: PathBuf,
}

impl LoopbackApi {
    /// Starts etcd and the apiserver with fresh data in a directory of their own.
    pub fn start(script: &Path, tag: &str) -> Result<LoopbackApi> {
        let dir = std::env::temp_dir().join(format!("openelb-kube-bench-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        let api = LoopbackApi { dir, script: script.to_path_buf() };
        api.kapi("start")?;
        Ok(api)
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("KAPI_DIR".into(), self.dir.display().to_string()),
            ("KAPI_PORT".into(), PORTS.0.into()),
            ("KAPI_ETCD_CLIENT_PORT".into(), PORTS.1.into()),
            ("KAPI_ETCD_PEER_PORT".into(), PORTS.2.into()),
            ("KAPI_SERVICE_CIDR".into(), "2001:db8:ffff::/108".into()),
            // Every LoadBalancer Service takes a NodePort: the default range holds 2768.
            ("KAPI_NODE_PORT_RANGE".into(), "20000-32767".into()),
        ]
    }

    fn kapi(&self, verb: &str) -> Result<()> {
        let out = Command::new("bash").arg(&self.script).arg(verb).envs(self.env()).output()?;
        if !out.status.success() {
            bail!("scripts/kapi.sh {verb}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for LoopbackApi {
    fn drop(&mut self) {
        if let Err(e) = self.kapi("stop") {
            eprintln!("warning: {e:#}");
        }
        crate::topology::keep_logs(&[self.dir.as_path()], "");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// openelb-controller against a [`LoopbackApi`]; SIGTERM on [`Controller::stop`] and on drop.
pub struct Controller {
    exe: PathBuf,
    kubeconfig: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Controller {
    pub fn new(exe: &Path, api: &LoopbackApi) -> Controller {
        Controller {
            exe: exe.to_path_buf(),
            kubeconfig: api.kubeconfig(),
            log: api.dir().join("controller.log"),
            child: None,
        }
    }

    pub fn start(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("the controller is already running");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("{}: cannot open", self.log.display()))?;
        let child = Command::new(&self.exe)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--metrics-addr", METRICS, "--no-webhook", "--lease-namespace", "kube-system"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.exe.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGTERM, as a rolling update would: the controller finishes and releases its Lease.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            netns::stop_child(&mut c, Sig::Term, Duration::from_secs(10));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn ready(&self) -> bool {
        http_get("/readyz").is_some()
    }

    pub fn metrics(&self) -> Option<String> {
        http_get("/metrics")
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The body of a 200 answer from the controller's metrics address; `None` for anything else. A plain
/// HTTP/1.0 exchange rather than curl: it is polled every few milliseconds.
fn http_get(path: &str) -> Option<String> {
    let addr = METRICS.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {METRICS}\r\n\r\n").as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let (code, body) = parse_response(&raw)?;
    (code == 200).then(|| String::from_utf8_lossy(body).into_owned())
}
