//! Interlaced sources come out progressive: a 1080i source (field order tt) against the same
//! source deinterlaced by the ffmpeg CLI's bwdif, compared by ffmpeg's psnr filter.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// 1 s of 1080i25, top field first: a scrolling test pattern (motion between the fields),
/// interlaced from 50p and encoded as interlaced H.264.
fn source_1080i() -> std::path::PathBuf {
    fixture(
        "src-1080i25-tff-1s.ts",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1920x1080:rate=50,scroll=h=0.004",
            "-t",
            "1",
            "-vf",
            "interlace=scan=tff",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-crf",
            "12",
            "-pix_fmt",
            "yuv420p",
            "-flags",
            "+ildct+ilme",
        ],
    )
}

/// Average luma PSNR of `rendition` (a media playlist) against the source through bwdif.
fn psnr_against_bwdif(rendition: &Path, source: &Path) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-i"])
        .arg(rendition)
        .arg("-i")
        .arg(source)
        .args([
            "-filter_complex",
            "[0:v]setpts=PTS-STARTPTS[out];[1:v]bwdif=mode=send_frame:parity=auto:deint=all,setpts=PTS-STARTPTS[ref];[out][ref]psnr",
            "-f",
            "null",
            "-",
        ])
        .output()
        .expect("ffmpeg CLI");
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log
        .lines()
        .find(|l| l.contains("PSNR y:"))
        .unwrap_or_else(|| panic!("no PSNR from ffmpeg: {log}"));
    let y = line.split("PSNR y:").nth(1).unwrap();
    y.split_whitespace().next().unwrap().parse().unwrap()
}

fn transcode(source: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let result = run(encore()
        .args([
            "transcode",
            "--ladder",
            "1080:20M",
            "--preset",
            "ultrafast",
            "--json",
            "--out",
        ])
        .arg(out)
        .arg(source)
        .args(extra));
    assert!(result.status.success());
    serde_json::from_slice(&result.stdout).unwrap()
}

#[test]
fn a_1080i_source_comes_out_progressive() {
    let source = source_1080i();
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "stream=field_order",
            "-of",
            "csv=p=0",
        ])
        .arg(&source)
        .output()
        .unwrap();
    // (MPEG-TS lists the stream under its program too: the first line is enough.)
    assert_eq!(
        String::from_utf8_lossy(&probe.stdout).lines().next(),
        Some("tt")
    );
    let dir = tempdir();

    let summary = transcode(&source, &dir.path().join("on"), &[]);
    assert_eq!(summary["deinterlace"], "bwdif, one picture per frame");
    assert_eq!(summary["frames"], 25);
    let deinterlaced = psnr_against_bwdif(&dir.path().join("on/1080p/index.m3u8"), &source);
    assert!(deinterlaced >= 35.0, "PSNR {deinterlaced} dB against bwdif");

    // The same source woven (combed): far from the reference, so the comparison has teeth.
    let summary = transcode(&source, &dir.path().join("off"), &["--deinterlace", "off"]);
    assert!(summary["deinterlace"].is_null());
    let woven = psnr_against_bwdif(&dir.path().join("off/1080p/index.m3u8"), &source);
    assert!(
        woven + 10.0 < deinterlaced,
        "woven {woven} dB, deinterlaced {deinterlaced} dB"
    );

    // One picture per field: twice the frames, at 50 fps.
    let summary = transcode(
        &source,
        &dir.path().join("field"),
        &["--deinterlace", "field"],
    );
    assert_eq!(summary["deinterlace"], "bwdif, one picture per field");
    assert_eq!(summary["frames"], 50);
    let mpd = std::fs::read_to_string(dir.path().join("field/manifest.mpd")).unwrap();
    assert!(mpd.contains("frameRate=\"50\""), "{mpd}");
}
