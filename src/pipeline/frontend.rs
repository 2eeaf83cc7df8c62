//! The ladder front end: decode once and make one picture per rung, on the CPU or on a GPU.
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

use std::sync::Arc;

use ff::ffi;
use ffmpeg_next as ff;

use crate::encode::{Backend, Kind};
use crate::hw::accel::{self, DeviceKind, HwDevice, HwFrames};
use crate::ingest::decode::VideoDecoder;
use crate::media::{Rung, VideoCodec};
use crate::scale::{self, swscale::RungScaler, CudaLadderScaler, DeviceFrame};

/// A front-end failure (a GPU call that failed mid-job).
#[derive(Debug, thiserror::Error)]
#[error("{stage}: {message}")]
pub struct Error {
    pub stage: &'static str,
    pub message: String,
}

impl From<Error> for super::Error {
    fn from(e: Error) -> Self {
        crate::encode::Error::Encode {
            backend: e.stage,
            message: e.message,
        }
        .into()
    }
}

fn failed(stage: &'static str) -> impl Fn(String) -> Error {
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

/// The software front end: every rung gets the decoded picture and scales it on its own thread.
pub struct Shared {
    pub rungs: usize,
}

impl LadderFront for Shared {
    fn describe(&self) -> String {
        "software decode, swscale per rung".into()
    }
    fn on_gpu(&self) -> bool {
        false
    }
    fn rungs(
        &mut self,
        frame: &Arc<ff::frame::Video>,
    ) -> Result<Vec<Arc<ff::frame::Video>>, Error> {
        Ok(vec![frame.clone(); self.rungs])
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

/// Frames on a device, made from any decoded picture: hardware frames pass through (whatever
/// their layout: the scalers after this convert, or hand over to one that does), software frames
/// are converted to `layout` and uploaded once.
struct ToDevice {
    device: HwDevice,
    layout: ff::format::Pixel,
    pool: Option<(HwFrames, RungScaler)>,
}

impl ToDevice {
    fn frame(&mut self, frame: &Arc<ff::frame::Video>) -> Result<Arc<ff::frame::Video>, Error> {
        if accel::is_hardware_frame(frame) {
            return Ok(frame.clone());
        }
        let (w, h) = (frame.width(), frame.height());
        if self.pool.as_ref().map(|(p, _)| p.size()) != Some((w, h)) {
            let pool = HwFrames::new(&self.device, self.layout, w, h, 0)
                .map_err(|e| failed("upload")(e.0))?;
            self.pool = Some((pool, RungScaler::new(w, h, self.layout)));
        }
        let (pool, converter) = self.pool.as_mut().expect("set above");
        let host = converter
            .scale(frame)
            .map_err(|e| failed("upload")(e.to_string()))?;
        let mut uploaded = pool.upload(&host).map_err(|e| failed("upload")(e.0))?;
        uploaded.set_pts(frame.pts());
        Ok(Arc::new(uploaded))
    }
}

/// NVDEC (or uploaded) CUDA frames → the ladder kernel, one launch writing every rung into the
/// rung pools (the NVENC encoders' own, or ours when the rungs are downloaded).
pub struct CudaKernel {
    kernel: CudaLadderScaler,
    to_device: ToDevice,
    pools: Vec<HwFrames>,
    download: bool,
    /// `scale_cuda`, for pictures the kernel does not take: another layout (a 10-bit or 4:4:4
    /// decode for an 8-bit ladder) or a size it cannot scale in one launch (a mid-stream change).
    fallback: Option<FilterLadder>,
}

impl CudaKernel {
    /// Loads the kernel for `device` writing into `pools` (one per rung); `Err` with the reason
    /// when it cannot (no PTX support, more rungs or a steeper downscale than one launch does).
    pub fn new(
        device: &HwDevice,
        source: (u32, u32),
        pools: Vec<HwFrames>,
        download: bool,
    ) -> Result<Self, String> {
        let sizes: Vec<_> = pools.iter().map(|p| p.size()).collect();
        scale::validate(source.0, source.1, &sizes).map_err(|e| e.to_string())?;
        if sizes.len() > scale::MAX_RUNGS {
            return Err(format!(
                "{} rungs (one launch writes at most {})",
                sizes.len(),
                scale::MAX_RUNGS
            ));
        }
        let layout = pools[0].sw_format();
        kernel_format(layout)?;
        let kernel =
            CudaLadderScaler::for_ffmpeg(0, device.cuda_context()).map_err(|e| e.to_string())?;
        Ok(CudaKernel {
            kernel,
            to_device: ToDevice {
                device: device.clone(),
                layout,
                pool: None,
            },
            pools,
            download,
            fallback: None,
        })
    }

    /// The scale_cuda ladder for pictures the kernel cannot take, made on first need.
    fn fallback(&mut self, why: String) -> &mut FilterLadder {
        let (device, pools, download) = (&self.to_device.device, &self.pools, self.download);
        self.fallback.get_or_insert_with(|| {
            tracing::warn!("ladder kernel: {why}; those pictures are scaled with scale_cuda");
            FilterLadder::new(
                ScaleFilter::Cuda,
                pools.iter().map(HwFrames::size).collect(),
                pools[0].sw_format(),
                Some(device),
                download,
            )
        })
    }
}

fn kernel_format(layout: ff::format::Pixel) -> Result<scale::Format, String> {
    match layout {
        ff::format::Pixel::NV12 => Ok(scale::Format::Nv12),
        ff::format::Pixel::P010LE => Ok(scale::Format::P010),
        other => Err(format!("the ladder kernel does not take {other:?} frames")),
    }
}

/// The device addresses of a CUDA frame's two planes (NV12/P010: data[0] luma, data[1] chroma).
fn device_frame(frame: &ff::frame::Video) -> DeviceFrame {
    // SAFETY: CUDA frames carry device pointers in data[0..2] and pitches in linesize[0..2].
    unsafe {
        let f = &*frame.as_ptr();
        DeviceFrame {
            y: f.data[0] as u64,
            uv: f.data[1] as u64,
            pitch_y: f.linesize[0] as u32,
            pitch_uv: f.linesize[1] as u32,
            width: f.width as u32,
            height: f.height as u32,
        }
    }
}

impl LadderFront for CudaKernel {
    fn describe(&self) -> String {
        format!(
            "NVDEC, ladder kernel{}",
            if self.download {
                ", one download per rung frame"
            } else {
                ", CUDA frames to the encoder"
            }
        )
    }

    fn rungs(
        &mut self,
        frame: &Arc<ff::frame::Video>,
    ) -> Result<Vec<Arc<ff::frame::Video>>, Error> {
        let source = self.to_device.frame(frame)?;
        let layout = accel::frame_layout(&source);
        let wanted = self.pools[0].sw_format();
        let sizes: Vec<_> = self.pools.iter().map(HwFrames::size).collect();
        if layout != wanted {
            let why = format!("{layout:?} pictures for {wanted:?} rungs");
            return self.fallback(why).rungs(&source);
        }
        if let Err(e) = scale::validate(source.width(), source.height(), &sizes) {
            let why = format!("{}x{} pictures: {e}", source.width(), source.height());
            return self.fallback(why).rungs(&source);
        }
        let format = kernel_format(layout).map_err(failed("ladder kernel"))?;
        let mut outputs = Vec::with_capacity(self.pools.len());
        for pool in &self.pools {
            outputs.push(pool.get().map_err(|e| failed("ladder kernel")(e.0))?);
        }
        let src = device_frame(&source);
        let dst: Vec<DeviceFrame> = outputs.iter().map(device_frame).collect();
        // SAFETY: every frame is a live CUDA frame of FFmpeg's device, on the kernel's (primary)
        // context, covering its size with its pitch (FFmpeg allocated it); the rung frames are
        // fresh pool frames, distinct from each other and from the source, and all of them are
        // kept alive until the launch has completed (synchronised below).
        unsafe { self.kernel.launch(format, &src, &dst) }
            .map_err(|e| failed("ladder kernel")(e.to_string()))?;
        self.kernel
            .synchronize()
            .map_err(|e| failed("ladder kernel")(e.to_string()))?;
        outputs
            .into_iter()
            .map(|mut out| {
                out.set_pts(frame.pts());
                if self.download {
                    accel::download(&out).map_err(|e| failed("download")(e.0))
                } else {
                    Ok(out)
                }
                .map(Arc::new)
            })
            .collect()
    }
}

/// Surfaces added to each scale_vaapi output pool: a rung queue (8) plus the encoder's pictures in
/// flight (up to `async_depth` and the reorder depth), with margin.
const VAAPI_EXTRA_SURFACES: u32 = 32;

/// Which FFmpeg scale filter a [`FilterLadder`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleFilter {
    /// `scale` (swscale) then `format`: the graph's plumbing, runnable anywhere.
    Software,
    /// `scale_cuda` on CUDA frames.
    Cuda,
    /// `scale_vaapi` on VA-API surfaces.
    Vaapi,
}

impl ScaleFilter {
    fn rung(self, width: u32, height: u32, layout: ff::format::Pixel) -> String {
        let format = pixel_name(layout);
        match self {
            ScaleFilter::Software => format!("scale=w={width}:h={height},format={format}"),
            // passthrough=0: a rung of the source's size gets its own frame, so NVDEC's fixed
            // surfaces are never held by the rung queues; format= gives every rung the layout
            // the encoder's pool has.
            ScaleFilter::Cuda => {
                format!("scale_cuda=w={width}:h={height}:format={format}:passthrough=0")
            }
            // scale_vaapi's output pool is fixed (10 surfaces by default): room for the rung
            // queue and the encoder's frames in flight.
            ScaleFilter::Vaapi => format!(
                "scale_vaapi=w={width}:h={height}:format={format}:extra_hw_frames={VAAPI_EXTRA_SURFACES}"
            ),
        }
    }
}

/// The FFmpeg name of a pixel format number (as codec parameters hold it).
pub fn pixel_format_name(format: i32) -> String {
    if format < 0 || format >= ffi::AVPixelFormat::AV_PIX_FMT_NB as i32 {
        return format!("pixel format {format}");
    }
    // SAFETY: in range, so a value of the enum.
    pixel_name(unsafe { std::mem::transmute::<i32, ffi::AVPixelFormat>(format) }.into())
}

fn pixel_name(format: ff::format::Pixel) -> String {
    // SAFETY: av_get_pix_fmt_name returns a static string or null.
    unsafe {
        let name = ffi::av_get_pix_fmt_name(format.into());
        if name.is_null() {
            return "none".into();
        }
        std::ffi::CStr::from_ptr(name)
            .to_string_lossy()
            .into_owned()
    }
}

type GraphKey = (ff::format::Pixel, ff::format::Pixel, u32, u32);

/// A libavfilter graph: `split` into one branch per rung, each with the scale filter, each
/// ending in its own sink. Built at the first picture (hardware frames bring their frames context).
pub struct FilterLadder {
    filter: ScaleFilter,
    sizes: Vec<(u32, u32)>,
    layout: ff::format::Pixel,
    to_device: Option<ToDevice>,
    download: bool,
    /// The graph and what it was built for: (format, layout, width, height) of its input.
    graph: Option<(ff::filter::Graph, GraphKey)>,
}

impl FilterLadder {
    /// `layout`: the rung frames' pixel layout (NV12, P010; software: the encoder's format).
    /// `device`: where software-decoded pictures are uploaded first (hardware filters).
    pub fn new(
        filter: ScaleFilter,
        sizes: Vec<(u32, u32)>,
        layout: ff::format::Pixel,
        device: Option<&HwDevice>,
        download: bool,
    ) -> Self {
        FilterLadder {
            filter,
            sizes,
            layout,
            // Both scale filters convert layouts themselves (format=): uploads use the rungs'.
            to_device: device.map(|d| ToDevice {
                device: d.clone(),
                layout,
                pool: None,
            }),
            download,
            graph: None,
        }
    }

    /// The graph's description, e.g. `[in]split=2[s0][s1];[s0]scale_cuda=w=1280:h=720[out0];…`.
    pub fn spec(&self) -> String {
        let n = self.sizes.len();
        let mut spec = format!("[in]split={n}");
        for i in 0..n {
            spec += &format!("[s{i}]");
        }
        for (i, (w, h)) in self.sizes.iter().enumerate() {
            spec += &format!(";[s{i}]{}[out{i}]", self.filter.rung(*w, *h, self.layout));
        }
        spec
    }

    fn build(&self, frame: &ff::frame::Video) -> Result<ff::filter::Graph, String> {
        crate::hw::filter::build(
            frame,
            ff::Rational::new(1, 90_000),
            &self.spec(),
            self.sizes.len(),
        )
    }
}

impl LadderFront for FilterLadder {
    fn describe(&self) -> String {
        let (decode, scale) = match self.filter {
            ScaleFilter::Software => ("software decode", "scale filter"),
            ScaleFilter::Cuda => ("NVDEC", "scale_cuda"),
            ScaleFilter::Vaapi => ("VA-API decode", "scale_vaapi"),
        };
        format!(
            "{decode}, {scale}{}",
            if self.download {
                ", one download per rung frame"
            } else {
                ""
            }
        )
    }

    fn rungs(
        &mut self,
        frame: &Arc<ff::frame::Video>,
    ) -> Result<Vec<Arc<ff::frame::Video>>, Error> {
        let stage = match self.filter {
            ScaleFilter::Software => "scale",
            ScaleFilter::Cuda => "scale_cuda",
            ScaleFilter::Vaapi => "scale_vaapi",
        };
        let frame = match &mut self.to_device {
            Some(to_device) => to_device.frame(frame)?,
            None => frame.clone(),
        };
        let key = (
            frame.format(),
            accel::frame_layout(&frame),
            frame.width(),
            frame.height(),
        );
        if self.graph.as_ref().map(|(_, k)| *k) != Some(key) {
            let graph = self.build(&frame).map_err(failed(stage))?;
            self.graph = Some((graph, key));
        }
        let (graph, _) = self.graph.as_mut().expect("built above");
        crate::hw::filter::push(graph, Some(&frame)).map_err(failed(stage))?;
        let mut out = Vec::with_capacity(self.sizes.len());
        for i in 0..self.sizes.len() {
            let mut picture = crate::hw::filter::pull(graph, i)
                .map_err(|e| failed(stage)(format!("rung {i}: {e}")))?
                .ok_or_else(|| failed(stage)(format!("rung {i}: no picture")))?;
            picture.set_pts(frame.pts());
            if self.download {
                picture = accel::download(&picture).map_err(|e| failed("download")(e.0))?;
            }
            out.push(Arc::new(picture));
        }
        Ok(out)
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

/// Bits per luma sample of a stream's pixel format (8 when unknown).
pub fn bit_depth(stream: &ff::format::stream::Stream) -> u32 {
    // SAFETY: codecpar is valid for an open stream; the descriptor is static or null.
    unsafe {
        let format = (*stream.parameters().as_ptr()).format;
        if format < 0 || format >= ffi::AVPixelFormat::AV_PIX_FMT_NB as i32 {
            return 8;
        }
        // In range, so a value of the enum.
        let desc = ffi::av_pix_fmt_desc_get(std::mem::transmute::<i32, ffi::AVPixelFormat>(format));
        if desc.is_null() {
            return 8;
        }
        (*desc).comp[0].depth as u32
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
