//! The gate of an SRT listener with a passphrase or a stream id. libsrt refuses a caller with
//! the wrong passphrase inside its own threads, which FFmpeg never hears of, and FFmpeg's
//! listener cannot refuse a stream id at all. So Encore receives the public port's datagrams
//! itself and relays each caller's through a loopback socket of its own to FFmpeg's listener on
//! 127.0.0.1, reading only the handshakes on the way: a conclusion naming another stream id is
//! answered with a rejection (it never reaches FFmpeg), and the listener's rejections (a wrong
//! or missing passphrase) are logged as they pass back to the caller.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::gate::{self, Gate, RefusalLog};
use super::srt_handshake as handshake;

/// A caller silent this long is forgotten (SRT sends keep-alives every second).
const IDLE: Duration = Duration::from_secs(10);
/// Callers relayed at once; the one heard from least recently makes room for a new one.
const MAX_CALLERS: usize = 16;

/// Opens the gate of `url` (`srt://HOST:PORT?…`) and returns the URL FFmpeg's listener reads.
/// `stream_id`, when set, is the only one a caller may name; `channel` names the channel in
/// WARNs.
pub(super) fn open(
    url: &str,
    stream_id: Option<&str>,
    channel: &str,
) -> Result<(String, Gate), String> {
    let (host, port, query) = gate::split_url(url, "srt")?;
    let public = Arc::new(gate::bind_public(host, port).map_err(|e| format!("{url}: {e}"))?);
    let listener_port = gate::loopback_port().map_err(|e| e.to_string())?;
    let rest = gate::query_without(query, &["streamid"]);
    let internal = format!(
        "srt://127.0.0.1:{listener_port}{}{rest}",
        if rest.is_empty() { "" } else { "?" }
    );
    let relay = Relay {
        public,
        listener: SocketAddr::from((Ipv4Addr::LOCALHOST, listener_port)),
        stream_id: stream_id.map(str::to_string),
        log: Arc::new(RefusalLog::new(channel, url)),
        callers: HashMap::new(),
    };
    let gate =
        Gate::spawn("encore-srt-gate", move |stop| relay.run(&stop)).map_err(|e| e.to_string())?;
    Ok((internal, gate))
}

struct Relay {
    public: Arc<UdpSocket>,
    listener: SocketAddr,
    stream_id: Option<String>,
    log: Arc<RefusalLog>,
    callers: HashMap<SocketAddr, Caller>,
}

/// One caller's loopback socket to FFmpeg's listener and the thread carrying the answers back.
struct Caller {
    upstream: Arc<UdpSocket>,
    heard: Instant,
    stop: Arc<AtomicBool>,
    answers: Option<JoinHandle<()>>,
}

impl Drop for Caller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.answers.take() {
            let _ = thread.join();
        }
    }
}

impl Relay {
    fn run(mut self, stop: &AtomicBool) {
        let mut buf = vec![0u8; gate::MAX_DATAGRAM];
        while !stop.load(Ordering::SeqCst) {
            self.callers.retain(|_, c| c.heard.elapsed() < IDLE);
            let (n, from) = match self.public.recv_from(&mut buf) {
                Ok(got) => got,
                Err(_) => continue, // nothing within the poll interval, or an ICMP error
            };
            let packet = &buf[..n];
            if let (Some(wanted), Some(named)) =
                (&self.stream_id, handshake::conclusion_stream_id(packet))
            {
                if &named != wanted {
                    let answer = handshake::rejection(packet, handshake::REJX_NOT_FOUND);
                    let _ = self.public.send_to(&answer, from);
                    let why = if named.is_empty() {
                        "it names no SRT stream id".to_string()
                    } else {
                        format!("SRT stream id {named:?} is not this input's")
                    };
                    self.log.refuse(from, &why);
                    continue;
                }
            }
            if let Some(caller) = self.caller(from) {
                caller.heard = Instant::now();
                let _ = caller.upstream.send(packet);
            }
        }
    }

    /// The relay of `from`, made on its first packet.
    fn caller(&mut self, from: SocketAddr) -> Option<&mut Caller> {
        if !self.callers.contains_key(&from) {
            if self.callers.len() >= MAX_CALLERS {
                let oldest = self
                    .callers
                    .iter()
                    .min_by_key(|(_, c)| c.heard)
                    .map(|(a, _)| *a)?;
                self.callers.remove(&oldest);
            }
            let caller = self.connect(from).ok()?;
            self.callers.insert(from, caller);
        }
        self.callers.get_mut(&from)
    }

    fn connect(&self, from: SocketAddr) -> std::io::Result<Caller> {
        let upstream = Arc::new(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?);
        upstream.connect(self.listener)?;
        upstream.set_read_timeout(Some(gate::POLL))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (socket, public, log, flag) = (
            upstream.clone(),
            self.public.clone(),
            self.log.clone(),
            stop.clone(),
        );
        let answers = std::thread::Builder::new()
            .name("encore-srt-gate".into())
            .spawn(move || {
                let mut buf = vec![0u8; gate::MAX_DATAGRAM];
                while !flag.load(Ordering::SeqCst) {
                    let Ok(n) = socket.recv(&mut buf) else {
                        continue;
                    };
                    if let Some(why) = handshake::rejection_reason(&buf[..n]) {
                        log.refuse(from, &why);
                    }
                    let _ = public.send_to(&buf[..n], from);
                }
            })?;
        Ok(Caller {
            upstream,
            heard: Instant::now(),
            stop,
            answers: Some(answers),
        })
    }
}
