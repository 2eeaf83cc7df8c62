//! The ladder scaler: one decoded frame in, every rung of the ABR ladder out, in one pass.
//!
//! Three implementations share one definition of the result, so any of them can stand in for another:
//! - [`cpu`]: the Rust scaler, the CUDA kernel's CPU twin (the software path scales with
//!   swscale on each rung's thread instead: `swscale`);
//! - [`cuda`]: the fused kernel in `kernels/ladder_scale.cu`, loaded from the committed PTX at run
//!   time (no CUDA toolkit or driver at build time; no driver at run time is an `Err`, never a panic);
//! - [`kernel_host`]: that same kernel source compiled for the host by `build.rs`, so tests run the
//!   kernel's exact arithmetic and indexing on machines with no GPU.
//!
//! [`swscale`] is the per-rung libswscale path the software pipeline uses today (FFmpeg frames in
//! and out); the fused scalers above replace it where they are faster.
//!
//! The filter is exact area averaging (a box over each destination pixel's footprint) with 16-bit
//! fixed-point weights and integer accumulation; `kernels/ladder_scale.cu` explains the arithmetic.
//! All three give bit-identical output. Each plane is scaled on its own: the chroma planes of a
//! `width`x`height` frame are `ceil(width/2)`x`ceil(height/2)`, and a rung's are half its (even) size.
//!
//! It never touches FFmpeg: frames come in as borrowed planes ([`FrameRef`]), so a decoder's
//! buffers are read in place, and every plane is checked to cover its frame before any kernel or
//! loop reads it.

pub mod cpu;
pub mod cuda;
pub mod kernel_host;
pub mod selftest;
pub mod swscale;

pub use cpu::Scaler;
pub use cuda::CudaLadderScaler;

/// The most rungs one kernel launch writes (the kernel's parameter block holds this many).
pub const MAX_RUNGS: usize = 6;

/// The largest downscale factor per axis (a footprint then spans at most 16 source samples).
pub const MAX_FACTOR: u32 = 15;

/// The largest frame dimension (8K), which keeps every intermediate within 32 bits.
pub const MAX_DIMENSION: u32 = 8192;

/// Pixel layout of a frame, 4:2:0 in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// 8-bit luma plane, then one plane of interleaved U/V pairs.
    Nv12,
    /// 8-bit luma, U and V planes (FFmpeg's yuv420p, what software decoders give).
    Yuv420p,
    /// NV12's layout in 16-bit little-endian samples holding 10 bits in the high bits.
    P010,
}

impl Format {
    /// Bytes per sample.
    pub fn sample_bytes(self) -> usize {
        match self {
            Format::Nv12 | Format::Yuv420p => 1,
            Format::P010 => 2,
        }
    }

    /// Number of planes.
    pub fn plane_count(self) -> usize {
        match self {
            Format::Nv12 | Format::P010 => 2,
            Format::Yuv420p => 3,
        }
    }

    /// Samples per pixel position in `plane` (2 for interleaved U/V).
    pub fn components(self, plane: usize) -> usize {
        match (self, plane) {
            (Format::Nv12 | Format::P010, 1) => 2,
            _ => 1,
        }
    }

    /// Size in pixel positions of `plane` for a frame of `width`x`height`.
    pub fn plane_size(self, plane: usize, width: u32, height: u32) -> (u32, u32) {
        if plane == 0 {
            (width, height)
        } else {
            (width.div_ceil(2), height.div_ceil(2))
        }
    }

    /// Bytes of one row of `plane`'s samples (without padding).
    pub fn row_bytes(self, plane: usize, width: u32) -> usize {
        self.plane_size(plane, width, 1).0 as usize * self.components(plane) * self.sample_bytes()
    }
}

/// What went wrong, with the numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid frame size {width}x{height}: {reason}")]
    InvalidSize {
        width: u32,
        height: u32,
        reason: &'static str,
    },
    #[error("rung {rung} ({width}x{height}): {reason}")]
    InvalidRung {
        rung: usize,
        width: u32,
        height: u32,
        reason: &'static str,
    },
    #[error("{count} rungs: between 1 and {max} rungs per pass")]
    RungCount { count: usize, max: usize },
    #[error("frame formats differ: source {expected:?}, rung {rung} {found:?}")]
    FormatMismatch {
        rung: usize,
        expected: Format,
        found: Format,
    },
    #[error("format {0:?} is not supported by this scaler")]
    UnsupportedFormat(Format),
    #[error("plane {plane}: {have} bytes with stride {stride}, {need} needed")]
    PlaneTooSmall {
        plane: usize,
        stride: usize,
        need: usize,
        have: usize,
    },
    #[error("{0}")]
    NoDriver(String),
    #[error("CUDA: {0}")]
    Cuda(String),
}

/// One plane of a borrowed frame: the bytes and the distance between rows in bytes.
#[derive(Debug, Clone, Copy)]
pub struct PlaneRef<'a> {
    pub data: &'a [u8],
    pub stride: usize,
}

/// One writable plane.
#[derive(Debug)]
pub struct PlaneMut<'a> {
    pub data: &'a mut [u8],
    pub stride: usize,
}

/// A borrowed frame (e.g. a decoder's output, read in place).
#[derive(Debug, Clone)]
pub struct FrameRef<'a> {
    pub format: Format,
    pub width: u32,
    pub height: u32,
    /// `format.plane_count()` planes.
    pub planes: Vec<PlaneRef<'a>>,
}

/// A borrowed writable frame (a rung's output buffer).
#[derive(Debug)]
pub struct FrameMut<'a> {
    pub format: Format,
    pub width: u32,
    pub height: u32,
    pub planes: Vec<PlaneMut<'a>>,
}

/// An owned frame with its own buffers, for tests, benches and simple callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub format: Format,
    pub width: u32,
    pub height: u32,
    pub planes: Vec<Vec<u8>>,
    pub strides: Vec<usize>,
}

impl Frame {
    /// A zeroed frame with rows padded to a multiple of `align` bytes (1 for none).
    pub fn new(format: Format, width: u32, height: u32, align: usize) -> Frame {
        let align = align.max(1);
        let mut planes = Vec::new();
        let mut strides = Vec::new();
        for plane in 0..format.plane_count() {
            let stride = format.row_bytes(plane, width).div_ceil(align) * align;
            let rows = format.plane_size(plane, width, height).1 as usize;
            planes.push(vec![0; stride * rows]);
            strides.push(stride);
        }
        Frame {
            format,
            width,
            height,
            planes,
            strides,
        }
    }

    pub fn as_ref(&self) -> FrameRef<'_> {
        FrameRef {
            format: self.format,
            width: self.width,
            height: self.height,
            planes: self
                .planes
                .iter()
                .zip(&self.strides)
                .map(|(d, &s)| PlaneRef { data: d, stride: s })
                .collect(),
        }
    }

    pub fn as_mut(&mut self) -> FrameMut<'_> {
        FrameMut {
            format: self.format,
            width: self.width,
            height: self.height,
            planes: self
                .planes
                .iter_mut()
                .zip(&self.strides)
                .map(|(d, &s)| PlaneMut { data: d, stride: s })
                .collect(),
        }
    }

    /// Reads sample `component` of pixel position (`x`, `y`) of `plane` (P010: the 10-bit value).
    pub fn sample(&self, plane: usize, x: usize, y: usize, component: usize) -> u32 {
        let comps = self.format.components(plane);
        let i = y * self.strides[plane] + (x * comps + component) * self.format.sample_bytes();
        let p = &self.planes[plane];
        match self.format {
            Format::P010 => u32::from(u16::from_le_bytes([p[i], p[i + 1]])) >> 6,
            _ => u32::from(p[i]),
        }
    }
}

/// Checks a frame's planes cover its size. Returns nothing; every plane access after this is in bounds.
fn check_planes(
    format: Format,
    width: u32,
    height: u32,
    planes: &[(usize, usize)],
) -> Result<(), Error> {
    if planes.len() != format.plane_count() {
        return Err(Error::InvalidSize {
            width,
            height,
            reason: "wrong number of planes for the format",
        });
    }
    for (plane, &(len, stride)) in planes.iter().enumerate() {
        let row = format.row_bytes(plane, width);
        let rows = format.plane_size(plane, width, height).1 as usize;
        if stride < row || (format == Format::P010 && stride % 2 == 1) {
            return Err(Error::PlaneTooSmall {
                plane,
                stride,
                need: row,
                have: stride,
            });
        }
        let need = stride * (rows - 1) + row;
        if len < need {
            return Err(Error::PlaneTooSmall {
                plane,
                stride,
                need,
                have: len,
            });
        }
    }
    Ok(())
}

impl FrameRef<'_> {
    fn check(&self) -> Result<(), Error> {
        let planes: Vec<_> = self
            .planes
            .iter()
            .map(|p| (p.data.len(), p.stride))
            .collect();
        check_planes(self.format, self.width, self.height, &planes)
    }
}

impl FrameMut<'_> {
    fn check(&self) -> Result<(), Error> {
        let planes: Vec<_> = self
            .planes
            .iter()
            .map(|p| (p.data.len(), p.stride))
            .collect();
        check_planes(self.format, self.width, self.height, &planes)
    }
}

/// Validates a source size and rung sizes against what every implementation supports:
/// sizes 1..=8192 (rungs even), at most [`MAX_FACTOR`] downscale per axis. Upscaling (an anamorphic
/// source's rung can be wider than the source) is allowed.
pub fn validate(src_width: u32, src_height: u32, rungs: &[(u32, u32)]) -> Result<(), Error> {
    if src_width == 0 || src_height == 0 || src_width > MAX_DIMENSION || src_height > MAX_DIMENSION
    {
        return Err(Error::InvalidSize {
            width: src_width,
            height: src_height,
            reason: "each side must be 1..=8192",
        });
    }
    if rungs.is_empty() {
        return Err(Error::RungCount {
            count: 0,
            max: MAX_RUNGS,
        });
    }
    for (i, &(width, height)) in rungs.iter().enumerate() {
        let bad = |reason| Error::InvalidRung {
            rung: i + 1,
            width,
            height,
            reason,
        };
        if width == 0 || height == 0 || width % 2 == 1 || height % 2 == 1 {
            return Err(bad("size must be even and not zero (4:2:0 chroma)"));
        }
        if width > MAX_DIMENSION || height > MAX_DIMENSION {
            return Err(bad("size above 8192"));
        }
        // The chroma planes have the largest factor: ceil(W/2) / (w/2).
        if src_width.div_ceil(2) > MAX_FACTOR * (width / 2)
            || src_height.div_ceil(2) > MAX_FACTOR * (height / 2)
        {
            return Err(bad("downscale factor above 15"));
        }
    }
    Ok(())
}

fn validate_frames(src: &FrameRef, dst: &[FrameMut]) -> Result<(), Error> {
    let sizes: Vec<_> = dst.iter().map(|d| (d.width, d.height)).collect();
    validate(src.width, src.height, &sizes)?;
    src.check()?;
    for (i, d) in dst.iter().enumerate() {
        if d.format != src.format {
            return Err(Error::FormatMismatch {
                rung: i + 1,
                expected: src.format,
                found: d.format,
            });
        }
        d.check()?;
    }
    Ok(())
}

/// The kernel's parameter block (`struct ls_params` in kernels/ladder_scale.cu, same layout).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KernelParams {
    pub src_y: u64,
    pub src_uv: u64,
    pub src_pitch_y: u32,
    pub src_pitch_uv: u32,
    pub src_width: u32,
    pub src_height: u32,
    pub rung_count: u32,
    pub reserved: u32,
    pub rung: [KernelRung; MAX_RUNGS],
}

/// `struct ls_rung` in kernels/ladder_scale.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KernelRung {
    pub y: u64,
    pub uv: u64,
    pub pitch_y: u32,
    pub pitch_uv: u32,
    pub width: u32,
    pub height: u32,
}

/// Launch shape of the kernel (LS_TILE_*, LS_BLOCK_* in the kernel source).
pub(crate) const TILE: (u32, u32) = (64, 32);
pub(crate) const BLOCK: (u32, u32) = (32, 8);

/// A semi-planar (NV12/P010) frame by address: CUDA device addresses for a launch (such as an
/// NVDEC frame's planes), host addresses for the host build of the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceFrame {
    pub y: u64,
    pub uv: u64,
    /// Bytes per row of each plane.
    pub pitch_y: u32,
    pub pitch_uv: u32,
    pub width: u32,
    pub height: u32,
}

impl KernelParams {
    /// The parameter block for one launch; `dst` holds at most [`MAX_RUNGS`] rungs (checked by callers).
    pub fn new(src: &DeviceFrame, dst: &[DeviceFrame]) -> KernelParams {
        let mut p = KernelParams {
            src_y: src.y,
            src_uv: src.uv,
            src_pitch_y: src.pitch_y,
            src_pitch_uv: src.pitch_uv,
            src_width: src.width,
            src_height: src.height,
            rung_count: dst.len().min(MAX_RUNGS) as u32,
            ..KernelParams::default()
        };
        for (r, d) in p.rung.iter_mut().zip(dst) {
            *r = KernelRung {
                y: d.y,
                uv: d.uv,
                pitch_y: d.pitch_y,
                pitch_uv: d.pitch_uv,
                width: d.width,
                height: d.height,
            };
        }
        p
    }

    /// Grid of thread blocks: one per source luma tile, two planes.
    pub fn grid(&self) -> (u32, u32, u32) {
        (
            self.src_width.div_ceil(TILE.0),
            self.src_height.div_ceil(TILE.1),
            2,
        )
    }

    /// Dynamic shared memory per block: the largest tile plus halo, 16-bit samples
    /// (`encore_ls_smem_bytes` in kernels/host_harness.cc).
    pub fn smem_bytes(&self) -> u32 {
        let halo = |s: u32, d: u32| s.div_ceil(d) - u32::from(s.is_multiple_of(d));
        (0..2u32)
            .map(|plane| {
                let (sw, sh) = if plane == 1 {
                    (self.src_width.div_ceil(2), self.src_height.div_ceil(2))
                } else {
                    (self.src_width, self.src_height)
                };
                let rungs = &self.rung[..self.rung_count as usize];
                let div = plane + 1;
                let hx = rungs
                    .iter()
                    .map(|r| halo(sw, r.width / div))
                    .max()
                    .unwrap_or(0);
                let hy = rungs
                    .iter()
                    .map(|r| halo(sh, r.height / div))
                    .max()
                    .unwrap_or(0);
                (TILE.0 + hx) * (TILE.1 + hy) * (plane + 1) * 2
            })
            .max()
            .unwrap_or(0)
    }
}
