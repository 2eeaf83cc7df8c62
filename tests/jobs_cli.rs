//! `encore jobs` and `encore channels`, end to end: the real CLI against a real `encore serve`
//! (SQLite store), with an input served over HTTP by the test. Checks what a user sees: the
//! job id and playback URLs, tables and `--json`, the server's field errors with exit code 2,
//! tokens, and the message when no daemon is there.

#[path = "common/api.rs"]
mod api;
mod common;
#[path = "common/postgres.rs"]
mod postgres;

use std::process::Command;

use serde_json::Value;

use api::{source, Backend, FileServer, Node};
use common::tempdir;

/// The CLI with none of the caller's client settings.
fn encore() -> Command {
    let mut c = common::encore();
    c.env_remove("ENCORE_API_TOKEN").env_remove("ENCORE_SERVER");
    c
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("run encore");
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "{cmd:?} -> {:?}\n--- stdout\n{}--- stderr\n{}",
        run.code, run.stdout, run.stderr
    );
    run
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// `encore ARGS --server BASE`.
fn cli(node: &Node, args: &[&str]) -> Run {
    run(encore().args(args).args(["--server", &node.base]))
}

#[test]
fn jobs_and_channels_from_the_command_line() {
    let dir = tempdir();
    let src = source(640, 360, 4);
    let files = FileServer::start(&common::fixtures_dir());
    let node = Node::start(dir.path(), &Backend::Sqlite, "");
    let input = format!(
        "{}/{}",
        files.base,
        src.file_name().unwrap().to_string_lossy()
    );

    let done = cli(
        &node,
        &["jobs", "submit", &input, "--ladder", "360:800k", "--wait"],
    );
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let id = done.stdout.lines().next().unwrap().trim().to_string();
    let hls = format!("{}/vod/{id}/master.m3u8", node.base);
    assert!(
        done.stdout.contains(&format!("HLS:  {hls}")),
        "{}",
        done.stdout
    );
    assert!(done.stdout.contains("succeeded"), "{}", done.stdout);
    assert!(
        done.stderr.contains(&format!("job {id} succeeded")),
        "{}",
        done.stderr
    );

    let listed = cli(&node, &["jobs", "list", "--json"]);
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    let page: Value = serde_json::from_str(&listed.stdout).unwrap();
    let job = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not in {page}"));
    assert_eq!(job["state"], "succeeded");
    let table = cli(&node, &["jobs", "list", "--state", "succeeded"]);
    assert!(table.stdout.starts_with("ID"), "{}", table.stdout);
    assert!(table
        .stdout
        .lines()
        .any(|l| l.starts_with(&id) && l.contains("succeeded")));

    let shown = cli(&node, &["jobs", "show", &id]);
    assert_eq!(shown.code, Some(0), "{}", shown.stderr);
    for expected in [id.as_str(), "succeeded", "360:800k", &input, &hls] {
        assert!(
            shown.stdout.contains(expected),
            "{expected} in\n{}",
            shown.stdout
        );
    }

    // The server's field errors, by pointer; a 4xx exits 2.
    let bad = cli(&node, &["jobs", "submit", &input, "--codec", "vp9"]);
    assert_eq!(bad.code, Some(2));
    assert!(
        bad.stderr
            .starts_with("encore: error: 422 Unprocessable Entity: /codec: "),
        "{}",
        bad.stderr
    );
    // A job that fails: exit 1, naming its error.
    let junk_dir = tempdir();
    std::fs::write(junk_dir.path().join("junk.mp4"), b"not media").unwrap();
    let junk = FileServer::start(junk_dir.path());
    let junk_url = format!("{}/junk.mp4", junk.base);
    let failed = cli(&node, &["jobs", "submit", &junk_url, "--wait", "--json"]);
    assert_eq!(failed.code, Some(1));
    let job: Value = serde_json::from_str(&failed.stdout).unwrap();
    assert_eq!(job["state"], "failed");
    let expected = format!(
        "encore: error: job {} failed: not_media: ",
        text(&job["id"])
    );
    assert!(failed.stderr.contains(&expected), "{}", failed.stderr);

    let busy = cli(&node, &["jobs", "retry", &id]);
    assert_eq!(busy.code, Some(2));
    assert!(busy.stderr.contains("409 Conflict"), "{}", busy.stderr);

    // Cancelling a finished job removes it.
    let removed = cli(&node, &["jobs", "cancel", &id]);
    assert_eq!(removed.code, Some(0), "{}", removed.stderr);
    assert!(removed.stdout.contains("removed"), "{}", removed.stdout);
    let gone = cli(&node, &["jobs", "show", &id]);
    assert_eq!(gone.code, Some(2));
    assert!(gone.stderr.contains("404 Not Found"), "{}", gone.stderr);

    let added = cli(
        &node,
        &[
            "channels",
            "add",
            "c1",
            "test:320x180@25",
            "--ladder",
            "180:300k",
            "--segment-duration",
            "1",
        ],
    );
    assert_eq!(added.code, Some(0), "{}", added.stderr);
    let master = format!("{}/live/c1/master.m3u8", node.base);
    assert!(added.stdout.contains(&master), "{}", added.stdout);
    let channels = cli(&node, &["channels", "list"]);
    assert!(
        channels
            .stdout
            .lines()
            .any(|l| l.starts_with("c1 ") && l.contains("api") && l.contains(&master)),
        "{}",
        channels.stdout
    );
    let removed = cli(&node, &["channels", "remove", "c1"]);
    assert_eq!(removed.code, Some(0), "{}", removed.stderr);
    let channels = cli(&node, &["channels", "list", "--json"]);
    let list: Value = serde_json::from_str(&channels.stdout).unwrap();
    assert_eq!(list["channels"], serde_json::json!([]), "{list}");
}

#[test]
fn tokens_are_required_and_sent() {
    let dir = tempdir();
    let token = "cli-test-token-0123456789";
    let node = Node::start_with_env(
        dir.path(),
        &Backend::Sqlite,
        "",
        &[("ENCORE_API_TOKEN", token)],
    );
    let denied = cli(&node, &["jobs", "list"]);
    assert_eq!(denied.code, Some(2));
    assert!(
        denied.stderr.contains("401 Unauthorized"),
        "{}",
        denied.stderr
    );
    assert!(
        denied.stderr.contains("ENCORE_API_TOKEN"),
        "{}",
        denied.stderr
    );

    let from_env = run(encore()
        .args(["jobs", "list", "--server", &node.base])
        .env("ENCORE_API_TOKEN", token));
    assert_eq!(from_env.code, Some(0), "{}", from_env.stderr);
    assert_eq!(from_env.stdout, "no jobs\n");

    let file = dir.path().join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let from_file = run(encore()
        .args([
            "channels",
            "list",
            "--json",
            "--server",
            &node.base,
            "--token-file",
        ])
        .arg(&file));
    assert_eq!(from_file.code, Some(0), "{}", from_file.stderr);
    std::fs::write(&file, "wrong-token-0123456789").unwrap();
    let wrong = run(encore()
        .args(["jobs", "list", "--server", &node.base, "--token-file"])
        .arg(&file));
    assert_eq!(wrong.code, Some(2));
    assert!(wrong.stderr.contains("401"), "{}", wrong.stderr);
}

#[test]
fn no_daemon_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("http://127.0.0.1:{port}");
    let out = run(encore()
        .args(["jobs", "list"])
        .env("ENCORE_SERVER", &server));
    assert_eq!(out.code, Some(1));
    let expected = format!("encore: error: cannot reach the Encore server at {server}: ");
    assert!(out.stderr.starts_with(&expected), "{}", out.stderr);
    assert!(
        out.stderr.contains("is `encore serve` running?"),
        "{}",
        out.stderr
    );
}
