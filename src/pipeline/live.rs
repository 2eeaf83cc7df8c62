//! Live channels: an input, a frame synchroniser on the wall clock, the ladder, a publisher.
//!
//! Output time is the wall clock (epoch locking): output frame k is shown at k / fps seconds
//! after the Unix epoch and segment n covers [n·D, (n+1)·D). The synchroniser picks, at each
//! output instant, the newest input picture; when the input has been silent for about one
//! segment it sends the slate instead, and real pictures return as soon as the input does.
//! So numbering never breaks, input timestamps never reach the output, and two appliances fed
//! the same source cut identical segments with identical numbers.
//!
//! Nothing here may stop the process: every input failure is logged and retried.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, Receiver, Sender};
use ffmpeg_next as ff;

use super::segmenter::{Segmenter, Unit};
use super::track::{aac_track, bitrates, RungFrame, RungWorker, Sink, TrackOutput};
use super::Error;
use crate::encode::{self, audio::AacEncoder, audio::Resampler, Kind, RateControl};
use crate::ingest::decode::{AudioDecoder, VideoDecoder};
use crate::ingest::deinterlace::{Deinterlacer, FieldOrder};
use crate::ingest::live::{self as live_input, LiveSource, Watchdog};
use crate::media::{Ladder, Rational, VideoCodec};
use crate::package::{
    self, cmaf, LiveTimeline, Presentation, Rendition, RenditionKind, SegmentEntry, Timeline,
};

/// Where a channel's segments and manifests go (the origin, in the daemon).
pub trait Publisher: Send + Sync + 'static {
    fn init(&self, rendition: &str, bytes: Vec<u8>);
    fn segment(&self, rendition: &str, number: u64, bytes: Vec<u8>);
    /// `path` relative to the channel: `master.m3u8`, `manifest.mpd`, `{rendition}/index.m3u8`.
    fn manifest(&self, path: &str, text: String);
    /// Segments numbered below `number` left the DVR window.
    fn evict_before(&self, number: u64);
    /// The stream has ended; what is published stays as VOD.
    fn end(&self);
}

/// One live channel's settings.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    pub name: String,
    pub input: LiveSource,
    /// Output picture size and rate; the ladder is planned from it and every input is scaled to it.
    pub width: u32,
    pub height: u32,
    pub frame_rate: Rational,
    pub ladder: Option<Ladder>,
    pub codec: VideoCodec,
    pub preset: String,
    pub backend: Kind,
    /// The VA-API render node, for the vaapi backend.
    pub vaapi_node: std::path::PathBuf,
    pub segment_duration: Duration,
    pub dvr_window: Duration,
    pub audio_bitrate: u64,
    /// Interlaced inputs: deinterlaced one picture per frame (auto), per field, or not at all.
    pub deinterlace: crate::ingest::deinterlace::Mode,
    /// Origin path of the clock endpoint for DASH UTCTiming.
    pub utc_timing_url: String,
}

/// A running channel. Dropping it does not stop it: call `stop` and `join`.
pub struct Channel {
    pub name: String,
    /// Video rendition ids, top rung first.
    pub renditions: Vec<String>,
    watchdog: Arc<Watchdog>,
    stopping: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Channel {
    /// Stops taking input, closes the current segment, publishes the final manifests.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.watchdog.stop();
    }

    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// The newest input picture and the ring of input sound, shared by the input and the clocks.
#[derive(Default)]
struct Feed {
    video: Mutex<Option<(Arc<ff::frame::Video>, Instant)>>,
    audio: Mutex<[VecDeque<f32>; 2]>,
    /// The input ended for good (a file played once).
    ended: AtomicBool,
    /// The input's picture interval in microseconds (0 until known): a slow input (1 fps)
    /// is not lost between two of its pictures.
    picture_interval_us: std::sync::atomic::AtomicU64,
}

/// Media time zero of every live channel: 2000-01-01T00:00:00Z, the DASH availabilityStartTime.
/// Segment numbers still count D-long segments since the Unix epoch (this instant is a whole
/// number of segments after it, since live D divides a day); media time starts here because
/// some clients read an availabilityStartTime of 1970 as absent.
pub const MEDIA_EPOCH_SECONDS: u64 = 946_684_800;

/// Live segment durations divide a day, so segment edges fall on whole days and on the media epoch.
pub const DAY_MS: u128 = 86_400_000;

/// Sound kept buffered at most (beyond it, the oldest is dropped to hold latency).
const AUDIO_MAX_BUFFER: f64 = 0.5;
/// How long after its instant an output frame is sent, to absorb input jitter.
const OUTPUT_DELAY: Duration = Duration::from_millis(60);

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn sleep_until_epoch(t: f64, stopping: &AtomicBool) {
    loop {
        let left = t - epoch_now();
        if left <= 0.0 || stopping.load(Ordering::SeqCst) {
            return;
        }
        std::thread::sleep(Duration::from_secs_f64(left.min(0.1)));
    }
}

/// Starts a channel: opens its encoders (errors here are the caller's), then runs its threads.
pub fn start(config: ChannelConfig, publisher: Arc<dyn Publisher>) -> Result<Channel, Error> {
    let seconds = config.segment_duration.as_secs_f64();
    if !(1.0..=10.0).contains(&seconds) || DAY_MS % config.segment_duration.as_millis() != 0 {
        return Err(Error::SegmentDuration(seconds));
    }
    let ladder = config
        .ladder
        .clone()
        .unwrap_or_else(|| Ladder::default_for(config.codec));
    let rungs = ladder.plan(
        config.width,
        config.height,
        config.width as f64 / config.height as f64,
    )?;
    let fps = config.frame_rate;
    let timescale = fps.video_timescale();
    let frame_ticks = fps.frame_ticks(timescale);
    let gop = fps.frames_in(seconds);
    let slate = Arc::new(live_input::slate_picture(config.width, config.height)?);

    let candidates = encode::backend::candidates();
    let configs: Vec<encode::Config> = rungs
        .iter()
        .map(|rung| encode::Config {
            codec: config.codec,
            width: rung.width,
            height: rung.height,
            frame_rate: fps,
            timescale,
            bitrate: rung.bitrate,
            rate_control: RateControl::Capped,
            preset: config.preset.clone(),
            gop,
            low_latency: true,
            device: encode::DeviceInput {
                vaapi_node: config.vaapi_node.clone(),
                ..Default::default()
            },
        })
        .collect();
    let encoders = encode::select_ladder(&config.backend, &candidates, &configs)?;

    let watchdog = Arc::new(Watchdog::default());
    let stopping = Arc::new(AtomicBool::new(false));
    let feed = Arc::new(Feed::default());
    let (events_tx, events_rx) = bounded::<Event>(256);
    let mut threads = Vec::new();
    let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(f)
            .map_err(|e| Error::Thread(format!("{name}: {e}")))
    };

    // Renditions as the publisher will describe them.
    let mut tracks: Vec<TrackInfo> = rungs
        .iter()
        .map(|r| TrackInfo {
            id: r.id(&rungs),
            kind: RenditionKind::Video {
                width: r.width,
                height: r.height,
                frame_rate: fps,
            },
            target_bitrate: r.bitrate,
            timescale,
        })
        .collect();
    tracks.push(TrackInfo {
        id: "audio".into(),
        kind: RenditionKind::Audio {
            sample_rate: encode::audio::SAMPLE_RATE,
            channels: encode::audio::CHANNELS,
            language: None,
        },
        target_bitrate: config.audio_bitrate,
        timescale: encode::audio::SAMPLE_RATE,
    });

    // Everything starts at the next segment boundary, so the first segment is whole.
    let first_segment = (epoch_now() / seconds).floor() as u64 + 1;
    let start_seconds = first_segment as f64 * seconds;

    let mut rung_senders = Vec::new();
    for (i, (rung, encoder)) in rungs.iter().zip(encoders).enumerate() {
        let (tx, rx) = bounded::<RungFrame>(4);
        rung_senders.push(tx);
        let worker = RungWorker {
            rung: *rung,
            id: rung.id(&rungs),
            codec: config.codec,
            timescale,
            frame_ticks,
            segment_duration: config.segment_duration,
            live: true,
            time_origin_seconds: MEDIA_EPOCH_SECONDS,
        };
        let sink = Box::new(EventSink {
            track: i,
            events: events_tx.clone(),
        });
        let name = config.name.clone();
        threads.push(spawn(
            format!("{}-{}p", config.name, rung.height),
            Box::new(move || {
                if let Err(e) = worker.run(encoder, rx, sink, true) {
                    tracing::error!(channel = %name, "rung stopped: {e}");
                }
            }),
        )?);
    }

    let audio_track = tracks.len() - 1;
    let audio = AudioClock {
        feed: feed.clone(),
        stopping: stopping.clone(),
        start_seconds,
        segment_duration: config.segment_duration,
        bitrate: config.audio_bitrate,
        sink: Box::new(EventSink {
            track: audio_track,
            events: events_tx.clone(),
        }),
    };
    let name = config.name.clone();
    threads.push(spawn(
        format!("{}-audio", config.name),
        Box::new(move || {
            if let Err(e) = audio.run() {
                tracing::error!(channel = %name, "audio stopped: {e}");
            }
        }),
    )?);
    drop(events_tx);

    let video = VideoClock {
        feed: feed.clone(),
        stopping: stopping.clone(),
        fps,
        frame_ticks,
        timescale,
        segment_duration: config.segment_duration,
        start_seconds,
        slate,
        loss_timeout: config.segment_duration.max(Duration::from_secs(1)),
        channel: config.name.clone(),
    };
    threads.push(spawn(
        format!("{}-clock", config.name),
        Box::new(move || video.run(rung_senders)),
    )?);

    let input = InputLoop {
        source: config.input.clone(),
        deinterlace: config.deinterlace,
        feed,
        watchdog: watchdog.clone(),
        stopping: stopping.clone(),
        channel: config.name.clone(),
    };
    threads.push(spawn(
        format!("{}-input", config.name),
        Box::new(move || input.run()),
    )?);

    let publish = PublishLoop {
        publisher,
        tracks,
        segment_duration: config.segment_duration,
        dvr_window: config.dvr_window,
        utc_timing_url: config.utc_timing_url.clone(),
    };
    threads.push(spawn(
        format!("{}-publish", config.name),
        Box::new(move || publish.run(events_rx)),
    )?);

    tracing::info!(channel = %config.name, input = %config.input.describe(), rungs = rungs.len(), first_segment, "channel started");
    let renditions = rungs.iter().map(|r| r.id(&rungs)).collect();
    Ok(Channel {
        name: config.name,
        renditions,
        watchdog,
        stopping,
        threads,
    })
}

/// Reads the input, forever: reconnects after failures, loops files, paces non-live inputs.
struct InputLoop {
    source: LiveSource,
    deinterlace: crate::ingest::deinterlace::Mode,
    feed: Arc<Feed>,
    watchdog: Arc<Watchdog>,
    stopping: Arc<AtomicBool>,
    channel: String,
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
    fn run(self) {
        let mut backoff = Duration::from_millis(200);
        let mut last_error = String::new();
        while !self.stopping.load(Ordering::SeqCst) {
            self.watchdog.arm(Duration::from_secs(
                if matches!(self.source, LiveSource::Url(_)) {
                    3600
                } else {
                    10
                },
            ));
            match self.read_once() {
                Ok(ReadEnd::Ended) => {
                    tracing::info!(channel = %self.channel, "input ended");
                    self.feed.ended.store(true, Ordering::SeqCst);
                    return;
                }
                Ok(ReadEnd::Looped) => backoff = Duration::from_millis(200),
                Err(e) => {
                    let message = e.to_string();
                    if message != last_error {
                        tracing::warn!(channel = %self.channel, input = %self.source.describe(), "input: {message}; retrying");
                        last_error = message;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    fn read_once(&self) -> Result<ReadEnd, Box<dyn std::error::Error>> {
        let mut source = live_input::open(&self.source, self.watchdog.clone())?;
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
        drop(stream);
        let video_tb = f64::from(deinterlacer.output_time_base());
        let input_rate = source.video.frame_rate;
        self.feed.picture_interval_us.store(
            1_000_000 * input_rate.den as u64
                / (input_rate.num as u64 * deinterlacer.rate_factor() as u64).max(1),
            Ordering::Relaxed,
        );
        let mut audio = match audio_index.and_then(|i| source.input.stream(i)) {
            Some(s) => Some(AudioDecoder::open(&s)?),
            None => None,
        };
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
                    last_clean = Instant::now();
                    seen_clean = true;
                    deinterlacer.push(frame, &mut |frame| {
                        if pace {
                            pace_to(&frame, video_tb, &mut origin);
                        }
                        *self.feed.video.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some((Arc::new(frame), Instant::now()));
                    })?;
                }
            } else if Some(packet.stream()) == audio_index {
                if let Some(decoder) = audio.as_mut() {
                    decoder.send(&packet);
                    while let Some(frame) = decoder.receive::<ff::frame::Audio>() {
                        match resampler.run(&frame) {
                            Ok([l, r]) => {
                                let mut ring =
                                    self.feed.audio.lock().unwrap_or_else(|e| e.into_inner());
                                ring[0].extend(l);
                                ring[1].extend(r);
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

/// Sends one picture per output instant to every rung.
struct VideoClock {
    feed: Arc<Feed>,
    stopping: Arc<AtomicBool>,
    fps: Rational,
    frame_ticks: u64,
    timescale: u32,
    segment_duration: Duration,
    start_seconds: f64,
    slate: Arc<ff::frame::Video>,
    loss_timeout: Duration,
    channel: String,
}

impl VideoClock {
    fn run(self, rungs: Vec<Sender<RungFrame>>) {
        let segment_ms = self.segment_duration.as_millis() as u128;
        let segment_of = |k: i64| {
            (k.max(0) as u128 * self.frame_ticks as u128 * 1000)
                / (segment_ms * self.timescale as u128)
        };
        let mut k = first_frame_at_or_after(self.start_seconds, self.fps);
        let mut previous_segment = None;
        let mut lost = true;
        loop {
            let due = frame_time(k, self.fps) + OUTPUT_DELAY.as_secs_f64();
            sleep_until_epoch(due, &self.stopping);
            if self.stopping.load(Ordering::SeqCst) || self.feed.ended.load(Ordering::SeqCst) {
                break;
            }
            let behind = epoch_now() - due;
            if behind > self.segment_duration.as_secs_f64() / 2.0 {
                // Overloaded or suspended: skip to now rather than fall further behind.
                tracing::warn!(channel = %self.channel, "{behind:.2} s behind the clock; skipping ahead");
                k = first_frame_at_or_after(epoch_now(), self.fps);
                continue;
            }
            // Lost: nothing for a segment (at least 1 s), or for three of the input's pictures.
            let interval = self.feed.picture_interval_us.load(Ordering::Relaxed);
            let loss_timeout = self.loss_timeout.max(Duration::from_micros(interval * 3));
            let picture = self
                .feed
                .video
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let (frame, slate) = match picture {
                Some((frame, at)) if at.elapsed() < loss_timeout => (frame, false),
                _ => (self.slate.clone(), true),
            };
            if slate != lost {
                if slate {
                    tracing::warn!(channel = %self.channel, "input lost: sending slate");
                } else {
                    tracing::info!(channel = %self.channel, "input restored");
                }
                lost = slate;
            }
            let segment = segment_of(k);
            let force = previous_segment != Some(segment);
            previous_segment = Some(segment);
            for tx in &rungs {
                // A rung that stopped has reported its error; the others go on.
                let _ = tx.send(RungFrame {
                    frame: frame.clone(),
                    index: k,
                    force,
                    slate,
                });
            }
            k += 1;
        }
    }
}

/// Output frame `k` is shown at k·den/num seconds after the Unix epoch (exact for fractional
/// rates such as 30000/1001). A segment holds the frames shown in its [n·D, (n+1)·D): at
/// 29.97 fps and D = 2 s that is 60 frames, or 59 about every 17th segment (60000 frames in
/// every 1001 segments); every rung cuts at the same frames.
fn frame_time(k: i64, fps: Rational) -> f64 {
    (k as i128 * fps.den as i128) as f64 / fps.num as f64
}

/// The first output frame shown at or after `seconds` since the Unix epoch.
fn first_frame_at_or_after(seconds: f64, fps: Rational) -> i64 {
    // Microsecond resolution keeps the product exact in integers.
    let micros = (seconds * 1e6).round() as i128;
    let num = micros * fps.num as i128;
    let den = 1_000_000i128 * fps.den as i128;
    ((num + den - 1) / den) as i64
}

/// Pulls sound from the feed on the wall clock (silence when there is none) and encodes it.
struct AudioClock {
    feed: Arc<Feed>,
    stopping: Arc<AtomicBool>,
    start_seconds: f64,
    segment_duration: Duration,
    bitrate: u64,
    sink: Box<dyn Sink>,
}

impl AudioClock {
    fn run(self) -> Result<(), Error> {
        let rate = encode::audio::SAMPLE_RATE as f64;
        let mut encoder = AacEncoder::open(self.bitrate)?;
        let track = aac_track(&encoder, self.bitrate)?;
        let mut output = TrackOutput::new(track, self.sink)?
            .with_time_origin(MEDIA_EPOCH_SECONDS * encode::audio::SAMPLE_RATE as u64);
        let mut segmenter = Segmenter::new(encode::audio::SAMPLE_RATE, self.segment_duration, 1024)
            .without_tail_merge();
        let start = (self.start_seconds * rate).round() as i64;
        let chunk = 1024usize;
        let mut position = start;
        let max_buffer = (AUDIO_MAX_BUFFER * rate) as usize;
        let mut write =
            |packets: Vec<encode::audio::Packet>, output: &mut TrackOutput| -> Result<(), Error> {
                for p in packets {
                    let pts = start + p.pts;
                    if let Some(segment) = segmenter.push(Unit {
                        data: p.data,
                        pts,
                        dts: pts,
                        sync: true,
                    }) {
                        output.write(segment, cmaf::SegmentFlags::default())?;
                    }
                }
                Ok(())
            };
        loop {
            let due = (position + chunk as i64) as f64 / rate + OUTPUT_DELAY.as_secs_f64();
            sleep_until_epoch(due, &self.stopping);
            if self.stopping.load(Ordering::SeqCst) || self.feed.ended.load(Ordering::SeqCst) {
                break;
            }
            let (mut left, mut right) = (Vec::with_capacity(chunk), Vec::with_capacity(chunk));
            {
                let mut ring = self.feed.audio.lock().unwrap_or_else(|e| e.into_inner());
                let excess = ring[0].len().saturating_sub(max_buffer);
                for ch in ring.iter_mut() {
                    ch.drain(..excess.min(ch.len()));
                }
                let take = ring[0].len().min(ring[1].len()).min(chunk);
                left.extend(ring[0].drain(..take));
                right.extend(ring[1].drain(..take));
            }
            left.resize(chunk, 0.0);
            right.resize(chunk, 0.0);
            write(encoder.push_planar(&left, &right)?, &mut output)?;
            position += chunk as i64;
        }
        write(encoder.flush()?, &mut output)?;
        let rest = segmenter.finish();
        let count = rest.len();
        for (i, segment) in rest.into_iter().enumerate() {
            output.write(
                segment,
                cmaf::SegmentFlags {
                    slate: false,
                    last: i + 1 == count,
                },
            )?;
        }
        Ok(())
    }
}

/// A track's output as events for the publisher.
enum Event {
    Init {
        track: usize,
        bytes: Vec<u8>,
        codecs: String,
    },
    Segment {
        track: usize,
        entry: SegmentEntry,
        bytes: Vec<u8>,
    },
}

struct EventSink {
    track: usize,
    events: Sender<Event>,
}

impl Sink for EventSink {
    fn init(&mut self, bytes: Vec<u8>, codecs: &str) -> Result<(), Error> {
        let _ = self.events.send(Event::Init {
            track: self.track,
            bytes,
            codecs: codecs.into(),
        });
        Ok(())
    }
    fn segment(&mut self, entry: SegmentEntry, bytes: Vec<u8>) -> Result<(), Error> {
        let _ = self.events.send(Event::Segment {
            track: self.track,
            entry,
            bytes,
        });
        Ok(())
    }
}

struct TrackInfo {
    id: String,
    kind: RenditionKind,
    target_bitrate: u64,
    timescale: u32,
}

/// Publishes segments as they come and keeps the manifests of the live window current.
struct PublishLoop {
    publisher: Arc<dyn Publisher>,
    tracks: Vec<TrackInfo>,
    segment_duration: Duration,
    dvr_window: Duration,
    utc_timing_url: String,
}

/// Media time covered by every rendition's window: from the latest first segment start to the
/// earliest last segment end.
fn published_span(tracks: &[TrackInfo], windows: &[VecDeque<SegmentEntry>]) -> Duration {
    let seconds = |ticks: u64, t: &TrackInfo| ticks as f64 / t.timescale as f64;
    let mut first = f64::MIN;
    let mut last = f64::MAX;
    for (t, w) in tracks.iter().zip(windows) {
        match (w.front(), w.back()) {
            (Some(a), Some(b)) => {
                first = first.max(seconds(a.start, t));
                last = last.min(seconds(b.start + b.duration, t));
            }
            _ => return Duration::ZERO,
        }
    }
    Duration::from_secs_f64((last - first).max(0.0))
}

/// BANDWIDTH before any peak is measured: capped VBR stays near the cap over a segment.
const DECLARED_PEAK_FACTOR: f64 = 1.5;

impl PublishLoop {
    fn run(self, events: Receiver<Event>) {
        let n = self.tracks.len();
        let mut codecs: Vec<Option<String>> = vec![None; n];
        let mut windows: Vec<VecDeque<SegmentEntry>> = vec![VecDeque::new(); n];
        let mut peaks = vec![0u64; n];
        let mut announced = false;
        let mut first_start: Option<f64> = None;
        let mut last_end = 0.0f64;
        for event in events {
            match event {
                Event::Init {
                    track,
                    bytes,
                    codecs: c,
                } => {
                    self.publisher.init(&self.tracks[track].id, bytes);
                    codecs[track] = Some(c);
                }
                Event::Segment {
                    track,
                    entry,
                    bytes,
                } => {
                    let info = &self.tracks[track];
                    self.publisher.segment(&info.id, entry.number, bytes);
                    let seconds = |t: u64| t as f64 / info.timescale as f64;
                    tracing::debug!(
                        rendition = %info.id,
                        number = entry.number,
                        latency = epoch_now() - MEDIA_EPOCH_SECONDS as f64 - seconds(entry.start + entry.duration),
                        "published"
                    );
                    first_start.get_or_insert(seconds(entry.start));
                    last_end = last_end.max(seconds(entry.start + entry.duration));
                    let (peak, _) = bitrates(std::slice::from_ref(&entry), info.timescale);
                    peaks[track] = peaks[track].max(peak);
                    let window = &mut windows[track];
                    window.push_back(entry);
                    let keep_from =
                        seconds(entry.start + entry.duration) - self.dvr_window.as_secs_f64();
                    while window.front().is_some_and(|s| seconds(s.start) < keep_from) {
                        window.pop_front();
                    }
                    if track == 0 {
                        if let Some(oldest) = window.front() {
                            self.publisher.evict_before(oldest.number);
                        }
                    }
                    // Players find the channel only once every rendition has a segment:
                    // media playlists first, the master and MPD last.
                    let ready =
                        codecs.iter().all(Option::is_some) && windows.iter().all(|w| !w.is_empty());
                    if ready {
                        let p = self.presentation(&codecs, &windows, &peaks, None);
                        if announced {
                            let r = &p.renditions[track];
                            self.publisher.manifest(
                                &format!("{}/{}", r.id, package::MEDIA_PLAYLIST_NAME),
                                package::hls::media_playlist(&p, r),
                            );
                            if track == 0 {
                                // The DVR depth grows until the window is full.
                                self.publisher
                                    .manifest(package::MPD_NAME, package::dash::mpd(&p));
                            }
                        } else {
                            for r in &p.renditions {
                                self.publisher.manifest(
                                    &format!("{}/{}", r.id, package::MEDIA_PLAYLIST_NAME),
                                    package::hls::media_playlist(&p, r),
                                );
                            }
                            self.publisher.manifest(
                                package::MASTER_PLAYLIST_NAME,
                                package::hls::master_playlist(&p),
                            );
                            self.publisher
                                .manifest(package::MPD_NAME, package::dash::mpd(&p));
                            announced = true;
                        }
                    }
                }
            }
        }
        // Every track has finished: the window becomes VOD.
        if codecs.iter().all(Option::is_some) {
            let duration =
                Duration::from_secs_f64((last_end - first_start.unwrap_or(0.0)).max(0.0));
            let p = self.presentation(&codecs, &windows, &peaks, Some(duration));
            self.publisher.manifest(
                package::MASTER_PLAYLIST_NAME,
                package::hls::master_playlist(&p),
            );
            for r in &p.renditions {
                self.publisher.manifest(
                    &format!("{}/{}", r.id, package::MEDIA_PLAYLIST_NAME),
                    package::hls::media_playlist(&p, r),
                );
            }
            self.publisher
                .manifest(package::MPD_NAME, package::dash::mpd(&p));
        }
        self.publisher.end();
    }

    fn presentation(
        &self,
        codecs: &[Option<String>],
        windows: &[VecDeque<SegmentEntry>],
        peaks: &[u64],
        ended: Option<Duration>,
    ) -> Presentation {
        let renditions = self
            .tracks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let segments: Vec<SegmentEntry> = windows[i].iter().copied().collect();
                let (_, average) = bitrates(&segments, t.timescale);
                let declared = (t.target_bitrate as f64 * DECLARED_PEAK_FACTOR) as u64;
                Rendition {
                    id: t.id.clone(),
                    kind: t.kind.clone(),
                    codecs: codecs[i].clone().unwrap_or_default(),
                    peak_bitrate: peaks[i].max(declared),
                    average_bitrate: if segments.is_empty() {
                        t.target_bitrate
                    } else {
                        average
                    },
                    timescale: t.timescale,
                    segments,
                }
            })
            .collect();
        Presentation {
            segment_duration: self.segment_duration,
            renditions,
            timeline: Timeline::Live(LiveTimeline {
                availability_start: UNIX_EPOCH + Duration::from_secs(MEDIA_EPOCH_SECONDS),
                // Never announce more than is really there (DASH rule 5): a channel younger than
                // its DVR window offers only what it has published so far.
                time_shift_buffer: self.dvr_window.min(published_span(&self.tracks, windows)),
                minimum_update_period: self.segment_duration,
                suggested_presentation_delay: self.segment_duration * 3,
                utc_timing_url: self.utc_timing_url.clone(),
                publish_time: SystemTime::now(),
                // The output timeline never breaks (the synchroniser owns it): no discontinuities.
                discontinuity_sequence: 0,
                ended,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractional_rates_cut_segments_at_whole_frames() {
        let fps = Rational::new(30_000, 1001);
        let d = 2u64;
        let first = 473_342_400u64; // 2000-01-01 in 2 s segments since the epoch
        let mut total = 0;
        for n in first..first + 1001 {
            let a = first_frame_at_or_after((n * d) as f64, fps);
            let b = first_frame_at_or_after(((n + 1) * d) as f64, fps);
            let frames = b - a;
            assert!(frames == 59 || frames == 60, "segment {n}: {frames}");
            // The segment's first frame is shown at or after its nominal start, within a frame.
            let start = frame_time(a, fps);
            assert!(start >= (n * d) as f64 - 1e-6 && start - ((n * d) as f64) < 1001.0 / 30_000.0);
            total += frames;
        }
        assert_eq!(total, 60_000);
        // Whole rates are exact too.
        assert_eq!(first_frame_at_or_after(10.0, Rational::new(30, 1)), 300);
        assert_eq!(first_frame_at_or_after(10.01, Rational::new(30, 1)), 301);
    }
}
