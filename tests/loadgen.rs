//! `encore loadgen` against a real `encore serve` on 127.0.0.1: live HLS and DASH players on a
//! test-pattern channel, VOD players on an `encore transcode` output, and an origin that
//! answers 404. The summary is read back as JSON.

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::process::{Child, Output, Stdio};
use std::time::Duration;

use common::*;
use daemon::Daemon;
use serde_json::Value;

const CHANNEL: &str = r#"
[[channels]]
name = "t"
input = "test:320x180@15"
ladder = "180:300k,90:120k"
preset = "ultrafast"
segment_duration = 1
dvr_window = 30
"#;

fn loadgen(url: &str, args: &[&str]) -> Child {
    encore()
        .args(["loadgen", url, "--json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The JSON summary of a run that exited 0, and its running lines (stderr).
fn summary(out: Output) -> (Value, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "loadgen failed: {stderr}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (json, stderr)
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// A live channel's players: requests of every kind, bytes, no errors, every player playing.
fn assert_played_live(json: &Value, stderr: &str, protocol: &str, players: u64) {
    assert_eq!(json["protocol"], protocol, "{json}");
    assert_eq!(json["errors"], serde_json::json!({}), "{json}");
    assert_eq!(count(&json["players"]["started"]), players);
    assert_eq!(count(&json["players"]["failed_to_start"]), 0);
    assert_eq!(count(&json["players"]["active_at_end"]), players);
    for kind in ["manifest", "init", "segment"] {
        assert!(count(&json[kind]["requests"]) > 0, "{kind}: {json}");
        assert_eq!(count(&json[kind]["errors"]), 0, "{kind}");
    }
    // Every player fetched its video and audio init segments.
    assert_eq!(count(&json["init"]["requests"]), 2 * players);
    assert!(count(&json["segment"]["bytes"]) > 10_000, "{json}");
    assert!(json["segment"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert!(json["stalls"].is_u64());
    let seconds = json["per_second"].as_array().unwrap();
    assert!(seconds.len() >= 10, "{} seconds", seconds.len());
    assert_eq!(count(&seconds.last().unwrap()["players"]), players);
    // One running line a second under the header, on stderr.
    assert!(stderr.contains("segment p50/p99"), "{stderr}");
    assert!(stderr.lines().count() > seconds.len(), "{stderr}");
}

#[test]
fn hls_and_dash_players_follow_a_live_channel() {
    let d = Daemon::start(CHANNEL);
    d.wait_for("/live/t/master.m3u8", Duration::from_secs(20));
    let args = ["--players", "4", "--ramp", "4", "--duration", "12"];
    let hls = loadgen(&format!("{}/live/t/master.m3u8", d.base), &args);
    let dash = loadgen(&format!("{}/live/t/manifest.mpd", d.base), &args);
    let (hls, hls_lines) = summary(hls.wait_with_output().unwrap());
    let (dash, dash_lines) = summary(dash.wait_with_output().unwrap());
    assert_played_live(&hls, &hls_lines, "hls", 4);
    assert_played_live(&dash, &dash_lines, "dash", 4);
    // HLS players reload two media playlists (video, audio) about once a segment (D = 1 s);
    // DASH players fetch the MPD once a segment and the clock once.
    assert!(count(&hls["manifest"]["requests"]) >= 4 * 2 * 6, "{hls}");
    assert!(count(&dash["manifest"]["requests"]) >= 4 * 6, "{dash}");
    assert!(d.stderr_lines().iter().all(|l| !l.contains("ERROR")));
}

#[test]
fn vod_players_fetch_every_segment_once_and_end() {
    let d = Daemon::start("");
    // A 5 s clip with a tone:
    // ffmpeg -f lavfi -i testsrc2=size=320x180:rate=15 -f lavfi -i sine=frequency=440
    //        -t 5 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac clip.mp4
    let dir = tempdir();
    let clip = dir.path().join("clip.mp4");
    run(std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=15",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t", "5"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac"])
        .arg(&clip));
    let out = d.data_dir().join("vod").join("clip");
    run(encore()
        .args([
            "transcode",
            "--ladder",
            "180:300k,90:120k",
            "--preset",
            "ultrafast",
        ])
        .args(["--segment-duration", "2", "--out"])
        .arg(&out)
        .arg(&clip));
    // What the players should fetch: each media playlist's segments.
    let segments = |rendition: &str| {
        let text = std::fs::read_to_string(out.join(rendition).join("index.m3u8")).unwrap();
        text.lines().filter(|l| l.ends_with(".m4s")).count() as u64
    };
    let per_player = segments("90p") + segments("audio");
    assert!(per_player >= 4, "{per_player} segments");

    for url in ["/vod/clip/master.m3u8", "/vod/clip/manifest.mpd"] {
        let args = ["--players", "3", "--ramp", "10", "--duration", "5"];
        let child = loadgen(
            &format!("{}{url}", d.base),
            &[&args[..], &["--rendition", "bottom"]].concat(),
        );
        let (json, _) = summary(child.wait_with_output().unwrap());
        assert_eq!(json["errors"], serde_json::json!({}), "{url}: {json}");
        assert_eq!(
            count(&json["segment"]["requests"]),
            3 * per_player,
            "{url}: {json}"
        );
        assert_eq!(count(&json["init"]["requests"]), 3 * 2, "{url}");
        // They fetched everything and stopped: a VOD ends.
        assert_eq!(count(&json["players"]["started"]), 3, "{url}");
        assert_eq!(count(&json["players"]["active_at_end"]), 0, "{url}: {json}");
    }
}

#[test]
fn an_origin_that_fails_is_counted_not_fatal() {
    let d = Daemon::start("");
    // 404 for every player: counted by status, the run goes on to its end and exits 0.
    let child = loadgen(
        &format!("{}/live/nothing/master.m3u8", d.base),
        &["--players", "3", "--ramp", "10", "--duration", "2"],
    );
    let (json, _) = summary(child.wait_with_output().unwrap());
    assert_eq!(json["protocol"], Value::Null);
    assert_eq!(count(&json["errors"]["404"]), 3, "{json}");
    assert_eq!(count(&json["manifest"]["errors"]), 3);
    assert_eq!(count(&json["players"]["failed_to_start"]), 3);
    assert_eq!(count(&json["segment"]["requests"]), 0);

    // A retry storm against the same 404: many more requests, still counted.
    let child = loadgen(
        &format!("{}/live/nothing/master.m3u8", d.base),
        &["--players", "2", "--duration", "2", "--retry", "immediate"],
    );
    let (json, _) = summary(child.wait_with_output().unwrap());
    assert!(count(&json["errors"]["404"]) > 20, "{json}");

    // Nothing listening: transport errors, by kind.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = loadgen(
        &format!("http://127.0.0.1:{port}/x.m3u8"),
        &["--players", "2", "--duration", "1"],
    );
    let (json, _) = summary(child.wait_with_output().unwrap());
    assert_eq!(count(&json["errors"]["connect"]), 2, "{json}");

    // A URL that answers with something no player can play: exit 2, saying so.
    let out = encore()
        .args(["loadgen", &format!("{}/healthz", d.base), "--duration", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("neither an HLS playlist nor a DASH MPD"),
        "{stderr}"
    );
}
