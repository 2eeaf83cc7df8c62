//! The input actor: reads the live source forever (reconnecting after failures, looping files,
//! pacing inputs that arrive faster than real time), decodes, deinterlaces, and leaves the
//! pictures and the sound in the channel's feed, each placed on the output clock by its
//! timestamp (timeline.rs). Nothing here may stop the process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ffmpeg_next as ff;

use super::clock::ChannelClock;
use super::timeline::{Placement, INITIAL_LEAD};
use super::Feed;
use crate::encode::audio::Resampler;
use crate::ingest::decode::{AudioDecoder, VideoDecoder};
use crate::ingest::deinterlace::{Deinterlacer, FieldOrder};
use crate::ingest::live::{self as live_input, InputGuard, LiveSource, Watchdog};

/// Reads the input, forever: reconnects after failures, loops files, paces non-live inputs.
pub(super) struct InputLoop {
    pub(super) source: LiveSource,
    pub(super) guard: InputGuard,
    pub(super) deinterlace: crate::ingest::deinterlace::Mode,
    pub(super) feed: Arc<Feed>,
    pub(super) watchdog: Arc<Watchdog>,
    pub(super) stopping: Arc<AtomicBool>,
    pub(super) channel: String,
    pub(super) clock: Arc<ChannelClock>,
}

/// How long a blocking read may take before the input counts as stalled.
const READ_DEADLINE: Duration = Duration::from_secs(3);
/// A read blocked this long ended a stall.
const STALL: Duration = Duration::from_secs(2);
/// How long the input may deliver packets without a clean picture before it is reopened: once
/// pictures have flowed, and right after connecting (a decoder may wait a GOP for a keyframe).
const UNDECODABLE: Duration = Duration::from_millis(1500);
const UNDECODABLE_AT_START: Duration = Duration::from_secs(10);

impl InputLoop {
    pub(super) fn run(self) {
        let mut backoff = Duration::from_millis(200);
        let mut last_error = String::new();
        // Pictures and sound keep their sender's timing: one offset onto the output clock per
        // connection (timeline.rs); the passes of a looped file follow each other.
        let mut placement = Placement::default();
        while !self.stopping.load(Ordering::SeqCst) {
            self.watchdog.arm(Duration::from_secs(
                if matches!(self.source, LiveSource::Url(_)) {
                    3600
                } else {
                    10
                },
            ));
            match self.read_once(&mut placement) {
                Ok(ReadEnd::Ended) => {
                    tracing::info!(channel = %self.channel, "input ended");
                    self.feed.ended.store(true, Ordering::SeqCst);
                    return;
                }
                Ok(ReadEnd::Looped) => {
                    backoff = Duration::from_millis(200);
                    placement.next_pass();
                }
                Err(e) => {
                    placement = Placement::default();
                    let message = e.to_string();
                    if message != last_error {
                        tracing::warn!(channel = %self.channel, input = %self.source.describe(), "input: {message}; retrying");
                        last_error = message;
                    }
                    std::thread::sleep(backoff);
                    if !self.source.listens() {
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        }
    }

    fn read_once(&self, placement: &mut Placement) -> Result<ReadEnd, Box<dyn std::error::Error>> {
        let mut source = live_input::open(&self.source, &self.guard, self.watchdog.clone())?;
        // Network feeds are anyone's: only what a live feed is. Files are the operator's own.
        let untrusted = matches!(self.source, LiveSource::Url(_));
        if untrusted {
            live_input::check_feed(&source)?;
        }
        tracing::info!(channel = %self.channel, input = %self.source.describe(), "input connected");
        let video_index = source.video.index;
        let audio_index = source.audio.as_ref().map(|a| a.index);
        let stream = source
            .input
            .stream(video_index)
            .ok_or("video stream vanished")?;
        let mut video = VideoDecoder::open(&stream)?;
        let mut deinterlacer = Deinterlacer::new(
            self.deinterlace,
            FieldOrder::of(&stream),
            source.video.time_base,
        );
        let video_tb = f64::from(deinterlacer.output_time_base());
        let input_rate = source.video.frame_rate;
        let picture_interval_us = 1_000_000 * input_rate.den as u64
            / (input_rate.num as u64 * deinterlacer.rate_factor() as u64).max(1);
        self.feed
            .picture_interval_us
            .store(picture_interval_us, Ordering::Relaxed);
        let picture_interval = picture_interval_us as f64 / 1e6;
        let mut audio = match audio_index.and_then(|i| source.input.stream(i)) {
            Some(s) => Some(AudioDecoder::open(&s)?),
            None => None,
        };
        let audio_tb = source.audio.as_ref().map(|a| f64::from(a.time_base));
        let mut resampler = Resampler::default();
        let mut audio_refused = false;
        let pace = self.source.needs_pacing();
        // When the stream changes under the demuxer (a new codec on the same MPEG-TS PID, a PMT
        // that changes the stream type) packets keep coming and no clean picture does; past a
        // limit the input is reopened and probed again.
        let mut last_clean = Instant::now();
        let mut seen_clean = false;
        // Pacing origin: (input seconds, instant) of the first picture or after a jump.
        let mut origin: Option<(f64, Instant)> = None;
        let mut packet = ff::Packet::empty();
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return Ok(ReadEnd::Ended);
            }
            self.watchdog.arm(READ_DEADLINE);
            let read_started = Instant::now();
            match crate::ingest::read_packet(&mut source.input, &mut packet) {
                Ok(()) => {}
                Err(ff::Error::Eof) => break,
                Err(ff::Error::InvalidData) => continue,
                Err(e) => return Err(Box::new(e)),
            }
            // A read that blocked this long ended a stall: what it completes is old news.
            let stale = read_started.elapsed() > STALL;
            if packet.stream() == video_index {
                video.send(&packet);
                loop {
                    let errors = video.errors;
                    let Some(frame) = video.receive::<ff::frame::Video>() else {
                        break;
                    };
                    if video.errors != errors || stale {
                        continue; // damaged or stale: keep the last good picture (or the slate)
                    }
                    if untrusted && !live_input::picture_allowed(frame.width(), frame.height()) {
                        // The stream changed its picture size mid-way beyond the limit.
                        return Err(format!(
                            "refused: {}x{} pictures (at most 4096x2304)",
                            frame.width(),
                            frame.height()
                        )
                        .into());
                    }
                    last_clean = Instant::now();
                    seen_clean = true;
                    deinterlacer.push(frame, &mut |frame| {
                        if pace {
                            pace_to(&frame, video_tb, &mut origin);
                        }
                        let now = self.clock.now();
                        let at = match frame.timestamp() {
                            Some(ts) => {
                                placement.place(ts as f64 * video_tb, picture_interval, now)
                            }
                            None => now + INITIAL_LEAD,
                        };
                        tracing::trace!(channel = %self.channel, at, early = at - now, "picture placed");
                        self.feed.push_picture(at, frame);
                    })?;
                }
            } else if Some(packet.stream()) == audio_index {
                if let Some(decoder) = audio.as_mut() {
                    decoder.send(&packet);
                    while let Some(frame) = decoder.receive::<ff::frame::Audio>() {
                        let now = self.clock.now();
                        let at = match (frame.timestamp(), audio_tb) {
                            (Some(ts), Some(tb)) => placement.place(
                                ts as f64 * tb,
                                frame.samples() as f64 / f64::from(frame.rate().max(1)),
                                now,
                            ),
                            _ => now + INITIAL_LEAD,
                        };
                        let rate = crate::encode::audio::SAMPLE_RATE as f64;
                        let mapped = (at * rate).round() as i64;
                        let (position, correction) =
                            placement.sound.place(mapped, placement.timeline.steps);
                        tracing::trace!(channel = %self.channel, at, early = at - now, behind_mapped = mapped - position, correction = correction.samples, "sound placed");
                        let placed = resampler
                            .compensate(correction.samples, correction.span)
                            .and_then(|()| resampler.run(&frame));
                        match placed {
                            Ok([l, r]) => {
                                self.feed.push_audio(position, &l, &r);
                                placement.sound.placed(position, l.len());
                            }
                            // The channel goes on with silence; said once per connection.
                            Err(e) if !audio_refused => {
                                tracing::warn!(channel = %self.channel, "input audio: {e}; sending silence");
                                audio_refused = true;
                            }
                            Err(_) => {}
                        }
                    }
                }
            }
            // Before the first picture a decoder may wait a whole GOP for a keyframe.
            let limit = if seen_clean {
                UNDECODABLE
            } else {
                UNDECODABLE_AT_START
            };
            if last_clean.elapsed() > limit {
                return Err("input arrives but its video no longer decodes (codec or stream changed?); reopening".into());
            }
        }
        match &self.source {
            LiveSource::File { looped: false, .. } => Ok(ReadEnd::Ended),
            LiveSource::File { .. } | LiveSource::TestPattern { .. } => Ok(ReadEnd::Looped),
            LiveSource::Url(_) => Err("input stream ended".into()),
        }
    }
}

enum ReadEnd {
    Looped,
    Ended,
}

/// Sleeps until a file's or test pattern's picture is due by its timestamp. `origin` is the
/// (input seconds, instant) pacing starts from: the first picture, or the picture after a jump.
fn pace_to(frame: &ff::frame::Video, time_base: f64, origin: &mut Option<(f64, Instant)>) {
    let Some(ts) = frame.timestamp() else {
        return;
    };
    let t = ts as f64 * time_base;
    let (t0, i0) = *origin.get_or_insert((t, Instant::now()));
    let ahead = t - t0 - i0.elapsed().as_secs_f64();
    if !(-1.0..=1.0).contains(&ahead) {
        *origin = Some((t, Instant::now())); // a jump: pace from here
    } else if ahead > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(ahead));
    }
}
