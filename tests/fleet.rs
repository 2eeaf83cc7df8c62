//! A fleet: several `encore serve` nodes on one real PostgreSQL (started by the test), each
//! with its own data folder, taking jobs from one queue by their capacity and hardware.

#[path = "common/api.rs"]
mod api;
mod common;
#[path = "common/postgres.rs"]
mod postgres;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use api::{source, Backend, FileServer, Node, WebhookReceiver};
use common::{ffmpeg_decode_all, tempdir};

/// Leases run out after 4 s here (30 s by default), so a dead node's jobs move quickly.
const FLEET: &str = "lease_time = 4\n";

fn inputs() -> FileServer {
    FileServer::start(&common::fixtures_dir())
}

fn input_url(files: &FileServer, path: &Path) -> String {
    format!(
        "{}/{}",
        files.base,
        path.file_name().unwrap().to_string_lossy()
    )
}

fn nodes(node: &Node) -> HashMap<String, Value> {
    let listed = node.get("/v1/nodes");
    assert_eq!(listed.status, 200, "{}", listed.text);
    listed.json["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap().to_string(), n.clone()))
        .collect()
}

/// ffmpeg decodes every stream of a manifest without an error. One line is let through: its
/// null muxer's "non monotonically increasing dts" about a video frame near the end, seen
/// now and then (once in about twenty reads, also of a package `encore transcode` wrote and
/// not only over the fleet) and not yet explained (NOTES.md); it concerns ffmpeg's output
/// timestamps, and every frame was decoded.
fn plays(url: &str) {
    let (ok, stderr) = ffmpeg_decode_all(std::path::Path::new(url));
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("non monotonically increasing dts to muxer"))
        .collect();
    assert!(ok && errors.is_empty(), "{url}: {stderr}");
}

/// Seconds since the epoch of an RFC 3339 time as the API writes it (UTC, `Z`).
fn seconds(rfc3339: &str) -> f64 {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", rfc3339, "+%s.%N"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Three nodes, one of them with room for a single job: twelve jobs submitted to any node's
/// API all succeed, every node runs some, none ever runs more than its capacity, and each
/// attempt names its node. A job asking for NVENC waits: no node here has it.
#[test]
fn three_nodes_share_one_queue_within_their_capacities() {
    let pg = Backend::new(true);
    let files = inputs();
    let small = source(640, 360, 4);
    // One 360p rung costs 0.063 units.
    let capacities = [("one", 0.1, 1), ("two", 0.2, 3), ("three", 0.2, 3)];
    let dirs: Vec<_> = capacities.iter().map(|_| tempdir()).collect();
    let fleet: Vec<Node> = capacities
        .iter()
        .zip(&dirs)
        .map(|((name, capacity, _), dir)| {
            Node::start_named(
                dir.path(),
                &pg,
                name,
                &format!("{FLEET}capacity = {capacity}\n"),
                &[],
            )
        })
        .collect();
    // Every node registered, healthy, with what it can do.
    let listed = nodes(&fleet[0]);
    for (name, capacity, _) in capacities {
        let node = &listed[name];
        assert_eq!(node["healthy"], true, "{node}");
        assert_eq!(node["draining"], false, "{node}");
        assert_eq!(node["capacity"], capacity, "{node}");
        assert_eq!(node["backends"], json!(["software"]), "{node}");
        assert!(node["url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:"));
    }

    let nvenc = fleet[0].submit(
        &json!({"input": input_url(&files, &small), "ladder": "360:800k", "backend": "nvenc"})
            .to_string(),
    );
    let ids: Vec<String> = (0..12)
        .map(|i| {
            fleet[i % 3].submit(
                &json!({"input": input_url(&files, &small), "ladder": "360:800k"}).to_string(),
            )
        })
        .collect();
    let mut spans: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
    for id in &ids {
        let job = fleet[1].wait_for(id, &["succeeded", "failed"], Duration::from_secs(300));
        assert_eq!(job["state"], "succeeded", "{job}");
        let attempts = job["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "{job}");
        let node = attempts[0]["node"].as_str().unwrap().to_string();
        assert!(listed.contains_key(&node), "attempt by {node}");
        spans.entry(node).or_default().push((
            seconds(attempts[0]["started_at"].as_str().unwrap()),
            seconds(attempts[0]["ended_at"].as_str().unwrap()),
        ));
        // Its playback URL names the node that holds the output; ffmpeg decodes it.
        let hls = job["playback"]["hls"].as_str().unwrap();
        let by = &listed[attempts[0]["node"].as_str().unwrap()]["url"];
        assert!(hls.starts_with(by.as_str().unwrap()), "{hls} not on {by}");
        plays(hls);
    }
    eprintln!(
        "jobs per node: {:?}",
        spans.iter().map(|(n, s)| (n, s.len())).collect::<Vec<_>>()
    );
    for (name, _, most) in capacities {
        let runs = spans
            .get(name)
            .unwrap_or_else(|| panic!("{name} ran no job"));
        let mut edges: Vec<(f64, i32)> =
            runs.iter().flat_map(|(s, e)| [(*s, 1), (*e, -1)]).collect();
        edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut running = 0;
        for (_, d) in edges {
            running += d;
            assert!(
                running <= most,
                "{name} ran more than {most} at once: {runs:?}"
            );
        }
    }
    let waiting = fleet[2].job(&nvenc);
    assert_eq!(waiting["state"], "queued", "{waiting}");
    assert_eq!(waiting["attempts"], json!([]), "{waiting}");
}

/// kill -9 of the node running a job: once its lease runs out another node runs the job as
/// attempt 2, whose output ffmpeg plays; the dead attempt's late result is refused. A drained
/// node takes no new job while its running job finishes.
#[test]
fn a_dead_nodes_job_moves_and_a_drained_node_takes_nothing_new() {
    let pg = Backend::new(true);
    let files = inputs();
    let long = source(1280, 720, 20);
    let small = source(640, 360, 2);
    let (dir_a, dir_b) = (tempdir(), tempdir());
    let mut a = Node::start_named(dir_a.path(), &pg, "a", FLEET, &[]);
    let body = json!({"input": input_url(&files, &long), "ladder": "720:2000k,360:800k", "preset": "medium"});
    let id = a.submit(&body.to_string());
    a.wait_for(&id, &["running"], Duration::from_secs(60));
    let mut b = Node::start_named(dir_b.path(), &pg, "b", FLEET, &[]);
    std::thread::sleep(Duration::from_secs(1));
    a.kill9();
    let killed = Instant::now();
    // While attempt 2 runs on b, the dead node's result of attempt 1 arrives late: refused.
    loop {
        let job = b.job(&id);
        if job["state"] == "running" && job["attempts"].as_array().unwrap().len() == 2 {
            break;
        }
        assert!(
            job["state"] != "succeeded" && killed.elapsed() < Duration::from_secs(60),
            "{job}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        refuse_late_result(&pg, &id),
        "a late result of attempt 1 was accepted"
    );
    assert_eq!(b.job(&id)["state"], "running");
    let job = b.wait_for(&id, &["succeeded", "failed"], Duration::from_secs(300));
    let took = killed.elapsed();
    assert_eq!(job["state"], "succeeded", "{job}");
    let attempts = job["attempts"].as_array().unwrap();
    let outcomes: Vec<(&str, &str)> = attempts
        .iter()
        .map(|a| (a["node"].as_str().unwrap(), a["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [("a", "interrupted"), ("b", "succeeded")],
        "{job}"
    );
    let run = seconds(attempts[1]["ended_at"].as_str().unwrap())
        - seconds(attempts[1]["started_at"].as_str().unwrap());
    eprintln!("moved and finished {took:?} after the kill; attempt 2 ran {run:.1} s");
    assert!(
        took.as_secs_f64() <= 4.0 + run + 3.0,
        "took {took:?}: lease 4 s + run {run:.1} s"
    );
    let hls = job["playback"]["hls"].as_str().unwrap();
    assert!(hls.starts_with(&b.base), "{hls}");
    plays(hls);

    // Drain b while it runs a job: that job finishes, the next waits.
    let running = b.submit(&body.to_string());
    b.wait_for(&running, &["running"], Duration::from_secs(60));
    let drained = b.post("/v1/nodes/b/drain", "");
    assert_eq!(drained.status, 200, "{}", drained.text);
    assert_eq!(drained.json["draining"], true);
    assert_eq!(b.post("/v1/nodes/nowhere/drain", "").status, 404);
    let next =
        b.submit(&json!({"input": input_url(&files, &small), "ladder": "360:800k"}).to_string());
    let done = b.wait_for(&running, &["succeeded", "failed"], Duration::from_secs(300));
    assert_eq!(done["state"], "succeeded", "{done}");
    std::thread::sleep(Duration::from_secs(3));
    let waiting = b.job(&next);
    assert_eq!(
        waiting["state"], "queued",
        "a drained node claimed: {waiting}"
    );
    // Back in service, or another node: the job runs.
    a = Node::start_named(dir_a.path(), &pg, "a", FLEET, &[]);
    let ran = a.wait_for(&next, &["succeeded", "failed"], Duration::from_secs(120));
    assert_eq!(ran["state"], "succeeded", "{ran}");
    assert_eq!(ran["attempts"][0]["node"], "a", "{ran}");
    assert_eq!(b.post("/v1/nodes/b/resume", "").json["draining"], false);
    b.stop();
    let listed = nodes(&a);
    assert_eq!(
        listed["b"]["healthy"], false,
        "a stopped node: {}",
        listed["b"]
    );
    assert_eq!(listed["a"]["healthy"], true);
}

/// What a node that lost its lease would do when its attempt 1 ends: record its result.
/// Returns whether the store refused it.
fn refuse_late_result(pg: &Backend, id: &str) -> bool {
    let Backend::Postgres(pg) = pg else {
        unreachable!()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = encore::jobs::Store::open(&pg.url).await.unwrap();
        let mut job = store.job(id).await.unwrap().unwrap();
        job.attempts = 1;
        let summary = json!({"late": true});
        let recorded = store.finish(&job, "a", Ok(&summary), None).await.unwrap();
        recorded.is_none()
    })
}

/// The database restarts (down longer than a lease) while two nodes run jobs: they reconnect,
/// every job succeeds exactly once, and no node takes another's job for a dead one.
#[test]
fn a_database_restart_loses_no_job_and_runs_none_twice() {
    let pg = Backend::new(true);
    let files = inputs();
    let src = source(1280, 720, 8);
    let (dir_a, dir_b) = (tempdir(), tempdir());
    let a = Node::start_named(dir_a.path(), &pg, "a", FLEET, &[]);
    let b = Node::start_named(dir_b.path(), &pg, "b", FLEET, &[]);
    let body = json!({"input": input_url(&files, &src), "ladder": "720:2000k,360:800k"});
    let ids: Vec<String> = (0..6)
        .map(|i| [&a, &b][i % 2].submit(&body.to_string()))
        .collect();
    a.wait_for(&ids[0], &["running"], Duration::from_secs(60));
    let Backend::Postgres(server) = &pg else {
        unreachable!()
    };
    server.restart(Duration::from_secs(6));
    for id in &ids {
        let job = a.wait_for(id, &["succeeded", "failed"], Duration::from_secs(300));
        assert_eq!(job["state"], "succeeded", "{job}");
        let outcomes: Vec<&str> = job["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["outcome"].as_str().unwrap_or("none"))
            .collect();
        assert_eq!(outcomes, ["succeeded"], "{job}");
        plays(job["playback"]["dash"].as_str().unwrap());
    }
    let listed = nodes(&b);
    assert!(listed["a"]["healthy"] == true && listed["b"]["healthy"] == true);
}

/// Two nodes on one store and a slow webhook receiver (each delivery takes 1.5 s to answer,
/// longer than a node's poll for due deliveries): every state change of every job arrives
/// exactly once, sent by one node.
#[test]
fn two_nodes_send_each_webhook_once() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let pg = Backend::new(true);
    let files = inputs();
    let small = source(640, 360, 2);
    let hooks = WebhookReceiver::start_slow(0, Duration::from_millis(1500));
    let dirs = [tempdir(), tempdir()];
    let fleet: Vec<Node> = ["a", "b"]
        .iter()
        .zip(&dirs)
        .map(|(name, dir)| {
            Node::start_named(
                dir.path(),
                &pg,
                name,
                &format!("{FLEET}webhook_secret = \"{SECRET}\"\n"),
                &[],
            )
        })
        .collect();
    let ids: Vec<String> = (0..3)
        .map(|i| {
            fleet[i % 2].submit(
                &json!({"input": input_url(&files, &small), "ladder": "360:800k",
                        "webhook": {"url": hooks.url}})
                .to_string(),
            )
        })
        .collect();
    for id in &ids {
        let job = fleet[0].wait_for(id, &["succeeded", "failed"], Duration::from_secs(300));
        assert_eq!(job["state"], "succeeded", "{job}");
    }
    // queued, running, succeeded for each job: nine deliveries, each sent once.
    let started = Instant::now();
    loop {
        let delivered: usize = ids
            .iter()
            .map(|id| {
                fleet[1].job(id)["webhook_deliveries"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|d| d["status"] == "delivered")
                    .count()
            })
            .sum();
        if delivered == 9 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{delivered} of 9 deliveries made"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(2)); // a second send, if any, would land by now
    let received = hooks.hooks();
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for hook in &received {
        *per_id
            .entry(hook.headers["webhook-id"].clone())
            .or_default() += 1;
    }
    assert_eq!(per_id.len(), 9, "{per_id:?}");
    assert!(
        per_id.values().all(|&n| n == 1),
        "sent more than once: {per_id:?}"
    );
    for id in &ids {
        for d in fleet[0].job(id)["webhook_deliveries"].as_array().unwrap() {
            assert_eq!(d["attempts"], 1, "{d}");
        }
    }
}
