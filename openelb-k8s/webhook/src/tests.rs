//! The webhook over real sockets: plain HTTP for the route's answers, and TLS for the certificate it presents
//! (checked with a rustls client that trusts only the generated CA, as the API server does).

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use super::*;

fn review_body(op: &str, address: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u-1", "kind": {"group": "network.kubesphere.io", "version": "v1alpha2", "kind": "Eip"},
                    "name": "a", "operation": op,
                    "object": {"apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip", "metadata": {"name": "a"},
                               "spec": {"address": address, "protocol": "vip", "interface": "eth0"}}}
    }))
    .unwrap()
}

fn request_bytes(body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// Status code and body of an HTTP/1.1 response.
fn parse_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw).into_owned();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

fn static_lister(eips: Vec<Value>) -> Lister {
    Arc::new(move || {
        let eips = eips.iter().map(|v| serde_json::from_value(v.clone()).unwrap()).collect();
        Box::pin(async move { Ok(Existing { eips, unreadable: vec![] }) }) as server::ListFuture
    })
}

async fn post_plain(addr: SocketAddr, body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&request_bytes(body)).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    parse_response(&out)
}

#[tokio::test]
async fn the_route_answers_reviews_and_refuses_malformed_bodies_with_400() {
    let existing = json!({"apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip", "metadata": {"name": "b"},
                          "spec": {"address": "192.0.2.0/28"}});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(listener, router(static_lister(vec![existing]))).await });

    let (code, body) = post_plain(addr, &review_body("CREATE", "192.0.2.8/29")).await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["response"]["uid"], "u-1");
    assert_eq!(v["response"]["allowed"], false);
    assert!(v["response"]["status"]["message"].as_str().unwrap().contains("overlaps Eip/b"), "{body}");

    let (code, body) = post_plain(addr, &review_body("CREATE", "192.0.2.16/29")).await;
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["response"]["allowed"], true, "{body}");

    // An object that does not even decode is answered with a denial naming field and value, never an error.
    let mut bad: Value = serde_json::from_slice(&review_body("CREATE", "192.0.2.16/29")).unwrap();
    bad["request"]["object"]["spec"]["priority"] = json!({"a": 1});
    let (code, body) = post_plain(addr, &serde_json::to_vec(&bad).unwrap()).await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["response"]["allowed"], false, "{body}");
    let message = v["response"]["status"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with(r#"Eip/a: spec.priority="{\"a\":1}": does not decode"#), "{body}");

    let (code, body) = post_plain(addr, b"\x00\xff{{").await;
    assert_eq!(code, 400);
    assert!(body.contains("not an admission.k8s.io/v1 AdmissionReview"), "{body}");
    task.abort();
}

/// An HTTPS POST with a client that trusts only `ca_pem` and expects `host` in the certificate.
fn post_tls(addr: SocketAddr, host: &str, ca_pem: &str, body: &[u8]) -> Result<(u16, String), String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(&request_bytes(body)).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        // The server may close without close_notify once the response is out.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    Ok(parse_response(&out))
}

/// A client for a server that is never reached: reviews that need the Eip list fail, the others do not.
fn unreachable_client() -> kube::Client {
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

#[tokio::test]
async fn tls_from_a_directory_is_served_and_reloaded_when_the_files_change() {
    let hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let dir = tempfile::tempdir().unwrap();
    let write = |b: &CertBundle| {
        std::fs::write(dir.path().join("tls.crt"), &b.cert_pem).unwrap();
        std::fs::write(dir.path().join("tls.key"), &b.key_pem).unwrap();
    };
    let first = certs::generate(&hosts, SystemTime::now()).unwrap();
    write(&first);
    let config = WebhookConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        certs: CertSource::Dir(dir.path().to_path_buf()),
        recheck: Duration::from_millis(50),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, run) = bind(unreachable_client(), config, async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    let task = tokio::spawn(run);

    let ca = first.ca_pem.clone();
    let (code, body) =
        tokio::task::spawn_blocking(move || post_tls(addr, "127.0.0.1", &ca, &review_body("DELETE", "x")))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["response"]["allowed"], true);

    // Without the Eip list a CREATE cannot be judged: an error status, so failurePolicy decides.
    let ca = first.ca_pem.clone();
    let (code, body) =
        tokio::task::spawn_blocking(move || post_tls(addr, "localhost", &ca, &review_body("CREATE", "192.0.2.1")))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("cannot check Eip \"a\""), "{body}");

    // A renewed certificate from another CA: served after the next recheck, without a restart.
    let second = certs::generate(&hosts, SystemTime::now()).unwrap();
    write(&second);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ca = second.ca_pem.clone();
        let r = tokio::task::spawn_blocking(move || post_tls(addr, "127.0.0.1", &ca, &review_body("DELETE", "x")))
            .await
            .unwrap();
        match r {
            Ok((200, _)) => break,
            other => assert!(Instant::now() < deadline, "the renewed certificate was never served: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ca = first.ca_pem.clone();
    let old = tokio::task::spawn_blocking(move || post_tls(addr, "127.0.0.1", &ca, &review_body("DELETE", "x")))
        .await
        .unwrap();
    assert!(old.is_err(), "the old CA still verifies: {old:?}");

    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_missing_certificate_directory_or_a_taken_port_fails_at_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = WebhookConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        certs: CertSource::Dir(dir.path().join("absent")),
        recheck: DEFAULT_RECHECK,
    };
    let err = bind(unreachable_client(), config, async {}).await.err().unwrap();
    assert!(err.to_string().contains("absent/tls.crt"), "{err}");

    let b = certs::generate(&["127.0.0.1".to_string()], SystemTime::now()).unwrap();
    std::fs::write(dir.path().join("tls.crt"), &b.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &b.key_pem).unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let config = WebhookConfig { addr, certs: CertSource::Dir(dir.path().to_path_buf()), recheck: DEFAULT_RECHECK };
    let err = bind(unreachable_client(), config, async {}).await.err().unwrap();
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}
