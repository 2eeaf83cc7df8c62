//! Cuts a track's packets into segments by the clock: segment n covers [n·D, (n+1)·D).
//!
//! A new segment starts at the first sync sample at or after a boundary (the pipeline forces
//! one there). Decode times are contiguous across segments and each segment's decode time
//! (tfdt) equals the presentation time of its first sample, so boundaries line up across
//! renditions. A final sliver shorter than a quarter of D joins the segment before it.
//!
//! A segment never runs past its nominal end, (n+1)·D rounded up to a whole sample: when the
//! next packet comes later than that (a live clock that skipped ahead), the last sample is
//! stretched to the nominal end and no further, and the timeline has a hole until the next
//! segment. Stretching it to the next packet instead would make one segment as long as the
//! skip, and an HLS segment longer than the announced target duration is forbidden.

use std::time::Duration;

use crate::package::cmaf::Sample;

/// One packet as it leaves an encoder, in the track's timescale, in decode order.
#[derive(Debug, Clone)]
pub struct Unit {
    pub data: Vec<u8>,
    pub pts: i64,
    pub dts: i64,
    pub sync: bool,
}

/// A finished segment ready for the packager.
pub struct Segment {
    pub number: u64,
    /// Decode time of the first sample (tfdt), in the timescale.
    pub start: u64,
    pub duration: u64,
    pub samples: Vec<Sample>,
}

pub struct Segmenter {
    timescale: u32,
    segment_ms: u64,
    /// Duration given to the very last sample (one frame, or one audio frame).
    last_sample_duration: u32,
    open: Option<Open>,
    /// The previous finished segment, held back so a final sliver can join it (VOD only:
    /// live cannot wait a segment to publish).
    held: Option<Segment>,
    merge_tail: bool,
}

struct Open {
    number: u64,
    start: u64,
    units: Vec<Unit>,
}

impl Segmenter {
    pub fn new(timescale: u32, segment_duration: Duration, last_sample_duration: u32) -> Self {
        Segmenter {
            timescale,
            segment_ms: segment_duration.as_millis().max(1) as u64,
            last_sample_duration: last_sample_duration.max(1),
            open: None,
            held: None,
            merge_tail: true,
        }
    }

    /// A segmenter that hands over every segment as soon as it is complete (live).
    pub fn without_tail_merge(mut self) -> Self {
        self.merge_tail = false;
        self
    }

    /// The segment number whose interval holds media time `ticks`.
    pub fn number_at(&self, ticks: i64) -> u64 {
        let ticks = ticks.max(0) as u128;
        (ticks * 1000 / (self.segment_ms as u128 * self.timescale as u128)) as u64
    }

    /// Where `open` ends at the latest: the first whole sample (counted from its start) at or
    /// after (n+1)·D. For a live video segment that is the next segment's first frame.
    fn nominal_end(&self, open: &Open) -> u64 {
        let scale = self.segment_ms as u128 * self.timescale as u128;
        let boundary = ((open.number as u128 + 1) * scale).div_ceil(1000) as u64;
        let step = self.last_sample_duration as u64;
        open.start + boundary.saturating_sub(open.start).div_ceil(step) * step
    }

    /// Adds one unit; returns a segment when one is complete.
    pub fn push(&mut self, unit: Unit) -> Option<Segment> {
        let number = self.number_at(unit.pts);
        let starts_new = match &self.open {
            None => true,
            Some(open) => unit.sync && number > open.number,
        };
        let mut done = None;
        if starts_new {
            let start = unit.pts.max(0) as u64;
            if let Some(open) = self.open.take() {
                let end = start.min(self.nominal_end(&open));
                let finished = close(open, end, self.last_sample_duration);
                done = if self.merge_tail {
                    self.held.replace(finished)
                } else {
                    Some(finished)
                };
            }
            self.open = Some(Open {
                number,
                start,
                units: Vec::new(),
            });
        }
        if let Some(open) = self.open.as_mut() {
            open.units.push(unit);
        }
        done
    }

    /// Ends the track: returns the remaining segments (at most two, or one after a merge).
    pub fn finish(&mut self) -> Vec<Segment> {
        let last = self.open.take().map(|open| {
            let end = open.units.last().map(|u| u.dts).unwrap_or(0);
            let end = (end.max(0) as u64).max(open.start) + self.last_sample_duration as u64;
            close(open, end, self.last_sample_duration)
        });
        match (self.held.take(), last) {
            (Some(mut prev), Some(last))
                if last.duration * 4 * 1000 < self.segment_ms * self.timescale as u64 =>
            {
                // A sliver: one longer final segment reads better than a tiny one with a huge bitrate.
                prev.duration += last.duration;
                prev.samples.extend(last.samples);
                vec![prev]
            }
            (prev, last) => prev.into_iter().chain(last).collect(),
        }
    }
}

/// Turns buffered units into samples whose decode times run from `open.start` to `end`.
fn close(open: Open, end: u64, last_sample_duration: u32) -> Segment {
    let mut samples = Vec::with_capacity(open.units.len());
    let mut decode_time = open.start;
    let n = open.units.len();
    for i in 0..n {
        let unit = &open.units[i];
        let duration = if i + 1 < n {
            (open.units[i + 1].dts - unit.dts).max(1) as u64
        } else {
            // The last sample ends where the next segment begins: the timeline has no holes.
            if end > decode_time {
                end - decode_time
            } else {
                last_sample_duration as u64
            }
        };
        samples.push(Sample {
            data: Vec::new(),
            duration: duration as u32,
            composition_offset: (unit.pts - decode_time as i64) as i32,
            keyframe: unit.sync,
        });
        decode_time += duration;
    }
    // Move the payloads in without copying them.
    for (sample, unit) in samples.iter_mut().zip(open.units) {
        sample.data = unit.data;
    }
    Segment {
        number: open.number,
        start: open.start,
        duration: decode_time - open.start,
        samples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 30 fps in 90 kHz with one B-frame of reordering: decode order I P B P B ...
    fn video_units(frames: i64) -> Vec<Unit> {
        let d = 3000;
        let mut out = Vec::new();
        let mut i = 0;
        while i < frames {
            let sync = i % 60 == 0;
            if sync || i + 1 >= frames || (i + 1) % 60 == 0 {
                out.push(Unit {
                    data: vec![0],
                    pts: i * d,
                    dts: (i - 1) * d,
                    sync,
                });
                i += 1;
            } else {
                out.push(Unit {
                    data: vec![0],
                    pts: (i + 1) * d,
                    dts: (i - 1) * d,
                    sync: false,
                });
                out.push(Unit {
                    data: vec![0],
                    pts: i * d,
                    dts: i * d,
                    sync: false,
                });
                i += 2;
            }
        }
        // decode timestamps must be increasing: renumber them in order
        for (k, u) in out.iter_mut().enumerate() {
            u.dts = (k as i64 - 1) * d;
        }
        out
    }

    #[test]
    fn segments_follow_the_clock_and_tile_the_timeline() {
        let mut s = Segmenter::new(90_000, Duration::from_secs(2), 3000);
        let mut segs: Vec<Segment> = video_units(300)
            .into_iter()
            .filter_map(|u| s.push(u))
            .collect();
        segs.extend(s.finish());
        assert_eq!(segs.len(), 5);
        for (n, seg) in segs.iter().enumerate() {
            assert_eq!(seg.number, n as u64);
            assert_eq!(seg.start, n as u64 * 180_000, "tfdt = n·D");
            assert_eq!(seg.duration, 180_000);
            assert!(seg.samples[0].keyframe);
            assert_eq!(
                seg.samples[0].composition_offset, 0,
                "IDR presented at its decode time"
            );
            assert_eq!(seg.samples.len(), 60);
        }
    }

    /// A live frame clock that falls behind skips ahead: the next frame it sends (an IDR) is
    /// seconds later and may land in the middle of a later segment. The segment in progress
    /// must still end at its nominal end, so that no EXTINF rounds above the target duration.
    #[test]
    fn a_skip_ahead_never_makes_a_segment_longer_than_its_slot() {
        let d = 3000; // 30 fps in 90 kHz, D = 2 s
        let mut s = Segmenter::new(90_000, Duration::from_secs(2), 3000).without_tail_merge();
        let frame = |k: i64| Unit {
            data: vec![0],
            pts: k * d,
            dts: k * d,
            sync: k % 60 == 0 || k == 1000 || k == 1100,
        };
        // Frames 0..=89 (segment 0 and half of 1), then a skip to frame 1000 (segment 16,
        // 0.67 s into it), then a skip within segment 18 (frames 1100.., IDR) to its end.
        let frames = (0..90).chain(1000..1020).chain(1100..1140);
        let mut segs: Vec<Segment> = frames.filter_map(|k| s.push(frame(k))).collect();
        segs.extend(s.finish());
        let numbers: Vec<u64> = segs.iter().map(|s| s.number).collect();
        assert_eq!(numbers, [0, 1, 16, 18]);
        let nominal = 180_000;
        for seg in &segs[..segs.len() - 1] {
            assert!(
                seg.duration <= nominal,
                "segment {}: {}",
                seg.number,
                seg.duration
            );
            // HLS rule: EXTINF rounded to whole seconds never above ceil(D) = 2.
            assert!((seg.duration as f64 / 90_000.0).round() <= 2.0);
            let sum: u64 = seg.samples.iter().map(|x| x.duration as u64).sum();
            assert_eq!(sum, seg.duration, "samples tile segment {}", seg.number);
        }
        // Segment 1 keeps its slot [2 s, 4 s): its last frame is held to the slot's end.
        assert_eq!((segs[1].start, segs[1].duration), (180_000, 180_000));
        // Segment 16 starts at the frame the clock skipped to and ends at its nominal end.
        assert_eq!(segs[2].start, 1000 * d as u64);
        assert_eq!(segs[2].start + segs[2].duration, 17 * 180_000);
    }

    #[test]
    fn a_final_sliver_joins_the_previous_segment() {
        let mut s = Segmenter::new(90_000, Duration::from_secs(2), 3000);
        let mut segs: Vec<Segment> = video_units(242)
            .into_iter()
            .filter_map(|u| s.push(u))
            .collect();
        segs.extend(s.finish());
        assert_eq!(segs.len(), 4);
        assert_eq!(segs[3].duration, 62 * 3000);
    }
}
