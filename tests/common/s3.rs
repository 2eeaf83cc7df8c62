//! A real, throwaway S3-compatible server for the object storage tests: s3s-fs (it checks
//! request signatures: a wrong secret gets 403) on a free port of 127.0.0.1, storing each
//! object as a file under `root/BUCKET/KEY`, so a test can read what landed with plain file
//! tools. `make test` installs it (`cargo install s3s-fs --version 0.14.1 --features binary`).
//! Dropping it stops the server and removes the folder.
//!
//! Included with `#[path = "common/s3.rs"] mod s3;` beside `mod common;`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "encore-test-key";
pub const SECRET_KEY: &str = "encore-test-secret-0123456789";

pub struct S3Server {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts the server with one empty bucket, `bucket`.
    pub fn start(bucket: &str) -> S3Server {
        let bin = binary().unwrap_or_else(|| {
            panic!("s3s-fs not found in PATH or ~/.cargo/bin: `make test-deps` installs it")
        });
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(bucket)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
            dir,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "s3s-fs did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The folder holding `bucket/key` as files.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The AWS environment a client of this server needs (`secret` may be wrong on purpose).
    pub fn env<'a>(&'a self, secret: &'a str) -> Vec<(&'static str, &'a str)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> Option<PathBuf> {
    let in_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("s3s-fs"))
            .find(|p| p.is_file())
    });
    in_path.or_else(|| {
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
        Some(cargo_home.join("bin/s3s-fs")).filter(|p| p.is_file())
    })
}

/// `encore origin` serving from object storage at `location` (on an [`S3Server`], with `env`):
/// killed when dropped.
pub struct OriginOnly {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    child: Child,
}

impl OriginOnly {
    pub fn start(location: &str, env: &[(&str, &str)]) -> OriginOnly {
        OriginOnly::start_with(&["--store", location], env)
    }

    /// `encore origin --listen 127.0.0.1:0` with `args`.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> OriginOnly {
        let mut child = crate::common::encore()
            .args(["origin", "--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut first,
        )
        .unwrap();
        let base = first
            .trim()
            .strip_prefix("encore: serving on ")
            .unwrap_or_else(|| panic!("{first:?}"))
            .to_owned();
        OriginOnly { base, child }
    }
}

impl Drop for OriginOnly {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
