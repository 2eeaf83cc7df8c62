//! The CUDA ladder scaler: `kernels/ladder_scale.cu`, one launch for every rung.
//!
//! The PTX is committed (`kernels/ladder_scale.ptx`, built by `kernels/build-ptx.sh`) and embedded
//! here; the driver JIT-compiles it for whatever GPU is present. Nothing is linked at build time:
//! libcuda is opened at run time, and this module checks it is there before the first driver call
//! (cudarc panics otherwise). No driver, no device or a failing driver is an `Err`, never a panic.

use std::sync::Arc;

use cudarc::driver::{
    sys, CudaContext, CudaFunction, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig,
    PushKernelArg,
};

use super::kernel_host::check_kernel_frames;
use super::{DeviceFrame, Error, Format, FrameMut, FrameRef, KernelParams, BLOCK, MAX_RUNGS};

/// The kernel's PTX (sm_52 and later).
pub const PTX: &str = include_str!("../../kernels/ladder_scale.ptx");

/// Entry points in [`PTX`].
pub const ENTRY_NV12: &str = "ladder_scale_nv12";
pub const ENTRY_P010: &str = "ladder_scale_p010";

// SAFETY: #[repr(C)], plain integers, the layout of `struct ls_params` in the kernel.
unsafe impl DeviceRepr for KernelParams {}

/// Whether the CUDA driver library (libcuda) can be opened. Call before anything in cudarc.
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the library and drops it.
    unsafe { sys::is_culib_present() }
}

/// Runs a cudarc call that may panic (a driver missing a symbol) and turns the panic into an `Err`.
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    if !driver_present() {
        return Err(Error::NoDriver(
            "libcuda.so.1 not found (no NVIDIA driver)".into(),
        ));
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(Error::Cuda(format!(
            "{what}: the CUDA driver library failed to load a symbol"
        )))
    })
}

fn cuda(what: &str) -> impl Fn(cudarc::driver::DriverError) -> Error + '_ {
    move |e| Error::Cuda(format!("{what}: {e}"))
}

/// The ladder kernel loaded on one device, with its own stream.
#[derive(Debug)]
pub struct CudaLadderScaler {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    nv12: CudaFunction,
    p010: CudaFunction,
}

impl CudaLadderScaler {
    /// Loads the kernel on device 0.
    pub fn new() -> Result<Self, Error> {
        Self::on_device(0)
    }

    /// Loads the kernel on device `ordinal`, queuing work on a stream of its own.
    pub fn on_device(ordinal: usize) -> Result<Self, Error> {
        Self::load(ordinal, false)
    }

    /// Loads the kernel to work on frames FFmpeg's CUDA device `ordinal` decodes and encodes
    /// (opened on the primary context, see `hw::accel::HwDevice::cuda`): launches go on the
    /// context's default stream, where NVDEC's copies and FFmpeg's transfers are queued, so the
    /// kernel never reads a picture before it is complete.
    pub fn for_ffmpeg(
        ordinal: usize,
        ffmpeg_context: *mut std::ffi::c_void,
    ) -> Result<Self, Error> {
        let scaler = Self::load(ordinal, true)?;
        let ours = scaler.ctx.cu_ctx() as *mut std::ffi::c_void;
        if ours != ffmpeg_context {
            return Err(Error::Cuda(
                "FFmpeg's CUDA device is not on the primary context the kernel uses".into(),
            ));
        }
        Ok(scaler)
    }

    fn load(ordinal: usize, default_stream: bool) -> Result<Self, Error> {
        guarded("loading the ladder kernel", || {
            let count = CudaContext::device_count().map_err(cuda("counting devices"))?;
            if ordinal >= count.max(0) as usize {
                return Err(Error::NoDriver(format!(
                    "no CUDA device {ordinal} ({count} found)"
                )));
            }
            let ctx = CudaContext::new(ordinal).map_err(cuda("creating a context"))?;
            let module = ctx
                .load_module(cudarc::nvrtc::Ptx::from_src(PTX))
                .map_err(cuda("loading the PTX"))?;
            let nv12 = module.load_function(ENTRY_NV12).map_err(cuda(ENTRY_NV12))?;
            let p010 = module.load_function(ENTRY_P010).map_err(cuda(ENTRY_P010))?;
            let stream = if default_stream {
                ctx.default_stream()
            } else {
                ctx.new_stream().map_err(cuda("creating a stream"))?
            };
            Ok(CudaLadderScaler {
                ctx,
                stream,
                nv12,
                p010,
            })
        })
    }

    /// The device's name, e.g. "NVIDIA L4".
    pub fn device_name(&self) -> Result<String, Error> {
        self.ctx.name().map_err(cuda("device name"))
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The stream [`CudaLadderScaler::launch`] queues work on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Waits until everything queued on [`CudaLadderScaler::stream`] is done.
    pub fn synchronize(&self) -> Result<(), Error> {
        guarded("waiting for the GPU", || {
            self.stream
                .synchronize()
                .map_err(cuda("waiting for the GPU"))
        })
    }

    /// Queues one launch writing every rung of `dst` from `src`, on [`CudaLadderScaler::stream`]
    /// (asynchronous: synchronise the stream, or order later work on it). For frames already in
    /// device memory, e.g. NVDEC output, with no copy.
    ///
    /// # Safety
    /// Every address must be device memory of this context, valid until the launch completes,
    /// covering its frame (`pitch` × rows for each plane, chroma rows = ceil(height / 2)); the
    /// rungs must not overlap each other or the source.
    pub unsafe fn launch(
        &self,
        format: Format,
        src: &DeviceFrame,
        dst: &[DeviceFrame],
    ) -> Result<(), Error> {
        let sizes: Vec<_> = dst.iter().map(|d| (d.width, d.height)).collect();
        super::validate(src.width, src.height, &sizes)?;
        if dst.len() > MAX_RUNGS {
            return Err(Error::RungCount {
                count: dst.len(),
                max: MAX_RUNGS,
            });
        }
        let func = match format {
            Format::Nv12 => &self.nv12,
            Format::P010 => &self.p010,
            other => return Err(Error::UnsupportedFormat(other)),
        };
        let params = KernelParams::new(src, dst);
        let cfg = LaunchConfig {
            grid_dim: params.grid(),
            block_dim: (BLOCK.0, BLOCK.1, 1),
            shared_mem_bytes: params.smem_bytes(),
        };
        guarded("launching the ladder kernel", || {
            let mut args = self.stream.launch_builder(func);
            args.arg(&params);
            // SAFETY: the caller vouches for the addresses; the parameter block matches the kernel's.
            unsafe { args.launch(cfg) }
                .map(|_| ())
                .map_err(cuda("launching the ladder kernel"))
        })
    }

    /// Copies `src` to the device, runs the kernel and copies every rung back (synchronous).
    /// For self-checks and tests; the pipeline keeps frames on the device and calls `launch`.
    pub fn scale(&self, src: &FrameRef, dst: &mut [FrameMut]) -> Result<(), Error> {
        check_kernel_frames(src, dst)?;
        guarded("scaling on the GPU", || {
            let s = &self.stream;
            let up =
                |p: &super::PlaneRef| s.clone_htod(p.data).map_err(cuda("copying to the device"));
            let (src_y, src_uv) = (up(&src.planes[0])?, up(&src.planes[1])?);
            let mut outs = Vec::with_capacity(dst.len());
            for d in dst.iter() {
                let alloc = |n: usize| {
                    s.alloc_zeros::<u8>(n)
                        .map_err(cuda("allocating device memory"))
                };
                outs.push((
                    alloc(d.planes[0].data.len())?,
                    alloc(d.planes[1].data.len())?,
                ));
            }
            {
                let (y, _gy) = src_y.device_ptr(s);
                let (uv, _guv) = src_uv.device_ptr(s);
                let frame = DeviceFrame {
                    y,
                    uv,
                    pitch_y: src.planes[0].stride as u32,
                    pitch_uv: src.planes[1].stride as u32,
                    width: src.width,
                    height: src.height,
                };
                let mut guards = Vec::new();
                let mut rungs = Vec::new();
                for ((oy, ouv), d) in outs.iter_mut().zip(dst.iter()) {
                    let (y, gy) = oy.device_ptr_mut(s);
                    let (uv, guv) = ouv.device_ptr_mut(s);
                    guards.push((gy, guv));
                    rungs.push(DeviceFrame {
                        y,
                        uv,
                        pitch_y: d.planes[0].stride as u32,
                        pitch_uv: d.planes[1].stride as u32,
                        width: d.width,
                        height: d.height,
                    });
                }
                // SAFETY: every buffer was allocated above with the checked length of its host
                // plane, and lives (with its guard) until after the launch is queued and synchronised.
                unsafe { self.launch(src.format, &frame, &rungs)? };
            }
            for ((oy, ouv), d) in outs.iter().zip(dst.iter_mut()) {
                s.memcpy_dtoh(oy, d.planes[0].data)
                    .map_err(cuda("copying from the device"))?;
                s.memcpy_dtoh(ouv, d.planes[1].data)
                    .map_err(cuda("copying from the device"))?;
            }
            s.synchronize().map_err(cuda("waiting for the GPU"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptx_has_both_entries() {
        for entry in [ENTRY_NV12, ENTRY_P010] {
            assert!(
                PTX.contains(&format!(".entry {entry}(")),
                "{entry} missing from the PTX"
            );
        }
    }

    #[test]
    fn no_driver_is_an_error_not_a_panic() {
        if driver_present() {
            println!("skip: a CUDA driver is present; the no-driver path is not reachable here");
            return;
        }
        let err = CudaLadderScaler::new().unwrap_err();
        assert!(matches!(err, Error::NoDriver(_)), "{err}");
    }
}
