//! Gates in front of network listeners. libavformat drops a UDP packet from a source it was
//! told to ignore, and libsrt a refused SRT handshake, without a word to the program. So for a
//! guarded UDP or SRT input Encore receives the datagrams itself on the public port, refuses
//! the senders it must not take (a WARN naming the channel and input, at most once a minute
//! per sender and reason), and relays the rest over loopback to libavformat's reader.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a gate's threads look at their stop flag.
pub(super) const POLL: Duration = Duration::from_millis(200);
/// The largest datagram a gate relays (UDP's own limit).
pub(super) const MAX_DATAGRAM: usize = 65_536;
/// The same sender refused for the same reason is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// A running gate: its threads end (and its ports close) when it is dropped, which happens
/// with the input it was opened for.
pub struct Gate {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Gate {
    /// Runs `work` on a thread named `name` until the gate is dropped; `work` returns when
    /// the flag it is given is set.
    pub(super) fn spawn(
        name: &str,
        work: impl FnOnce(Arc<AtomicBool>) + Send + 'static,
    ) -> io::Result<Gate> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || work(flag))?;
        Ok(Gate {
            stop,
            threads: vec![thread],
        })
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gate")
    }
}

/// Says that a sender was refused, once a minute per sender and reason.
pub(super) struct RefusalLog {
    channel: String,
    input: String,
    last: Mutex<HashMap<(IpAddr, String), Instant>>,
}

impl RefusalLog {
    pub(super) fn new(channel: &str, input: &str) -> RefusalLog {
        RefusalLog {
            channel: channel.into(),
            input: input.into(),
            last: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn refuse(&self, from: SocketAddr, why: &str) {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.len() > 4096 {
            // Strangers from many addresses cannot grow this without bound.
            last.retain(|_, at| now.duration_since(*at) < WARN_EVERY);
        }
        let key = (from.ip(), why.to_string());
        if last
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < WARN_EVERY)
        {
            return;
        }
        last.insert(key, now);
        tracing::warn!(channel = %self.channel, input = %self.input,
            "input: refused a sender at {from}: {why} (said once a minute per sender)");
    }
}

/// `HOST:PORT` and the query of `scheme://HOST:PORT?QUERY` (an IPv6 host in brackets).
pub(super) fn split_url<'a>(url: &'a str, scheme: &str) -> Result<(&'a str, u16, &'a str), String> {
    let rest = url
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
        .ok_or_else(|| format!("not a {scheme}:// URL"))?;
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = authority.trim_end_matches('/');
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("{url}: no port"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("{url}: bad port {port:?}"))?;
    Ok((
        host.trim_start_matches('[').trim_end_matches(']'),
        port,
        query,
    ))
}

/// The query without the parameters named in `drop` (`a=1&b=2` style).
pub(super) fn query_without(query: &str, drop: &[&str]) -> String {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| !drop.contains(&p.split('=').next().unwrap_or("")))
        .collect::<Vec<_>>()
        .join("&")
}

/// Binds the public UDP socket of `host:port`; a multicast group is joined on every interface.
pub(super) fn bind_public(host: &str, port: u16) -> io::Result<UdpSocket> {
    let ip: IpAddr = if host.is_empty() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        match host.parse() {
            Ok(ip) => ip,
            Err(_) => std::net::ToSocketAddrs::to_socket_addrs(&(host, port))?
                .next()
                .ok_or_else(|| io::Error::other(format!("{host}: no address")))?
                .ip(),
        }
    };
    let socket = match ip {
        IpAddr::V4(group) if group.is_multicast() => {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))?;
            s.join_multicast_v4(&group, &Ipv4Addr::UNSPECIFIED)?;
            s
        }
        IpAddr::V6(group) if group.is_multicast() => {
            let s = UdpSocket::bind((std::net::Ipv6Addr::UNSPECIFIED, port))?;
            s.join_multicast_v6(&group, 0)?;
            s
        }
        ip => UdpSocket::bind((ip, port))?,
    };
    socket.set_read_timeout(Some(POLL))?;
    Ok(socket)
}

/// Asks the kernel for a receive buffer of `bytes` (it may grant less).
pub(super) fn set_receive_buffer(socket: &UdpSocket, bytes: usize) {
    use std::os::fd::AsRawFd;
    let size = bytes.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: setsockopt on a socket we own, with a pointer to a live int of the right size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// A UDP port on 127.0.0.1 that is free now, for libavformat's side of a gate to bind.
pub(super) fn loopback_port() -> io::Result<u16> {
    Ok(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Whether a read error only means "nothing arrived within the timeout".
pub(super) fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_query() {
        assert_eq!(
            split_url("udp://0.0.0.0:5000?pkt_size=1316", "udp").unwrap(),
            ("0.0.0.0", 5000, "pkt_size=1316")
        );
        assert_eq!(
            split_url("srt://[::1]:9000", "srt").unwrap(),
            ("::1", 9000, "")
        );
        assert!(split_url("udp://0.0.0.0", "udp").is_err());
        assert_eq!(query_without("a=1&sources=x&b=2", &["sources"]), "a=1&b=2");
    }
}
