//! One track from encoder packets to published CMAF: segmenting, packaging, and a sink that
//! stores the bytes (files for VOD, the origin for live).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ffmpeg_next as ff;

use super::segmenter::{Segment, Segmenter, Unit};
use super::{io_error, Error};
use crate::encode::{self, Backend};
use crate::media::{Rational, Rung, VideoCodec};
use crate::package::{self, cmaf, Rendition, RenditionKind, SegmentEntry};
use crate::scale::swscale::RungScaler;

/// Where a track's init and media segments go.
pub trait Sink: Send {
    /// The init segment, with the track's RFC 6381 codec string.
    fn init(&mut self, bytes: Vec<u8>, codecs: &str) -> Result<(), Error>;
    fn segment(&mut self, entry: SegmentEntry, bytes: Vec<u8>) -> Result<(), Error>;
}

/// Writes a track into its own folder (VOD; the folder is renamed into place at the end).
pub struct DirSink {
    pub dir: PathBuf,
}

impl Sink for DirSink {
    fn init(&mut self, bytes: Vec<u8>, _codecs: &str) -> Result<(), Error> {
        std::fs::create_dir_all(&self.dir).map_err(io_error(&self.dir))?;
        let path = self.dir.join(package::INIT_NAME);
        std::fs::write(&path, bytes).map_err(io_error(path))
    }
    fn segment(&mut self, entry: SegmentEntry, bytes: Vec<u8>) -> Result<(), Error> {
        let path = self.dir.join(package::segment_name(entry.number));
        std::fs::write(&path, bytes).map_err(io_error(path))
    }
}

/// Packages one track's segments and hands them to its sink.
pub struct TrackOutput {
    track: cmaf::Track,
    sink: Box<dyn Sink>,
    /// Ticks subtracted from segment times when they are written: the media timeline's zero
    /// (live: the presentation's availability start, not the Unix epoch).
    time_origin: u64,
    pub segments: Vec<SegmentEntry>,
}

impl TrackOutput {
    pub fn new(track: cmaf::Track, mut sink: Box<dyn Sink>) -> Result<Self, Error> {
        sink.init(track.init_segment()?, &track.codec_string())?;
        Ok(TrackOutput {
            track,
            sink,
            time_origin: 0,
            segments: Vec::new(),
        })
    }

    pub fn codec_string(&self) -> String {
        self.track.codec_string()
    }

    /// Writes media time relative to `ticks` (in the track's timescale).
    pub fn with_time_origin(mut self, ticks: u64) -> Self {
        self.time_origin = ticks;
        self
    }

    pub fn write(&mut self, segment: Segment, flags: cmaf::SegmentFlags) -> Result<(), Error> {
        // mfhd sequence numbers start at 1; epoch-locked numbers are far below u32::MAX per D ≥ 1 s
        // until 2106, and wrap harmlessly after.
        let sequence = (segment.number as u32).wrapping_add(1);
        let start = segment.start.saturating_sub(self.time_origin);
        let bytes = self
            .track
            .media_segment(sequence, start, &segment.samples, flags)?;
        let entry = SegmentEntry {
            number: segment.number,
            start,
            duration: segment.duration,
            bytes: bytes.len() as u64,
            discontinuity: false,
            slate: flags.slate,
        };
        self.segments.push(entry);
        self.sink.segment(entry, bytes)
    }
}

/// The CMAF track of an AAC encoder's output (48 kHz stereo, timescale = sample rate).
pub fn aac_track(encoder: &encode::audio::AacEncoder, bitrate: u64) -> Result<cmaf::Track, Error> {
    Ok(cmaf::Track::new(cmaf::TrackConfig::Audio {
        sample_rate: encode::audio::SAMPLE_RATE,
        channels: encode::audio::CHANNELS,
        timescale: encode::audio::SAMPLE_RATE,
        audio_specific_config: encoder.audio_specific_config(),
        bitrate,
    })?)
}

/// Peak segment bitrate and average bitrate of a track, bits per second.
pub fn bitrates(segments: &[SegmentEntry], timescale: u32) -> (u64, u64) {
    let seconds = |ticks: u64| ticks as f64 / timescale as f64;
    let peak = segments
        .iter()
        .map(|s| (s.bytes * 8) as f64 / seconds(s.duration).max(1e-3))
        .fold(0.0, f64::max);
    let total: u64 = segments.iter().map(|s| s.duration).sum();
    let bytes: u64 = segments.iter().map(|s| s.bytes).sum();
    let average = (bytes * 8) as f64 / seconds(total).max(1e-3);
    (peak.ceil() as u64, average.ceil() as u64)
}

/// One output frame for a rung: the shared source picture and its place on the output grid.
pub struct RungFrame {
    pub frame: Arc<ff::frame::Video>,
    /// Output frame index: presentation time = index × frame duration.
    pub index: i64,
    /// Start of a segment: encode as an IDR.
    pub force: bool,
    /// Slate (input lost), for the segment's `slat` brand.
    pub slate: bool,
}

/// What a rung thread produced.
pub struct VideoTrackResult {
    pub id: String,
    pub rung: Rung,
    pub codecs: String,
    pub timescale: u32,
    pub segments: Vec<SegmentEntry>,
}

impl VideoTrackResult {
    pub fn rendition(&self, frame_rate: Rational) -> Rendition {
        let (peak, average) = bitrates(&self.segments, self.timescale);
        Rendition {
            id: self.id.clone(),
            kind: RenditionKind::Video {
                width: self.rung.width,
                height: self.rung.height,
                frame_rate,
            },
            codecs: self.codecs.clone(),
            peak_bitrate: peak,
            average_bitrate: average,
            timescale: self.timescale,
            segments: self.segments.clone(),
        }
    }
}

/// How fast a rung works: media time encoded per second of its own work (scaling and
/// encoding), over its last segment. Above 1 it keeps up with real time.
#[derive(Debug, Default)]
pub struct RungSpeed {
    ratio_bits: std::sync::atomic::AtomicU64,
    frames: std::sync::atomic::AtomicU64,
}

impl RungSpeed {
    /// Frames encoded since the rung started (its restarts included).
    pub fn frames(&self) -> u64 {
        self.frames.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The last measurement; None before the first segment.
    pub fn ratio(&self) -> Option<f64> {
        let bits = self.ratio_bits.load(std::sync::atomic::Ordering::Relaxed);
        (bits != 0).then(|| f64::from_bits(bits))
    }

    fn set(&self, ratio: f64) {
        self.ratio_bits.store(
            ratio.max(f64::MIN_POSITIVE).to_bits(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

/// Scales, encodes and packages one rung on its own thread.
#[derive(Clone)]
pub struct RungWorker {
    pub rung: Rung,
    pub id: String,
    pub codec: VideoCodec,
    pub timescale: u32,
    pub frame_ticks: u64,
    pub segment_duration: Duration,
    /// Publish each segment the moment it is complete.
    pub live: bool,
    /// Media time zero in Unix-epoch seconds (live; 0 for VOD), see [`TrackOutput::with_time_origin`].
    pub time_origin_seconds: u64,
    /// Where the rung reports its speed (live channels show it).
    pub speed: Option<Arc<RungSpeed>>,
}

impl RungWorker {
    /// Runs until `frames` ends (its queue closes); the last segment is flagged `lmsg` when
    /// `mark_last`.
    pub fn run(
        self,
        mut encoder: Box<dyn Backend>,
        frames: impl IntoIterator<Item = RungFrame>,
        sink: Box<dyn Sink>,
        mark_last: bool,
    ) -> Result<VideoTrackResult, Error> {
        let track = cmaf::Track::new(cmaf::TrackConfig::Video {
            codec: self.codec,
            width: self.rung.width,
            height: self.rung.height,
            timescale: self.timescale,
            extradata: encoder.extradata(),
        })?;
        let codecs = track.codec_string();
        let mut output = TrackOutput::new(track, sink)?
            .with_time_origin(self.time_origin_seconds * self.timescale as u64);
        let mut scaler = RungScaler::new(self.rung.width, self.rung.height, encoder.pixel_format());
        let mut segmenter = Segmenter::new(
            self.timescale,
            self.segment_duration,
            self.frame_ticks as u32,
        );
        if self.live {
            segmenter = segmenter.without_tail_merge();
        }
        // Presentation times of slate frames not yet packaged.
        let mut slate_pts = BTreeSet::new();
        let flags_for = |segment: &Segment, slate_pts: &mut BTreeSet<i64>, last: bool| {
            let end = (segment.start + segment.duration) as i64;
            let slate = slate_pts.range(segment.start as i64..end).next().is_some();
            *slate_pts = slate_pts.split_off(&end);
            cmaf::SegmentFlags { slate, last }
        };
        let (mut busy, mut busy_frames) = (Duration::ZERO, 0u64);
        let frames_per_report = (self.segment_duration.as_secs_f64() * self.timescale as f64
            / self.frame_ticks as f64)
            .max(1.0) as u64;
        for msg in frames {
            let work_started = std::time::Instant::now();
            let mut frame = scaler
                .scale(&msg.frame)
                .map_err(|e| encode::Error::Encode {
                    backend: "swscale",
                    message: e.to_string(),
                })?;
            let pts = msg.index * self.frame_ticks as i64;
            frame.set_pts(Some(pts));
            if msg.slate {
                slate_pts.insert(pts);
            }
            for p in encoder.encode(&mut frame, msg.force)? {
                if let Some(segment) = segmenter.push(Unit {
                    data: p.data,
                    pts: p.pts,
                    dts: p.dts,
                    sync: p.keyframe,
                }) {
                    let flags = flags_for(&segment, &mut slate_pts, false);
                    output.write(segment, flags)?;
                }
            }
            if let Some(speed) = &self.speed {
                speed
                    .frames
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                busy += work_started.elapsed();
                busy_frames += 1;
                if busy_frames == frames_per_report {
                    let media =
                        busy_frames as f64 * self.frame_ticks as f64 / self.timescale as f64;
                    speed.set(media / busy.as_secs_f64().max(1e-6));
                    (busy, busy_frames) = (Duration::ZERO, 0);
                }
            }
        }
        for p in encoder.flush()? {
            if let Some(segment) = segmenter.push(Unit {
                data: p.data,
                pts: p.pts,
                dts: p.dts,
                sync: p.keyframe,
            }) {
                let flags = flags_for(&segment, &mut slate_pts, false);
                output.write(segment, flags)?;
            }
        }
        let rest = segmenter.finish();
        let count = rest.len();
        for (i, segment) in rest.into_iter().enumerate() {
            let flags = flags_for(&segment, &mut slate_pts, mark_last && i + 1 == count);
            output.write(segment, flags)?;
        }
        Ok(VideoTrackResult {
            id: self.id,
            rung: self.rung,
            codecs,
            timescale: self.timescale,
            segments: output.segments,
        })
    }
}
