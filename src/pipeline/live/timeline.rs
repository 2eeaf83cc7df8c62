//! One input session's timestamps on the output clock.
//!
//! Pictures and sound keep the relation their sender gave them: both are placed at
//! `input time + offset` on the channel clock, with one offset per input session (a
//! connection, or a stretch between two timestamp jumps). So whatever the network does to
//! their arrival (jitter, bursts, a muxer that sends sound half a second ahead of the
//! pictures), the flash and the beep that were together at the sender leave together.
//!
//! The offset is chosen when a session starts, to give its items `INITIAL_LEAD` before they
//! are due, and then follows the arrivals slowly: it grows when items arrive late (jitter
//! larger than the lead) and shrinks when every item arrives well ahead (latency to give
//! back), and in both cases it absorbs the drift between the sender's clock and ours. It moves
//! at most `SLEW_UP` / `SLEW_DOWN` seconds per second, little enough for the sound to follow
//! by resampling ([`SoundPlacement`]) rather than by gaps. Two things step it instead: an item
//! so late that it would miss its instant (a lead too small for how the input bursts: it
//! steps up to `TARGET_EARLY` for that item, at once, since otherwise pictures would be late
//! and sound lost for as long as a slew takes), and a jump in the timestamps (a sender
//! restarted, a wrap), which starts a new session at the lead the old one had. At a step,
//! pictures and sound move together: the sound is placed anew (a short gap), never left
//! behind the pictures while a resampler catches up.

/// How long before it is due a new session's first item is placed.
pub(super) const INITIAL_LEAD: f64 = 0.25;
/// The margin the offset aims to keep for the latest item of the last few seconds.
const TARGET_EARLY: f64 = 0.03;
/// How fast the offset may grow (items arriving late) and shrink, in seconds per second.
const SLEW_UP: f64 = 0.01;
const SLEW_DOWN: f64 = 0.001;
/// How often the offset is adjusted, and over how many such periods the latest item counts.
const ADJUST_EVERY: f64 = 0.5;
const WINDOWS: usize = 6;
/// An item later than this would miss its output instant (the clocks send each instant
/// `OUTPUT_DELAY` after it, 60 ms): the offset steps up rather than slews.
const STEP_LATE: f64 = -0.03;
/// Items this late, or this far ahead, do not belong to the session: their timestamps jumped.
const JUMP_LATE: f64 = 0.5;
pub(super) const JUMP_EARLY: f64 = 2.0;
/// How long items must keep arriving out of those bounds before a new session starts (a
/// burst of a backlog after a stall is not a jump).
const JUMP_CONFIRM: f64 = 0.3;

/// Maps one session's input seconds onto the channel clock (seconds).
#[derive(Debug)]
pub(super) struct SessionTimeline {
    /// Output seconds = input seconds + offset; none until the first item.
    offset: Option<f64>,
    /// When items started to arrive out of bounds, if they are.
    out_of_bounds_since: Option<f64>,
    /// The smallest margin ("early") seen in each of the last periods, newest last.
    windows: std::collections::VecDeque<f64>,
    last_adjust: f64,
    /// Sessions started so far (1 after the first item).
    pub(super) sessions: u32,
    /// Times the offset was set rather than slewed: sessions started, and steps up.
    pub(super) steps: u32,
}

impl Default for SessionTimeline {
    fn default() -> Self {
        SessionTimeline {
            offset: None,
            out_of_bounds_since: None,
            windows: std::iter::once(f64::INFINITY).collect(),
            last_adjust: f64::NEG_INFINITY,
            sessions: 0,
            steps: 0,
        }
    }
}

impl SessionTimeline {
    /// The output time of an item stamped `input` seconds that is available at `now` (output
    /// seconds, the channel clock).
    pub(super) fn place(&mut self, input: f64, now: f64) -> f64 {
        let Some(offset) = self.offset else {
            return self.start(input, now, INITIAL_LEAD);
        };
        let early = input + offset - now;
        if (-JUMP_LATE..=JUMP_EARLY).contains(&early) {
            self.out_of_bounds_since = None;
        } else {
            let since = *self.out_of_bounds_since.get_or_insert(now);
            if now - since >= JUMP_CONFIRM || early.abs() > 10.0 {
                let lead = self.lowest_early().clamp(TARGET_EARLY, INITIAL_LEAD);
                return self.start(input, now, lead);
            }
            // Not confirmed yet: placed by the old offset, not counted in its regulation.
            return input + offset;
        }
        if early < STEP_LATE {
            // The lead is smaller than the input's bursts: a slew would leave pictures late
            // and sound lost for seconds.
            self.offset = Some(offset + TARGET_EARLY - early);
            self.steps += 1;
            self.observe(TARGET_EARLY, now);
            return input + offset + TARGET_EARLY - early;
        }
        self.observe(early, now);
        input + self.offset.unwrap_or(offset)
    }

    fn start(&mut self, input: f64, now: f64, lead: f64) -> f64 {
        self.offset = Some(now + lead - input);
        self.out_of_bounds_since = None;
        self.windows = std::iter::once(f64::INFINITY).collect();
        self.last_adjust = now;
        self.sessions += 1;
        self.steps += 1;
        now + lead
    }

    fn lowest_early(&self) -> f64 {
        let lowest = self.windows.iter().copied().fold(f64::INFINITY, f64::min);
        if lowest.is_finite() {
            lowest
        } else {
            INITIAL_LEAD
        }
    }

    /// Counts one item's margin and, once per period, moves the offset towards the target.
    fn observe(&mut self, early: f64, now: f64) {
        if let Some(newest) = self.windows.back_mut() {
            *newest = newest.min(early);
        }
        let elapsed = now - self.last_adjust;
        if elapsed < ADJUST_EVERY {
            return;
        }
        self.last_adjust = now;
        // Regulate on the latest item of the last few periods: jitter is absorbed, and a
        // sender clock that runs slow or fast shows as that margin shrinking or growing.
        let error = self.lowest_early() - TARGET_EARLY;
        let step = error.clamp(-SLEW_UP * elapsed, SLEW_DOWN * elapsed);
        if let Some(offset) = self.offset.as_mut() {
            *offset -= step;
        }
        self.windows.push_back(f64::INFINITY);
        while self.windows.len() > WINDOWS {
            self.windows.pop_front();
        }
    }
}

/// One input's placement across its reads: the session's timeline and sound, and for a
/// looped file the splice that makes each pass follow the previous one (its timestamps start
/// again at zero; shifted, the loop is not a jump and costs no new session).
#[derive(Debug)]
pub(super) struct Placement {
    pub(super) timeline: SessionTimeline,
    pub(super) sound: SoundPlacement,
    /// Input time just after the last item placed (shifted).
    end: f64,
    /// What this pass adds to its timestamps; set by its first item.
    shift: Option<f64>,
}

impl Default for Placement {
    fn default() -> Self {
        Placement {
            timeline: SessionTimeline::default(),
            sound: SoundPlacement::default(),
            end: f64::NEG_INFINITY,
            shift: None,
        }
    }
}

impl Placement {
    /// The next pass of a looped file continues this one.
    pub(super) fn next_pass(&mut self) {
        self.shift = None;
    }

    /// The output time of an item stamped `input` seconds, lasting `duration`, available at
    /// `now` (the channel clock).
    pub(super) fn place(&mut self, input: f64, duration: f64, now: f64) -> f64 {
        let end = self.end;
        let shift = *self
            .shift
            .get_or_insert_with(|| if end.is_finite() { end - input } else { 0.0 });
        let t = input + shift;
        self.end = self.end.max(t + duration);
        self.timeline.place(t, now)
    }
}

/// Sound further than this from where the timeline maps it is placed there at once (a gap
/// or an overlap): lost packets, a timestamp glitch. Closer, it is resampled there. (When the
/// timeline steps, the sound is placed anew whatever the difference.)
const SOUND_SNAP: i64 = 2_400; // 50 ms at 48 kHz
/// Resampling corrects at most 1 % (a sample in a hundred).
const CORRECTION_SPAN: i32 = 9_600;
const MAX_CORRECTION: i64 = 96;

/// Keeps one session's sound contiguous on the output clock while following the timeline:
/// the difference between where the next samples go and where the timeline maps them is
/// spread over the next `CORRECTION_SPAN` samples by the resampler (libswresample's
/// compensation), so a moving offset or a drifting sender never makes a click.
#[derive(Debug, Default)]
pub(super) struct SoundPlacement {
    /// Output position (48 kHz samples) just after the last samples placed.
    next: Option<i64>,
    /// The timeline's step count when the last samples were placed.
    steps: u32,
}

impl SoundPlacement {
    /// Where the samples the timeline maps to `mapped` go, and how many samples the resampler
    /// should add (positive) or remove over the next `span` samples to close the difference.
    /// `steps` is the timeline's count of steps: after one, the sound goes where it maps.
    pub(super) fn place(&mut self, mapped: i64, steps: u32) -> (i64, Correction) {
        let stepped = std::mem::replace(&mut self.steps, steps) != steps;
        match self.next {
            Some(next) if !stepped && (mapped - next).abs() <= SOUND_SNAP => (
                next,
                Correction {
                    samples: (mapped - next).clamp(-MAX_CORRECTION, MAX_CORRECTION) as i32,
                    span: CORRECTION_SPAN,
                },
            ),
            _ => (mapped, Correction::default()),
        }
    }

    /// `n` samples were placed at `position`.
    pub(super) fn placed(&mut self, position: i64, n: usize) {
        self.next = Some(position + n as i64);
    }
}

/// Samples to add (or remove, negative) over the next `span` output samples.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Correction {
    pub(super) samples: i32,
    pub(super) span: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Senders whose clocks run 500 ppm fast and slow (ten times what crystals do), with up
    /// to 80 ms of jitter on every arrival: the offset follows, every item stays placed ahead
    /// of its instant once settled, the sound never needs a gap, no new session starts.
    #[test]
    fn a_drifting_jittery_sender_is_followed_without_gaps() {
        for rate in [1.0005, 0.9995] {
            let mut timeline = SessionTimeline::default();
            let mut sound = SoundPlacement::default();
            let mut seed = 7u64;
            let mut jitter = || {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                (seed >> 33) as f64 / (1u64 << 31) as f64 * 0.08
            };
            let (mut late, mut snaps) = (0, 0);
            let mut lead = 0.0;
            // 20 ms frames of sound for 20 minutes of the sender's time.
            for i in 0..60_000 {
                let input = 5.0 + i as f64 * 0.02; // the sender's timestamps
                let now = 1_000.0 + input / rate + jitter(); // its clock, on ours, and the network
                let out = timeline.place(input, now);
                if i > 3_000 && out < now {
                    late += 1;
                }
                lead = out - now;
                let mapped = (out * 48_000.0).round() as i64;
                let (position, correction) = sound.place(mapped, timeline.steps);
                if position == mapped && i > 0 && correction == Correction::default() {
                    snaps += 1;
                }
                // The resampler adds what it was asked over the span: a tenth of it per frame.
                let n = 960 + correction.samples * 960 / correction.span.max(1);
                sound.placed(position, n as usize);
            }
            assert_eq!(timeline.sessions, 1, "rate {rate}: no new session");
            assert_eq!(late, 0, "rate {rate}: items placed after their instant");
            assert_eq!(snaps, 0, "rate {rate}: sound placed with gaps");
            assert!(lead < 0.3, "rate {rate}: the lead grew to {lead}");
        }
    }

    /// A sender whose muxer flushes 350 ms of media at a time, restarted with other
    /// timestamps when the old session had little lead: the new session starts with too small
    /// a lead for those bursts. It steps up on the first late burst, once, rather than slew for
    /// half a minute with pictures late and sound lost; the sound moves with it.
    #[test]
    fn a_lead_too_small_for_the_bursts_steps_up_at_once() {
        let mut timeline = SessionTimeline::default();
        let mut sound = SoundPlacement::default();
        let burst = 0.35;
        // Sound frames of 20 ms: (the sender's timestamp, when it arrives). The first two
        // arrive at the end of a burst, so the lead they give the session is too small for
        // the bursts that follow.
        let arrivals = |first: f64, at: f64, seconds: f64| {
            (0..(seconds / 0.02) as usize).map(move |i| {
                let t = i as f64 * 0.02;
                (first + t, at + (((t + 0.32) / burst).floor() + 1.0) * burst)
            })
        };
        // A smooth first session settles on a small lead.
        for i in 0..3_000 {
            timeline.place(i as f64 * 0.02, 100.0 + i as f64 * 0.02);
        }
        let steps_before = timeline.steps;
        let mut late = 0;
        let mut snaps = Vec::new();
        for (input, now) in arrivals(5_000.0, 160.0, 30.0) {
            let out = timeline.place(input, now);
            // The clocks send each instant OUTPUT_DELAY after it: later than that is missed.
            if out - now < -super::super::OUTPUT_DELAY.as_secs_f64() {
                late += 1;
            }
            let mapped = (out * 48_000.0).round() as i64;
            let (position, correction) = sound.place(mapped, timeline.steps);
            if position == mapped && correction == Correction::default() {
                snaps.push(now);
            }
            sound.placed(position, 960);
        }
        assert_eq!(timeline.sessions, 2);
        assert_eq!(late, 0, "items placed to miss their instant");
        // One step for the new session, one for its first late burst.
        assert!(
            timeline.steps - steps_before <= 2,
            "{} steps",
            timeline.steps - steps_before
        );
        assert!(
            snaps.len() <= 3 && snaps.iter().all(|&t| t < 161.0),
            "sound placed anew at {snaps:?}"
        );
    }

    /// A file looped three times, its timestamps starting at 0 each pass: one session, its
    /// pictures one interval apart across the loops.
    #[test]
    fn the_passes_of_a_looped_file_follow_each_other() {
        let mut placement = Placement::default();
        let (mut now, mut last) = (50.0, None);
        for pass in 0..3 {
            if pass > 0 {
                placement.next_pass();
            }
            for i in 0..50 {
                now += 0.04;
                let out = placement.place(i as f64 * 0.04, 0.04, now);
                if let Some(last) = last {
                    let step: f64 = out - last;
                    assert!((step - 0.04).abs() < 0.005, "pass {pass}, {i}: {step}");
                }
                last = Some(out);
            }
        }
        assert_eq!(placement.timeline.sessions, 1);
    }

    /// A sender restarted with other timestamps starts a new session once it persists, at the
    /// lead the old session had; a short burst of old items does not.
    #[test]
    fn a_timestamp_jump_starts_a_new_session() {
        let mut timeline = SessionTimeline::default();
        let mut now = 100.0;
        for i in 0..100 {
            now = 100.0 + i as f64 * 0.04;
            timeline.place(7.0 + i as f64 * 0.04, now);
        }
        assert_eq!(timeline.sessions, 1);
        // One stale item (a backlog) is placed by the old offset and starts nothing.
        let stale = timeline.place(6.0, now);
        assert!(stale < now && timeline.sessions == 1);
        // The sender restarted at 0: after JUMP_CONFIRM of it, a new session.
        let mut placed = 0.0;
        for i in 0..20 {
            let t = now + 0.04 * (i + 1) as f64;
            placed = timeline.place(i as f64 * 0.04, t) - t;
        }
        assert_eq!(timeline.sessions, 2);
        assert!((0.0..=INITIAL_LEAD).contains(&placed), "lead {placed}");
    }
}
