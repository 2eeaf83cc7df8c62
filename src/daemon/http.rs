//! Serving HTTP with limits. `axum::serve` has no timer, so hyper there has no header-read
//! timeout and no cap on connections: a client that opens connections and sends half a request
//! line holds them forever, and enough of them exhaust the descriptors (then `accept` fails,
//! VOD files cannot open, live inputs cannot reconnect). Here hyper-util serves each
//! connection with a timer — a request head must arrive within `header_timeout`, which also
//! closes a keep-alive connection idle that long — and at most `max_connections` are open at
//! once: beyond that the listener stops accepting and new clients wait in the kernel's queue,
//! as nginx's `worker_connections` does. A client that stops reading its response is dropped
//! after `send_timeout` without progress (nginx's `send_timeout`), and the connection's write
//! buffer is capped, so a slow client pins little memory and the origin counts its request
//! until the body is nearly sent.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Sleep;
use tower::ServiceExt;

use crate::origin::ClientAddr;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time a client has to send a request head (and a keep-alive connection may stay idle).
    pub header_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// How long a response write may make no progress before the connection is closed.
    pub send_timeout: Duration,
}

/// The most a connection buffers on its side of the socket (hyper's default is ~400 KiB):
/// beyond it the response body is not read further until the client takes some. Large
/// enough that a segment goes out in a few writes of several 64 KiB frames each (a 720 KB
/// segment: 0.40x nginx's rate with a 64 KiB buffer, 0.41-0.52x with this one).
const WRITE_BUFFER: usize = 256 * 1024;

/// How long open connections get to finish their requests when the daemon stops.
const DRAIN: Duration = Duration::from_secs(2);

/// Serves `router` on `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // A client may close its side once its request is sent: FFmpeg's HTTP PUT (CMAF
        // ingest) ends its chunked body and closes at once. Without this the request would
        // be dropped unanswered at that EOF.
        .half_close(true)
        .max_buf_size(WRITE_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    let mut warned_full = false;
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !warned_full {
                    tracing::warn!(
                        "{} connections open, the most allowed (max_connections): new clients wait",
                        limits.max_connections
                    );
                    warned_full = true;
                }
                tokio::select! {
                    p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, or the peer gave up: wait a little rather than spin.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if permits.available_permits() > limits.max_connections / 10 {
            warned_full = false;
        }
        let _ = stream.set_nodelay(true);
        let client = ClientAddr(canonical(peer.ip()));
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut req: axum::extract::Request<_>| {
                req.extensions_mut().insert(client);
                req
            },
        ));
        let io = TokioIo::new(SendTimeout::new(stream, limits.send_timeout));
        let connection = builder
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
}

/// An IPv4 client on a dual-stack socket arrives as `::ffff:a.b.c.d`: count it as `a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A TCP stream whose writes fail with `TimedOut` once one has waited `timeout` for the
/// client to take data (the timer restarts whenever a write makes progress).
struct SendTimeout {
    stream: TcpStream,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl SendTimeout {
    fn new(stream: TcpStream, timeout: Duration) -> Self {
        SendTimeout {
            stream,
            timeout,
            stalled: None,
        }
    }

    /// Passes a write's result through, arming the timer while it is pending.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let timeout = self.timeout;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took no data within send_timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for SendTimeout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendTimeout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Raises the soft limit on open files to the hard limit (as nginx's `worker_rlimit_nofile`
/// would) and returns it.
pub fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    limit.rlim_cur
}

/// The default connection cap: what the open-files limit leaves after a reserve for the
/// pipelines, files served, the store and live inputs.
pub fn default_max_connections(open_files: u64) -> usize {
    const RESERVE: u64 = 1024;
    (open_files.saturating_sub(RESERVE) * 3 / 4).clamp(64, 100_000) as usize
}
