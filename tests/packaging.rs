//! The server packages: the Debian package `make deb` builds (its contents, checked with
//! dpkg-deb in a throwaway root), its systemd unit (`systemd-analyze verify`), and the
//! service manager's notifications (READY only once the origin answers, watchdog keep-alives,
//! STOPPING) seen on a notify socket of the test's own, as systemd would see them.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::tempdir;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// packaging/build-deb.sh on the binary under test, extracted into `root`; returns the .deb.
fn build_and_extract(dir: &Path, root: &Path) -> PathBuf {
    let deb = output(
        Command::new("bash")
            .arg(repo().join("packaging/build-deb.sh"))
            .env("BINARY", env!("CARGO_BIN_EXE_encore"))
            .env("OUT_DIR", dir),
    );
    let deb = PathBuf::from(deb.trim());
    output(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(root));
    deb
}

#[test]
fn the_deb_holds_the_daemon_its_unit_and_its_configuration() {
    let dir = tempdir();
    let root = dir.path().join("root");
    let deb = build_and_extract(dir.path(), &root);
    let info = output(Command::new("dpkg-deb").arg("-I").arg(&deb));
    println!("{info}");
    assert!(info.contains("Package: encore"), "{info}");
    for lib in ["libavcodec", "libavformat", "libswscale", "libc6"] {
        assert!(
            info.lines()
                .any(|l| l.trim_start().starts_with("Depends:") && l.contains(lib)),
            "Depends names {lib}: {info}"
        );
    }
    let control = dir.path().join("control");
    output(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    assert_eq!(
        std::fs::read_to_string(control.join("conffiles")).unwrap(),
        "/etc/encore/encore.toml\n"
    );
    for file in [
        "usr/bin/encore",
        "lib/systemd/system/encore.service",
        "etc/encore/encore.toml",
        "usr/share/encore/hw-profiles/cpu-generic.toml",
    ] {
        assert!(root.join(file).is_file(), "{file} in the package");
    }
    // The packaged binary runs, and its packaged configuration is valid.
    let version = output(Command::new(root.join("usr/bin/encore")).arg("--version"));
    assert!(version.starts_with("encore "), "{version}");

    // The unit as systemd reads it; its ExecStart pointed at the extracted binary (verify
    // checks that the program exists).
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/encore.service")).unwrap();
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "DynamicUser=yes",
        "StateDirectory=encore",
    ] {
        assert!(unit.contains(line), "{line} in the unit");
    }
    let check = dir.path().join("check");
    std::fs::create_dir_all(&check).unwrap();
    let binary = root.join("usr/bin/encore");
    std::fs::write(
        check.join("encore.service"),
        unit.replace("/usr/bin/encore", binary.to_str().unwrap()),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(check.join("encore.service"))
        .output()
        .expect("systemd-analyze (`make test` installs systemd)");
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success() && said.trim().is_empty(), "{said}");
}

/// Receives the next notification within `within`.
fn next_notification(socket: &UnixDatagram, within: Duration) -> String {
    socket.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("a notification from the daemon");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ready_comes_once_the_origin_answers_then_keep_alives_and_stopping() {
    let dir = tempdir();
    let notify = dir.path().join("notify");
    let socket = UnixDatagram::bind(&notify).unwrap();
    // The packaged configuration (its demo channel), on free ports.
    let mut child = common::encore()
        .args(["serve", "--config"])
        .arg(repo().join("packaging/encore.toml"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "2000000")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let base = first
        .strip_prefix("encore: serving on ")
        .unwrap_or_else(|| panic!("{first}"))
        .trim()
        .to_string();
    let (said, stdout) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = said.send(line);
        }
    });

    let ready = next_notification(&socket, Duration::from_secs(30));
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    // At READY, the origin answers and the demo channel has started.
    let client = reqwest::blocking::Client::new();
    let health = client.get(format!("{base}/healthz")).send().unwrap();
    assert_eq!(health.status(), 200);
    // (Printed before READY; the reader thread may not have passed it on yet.)
    let api = std::iter::from_fn(|| stdout.recv_timeout(Duration::from_secs(5)).ok())
        .find_map(|l| Some(l.strip_prefix("encore: API on ")?.trim().to_string()))
        .expect("the API's address printed before READY");
    let channels: serde_json::Value = client
        .get(format!("{api}/channels"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(channels["channels"][0]["name"], "demo", "{channels}");

    // Keep-alives at half the watchdog time.
    let started = Instant::now();
    for _ in 0..2 {
        let alive = next_notification(&socket, Duration::from_secs(3));
        assert_eq!(alive, "WATCHDOG=1");
    }
    assert!(started.elapsed() < Duration::from_secs(4));

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut stopping = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stopping && Instant::now() < deadline {
        stopping = next_notification(&socket, Duration::from_secs(10)) == "STOPPING=1";
    }
    assert!(stopping, "STOPPING=1 at SIGTERM");
    assert!(child.wait().unwrap().success());
}
