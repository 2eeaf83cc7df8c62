//! Stage 2: decide everything before a frame is decoded: the ladder for this source, the
//! deinterlacer and the output rate, the GPU (if any), an encoder for every rung, the decoder
//! and the front end that makes each rung's picture.
//!
//! Encoders open before decoding starts: a refusal fails the job at once, and hardware
//! encoders bring the device frame pools the front end writes into.

use super::open::Opened;
use super::Job;
use crate::encode::{self, Backend};
use crate::ingest::{self, decode::VideoDecoder, deinterlace::Deinterlacer};
use crate::media::{Ladder, Rational, Rung};
use crate::pipeline::frontend::{self, Cached};
use crate::pipeline::Error;

pub struct Plan {
    pub rungs: Vec<Rung>,
    /// The output frame rate (twice the source's with one picture per field).
    pub fps: Rational,
    pub timescale: u32,
    pub frame_ticks: u64,
    pub deinterlacer: Deinterlacer,
    /// One per rung, in rung order.
    pub encoders: Vec<Box<dyn Backend>>,
    pub backend_name: String,
    pub decoder: VideoDecoder,
    pub front: Cached,
    pub front_end: String,
}

pub fn plan(job: &Job, opened: &Opened) -> Result<Plan, Error> {
    let video = &opened.source.video;
    let ladder = job
        .ladder
        .clone()
        .unwrap_or_else(|| Ladder::default_for(job.codec));
    let rungs = ladder.plan(video.width, video.height, video.display_aspect)?;
    let deinterlacer = Deinterlacer::new(job.deinterlace, opened.field_order, video.time_base);
    let fps = Rational::new(
        video.frame_rate.num * deinterlacer.rate_factor(),
        video.frame_rate.den,
    )
    .reduced();
    let timescale = fps.video_timescale();

    let mut gpu = frontend::plan(&job.backend, job.codec, opened.bit_depth, &job.vaapi_node);
    gpu.ladder_kernel = job.ladder_kernel;
    let configs: Vec<encode::Config> = rungs
        .iter()
        .map(|rung| encode::Config {
            rate_control: job.rate_control,
            device: encode::DeviceInput {
                zero_copy: gpu.zero_copy,
                layout: gpu.layout,
                vaapi_node: job.vaapi_node.clone(),
            },
            ..encode::Config::for_rung(
                job.codec,
                rung,
                fps,
                job.segment_duration.as_secs_f64(),
                &job.preset,
            )
        })
        .collect();
    let encoders = encode::select_ladder(&job.backend, &encode::backend::candidates(), &configs)?;
    let backend_name = encoders
        .first()
        .map(|e| e.name().to_string())
        .unwrap_or_default();
    let stream = opened.video_stream();
    let (decoder, front) = frontend::open(
        &gpu,
        &stream,
        (video.width, video.height),
        &rungs,
        &encoders,
    )
    .map_err(|reason| ingest::Error::Decoder {
        path: job.input.clone(),
        reason,
    })?;
    let front = Cached::new(front);
    let front_end = frontend::LadderFront::describe(&front);
    tracing::debug!(backend = %backend_name, front_end = %front_end, "ladder");
    Ok(Plan {
        rungs,
        fps,
        timescale,
        frame_ticks: fps.frame_ticks(timescale),
        deinterlacer,
        encoders,
        backend_name,
        decoder,
        front,
        front_end,
    })
}
