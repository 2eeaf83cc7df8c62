//! GStreamer plays Encore's output: `gst-launch-1.0` with fakesinks that keep time
//! (`sync=true`), so a stream whose timestamps the player cannot place delivers nothing. Each
//! play runs 18 s and must bring at least 10 s of video and of audio to the sinks, with no
//! error message.
//!
//! Which player element (GStreamer 1.22, Debian 12; NOTES.md has the investigation):
//! - HLS, live and VOD: `playbin` (the older `hlsdemux`, which counts live media time from the
//!   first segment it loads: the origin gives it a session timeline, `origin/rebase.rs`) and
//!   `playbin3` (hlsdemux2).
//! - DASH, live and VOD: `playbin` (dashdemux). `dashdemux2` waits for a 10 s buffer that a
//!   live edge this close never gives it.
//!
//! Needs gst-launch-1.0 and the good, bad and libav plugins: `make test` installs them.

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::process::{Command, Stdio};
use std::time::Duration;

use daemon::Daemon;

/// Seconds each play runs, and the least media time that must reach each sink.
const PLAY_SECONDS: u64 = 18;
const MIN_MEDIA_SECONDS: f64 = 10.0;

fn gstreamer_available() {
    let found = Command::new("gst-launch-1.0")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "gst-launch-1.0 is missing: run `make test-deps`");
}

/// `H:MM:SS.nnnnnnnnn` → seconds.
fn clock_seconds(text: &str) -> Option<f64> {
    let mut parts = text.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// The media time between the first and the last buffer that reached sink `name`, read from
/// gst-launch's `-v` lines (`(vs:sink) (… bytes, dts: …, pts: H:MM:SS.n, …`), and how many.
fn reached(log: &str, name: &str) -> (usize, f64) {
    let marker = format!("({name}:sink) (");
    let pts: Vec<f64> = log
        .lines()
        .filter(|l| l.contains(&marker))
        .filter_map(|l| {
            let at = l.find("pts: ")? + 5;
            clock_seconds(l[at..].split([',', ' ']).next()?)
        })
        .collect();
    let span = match (pts.first(), pts.last()) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    (pts.len(), span)
}

/// Plays `url` with `player` for PLAY_SECONDS; the log of gst-launch.
fn play(player: &str, url: &str) -> String {
    let out = Command::new("timeout")
        .args([&PLAY_SECONDS.to_string(), "gst-launch-1.0", "-v", player])
        .arg(format!("uri={url}"))
        .arg("video-sink=fakesink name=vs sync=true silent=false")
        .arg("audio-sink=fakesink name=as sync=true silent=false")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_plays(player: &str, url: &str) {
    let log = play(player, url);
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.starts_with("ERROR") || l.contains("GstMessageError") || l.contains("Bail out")
        })
        .collect();
    let (video_buffers, video) = reached(&log, "vs");
    let (audio_buffers, audio) = reached(&log, "as");
    eprintln!(
        "{player} {url}: video {video_buffers} buffers over {video:.1} s, audio {audio_buffers} over {audio:.1} s"
    );
    assert!(errors.is_empty(), "{player} {url}: {errors:?}");
    assert!(
        video >= MIN_MEDIA_SECONDS && audio >= MIN_MEDIA_SECONDS,
        "{player} {url}: {video:.1} s of video and {audio:.1} s of audio reached the sinks\n{}",
        log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn gstreamer_plays_live_hls_live_dash_and_vod() {
    gstreamer_available();
    let d = Daemon::start(
        "[[channels]]\nname = \"gst\"\ninput = \"test:320x180@25\"\nladder = \"180:300k\"\n\
         preset = \"ultrafast\"\n",
    );
    // A few segments in the window first, as a player joining a running channel finds it.
    d.wait_for("/live/gst/master.m3u8", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(8));
    assert_plays("playbin", &format!("{}/live/gst/master.m3u8", d.base));
    assert_plays("playbin3", &format!("{}/live/gst/master.m3u8", d.base));
    assert_plays("playbin", &format!("{}/live/gst/manifest.mpd", d.base));

    // VOD: 14 s transcoded with `encore transcode` into the origin's VOD folder. The source:
    //   ffmpeg -f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000
    //     -t 14 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac gst-vod-14s.mp4
    let source = common::fixture(
        "gst-vod-14s.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "14",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
        ],
    );
    let transcoded = common::run(
        common::encore()
            .args([
                "transcode",
                "--ladder",
                "180:300k",
                "--preset",
                "ultrafast",
                "--out",
            ])
            .arg(d.data_dir().join("vod/gst"))
            .arg(&source),
    );
    assert!(transcoded.status.success());
    assert_plays("playbin", &format!("{}/vod/gst/master.m3u8", d.base));
    assert_plays("playbin3", &format!("{}/vod/gst/master.m3u8", d.base));
    assert_plays("playbin", &format!("{}/vod/gst/manifest.mpd", d.base));
    d.terminate();
}
