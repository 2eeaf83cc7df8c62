//! Live-input test helpers: a small channel on one input, ffmpeg pushes to it, its top
//! rendition read as a timeline of (segment number, slate?), and the daemon's memory.
//!
//! Included with `#[path = "common/live_feed.rs"] mod live_feed;` beside `mod common;` and
//! `mod daemon;`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::*;
use crate::daemon::Daemon;

/// A small, cheap channel on `input`.
pub fn channel(name: &str, input: &str) -> String {
    format!(
        "[[channels]]\nname = \"{name}\"\ninput = \"{input}\"\nformat = \"320x180@15\"\n\
         ladder = \"180:300k\"\npreset = \"ultrafast\"\nsegment_duration = 1\ndvr_window = 30\n"
    )
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The current segment number (D = 1 s).
pub fn epoch_second() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The daemon runs its channel with info logs, so a failing test shows what the input did.
pub fn start(name: &str, input: &str) -> Daemon {
    start_with(name, input, "")
}

/// As `start`, with more lines for the channel (`passphrase = …`).
pub fn start_with(name: &str, input: &str, extra: &str) -> Daemon {
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
pub struct Video {
    pub source: &'static str,
    pub codec: &'static str,
}

pub const H264: Video = Video {
    source: "testsrc2=size=320x180:rate=15",
    codec: "libx264",
};
/// `ffmpeg -re` pushing `seconds` of `video` and a tone to `url` as `format`; returns the
/// running child.
pub fn push(url: &str, format: &str, video: Video, seconds: u32) -> Child {
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
pub struct Publisher(pub Child);

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Pushes as `push` does and waits for the end; a listener that is not (yet, or again)
/// accepting makes ffmpeg fail at once, so failures are retried for a while.
pub fn push_to_end(url: &str, format: &str, video: Video, seconds: u32) {
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

pub fn wait_exit(mut child: Child, within_s: u64) -> std::process::ExitStatus {
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

pub fn ffmpeg_has_protocol(name: &str) -> bool {
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
pub struct Timeline<'a> {
    d: &'a Daemon,
    channel: String,
    slate: BTreeMap<u64, bool>,
}

impl<'a> Timeline<'a> {
    pub fn new(d: &'a Daemon, channel: &str) -> Self {
        Timeline {
            d,
            channel: channel.into(),
            slate: BTreeMap::new(),
        }
    }

    /// The playlist now; asserts the numbering has no gap.
    pub fn read(&mut self) -> Vec<(u64, bool)> {
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
    pub fn wait(
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

/// A real (not slate) segment numbered `from` or later.
pub fn real_from(t: &[(u64, bool)], from: u64) -> bool {
    t.iter().any(|&(n, slate)| !slate && n >= from)
}

/// A slate segment numbered `from` or later.
pub fn slate_from(t: &[(u64, bool)], from: u64) -> bool {
    t.iter().any(|&(n, slate)| slate && n >= from)
}

/// The WARN line of the daemon's log that gives the cause of an input failure
/// (`input: <cause>; retrying`), if any.
pub fn warned_about_input(d: &Daemon) -> Option<String> {
    d.stderr_lines()
        .into_iter()
        .find(|l| l.contains("WARN") && l.contains("input: ") && l.contains("retrying"))
}

/// Final checks shared by every test: still running, exits 0 on SIGTERM.
pub fn finish(mut d: Daemon) {
    assert!(d.running(), "the daemon is still running");
    assert!(d.terminate().success(), "SIGTERM exits 0");
}

/// The daemon's resident memory, from /proc.
pub fn rss_bytes(d: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// A small channel as `channel` makes, with segments of `d` seconds.
pub fn channel_with_segments(name: &str, input: &str, d: u32) -> String {
    channel(name, input).replace(
        "segment_duration = 1\n",
        &format!("segment_duration = {d}\n"),
    )
}

/// Seconds since the Unix epoch, with the fraction.
pub fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Whether segment `n` of the channel's top rendition holds a real picture (not only the
/// dark "SIGNAL LOST" slate): ffmpeg decodes init + segment and averages each picture down to
/// one pixel; the slate's is dark (Y about 20), the pushes' test pattern is not.
pub fn has_real_picture(d: &Daemon, channel: &str, n: u64) -> bool {
    let dir = tempdir();
    let path = dir.path().join("joined.mp4");
    let mut bytes = d
        .get(&format!("/live/{channel}/180p/init.mp4"))
        .bytes()
        .unwrap()
        .to_vec();
    let segment = d.get(&format!("/live/{channel}/180p/{n}.m4s"));
    assert_eq!(segment.status(), 200, "segment {n}");
    bytes.extend(segment.bytes().unwrap());
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args([
            "-vf",
            "scale=1:1:flags=area,format=gray",
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
    out.stdout.iter().any(|&y| y > 50)
}

/// The first segment, numbered `from` or later, that holds a real picture; waits up to
/// `within` for it to be published.
pub fn first_real_segment(d: &Daemon, channel: &str, from: u64, within: Duration) -> u64 {
    let start = Instant::now();
    let mut n = from;
    loop {
        let listed = d
            .media_playlist(&format!("/live/{channel}/180p/index.m3u8"))
            .segments
            .iter()
            .any(|s| s.uri == format!("{n}.m4s"));
        if listed {
            if has_real_picture(d, channel, n) {
                return n;
            }
            n += 1;
            continue;
        }
        assert!(
            start.elapsed() < within,
            "no real picture on {channel} from segment {from} within {within:?} (up to {n})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The daemon's WARN lines that say a sender was refused.
pub fn refusals(d: &Daemon) -> Vec<String> {
    d.stderr_lines()
        .into_iter()
        .filter(|l| l.contains("WARN") && l.contains("refused a sender"))
        .collect()
}
