//! The snapshot a manifest is rendered from: renditions, their segments, and the timeline.
//!
//! Built by the pipeline (VOD) or the live window (live); rendered by `hls` and `dash`.
//! Paths are relative to the presentation's top folder: rendition `id` is also its folder.

use std::time::{Duration, SystemTime};

use crate::media::Rational;

/// Everything a manifest needs to know about one presentation at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Presentation {
    /// Nominal segment duration D: segment n covers media time [n·D, (n+1)·D).
    pub segment_duration: Duration,
    /// Video renditions, top rung first, then audio renditions.
    pub renditions: Vec<Rendition>,
    pub timeline: Timeline,
}

/// VOD or live.
#[derive(Debug, Clone, PartialEq)]
pub enum Timeline {
    /// A finished presentation: static MPD, HLS `PLAYLIST-TYPE:VOD` and `ENDLIST`.
    Vod,
    Live(LiveTimeline),
}

/// Live presentation facts (epoch-locked: segment numbers count from the Unix epoch, media
/// time from `availability_start`; docs/timing.md).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveTimeline {
    /// DASH `availabilityStartTime`; media time 0 (tfdt 0) is this instant. It lies a whole
    /// number of segment durations after the Unix epoch, so segment numbers count segments
    /// since the Unix epoch (DASH `startNumber` = that number).
    pub availability_start: SystemTime,
    /// DVR window: DASH `timeShiftBufferDepth`; HLS keeps this much in the playlist.
    pub time_shift_buffer: Duration,
    /// DASH `minimumUpdatePeriod`.
    pub minimum_update_period: Duration,
    /// DASH `suggestedPresentationDelay`.
    pub suggested_presentation_delay: Duration,
    /// Absolute or origin-relative URL of the origin's clock (`/time`), for DASH `UTCTiming`.
    pub utc_timing_url: String,
    /// DASH `publishTime`.
    pub publish_time: SystemTime,
    /// HLS `EXT-X-DISCONTINUITY-SEQUENCE`: how many segments flagged `discontinuity` have
    /// slid out of the window (before its first segment; the first segment's own flag is still
    /// in the window). Every rendition's window starts at the same number, so one count serves
    /// them all. Only grows.
    pub discontinuity_sequence: u64,
    /// Set when the stream has ended (live-to-VOD): the media duration from media time 0
    /// of the first segment to the end of the last. MPD gets a Period duration and no
    /// `minimumUpdatePeriod`; HLS gets `ENDLIST`. The renderers take the end itself from the
    /// last segments (the window always holds them), so only `is_some()` matters to them.
    pub ended: Option<Duration>,
}

/// One CMAF track with its own folder, init segment, playlist and segments.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendition {
    /// Representation id and folder name, e.g. `720p` or `audio`.
    pub id: String,
    pub kind: RenditionKind,
    /// RFC 6381 codec string from the real parameter sets, e.g. `avc1.64001f`.
    pub codecs: String,
    /// Peak segment bitrate, bits per second (HLS BANDWIDTH, DASH @bandwidth).
    pub peak_bitrate: u64,
    /// Average bitrate over the presentation, bits per second.
    pub average_bitrate: u64,
    /// Ticks per second of the track's media time.
    pub timescale: u32,
    /// Segments in order; numbers are consecutive unless a slate or gap says otherwise.
    pub segments: Vec<SegmentEntry>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RenditionKind {
    Video {
        width: u32,
        height: u32,
        frame_rate: Rational,
    },
    Audio {
        sample_rate: u32,
        channels: u32,
        language: Option<String>,
    },
}

/// One published media segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentEntry {
    /// Segment number n (covers [n·D, (n+1)·D)); also its file name.
    pub number: u64,
    /// Media time of its first sample (tfdt), in the rendition's timescale.
    pub start: u64,
    /// Real duration in the rendition's timescale.
    pub duration: u64,
    /// Size in bytes (for bitrates).
    pub bytes: u64,
    /// Media timing changes before this segment (HLS `EXT-X-DISCONTINUITY`).
    pub discontinuity: bool,
    /// A slate segment (input lost).
    pub slate: bool,
}

impl Rendition {
    pub fn is_video(&self) -> bool {
        matches!(self.kind, RenditionKind::Video { .. })
    }

    /// Duration of segment `s` in seconds.
    pub fn seconds(&self, ticks: u64) -> f64 {
        ticks as f64 / self.timescale as f64
    }
}

impl Presentation {
    pub fn video(&self) -> impl Iterator<Item = &Rendition> {
        self.renditions.iter().filter(|r| r.is_video())
    }

    pub fn audio(&self) -> impl Iterator<Item = &Rendition> {
        self.renditions.iter().filter(|r| !r.is_video())
    }
}

/// Snapshots shared by the manifest tests: a fake clock, numbers worked out by hand.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::time::UNIX_EPOCH;

    use super::*;

    /// Nominal segment duration of every fixture.
    pub const D: Duration = Duration::from_secs(2);
    /// The fake clock of the live fixtures: 2023-11-14T22:13:20.500Z.
    pub const NOW_MS: u64 = 1_700_000_000_500;
    /// Last complete segment at `NOW_MS`: segment n ends at (n+1)·D ≤ now.
    pub const LIVE_LAST: u64 = NOW_MS / 2000 - 1;
    /// First segment of the live window: 16 segments, a little more than the 30 s DVR.
    pub const LIVE_FIRST: u64 = LIVE_LAST - 15;

    pub fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(NOW_MS)
    }

    /// Segments `first..=last` cut the way the segmenter cuts: segment n starts at the first
    /// frame at or after n·D (`frame` ticks per frame); the last ends after `last_len` of D.
    fn cut(timescale: u32, frame: u64, first: u64, last: u64, last_len: f64) -> Vec<SegmentEntry> {
        let d = D.as_secs() * timescale as u64;
        let edge = |n: u64| (n * d).div_ceil(frame) * frame;
        (first..=last)
            .map(|n| {
                let start = edge(n);
                let end = if n == last {
                    let nominal = n * d + (last_len * d as f64) as u64;
                    nominal.div_ceil(frame) * frame
                } else {
                    edge(n + 1)
                };
                let duration = end - start;
                SegmentEntry {
                    number: n,
                    start,
                    duration,
                    bytes: duration * 40,
                    discontinuity: false,
                    slate: false,
                }
            })
            .collect()
    }

    fn video(
        id: &str,
        width: u32,
        height: u32,
        peak: u64,
        segments: Vec<SegmentEntry>,
    ) -> Rendition {
        Rendition {
            id: id.into(),
            kind: RenditionKind::Video {
                width,
                height,
                frame_rate: Rational::new(30000, 1001),
            },
            codecs: match height {
                1080 => "avc1.640028".into(),
                720 => "avc1.64001f".into(),
                _ => "avc1.4d401e".into(),
            },
            peak_bitrate: peak,
            average_bitrate: peak * 4 / 5,
            timescale: 90_000,
            segments,
        }
    }

    fn audio(segments: Vec<SegmentEntry>) -> Rendition {
        Rendition {
            id: "audio".into(),
            kind: RenditionKind::Audio {
                sample_rate: 48_000,
                channels: 2,
                language: Some("en".into()),
            },
            codecs: "mp4a.40.2".into(),
            peak_bitrate: 132_000,
            average_bitrate: 128_000,
            timescale: 48_000,
            segments,
        }
    }

    /// 9.5 s at 29.97 fps: segments 0..=4 of D = 2 s, the last 1.5 s long; AAC audio.
    pub fn vod() -> Presentation {
        let v = || cut(90_000, 3003, 0, 4, 0.75);
        Presentation {
            segment_duration: D,
            renditions: vec![
                video("1080p", 1920, 1080, 6_000_000, v()),
                video("720p", 1280, 720, 3_000_000, v()),
                video("360p", 640, 360, 800_000, v()),
                audio(cut(48_000, 1024, 0, 4, 0.75)),
            ],
            timeline: Timeline::Vod,
        }
    }

    pub fn video_only() -> Presentation {
        let mut p = vod();
        p.renditions.retain(|r| r.is_video());
        p
    }

    pub fn audio_only() -> Presentation {
        let mut p = vod();
        p.renditions.retain(|r| !r.is_video());
        p
    }

    /// Epoch-locked live window `LIVE_FIRST..=LIVE_LAST` at `now()`: input lost for two
    /// segments (slate, a discontinuity before and after it), three discontinuities already
    /// slid out of the window.
    pub fn live() -> Presentation {
        let mark = |mut segs: Vec<SegmentEntry>| {
            for s in &mut segs {
                let k = s.number - LIVE_FIRST;
                s.slate = k == 8 || k == 9;
                s.discontinuity = k == 8 || k == 10;
            }
            segs
        };
        let v = || mark(cut(90_000, 3003, LIVE_FIRST, LIVE_LAST, 1.0));
        Presentation {
            segment_duration: D,
            renditions: vec![
                video("720p", 1280, 720, 3_000_000, v()),
                video("360p", 640, 360, 800_000, v()),
                audio(mark(cut(48_000, 1024, LIVE_FIRST, LIVE_LAST, 1.0))),
            ],
            timeline: Timeline::Live(LiveTimeline {
                availability_start: UNIX_EPOCH,
                time_shift_buffer: Duration::from_secs(30),
                minimum_update_period: D,
                suggested_presentation_delay: Duration::from_secs(6),
                utc_timing_url: "/time?format=iso&x=1".into(),
                publish_time: now(),
                discontinuity_sequence: 3,
                ended: None,
            }),
        }
    }

    /// `live()` after the input stopped 1.2 s into segment `LIVE_LAST`.
    pub fn live_ended() -> Presentation {
        let mut p = live();
        for r in &mut p.renditions {
            let frame = if r.is_video() { 3003 } else { 1024 };
            let last = r.segments.last_mut().unwrap();
            let nominal_end = (LIVE_LAST * 2 + 1) * r.timescale as u64 + r.timescale as u64 / 5;
            last.duration = nominal_end.div_ceil(frame) * frame - last.start;
        }
        if let Timeline::Live(live) = &mut p.timeline {
            live.ended = Some(Duration::from_millis(LIVE_LAST * 2000 + 1200));
        }
        p
    }

    pub use crate::package::MEDIA_EPOCH_SECONDS;

    /// `p` (a live fixture) as the daemon publishes it: media time from 2000-01-01.
    pub fn from_media_epoch(mut p: Presentation) -> Presentation {
        for r in &mut p.renditions {
            let shift = MEDIA_EPOCH_SECONDS * r.timescale as u64;
            for s in &mut r.segments {
                s.start -= shift;
            }
        }
        if let Timeline::Live(live) = &mut p.timeline {
            live.availability_start = UNIX_EPOCH + Duration::from_secs(MEDIA_EPOCH_SECONDS);
            if let Some(ended) = live.ended.as_mut() {
                *ended -= Duration::from_secs(MEDIA_EPOCH_SECONDS);
            }
        }
        p
    }

    /// Compares `actual` with `src/package/testdata/{name}`; `ENCORE_BLESS=1` rewrites the file.
    pub fn golden(name: &str, actual: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/package/testdata")
            .join(name);
        if std::env::var_os("ENCORE_BLESS").is_some_and(|v| v == "1") {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, actual).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run the test with ENCORE_BLESS=1 to create it)",
                path.display()
            )
        });
        assert!(
            expected == actual,
            "{name} differs from its golden file (ENCORE_BLESS=1 to accept):\n{actual}"
        );
    }
}
