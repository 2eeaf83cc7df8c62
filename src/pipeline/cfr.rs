//! Constant frame rate from any source timing: frame k is shown at k / fps.
//!
//! Like FFmpeg's `-fps_mode cfr`: a frame that lands on an index already filled is dropped,
//! a hole is filled by repeating the previous frame, and a jump larger than `MAX_FILL` is
//! treated as a timestamp discontinuity (the timeline just goes on).

use std::sync::Arc;

use ffmpeg_next as ff;

use crate::media::Rational;

/// Longest hole filled by repetition; beyond it a jump is a discontinuity.
const MAX_FILL_SECONDS: f64 = 5.0;

pub struct Cfr {
    fps: Rational,
    time_base: f64,
    zero: i64,
    /// Offset added after discontinuities, in frames.
    shift: i64,
    next: i64,
    last: Option<Arc<ff::frame::Video>>,
    pub dropped: u64,
    pub duplicated: u64,
}

impl Cfr {
    pub fn new(fps: Rational, time_base: ff::Rational, zero: i64) -> Self {
        Cfr {
            fps,
            time_base: f64::from(time_base),
            zero,
            shift: 0,
            next: 0,
            last: None,
            dropped: 0,
            duplicated: 0,
        }
    }

    /// Frames emitted so far (the next frame's index).
    pub fn frames(&self) -> i64 {
        self.next
    }

    /// Places a decoded frame; `emit` gets every output frame with its index, in order.
    pub fn push(
        &mut self,
        frame: ff::frame::Video,
        mut emit: impl FnMut(Arc<ff::frame::Video>, i64),
    ) {
        let index = match frame.timestamp() {
            Some(ts) => {
                let seconds = (ts - self.zero) as f64 * self.time_base;
                (seconds * self.fps.as_f64()).round() as i64 + self.shift
            }
            None => self.next,
        };
        let max_fill = (MAX_FILL_SECONDS * self.fps.as_f64()) as i64;
        let index = if index > self.next + max_fill || index < self.next - max_fill {
            // Timestamps jumped: continue the output timeline from here.
            self.shift += self.next - index;
            self.next
        } else {
            index
        };
        if index < self.next {
            self.dropped += 1;
            return;
        }
        let frame = Arc::new(frame);
        // Holes are filled with the previous frame; a late first frame fills the start itself.
        let filler = self.last.clone().unwrap_or_else(|| frame.clone());
        while self.next < index {
            emit(filler.clone(), self.next);
            self.duplicated += 1;
            self.next += 1;
        }
        self.next = index;
        emit(frame.clone(), self.next);
        self.next += 1;
        self.last = Some(frame);
    }
}
