//! `publish_to`: a live channel's files pushed to another origin's CMAF ingest, in the order
//! the channel publishes them (init segments, then each segment before the manifests that
//! name it).
//!
//! The pipeline never waits: publishing only queues (bounded; when the origin falls that far
//! behind, what comes is dropped and counted). One writer sends the queue in order, trying
//! each file again with backoff while the origin is unreachable or answers 5xx, until the
//! file is no use any more (a segment two durations old; a manifest a newer copy replaces).
//! An answer of 4xx is final for that file and logged: a segment the origin refused as
//! damaged, a token it does not know.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

/// How long an orderly stop waits for the writers to send what is queued.
pub(super) const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// The writers of this process, so an orderly stop can wait for them.
static WRITERS: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());

/// Waits (at most `within`) for every writer to send what is queued; each ends once its
/// channel has stopped and dropped its publishing side.
pub(super) async fn drain(within: Duration) {
    let writers = std::mem::take(&mut *WRITERS.lock().unwrap_or_else(|e| e.into_inner()));
    let _ = tokio::time::timeout(within, futures_util::future::join_all(writers)).await;
}

/// Files queued at most: half a minute of a large ladder at 2 s segments.
const QUEUE: usize = 256;
/// Waits between tries, the last repeated.
const BACKOFF: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
];

struct Item {
    path: String,
    bytes: Bytes,
    manifest: bool,
    queued: Instant,
}

/// The publishing side. Cheap to clone; the writer stops when the last clone is dropped,
/// after what is queued.
#[derive(Clone)]
pub(super) struct Push {
    queue: mpsc::Sender<Item>,
    channel: Arc<str>,
    dropped: Arc<AtomicU64>,
    inits: Arc<LatestInits>,
}

/// The latest init of each rendition, kept apart from the queue: an init the full queue
/// dropped is still sent once the origin catches up.
#[derive(Default)]
struct LatestInits {
    files: Mutex<BTreeMap<String, Bytes>>,
    /// One was dropped: the writer sends them all before its next file.
    lost: AtomicBool,
}

impl LatestInits {
    fn all(&self) -> Vec<(String, Bytes)> {
        let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files.iter().map(|(p, b)| (p.clone(), b.clone())).collect()
    }
}

impl Push {
    /// Starts the writer to `url` (`…/ingest/{channel}`). Call within a Tokio runtime.
    pub(super) fn start(url: &str, token: &str, channel: &str, segment_duration: Duration) -> Push {
        let (queue, items) = mpsc::channel(QUEUE);
        let channel: Arc<str> = Arc::from(channel);
        let inits = Arc::new(LatestInits::default());
        let writer = tokio::spawn(write(
            Writer {
                inits: inits.clone(),
                base: url.trim_end_matches('/').to_owned(),
                token: token.to_owned(),
                channel: channel.clone(),
                // A segment older than this is of no use to the origin's players.
                useful_for: segment_duration * 2,
                timeout: (segment_duration * 2).max(Duration::from_secs(2)),
            },
            items,
        ));
        let mut writers = WRITERS.lock().unwrap_or_else(|e| e.into_inner());
        writers.retain(|w| !w.is_finished());
        writers.push(writer);
        drop(writers);
        Push {
            queue,
            channel,
            dropped: Arc::new(AtomicU64::new(0)),
            inits,
        }
    }

    pub(super) fn media(&self, path: String, bytes: Bytes) {
        self.send(path, bytes, false);
    }

    pub(super) fn manifest(&self, path: String, bytes: Bytes) {
        self.send(path, bytes, true);
    }

    fn send(&self, path: String, bytes: Bytes, manifest: bool) {
        let init = path.ends_with(INIT_SUFFIX);
        if init {
            let mut files = self.inits.files.lock().unwrap_or_else(|e| e.into_inner());
            files.insert(path.clone(), bytes.clone());
        }
        let item = Item {
            path,
            bytes,
            manifest,
            queued: Instant::now(),
        };
        if self.queue.try_send(item).is_err() {
            if init {
                self.inits.lost.store(true, Ordering::Relaxed);
            }
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            metrics::counter!("encore_publish_dropped_total", "channel" => self.channel.to_string())
                .increment(1);
            if n == 1 || n.is_multiple_of(100) {
                tracing::warn!(channel = %self.channel, dropped = n, "publish_to: the origin is behind; files dropped");
            }
        }
    }
}

struct Writer {
    inits: Arc<LatestInits>,
    base: String,
    token: String,
    channel: Arc<str>,
    useful_for: Duration,
    timeout: Duration,
}

async fn write(w: Writer, mut items: mpsc::Receiver<Item>) {
    let client = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(w.timeout)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(channel = %w.channel, error = %e, "publish_to: no HTTP client");
            return;
        }
    };
    let mut failures = 0u64;
    let mut batch = Vec::new();
    while items.recv_many(&mut batch, QUEUE).await > 0 {
        for (i, item) in batch.iter().enumerate() {
            // A newer copy of the same manifest is in this batch: send that one only.
            if item.manifest && batch[i + 1..].iter().any(|later| later.path == item.path) {
                continue;
            }
            // The latest inits are sent again whenever the origin may have lost them (it was
            // unreachable, or says a segment has no init: it restarted), or the queue
            // dropped one.
            // A stopped channel's writer only sends what was queued: its inits could replace
            // those of the channel that restarted in its place.
            if w.inits.lost.swap(false, Ordering::Relaxed) && !items.is_closed() {
                send_inits(&w, &client, &mut failures, &items).await;
            }
            let was_failing = failures > 0;
            let sent = send(&w, &client, item, &mut failures, &items).await;
            let resend = sent == Sent::NeedsInit || (was_failing && failures == 0);
            if resend && !items.is_closed() {
                send_inits(&w, &client, &mut failures, &items).await;
                if sent == Sent::NeedsInit {
                    send(&w, &client, item, &mut failures, &items).await;
                }
            }
        }
        batch.clear();
    }
}

async fn send_inits(
    w: &Writer,
    client: &reqwest::Client,
    failures: &mut u64,
    items: &mpsc::Receiver<Item>,
) {
    for (path, bytes) in w.inits.all() {
        let init = Item {
            path,
            bytes,
            manifest: false,
            queued: Instant::now(),
        };
        send(w, client, &init, failures, items).await;
    }
}

const INIT_SUFFIX: &str = "/init.mp4";

#[derive(Debug, PartialEq, Eq)]
enum Sent {
    /// Stored, refused for good, or no use any more.
    Done,
    /// Refused because the origin has no init for it.
    NeedsInit,
}

/// Sends one file until it is stored, refused, or of no use. Init segments are tried until
/// they are stored (nothing after them is any use without them), unless the channel has
/// stopped (every sender of `items` dropped): then they too are given up after a while, so a
/// restarted channel's new writer does not interleave with an old one.
async fn send(
    w: &Writer,
    client: &reqwest::Client,
    item: &Item,
    failures: &mut u64,
    items: &mpsc::Receiver<Item>,
) -> Sent {
    let url = format!("{}/{}", w.base, item.path);
    let content_type = match item.path.rsplit_once('.').map(|(_, e)| e) {
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("mpd") => "application/dash+xml",
        _ => "video/mp4",
    };
    let mut tries = 0usize;
    loop {
        let sent = client
            .put(&url)
            .bearer_auth(&w.token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(item.bytes.clone())
            .send()
            .await;
        let error = match sent {
            Ok(res) if res.status().is_success() => {
                if *failures > 0 {
                    tracing::info!(channel = %w.channel, "publish_to: the origin takes files again");
                    *failures = 0;
                }
                return Sent::Done;
            }
            Ok(res) if res.status().is_client_error() && res.status().as_u16() != 429 => {
                let status = res.status();
                let reason = res.text().await.unwrap_or_default();
                // The origin lacks the init (it restarted): send it again. An init it refused
                // is final until the channel's changes (the origin re-judges it then).
                let lacks_init = reason.contains(INIT_SUFFIX) && !reason.contains("refused");
                if lacks_init && !item.path.ends_with(INIT_SUFFIX) {
                    return Sent::NeedsInit;
                }
                tracing::warn!(channel = %w.channel, path = %item.path, %status, reason = reason.trim(), "publish_to: the origin refused a file");
                return Sent::Done;
            }
            Ok(res) => format!("answered {}", res.status()),
            Err(e) => e.to_string(),
        };
        *failures += 1;
        if *failures == 1 || (*failures).is_multiple_of(50) {
            tracing::warn!(channel = %w.channel, path = %item.path, error = %error, failures = *failures, "publish_to: cannot reach the origin; trying again");
        }
        let init = item.path.ends_with(INIT_SUFFIX) && !items.is_closed();
        if !item.manifest && !init && item.queued.elapsed() > w.useful_for {
            return Sent::Done;
        }
        if item.manifest && tries >= BACKOFF.len() {
            // The next manifest replaces it.
            return Sent::Done;
        }
        tokio::time::sleep(BACKOFF[tries.min(BACKOFF.len() - 1)]).await;
        tries += 1;
    }
}
