//! `encore transcode` end to end: real sources from the ffmpeg CLI, the real binary, and
//! independent readers of what it wrote (mp4-atom, m3u8-rs, dash-mpd, ffprobe, ffmpeg).

mod common;

use std::path::Path;

use common::*;
use m3u8_rs::Playlist;
use mp4_atom::Codec;

fn master(out: &Path) -> m3u8_rs::MasterPlaylist {
    match m3u8_rs::parse_playlist_res(&std::fs::read(out.join("master.m3u8")).unwrap()) {
        Ok(Playlist::MasterPlaylist(m)) => m,
        other => panic!("master.m3u8 is not a multivariant playlist: {other:?}"),
    }
}

fn media(path: &Path) -> m3u8_rs::MediaPlaylist {
    match m3u8_rs::parse_playlist_res(&std::fs::read(path).unwrap()) {
        Ok(Playlist::MediaPlaylist(m)) => m,
        other => panic!("{} is not a media playlist: {other:?}", path.display()),
    }
}

/// Peak segment bitrate of one rendition measured from its files and playlist.
fn measured_peak(dir: &Path) -> f64 {
    let pl = media(&dir.join("index.m3u8"));
    pl.segments
        .iter()
        .map(|s| {
            std::fs::metadata(dir.join(&s.uri)).unwrap().len() as f64 * 8.0 / s.duration as f64
        })
        .fold(0.0, f64::max)
}

/// Every check of the VOD acceptance list on one output folder.
fn check_package(
    out: &Path,
    expect_heights: &[u32],
    source_seconds: f64,
    fps: f64,
    hevc: bool,
    audio: bool,
) {
    let m = master(out);
    let heights: Vec<u32> = m
        .variants
        .iter()
        .map(|v| v.resolution.unwrap().height as u32)
        .collect();
    assert_eq!(heights, expect_heights);

    let audio_peak = if audio {
        measured_peak(&out.join("audio"))
    } else {
        0.0
    };
    let mut starts: Option<Vec<f64>> = None;
    for v in &m.variants {
        let dir = out.join(Path::new(&v.uri).parent().unwrap());
        // CODECS from the real sample entries.
        let (entry, timescale) = init_info(&dir.join("init.mp4"));
        match (&entry, hevc) {
            (Codec::Avc1(_), false) | (Codec::Hvc1(_), true) => {}
            (other, _) => panic!("unexpected sample entry {other:?}"),
        }
        let codecs = v.codecs.clone().unwrap();
        assert!(
            codecs.starts_with(&codec_string_of(&entry)),
            "CODECS {codecs} vs sample entry {}",
            codec_string_of(&entry)
        );
        if audio {
            assert!(codecs.ends_with(",mp4a.40.2"), "{codecs}");
            assert_eq!(v.audio.as_deref(), Some("audio"));
        }
        // BANDWIDTH covers the measured peak (video + audio).
        let peak = measured_peak(&dir) + audio_peak;
        assert!(
            v.bandwidth as f64 >= peak,
            "{}: BANDWIDTH {} < measured peak {peak}",
            v.uri,
            v.bandwidth
        );
        assert!(v.average_bandwidth.unwrap() <= v.bandwidth);
        assert!((v.frame_rate.unwrap() - fps).abs() < 0.01);

        // Playlist: EXTINF sum within one frame of the source; rounded EXTINF ≤ target.
        let pl = media(&dir.join("index.m3u8"));
        assert!(pl.end_list);
        assert_eq!(pl.playlist_type, Some(m3u8_rs::MediaPlaylistType::Vod));
        let sum: f64 = pl.segments.iter().map(|s| s.duration as f64).sum();
        assert!(
            (sum - source_seconds).abs() <= 1.0 / fps + 1e-6,
            "{}: EXTINF sum {sum}",
            v.uri
        );
        for s in &pl.segments {
            assert!((s.duration as f64).round() as u64 <= pl.target_duration);
        }

        // Segments: IDR first, tfdt aligned across rungs.
        let mut rung_starts = Vec::new();
        for s in &pl.segments {
            let view = read_segment(&dir.join(&s.uri));
            let types = first_sample_nal_types(&view, hevc);
            let first_vcl =
                types
                    .iter()
                    .copied()
                    .find(|&t| if hevc { t < 32 } else { (1..=5).contains(&t) });
            let idr = if hevc {
                matches!(first_vcl, Some(19 | 20))
            } else {
                first_vcl == Some(5)
            };
            assert!(idr, "{}/{}: first sample NAL types {types:?}", v.uri, s.uri);
            rung_starts.push(view.tfdt as f64 / timescale as f64);
        }
        match &starts {
            None => starts = Some(rung_starts),
            Some(first) => assert_eq!(
                first, &rung_starts,
                "segment start times differ between rungs"
            ),
        }

        // ffprobe decodes the whole rendition with no error.
        let (frames, errors) = decode_rendition(&dir, "v:0");
        assert!(
            errors.trim().is_empty(),
            "{}: ffprobe errors: {errors}",
            v.uri
        );
        assert_eq!(frames, (source_seconds * fps).round() as u64, "{}", v.uri);
    }
    if audio {
        let (entry, timescale) = init_info(&out.join("audio/init.mp4"));
        assert!(matches!(entry, Codec::Mp4a(_)));
        assert_eq!(timescale, 48_000);
        let (frames, errors) = decode_rendition(&out.join("audio"), "a:0");
        assert!(errors.trim().is_empty(), "audio: {errors}");
        assert!(frames > 0);
    } else {
        assert!(!out.join("audio").exists());
        assert!(m.alternatives.is_empty());
    }

    // DASH: an independent parser reads it; every representation listed.
    let xml = std::fs::read_to_string(out.join("manifest.mpd")).unwrap();
    let mpd = dash_mpd::parse(&xml).expect("dash-mpd parses the MPD");
    assert_eq!(mpd.mpdtype.as_deref(), Some("static"));
    let reps: usize = mpd.periods[0]
        .adaptations
        .iter()
        .map(|a| a.representations.len())
        .sum();
    assert_eq!(reps, expect_heights.len() + audio as usize);

    // Real clients: ffmpeg reads both manifests and decodes every stream.
    for manifest in ["master.m3u8", "manifest.mpd"] {
        let (ok, errors) = ffmpeg_decode_all(&out.join(manifest));
        assert!(
            ok && errors.trim().is_empty(),
            "ffmpeg -i {manifest}: {errors}"
        );
    }
}

#[test]
fn avc_ladder_from_a_720p_source() {
    let src = source_720p();
    let dir = tempdir();
    let out = dir.path().join("out");
    let res = run(encore()
        .arg("transcode")
        .arg(&src)
        .arg("--out")
        .arg(&out)
        .arg("--json"));
    assert!(res.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    assert_eq!(summary["renditions"].as_array().unwrap().len(), 4);
    assert_eq!(summary["segments"], 20);
    check_package(&out, &[720, 480, 360], 10.0, 30.0, false, true);
    // Mdat parsed sample flags: the first sample of each segment is a sync sample.
    let view = read_segment(&out.join("720p/1.m4s"));
    assert_eq!(
        view.samples[0].2 & 0x0001_0000,
        0,
        "first sample is not flagged non-sync"
    );
    // Nothing left beside the output.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("out")]);
}

#[test]
fn hevc_ladder_uses_hvc1() {
    let src = source_720p();
    let dir = tempdir();
    let out = dir.path().join("out");
    let res = run(encore()
        .arg("transcode")
        .arg(&src)
        .args([
            "--codec",
            "hevc",
            "--preset",
            "ultrafast",
            "--ladder",
            "720:2000k,360:500k",
            "--out",
        ])
        .arg(&out));
    assert!(res.status.success());
    check_package(&out, &[720, 360], 10.0, 30.0, true, true);
}

#[test]
fn a_1080p_source_gets_four_rungs_and_a_360p_source_one() {
    // 3 s, 1920x1080, 25 fps, no audio.
    let hd = fixture(
        "src-1080p25-3s.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1920x1080:rate=25",
            "-t",
            "3",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ],
    );
    let dir = tempdir();
    let out = dir.path().join("hd");
    assert!(run(encore()
        .arg("transcode")
        .arg(&hd)
        .args(["--preset", "ultrafast", "--out"])
        .arg(&out))
    .status
    .success());
    check_package(&out, &[1080, 720, 480, 360], 3.0, 25.0, false, false);

    // 2 s, 640x360, 30 fps, with audio.
    let sd = fixture(
        "src-360p30-2s.mkv",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:sample_rate=48000",
            "-t",
            "2",
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
    let out = dir.path().join("sd");
    assert!(run(encore()
        .arg("transcode")
        .arg(&sd)
        .args(["--preset", "ultrafast", "--out"])
        .arg(&out))
    .status
    .success());
    check_package(&out, &[360], 2.0, 30.0, false, true);
}

#[test]
fn mpeg_ts_input_with_odd_segment_duration() {
    // 5 s MPEG-TS, 29.97 fps, 3 s segments: boundaries fall between frames.
    let ts = fixture(
        "src-480p2997-5s.ts",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=854x480:rate=30000/1001",
            "-f",
            "lavfi",
            "-i",
            "sine=sample_rate=48000",
            "-t",
            "5",
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
    let dir = tempdir();
    let out = dir.path().join("out");
    let res = run(encore()
        .arg("transcode")
        .arg(&ts)
        .args([
            "--preset",
            "ultrafast",
            "--segment-duration",
            "3",
            "--ladder",
            "480:1000k,240:300k",
            "--out",
        ])
        .arg(&out));
    assert!(res.status.success());
    let m = master(&out);
    assert_eq!(m.variants.len(), 2);
    for v in &m.variants {
        let pl = media(&out.join(&v.uri));
        assert_eq!(pl.target_duration, 3);
        let sum: f64 = pl.segments.iter().map(|s| s.duration as f64).sum();
        let frames = (sum * 30000.0 / 1001.0).round();
        assert!((frames - 150.0).abs() <= 1.0, "{sum}");
    }
    let (ok, errors) = ffmpeg_decode_all(&out.join("master.m3u8"));
    assert!(ok, "{errors}");
}

/// Mean loudness (dB) of a package's audio from `from` seconds on, measured by ffmpeg.
fn mean_volume_after(out: &Path, from: f64) -> f64 {
    let res = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "info", "-i"])
        .arg(out.join("audio/index.m3u8"))
        .args([
            "-af",
            &format!("atrim=start={from},volumedetect"),
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&res.stderr);
    log.lines()
        .find_map(|l| l.split("mean_volume: ").nth(1))
        .and_then(|v| v.trim_end_matches(" dB").parse().ok())
        .unwrap_or_else(|| panic!("no volume measured: {log}"))
}

/// The audio playlist's length in seconds.
fn audio_seconds(out: &Path) -> f64 {
    let pl = media(&out.join("audio/index.m3u8"));
    pl.segments.iter().map(|s| s.duration as f64).sum()
}

/// 6 s of MPEG-TS (25 fps video, a 440 Hz tone), its timestamps moved by `offset` seconds.
fn ts_part(name: &str, offset: &str) -> std::path::PathBuf {
    fixture(
        name,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine",
            "-t",
            "6",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-output_ts_offset",
            offset,
            "-f",
            "mpegts",
        ],
    )
}

/// Two MPEG-TS files joined, the second's timestamps 60 s or 1 h on: a discontinuity, as a
/// splice or a restarted encoder makes. Video and audio are re-based across the same jump:
/// 12 s of each, with sound after the jump. Before, the audio took the jump as a gap (60 s of
/// silence, out of sync, then the file judged truncated; an hour refused the job).
#[test]
fn a_ts_whose_timestamps_jump_keeps_audio_with_video() {
    let first = ts_part("ts-jump-part-0.ts", "0");
    for offset in ["60", "3600"] {
        let second = ts_part(&format!("ts-jump-part-{offset}.ts"), offset);
        let dir = tempdir();
        let joined = dir.path().join("joined.ts");
        // cat first.ts second.ts > joined.ts
        let mut bytes = std::fs::read(&first).unwrap();
        bytes.extend(std::fs::read(&second).unwrap());
        std::fs::write(&joined, bytes).unwrap();
        let out = dir.path().join("out");
        let res = run(encore()
            .arg("transcode")
            .arg(&joined)
            .args(["--preset", "ultrafast", "--ladder", "240:300k", "--out"])
            .arg(&out));
        assert!(
            res.status.success(),
            "jump of {offset} s: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        check_package(&out, &[240], 12.0, 25.0, false, true);
        let audio = audio_seconds(&out);
        assert!((audio - 12.0).abs() < 0.05, "audio lasts {audio} s");
        // The tone goes on after the jump (silence measures about -91 dB).
        let after = mean_volume_after(&out, 7.0);
        assert!(after > -40.0, "after the jump: {after} dB");
    }
}

/// An MPEG-TS starting 5 s before the 33-bit PTS wrap (2^33 ticks of 90 kHz, 95 443.7 s):
/// one 12 s timeline for video and audio, with sound on both sides of the wrap.
#[test]
fn a_ts_across_the_pts_wrap_is_one_timeline() {
    // 95 437.3 s + the muxer's 1.4 s start delay: the first PTS 5 s before the wrap.
    let ts = fixture(
        "ts-pts-wrap.ts",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine",
            "-t",
            "12",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-output_ts_offset",
            "95437.3",
            "-f",
            "mpegts",
        ],
    );
    // The fixture really wraps: its raw PTS (libavformat's correction off) start within 6 s
    // under 2^33 and go on from near 0.
    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-correct_ts_overflow", "0"])
        .args(["-show_entries", "packet=pts", "-of", "csv=p=0"])
        .arg(&ts)
        .output()
        .unwrap();
    let pts: Vec<i64> = String::from_utf8_lossy(&probe.stdout)
        .lines()
        .filter_map(|l| l.trim_end_matches(',').parse().ok())
        .collect();
    let wrap = 1i64 << 33;
    let before = |p: &i64| (wrap - 6 * 90_000..wrap).contains(p);
    assert!(pts.iter().any(before), "starts before the wrap");
    assert!(pts.iter().any(|&p| p < 6 * 90_000), "goes on after it");

    let dir = tempdir();
    let out = dir.path().join("out");
    let res = run(encore()
        .arg("transcode")
        .arg(&ts)
        .args(["--preset", "ultrafast", "--ladder", "240:300k", "--out"])
        .arg(&out));
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    check_package(&out, &[240], 12.0, 25.0, false, true);
    let audio = audio_seconds(&out);
    assert!((audio - 12.0).abs() < 0.05, "audio lasts {audio} s");
    for from in [3.0, 6.0] {
        let volume = mean_volume_after(&out, from);
        assert!(volume > -40.0, "from {from} s: {volume} dB");
    }
}
