//! Live inputs that misbehave: garbage on the UDP port, an RTMP publisher that vanishes, an
//! MPEG-TS whose video codec changes mid-stream, and an SRT caller. In every case the daemon
//! stays up, segment numbers stay continuous (slate fills the gaps), real pictures return
//! when a good input does, and failures are logged.
//!
//! Segments are epoch-locked (segment n covers [n·D, (n+1)·D) of Unix time, D = 1 s here), so
//! "real video after a push started" is checked against the wall clock.

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::collections::BTreeMap;
use std::net::{TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use daemon::Daemon;

/// A small, cheap channel on `input`.
fn channel(name: &str, input: &str) -> String {
    format!(
        "[[channels]]\nname = \"{name}\"\ninput = \"{input}\"\nformat = \"320x180@15\"\n\
         ladder = \"180:300k\"\npreset = \"ultrafast\"\nsegment_duration = 1\ndvr_window = 30\n"
    )
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The current segment number (D = 1 s).
fn epoch_second() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The daemon runs its channel with info logs, so a failing test shows what the input did.
fn start(name: &str, input: &str) -> Daemon {
    start_with(name, input, "")
}

/// As `start`, with more lines for the channel (`passphrase = …`).
fn start_with(name: &str, input: &str, extra: &str) -> Daemon {
    let d = Daemon::start_with(&format!("{}{extra}", channel(name, input)), &["-v"]);
    // The channel announces itself once it has a segment (slate: no input yet).
    d.wait_for(
        &format!("/live/{name}/master.m3u8"),
        Duration::from_secs(20),
    );
    d
}

/// What a push sends as video: a lavfi source, coded with an ffmpeg encoder.
#[derive(Clone, Copy)]
struct Video {
    source: &'static str,
    codec: &'static str,
}

const H264: Video = Video {
    source: "testsrc2=size=320x180:rate=15",
    codec: "libx264",
};
/// Plain red, so pictures that really come from this part can be told from anything else.
const MPEG2_RED: Video = Video {
    source: "color=c=red:size=320x180:rate=15",
    codec: "mpeg2video",
};

/// `ffmpeg -re` pushing `seconds` of `video` and a tone to `url` as `format`; returns the
/// running child.
fn push(url: &str, format: &str, video: Video, seconds: u32) -> Child {
    let seconds = seconds.to_string();
    let mut args = vec![
        "-v",
        "error",
        "-nostdin",
        "-re",
        "-f",
        "lavfi",
        "-i",
        video.source,
        "-f",
        "lavfi",
        "-i",
        "sine=sample_rate=48000",
        "-t",
        &seconds,
        "-c:v",
        video.codec,
    ];
    if video.codec == "libx264" {
        args.extend(["-preset", "ultrafast"]);
    }
    args.extend([
        "-g", "15", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", format, url,
    ]);
    Command::new("ffmpeg")
        .args(&args)
        .stdin(Stdio::null())
        .spawn()
        .expect("ffmpeg CLI")
}

/// A running push, killed if the test ends (or fails) before it does.
struct Publisher(Child);

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Pushes as `push` does and waits for the end; a listener that is not (yet, or again)
/// accepting makes ffmpeg fail at once, so failures are retried for a while.
fn push_to_end(url: &str, format: &str, video: Video, seconds: u32) {
    let start = Instant::now();
    loop {
        let status = wait_exit(push(url, format, video, seconds), seconds as u64 + 20);
        if status.success() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "ffmpeg could not push to {url}: {status}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn wait_exit(mut child: Child, within_s: u64) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > Duration::from_secs(within_s) {
            let _ = child.kill();
            panic!("ffmpeg did not finish within {within_s} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ffmpeg_has_protocol(name: &str) -> bool {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-protocols"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == name)
        })
        .unwrap_or(false)
}

/// A channel's top rendition as (segment number, is slate), read from the media playlist and
/// the segments themselves (styp brand `slat`); segments are immutable, so each is read once.
struct Timeline<'a> {
    d: &'a Daemon,
    channel: String,
    slate: BTreeMap<u64, bool>,
}

impl<'a> Timeline<'a> {
    fn new(d: &'a Daemon, channel: &str) -> Self {
        Timeline {
            d,
            channel: channel.into(),
            slate: BTreeMap::new(),
        }
    }

    /// The playlist now; asserts the numbering has no gap.
    fn read(&mut self) -> Vec<(u64, bool)> {
        let pl = self
            .d
            .media_playlist(&format!("/live/{}/180p/index.m3u8", self.channel));
        let numbers: Vec<u64> = pl
            .segments
            .iter()
            .map(|s| s.uri.trim_end_matches(".m4s").parse().unwrap())
            .collect();
        for w in numbers.windows(2) {
            assert_eq!(w[1], w[0] + 1, "numbering is continuous: {numbers:?}");
        }
        if let Some(first) = numbers.first() {
            assert_eq!(
                pl.media_sequence, *first,
                "media sequence is the first number"
            );
        }
        numbers
            .into_iter()
            .map(|n| {
                let slate = *self.slate.entry(n).or_insert_with(|| {
                    let r = self.d.get(&format!("/live/{}/180p/{n}.m4s", self.channel));
                    assert_eq!(r.status(), 200, "segment {n}");
                    let dir = tempdir();
                    let path = dir.path().join("s.m4s");
                    std::fs::write(&path, r.bytes().unwrap()).unwrap();
                    read_segment(&path).brands.iter().any(|b| b == "slat")
                });
                (n, slate)
            })
            .collect()
    }

    /// Polls until `done` holds for the playlist (or panics after `within`, naming `what`).
    fn wait(
        &mut self,
        what: &str,
        within: Duration,
        done: impl Fn(&[(u64, bool)]) -> bool,
    ) -> Vec<(u64, bool)> {
        let start = Instant::now();
        loop {
            let t = self.read();
            if done(&t) {
                return t;
            }
            assert!(
                start.elapsed() < within,
                "{what}: not seen within {within:?}; timeline (number, slate): {t:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Whether every picture of segment `n` (top rendition) is plain red, as MPEG2_RED sends:
/// ffmpeg decodes init + segment and averages each picture down to one YUV 4:4:4 pixel.
fn all_red(d: &Daemon, channel: &str, n: u64) -> bool {
    let dir = tempdir();
    let path = dir.path().join("joined.mp4");
    let mut bytes = d
        .get(&format!("/live/{channel}/180p/init.mp4"))
        .bytes()
        .unwrap()
        .to_vec();
    bytes.extend(
        d.get(&format!("/live/{channel}/180p/{n}.m4s"))
            .bytes()
            .unwrap(),
    );
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args([
            "-vf",
            "scale=1:1:flags=area,format=yuv444p",
            "-f",
            "rawvideo",
            "-",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Red in limited-range BT.601: Y 81, U 90, V 240.
    !out.stdout.is_empty()
        && out
            .stdout
            .chunks(3)
            .all(|p| p.len() == 3 && p[1] < 120 && p[2] > 200)
}

/// A real (not slate) segment numbered `from` or later.
fn real_from(t: &[(u64, bool)], from: u64) -> bool {
    t.iter().any(|&(n, slate)| !slate && n >= from)
}

/// A slate segment numbered `from` or later.
fn slate_from(t: &[(u64, bool)], from: u64) -> bool {
    t.iter().any(|&(n, slate)| slate && n >= from)
}

/// The WARN line of the daemon's log that gives the cause of an input failure
/// (`input: <cause>; retrying`), if any.
fn warned_about_input(d: &Daemon) -> Option<String> {
    d.stderr_lines()
        .into_iter()
        .find(|l| l.contains("WARN") && l.contains("input: ") && l.contains("retrying"))
}

/// Final checks shared by every test: still running, exits 0 on SIGTERM.
fn finish(mut d: Daemon) {
    assert!(d.running(), "the daemon is still running");
    assert!(d.terminate().success(), "SIGTERM exits 0");
}

#[test]
fn garbage_on_the_udp_port_then_a_real_feed() {
    let port = free_udp_port();
    let mut d = start("g", &format!("udp://127.0.0.1:{port}"));

    // ~2 MB of pseudo-random bytes (xorshift), 1316 bytes a datagram, lightly paced.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut datagram = [0u8; 1316];
    for i in 0..1600 {
        for b in datagram.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        socket
            .send_to(&datagram, ("127.0.0.1", port))
            .expect("send garbage");
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // The input is refused, and why is logged.
    let started = Instant::now();
    let refused = loop {
        if let Some(line) = warned_about_input(&d) {
            break line;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no WARN line about the garbage input: {:#?}",
            d.stderr_lines()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        refused.contains(&format!("udp://127.0.0.1:{port}")),
        "{refused}"
    );
    assert!(d.running(), "garbage must not stop the daemon");

    // Then a real MPEG-TS feed: real pictures come back. It lasts 6 s: stream analysis at
    // connect takes about 3 s of it, and a whole real segment needs a second more.
    let fed_from = epoch_second();
    push_to_end(
        &format!("udp://127.0.0.1:{port}?pkt_size=1316"),
        "mpegts",
        H264,
        6,
    );
    let mut timeline = Timeline::new(&d, "g");
    timeline.wait("real video after the feed", Duration::from_secs(10), |t| {
        real_from(t, fed_from)
    });
    // And slate again once the feed stopped.
    let stopped = epoch_second();
    let t = timeline.wait("slate after the feed", Duration::from_secs(10), |t| {
        slate_from(t, stopped + 1)
    });
    eprintln!("timeline: {t:?}");
    finish(d);
}

#[test]
fn an_rtmp_publisher_that_vanishes_can_publish_again() {
    let port = free_tcp_port();
    let url = format!("rtmp://127.0.0.1:{port}/live/key");
    let d = start("r", &url);
    let mut timeline = Timeline::new(&d, "r");

    // First publisher: killed mid-stream once its pictures are on air.
    let first_from = epoch_second();
    let started = Instant::now();
    let mut publisher = Publisher(push(&url, "flv", H264, 30));
    loop {
        if let Some(status) = publisher.0.try_wait().unwrap() {
            // Not listening yet: try again.
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "ffmpeg could not publish: {status}"
            );
            std::thread::sleep(Duration::from_millis(300));
            publisher = Publisher(push(&url, "flv", H264, 30));
            continue;
        }
        if real_from(&timeline.read(), first_from) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no real video from the first publisher: {:?}",
            timeline.read()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(1));
    publisher.0.kill().unwrap();
    publisher.0.wait().unwrap();
    let killed = epoch_second();

    // Slate while nobody publishes.
    timeline.wait(
        "slate after the publisher vanished",
        Duration::from_secs(10),
        |t| slate_from(t, killed),
    );
    let warning = warned_about_input(&d);

    // A second publisher is accepted: the daemon listens again.
    let second_from = epoch_second();
    push_to_end(&url, "flv", H264, 4);
    let t = timeline.wait(
        "real video from the second publisher",
        Duration::from_secs(10),
        |t| real_from(t, second_from),
    );
    eprintln!("timeline: {t:?}");
    // real, then slate, then real again, in that order.
    let first_real = t.iter().position(|&(n, s)| !s && n >= first_from).unwrap();
    let gap = first_real + t[first_real..].iter().position(|&(_, s)| s).unwrap();
    assert!(
        t[gap..].iter().any(|&(_, s)| !s),
        "real again after the slate: {t:?}"
    );
    assert!(
        warning.is_some(),
        "a WARN line about the lost input: {:#?}",
        d.stderr_lines()
    );
    finish(d);
}

#[test]
fn an_mpegts_whose_video_codec_changes_mid_stream() {
    let port = free_udp_port();
    let url = format!("udp://127.0.0.1:{port}?pkt_size=1316");
    let d = start("c", &format!("udp://127.0.0.1:{port}"));
    let mut timeline = Timeline::new(&d, "c");

    // H.264, then at once MPEG-2 video on the same PIDs, then H.264 again. Each part is longer
    // than stream analysis at connect (2 s), so each has a whole second of its own on air.
    let h264_from = epoch_second();
    push_to_end(&url, "mpegts", H264, 4);
    let mpeg2_from = epoch_second();
    push_to_end(&url, "mpegts", MPEG2_RED, 4);
    let again_from = epoch_second();
    // Longer: the switch back is noticed (1.5 s without a clean picture) and analysed again.
    push_to_end(&url, "mpegts", H264, 7);
    let ended = epoch_second();

    let t = timeline.wait(
        "real video from the first H.264 part",
        Duration::from_secs(10),
        |t| {
            t.iter()
                .any(|&(n, s)| !s && n >= h264_from && n < mpeg2_from)
        },
    );
    // What went on air while MPEG-2 came in: (number, slate, pictures are the MPEG-2 red).
    eprintln!(
        "after the switch to MPEG-2 (segments {mpeg2_from}..{again_from}): {:?}",
        t.iter()
            .filter(|&&(n, _)| n >= mpeg2_from && n < again_from)
            .map(|&(n, s)| (n, s, all_red(&d, "c", n)))
            .collect::<Vec<_>>()
    );
    // After the switch the channel goes on (continuous numbers, checked at every read), and
    // real pictures return once H.264 does.
    timeline.wait(
        "real video after the codec changes",
        Duration::from_secs(10),
        |t| t.iter().any(|&(n, s)| !s && n > again_from && n <= ended),
    );
    let t = timeline.wait("slate after the feed", Duration::from_secs(10), |t| {
        slate_from(t, ended + 1)
    });
    eprintln!("timeline: {t:?}");
    finish(d);
}

/// After a codec change the new codec's pictures go on air (after slate while the input is
/// analysed again), and nothing else does: no pictures the old decoder made from the new codec.
#[test]
fn after_a_codec_change_only_the_new_codec_goes_on_air() {
    let port = free_udp_port();
    let url = format!("udp://127.0.0.1:{port}?pkt_size=1316");
    let d = start("m", &format!("udp://127.0.0.1:{port}"));
    let mut timeline = Timeline::new(&d, "m");
    push_to_end(&url, "mpegts", H264, 4);
    let mpeg2_from = epoch_second();
    push_to_end(&url, "mpegts", MPEG2_RED, 8);
    let mpeg2_to = epoch_second();
    // The last H.264 picture is held for at most a second: from mpeg2_from + 2 on, every
    // segment is slate or MPEG-2 pictures.
    let t = timeline.wait("the end of the MPEG-2 part", Duration::from_secs(10), |t| {
        t.iter().any(|&(n, _)| n >= mpeg2_to)
    });
    let window: Vec<(u64, bool, bool)> = t
        .iter()
        .filter(|&&(n, _)| n >= mpeg2_from + 2 && n < mpeg2_to)
        .map(|&(n, s)| (n, s, !s && all_red(&d, "m", n)))
        .collect();
    eprintln!("(number, slate, MPEG-2 pictures): {window:?}");
    assert!(
        window.iter().all(|&(_, slate, red)| slate || red),
        "only slate or the new codec's pictures on air: {window:?}"
    );
    assert!(
        window.iter().any(|&(_, _, red)| red),
        "the new codec's pictures on air: {window:?}"
    );
    finish(d);
}

#[test]
fn an_srt_caller_is_received() {
    assert!(
        ffmpeg_has_protocol("srt"),
        "this ffmpeg has no srt protocol (Debian's has: packaging/install-deps.sh)"
    );
    let port = free_udp_port();
    let d = start("s", &format!("srt://127.0.0.1:{port}"));
    let mut timeline = Timeline::new(&d, "s");
    let from = epoch_second();
    push_to_end(
        &format!("srt://127.0.0.1:{port}?mode=caller"),
        "mpegts",
        H264,
        3,
    );
    let t = timeline.wait("real video over SRT", Duration::from_secs(10), |t| {
        real_from(t, from)
    });
    eprintln!("timeline: {t:?}");
    assert!(t.iter().any(|&(_, s)| s), "slate before the caller: {t:?}");
    finish(d);
}

/// The daemon's resident memory, from /proc.
fn rss_bytes(d: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// `ffmpeg -re` with these arguments to the end (it fails only on a bad command).
fn ffmpeg_push(args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-re"])
        .args(args)
        .stdin(Stdio::null())
        .status()
        .expect("ffmpeg CLI");
    assert!(status.success(), "ffmpeg {args:?}: {status}");
}

#[test]
fn feeds_a_live_channel_does_not_take_are_refused_and_it_stays_on_slate() {
    let port = free_udp_port();
    let d = start("r", &format!("udp://127.0.0.1:{port}"));
    let url = format!("udp://127.0.0.1:{port}?pkt_size=1316");
    let mut timeline = Timeline::new(&d, "r");
    let rss_before = rss_bytes(&d);

    // A playlist arriving on the socket, naming a URL this test listens on: never fetched.
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let playlist = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nhttp://{}/x.ts\n#EXT-X-ENDLIST\n",
        trap.local_addr().unwrap()
    );
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        sender
            .send_to(playlist.as_bytes(), ("127.0.0.1", port))
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    // Pictures larger than 4096x2304 (H.264 in MPEG-TS, 4608x2592 at 5 fps):
    //   ffmpeg -f lavfi -i testsrc2=size=4608x2592:rate=5 -t 4 -c:v libx264 -preset ultrafast -f mpegts
    ffmpeg_push(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=4608x2592:rate=5",
        "-t",
        "4",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "5",
        "-f",
        "mpegts",
        &url,
    ]);
    // Bayer pictures as raw video, in NUT: neither the container nor the codec of a live feed.
    ffmpeg_push(&[
        "-f",
        "rawvideo",
        "-pix_fmt",
        "bayer_rggb8",
        "-video_size",
        "320x180",
        "-framerate",
        "15",
        "-i",
        "/dev/zero",
        "-t",
        "3",
        "-c:v",
        "rawvideo",
        "-f",
        "nut",
        &url,
    ]);
    // MPEG-4 Part 2 in MPEG-TS: an allowed container, not a codec a live channel takes.
    ffmpeg_push(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=15",
        "-t",
        "4",
        "-c:v",
        "mpeg4",
        "-g",
        "15",
        "-f",
        "mpegts",
        &url,
    ]);
    std::thread::sleep(Duration::from_secs(2));

    assert!(
        trap.accept().is_err(),
        "the daemon connected to the URL a playlist on its input named"
    );
    let t = timeline.read();
    assert!(
        t.iter().all(|&(_, slate)| slate),
        "only slate went out: {t:?}"
    );
    let log = d.stderr_lines();
    for says in [
        "refused: 4608x2592",
        "not an allowed live container",
        "video codec",
    ] {
        assert!(
            log.iter().any(|l| l.contains("WARN") && l.contains(says)),
            "no WARN saying {says:?}"
        );
    }
    let grown = rss_bytes(&d).saturating_sub(rss_before);
    assert!(grown < 96 << 20, "RSS grew {} MB", grown >> 20);

    // A good feed afterwards goes on air (the input may be waiting out a retry first).
    let from = epoch_second();
    let _good = Publisher(push(&url, "mpegts", H264, 15));
    timeline.wait(
        "real video after the refusals",
        Duration::from_secs(15),
        |t| real_from(t, from),
    );
    finish(d);
}

#[test]
fn udp_packets_from_a_source_not_allowed_are_not_taken() {
    let port = free_udp_port();
    let d = start_with(
        "a",
        &format!("udp://127.0.0.1:{port}"),
        "allowed_sources = [\"127.0.0.2\"]\n",
    );
    let mut timeline = Timeline::new(&d, "a");
    // From 127.0.0.1: not taken.
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
    // From 127.0.0.2: on air.
    let from = epoch_second();
    push_to_end(
        &format!("udp://127.0.0.1:{port}?pkt_size=1316&localaddr=127.0.0.2"),
        "mpegts",
        H264,
        3,
    );
    timeline.wait(
        "real video from the allowed source",
        Duration::from_secs(10),
        |t| real_from(t, from),
    );
    finish(d);
}

#[test]
fn an_srt_sender_without_the_passphrase_is_refused() {
    assert!(
        ffmpeg_has_protocol("srt"),
        "this ffmpeg has no srt protocol (Debian's has: packaging/install-deps.sh)"
    );
    let port = free_udp_port();
    let secret = "correct-horse-battery";
    let d = start_with(
        "p",
        &format!("srt://127.0.0.1:{port}"),
        &format!("passphrase = \"{secret}\"\n"),
    );
    let mut timeline = Timeline::new(&d, "p");
    // Without the passphrase the handshake fails: ffmpeg cannot connect.
    let refused = wait_exit(
        push(
            &format!("srt://127.0.0.1:{port}?mode=caller"),
            "mpegts",
            H264,
            3,
        ),
        30,
    );
    assert!(
        !refused.success(),
        "a caller without the passphrase was taken"
    );
    let t = timeline.read();
    assert!(t.iter().all(|&(_, slate)| slate), "{t:?}");
    // The API never shows the passphrase.
    let shown = d.get("/v1/channels/p").text().unwrap();
    assert!(!shown.contains(secret), "{shown}");
    // With it, the sender is on air.
    let from = epoch_second();
    push_to_end(
        &format!("srt://127.0.0.1:{port}?mode=caller&passphrase={secret}"),
        "mpegts",
        H264,
        3,
    );
    timeline.wait(
        "real video over SRT with the passphrase",
        Duration::from_secs(10),
        |t| real_from(t, from),
    );
    finish(d);
}

#[test]
fn an_rtmp_publisher_with_another_stream_key_is_refused() {
    let port = free_tcp_port();
    let d = start("k", &format!("rtmp://127.0.0.1:{port}/live/key"));
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
    // The right key goes on air (retried while the listener is being reopened).
    let right = format!("rtmp://127.0.0.1:{port}/live/key");
    let from = epoch_second();
    let started = Instant::now();
    let mut publisher = Publisher(push(&right, "flv", H264, 20));
    while !real_from(&timeline.read(), from) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no real video with the right key: {:?}",
            timeline.read()
        );
        if publisher.0.try_wait().unwrap().is_some() {
            publisher = Publisher(push(&right, "flv", H264, 20));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(publisher);
    finish(d);
}

#[test]
fn a_silent_rtmp_connection_is_dropped_and_the_real_sender_gets_in() {
    let port = free_tcp_port();
    let url = format!("rtmp://127.0.0.1:{port}/live/key");
    let d = start("q", &url);
    let mut timeline = Timeline::new(&d, "q");
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
    // ...and the real publisher gets in (retried while the listener is being reopened).
    let from = epoch_second();
    let started = Instant::now();
    let mut real = Publisher(push(&url, "flv", H264, 20));
    while !real_from(&timeline.read(), from) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no real video after the silent client: {:?}",
            timeline.read()
        );
        if real.0.try_wait().unwrap().is_some() {
            real = Publisher(push(&url, "flv", H264, 20));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(real);
    finish(d);
}
