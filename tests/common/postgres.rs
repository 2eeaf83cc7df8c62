//! A real, throwaway PostgreSQL server for the store tests: `initdb` in a temporary folder, a free
//! port on 127.0.0.1, trust authentication, user `encore` and database `encore`; `database`
//! gives each test its own empty database; dropping it stops the server (`-m immediate`) and
//! removes the folder. The binaries are Debian's (`make test` installs them). As root, the
//! server runs as `nobody`, since initdb refuses to run as root.
//!
//! Included with `#[path = "common/postgres.rs"] mod postgres;` beside `mod common;`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Postgres {
    /// `postgres://encore@127.0.0.1:PORT/encore`
    pub url: String,
    port: u16,
    bin: PathBuf,
    /// `Some("nobody")` when running as root.
    user: Option<&'static str>,
    dir: tempfile::TempDir,
}

impl Postgres {
    /// Starts a fresh server: initdb in a temporary folder, a free port on 127.0.0.1, trust
    /// auth, user `encore`, database `encore`.
    pub fn start() -> Postgres {
        let bin = bindir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL server binaries (initdb, pg_ctl) not found in `pg_config --bindir`, \
                 /usr/lib/postgresql/*/bin or PATH: `make test` installs them \
                 (packaging/install-deps.sh --test)"
            )
        });
        let root = run(Command::new("id").arg("-u"), "id -u").trim() == "0";
        // In the system temp folder (not under the checkout, which `nobody` may not traverse).
        let dir = tempfile::Builder::new()
            .prefix("encore-pg-")
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        let user = root.then_some("nobody");
        if let Some(user) = user {
            run(Command::new("chown").arg(user).arg(dir.path()), "chown");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Built before the server starts, so a panic below still stops it (Drop).
        let pg = Postgres {
            url: format!("postgres://encore@127.0.0.1:{port}/encore"),
            port,
            bin,
            user,
            dir,
        };
        let data = pg.data_dir();
        // C locale (the environment's may not be installed); no fsync: the data is thrown away.
        let initdb = [
            "-D", &data, "-A", "trust", "-U", "encore", "--locale", "C", "-E", "UTF8", "-N",
        ];
        pg.run_pg("initdb", &initdb);
        pg.start_server();
        pg.database("encore");
        pg
    }

    fn start_server(&self) {
        let (data, log) = (self.data_dir(), self.log_file());
        let socket = self.dir.path().display();
        let options = format!("-k {socket} -h 127.0.0.1 -p {} -c fsync=off", self.port);
        let start = ["-D", &data, "-l", &log, "-o", &options, "-w", "start"];
        self.run_pg("pg_ctl", &start);
    }

    /// Stops the server as a crash would (connections cut, no checkpoint), keeps it down for
    /// `down`, and starts it again on the same port and data.
    pub fn restart(&self, down: std::time::Duration) {
        let data = self.data_dir();
        self.run_pg("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        std::thread::sleep(down);
        self.start_server();
    }

    /// A new empty database on the same server; returns its postgres:// URL.
    pub fn database(&self, name: &str) -> String {
        let port = self.port.to_string();
        let args = ["-h", "127.0.0.1", "-p", &port, "-U", "encore", name];
        self.run_pg("createdb", &args);
        format!("postgres://encore@127.0.0.1:{}/{name}", self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn log_file(&self) -> String {
        self.dir.path().join("server.log").display().to_string()
    }

    /// A PostgreSQL program, run as the server's user.
    fn pg_command(&self, program: &str, args: &[&str]) -> Command {
        let exe = self.bin.join(program);
        let mut cmd = match self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        // A working folder the server's user can read (initdb needs one).
        cmd.args(args).current_dir(self.dir.path());
        cmd
    }

    /// As `pg_command`, run; panics with its output and the server log.
    fn run_pg(&self, program: &str, args: &[&str]) -> String {
        let out = self.pg_command(program, args).output();
        let out = out.unwrap_or_else(|e| panic!("{program}: {e}"));
        if !out.status.success() {
            panic!(
                "{program} {args:?} failed ({}):\n{}{}\n--- server log ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Best effort (no panic in drop); the temporary folder goes after this.
        let data = self.data_dir();
        if Path::new(&data).join("postmaster.pid").exists() {
            let stop = ["-D", &data, "-m", "immediate", "-w", "stop"];
            let _ = self.pg_command("pg_ctl", &stop).output();
        }
    }
}

/// The folder with initdb and pg_ctl: `pg_config --bindir`, else the newest
/// /usr/lib/postgresql/N/bin (Debian), else wherever initdb is on the PATH.
fn bindir() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !dir.is_empty() {
            candidates.push(PathBuf::from(dir));
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    versions.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    candidates.extend(versions.into_iter().map(|(_, bin)| bin));
    candidates.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    candidates
        .into_iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
