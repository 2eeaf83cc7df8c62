//! Stage 1: check the arguments, open the input, and read what its streams declare.

use ffmpeg_next as ff;

use super::Job;
use crate::ingest::{self, deinterlace::FieldOrder, Source};
use crate::pipeline::Error;

/// The input, opened, with what the job needs to know of its video stream.
pub struct Opened {
    pub source: Source,
    /// The interlaced field order the stream declares, if any.
    pub field_order: Option<FieldOrder>,
    /// Bits per luma sample (8 when unknown).
    pub bit_depth: u32,
    /// The video stream's first timestamp: media time zero.
    pub zero: i64,
    /// The video stream's own length, when declared.
    pub video_seconds: Option<f64>,
    /// The length the file declares (the video's, else the container's).
    pub expected_seconds: Option<f64>,
}

impl Opened {
    pub fn video_stream(&self) -> ff::format::stream::Stream<'_> {
        self.source
            .input
            .stream(self.source.video.index)
            .expect("the chosen stream exists")
    }
}

pub fn open(job: &Job) -> Result<Opened, Error> {
    crate::media::time::check_segment_duration(job.segment_duration)
        .map_err(Error::SegmentDuration)?;
    if job.out.exists() && !job.force {
        return Err(Error::OutputExists(job.out.clone()));
    }
    let source = ingest::open(&job.input)?;
    let stream = source
        .input
        .stream(source.video.index)
        .expect("the chosen stream exists");
    let field_order = FieldOrder::of(&stream);
    let bit_depth = crate::media::pixel::bit_depth(&stream);
    let zero = match stream.start_time() {
        t if t != ff::ffi::AV_NOPTS_VALUE => t,
        _ => 0,
    };
    let video_seconds = {
        let d = stream.duration();
        (d > 0).then(|| d as f64 * f64::from(source.video.time_base))
    };
    let expected_seconds = video_seconds.or(source.duration);
    Ok(Opened {
        source,
        field_order,
        bit_depth,
        zero,
        video_seconds,
        expected_seconds,
    })
}
