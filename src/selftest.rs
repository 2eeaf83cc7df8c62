//! `encore selftest`: checks a machine can do what its hw-profile claims, and prints a report
//! to attach to that profile.
//!
//! Always: the ladder kernel's own code (host build) against its CPU twin. With `--gpu`: the
//! CUDA kernel on the device against the CPU twin (max difference ≤ 1, in practice identical),
//! then a short ladder on every GPU path the machine has (NVENC zero-copy with the ladder kernel
//! and with scale_cuda, HEVC Main 10; NVDEC + GPU scaling + software encode on GPUs without
//! NVENC; VA-API), each checked as the VOD tests check it (an IDR at the start of every segment
//! of every rung, segments aligned across rungs) and on the front end it ran.

use std::fmt::Write as _;
use std::path::Path;

use crate::encode::Kind;
use crate::media::VideoCodec;
use crate::package::cmaf::nal;
use crate::pipeline::{self, Job};

/// Runs the checks; `Ok(report)` when all passed, `Err(report)` otherwise.
pub fn run(gpu: bool) -> Result<String, String> {
    let mut report = String::new();
    let mut ok = true;
    let probe = crate::hw::probe();
    let _ = writeln!(report, "encore selftest {}", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(
        report,
        "machine: {}, profile {}",
        probe.cpu.model,
        probe.profile.as_deref().unwrap_or("none")
    );
    match crate::scale::selftest::host_kernel() {
        Ok(t) => {
            ok &= t.passed();
            let _ = writeln!(report, "{} {t}", mark(t.passed()));
        }
        Err(e) => {
            ok = false;
            let _ = writeln!(report, "FAIL ladder kernel (host build): {e}");
        }
    }
    if gpu && !probe.nvidia.devices.is_empty() {
        // FFmpeg's CUDA device before any other user of the primary context (see hw::accel).
        if let Err(e) = crate::hw::accel::shared_cuda() {
            ok = false;
            let _ = writeln!(report, "FAIL FFmpeg's CUDA device: {e}");
        }
        match crate::scale::selftest::gpu() {
            Ok(t) => {
                ok &= t.passed();
                let _ = writeln!(report, "{} {t}", mark(t.passed()));
            }
            Err(e) => {
                ok = false;
                let _ = writeln!(report, "FAIL ladder kernel on the GPU: {e}");
            }
        }
    }
    if gpu {
        let cases = ladder_cases(&probe);
        if cases.is_empty() {
            ok = false;
            let _ = writeln!(
                report,
                "FAIL no GPU to encode on: NVIDIA: {}; VA-API: {}",
                probe.nvidia.reason.as_deref().unwrap_or("no device"),
                probe.vaapi.reason.as_deref().unwrap_or("no device")
            );
        }
        for case in cases {
            match gpu_ladder(&case) {
                Ok(line) => {
                    let _ = writeln!(report, "ok   {}: {line}", case.label);
                }
                Err(e) => {
                    ok = false;
                    let _ = writeln!(report, "FAIL {}: {e}", case.label);
                }
            }
        }
    }
    if ok {
        Ok(report)
    } else {
        Err(report)
    }
}

fn mark(passed: bool) -> &'static str {
    if passed {
        "ok  "
    } else {
        "FAIL"
    }
}

/// One GPU ladder the self-check encodes, and the front end it must have run on.
struct LadderCase {
    label: &'static str,
    backend: Kind,
    codec: VideoCodec,
    ten_bit: bool,
    ladder_kernel: bool,
    /// A phrase of the job summary's `front_end`: proof the GPU path ran, not a fallback.
    front_end: &'static str,
}

/// The GPU paths this machine has: NVENC zero-copy (or NVDEC + GPU scaling + software encode
/// on GPUs without NVENC), each with the ladder kernel and with scale_cuda; VA-API.
fn ladder_cases(probe: &crate::hw::ProbeReport) -> Vec<LadderCase> {
    let nvenc = crate::encode::backend::nvenc::NAME;
    let mut cases = Vec::new();
    if !probe.nvidia.devices.is_empty() {
        if probe.backend(nvenc).is_some_and(|b| b.usable) {
            let named = || Kind::Named(nvenc.into());
            cases.extend([
                LadderCase {
                    label: "NVENC ladder, NVDEC + ladder kernel, zero-copy",
                    backend: named(),
                    codec: VideoCodec::Avc,
                    ten_bit: false,
                    ladder_kernel: true,
                    front_end: "ladder kernel, CUDA frames to the encoder",
                },
                LadderCase {
                    label: "NVENC HEVC Main 10 ladder, zero-copy",
                    backend: named(),
                    codec: VideoCodec::Hevc,
                    ten_bit: true,
                    ladder_kernel: true,
                    front_end: "ladder kernel, CUDA frames to the encoder",
                },
                LadderCase {
                    label: "NVENC ladder, scale_cuda fallback",
                    backend: named(),
                    codec: VideoCodec::Avc,
                    ten_bit: false,
                    ladder_kernel: false,
                    front_end: "scale_cuda",
                },
            ]);
        } else {
            cases.extend([
                LadderCase {
                    label: "NVDEC + ladder kernel + software encode (no NVENC)",
                    backend: Kind::Auto,
                    codec: VideoCodec::Avc,
                    ten_bit: false,
                    ladder_kernel: true,
                    front_end: "ladder kernel, one download per rung frame",
                },
                LadderCase {
                    label: "NVDEC + scale_cuda + software encode (no NVENC)",
                    backend: Kind::Auto,
                    codec: VideoCodec::Avc,
                    ten_bit: false,
                    ladder_kernel: false,
                    front_end: "scale_cuda, one download per rung frame",
                },
            ]);
        }
    }
    if !probe.vaapi.devices.is_empty() {
        cases.push(LadderCase {
            label: "VA-API ladder, VA-API decode + scale_vaapi",
            backend: Kind::Named(crate::encode::backend::vaapi::NAME.into()),
            codec: VideoCodec::Avc,
            ten_bit: false,
            ladder_kernel: true,
            front_end: "VA-API decode, scale_vaapi",
        });
    }
    cases
}

/// Encodes 4 s of 720p test pattern into 720/480/360 on `case`'s path and checks every
/// segment: an IDR first, segment starts equal across rungs, and the front end that ran.
fn gpu_ladder(case: &LadderCase) -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("encore-selftest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let result = (|| {
        let source = dir.join("source.mp4");
        let encoder: &[&str] = if case.ten_bit {
            &[
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p10le",
                "-x265-params",
                "log-level=error",
            ]
        } else {
            &[
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
            ]
        };
        let status = std::process::Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=1280x720:rate=30",
                "-t",
                "4",
            ])
            .args(encoder)
            .arg(&source)
            .status()
            .map_err(|e| format!("ffmpeg CLI needed to make the test clip: {e}"))?;
        if !status.success() {
            return Err("ffmpeg could not make the test clip".to_string());
        }
        let mut job = Job::new(source.to_string_lossy(), dir.join("out"));
        job.backend = case.backend.clone();
        job.codec = case.codec;
        job.ladder_kernel = case.ladder_kernel;
        job.preset = "fast".into();
        let summary = pipeline::transcode(&job, &|_| {}).map_err(|e| e.to_string())?;
        if !summary.front_end.contains(case.front_end) {
            return Err(format!(
                "ran on \"{}\" ({}), not the expected \"{}\"",
                summary.front_end, summary.backend, case.front_end
            ));
        }
        let mut starts: Option<Vec<u64>> = None;
        for r in summary.renditions.iter().filter(|r| r.kind == "video") {
            let rung_dir = dir.join("out").join(&r.id);
            let mut rung_starts = Vec::new();
            for n in 0..r.segments as u64 {
                let (tfdt, first_nal) =
                    first_sample(&rung_dir.join(format!("{n}.m4s")), summary.codec)?;
                if !nal::is_idr(summary.codec, first_nal) {
                    return Err(format!("{} segment {n} does not start with an IDR", r.id));
                }
                rung_starts.push(tfdt);
            }
            match &starts {
                None => starts = Some(rung_starts),
                Some(s) if *s != rung_starts => {
                    return Err(format!("{}: segment starts differ from the top rung", r.id))
                }
                Some(_) => {}
            }
        }
        Ok(format!(
            "{} renditions, {} segments, IDR-aligned, {:.1}x real time on {} ({})",
            summary.renditions.len(),
            summary.segments,
            summary.speed,
            summary.backend,
            summary.front_end
        ))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// tfdt and the first VCL NAL header byte of a segment's first sample.
fn first_sample(path: &Path, codec: VideoCodec) -> Result<(u64, u8), String> {
    use mp4_atom::{Any, Decode};
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = bytes.as_slice();
    let mut tfdt = 0;
    while !buf.is_empty() {
        match Any::decode(&mut buf).map_err(|e| format!("{}: {e}", path.display()))? {
            Any::Moof(m) => {
                tfdt = m
                    .traf
                    .first()
                    .and_then(|t| t.tfdt.as_ref())
                    .map(|t| t.base_media_decode_time)
                    .unwrap_or(0)
            }
            Any::Mdat(m) => {
                for unit in nal::length_prefixed_units(&m.data) {
                    let unit = unit.map_err(|e| e.to_string())?;
                    if let Some(&h) = unit.first() {
                        // Skip parameter sets, SEI and delimiters: the first picture decides.
                        let t = nal::nal_type(codec, h);
                        let picture = match codec {
                            VideoCodec::Avc => (1..=5).contains(&t),
                            VideoCodec::Hevc => t < 32,
                        };
                        if picture {
                            return Ok((tfdt, h));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Err(format!("{}: no picture", path.display()))
}
