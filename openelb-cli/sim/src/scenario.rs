//! The scenario file of `openelb-cli simulate`: a timeline of cluster events, each with its time (`at`). The
//! simulator plays them in virtual time against the real VRRP state machines on an in-memory L2 segment
//! (see [`crate::DataPlane`]), so the same file shows both what Kubernetes decides and how long the data plane takes.
//!
//! Events come in two layers, because a crash and Kubernetes noticing it are different moments:
//! - the machine and its network: `nodeDown` (crash), `nodeStop` (graceful), `nodeUp` (boot), `linkDown`,
//!   `linkUp`, `partition`, `heal`;
//! - the Kubernetes objects: `nodeNotReady`, `nodeReady`, labels, Pods, Services, Eips.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

pub const SCENARIO_API_VERSION: &str = "sim.openelb.kubesphere.io/v1alpha1";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default, rename = "apiVersion")]
    pub api_version: Option<String>,
    #[serde(default)]
    pub metadata: Option<ScenarioMeta>,
    #[serde(default)]
    pub events: Vec<TimedEvent>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ScenarioMeta {
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TimedEvent {
    /// `10s`, `1.5s`, `250ms`; events run in file order and times must not go backwards.
    pub at: SimTime,
    #[serde(flatten)]
    pub event: Event,
}

/// Milliseconds since the start of the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct SimTime(pub u64);

impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t={}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

impl SimTime {
    pub fn as_duration(self) -> Duration {
        Duration::from_millis(self.0)
    }

    /// A scenario time: a duration with a unit, kept in whole milliseconds.
    pub fn parse(s: &str) -> Result<Self, String> {
        let d = parse_duration(s)?;
        u64::try_from(d.as_nanos().div_ceil(500_000) / 2).map(SimTime).map_err(|_| format!("{s:?}: too large"))
    }
}

/// Durations on the command line and in scenarios: one parser for every binary (`100us`, `0.1ms`, `3s`, `1m`).
pub use openelb_k8s::duration::parse_duration;

impl<'de> Deserialize<'de> for SimTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => SimTime::parse(&format!("{s}s")).map_err(serde::de::Error::custom),
            Raw::Text(t) => SimTime::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// A Pod named directly or as the n-th (by name) Pod of a Deployment.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PodRef {
    #[serde(default)]
    pub pod: Option<String>,
    #[serde(default)]
    pub deployment: Option<String>,
    #[serde(default)]
    pub replica: Option<usize>,
    #[serde(default)]
    pub namespace: Option<String>,
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.pod, &self.deployment) {
            (Some(p), _) => write!(f, "pod {p}"),
            (None, Some(d)) => write!(f, "deployment {d} replica {}", self.replica.unwrap_or(0)),
            (None, None) => f.write_str("(no pod named)"),
        }
    }
}

/// Two sides of a partition of the L2 segment. Members are node names or `client`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct Sides {
    #[serde(default)]
    pub a: Vec<String>,
    /// Empty: every other node and the client.
    #[serde(default)]
    pub b: Vec<String>,
}

impl fmt::Display for Sides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = if self.b.is_empty() { "everyone else".to_string() } else { self.b.join(",") };
        write!(f, "{} | {b}", self.a.join(","))
    }
}

/// `heal: all`, `heal: {}` or an empty `heal:` end every partition; `heal: {a: [...], b: [...]}` ends one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heal {
    All,
    Sides(Sides),
}

impl<'de> Deserialize<'de> for Heal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Sides(Sides),
            Nothing(()),
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) if t == "all" => Ok(Heal::All),
            Raw::Text(t) => {
                Err(serde::de::Error::custom(format!("heal: {t:?} is not `all` or {{a: [...], b: [...]}}")))
            }
            Raw::Nothing(()) => Ok(Heal::All),
            Raw::Sides(s) if s.a.is_empty() && s.b.is_empty() => Ok(Heal::All),
            Raw::Sides(s) => Ok(Heal::Sides(s)),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum Event {
    /// The machine crashes: its speaker stops without a word, its link goes down and its VIPs stay configured
    /// on the dead NIC. Kubernetes keeps the Node Ready for the node grace period (`--node-grace`), then marks it
    /// NotReady: only then does it leave the candidate sets and do its Pods stop being ready endpoints.
    NodeDown(String),
    /// Graceful shutdown: the speaker sends priority-0 adverts and removes its VIPs, then the machine powers
    /// off. Kubernetes notices as for `nodeDown`.
    NodeStop(String),
    /// The machine boots (fresh speaker, no VIPs on its NIC) and its kubelet reports Ready at once.
    NodeUp(String),
    /// Kubernetes-only readiness (the machine and its speaker keep running), e.g. a kubelet that stopped.
    NodeNotReady(String),
    NodeReady(String),
    /// The node's link to the segment goes down (the speaker sees the interface go down) or comes back.
    LinkDown(String),
    LinkUp(String),
    /// Side `a` and side `b` stop hearing each other on the segment (both ways). Kubernetes is not affected:
    /// add `nodeNotReady` events if the API server should lose nodes too.
    Partition(Sides),
    Heal(Heal),
    /// Sets (string) or removes (null) labels on a node, e.g. the exclude-from-external-load-balancers label.
    LabelNode {
        node: String,
        labels: BTreeMap<String, Option<String>>,
    },
    PodReady {
        #[serde(flatten)]
        pod: PodRef,
        ready: bool,
    },
    /// Reschedules a Pod onto another node (as a rolling update would).
    PodMove {
        #[serde(flatten)]
        pod: PodRef,
        node: String,
    },
    /// Creates (or replaces) a Service from an inline Kubernetes Service object.
    CreateService(serde_json::Value),
    DeleteService(String),
    PatchService(ServicePatchEvent),
    /// Creates (or replaces) an Eip from an inline object.
    CreateEip(serde_json::Value),
    DeleteEip(String),
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePatchEvent {
    /// `ns/name`, or `name` in namespace `default`.
    pub service: String,
    #[serde(default)]
    pub external_traffic_policy: Option<String>,
    /// Empty string removes the field.
    #[serde(default, rename = "loadBalancerIP")]
    pub load_balancer_ip: Option<String>,
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    /// Sets (string) or removes (null) annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, Option<String>>,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::NodeDown(n) => write!(f, "{n} down"),
            Event::NodeStop(n) => write!(f, "{n} stopped"),
            Event::NodeUp(n) => write!(f, "{n} up"),
            Event::NodeNotReady(n) => write!(f, "{n} NotReady"),
            Event::NodeReady(n) => write!(f, "{n} Ready"),
            Event::LinkDown(n) => write!(f, "{n} link down"),
            Event::LinkUp(n) => write!(f, "{n} link up"),
            Event::Partition(s) => write!(f, "partition {s}"),
            Event::Heal(Heal::All) => f.write_str("heal all partitions"),
            Event::Heal(Heal::Sides(s)) => write!(f, "heal {s}"),
            Event::LabelNode { node, labels } => write!(f, "label node {node} {}", fmt_map(labels)),
            Event::PodReady { pod, ready } => {
                write!(f, "{pod} {}", if *ready { "ready" } else { "not ready" })
            }
            Event::PodMove { pod, node } => write!(f, "{pod} moved to {node}"),
            Event::CreateService(v) => write!(f, "create service {}", object_name(v)),
            Event::DeleteService(s) => write!(f, "delete service {s}"),
            Event::PatchService(p) => {
                write!(f, "patch service {}", p.service)?;
                if let Some(x) = &p.external_traffic_policy {
                    write!(f, " externalTrafficPolicy={x}")?;
                }
                if let Some(x) = &p.load_balancer_ip {
                    write!(f, " loadBalancerIP={x:?}")?;
                }
                if let Some(x) = &p.type_ {
                    write!(f, " type={x}")?;
                }
                if !p.annotations.is_empty() {
                    write!(f, " annotations {}", fmt_map(&p.annotations))?;
                }
                Ok(())
            }
            Event::CreateEip(v) => write!(f, "create eip {}", object_name(v)),
            Event::DeleteEip(n) => write!(f, "delete eip {n}"),
        }
    }
}

fn fmt_map(m: &BTreeMap<String, Option<String>>) -> String {
    m.iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => format!("{k}-"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn object_name(v: &serde_json::Value) -> String {
    let meta = v.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(|n| n.as_str()).unwrap_or("<unnamed>");
    match meta.and_then(|m| m.get("namespace")).and_then(|n| n.as_str()) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// Why a scenario file was refused; `origin` is its path.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("reading {path}")]
    Read { path: String, source: std::io::Error },
    #[error("{origin}: not a valid scenario")]
    Invalid { origin: String, source: serde_yaml::Error },
    #[error("{origin}: kind is {kind:?}, expected \"Scenario\"")]
    Kind { origin: String, kind: String },
    #[error("{origin}: apiVersion is {api_version:?}, expected {SCENARIO_API_VERSION:?}")]
    ApiVersion { origin: String, api_version: String },
    #[error("{origin}: events[{index}].at {at} is earlier than the event before it ({last})")]
    OutOfOrder { origin: String, index: usize, at: SimTime, last: SimTime },
}

impl Scenario {
    pub fn name(&self) -> Option<&str> {
        self.metadata.as_ref().and_then(|m| m.name.as_deref())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, ScenarioError> {
        let origin = origin.to_string();
        let sc: Scenario = match serde_yaml::from_str(text) {
            Ok(sc) => sc,
            Err(source) => return Err(ScenarioError::Invalid { origin, source }),
        };
        if let Some(kind) = &sc.kind
            && kind != "Scenario"
        {
            return Err(ScenarioError::Kind { origin, kind: kind.clone() });
        }
        if let Some(v) = &sc.api_version
            && v != SCENARIO_API_VERSION
        {
            return Err(ScenarioError::ApiVersion { origin, api_version: v.clone() });
        }
        let mut last = SimTime(0);
        for (index, ev) in sc.events.iter().enumerate() {
            if ev.at < last {
                return Err(ScenarioError::OutOfOrder { origin, index, at: ev.at, last });
            }
            last = ev.at;
        }
        Ok(sc)
    }

    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ScenarioError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text, &path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_with_units() {
        assert_eq!(SimTime::parse("10s"), Ok(SimTime(10_000)));
        assert_eq!(SimTime::parse("250ms"), Ok(SimTime(250)));
        assert_eq!(SimTime::parse("1.5s"), Ok(SimTime(1500)));
        assert_eq!(SimTime::parse("2m"), Ok(SimTime(120_000)));
        assert!(SimTime::parse("10").unwrap_err().contains("unit"));
        assert!(SimTime::parse("-1s").is_err());
        assert!(SimTime::parse("NaNs").is_err());
    }

    #[test]
    fn scenario_events_parse() {
        let sc = Scenario::parse(
            "kind: Scenario\nevents:\n- at: 10s\n  nodeDown: w1\n- at: 11s\n  podReady: {deployment: d, replica: 1, ready: false}\n- at: 12s\n  patchService: {service: default/s, externalTrafficPolicy: Local}\n",
            "t",
        )
        .unwrap();
        assert_eq!(sc.events.len(), 3);
        assert_eq!(sc.events[0].event, Event::NodeDown("w1".into()));
        assert_eq!(sc.events[1].event.to_string(), "deployment d replica 1 not ready");
    }

    #[test]
    fn time_going_backwards_is_an_error_naming_the_event() {
        let err = Scenario::parse("events:\n- at: 10s\n  nodeDown: a\n- at: 5s\n  nodeUp: a\n", "f.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("events[1].at"), "{err}");
    }

    #[test]
    fn partition_and_heal_forms_parse() {
        let sc = Scenario::parse(
            "events:\n- at: 1s\n  partition: {a: [m1], b: [w1, w2]}\n- at: 2s\n  partition: {a: [client]}\n\
- at: 3s\n  heal: {a: [m1], b: [w1]}\n- at: 4s\n  heal: all\n- at: 5s\n  heal: {}\n- at: 6s\n  heal:\n",
            "t",
        )
        .unwrap();
        let evs: Vec<&Event> = sc.events.iter().map(|e| &e.event).collect();
        assert_eq!(evs[0], &Event::Partition(Sides { a: vec!["m1".into()], b: vec!["w1".into(), "w2".into()] }));
        assert_eq!(evs[1].to_string(), "partition client | everyone else");
        assert_eq!(evs[2], &Event::Heal(Heal::Sides(Sides { a: vec!["m1".into()], b: vec!["w1".into()] })));
        assert_eq!(evs[3], &Event::Heal(Heal::All));
        assert_eq!(evs[4], &Event::Heal(Heal::All));
        assert_eq!(evs[5], &Event::Heal(Heal::All));
        assert!(Scenario::parse("events:\n- at: 1s\n  heal: some\n", "t").is_err());
        assert!(Scenario::parse("events:\n- at: 1s\n  partition: {a: [x], c: [y]}\n", "t").is_err());
    }

    #[test]
    fn durations_parse_below_a_millisecond() {
        assert_eq!(parse_duration("0.1ms"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("3").unwrap_err().contains("unit"));
        assert!(parse_duration("-1ms").is_err());
    }

    #[test]
    fn unknown_event_is_an_error() {
        assert!(Scenario::parse("events:\n- at: 1s\n  explode: a\n", "f").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in ".*") {
            let _ = Scenario::parse(&s, "p");
            let _ = SimTime::parse(&s);
            let _ = parse_duration(&s);
        }
    }
}
