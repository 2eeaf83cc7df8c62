//! `encore bench --origin`: Encore's HTTP origin against nginx serving the same files, one CPU
//! core each, under the same load: keep-alive connections from an in-process load generator
//! pinned to another core. Reported as requests per second and latency percentiles, with the
//! ratio Encore / nginx.
//!
//! With `--live`, the box encodes while it serves: `encore serve --demo` runs its live channel
//! (the 720p test pattern through the default ladder) on the servers' core, and the load asks
//! for that channel's live media playlist and newest segment. nginx serves copies of the very
//! same two files on the same core, beside the same channel encoding at normal priority (as
//! an FFmpeg process beside nginx would), and, for reference, beside it encoding at Encore's
//! lowered priority (the same CPU share Encore's origin had).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::TempDir;

/// The goal: at least nginx's requests per second per core.
pub const GOAL_RPS_RATIO: f64 = 1.0;

#[derive(Debug, Clone)]
pub struct Options {
    pub encore: PathBuf,
    pub seconds: u32,
    pub connections: usize,
    /// Size of the file requested (a small media segment or a playlist).
    pub file_bytes: usize,
    /// Serve a live channel's playlist and segment while it encodes.
    pub live: bool,
    /// The serving Encore's `media_nice`.
    pub media_nice: i32,
}

/// One server's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub requests: u64,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

/// One file, served by both.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What it is: `VOD segment`, `live playlist`, `live segment`.
    pub what: String,
    pub path: String,
    pub bytes: usize,
    pub encore: Side,
    /// nginx (live: beside the encoding at normal priority).
    pub nginx: Side,
    /// Live: nginx beside the encoding at Encore's `media_nice`.
    pub nginx_same_share: Option<Side>,
    /// Encore / nginx.
    pub rps_ratio: f64,
    pub p99_ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub connections: usize,
    pub seconds: u32,
    /// Cores: servers on the first, the load generator on the second.
    pub pinned: bool,
    /// What encodes on the servers' core meanwhile (`--live`).
    pub encoding: Option<String>,
    pub targets: Vec<Target>,
    pub goal_rps_ratio: f64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} keep-alive connections, {} s a run{}",
            self.connections,
            self.seconds,
            if self.pinned {
                ", servers on core 0, load on core 1"
            } else {
                ", not pinned (one core)"
            }
        )?;
        if let Some(e) = &self.encoding {
            writeln!(f, "encoding meanwhile: {e}")?;
        }
        for t in &self.targets {
            writeln!(f, "\n{}: GET {} ({} bytes)", t.what, t.path, t.bytes)?;
            writeln!(
                f,
                "{:<38}{:>12}{:>12}{:>12}{:>10}",
                "", "req/s", "p50 ms", "p99 ms", "errors"
            )?;
            let nginx_name = if t.nginx_same_share.is_some() {
                "nginx, encoding at normal priority"
            } else {
                "nginx"
            };
            let mut rows = vec![("encore", &t.encore), (nginx_name, &t.nginx)];
            if let Some(same) = &t.nginx_same_share {
                rows.push(("nginx, encoding at encore's priority", same));
            }
            for (name, s) in rows {
                writeln!(
                    f,
                    "{name:<38}{:>12.0}{:>12.3}{:>12.3}{:>10}",
                    s.requests_per_second, s.p50_ms, s.p99_ms, s.errors
                )?;
            }
            writeln!(
                f,
                "encore / nginx: req/s {:.3}x (goal >= {:.1}x{}), p99 {:.3}x",
                t.rps_ratio,
                self.goal_rps_ratio,
                if t.rps_ratio >= self.goal_rps_ratio {
                    ", met"
                } else {
                    ", not met"
                },
                t.p99_ratio
            )?;
            if let Some(same) = &t.nginx_same_share {
                writeln!(
                    f,
                    "encore / nginx at encore's priority: req/s {:.3}x",
                    t.encore.requests_per_second / same.requests_per_second.max(1e-9)
                )?;
            }
        }
        Ok(())
    }
}

/// A child process killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(options: &Options, progress: &dyn Fn(&str)) -> Result<Report, String> {
    let dir = TempDir::new()?;
    let root = dir.0.clone();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinned = cores >= 2 && Command::new("taskset").arg("-V").output().is_ok();
    let bench = Bench {
        options,
        root: &root,
        pinned,
    };
    let (targets, encoding) = if options.live {
        let demo = format!("{DEMO}, media_nice = {}", options.media_nice);
        (bench.live(progress)?, Some(demo))
    } else {
        (bench.vod(progress)?, None)
    };
    Ok(Report {
        connections: options.connections,
        seconds: options.seconds,
        pinned,
        encoding,
        targets,
        goal_rps_ratio: GOAL_RPS_RATIO,
    })
}

const DEMO: &str = "encore serve --demo: the 1280x720@30 test pattern through the default \
                    ladder, on the servers' core";

struct Bench<'a> {
    options: &'a Options,
    root: &'a Path,
    pinned: bool,
}

impl Bench<'_> {
    /// A command on the servers' core (core 0) when pinned.
    fn pinned(&self, program: &str) -> Command {
        if self.pinned {
            let mut c = Command::new("taskset");
            c.args(["-c", "0", program]);
            c
        } else {
            Command::new(program)
        }
    }

    /// `encore serve` on the servers' core, its media work `media_nice` steps below; its
    /// address.
    fn encore(&self, media_nice: i32, extra: &[&str]) -> Result<(Server, String), String> {
        let config = self.root.join("encore.toml");
        std::fs::write(&config, format!("media_nice = {media_nice}\n"))
            .map_err(|e| e.to_string())?;
        let mut cmd = self.pinned(&self.options.encore.to_string_lossy());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(self.root.join("encore-data"))
            .arg("--config")
            .arg(&config)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = Server(cmd.spawn().map_err(|e| format!("encore serve: {e}"))?);
        let addr = serving_address(&mut child.0)?;
        Ok((child, addr))
    }

    /// nginx on the servers' core, serving `folder`.
    fn nginx(&self, folder: &Path) -> Result<(Server, String), String> {
        let port = free_port()?;
        let temp = self.root.join("nginx-temp");
        std::fs::create_dir_all(&temp).map_err(|e| e.to_string())?;
        let conf = self.root.join("nginx.conf");
        std::fs::write(&conf, nginx_conf(self.root, folder, port)).map_err(|e| e.to_string())?;
        let mut cmd = self.pinned("nginx");
        cmd.arg("-p")
            .arg(&temp)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = Server(cmd.spawn().map_err(|e| {
            format!("nginx is needed for the origin benchmark (apt-get install nginx-light): {e}")
        })?);
        let addr = format!("127.0.0.1:{port}");
        wait_listening(&addr)?;
        Ok((child, addr))
    }

    /// One file of `file_bytes` under `/vod/`, from Encore's VOD folder and from nginx.
    fn vod(&self, progress: &dyn Fn(&str)) -> Result<Vec<Target>, String> {
        let rel = "vod/show/720p/0.m4s";
        let body: Vec<u8> = (0..self.options.file_bytes)
            .map(|i| (i * 7) as u8)
            .collect();
        for folder in ["encore-data", "copy"] {
            let file = self.root.join(folder).join(rel);
            write_file_creating_folders(&file, &body)?;
        }
        let path = format!("/{rel}");
        progress("encore origin");
        let encore = {
            let (_server, addr) = self.encore(0, &[])?;
            load(&addr, &path, self.options, self.pinned)?
        };
        progress("nginx");
        let nginx = {
            let (_server, addr) = self.nginx(&self.root.join("copy"))?;
            load(&addr, &path, self.options, self.pinned)?
        };
        Ok(vec![target(
            "VOD segment",
            path,
            body.len(),
            encore,
            nginx,
            None,
        )])
    }

    /// The demo channel's live media playlist and newest segment, while it encodes.
    fn live(&self, progress: &dyn Fn(&str)) -> Result<Vec<Target>, String> {
        progress("encore serve --demo: waiting for the channel's first segments");
        let nice = self.options.media_nice;
        let (encore, addr) = self.encore(nice, &["--demo"])?;
        let (playlist, segment) = live_files(&addr)?;
        let copy = self.root.join("copy");
        let mut files = Vec::new();
        for (what, path) in [("live playlist", &playlist), ("live segment", &segment)] {
            let (status, body) = get(&addr, path)?;
            if status != 200 {
                return Err(format!("GET {path}: {status}"));
            }
            let file = copy.join(path.trim_start_matches('/'));
            write_file_creating_folders(&file, &body)?;
            files.push((what, path.clone(), body.len()));
        }
        let mut encore_sides = Vec::new();
        for (what, path, _) in &files {
            progress(&format!("encore: {what}"));
            encore_sides.push(load(&addr, path, self.options, self.pinned)?);
        }
        // nginx beside the channel still encoding at Encore's priority: the same CPU share.
        let (nginx, nginx_addr) = self.nginx(&copy)?;
        let mut same_share = Vec::new();
        for (what, path, _) in &files {
            progress(&format!("nginx, encoding at encore's priority: {what}"));
            same_share.push(load(&nginx_addr, path, self.options, self.pinned)?);
        }
        drop((nginx, encore));
        // nginx beside the channel encoding at normal priority, as FFmpeg beside nginx.
        progress("encore serve --demo at normal priority: waiting for its segments");
        let (_encore, addr) = self.encore(0, &["--demo"])?;
        live_files(&addr)?;
        let (_nginx, nginx_addr) = self.nginx(&copy)?;
        let mut targets = Vec::new();
        for (((what, path, bytes), encore), same) in
            files.into_iter().zip(encore_sides).zip(same_share)
        {
            progress(&format!("nginx, encoding at normal priority: {what}"));
            let nginx = load(&nginx_addr, &path, self.options, self.pinned)?;
            targets.push(target(what, path, bytes, encore, nginx, Some(same)));
        }
        Ok(targets)
    }
}

/// The address a started `encore serve` (its stdout piped) says it serves on. What it prints
/// later (a demo channel's URLs) is read and dropped: a closed pipe would fail its writes.
pub(super) fn serving_address(serve: &mut Child) -> Result<String, String> {
    let stdout = serve.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout);
    let mut first = String::new();
    lines.read_line(&mut first).map_err(|e| e.to_string())?;
    let addr = first
        .trim()
        .strip_prefix("encore: serving on http://")
        .ok_or_else(|| format!("encore serve said {first:?}"))?
        .to_string();
    std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
    Ok(addr)
}

fn target(
    what: &str,
    path: String,
    bytes: usize,
    encore: Side,
    nginx: Side,
    nginx_same_share: Option<Side>,
) -> Target {
    Target {
        what: what.to_owned(),
        path,
        bytes,
        nginx_same_share,
        rps_ratio: encore.requests_per_second / nginx.requests_per_second.max(1e-9),
        p99_ratio: encore.p99_ms / nginx.p99_ms.max(1e-9),
        encore,
        nginx,
    }
}

/// The demo channel's top media playlist and the newest segment it lists, once it lists three.
fn live_files(addr: &str) -> Result<(String, String), String> {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(500));
        let Ok((200, master)) = get(addr, "/live/demo/master.m3u8") else {
            continue;
        };
        let master = String::from_utf8_lossy(&master).into_owned();
        let Some(media) = uris(&master).into_iter().next() else {
            continue;
        };
        let playlist = format!("/live/demo/{media}");
        let Ok((200, text)) = get(addr, &playlist) else {
            continue;
        };
        last = String::from_utf8_lossy(&text).into_owned();
        let segments = uris(&last);
        if segments.len() >= 3 {
            let folder = playlist.rsplit_once('/').map_or("", |(f, _)| f);
            if let Some(newest) = segments.last() {
                let segment = format!("{folder}/{newest}");
                return Ok((playlist, segment));
            }
        }
    }
    Err(format!(
        "the demo channel listed no three segments within 60 s; its playlist: {last:?}"
    ))
}

fn write_file_creating_folders(file: &Path, body: &[u8]) -> Result<(), String> {
    if let Some(folder) = file.parent() {
        std::fs::create_dir_all(folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    }
    std::fs::write(file, body).map_err(|e| format!("{}: {e}", file.display()))
}

/// The URI lines of a playlist.
fn uris(playlist: &str) -> Vec<&str> {
    playlist
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// One GET on a fresh connection: status and body.
pub(super) fn get(addr: &str, path: &str) -> Result<(u16, Vec<u8>), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut all = Vec::new();
    s.read_to_end(&mut all).map_err(|e| e.to_string())?;
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no response head")?;
    let head = String::from_utf8_lossy(&all[..end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Err(format!("GET {path}: a chunked answer"));
    }
    Ok((status, all[end + 4..].to_vec()))
}

/// nginx tuned as one would for static segments: one worker, sendfile, keep-alive, no log;
/// serving `folder`.
fn nginx_conf(root: &Path, folder: &Path, port: u16) -> String {
    format!(
        "worker_processes 1;\nmaster_process off;\ndaemon off;\nerror_log stderr error;\npid {pid};\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 1000000;\n  \
         keepalive_timeout 65;\n  types {{ video/iso.segment m4s; }}\n  \
         client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n  fastcgi_temp_path {tmp}/fastcgi;\n  \
         uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n  \
         server {{ listen 127.0.0.1:{port}; root {root}; }}\n}}\n",
        pid = root.join("nginx.pid").display(),
        tmp = root.join("nginx-temp").display(),
        root = folder.display(),
    )
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn wait_listening(addr: &str) -> Result<(), String> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("nothing listens on {addr}"))
}

/// Runs the load on its own thread (pinned to core 1 when `pinned`): `connections` keep-alive
/// connections, each sending GET `path` and reading the whole response, one second of warm-up,
/// then `seconds` measured.
fn load(addr: &str, path: &str, options: &Options, pinned: bool) -> Result<Side, String> {
    let (addr, path, options) = (addr.to_string(), path.to_string(), options.clone());
    std::thread::spawn(move || {
        if pinned {
            pin_current_thread(1);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(load_async(&addr, &path, &options))
    })
    .join()
    .map_err(|_| "the load generator panicked".to_string())?
}

fn pin_current_thread(core: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

async fn load_async(addr: &str, path: &str, options: &Options) -> Result<Side, String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").into_bytes();
    let warm_until = Instant::now() + Duration::from_secs(1);
    let end = warm_until + Duration::from_secs(options.seconds as u64);
    let mut tasks = Vec::new();
    for _ in 0..options.connections {
        let (addr, request) = (addr.to_string(), request.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::new();
            let mut errors = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            'connect: while Instant::now() < end {
                let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await else {
                    errors += 1;
                    continue;
                };
                let _ = s.set_nodelay(true);
                while Instant::now() < end {
                    let sent = Instant::now();
                    if s.write_all(&request).await.is_err() {
                        errors += 1;
                        continue 'connect;
                    }
                    match read_response(&mut s, &mut buf).await {
                        Ok(200) => {
                            if sent >= warm_until {
                                latencies.push(sent.elapsed().as_micros() as u32);
                            }
                        }
                        Ok(_) | Err(_) => {
                            errors += 1;
                            continue 'connect;
                        }
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.map_err(|e| e.to_string())?;
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |&us| us as f64 / 1000.0)
    };
    Ok(Side {
        requests: all.len() as u64,
        requests_per_second: all.len() as f64 / options.seconds.max(1) as f64,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    })
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns its status.
async fn read_response(s: &mut tokio::net::TcpStream, buf: &mut [u8]) -> Result<u16, String> {
    let mut have = 0;
    loop {
        let n = s.read(&mut buf[have..]).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed".into());
        }
        have += n;
        if let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).map_err(|e| e.to_string())?;
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or("no status")?;
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            let mut body = have - (end + 4);
            while body < length {
                let want = (length - body).min(buf.len());
                let n = s.read(&mut buf[..want]).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("closed".into());
                }
                body += n;
            }
            return Ok(status);
        }
        if have == buf.len() {
            return Err("headers too long".into());
        }
    }
}
