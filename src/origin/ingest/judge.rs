//! The checks a copy of a segment must pass before the origin serves it (docs/origin.md §15):
//! it parses, starts with a sync sample at the media time its number names, lasts D within
//! one frame, has every frame, and is not slate.

use std::time::Duration;

use super::inspect::{InitFacts, SegmentFacts};
use crate::package::MEDIA_EPOCH_SECONDS;

/// How good one copy is. Copies are ranked in this order; `Unusable` ones are never served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Good,
    /// Whole, but filler made while the publisher's input was lost.
    Slate,
    /// Playable but incomplete (frames missing, short): served only when nothing better came.
    Damaged(Reason),
    /// Would break the timeline or the decoder: never served.
    Unusable(Reason),
}

impl Verdict {
    /// Higher is better.
    pub fn rank(&self) -> u8 {
        match self {
            Verdict::Good => 3,
            Verdict::Slate => 2,
            Verdict::Damaged(_) => 1,
            Verdict::Unusable(_) => 0,
        }
    }

    /// The label counted on `/metrics` when this copy is refused.
    pub fn reason(&self) -> Reason {
        match self {
            Verdict::Good => Reason::Duplicate,
            Verdict::Slate => Reason::Slate,
            Verdict::Damaged(r) | Verdict::Unusable(r) => *r,
        }
    }
}

/// Why a copy was not served (a `reason` label on `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Reason {
    /// Another copy was served first.
    Duplicate,
    Slate,
    /// It does not parse as a CMAF segment of its rendition's track.
    Unparsable,
    /// The publisher's init segment was refused, or none came before it.
    Init,
    /// Its first sample is not a sync sample.
    NotSync,
    /// Its `tfdt` is not where its number puts it.
    Timing,
    /// Its duration is not D within one frame.
    Duration,
    /// Frames are missing.
    Frames,
    /// It came after its number was decided (or below the DVR window).
    Late,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Reason::Duplicate => "duplicate",
            Reason::Slate => "slate",
            Reason::Unparsable => "unparsable",
            Reason::Init => "init",
            Reason::NotSync => "not_sync",
            Reason::Timing => "timing",
            Reason::Duration => "duration",
            Reason::Frames => "frames",
            Reason::Late => "late",
        }
    }
}

/// The rendition's expectations of each copy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expect {
    pub segment_duration: Duration,
    /// Video: one frame in the track's timescale, once a whole segment has shown it.
    pub frame: Option<u32>,
}

/// Judges one copy of segment `number`.
pub(crate) fn judge(
    facts: &Result<SegmentFacts, String>,
    init: &InitFacts,
    number: u64,
    expect: Expect,
) -> Verdict {
    let Ok(f) = facts else {
        return Verdict::Unusable(Reason::Unparsable);
    };
    let ts = u128::from(init.timescale);
    let d_ticks = expect.segment_duration.as_nanos() * ts / 1_000_000_000;
    // One frame: the rendition's, else this copy's shortest sample (audio: one AAC frame).
    let frame = u128::from(expect.frame.unwrap_or(f.shortest_sample).max(1));
    // The timing tolerance is a frame, but never more than an eighth of D: a copy cannot
    // widen its own.
    let tolerance = frame.min((d_ticks / 8).max(1));
    if init.is_video() && !f.starts_with_sync {
        return Verdict::Unusable(Reason::NotSync);
    }
    // Segment N starts at N·D on the Unix clock; media time counts from the media epoch.
    let nominal_start = (u128::from(number) * expect.segment_duration.as_nanos())
        .checked_sub(u128::from(MEDIA_EPOCH_SECONDS) * 1_000_000_000)
        .map(|nanos| nanos * ts / 1_000_000_000);
    let Some(nominal_start) = nominal_start else {
        return Verdict::Unusable(Reason::Timing);
    };
    if u128::from(f.start).abs_diff(nominal_start) >= tolerance {
        return Verdict::Unusable(Reason::Timing);
    }
    if f.slate {
        return Verdict::Slate;
    }
    // The last segment of a stream may end early.
    if !f.last && u128::from(f.duration).abs_diff(d_ticks) >= tolerance {
        return Verdict::Damaged(Reason::Duration);
    }
    // Frames whose time was given to others: the count must match the duration. (Against
    // the duration, not D: at 29.97 fps a whole 2 s segment has 59 or 60 frames.)
    if init.is_video() && !f.last {
        let expected = (u128::from(f.duration) + frame / 2) / frame;
        if u128::from(f.samples) != expected {
            return Verdict::Damaged(Reason::Frames);
        }
    }
    Verdict::Good
}

#[cfg(test)]
mod tests {
    use super::*;
    use mp4_atom::FourCC;

    fn init(video: bool) -> InitFacts {
        InitFacts {
            track_id: 1,
            timescale: 90_000,
            handler: FourCC::new(if video { b"vide" } else { b"soun" }),
            codecs: Vec::new(),
            default_duration: 0,
            default_size: 0,
            default_flags: 0,
        }
    }

    /// Segment `number` of a 2 s, 30 fps rendition as a healthy encoder writes it.
    fn whole(number: u64) -> SegmentFacts {
        SegmentFacts {
            start: (number * 2 - MEDIA_EPOCH_SECONDS) * 90_000,
            duration: 180_000,
            samples: 60,
            shortest_sample: 3000,
            starts_with_sync: true,
            slate: false,
            last: false,
        }
    }

    const EXPECT: Expect = Expect {
        segment_duration: Duration::from_secs(2),
        frame: Some(3000),
    };

    #[test]
    fn each_check_has_its_verdict() {
        let n = 900_000_000;
        let v = |f: SegmentFacts| judge(&Ok(f), &init(true), n, EXPECT);
        assert_eq!(v(whole(n)), Verdict::Good);
        assert_eq!(
            judge(&Err("x".into()), &init(true), n, EXPECT),
            Verdict::Unusable(Reason::Unparsable)
        );
        assert_eq!(v(whole(n + 1)), Verdict::Unusable(Reason::Timing));
        assert_eq!(
            v(SegmentFacts {
                starts_with_sync: false,
                ..whole(n)
            }),
            Verdict::Unusable(Reason::NotSync)
        );
        assert_eq!(
            v(SegmentFacts {
                slate: true,
                ..whole(n)
            }),
            Verdict::Slate
        );
        // Ten frames gone: short by a third of a second.
        assert_eq!(
            v(SegmentFacts {
                samples: 50,
                duration: 150_000,
                ..whole(n)
            }),
            Verdict::Damaged(Reason::Duration)
        );
        // Frames gone, their time given to the others.
        assert_eq!(
            v(SegmentFacts {
                samples: 59,
                ..whole(n)
            }),
            Verdict::Damaged(Reason::Frames)
        );
        // Within a frame of D and of its place is fine; the last one may be short.
        assert_eq!(
            v(SegmentFacts {
                start: whole(n).start + 1000,
                ..whole(n)
            }),
            Verdict::Good
        );
        assert_eq!(
            v(SegmentFacts {
                duration: 30_000,
                samples: 10,
                last: true,
                ..whole(n)
            }),
            Verdict::Good
        );
        // A copy that claims one long frame does not widen its own tolerance.
        let v_unknown = |f: SegmentFacts| {
            let expect = Expect {
                frame: None,
                ..EXPECT
            };
            judge(&Ok(f), &init(true), n, expect)
        };
        assert_eq!(
            v_unknown(SegmentFacts {
                start: whole(n).start + 30_000,
                shortest_sample: 180_000,
                samples: 1,
                ..whole(n)
            }),
            Verdict::Unusable(Reason::Timing)
        );
        assert!(Verdict::Good.rank() > Verdict::Slate.rank());
        assert!(Verdict::Slate.rank() > Verdict::Damaged(Reason::Frames).rank());
    }

    #[test]
    fn whole_segments_at_29_97_fps_have_59_or_60_frames() {
        // 3003 ticks a frame at 90 kHz; an epoch-locked 2 s segment takes the frames that
        // start in it.
        let n = 900_000_000u64;
        let expect = Expect {
            frame: Some(3003),
            ..EXPECT
        };
        for samples in [59u64, 60] {
            let f = SegmentFacts {
                duration: samples * 3003,
                samples,
                shortest_sample: 3003,
                ..whole(n)
            };
            assert_eq!(
                judge(&Ok(f), &init(true), n, expect),
                Verdict::Good,
                "{samples}"
            );
        }
    }

    #[test]
    fn audio_is_not_counted_in_frames() {
        // AAC at 48 kHz: 2 s is 93.75 frames of 1024 samples; segments alternate 93 and 94.
        let audio = InitFacts {
            timescale: 48_000,
            ..init(false)
        };
        let n = 900_000_000u64;
        let start = (n * 2 - MEDIA_EPOCH_SECONDS) * 48_000 + 512;
        let f = SegmentFacts {
            start,
            duration: 94 * 1024,
            samples: 94,
            shortest_sample: 1024,
            starts_with_sync: true,
            slate: false,
            last: false,
        };
        let expect = Expect {
            frame: None,
            ..EXPECT
        };
        assert_eq!(judge(&Ok(f), &audio, n, expect), Verdict::Good);
    }
}
