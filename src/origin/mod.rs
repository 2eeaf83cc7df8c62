//! The HTTP origin: serves what the live pipeline publishes and finished VOD folders, and
//! enforces the live-edge rules (docs/origin.md).
//!
//! It is generic over content: the pipeline renders manifests and segments and hands over
//! bytes through a [`ChannelPublisher`]; the origin owns publication, HTTP caching semantics,
//! the wall-clock → segment-number rules, and load shedding.
//!
//! It must never:
//! - serve a partial body: a segment becomes visible whole, at once (an `Arc` swapped into a
//!   map under a lock); responses are reference-counted views of complete bytes;
//! - block a pipeline thread: publishing is a short lock and a wake-up, no I/O, no `.await`,
//!   no waiting on a request;
//! - read outside its VOD folder: every path component is checked (`..`, separators, hidden
//!   files, unknown extensions are 404) before it touches the file system.
//!
//! # Layout
//! ```text
//! /live/{channel}/master.m3u8, /live/{channel}/manifest.mpd
//! /live/{channel}/{rendition}/init.mp4 | index.m3u8 | {number}.m4s
//! /vod/{name}/...                 the same layout, read from OriginConfig::vod_root/{name}/...
//! /ingest/{channel}/...          publishers PUT live channels here (`ingest`)
//! /time                           UTC now, ISO 8601 with milliseconds (DASH UTCTiming http-iso)
//! /healthz                        "ok"
//! ```
//!
//! # Live-edge rules
//! Segment N of a channel covers `[epoch + N·D, epoch + (N+1)·D)` of the Unix clock and is due
//! at the end of that interval (DASH: available from AST + (N − startNumber + 1)·D, the same
//! instant; docs/timing.md and docs/origin.md). A request for an unpublished
//! segment due within one D (or already due, the encoder being late) is held until it is
//! published (200) or until due + D (404, `max-age=1`); one further ahead gets 404 at once with
//! `max-age` = the seconds until it is due (at least 1), so a CDN does not hammer the origin.
//! Segments below the DVR window, unknown channels, renditions and malformed names are 404.
//!
//! # Caching
//! | resource | Cache-Control |
//! | --- | --- |
//! | live segment | `public, max-age=<DVR window, 1 s..1 day>, immutable` |
//! | live init | `public, max-age=<D, at least 1>` (its URL survives a channel restart) |
//! | live manifest | `public, max-age=<floor(D/2)>`; `public, max-age=0, no-cache` when that is 0 |
//! | VOD manifest / media | `public, max-age=<vod_manifest_max_age>` / `…<vod_media_max_age>, immutable` |
//! | 404 ahead of the edge | `max-age=<seconds until due, ≥ 1>` |
//! | other 404, 416, 503 | `max-age=1` |
//!
//! Every stored response has a strong `ETag` and `Last-Modified` and answers 304 to
//! `If-None-Match` / `If-Modified-Since`; single byte ranges get 206 (`If-Range` honoured),
//! unsatisfiable ones 416. CORS: `Access-Control-Allow-Origin: *` on every response, the
//! headers players read exposed, and `OPTIONS` preflights answered; no `Vary: Origin`.
//!
//! # Overload
//! Requests being served (held requests included) are counted until their body is handed to the
//! connection; one client's share is capped first ([`ClientAddr`], `admission.rs`). Above a threshold the origin
//! answers 503 with `Retry-After` and `max-age=1`. Thresholds by priority: DVR segments (older
//! than the clock's live edge by more than `live_edge_segments`) and VOD media are refused first
//! (`low_priority_max_in_flight`); live-edge segments of a declared ladder are refused top rung
//! first, between the two thresholds ([`ChannelPublisher::set_rendition_order`]); manifests,
//! init segments and undeclared renditions (audio) last (`max_in_flight`).

mod admission;
mod clock;
mod http;
pub mod ingest;
mod live;
mod object;
mod rebase;
mod store;
mod vod;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

pub use admission::{load, ClientAddr, Load};
pub use clock::iso8601_millis;
pub use ingest::{same_secret, IngestConfig, IngestPublisher};

use admission::{Admission, InFlight, Priority, Refused};
pub use store::{ChannelPublisher, ChannelTiming};

use store::{Channel, Tagger};

/// Origin settings. Every field has a default ([`OriginConfig::default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginConfig {
    /// Folder of finished VOD outputs served under `/vod/`.
    pub vod_root: Option<PathBuf>,
    /// Object storage holding VOD outputs as `{name}/…`, read for what `vod_root` lacks
    /// (without either, `/vod/` is all 404), and live archives as `live/{channel}/…`, served
    /// under `/live/` for channels that do not run here.
    pub store: Option<crate::objects::Objects>,
    /// Requests in flight above which even manifests and live-edge segments get 503.
    pub max_in_flight: usize,
    /// Requests in flight above which DVR segments and VOD media get 503; `None`: half of
    /// `max_in_flight`. Never above `max_in_flight`.
    pub low_priority_max_in_flight: Option<usize>,
    /// Requests one client (an IP address, an IPv6 /64) may have in flight; `None`: an eighth
    /// of `max_in_flight`, at least 64. Behind a CDN or a proxy every request comes from a few
    /// addresses: raise it there.
    pub max_in_flight_per_client: Option<usize>,
    /// Segments this close to the clock's live edge count as live, older ones as DVR.
    pub live_edge_segments: u64,
    /// `Retry-After` on a 503 (whole seconds, at least 1).
    pub retry_after: Duration,
    /// Cache lifetime of VOD manifests.
    pub vod_manifest_max_age: Duration,
    /// Cache lifetime of VOD init and media segments.
    pub vod_media_max_age: Duration,
    /// HLS players (substrings of their `User-Agent`) that count live media time from the
    /// first segment they load: their live playlists are redirected to a session timeline
    /// (`rebase.rs`). Empty: none.
    pub rebase_user_agents: Vec<String>,
    /// Publishers that may push live channels to `/ingest/` (none: the routes answer 404).
    pub ingest: IngestConfig,
}

impl Default for OriginConfig {
    fn default() -> Self {
        OriginConfig {
            vod_root: None,
            store: None,
            max_in_flight: 4096,
            low_priority_max_in_flight: None,
            max_in_flight_per_client: None,
            live_edge_segments: 3,
            retry_after: Duration::from_secs(2),
            vod_manifest_max_age: Duration::from_secs(300),
            vod_media_max_age: Duration::from_secs(86_400),
            rebase_user_agents: default_rebase_user_agents(),
            ingest: IngestConfig::default(),
        }
    }
}

/// GStreamer's `hlsdemux` (1.22's `playbin`; `hlsdemux2` plays either timeline).
pub fn default_rebase_user_agents() -> Vec<String> {
    vec!["GStreamer".to_owned()]
}

/// The origin: a cheap, cloneable handle (`Arc` inside) shared by the router and the pipeline.
#[derive(Clone)]
pub struct Origin {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: OriginConfig,
    channels: RwLock<HashMap<String, Arc<Channel>>>,
    tagger: Arc<Tagger>,
    admission: Arc<Admission>,
    vod_cache: vod::VodCache,
    ingest: ingest::Registry,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Origin")
            .field("cfg", &self.inner.cfg)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl Origin {
    pub fn new(cfg: OriginConfig) -> Origin {
        let admission = Arc::new(Admission::new(
            cfg.max_in_flight,
            cfg.low_priority_max_in_flight,
            cfg.max_in_flight_per_client,
            cfg.retry_after,
        ));
        Origin {
            inner: Arc::new(Inner {
                cfg,
                channels: RwLock::new(HashMap::new()),
                tagger: Arc::new(Tagger::new()),
                admission,
                vod_cache: vod::VodCache::default(),
                ingest: ingest::Registry::default(),
            }),
        }
    }

    pub fn config(&self) -> &OriginConfig {
        &self.inner.cfg
    }

    pub(crate) fn vod_cache(&self) -> &vod::VodCache {
        &self.inner.vod_cache
    }

    /// A file an ingest publisher stored as it is (pass-through channels).
    pub(crate) fn ingested_file(&self, channel: &str, path: &str) -> Option<Arc<object::Object>> {
        self.inner.ingest.file(self, channel, path)
    }

    /// Every route (`/live/`, `/vod/`, `/time`, `/healthz`), with CORS on every response.
    pub fn router(&self) -> Router {
        // The ingest routes exist only where publishers are configured.
        let ingest = if self.config().ingest.publishers.is_empty() {
            Router::new()
        } else {
            ingest::routes()
        };
        Router::new()
            .route("/time", get(time).options(preflight))
            .route("/healthz", get(healthz).options(preflight))
            .route("/live/{channel}/{file}", get(live::top).options(preflight))
            .route(
                "/live/{channel}/{rendition}/{file}",
                get(live::rendition).options(preflight),
            )
            .route("/vod/{name}/{file}", get(vod::top).options(preflight))
            .route(
                "/vod/{name}/{rendition}/{file}",
                get(vod::rendition).options(preflight),
            )
            .merge(ingest)
            .fallback(|| async { http::not_found(1) })
            .with_state(self.clone())
    }

    /// Creates channel `name` (a URL folder: ASCII letters, digits, `-`, `_`, `.`) and returns
    /// its publisher. An existing channel of that name is replaced: its held requests get 404
    /// and its old publishers no longer publish anything.
    ///
    /// # Panics
    /// If `name` is not a valid folder name or `timing.segment_duration` is zero: both are
    /// programming errors in the caller.
    pub fn add_channel(&self, name: &str, timing: ChannelTiming) -> ChannelPublisher {
        assert!(store::valid_name(name), "invalid channel name {name:?}");
        assert!(
            !timing.segment_duration.is_zero(),
            "segment duration must be positive"
        );
        let channel = Arc::new(Channel::new(name, timing, self.inner.tagger.clone()));
        let old = self
            .inner
            .channels
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), channel.clone());
        if let Some(old) = old {
            old.close();
        }
        ChannelPublisher { channel }
    }

    /// Removes channel `name`: its URLs become 404 and its held requests are answered 404.
    pub fn remove_channel(&self, name: &str) {
        let old = self
            .inner
            .channels
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if let Some(old) = old {
            old.close();
        }
    }

    /// Names of the live channels, sorted.
    pub fn channels(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .channels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// Channel `name` has published its master playlist (it is on the air).
    pub fn channel_has_segments(&self, name: &str) -> bool {
        self.channel(name)
            .is_some_and(|c| c.manifest("master.m3u8").is_some())
    }

    /// Requests being served right now (held requests included).
    pub fn in_flight(&self) -> usize {
        self.inner.admission.in_flight()
    }

    /// Requests refused with 503 since start.
    pub fn shed_count(&self) -> u64 {
        self.inner.admission.shed_count()
    }

    pub(crate) fn channel(&self, name: &str) -> Option<Arc<Channel>> {
        self.inner
            .channels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Counts a request in, or refuses it with 503 (the rules are in [`admission`]).
    pub(crate) fn admit(
        &self,
        priority: Priority,
        client: Option<ClientAddr>,
    ) -> Result<InFlight, Refused> {
        self.inner.admission.admit(priority, client)
    }
}

async fn preflight() -> Response {
    http::preflight()
}

async fn time() -> Response {
    let mut res = Response::new(axum::body::Body::from(iso8601_millis(SystemTime::now())));
    let h = res.headers_mut();
    http::add_cors(h);
    h.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    res
}

async fn healthz() -> Response {
    http::text(StatusCode::OK, "ok\n", HeaderValue::from_static("no-store"))
}
