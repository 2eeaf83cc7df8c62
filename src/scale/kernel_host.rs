//! The CUDA ladder kernel compiled for the host (by `build.rs`), run over the whole launch grid.
//!
//! For tests and self-checks on machines without a GPU: it executes the kernel source's exact
//! arithmetic and indexing, one simulated thread at a time. Slow; never a production path.

use std::sync::Mutex;

use super::{
    validate_frames, DeviceFrame, Error, Format, FrameMut, FrameRef, KernelParams, MAX_RUNGS,
};

extern "C" {
    fn encore_ls_host_nv12(params: *const KernelParams) -> i32;
    fn encore_ls_host_p010(params: *const KernelParams) -> i32;
    #[cfg(test)]
    fn encore_ls_smem_bytes(params: *const KernelParams) -> u32;
}

/// The harness keeps the simulated thread indices in globals: one grid at a time.
static HARNESS: Mutex<()> = Mutex::new(());

/// Checks what the kernel needs beyond [`validate_frames`]: a kernel format, at most
/// [`MAX_RUNGS`] rungs, strides that fit its 32-bit pitches.
pub(crate) fn check_kernel_frames(src: &FrameRef, dst: &[FrameMut]) -> Result<(), Error> {
    if !matches!(src.format, Format::Nv12 | Format::P010) {
        return Err(Error::UnsupportedFormat(src.format));
    }
    if dst.len() > MAX_RUNGS {
        return Err(Error::RungCount {
            count: dst.len(),
            max: MAX_RUNGS,
        });
    }
    validate_frames(src, dst)?;
    let strides = src
        .planes
        .iter()
        .map(|p| p.stride)
        .chain(dst.iter().flat_map(|d| d.planes.iter().map(|p| p.stride)));
    for stride in strides {
        if u32::try_from(stride).is_err() {
            return Err(Error::InvalidSize {
                width: src.width,
                height: src.height,
                reason: "row stride above 4 GiB",
            });
        }
    }
    Ok(())
}

/// Runs the kernel (NV12 or P010) over `src`, writing every rung in `dst` (1 to 6 rungs).
pub fn scale(src: &FrameRef, dst: &mut [FrameMut]) -> Result<(), Error> {
    check_kernel_frames(src, dst)?;
    let frame = |y: u64, uv: u64, pitch_y: usize, pitch_uv: usize, width, height| DeviceFrame {
        y,
        uv,
        pitch_y: pitch_y as u32,
        pitch_uv: pitch_uv as u32,
        width,
        height,
    };
    let [y, uv] = &src.planes[..] else {
        unreachable!("checked: two planes")
    };
    let source = frame(
        y.data.as_ptr() as u64,
        uv.data.as_ptr() as u64,
        y.stride,
        uv.stride,
        src.width,
        src.height,
    );
    let rungs: Vec<_> = dst
        .iter_mut()
        .map(|d| {
            let (w, h) = (d.width, d.height);
            let [y, uv] = &mut d.planes[..] else {
                unreachable!("checked: two planes")
            };
            frame(
                y.data.as_mut_ptr() as u64,
                uv.data.as_mut_ptr() as u64,
                y.stride,
                uv.stride,
                w,
                h,
            )
        })
        .collect();
    let p = KernelParams::new(&source, &rungs);
    let _one_grid = HARNESS.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: the planes were checked to cover every sample the kernel reads (the source) and
    // writes (each rung); the writable planes are borrowed mutably for the call, and `params`
    // matches `struct ls_params` field for field (#[repr(C)]).
    let rc = unsafe {
        match src.format {
            Format::P010 => encore_ls_host_p010(&p),
            _ => encore_ls_host_nv12(&p),
        }
    };
    match rc {
        0 => Ok(()),
        _ => Err(Error::Cuda(format!(
            "host kernel harness failed with code {rc}"
        ))),
    }
}

/// The host harness's shared-memory figure, to check the Rust launch code computes the same.
#[cfg(test)]
fn smem_bytes(p: &KernelParams) -> u32 {
    // SAFETY: reads the parameter block only.
    unsafe { encore_ls_smem_bytes(p) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::{cpu::Scaler, Frame};

    #[test]
    fn launch_figures_match_the_harness() {
        for (sw, sh, rungs) in [
            (
                1920u32,
                1080u32,
                vec![(1920u32, 1080u32), (1280, 720), (854, 480), (640, 360)],
            ),
            (1283, 721, vec![(1280, 720), (640, 360)]),
            (640, 360, vec![(1280, 720)]),
            (3840, 2160, vec![(256, 144)]),
        ] {
            let frame = |width, height| DeviceFrame {
                y: 0,
                uv: 0,
                pitch_y: width,
                pitch_uv: width,
                width,
                height,
            };
            let outs: Vec<_> = rungs.iter().map(|&(w, h)| frame(w, h)).collect();
            let p = KernelParams::new(&frame(sw, sh), &outs);
            assert_eq!(p.smem_bytes(), smem_bytes(&p), "{sw}x{sh} {rungs:?}");
        }
    }

    #[test]
    fn matches_cpu_twin_on_a_gradient() {
        let (w, h) = (130, 66);
        let mut src = Frame::new(Format::Nv12, w, h, 1);
        for y in 0..h as usize {
            for x in 0..w as usize {
                src.planes[0][y * src.strides[0] + x] = ((x * 3 + y * 5) % 256) as u8;
            }
        }
        let rungs = [(64, 32), (42, 22)];
        let mut a: Vec<_> = rungs
            .iter()
            .map(|&(w, h)| Frame::new(Format::Nv12, w, h, 1))
            .collect();
        let mut b = a.clone();
        scale(
            &src.as_ref(),
            &mut a.iter_mut().map(Frame::as_mut).collect::<Vec<_>>(),
        )
        .unwrap();
        Scaler::new(Format::Nv12, w, h, &rungs)
            .unwrap()
            .scale(
                &src.as_ref(),
                &mut b.iter_mut().map(Frame::as_mut).collect::<Vec<_>>(),
            )
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn refuses_what_the_kernel_cannot_do() {
        let src = Frame::new(Format::Yuv420p, 64, 32, 1);
        let mut out = Frame::new(Format::Yuv420p, 32, 16, 1);
        assert_eq!(
            scale(&src.as_ref(), &mut [out.as_mut()]),
            Err(Error::UnsupportedFormat(Format::Yuv420p))
        );
        let src = Frame::new(Format::Nv12, 64, 32, 1);
        let mut outs: Vec<_> = (0..7)
            .map(|_| Frame::new(Format::Nv12, 32, 16, 1))
            .collect();
        let mut views: Vec<_> = outs.iter_mut().map(Frame::as_mut).collect();
        assert!(matches!(
            scale(&src.as_ref(), &mut views),
            Err(Error::RungCount { count: 7, .. })
        ));
    }
}
