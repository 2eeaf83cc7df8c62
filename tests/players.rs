//! Real web players against Encore's output: hls.js and dash.js in headless Chromium
//! (`tests/players/play.js`), playing a live channel and a VOD package from the daemon's
//! origin. Each must start, play for real (frames decoded, media time advancing) and report
//! no fatal error.
//!
//! Needs Chromium, Node.js and `tests/players/node_modules`: `make test` installs them
//! (`make test-deps`). Without them the test fails and says so.

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::time::Duration;

use common::*;
use daemon::Daemon;

#[test]
fn hls_js_and_dash_js_play_live_and_vod() {
    if !web_players_available() {
        return;
    }
    // `news` at 30 fps; `ntsc` at 29.97 fps (segments of 60 or 59 whole frames).
    let d = Daemon::start(
        "[[channels]]\nname = \"news\"\ninput = \"test:640x360@30\"\nladder = \"360:800k,240:400k\"\n\
         [[channels]]\nname = \"ntsc\"\ninput = \"test:640x360@29.97\"\nladder = \"360:800k\"\n",
    );
    // VOD: the 10 s 720p fixture (H.264 + AAC) into the daemon's VOD folder.
    let vod = d.data_dir().join("vod/show");
    let out = run(encore()
        .arg("transcode")
        .arg(source_720p())
        .arg("--out")
        .arg(&vod)
        .args(["--preset", "ultrafast"]));
    assert!(out.status.success());
    d.wait_for("/live/news/master.m3u8", Duration::from_secs(15));
    d.wait_for("/live/ntsc/master.m3u8", Duration::from_secs(15));

    let base = &d.base;
    for (kind, path, levels, seconds, min_played) in [
        ("hls", "/live/news/master.m3u8", 2, 10, 3.0),
        ("dash", "/live/news/manifest.mpd", 2, 10, 3.0),
        ("hls", "/live/ntsc/master.m3u8", 1, 10, 3.0),
        ("dash", "/live/ntsc/manifest.mpd", 1, 10, 3.0),
        ("hls", "/vod/show/master.m3u8", 3, 8, 3.0),
        ("dash", "/vod/show/manifest.mpd", 3, 8, 3.0),
    ] {
        let url = format!("{base}{path}");
        let report = play(kind, &url, seconds);
        assert_played(kind, &url, &report, levels, min_played);
    }
}

/// The value of the sample `name` with exactly `labels`, in parsed Prometheus text.
fn sample(
    samples: &[(String, std::collections::BTreeMap<String, String>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    samples.iter().find_map(|(n, l, v)| {
        let same = l.len() == labels.len()
            && labels
                .iter()
                .all(|(k, x)| l.get(*k).map(String::as_str) == Some(*x));
        (n == name && same).then_some(*v)
    })
}

/// hls.js with CMCD on (CTA-5004, in the query string) plays a channel; the origin's QoE
/// series then show its one session, the bitrates it chose by rendition, and its buffer, and
/// `/metrics` (read by prometheus_client's parser) carries the channel's, the origin's, the
/// jobs' and the node's series.
#[test]
fn hls_js_sends_cmcd_and_the_origin_counts_its_session() {
    if !web_players_available() {
        return;
    }
    let d = Daemon::start(
        "[[channels]]\nname = \"news\"\ninput = \"test:640x360@30\"\nladder = \"360:800k,240:400k\"\n",
    );
    d.wait_for("/live/news/master.m3u8", Duration::from_secs(15));
    // Malformed CMCD is counted, never an error to the player.
    let bad = d.get("/live/news/master.m3u8?CMCD=br%3Dabc%2Csid%3Dunquoted");
    assert_eq!(bad.status(), 200);
    let url = format!("{}/live/news/master.m3u8", d.base);
    let report = play_with("hls", &url, 10, Some("qoe-test-session"));
    assert_played("hls", &url, &report, 2, 3.0);
    let metrics = d.get("/metrics").text().unwrap();
    let qoe: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains("_qoe_") || l.contains("cmcd"))
        .collect();
    println!("{}", qoe.join("\n"));
    // Read by prometheus_client's parser, not ours.
    let m = parse_prometheus(&metrics);
    assert_eq!(sample(&m, "encore_qoe_sessions_active", &[]), Some(1.0));
    assert_eq!(sample(&m, "encore_cmcd_malformed_total", &[]), Some(1.0));
    assert!(sample(&m, "encore_cmcd_requests_total", &[]).unwrap() >= 5.0);
    assert!(sample(&m, "encore_qoe_bitrate_kbps_count", &[]).unwrap() >= 3.0);
    assert!(sample(&m, "encore_qoe_buffer_length_seconds_count", &[]).unwrap() >= 3.0);
    let by_rendition: f64 = ["360p", "240p"]
        .iter()
        .filter_map(|r| {
            sample(
                &m,
                "encore_qoe_requests_by_rendition_total",
                &[("rendition", *r)],
            )
        })
        .sum();
    // The channel's own series: on air, each rung's frames, ratio and publish latency.
    let news = [("channel", "news")];
    assert_eq!(sample(&m, "encore_channel_on_air", &news), Some(1.0));
    assert_eq!(
        sample(&m, "encore_channel_restarts_total", &news),
        Some(0.0)
    );
    for rung in ["360p", "240p"] {
        let labels = [("channel", "news"), ("rendition", rung)];
        assert!(sample(&m, "encore_rung_frames_encoded_total", &labels).unwrap() > 100.0);
        assert!(sample(&m, "encore_rung_realtime_ratio", &labels).unwrap() > 0.0);
        let published = sample(&m, "encore_segment_publish_latency_seconds_count", &labels);
        assert!(published.unwrap() >= 3.0, "{rung}");
    }
    assert!(by_rendition >= 3.0, "{qoe:?}");
    // The player is the channel's one viewer.
    assert_eq!(sample(&m, "encore_channel_viewers", &news), Some(1.0));
    // The origin's series: requests by class and status, their latency and bytes, its load.
    for class in ["manifest", "init", "segment"] {
        let served = sample(
            &m,
            "encore_origin_requests_total",
            &[("class", class), ("status", "200")],
        );
        assert!(served.unwrap_or(0.0) >= 2.0, "{class}: {served:?}");
        let timed = sample(
            &m,
            "encore_origin_request_duration_seconds_count",
            &[("class", class)],
        );
        assert!(timed.unwrap_or(0.0) >= 2.0, "{class}: {timed:?}");
    }
    let segment_bytes = sample(
        &m,
        "encore_origin_bytes_sent_total",
        &[("class", "segment")],
    );
    assert!(segment_bytes.unwrap_or(0.0) > 50_000.0, "{segment_bytes:?}");
    for gauge in ["encore_origin_in_flight", "encore_origin_held_requests"] {
        assert!(sample(&m, gauge, &[]).is_some_and(|v| v >= 0.0), "{gauge}");
    }
    for reason in ["client_cap", "fair_share", "load"] {
        let shed = sample(&m, "encore_origin_refused_total", &[("reason", reason)]);
        assert_eq!(shed, Some(0.0), "{reason}");
    }
    // Jobs and the node.
    for state in ["queued", "running", "succeeded", "failed", "cancelled"] {
        assert_eq!(
            sample(&m, "encore_jobs", &[("state", state)]),
            Some(0.0),
            "{state}"
        );
    }
    assert_eq!(sample(&m, "encore_queue_length", &[]), Some(0.0));
    assert!(sample(&m, "encore_capacity_units", &[]).unwrap() > 0.0);
    assert!(
        sample(&m, "encore_capacity_used_units", &[]).unwrap() > 0.0,
        "the channel's share"
    );
    assert_eq!(sample(&m, "encore_nvenc_sessions_open", &[]), Some(0.0));
}
