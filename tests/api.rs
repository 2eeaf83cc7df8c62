//! The REST control plane, end to end: `encore serve` on 127.0.0.1:0 with its job store on
//! SQLite and on a real PostgreSQL (each test runs on both), inputs over HTTP from a server
//! in the test, a webhook receiver checking signatures with its own HMAC, ffmpeg playing the
//! outputs, and SIGKILL for crashes.

#[path = "common/api.rs"]
mod api;
mod common;
#[path = "common/postgres.rs"]
mod postgres;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::prelude::{Engine, BASE64_STANDARD};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use api::{read_events, source, Backend, FileServer, Node, WebhookReceiver};
use common::{ffmpeg_decode_all, tempdir};

/// Each scenario, once per store.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(false)
            }
            #[test]
            fn postgres() {
                super::$name(true)
            }
        }
    )*};
}

on_both_stores!(
    http_job_succeeds_with_events_and_signed_webhooks,
    cancel_stops_a_running_job_within_two_seconds,
    jobs_survive_restarts_and_kill_9,
    idempotency_keys_return_the_first_job,
    bad_requests_name_the_field_and_tokens_are_required,
    twenty_jobs_share_capacity_for_two_in_priority_order,
    api_channels_play_persist_and_end,
);

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn file_name(path: &std::path::Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// The folder inputs are served from, and its HTTP server.
fn inputs() -> (PathBuf, FileServer) {
    let dir = common::fixtures_dir();
    let server = FileServer::start(&dir);
    (dir, server)
}

fn verify_signature(hook: &api::Hook) {
    let id = &hook.headers["webhook-id"];
    let timestamp = &hook.headers["webhook-timestamp"];
    let key = BASE64_STANDARD
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.{}", hook.body).as_bytes());
    let expected = format!("v1,{}", BASE64_STANDARD.encode(mac.finalize().into_bytes()));
    let given = &hook.headers["webhook-signature"];
    assert!(
        given.split(' ').any(|s| s == expected),
        "signature {given} is not {expected}"
    );
    let age = common_now() - timestamp.parse::<i64>().unwrap();
    assert!(
        (0..60).contains(&age),
        "webhook-timestamp {timestamp} is {age} s old"
    );
}

fn common_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn http_job_succeeds_with_events_and_signed_webhooks(pg: bool) {
    let backend = Backend::new(pg);
    let dir = tempdir();
    let src = source(640, 360, 20);
    let (_, files) = inputs();
    // The receiver fails the first delivery: it must come again.
    let hooks = WebhookReceiver::start(1);
    let node = Node::start(
        dir.path(),
        &backend,
        &format!("webhook_secret = \"{SECRET}\"\n"),
    );
    let body = json!({
        "input": format!("{}/{}", files.base, file_name(&src)),
        "ladder": "360:800k,240:400k",
        "metadata": {"customer": "c1", "tags": ["a"]},
        "webhook": {"url": hooks.url},
    });
    let created = node.post("/v1/jobs", &body.to_string());
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["state"], "queued");
    let id = created.json["id"].as_str().unwrap().to_string();
    assert_eq!(created.headers["location"], format!("/v1/jobs/{id}"));

    let events = read_events(&node, &id, None, Duration::from_secs(120));
    let states: Vec<&str> = events
        .iter()
        .filter(|e| e.1 == "state")
        .map(|e| e.2["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["queued", "running", "succeeded"], "{events:?}");
    let percents: Vec<f64> = events
        .iter()
        .filter(|e| e.1 == "progress")
        .filter_map(|e| e.2["percent"].as_f64())
        .collect();
    assert!(percents.len() >= 2, "progress events: {events:?}");
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");
    let ids: Vec<i64> = events.iter().map(|e| e.0.parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "event ids {ids:?}");

    // Last-Event-ID resumes after the event named.
    let resumed = read_events(&node, &id, Some(&events[1].0), Duration::from_secs(10));
    assert_eq!(resumed.len(), events.len() - 2);
    assert_eq!(resumed.first().map(|e| &e.0), events.get(2).map(|e| &e.0));

    let job = node.job(&id);
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["metadata"], json!({"customer": "c1", "tags": ["a"]}));
    assert_eq!(job["summary"]["renditions"].as_array().unwrap().len(), 3);
    assert_eq!(job["attempts"][0]["outcome"], "succeeded");
    for key in ["hls", "dash"] {
        let url = job["playback"][key].as_str().unwrap();
        assert!(url.starts_with(&node.base), "{url}");
        let (ok, stderr) = ffmpeg_decode_all(std::path::Path::new(url));
        assert!(ok && stderr.is_empty(), "ffmpeg on {url}: {stderr}");
    }
    let listed = node.get("/v1/jobs?limit=10");
    assert!(listed.json["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j["id"] == id.as_str()));

    // Three state changes, each signed; the failed first try was retried.
    let start = Instant::now();
    while hooks.hooks().len() < 3 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let received = hooks.hooks();
    let types: Vec<String> = received
        .iter()
        .map(|h| {
            verify_signature(h);
            let v: Value = serde_json::from_str(&h.body).unwrap();
            assert_eq!(v["data"]["id"], id.as_str());
            v["type"].as_str().unwrap().to_string()
        })
        .collect();
    let mut sorted = types.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["job.queued", "job.running", "job.succeeded"],
        "{types:?}"
    );
    let unique: HashSet<&String> = received.iter().map(|h| &h.headers["webhook-id"]).collect();
    assert_eq!(unique.len(), 3);
    let job = node.job(&id);
    let deliveries = job["webhook_deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 3);
    assert!(
        deliveries.iter().all(|d| d["status"] == "delivered"),
        "{deliveries:?}"
    );
    assert!(
        deliveries.iter().any(|d| d["attempts"].as_i64() == Some(2)),
        "{deliveries:?}"
    );

    // Telemetry sees the same.
    let metrics = node.get("/metrics");
    assert_eq!(metrics.status, 200);
    for line in [
        "encore_jobs{state=\"succeeded\"} 1",
        "encore_queue_length 0",
        "encore_http_request_duration_seconds_bucket{route=\"/v1/jobs\",le=\"0.005\"}",
        "encore_http_requests_total{route=\"/v1/jobs\",method=\"POST\",status=\"201\"} 1",
        "encore_job_duration_seconds_count{outcome=\"succeeded\"} 1",
    ] {
        assert!(
            metrics.text.contains(line),
            "no {line} in\n{}",
            metrics.text
        );
    }
    let ready = node.get("/readyz");
    assert_eq!((ready.status, &ready.json["store"]), (200, &json!(true)));
}

/// Waits until a job reports frames.
fn wait_running_with_frames(node: &Node, id: &str) {
    let start = Instant::now();
    loop {
        let job = node.job(id);
        if job["state"] == "running" && job["phase"] == "transcoding" {
            return;
        }
        assert!(
            job["state"] == "queued" || job["state"] == "running",
            "{job}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never ran: {job}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cancel_stops_a_running_job_within_two_seconds(pg: bool) {
    let backend = Backend::new(pg);
    let dir = tempdir();
    let src = source(1280, 720, 60);
    let (_, files) = inputs();
    // Room for the one job, and a queue of one.
    let node = Node::start(
        dir.path(),
        &backend,
        "capacity = 0.05\nmax_queued_jobs = 1\n",
    );
    let id = node.submit(
        &json!({
            "input": format!("{}/{}", files.base, file_name(&src)),
            "ladder": "720:3000k,480:1200k,360:800k",
            "preset": "medium",
        })
        .to_string(),
    );
    wait_running_with_frames(&node, &id);
    let small =
        json!({"input": format!("{}/{}", files.base, file_name(&src)), "ladder": "360:800k"});
    let waiting = node.submit(&small.to_string());
    let refused = node.post("/v1/jobs", &small.to_string());
    assert_eq!(refused.status, 429, "{}", refused.text);
    assert_eq!(refused.headers["retry-after"], "30");
    assert_eq!(refused.headers["content-type"], "application/problem+json");
    let dropped = node.call("DELETE", &format!("/v1/jobs/{waiting}"), None, &[]);
    assert_eq!(
        (dropped.status, dropped.json["state"].as_str()),
        (200, Some("cancelled"))
    );
    assert!(node.thread_names().iter().any(|t| t.starts_with("rung-")));
    let asked = Instant::now();
    let reply = node.call("DELETE", &format!("/v1/jobs/{id}"), None, &[]);
    assert_eq!(reply.status, 202, "{}", reply.text);
    let job = node.wait_for(&id, &["cancelled"], Duration::from_secs(5));
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(2), "cancelled after {took:?}");
    assert_eq!(job["attempts"][0]["outcome"], "cancelled");
    let left: Vec<String> = node
        .thread_names()
        .into_iter()
        .filter(|t| t.starts_with("rung-") || t == "audio")
        .collect();
    assert!(left.is_empty(), "pipeline threads left: {left:?}");
    let vod = node.data.join("vod");
    let entries: Vec<String> = std::fs::read_dir(&vod)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(entries.is_empty(), "left under vod/: {entries:?}");
    // A finished job's DELETE removes its record.
    assert_eq!(
        node.call("DELETE", &format!("/v1/jobs/{id}"), None, &[])
            .status,
        204
    );
    assert_eq!(node.get(&format!("/v1/jobs/{id}")).status, 404);
}

fn jobs_survive_restarts_and_kill_9(pg: bool) {
    let backend = Backend::new(pg);
    let dir = tempdir();
    let long = source(1280, 720, 60);
    let short = source(1280, 720, 4);
    let (_, files) = inputs();
    // Room for one of these jobs at a time, so the others stay queued.
    let mut node = Node::start(dir.path(), &backend, "capacity = 0.4\n");
    let submit = |node: &Node, src: &PathBuf, ladder: &str| {
        node.submit(
            &json!({"input": format!("{}/{}", files.base, file_name(src)), "ladder": ladder})
                .to_string(),
        )
    };
    let killed = submit(&node, &long, "720:3000k,480:1200k");
    let queued: Vec<String> = (0..2)
        .map(|_| submit(&node, &short, "720:3000k,480:1200k"))
        .collect();
    wait_running_with_frames(&node, &killed);
    for id in &queued {
        assert_eq!(node.job(id)["state"], "queued");
    }

    node.kill9();
    node.restart();
    let job = node.wait_for(&killed, &["succeeded", "failed"], Duration::from_secs(240));
    if job["state"] == "failed" {
        assert_eq!(job["error"]["code"], "interrupted", "{job}");
    }
    let attempts = job["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["outcome"], "interrupted", "{job}");
    assert_eq!(attempts.len(), 2, "{job}");
    assert_eq!(attempts[1]["number"], 2);
    for id in &queued {
        let job = node.wait_for(id, &["succeeded"], Duration::from_secs(120));
        assert_eq!(job["attempts"].as_array().unwrap().len(), 1, "{job}");
    }
    // Nothing half-written: only the three outputs.
    let mut entries: Vec<String> = std::fs::read_dir(node.data.join("vod"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    let mut expected = vec![killed.clone(), queued[0].clone(), queued[1].clone()];
    if job["state"] == "failed" {
        expected.retain(|id| id != &killed);
    }
    expected.sort();
    assert_eq!(entries, expected);
    // Still succeeded after a clean restart: nothing runs twice.
    node.restart();
    assert_eq!(
        node.job(&queued[0])["attempts"].as_array().unwrap().len(),
        1
    );

    // SIGTERM: the running job goes back to the queue at once, its lost attempt not counted.
    let stopped = submit(&node, &long, "720:3000k,480:1200k");
    wait_running_with_frames(&node, &stopped);
    node.stop();
    node.restart();
    let job = node.wait_for(&stopped, &["succeeded"], Duration::from_secs(240));
    let outcomes: Vec<&str> = job["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["node_stopped", "succeeded"], "{job}");
}

fn idempotency_keys_return_the_first_job(pg: bool) {
    let backend = Backend::new(pg);
    let dir = tempdir();
    let src = source(640, 360, 4);
    let (_, files) = inputs();
    let node = Node::start(dir.path(), &backend, "");
    let body =
        json!({"input": format!("{}/{}", files.base, file_name(&src)), "ladder": "360:800k"})
            .to_string();
    let key = [("idempotency-key", "order-42")];
    let first = node.call("POST", "/v1/jobs", Some(&body), &key);
    assert_eq!(first.status, 201, "{}", first.text);
    let again = node.call("POST", "/v1/jobs", Some(&body), &key);
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json["id"], first.json["id"]);
    let other =
        json!({"input": format!("{}/{}", files.base, file_name(&src)), "ladder": "240:400k"})
            .to_string();
    let conflict = node.call("POST", "/v1/jobs", Some(&other), &key);
    assert_eq!(conflict.status, 409, "{}", conflict.text);
    assert_eq!(conflict.headers["content-type"], "application/problem+json");
    assert_eq!(conflict.json["status"], 409);
    let all = node.get("/v1/jobs");
    assert_eq!(all.json["jobs"].as_array().unwrap().len(), 1);

    // Templates: a job names one and overrides fields; it keeps what it was resolved with.
    let template = r#"{"codec": "hevc", "segment_duration": 4, "ladder": "360:500k"}"#;
    let put = node.call("PUT", "/v1/templates/web-hd", Some(template), &[]);
    assert_eq!(put.status, 201, "{}", put.text);
    let input = format!("{}/{}", files.base, file_name(&src));
    let id = node
        .submit(&json!({"input": input, "template": "web-hd", "segment_duration": 6}).to_string());
    let job = node.job(&id);
    assert_eq!(job["template"], "web-hd");
    assert_eq!(job["options"]["codec"], "hevc");
    assert_eq!(job["options"]["segment_duration"], 6.0);
    assert_eq!(job["options"]["ladder"][0]["height"], 360);
    let replaced = node.call(
        "PUT",
        "/v1/templates/web-hd",
        Some(r#"{"codec": "avc"}"#),
        &[],
    );
    assert_eq!(replaced.status, 200, "{}", replaced.text);
    assert_eq!(node.job(&id)["options"]["codec"], "hevc");
    assert_eq!(node.get("/v1/templates/web-hd").json["codec"], "avc");
    assert_eq!(
        node.get("/v1/templates").json["templates"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let bad = node.call("PUT", "/v1/templates/x", Some(r#"{"codec": "vp9"}"#), &[]);
    assert_eq!(
        (bad.status, bad.json["errors"][0]["pointer"].as_str()),
        (422, Some("/codec"))
    );
    assert_eq!(
        node.call("DELETE", "/v1/templates/web-hd", None, &[])
            .status,
        204
    );
    assert_eq!(node.get("/v1/templates/web-hd").status, 404);
    let job = node.wait_for(&id, &["succeeded"], Duration::from_secs(120));
    assert!(
        job["summary"]["renditions"][0]["codecs"]
            .as_str()
            .unwrap()
            .starts_with("hvc1"),
        "{job}"
    );
}

fn bad_requests_name_the_field_and_tokens_are_required(pg: bool) {
    let backend = Backend::new(pg);
    let dir = tempdir();
    let roots = tempdir();
    std::fs::write(roots.path().join("a.mp4"), b"not media").unwrap();
    let token = "test-token-0123456789abcdef";
    let node = Node::start_with_env(
        dir.path(),
        &backend,
        &format!("input_roots = [\"{}\"]\n", roots.path().display()),
        &[("ENCORE_API_TOKEN", token)],
    );
    let malformed = node.post("/v1/jobs", "{\"input\": ");
    assert_eq!(malformed.status, 400, "{}", malformed.text);
    assert_eq!(
        malformed.headers["content-type"],
        "application/problem+json"
    );
    assert_eq!(malformed.json["status"], 400);
    let cases = [
        (json!({"input": "a.mp4", "codec": "vp9"}), "/codec"),
        (json!({"input": "a.mp4", "ladder": "720:abc"}), "/ladder"),
        (
            json!({"input": "a.mp4", "ladder": [{"height": 720, "bitrate": 0}]}),
            "/ladder",
        ),
        (
            json!({"input": "a.mp4", "audio_bitrate": "9M"}),
            "/audio_bitrate",
        ),
        (
            json!({"input": "a.mp4", "segment_duration": 30}),
            "/segment_duration",
        ),
        (json!({"input": "a.mp4", "priority": 99}), "/priority"),
        (json!({"input": "a.mp4", "colour": "red"}), "/colour"),
        (
            json!({"input": "a.mp4", "webhook": {"url": "http://x/"}}),
            "/webhook",
        ),
        (
            json!({"input": "a.mp4", "webhook": {"url": "http://169.254.169.254/x"}}),
            "/webhook/url",
        ),
        (json!({"input": "/etc/passwd"}), "/input"),
        (json!({"input": "../a.mp4"}), "/input"),
        (json!({"input": "file:///etc/passwd"}), "/input"),
        (
            json!({"input": "http://169.254.169.254/latest/meta-data"}),
            "/input",
        ),
        (json!({"input": "a.mp4", "template": "nope"}), "/template"),
        (json!({"input": 5}), "/input"),
    ];
    for (body, pointer) in cases {
        let reply = node.post("/v1/jobs", &body.to_string());
        assert_eq!(reply.status, 422, "{body}: {}", reply.text);
        assert_eq!(reply.headers["content-type"], "application/problem+json");
        let pointers: Vec<&str> = reply.json["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["pointer"].as_str().unwrap())
            .collect();
        assert!(pointers.contains(&pointer), "{body}: {pointers:?}");
    }
    // Bodies are bounded.
    let huge = json!({"input": "a.mp4", "metadata": {"x": "a".repeat(300 * 1024)}}).to_string();
    let too_large = node.post("/v1/jobs", &huge);
    assert_eq!(too_large.status, 413, "{}", too_large.text);
    assert_eq!(
        too_large.headers["content-type"],
        "application/problem+json"
    );

    // A path inside the root is accepted (and fails as not media).
    let id = node.submit(r#"{"input": "a.mp4"}"#);
    let job = node.wait_for(&id, &["failed"], Duration::from_secs(30));
    assert_eq!(job["error"]["code"], "not_media", "{job}");
    assert_eq!(job["error"]["retryable"], false);

    // The token: none or a wrong one is 401; the origin stays public.
    let client = reqwest::blocking::Client::new();
    for auth in [None, Some("Bearer wrong"), Some(token)] {
        let mut r = client.get(format!("{}/v1/jobs", node.base));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let reply = r.send().unwrap();
        assert_eq!(reply.status().as_u16(), 401, "{auth:?}");
        assert_eq!(reply.headers()["www-authenticate"], "Bearer");
    }
    assert_eq!(node.get("/v1/jobs").status, 200);
    assert_eq!(
        client
            .get(format!("{}/healthz", node.base))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    // The API on every address with no token: refused, saying why.
    let out = common::encore()
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("other"))
        .env_remove("ENCORE_API_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("without a token"), "{stderr}");
}

fn twenty_jobs_share_capacity_for_two_in_priority_order(pg: bool) {
    let backend = Backend::new(pg);
    let dir = tempdir();
    let blocker = source(640, 360, 30);
    let small = source(640, 360, 2);
    let (_, files) = inputs();
    // One 360p rung costs 0.063 units: room for two.
    let node = Node::start(dir.path(), &backend, "capacity = 0.13\n");
    let url = |src: &PathBuf| format!("{}/{}", files.base, file_name(src));
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(node.submit(&json!({"input": url(&blocker), "ladder": "360:800k"}).to_string()));
    }
    for id in &ids {
        node.wait_for(id, &["running", "succeeded"], Duration::from_secs(60));
    }
    // While those two run, eighteen more queue up with mixed priorities.
    let priorities: Vec<i64> = (0..18).map(|i| (i * 37 % 101) - 50).collect();
    for p in &priorities {
        ids.push(node.submit(
            &json!({"input": url(&small), "ladder": "360:800k", "priority": p}).to_string(),
        ));
    }
    let mut spans = Vec::new();
    for id in &ids {
        let job = node.wait_for(id, &["succeeded", "failed"], Duration::from_secs(300));
        assert_eq!(job["state"], "succeeded", "{job}");
        let attempt = &job["attempts"][0];
        spans.push((
            attempt["started_at"].as_str().unwrap().to_string(),
            attempt["ended_at"].as_str().unwrap().to_string(),
            job["priority"].as_i64().unwrap(),
            job["created_at"].as_str().unwrap().to_string(),
        ));
    }
    // Never more than two at once.
    let mut edges: Vec<(&str, i32)> = spans
        .iter()
        .flat_map(|(s, e, _, _)| [(s.as_str(), 1), (e.as_str(), -1)])
        .collect();
    edges.sort_by(|a, b| a.0.cmp(b.0).then(a.1.cmp(&b.1)));
    let mut running = 0;
    for (_, d) in &edges {
        running += d;
        assert!(running <= 2, "more than two jobs ran at once: {spans:?}");
    }
    // The eighteen started by priority, then age.
    let mut queued: Vec<&(String, String, i64, String)> = spans[2..].iter().collect();
    // (Two claims in the same millisecond show the same start: order those by priority.)
    queued.sort_by(|a, b| a.0.cmp(&b.0).then(b.2.cmp(&a.2)).then(a.3.cmp(&b.3)));
    for w in queued.windows(2) {
        let ordered = w[0].2 > w[1].2 || (w[0].2 == w[1].2 && w[0].3 <= w[1].3);
        assert!(ordered, "started out of priority order: {queued:?}");
    }
}

fn api_channels_play_persist_and_end(pg: bool) {
    let backend = Backend::new(pg);
    let dir = tempdir();
    let mut node = Node::start(dir.path(), &backend, "");
    let body = json!({
        "name": "api1",
        "input": "test:320x180@25",
        "ladder": "180:300k",
        "segment_duration": 1,
        "dvr_window": 30,
    });
    let created = node.post("/v1/channels", &body.to_string());
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["source"], "api");
    let master = format!("{}/live/api1/master.m3u8", node.base);
    wait_playable(&node, &master);
    let listed = node.get("/v1/channels");
    assert!(listed.json["channels"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "api1"));
    let dup = node.post("/v1/channels", &body.to_string());
    assert_eq!(dup.status, 409, "{}", dup.text);
    let bad = node.post(
        "/v1/channels",
        &json!({"name": "x", "input": "test", "colour": 1}).to_string(),
    );
    assert_eq!(bad.status, 422, "{}", bad.text);

    node.restart();
    let master = format!("{}/live/api1/master.m3u8", node.base);
    let shown = node.get("/v1/channels/api1");
    assert_eq!(shown.status, 200, "{}", shown.text);
    wait_playable(&node, &master);
    let shown = node.get("/v1/channels/api1").json;
    assert_eq!(shown["state"], "on_air", "{shown}");
    let ratio = shown["renditions"][0]["realtime_ratio"].as_f64();
    assert!(ratio.is_some_and(|r| r > 0.0), "{shown}");

    // A feed that never comes: the channel is on the air with the slate, and says so.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let quiet = json!({"name": "quiet", "input": format!("udp://127.0.0.1:{port}"),
        "format": "320x180@25", "ladder": "180:300k", "segment_duration": 1, "dvr_window": 30});
    assert_eq!(node.post("/v1/channels", &quiet.to_string()).status, 201);
    let start = Instant::now();
    loop {
        let state = node.get("/v1/channels/quiet").json["state"].clone();
        if state == "on_slate" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "quiet channel is {state}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        node.call("DELETE", "/v1/channels/quiet", None, &[]).status,
        204
    );

    let removed = node.call("DELETE", "/v1/channels/api1", None, &[]);
    assert_eq!(removed.status, 204, "{}", removed.text);
    let media = reqwest::blocking::get(format!("{}/live/api1/180p/index.m3u8", node.base))
        .unwrap()
        .text()
        .unwrap();
    assert!(media.trim_end().ends_with("#EXT-X-ENDLIST"), "{media}");
    assert_eq!(node.get("/v1/channels/api1").status, 404);
    node.restart();
    assert_eq!(node.get("/v1/channels/api1").status, 404);
}

/// ffmpeg plays three seconds of a live playlist (retrying while the channel starts).
fn wait_playable(node: &Node, url: &str) {
    let start = Instant::now();
    loop {
        let out = std::process::Command::new("timeout")
            .args([
                "20", "ffmpeg", "-nostdin", "-v", "error", "-i", url, "-t", "3", "-f", "null", "-",
            ])
            .output()
            .unwrap();
        if out.status.success() && out.stderr.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "ffmpeg cannot play {url}: {}\n{:?}",
            String::from_utf8_lossy(&out.stderr),
            node.stderr_lines()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
