//! The files of a pass-through channel (FFmpeg's `dash` and `hls` muxers): kept as sent, the
//! oldest media files evicted first past a count or a size, manifests and inits kept.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::origin::object::Object;

/// Files a pass-through channel keeps at most (its publisher deletes old ones itself; this
/// bounds one that does not).
const MAX_FILES: usize = 2000;
/// Bytes a pass-through channel keeps at most.
const MAX_BYTES: u64 = 1 << 30;

#[derive(Default)]
pub(super) struct PassThrough {
    files: HashMap<String, Arc<Object>>,
    /// Paths, oldest first.
    order: VecDeque<String>,
    bytes: u64,
}

impl PassThrough {
    pub fn get(&self, path: &str) -> Option<Arc<Object>> {
        self.files.get(path).cloned()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there was such a file.
    pub fn remove(&mut self, path: &str) -> bool {
        let removed = self.files.remove(path);
        if let Some(o) = &removed {
            self.bytes -= o.body.len() as u64;
            self.order.retain(|p| p != path);
        }
        removed.is_some()
    }

    /// Stores (or replaces) `path`, then evicts the oldest media files past the limits.
    pub fn insert(&mut self, path: &str, object: Arc<Object>) {
        self.bytes += object.body.len() as u64;
        if let Some(old) = self.files.insert(path.to_owned(), object) {
            self.bytes -= old.body.len() as u64;
        } else {
            self.order.push_back(path.to_owned());
        }
        let mut kept = VecDeque::new();
        while self.files.len() > MAX_FILES || self.bytes > MAX_BYTES {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if is_manifest(&oldest) || oldest.contains("init") || oldest == path {
                kept.push_back(oldest);
                continue;
            }
            if let Some(o) = self.files.remove(&oldest) {
                self.bytes -= o.body.len() as u64;
            }
        }
        for p in kept.into_iter().rev() {
            self.order.push_front(p);
        }
    }
}

fn is_manifest(path: &str) -> bool {
    path.ends_with(".m3u8") || path.ends_with(".mpd")
}

/// A pass-through file's `Cache-Control`: manifests change in place; the muxer may rewrite a
/// segment under the same name too, so media files are cached for one segment.
pub(super) fn cache_control(path: &str, segment_duration: Duration) -> String {
    if is_manifest(path) {
        "public, max-age=0, no-cache".to_owned()
    } else {
        format!("public, max-age={}", segment_duration.as_secs().max(1))
    }
}
