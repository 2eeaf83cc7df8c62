//! `encore bench` through the binary.

mod common;

use common::*;

/// `encore bench` runs both sides on one source and reports ratios; the peer's encoder options
/// are Encore's own, so the outputs are within a few percent of each other.
#[test]
fn bench_compares_the_ladder_with_the_ffmpeg_cli() {
    let out = run(encore().args([
        "bench",
        "--seconds",
        "1",
        "--size",
        "640x360",
        "--ladder",
        "360:730k,240:400k",
        "--preset",
        "ultrafast",
        "--json",
    ]));
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["frames"], 30);
    assert_eq!(report["ladder"].as_array().unwrap().len(), 2);
    for side in ["encore", "ffmpeg"] {
        assert!(
            report[side]["cpu_seconds"].as_f64().unwrap() > 0.0,
            "{report}"
        );
        assert!(report[side]["bytes"].as_u64().unwrap() > 10_000, "{report}");
    }
    let size = report["size_ratio"].as_f64().unwrap();
    assert!(
        (0.9..1.1).contains(&size),
        "same encoder settings, similar bytes: {report}"
    );
    assert!(report["ffmpeg"]["command"]
        .as_str()
        .unwrap()
        .contains("-x264-params keyint=60:min-keyint=30"));
}
