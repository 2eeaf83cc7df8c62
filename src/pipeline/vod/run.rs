//! Stage 3: decode once and feed every rung. The demuxer and decoder run on the caller's
//! thread; each rung encodes and packages on its own thread behind a bounded queue, so a slow
//! rung slows the decoder instead of growing memory; audio has a thread of its own.
//!
//! ```text
//!  demux ─► decode ─► deinterlace ─► cfr ─► front end ──► [RUNG_QUEUE] ─► rung thread × N
//!    └──── audio packets ─────────────────────────────────► [AUDIO_QUEUE] ─► audio thread
//! ```

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};
use ffmpeg_next as ff;

use super::audio::{AudioTrackResult, AudioWorker};
use super::demux::Demux;
use super::open::Opened;
use super::plan::Plan;
use super::rebase::Rebase;
use super::{Job, Progress};
use crate::encode::Backend;
use crate::ingest::{self, decode::AudioDecoder, decode::VideoDecoder, deinterlace::Deinterlacer};
use crate::media::{Rational, Rung};
use crate::pipeline::cfr::Cfr;
use crate::pipeline::frontend::{self, Cached, LadderFront};
use crate::pipeline::track::{DirSink, RungFrame, RungWorker, VideoTrackResult};
use crate::pipeline::Error;

/// Frames queued per rung before the decoder waits (back-pressure).
const RUNG_QUEUE: usize = 8;
/// Audio packets queued before the demuxer waits.
const AUDIO_QUEUE: usize = 256;
/// How often progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// What the run produced, for the publish stage.
pub struct Ran {
    pub videos: Vec<VideoTrackResult>,
    pub audio: Option<AudioTrackResult>,
    pub fps: Rational,
    pub backend: String,
    pub front_end: String,
    pub deinterlace: Option<String>,
    /// Output frames and their duration.
    pub frames: u64,
    pub media_seconds: f64,
    pub decode_errors: u64,
    pub duplicated_frames: u64,
    pub dropped_frames: u64,
}

type Worker<T> = JoinHandle<Result<T, Error>>;
/// The rungs' queues and threads, in rung order.
type RungThreads = (Vec<Sender<RungFrame>>, Vec<Worker<VideoTrackResult>>);
/// The audio thread's queue and thread.
type AudioThread = (Sender<ff::Packet>, Worker<AudioTrackResult>);

pub fn run(
    job: &Job,
    opened: Opened,
    mut plan: Plan,
    staging: &Path,
    started: Instant,
    progress: &dyn Fn(&Progress),
) -> Result<Ran, Error> {
    let Opened {
        mut source,
        zero,
        video_seconds,
        expected_seconds,
        ..
    } = opened;
    let fps = plan.fps;
    let video_tb = source.video.time_base;
    let encoders = std::mem::take(&mut plan.encoders);
    let (senders, rung_threads) = spawn_rungs(job, &plan, encoders, staging)?;
    let video_frames = Arc::new(AtomicU64::new(0));
    let zero_seconds = zero as f64 * f64::from(video_tb);
    let (audio_sender, audio_thread) =
        match spawn_audio(job, &source, zero_seconds, fps, staging, &video_frames) {
            Ok(a) => a.unzip(),
            Err(e) => {
                drop(senders);
                rung_threads.into_iter().for_each(|t| drop(t.join()));
                return Err(e);
            }
        };
    let mut decode = Decode {
        cfr: Cfr::new(
            fps,
            plan.deinterlacer.output_time_base(),
            zero * plan.deinterlacer.rate_factor() as i64,
        ),
        decoder: plan.decoder,
        deinterlacer: plan.deinterlacer,
        broadcast: Broadcast {
            front: plan.front,
            senders,
            video_frames,
            frame_ticks: plan.frame_ticks,
            timescale: plan.timescale,
            segment_ms: job.segment_duration.as_millis(),
            stopped: false,
            error: None,
        },
    };
    let mut demux = Demux {
        audio: audio_sender,
        audio_index: source.audio.as_ref().map(|a| a.index),
        zero_seconds,
        errors: 0,
        read_error: None,
        end_seconds: 0.0,
        rebase: ingest::timestamps_may_jump(&source.input)
            .then(|| Rebase::new(source.video.index, zero_seconds)),
    };
    let expected_frames = expected_seconds.map(|s| (s * fps.as_f64()).round() as u64);
    let report = |frames: u64| {
        progress(&Progress {
            stage: super::Stage::Transcoding,
            frames,
            expected_frames,
            media_seconds: frames as f64 / fps.as_f64(),
            elapsed: started.elapsed(),
        })
    };
    let mut last_report = Instant::now();
    let mut packet = ff::Packet::empty();
    while !decode.broadcast.stopped
        && !job.cancelled()
        && demux.next(&mut source.input, &mut packet)
    {
        if packet.stream() == source.video.index {
            decode.packet(&packet);
        } else {
            demux.forward_audio(&mut packet);
        }
        if last_report.elapsed() > PROGRESS_EVERY {
            last_report = Instant::now();
            report(decode.cfr.frames() as u64);
        }
    }
    decode.finish();
    demux.audio = None;

    // Collect every thread before judging: an encoder's own error is the better message.
    let mut first_error = None;
    let mut keep = |e: Error| {
        first_error.get_or_insert(e);
    };
    let videos: Vec<_> = rung_threads
        .into_iter()
        .filter_map(|t| join(t).map_err(&mut keep).ok())
        .collect();
    let audio = audio_thread.and_then(|t| join(t).map_err(&mut keep).ok());
    if let Some(e) = first_error.or(decode.broadcast.error.take()) {
        return Err(e);
    }
    if job.cancelled() {
        return Err(Error::Cancelled);
    }
    let frames = decode.cfr.frames() as u64;
    let media_seconds = frames as f64 / fps.as_f64();
    check_complete(
        &job.input,
        frames,
        media_seconds,
        &mut demux,
        video_seconds,
        expected_seconds,
    )?;
    report(frames);
    Ok(Ran {
        videos,
        decode_errors: decode.decoder.errors
            + demux.errors
            + audio.as_ref().map_or(0, |a| a.decode_errors),
        audio,
        fps,
        backend: plan.backend_name,
        front_end: plan.front_end,
        deinterlace: decode.deinterlacer.describe(),
        frames,
        media_seconds,
        duplicated_frames: decode.cfr.duplicated,
        dropped_frames: decode.cfr.dropped,
    })
}

/// One thread per rung, each with its encoder and its queue.
fn spawn_rungs(
    job: &Job,
    plan: &Plan,
    encoders: Vec<Box<dyn Backend>>,
    staging: &Path,
) -> Result<RungThreads, Error> {
    let rungs: &[Rung] = &plan.rungs;
    let mut senders = Vec::new();
    let mut threads = Vec::new();
    for (rung, encoder) in rungs.iter().zip(encoders) {
        let (tx, rx) = bounded::<RungFrame>(RUNG_QUEUE);
        let worker = RungWorker {
            rung: *rung,
            id: rung.id(rungs),
            codec: job.codec,
            timescale: plan.timescale,
            frame_ticks: plan.frame_ticks,
            segment_duration: job.segment_duration,
            live: false,
            time_origin_seconds: 0,
            speed: None,
        };
        let sink = Box::new(DirSink {
            dir: staging.join(rung.id(rungs)),
        });
        senders.push(tx);
        match spawn(format!("rung-{}", rung.height), move || {
            worker.run(encoder, rx, sink, false)
        }) {
            Ok(t) => threads.push(t),
            Err(e) => {
                // Stop the rungs already running before the staging folder goes.
                drop(senders);
                threads.into_iter().for_each(|t| drop(t.join()));
                return Err(e);
            }
        }
    }
    Ok((senders, threads))
}

/// The audio thread, when the source has audio that decodes.
fn spawn_audio(
    job: &Job,
    source: &ingest::Source,
    zero_seconds: f64,
    fps: Rational,
    staging: &Path,
    video_frames: &Arc<AtomicU64>,
) -> Result<Option<AudioThread>, Error> {
    let Some(info) = source.audio.clone() else {
        return Ok(None);
    };
    let stream = source
        .input
        .stream(info.index)
        .expect("chosen stream exists");
    let decoder = match AudioDecoder::open(&stream) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(
                "audio stream {} cannot be decoded ({e}); output is video-only",
                info.index
            );
            return Ok(None);
        }
    };
    let (tx, rx) = bounded::<ff::Packet>(AUDIO_QUEUE);
    let worker = AudioWorker {
        input: job.input.clone(),
        dir: staging.join("audio"),
        video_frames: video_frames.clone(),
        frame_rate: fps,
        time_base: info.time_base,
        zero_seconds,
        bitrate: job.audio_bitrate,
        language: info.language.clone(),
        segment_duration: job.segment_duration,
    };
    let thread = spawn("audio".into(), move || worker.run(decoder, rx))?;
    Ok(Some((tx, thread)))
}

/// Decoded pictures through the deinterlacer, the frame-rate converter and the front end.
struct Decode {
    decoder: VideoDecoder,
    deinterlacer: Deinterlacer,
    cfr: Cfr,
    broadcast: Broadcast,
}

impl Decode {
    fn packet(&mut self, packet: &ff::Packet) {
        self.decoder.send(packet);
        while let Some(frame) = self.decoder.receive::<ff::frame::Video>() {
            self.picture(frame);
        }
    }

    fn picture(&mut self, frame: ff::frame::Video) {
        self.deinterlace(|d, out| d.push(frame, out));
    }

    /// Drains the decoder and the deinterlacer, then closes the rung queues.
    fn finish(&mut self) {
        self.decoder.send_eof();
        while let Some(frame) = self.decoder.receive::<ff::frame::Video>() {
            self.picture(frame);
        }
        self.deinterlace(|d, out| d.flush(out));
        self.broadcast.senders.clear();
    }

    /// One step of the deinterlacer, its pictures going through the frame-rate converter to
    /// the rungs.
    fn deinterlace(
        &mut self,
        step: impl FnOnce(&mut Deinterlacer, &mut dyn FnMut(ff::frame::Video)) -> Result<(), String>,
    ) {
        let Decode {
            deinterlacer,
            cfr,
            broadcast,
            ..
        } = self;
        let mut to_rungs = |f| cfr.push(f, |frame, index| broadcast.send(frame, index));
        if let Err(message) = step(deinterlacer, &mut to_rungs) {
            broadcast.fail(deinterlace_error(message));
        }
    }
}

fn deinterlace_error(message: String) -> Error {
    frontend::Error {
        stage: "deinterlace",
        message,
    }
    .into()
}

/// Makes every rung's picture of an output frame and queues it, with an IDR at each segment start.
struct Broadcast {
    front: Cached,
    senders: Vec<Sender<RungFrame>>,
    /// Output frames so far, for the audio thread (it ends the audio with the video).
    video_frames: Arc<AtomicU64>,
    frame_ticks: u64,
    timescale: u32,
    segment_ms: u128,
    /// A rung hung up (its own error comes at join) or the front end failed: stop decoding.
    stopped: bool,
    error: Option<Error>,
}

impl Broadcast {
    fn segment_of(&self, index: i64) -> u128 {
        (index.max(0) as u128 * self.frame_ticks as u128 * 1000)
            / (self.segment_ms * self.timescale as u128)
    }

    fn send(&mut self, frame: Arc<ff::frame::Video>, index: i64) {
        if self.stopped {
            return;
        }
        let pictures = match self.front.rungs(&frame) {
            Ok(p) => p,
            Err(e) => return self.fail(e.into()),
        };
        self.video_frames.store(index as u64 + 1, Ordering::SeqCst);
        let force = index == 0 || self.segment_of(index) != self.segment_of(index - 1);
        for (tx, frame) in self.senders.iter().zip(pictures) {
            let sent = tx.send(RungFrame {
                frame,
                index,
                force,
                slate: false,
            });
            self.stopped |= sent.is_err();
        }
    }

    fn fail(&mut self, error: Error) {
        self.stopped = true;
        self.error.get_or_insert(error);
    }
}

/// Judges a run whose threads all finished: something decoded, nothing lost to a read error,
/// and no tail missing from what the file declares.
fn check_complete(
    input: &str,
    frames: u64,
    media_seconds: f64,
    demux: &mut Demux,
    video_seconds: Option<f64>,
    expected_seconds: Option<f64>,
) -> Result<(), Error> {
    if frames == 0 {
        return Err(ingest::Error::NothingDecoded(input.into()).into());
    }
    if let Some(e) = demux.read_error.take() {
        return Err(ingest::Error::Read {
            path: input.into(),
            at: media_seconds,
            reason: e.to_string(),
        }
        .into());
    }
    let Some(expected) = expected_seconds else {
        return Ok(());
    };
    if demux.rebase.as_ref().is_some_and(|r| r.seams() > 0) {
        // The declared length spans the raw timestamps, jumps included: nothing to compare.
        return Ok(());
    }
    // The container's length covers every stream (audio may run on after the video): compare
    // what was demuxed of any stream against it, the video's own length against the video.
    let got = if video_seconds.is_some() {
        media_seconds
    } else {
        demux.end_seconds.max(media_seconds)
    };
    if got + 1.0 < expected * 0.9 {
        return Err(ingest::Error::Truncated {
            path: input.into(),
            got: media_seconds,
            expected,
        }
        .into());
    }
    Ok(())
}

fn spawn<T: Send + 'static>(
    name: String,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<Worker<T>, Error> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map_err(|e| Error::Thread(format!("{name}: {e}")))
}

fn join<T>(handle: Worker<T>) -> Result<T, Error> {
    handle
        .join()
        .map_err(|_| Error::Thread("a worker panicked".into()))?
}
