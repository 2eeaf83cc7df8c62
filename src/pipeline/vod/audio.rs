//! The audio thread of a VOD job: decode, resample to 48 kHz stereo, AAC, segment, package.
//!
//! Audio is timed by sample count from the video's first picture: audio that starts late gets
//! silence before it (bounded), audio that starts early is trimmed, gaps are filled with
//! silence. Packets wait until the video has reached them, so the audio ends where the video
//! ends (one presentation duration for every track).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use ffmpeg_next as ff;

use crate::encode::{self, audio::AacEncoder};
use crate::ingest::{self, decode::AudioDecoder};
use crate::media::Rational;
use crate::package::{cmaf, Rendition, RenditionKind, SegmentEntry};
use crate::pipeline::segmenter::{Segmenter, Unit};
use crate::pipeline::track::{aac_track, bitrates, DirSink, TrackOutput};
use crate::pipeline::Error;

/// A gap in the source's audio longer than this is filled with silence.
const AUDIO_GAP_SECONDS: f64 = 0.1;
/// The longest silence filled in (audio starting late, or a hole in it); a longer one refuses
/// the job rather than encode that much silence.
const MAX_SILENCE_SECONDS: f64 = 600.0;

pub struct AudioWorker {
    pub input: String,
    pub dir: PathBuf,
    /// Video frames output so far (final once the audio channel closes).
    pub video_frames: Arc<AtomicU64>,
    pub frame_rate: Rational,
    pub time_base: ff::Rational,
    /// The video's first timestamp, in seconds: audio time zero.
    pub zero_seconds: f64,
    pub bitrate: u64,
    pub language: Option<String>,
    pub segment_duration: Duration,
}

pub struct AudioTrackResult {
    pub codecs: String,
    pub language: Option<String>,
    pub segments: Vec<SegmentEntry>,
    pub decode_errors: u64,
}

impl AudioTrackResult {
    pub fn rendition(&self) -> Rendition {
        let (peak, average) = bitrates(&self.segments, encode::audio::SAMPLE_RATE);
        Rendition {
            id: "audio".into(),
            kind: RenditionKind::Audio {
                sample_rate: encode::audio::SAMPLE_RATE,
                channels: encode::audio::CHANNELS,
                language: self.language.clone(),
            },
            codecs: self.codecs.clone(),
            peak_bitrate: peak,
            average_bitrate: average,
            timescale: encode::audio::SAMPLE_RATE,
            segments: self.segments.clone(),
        }
    }
}

impl AudioWorker {
    pub fn run(
        self,
        mut decoder: AudioDecoder,
        packets: Receiver<ff::Packet>,
    ) -> Result<AudioTrackResult, Error> {
        let encoder = AacEncoder::open(self.bitrate)?;
        let cmaf_track = aac_track(&encoder, self.bitrate)?;
        let codecs = cmaf_track.codec_string();
        let writer = TrackOutput::new(
            cmaf_track,
            Box::new(DirSink {
                dir: self.dir.clone(),
            }),
        )?;
        let mut track = AudioTrack {
            encoder,
            writer,
            segmenter: Segmenter::new(encode::audio::SAMPLE_RATE, self.segment_duration, 1024),
            pending: VecDeque::new(),
            started: false,
            worker: &self,
        };
        for packet in packets {
            decoder.send(&packet);
            while let Some(frame) = decoder.receive::<ff::frame::Audio>() {
                track.frame(frame)?;
            }
        }
        decoder.send_eof();
        while let Some(frame) = decoder.receive::<ff::frame::Audio>() {
            track.frame(frame)?;
        }
        let segments = track.finish()?;
        Ok(AudioTrackResult {
            codecs,
            language: self.language.clone(),
            segments,
            decode_errors: decoder.errors,
        })
    }

    /// Where the video ends so far, in samples at 48 kHz.
    fn video_end(&self) -> i64 {
        let frames = self.video_frames.load(Ordering::SeqCst) as i64;
        frames * encode::audio::SAMPLE_RATE as i64 * self.frame_rate.den as i64
            / self.frame_rate.num as i64
    }
}

/// The track being built: encoder, packets waiting for the video, segmenter, writer.
struct AudioTrack<'a> {
    encoder: AacEncoder,
    writer: TrackOutput,
    segmenter: Segmenter,
    /// Encoded packets the video has not reached yet.
    pending: VecDeque<encode::audio::Packet>,
    started: bool,
    worker: &'a AudioWorker,
}

impl AudioTrack<'_> {
    /// One decoded frame: placed on the video's clock (silence before or within, trimmed
    /// before the video's start), then encoded.
    fn frame(&mut self, frame: ff::frame::Audio) -> Result<(), Error> {
        if let Some(ts) = frame.timestamp() {
            let at = ts as f64 * f64::from(self.worker.time_base) - self.worker.zero_seconds;
            let gap = at - self.encoder.buffered_end_seconds();
            if gap > MAX_SILENCE_SECONDS {
                let what = if self.started {
                    "has a gap of"
                } else {
                    "starts"
                };
                return Err(ingest::Error::Unusable {
                    path: self.worker.input.clone(),
                    reason: format!(
                        "its audio {what} {gap:.1} s after the video's (at most {MAX_SILENCE_SECONDS} s of silence is filled in); remux it with its audio aligned, or without audio"
                    ),
                }
                .into());
            }
            if !self.started {
                if at > AUDIO_GAP_SECONDS {
                    tracing::info!("audio starts {at:.2} s after the video: silence before it");
                }
                self.encoder.align_start(at);
            } else if gap > AUDIO_GAP_SECONDS {
                let packets = self.encoder.push_silence(gap)?;
                self.take(packets)?;
            }
        }
        self.started = true;
        let packets = self.encoder.push(&frame)?;
        self.take(packets)
    }

    fn take(&mut self, packets: Vec<encode::audio::Packet>) -> Result<(), Error> {
        self.pending.extend(packets);
        self.release(self.worker.video_end())
    }

    /// Segments every pending packet that ends by `end` (samples).
    fn release(&mut self, end: i64) -> Result<(), Error> {
        while let Some(p) = self.pending.front() {
            if p.pts + p.duration as i64 > end {
                break;
            }
            let p = self.pending.pop_front().expect("front exists");
            if let Some(segment) = self.segmenter.push(Unit {
                data: p.data,
                pts: p.pts,
                dts: p.pts,
                sync: true,
            }) {
                self.writer.write(segment, cmaf::SegmentFlags::default())?;
            }
        }
        Ok(())
    }

    /// The input has ended and so has the video: keep the audio that starts before the
    /// video's end, drop the rest, write the last segments.
    fn finish(mut self) -> Result<Vec<SegmentEntry>, Error> {
        let packets = self.encoder.flush()?;
        self.take(packets)?;
        let end = self.worker.video_end();
        if let Some(last) = self.pending.iter().position(|p| p.pts >= end) {
            self.pending.truncate(last);
        }
        self.release(i64::MAX)?;
        for segment in self.segmenter.finish() {
            self.writer.write(segment, cmaf::SegmentFlags::default())?;
        }
        Ok(self.writer.segments)
    }
}
