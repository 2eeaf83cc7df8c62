//! The origin's series: requests by class (manifest, init, segment, other) and status, their
//! latency, the bytes sent, and, read at scrape time, the requests in flight and the live-edge
//! requests held for a segment not yet published.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// What an origin path asks for, or `None` for what is not media (the API, the console,
/// health checks: those are counted under `encore_http_*` only).
pub(super) fn class_of(path: &str) -> Option<&'static str> {
    if !(path.starts_with("/live/") || path.starts_with("/vod/")) {
        return None;
    }
    let file = path.rsplit('/').next().unwrap_or("");
    Some(if file.ends_with(".m3u8") || file.ends_with(".mpd") {
        "manifest"
    } else if file.starts_with("init") {
        "init"
    } else if [".m4s", ".mp4", ".ts", ".aac", ".vtt"]
        .iter()
        .any(|e| file.ends_with(e))
    {
        "segment"
    } else {
        "other"
    })
}

/// Counts the response and its latency (to the response head: a held live-edge request
/// counts its wait), and wraps the body so its bytes are counted as they are sent.
pub(super) fn record(class: &'static str, response: Response, took: Duration) -> Response {
    let status = response.status().as_u16().to_string();
    metrics::counter!("encore_origin_requests_total", "class" => class, "status" => status)
        .increment(1);
    metrics::histogram!("encore_origin_request_duration_seconds", "class" => class)
        .record(took.as_secs_f64());
    let sent = metrics::counter!("encore_origin_bytes_sent_total", "class" => class);
    response.map(|inner| Body::new(CountingBody { inner, sent }))
}

/// The origin's load now, over every origin in the process.
pub(super) fn sample() {
    let load = crate::origin::load();
    metrics::gauge!("encore_origin_in_flight").set(load.in_flight as f64);
    metrics::gauge!("encore_origin_held_requests").set(load.held as f64);
}

/// A response body that adds each data frame's length to a counter as it is handed on.
struct CountingBody {
    inner: Body,
    sent: metrics::Counter,
}

impl http_body::Body for CountingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.sent.increment(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::class_of;

    #[test]
    fn origin_paths_fall_into_their_classes() {
        assert_eq!(class_of("/live/news/master.m3u8"), Some("manifest"));
        assert_eq!(class_of("/live/news/720p/index.m3u8"), Some("manifest"));
        assert_eq!(class_of("/vod/01ab/manifest.mpd"), Some("manifest"));
        assert_eq!(class_of("/live/news/720p/init.mp4"), Some("init"));
        assert_eq!(class_of("/live/news/720p/1234.m4s"), Some("segment"));
        assert_eq!(class_of("/vod/01ab/audio/7.m4s"), Some("segment"));
        assert_eq!(class_of("/live/news/"), Some("other"));
        assert_eq!(class_of("/v1/jobs"), None);
        assert_eq!(class_of("/healthz"), None);
        assert_eq!(class_of("/"), None);
    }
}
