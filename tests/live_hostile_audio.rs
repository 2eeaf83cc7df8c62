//! A feed whose sound is far out of range, over SRT: the channel sanitises it (every sample
//! finite, clipped to full scale before the encoder), its audio segments keep coming and decode, and the daemon's
//! memory stays flat for 60 s.
//!
//! Why huge samples rather than NaN: the codecs a live input may carry (AAC, MP2, AC-3, E-AC-3,
//! Opus) cannot decode to NaN or infinity — their arithmetic is bounded, and FFmpeg's AAC
//! encoder refuses non-finite input ("Input contains (near) NaN/+-Inf"). What a broken upstream
//! can send is sound at a gain far beyond full scale: AAC carries a 440 Hz tone at 10^6 times
//! full scale (+120 dBFS) and FFmpeg decodes it back to that. That is what this test sends;
//! the NaN and infinity branches of the sanitiser have their unit test
//! (`input_sound_is_sanitised_and_bounded`). The test runs about 90 s.

mod common;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/live_feed.rs"]
mod live_feed;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use daemon::Daemon;
use live_feed::*;

/// How long the memory is watched once the feed is on air.
const WATCH: Duration = Duration::from_secs(60);

/// Peak and RMS levels (dBFS) of the first audio stream of `path`, from ffmpeg's `astats`
/// (`inf` for a non-finite peak); `format` forces the demuxer.
fn levels(path: &Path, format: Option<&str>) -> (f64, f64, String) {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin"]);
    if let Some(f) = format {
        cmd.args(["-f", f]);
    }
    let out = cmd
        .arg("-i")
        .arg(path)
        .args([
            "-map",
            "0:a:0",
            "-af",
            "astats=measure_perchannel=none:measure_overall=Peak_level+RMS_level",
            "-f",
            "null",
            "-",
        ])
        .output()
        .expect("ffmpeg CLI");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "ffmpeg could not decode {path:?}: {log}"
    );
    let value = |key: &str| {
        log.lines()
            .rev()
            .find_map(|l| l.split_once(key).map(|(_, v)| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no {key} in {log}"))
            .parse::<f64>()
            .unwrap_or(f64::INFINITY)
    };
    (value("Peak level dB:"), value("RMS level dB:"), log)
}

/// Every decoded sample of `path`'s audio, as f32.
fn samples(path: &Path) -> Vec<f32> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-f", "mp4", "-i"])
        .arg(path)
        .args(["-map", "0:a:0", "-f", "f32le", "-"])
        .output()
        .expect("ffmpeg CLI");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn huge_audio_over_srt_is_sanitised_and_the_channel_goes_on() {
    assert!(
        ffmpeg_has_protocol("srt"),
        "this ffmpeg has no srt protocol (Debian's has: packaging/install-deps.sh)"
    );
    // 100 s of 320x180 H.264 and AAC stereo whose tone is 10^6 times full scale:
    //   ffmpeg -f lavfi -i testsrc2=size=320x180:rate=15
    //          -f lavfi -i aevalsrc=1e6*sin(2*PI*440*t):s=48000:c=stereo -t 100
    //          -c:v libx264 -preset ultrafast -g 15 -pix_fmt yuv420p -c:a aac -f mpegts
    let feed = fixture(
        "huge-audio-180p15-100s.ts",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=15",
            "-f",
            "lavfi",
            "-i",
            "aevalsrc=1e6*sin(2*PI*440*t):s=48000:c=stereo",
            "-t",
            "100",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "15",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-f",
            "mpegts",
        ],
    );
    let (peak_in, _, _) = levels(&feed, None);
    assert!(
        peak_in > 100.0,
        "the feed's sound decodes far above full scale: {peak_in} dBFS"
    );

    let port = free_udp_port();
    let d = start("h", &format!("srt://127.0.0.1:{port}"));
    let sender = Publisher(
        Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-re", "-i"])
            .arg(&feed)
            .args(["-c", "copy", "-f", "mpegts"])
            .arg(format!("srt://127.0.0.1:{port}?mode=caller"))
            .stdin(Stdio::null())
            .spawn()
            .expect("ffmpeg CLI"),
    );
    let mut timeline = Timeline::new(&d, "h");
    let from = epoch_second();
    timeline.wait("real video over SRT", Duration::from_secs(20), |t| {
        real_from(t, from)
    });
    // Settle (the DVR window of 30 s fills), then watch the memory while the feed plays.
    std::thread::sleep(Duration::from_secs(10));
    let audio_before = last_audio_segment(&d);
    let rss_start = rss_bytes(&d);
    let mut rss_max = rss_start;
    let watching = Instant::now();
    while watching.elapsed() < WATCH {
        std::thread::sleep(Duration::from_secs(5));
        rss_max = rss_max.max(rss_bytes(&d));
    }
    let audio_after = last_audio_segment(&d);
    eprintln!(
        "RSS {} MB at the start of {WATCH:?}, at most {} MB; audio segments {audio_before} → {audio_after}",
        rss_start >> 20,
        rss_max >> 20
    );
    // Audio kept coming: about one segment a second (D = 1 s) for the whole minute.
    assert!(
        audio_after >= audio_before + WATCH.as_secs() - 5,
        "audio segments {audio_before} → {audio_after} in {WATCH:?}"
    );
    assert!(
        rss_max - rss_start < 32 << 20,
        "RSS grew {} MB in {WATCH:?}",
        (rss_max - rss_start) >> 20
    );

    // The last 20 s of audio: it decodes, every sample is finite and near full scale at most,
    // and it is sound (clipped, not muted).
    let dir = tempdir();
    let joined = dir.path().join("audio.mp4");
    let mut bytes = d.get("/live/h/audio/init.mp4").bytes().unwrap().to_vec();
    for n in audio_after - 19..=audio_after {
        let r = d.get(&format!("/live/h/audio/{n}.m4s"));
        assert_eq!(r.status(), 200, "audio segment {n}");
        bytes.extend(r.bytes().unwrap());
    }
    std::fs::write(&joined, bytes).unwrap();
    let (peak, rms, log) = levels(&joined, Some("mp4"));
    eprintln!("output audio: peak {peak} dBFS, RMS {rms} dBFS");
    // Clipped to full scale before the encoder; AAC's decoder overshoots a clipped wave by a
    // few dB (measured +5 dBFS), far from the feed's +120.
    assert!(peak.is_finite() && peak < 12.0, "peak {peak} dBFS: {log}");
    assert!(
        rms > -20.0,
        "the sound went on (not silence): RMS {rms} dBFS"
    );
    let decoded = samples(&joined);
    assert!(decoded.len() > 48_000 * 2 * 19, "{} samples", decoded.len());
    let bad = decoded
        .iter()
        .filter(|s| !s.is_finite() || s.abs() > 4.0)
        .count();
    assert_eq!(bad, 0, "samples not finite or far beyond full scale");
    let log = d.stderr_lines();
    assert!(
        !log.iter().any(|l| l.contains("ERROR")),
        "no ERROR in the daemon's log"
    );
    drop(sender);
    finish(d);
}

/// The newest audio segment's number.
fn last_audio_segment(d: &Daemon) -> u64 {
    d.media_playlist("/live/h/audio/index.m3u8")
        .segments
        .last()
        .map(|s| s.uri.trim_end_matches(".m4s").parse().unwrap())
        .expect("audio segments")
}
