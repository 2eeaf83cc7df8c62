//! The daemon as the REST API's tests need it: a node with a data folder that outlives it (so
//! it can be killed with SIGKILL and started again on the same store), on SQLite or on a real
//! PostgreSQL, plus the peers a job talks to: an HTTP server for inputs (with byte ranges, as
//! libavformat seeks) and a webhook receiver that records what it got.
//!
//! Included with `#[path = "common/api.rs"] mod api;` beside `mod common;` and
//! `#[path = "common/postgres.rs"] mod postgres;`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{encore, fixture};
use crate::postgres::Postgres;

/// Where a node keeps its jobs.
pub enum Backend {
    Sqlite,
    Postgres(Postgres),
}

impl Backend {
    pub fn new(postgres: bool) -> Backend {
        if postgres {
            Backend::Postgres(Postgres::start())
        } else {
            Backend::Sqlite
        }
    }

    fn config_line(&self) -> String {
        match self {
            Backend::Sqlite => String::new(),
            Backend::Postgres(pg) => format!("database_url = \"{}\"\n", pg.url),
        }
    }
}

/// `ffmpeg -f lavfi -i testsrc2=size=WxH:rate=25 -f lavfi -i sine -t SECONDS -c:v libx264
/// -preset ultrafast -g 50 -pix_fmt yuv420p -c:a aac -movflags +faststart`
pub fn source(width: u32, height: u32, seconds: u32) -> PathBuf {
    fixture(
        &format!("api-{width}x{height}-{seconds}s.mp4"),
        &[
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={width}x{height}:rate=25"),
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            &seconds.to_string(),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "50",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-movflags",
            "+faststart",
        ],
    )
}

pub struct Node {
    child: Option<Child>,
    pub base: String,
    pub data: PathBuf,
    config: PathBuf,
    env: Vec<(String, String)>,
    pub token: Option<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    client: reqwest::blocking::Client,
}

impl Node {
    /// Starts `encore serve` with `extra` TOML in `dir` (data in `dir/data`).
    pub fn start(dir: &Path, backend: &Backend, extra: &str) -> Node {
        Node::start_with_env(dir, backend, extra, &[])
    }

    pub fn start_with_env(
        dir: &Path,
        backend: &Backend,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Node {
        Node::start_named(dir, backend, "test-node", extra, env)
    }

    /// A node named `name` (several share one PostgreSQL in a fleet).
    pub fn start_named(
        dir: &Path,
        backend: &Backend,
        name: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Node {
        let data = dir.join("data");
        let config = dir.join("encore.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nnode_name = \"{name}\"\n{}{extra}",
                data.display(),
                backend.config_line()
            ),
        )
        .unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let token = env
            .iter()
            .find(|(k, _)| k == "ENCORE_API_TOKEN")
            .map(|(_, v)| v.clone());
        let mut node = Node {
            child: None,
            base: String::new(),
            data,
            config,
            env,
            token,
            stderr: Arc::default(),
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        };
        node.launch();
        node
    }

    fn launch(&mut self) {
        let mut child = encore()
            .args(["serve", "-v", "--config"])
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pipe = child.stderr.take().unwrap();
        let sink = self.stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                eprintln!("[encore] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines
            .next()
            .expect("the daemon printed its address")
            .unwrap();
        self.base = first
            .strip_prefix("encore: serving on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .trim()
            .to_string();
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
        let r = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Sends a request; returns the status, headers and body (JSON when it is JSON).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut r = self.request(method.parse().unwrap(), path);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let response = r.send().unwrap();
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let text = response.text().unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            json,
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None, &[])
    }

    pub fn post(&self, path: &str, body: &str) -> Reply {
        self.call("POST", path, Some(body), &[])
    }

    /// Submits a job; panics unless 201.
    pub fn submit(&self, body: &str) -> String {
        let reply = self.post("/v1/jobs", body);
        assert_eq!(reply.status, 201, "{}", reply.text);
        reply.json["id"].as_str().unwrap().to_string()
    }

    pub fn job(&self, id: &str) -> Value {
        let reply = self.get(&format!("/v1/jobs/{id}"));
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json
    }

    /// Waits until job `id` is in one of `states`; returns the job.
    pub fn wait_for(&self, id: &str, states: &[&str], within: Duration) -> Value {
        let start = Instant::now();
        loop {
            let job = self.job(id);
            if states.contains(&job["state"].as_str().unwrap_or("")) {
                return job;
            }
            assert!(
                start.elapsed() < within,
                "job {id} still {} after {within:?}: {job}",
                job["state"]
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Names of the daemon's threads (`/proc/PID/task/*/comm`).
    pub fn thread_names(&self) -> Vec<String> {
        let task = format!("/proc/{}/task", self.pid());
        std::fs::read_dir(task)
            .map(|d| {
                d.flatten()
                    .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                    .map(|n| n.trim().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub text: String,
    pub json: Value,
}

/// Serves the files of a folder over HTTP/1.1 with byte ranges, one thread per connection.
pub struct FileServer {
    pub base: String,
}

impl FileServer {
    pub fn start(dir: &Path) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let dir = dir.to_path_buf();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let dir = dir.clone();
                std::thread::spawn(move || serve_file(conn, &dir));
            }
        });
        FileServer { base }
    }
}

fn read_head(conn: &mut TcpStream) -> Option<(String, HashMap<String, String>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next()?.to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).ok()?;
    Some((request_line, headers, body))
}

fn serve_file(mut conn: TcpStream, dir: &Path) {
    while let Some((request_line, headers, _)) = read_head(&mut conn) {
        let path = request_line
            .split(' ')
            .nth(1)
            .unwrap_or("/")
            .trim_start_matches('/');
        let Ok(bytes) = std::fs::read(dir.join(path)) else {
            let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
            continue;
        };
        let total = bytes.len();
        let range = headers
            .get("range")
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split_once('-'))
            .and_then(|(a, b)| {
                let start: usize = a.parse().ok()?;
                let end = b
                    .parse::<usize>()
                    .map_or(total.saturating_sub(1), |e| e.min(total - 1));
                (start < total && start <= end).then_some((start, end))
            });
        let head = match range {
            Some((s, e)) => format!(
                "HTTP/1.1 206 Partial Content\r\ncontent-type: video/mp4\r\naccept-ranges: bytes\r\ncontent-range: bytes {s}-{e}/{total}\r\ncontent-length: {}\r\n\r\n",
                e - s + 1
            ),
            None => format!(
                "HTTP/1.1 200 OK\r\ncontent-type: video/mp4\r\naccept-ranges: bytes\r\ncontent-length: {total}\r\n\r\n"
            ),
        };
        let (s, e) = range.unwrap_or((0, total.saturating_sub(1)));
        if conn.write_all(head.as_bytes()).is_err() || conn.write_all(&bytes[s..=e]).is_err() {
            return;
        }
    }
}

/// One webhook request as received.
#[derive(Debug, Clone)]
pub struct Hook {
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// Answers every POST with 200 (or `fail_first` times with 500) and keeps it.
pub struct WebhookReceiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<Hook>>>,
}

impl WebhookReceiver {
    pub fn start(fail_first: usize) -> WebhookReceiver {
        WebhookReceiver::start_slow(fail_first, Duration::ZERO)
    }

    /// A receiver that takes `delay` to answer each delivery (a slow application).
    pub fn start_slow(fail_first: usize, delay: Duration) -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let received: Arc<Mutex<Vec<Hook>>> = Arc::default();
        let sink = received.clone();
        let failures = Arc::new(Mutex::new(fail_first));
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let sink = sink.clone();
                let failures = failures.clone();
                std::thread::spawn(move || {
                    while let Some((_, headers, body)) = read_head(&mut conn) {
                        let fail = {
                            let mut left = failures.lock().unwrap();
                            let fail = *left > 0;
                            *left = left.saturating_sub(1);
                            fail
                        };
                        std::thread::sleep(delay);
                        let status = if fail {
                            "500 Internal Server Error"
                        } else {
                            "200 OK"
                        };
                        if !fail {
                            sink.lock().unwrap().push(Hook {
                                headers,
                                body: String::from_utf8_lossy(&body).into_owned(),
                            });
                        }
                        let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                        if conn.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        WebhookReceiver { url, received }
    }

    pub fn hooks(&self) -> Vec<Hook> {
        self.received.lock().unwrap().clone()
    }
}

/// Reads a job's Server-Sent Events until the stream ends: (id, event, data) each.
pub fn read_events(
    node: &Node,
    id: &str,
    last_event_id: Option<&str>,
    within: Duration,
) -> Vec<(String, String, Value)> {
    let client = reqwest::blocking::Client::builder()
        .timeout(within)
        .build()
        .unwrap();
    let mut r = client.get(format!("{}/v1/jobs/{id}/events", node.base));
    if let Some(t) = &node.token {
        r = r.bearer_auth(t);
    }
    if let Some(last) = last_event_id {
        r = r.header("last-event-id", last);
    }
    let response = r.send().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut events = Vec::new();
    let (mut event_id, mut kind, mut data) = (String::new(), String::new(), String::new());
    for line in BufReader::new(response).lines() {
        let Ok(line) = line else { break };
        if line.is_empty() {
            if !data.is_empty() {
                events.push((
                    event_id.clone(),
                    kind.clone(),
                    serde_json::from_str(&data).unwrap(),
                ));
            }
            data.clear();
            kind.clear();
            continue;
        }
        if let Some(v) = line.strip_prefix("id:") {
            event_id = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("event:") {
            kind = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    events
}
