//! NVIDIA with the ladder kernel: NVDEC (or uploaded) CUDA frames scaled into every rung by one
//! launch of `kernels/ladder_scale.cu`.

use std::sync::Arc;

use ffmpeg_next as ff;

use super::filter_ladder::{FilterLadder, ScaleFilter};
use super::upload::ToDevice;
use super::{failed, Error, LadderFront};
use crate::hw::accel::{self, HwDevice, HwFrames};
use crate::scale::{self, CudaLadderScaler, DeviceFrame};

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
