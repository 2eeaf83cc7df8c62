//! The media corpus: every combination real files have (containers, video codecs and pixel
//! formats, audio codecs, layouts and rates, odd sizes and timings), each made by the ffmpeg
//! CLI from the recipe beside it (2 s, 320x180 unless the case is about size or rate).
//!
//! Each file goes through `encore transcode` (exit 0 with output that ffmpeg decodes without
//! an error, or exit 2 with one line and nothing written) and through a live `loop:` channel
//! (the daemon survives and the channel is on air). A crash, a hang or another exit code fails.

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use daemon::Daemon;

/// One corpus file: its recipe (arguments to `ffmpeg -nostdin -v error -y … FILE`) and what a
/// correct transcode of it holds.
struct Case {
    file: &'static str,
    recipe: &'static str,
    /// The output has an audio rendition.
    audio: bool,
    /// The source is interlaced: the summary names the deinterlacer.
    interlaced: bool,
    /// Seconds of video the output holds.
    seconds: f64,
}

macro_rules! case {
    ($file:expr, $recipe:expr) => {
        case!($file, $recipe, audio = true)
    };
    ($file:expr, $recipe:expr, audio = $audio:expr) => {
        Case {
            file: $file,
            recipe: $recipe,
            audio: $audio,
            interlaced: false,
            seconds: 2.0,
        }
    };
}

/// The recipes (also listed in tests/fixtures/README.md), each whole, so it can be pasted into
/// a shell as it stands (quote the VFR case's select expression there).
const CORPUS: &[Case] = &[
    // Containers, with the audio each typically carries (PCM wherever the container takes it).
    case!("c-mp4-h264-aac.mp4", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac"),
    case!("c-mov-h264-pcm_s16le.mov", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a pcm_s16le"),
    case!("c-mov-prores-pcm_s24le.mov", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v prores_ks -profile:v 2 -c:a pcm_s24le"),
    case!("c-mov-h264-pcm_f32le.mov", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a pcm_f32le"),
    case!("c-mkv-h264-pcm_s16le.mkv", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a pcm_s16le"),
    case!("c-mkv-h264-pcm_s24le.mkv", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a pcm_s24le"),
    case!("c-mkv-h264-pcm_f32le.mkv", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a pcm_f32le"),
    case!("c-avi-h264-pcm_s16le.avi", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a pcm_s16le"),
    case!("c-avi-mjpeg-pcm_s24le.avi", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v mjpeg -c:a pcm_s24le"),
    case!("c-avi-mpeg4-pcm_f32le.avi", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v mpeg4 -c:a pcm_f32le"),
    case!("c-webm-vp9-opus.webm", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libvpx-vp9 -deadline realtime -cpu-used 8 -b:v 300k -c:a libopus"),
    case!("c-webm-av1-opus.webm", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libaom-av1 -usage realtime -cpu-used 8 -b:v 300k -c:a libopus"),
    case!("c-ts-mpeg2-mp2.ts", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v mpeg2video -b:v 1M -c:a mp2"),
    case!("c-ts-h264-aac.ts", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac"),
    case!("c-ts-hevc-ac3.ts", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx265 -preset ultrafast -x265-params log-level=error -pix_fmt yuv420p -c:a ac3"),
    case!("c-flv-h264-aac.flv", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac"),
    case!("c-flv-h264-mp3.flv", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a libmp3lame"),
    // Video codecs and pixel formats.
    case!("v-h264-10bit.mp4", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p10le -c:a aac"),
    case!("v-h264-422.mp4", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv422p -c:a aac"),
    case!("v-h264-444.mkv", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv444p -c:a aac"),
    case!("v-hevc-8bit-flac.mkv", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx265 -preset ultrafast -x265-params log-level=error -pix_fmt yuv420p -c:a flac"),
    case!("v-hevc-10bit.mp4", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx265 -preset ultrafast -x265-params log-level=error -pix_fmt yuv420p10le -tag:v hvc1 -c:a aac"),
    case!("v-h264-gray-no-audio.mp4", "-f lavfi -i testsrc2=size=320x180:rate=25 -t 2 -c:v libx264 -preset ultrafast -pix_fmt gray", audio = false),
    // Audio: channels, rates, codecs, layouts.
    case!("a-aac-mono.mp4", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -ac 1 -c:a aac"),
    case!("a-aac-5.1.mp4", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -af aformat=channel_layouts=5.1 -c:a aac"),
    case!("a-aac-7.1.mp4", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -af aformat=channel_layouts=7.1 -c:a aac"),
    case!("a-aac-22050.mp4", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=22050 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac"),
    case!("a-aac-44100.mp4", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac"),
    case!("a-aac-96000.mp4", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=96000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac"),
    case!("a-ac3-5.1.mkv", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -af aformat=channel_layouts=5.1 -c:a ac3"),
    case!("a-mp2-stereo.ts", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -ac 2 -c:a mp2"),
    case!("a-opus-stereo.mkv", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -ac 2 -c:a libopus"),
    case!("a-flac-stereo.mkv", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -ac 2 -c:a flac"),
    case!("a-pcm-6ch-no-layout.mkv", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -ac 6 -c:a pcm_s16le"),
    case!("a-two-audio-tracks.mkv", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -f lavfi -i sine=frequency=880:sample_rate=44100 -t 2 -map 0:v -map 1:a -map 2:a -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac"),
    // Sizes and shapes.
    case!("g-odd-size-317x179.mkv", "-f lavfi -i testsrc2=size=317x179:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv444p -c:a aac"),
    case!("g-sar-4-3.mp4", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -vf setsar=4/3 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac"),
    // Frame rates and timing.
    case!("t-vfr.mkv", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -vf select=lt(mod(n\\,10)\\,6) -fps_mode vfr -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac"),
    Case {
        file: "t-1fps.mp4",
        recipe: "-f lavfi -i testsrc2=size=320x180:rate=1 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 4 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac",
        audio: true,
        interlaced: false,
        seconds: 4.0,
    },
    case!("t-60fps.mp4", "-f lavfi -i testsrc2=size=320x180:rate=60 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac"),
    case!("t-23.976fps.mp4", "-f lavfi -i testsrc2=size=320x180:rate=24000/1001 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac"),
    case!("t-29.97fps.ts", "-f lavfi -i testsrc2=size=320x180:rate=30000/1001 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac"),
    Case {
        file: "t-interlaced-tff.ts",
        recipe: "-f lavfi -i testsrc2=size=320x180:rate=50 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -vf interlace=scan=tff -c:v libx264 -preset ultrafast -pix_fmt yuv420p -flags +ildct+ilme -c:a mp2",
        audio: true,
        interlaced: true,
        seconds: 2.0,
    },
    case!("t-audio-first.mkv", "-f lavfi -itsoffset 1 -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 3 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac"),
    case!("t-audio-late.mkv", "-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -itsoffset 0.5 -i sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac"),
    // 2 s of video, then audio from 30 s: not truncated (the old "truncated" refusal).
    case!("t-audio-after-video.mkv", "-f lavfi -t 2 -i testsrc2=size=320x180:rate=25 -f lavfi -itsoffset 30 -t 2 -i sine=frequency=440:sample_rate=48000 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac"),
];

fn corpus_file(case: &Case) -> PathBuf {
    let args: Vec<&str> = case.recipe.split_whitespace().collect();
    fixture(&format!("corpus-{}", case.file), &args)
}

/// Runs `command`, killing it after `limit`: `None` means it hung.
fn run_with_limit(command: &mut Command, limit: Duration) -> Option<std::process::Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What is wrong with one transcode, or `None`.
fn check_transcode(case: &Case, work: &Path) -> Option<String> {
    let input = corpus_file(case);
    let out = work.join(case.file);
    let Some(result) = run_with_limit(
        encore()
            .args(["transcode", "--preset", "ultrafast", "--json", "--out"])
            .arg(&out)
            .arg(&input),
        Duration::from_secs(180),
    ) else {
        return Some("hung (killed after 180 s)".into());
    };
    let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
    match result.status.code() {
        Some(0) => {}
        Some(2) => {
            // A clean refusal: one line saying why, nothing at --out, no staging left over.
            let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
            if errors.len() != 1 {
                return Some(format!("exit 2 without exactly one error line: {stderr}"));
            }
            if out.exists() {
                return Some("exit 2 but the output folder exists".into());
            }
            return None;
        }
        other => {
            return Some(format!(
                "exit {other:?} (signal {:?}): {stderr}",
                std::os::unix::process::ExitStatusExt::signal(&result.status)
            ))
        }
    }
    let summary: serde_json::Value = match serde_json::from_slice(&result.stdout) {
        Ok(v) => v,
        Err(e) => return Some(format!("summary is not JSON ({e})")),
    };
    let (clean, errors) = ffmpeg_decode_all(&out.join("master.m3u8"));
    if !clean || !errors.trim().is_empty() {
        return Some(format!("ffmpeg cannot decode the output cleanly: {errors}"));
    }
    let renditions = summary["renditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let has_audio = renditions.iter().any(|r| r["kind"] == "audio");
    if has_audio != case.audio {
        return Some(format!(
            "audio rendition: {has_audio}, expected {}",
            case.audio
        ));
    }
    let seconds = summary["duration"].as_f64().unwrap_or(0.0);
    if (seconds - case.seconds).abs() > 0.25 {
        return Some(format!(
            "{seconds} s of output, expected {} s",
            case.seconds
        ));
    }
    if summary["deinterlace"].is_string() != case.interlaced {
        return Some(format!(
            "deinterlace {:?} for a source that is{} interlaced",
            summary["deinterlace"],
            if case.interlaced { "" } else { " not" }
        ));
    }
    None
}

#[test]
fn every_corpus_file_transcodes_or_is_refused_cleanly() {
    let work = tempdir();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    // Two at a time: each job is small and mostly start-up.
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(case) = CORPUS.get(i) else { break };
                if let Some(why) = check_transcode(case, work.path()) {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{}: {why}", case.file));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} corpus files failed:\n{}",
        failures.len(),
        CORPUS.len(),
        failures.join("\n")
    );
}

/// Whether a media segment carries the slate brand.
fn is_slate(bytes: &[u8]) -> bool {
    boxes(bytes).iter().any(|b| match b {
        mp4_atom::Any::Styp(styp) => styp
            .compatible_brands
            .iter()
            .any(|c| c.to_string() == "slat"),
        _ => false,
    })
}

#[test]
fn every_corpus_file_plays_as_a_live_channel() {
    let mut failures = Vec::new();
    // Eight channels per daemon keeps two cores ahead of real time.
    for batch in CORPUS.chunks(8) {
        let channels: String = batch
            .iter()
            .enumerate()
            .map(|(i, case)| {
                format!(
                    "[[channels]]\nname = \"c{i}\"\ninput = \"loop:{}\"\nformat = \"320x180@25\"\nladder = \"180:300k\"\npreset = \"ultrafast\"\nsegment_duration = 1\ndvr_window = 10\n",
                    corpus_file(case).display()
                )
            })
            .collect();
        let mut d = Daemon::start(&channels);
        for (i, case) in batch.iter().enumerate() {
            let playlist = format!("/live/c{i}/180p/index.m3u8");
            let started = Instant::now();
            // Two whole segments published after the first: the input has been on for a while.
            let segments = loop {
                let r = d.get(&playlist);
                if r.status() == 200 {
                    let pl = d.media_playlist(&playlist);
                    if pl.segments.len() >= 3 {
                        break Some(pl);
                    }
                }
                if started.elapsed() > Duration::from_secs(30) || !d.running() {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(200));
            };
            let Some(pl) = segments else {
                failures.push(format!("{}: no live segments within 30 s", case.file));
                continue;
            };
            let last = &pl.segments[pl.segments.len() - 1];
            let bytes = d
                .get(&format!("/live/c{i}/180p/{}", last.uri))
                .bytes()
                .unwrap();
            if is_slate(&bytes) {
                failures.push(format!("{}: the channel is on slate", case.file));
            }
        }
        assert!(
            d.running(),
            "the daemon died on batch {:?}",
            batch.iter().map(|c| c.file).collect::<Vec<_>>()
        );
        let errors: Vec<String> = d
            .stderr_lines()
            .into_iter()
            .filter(|l| l.contains("ERROR") || l.contains("panicked"))
            .collect();
        if !errors.is_empty() {
            failures.push(format!("errors logged: {}", errors.join("\n")));
        }
        assert!(d.terminate().success(), "the daemon did not stop cleanly");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
