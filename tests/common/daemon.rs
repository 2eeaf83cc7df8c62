//! `encore serve` as a child process for live tests: a config written to a temporary folder,
//! the address read from stdout, stderr collected (and echoed) so tests can check what was
//! logged, and SIGTERM at the end.
//!
//! Included with `#[path = "common/daemon.rs"] mod daemon;` beside `mod common;`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use m3u8_rs::Playlist;

use crate::common::{encore, tempdir};

pub struct Daemon {
    pub child: Child,
    pub base: String,
    stderr: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `encore serve` with `channels` (TOML) and waits for its address.
    pub fn start(channels: &str) -> Daemon {
        Daemon::start_with(channels, &[])
    }

    /// As `start`, with extra command-line arguments (e.g. `-v` for info logs).
    pub fn start_with(channels: &str, args: &[&str]) -> Daemon {
        let dir = tempdir();
        let config = dir.path().join("encore.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{channels}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let mut child = encore()
            .args(args)
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Collect stderr (and echo it, so a failing test shows the daemon's log).
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                eprintln!("[encore] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().expect("a line").unwrap();
        let base = first
            .strip_prefix("encore: serving on ")
            .expect(&first)
            .trim()
            .to_string();
        // Keep draining stdout so the daemon never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Daemon {
            child,
            base,
            stderr,
            _dir: dir,
        }
    }

    /// The configuration file the daemon was started with (rewrite it, then `signal("HUP")`).
    pub fn config_path(&self) -> std::path::PathBuf {
        self._dir.path().join("encore.toml")
    }

    /// Sends a signal by name (`HUP`, `TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// The daemon's data folder (VOD outputs under `vod/` are served at `/vod/`).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("data")
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        reqwest::blocking::Client::new()
            .get(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(10))
            .send()
            .unwrap()
    }

    /// Polls until `path` answers 200 (or panics after `within`).
    pub fn wait_for(&self, path: &str, within: Duration) -> reqwest::blocking::Response {
        let start = Instant::now();
        loop {
            let r = self.get(path);
            if r.status() == 200 {
                return r;
            }
            assert!(
                start.elapsed() < within,
                "{path} never appeared (last status {})",
                r.status()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn media_playlist(&self, path: &str) -> m3u8_rs::MediaPlaylist {
        match m3u8_rs::parse_playlist_res(&self.get(path).bytes().unwrap()) {
            Ok(Playlist::MediaPlaylist(m)) => m,
            other => panic!("{path}: {other:?}"),
        }
    }

    /// The process has not exited.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Everything the daemon wrote to stderr so far, one entry a line.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGTERM; returns the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}
