//! `encore bench` through the binary.

mod common;

use common::*;

/// `encore bench --runs 2` runs Encore and both FFmpeg ladders in interleaved rounds on one
/// source and reports, per peer, median ratios with their spread, and per rung bytes and
/// quality measured against the source.
#[test]
fn bench_reports_median_ratios_and_quality_per_rung() {
    let out = run(encore().args([
        "bench",
        "--runs",
        "2",
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["frames"], 30);
    assert_eq!(report["runs"], 2);
    assert_eq!(report["ladder"].as_array().unwrap().len(), 2);
    let sides = report["sides"].as_array().unwrap();
    let names: Vec<&str> = sides.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "encore",
            "ffmpeg (usual ABR ladder)",
            "ffmpeg (encore's options)"
        ]
    );
    for side in sides {
        let cpu = &side["cpu_seconds"];
        let (lo, mid, hi) = (
            cpu["min"].as_f64().unwrap(),
            cpu["median"].as_f64().unwrap(),
            cpu["max"].as_f64().unwrap(),
        );
        assert!(lo > 0.0 && lo <= mid && mid <= hi, "{side}");
        let rungs = side["rungs"].as_array().unwrap();
        assert_eq!(rungs.len(), 2, "{side}");
        for r in rungs {
            assert!(r["bytes"].as_u64().unwrap() > 5_000, "{r}");
            // An encode of a noisy source at these rates: SSIM well above chance, below 1.
            let ssim = r["quality"]["ssim"].as_f64().unwrap();
            let psnr = r["quality"]["psnr_y"].as_f64().unwrap();
            assert!((0.5..1.0).contains(&ssim), "{r}");
            assert!((15.0..60.0).contains(&psnr), "{r}");
        }
    }
    let comparisons = report["comparisons"].as_array().unwrap();
    assert_eq!(comparisons.len(), 2);
    for c in comparisons {
        assert!(c["cpu_ratio"]["median"].as_f64().unwrap() > 0.0, "{c}");
        assert_eq!(c["rungs"].as_array().unwrap().len(), 2, "{c}");
        assert!(c["rungs"][0]["ssim_difference"].is_f64(), "{c}");
    }
    // With Encore's own options the outputs are within a few percent of each other.
    let same = comparisons[1]["bytes_ratio"].as_f64().unwrap();
    assert!((0.9..1.1).contains(&same), "{report}");
    assert!(sides[2]["command"]
        .as_str()
        .unwrap()
        .contains("-x264-params keyint=60:min-keyint=30"));
    assert!(sides[1]["command"]
        .as_str()
        .unwrap()
        .contains("-sc_threshold 0"));
    assert!(report["goal"]["met"].is_boolean(), "{report}");
}
