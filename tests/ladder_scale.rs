//! The ladder scaler's three implementations against each other and against a plain reference.
//!
//! - the CUDA kernel compiled for the host (`scale::kernel_host`) against a straightforward f64
//!   area-averaging scaler written here (max |diff| <= 1) and against the Rust CPU twin (identical);
//! - the committed PTX against a fresh build of the kernel source (when clang is present);
//! - the kernel on a real GPU against the CPU twin (when a CUDA driver and device are present).
//!
//! Frames are seeded random noise: every sample differs from its neighbours, so any indexing or
//! weighting mistake shows.

use encore::scale::{self, cpu::Scaler, cuda, kernel_host, Format, Frame};

/// xorshift64*: a tiny seeded generator, enough for test frames.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A frame of random samples (P010: random 10-bit values, low 6 bits zero); padding bytes random too.
fn random_frame(format: Format, width: u32, height: u32, align: usize, seed: u64) -> Frame {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut f = Frame::new(format, width, height, align);
    for plane in &mut f.planes {
        match format {
            Format::P010 => {
                for pair in plane.chunks_exact_mut(2) {
                    let v = ((rng.next() >> 40) as u16 & 0x3ff) << 6;
                    pair.copy_from_slice(&v.to_le_bytes());
                }
            }
            _ => plane.iter_mut().for_each(|b| *b = (rng.next() >> 56) as u8),
        }
    }
    f
}

/// Area averaging the obvious way: each output sample is the mean of the source samples weighted by
/// the area of overlap with its footprint, in f64, rounded to nearest.
fn reference(src: &Frame, width: u32, height: u32) -> Frame {
    let mut out = Frame::new(src.format, width, height, 1);
    for plane in 0..src.format.plane_count() {
        let (sw, sh) = src.format.plane_size(plane, src.width, src.height);
        let (dw, dh) = src.format.plane_size(plane, width, height);
        let (fx, fy) = (sw as f64 / dw as f64, sh as f64 / dh as f64);
        for c in 0..src.format.components(plane) {
            for dy in 0..dh as usize {
                let (y0, y1) = (dy as f64 * fy, (dy + 1) as f64 * fy);
                for dx in 0..dw as usize {
                    let (x0, x1) = (dx as f64 * fx, (dx + 1) as f64 * fx);
                    let mut sum = 0.0;
                    for sy in y0.floor() as usize..(y1.ceil() as usize).min(sh as usize) {
                        let oy = (y1.min(sy as f64 + 1.0) - y0.max(sy as f64)).max(0.0);
                        for sx in x0.floor() as usize..(x1.ceil() as usize).min(sw as usize) {
                            let ox = (x1.min(sx as f64 + 1.0) - x0.max(sx as f64)).max(0.0);
                            sum += ox * oy * f64::from(src.sample(plane, sx, sy, c));
                        }
                    }
                    let v = (sum / (fx * fy)).round() as u32;
                    set_sample(&mut out, plane, dx, dy, c, v);
                }
            }
        }
    }
    out
}

fn set_sample(f: &mut Frame, plane: usize, x: usize, y: usize, c: usize, v: u32) {
    let comps = f.format.components(plane);
    let i = y * f.strides[plane] + (x * comps + c) * f.format.sample_bytes();
    match f.format {
        Format::P010 => f.planes[plane][i..i + 2].copy_from_slice(&((v << 6) as u16).to_le_bytes()),
        _ => f.planes[plane][i] = v as u8,
    }
}

/// Largest |a - b| over every sample of every plane (padding ignored).
fn max_diff(a: &Frame, b: &Frame) -> u32 {
    assert_eq!((a.format, a.width, a.height), (b.format, b.width, b.height));
    let mut worst = 0;
    for plane in 0..a.format.plane_count() {
        let (w, h) = a.format.plane_size(plane, a.width, a.height);
        for y in 0..h as usize {
            for x in 0..w as usize {
                for c in 0..a.format.components(plane) {
                    worst = worst.max(a.sample(plane, x, y, c).abs_diff(b.sample(plane, x, y, c)));
                }
            }
        }
    }
    worst
}

/// Source sizes and their ladders, covering the shapes Encore plans.
type Shape = ((u32, u32), Vec<(u32, u32)>);

fn shapes() -> Vec<Shape> {
    vec![
        ((1920, 1080), vec![(1280, 720), (854, 480), (640, 360)]),
        ((1280, 720), vec![(854, 480), (640, 360)]),
        ((1283, 721), vec![(1280, 720), (640, 360), (426, 240)]),
        ((1920, 1080), vec![(960, 540), (640, 360)]), // exact 2x and 3x
        ((640, 360), vec![(640, 360)]),               // 1:1 copy
        (
            (1920, 1080),
            vec![
                (1920, 1080),
                (1280, 720),
                (960, 540),
                (854, 480),
                (640, 360),
                (426, 240),
            ],
        ),
        ((37, 23), vec![(18, 12), (6, 4)]),
        ((720, 576), vec![(1024, 576), (640, 360)]), // anamorphic: wider than the source
        ((3840, 2160), vec![(256, 144)]),            // 15x
    ]
}

fn outputs(format: Format, rungs: &[(u32, u32)], align: usize) -> Vec<Frame> {
    rungs
        .iter()
        .map(|&(w, h)| Frame::new(format, w, h, align))
        .collect()
}

fn run_cpu(src: &Frame, rungs: &[(u32, u32)]) -> Vec<Frame> {
    let mut out = outputs(src.format, rungs, 1);
    let scaler = Scaler::new(src.format, src.width, src.height, rungs).unwrap();
    scaler
        .scale(
            &src.as_ref(),
            &mut out.iter_mut().map(Frame::as_mut).collect::<Vec<_>>(),
        )
        .unwrap();
    out
}

#[test]
fn host_kernel_matches_reference_and_cpu_twin() {
    for format in [Format::Nv12, Format::P010] {
        for (seed, ((sw, sh), rungs)) in shapes().into_iter().enumerate() {
            // Padded rows on the source and every other rung: pitches must be honoured.
            let src = random_frame(
                format,
                sw,
                sh,
                if seed % 2 == 0 { 64 } else { 1 },
                seed as u64,
            );
            let mut gpu_code = outputs(format, &rungs, if seed % 2 == 0 { 1 } else { 256 });
            let mut views: Vec<_> = gpu_code.iter_mut().map(Frame::as_mut).collect();
            kernel_host::scale(&src.as_ref(), &mut views).unwrap();
            let twin = run_cpu(&src, &rungs);
            for ((kernel, twin), &(w, h)) in gpu_code.iter().zip(&twin).zip(&rungs) {
                let what = format!("{format:?} {sw}x{sh} -> {w}x{h}");
                assert_eq!(
                    max_diff(kernel, twin),
                    0,
                    "{what}: host kernel differs from the CPU twin"
                );
                if sw * sh <= 1920 * 1080 {
                    let d = max_diff(kernel, &reference(&src, w, h));
                    assert!(
                        d <= 1,
                        "{what}: host kernel differs from the f64 reference by {d}"
                    );
                }
                if (w, h) == (sw, sh) {
                    assert_eq!(max_diff(kernel, &src), 0, "{what}: 1:1 is not a copy");
                }
            }
        }
    }
}

#[test]
fn cpu_twin_planar_matches_semi_planar() {
    let (sw, sh, rungs) = (1283u32, 721u32, [(1280u32, 720u32), (640, 360)]);
    let nv12 = random_frame(Format::Nv12, sw, sh, 1, 7);
    // The same picture as yuv420p: split the interleaved chroma.
    let mut i420 = Frame::new(Format::Yuv420p, sw, sh, 32);
    let (cw, ch) = Format::Nv12.plane_size(1, sw, sh);
    for y in 0..sh as usize {
        i420.planes[0][y * i420.strides[0]..][..sw as usize]
            .copy_from_slice(&nv12.planes[0][y * nv12.strides[0]..][..sw as usize]);
    }
    for y in 0..ch as usize {
        for x in 0..cw as usize {
            for c in 0..2 {
                set_sample(&mut i420, 1 + c, x, y, 0, nv12.sample(1, x, y, c));
            }
        }
    }
    let a = run_cpu(&nv12, &rungs);
    let b = run_cpu(&i420, &rungs);
    for (a, b) in a.iter().zip(&b) {
        let (cw, ch) = Format::Nv12.plane_size(1, a.width, a.height);
        for y in 0..a.height as usize {
            for x in 0..a.width as usize {
                assert_eq!(a.sample(0, x, y, 0), b.sample(0, x, y, 0));
            }
        }
        for y in 0..ch as usize {
            for x in 0..cw as usize {
                assert_eq!(a.sample(1, x, y, 0), b.sample(1, x, y, 0), "U at {x},{y}");
                assert_eq!(a.sample(1, x, y, 1), b.sample(2, x, y, 0), "V at {x},{y}");
            }
        }
        assert!(max_diff(&reference(&i420, b.width, b.height), b) <= 1);
    }
}

#[test]
fn committed_ptx_is_up_to_date() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let clang_works = std::process::Command::new("clang")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        clang_works,
        "clang not found (packaging/install-deps.sh installs it: make test-deps); the committed PTX cannot be checked against its source"
    );
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("sh")
        .arg(root.join("kernels/build-ptx.sh"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "kernels/build-ptx.sh failed");
    let fresh = std::fs::read_to_string(dir.path().join("ladder_scale.ptx")).unwrap();
    let committed = std::fs::read_to_string(root.join("kernels/ladder_scale.ptx")).unwrap();
    if fresh != committed {
        let version = std::process::Command::new("clang")
            .arg("--version")
            .output()
            .unwrap();
        panic!(
            "kernels/ladder_scale.ptx is stale: run kernels/build-ptx.sh and commit it (clang: {})",
            String::from_utf8_lossy(&version.stdout)
                .lines()
                .next()
                .unwrap_or("?")
        );
    }
    assert_eq!(
        committed,
        cuda::PTX,
        "the embedded PTX is the committed file"
    );
    for entry in [cuda::ENTRY_NV12, cuda::ENTRY_P010] {
        assert!(
            committed.contains(&format!(".visible .entry {entry}(")),
            "{entry} missing"
        );
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU and its driver: make test-gpu"]
fn gpu_kernel_matches_cpu_twin() {
    assert!(
        cuda::driver_present(),
        "no CUDA driver (libcuda.so.1 not found): run the GPU tests on a GPU machine"
    );
    let gpu = cuda::CudaLadderScaler::new().expect("a usable CUDA device");
    println!("GPU: {}", gpu.device_name().unwrap_or_default());
    for format in [Format::Nv12, Format::P010] {
        for (seed, ((sw, sh), rungs)) in shapes().into_iter().enumerate() {
            let src = random_frame(format, sw, sh, 64, 100 + seed as u64);
            let mut out = outputs(format, &rungs, if seed % 2 == 0 { 1 } else { 256 });
            let mut views: Vec<_> = out.iter_mut().map(Frame::as_mut).collect();
            gpu.scale(&src.as_ref(), &mut views).unwrap();
            let twin = run_cpu(&src, &rungs);
            for ((g, t), &(w, h)) in out.iter().zip(&twin).zip(&rungs) {
                assert_eq!(
                    max_diff(g, t),
                    0,
                    "{format:?} {sw}x{sh} -> {w}x{h}: GPU differs from the CPU twin"
                );
            }
        }
    }
    time_default_ladder(&gpu);
    // Errors stay errors on the GPU path too.
    let src = random_frame(Format::Yuv420p, 64, 32, 1, 1);
    let mut out = Frame::new(Format::Yuv420p, 32, 16, 1);
    assert!(matches!(
        gpu.scale(&src.as_ref(), &mut [out.as_mut()]),
        Err(scale::Error::UnsupportedFormat(_))
    ));
}

/// Prints the kernel's time for 1080p -> 1080/720/480/360 with frames resident on the device
/// (what the pipeline does); informative, not asserted (GPUs differ).
fn time_default_ladder(gpu: &cuda::CudaLadderScaler) {
    use cudarc::driver::DevicePtrMut;
    let stream = gpu.stream();
    let frame = |w: u32, h: u32| scale::DeviceFrame {
        y: 0,
        uv: 0,
        pitch_y: w,
        pitch_uv: w,
        width: w,
        height: h,
    };
    let sizes = [
        (1920u32, 1080u32),
        (1920, 1080),
        (1280, 720),
        (854, 480),
        (640, 360),
    ];
    let mut bufs: Vec<_> = sizes
        .iter()
        .map(|&(w, h)| {
            (
                stream.alloc_zeros::<u8>((w * h) as usize).unwrap(),
                stream.alloc_zeros::<u8>((w * h / 2) as usize).unwrap(),
            )
        })
        .collect();
    let mut frames = Vec::new();
    let mut guards = Vec::new();
    for ((y, uv), &(w, h)) in bufs.iter_mut().zip(&sizes) {
        let (py, gy) = y.device_ptr_mut(stream);
        let (puv, guv) = uv.device_ptr_mut(stream);
        frames.push(scale::DeviceFrame {
            y: py,
            uv: puv,
            ..frame(w, h)
        });
        guards.push((gy, guv));
    }
    let run = |n: usize| {
        for _ in 0..n {
            // SAFETY: every buffer above covers its frame and outlives the synchronisation below.
            unsafe { gpu.launch(Format::Nv12, &frames[0], &frames[1..]).unwrap() };
        }
        stream.synchronize().unwrap();
    };
    run(20);
    let n = 500;
    let t = std::time::Instant::now();
    run(n);
    let per = t.elapsed() / n as u32;
    println!(
        "GPU ladder 1080p -> 1080/720/480/360 NV12: {per:?} per frame ({:.0} fps)",
        1.0 / per.as_secs_f64()
    );
    drop(guards);
}
