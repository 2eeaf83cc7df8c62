//! Bad input: a clear one-line error, a non-zero exit, and nothing left at --out.

mod common;

use std::path::Path;

use common::*;

/// Runs a transcode expected to fail; returns its stderr after checking the contract.
fn fails(input: &Path, extra: &[&str], expect_in_message: &str) -> String {
    let dir = tempdir();
    let out = dir.path().join("out");
    let res = encore()
        .arg("transcode")
        .arg(input)
        .arg("--out")
        .arg(&out)
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr).into_owned();
    assert!(!res.status.success(), "expected failure for {extra:?}");
    assert_ne!(res.status.code(), Some(101), "a panic: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let error_lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(error_lines.len(), 1, "one clear line: {stderr}");
    assert!(
        stderr
            .to_lowercase()
            .contains(&expect_in_message.to_lowercase()),
        "{stderr:?} should mention {expect_in_message:?}"
    );
    assert!(!out.exists(), "nothing at --out");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "no partial output beside --out");
    stderr
}

#[test]
fn missing_file() {
    fails(Path::new("/nonexistent/clip.mp4"), &[], "not found");
}

#[test]
fn not_media() {
    let dir = tempdir();
    let p = dir.path().join("notes.mp4");
    std::fs::write(&p, "this is not a video, just text\n".repeat(100)).unwrap();
    fails(&p, &[], "not a media file");
}

#[test]
fn no_video_stream() {
    // 2 s of AAC only.
    let a = fixture(
        "audio-only-2s.m4a",
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=sample_rate=48000",
            "-t",
            "2",
            "-c:a",
            "aac",
        ],
    );
    fails(&a, &[], "no video stream");
}

#[test]
fn truncated_file() {
    let src = source_720p();
    let bytes = std::fs::read(&src).unwrap();
    let dir = tempdir();
    let cut = dir.path().join("cut.mp4");
    // faststart puts moov first, so the file opens and ends halfway through its media.
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = dir.path().join("out");
    let res = encore()
        .arg("transcode")
        .arg(&cut)
        .args(["--preset", "ultrafast", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success());
    assert!(stderr.contains("truncated"), "{stderr}");
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only the input is left"
    );
}

#[test]
fn impossible_ladders() {
    let src = source_720p();
    fails(&src, &["--ladder", "720:0k"], "bitrate");
    fails(&src, &["--ladder", "721:3000k"], "even");
    fails(&src, &["--ladder", "0:3000k"], "zero");
    fails(&src, &["--ladder", "1x720:3000k"], "even");
    fails(&src, &["--ladder", "2160:20000k"], "above the source");
    fails(&src, &["--ladder", "720"], "HEIGHT:BITRATE");
    fails(&src, &["--segment-duration", "0.5"], "outside 1 to 10");
    // One rule everywhere: whole milliseconds that divide a day (1.0005 s was once cut to
    // 1 s for the IDRs and kept for the manifests).
    fails(&src, &["--segment-duration", "1.0005"], "divide a day");
    fails(&src, &["--segment-duration", "7"], "divide a day");
}

/// Audio that starts 3 h after the video, in Matroska (whose timestamps are taken as they
/// are): refused with the size of the gap, rather than encoding 3 h of silence (and holding it
/// until the video catches up) for a 12 s video.
#[test]
fn audio_hours_after_the_video_is_refused_naming_the_gap() {
    let late = fixture(
        "audio-3h-late.mkv",
        &[
            "-t",
            "12",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-itsoffset",
            "10800",
            "-t",
            "12",
            "-f",
            "lavfi",
            "-i",
            "sine",
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
    fails(
        &late,
        &["--preset", "ultrafast", "--ladder", "240:300k"],
        "audio starts 10800.0 s after the video",
    );
}

#[test]
fn named_hardware_backend_without_driver() {
    let src = source_720p();
    let stderr = fails(&src, &["--backend", "nvenc"], "nvenc unavailable");
    assert!(stderr.contains("libcuda.so.1 not found"), "{stderr}");
}

#[test]
fn existing_output_is_not_clobbered() {
    let src = source_720p();
    let dir = tempdir();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "precious").unwrap();
    let res = encore()
        .arg("transcode")
        .arg(&src)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&res.stderr).contains("--force"));
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "precious"
    );
}

#[test]
fn corrupt_packets_are_counted_and_the_output_stays_valid() {
    // MPEG-TS tolerates damage: overwrite a run of bytes in the middle of the stream.
    let ts = fixture(
        "src-360p30-4s.ts",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=30",
            "-t",
            "4",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-bsf:v",
            "h264_mp4toannexb",
        ],
    );
    let mut bytes = std::fs::read(&ts).unwrap();
    let mid = bytes.len() / 2;
    for (i, b) in bytes[mid..mid + 20_000].iter_mut().enumerate() {
        // Keep the TS sync bytes so the demuxer stays aligned; damage the payload.
        if !(mid + i).is_multiple_of(188) {
            *b = (i as u8).wrapping_mul(31) ^ 0x5a;
        }
    }
    let dir = tempdir();
    let bad = dir.path().join("damaged.ts");
    std::fs::write(&bad, bytes).unwrap();
    let out = dir.path().join("out");
    let res = run(encore()
        .arg("transcode")
        .arg(&bad)
        .args(["--preset", "ultrafast", "--json", "--out"])
        .arg(&out));
    assert!(res.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    assert!(summary["decode_errors"].as_u64().unwrap() > 0, "{summary}");
    let (ok, errors) = ffmpeg_decode_all(&out.join("master.m3u8"));
    assert!(ok && errors.trim().is_empty(), "{errors}");
    let (frames, errors) = decode_rendition(&out.join("360p"), "v:0");
    assert!(errors.trim().is_empty(), "{errors}");
    assert_eq!(frames, 120);
}
