//! deploy/ against the Pod Security Standards, statically: the API server of the test suite (1.20) predates Pod
//! Security Admission (1.23), so a small evaluator of the checks that matter here stands in for it. The
//! namespace's enforce level must admit every Pod template in deploy/, and the next stricter level must refuse
//! the speaker, so the label is needed and no broader than needed. Also: nothing in deploy/ uses the ports of
//! MetalLB's speaker (7472 metrics, 7473 FRR metrics, 7946 memberlist), and the speaker's DaemonSet declares no
//! ports (a host-network Pod's containerPorts become hostPorts).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

const NAMESPACE: &str = "openelb-system";
const ENFORCE: &str = "pod-security.kubernetes.io/enforce";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    fn stricter(self) -> Option<Level> {
        match self {
            Level::Privileged => Some(Level::Baseline),
            Level::Baseline => Some(Level::Restricted),
            Level::Restricted => None,
        }
    }
}

/// Capabilities baseline lets a container add.
const BASELINE_CAPS: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];
/// Volume types restricted allows.
const RESTRICTED_VOLUMES: &[&str] =
    &["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];
/// Sysctls baseline allows.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
];

fn is_true(v: &Value) -> bool {
    v.as_bool() == Some(true)
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

fn containers(spec: &Value) -> Vec<&Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .collect()
}

/// What `level` refuses in a Pod (its metadata and spec), one line per violation; empty when it admits it.
fn violations(level: Level, meta: &Value, spec: &Value) -> Vec<String> {
    let mut v = Vec::new();
    if level == Level::Privileged {
        return v;
    }
    let psc = &spec["securityContext"];
    let all = containers(spec);
    let name = |c: &Value| c["name"].as_str().unwrap_or("?").to_string();
    // Baseline.
    for ns in ["hostNetwork", "hostPID", "hostIPC"] {
        if is_true(&spec[ns]) {
            v.push(format!("{ns}: true"));
        }
    }
    if is_true(&psc["windowsOptions"]["hostProcess"]) {
        v.push("windowsOptions.hostProcess: true".into());
    }
    for vol in spec["volumes"].as_array().into_iter().flatten() {
        if vol.get("hostPath").is_some() {
            v.push(format!("volume {}: hostPath", vol["name"]));
        }
    }
    for s in psc["sysctls"].as_array().into_iter().flatten() {
        let n = s["name"].as_str().unwrap_or("?");
        if !SAFE_SYSCTLS.contains(&n) {
            v.push(format!("sysctl {n}"));
        }
    }
    let unconfined = |sc: &Value| sc["seccompProfile"]["type"].as_str() == Some("Unconfined");
    if unconfined(psc) {
        v.push("pod seccompProfile: Unconfined".into());
    }
    for (k, val) in meta["annotations"].as_object().into_iter().flatten() {
        let profile = val.as_str().unwrap_or("");
        if k.starts_with("container.apparmor.security.beta.kubernetes.io/")
            && profile != "runtime/default"
            && !profile.starts_with("localhost/")
        {
            v.push(format!("annotation {k}: {profile}"));
        }
    }
    for c in &all {
        let sc = &c["securityContext"];
        if is_true(&sc["privileged"]) {
            v.push(format!("container {}: privileged", name(c)));
        }
        if is_true(&sc["windowsOptions"]["hostProcess"]) {
            v.push(format!("container {}: windowsOptions.hostProcess", name(c)));
        }
        for cap in strs(&sc["capabilities"]["add"]) {
            if !BASELINE_CAPS.contains(&cap) {
                v.push(format!("container {}: adds capability {cap}", name(c)));
            }
        }
        for p in c["ports"].as_array().into_iter().flatten() {
            if p["hostPort"].as_u64().unwrap_or(0) != 0 {
                v.push(format!("container {}: hostPort {}", name(c), p["hostPort"]));
            }
        }
        if unconfined(sc) {
            v.push(format!("container {}: seccompProfile Unconfined", name(c)));
        }
        if sc["procMount"].as_str().is_some_and(|m| m != "Default") {
            v.push(format!("container {}: procMount {}", name(c), sc["procMount"]));
        }
    }
    for sc in std::iter::once(psc).chain(all.iter().map(|c| &c["securityContext"])) {
        let se = &sc["seLinuxOptions"];
        let ty = se["type"].as_str().unwrap_or("");
        if !["", "container_t", "container_init_t", "container_kvm_t"].contains(&ty) {
            v.push(format!("seLinuxOptions.type {ty}"));
        }
        if se.get("user").is_some() || se.get("role").is_some() {
            v.push("seLinuxOptions user or role set".into());
        }
    }
    if level == Level::Baseline {
        return v;
    }
    // Restricted.
    for vol in spec["volumes"].as_array().into_iter().flatten() {
        let kind = vol.as_object().and_then(|o| o.keys().find(|k| *k != "name"));
        if let Some(kind) = kind.filter(|k| !RESTRICTED_VOLUMES.contains(&k.as_str())) {
            v.push(format!("volume {}: type {kind}", vol["name"]));
        }
    }
    for c in &all {
        let sc = &c["securityContext"];
        if sc["allowPrivilegeEscalation"].as_bool() != Some(false) {
            v.push(format!("container {}: allowPrivilegeEscalation is not false", name(c)));
        }
        let non_root = sc["runAsNonRoot"].as_bool().or(psc["runAsNonRoot"].as_bool());
        if non_root != Some(true) {
            v.push(format!("container {}: runAsNonRoot is not true", name(c)));
        }
        if sc["runAsUser"].as_u64().or(psc["runAsUser"].as_u64()) == Some(0) {
            v.push(format!("container {}: runAsUser 0", name(c)));
        }
        let seccomp = sc["seccompProfile"]["type"].as_str().or(psc["seccompProfile"]["type"].as_str());
        if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
            v.push(format!("container {}: seccompProfile is not RuntimeDefault or Localhost", name(c)));
        }
        if !strs(&sc["capabilities"]["drop"]).contains(&"ALL") {
            v.push(format!("container {}: does not drop ALL capabilities", name(c)));
        }
        for cap in strs(&sc["capabilities"]["add"]) {
            if cap != "NET_BIND_SERVICE" {
                v.push(format!("container {}: adds capability {cap} (restricted)", name(c)));
            }
        }
    }
    v
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every YAML file under deploy/, with its text.
fn deploy_files() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                out.push((p, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&deploy_dir(), &mut out);
    assert!(!out.is_empty(), "no YAML in {}", deploy_dir().display());
    out
}

/// Every object of every file in deploy/.
fn deploy_objects() -> Vec<Value> {
    let mut objects = Vec::new();
    for (path, text) in deploy_files() {
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if !v.is_null() {
                objects.push(v);
            }
        }
    }
    objects
}

/// The Pod template of a workload object (metadata, spec), if it has one.
fn pod_template(obj: &Value) -> Option<(&Value, &Value)> {
    let t = match obj["kind"].as_str()? {
        "Pod" => obj,
        "Deployment" | "DaemonSet" | "StatefulSet" | "ReplicaSet" | "Job" | "ReplicationController" => {
            &obj["spec"]["template"]
        }
        "CronJob" => &obj["spec"]["jobTemplate"]["spec"]["template"],
        _ => return None,
    };
    Some((&t["metadata"], &t["spec"]))
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("deploy/ has no {kind} {name}"))
}

#[test]
fn namespace_enforce_level_admits_every_pod_template_and_the_next_stricter_refuses_the_speaker() {
    let objects = deploy_objects();
    let ns = find(&objects, "Namespace", NAMESPACE);
    let labels = &ns["metadata"]["labels"];
    let enforce = labels[ENFORCE].as_str().and_then(Level::parse);
    let enforce = enforce.unwrap_or_else(|| panic!("Namespace {NAMESPACE}: no valid {ENFORCE} label: {labels}"));
    for mode in ["audit", "warn"] {
        let key = format!("pod-security.kubernetes.io/{mode}");
        if let Some(l) = labels.get(&key) {
            assert!(l.as_str().and_then(Level::parse).is_some(), "Namespace {NAMESPACE}: {key}: {l} is no level");
        }
    }

    let mut templates = 0;
    for obj in &objects {
        let Some((meta, spec)) = pod_template(obj) else { continue };
        templates += 1;
        let what = format!("{} {}", obj["kind"], obj["metadata"]["name"]);
        assert_eq!(obj["metadata"]["namespace"], NAMESPACE, "{what} is outside {NAMESPACE}");
        let refused = violations(enforce, meta, spec);
        assert!(refused.is_empty(), "{ENFORCE}={enforce:?} refuses {what}: {refused:?}");
    }
    assert!(templates >= 2, "expected the controller's and the speaker's Pod templates, found {templates}");

    let speaker = find(&objects, "DaemonSet", "openelb-speaker");
    let (meta, spec) = pod_template(speaker).unwrap_or_else(|| panic!("the speaker has no Pod template"));
    let stricter = enforce.stricter().unwrap_or_else(|| panic!("{ENFORCE}={enforce:?} admits a host-network speaker?"));
    let refused = violations(stricter, meta, spec);
    assert!(!refused.is_empty(), "{stricter:?} admits the speaker too: {ENFORCE}={enforce:?} is broader than needed");
    // What the speaker needs and baseline refuses: the host's network and its three capabilities, nothing else.
    if stricter == Level::Baseline {
        assert_eq!(
            refused,
            [
                "hostNetwork: true",
                "container speaker: adds capability NET_ADMIN",
                "container speaker: adds capability NET_RAW",
                "container speaker: adds capability SYS_NICE"
            ],
            "the speaker asks baseline for more than deploy/30-speaker.yaml's comment says"
        );
    }

    // The controller would run under the strictest level.
    let controller = find(&objects, "Deployment", "openelb-controller");
    let (meta, spec) = pod_template(controller).unwrap_or_else(|| panic!("the controller has no Pod template"));
    assert_eq!(violations(Level::Restricted, meta, spec), Vec::<String>::new());
}

/// The evaluator itself: a Pod that meets restricted, and one change at a time that each level must refuse.
#[test]
fn evaluator_refuses_each_check_at_its_level() {
    let meta = json!({});
    let good = json!({
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "c", "ports": [{"containerPort": 8080}],
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
        "volumes": [{"name": "v", "configMap": {"name": "x"}}],
    });
    for level in [Level::Privileged, Level::Baseline, Level::Restricted] {
        assert_eq!(violations(level, &meta, &good), Vec::<String>::new(), "{level:?}");
    }
    let set = |path: &[&str], value: Value| {
        let mut pod = good.clone();
        let mut at = &mut pod;
        for key in path {
            at = match key.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[*key],
            };
        }
        *at = value;
        pod
    };
    let c = |rest: &[&'static str]| [&["containers", "0"], rest].concat();
    let cases: Vec<(&str, Value, Level)> = vec![
        ("hostNetwork", set(&["hostNetwork"], json!(true)), Level::Baseline),
        ("hostPID", set(&["hostPID"], json!(true)), Level::Baseline),
        ("hostIPC", set(&["hostIPC"], json!(true)), Level::Baseline),
        ("hostPort", set(&c(&["ports", "0", "hostPort"]), json!(8080)), Level::Baseline),
        ("privileged", set(&c(&["securityContext", "privileged"]), json!(true)), Level::Baseline),
        ("NET_ADMIN", set(&c(&["securityContext", "capabilities", "add"]), json!(["NET_ADMIN"])), Level::Baseline),
        ("hostPath", set(&["volumes", "0"], json!({"name": "h", "hostPath": {"path": "/"}})), Level::Baseline),
        (
            "seccomp Unconfined",
            set(&["securityContext", "seccompProfile", "type"], json!("Unconfined")),
            Level::Baseline,
        ),
        ("CHOWN", set(&c(&["securityContext", "capabilities", "add"]), json!(["CHOWN"])), Level::Restricted),
        ("runAsNonRoot false", set(&["securityContext", "runAsNonRoot"], json!(false)), Level::Restricted),
        ("runAsUser 0", set(&c(&["securityContext", "runAsUser"]), json!(0)), Level::Restricted),
        (
            "allowPrivilegeEscalation",
            set(&c(&["securityContext", "allowPrivilegeEscalation"]), json!(true)),
            Level::Restricted,
        ),
        ("no seccompProfile", set(&["securityContext", "seccompProfile"], Value::Null), Level::Restricted),
        ("no drop ALL", set(&c(&["securityContext", "capabilities", "drop"]), json!([])), Level::Restricted),
        ("gitRepo volume", set(&["volumes", "0"], json!({"name": "g", "gitRepo": {}})), Level::Restricted),
    ];
    for (what, pod, first) in cases {
        for level in [Level::Privileged, Level::Baseline, Level::Restricted] {
            let refused = !violations(level, &meta, &pod).is_empty();
            assert_eq!(refused, level >= first, "{what} at {level:?}: refused {refused}");
        }
    }
}

#[test]
fn speaker_declares_no_ports_and_deploy_avoids_metallb_ports() {
    let objects = deploy_objects();
    let speaker = find(&objects, "DaemonSet", "openelb-speaker");
    let (_, spec) = pod_template(speaker).unwrap_or_else(|| panic!("the speaker has no Pod template"));
    for c in containers(spec) {
        assert!(c.get("ports").is_none(), "speaker container {} declares ports: {}", c["name"], c["ports"]);
        let probes = ["livenessProbe", "readinessProbe"].map(|p| c[p]["httpGet"]["port"].as_u64());
        assert_eq!(probes, [Some(8477), Some(8477)], "speaker container {}: probes not on 8477", c["name"]);
    }
    for (path, text) in deploy_files() {
        for port in ["7472", "7473", "7946"] {
            assert!(!text.contains(port), "{} mentions {port} (MetalLB's speaker ports)", path.display());
        }
    }
    for obj in &objects {
        let found = host_ports(obj);
        assert!(found.is_empty(), "{} {} has hostPorts: {found:?}", obj["kind"], obj["metadata"]["name"]);
    }
}

/// Every `hostPort` field anywhere in an object.
fn host_ports(v: &Value) -> Vec<Value> {
    match v {
        Value::Object(o) => {
            o.iter().flat_map(|(k, x)| if k == "hostPort" { vec![x.clone()] } else { host_ports(x) }).collect()
        }
        Value::Array(a) => a.iter().flat_map(host_ports).collect(),
        _ => Vec::new(),
    }
}

/// deploy/'s `image:`, the names the lab loads (openelb_lab::images) and scripts/image.sh's tags are one image.
#[test]
fn deploy_lab_and_image_script_name_the_same_images() {
    use openelb_lab::images::{ALL, KUBIA, OPENELB, PAUSE};
    let objects = deploy_objects();
    let mut seen = 0;
    for obj in &objects {
        let Some((_, spec)) = pod_template(obj) else { continue };
        for c in containers(spec) {
            let image = c["image"].as_str().unwrap_or_default();
            assert_eq!(
                format!("docker.io/library/{image}"),
                OPENELB.name,
                "{} {}",
                obj["kind"],
                obj["metadata"]["name"]
            );
            seen += 1;
        }
    }
    assert!(seen >= 2);
    assert_eq!(OPENELB.name, format!("docker.io/library/openelb-rs:{}", env!("CARGO_PKG_VERSION")));
    let script = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/image.sh"))
        .unwrap_or_else(|e| panic!("scripts/image.sh: {e}"));
    assert!(script.contains("openelb_image=docker.io/library/openelb-rs:$version"));
    for image in [KUBIA, PAUSE] {
        assert!(script.contains(&format!("_image={}\n", image.name)), "scripts/image.sh does not build {}", image.name);
    }
    // The script's archive_of: the name after its last '/', ':' turned into '_'.
    for image in ALL {
        let last = image.name.rsplit('/').next().unwrap_or_default();
        assert_eq!(image.archive, format!("{}.tar", last.replace(':', "_")));
    }
}
