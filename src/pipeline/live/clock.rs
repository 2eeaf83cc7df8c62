//! The frame clock: one picture per output instant on the wall clock, to every rung, with an
//! IDR at every segment start (epoch locking, docs/timing.md).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;
use ffmpeg_next as ff;

use super::{Feed, OUTPUT_DELAY};
use crate::media::Rational;
use crate::pipeline::track::RungFrame;

pub(super) fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub(super) fn sleep_until_epoch(t: f64, stopping: &AtomicBool) {
    loop {
        let left = t - epoch_now();
        if left <= 0.0 || stopping.load(Ordering::SeqCst) {
            return;
        }
        std::thread::sleep(Duration::from_secs_f64(left.min(0.1)));
    }
}

/// Sends one picture per output instant to every rung.
pub(super) struct VideoClock {
    pub(super) feed: Arc<Feed>,
    pub(super) stopping: Arc<AtomicBool>,
    pub(super) fps: Rational,
    pub(super) frame_ticks: u64,
    pub(super) timescale: u32,
    pub(super) segment_duration: Duration,
    pub(super) start_seconds: f64,
    pub(super) slate: Arc<ff::frame::Video>,
    pub(super) loss_timeout: Duration,
    pub(super) channel: String,
    pub(super) status: Arc<super::ChannelStatus>,
}

impl VideoClock {
    pub(super) fn run(self, rungs: Vec<Sender<RungFrame>>) {
        let segment_ms = self.segment_duration.as_millis();
        let segment_of = |k: i64| {
            (k.max(0) as u128 * self.frame_ticks as u128 * 1000)
                / (segment_ms * self.timescale as u128)
        };
        let mut k = first_frame_at_or_after(self.start_seconds, self.fps);
        let mut previous_segment = None;
        let mut lost = true;
        loop {
            let due = frame_time(k, self.fps) + OUTPUT_DELAY.as_secs_f64();
            sleep_until_epoch(due, &self.stopping);
            if self.stopping.load(Ordering::SeqCst) || self.feed.ended.load(Ordering::SeqCst) {
                break;
            }
            let behind = epoch_now() - due;
            if behind > self.segment_duration.as_secs_f64() / 2.0 {
                // Overloaded or suspended: skip to now rather than fall further behind.
                tracing::warn!(channel = %self.channel, "{behind:.2} s behind the clock; skipping ahead");
                k = first_frame_at_or_after(epoch_now(), self.fps);
                continue;
            }
            // Lost: nothing for a segment (at least 1 s), or for three of the input's pictures.
            let interval = self.feed.picture_interval_us.load(Ordering::Relaxed);
            let loss_timeout = self.loss_timeout.max(Duration::from_micros(interval * 3));
            let picture = self
                .feed
                .video
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let (frame, slate) = match picture {
                Some((frame, at)) if at.elapsed() < loss_timeout => (frame, false),
                _ => (self.slate.clone(), true),
            };
            if slate != lost {
                if slate {
                    tracing::warn!(channel = %self.channel, "input lost: sending slate");
                } else {
                    tracing::info!(channel = %self.channel, "input restored");
                }
                lost = slate;
                self.status.on_slate.store(slate, Ordering::Relaxed);
            }
            let segment = segment_of(k);
            let force = previous_segment != Some(segment);
            previous_segment = Some(segment);
            for tx in &rungs {
                // A rung that stopped has reported its error; the others go on.
                let _ = tx.send(RungFrame {
                    frame: frame.clone(),
                    index: k,
                    force,
                    slate,
                });
            }
            k += 1;
        }
    }
}

/// Output frame `k` is shown at k·den/num seconds after the Unix epoch (exact for fractional
/// rates such as 30000/1001). A segment holds the frames shown in its [n·D, (n+1)·D): at
/// 29.97 fps and D = 2 s that is 60 frames, or 59 about every 17th segment (60000 frames in
/// every 1001 segments); every rung cuts at the same frames.
fn frame_time(k: i64, fps: Rational) -> f64 {
    (k as i128 * fps.den as i128) as f64 / fps.num as f64
}

/// The first output frame shown at or after `seconds` since the Unix epoch.
fn first_frame_at_or_after(seconds: f64, fps: Rational) -> i64 {
    // Microsecond resolution keeps the product exact in integers.
    let micros = (seconds * 1e6).round() as i128;
    let num = micros * fps.num as i128;
    let den = 1_000_000i128 * fps.den as i128;
    ((num + den - 1) / den) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractional_rates_cut_segments_at_whole_frames() {
        let fps = Rational::new(30_000, 1001);
        let d = 2u64;
        let first = 473_342_400u64; // 2000-01-01 in 2 s segments since the epoch
        let mut total = 0;
        for n in first..first + 1001 {
            let a = first_frame_at_or_after((n * d) as f64, fps);
            let b = first_frame_at_or_after(((n + 1) * d) as f64, fps);
            let frames = b - a;
            assert!(frames == 59 || frames == 60, "segment {n}: {frames}");
            // The segment's first frame is shown at or after its nominal start, within a frame.
            let start = frame_time(a, fps);
            assert!(start >= (n * d) as f64 - 1e-6 && start - ((n * d) as f64) < 1001.0 / 30_000.0);
            total += frames;
        }
        assert_eq!(total, 60_000);
        // Whole rates are exact too.
        assert_eq!(first_frame_at_or_after(10.0, Rational::new(30, 1)), 300);
        assert_eq!(first_frame_at_or_after(10.01, Rational::new(30, 1)), 301);
    }
}
