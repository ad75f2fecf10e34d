//! The VRRP speaker program each lab node runs: keepalived (the reference) or openelb-speaker (ours), behind
//! one type so the demo, the tests and the bench treat them alike. A running speaker is one [`Process`] tree
//! per node, ended by PID only.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::keepalived;
use crate::layout::Layout;
use crate::process::Process;

/// Environment variable naming the openelb-speaker binary to run.
pub const ENV_SPEAKER: &str = "OPENELB_SPEAKER";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpeakerProgram {
    /// Debian's keepalived, one VRRPv3 instance for the VIP.
    Keepalived { advert_int: Duration },
    /// Our speaker, `openelb-speaker --node-name NODE --manifests DIR --interface eth0 [flags]`.
    Openelb(OpenelbSpeakerCommand),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpenelbSpeakerCommand {
    pub binary: PathBuf,
    /// `--advert-interval`; `None` keeps the speaker's default.
    pub advert_interval: Option<Duration>,
    /// `--preempt-delay`.
    pub preempt_delay: Option<Duration>,
    /// `--garp-count N --garp-spacing D`.
    pub garp: Option<(u32, Duration)>,
    /// `--metrics-addr`: where to read the speaker's metrics from inside its node's namespace. Every speaker
    /// build accepts an `ADDRESS:PORT` (their defaults differ).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Appended as given.
    pub extra_args: Vec<String>,
    /// Extra IPv6 VIPs (from 2001:db8:0:91::1) written into the speaker's manifests, for the 1000-VIP
    /// resource measurement; they are not wired into the data plane.
    pub extra_v6_vips: u16,
    /// Kubernetes source: the speaker watches the apiserver of this kubeconfig instead of reading manifests,
    /// and finds its interface itself (the NIC holding its Node's InternalIP).
    pub kubeconfig: Option<PathBuf>,
    /// Nodes that run a speaker; `None`: every node.
    pub nodes: Option<Vec<String>>,
}

/// `100ms`, `1s`: the form the speaker's duration flags take.
pub fn duration_flag(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) { format!("{}s", ms / 1000) } else { format!("{ms}ms") }
}

impl SpeakerProgram {
    pub fn keepalived(advert_int: Duration) -> Self {
        SpeakerProgram::Keepalived { advert_int }
    }

    /// Our speaker with its defaults, if its binary can be found ([`find_openelb_speaker`]).
    pub fn openelb_default() -> Option<Self> {
        find_openelb_speaker()
            .map(|binary| SpeakerProgram::Openelb(OpenelbSpeakerCommand { binary, ..Default::default() }))
    }

    /// Short name for tables and messages.
    pub fn label(&self) -> String {
        match self {
            SpeakerProgram::Keepalived { advert_int } => format!("keepalived advert {}", duration_flag(*advert_int)),
            SpeakerProgram::Openelb(o) => match o.advert_interval {
                Some(a) => format!("openelb-speaker advert {}", duration_flag(a)),
                None => "openelb-speaker defaults".to_string(),
            },
        }
    }

    /// Nodes that run this speaker. keepalived knows nothing of Kubernetes, so only the VIP's candidates run
    /// it; openelb-speaker runs on every node and decides from the manifests itself.
    pub fn nodes(&self, layout: &Layout) -> Vec<String> {
        match self {
            SpeakerProgram::Keepalived { .. } => layout.candidates.clone(),
            SpeakerProgram::Openelb(o) => match &o.nodes {
                Some(nodes) => nodes.clone(),
                None => layout.nodes.iter().map(|n| n.name.clone()).collect(),
            },
        }
    }

    /// The full command line for `node` (after `ip netns exec NS`). Writes keepalived's config under `dir`.
    pub fn argv(&self, layout: &Layout, node: &str, dir: &Path, manifests: &Path) -> Result<Vec<String>> {
        match self {
            SpeakerProgram::Keepalived { advert_int } => {
                let rank = layout.candidates.iter().position(|c| c == node).unwrap_or(layout.candidates.len());
                let conf = dir.join(format!("keepalived-{node}.conf"));
                let text = keepalived::config(node, layout.vip, keepalived::priority(rank), *advert_int);
                fs::write(&conf, text).with_context(|| format!("{}: cannot write", conf.display()))?;
                let (pid, vrrp) = keepalived_pidfiles(dir, node);
                // keepalived refuses to start while a pid file names a live process; stale ones are ours.
                let _ = fs::remove_file(&pid);
                let _ = fs::remove_file(&vrrp);
                Ok(keepalived::argv(&conf, &pid, &vrrp))
            }
            SpeakerProgram::Openelb(o) => {
                let mut v: Vec<String> = vec![o.binary.display().to_string(), "--node-name".into(), node.into()];
                match &o.kubeconfig {
                    Some(kc) => v.extend(["--kubeconfig".into(), kc.display().to_string()]),
                    None => v.extend([
                        "--manifests".into(),
                        manifests.display().to_string(),
                        "--interface".into(),
                        "eth0".into(),
                    ]),
                }
                if let Some(a) = o.advert_interval {
                    v.extend(["--advert-interval".into(), duration_flag(a)]);
                }
                if let Some(m) = o.metrics_addr {
                    v.extend(["--metrics-addr".into(), m.to_string()]);
                }
                if let Some(p) = o.preempt_delay {
                    v.extend(["--preempt-delay".into(), duration_flag(p)]);
                }
                if let Some((count, spacing)) = o.garp {
                    v.extend([
                        "--garp-count".into(),
                        count.to_string(),
                        "--garp-spacing".into(),
                        duration_flag(spacing),
                    ]);
                }
                v.extend(o.extra_args.iter().cloned());
                Ok(v)
            }
        }
    }

    /// Starts this speaker on `node` (inside its namespace), logging to `speaker-NODE.log` in `dir`. The process
    /// is named after the node.
    pub fn start(&self, layout: &Layout, node: &str, dir: &Path, manifests: &Path) -> Result<Process> {
        let Some(spec) = layout.node(node) else { bail!("node {node:?} is not in the lab") };
        let argv = self.argv(layout, node, dir, manifests)?;
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let log = dir.join(format!("speaker-{node}.log"));
        let process = Process::spawn_in(node, &spec.ns, &refs, &log)?;
        Ok(match self {
            SpeakerProgram::Keepalived { .. } => process.with_pidfiles(vec![keepalived_pidfiles(dir, node).1]),
            SpeakerProgram::Openelb(_) => process,
        })
    }
}

fn keepalived_pidfiles(dir: &Path, node: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("keepalived-{node}.pid")), dir.join(format!("keepalived-{node}.vrrp.pid")))
}

/// openelb-speaker: `$OPENELB_SPEAKER`, else next to this executable (target/debug/openelb-cli), else one level
/// up (test binaries live in target/debug/deps).
pub fn find_openelb_speaker() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(ENV_SPEAKER).map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join("openelb-speaker"), dir.parent()?.join("openelb-speaker")].into_iter().find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::layout::seed_layout as layout;

    #[test]
    fn openelb_command_line_carries_the_flags() {
        let layout = layout();
        let s = SpeakerProgram::Openelb(OpenelbSpeakerCommand {
            binary: "/x/openelb-speaker".into(),
            advert_interval: Some(Duration::from_millis(100)),
            preempt_delay: Some(Duration::from_secs(3)),
            garp: Some((3, Duration::from_millis(10))),
            metrics_addr: Some("127.0.0.1:8477".parse().unwrap()),
            ..Default::default()
        });
        let argv = s.argv(&layout, "master1", Path::new("/nonexistent"), Path::new("/m")).unwrap().join(" ");
        assert_eq!(
            argv,
            "/x/openelb-speaker --node-name master1 --manifests /m --interface eth0 --advert-interval 100ms \
             --metrics-addr 127.0.0.1:8477 --preempt-delay 3s --garp-count 3 --garp-spacing 10ms"
        );
    }
}
