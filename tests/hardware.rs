//! Hardware behaviour on a machine without GPUs, through the binary: the probe's report,
//! a named hardware backend refused cleanly, `auto` falling back with one warning, and the GPU
//! self-check without a GPU.

mod common;

use common::*;

fn tiny_source() -> std::path::PathBuf {
    // 1 s, 320x180, 15 fps, no audio.
    fixture(
        "src-180p15-1s.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=15",
            "-t",
            "1",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ],
    )
}

#[test]
fn probe_reports_no_gpu_and_why() {
    let out = run(encore().args(["probe", "--json"]));
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    if report["nvidia"]["devices"].as_array().unwrap().is_empty() {
        assert!(
            !report["nvidia"]["reason"].as_str().unwrap().is_empty(),
            "{report}"
        );
    }
    if report["vaapi"]["devices"].as_array().unwrap().is_empty() {
        assert!(
            !report["vaapi"]["reason"].as_str().unwrap().is_empty(),
            "{report}"
        );
    }
    let backends = report["backends"].as_array().unwrap();
    let software = backends.iter().find(|b| b["name"] == "software").unwrap();
    assert_eq!(software["usable"], true);
    for b in backends.iter().filter(|b| b["usable"] == false) {
        assert!(
            !b["reason"].as_str().unwrap_or("").is_empty(),
            "a refused backend says why: {b}"
        );
    }
    assert!(report["profile"].is_string());
}

#[test]
fn named_nvenc_exits_2_and_auto_falls_back_with_one_warning() {
    let probe: serde_json::Value =
        serde_json::from_slice(&run(encore().args(["probe", "--json"])).stdout).unwrap();
    let nvenc_usable = probe["backends"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["name"] == "nvenc" && b["usable"] == true);
    if nvenc_usable {
        eprintln!("skip: this machine has NVENC");
        return;
    }
    let src = tiny_source();
    let dir = tempdir();
    let named = encore()
        .arg("transcode")
        .arg(&src)
        .args(["--backend", "nvenc", "--out"])
        .arg(dir.path().join("a"))
        .output()
        .unwrap();
    assert_eq!(named.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&named.stderr);
    assert!(stderr.contains("nvenc unavailable:"), "{stderr}");
    assert!(!stderr.contains("panicked"));

    let auto = encore()
        .arg("transcode")
        .arg(&src)
        .args(["--backend", "auto", "--preset", "ultrafast", "--out"])
        .arg(dir.path().join("b"))
        .output()
        .unwrap();
    assert!(auto.status.success());
    let stderr = String::from_utf8_lossy(&auto.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "one WARN for the whole ladder: {stderr}");
    assert!(warnings[0].contains("nvenc unavailable"), "{stderr}");
    assert!(dir.path().join("b/master.m3u8").exists());
}

/// Without a render node, `--backend vaapi` exits 2 naming the node; `auto` names VA-API among
/// the refusals and the job runs (software decode and scale) with nothing left half-written.
#[test]
fn named_vaapi_without_a_render_node_exits_2() {
    let src = tiny_source();
    let dir = tempdir();
    let missing = dir.path().join("renderD128");
    let named = encore()
        .arg("transcode")
        .arg(&src)
        .args(["--backend", "vaapi", "--vaapi-device"])
        .arg(&missing)
        .arg("--out")
        .arg(dir.path().join("a"))
        .output()
        .unwrap();
    assert_eq!(named.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&named.stderr);
    assert!(
        stderr.contains(&format!(
            "vaapi unavailable: no VA-API render node {}",
            missing.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
    assert!(!dir.path().join("a").exists());

    let probe: serde_json::Value =
        serde_json::from_slice(&run(encore().args(["probe", "--json"])).stdout).unwrap();
    if probe["nvidia"]["devices"].as_array().unwrap().is_empty() {
        let out = encore()
            .arg("transcode")
            .arg(&src)
            .args(["--preset", "ultrafast", "--json", "--vaapi-device"])
            .arg(&missing)
            .arg("--out")
            .arg(dir.path().join("b"))
            .output()
            .unwrap();
        assert!(out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("vaapi unavailable: no VA-API render node"),
            "{stderr}"
        );
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["backend"], "software");
        assert_eq!(summary["front_end"], "software decode, swscale per rung");
    }
}

/// `selftest --gpu` on a machine without a GPU: the kernel's host build passes, the GPU part
/// fails with the reasons, exit 1, and the report is printed either way.
#[test]
fn gpu_selftest_without_a_gpu_says_why() {
    let probe: serde_json::Value =
        serde_json::from_slice(&run(encore().args(["probe", "--json"])).stdout).unwrap();
    if !probe["nvidia"]["devices"].as_array().unwrap().is_empty()
        || !probe["vaapi"]["devices"].as_array().unwrap().is_empty()
    {
        eprintln!("skip: this machine has a GPU");
        return;
    }
    let out = encore().args(["selftest", "--gpu"]).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("ok   ladder kernel"), "{text}");
    assert!(
        text.contains("FAIL no GPU to encode on: NVIDIA: libcuda.so.1 not found"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
}

/// `selftest --gpu` on a GPU server: every GPU path the machine has passes (exit 0), each
/// checked on its output and on the front end that ran.
#[test]
#[ignore = "needs an NVIDIA GPU or a VA-API device: make test-gpu"]
fn gpu_selftest_passes_on_this_gpu() {
    let out = encore().args(["selftest", "--gpu"]).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!text.contains("FAIL"), "{text}");
}
