//! The live store: what each channel has published, and the handle the pipeline publishes through.
//!
//! Everything a request needs is prepared at publish time (body, ETag, Last-Modified,
//! Cache-Control), so serving is a lookup and a reference-count increment. Publishing takes a
//! short `std` lock and never waits on a request: it is safe from a pipeline thread.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderValue;
use bytes::Bytes;
use tokio::sync::watch;

use super::object::{cache_control_value, content_type_for, Object};
use crate::package::{INIT_NAME, MEDIA_PLAYLIST_NAME};

/// The timing of a live channel: which wall-clock instants each segment number belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelTiming {
    /// Nominal segment duration D.
    pub segment_duration: Duration,
    /// The instant segment number 0 starts: segment N covers `[epoch + N·D, epoch + (N+1)·D)`
    /// and is due (DASH: available) at the end of its interval, `epoch + (N+1)·D`. With epoch
    /// locking this is the Unix epoch (media time, `tfdt`, counts from the MPD's
    /// availabilityStartTime instead: docs/timing.md).
    pub epoch: SystemTime,
    /// DVR window (DASH `timeShiftBufferDepth`): how long a segment stays downloadable after it
    /// is due. Also bounds memory: older segments are dropped even if `evict_before` is never called.
    pub dvr_window: Duration,
}

impl ChannelTiming {
    /// When segment `number` is due: the end of its interval. `None` past the end of time.
    pub fn due(&self, number: u64) -> Option<SystemTime> {
        let d = self.segment_duration.as_nanos();
        let offset = (number as u128).checked_add(1)?.checked_mul(d)?;
        let offset = Duration::new(
            u64::try_from(offset / 1_000_000_000).ok()?,
            (offset % 1_000_000_000) as u32,
        );
        self.epoch.checked_add(offset)
    }

    /// The newest segment number due at `now` (the live edge by the clock), `None` before the
    /// first is due.
    pub fn edge_at(&self, now: SystemTime) -> Option<u64> {
        let elapsed = now.duration_since(self.epoch).ok()?.as_nanos();
        let d = self.segment_duration.as_nanos().max(1);
        (elapsed / d).checked_sub(1).map(|n| n as u64)
    }

    /// Segments kept in the DVR window (rounded up), at least one.
    fn window_segments(&self) -> u64 {
        let d = self.segment_duration.as_nanos().max(1);
        (self.dvr_window.as_nanos().div_ceil(d) as u64).max(1)
    }
}

/// Makes strong ETags for published bytes without hashing them: a per-process nonce and a
/// publish sequence number. Every publish gets a new tag, so two different bodies never share
/// one, and a restarted origin never reuses a tag a cache may still hold.
#[derive(Debug)]
pub(crate) struct Tagger {
    nonce: u64,
    sequence: AtomicU64,
}

impl Tagger {
    pub fn new() -> Tagger {
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Tagger {
            nonce,
            sequence: AtomicU64::new(0),
        }
    }

    fn next(&self, len: usize) -> HeaderValue {
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("\"{:x}-{:x}-{:x}\"", self.nonce, seq, len))
            .expect("hex digits are a valid header value")
    }
}

/// What a request for a segment finds.
pub(crate) enum Lookup {
    Found(Arc<Object>),
    /// Below the DVR window.
    Evicted,
    /// Not (yet) published.
    Missing,
    UnknownRendition,
}

#[derive(Default)]
struct Rendition {
    init: Option<Arc<Object>>,
    /// Per-rendition manifests by file name (`index.m3u8`).
    manifests: HashMap<String, Arc<Object>>,
    segments: BTreeMap<u64, Arc<Object>>,
    /// Shedding threshold for this rendition's live-edge segments, when a ladder order is set.
    shed_rank: Option<(usize, usize)>,
}

#[derive(Default)]
struct State {
    /// Top-level manifests by file name (`master.m3u8`, `manifest.mpd`).
    manifests: HashMap<String, Arc<Object>>,
    renditions: HashMap<String, Rendition>,
    /// Segments below this number are gone (DVR window).
    evicted_before: u64,
    /// Highest segment number published, for the memory bound.
    newest: Option<u64>,
    /// No more segments will come: requests are not held.
    ended: bool,
    /// Removed or replaced: publishes are ignored.
    closed: bool,
    /// Ladder order for shedding (`set_rendition_order`), kept for renditions not yet created.
    order: Vec<String>,
}

/// One live channel's published state.
pub(crate) struct Channel {
    pub name: String,
    pub timing: ChannelTiming,
    state: RwLock<State>,
    /// Bumped on every change; held requests wait on it.
    changed: watch::Sender<u64>,
    tagger: Arc<Tagger>,
    segment_cache: HeaderValue,
    init_cache: HeaderValue,
    manifest_cache: HeaderValue,
}

impl Channel {
    pub fn new(name: &str, timing: ChannelTiming, tagger: Arc<Tagger>) -> Channel {
        let d = timing.segment_duration;
        // Segments never change once published (numbers are tied to the clock), so a cache may
        // keep them for as long as the origin serves them: the DVR window, capped at a day.
        let segment_secs = timing.dvr_window.max(d).as_secs().clamp(1, 86_400);
        let segment_cache =
            cache_control_value(&format!("public, max-age={segment_secs}, immutable"));
        // The init segment keeps its URL across a channel restart with new encoder settings, so
        // it is not immutable: a short lifetime plus its ETag makes revalidation a cheap 304.
        let init_secs = d.as_secs().max(1);
        let init_cache = cache_control_value(&format!("public, max-age={init_secs}"));
        // Live manifests: at most half a segment duration (standards, origin rule 4).
        let half = (d / 2).as_secs();
        let manifest_cache = if half == 0 {
            cache_control_value("public, max-age=0, no-cache")
        } else {
            cache_control_value(&format!("public, max-age={half}"))
        };
        Channel {
            name: name.to_owned(),
            timing,
            state: RwLock::new(State::default()),
            changed: watch::Sender::new(0),
            tagger,
            segment_cache,
            init_cache,
            manifest_cache,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-written entry (inserts are single
        // map operations), so a poisoned lock is still consistent.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that sees every change after this call.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn manifest(&self, name: &str) -> Option<Arc<Object>> {
        self.read().manifests.get(name).cloned()
    }

    pub fn rendition_manifest(&self, rendition: &str, name: &str) -> Option<Arc<Object>> {
        self.read()
            .renditions
            .get(rendition)?
            .manifests
            .get(name)
            .cloned()
    }

    /// Every rendition's HLS media playlist.
    pub fn media_playlists(&self) -> Vec<Arc<Object>> {
        self.read()
            .renditions
            .values()
            .filter_map(|r| r.manifests.get(MEDIA_PLAYLIST_NAME).cloned())
            .collect()
    }

    pub fn init(&self, rendition: &str) -> Option<Arc<Object>> {
        self.read().renditions.get(rendition)?.init.clone()
    }

    pub fn segment(&self, rendition: &str, number: u64) -> Lookup {
        let state = self.read();
        if number < state.evicted_before {
            return Lookup::Evicted;
        }
        match state.renditions.get(rendition) {
            None => Lookup::UnknownRendition,
            Some(r) => match r.segments.get(&number) {
                Some(o) => Lookup::Found(o.clone()),
                None => Lookup::Missing,
            },
        }
    }

    /// Ended (no more segments) or closed (removed/replaced).
    pub fn finished(&self) -> bool {
        let s = self.read();
        s.ended || s.closed
    }

    /// The rendition's place in the ladder for shedding: `(rank, count)`, rank 0 the top rung.
    pub fn shed_rank(&self, rendition: &str) -> Option<(usize, usize)> {
        self.read().renditions.get(rendition)?.shed_rank
    }

    pub fn close(&self) {
        self.write().closed = true;
        self.notify();
    }

    fn object(&self, body: Bytes, content_type: HeaderValue, cache: HeaderValue) -> Arc<Object> {
        let etag = self.tagger.next(body.len());
        Arc::new(Object::new(
            body,
            content_type,
            etag,
            SystemTime::now(),
            cache,
        ))
    }

    /// Keeps `old` when the bytes are unchanged, so its ETag and Last-Modified stay valid and
    /// clients revalidating get a 304. Used for the small resources republished often.
    fn replace(
        &self,
        old: Option<&Arc<Object>>,
        body: Bytes,
        content_type: HeaderValue,
        cache: &HeaderValue,
    ) -> Option<Arc<Object>> {
        match old {
            Some(o) if o.body == body => None,
            _ => Some(self.object(body, content_type, cache.clone())),
        }
    }
}

/// The pipeline's handle on one live channel. Cheap to clone; `Send + Sync`. Every method
/// returns at once (a short lock, no waiting on requests), so it is safe to call from the
/// pipeline's OS threads and needs no async runtime.
#[derive(Clone)]
pub struct ChannelPublisher {
    pub(crate) channel: Arc<Channel>,
}

impl std::fmt::Debug for ChannelPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelPublisher")
            .field("channel", &self.channel.name)
            .finish()
    }
}

impl ChannelPublisher {
    /// The channel's name (its URL folder).
    pub fn name(&self) -> &str {
        &self.channel.name
    }

    /// The channel's timing, as given to `Origin::add_channel`.
    pub fn timing(&self) -> ChannelTiming {
        self.channel.timing
    }

    /// A servable object with a fresh ETag, kept outside the channel's maps (ingested
    /// pass-through files).
    pub(crate) fn object(
        &self,
        body: Bytes,
        content_type: HeaderValue,
        cache: HeaderValue,
    ) -> Arc<Object> {
        self.channel.object(body, content_type, cache)
    }

    /// Publishes (or replaces) a rendition's init segment, `{rendition}/init.mp4`. Identical
    /// bytes keep the previous ETag.
    pub fn publish_init(&self, rendition: &str, bytes: Bytes) {
        if !valid_name(rendition) {
            tracing::warn!(channel = %self.channel.name, rendition, "init for an invalid rendition name ignored");
            return;
        }
        let ch = &self.channel;
        let mut state = ch.write();
        if state.closed {
            return;
        }
        let order = shed_rank(&state.order, rendition);
        let r = state.renditions.entry(rendition.to_owned()).or_default();
        r.shed_rank = order;
        if let Some(o) = ch.replace(
            r.init.as_ref(),
            bytes,
            content_type_for(INIT_NAME),
            &ch.init_cache,
        ) {
            r.init = Some(o);
        }
        drop(state);
        ch.notify();
    }

    /// Publishes media segment `number` of `rendition` (`{rendition}/{number}.m4s`). It becomes
    /// visible whole, at once, and requests held for it are answered. Numbers below the DVR
    /// window are ignored.
    pub fn publish_segment(&self, rendition: &str, number: u64, bytes: Bytes) {
        if !valid_name(rendition) {
            tracing::warn!(channel = %self.channel.name, rendition, "segment for an invalid rendition name ignored");
            return;
        }
        let ch = &self.channel;
        // Built outside the lock: the lock is held only for the map operations.
        let object = ch.object(bytes, content_type_for("0.m4s"), ch.segment_cache.clone());
        let mut state = ch.write();
        if state.closed || number < state.evicted_before {
            return;
        }
        let order = shed_rank(&state.order, rendition);
        let r = state.renditions.entry(rendition.to_owned()).or_default();
        r.shed_rank = order;
        r.segments.insert(number, object);
        let newest = state.newest.map_or(number, |n| n.max(number));
        state.newest = Some(newest);
        // Memory bound: keep the DVR window plus a little, whatever the pipeline evicts.
        let keep_from = newest.saturating_sub(ch.timing.window_segments() + 2);
        if keep_from > state.evicted_before {
            evict(&mut state, keep_from);
        }
        drop(state);
        ch.notify();
    }

    /// Publishes a manifest: `master.m3u8`, `manifest.mpd` or `{rendition}/index.m3u8` (any
    /// `.m3u8` or `.mpd` name at the top or one folder down). Identical bytes keep the previous
    /// ETag. Other paths are ignored with a warning.
    pub fn publish_manifest(&self, path: &str, bytes: Bytes) {
        let ch = &self.channel;
        let is_manifest = path.ends_with(".m3u8") || path.ends_with(".mpd");
        let (folder, file) = match path.split_once('/') {
            Some((f, n)) => (Some(f), n),
            None => (None, path),
        };
        if !is_manifest || !valid_name(file) || !folder.is_none_or(valid_name) {
            tracing::warn!(channel = %ch.name, path, "manifest with an invalid path ignored");
            return;
        }
        let mut state = ch.write();
        if state.closed {
            return;
        }
        let content_type = content_type_for(file);
        match folder {
            None => {
                if let Some(o) = ch.replace(
                    state.manifests.get(file),
                    bytes,
                    content_type,
                    &ch.manifest_cache,
                ) {
                    state.manifests.insert(file.to_owned(), o);
                }
            }
            Some(rendition) => {
                let order = shed_rank(&state.order, rendition);
                let r = state.renditions.entry(rendition.to_owned()).or_default();
                r.shed_rank = order;
                if let Some(o) = ch.replace(
                    r.manifests.get(file),
                    bytes,
                    content_type,
                    &ch.manifest_cache,
                ) {
                    r.manifests.insert(file.to_owned(), o);
                }
            }
        }
        drop(state);
        ch.notify();
    }

    /// The DVR window slides: segments below `number` are dropped and answered 404.
    pub fn evict_before(&self, number: u64) {
        let mut state = self.channel.write();
        if number > state.evicted_before {
            evict(&mut state, number);
        }
    }

    /// The stream has ended: requests for unpublished segments are no longer held, and numbers
    /// not yet published get 404. Publishing still works (the final manifests, a last segment).
    pub fn end(&self) {
        self.channel.write().ended = true;
        self.channel.notify();
    }

    /// Declares the ladder, top rung first (e.g. `["1080p", "720p", "480p", "360p"]`). Under
    /// load the origin refuses live-edge segments of higher rungs before lower ones (players
    /// then switch down); renditions not named (audio) are shed last.
    pub fn set_rendition_order(&self, top_first: &[&str]) {
        let mut state = self.channel.write();
        state.order = top_first.iter().map(|s| (*s).to_owned()).collect();
        let State {
            order, renditions, ..
        } = &mut *state;
        for (name, r) in renditions.iter_mut() {
            r.shed_rank = shed_rank(order, name);
        }
    }
}

fn shed_rank(order: &[String], rendition: &str) -> Option<(usize, usize)> {
    order
        .iter()
        .position(|r| r == rendition)
        .map(|i| (i, order.len()))
}

fn evict(state: &mut State, before: u64) {
    state.evicted_before = before;
    for r in state.renditions.values_mut() {
        // split_off keeps [before, ..) in the returned map; everything below is dropped.
        r.segments = r.segments.split_off(&before);
    }
}

/// A file or folder name the origin accepts: non-empty, not starting with a dot, made of
/// ASCII letters, digits, `-`, `_` and `.`. Rules out `..`, separators, and hidden files.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Parses `{number}.m4s` strictly: digits only, no sign, no leading zeros (one URL per segment).
pub(crate) fn parse_segment_name(file: &str) -> Option<u64> {
    let digits = file.strip_suffix(".m4s")?;
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod unit;
