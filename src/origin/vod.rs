//! VOD routes: finished output folders under `OriginConfig::vod_root`, read-only.
//!
//! Path components are validated before any file-system call (no `..`, no separators, no
//! hidden files, known extensions only), so a request can only name
//! `{root}/{name}/{file}` or `{root}/{name}/{rendition}/{file}`. Small files are read, larger
//! ones memory-mapped; either way the body is served as `Bytes` without another copy. Small
//! files stay in memory after their first request ([`VodCache`]), so a hot segment or playlist
//! is served with no file-system call at all.
//!
//! With object storage (`OriginConfig::store`), what the folder lacks is read from the
//! store (`{name}/…`, as jobs upload it) and kept in the same cache for longer
//! ([`STORE_REVALIDATE`]): outputs in the store are written once, manifests last, so an origin
//! with no files of its own serves every job of a fleet.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use memmap2::Mmap;

use super::http::{not_found, serve, text};
use super::object::Object;
use super::object::{cache_control_value, known_content_type, M3U8, MPD};
use super::store::valid_name;
use super::{ClientAddr, Origin, Priority};
use crate::objects::LIVE_PREFIX;

/// Below this size a file is read into memory: cheaper than mapping and unmapping it.
const MAP_THRESHOLD: u64 = 256 * 1024;

/// A missing VOD file may appear when an output folder is finished: cache the 404 briefly.
const MISSING_MAX_AGE: u64 = 5;

/// How long a cached file is served before it is read again (an output replaced with
/// `--force` shows within this).
const REVALIDATE: Duration = Duration::from_secs(1);

/// Memory the cache may hold; past it the cache starts over.
const CACHE_BUDGET: usize = 64 << 20;

/// How long an object read from the store is served from memory before it is read again.
const STORE_REVALIDATE: Duration = Duration::from_secs(30);

/// Objects from the store above this size are served but not kept.
const STORE_CACHE_MAX_OBJECT: usize = 8 << 20;

/// Small VOD files (below [`MAP_THRESHOLD`]) recently served, by path.
#[derive(Default)]
pub(crate) struct VodCache {
    /// Each file with when it was last served, and the bytes held in all.
    entries: Mutex<(HashMap<PathBuf, Served>, usize)>,
}

type Served = (Arc<Object>, Instant);

impl VodCache {
    fn fresh(&self, path: &PathBuf, within: Duration) -> Option<Arc<Object>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .0
            .get(path)
            .filter(|(_, loaded)| loaded.elapsed() < within)
            .map(|(obj, _)| obj.clone())
    }

    fn insert(&self, path: PathBuf, obj: Arc<Object>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (map, bytes) = &mut *entries;
        if *bytes + obj.body.len() > CACHE_BUDGET {
            map.clear();
            *bytes = 0;
        }
        *bytes += obj.body.len();
        if let Some((old, _)) = map.insert(path, (obj, Instant::now())) {
            *bytes -= old.body.len();
        }
    }
}

/// `/vod/{name}/{file}`.
pub(crate) async fn top(
    State(origin): State<Origin>,
    Path((name, file)): Path<(String, String)>,
    client: Option<Extension<ClientAddr>>,
    req: HeaderMap,
) -> Response {
    let client = client.map(|Extension(c)| c);
    get(&origin, &[name.as_str(), file.as_str()], client, &req).await
}

/// `/vod/{name}/{rendition}/{file}`.
pub(crate) async fn rendition(
    State(origin): State<Origin>,
    Path((name, rendition, file)): Path<(String, String, String)>,
    client: Option<Extension<ClientAddr>>,
    req: HeaderMap,
) -> Response {
    let client = client.map(|Extension(c)| c);
    get(
        &origin,
        &[name.as_str(), rendition.as_str(), file.as_str()],
        client,
        &req,
    )
    .await
}

async fn get(
    origin: &Origin,
    parts: &[&str],
    client: Option<ClientAddr>,
    req: &HeaderMap,
) -> Response {
    let file = parts[parts.len() - 1];
    let Some(content_type) = known_content_type(file) else {
        return not_found(MISSING_MAX_AGE);
    };
    // Live archives share the store (`live/…`): served under /live/ only, with live lifetimes.
    if !parts.iter().all(|p| valid_name(p)) || parts[0] == LIVE_PREFIX {
        return not_found(MISSING_MAX_AGE);
    }
    let manifest = matches!(content_type, M3U8 | MPD);
    let cfg = origin.config();
    let cache = if manifest {
        cache_control_value(&format!(
            "public, max-age={}",
            cfg.vod_manifest_max_age.as_secs()
        ))
    } else {
        cache_control_value(&format!(
            "public, max-age={}, immutable",
            cfg.vod_media_max_age.as_secs()
        ))
    };
    let priority = if manifest {
        Priority::Essential
    } else {
        Priority::Low
    };
    let guard = match origin.admit(priority, client) {
        Ok(g) => g,
        Err(refused) => return refused.into_response(),
    };

    let content_type = HeaderValue::from_static(content_type);
    let relative = parts.join("/");
    let Some(root) = cfg.vod_root.clone() else {
        return from_store(
            origin,
            &relative,
            content_type,
            cache,
            STORE_REVALIDATE,
            req,
            guard,
        )
        .await;
    };
    let mut path: PathBuf = root;
    path.extend(parts);
    if let Some(obj) = origin.vod_cache().fresh(&path, REVALIDATE) {
        return serve(&obj, req, guard);
    }
    let key = path.clone();
    let type_for_store = content_type.clone();
    let cache_for_store = cache.clone();
    let loaded = tokio::task::spawn_blocking(move || load(path, content_type, cache)).await;
    match loaded {
        Ok(Ok(obj)) => {
            let obj = Arc::new(obj);
            if (obj.body.len() as u64) < MAP_THRESHOLD {
                origin.vod_cache().insert(key, obj.clone());
            }
            serve(&obj, req, guard)
        }
        Ok(Err(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::IsADirectory
                    | std::io::ErrorKind::NotADirectory
                    | std::io::ErrorKind::InvalidInput
            ) =>
        {
            from_store(
                origin,
                &relative,
                type_for_store,
                cache_for_store,
                STORE_REVALIDATE,
                req,
                guard,
            )
            .await
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, parts = ?parts, "VOD file could not be read");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error\n",
                HeaderValue::from_static("no-store"),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "VOD loader task failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error\n",
                HeaderValue::from_static("no-store"),
            )
        }
    }
}

/// The object at `relative` (checked names only) from the store, 404 without one or when it
/// has none; kept in memory and served from there for `revalidate`.
pub(crate) async fn from_store(
    origin: &Origin,
    relative: &str,
    content_type: HeaderValue,
    cache: HeaderValue,
    revalidate: Duration,
    req: &HeaderMap,
    guard: super::admission::InFlight,
) -> Response {
    let Some(store) = &origin.config().store else {
        return not_found(MISSING_MAX_AGE);
    };
    // A key no local path can be: local ones are absolute.
    let key = PathBuf::from(format!("store:{relative}"));
    if let Some(obj) = origin.vod_cache().fresh(&key, revalidate) {
        return serve(&obj, req, guard);
    }
    match store.get(relative).await {
        Ok(Some(stored)) => {
            // The store's tag when it gives one (the same on every origin), else like a file's.
            let etag = stored
                .etag
                .map(|t| {
                    if t.starts_with('"') || t.starts_with("W/") {
                        t
                    } else {
                        format!("\"{t}\"")
                    }
                })
                .and_then(|t| HeaderValue::from_str(&t).ok())
                .unwrap_or_else(|| file_etag(stored.modified, stored.body.len()));
            let obj = Arc::new(Object::new(
                stored.body,
                content_type,
                etag,
                stored.modified,
                cache,
            ));
            if obj.body.len() <= STORE_CACHE_MAX_OBJECT {
                origin.vod_cache().insert(key, obj.clone());
            }
            serve(&obj, req, guard)
        }
        // A live archive's next segment is written within the second; a VOD output when its
        // job ends.
        Ok(None) if relative.starts_with(&format!("{LIVE_PREFIX}/")) => not_found(1),
        Ok(None) => not_found(MISSING_MAX_AGE),
        Err(e) => {
            tracing::warn!(error = %e, "object could not be read from the store");
            text(
                StatusCode::BAD_GATEWAY,
                "object storage did not answer\n",
                HeaderValue::from_static("max-age=1"),
            )
        }
    }
}

/// Like nginx: modification time and length. Stable across restarts and across origins
/// serving the same copy.
fn file_etag(modified: std::time::SystemTime, len: usize) -> HeaderValue {
    let mtime = modified
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos();
    HeaderValue::from_str(&format!("\"{mtime:x}-{len:x}\""))
        .expect("hex digits are a valid header value")
}

fn load(path: PathBuf, content_type: HeaderValue, cache: HeaderValue) -> std::io::Result<Object> {
    let mut file = File::open(&path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::ErrorKind::InvalidInput.into());
    }
    let len = meta.len();
    let body = if len == 0 {
        Bytes::new()
    } else if len < MAP_THRESHOLD {
        let mut buf = Vec::with_capacity(len as usize);
        file.read_to_end(&mut buf)?;
        Bytes::from(buf)
    } else {
        // SAFETY: VOD folders are finished outputs, served read-only; nothing writes or
        // truncates a file while it is mapped (a truncation would fault the reader). The map
        // is owned by the `Bytes` and lives as long as any response body using it.
        let map = unsafe { Mmap::map(&file)? };
        Bytes::from_owner(map)
    };
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    let etag = file_etag(modified, body.len());
    Ok(Object::new(body, content_type, etag, modified, cache))
}
