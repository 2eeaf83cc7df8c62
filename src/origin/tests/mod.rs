//! The origin over real HTTP, one file per concern (live edge, HTTP semantics, overload, VOD,
//! random requests): the router served on 127.0.0.1:0, requests from reqwest or a raw
//! TCP stream. Time-dependent rules use a channel epoch placed relative to now, with margins of
//! hundreds of milliseconds, and assert on status and headers, never on durations.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

mod http;
mod live;
mod overload;
mod random;
mod vod;

pub(super) const D1: Duration = Duration::from_secs(1);

pub(super) async fn start(origin: &Origin) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = origin.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

pub(super) fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Timing where segment `number` is due `due_in_ms` from now (negative: already due).
pub(super) fn timing(number: u64, due_in_ms: i64, d: Duration, dvr: Duration) -> ChannelTiming {
    let now = SystemTime::now();
    let span = d * (number as u32 + 1);
    let due = if due_in_ms >= 0 {
        now + Duration::from_millis(due_in_ms as u64)
    } else {
        now - Duration::from_millis((-due_in_ms) as u64)
    };
    ChannelTiming {
        segment_duration: d,
        epoch: due - span,
        dvr_window: dvr,
    }
}

/// A body whose every byte depends on `tag` and position, so a mix-up or a torn body shows.
pub(super) fn body(tag: u8, len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| tag.wrapping_mul(31).wrapping_add(i as u8))
            .collect::<Vec<u8>>(),
    )
}

pub(super) fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .unwrap()
}

pub(super) async fn get(url: &str) -> reqwest::Response {
    client().get(url).send().await.unwrap()
}

/// Sends `target` verbatim (no client-side URL normalisation); returns the status code.
pub(super) async fn raw_status(base: &str, target: &str) -> u16 {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    let status = text.split_whitespace().nth(1).expect("a status line");
    status.parse().unwrap()
}

/// Waits (bounded) until the origin counts `n` requests in flight.
pub(super) async fn wait_in_flight(origin: &Origin, n: usize) {
    for _ in 0..2000 {
        if origin.in_flight() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("in flight: {} (wanted {n})", origin.in_flight());
}

pub(super) fn live_channel(origin: &Origin, name: &str, t: ChannelTiming) -> ChannelPublisher {
    let p = origin.add_channel(name, t);
    p.publish_manifest("master.m3u8", Bytes::from_static(b"#EXTM3U\n"));
    p.publish_manifest("manifest.mpd", Bytes::from_static(b"<MPD/>"));
    p.publish_manifest("720p/index.m3u8", Bytes::from_static(b"#EXTM3U\n#720p\n"));
    p.publish_init("720p", Bytes::from_static(b"ftyp-moov"));
    p
}

/// Sends `target` verbatim with an optional extra header line; returns status and body.
pub(super) async fn raw_response(base: &str, target: &str, extra: &str) -> (u16, Vec<u8>) {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nHost: origin\r\n{extra}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(out.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&out[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, out[split..].to_vec())
}
