//! The Pods' workload: the seed's `luksa/kubia` answers `You've hit <pod-name>` on 8080, and this does the
//! same with nothing but the standard library, so the lab needs no container runtime. The cluster lab's
//! `kubia-lab` image (scripts/image.sh) runs the same responder as its container's PID 1.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result};

/// Line printed once the socket listens; the lab waits for it before sending traffic.
pub const READY: &str = "listening";

/// Largest request head we read; anything longer gets a 431 and the connection is closed.
const MAX_HEAD: usize = 16 * 1024;

/// Where Linux keeps this UTS namespace's host name: a container's is its Pod's name, which is what the
/// original kubia answers with.
const HOSTNAME: &str = "/proc/sys/kernel/hostname";

/// This UTS namespace's host name.
pub fn hostname() -> Result<String> {
    let name = std::fs::read_to_string(HOSTNAME).with_context(|| format!("pod-http: cannot read {HOSTNAME}"))?;
    let name = name.trim();
    anyhow::ensure!(!name.is_empty(), "pod-http: {HOSTNAME} is empty");
    Ok(name.to_string())
}

/// Serves until killed; SIGTERM exits at once, also as a container's PID 1, where a signal without a handler is
/// ignored and the kubelet would wait out the whole grace period before deleting the Pod.
pub fn serve(name: &str, listen: SocketAddr) -> Result<()> {
    exit_on_sigterm();
    let listener = TcpListener::bind(listen).with_context(|| format!("pod-http: cannot listen on {listen}"))?;
    let mut out = io::stdout().lock();
    writeln!(out, "{READY} on {}", listener.local_addr()?)?;
    out.flush()?;
    drop(out);
    serve_listener(&listener, name);
    Ok(())
}

fn exit_on_sigterm() {
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        let Ok(mut term) =
            rt.block_on(async { tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) })
        else {
            return;
        };
        if rt.block_on(term.recv()).is_some() {
            std::process::exit(0);
        }
    });
}

/// Accepts forever, one thread per connection (a slow client cannot stall the others).
pub fn serve_listener(listener: &TcpListener, name: &str) {
    let body = format!("You've hit {name}\n");
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let body = body.clone();
        std::thread::spawn(move || {
            let _ = handle(stream, &body);
        });
    }
}

fn respond(stream: &mut TcpStream, status: &str, body: &str, with_body: bool) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if with_body {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Write)
}

fn handle(stream: TcpStream, body: &str) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut seen = request_line.len();
    // Read the rest of the head so the client never sees a reset for unread data.
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        seen += n;
        if n == 0 || line == "\r\n" || line == "\n" || seen > MAX_HEAD {
            break;
        }
    }
    let mut stream = stream;
    if seen > MAX_HEAD {
        return respond(&mut stream, "431 Request Header Fields Too Large", "request head too large\n", true);
    }
    let mut parts = request_line.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some("GET"), Some(_), Some(v)) if v.starts_with("HTTP/") => respond(&mut stream, "200 OK", body, true),
        (Some("HEAD"), Some(_), Some(v)) if v.starts_with("HTTP/") => respond(&mut stream, "200 OK", body, false),
        (Some(_), Some(_), Some(v)) if v.starts_with("HTTP/") => {
            respond(&mut stream, "405 Method Not Allowed", "only GET and HEAD\n", true)
        }
        _ => respond(&mut stream, "400 Bad Request", "bad request line\n", true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn start(name: &str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let name = name.to_string();
        std::thread::spawn(move || serve_listener(&listener, &name));
        addr
    }

    fn exchange(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn get_answers_with_the_pod_name_and_a_correct_length() {
        let addr = start("vip-openelb-abc");
        let resp = exchange(addr, "GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/7.88\r\nAccept: */*\r\n\r\n");
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Connection: close"));
        assert_eq!(body, "You've hit vip-openelb-abc\n");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }

    #[test]
    fn head_has_no_body_and_other_methods_are_refused() {
        let addr = start("p");
        let resp = exchange(addr, "HEAD / HTTP/1.1\r\n\r\n");
        assert!(resp.starts_with("HTTP/1.1 200 OK") && resp.ends_with("\r\n\r\n"), "{resp}");
        assert!(exchange(addr, "POST / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(exchange(addr, "garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
    }
}
