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

/// Live presentation facts (epoch-locked: media time 0 is the Unix epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveTimeline {
    /// DASH `availabilityStartTime`; media time 0 maps to this instant.
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
    /// Set when the stream has ended (live-to-VOD): the media duration from media time 0
    /// of the first segment to the end of the last. MPD gets a Period duration and no
    /// `minimumUpdatePeriod`; HLS gets `ENDLIST`.
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
