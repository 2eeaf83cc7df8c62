//! The daemon's HTTP server holds against clients that open connections and never finish a
//! request: each gets `header_timeout` to send its request head, and at most
//! `max_connections` are open at once, so the rest wait in the kernel's queue and are served
//! as soon as a slot frees (before, with `axum::serve`, such connections stayed open forever).
//! A client that stops reading is dropped after `send_timeout`, and one client holding
//! thousands of requests is refused before anyone else is.

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

/// A small live channel, so the tests can ask for manifests and live-edge segments.
const CHANNEL: &str = "[[channels]]
name = \"t\"
input = \"test:320x180@15\"
ladder = \"180:300k,90:120k\"
preset = \"ultrafast\"
segment_duration = 1
dvr_window = 30
";

/// Time to answer `path`, from a client of its own.
fn timed_get(d: &Daemon, path: &str) -> Duration {
    let started = Instant::now();
    let r = d.get(path);
    let took = started.elapsed();
    assert_eq!(r.status(), 200, "{path}");
    took
}

/// Raises this process's open-files limit to its hard limit (the tests open thousands).
fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

#[test]
fn half_sent_requests_are_closed_after_the_header_timeout() {
    raise_open_files();
    let d = Daemon::start(&format!("header_timeout = 5\n{CHANNEL}"));
    d.wait_for("/live/t/master.m3u8", Duration::from_secs(30));
    let addr = address(&d);
    let mut held: Vec<TcpStream> = (0..2000).map(|_| half_request(&addr)).collect();
    // The newest is still open well before the timeout...
    held[1999].set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let early = held[1999].read(&mut byte);
    assert!(
        matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "closed before the timeout: {early:?}"
    );
    held[1999].set_nonblocking(false).unwrap();
    // While they are held, the daemon answers everyone else at once.
    for path in [
        "/healthz",
        "/live/t/master.m3u8",
        "/live/t/180p/index.m3u8",
        "/live/t/manifest.mpd",
    ] {
        let mut took: Vec<Duration> = (0..5).map(|_| timed_get(&d, path)).collect();
        took.sort();
        assert!(
            took[2] < Duration::from_millis(100),
            "{path} took {took:?} with 2000 half-sent requests held"
        );
    }
    // ...and every one closed by the server after it.
    let start = Instant::now();
    for (i, s) in held.iter_mut().enumerate() {
        assert!(
            closed_by_server(s, Duration::from_secs(8)),
            "connection {i} still open {:?} after the test started waiting",
            start.elapsed()
        );
    }
    // The daemon serves as before.
    assert_eq!(d.get("/healthz").status(), 200);
}

/// Sends a whole request on a new connection from 127.0.0.1 and leaves it waiting.
fn held_request(addr: &str, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s
}

/// The number of the newest segment in a media playlist.
fn newest_segment(d: &Daemon, playlist: &str) -> u64 {
    let pl = d.media_playlist(playlist);
    pl.media_sequence + pl.segments.len() as u64 - 1
}

#[test]
fn one_client_holding_thousands_of_requests_does_not_starve_the_others() {
    raise_open_files();
    // Eight-second segments: the next one is held for seconds, long enough to pile up.
    let d = Daemon::start(&CHANNEL.replace("segment_duration = 1", "segment_duration = 8"));
    d.wait_for("/live/t/master.m3u8", Duration::from_secs(30));
    let addr = address(&d);
    // Start just after a segment is published, so the next one is a whole segment away
    // while the requests pile up (on a busy machine they take seconds to send).
    let before = newest_segment(&d, "/live/t/180p/index.m3u8");
    let waiting = Instant::now();
    let edge = loop {
        let newest = newest_segment(&d, "/live/t/180p/index.m3u8");
        if newest > before {
            break newest;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(20),
            "no new segment"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let seen = Instant::now();
    // One client (127.0.0.1) asks 4000 times for the segment after the newest: each is held.
    let next = edge + 1;
    let path = format!("/live/t/180p/{next}.m4s");
    let mut held: Vec<TcpStream> = (0..4000).map(|_| held_request(&addr, &path)).collect();
    std::thread::sleep(Duration::from_millis(300));
    // Another client (127.0.0.2) gets the manifests and the live edge of every rung.
    let other = reqwest::blocking::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let base = &d.base;
    for path in [
        "/live/t/master.m3u8".to_string(),
        "/live/t/manifest.mpd".to_string(),
        "/live/t/180p/index.m3u8".to_string(),
        "/live/t/90p/index.m3u8".to_string(),
        format!("/live/t/180p/{edge}.m4s"),
        format!("/live/t/90p/{edge}.m4s"),
    ] {
        let r = other.get(format!("{base}{path}")).send().unwrap();
        assert_eq!(r.status(), 200, "{path} for another client");
    }
    // The greedy client was the one refused: most of its requests got 503 at once.
    let sent_for = seen.elapsed();
    let mut answers: std::collections::BTreeMap<String, usize> = Default::default();
    for s in held.iter_mut().rev().take(200) {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut head = [0u8; 12];
        let answer = match s.read_exact(&mut head) {
            Ok(()) => String::from_utf8_lossy(&head[9..]).into_owned(),
            Err(e) => format!("{:?}", e.kind()),
        };
        *answers.entry(answer).or_default() += 1;
    }
    let refused = answers.get("503").copied().unwrap_or(0);
    assert!(
        refused > 100,
        "{refused} of the last 200 greedy requests refused: {answers:?} \
         ({sent_for:?} from segment {edge} seen to the other client's last answer)"
    );
}

#[test]
fn a_client_that_stops_reading_is_dropped_after_the_send_timeout() {
    let d = Daemon::start("send_timeout = 1\n");
    let folder = d.data_dir().join("vod").join("big");
    std::fs::create_dir_all(&folder).unwrap();
    let size = 64 << 20;
    std::fs::write(folder.join("0.m4s"), vec![1u8; size]).unwrap();
    let mut s = held_request(&address(&d), "/vod/big/0.m4s");
    // The client reads nothing for longer than the send timeout...
    std::thread::sleep(Duration::from_secs(4));
    // ...so the server gave up: what arrives is what was buffered, then the end.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut received = Vec::new();
    let end = s.read_to_end(&mut received);
    assert!(
        end.is_ok()
            || end
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "{end:?}"
    );
    assert!(
        received.len() < size,
        "the whole {size} bytes arrived: the connection was kept"
    );
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
        ("send_timeout = 0\n", "send_timeout"),
        ("max_in_flight_per_client = 0\n", "max_in_flight_per_client"),
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
