//! The Eip admission webhook called by a real kube-apiserver (v1.20.2, `scripts/kapi.sh`).
//!
//! The webhook runs in-process (`webhook::Background`) on 127.0.0.1 with a self-managed certificate kept in a
//! test Secret, and a test ValidatingWebhookConfiguration calls it by URL (no Service needed: the apiserver runs
//! on this host). The configuration's objectSelector matches only Eips carrying [`LABEL`], so tests running in
//! parallel against the same apiserver, which create Eips without it, never reach this webhook. kubectl is the
//! client, so the messages checked are the ones a user sees. The tests need `KAPI_KUBECONFIG` (ignored otherwise;
//! scripts/test.sh starts the apiserver and runs them).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use openelb::webhook::{Background, CertSource, WebhookConfig};

use openelb_lab::kubectl::{self, crd_ready, run, run_with_stdin};
use openelb_lab::require::require_kubeconfig;

const CONFIG: &str = "oelb-webhook-test";
const WEBHOOK_NAME: &str = "oelb-webhook-test.network.kubesphere.io";
const SECRET_NS: &str = "default";
const SECRET: &str = "oelb-webhook-test-cert";
const LABEL: &str = "oelb-test/webhook";
const EIPS: [&str; 4] = ["oelb-wh-a", "oelb-wh-b", "oelb-wh-bad", "oelb-wh-v1"];
/// The tests share the configuration and Secret names: they take turns.
static SERIAL: Mutex<()> = Mutex::new(());

/// Removes what the test created, also after a failure: the configuration first, so no later write calls a
/// webhook that is gone.
struct Cleanup<'a>(&'a str);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let kc = self.0;
        let _ = run(kc, &["delete", "validatingwebhookconfiguration", CONFIG, "--ignore-not-found"]);
        for eip in EIPS {
            let _ = run(kc, &["patch", "eip", eip, "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
            let _ = run(kc, &["delete", "eip", eip, "--ignore-not-found", "--wait=false"]);
        }
        let _ = run(kc, &["-n", SECRET_NS, "delete", "secret", SECRET, "--ignore-not-found"]);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn configuration(port: u16) -> String {
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: {CONFIG}
webhooks:
  - name: {WEBHOOK_NAME}
    clientConfig:
      url: https://127.0.0.1:{port}/validate-eip
    rules:
      - apiGroups: ["network.kubesphere.io"]
        apiVersions: ["v1alpha1", "v1alpha2"]
        resources: ["eips"]
        operations: ["CREATE", "UPDATE"]
        scope: "Cluster"
    objectSelector:
      matchLabels:
        {LABEL}: "true"
    sideEffects: None
    admissionReviewVersions: ["v1"]
    failurePolicy: Fail
    timeoutSeconds: 5
"#
    )
}

fn webhook_config(port: u16) -> WebhookConfig {
    WebhookConfig {
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        certs: CertSource::SelfManaged {
            secret_namespace: SECRET_NS.to_string(),
            secret_name: SECRET.to_string(),
            service_name: "openelb-webhook".to_string(),
            service_namespace: "openelb-system".to_string(),
            webhook_config_name: CONFIG.to_string(),
            extra_hosts: vec!["127.0.0.1".to_string()],
        },
        recheck: Duration::from_secs(60),
    }
}

fn eip(name: &str, version: &str, address: &str, labelled: bool) -> String {
    let labels = if labelled { format!("\n  labels:\n    {LABEL}: \"true\"") } else { String::new() };
    format!(
        "apiVersion: network.kubesphere.io/{version}\nkind: Eip\nmetadata:\n  name: {name}{labels}\nspec:\n  \
         address: {address}\n  protocol: layer2\n  interface: eth0\n"
    )
}

/// `kubectl apply` of `manifest` (with extra flags): Ok(stdout) or Err(stderr).
fn apply(kc: &str, manifest: &str, extra: &[&str]) -> Result<String, String> {
    let mut args = vec!["apply", "-f", "-"];
    args.extend_from_slice(extra);
    let out = run_with_stdin(kc, &args, manifest);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn refused(kc: &str, manifest: &str, extra: &[&str]) -> String {
    match apply(kc, manifest, extra) {
        Ok(out) => panic!("accepted, expected a refusal: {out}\n{manifest}"),
        Err(stderr) => {
            assert!(stderr.contains(&format!("admission webhook \"{WEBHOOK_NAME}\" denied the request")), "{stderr}");
            stderr
        }
    }
}

fn ca_bundle(kc: &str) -> String {
    kubectl::stdout(
        kc,
        &["get", "validatingwebhookconfiguration", CONFIG, "-o", "jsonpath={.webhooks[0].clientConfig.caBundle}"],
    )
}

fn secret_key(kc: &str, key: &str) -> String {
    let path = format!("jsonpath={{.data.{}}}", key.replace('.', "\\."));
    kubectl::stdout(kc, &["-n", SECRET_NS, "get", "secret", SECRET, "-o", &path])
}

#[test]
#[ignore = "needs the test kube-apiserver: KAPI_KUBECONFIG, started by scripts/test.sh"]
fn the_apiserver_refuses_bad_eips_through_the_webhook_and_admits_good_ones() {
    let kc = require_kubeconfig();
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    crd_ready(&kc);
    let _cleanup = Cleanup(&kc);
    let port = free_port();
    apply(&kc, &configuration(port), &[]).unwrap();

    let first = Background::spawn(Path::new(&kc), webhook_config(port)).unwrap();
    assert_eq!(first.addr().port(), port);

    // The webhook created the Secret and made the configuration trust its CA.
    let ca = secret_key(&kc, "ca.crt");
    assert!(!ca.is_empty(), "no ca.crt in Secret {SECRET_NS}/{SECRET}");
    assert_eq!(ca_bundle(&kc), ca, "caBundle was not set to the Secret's CA");
    let tls_type = kubectl::stdout(&kc, &["-n", SECRET_NS, "get", "secret", SECRET, "-o", "jsonpath={.type}"]);
    assert_eq!(tls_type, "kubernetes.io/tls");

    // A bad address: refused, the message names the object, the field and the value.
    let stderr = refused(&kc, &eip("oelb-wh-bad", "v1alpha2", "192.0.2.300", true), &[]);
    assert!(stderr.contains(r#"Eip/oelb-wh-bad: spec.address="192.0.2.300""#), "{stderr}");
    // Dry runs are reviewed too; an Eip without the label is not this test's webhook's business.
    refused(&kc, &eip("oelb-wh-bad", "v1alpha2", "192.0.2.300", true), &["--dry-run=server"]);
    let out = apply(&kc, &eip("oelb-wh-bad", "v1alpha2", "192.0.2.300", false), &["--dry-run=server"]).unwrap();
    assert!(out.contains("(server dry run)"), "{out}");

    // A good one is admitted; one overlapping it is refused, in either served version.
    // It is layer2, which this build does not announce: admitted with a warning kubectl shows.
    let out = run_with_stdin(&kc, &["apply", "-f", "-"], &eip("oelb-wh-a", "v1alpha2", "2001:db8:7e57::/120", true));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(r#"Warning: Eip/oelb-wh-a: spec.protocol="layer2": protocol layer2 is not implemented"#),
        "{stderr}"
    );
    let stderr = refused(&kc, &eip("oelb-wh-b", "v1alpha2", "2001:db8:7e57::80-2001:db8:7e57::1ff", true), &[]);
    assert!(stderr.contains(r#"Eip/oelb-wh-b: spec.address="2001:db8:7e57::80-2001:db8:7e57::1ff""#), "{stderr}");
    assert!(stderr.contains("overlaps Eip/oelb-wh-a"), "{stderr}");
    let stderr = refused(&kc, &eip("oelb-wh-v1", "v1alpha1", "2001:db8:7e57::ff", true), &[]);
    assert!(stderr.contains("overlaps Eip/oelb-wh-a"), "{stderr}");
    apply(&kc, &eip("oelb-wh-b", "v1alpha2", "2001:db8:7e57::100-2001:db8:7e57::1ff", true), &[]).unwrap();

    // An update is reviewed as well, and a refused one changes nothing.
    let stderr = refused(&kc, &eip("oelb-wh-a", "v1alpha2", "2001:db8:7e57::/119", true), &[]);
    assert!(stderr.contains("overlaps Eip/oelb-wh-b"), "{stderr}");
    let address = kubectl::stdout(&kc, &["get", "eip", "oelb-wh-a", "-o", "jsonpath={.spec.address}"]);
    assert_eq!(address, "2001:db8:7e57::/120");
    // Metadata-only updates of a valid Eip (what the controller's finalizer patch is) pass.
    kubectl::stdout(&kc, &["label", "eip", "oelb-wh-a", "oelb-test/touched=yes"]);

    // A second replica finds the Secret valid and serves the same certificate: nothing changes.
    let tls_crt = secret_key(&kc, "tls.crt");
    let second = Background::spawn(Path::new(&kc), webhook_config(0)).unwrap();
    assert_eq!(secret_key(&kc, "tls.crt"), tls_crt, "a second replica replaced a valid certificate");
    assert_eq!(ca_bundle(&kc), ca);
    second.stop().unwrap();

    // A broken Secret is replaced on start, and the previous CA stays trusted so the replica still serving the
    // old certificate (the one the configuration's URL points at) keeps working.
    let broken = r#"{"data":{"tls.key":"bm90IGEga2V5"}}"#;
    kubectl::stdout(&kc, &["-n", SECRET_NS, "patch", "secret", SECRET, "--type=merge", "-p", broken]);
    let third = Background::spawn(Path::new(&kc), webhook_config(0)).unwrap();
    let new_ca = secret_key(&kc, "ca.crt");
    assert_ne!(new_ca, ca, "the broken Secret was kept");
    assert_ne!(secret_key(&kc, "tls.crt"), tls_crt);
    assert_eq!(ca_bundle(&kc), new_ca, "caBundle does not follow the rotated CA");
    let stderr = refused(&kc, &eip("oelb-wh-bad", "v1alpha2", "192.0.2.300", true), &[]);
    assert!(stderr.contains(r#"spec.address="192.0.2.300""#), "{stderr}");
    third.stop().unwrap();
    first.stop().unwrap();
}

/// Status code of an HTTPS POST of `body` to `port`, trusting only the PEM CAs in `ca` (curl: the test needs
/// no TLS stack of its own). Err when curl cannot connect or verify.
fn curl_status(ca: &Path, port: u16, body: &str) -> Result<String, String> {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(ca)
        .args(["-H", "Content-Type: application/json", "--data", body])
        .arg(format!("https://127.0.0.1:{port}/validate-eip"))
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Removes a file when the test ends.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
#[ignore = "needs the test kube-apiserver: KAPI_KUBECONFIG, started by scripts/test.sh"]
fn replicas_starting_together_serve_the_one_certificate_in_the_secret() {
    let kc = require_kubeconfig();
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    crd_ready(&kc);
    let _cleanup = Cleanup(&kc);
    let _ = run(&kc, &["-n", SECRET_NS, "delete", "secret", SECRET, "--ignore-not-found"]);

    // Both find no Secret and create one; the one that meets 409 must adopt the other's.
    let starts: Vec<_> = (0..2)
        .map(|_| {
            let kc = kc.clone();
            std::thread::spawn(move || Background::spawn(Path::new(&kc), webhook_config(0)).unwrap())
        })
        .collect();
    let replicas: Vec<Background> = starts.into_iter().map(|t| t.join().unwrap()).collect();

    let template = r#"go-template={{index .data "ca.crt" | base64decode}}"#;
    let ca_pem = kubectl::stdout(&kc, &["-n", SECRET_NS, "get", "secret", SECRET, "-o", template]);
    assert!(ca_pem.starts_with("-----BEGIN CERTIFICATE-----"), "{ca_pem}");
    let ca_file = TempFile(std::env::temp_dir().join(format!("oelb-webhook-test-ca-{}.pem", std::process::id())));
    std::fs::write(&ca_file.0, &ca_pem).unwrap();

    for r in &replicas {
        // A malformed review over a verified connection: 400 proves the TLS side, whatever the body.
        let status = curl_status(&ca_file.0, r.addr().port(), "{}");
        assert_eq!(status.as_deref(), Ok("400"), "replica on {} does not serve the Secret's certificate", r.addr());
    }
    for r in replicas {
        r.stop().unwrap();
    }
}
