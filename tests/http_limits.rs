//! The daemon's HTTP server holds against clients that open connections and never finish a
//! request: each gets `header_timeout` to send its request head, and at most
//! `max_connections` are open at once, so the rest wait in the kernel's queue and are served
//! as soon as a slot frees (before, with `axum::serve`, such connections stayed open forever).

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use daemon::Daemon;

fn address(d: &Daemon) -> String {
    d.base.trim_start_matches("http://").to_string()
}

/// Opens a connection and sends half a request line.
fn half_request(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /healthz HT").unwrap();
    s
}

/// The server closed `s` (end of stream, or a reset) within `within`.
fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn half_sent_requests_are_closed_after_the_header_timeout() {
    let d = Daemon::start("header_timeout = 2\n");
    let addr = address(&d);
    let mut held: Vec<TcpStream> = (0..200).map(|_| half_request(&addr)).collect();
    // Still open well before the timeout...
    std::thread::sleep(Duration::from_millis(500));
    held[0].set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let early = held[0].read(&mut byte);
    assert!(
        matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "closed before the timeout: {early:?}"
    );
    held[0].set_nonblocking(false).unwrap();
    // ...and every one closed by the server after it.
    let start = Instant::now();
    for (i, s) in held.iter_mut().enumerate() {
        assert!(
            closed_by_server(s, Duration::from_secs(6)),
            "connection {i} still open {:?} after the test started waiting",
            start.elapsed()
        );
    }
    // The daemon serves as before.
    assert_eq!(d.get("/healthz").status(), 200);
}

#[test]
fn connections_beyond_the_cap_wait_and_are_then_served() {
    let d = Daemon::start("header_timeout = 2\nmax_connections = 8\n");
    let addr = address(&d);
    let _held: Vec<TcpStream> = (0..8).map(|_| half_request(&addr)).collect();
    std::thread::sleep(Duration::from_millis(300));
    // A ninth client is not served while the eight hold every slot...
    let mut ninth = TcpStream::connect(&addr).unwrap();
    ninth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    ninth
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        ninth.read(&mut buf).is_err(),
        "served beyond max_connections"
    );
    // ...and is served once the header timeout frees them.
    ninth
        .set_read_timeout(Some(Duration::from_secs(8)))
        .unwrap();
    let mut reply = String::new();
    ninth.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let warned = d
        .stderr_lines()
        .iter()
        .any(|l| l.contains("max_connections"));
    assert!(warned, "no warning about the connection cap");
}

#[test]
fn limits_that_cannot_work_are_refused_at_start() {
    for (config, says) in [
        ("max_in_flight = 0\n", "max_in_flight"),
        ("max_connections = 0\n", "max_connections"),
        ("header_timeout = 0\n", "header_timeout"),
    ] {
        let dir = common::tempdir();
        let path = dir.path().join("encore.toml");
        std::fs::write(&path, format!("listen = \"127.0.0.1:0\"\n{config}")).unwrap();
        let out = common::encore()
            .args(["serve", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{config}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{config}: {stderr}");
    }
}
