//! The frame clock: one picture per output instant on the wall clock (the input picture placed
//! nearest that instant, the slate when the input is lost), to every rung, with an
//! IDR at every segment start (epoch locking, docs/timing.md), and the channel clock that
//! both live clocks read the time from.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;
use ffmpeg_next as ff;

use super::{Feed, OUTPUT_DELAY};
use crate::media::Rational;
use crate::pipeline::track::RungFrame;

/// The host's wall clock, in Unix seconds.
pub(super) fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A difference between the wall clock and the monotonic clock smaller than this is reading
/// jitter, not a step.
const STEP_TOLERANCE: f64 = 0.002;

/// The time a channel runs on: the host's wall clock in Unix seconds, plus a lead that is
/// zero until the wall clock steps backwards.
///
/// Segment numbers and media times come from this clock, so it must never go back: a wall
/// clock stepped back by `x` seconds would otherwise stop all output for `x` seconds and then
/// make numbers that were already published. Instead, a step back raises the lead by `x`: the
/// channel goes on at the pace of the monotonic clock, `x` seconds ahead of the host's clock,
/// its numbers and media times continuing where they were. A later step forwards uses that
/// lead up first; once it is gone the channel follows the wall clock again, and a step
/// forwards beyond it is a jump the frame clock skips over (as after an overload).
pub(super) struct ChannelClock {
    wall: Box<dyn Fn() -> f64 + Send + Sync>,
    last: Mutex<Reading>,
    channel: String,
}

#[derive(Clone, Copy, Debug)]
struct Reading {
    /// The channel's time at `at`.
    now: f64,
    at: Instant,
    /// Seconds the channel is ahead of the wall clock.
    lead: f64,
}

impl Reading {
    /// The reading that follows this one when the wall clock says `wall` at `at`; with the
    /// size of the wall clock's step, if it stepped.
    fn next(self, wall: f64, at: Instant) -> (Reading, Option<f64>) {
        let expected = self.now + at.saturating_duration_since(self.at).as_secs_f64();
        let mut lead = self.lead;
        let mut now = wall + lead;
        let step = now - expected;
        let stepped = step.abs() > STEP_TOLERANCE;
        if step < -STEP_TOLERANCE {
            lead -= step;
            now = expected;
        } else if step > STEP_TOLERANCE {
            let used = step.min(lead);
            lead -= used;
            now -= used;
        }
        let reading = Reading {
            now: now.max(self.now),
            at,
            lead,
        };
        (reading, stepped.then_some(step))
    }
}

impl ChannelClock {
    /// The channel clock on the host's wall clock.
    pub(super) fn system(channel: &str) -> Self {
        Self::with_wall(channel, Box::new(epoch_now))
    }

    /// The channel clock on another wall clock (tests step it).
    pub(super) fn with_wall(channel: &str, wall: Box<dyn Fn() -> f64 + Send + Sync>) -> Self {
        let last = Reading {
            now: wall(),
            at: Instant::now(),
            lead: 0.0,
        };
        ChannelClock {
            wall,
            last: Mutex::new(last),
            channel: channel.into(),
        }
    }

    /// The channel's time, in Unix seconds: never less than at any earlier call.
    pub(super) fn now(&self) -> f64 {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let (next, step) = last.next((self.wall)(), Instant::now());
        if let Some(step) = step {
            if step < 0.0 || last.lead > 0.0 {
                tracing::warn!(
                    channel = %self.channel,
                    "the wall clock stepped {step:+.3} s; the channel keeps its pace, {:.3} s ahead of the host clock",
                    next.lead
                );
            }
        }
        *last = next;
        next.now
    }

    /// Sleeps until the channel's time reaches `t`, or until `stopping`.
    pub(super) fn sleep_until(&self, t: f64, stopping: &AtomicBool) {
        loop {
            let left = t - self.now();
            if left <= 0.0 || stopping.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_secs_f64(left.min(0.1)));
        }
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
    pub(super) clock: Arc<ChannelClock>,
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
            self.clock.sleep_until(due, &self.stopping);
            if self.stopping.load(Ordering::SeqCst) || self.feed.ended.load(Ordering::SeqCst) {
                break;
            }
            let behind = self.clock.now() - due;
            if behind > self.segment_duration.as_secs_f64() / 2.0 {
                // Overloaded or suspended: skip to now rather than fall further behind.
                tracing::warn!(channel = %self.channel, "{behind:.2} s behind the clock; skipping ahead");
                k = first_frame_at_or_after(self.clock.now(), self.fps);
                continue;
            }
            // Lost: nothing for a segment (at least 1 s), or for three of the input's pictures.
            let interval = self.feed.picture_interval_us.load(Ordering::Relaxed);
            let loss_timeout = self.loss_timeout.max(Duration::from_micros(interval * 3));
            // The nearest picture: due within half an output frame of this instant.
            let half_frame = frame_time(1, self.fps) / 2.0;
            let picture = super::feed::lock(&self.feed.video).picture_at(
                frame_time(k, self.fps),
                half_frame,
                loss_timeout,
            );
            let (frame, slate) = match picture {
                Some(frame) => (frame, false),
                None => (self.slate.clone(), true),
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
pub(super) mod tests {
    use std::sync::atomic::AtomicI64;
    use std::thread::JoinHandle;

    use crossbeam_channel::{bounded, Receiver};

    use super::*;

    /// A wall clock a test can step: the host's clock plus an offset in microseconds.
    pub(in crate::pipeline::live) fn stepped_wall(
    ) -> (Arc<AtomicI64>, Box<dyn Fn() -> f64 + Send + Sync>) {
        let offset = Arc::new(AtomicI64::new(0));
        let o = offset.clone();
        let wall = move || epoch_now() + o.load(Ordering::SeqCst) as f64 / 1e6;
        (offset, Box::new(wall))
    }

    pub(in crate::pipeline::live) fn step(offset: &AtomicI64, seconds: f64) {
        offset.fetch_add((seconds * 1e6) as i64, Ordering::SeqCst);
    }

    #[test]
    fn the_channel_clock_never_goes_back_and_keeps_its_pace() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let mut r = Reading {
            now: 1000.0,
            at: t0,
            lead: 0.0,
        };
        let mut read = |wall: f64, mono: f64| {
            let (next, step) = r.next(wall, at(mono));
            r = next;
            (next.now, next.lead, step)
        };
        // In step with the monotonic clock: the wall clock itself.
        assert_eq!(read(1001.0, 1.0), (1001.0, 0.0, None));
        // Stepped back 30 s: the channel goes on at the monotonic pace, 30 s ahead.
        let (now, lead, step) = read(972.0, 2.0);
        assert!(
            (now - 1002.0).abs() < 1e-9 && (lead - 30.0).abs() < 1e-9,
            "{now} {lead}"
        );
        assert!((step.unwrap() + 30.0).abs() < 1e-9);
        let (now, _, step) = read(973.5, 3.5);
        assert!((now - 1003.5).abs() < 1e-9 && step.is_none(), "{now}");
        // Stepped forward 10 s: the lead is used first, the channel does not jump.
        let (now, lead, _) = read(984.5, 4.5);
        assert!(
            (now - 1004.5).abs() < 1e-9 && (lead - 20.0).abs() < 1e-9,
            "{now} {lead}"
        );
        // Forward 25 s more: 20 s of lead left, so the channel jumps the other 5 s.
        let (now, lead, _) = read(1010.5, 5.5);
        assert!((now - 1010.5).abs() < 1e-9 && lead == 0.0, "{now} {lead}");
        // A step back under the tolerance holds the clock rather than turn it back.
        let (now, lead, step) = read(1010.5005, 5.5015);
        assert!(now >= 1010.5 && lead == 0.0 && step.is_none(), "{now}");
    }

    /// A running frame clock on a wall clock the test steps, with one rung's queue.
    struct Running {
        frames: Receiver<RungFrame>,
        stopping: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Running {
        fn start(wall: Box<dyn Fn() -> f64 + Send + Sync>, fps: Rational) -> Running {
            let clock = Arc::new(ChannelClock::with_wall("test", wall));
            let timescale = fps.video_timescale();
            let stopping = Arc::new(AtomicBool::new(false));
            let video = VideoClock {
                feed: Arc::new(Feed::default()),
                stopping: stopping.clone(),
                fps,
                frame_ticks: fps.frame_ticks(timescale),
                timescale,
                // 2 s: the clock skips only when more than 1 s late, which a loaded test machine is not.
                segment_duration: Duration::from_secs(2),
                start_seconds: clock.now(),
                slate: Arc::new(ff::frame::Video::new(ff::format::Pixel::YUV420P, 16, 16)),
                loss_timeout: Duration::from_secs(1),
                channel: "test".into(),
                status: Arc::new(super::super::ChannelStatus {
                    on_slate: AtomicBool::new(true),
                    rungs: Vec::new(),
                    restarts: Vec::new(),
                }),
                clock,
            };
            let (tx, frames) = bounded(4);
            let thread = std::thread::spawn(move || video.run(vec![tx]));
            Running {
                frames,
                stopping,
                thread: Some(thread),
            }
        }

        /// The next frame; a frame due every 0.1 s that has not come in 5 s never will.
        fn next(&self) -> RungFrame {
            self.frames
                .recv_timeout(Duration::from_secs(5))
                .expect("the frame clock stopped sending")
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.stopping.store(true, Ordering::SeqCst);
            if let Some(t) = self.thread.take() {
                // Drain the queue so a clock blocked on it sees the stop.
                while !t.is_finished() {
                    let _ = self.frames.recv_timeout(Duration::from_millis(10));
                }
                let _ = t.join();
            }
        }
    }

    /// The wall clock steps back 30 s: frames keep coming at their pace with the next
    /// numbers (none repeated, none skipped); a step forwards then uses up that lead without
    /// a skip; only a step beyond it skips ahead, to a new segment with an IDR.
    #[test]
    fn a_wall_clock_stepped_back_does_not_stop_the_frames() {
        let (offset, wall) = stepped_wall();
        let running = Running::start(wall, Rational::new(10, 1));
        let mut k = running.next().index;
        let mut expect_next = |running: &Running, frames: usize| {
            for _ in 0..frames {
                let f = running.next();
                assert_eq!(f.index, k + 1, "frames follow each other");
                k = f.index;
            }
        };
        expect_next(&running, 3);
        step(&offset, -30.0);
        expect_next(&running, 15);
        step(&offset, 29.0);
        expect_next(&running, 5);
        // 1 s of lead left; a 3 s step goes 2 s beyond it: more than D/2 behind, so skip.
        step(&offset, 3.0);
        let mut f = running.next();
        while f.index == k + 1 {
            // Frames already queued before the step.
            k = f.index;
            f = running.next();
        }
        assert!(f.index > k + 10, "skipped ahead: {} after {k}", f.index);
        assert!(f.force, "the frame after a skip starts a segment: an IDR");
    }

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
