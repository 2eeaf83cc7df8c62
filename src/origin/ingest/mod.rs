//! CMAF ingest (DASH-IF Live Media Ingest, interface 1): publishers `PUT` (or `POST`) a live
//! channel's init segments, media segments and manifests to `/ingest/{channel}/…`, and the
//! origin serves the channel under `/live/{channel}/…` (docs/origin.md §15).
//!
//! Each publisher has a bearer token in the configuration. Encore nodes publish with
//! `publish_to`; FFmpeg's `dash` and `hls` muxers with `-method PUT` and the token in
//! `-headers` / `-http_opts`. Two Encore nodes may publish the same channel: per segment
//! number the origin serves the first copy that passes its checks ([`channel`]).
//!
//! Routes (every one needs a publisher's token):
//! ```text
//! PUT|POST /ingest/{channel}/{file}, /ingest/{channel}/{folder}/{file}   201, 202 held, 409, 422
//! DELETE   the same paths (pass-through files)                           204, 404
//! GET      /ingest/{channel}                                             the channel's state (JSON)
//! ```

mod channel;
mod inspect;
mod judge;
mod pass_through;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::Router;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::store::valid_name;
use super::{ChannelTiming, Origin};
use channel::{IngestChannel, Outcome};

/// The largest file a publisher may send: a 4K segment of 10 s at 40 Mb/s, with room.
const MAX_FILE_BYTES: usize = 64 << 20;
/// How long a publisher may take to send one file's body (a large segment over a slow
/// uplink); a client that trickles bytes is cut off after it.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Who may publish, and the timing of what they publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    pub publishers: Vec<IngestPublisher>,
    /// D of the channels published here (they must agree).
    pub segment_duration: Duration,
    /// How long the origin waits for a better copy when the first copies of a segment fail a
    /// check; `None`: D/2.
    pub wait: Option<Duration>,
    pub dvr_window: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            publishers: Vec::new(),
            segment_duration: Duration::from_secs(2),
            wait: None,
            dvr_window: Duration::from_secs(300),
        }
    }
}

/// One publisher and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct IngestPublisher {
    /// Its name in counters and the channel's state (`a`, `paris-1`).
    pub name: String,
    pub token: String,
    /// Channels it may publish; empty: any.
    pub channels: Vec<String>,
}

impl std::fmt::Debug for IngestPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestPublisher")
            .field("name", &self.name)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

/// The ingested channels of one origin.
#[derive(Default)]
pub(crate) struct Registry {
    channels: Mutex<HashMap<String, Arc<IngestChannel>>>,
}

impl Registry {
    /// The channel's pass-through file at `path`, if `channel` is ingested in that form and
    /// is still the store's channel of that name (not one a later channel replaced).
    pub fn file(
        &self,
        origin: &Origin,
        channel: &str,
        path: &str,
    ) -> Option<Arc<super::object::Object>> {
        let ch = self.lock().get(channel).cloned()?;
        let current = origin
            .channel(channel)
            .is_some_and(|s| Arc::ptr_eq(&s, &ch.publisher().channel));
        current.then(|| ch.file(path)).flatten()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<IngestChannel>>> {
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The ingest routes. Bodies are read only after the token and the path are checked.
pub(crate) fn routes() -> Router<Origin> {
    Router::new()
        .route(
            "/ingest/{channel}/{*path}",
            put(receive).post(receive).delete(remove),
        )
        .route("/ingest/{channel}", axum::routing::get(status))
}

/// Compares secrets by their digests, so the time taken says nothing about where they differ
/// (nor about the expected one's length).
pub fn same_secret(given: &str, expected: &str) -> bool {
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The publisher whose token the request carries: `Authorization: Bearer TOKEN`, or Basic
/// with the token as password (FFmpeg's `http://NAME:TOKEN@host/…` with `auth_type=basic`).
fn publisher<'a>(origin: &'a Origin, req: &HeaderMap) -> Option<&'a IngestPublisher> {
    let value = req.get(header::AUTHORIZATION)?.to_str().ok()?;
    // The scheme's name is case-insensitive (RFC 9110, 11.1).
    let (scheme, credentials) = value.trim().split_once(' ')?;
    let given = if scheme.eq_ignore_ascii_case("bearer") {
        credentials.trim().to_owned()
    } else {
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let encoded = credentials;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        decoded.split_once(':')?.1.to_owned()
    };
    // Every token is compared, so the time taken does not tell which one nearly matched.
    origin
        .config()
        .ingest
        .publishers
        .iter()
        .fold(None, |found, p| {
            if same_secret(&given, &p.token) && found.is_none() {
                Some(p)
            } else {
                found
            }
        })
}

fn answer(status: StatusCode, message: impl Into<String>) -> Response {
    let mut message = message.into();
    message.push('\n');
    let mut res = (status, message).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"encore ingest\""),
        );
    }
    res
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Box<Response> {
    Box::new(answer(status, message))
}

/// What a request may do to the channel it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Read or delete: the channel must exist.
    Existing,
    /// A manifest: opens the channel if needed.
    Manifest,
    /// An init or media segment: opens the channel, or a new one in place of one that ended
    /// (the next event under the same name).
    Media,
}

/// Checks the token and the channel's name, and finds (or opens) the channel.
fn admit(
    origin: &Origin,
    req: &HeaderMap,
    channel: &str,
    access: Access,
) -> Result<(Arc<IngestChannel>, String), Box<Response>> {
    if origin.config().ingest.publishers.is_empty() {
        return Err(refuse(StatusCode::NOT_FOUND, "this origin takes no ingest"));
    }
    let Some(publisher) = publisher(origin, req) else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "a publisher's token is required (Authorization: Bearer …)",
        ));
    };
    if !publisher.channels.is_empty() && !publisher.channels.iter().any(|c| c == channel) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            format!("publisher {:?} may not publish {channel:?}", publisher.name),
        ));
    }
    if !valid_name(channel) {
        return Err(refuse(StatusCode::BAD_REQUEST, "invalid channel name"));
    }
    let name = publisher.name.clone();
    let cfg = &origin.config().ingest;
    let mut channels = origin.inner.ingest.lock();
    // Channels no publisher has sent anything to for a DVR window are gone.
    let idle_limit = cfg.dvr_window + cfg.segment_duration * 2;
    channels.retain(|name, c| {
        let idle = c.idle_for() > idle_limit;
        if idle
            && origin
                .channel(name)
                .is_some_and(|s| Arc::ptr_eq(&s, &c.publisher().channel))
        {
            origin.remove_channel(name);
            tracing::info!(channel = %name, "ingest channel closed: no publisher for a DVR window");
        }
        !idle
    });
    // The store's channel of that name must be this ingest's own (not a channel this node
    // encodes, nor one a restart replaced).
    let ours = |c: &IngestChannel| {
        origin
            .channel(channel)
            .is_some_and(|s| Arc::ptr_eq(&s, &c.publisher().channel))
    };
    // Set when the store's channel of that name is this ingest's own ended one.
    let mut replacing_ended = false;
    if let Some(c) = channels.get(channel) {
        if ours(c) && !(access == Access::Media && c.ended()) {
            c.touch();
            return Ok((c.clone(), name));
        }
        replacing_ended = ours(c);
        if replacing_ended {
            tracing::info!(channel, "ingest channel started again after its end");
        }
        channels.remove(channel);
    }
    if origin.channel(channel).is_some() && !replacing_ended {
        return Err(refuse(
            StatusCode::CONFLICT,
            format!("channel {channel:?} is encoded on this node"),
        ));
    }
    if access == Access::Existing {
        return Err(refuse(StatusCode::NOT_FOUND, "no such channel"));
    }
    let timing = ChannelTiming {
        segment_duration: cfg.segment_duration,
        epoch: SystemTime::UNIX_EPOCH,
        dvr_window: cfg.dvr_window,
    };
    let store = origin.add_channel(channel, timing);
    let wait = cfg.wait.unwrap_or(cfg.segment_duration / 2);
    let c = Arc::new(IngestChannel::new(channel, store, cfg.dvr_window, wait));
    channels.insert(channel.to_owned(), c.clone());
    tracing::info!(channel, publisher = %name, "ingest channel opened");
    Ok((c, name))
}

fn access_of(path: &str) -> Access {
    if path.ends_with(".m3u8") || path.ends_with(".mpd") {
        Access::Manifest
    } else {
        Access::Media
    }
}

/// One or two checked names.
fn checked_path(path: &str) -> Option<&str> {
    let parts: Vec<&str> = path.split('/').collect();
    (parts.len() <= 2 && parts.iter().all(|p| valid_name(p))).then_some(path)
}

async fn receive(
    State(origin): State<Origin>,
    Path((channel, path)): Path<(String, String)>,
    req: Request,
) -> Response {
    let Some(path) = checked_path(&path) else {
        return answer(StatusCode::BAD_REQUEST, "invalid path");
    };
    if super::object::known_content_type(path).is_none() {
        return answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{path}: not a manifest or CMAF file"),
        );
    }
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let (ch, publisher) = match admit(&origin, &parts.headers, &channel, access_of(path)) {
        Ok(c) => c,
        Err(res) => return *res,
    };
    if declared.is_some_and(|n| n > MAX_FILE_BYTES as u64) {
        return too_large(path);
    }
    // Only a publisher's body is read, within a size and a time.
    let body = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_FILE_BYTES))
        .await
    {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            // A chunked body past the limit, or one the client broke off.
            if e.to_string().contains("length limit") {
                return too_large(path);
            }
            return answer(
                StatusCode::BAD_REQUEST,
                format!("{path}: the body could not be read: {e}"),
            );
        }
        Err(_) => {
            return answer(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "{path}: the body took longer than {}s",
                    BODY_TIMEOUT.as_secs()
                ),
            )
        }
    };
    match ch.put(&publisher, path, body) {
        Outcome::Accepted => answer(StatusCode::CREATED, "stored"),
        Outcome::Held(at) => {
            let (rendition, number) = path
                .split_once('/')
                .and_then(|(r, f)| super::store::parse_segment_name(f).map(|n| (r.to_owned(), n)))
                .expect("only segments are held");
            tokio::spawn(async move {
                tokio::time::sleep(at.saturating_duration_since(Instant::now())).await;
                ch.decide(&rendition, number);
            });
            answer(StatusCode::ACCEPTED, "held for a better copy")
        }
        Outcome::Conflict(reason) => answer(StatusCode::CONFLICT, reason),
        Outcome::Refused(reason) => answer(StatusCode::UNPROCESSABLE_ENTITY, reason),
    }
}

fn too_large(path: &str) -> Response {
    answer(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("{path}: larger than {} MiB", MAX_FILE_BYTES >> 20),
    )
}

async fn remove(
    State(origin): State<Origin>,
    Path((channel, path)): Path<(String, String)>,
    req: HeaderMap,
) -> Response {
    let (ch, _) = match admit(&origin, &req, &channel, Access::Existing) {
        Ok(c) => c,
        Err(res) => return *res,
    };
    if ch.delete(&path) {
        answer(StatusCode::NO_CONTENT, "")
    } else {
        answer(StatusCode::NOT_FOUND, "no such file")
    }
}

async fn status(
    State(origin): State<Origin>,
    Path(channel): Path<String>,
    req: HeaderMap,
) -> Response {
    match admit(&origin, &req, &channel, Access::Existing) {
        Ok((ch, _)) => {
            let mut res = axum::Json(ch.status()).into_response();
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(res) => *res,
    }
}
