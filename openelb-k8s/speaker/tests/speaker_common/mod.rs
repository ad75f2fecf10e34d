//! A network-namespace lab for the `openelb-speaker` binary: a switch namespace with a bridge, node
//! namespaces with `eth0` on it, and a client. Only 192.0.2.0/24. Everything (speaker and helper processes,
//! by PID; namespaces, which takes their veths along) is removed when the [`Lab`] is dropped, also when a test
//! fails. Tests call [`Lab::new`] first and return early (passing, with a message) when it yields `None`.
#![allow(dead_code)] // each test file uses a different part

use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use openelb_core::election;
use openelb_k8s::manifest::Manifests;
use openelb_speaker::{SpeakerConfig, desired};

pub const VIP: &str = "192.0.2.91";
pub const CLIENT_IP: &str = "192.0.2.100";

pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {cmd}")]).output().is_ok_and(|o| o.status.success())
}

pub fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd).args(args).output().map_err(|e| format!("{cmd} {args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn ip(args: &[&str]) -> Result<String, String> {
    run("ip", args)
}

pub fn in_ns(ns: &str, cmd: &[&str]) -> Result<String, String> {
    let mut args = vec!["netns", "exec", ns];
    args.extend_from_slice(cmd);
    ip(&args)
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status();
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub ns: String,
    pub ip: String,
    pub mac: String,
}

/// A process we started (by PID): killed and reaped on drop.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
    /// Extra PIDs to kill on drop (keepalived's VRRP child), read from pid files.
    pub pidfiles: Vec<PathBuf>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `timeout` for the process to exit; its exit code if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn kill_all(&mut self) {
        for f in &self.pidfiles {
            if let Ok(pid) = fs::read_to_string(f).unwrap_or_default().trim().parse::<u32>() {
                signal(pid, "KILL");
            }
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.child.id(), "KILL");
            let _ = self.child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_all();
    }
}

pub struct Lab {
    pub base: String,
    pub sw: String,
    pub client: String,
    pub nodes: Vec<Node>,
    pub dir: tempfile::TempDir,
    pub procs: BTreeMap<String, Proc>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Processes first: they run inside the namespaces.
        self.procs.clear();
        for n in &self.nodes {
            let _ = ip(&["netns", "del", &n.ns]);
        }
        let _ = ip(&["netns", "del", &self.client]);
        let _ = ip(&["netns", "del", &self.sw]);
    }
}

impl Lab {
    /// Nodes `node-a`.. with InternalIPs 192.0.2.3.. and the client at .100; `None` when we cannot run here.
    pub fn new(tag: &str, nodes: usize) -> Option<Lab> {
        if !is_root() {
            eprintln!("SKIP: speaker lab tests need root");
            return None;
        }
        let base = format!("oelb-{}-{tag}", std::process::id());
        let sw = format!("{base}-sw");
        if let Err(e) = ip(&["netns", "add", &sw]) {
            eprintln!("SKIP: cannot create network namespaces: {e}");
            return None;
        }
        let mut lab = Lab {
            client: format!("{base}-cl"),
            nodes: (0..nodes)
                .map(|i| Node {
                    name: format!("node-{}", (b'a' + i as u8) as char),
                    ns: format!("{base}-n{i}"),
                    ip: format!("192.0.2.{}", 3 + i),
                    mac: format!("02:42:c0:00:02:{:02x}", 3 + i),
                })
                .collect(),
            base,
            sw,
            dir: tempfile::tempdir().expect("tempdir"),
            procs: BTreeMap::new(),
        };
        if let Err(e) = lab.build() {
            panic!("building the lab failed: {e}");
        }
        lab.write_manifests(&lab.nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>());
        Some(lab)
    }

    fn build(&mut self) -> Result<(), String> {
        ip(&["-n", &self.sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &self.sw, "link", "set", "br0", "up"])?;
        let mut hosts: Vec<(String, String, String)> =
            self.nodes.iter().map(|n| (n.ns.clone(), n.ip.clone(), n.mac.clone())).collect();
        hosts.push((self.client.clone(), CLIENT_IP.into(), "02:42:c0:00:02:64".into()));
        for (i, (ns, addr, mac)) in hosts.iter().enumerate() {
            ip(&["netns", "add", ns])?;
            let peer = format!("p{i}");
            ip(&["-n", &self.sw, "link", "add", &peer, "type", "veth", "peer", "name", "eth0", "netns", ns])?;
            ip(&["-n", ns, "link", "set", "eth0", "address", mac])?;
            ip(&["-n", &self.sw, "link", "set", &peer, "master", "br0", "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    pub fn manifests(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }

    /// The Eip (vip, eth0, .91-.95), one opted-in Service (Cluster policy) and a Ready Node per name given
    /// (names not in the lab are skipped).
    pub fn write_manifests(&self, nodes: &[String]) {
        let dir = self.manifests();
        fs::create_dir_all(&dir).unwrap();
        let mut y = String::from(
            "apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata:\n  name: vip-eip\nspec:\n  \
             address: 192.0.2.91-192.0.2.95\n  protocol: vip\n  interface: eth0\n---\n\
             apiVersion: v1\nkind: Service\nmetadata:\n  name: vip-svc\n  namespace: default\n  annotations:\n    \
             lb.kubesphere.io/v1alpha1: openelb\n    protocol.openelb.kubesphere.io/v1alpha1: vip\nspec:\n  \
             type: LoadBalancer\n  selector:\n    app: web\n  ports:\n    - port: 80\n      targetPort: 8080\n  \
             externalTrafficPolicy: Cluster\n",
        );
        for n in self.nodes.iter().filter(|n| nodes.contains(&n.name)) {
            y.push_str(&format!(
                "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {}\nstatus:\n  addresses:\n    - type: InternalIP\n      \
                 address: {}\n  conditions:\n    - type: Ready\n      status: \"True\"\n",
                n.name, n.ip
            ));
        }
        fs::write(dir.join("cluster.yaml"), y).unwrap();
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).unwrap_or_else(|| panic!("no node {name}"))
    }

    /// The nodes in the VIP's rendezvous preference order (what the speakers must agree on).
    pub fn preference(&self, names: &[String]) -> Vec<String> {
        let vip: IpAddr = VIP.parse().unwrap();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        election::rank(&vip, &refs).into_iter().map(str::to_string).collect()
    }

    /// The VRRP group of the VIP as every speaker plans it: (VRID, priorities in preference order).
    pub fn group(&self) -> (u8, Vec<(String, u8)>) {
        let cluster = Manifests::load_paths(&[self.manifests()]).unwrap().to_cluster().unwrap();
        let d = desired(&cluster, &SpeakerConfig::new("any"), None);
        let vip: IpAddr = VIP.parse().unwrap();
        let g = d.plan.group_of(&vip).expect("the VIP is planned");
        (g.vrid, g.priorities.clone())
    }

    /// Starts `openelb-speaker` on `node` (100 ms adverts) with extra flags; replaces a previous record.
    pub fn start_speaker(&mut self, node: &str, extra: &[&str]) {
        let bin = env!("CARGO_BIN_EXE_openelb-speaker");
        let n = self.node(node).clone();
        let manifests = self.manifests();
        let mut args: Vec<&str> = vec![
            "netns",
            "exec",
            &n.ns,
            bin,
            "--node-name",
            &n.name,
            "--manifests",
            manifests.to_str().unwrap(),
            "--advert-interval",
            "100ms",
        ];
        args.extend_from_slice(extra);
        self.spawn(node, "speaker", &args, Vec::new());
    }

    /// Spawns `ip ARGS` (which execs the command in a namespace, keeping the PID), logging to a file.
    pub fn spawn(&mut self, key: &str, what: &str, args: &[&str], pidfiles: Vec<PathBuf>) {
        let n = self.procs.len();
        let log = self.dir.path().join(format!("{what}-{key}-{n}.log"));
        let file = fs::File::create(&log).unwrap();
        let child = Command::new("ip")
            .args(args)
            .env("RUST_LOG", std::env::var("SPEAKER_RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        // Drop a previous process under this key (killing it if still alive).
        self.procs.insert(key.to_string(), Proc { name: key.to_string(), child, log, pidfiles });
    }

    pub fn proc(&mut self, key: &str) -> &mut Proc {
        self.procs.get_mut(key).unwrap_or_else(|| panic!("no process {key}"))
    }

    pub fn has_vip(&self, node: &str) -> bool {
        let ns = &self.node(node).ns;
        ip(&["-n", ns, "addr", "show", "dev", "eth0"]).is_ok_and(|s| s.contains(&format!("{VIP}/32")))
    }

    /// Nodes with the VIP on eth0, among `among`.
    pub fn holders(&self, among: &[String]) -> Vec<String> {
        among.iter().filter(|n| self.has_vip(n)).cloned().collect()
    }

    pub fn all(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Polls until exactly `want` holds the VIP among `among` (generous timeout; no timing asserted).
    pub fn wait_holders(&self, among: &[String], want: &[&str], timeout: Duration) {
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        let t0 = Instant::now();
        loop {
            let mut h = self.holders(among);
            h.sort();
            if h == want {
                return;
            }
            if t0.elapsed() > timeout {
                panic!("holders {h:?}, expected {want:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Samples the holders for `span`; every sample must be exactly `want`.
    pub fn assert_steady(&self, among: &[String], want: &str, span: Duration) {
        let t0 = Instant::now();
        while t0.elapsed() < span {
            let h = self.holders(among);
            assert_eq!(h, vec![want.to_string()], "steady state must have exactly one holder\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        for (k, p) in &self.procs {
            s.push_str(&format!("----- {k} ({})\n{}\n", p.log.display(), p.log_text()));
        }
        s
    }

    /// The client pings the VIP (creating its neighbour entry) and returns the MAC it resolved.
    pub fn client_neigh(&self) -> Option<String> {
        let _ = in_ns(&self.client, &["ping", "-c", "1", "-W", "1", VIP]);
        let out = ip(&["-n", &self.client, "neigh", "show", VIP, "dev", "eth0"]).ok()?;
        out.split_whitespace().skip_while(|w| *w != "lladdr").nth(1).map(str::to_string)
    }

    /// Polls until the client's neighbour entry for the VIP shows `mac` and a ping succeeds.
    pub fn wait_client_reaches(&self, mac: &str, timeout: Duration) {
        let t0 = Instant::now();
        loop {
            let ping = in_ns(&self.client, &["ping", "-c", "1", "-W", "1", VIP]).is_ok();
            let neigh = ip(&["-n", &self.client, "neigh", "show", VIP, "dev", "eth0"]).unwrap_or_default();
            if ping && neigh.contains(mac) {
                return;
            }
            if t0.elapsed() > timeout {
                panic!("client: ping ok {ping}, neigh {neigh:?}, expected {mac}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

impl Lab {
    /// Whether `node`'s eth0 carries `vip` as a /32 (IPv4) with the label openelb gives its VIPs.
    pub fn has_marked_ip(&self, node: &str, vip: &str) -> bool {
        let ns = &self.node(node).ns;
        ip(&["-n", ns, "addr", "show", "dev", "eth0"]).is_ok_and(|s| {
            s.lines().any(|l| l.contains(&format!("inet {vip}/32")) && l.trim_end().ends_with("eth0:oelb"))
        })
    }

    /// Whether `node`'s eth0 carries `vip` at all (marked or not).
    pub fn has_ip(&self, node: &str, vip: &str) -> bool {
        let ns = &self.node(node).ns;
        ip(&["-n", ns, "addr", "show", "dev", "eth0"]).is_ok_and(|s| s.contains(&format!("inet {vip}/")))
    }

    /// Nodes among `among` with `vip` on eth0.
    pub fn holders_of(&self, vip: &str, among: &[String]) -> Vec<String> {
        among.iter().filter(|n| self.has_ip(n, vip)).cloned().collect()
    }

    /// Polls until exactly `want` hold `vip` among `among`; `extra` is appended to the failure message.
    pub fn wait_holders_of(
        &self,
        vip: &str,
        among: &[String],
        want: &[&str],
        timeout: Duration,
        extra: &dyn Fn() -> String,
    ) {
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        let t0 = Instant::now();
        loop {
            let mut h = self.holders_of(vip, among);
            h.sort();
            if h == want {
                return;
            }
            if t0.elapsed() > timeout {
                panic!("{vip}: holders {h:?}, expected {want:?}\n{}", extra());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls until the client's ping of `vip` succeeds and its neighbour entry shows `mac`.
    pub fn wait_client_reaches_vip(&self, vip: &str, mac: &str, timeout: Duration) {
        let t0 = Instant::now();
        loop {
            let ping = in_ns(&self.client, &["ping", "-c", "1", "-W", "1", vip]).is_ok();
            let neigh = ip(&["-n", &self.client, "neigh", "show", vip, "dev", "eth0"]).unwrap_or_default();
            if ping && neigh.contains(mac) {
                return;
            }
            if t0.elapsed() > timeout {
                panic!("client: ping {vip} ok {ping}, neigh {neigh:?}, expected {mac}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs `f` on a new thread inside the network namespace `ns`: setns(2) moves only that thread, and the
/// sockets it opens belong to the namespace.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    use std::os::fd::AsRawFd;
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: a valid namespace file descriptor; setns affects the calling thread only.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap_or_else(|_| panic!("the thread in {ns} panicked"))
}

/// How many sockets process `pid` has open.
pub fn socket_fds(pid: u32) -> usize {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
    dir.flatten().filter(|e| fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))).count()
}

impl Lab {
    /// Deletes the node's veth pair and creates it again with the same names, MAC and address: for the node,
    /// `eth0` vanishes and comes back under a new interface index.
    pub fn recreate_eth0(&self, node: &str) -> Result<(), String> {
        let i = self.nodes.iter().position(|n| n.name == node).ok_or(format!("no node {node}"))?;
        let n = &self.nodes[i];
        let peer = format!("p{i}");
        ip(&["-n", &self.sw, "link", "del", &peer])?;
        ip(&["-n", &self.sw, "link", "add", &peer, "type", "veth", "peer", "name", "eth0", "netns", &n.ns])?;
        ip(&["-n", &n.ns, "link", "set", "eth0", "address", &n.mac])?;
        ip(&["-n", &self.sw, "link", "set", &peer, "master", "br0", "up"])?;
        ip(&["-n", &n.ns, "addr", "add", &format!("{}/24", n.ip), "dev", "eth0"])?;
        ip(&["-n", &n.ns, "link", "set", "eth0", "up"])?;
        Ok(())
    }

    /// `GET path` on the node's InternalIP and `port`, from inside its namespace; the whole response.
    pub fn http_get(&self, node: &str, port: u16, path: &str) -> String {
        use std::io::{Read, Write};
        let addr: IpAddr = self.node(node).ip.parse().unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        in_netns(&self.node(node).ns, move || {
            let Ok(mut s) = std::net::TcpStream::connect((addr, port)) else { return String::new() };
            let _ = s.write_all(request.as_bytes());
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        })
    }
}
