//! Self-checks for `encore selftest`: the ladder kernel (on the GPU, or its host build) against the
//! CPU twin on seeded random frames. Every sample must be identical.

use std::fmt;
use std::time::{Duration, Instant};

use super::{
    cpu::Scaler, cuda::CudaLadderScaler, kernel_host, Error, Format, Frame, FrameMut, FrameRef,
};

/// A source size and its rung sizes.
type Case = ((u32, u32), &'static [(u32, u32)]);

/// Source sizes and ladders checked: the default ladder, odd sizes, exact factors, a copy.
const CASES: &[Case] = &[
    (
        (1920, 1080),
        &[(1920, 1080), (1280, 720), (854, 480), (640, 360)],
    ),
    ((1283, 721), &[(1280, 720), (640, 360), (426, 240)]),
    ((1280, 720), &[(640, 360), (426, 240)]),
    ((37, 23), &[(18, 12), (6, 4)]),
];

/// What a self-check found.
#[derive(Debug, Clone)]
pub struct SelfTest {
    /// "cuda" or "host kernel".
    pub implementation: &'static str,
    /// The GPU's name, for the CUDA check.
    pub device: Option<String>,
    /// Frames compared (every case, NV12 and P010).
    pub frames: usize,
    /// Samples that differ from the CPU twin (0 when it passed).
    pub mismatches: u64,
    /// Time per 1080p frame for the default ladder, kernel only (CUDA) or whole call (host).
    pub frame_time: Duration,
    /// The same for the CPU twin (the software path's scaler), one thread.
    pub twin_frame_time: Duration,
}

impl SelfTest {
    pub fn passed(&self) -> bool {
        self.mismatches == 0
    }
}

impl fmt::Display for SelfTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() {
            "identical to the CPU twin"
        } else {
            "DIFFERS from the CPU twin"
        };
        write!(f, "ladder kernel ({}", self.implementation)?;
        if let Some(d) = &self.device {
            write!(f, " on {d}")?;
        }
        write!(
            f,
            "): {} frames {verdict} ({} samples differ); 1080p -> 1080/720/480/360 in {:.3} ms (CPU twin {:.2} ms)",
            self.frames,
            self.mismatches,
            self.frame_time.as_secs_f64() * 1e3,
            self.twin_frame_time.as_secs_f64() * 1e3
        )
    }
}

/// Seeded noise (xorshift64*): P010 samples carry 10 bits.
fn noise(format: Format, width: u32, height: u32, seed: u64) -> Frame {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut f = Frame::new(format, width, height, 64);
    for plane in &mut f.planes {
        match format {
            Format::P010 => plane.chunks_exact_mut(2).for_each(|s| {
                s.copy_from_slice(&((((next() >> 40) & 0x3ff) as u16) << 6).to_le_bytes())
            }),
            _ => plane.iter_mut().for_each(|b| *b = (next() >> 56) as u8),
        }
    }
    f
}

fn run(
    implementation: &'static str,
    device: Option<String>,
    scale: impl Fn(&FrameRef, &mut [FrameMut]) -> Result<(), Error>,
) -> Result<SelfTest, Error> {
    let mut frames = 0;
    let mut mismatches = 0u64;
    for format in [Format::Nv12, Format::P010] {
        for (seed, &((w, h), rungs)) in CASES.iter().enumerate() {
            let src = noise(format, w, h, seed as u64 + 1);
            let mut got: Vec<_> = rungs
                .iter()
                .map(|&(w, h)| Frame::new(format, w, h, 1))
                .collect();
            let mut want = got.clone();
            scale(
                &src.as_ref(),
                &mut got.iter_mut().map(Frame::as_mut).collect::<Vec<_>>(),
            )?;
            Scaler::new(format, w, h, rungs)?.scale(
                &src.as_ref(),
                &mut want.iter_mut().map(Frame::as_mut).collect::<Vec<_>>(),
            )?;
            for (g, t) in got.iter().zip(&want) {
                frames += 1;
                mismatches += g
                    .planes
                    .iter()
                    .flatten()
                    .zip(t.planes.iter().flatten())
                    .filter(|(a, b)| a != b)
                    .count() as u64;
            }
        }
    }
    Ok(SelfTest {
        implementation,
        device,
        frames,
        mismatches,
        frame_time: Duration::ZERO,
        twin_frame_time: twin_time()?,
    })
}

/// The CPU twin's time for the default ladder (best of a few runs).
fn twin_time() -> Result<Duration, Error> {
    let ((w, h), rungs) = CASES[0];
    let src = noise(Format::Nv12, w, h, 9);
    let mut out: Vec<_> = rungs
        .iter()
        .map(|&(w, h)| Frame::new(Format::Nv12, w, h, 1))
        .collect();
    let scaler = Scaler::new(Format::Nv12, w, h, rungs)?;
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        scaler.scale(
            &src.as_ref(),
            &mut out.iter_mut().map(Frame::as_mut).collect::<Vec<_>>(),
        )?;
        best = best.min(t.elapsed());
    }
    Ok(best)
}

/// The kernel's host build against the CPU twin (needs no GPU).
pub fn host_kernel() -> Result<SelfTest, Error> {
    let mut report = run("host kernel", None, kernel_host::scale)?;
    let ((w, h), rungs) = CASES[0];
    let src = noise(Format::Nv12, w, h, 9);
    let mut out: Vec<_> = rungs
        .iter()
        .map(|&(w, h)| Frame::new(Format::Nv12, w, h, 1))
        .collect();
    let t = Instant::now();
    kernel_host::scale(
        &src.as_ref(),
        &mut out.iter_mut().map(Frame::as_mut).collect::<Vec<_>>(),
    )?;
    report.frame_time = t.elapsed();
    Ok(report)
}

/// The CUDA kernel on device 0 against the CPU twin. `Err` (never a panic) when there is no
/// driver or device: callers print it and fail the GPU check.
pub fn gpu() -> Result<SelfTest, Error> {
    let gpu = CudaLadderScaler::new()?;
    let mut report = run("cuda", gpu.device_name().ok(), |s, d| gpu.scale(s, d))?;
    report.frame_time = time_on_device(&gpu)?;
    Ok(report)
}

/// Kernel time for the default ladder with frames resident on the device.
fn time_on_device(gpu: &CudaLadderScaler) -> Result<Duration, Error> {
    use cudarc::driver::DevicePtrMut;
    let ((w, h), rungs) = CASES[0];
    let sizes: Vec<_> = std::iter::once((w, h))
        .chain(rungs.iter().copied())
        .collect();
    let stream = gpu.stream();
    let cuda = |e: cudarc::driver::DriverError| Error::Cuda(e.to_string());
    super::cuda::guarded("timing the ladder kernel", || {
        let mut bufs = Vec::new();
        for &(w, h) in &sizes {
            let n = (w * h) as usize;
            bufs.push((
                stream.alloc_zeros::<u8>(n).map_err(cuda)?,
                stream.alloc_zeros::<u8>(n / 2).map_err(cuda)?,
            ));
        }
        let mut frames = Vec::new();
        let mut guards = Vec::new();
        for ((y, uv), &(w, h)) in bufs.iter_mut().zip(&sizes) {
            let (y, gy) = y.device_ptr_mut(stream);
            let (uv, guv) = uv.device_ptr_mut(stream);
            frames.push(super::DeviceFrame {
                y,
                uv,
                pitch_y: w,
                pitch_uv: w,
                width: w,
                height: h,
            });
            guards.push((gy, guv));
        }
        let launches = |n: u32| -> Result<Duration, Error> {
            let t = Instant::now();
            for _ in 0..n {
                // SAFETY: each buffer covers its frame (tight pitches) and outlives the sync below.
                unsafe { gpu.launch(Format::Nv12, &frames[0], &frames[1..])? };
            }
            stream.synchronize().map_err(cuda)?;
            Ok(t.elapsed() / n)
        };
        launches(10)?;
        let per = launches(200)?;
        drop(guards);
        Ok(per)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_kernel_selftest_passes() {
        let report = super::host_kernel().unwrap();
        println!("{report}");
        assert!(report.passed() && report.frames == 22, "{report}");
    }

    /// Without a CUDA driver the GPU self-test is an error that says why (the no-driver path
    /// every CI machine takes); with one, it passes.
    #[test]
    fn gpu_selftest_says_why_without_a_gpu() {
        match super::gpu() {
            Ok(report) => {
                assert!(crate::scale::cuda::driver_present());
                assert!(report.passed(), "{report}");
            }
            Err(e) => {
                let message = e.to_string();
                assert!(!message.is_empty());
                if !crate::scale::cuda::driver_present() {
                    assert!(message.contains("libcuda"), "{message}");
                }
            }
        }
    }

    #[test]
    #[ignore = "needs an NVIDIA GPU and its driver: make test-gpu"]
    fn gpu_selftest_passes_on_a_gpu() {
        let report = super::gpu().expect("a usable CUDA device");
        println!("{report}");
        assert!(report.passed(), "{report}");
    }
}
