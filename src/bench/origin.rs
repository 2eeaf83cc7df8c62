//! `encore bench --origin`: Encore's HTTP origin against nginx serving the same files, one CPU
//! core each, under the same load: keep-alive connections from an in-process load generator
//! pinned to another core. Reported as requests per second and latency percentiles, with the
//! ratio Encore / nginx.

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

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub path: String,
    pub file_bytes: usize,
    pub connections: usize,
    pub seconds: u32,
    /// Cores: servers on the first, the load generator on the second.
    pub pinned: bool,
    pub encore: Side,
    pub nginx: Side,
    pub rps_ratio: f64,
    pub p99_ratio: f64,
    pub goal_rps_ratio: f64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "GET {} ({} bytes), {} keep-alive connections, {} s{}",
            self.path,
            self.file_bytes,
            self.connections,
            self.seconds,
            if self.pinned {
                ", server on core 0, load on core 1"
            } else {
                ", not pinned (one core)"
            }
        )?;
        writeln!(
            f,
            "{:<10}{:>12}{:>12}{:>12}{:>10}",
            "", "req/s", "p50 ms", "p99 ms", "errors"
        )?;
        for (name, s) in [("encore", &self.encore), ("nginx", &self.nginx)] {
            writeln!(
                f,
                "{name:<10}{:>12.0}{:>12.3}{:>12.3}{:>10}",
                s.requests_per_second, s.p50_ms, s.p99_ms, s.errors
            )?;
        }
        writeln!(
            f,
            "encore / nginx: req/s {:.3}x (goal >= {:.1}x{}), p99 {:.3}x",
            self.rps_ratio,
            self.goal_rps_ratio,
            if self.rps_ratio >= self.goal_rps_ratio {
                ", met"
            } else {
                ", not met"
            },
            self.p99_ratio
        )
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
    let rel = "vod/show/720p/0.m4s";
    let file = root.join(rel);
    std::fs::create_dir_all(file.parent().expect("has a parent")).map_err(|e| e.to_string())?;
    std::fs::write(
        &file,
        (0..options.file_bytes)
            .map(|i| (i * 7) as u8)
            .collect::<Vec<_>>(),
    )
    .map_err(|e| e.to_string())?;
    let path = format!("/{rel}");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinned = cores >= 2 && Command::new("taskset").arg("-V").output().is_ok();
    let pin = |cmd: &str| -> Command {
        if pinned {
            let mut c = Command::new("taskset");
            c.args(["-c", "0", cmd]);
            c
        } else {
            Command::new(cmd)
        }
    };

    progress("encore origin");
    let encore = {
        let mut cmd = pin(&options.encore.to_string_lossy());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&root)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = Server(cmd.spawn().map_err(|e| format!("encore serve: {e}"))?);
        let stdout = child.0.stdout.take().ok_or("no stdout")?;
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .map_err(|e| e.to_string())?;
        let addr = first
            .trim()
            .strip_prefix("encore: serving on http://")
            .ok_or_else(|| format!("encore serve said {first:?}"))?
            .to_string();
        let side = load(&addr, &path, options, pinned)?;
        drop(child);
        side
    };

    progress("nginx");
    let nginx = {
        let port = free_port()?;
        let conf = root.join("nginx.conf");
        std::fs::create_dir_all(root.join("nginx-temp")).map_err(|e| e.to_string())?;
        std::fs::write(&conf, nginx_conf(&root, port)).map_err(|e| e.to_string())?;
        let mut cmd = pin("nginx");
        cmd.arg("-p")
            .arg(root.join("nginx-temp"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = Server(cmd.spawn().map_err(|e| {
            format!("nginx is needed for the origin benchmark (apt-get install nginx-light): {e}")
        })?);
        let addr = format!("127.0.0.1:{port}");
        wait_listening(&addr)?;
        let side = load(&addr, &path, options, pinned)?;
        drop(child);
        side
    };

    Ok(Report {
        path,
        file_bytes: options.file_bytes,
        connections: options.connections,
        seconds: options.seconds,
        pinned,
        rps_ratio: encore.requests_per_second / nginx.requests_per_second.max(1e-9),
        p99_ratio: encore.p99_ms / nginx.p99_ms.max(1e-9),
        goal_rps_ratio: GOAL_RPS_RATIO,
        encore,
        nginx,
    })
}

/// nginx tuned as one would for static segments: one worker, sendfile, keep-alive, no log.
fn nginx_conf(root: &Path, port: u16) -> String {
    format!(
        "worker_processes 1;\ndaemon off;\nerror_log stderr error;\npid {pid};\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 1000000;\n  \
         keepalive_timeout 65;\n  types {{ video/iso.segment m4s; }}\n  \
         client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n  fastcgi_temp_path {tmp}/fastcgi;\n  \
         uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n  \
         server {{ listen 127.0.0.1:{port}; root {root}; }}\n}}\n",
        pid = root.join("nginx.pid").display(),
        tmp = root.join("nginx-temp").display(),
        root = root.display(),
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
