//! Live channels: an input, a frame synchroniser on the wall clock, the ladder, a publisher.
//!
//! Output time is the wall clock (epoch locking): output frame k is shown at k / fps seconds
//! after the Unix epoch and segment n covers [n·D, (n+1)·D). Each input picture and each run
//! of input sound is placed on that clock by its timestamp, with one offset per input session
//! (timeline.rs), so picture and sound leave as the sender paired them. The synchroniser picks,
//! at each output instant, the picture placed nearest it; when the input has been silent for
//! about one segment it sends the slate instead, and real pictures return as soon as the input
//! does. So numbering never breaks, and two appliances fed the same source cut identical
//! segments with identical numbers.
//!
//! Nothing here may stop the process: every input failure is logged and retried.
//!
//! ```text
//!                    feed.rs (pictures and sound placed on the output clock)
//!  input.rs ─────────────┬──────────────────────────┐
//!  InputLoop: read,       │                          │
//!  decode, deinterlace,   ▼                          ▼
//!  pace, place        clock.rs                   audio.rs
//!  (timeline.rs)      VideoClock: one picture    AudioClock: 1024 samples
//!                     per output instant         per step on the wall clock,
//!                     (slate when lost)          AAC, segments
//!                          │ [RUNG_QUEUE] per rung    │
//!                          ▼                          │
//!                     rung workers (pipeline::track): │
//!                     scale, encode, segment,         │
//!                     package                         │
//!                          │ [EVENT_QUEUE]            │ [EVENT_QUEUE]
//!                          ▼                          ▼
//!                     publish.rs  PublishLoop: segments and manifests to the Publisher (the origin)
//! ```
//!
//! Every queue is bounded: `RUNG_QUEUE` frames per rung (a slow encoder makes the clock wait,
//! then skip ahead rather than fall behind), `EVENT_QUEUE` segments towards the publisher; the
//! feed holds at most 32 pictures and 3 s of sound. The timing model (epoch locking,
//! numbering, the formulas players use) is in docs/timing.md.

mod audio;
mod clock;
mod feed;
mod input;
mod publish;
mod supervise;
mod timeline;

pub use supervise::Restarts;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::bounded;

use super::track::{RungFrame, RungSpeed, RungWorker};
use super::Error;
use crate::encode::{self, Kind};
use crate::ingest::live::{self as live_input, InputGuard, LiveSource, Watchdog};
use crate::media::{Ladder, Rational, VideoCodec};
use crate::package::RenditionKind;

use audio::AudioClock;
use clock::{ChannelClock, VideoClock};
use feed::Feed;
use input::InputLoop;
use publish::{Event, EventSink, PublishLoop, TrackInfo};

/// Frames queued per rung before the clock waits.
const RUNG_QUEUE: usize = 4;
/// Segments and init segments queued towards the publisher.
const EVENT_QUEUE: usize = 256;

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
    /// Who may send a network input, and its receive buffer.
    pub input_guard: InputGuard,
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
    /// The DVR window's bytes (every rendition), at most: the older segments go first.
    pub dvr_max_bytes: u64,
    pub audio_bitrate: u64,
    /// Interlaced inputs: deinterlaced one picture per frame (auto), per field, or not at all.
    pub deinterlace: crate::ingest::deinterlace::Mode,
    /// Origin path of the clock endpoint for DASH UTCTiming.
    pub utc_timing_url: String,
    /// Start in the segment in progress when little of it has passed (its start shown as
    /// slate), rather than at the next boundary: for a channel taken over from a node that
    /// died, whose players are waiting.
    pub join_segment_in_progress: bool,
}

/// What a running channel sends: the slate or its input, and each rung's speed.
#[derive(Debug)]
pub struct ChannelStatus {
    pub on_slate: AtomicBool,
    /// Rendition id and its speed, top rung first.
    pub rungs: Vec<(String, Arc<RungSpeed>)>,
    /// Restarts of each rung (same order) and of the audio, last.
    pub restarts: Vec<Arc<Restarts>>,
}

impl ChannelStatus {
    /// Restarts of every worker since the channel started.
    pub fn total_restarts(&self) -> u64 {
        self.restarts.iter().map(|r| r.count()).sum()
    }
}

/// A running channel. Dropping it does not stop it: call `stop` and `join`.
pub struct Channel {
    pub name: String,
    /// Video rendition ids, top rung first.
    pub renditions: Vec<String>,
    /// What the channel is sending, for its record in the API.
    pub status: Arc<ChannelStatus>,
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

pub use crate::package::MEDIA_EPOCH_SECONDS;

/// The first segment of a channel starting at `now_ms` (ms since the Unix epoch), and whether
/// it is the one in progress (`join`, and less than D/2 minus [`JOIN_MARGIN`] of it passed).
fn first_segment(now_ms: u64, segment_ms: u64, join: bool) -> (u64, bool) {
    let in_progress = now_ms / segment_ms;
    let passed_ms = now_ms - in_progress * segment_ms;
    let joins = join && passed_ms + JOIN_MARGIN.as_millis() as u64 <= segment_ms / 2;
    (if joins { in_progress } else { in_progress + 1 }, joins)
}

/// Joining the segment in progress: room left for the start itself and the output delay
/// before the video clock would count as behind (D/2) and skip ahead.
const JOIN_MARGIN: Duration = Duration::from_millis(200);

/// How long after its instant an output frame is sent, to absorb input jitter.
const OUTPUT_DELAY: Duration = Duration::from_millis(60);

/// Starts a channel: opens its encoders (errors here are the caller's), then runs its actors.
pub fn start(config: ChannelConfig, publisher: Arc<dyn Publisher>) -> Result<Channel, Error> {
    crate::media::time::check_segment_duration(config.segment_duration)
        .map_err(Error::SegmentDuration)?;
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
    let slate = Arc::new(live_input::slate_picture(config.width, config.height)?);
    let encoder_configs = encoder_configs(&config, &rungs);
    let encoders = encode::select_ladder(
        &config.backend,
        &encode::backend::candidates(),
        &encoder_configs,
    )?;

    let watchdog = Arc::new(Watchdog::default());
    let stopping = Arc::new(AtomicBool::new(false));
    let feed = Arc::new(Feed::default());
    let (events_tx, events_rx) = bounded::<Event>(EVENT_QUEUE);
    let tracks = track_infos(&config, &rungs, timescale);
    // Everything starts at a segment boundary, so the first segment is whole: the next one,
    // or (joining) the one in progress when the clock can still make up its start, which
    // VideoClock does while it is less than D/2 behind. In whole milliseconds, as every other
    // place reckons D.
    let segment_ms = config.segment_duration.as_millis() as u64;
    let clock = Arc::new(ChannelClock::system(&config.name));
    let (first_segment, joins) = first_segment(
        (clock.now() * 1000.0) as u64,
        segment_ms,
        config.join_segment_in_progress,
    );
    let start_seconds = (first_segment * segment_ms) as f64 / 1000.0;
    let mut threads = Vec::new();

    let status = Arc::new(ChannelStatus {
        on_slate: AtomicBool::new(true),
        rungs: rungs
            .iter()
            .map(|r| (r.id(&rungs), Arc::new(RungSpeed::default())))
            .collect(),
        restarts: (0..=rungs.len())
            .map(|_| Arc::new(Restarts::default()))
            .collect(),
    });
    let mut rung_senders = Vec::new();
    for (i, ((rung, encoder), encoder_config)) in
        rungs.iter().zip(encoders).zip(encoder_configs).enumerate()
    {
        let (tx, rx) = bounded::<RungFrame>(RUNG_QUEUE);
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
            speed: Some(status.rungs[i].1.clone()),
        };
        let supervised = supervise::SupervisedRung {
            channel: config.name.clone(),
            worker,
            track: i,
            events: events_tx.clone(),
            encoder_config,
            backend: config.backend.clone(),
            restarts: status.restarts[i].clone(),
        };
        threads.push(spawn(
            format!("{}-{}p", config.name, rung.height),
            move || supervised.run(encoder, rx),
        )?);
    }
    let audio = AudioClock {
        feed: feed.clone(),
        stopping: stopping.clone(),
        start_seconds,
        segment_duration: config.segment_duration,
        bitrate: config.audio_bitrate,
        sink: Box::new(EventSink::new(tracks.len() - 1, events_tx.clone())),
        clock: clock.clone(),
    };
    let (name, audio_restarts) = (config.name.clone(), status.restarts[rungs.len()].clone());
    let (audio_track, audio_events) = (tracks.len() - 1, events_tx);
    let (audio_feed, audio_stopping) = (feed.clone(), stopping.clone());
    let (audio_segment, audio_bitrate) = (config.segment_duration, config.audio_bitrate);
    let audio_clock = clock.clone();
    threads.push(spawn(format!("{}-audio", config.name), move || {
        let mut audio = audio;
        // Supervised like the rungs: a failed audio clock starts again at the next segment.
        while let Err(e) = audio.run() {
            audio_restarts.add(&name, "audio");
            tracing::error!(channel = %name, "audio failed: {e}; restarting it at the next segment");
            std::thread::sleep(Duration::from_millis(100));
            let d = audio_segment.as_secs_f64();
            audio = AudioClock {
                feed: audio_feed.clone(),
                stopping: audio_stopping.clone(),
                start_seconds: ((audio_clock.now() / d).floor() + 1.0) * d,
                segment_duration: audio_segment,
                bitrate: audio_bitrate,
                sink: Box::new(EventSink::new(audio_track, audio_events.clone())),
                clock: audio_clock.clone(),
            };
        }
    })?);
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
        status: status.clone(),
        clock: clock.clone(),
    };
    let input_clock = clock;
    threads.push(spawn(format!("{}-clock", config.name), move || {
        video.run(rung_senders)
    })?);
    let input = InputLoop {
        source: config.input.clone(),
        guard: config.input_guard.clone(),
        deinterlace: config.deinterlace,
        feed,
        watchdog: watchdog.clone(),
        stopping: stopping.clone(),
        channel: config.name.clone(),
        clock: input_clock,
    };
    threads.push(spawn(format!("{}-input", config.name), move || {
        input.run()
    })?);
    let publish = PublishLoop {
        channel: config.name.clone(),
        publisher,
        tracks,
        segment_duration: config.segment_duration,
        dvr_window: config.dvr_window,
        dvr_max_bytes: config.dvr_max_bytes,
        utc_timing_url: config.utc_timing_url.clone(),
    };
    threads.push(spawn(format!("{}-publish", config.name), move || {
        publish.run(events_rx)
    })?);

    tracing::info!(channel = %config.name, input = %config.input.describe(), rungs = rungs.len(), first_segment, joined = joins, "channel started");
    Ok(Channel {
        name: config.name,
        renditions: rungs.iter().map(|r| r.id(&rungs)).collect(),
        status,
        watchdog,
        stopping,
        threads,
    })
}

/// Each rung's encoder settings (the whole ladder opens on one backend), low-latency.
fn encoder_configs(config: &ChannelConfig, rungs: &[crate::media::Rung]) -> Vec<encode::Config> {
    rungs
        .iter()
        .map(|rung| encode::Config {
            low_latency: true,
            device: encode::DeviceInput {
                vaapi_node: config.vaapi_node.clone(),
                ..Default::default()
            },
            ..encode::Config::for_rung(
                config.codec,
                rung,
                config.frame_rate,
                config.segment_duration.as_secs_f64(),
                &config.preset,
            )
        })
        .collect()
}

/// The renditions as the publisher describes them: the rungs, top first, then audio.
fn track_infos(
    config: &ChannelConfig,
    rungs: &[crate::media::Rung],
    timescale: u32,
) -> Vec<TrackInfo> {
    let mut tracks: Vec<TrackInfo> = rungs
        .iter()
        .map(|r| TrackInfo {
            id: r.id(rungs),
            kind: RenditionKind::Video {
                width: r.width,
                height: r.height,
                frame_rate: config.frame_rate,
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
    tracks
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, Error> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map_err(|e| Error::Thread(format!("{name}: {e}")))
}

#[cfg(test)]
mod start_tests {
    use super::first_segment;

    #[test]
    fn a_channel_starts_at_the_next_boundary_unless_it_joins_early_in_a_segment() {
        // D = 2 s; 898121520 · 2 s is a boundary.
        let boundary = 898_121_520 * 2_000;
        assert_eq!(
            first_segment(boundary + 100, 2_000, false),
            (898_121_521, false)
        );
        assert_eq!(
            first_segment(boundary + 100, 2_000, true),
            (898_121_520, true)
        );
        // 0.8 s passed + the 0.2 s margin is D/2: still in time.
        assert_eq!(
            first_segment(boundary + 800, 2_000, true),
            (898_121_520, true)
        );
        assert_eq!(
            first_segment(boundary + 801, 2_000, true),
            (898_121_521, false)
        );
        assert_eq!(
            first_segment(boundary + 1_999, 2_000, true),
            (898_121_521, false)
        );
        // D = 1 s: 0.3 s at most.
        assert_eq!(first_segment(5_000_300, 1_000, true), (5_000, true));
        assert_eq!(first_segment(5_000_301, 1_000, true), (5_001, false));
    }
}
