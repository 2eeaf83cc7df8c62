//! Job outputs in S3-compatible object storage: a real server (s3s-fs, which checks
//! signatures) started by the test, a real node configured with `store = "s3://…"` and the
//! usual AWS environment variables.

#[path = "common/api.rs"]
mod api;
mod common;
#[path = "common/postgres.rs"]
mod postgres;
#[path = "common/s3.rs"]
mod s3;

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::json;

use api::{source, Backend, FileServer, Node};
use common::{ffmpeg_decode_all, tempdir};
use s3::S3Server;

const STORE: &str = "store = \"s3://media/encore\"\nmax_attempts = 1\n";

/// A node storing in `s3` that ran one job (a SECONDS-long 360p source into two rungs) to
/// success: the node, the job's id and record.
fn finished_job(s3: &S3Server, dir: &Path, seconds: u32) -> (Node, String, serde_json::Value) {
    let files = FileServer::start(&common::fixtures_dir());
    let input = source(640, 360, seconds);
    let node = Node::start_with_env(dir, &Backend::Sqlite, STORE, &s3.env(s3::SECRET_KEY));
    let name = input.file_name().unwrap().to_string_lossy().into_owned();
    let id = node.submit(
        &json!({"input": format!("{}/{name}", files.base), "ladder": "360:800k,240:400k"})
            .to_string(),
    );
    let job = node.wait_for(&id, &["succeeded", "failed"], Duration::from_secs(120));
    assert_eq!(job["state"], "succeeded", "{job:#}");
    (node, id, job)
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// A finished job's folder lands in the bucket whole: every file the node wrote is an object
/// with the same bytes, the manifests were written after every segment, the job's `outputs`
/// name the objects, and ffmpeg plays the package as the server stored it.
#[test]
fn a_finished_job_lands_in_the_bucket_with_its_manifests_last() {
    let s3 = S3Server::start("media");
    let dir = tempdir();
    let (node, id, job) = finished_job(&s3, dir.path(), 4);

    let local = node.data.join("vod").join(&id);
    let stored = s3.root().join("media/encore").join(&id);
    let outputs: Vec<String> = job["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap().to_owned())
        .collect();
    let mut local_files = Vec::new();
    for entry in walk(&local) {
        let relative = entry
            .strip_prefix(&local)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let object = stored.join(&relative);
        assert_eq!(
            std::fs::read(&entry).unwrap(),
            std::fs::read(&object).unwrap_or_else(|e| panic!("{relative}: {e}")),
            "{relative}"
        );
        assert!(
            outputs.contains(&format!("s3://media/encore/{id}/{relative}")),
            "{relative} not in {outputs:?}"
        );
        local_files.push(relative);
    }
    assert_eq!(outputs.len(), local_files.len());
    assert!(local_files.iter().any(|f| f.ends_with(".m4s")));

    // The order, as the server's files show it: no manifest before the last segment.
    let is_manifest = |f: &String| f.ends_with(".m3u8") || f.ends_with(".mpd");
    let last_media = local_files
        .iter()
        .filter(|f| !is_manifest(f))
        .map(|f| modified(&stored.join(f)))
        .max()
        .unwrap();
    let first_manifest = local_files
        .iter()
        .filter(|f| is_manifest(f))
        .map(|f| modified(&stored.join(f)))
        .min()
        .unwrap();
    assert!(first_manifest >= last_media);
    assert!(
        outputs.last().unwrap().ends_with("master.m3u8")
            || outputs.last().unwrap().ends_with(".mpd")
    );

    let (ok, stderr) = ffmpeg_decode_all(&stored.join("master.m3u8"));
    assert!(ok, "{stderr}");
}

/// The store refuses the node's signature: the job fails as `output_write_failed`, retryable,
/// naming the object it could not write; nothing is left half-listed in the job.
#[test]
fn a_refused_upload_fails_the_job_naming_the_object() {
    let s3 = S3Server::start("media");
    let files = FileServer::start(&common::fixtures_dir());
    let input = source(640, 360, 4);
    let dir = tempdir();
    let node = Node::start_with_env(
        dir.path(),
        &Backend::Sqlite,
        STORE,
        &s3.env("not-the-secret-at-all"),
    );
    let name = input.file_name().unwrap().to_string_lossy().into_owned();
    let id = node.submit(
        &json!({"input": format!("{}/{name}", files.base), "ladder": "240:400k"}).to_string(),
    );
    let job = node.wait_for(&id, &["succeeded", "failed"], Duration::from_secs(180));
    assert_eq!(job["state"], "failed", "{job:#}");
    assert_eq!(job["error"]["code"], "output_write_failed", "{job:#}");
    assert_eq!(job["error"]["retryable"], true);
    let message = job["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("s3://media/encore/{id}/")),
        "{message}"
    );
    assert!(job.get("outputs").is_none(), "{job:#}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// An input in the bucket (`s3://BUCKET/KEY`) is read where it lies: the job succeeds and its
/// record keeps the `s3://` URL, never the signed one FFmpeg opened. A missing object is
/// refused at submission.
#[test]
fn an_input_object_is_read_from_the_bucket() {
    let s3 = S3Server::start("media");
    let input = source(640, 360, 4);
    // s3s-fs serves the files of its folder as objects.
    std::fs::create_dir_all(s3.root().join("media/in")).unwrap();
    std::fs::copy(&input, s3.root().join("media/in/talk.mp4")).unwrap();
    let dir = tempdir();
    let node = Node::start_with_env(dir.path(), &Backend::Sqlite, STORE, &s3.env(s3::SECRET_KEY));
    let missing = node.post(
        "/v1/jobs",
        &json!({"input": "s3://media/in/nothing.mp4"}).to_string(),
    );
    assert_eq!(missing.status, 422, "{}", missing.text);
    assert!(missing.text.contains("no such object"), "{}", missing.text);

    let id =
        node.submit(&json!({"input": "s3://media/in/talk.mp4", "ladder": "240:400k"}).to_string());
    let job = node.wait_for(&id, &["succeeded", "failed"], Duration::from_secs(120));
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["input"], "s3://media/in/talk.mp4");
    assert_eq!(job["summary"]["input"], "s3://media/in/talk.mp4");
    assert!(!job.to_string().contains("X-Amz-Signature"), "{job:#}");
    let (ok, stderr) = ffmpeg_decode_all(&s3.root().join(format!("media/encore/{id}/master.m3u8")));
    assert!(ok, "{stderr}");
}

/// `encore origin` with no files of its own serves a job's output from the bucket: with the
/// headers a cache needs, to ffmpeg, hls.js and dash.js.
#[test]
fn an_origin_with_no_files_serves_outputs_from_the_bucket() {
    let players = common::web_players_available();
    let s3 = S3Server::start("media");
    let dir = tempdir();
    let (node, id, _) = finished_job(&s3, dir.path(), 6);
    drop(node);

    let origin = s3::OriginOnly::start("s3://media/encore", &s3.env(s3::SECRET_KEY));
    let base = origin.base.clone();
    let client = reqwest::blocking::Client::new();
    let master = client
        .get(format!("{base}/vod/{id}/master.m3u8"))
        .send()
        .unwrap();
    assert_eq!(master.status(), 200);
    assert!(master.headers().contains_key("etag"));
    assert!(master.headers().contains_key("last-modified"));
    let segment = client
        .get(format!("{base}/vod/{id}/360p/init.mp4"))
        .send()
        .unwrap();
    assert_eq!(segment.status(), 200);
    assert!(segment.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    let missing = client
        .get(format!("{base}/vod/no-such-job/master.m3u8"))
        .send()
        .unwrap();
    assert_eq!(missing.status(), 404);

    let url = format!("{base}/vod/{id}/master.m3u8");
    let (ok, stderr) = ffmpeg_decode_all(Path::new(&url));
    assert!(ok, "{stderr}");
    if players {
        for (kind, file) in [("hls", "master.m3u8"), ("dash", "manifest.mpd")] {
            let url = format!("{base}/vod/{id}/{file}");
            let report = common::play(kind, &url, 6);
            common::assert_played(kind, &url, &report, 2, 3.0);
        }
    }
    drop(origin);
    assert!(
        players,
        "Chromium, node or tests/players/node_modules missing: `make test-deps`"
    );
}
