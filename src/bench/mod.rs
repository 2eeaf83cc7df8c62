//! Benchmarks against the peers Encore replaces, side by side in one run ([`origin`]: the HTTP
//! origin against nginx).
//!
//! `encore bench`: Encore's VOD ladder against its peer, the single-process FFmpeg CLI doing the
//! same ladder (one decode, `split`, `scale`, one encoder per rung) with the very same encoder
//! options, side by side in one run on one source. Reported as ratios, since absolute times on a
//! shared machine drift: CPU-seconds (user + sys of each process), wall time, and output bytes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::Serialize;

pub mod origin;

use crate::encode::{self, backend::software};
use crate::media::{Ladder, Rational, Rung, VideoCodec};

/// The goal for the software ladder: at most this share of the FFmpeg CLI's CPU.
pub const GOAL_CPU_RATIO: f64 = 0.93;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `encore` binary to run (normally the running one).
    pub encore: PathBuf,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub seconds: u32,
    pub codec: VideoCodec,
    pub preset: String,
    /// The engine both sides encode on.
    pub engine: Engine,
    /// `None`: the codec's default ladder.
    pub ladder: Option<Ladder>,
    /// Keep the source and both outputs here (default: a temporary folder, removed).
    pub keep: Option<PathBuf>,
}

/// One side of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub command: String,
    pub wall_seconds: f64,
    /// User + system CPU of the process and its threads.
    pub cpu_seconds: f64,
    pub cpu_ms_per_frame: f64,
    /// Encoded video bytes (Encore: init and media segments; FFmpeg: the MP4 files).
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub source: String,
    pub frames: u64,
    pub ladder: Vec<String>,
    /// Encoder and options of the top rung, identical on both sides.
    pub encoder: String,
    pub encore: Run,
    pub ffmpeg: Run,
    /// Encore CPU / FFmpeg CPU (goal: ≤ [`GOAL_CPU_RATIO`]).
    pub cpu_ratio: f64,
    pub wall_ratio: f64,
    /// Encore bytes / FFmpeg bytes (same encoder settings: expect within ±2%).
    pub size_ratio: f64,
    pub goal_cpu_ratio: f64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "source: {}, {} frames", self.source, self.frames)?;
        writeln!(f, "ladder: {}", self.ladder.join(", "))?;
        writeln!(f, "encoder: {}", self.encoder)?;
        writeln!(
            f,
            "{:<22}{:>10}{:>12}{:>14}{:>14}",
            "", "wall s", "CPU s", "CPU ms/frame", "bytes"
        )?;
        for (name, r) in [
            ("encore", &self.encore),
            ("ffmpeg (one process)", &self.ffmpeg),
        ] {
            writeln!(
                f,
                "{name:<22}{:>10.2}{:>12.2}{:>14.1}{:>14}",
                r.wall_seconds, r.cpu_seconds, r.cpu_ms_per_frame, r.bytes
            )?;
        }
        writeln!(
            f,
            "encore / ffmpeg: CPU {:.3}x (goal <= {:.2}x{}), wall {:.3}x, bytes {:+.1}%",
            self.cpu_ratio,
            self.goal_cpu_ratio,
            if self.cpu_ratio <= self.goal_cpu_ratio {
                ", met"
            } else {
                ", not met"
            },
            self.wall_ratio,
            (self.size_ratio - 1.0) * 100.0
        )
    }
}

/// Runs the benchmark; `progress` gets a line per phase.
pub fn run(options: &Options, progress: &dyn Fn(&str)) -> Result<Report, String> {
    let temp;
    let dir = match &options.keep {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            d.clone()
        }
        None => {
            temp = TempDir::new()?;
            temp.0.clone()
        }
    };
    let (w, h, fps) = (options.width, options.height, options.fps);
    let frames = u64::from(options.seconds * fps);
    let ladder = options
        .ladder
        .clone()
        .unwrap_or_else(|| Ladder::default_for(options.codec));
    let rungs = ladder
        .plan(w, h, w as f64 / h as f64)
        .map_err(|e| e.to_string())?;
    let segment = 2.0;
    let frame_rate = Rational::new(fps, 1);
    let configs: Vec<encode::Config> = rungs
        .iter()
        .map(|r| encode::Config::for_rung(options.codec, r, frame_rate, segment, &options.preset))
        .collect();

    progress(&format!(
        "making a {w}x{h}@{fps} source, {} s",
        options.seconds
    ));
    let source = dir.join("source.mp4");
    make_source(&source, w, h, fps, options.seconds)?;

    progress("encore transcode");
    let encore_out = dir.join("encore");
    let _ = std::fs::remove_dir_all(&encore_out);
    let mut encore_cmd = Command::new(&options.encore);
    encore_cmd
        .arg("transcode")
        .arg(&source)
        .arg("--out")
        .arg(&encore_out)
        .args([
            "--backend",
            options.engine.backend(),
            "--preset",
            &options.preset,
        ])
        .args(["--codec", &options.codec.to_string()])
        .args(["--ladder", &ladder_arg(&rungs)]);
    if let Engine::Vaapi(node) = &options.engine {
        encore_cmd.arg("--vaapi-device").arg(node);
    }
    let encore = measure(&mut encore_cmd, frames, &encore_out)?;

    progress("ffmpeg, one process");
    let ffmpeg_out = dir.join("ffmpeg");
    let _ = std::fs::remove_dir_all(&ffmpeg_out);
    std::fs::create_dir_all(&ffmpeg_out).map_err(|e| e.to_string())?;
    let mut ffmpeg_cmd = ffmpeg_peer(
        &options.engine,
        &source,
        &rungs,
        &configs,
        segment,
        &ffmpeg_out,
    );
    let ffmpeg = measure(&mut ffmpeg_cmd, frames, &ffmpeg_out)?;

    let (codec_name, top_options) = options.engine.codec_options(&configs[0]);
    Ok(Report {
        source: format!("{w}x{h}@{fps} testsrc2 + noise, {} s", options.seconds),
        frames,
        ladder: rungs
            .iter()
            .map(|r| format!("{}x{} {}k", r.width, r.height, r.bitrate / 1000))
            .collect(),
        encoder: format!(
            "{codec_name} {}",
            top_options
                .iter()
                .map(|(k, v)| format!("-{k} {v}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        cpu_ratio: encore.cpu_seconds / ffmpeg.cpu_seconds.max(1e-9),
        wall_ratio: encore.wall_seconds / ffmpeg.wall_seconds.max(1e-9),
        size_ratio: encore.bytes as f64 / ffmpeg.bytes.max(1) as f64,
        goal_cpu_ratio: GOAL_CPU_RATIO,
        encore,
        ffmpeg,
    })
}

/// The ladder as `--ladder` takes it, so Encore encodes exactly the planned sizes.
fn ladder_arg(rungs: &[Rung]) -> String {
    rungs
        .iter()
        .map(|r| format!("{}x{}:{}", r.width, r.height, r.bitrate))
        .collect::<Vec<_>>()
        .join(",")
}

/// The engine both sides encode on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// libx264/libx265; the peer scales with bicubic swscale, as Encore's software path.
    Software,
    /// NVENC; the peer decodes with NVDEC and scales with scale_cuda (Encore: its ladder kernel).
    Nvenc,
    /// VA-API on this render node; the peer decodes with VA-API and scales with scale_vaapi.
    Vaapi(PathBuf),
}

impl Engine {
    /// The `--backend` name Encore is run with.
    pub fn backend(&self) -> &'static str {
        match self {
            Engine::Software => software::NAME,
            Engine::Nvenc => encode::backend::nvenc::NAME,
            Engine::Vaapi(_) => encode::backend::vaapi::NAME,
        }
    }

    /// The encoder and options of one rung, Encore's own.
    fn codec_options(
        &self,
        config: &encode::Config,
    ) -> (&'static str, Vec<(&'static str, String)>) {
        match self {
            Engine::Software => software::codec_options(config),
            Engine::Nvenc => encode::backend::nvenc::codec_options(config),
            Engine::Vaapi(_) => encode::backend::vaapi::codec_options(config, false),
        }
    }
}

/// The FFmpeg CLI doing Encore's ladder in one process as an FFmpeg user would on `engine`:
/// one decode, `split`, a scale per rung (bicubic swscale, scale_cuda or scale_vaapi), and per
/// rung the encoder with Encore's own options, its GOP, and an IDR forced at every segment start.
pub fn ffmpeg_peer(
    engine: &Engine,
    source: &Path,
    rungs: &[Rung],
    configs: &[encode::Config],
    segment_seconds: f64,
    out: &Path,
) -> Command {
    let n = rungs.len();
    let mut graph = format!("[0:v]split={n}");
    for i in 0..n {
        graph += &format!("[s{i}]");
    }
    for (i, r) in rungs.iter().enumerate() {
        let (w, h) = (r.width, r.height);
        let scale = match engine {
            Engine::Software => format!("scale=w={w}:h={h}:flags=bicubic,format=yuv420p"),
            Engine::Nvenc => format!("scale_cuda=w={w}:h={h}:format=nv12:passthrough=0"),
            Engine::Vaapi(_) => format!("scale_vaapi=w={w}:h={h}:format=nv12"),
        };
        graph += &format!(";[s{i}]{scale}[o{i}]");
    }
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-v", "error", "-y"]);
    match engine {
        Engine::Software => {}
        Engine::Nvenc => {
            cmd.args(["-hwaccel", "cuda", "-hwaccel_output_format", "cuda"]);
        }
        Engine::Vaapi(node) => {
            cmd.args(["-hwaccel", "vaapi", "-hwaccel_output_format", "vaapi"])
                .arg("-vaapi_device")
                .arg(node);
        }
    }
    cmd.arg("-i").arg(source).args(["-filter_complex", &graph]);
    for (i, config) in configs.iter().enumerate() {
        let (codec_name, options) = engine.codec_options(config);
        cmd.args(["-map", &format!("[o{i}]"), "-c:v", codec_name]);
        for (key, value) in options {
            cmd.arg(format!("-{key}")).arg(value);
        }
        cmd.args([
            "-g",
            &config.gop.to_string(),
            "-force_key_frames",
            &format!("expr:gte(t,n_forced*{segment_seconds})"),
            "-an",
        ])
        .arg(out.join(format!("{i}.mp4")));
    }
    cmd
}

/// The benchmark source: `testsrc2` with temporal noise (so the encoders have real work),
/// as near-lossless H.264.
fn make_source(path: &Path, w: u32, h: u32, fps: u32, seconds: u32) -> Result<(), String> {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!(
            "testsrc2=size={w}x{h}:rate={fps},noise=alls=12:allf=t"
        ))
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-crf",
            "16",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(path)
        .status()
        .map_err(|e| format!("the ffmpeg CLI is needed for the benchmark: {e}"))?;
    if !status.success() {
        return Err("ffmpeg could not make the benchmark source".into());
    }
    Ok(())
}

/// Runs `cmd` to completion, writing into `out`: its wall time, CPU (it and its threads) and
/// output bytes for `frames` source frames.
fn measure(cmd: &mut Command, frames: u64, out: &Path) -> Result<Run, String> {
    let before = children_cpu();
    let started = Instant::now();
    let output = cmd
        .output()
        .map_err(|e| format!("{}: {e}", describe(cmd)))?;
    let wall = started.elapsed().as_secs_f64();
    if !output.status.success() {
        return Err(format!(
            "{} failed: {}",
            describe(cmd),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let cpu = children_cpu() - before;
    Ok(Run {
        command: describe(cmd),
        wall_seconds: wall,
        cpu_seconds: cpu,
        cpu_ms_per_frame: cpu * 1000.0 / frames.max(1) as f64,
        bytes: dir_bytes(out),
    })
}

/// User + system CPU seconds of every child waited for so far.
fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.contains([' ', ';', '[', '(']) {
                format!("'{a}'")
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Bytes of the media files under `dir` (not the playlists).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                dir_bytes(&path)
            } else if matches!(
                path.extension().and_then(|x| x.to_str()),
                Some("mp4" | "m4s")
            ) {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            } else {
                0
            }
        })
        .sum()
}

/// A folder removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("encore-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests;
