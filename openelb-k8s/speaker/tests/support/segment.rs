//! `openelb-speaker` processes on one namespace segment (openelb-lab's harness): nodes `node-a`.. with
//! InternalIPs 192.0.2.3.. and a client at .100, the manifests the speakers read, and waits on who holds the
//! VIP. Only 192.0.2.0/24. Everything (processes by PID, namespaces with their veths) is removed when the
//! [`SpeakerSegment`] is dropped, also when a test fails. Used by `speaker_lab` and `speaker_keepalived`.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use openelb_core::election;
use openelb_k8s::manifest::Manifests;
use openelb_lab::segment::CLIENT;
use openelb_lab::{Host, Need, Process, Segment, require};
use openelb_speaker::{SpeakerConfig, desired};

use super::VIP;

pub struct SpeakerSegment {
    // Dropped in this order: the processes before the namespaces they run in.
    pub procs: BTreeMap<String, Process>,
    pub segment: Segment,
    pub dir: tempfile::TempDir,
    nodes: Vec<String>,
}

impl SpeakerSegment {
    /// `nodes` nodes and the client on a new segment, with manifests naming every node; panics unless root.
    pub fn new(tag: &str, nodes: usize) -> SpeakerSegment {
        require(&[Need::Root]);
        let n = u8::try_from(nodes).unwrap();
        let segment = Segment::nodes_and_client(tag, n).unwrap_or_else(|e| panic!("{e:#}"));
        let names = segment.nodes().into_iter().map(|h| h.name).collect();
        let lab = SpeakerSegment { procs: BTreeMap::new(), segment, dir: tempfile::tempdir().unwrap(), nodes: names };
        lab.write_manifests(&lab.all());
        lab
    }

    pub fn all(&self) -> Vec<String> {
        self.nodes.clone()
    }

    pub fn node(&self, name: &str) -> &Host {
        self.segment.host(name).unwrap_or_else(|| panic!("no node {name}"))
    }

    pub fn manifests(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }

    /// The Eip (vip, eth0, .91-.95), one opted-in Service (Cluster policy) and a Ready Node per name given
    /// (names not on the segment are skipped).
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
        for n in self.nodes.iter().filter(|n| nodes.contains(n)) {
            y.push_str(&format!(
                "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {n}\nstatus:\n  addresses:\n    - type: InternalIP\n      \
                 address: {}\n  conditions:\n    - type: Ready\n      status: \"True\"\n",
                self.node(n).ip()
            ));
        }
        fs::write(dir.join("cluster.yaml"), y).unwrap();
    }

    /// The nodes in the VIP's rendezvous preference order (what the speakers must agree on).
    pub fn preference(&self, names: &[String]) -> Vec<String> {
        let vip = super::vip();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        election::rank(&vip, &refs).into_iter().map(str::to_string).collect()
    }

    /// The VRRP group of the VIP as every speaker plans it: (VRID, priorities in preference order).
    pub fn group(&self) -> (u8, Vec<(String, u8)>) {
        let cluster = Manifests::load_paths(&[self.manifests()]).unwrap().to_cluster().unwrap();
        let d = desired(&cluster, &SpeakerConfig::new("any"), None);
        let vip = super::vip();
        let g = d.plan.group_of(&vip).expect("the VIP is planned");
        (g.vrid, g.priorities.clone())
    }

    /// Starts `openelb-speaker` on `node` (100 ms adverts) with extra flags; replaces a previous process.
    pub fn start_speaker(&mut self, node: &str, extra: &[&str]) {
        let manifests = self.manifests().display().to_string();
        let mut argv = vec![
            env!("CARGO_BIN_EXE_openelb-speaker"),
            "--node-name",
            node,
            "--manifests",
            &manifests,
            "--advert-interval",
            "100ms",
        ];
        argv.extend_from_slice(extra);
        let argv: Vec<String> = argv.into_iter().map(String::from).collect();
        self.spawn(node, node, &argv, Vec::new());
    }

    /// Starts `argv` inside `node`'s namespace as process `key` (replacing, and so killing, a previous one),
    /// logging to a file; `pidfiles` name forked children to kill with it.
    pub fn spawn(&mut self, key: &str, node: &str, argv: &[String], pidfiles: Vec<PathBuf>) {
        let n = self.procs.len();
        let log = self.dir.path().join(format!("{key}-{n}.log"));
        let ns = self.node(node).ns.clone();
        // The speakers log at info unless the run asks for more.
        let level = std::env::var("SPEAKER_RUST_LOG").unwrap_or_else(|_| "info".into());
        let mut full = vec!["env".to_string(), format!("RUST_LOG={level}")];
        full.extend(argv.iter().cloned());
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        let p = Process::spawn_in(key, &ns, &refs, &log).unwrap_or_else(|e| panic!("{e:#}"));
        self.procs.insert(key.to_string(), p.with_pidfiles(pidfiles));
    }

    pub fn proc(&mut self, key: &str) -> &mut Process {
        self.procs.get_mut(key).unwrap_or_else(|| panic!("no process {key}"))
    }

    /// Nodes with the VIP on eth0, among `among`.
    pub fn holders(&self, among: &[String]) -> Vec<String> {
        self.segment.holders_of(VIP, among)
    }

    /// Polls until exactly `want` holds the VIP among `among` (generous timeout; no timing asserted).
    pub fn wait_holders(&self, among: &[String], want: &[&str], timeout: Duration) {
        if let Err(e) = self.segment.wait_holders_of(VIP, among, want, timeout) {
            panic!("{e}\n{}", self.logs());
        }
    }

    /// Samples the holders for `span`; every sample must be exactly `want`.
    pub fn assert_steady(&self, among: &[String], want: &str, span: Duration) {
        // Sampling for the whole span is the point: the holder must not change during it.
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
            let path = p.log_path().map(|l| l.display().to_string()).unwrap_or_default();
            s.push_str(&format!("----- {k} ({path})\n{}\n", p.log_text()));
        }
        s
    }

    /// Polls until the client's neighbour entry for the VIP shows `mac` and a ping succeeds.
    pub fn wait_client_reaches(&self, mac: &str, timeout: Duration) {
        if let Err(e) = self.segment.wait_reaches(CLIENT, VIP, mac, timeout) {
            panic!("{e}\n{}", self.logs());
        }
    }
}
