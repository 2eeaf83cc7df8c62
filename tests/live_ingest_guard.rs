//! Ingest that only the right sender can use: UDP packets from a source not allowed, SRT
//! callers without the passphrase or naming another stream id, RTMP publishers naming another
//! stream key, a connection that sends nothing. Each refused sender is named in a WARN of the
//! daemon's log (with the channel and input), only slate goes out meanwhile, and the right
//! sender is on air within 2·D of starting.

mod common;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/live_feed.rs"]
mod live_feed;

use std::time::{Duration, Instant};

use daemon::Daemon;
use live_feed::*;

/// Segment duration of the channels whose time to air is measured (the default).
const D: u32 = 2;

/// A channel with D-second segments on `input`, plus `extra` lines.
fn start_guarded(name: &str, input: &str, extra: &str) -> Daemon {
    let d = Daemon::start_with(
        &format!("{}{extra}", channel_with_segments(name, input, D)),
        &["-v"],
    );
    d.wait_for(
        &format!("/live/{name}/master.m3u8"),
        Duration::from_secs(20),
    );
    d
}

/// Starts the right sender (`start` spawns it) and checks it is on air within 2·D: the segment
/// holding its first picture starts no later than 2·D after it started.
fn on_air_within_two_segments<S>(d: &Daemon, channel: &str, start: impl FnOnce() -> S) {
    let started = now_seconds();
    let _sender = start();
    let from = (started / D as f64) as u64;
    let first = first_real_segment(d, channel, from, Duration::from_secs(20));
    let late = first as f64 * D as f64 - started;
    eprintln!("first real segment {first} starts {late:+.2} s after the sender started");
    assert!(
        late <= 2.0 * D as f64,
        "on air {late:.2} s after the sender started (segment {first}), more than 2·D"
    );
}

/// An encoder that pushes over RTMP and, as OBS or a hardware encoder does, connects again
/// whenever its connection fails (the listener is not up yet, or is being reopened).
struct RetryingPublisher {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RetryingPublisher {
    fn start(url: &str, seconds: u32) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (url, stopping) = (url.to_string(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                let mut publisher = Publisher(push(&url, "flv", H264, seconds));
                while !stopping.load(Ordering::SeqCst) && publisher.0.try_wait().unwrap().is_none()
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        RetryingPublisher {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for RetryingPublisher {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The WARNs saying a sender was refused that also name `channel` and contain `says`.
fn refusals_saying(d: &Daemon, channel: &str, input: &str, says: &str) -> Vec<String> {
    refusals(d)
        .into_iter()
        .filter(|l| {
            l.contains(&format!("channel={channel}")) && l.contains(input) && l.contains(says)
        })
        .collect()
}

#[test]
fn udp_packets_from_a_source_not_allowed_are_refused_with_a_warn() {
    let port = free_udp_port();
    let input = format!("udp://127.0.0.1:{port}");
    let d = start_guarded("a", &input, "allowed_sources = [\"127.0.0.2\"]\n");
    let mut timeline = Timeline::new(&d, "a");
    // From 127.0.0.1 (a few hundred packets): not taken, said once.
    push_to_end(
        &format!("udp://127.0.0.1:{port}?pkt_size=1316&localaddr=127.0.0.1"),
        "mpegts",
        H264,
        3,
    );
    let t = timeline.read();
    assert!(
        t.iter().all(|&(_, slate)| slate),
        "a refused source went on air: {t:?}"
    );
    let warned = refusals_saying(&d, "a", &input, "127.0.0.1");
    assert_eq!(warned.len(), 1, "one WARN for the stranger: {warned:?}");
    assert!(warned[0].contains("allowed_sources"), "{}", warned[0]);
    // From 127.0.0.2: on air.
    on_air_within_two_segments(&d, "a", || {
        Publisher(push(
            &format!("udp://127.0.0.1:{port}?pkt_size=1316&localaddr=127.0.0.2"),
            "mpegts",
            H264,
            15,
        ))
    });
    assert!(
        refusals_saying(&d, "a", &input, "127.0.0.2").is_empty(),
        "the allowed source was not refused"
    );
    finish(d);
}

#[test]
fn an_srt_sender_without_the_passphrase_is_refused_with_a_warn() {
    assert!(
        ffmpeg_has_protocol("srt"),
        "this ffmpeg has no srt protocol (Debian's has: packaging/install-deps.sh)"
    );
    let port = free_udp_port();
    let input = format!("srt://127.0.0.1:{port}");
    let secret = "correct-horse-battery";
    let d = start_guarded("p", &input, &format!("passphrase = \"{secret}\"\n"));
    let mut timeline = Timeline::new(&d, "p");
    // Without the passphrase, and with a wrong one, the handshake fails: ffmpeg cannot connect.
    for (caller, says) in [
        ("", "no passphrase"),
        ("&passphrase=wrong-horse-battery", "wrong passphrase"),
    ] {
        let url = format!("srt://127.0.0.1:{port}?mode=caller{caller}");
        let refused = wait_exit(push(&url, "mpegts", H264, 3), 30);
        assert!(!refused.success(), "{url} was taken");
        let warned = refusals_saying(&d, "p", &input, says);
        assert_eq!(
            warned.len(),
            1,
            "one WARN saying {says:?}: {:?}",
            refusals(&d)
        );
    }
    let t = timeline.read();
    assert!(t.iter().all(|&(_, slate)| slate), "{t:?}");
    // The API never shows the passphrase.
    let shown = d.get("/v1/channels/p").text().unwrap();
    assert!(!shown.contains(secret), "{shown}");
    // With it, the sender is on air.
    on_air_within_two_segments(&d, "p", || {
        Publisher(push(
            &format!("srt://127.0.0.1:{port}?mode=caller&passphrase={secret}"),
            "mpegts",
            H264,
            15,
        ))
    });
    finish(d);
}

#[test]
fn an_srt_caller_naming_another_stream_id_is_refused_with_a_warn() {
    assert!(
        ffmpeg_has_protocol("srt"),
        "this ffmpeg has no srt protocol (Debian's has: packaging/install-deps.sh)"
    );
    let port = free_udp_port();
    let input = format!("srt://127.0.0.1:{port}");
    let d = start_guarded("i", &input, "streamid = \"studio-1\"\n");
    let mut timeline = Timeline::new(&d, "i");
    for (caller, says) in [
        ("&streamid=studio-2", "stream id \"studio-2\""),
        ("", "names no SRT stream id"),
    ] {
        let url = format!("srt://127.0.0.1:{port}?mode=caller{caller}");
        let asked = Instant::now();
        let refused = wait_exit(push(&url, "mpegts", H264, 3), 30);
        assert!(!refused.success(), "{url} was taken");
        eprintln!("{url}: refused after {:?}", asked.elapsed());
        let warned = refusals_saying(&d, "i", &input, says);
        assert_eq!(
            warned.len(),
            1,
            "one WARN saying {says:?}: {:?}",
            refusals(&d)
        );
    }
    let t = timeline.read();
    assert!(t.iter().all(|&(_, slate)| slate), "{t:?}");
    let shown = d.get("/v1/channels/i").text().unwrap();
    assert!(
        !shown.contains("studio-1"),
        "the API hides the stream id: {shown}"
    );
    on_air_within_two_segments(&d, "i", || {
        Publisher(push(
            &format!("srt://127.0.0.1:{port}?mode=caller&streamid=studio-1"),
            "mpegts",
            H264,
            15,
        ))
    });
    finish(d);
}

#[test]
fn an_rtmp_publisher_with_another_stream_key_is_refused() {
    let port = free_tcp_port();
    let d = start_guarded("k", &format!("rtmp://127.0.0.1:{port}/live/key"), "");
    let mut timeline = Timeline::new(&d, "k");
    // The wrong key, for 6 s (retried while the listener is not yet up).
    let wrong = format!("rtmp://127.0.0.1:{port}/live/WRONG");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        let _ = wait_exit(push(&wrong, "flv", H264, 3), 20);
        std::thread::sleep(Duration::from_millis(200));
    }
    let t = timeline.read();
    assert!(
        t.iter().all(|&(_, slate)| slate),
        "the wrong key went on air: {t:?}"
    );
    let warned = d
        .stderr_lines()
        .iter()
        .any(|l| l.contains("WARN") && l.contains("another stream key"));
    assert!(warned, "no WARN about the stream key");
    // The right key is on air within 2·D of its first try.
    let right = format!("rtmp://127.0.0.1:{port}/live/key");
    on_air_within_two_segments(&d, "k", || RetryingPublisher::start(&right, 20));
    finish(d);
}

#[test]
fn a_silent_rtmp_connection_is_dropped_and_the_real_sender_gets_in() {
    let port = free_tcp_port();
    let url = format!("rtmp://127.0.0.1:{port}/live/key");
    let d = start_guarded("q", &url, "");
    // A client connects and sends nothing.
    let started = Instant::now();
    let mut silent = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(_) if started.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Err(e) => panic!("the RTMP listener never listened: {e}"),
        }
    };
    // The daemon drops it after its read deadline...
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        use std::io::Read;
        match silent.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue, // the server's half of the handshake, if any
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the silent connection was kept: {e}"),
        }
    }
    // ...and the real publisher is on air within 2·D of its first try.
    on_air_within_two_segments(&d, "q", || RetryingPublisher::start(&url, 20));
    finish(d);
}
