//! The Pods' HTTP responder as the lab runs it (`openelb-cli lab pod-http`), on loopback: needs no root.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

#[test]
fn pod_http_answers_a_curl_style_get_with_the_pod_name() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_openelb-cli"))
        .args(["lab", "pod-http", "--name", "vip-openelb-test", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{line:?}")).to_string();
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
