//! The feed between the input and the two clocks: pictures and sound, each already placed on
//! the output clock (timeline.rs), waiting for their instant. Both are bounded: the input
//! drops the oldest rather than grow when a clock stalls.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ffmpeg_next as ff;

use crate::encode::audio::SAMPLE_RATE;

/// Pictures waiting at most, in seconds of the input: the furthest ahead a session places
/// them (timeline.rs) and a margin. Beyond, the oldest is shown early (dropped, in effect).
const PICTURES_SECONDS: f64 = super::timeline::JUMP_EARLY + 0.5;
/// And in bytes, whatever the input's rate and size (a hostile sender's 4096x2304 at 60 fps
/// two seconds ahead would otherwise hold 2 GB).
const PICTURES_BYTES: usize = 1 << 30;
/// Sound held at most, in seconds; beyond, the oldest is dropped. More than the lead a session
/// may have before it counts as a jump (timeline.rs), so sound placed ahead is never lost.
pub(super) const SOUND_MAX_SECONDS: f64 = 3.0;

#[derive(Default)]
pub(super) struct Feed {
    pub(super) video: Mutex<PictureQueue>,
    pub(super) audio: Mutex<SoundRing>,
    /// The input ended for good (a file played once).
    pub(super) ended: AtomicBool,
    /// The input's picture interval in microseconds (0 until known): a slow input (1 fps)
    /// is not lost between two of its pictures.
    pub(super) picture_interval_us: AtomicU64,
    /// Input samples dropped because the sound buffer was full (nobody was taking it).
    pub(super) audio_dropped: AtomicU64,
}

impl Feed {
    /// A decoded picture for output time `at` (channel seconds).
    pub(super) fn push_picture(&self, at: f64, frame: ff::frame::Video) {
        let interval = self.picture_interval_us.load(Ordering::Relaxed).max(1) as f64 / 1e6;
        let bytes = picture_bytes(&frame).max(1);
        let limit = ((PICTURES_SECONDS / interval).ceil() as usize)
            .min(PICTURES_BYTES / bytes)
            .max(8);
        lock(&self.video).push(at, Arc::new(frame), Instant::now(), limit);
    }

    /// Decoded sound for output sample `position` (48 kHz since the Unix epoch): non-finite
    /// samples become silence and the rest is clipped to full scale (the AAC encoder takes
    /// NaN, infinities and huge values badly).
    pub(super) fn push_audio(&self, position: i64, left: &[f32], right: &[f32]) {
        let clean = |s: &f32| {
            if s.is_finite() {
                s.clamp(-1.0, 1.0)
            } else {
                0.0
            }
        };
        let left: Vec<f32> = left.iter().map(clean).collect();
        let right: Vec<f32> = right.iter().map(clean).collect();
        let dropped = lock(&self.audio).place(position, &left, &right);
        if dropped > 0 {
            self.audio_dropped.fetch_add(dropped, Ordering::Relaxed);
        }
    }
}

/// The memory a decoded picture holds.
fn picture_bytes(frame: &ff::frame::Video) -> usize {
    (0..frame.planes())
        .map(|i| frame.stride(i) * frame.plane_height(i) as usize)
        .sum()
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Pictures waiting for their output time, oldest first, and the picture on screen.
#[derive(Default)]
pub(super) struct PictureQueue {
    waiting: VecDeque<(f64, Arc<ff::frame::Video>)>,
    shown: Option<Arc<ff::frame::Video>>,
    last_arrival: Option<Instant>,
}

impl PictureQueue {
    fn push(&mut self, at: f64, frame: Arc<ff::frame::Video>, arrived: Instant, limit: usize) {
        // A new session's pictures replace the ones they overlap.
        while self.waiting.back().is_some_and(|(t, _)| *t >= at) {
            self.waiting.pop_back();
        }
        self.waiting.push_back((at, frame));
        while self.waiting.len() > limit {
            self.shown = self.waiting.pop_front().map(|(_, f)| f);
        }
        self.last_arrival = Some(arrived);
    }

    /// The picture for the output instant `t`: the newest due by `t + tolerance` (half an
    /// output frame: the nearest), else the one on screen; none when no picture arrived for
    /// `loss` (the input is lost: slate).
    pub(super) fn picture_at(
        &mut self,
        t: f64,
        tolerance: f64,
        loss: Duration,
    ) -> Option<Arc<ff::frame::Video>> {
        while self
            .waiting
            .front()
            .is_some_and(|(at, _)| *at <= t + tolerance)
        {
            self.shown = self.waiting.pop_front().map(|(_, f)| f);
        }
        if self.last_arrival.is_some_and(|a| a.elapsed() < loss) {
            self.shown.clone()
        } else {
            // Lost: what was on screen is not shown again when the input returns.
            self.shown = None;
            None
        }
    }
}

/// The input's sound on the output clock: `samples[i]` is output sample `front + i`.
#[derive(Default)]
pub(super) struct SoundRing {
    front: i64,
    samples: [VecDeque<f32>; 2],
}

impl SoundRing {
    fn len(&self) -> usize {
        self.samples[0].len()
    }

    fn clear_at(&mut self, position: i64) {
        self.samples.iter_mut().for_each(VecDeque::clear);
        self.front = position;
    }

    /// Places samples at `position`; newer sound replaces what it overlaps, a short gap
    /// before it is silence. Returns the samples dropped to stay within the bound.
    fn place(&mut self, position: i64, left: &[f32], right: &[f32]) -> u64 {
        let limit = (SOUND_MAX_SECONDS * SAMPLE_RATE as f64) as usize;
        let end = self.front + self.len() as i64;
        if self.len() == 0 || position <= self.front || position - end > limit as i64 {
            self.clear_at(position);
        } else if position < end {
            let keep = (position - self.front) as usize;
            self.samples.iter_mut().for_each(|s| s.truncate(keep));
        } else {
            let gap = (position - end) as usize;
            self.samples
                .iter_mut()
                .for_each(|s| s.extend(std::iter::repeat_n(0.0, gap)));
        }
        let n = left.len().min(right.len());
        self.samples[0].extend(&left[..n]);
        self.samples[1].extend(&right[..n]);
        let excess = self.len().saturating_sub(limit);
        if excess > 0 {
            self.samples.iter_mut().for_each(|s| {
                s.drain(..excess);
            });
            self.front += excess as i64;
        }
        excess as u64
    }

    /// The `n` samples from output sample `position`: silence where there is none; what is
    /// older is dropped (it came too late).
    pub(super) fn take(&mut self, position: i64, n: usize) -> [Vec<f32>; 2] {
        let late = (position - self.front).clamp(0, self.len() as i64) as usize;
        self.samples.iter_mut().for_each(|s| {
            s.drain(..late);
        });
        self.front = self.front.max(position);
        let lead_in = ((self.front - position) as usize).min(n);
        let take = (n - lead_in).min(self.len());
        let mut out = [Vec::with_capacity(n), Vec::with_capacity(n)];
        for (o, s) in out.iter_mut().zip(self.samples.iter_mut()) {
            o.resize(lead_in, 0.0);
            o.extend(s.drain(..take));
            o.resize(n, 0.0);
        }
        if take > 0 {
            self.front = position + (lead_in + take) as i64;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_sound_is_sanitised_and_bounded() {
        let feed = Feed::default();
        let bad = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30, -7.0, 0.25];
        feed.push_audio(1000, &bad, &bad);
        let [left, _] = lock(&feed.audio).take(1000, 6);
        assert_eq!(left, [0.0, 0.0, 0.0, 1.0, -1.0, 0.25]);
        // Nobody takes the sound (a stalled audio clock): the buffer stops growing.
        let second = vec![0.1f32; SAMPLE_RATE as usize];
        for i in 0..10 {
            feed.push_audio(i * SAMPLE_RATE as i64, &second, &second);
        }
        let limit = (SOUND_MAX_SECONDS * SAMPLE_RATE as f64) as usize;
        assert_eq!(lock(&feed.audio).len(), limit);
        assert!(feed.audio_dropped.load(Ordering::Relaxed) > 0);
    }

    /// Sound is taken by its position: silence before it arrives, late samples dropped,
    /// overlaps won by the newer sound.
    #[test]
    fn sound_is_taken_at_its_position() {
        let mut ring = SoundRing::default();
        ring.place(100, &[1.0; 10], &[1.0; 10]);
        let [l, _] = ring.take(96, 8);
        assert_eq!(l, [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
        // Positions 104..110 left; taking from 106 drops two as late.
        let [l, _] = ring.take(106, 2);
        assert_eq!(l, [1.0, 1.0]);
        // Newer sound at 109 replaces 109; a gap up to it is silence.
        ring.place(109, &[2.0; 2], &[2.0; 2]);
        ring.place(113, &[3.0], &[3.0]);
        let [l, _] = ring.take(108, 6);
        assert_eq!(l, [1.0, 2.0, 2.0, 0.0, 0.0, 3.0]);
    }

    #[test]
    fn pictures_are_shown_at_their_time_and_lost_after_a_while() {
        let picture = || Arc::new(ff::frame::Video::empty());
        let mut q = PictureQueue::default();
        let loss = Duration::from_secs(1);
        assert!(q.picture_at(0.0, 0.02, loss).is_none());
        let (a, b) = (picture(), picture());
        q.push(10.0, a.clone(), Instant::now(), 8);
        q.push(10.04, b.clone(), Instant::now(), 8);
        // Not due yet: nothing on screen.
        assert!(q.picture_at(9.9, 0.02, loss).is_none());
        assert!(Arc::ptr_eq(&q.picture_at(9.99, 0.02, loss).unwrap(), &a));
        assert!(Arc::ptr_eq(&q.picture_at(10.03, 0.02, loss).unwrap(), &b));
        // Nothing newer: the last one stays; a picture from a new session replaces later ones.
        assert!(Arc::ptr_eq(&q.picture_at(10.2, 0.02, loss).unwrap(), &b));
        let c = picture();
        q.push(11.0, picture(), Instant::now(), 8);
        q.push(10.5, c.clone(), Instant::now(), 8);
        assert!(Arc::ptr_eq(&q.picture_at(12.0, 0.02, loss).unwrap(), &c));
        // Nothing arrived for longer than `loss`.
        q.last_arrival = Some(Instant::now() - Duration::from_secs(2));
        assert!(q.picture_at(12.1, 0.02, loss).is_none());
    }
}
