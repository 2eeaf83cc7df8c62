//! Timestamp jumps in inputs whose format allows them (MPEG-TS and others libavformat flags
//! `AVFMT_TS_DISCONT`): every stream is re-based across the same jump, so audio stays on the
//! video's timeline.
//!
//! In such a stream a timestamp far from the others is a discontinuity (a splice, two files
//! joined, a 33-bit wrap libavformat did not follow), not a hole: packets are muxed in time
//! order, so packets that sit together in the file belong together in time. Before, the
//! frame-rate converter went on over a video jump while the audio took its timestamps at face
//! value, filling the jump with silence (out of sync from there on) or refusing the job. As
//! FFmpeg's own CLI does for these formats, the demuxer now shifts packets instead: a packet
//! more than [`JUMP_SECONDS`] away from the video's current time starts a *seam*, and the
//! shift that re-based it is applied to every later packet of its stream. A stream meeting
//! the same jump later (the audio behind the video in the file) takes the same shift, so the
//! two stay in sync across it. The video is the reference: an audio timeline hours off the
//! video's from its first packet is moved onto the video's.
//!
//! Formats whose timestamps are absolute (MP4, Matroska, ...) are not re-based: there, audio
//! starting late is what the file says, and gets silence (docs/timing.md, section 11).

use std::collections::HashMap;

use ffmpeg_next as ff;

/// A packet further than this from the video's current time is past a seam. The same limit
/// as the frame-rate converter's (`cfr.rs`), so both see the same jumps; far above the skew
/// between streams that MPEG-TS buffering allows (about a second).
pub const JUMP_SECONDS: f64 = 5.0;
const JUMP_US: i64 = (JUMP_SECONDS * 1e6) as i64;

/// Re-bases the packets of one input across its timestamp jumps.
pub struct Rebase {
    video: usize,
    /// The video's first timestamp, in microseconds (for messages).
    start: i64,
    /// The video's latest decode time after re-basing, in microseconds: what every packet is
    /// compared with.
    video_now: i64,
    /// The shift of each seam met so far, in microseconds, in the order met.
    seams: Vec<i64>,
    streams: HashMap<usize, Shift>,
}

/// One stream's shift: the sum of the seams it has crossed.
#[derive(Default, Clone, Copy)]
struct Shift {
    total: i64,
    /// Seams before this index are crossed or passed over.
    next_seam: usize,
}

impl Rebase {
    /// For the video stream `video`, whose first timestamp is `start_seconds`.
    pub fn new(video: usize, start_seconds: f64) -> Self {
        let start = (start_seconds * 1e6).round() as i64;
        Rebase {
            video,
            start,
            video_now: start,
            seams: Vec::new(),
            streams: HashMap::new(),
        }
    }

    /// Whether `stream` is re-based: the video, or the chosen `audio` stream (other streams
    /// carry timestamps of their own, which must not make seams).
    pub fn is_chosen(&self, stream: usize, audio: Option<usize>) -> bool {
        stream == self.video || Some(stream) == audio
    }

    /// How many seams were met.
    pub fn seams(&self) -> usize {
        self.seams.len()
    }

    /// Shifts `packet` (of the chosen video or audio stream, time base `tb`) onto the
    /// video's timeline.
    pub fn apply(&mut self, packet: &mut ff::Packet, tb: ff::Rational) {
        let micros = |ts: i64| ts as i128 * tb.numerator() as i128 * 1_000_000;
        let to_us = |ts: i64| (micros(ts) / tb.denominator().max(1) as i128) as i64;
        let Some(ts) = packet.dts().or(packet.pts()) else {
            return;
        };
        let step = to_us(packet.duration().max(0));
        let shift = self.shift(packet.stream(), to_us(ts), step);
        if shift == 0 || tb.numerator() <= 0 {
            return;
        }
        let ticks = (shift as i128 * tb.denominator() as i128
            / (tb.numerator() as i128 * 1_000_000)) as i64;
        packet.set_pts(packet.pts().map(|t| t + ticks));
        packet.set_dts(packet.dts().map(|t| t + ticks));
    }

    /// The shift, in microseconds, for a packet of `stream` at `micros` lasting `step`.
    fn shift(&mut self, stream: usize, micros: i64, step: i64) -> i64 {
        let now = self.video_now;
        let off = |t: i64| (t - now).abs() > JUMP_US;
        let s = self.streams.entry(stream).or_default();
        let mut t = micros + s.total;
        if off(t) {
            // A seam another stream crossed first: the same jump, so the same shift.
            let known = (s.next_seam..self.seams.len()).find(|&i| !off(t + self.seams[i]));
            let seam = match known {
                Some(i) => {
                    s.next_seam = i + 1;
                    self.seams[i]
                }
                None => {
                    // The video lands one packet after its last; other streams at its time.
                    let to = if stream == self.video {
                        now + step
                    } else {
                        now
                    };
                    self.seams.push(to - t);
                    s.next_seam = self.seams.len();
                    tracing::warn!(
                        stream,
                        "timestamps jump {:+.3} s at {:.3} s of the video: re-based onto the video's timeline",
                        (t - to) as f64 / 1e6,
                        (now - self.start) as f64 / 1e6
                    );
                    to - t
                }
            };
            s.total += seam;
            t += seam;
        }
        if stream == self.video {
            self.video_now = t;
        }
        s.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;
    const VIDEO: usize = 0;
    const AUDIO: usize = 1;

    /// Feeds (stream, raw time in µs) in file order; returns the re-based times.
    fn run(rebase: &mut Rebase, packets: &[(usize, i64)]) -> Vec<i64> {
        packets
            .iter()
            .map(|&(stream, t)| t + rebase.shift(stream, t, 40_000))
            .collect()
    }

    /// Video every 40 ms and audio every 20 ms from `from` for `seconds`, audio `skew` ahead.
    fn interleaved(from: i64, seconds: i64, skew: i64) -> Vec<(usize, i64)> {
        let mut v: Vec<(usize, i64)> = (0..seconds * 25)
            .map(|i| (VIDEO, from + i * 40_000))
            .chain((0..seconds * 50).map(|i| (AUDIO, from + skew + i * 20_000)))
            .collect();
        // File order: by time as muxed, the audio's skew included.
        v.sort_by_key(|&(_, t)| t);
        v
    }

    fn of(stream: usize, packets: &[(usize, i64)], times: &[i64]) -> Vec<i64> {
        packets
            .iter()
            .zip(times)
            .filter(|(p, _)| p.0 == stream)
            .map(|(_, &t)| t)
            .collect()
    }

    /// Two files joined: the second's timestamps 54 s on (or back at the start, or 2^33
    /// ticks of 90 kHz back: a wrap libavformat did not follow). Both streams continue, with
    /// the audio's offset to the video the same after the seam as before it.
    #[test]
    fn a_jump_in_both_streams_is_one_seam() {
        for second_start in [60 * S, 0, 6 * S - 95_443_717_688] {
            let mut packets = interleaved(0, 6, 300_000);
            packets.extend(interleaved(second_start, 6, 300_000));
            let mut rebase = Rebase::new(VIDEO, 0.0);
            let times = run(&mut rebase, &packets);
            assert_eq!(rebase.seams(), 1, "{second_start}");
            for stream in [VIDEO, AUDIO] {
                let t = of(stream, &packets, &times);
                let steps: Vec<i64> = t.windows(2).map(|w| w[1] - w[0]).collect();
                assert!(
                    steps.iter().all(|&d| d > 0 && d <= 40_000),
                    "{stream}: {steps:?}"
                );
            }
            let (v, a) = (of(VIDEO, &packets, &times), of(AUDIO, &packets, &times));
            assert_eq!(a[300] - v[150], a[0] - v[0], "in sync after the seam");
        }
    }

    /// Audio whose timestamps are 3 h after the video's from the first packet on, muxed
    /// beside it: moved onto the video's timeline, the video untouched.
    #[test]
    fn audio_hours_off_is_moved_onto_the_video() {
        let packets: Vec<(usize, i64)> = interleaved(0, 4, 0)
            .into_iter()
            .map(|(s, t)| (s, if s == AUDIO { t + 10_800 * S } else { t }))
            .collect();
        let mut rebase = Rebase::new(VIDEO, 0.0);
        let times = run(&mut rebase, &packets);
        assert_eq!(rebase.seams(), 1);
        let raw: Vec<i64> = packets.iter().map(|p| p.1).collect();
        assert_eq!(of(VIDEO, &packets, &times), of(VIDEO, &packets, &raw));
        let a = of(AUDIO, &packets, &times);
        assert!(a[0].abs() < S && a.windows(2).all(|w| w[1] - w[0] == 20_000));
    }

    /// A hole in one stream is not a seam: audio that resumes after 7 s of nothing resumes at
    /// the video's time, and is left there (the audio thread fills the hole with silence).
    #[test]
    fn a_hole_in_one_stream_is_left_alone() {
        let packets: Vec<(usize, i64)> = interleaved(0, 12, 0)
            .into_iter()
            .filter(|&(s, t)| s == VIDEO || !(2 * S..9 * S).contains(&t))
            .collect();
        let mut rebase = Rebase::new(VIDEO, 0.0);
        let times = run(&mut rebase, &packets);
        assert_eq!(rebase.seams(), 0);
        assert_eq!(times, packets.iter().map(|p| p.1).collect::<Vec<_>>());
    }
}
