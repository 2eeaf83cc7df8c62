//! The ladder front end: decode once and make one picture per rung, on the CPU or on a GPU.
//!
//! One file per front end: `software.rs`, `cuda_kernel.rs` (NVIDIA with the ladder kernel),
//! `filter_ladder.rs` (NVIDIA with `scale_cuda`, VA-API with `scale_vaapi`); `upload.rs` puts
//! software-decoded pictures on the device. The filter-graph plumbing is `hw::filter`.
//!
//! | front end | decode | scale | rung frames go to the encoder as |
//! |---|---|---|---|
//! | [`Shared`] (software) | libavcodec | swscale, on each rung's thread | the shared decoded picture |
//! | [`CudaKernel`] | NVDEC | `kernels/ladder_scale.cu`, one launch for every rung | CUDA frames (NVENC), or one download per rung frame (GPUs without NVENC) |
//! | [`FilterLadder`] `scale_cuda` | NVDEC | FFmpeg's `scale_cuda`: when the kernel cannot load or is turned off, and inside [`CudaKernel`] for pictures it cannot take (another layout, a size beyond one launch) | as above |
//! | [`FilterLadder`] `scale_vaapi` | VA-API | FFmpeg's `scale_vaapi` | VA-API surfaces |
//!
//! A source the GPU cannot decode is decoded in software and uploaded once. [`plan`] chooses the
//! device before the encoders open (they need its frame pools); [`open`] builds the front end once
//! the encoders are known. Every choice away from the fastest path is logged with its reason.

mod cuda_kernel;
mod filter_ladder;
mod software;
mod upload;

use std::sync::Arc;

use ffmpeg_next as ff;

pub use cuda_kernel::CudaKernel;
pub use filter_ladder::{FilterLadder, ScaleFilter};
pub use software::Shared;

use crate::encode::{Backend, Kind};
use crate::hw::accel::{self, DeviceKind, HwDevice, HwFrames};
use crate::ingest::decode::VideoDecoder;
use crate::media::{Rung, VideoCodec};

/// A front-end failure (a GPU call that failed mid-job).
#[derive(Debug, thiserror::Error)]
#[error("{stage}: {message}")]
pub struct Error {
    pub stage: &'static str,
    pub message: String,
}

impl From<Error> for crate::pipeline::Error {
    fn from(e: Error) -> Self {
        crate::encode::Error::Encode {
            backend: e.stage,
            message: e.message,
        }
        .into()
    }
}

pub(super) fn failed(stage: &'static str) -> impl Fn(String) -> Error {
    move |message| Error { stage, message }
}

/// Makes each rung's picture from one decoded picture.
pub trait LadderFront {
    /// What runs where, for logs and the job summary (e.g. "nvdec + ladder kernel").
    fn describe(&self) -> String;
    /// One picture per rung, in rung order, each with the source picture's timestamp.
    fn rungs(&mut self, frame: &Arc<ff::frame::Video>)
        -> Result<Vec<Arc<ff::frame::Video>>, Error>;
    /// Whether it works on GPU frames (so decoding on the GPU saves an upload).
    fn on_gpu(&self) -> bool {
        true
    }
}

/// Repeated pictures (the constant-frame-rate converter's duplicates) are scaled once.
pub struct Cached {
    inner: Box<dyn LadderFront>,
    last: Option<(Arc<ff::frame::Video>, Vec<Arc<ff::frame::Video>>)>,
}

impl Cached {
    pub fn new(inner: Box<dyn LadderFront>) -> Self {
        Cached { inner, last: None }
    }
}

impl LadderFront for Cached {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn on_gpu(&self) -> bool {
        self.inner.on_gpu()
    }
    fn rungs(
        &mut self,
        frame: &Arc<ff::frame::Video>,
    ) -> Result<Vec<Arc<ff::frame::Video>>, Error> {
        if let Some((source, rungs)) = &self.last {
            if Arc::ptr_eq(source, frame) {
                return Ok(rungs.clone());
            }
        }
        let rungs = self.inner.rungs(frame)?;
        self.last = Some((frame.clone(), rungs.clone()));
        Ok(rungs)
    }
}

/// The GPU a job's front end runs on, chosen before its encoders open.
#[derive(Debug, Clone)]
pub struct Plan {
    pub device: Option<HwDevice>,
    /// Device frame layout for the encoders (NV12, or P010 for 10-bit HEVC).
    pub layout: ff::format::Pixel,
    /// Encoders on this kind of device may take its frames (the layout suits the codec).
    pub zero_copy: Option<DeviceKind>,
    /// Scale CUDA frames with the ladder kernel (else FFmpeg's scale_cuda).
    pub ladder_kernel: bool,
}

/// Picks the GPU for a job: none for software-only kinds; CUDA (then VA-API) for `Auto` and
/// `Hardware`; the named backend's device otherwise. A missing device is not an error here
/// (the encoders' selection reports it); the reason is logged at debug level.
pub fn plan(
    kind: &Kind,
    codec: VideoCodec,
    source_bit_depth: u32,
    vaapi_node: &std::path::Path,
) -> Plan {
    use crate::encode::backend::{nvenc, software, vaapi};
    let ten_bit = source_bit_depth > 8;
    // 10-bit stays 10-bit on the GPU for HEVC; for 8-bit AVC, scale_cuda or scale_vaapi
    // convert a 10-bit decode on the GPU.
    let layout = if ten_bit && codec == VideoCodec::Hevc {
        ff::format::Pixel::P010LE
    } else {
        ff::format::Pixel::NV12
    };
    let cuda = || accel::shared_cuda();
    let va = || accel::shared_vaapi(vaapi_node);
    let tries: Vec<&dyn Fn() -> Result<HwDevice, accel::Error>> = match kind {
        Kind::Software => vec![],
        Kind::Named(n) if n == software::NAME => vec![],
        Kind::Named(n) if n == nvenc::NAME => vec![&cuda],
        Kind::Named(n) if n == vaapi::NAME => vec![&va],
        Kind::Named(_) => vec![],
        Kind::Auto | Kind::Hardware => vec![&cuda, &va],
    };
    let mut device = None;
    for open in tries {
        match open() {
            Ok(d) => {
                device = Some(d);
                break;
            }
            Err(e) => tracing::debug!("no GPU front end: {e}"),
        }
    }
    let zero_copy = device.as_ref().map(HwDevice::kind);
    Plan {
        device,
        layout,
        zero_copy,
        ladder_kernel: true,
    }
}

/// The device pools of `encoders`, when every one of them takes frames of the plan's device.
pub fn encoder_pools(plan: &Plan, encoders: &[Box<dyn Backend>]) -> Option<Vec<HwFrames>> {
    let kind = plan.device.as_ref().map(HwDevice::kind)?;
    encoders
        .iter()
        .map(|e| e.device_frames().cloned())
        .collect::<Option<Vec<_>>>()
        .filter(|pools| pools.iter().all(|p| p.device().kind() == kind))
}

/// Opens the decoder and the front end for `rungs`, given the encoders chosen for them.
pub fn open(
    plan: &Plan,
    stream: &ff::format::stream::Stream,
    source: (u32, u32),
    rungs: &[Rung],
    encoders: &[Box<dyn Backend>],
) -> Result<(VideoDecoder, Box<dyn LadderFront>), String> {
    let sizes: Vec<(u32, u32)> = rungs.iter().map(|r| (r.width, r.height)).collect();
    let front = for_pictures(plan, source, &sizes, encoder_pools(plan, encoders));
    let decoder = match plan.device.as_ref().filter(|_| front.on_gpu()) {
        Some(device) => VideoDecoder::open_hw(stream, device).or_else(|why| {
            tracing::warn!("{why}: decoding in software and uploading each picture once");
            VideoDecoder::open(stream).map_err(|e| e.to_string())
        })?,
        None => VideoDecoder::open(stream).map_err(|e| e.to_string())?,
    };
    Ok((decoder, front))
}

/// The front end for pictures of `source` size (decoded anywhere: software pictures are
/// uploaded once) making rungs of `sizes`: on the plan's GPU into `encoder_pools` (zero-copy),
/// or into pools of ours downloaded after scaling (CUDA with system-memory encoders); the
/// software front end when there is no GPU or nothing to gain from it.
pub fn for_pictures(
    plan: &Plan,
    source: (u32, u32),
    sizes: &[(u32, u32)],
    encoder_pools: Option<Vec<HwFrames>>,
) -> Box<dyn LadderFront> {
    let shared = || -> Box<dyn LadderFront> { Box::new(Shared { rungs: sizes.len() }) };
    let Some(device) = plan.device.as_ref() else {
        return shared();
    };
    // Device frames for the encoders, or pools of ours whose frames are downloaded.
    let (pools, download) = match encoder_pools {
        Some(pools) => (pools, false),
        None if device.kind() == DeviceKind::Cuda => {
            let pools: Result<Vec<_>, _> = sizes
                .iter()
                .map(|(w, h)| HwFrames::new(device, plan.layout, *w, *h, 0))
                .collect();
            match pools {
                Ok(p) => (p, true),
                Err(e) => {
                    tracing::warn!("scaling on the CPU: {e}");
                    return shared();
                }
            }
        }
        // The encoders take system memory and the GPU is VA-API: the software path.
        None => return shared(),
    };
    let filter = |filter| -> Box<dyn LadderFront> {
        Box::new(FilterLadder::new(
            filter,
            sizes.to_vec(),
            plan.layout,
            Some(device),
            download,
        ))
    };
    match device.kind() {
        DeviceKind::Cuda if !plan.ladder_kernel => filter(ScaleFilter::Cuda),
        DeviceKind::Cuda => match CudaKernel::new(device, source, pools, download) {
            Ok(kernel) => Box::new(kernel),
            Err(why) => {
                tracing::warn!("ladder kernel unavailable ({why}): scaling with scale_cuda");
                filter(ScaleFilter::Cuda)
            }
        },
        DeviceKind::Vaapi => filter(ScaleFilter::Vaapi),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(width: u32, height: u32, pts: i64) -> Arc<ff::frame::Video> {
        let mut f = ff::frame::Video::new(ff::format::Pixel::YUV420P, width, height);
        for plane in 0..3 {
            let stride = f.stride(plane);
            let data = f.data_mut(plane);
            for (i, b) in data.iter_mut().enumerate() {
                *b = ((i % stride) * 7 + i / stride * 3 + plane * 50) as u8;
            }
        }
        f.set_pts(Some(pts));
        Arc::new(f)
    }

    #[test]
    fn the_filter_ladder_makes_every_rung_from_one_picture() {
        crate::ingest::init();
        let sizes = vec![(640, 360), (426, 240), (256, 144)];
        let mut ladder = Cached::new(Box::new(FilterLadder::new(
            ScaleFilter::Software,
            sizes.clone(),
            ff::format::Pixel::YUV420P,
            None,
            false,
        )));
        assert_eq!(ladder.describe(), "software decode, scale filter");
        let a = picture(1280, 720, 3000);
        for round in 0..3 {
            let rungs = ladder.rungs(&a).unwrap();
            assert_eq!(rungs.len(), 3);
            for (rung, (w, h)) in rungs.iter().zip(&sizes) {
                assert_eq!((rung.width(), rung.height()), (*w, *h), "round {round}");
                assert_eq!(rung.format(), ff::format::Pixel::YUV420P);
                assert_eq!(rung.pts(), Some(3000));
            }
        }
        // A new picture, then one of another size: the graph follows.
        let b = picture(1920, 1080, 6000);
        let rungs = ladder.rungs(&b).unwrap();
        assert_eq!(rungs[0].pts(), Some(6000));
        assert_eq!((rungs[2].width(), rungs[2].height()), (256, 144));
    }

    #[test]
    fn filter_specs_name_each_rung() {
        let f = FilterLadder::new(
            ScaleFilter::Cuda,
            vec![(1280, 720), (640, 360)],
            ff::format::Pixel::NV12,
            None,
            false,
        );
        assert_eq!(
            f.spec(),
            "[in]split=2[s0][s1];[s0]scale_cuda=w=1280:h=720:format=nv12:passthrough=0[out0];[s1]scale_cuda=w=640:h=360:format=nv12:passthrough=0[out1]"
        );
        let v = FilterLadder::new(
            ScaleFilter::Vaapi,
            vec![(854, 480)],
            ff::format::Pixel::NV12,
            None,
            false,
        );
        assert_eq!(
            v.spec(),
            "[in]split=1[s0];[s0]scale_vaapi=w=854:h=480:format=nv12:extra_hw_frames=32[out0]"
        );
        // The filters exist in the FFmpeg this build links.
        crate::ingest::init();
        for name in ["scale_cuda", "scale_vaapi", "split", "buffer", "buffersink"] {
            assert!(
                ff::filter::find(name).is_some(),
                "{name} missing from FFmpeg"
            );
        }
    }

    #[test]
    fn without_a_gpu_the_plan_is_software() {
        if crate::scale::cuda::driver_present() || std::path::Path::new("/dev/dri").exists() {
            println!("skip: this machine has a GPU driver or render nodes");
            return;
        }
        let node = std::path::Path::new(crate::encode::DEFAULT_VAAPI_NODE);
        for kind in [
            Kind::Auto,
            Kind::Hardware,
            Kind::Software,
            Kind::Named("nvenc".into()),
        ] {
            let p = plan(&kind, VideoCodec::Avc, 8, node);
            assert!(p.device.is_none() && p.zero_copy.is_none(), "{kind:?}");
        }
        let p = plan(&Kind::Auto, VideoCodec::Hevc, 10, node);
        assert_eq!(p.layout, ff::format::Pixel::P010LE);
    }
}
