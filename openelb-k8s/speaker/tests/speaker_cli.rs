//! The `openelb-speaker` command line: help text and refusals of bad flag values, which must name the flag
//! and the value. No root needed (every case fails before touching the network).

mod support;

use support::cli::{speaker, stderr};

#[test]
fn help_explains_every_flag_and_what_the_speaker_does() {
    let o = speaker(&["--help"], &[]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--node-name",
        "--manifests",
        "--interface",
        "--advert-interval",
        "--vrid-range",
        "--vrid-offset",
        "--garp-count",
        "--garp-spacing",
        "--preempt-delay",
        "--no-preempt",
        "--unicast-peer",
        "--log-format",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help:\n{text}");
    }
    for idea in ["VRRPv3", "SIGTERM", "SIGHUP", "RUST_LOG", "protocol: vip"] {
        assert!(text.contains(idea), "{idea:?} missing from --help:\n{text}");
    }
}

#[test]
fn bad_flag_values_are_refused_naming_flag_and_value() {
    let base = ["--node-name", "n1", "--manifests", "/nonexistent"];
    for (flag, value, why) in [
        ("--advert-interval", "5ms", "multiple of 10ms"),
        ("--advert-interval", "41s", "between 10ms and 40.95s"),
        ("--advert-interval", "100", "needs a unit"),
        ("--vrid-range", "0-10", "VRIDs are 1-255"),
        ("--vrid-range", "20-10", "before its start"),
        ("--garp-spacing", "fast", "needs a unit"),
        ("--preempt-delay", "-1s", "non-negative"),
        ("--unicast-peer", "not-an-ip", ""),
    ] {
        let mut args = base.to_vec();
        let pair = format!("{flag}={value}");
        args.push(&pair);
        let o = speaker(&args, &[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(err.contains(flag) && err.contains(value) && err.contains(why), "{flag} {value}: {err}");
    }
}

#[test]
fn unreadable_manifests_fail_with_the_path_in_the_message() {
    let o = speaker(&["--node-name", "n1", "--manifests", "/nonexistent/oelb-manifests"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent/oelb-manifests"), "{}", stderr(&o));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.yaml"), "kind: Eip\napiVersion: network.kubesphere.io/v1alpha2\nspec: [")
        .unwrap();
    let o = speaker(&["--node-name", "n1", "--manifests", dir.path().to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bad.yaml"), "{}", stderr(&o));
}
