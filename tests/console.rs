//! The web console in headless Chromium (`tests/players/console.js`), driven as an operator
//! would: the page asks for the API token once, lists the configured channel, whose player
//! advances; a job submitted through the form reaches `succeeded` on the page and plays. No
//! request leaves 127.0.0.1. The screenshot is kept as a test artifact in
//! `target/test-artifacts/console.png`.
//!
//! Needs Chromium, Node.js and `tests/players/node_modules` (`make test` installs them).

#[path = "common/api.rs"]
mod api;
mod common;
#[path = "common/postgres.rs"]
mod postgres;

use std::process::Command;

use api::{Backend, Node};
use common::*;

#[test]
fn the_console_shows_the_channel_and_runs_a_job_from_its_form() {
    web_players_available();
    let dir = tempdir();
    let inputs = dir.path().join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::copy(api::source(320, 240, 4), inputs.join("talk.mp4")).unwrap();
    let node = Node::start_with_env(
        dir.path(),
        &Backend::Sqlite,
        &format!(
            "input_roots = [\"{}\"]\n[[channels]]\nname = \"demo\"\ninput = \"test:320x180@15\"\n\
             ladder = \"180:300k\"\npreset = \"ultrafast\"\nsegment_duration = 1\n",
            inputs.display()
        ),
        &[("ENCORE_API_TOKEN", "console-secret-token")],
    );
    // The page and its files are public; the API behind them is not.
    let page = reqwest::blocking::get(format!("{}/", node.base)).unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    let channels = reqwest::blocking::get(format!("{}/v1/channels", node.base)).unwrap();
    assert_eq!(channels.status(), 401);

    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("console.png");
    let _ = std::fs::remove_file(&screenshot);
    let out = Command::new("node")
        .arg(web_players_dir().join("console.js"))
        .arg(&node.base)
        .arg("console-secret-token")
        .arg(inputs.join("talk.mp4"))
        .arg(&screenshot)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "console.js failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    println!("{report:#}");
    assert_eq!(report["asked_token"], true, "{report}");
    assert_eq!(report["channels"], serde_json::json!(["demo"]), "{report}");
    let advanced = report["advanced"].as_f64().unwrap();
    assert!(
        advanced >= 5.0,
        "the channel's player advanced {advanced} s: {report}"
    );
    assert_eq!(report["job_state"], "succeeded", "{report}");
    assert!(report["job_played"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(report["offsite"], serde_json::json!([]), "{report}");
    assert_eq!(report["page_errors"], serde_json::json!([]), "{report}");
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
    assert!(
        !node.stderr_lines().iter().any(|l| l.contains("ERROR")),
        "{:?}",
        node.stderr_lines()
    );
}
