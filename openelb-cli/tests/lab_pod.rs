//! The Pods' HTTP responder as the lab runs it (`openelb-cli lab pod-http`), on loopback: needs no root.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `openelb-cli lab pod-http ARGS --listen 127.0.0.1:0` and the address it says it listens on.
fn pod_http(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_openelb-cli"))
        .args(["lab", "pod-http", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{line:?}")).to_string();
    (child, addr)
}

#[test]
fn pod_http_answers_a_curl_style_get_with_the_pod_name() {
    let (mut child, addr) = pod_http(&["--name", "vip-openelb-test"]);
    let mut replies = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: 192.0.2.91\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        replies.push(resp);
    }
    let _ = child.kill();
    let _ = child.wait();
    for resp in replies {
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(head.contains(&format!("Content-Length: {}", "You've hit vip-openelb-test\n".len())), "{head}");
        assert!(head.contains("Connection: close"));
        assert_eq!(body, "You've hit vip-openelb-test\n");
    }
}

/// As the kubia-lab image runs it: no `--name` (it answers with the host name, a container's Pod name) and
/// SIGTERM ends it at once, as it must when it is a container's PID 1.
#[test]
fn pod_http_without_a_name_answers_with_the_host_name_and_exits_on_sigterm() {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let (mut child, addr) = pod_http(&[]);
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /any/path HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    let status =
        openelb_lab::eventually(Duration::from_secs(10), Duration::from_millis(20), || child.try_wait().ok().flatten());
    if status.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(resp.split_once("\r\n\r\n").map(|(_, b)| b), Some(format!("You've hit {host}\n").as_str()), "{resp}");
    assert_eq!(status.map(|s| s.code()), Ok(Some(0)), "pod-http did not exit 0 on SIGTERM");
}
