//! FFmpeg hardware devices and frame pools (`AVHWDeviceContext`, `AVHWFramesContext`).
//!
//! Frames that live on a GPU (NVDEC output, ladder-kernel output, VA-API surfaces) are ordinary
//! `AVFrame`s whose `hw_frames_ctx` names the pool they came from; encoders opened on such a pool
//! take them with no host copy. Everything here is opened at run time: no driver is an `Err` with
//! the reason, checked before FFmpeg is asked (so FFmpeg's own driver noise never reaches the log).

use std::path::Path;
use std::ptr;
use std::sync::{Arc, OnceLock};

use ff::ffi;
use ffmpeg_next as ff;

/// Why a hardware device or pool could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

/// The kind of hardware a device or frame lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Cuda,
    Vaapi,
}

impl DeviceKind {
    fn av_type(self) -> ffi::AVHWDeviceType {
        match self {
            DeviceKind::Cuda => ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_CUDA,
            DeviceKind::Vaapi => ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_VAAPI,
        }
    }

    /// The pixel format of frames on this kind of device.
    pub fn pixel_format(self) -> ff::format::Pixel {
        match self {
            DeviceKind::Cuda => ff::format::Pixel::CUDA,
            DeviceKind::Vaapi => ff::format::Pixel::VAAPI,
        }
    }
}

/// An owned `AVBufferRef` (device or frames context), released on drop.
struct BufferRef(*mut ffi::AVBufferRef);

// SAFETY: AVBufferRef reference counting is atomic, and FFmpeg's device and frames contexts are
// safe to use from several threads once initialised (av_hwframe_get_buffer takes from a
// thread-safe pool).
unsafe impl Send for BufferRef {}
unsafe impl Sync for BufferRef {}

impl Drop for BufferRef {
    fn drop(&mut self) {
        // SAFETY: we own one reference.
        unsafe { ffi::av_buffer_unref(&mut self.0) }
    }
}

impl BufferRef {
    /// A new reference to the same buffer, for FFmpeg to own (e.g. `avctx->hw_frames_ctx`).
    fn new_ref(&self) -> *mut ffi::AVBufferRef {
        // SAFETY: self.0 is a valid reference.
        unsafe { ffi::av_buffer_ref(self.0) }
    }
}

fn av_error(what: &str, code: i32) -> Error {
    Error(format!("{what}: {}", ff::Error::from(code)))
}

/// An opened GPU device: a CUDA context or a VA-API display.
#[derive(Clone)]
pub struct HwDevice {
    kind: DeviceKind,
    buffer: Arc<BufferRef>,
    description: String,
}

impl std::fmt::Debug for HwDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HwDevice({})", self.description)
    }
}

impl HwDevice {
    /// CUDA device `ordinal`, on the device's primary context: the context the ladder kernel
    /// (cudarc) also retains, so one set of device pointers is valid for NVDEC, the kernel and NVENC.
    pub fn cuda(ordinal: usize) -> Result<HwDevice, Error> {
        if !crate::scale::cuda::driver_present() {
            return Err(Error("libcuda.so.1 not found (no NVIDIA driver)".into()));
        }
        let mut options = ff::Dictionary::new();
        options.set("primary_ctx", "1");
        Self::create(
            DeviceKind::Cuda,
            &ordinal.to_string(),
            options,
            format!("CUDA device {ordinal}"),
        )
    }

    /// The VA-API display on a DRM render node, e.g. `/dev/dri/renderD128`.
    pub fn vaapi(node: &Path) -> Result<HwDevice, Error> {
        if !node.exists() {
            return Err(Error(format!(
                "no VA-API render node {} (no GPU driver loaded, or the device is not passed to this container)",
                node.display()
            )));
        }
        // SAFETY: only tries to dlopen the library and drops it.
        if unsafe { libloading::Library::new("libva.so.2") }.is_err() {
            return Err(Error(
                "libva.so.2 not found (install libva2 and a VA driver)".into(),
            ));
        }
        if let Err(e) = std::fs::File::open(node) {
            return Err(Error(format!("{}: {e}", node.display())));
        }
        Self::create(
            DeviceKind::Vaapi,
            &node.to_string_lossy(),
            ff::Dictionary::new(),
            format!("VA-API {}", node.display()),
        )
    }

    fn create(
        kind: DeviceKind,
        device: &str,
        options: ff::Dictionary,
        description: String,
    ) -> Result<HwDevice, Error> {
        super::init_ffmpeg();
        let name = std::ffi::CString::new(device).map_err(|_| Error("bad device name".into()))?;
        let mut buffer = ptr::null_mut();
        // SAFETY: out-pointer and C strings are valid; the disowned dictionary is freed below.
        let rc = unsafe {
            let options = options.disown();
            let rc =
                ffi::av_hwdevice_ctx_create(&mut buffer, kind.av_type(), name.as_ptr(), options, 0);
            let mut options = options;
            ffi::av_dict_free(&mut options);
            rc
        };
        if rc < 0 || buffer.is_null() {
            return Err(av_error(&format!("opening {description}"), rc));
        }
        Ok(HwDevice {
            kind,
            buffer: Arc::new(BufferRef(buffer)),
            description,
        })
    }

    pub fn kind(&self) -> DeviceKind {
        self.kind
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// A new `AVBufferRef` to the device context, owned by the caller (FFmpeg frees it).
    pub fn new_ref(&self) -> *mut ffi::AVBufferRef {
        self.buffer.new_ref()
    }

    /// The CUDA context FFmpeg uses on this device (null for other kinds).
    pub fn cuda_context(&self) -> *mut std::ffi::c_void {
        if self.kind != DeviceKind::Cuda {
            return ptr::null_mut();
        }
        // SAFETY: a CUDA device context's hwctx is an AVCUDADeviceContext.
        unsafe {
            let device = (*self.buffer.0).data as *mut ffi::AVHWDeviceContext;
            let cuda = (*device).hwctx as *mut ffi::AVCUDADeviceContext;
            (*cuda).cuda_ctx as *mut std::ffi::c_void
        }
    }
}

/// The process's CUDA device 0, opened once and shared by every job (one context per GPU,
/// as NVIDIA recommends); the error is kept too, so a machine without a driver is asked once.
///
/// Open it before anything else uses the GPU's primary context: FFmpeg sets the context's
/// flags (blocking sync) and refuses a primary context already active with other flags.
pub fn shared_cuda() -> Result<HwDevice, Error> {
    static DEVICE: OnceLock<Result<HwDevice, Error>> = OnceLock::new();
    DEVICE.get_or_init(|| HwDevice::cuda(0)).clone()
}

/// The process's VA-API device on `node`, opened once.
pub fn shared_vaapi(node: &Path) -> Result<HwDevice, Error> {
    type Opened = Vec<(std::path::PathBuf, Result<HwDevice, Error>)>;
    static DEVICES: OnceLock<std::sync::Mutex<Opened>> = OnceLock::new();
    let devices = DEVICES.get_or_init(Default::default);
    let mut devices = devices.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, d)) = devices.iter().find(|(p, _)| p == node) {
        return d.clone();
    }
    let d = HwDevice::vaapi(node);
    devices.push((node.to_path_buf(), d.clone()));
    d
}

/// A pool of frames of one size and layout on a device (`AVHWFramesContext`).
#[derive(Clone)]
pub struct HwFrames {
    device: HwDevice,
    buffer: Arc<BufferRef>,
    sw_format: ff::format::Pixel,
    width: u32,
    height: u32,
}

impl std::fmt::Debug for HwFrames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HwFrames({} {:?} {}x{})",
            self.device.description, self.sw_format, self.width, self.height
        )
    }
}

impl HwFrames {
    /// A pool of `width`x`height` frames laid out as `sw_format` (NV12, P010) on `device`.
    /// `initial` frames are allocated up front (0: grown on demand, where the device allows).
    pub fn new(
        device: &HwDevice,
        sw_format: ff::format::Pixel,
        width: u32,
        height: u32,
        initial: u32,
    ) -> Result<HwFrames, Error> {
        // SAFETY: the device reference is valid; the new frames context is set up field by field
        // before av_hwframe_ctx_init, as hwcontext.h prescribes, and freed on every error path.
        unsafe {
            let mut buffer = ffi::av_hwframe_ctx_alloc(device.buffer.0);
            if buffer.is_null() {
                return Err(Error("allocating a hardware frames context".into()));
            }
            let ctx = (*buffer).data as *mut ffi::AVHWFramesContext;
            (*ctx).format = device.kind.pixel_format().into();
            (*ctx).sw_format = sw_format.into();
            (*ctx).width = width as i32;
            (*ctx).height = height as i32;
            (*ctx).initial_pool_size = initial as i32;
            let rc = ffi::av_hwframe_ctx_init(buffer);
            if rc < 0 {
                ffi::av_buffer_unref(&mut buffer);
                return Err(av_error(
                    &format!(
                        "{}: a {width}x{height} {sw_format:?} frame pool",
                        device.description
                    ),
                    rc,
                ));
            }
            Ok(HwFrames {
                device: device.clone(),
                buffer: Arc::new(BufferRef(buffer)),
                sw_format,
                width,
                height,
            })
        }
    }

    pub fn device(&self) -> &HwDevice {
        &self.device
    }

    pub fn sw_format(&self) -> ff::format::Pixel {
        self.sw_format
    }

    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// A new `AVBufferRef` to the frames context, owned by the caller (FFmpeg frees it).
    pub fn new_ref(&self) -> *mut ffi::AVBufferRef {
        self.buffer.new_ref()
    }

    /// A frame from the pool (device memory; its contents are undefined).
    pub fn get(&self) -> Result<ff::frame::Video, Error> {
        let mut frame = ff::frame::Video::empty();
        // SAFETY: the frame is empty and the pool valid.
        let rc = unsafe { ffi::av_hwframe_get_buffer(self.buffer.0, frame.as_mut_ptr(), 0) };
        if rc < 0 {
            return Err(av_error(
                &format!("{}: no frame from the pool", self.device.description),
                rc,
            ));
        }
        Ok(frame)
    }

    /// Copies a system-memory frame (in this pool's `sw_format` and size) into a pool frame.
    pub fn upload(&self, frame: &ff::frame::Video) -> Result<ff::frame::Video, Error> {
        let expected = (self.sw_format, self.width, self.height);
        let found = (frame.format(), frame.width(), frame.height());
        if is_hardware_frame(frame) || found != expected {
            return Err(Error(format!(
                "upload: a {:?} {}x{} frame does not fit a {:?} {}x{} pool",
                found.0, found.1, found.2, expected.0, expected.1, expected.2
            )));
        }
        let mut out = self.get()?;
        // SAFETY: both frames are valid; out belongs to this pool.
        let rc = unsafe { ffi::av_hwframe_transfer_data(out.as_mut_ptr(), frame.as_ptr(), 0) };
        if rc < 0 {
            return Err(av_error("uploading a frame to the GPU", rc));
        }
        out.set_pts(frame.pts());
        Ok(out)
    }
}

/// Whether a frame lives on a device (has a `hw_frames_ctx`).
pub fn is_hardware_frame(frame: &ff::frame::Video) -> bool {
    // SAFETY: reading a field of a valid frame.
    unsafe { !(*frame.as_ptr()).hw_frames_ctx.is_null() }
}

/// The kind of device a hardware frame lives on (`None` for system memory or another device).
pub fn frame_device_kind(frame: &ff::frame::Video) -> Option<DeviceKind> {
    // SAFETY: hw_frames_ctx, when set, is a reference to an AVHWFramesContext whose
    // device_ctx is valid for as long as the frames context lives.
    unsafe {
        let hw = (*frame.as_ptr()).hw_frames_ctx;
        if hw.is_null() {
            return None;
        }
        let ctx = (*hw).data as *const ffi::AVHWFramesContext;
        match (*(*ctx).device_ctx).type_ {
            ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_CUDA => Some(DeviceKind::Cuda),
            ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_VAAPI => Some(DeviceKind::Vaapi),
            _ => None,
        }
    }
}

/// The layout (`sw_format`) of a hardware frame's pool, or the frame's own format otherwise.
pub fn frame_layout(frame: &ff::frame::Video) -> ff::format::Pixel {
    // SAFETY: hw_frames_ctx, when set, is a reference to an AVHWFramesContext.
    unsafe {
        let hw = (*frame.as_ptr()).hw_frames_ctx;
        if hw.is_null() {
            return frame.format();
        }
        let ctx = (*hw).data as *const ffi::AVHWFramesContext;
        ff::format::Pixel::from((*ctx).sw_format)
    }
}

/// Copies a hardware frame to system memory (one PCIe transfer), in its pool's layout.
pub fn download(frame: &ff::frame::Video) -> Result<ff::frame::Video, Error> {
    // FFmpeg dereferences the frames context without checking.
    if !is_hardware_frame(frame) {
        return Err(Error("download: not a hardware frame".into()));
    }
    let mut out = ff::frame::Video::empty();
    // SAFETY: both frames are valid; FFmpeg allocates the destination in the source's sw_format.
    let rc = unsafe { ffi::av_hwframe_transfer_data(out.as_mut_ptr(), frame.as_ptr(), 0) };
    if rc < 0 {
        return Err(av_error("downloading a frame from the GPU", rc));
    }
    out.set_pts(frame.pts());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_cuda_driver_is_a_reason() {
        if crate::scale::cuda::driver_present() {
            println!("skip: a CUDA driver is present");
            return;
        }
        let e = HwDevice::cuda(0).unwrap_err();
        assert!(e.0.contains("libcuda.so.1 not found"), "{e}");
        assert_eq!(shared_cuda().unwrap_err(), e);
    }

    #[test]
    fn a_missing_render_node_is_a_reason() {
        let node = Path::new("/dev/dri/renderD199-does-not-exist");
        let e = HwDevice::vaapi(node).unwrap_err();
        assert!(e.0.contains("no VA-API render node"), "{e}");
        assert_eq!(shared_vaapi(node).unwrap_err(), e);
    }

    #[test]
    fn software_frames_are_not_hardware_frames() {
        let frame = ff::frame::Video::new(ff::format::Pixel::NV12, 64, 36);
        assert!(!is_hardware_frame(&frame));
        assert_eq!(frame_layout(&frame), ff::format::Pixel::NV12);
        assert!(download(&frame).is_err());
    }
}
