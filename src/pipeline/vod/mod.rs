//! VOD: one file in, a complete CMAF ladder with HLS and DASH out, as four stages:
//!
//! ```text
//!  open ──────────► plan ─────────────────────► run ────────────────────────────► publish
//!  (open.rs)        (plan.rs)                   (run.rs, audio.rs)                  (publish.rs)
//!  arguments,       ladder for the source,      demux; decode once; deinterlace;    manifests,
//!  the input and    deinterlacer, output rate,  constant frame rate; front end      the summary,
//!  its streams,     GPU, encoders for every     makes each rung's picture; rung     staging folder
//!  staging folder   rung, decoder, front end    threads encode + package; audio     renamed into
//!                                               thread; join                        place
//! ```
//!
//! Output is written to a staging folder beside `--out` and renamed into place at the end, so a
//! failed job leaves nothing behind and an existing output is never half-replaced. The timing
//! model (segment n covers [n·D, (n+1)·D) of media time) is in docs/timing.md.

mod audio;
mod demux;
mod open;
mod plan;
mod publish;
mod rebase;
mod run;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Error;
use crate::encode::{self, Kind, RateControl};
use crate::ingest::deinterlace;
use crate::media::{Ladder, VideoCodec};

pub use publish::write_manifests;

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
    /// Set from another thread to stop the job: it ends with [`Error::Cancelled`], nothing
    /// published, the staging folder removed.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Job {
    /// True once the job has been asked to stop.
    pub fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    }

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
            cancel: None,
        }
    }
}

/// The stage a running job is in. CMAF packaging is not a stage of its own: each segment is
/// packaged the moment its encoder completes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Transcoding,
    /// Writing the manifests and renaming the output into place.
    Publishing,
}

/// Progress reported while a job runs.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub stage: Stage,
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
    let opened = open::open(job)?;
    let staging = publish::Staging::create(&job.out)?;
    let plan = plan::plan(job, &opened)?;
    let ran = run::run(job, opened, plan, &staging.path, started, progress)?;
    if job.cancelled() {
        return Err(Error::Cancelled);
    }
    progress(&Progress {
        stage: Stage::Publishing,
        frames: ran.frames,
        expected_frames: Some(ran.frames),
        media_seconds: ran.media_seconds,
        elapsed: started.elapsed(),
    });
    publish::publish(job, ran, staging, started)
}
