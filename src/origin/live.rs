//! Live routes: manifests, init segments, and media segments with the live-edge rules.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::admission::Held;
use super::http::{not_found, serve};
use super::object::{cache_control_value, known_content_type, Object, M3U8, MPD};
use super::rebase::{self, Session};
use super::store::valid_name;
use super::store::{parse_segment_name, Channel, Lookup};
use super::vod::from_store;
use super::{ClientAddr, Origin, Priority};
use crate::objects::LIVE_PREFIX;
use axum::http::HeaderValue;

/// The client's address, when the server set it.
type Client = Option<Extension<ClientAddr>>;
use crate::package::INIT_NAME;

/// A 404 for a segment that will never come (or not before the client gives up).
const GONE_MAX_AGE: u64 = 1;

/// `/live/{channel}/{file}`: the top-level manifests.
pub(crate) async fn top(
    State(origin): State<Origin>,
    Path((channel, file)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    uri: Uri,
    client: Client,
    req: HeaderMap,
) -> Response {
    let client = client.map(|Extension(c)| c);
    if let Some(obj) = origin.ingested_file(&channel, &file) {
        return serve_manifest(&origin, &obj, client, &req);
    }
    let Some(ch) = origin.channel(&channel) else {
        return archived(&origin, &channel, &[&file], client, &req).await;
    };
    let Some(obj) = ch.manifest(&file) else {
        return not_found(1);
    };
    if obj.content_type == M3U8 {
        match rebase::session(query.as_deref(), &req, &origin.config().rebase_user_agents) {
            Session::Pinned(first) => {
                return serve_manifest(&origin, &rebase::playlist(&obj, first), client, &req)
            }
            Session::Wanted => {
                // Where a player loading the media playlists now starts counting.
                let listed = ch.media_playlists();
                let first = listed.iter().filter_map(|m| rebase::first_segment(&m.body));
                if let Some(first) = first.min() {
                    if let Some(found) = rebase::redirect(uri.path(), first) {
                        return found;
                    }
                }
            }
            Session::None => {}
        }
    }
    serve_manifest(&origin, &obj, client, &req)
}

/// A channel that does not run here: its archive in object storage (`archive = true` on the
/// node that carries it), when this origin has a store. Manifests are read again every half
/// second and may be cached for a second; segments are written once.
async fn archived(
    origin: &Origin,
    channel: &str,
    parts: &[&str],
    client: Option<ClientAddr>,
    req: &HeaderMap,
) -> Response {
    let file = parts[parts.len() - 1];
    let content_type = match known_content_type(file) {
        Some(t) if origin.config().store.is_some() => t,
        _ => return not_found(GONE_MAX_AGE),
    };
    if !valid_name(channel) || !parts.iter().all(|p| valid_name(p)) {
        return not_found(GONE_MAX_AGE);
    }
    let (priority, cache, revalidate) = if matches!(content_type, M3U8 | MPD) {
        (
            Priority::Essential,
            "public, max-age=1",
            Duration::from_millis(500),
        )
    } else if file == INIT_NAME {
        (
            Priority::Essential,
            "public, max-age=2",
            Duration::from_secs(2),
        )
    } else {
        (Priority::Low, "public, max-age=60", Duration::from_secs(30))
    };
    let guard = match origin.admit(priority, client) {
        Ok(g) => g,
        Err(refused) => return refused.into_response(),
    };
    let relative = format!("{LIVE_PREFIX}/{channel}/{}", parts.join("/"));
    from_store(
        origin,
        &relative,
        HeaderValue::from_static(content_type),
        cache_control_value(cache),
        revalidate,
        req,
        guard,
    )
    .await
}

fn serve_manifest(
    origin: &Origin,
    obj: &Object,
    client: Option<ClientAddr>,
    req: &HeaderMap,
) -> Response {
    match origin.admit(Priority::Essential, client) {
        Ok(guard) => serve(obj, req, guard),
        Err(refused) => refused.into_response(),
    }
}

/// `/live/{channel}/{rendition}/{file}`: init segment, media playlist, media segments.
pub(crate) async fn rendition(
    State(origin): State<Origin>,
    Path((channel, rendition, file)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    uri: Uri,
    client: Client,
    req: HeaderMap,
) -> Response {
    let client = client.map(|Extension(c)| c);
    if let Some(obj) = origin.ingested_file(&channel, &format!("{rendition}/{file}")) {
        return serve_manifest(&origin, &obj, client, &req);
    }
    let Some(ch) = origin.channel(&channel) else {
        return archived(&origin, &channel, &[&rendition, &file], client, &req).await;
    };
    let session = rebase::session(query.as_deref(), &req, &origin.config().rebase_user_agents);
    if let Some(number) = parse_segment_name(&file) {
        return segment(&origin, &ch, &rendition, number, client, &req, session).await;
    }
    let obj = if file == INIT_NAME {
        ch.init(&rendition)
    } else if matches!(
        known_content_type(&file),
        Some(super::object::M3U8 | super::object::MPD)
    ) {
        ch.rendition_manifest(&rendition, &file)
    } else {
        None
    };
    let Some(obj) = obj else {
        return not_found(1);
    };
    if obj.content_type == M3U8 {
        match session {
            Session::Pinned(first) => {
                return serve_manifest(&origin, &rebase::playlist(&obj, first), client, &req)
            }
            Session::Wanted => {
                if let Some(first) = rebase::first_segment(&obj.body) {
                    if let Some(found) = rebase::redirect(uri.path(), first) {
                        return found;
                    }
                }
            }
            Session::None => {}
        }
    }
    serve_manifest(&origin, &obj, client, &req)
}

async fn segment(
    origin: &Origin,
    ch: &Arc<Channel>,
    rendition: &str,
    number: u64,
    client: Option<ClientAddr>,
    req: &HeaderMap,
    session: Session,
) -> Response {
    let timing = ch.timing;
    let now = SystemTime::now();
    let priority = priority(origin, ch, rendition, number, now);
    // A session's copy (`rebase.rs`); the stored one when it cannot be made.
    let session_copy = |obj: Arc<Object>| -> Arc<Object> {
        let Session::Pinned(first) = session else {
            return obj;
        };
        let rebased = ch
            .init(rendition)
            .and_then(|init| rebase::segment(&obj, &init.body, &timing, first));
        rebased.map_or(obj, Arc::new)
    };

    match ch.segment(rendition, number) {
        Lookup::Found(obj) => {
            return match origin.admit(priority, client) {
                Ok(guard) => serve(&session_copy(obj), req, guard),
                Err(refused) => refused.into_response(),
            }
        }
        Lookup::Evicted | Lookup::UnknownRendition => return not_found(GONE_MAX_AGE),
        Lookup::Missing => {}
    }
    if ch.finished() {
        return not_found(GONE_MAX_AGE);
    }
    let d = timing.segment_duration;
    let Some(due) = timing.due(number) else {
        return not_found(86_400);
    };
    if let Ok(ahead) = due.duration_since(now) {
        if ahead > d {
            // Too far ahead to hold: let a cache keep the 404 until the segment is due.
            return not_found(ahead.as_secs());
        }
    }
    let Some(deadline) = due.checked_add(d) else {
        return not_found(GONE_MAX_AGE);
    };
    if now >= deadline {
        // The encoder missed it.
        return not_found(GONE_MAX_AGE);
    }

    // Held: due within one D, or late. Counted as in flight while it waits.
    let guard = match origin.admit(priority, client) {
        Ok(g) => g,
        Err(refused) => return refused.into_response(),
    };
    let _held = Held::new();
    // Subscribe before looking again: a publish between the look and the wait still wakes us.
    let mut changed = ch.subscribe();
    loop {
        match ch.segment(rendition, number) {
            Lookup::Found(obj) => return serve(&session_copy(obj), req, guard),
            Lookup::Evicted | Lookup::UnknownRendition => return not_found(GONE_MAX_AGE),
            Lookup::Missing => {}
        }
        if ch.finished() {
            return not_found(GONE_MAX_AGE);
        }
        let Ok(left) = deadline.duration_since(SystemTime::now()) else {
            return not_found(GONE_MAX_AGE);
        };
        tokio::select! {
            r = changed.changed() => {
                if r.is_err() {
                    return not_found(GONE_MAX_AGE);
                }
            }
            // Wakes a little after the deadline so the last look above sees it passed.
            _ = tokio::time::sleep(left + Duration::from_millis(1)) => {}
        }
    }
}

/// Live edge or DVR, by the clock (not by what was published: a stalled encoder must not turn
/// live viewers into low-priority ones).
fn priority(
    origin: &Origin,
    ch: &Channel,
    rendition: &str,
    number: u64,
    now: SystemTime,
) -> Priority {
    let edge = ch.timing.edge_at(now);
    let behind = edge.map_or(0, |e| e.saturating_sub(number));
    if behind > origin.config().live_edge_segments {
        return Priority::Low;
    }
    match ch.shed_rank(rendition) {
        Some((rank, count)) => Priority::Rung { rank, count },
        None => Priority::Essential,
    }
}
