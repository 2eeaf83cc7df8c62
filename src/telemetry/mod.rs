//! `/metrics` in the Prometheus text format: HTTP requests by route and status with a latency
//! histogram, the origin's requests by class, bytes and load (origin.rs), jobs by state and
//! the queue (read from the store at scrape time, so a fleet's nodes agree), job durations, the real-time ratio of running work, and capacity.
//!
//! One recorder per process (the `metrics` facade, which the job service also records to:
//! `encore_job_duration_seconds{outcome}`, `encore_job_speed_ratio{job}`); every name starts
//! with `encore_`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

use crate::jobs::Service;

pub mod cmcd;
mod origin;

/// Request latency buckets, seconds: a segment from memory takes well under a millisecond, a
/// held live-edge request up to a segment duration.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];
/// Segment publish latency buckets, seconds: a segment is published within milliseconds of
/// its last frame's instant plus the output delay; more than a segment duration is trouble.
const PUBLISH_BUCKETS: [f64; 10] = [0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0];
/// Job duration buckets, seconds.
const JOB_BUCKETS: [f64; 10] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder (once per process).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("encore_http_request_duration_seconds".into()),
                &LATENCY_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("encore_origin_request_duration_seconds".into()),
                    &LATENCY_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("encore_job_duration_seconds".into()),
                    &JOB_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("encore_segment_publish_latency_seconds".into()),
                    &PUBLISH_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("encore_qoe_buffer_length_seconds".into()),
                    &cmcd::BUFFER_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_kbps".into()), &cmcd::KBPS_BUCKETS)
            })
            .expect("bucket lists are not empty")
            // A finished job's speed gauge goes away on its own.
            .idle_timeout(MetricKindMask::GAUGE, Some(Duration::from_secs(60)))
            .install_recorder()
            .expect("the only recorder in the process")
    })
}

/// Counts and times every routed request, labelled with its route template (not the URL:
/// channel and job names stay out of the label values).
pub async fn track_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().as_str().to_string();
    let player = cmcd::of_request(request.uri().query(), request.headers());
    let media_path = request.uri().path().to_string();
    let started = Instant::now();
    let mut response = next.run(request).await;
    if let Some(class) = origin::class_of(&media_path) {
        response = origin::record(class, response, started.elapsed());
    }
    if let Some(player) = player {
        let served = response.status().is_success();
        cmcd::record(
            player,
            served.then(|| rendition_of(&media_path)).flatten(),
            served.then(|| channel_of(&media_path)).flatten(),
        );
    }
    let status = response.status().as_u16().to_string();
    metrics::counter!("encore_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("encore_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A live channel as `/metrics` shows it, read at scrape time.
pub struct ChannelSample<'a> {
    pub name: &'a str,
    /// starting, on_air, on_slate, stopped or failed.
    pub state: &'a str,
    pub restarts: u64,
    /// Each rung: its rendition id, real-time ratio and frames encoded.
    pub rungs: Vec<(&'a str, Option<f64>, u64)>,
}

/// The live channels' state: on air or on slate, restarts, viewers (CMCD sessions active in
/// the last minute), and each rung's real-time ratio and frames encoded.
pub fn record_channels(channels: &[ChannelSample]) {
    cmcd::sessions().counts(); // forgets sessions gone quiet
    let viewers = cmcd::sessions().viewers_by_channel();
    for c in channels {
        let channel = c.name.to_string();
        metrics::gauge!("encore_channel_viewers", "channel" => channel.clone())
            .set(viewers.get(c.name).copied().unwrap_or(0) as f64);
        metrics::gauge!("encore_channel_on_air", "channel" => channel.clone())
            .set(f64::from(u8::from(c.state == "on_air")));
        metrics::gauge!("encore_channel_on_slate", "channel" => channel.clone())
            .set(f64::from(u8::from(c.state == "on_slate")));
        metrics::counter!("encore_channel_restarts_total", "channel" => channel.clone())
            .absolute(c.restarts);
        for &(rendition, ratio, frames) in &c.rungs {
            let labels = [
                ("channel", channel.clone()),
                ("rendition", rendition.to_string()),
            ];
            if let Some(ratio) = ratio {
                metrics::gauge!("encore_rung_realtime_ratio", &labels).set(ratio);
            }
            metrics::counter!("encore_rung_frames_encoded_total", &labels).absolute(frames);
        }
    }
}

/// The live channel of a media path (`/live/news/720p/5.m4s` → `news`).
fn channel_of(path: &str) -> Option<&str> {
    path.strip_prefix("/live/")?
        .split('/')
        .next()
        .filter(|c| !c.is_empty())
}

/// The rendition folder of a media path (`/live/news/720p/5.m4s` → `720p`).
fn rendition_of(path: &str) -> Option<&str> {
    let mut parts = path.rsplit('/');
    let file = parts.next()?;
    let folder = parts.next()?;
    let media = [".m4s", ".mp4", ".m3u8"].iter().any(|e| file.ends_with(e));
    (media && path.matches('/').count() >= 4 && !folder.is_empty()).then_some(folder)
}

/// The text of `/metrics`: the gauges read now, then everything recorded.
pub async fn render(service: &Service) -> String {
    let handle = handle();
    match service.store.count_by_state().await {
        Ok(counts) => {
            for (state, n) in counts {
                metrics::gauge!("encore_jobs", "state" => state.as_str()).set(n as f64);
                if state == crate::jobs::State::Queued {
                    metrics::gauge!("encore_queue_length").set(n as f64);
                }
            }
            metrics::gauge!("encore_store_up").set(1.0);
        }
        Err(_) => metrics::gauge!("encore_store_up").set(0.0),
    }
    metrics::gauge!("encore_capacity_units").set(service.settings.capacity);
    metrics::gauge!("encore_capacity_used_units").set(service.used_milli() as f64 / 1000.0);
    origin::sample();
    let nvenc = &crate::encode::backend::nvenc::SESSIONS;
    metrics::gauge!("encore_nvenc_sessions_open").set(f64::from(nvenc.open()));
    if let Some(cap) = nvenc.cap() {
        metrics::gauge!("encore_nvenc_sessions_cap").set(f64::from(cap));
    }
    let (active, starved) = cmcd::sessions().counts();
    metrics::gauge!("encore_qoe_sessions_active").set(active as f64);
    metrics::gauge!("encore_qoe_starved_sessions").set(starved as f64);
    handle.run_upkeep();
    handle.render()
}
