//! The service manager's notification protocol (systemd's `sd_notify`, without libsystemd):
//! one datagram of `KEY=VALUE` lines to the Unix socket named by `NOTIFY_SOCKET` (a path, or
//! `@name` in the abstract namespace). `READY=1` once the origin listens and the channels have
//! started, `RELOADING=1` and `READY=1` around a SIGHUP, `STOPPING=1` at the stop, and
//! `WATCHDOG=1` keep-alives at half of `WATCHDOG_USEC` while the daemon answers. Without
//! `NOTIFY_SOCKET` (not under a notify-aware supervisor) every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends `state` (e.g. `"READY=1\nSTATUS=serving"`); errors are logged, never fatal.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path.to_string_lossy(), state) {
        tracing::warn!("cannot notify the service manager ({state:?}): {e}");
    }
}

fn send(path: &str, state: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        }
        None => {
            socket.send_to(state.as_bytes(), path)?;
        }
    }
    Ok(())
}

/// The keep-alive interval the service manager asked for (half its watchdog time), if it is
/// watching this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    // WATCHDOG_PID names the process meant, when set.
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_reaches_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        send(&path.to_string_lossy(), "READY=1\nSTATUS=test").unwrap();
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=test");
    }
}
