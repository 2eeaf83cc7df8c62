//! Serving HTTP with limits. `axum::serve` has no timer, so hyper there has no header-read
//! timeout and no cap on connections: a client that opens connections and sends half a request
//! line holds them forever, and enough of them exhaust the descriptors (then `accept` fails,
//! VOD files cannot open, live inputs cannot reconnect). Here hyper-util serves each
//! connection with a timer — a request head must arrive within `header_timeout`, which also
//! closes a keep-alive connection idle that long — and at most `max_connections` are open at
//! once: beyond that the listener stops accepting and new clients wait in the kernel's queue,
//! as nginx's `worker_connections` does.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time a client has to send a request head (and a keep-alive connection may stay idle).
    pub header_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

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
        .header_read_timeout(limits.header_timeout);
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
        let stream = match accepted {
            Ok((stream, _)) => stream,
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
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
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
