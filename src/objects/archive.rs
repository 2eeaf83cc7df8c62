//! A live channel's archive in object storage (`archive = true`): every init segment, media
//! segment and manifest the channel publishes is written to `live/{channel}/…` as well, for
//! catch-up and for origins that do not encode (`encore origin --store`).
//!
//! The pipeline never waits for the store: publishing only queues (a bounded queue; when the
//! store falls that far behind, what comes is dropped and counted, never the channel slowed).
//! The writer takes what has queued as one batch and writes its segments first, in parallel,
//! then the newest copy of each manifest: a manifest in the store never names a segment that
//! is not there yet. Segments the store refused are tried again with the next batch, and the
//! manifests wait until none is left. A channel's first manifests wait for its first three segments
//! ([`SEGMENTS_BEFORE_MANIFESTS`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{Objects, PARALLEL_UPLOADS};

/// Where live channels are archived, under the store's prefix.
pub const LIVE_PREFIX: &str = "live";

/// Objects queued for the writer at most: a minute of a large ladder at 2 s segments.
const QUEUE: usize = 512;

/// Segments (distinct numbers) archived before the first manifests are: a player that starts
/// on the archive, or fails over to it from another node's, then finds the segments it starts
/// behind the live edge (hls.js: three target durations) and keeps a buffer, rather than one
/// segment and a stall at each late one.
const SEGMENTS_BEFORE_MANIFESTS: usize = 3;

/// Tries per object, with these waits between them.
const RETRY_WAITS: [Duration; 2] = [Duration::from_millis(250), Duration::from_secs(1)];

enum Item {
    /// An init or media segment.
    Media(String, Bytes),
    Manifest(String, Bytes),
}

/// The publishing side of one channel's archive. Cheap to clone; dropping the last clone lets
/// the writer finish what is queued and stop.
#[derive(Clone)]
pub struct LiveArchive {
    queue: mpsc::Sender<Item>,
    channel: Arc<str>,
    dropped: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for LiveArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveArchive")
            .field("channel", &self.channel)
            .finish()
    }
}

impl LiveArchive {
    /// Starts the writer of `channel`'s archive. Call within a Tokio runtime.
    pub fn start(objects: Objects, channel: &str) -> LiveArchive {
        let (queue, items) = mpsc::channel(QUEUE);
        let channel: Arc<str> = Arc::from(channel);
        let closed = Arc::new(AtomicBool::new(false));
        tokio::spawn(write(objects, channel.clone(), items, closed.clone()));
        LiveArchive {
            queue,
            channel,
            dropped: Arc::new(AtomicU64::new(0)),
            closed,
        }
    }

    /// Writes nothing more (what is queued is still written): the channel goes on elsewhere,
    /// so this node's stop must not end the archived playlists.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// An init or media segment at `path` (`{rendition}/init.mp4`, `{rendition}/{n}.m4s`).
    pub fn media(&self, path: &str, body: Bytes) {
        self.queue(Item::Media(path.to_owned(), body));
    }

    /// A manifest at `path` (`master.m3u8`, `manifest.mpd`, `{rendition}/index.m3u8`).
    pub fn manifest(&self, path: &str, body: Bytes) {
        self.queue(Item::Manifest(path.to_owned(), body));
    }

    /// Objects dropped because the store fell too far behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn queue(&self, item: Item) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        if self.queue.try_send(item).is_err() {
            // Said at the first drop and then every 100th: a store that is down drops a lot.
            let n = self.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_multiple_of(100) {
                tracing::warn!(
                    channel = %self.channel,
                    dropped = n + 1,
                    "archive: object storage is too far behind; objects dropped"
                );
            }
        }
    }
}

/// The writer: one batch at a time, segments before manifests.
async fn write(
    objects: Objects,
    channel: Arc<str>,
    mut items: mpsc::Receiver<Item>,
    closed: Arc<AtomicBool>,
) {
    let mut failing = false;
    // Segment numbers written, until there are enough for the first manifests.
    let mut numbers = BTreeSet::new();
    // The newest copy of each manifest not yet written: an older one is never worth writing.
    let mut manifests = BTreeMap::new();
    // Segments not written yet (the store refused them): tried again with the next batch, and
    // no manifest is written while any is left, as one may name it.
    let mut unwritten: Vec<(String, Bytes)> = Vec::new();
    while let Some(first) = items.recv().await {
        let mut media = std::mem::take(&mut unwritten);
        let mut take = |item| match item {
            Item::Media(path, body) => media.push((path, body)),
            Item::Manifest(path, body) => {
                manifests.insert(path, body);
            }
        };
        take(first);
        while let Ok(item) = items.try_recv() {
            take(item);
        }
        let new_numbers: Vec<u64> = media.iter().filter_map(|(p, _)| number(p)).collect();
        let (refused, error) = put_all(&objects, &channel, media).await;
        let written = if refused.is_empty() {
            numbers.extend(new_numbers);
            if numbers.len() < SEGMENTS_BEFORE_MANIFESTS {
                None
            } else {
                let batch = std::mem::take(&mut manifests).into_iter().collect();
                let (refused, error) = put_all(&objects, &channel, batch).await;
                // A refused manifest waits for the next copy (there always is one).
                drop(refused);
                error
            }
        } else {
            // Bounded like the queue: past it, the oldest are given up (and said).
            let over = refused.len().saturating_sub(QUEUE);
            if over > 0 {
                tracing::warn!(channel = %channel, "archive: {over} segments given up");
            }
            unwritten = refused.into_iter().skip(over).collect();
            error
        };
        match written {
            None if std::mem::take(&mut failing) => {
                tracing::info!(channel = %channel, "archive: object storage answers again");
            }
            None => {}
            // Said once per outage.
            Some(e) if !std::mem::replace(&mut failing, true) => {
                tracing::warn!(channel = %channel, "archive: {e}");
            }
            Some(_) => {}
        }
    }
    // The channel ended: what it published is all there is, unless it goes on elsewhere
    // (then the node carrying it writes the manifests).
    if !closed.load(Ordering::SeqCst) {
        let (refused, error) = put_all(&objects, &channel, unwritten).await;
        if let Some(e) = &error {
            tracing::warn!(channel = %channel, "archive: {e}");
        }
        if refused.is_empty() && !manifests.is_empty() {
            let (_, error) = put_all(&objects, &channel, manifests.into_iter().collect()).await;
            if let Some(e) = error {
                tracing::warn!(channel = %channel, "archive: {e}");
            }
        }
    }
}

/// The number of a media segment's path (`{rendition}/{n}.m4s`).
fn number(path: &str) -> Option<u64> {
    path.rsplit('/').next()?.strip_suffix(".m4s")?.parse().ok()
}

/// Writes every object (in parallel, each tried three times): those the store refused, and
/// the first refusal with how many there were.
async fn put_all(
    objects: &Objects,
    channel: &str,
    batch: Vec<(String, Bytes)>,
) -> (Vec<(String, Bytes)>, Option<String>) {
    let failures: Vec<((String, Bytes), String)> = futures_util::stream::iter(batch)
        .map(|(path, body)| async move {
            let relative = format!("{LIVE_PREFIX}/{channel}/{path}");
            let mut tried = objects.put(&relative, body.clone()).await;
            for wait in RETRY_WAITS {
                if tried.is_ok() {
                    break;
                }
                tokio::time::sleep(wait).await;
                tried = objects.put(&relative, body.clone()).await;
            }
            tried.err().map(|e| ((path, body), e.to_string()))
        })
        .buffer_unordered(PARALLEL_UPLOADS)
        .filter_map(|failed| async move { failed })
        .collect()
        .await;
    let error = failures
        .first()
        .map(|(_, first)| format!("{first} ({} objects not written)", failures.len()));
    (failures.into_iter().map(|(item, _)| item).collect(), error)
}
