//! VOD: one file in, a complete CMAF ladder with HLS and DASH out.
//!
//! Output is written to a temporary folder beside `--out` and renamed into place at the end,
//! so a failed job leaves nothing behind and an existing output is never half-replaced.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};
use ffmpeg_next as ff;
use serde::Serialize;

use super::cfr::Cfr;
use super::frontend::{self, LadderFront};
use super::segmenter::{Segmenter, Unit};
use super::track::{aac_track, bitrates, DirSink, RungFrame, RungWorker, TrackOutput};
use super::{io_error, Error};
use crate::encode::{self, audio::AacEncoder, Kind, RateControl};
use crate::ingest::deinterlace::{self, Deinterlacer, FieldOrder};
use crate::ingest::{self, decode::AudioDecoder};
use crate::media::{Ladder, VideoCodec};
use crate::package::{self, cmaf, Presentation, Rendition, RenditionKind, SegmentEntry, Timeline};

/// Frames queued per rung before the decoder waits (back-pressure).
const RUNG_QUEUE: usize = 8;
/// Audio packets queued before the demuxer waits.
const AUDIO_QUEUE: usize = 256;

/// A VOD transcode request.
#[derive(Debug, Clone)]
pub struct Job {
    pub input: String,
    pub out: PathBuf,
    /// The requested ladder; `None` = the default ladder for the codec.
    pub ladder: Option<Ladder>,
    pub codec: VideoCodec,
    pub segment_duration: Duration,
    pub preset: String,
    pub rate_control: RateControl,
    pub backend: Kind,
    /// The VA-API render node, for the vaapi backend.
    pub vaapi_node: PathBuf,
    /// On NVIDIA, scale with Encore's ladder kernel (true) or FFmpeg's scale_cuda.
    pub ladder_kernel: bool,
    /// Interlaced sources: deinterlaced one picture per frame (auto), per field, or not at all.
    pub deinterlace: deinterlace::Mode,
    pub audio_bitrate: u64,
    pub force: bool,
}

impl Job {
    pub fn new(input: impl Into<String>, out: impl Into<PathBuf>) -> Job {
        Job {
            input: input.into(),
            out: out.into(),
            ladder: None,
            codec: VideoCodec::Avc,
            segment_duration: Duration::from_secs(2),
            preset: "veryfast".into(),
            rate_control: RateControl::Capped,
            backend: Kind::Auto,
            vaapi_node: encode::DEFAULT_VAAPI_NODE.into(),
            ladder_kernel: true,
            deinterlace: deinterlace::Mode::Auto,
            audio_bitrate: 128_000,
            force: false,
        }
    }
}

/// Progress reported while a job runs.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub frames: u64,
    /// Expected output frames, when the source's duration is known.
    pub expected_frames: Option<u64>,
    pub media_seconds: f64,
    pub elapsed: Duration,
}

/// What a finished job produced (printed by `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub input: String,
    pub output: PathBuf,
    pub codec: VideoCodec,
    pub backend: String,
    /// Where decoding and scaling ran, e.g. "NVDEC, ladder kernel, CUDA frames to the encoder".
    pub front_end: String,
    /// The deinterlacer that ran (e.g. "bwdif, one picture per frame"); null for progressive sources.
    pub deinterlace: Option<String>,
    pub segment_duration: f64,
    pub duration: f64,
    pub renditions: Vec<RenditionSummary>,
    pub segments: usize,
    pub bytes: u64,
    pub wall_time: f64,
    pub speed: f64,
    pub frames: u64,
    pub decode_errors: u64,
    pub duplicated_frames: u64,
    pub dropped_frames: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RenditionSummary {
    pub id: String,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    pub codecs: String,
    pub target_bitrate: u64,
    pub peak_bitrate: u64,
    pub average_bitrate: u64,
    pub segments: usize,
    pub bytes: u64,
}

/// Runs a VOD job to completion.
pub fn transcode(job: &Job, progress: &dyn Fn(&Progress)) -> Result<Summary, Error> {
    let started = Instant::now();
    let seconds = job.segment_duration.as_secs_f64();
    if !(1.0..=10.0).contains(&seconds) {
        return Err(Error::SegmentDuration(seconds));
    }
    if job.out.exists() && !job.force {
        return Err(Error::OutputExists(job.out.clone()));
    }
    let mut source = ingest::open(&job.input)?;
    let ladder = job
        .ladder
        .clone()
        .unwrap_or_else(|| Ladder::default_for(job.codec));
    let rungs = ladder.plan(
        source.video.width,
        source.video.height,
        source.video.display_aspect,
    )?;

    let staging = Staging::create(&job.out)?;
    let field_order = source
        .input
        .stream(source.video.index)
        .and_then(|s| FieldOrder::of(&s));
    let mut deinterlacer = Deinterlacer::new(job.deinterlace, field_order, source.video.time_base);
    // One picture per field doubles the output rate.
    let fps = {
        let f = source.video.frame_rate;
        crate::media::Rational::new(f.num * deinterlacer.rate_factor(), f.den).reduced()
    };
    let timescale = fps.video_timescale();
    let frame_ticks = fps.frame_ticks(timescale);
    let gop = fps.frames_in(seconds);

    // Choose the GPU (if any), then open every encoder before decoding anything: a refusal
    // fails the job at once, and hardware encoders get their device frame pools.
    let video_stream = source
        .input
        .stream(source.video.index)
        .expect("chosen stream exists");
    let mut gpu = frontend::plan(
        &job.backend,
        job.codec,
        frontend::bit_depth(&video_stream),
        &job.vaapi_node,
    );
    gpu.ladder_kernel = job.ladder_kernel;
    let candidates = encode::backend::candidates();
    let configs: Vec<encode::Config> = rungs
        .iter()
        .map(|rung| encode::Config {
            codec: job.codec,
            width: rung.width,
            height: rung.height,
            frame_rate: fps,
            timescale,
            bitrate: rung.bitrate,
            rate_control: job.rate_control,
            preset: job.preset.clone(),
            gop,
            low_latency: false,
            device: encode::DeviceInput {
                zero_copy: gpu.zero_copy,
                layout: gpu.layout,
                vaapi_node: job.vaapi_node.clone(),
            },
        })
        .collect();
    let encoders = encode::select_ladder(&job.backend, &candidates, &configs)?;
    let backend_name = encoders
        .first()
        .map(|e| e.name().to_string())
        .unwrap_or_default();
    let (mut decoder, front) = frontend::open(
        &gpu,
        &video_stream,
        (source.video.width, source.video.height),
        &rungs,
        &encoders,
    )
    .map_err(|reason| ingest::Error::Decoder {
        path: job.input.clone(),
        reason,
    })?;
    let mut front = frontend::Cached::new(front);
    let front_end = front.describe();
    tracing::debug!(backend = %backend_name, front_end = %front_end, "ladder");
    let zero = match video_stream.start_time() {
        t if t != ff::ffi::AV_NOPTS_VALUE => t,
        _ => 0,
    };
    let video_tb = source.video.time_base;
    let video_declared_seconds = {
        let d = video_stream.duration();
        (d > 0).then(|| d as f64 * f64::from(video_tb))
    };
    let expected_seconds = video_declared_seconds.or(source.duration);
    drop(video_stream);

    // Rung threads.
    let mut rung_senders = Vec::new();
    let mut rung_threads = Vec::new();
    for (rung, encoder) in rungs.iter().zip(encoders) {
        let (tx, rx) = bounded::<RungFrame>(RUNG_QUEUE);
        let sink = Box::new(DirSink {
            dir: staging.path.join(rung.id(&rungs)),
        });
        let worker = RungWorker {
            rung: *rung,
            id: rung.id(&rungs),
            codec: job.codec,
            timescale,
            frame_ticks,
            segment_duration: job.segment_duration,
            live: false,
            time_origin_seconds: 0,
        };
        rung_senders.push(tx);
        match spawn(format!("rung-{}", rung.height), move || {
            worker.run(encoder, rx, sink, false)
        }) {
            Ok(t) => rung_threads.push(t),
            Err(e) => {
                // Stop the rungs already running before the staging folder goes.
                drop(rung_senders);
                rung_threads.into_iter().for_each(|t| drop(t.join()));
                return Err(e);
            }
        }
    }

    // Audio thread.
    let video_frames = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut audio_sender = None;
    let mut audio_thread = None;
    if let Some(info) = source.audio.clone() {
        let stream = source
            .input
            .stream(info.index)
            .expect("chosen stream exists");
        match AudioDecoder::open(&stream) {
            Ok(decoder) => {
                let (tx, rx) = bounded::<ff::Packet>(AUDIO_QUEUE);
                let worker = AudioWorker {
                    input: job.input.clone(),
                    dir: staging.path.join("audio"),
                    video_frames: video_frames.clone(),
                    frame_rate: fps,
                    time_base: info.time_base,
                    zero_seconds: zero as f64 * f64::from(video_tb),
                    bitrate: job.audio_bitrate,
                    language: info.language.clone(),
                    segment_duration: job.segment_duration,
                };
                audio_sender = Some(tx);
                match spawn("audio".into(), move || worker.run(decoder, rx)) {
                    Ok(t) => audio_thread = Some(t),
                    Err(e) => {
                        drop(rung_senders);
                        rung_threads.into_iter().for_each(|t| drop(t.join()));
                        return Err(e);
                    }
                }
            }
            Err(e) => tracing::warn!(
                "audio stream {} cannot be decoded ({e}); output is video-only",
                info.index
            ),
        }
    }

    // Demux and decode on this thread.
    let expected_frames = expected_seconds.map(|s| (s * fps.as_f64()).round() as u64);
    let mut cfr = Cfr::new(
        fps,
        deinterlacer.output_time_base(),
        zero * deinterlacer.rate_factor() as i64,
    );
    let mut deinterlace_error = None;
    // Where the demuxed media (any stream) ends, to tell a truncated file from one whose
    // streams simply end at different times.
    let mut demuxed_end = 0f64;
    let segment_ms = job.segment_duration.as_millis() as u128;
    let segment_of = |index: i64| {
        (index.max(0) as u128 * frame_ticks as u128 * 1000) / (segment_ms * timescale as u128)
    };
    let broadcast_failed = std::cell::Cell::new(false);
    let mut front_error = None;
    let mut demux_errors = 0u64;
    let mut read_error = None;
    let mut last_report = Instant::now();
    {
        let mut send_frame = |frame: Arc<ff::frame::Video>, index: i64| {
            if broadcast_failed.get() {
                return;
            }
            let pictures = match front.rungs(&frame) {
                Ok(p) => p,
                Err(e) => {
                    front_error.get_or_insert(e);
                    broadcast_failed.set(true);
                    return;
                }
            };
            video_frames.store(index as u64 + 1, std::sync::atomic::Ordering::SeqCst);
            let force = index == 0 || segment_of(index) != segment_of(index - 1);
            for (tx, frame) in rung_senders.iter().zip(pictures) {
                if tx
                    .send(RungFrame {
                        frame,
                        index,
                        force,
                        slate: false,
                    })
                    .is_err()
                {
                    broadcast_failed.set(true);
                }
            }
        };
        let mut packet = ff::Packet::empty();
        loop {
            match ingest::read_packet(&mut source.input, &mut packet) {
                Ok(()) => {}
                Err(ff::Error::Eof) => break,
                Err(ff::Error::InvalidData) => {
                    demux_errors += 1;
                    continue;
                }
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            }
            if let Some(end) = packet_end_seconds(&source.input, &packet) {
                demuxed_end = demuxed_end.max(end - zero as f64 * f64::from(video_tb));
            }
            if packet.stream() == source.video.index {
                decoder.send(&packet);
                while let Some(frame) = decoder.receive::<ff::frame::Video>() {
                    if let Err(e) = deinterlacer.push(frame, &mut |f| cfr.push(f, &mut send_frame))
                    {
                        deinterlace_error = Some(e);
                        broadcast_failed.set(true);
                    }
                }
            } else if Some(packet.stream()) == source.audio.as_ref().map(|a| a.index) {
                if let Some(tx) = &audio_sender {
                    if tx
                        .send(std::mem::replace(&mut packet, ff::Packet::empty()))
                        .is_err()
                    {
                        audio_sender = None;
                    }
                }
            }
            if last_report.elapsed() > Duration::from_millis(200) {
                last_report = Instant::now();
                progress(&Progress {
                    frames: cfr.frames() as u64,
                    expected_frames,
                    media_seconds: cfr.frames() as f64 / fps.as_f64(),
                    elapsed: started.elapsed(),
                });
            }
            if broadcast_failed.get() {
                break;
            }
        }
        decoder.send_eof();
        while let Some(frame) = decoder.receive::<ff::frame::Video>() {
            if let Err(e) = deinterlacer.push(frame, &mut |f| cfr.push(f, &mut send_frame)) {
                deinterlace_error.get_or_insert(e);
            }
        }
        if let Err(e) = deinterlacer.flush(&mut |f| cfr.push(f, &mut send_frame)) {
            deinterlace_error.get_or_insert(e);
        }
    }
    drop(rung_senders);
    drop(audio_sender);

    // Collect every thread before judging: an encoder's own error is the better message.
    let mut videos = Vec::new();
    let mut first_error = None;
    for t in rung_threads {
        match join(t) {
            Ok(r) => videos.push(r),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let audio = match audio_thread.map(join).transpose() {
        Ok(a) => a,
        Err(e) => {
            first_error.get_or_insert(e);
            None
        }
    };
    if let Some(e) = first_error {
        return Err(e);
    }
    if let Some(e) = front_error {
        return Err(e.into());
    }
    if let Some(message) = deinterlace_error {
        return Err(frontend::Error {
            stage: "deinterlace",
            message,
        }
        .into());
    }
    let frames = cfr.frames() as u64;
    let media_seconds = frames as f64 / fps.as_f64();
    if frames == 0 {
        return Err(ingest::Error::NothingDecoded(job.input.clone()).into());
    }
    if let Some(e) = read_error {
        return Err(ingest::Error::Read {
            path: job.input.clone(),
            at: media_seconds,
            reason: e.to_string(),
        }
        .into());
    }
    if let Some(expected) = expected_seconds {
        // A file that stops well short of its declared length lost its tail. The container's
        // length covers every stream (audio may run on after the video): compare what was
        // demuxed of any stream against it, the video's own length against the video.
        let got = if video_declared_seconds.is_some() {
            media_seconds
        } else {
            demuxed_end.max(media_seconds)
        };
        if got + 1.0 < expected * 0.9 {
            return Err(ingest::Error::Truncated {
                path: job.input.clone(),
                got: media_seconds,
                expected,
            }
            .into());
        }
    }
    progress(&Progress {
        frames,
        expected_frames: Some(frames),
        media_seconds,
        elapsed: started.elapsed(),
    });

    // Manifests.
    let mut renditions: Vec<Rendition> = videos.iter().map(|v| v.rendition(fps)).collect();
    if let Some(a) = &audio {
        renditions.push(a.rendition());
    }
    let presentation = Presentation {
        segment_duration: job.segment_duration,
        renditions,
        timeline: Timeline::Vod,
    };
    write_manifests(&staging.path, &presentation)?;

    let decode_errors =
        decoder.errors + demux_errors + audio.as_ref().map_or(0, |a| a.decode_errors);
    if decode_errors > 0 {
        tracing::warn!("{decode_errors} corrupt packets or frames were skipped; the output is complete without them");
    }
    let summary = Summary {
        input: job.input.clone(),
        output: job.out.clone(),
        codec: job.codec,
        backend: backend_name,
        front_end,
        deinterlace: deinterlacer.describe(),
        segment_duration: seconds,
        duration: media_seconds,
        renditions: presentation
            .renditions
            .iter()
            .zip(
                videos
                    .iter()
                    .map(|v| v.rung.bitrate)
                    .chain(audio.iter().map(|_| job.audio_bitrate)),
            )
            .map(|(r, target)| summarize(r, target))
            .collect(),
        segments: presentation
            .renditions
            .iter()
            .map(|r| r.segments.len())
            .sum(),
        bytes: dir_size(&staging.path),
        wall_time: started.elapsed().as_secs_f64(),
        speed: media_seconds / started.elapsed().as_secs_f64().max(1e-9),
        frames,
        decode_errors,
        duplicated_frames: cfr.duplicated,
        dropped_frames: cfr.dropped,
    };
    staging.commit(&job.out, job.force)?;
    Ok(summary)
}

/// Writes the multivariant playlist, every media playlist and the MPD.
pub fn write_manifests(dir: &Path, presentation: &Presentation) -> Result<(), Error> {
    let write = |path: PathBuf, text: String| std::fs::write(&path, text).map_err(io_error(path));
    write(
        dir.join(package::MASTER_PLAYLIST_NAME),
        package::hls::master_playlist(presentation),
    )?;
    for r in &presentation.renditions {
        write(
            dir.join(&r.id).join(package::MEDIA_PLAYLIST_NAME),
            package::hls::media_playlist(presentation, r),
        )?;
    }
    write(
        dir.join(package::MPD_NAME),
        package::dash::mpd(presentation),
    )
}

/// Where a packet's media ends, in seconds of its stream's clock (`None` without timestamps).
fn packet_end_seconds(input: &ff::format::context::Input, packet: &ff::Packet) -> Option<f64> {
    let tb = input.stream(packet.stream())?.time_base();
    let start = packet.pts().or(packet.dts())?;
    Some((start + packet.duration().max(0)) as f64 * f64::from(tb))
}

fn summarize(r: &Rendition, target: u64) -> RenditionSummary {
    let (kind, width, height) = match r.kind {
        RenditionKind::Video { width, height, .. } => ("video", Some(width), Some(height)),
        RenditionKind::Audio { .. } => ("audio", None, None),
    };
    RenditionSummary {
        id: r.id.clone(),
        kind,
        width,
        height,
        codecs: r.codecs.clone(),
        target_bitrate: target,
        peak_bitrate: r.peak_bitrate,
        average_bitrate: r.average_bitrate,
        segments: r.segments.len(),
        bytes: r.segments.iter().map(|s| s.bytes).sum(),
    }
}

struct AudioWorker {
    input: String,
    dir: PathBuf,
    /// Video frames output so far (final once the audio channel closes).
    video_frames: Arc<std::sync::atomic::AtomicU64>,
    frame_rate: crate::media::Rational,
    time_base: ff::Rational,
    zero_seconds: f64,
    bitrate: u64,
    language: Option<String>,
    segment_duration: Duration,
}

struct AudioTrackResult {
    codecs: String,
    language: Option<String>,
    segments: Vec<SegmentEntry>,
    decode_errors: u64,
}

impl AudioTrackResult {
    fn rendition(&self) -> Rendition {
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

/// A gap in the source's audio longer than this is filled with silence.
const AUDIO_GAP_SECONDS: f64 = 0.1;
/// The longest silence filled in (audio starting late, or a hole in it); a longer one refuses
/// the job rather than encode that much silence.
const MAX_SILENCE_SECONDS: f64 = 600.0;

impl AudioWorker {
    fn run(
        self,
        mut decoder: AudioDecoder,
        packets: Receiver<ff::Packet>,
    ) -> Result<AudioTrackResult, Error> {
        let mut encoder = AacEncoder::open(self.bitrate)?;
        let track = aac_track(&encoder, self.bitrate)?;
        let codecs = track.codec_string();
        let mut writer = TrackOutput::new(
            track,
            Box::new(DirSink {
                dir: self.dir.clone(),
            }),
        )?;
        let mut segmenter = Segmenter::new(encode::audio::SAMPLE_RATE, self.segment_duration, 1024);
        let mut started = false;
        let tb = f64::from(self.time_base);
        // Packets wait here until the video has reached them, so the audio can end where the
        // video ends (one presentation duration for every track).
        let mut pending: std::collections::VecDeque<encode::audio::Packet> = Default::default();
        let progress = self.video_frames.clone();
        let frame_rate = self.frame_rate;
        let video_end = move || {
            let frames = progress.load(std::sync::atomic::Ordering::SeqCst) as i64;
            frames * encode::audio::SAMPLE_RATE as i64 * frame_rate.den as i64
                / frame_rate.num as i64
        };
        let mut release = |pending: &mut std::collections::VecDeque<encode::audio::Packet>,
                           end: i64,
                           writer: &mut TrackOutput|
         -> Result<(), Error> {
            while let Some(p) = pending.front() {
                if p.pts + p.duration as i64 > end {
                    break;
                }
                let p = pending.pop_front().expect("front exists");
                if let Some(segment) = segmenter.push(Unit {
                    data: p.data,
                    pts: p.pts,
                    dts: p.pts,
                    sync: true,
                }) {
                    writer.write(segment, cmaf::SegmentFlags::default())?;
                }
            }
            Ok(())
        };
        let mut take =
            |packets: Vec<encode::audio::Packet>, writer: &mut TrackOutput| -> Result<(), Error> {
                pending.extend(packets);
                release(&mut pending, video_end(), writer)
            };
        let mut handle = |frame: ff::frame::Audio,
                          encoder: &mut AacEncoder,
                          writer: &mut TrackOutput|
         -> Result<(), Error> {
            if let Some(ts) = frame.timestamp() {
                let at = ts as f64 * tb - self.zero_seconds;
                let gap = at - encoder.buffered_end_seconds();
                if gap > MAX_SILENCE_SECONDS {
                    let what = if started { "has a gap of" } else { "starts" };
                    return Err(ingest::Error::Unusable {
                        path: self.input.clone(),
                        reason: format!(
                            "its audio {what} {gap:.1} s after the video's (at most {MAX_SILENCE_SECONDS} s of silence is filled in); remux it with its audio aligned, or without audio"
                        ),
                    }
                    .into());
                }
                if !started {
                    if at > AUDIO_GAP_SECONDS {
                        tracing::info!("audio starts {at:.2} s after the video: silence before it");
                    }
                    encoder.align_start(at);
                } else if gap > AUDIO_GAP_SECONDS {
                    take(encoder.push_silence(gap)?, writer)?;
                }
            }
            started = true;
            take(encoder.push(&frame)?, writer)
        };
        for packet in packets {
            decoder.send(&packet);
            while let Some(frame) = decoder.receive::<ff::frame::Audio>() {
                handle(frame, &mut encoder, &mut writer)?;
            }
        }
        decoder.send_eof();
        while let Some(frame) = decoder.receive::<ff::frame::Audio>() {
            handle(frame, &mut encoder, &mut writer)?;
        }
        take(encoder.flush()?, &mut writer)?;
        // The video has finished: keep the audio that starts before its end, drop the rest.
        let end = video_end();
        if let Some(last) = pending.iter().position(|p| p.pts >= end) {
            pending.truncate(last);
        }
        release(&mut pending, i64::MAX, &mut writer)?;
        for segment in segmenter.finish() {
            writer.write(segment, cmaf::SegmentFlags::default())?;
        }
        Ok(AudioTrackResult {
            codecs,
            language: self.language,
            segments: writer.segments,
            decode_errors: decoder.errors,
        })
    }
}

fn spawn<T: Send + 'static>(
    name: String,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<JoinHandle<Result<T, Error>>, Error> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map_err(|e| Error::Thread(format!("{name}: {e}")))
}

fn join<T>(handle: JoinHandle<Result<T, Error>>) -> Result<T, Error> {
    handle
        .join()
        .map_err(|_| Error::Thread("a worker panicked".into()))?
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// A temporary output folder beside the final one; removed unless committed.
struct Staging {
    path: PathBuf,
    committed: bool,
}

impl Staging {
    fn create(out: &Path) -> Result<Self, Error> {
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(io_error(&parent))?;
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let path = parent.join(format!(".{name}.encore-partial-{}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(io_error(&path))?;
        }
        std::fs::create_dir(&path).map_err(io_error(&path))?;
        Ok(Staging {
            path,
            committed: false,
        })
    }

    fn commit(mut self, out: &Path, force: bool) -> Result<(), Error> {
        if out.exists() {
            if !force {
                return Err(Error::OutputExists(out.to_path_buf()));
            }
            // Replace: move the old output aside first so the new one lands in one rename.
            let old = self.path.with_extension("old");
            std::fs::rename(out, &old).map_err(io_error(out))?;
            std::fs::rename(&self.path, out).map_err(io_error(out))?;
            let _ = std::fs::remove_dir_all(old);
        } else {
            std::fs::rename(&self.path, out).map_err(io_error(out))?;
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
