//! A stored response body with the headers the origin serves it with, and the content types
//! and cache directives both the live store and the HTTP layer use.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderValue;
use bytes::Bytes;

pub(crate) const M3U8: &str = "application/vnd.apple.mpegurl";
pub(crate) const MPD: &str = "application/dash+xml";
/// Init and media segments alike: the one type every player, browser and CDN rule knows.
/// The origin does not know whether a folder holds audio or video, and MSE ignores the type.
pub(crate) const MP4: &str = "video/mp4";

/// Content type by file extension, `None` for files the origin never serves.
pub(crate) fn known_content_type(file: &str) -> Option<&'static str> {
    let ext = file.rsplit_once('.')?.1;
    match ext {
        "m3u8" => Some(M3U8),
        "mpd" => Some(MPD),
        "mp4" | "m4s" | "cmfv" | "cmfa" => Some(MP4),
        _ => None,
    }
}

pub(crate) fn content_type_for(file: &str) -> HeaderValue {
    HeaderValue::from_static(known_content_type(file).unwrap_or("application/octet-stream"))
}

pub(crate) fn cache_control_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("cache-control directives are ASCII")
}

/// One published resource, with every header that describes it prepared in advance.
#[derive(Debug)]
pub(crate) struct Object {
    pub body: Bytes,
    pub content_type: HeaderValue,
    pub etag: HeaderValue,
    pub last_modified: HeaderValue,
    /// Last-Modified in whole seconds since the Unix epoch, for `If-Modified-Since`.
    pub modified_secs: u64,
    pub cache_control: HeaderValue,
}

impl Object {
    pub fn new(
        body: Bytes,
        content_type: HeaderValue,
        etag: HeaderValue,
        modified: SystemTime,
        cache_control: HeaderValue,
    ) -> Object {
        let modified_secs = modified
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let last_modified = HeaderValue::from_str(&httpdate::fmt_http_date(
            UNIX_EPOCH + Duration::from_secs(modified_secs),
        ))
        .expect("an HTTP date is a valid header value");
        Object {
            body,
            content_type,
            etag,
            last_modified,
            modified_secs,
            cache_control,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_by_extension() {
        assert_eq!(known_content_type("master.m3u8"), Some(M3U8));
        assert_eq!(known_content_type("manifest.mpd"), Some(MPD));
        assert_eq!(known_content_type("init.mp4"), Some(MP4));
        assert_eq!(known_content_type("12.m4s"), Some(MP4));
        assert_eq!(known_content_type("passwd"), None);
        assert_eq!(known_content_type("x.sh"), None);
    }
}
