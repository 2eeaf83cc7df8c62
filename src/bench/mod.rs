//! Benchmarks against the peers Encore replaces, side by side in one run ([`origin`]: the HTTP
//! origin against nginx).
//!
//! `encore bench`: Encore's VOD ladder against the single-process FFmpeg CLI doing the same
//! ladder ([`peer`]): once as an FFmpeg user writes it (bitrate-capped ABR) and once with
//! Encore's own encoder options. The sides run in interleaved rounds (Encore, then each peer,
//! `--runs` times) on one source, so drift on a shared machine touches every side alike; the
//! report gives each ratio's median over the rounds with its spread (lowest, highest), and per
//! rung the bytes and the quality against the source scaled to the rung ([`quality`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::Serialize;

pub mod live;
pub mod origin;
mod peer;
pub mod quality;

pub use peer::{ffmpeg_ladder, Peer};

use crate::encode::{self, backend::software};
use crate::media::{Ladder, Rational, Rung, VideoCodec};

/// The goal for the software ladder against the usual FFmpeg ladder: at most this share of
/// its CPU, every rung's SSIM within [`GOAL_SSIM_LOSS`] or better, and no more bytes.
pub const GOAL_CPU_RATIO: f64 = 0.85;
pub const GOAL_SSIM_LOSS: f64 = 0.005;

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
    /// Rounds of Encore and each peer, interleaved (at least 1).
    pub runs: usize,
    /// Measure each rung's quality (SSIM, PSNR-Y, VMAF where FFmpeg has it).
    pub quality: bool,
    /// Keep the source and the outputs here (default: a temporary folder, removed).
    pub keep: Option<PathBuf>,
}

/// Median and spread of one figure over the rounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// Of at least one value.
    pub fn of(values: &[f64]) -> Spread {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Spread {
            median,
            min: v.first().copied().unwrap_or(f64::NAN),
            max: v.last().copied().unwrap_or(f64::NAN),
        }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3} ({:.3}–{:.3})", self.median, self.min, self.max)
    }
}

/// One side (Encore or a peer) over every round.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub name: String,
    pub command: String,
    pub wall_seconds: Spread,
    /// User + system CPU of the process and its threads.
    pub cpu_seconds: Spread,
    /// Median CPU per source frame.
    pub cpu_ms_per_frame: f64,
    /// Encoded video bytes (Encore: init and media segments; FFmpeg: the MP4 files).
    pub bytes: u64,
    pub rungs: Vec<RungOutput>,
}

/// One rung of one side.
#[derive(Debug, Clone, Serialize)]
pub struct RungOutput {
    pub rung: String,
    pub bytes: u64,
    /// Against the source scaled to the rung; `None` with `--no-quality`.
    pub quality: Option<quality::Quality>,
}

/// Encore against one peer.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub peer: String,
    /// Encore's CPU / the peer's, per round.
    pub cpu_ratio: Spread,
    pub wall_ratio: Spread,
    /// Encore's bytes / the peer's.
    pub bytes_ratio: f64,
    pub rungs: Vec<RungComparison>,
}

/// One rung, Encore against one peer.
#[derive(Debug, Clone, Serialize)]
pub struct RungComparison {
    pub rung: String,
    pub bytes_ratio: f64,
    /// Encore's SSIM − the peer's (positive: Encore's is better).
    pub ssim_difference: Option<f64>,
    /// Encore's PSNR-Y − the peer's, dB.
    pub psnr_y_difference: Option<f64>,
    pub vmaf_difference: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub source: String,
    pub frames: u64,
    pub runs: usize,
    pub ladder: Vec<String>,
    /// Encoder and Encore's options of the top rung.
    pub encoder: String,
    /// Encore first, then each peer.
    pub sides: Vec<Side>,
    pub comparisons: Vec<Comparison>,
    pub goal: Goal,
}

/// The goal against the usual FFmpeg ladder, and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    pub cpu_ratio: f64,
    pub ssim_loss: f64,
    pub met: Option<bool>,
}

impl Comparison {
    /// Whether this comparison meets the goal (unknown without quality figures).
    fn meets_goal(&self) -> Option<bool> {
        let mut quality_ok = true;
        for r in &self.rungs {
            quality_ok &= r.ssim_difference? >= -GOAL_SSIM_LOSS;
        }
        Some(self.cpu_ratio.median <= GOAL_CPU_RATIO && quality_ok && self.bytes_ratio <= 1.0)
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "source: {}, {} frames", self.source, self.frames)?;
        writeln!(f, "ladder: {}", self.ladder.join(", "))?;
        writeln!(f, "encoder: {}", self.encoder)?;
        writeln!(f, "rounds: {} (median, lowest–highest)", self.runs)?;
        writeln!(
            f,
            "{:<28}{:>24}{:>24}{:>14}{:>12}",
            "", "wall s", "CPU s", "CPU ms/frame", "bytes"
        )?;
        for s in &self.sides {
            writeln!(
                f,
                "{:<28}{:>24}{:>24}{:>14.1}{:>12}",
                s.name,
                s.wall_seconds.to_string(),
                s.cpu_seconds.to_string(),
                s.cpu_ms_per_frame,
                s.bytes
            )?;
        }
        writeln!(f, "\nper rung: bytes, SSIM (all planes), PSNR-Y dB")?;
        write!(f, "  {:<18}", "")?;
        for side in &self.sides {
            write!(f, "  {:<27}", side.name)?;
        }
        writeln!(f)?;
        for (i, rung) in self.ladder.iter().enumerate() {
            write!(f, "  {rung:<18}")?;
            for s in &self.sides {
                let r = &s.rungs[i];
                match r.quality {
                    Some(q) => write!(f, "  {:>10} {:.4} {:5.2}  ", r.bytes, q.ssim, q.psnr_y)?,
                    None => write!(f, "  {:>10}{:17}", r.bytes, "")?,
                }
            }
            writeln!(f)?;
        }
        for c in &self.comparisons {
            writeln!(f, "\nencore / {}:", c.peer)?;
            writeln!(
                f,
                "  CPU {}x, wall {}x, bytes {:+.1}%",
                c.cpu_ratio,
                c.wall_ratio,
                (c.bytes_ratio - 1.0) * 100.0
            )?;
            for r in &c.rungs {
                write!(
                    f,
                    "  {:<18} bytes {:+6.1}%",
                    r.rung,
                    (r.bytes_ratio - 1.0) * 100.0
                )?;
                if let (Some(ssim), Some(psnr)) = (r.ssim_difference, r.psnr_y_difference) {
                    write!(f, "  SSIM {ssim:+.4}  PSNR-Y {psnr:+.2} dB")?;
                }
                if let Some(vmaf) = r.vmaf_difference {
                    write!(f, "  VMAF {vmaf:+.2}")?;
                }
                writeln!(f)?;
            }
        }
        let verdict = match self.goal.met {
            Some(true) => "met",
            Some(false) => "not met",
            None => "not judged (no quality figures)",
        };
        writeln!(
            f,
            "\ngoal against the usual ladder: CPU <= {:.2}x, SSIM within {} per rung, bytes <= the peer's: {verdict}",
            self.goal.cpu_ratio, self.goal.ssim_loss
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

    let runs = options.runs.max(1);
    let encore_out = dir.join("encore");
    let peer_out = |p: Peer| dir.join(format!("ffmpeg-{}", peer_folder(p)));
    // Every side's rounds: (command line, wall, CPU), in the order they ran.
    let mut rounds: Vec<Vec<Run>> = vec![Vec::new(); 1 + Peer::ALL.len()];
    for round in 1..=runs {
        progress(&format!("round {round}/{runs}: encore transcode"));
        let _ = std::fs::remove_dir_all(&encore_out);
        let mut encore_cmd = encore_command(options, &source, &rungs, &encore_out);
        rounds[0].push(measure(&mut encore_cmd, &encore_out)?);
        for (i, p) in Peer::ALL.into_iter().enumerate() {
            progress(&format!("round {round}/{runs}: {}", p.name()));
            let out = peer_out(p);
            let _ = std::fs::remove_dir_all(&out);
            std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
            let mut cmd =
                ffmpeg_ladder(p, &options.engine, &source, &rungs, &configs, segment, &out);
            rounds[i + 1].push(measure(&mut cmd, &out)?);
        }
    }

    // Per rung: where each side wrote it (Encore's CMAF joined into one file to be read).
    let vmaf = options.quality && quality::has_vmaf();
    let mut sides = Vec::new();
    for (i, side_rounds) in rounds.iter().enumerate() {
        let name = if i == 0 {
            "encore".to_owned()
        } else {
            Peer::ALL[i - 1].name().to_owned()
        };
        let mut outputs = Vec::new();
        for (r, rung) in rungs.iter().enumerate() {
            let file = if i == 0 {
                let joined = dir.join(format!("encore-{}.mp4", rung.id(&rungs)));
                join_cmaf(&encore_out.join(rung.id(&rungs)), &joined)?;
                joined
            } else {
                peer_out(Peer::ALL[i - 1]).join(format!("{r}.mp4"))
            };
            let bytes = if i == 0 {
                dir_bytes(&encore_out.join(rung.id(&rungs)))
            } else {
                std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0)
            };
            let quality = if options.quality {
                progress(&format!("quality: {name}, {}x{}", rung.width, rung.height));
                Some(quality::measure(
                    &file,
                    &source,
                    rung.width,
                    rung.height,
                    vmaf,
                )?)
            } else {
                None
            };
            outputs.push(RungOutput {
                rung: rung_label(rung),
                bytes,
                quality,
            });
        }
        let cpu: Vec<f64> = side_rounds.iter().map(|r| r.cpu_seconds).collect();
        let wall: Vec<f64> = side_rounds.iter().map(|r| r.wall_seconds).collect();
        let cpu = Spread::of(&cpu);
        sides.push(Side {
            name,
            command: side_rounds[0].command.clone(),
            wall_seconds: Spread::of(&wall),
            cpu_ms_per_frame: cpu.median * 1000.0 / frames.max(1) as f64,
            cpu_seconds: cpu,
            bytes: outputs.iter().map(|o| o.bytes).sum(),
            rungs: outputs,
        });
    }

    let comparisons: Vec<Comparison> = (1..sides.len())
        .map(|i| compare(&sides[0], &rounds[0], &sides[i], &rounds[i]))
        .collect();
    let (codec_name, top_options) = options.engine.codec_options(&configs[0]);
    Ok(Report {
        source: format!("{w}x{h}@{fps} testsrc2 + noise, {} s", options.seconds),
        frames,
        runs,
        ladder: rungs.iter().map(rung_label).collect(),
        encoder: format!(
            "{codec_name} {}",
            top_options
                .iter()
                .map(|(k, v)| format!("-{k} {v}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        goal: Goal {
            cpu_ratio: GOAL_CPU_RATIO,
            ssim_loss: GOAL_SSIM_LOSS,
            met: comparisons[0].meets_goal(),
        },
        sides,
        comparisons,
    })
}

fn rung_label(r: &Rung) -> String {
    format!("{}x{} {}k", r.width, r.height, r.bitrate / 1000)
}

fn peer_folder(p: Peer) -> &'static str {
    match p {
        Peer::Usual => "usual",
        Peer::SameOptions => "same-options",
    }
}

fn encore_command(options: &Options, source: &Path, rungs: &[Rung], out: &Path) -> Command {
    let mut cmd = Command::new(&options.encore);
    cmd.arg("transcode")
        .arg(source)
        .arg("--out")
        .arg(out)
        .args([
            "--backend",
            options.engine.backend(),
            "--preset",
            &options.preset,
        ])
        .args(["--codec", &options.codec.to_string()])
        .args(["--ladder", &ladder_arg(rungs)]);
    if let Engine::Vaapi(node) = &options.engine {
        cmd.arg("--vaapi-device").arg(node);
    }
    cmd
}

/// Encore against one peer: ratios per round (Encore's round i with the peer's round i, run
/// one after the other), bytes and quality per rung.
fn compare(encore: &Side, encore_rounds: &[Run], peer: &Side, peer_rounds: &[Run]) -> Comparison {
    let ratio = |f: fn(&Run) -> f64| {
        let values: Vec<f64> = encore_rounds
            .iter()
            .zip(peer_rounds)
            .map(|(e, p)| f(e) / f(p).max(1e-9))
            .collect();
        Spread::of(&values)
    };
    let rungs = encore
        .rungs
        .iter()
        .zip(&peer.rungs)
        .map(|(e, p)| {
            let both = e.quality.zip(p.quality);
            RungComparison {
                rung: e.rung.clone(),
                bytes_ratio: e.bytes as f64 / p.bytes.max(1) as f64,
                ssim_difference: both.map(|(e, p)| e.ssim - p.ssim),
                psnr_y_difference: both.map(|(e, p)| e.psnr_y - p.psnr_y),
                vmaf_difference: both.and_then(|(e, p)| Some(e.vmaf? - p.vmaf?)),
            }
        })
        .collect();
    Comparison {
        peer: peer.name.clone(),
        cpu_ratio: ratio(|r| r.cpu_seconds),
        wall_ratio: ratio(|r| r.wall_seconds),
        bytes_ratio: encore.bytes as f64 / peer.bytes.max(1) as f64,
        rungs,
    }
}

/// Joins a rendition's CMAF files (`init.mp4`, then `{number}.m4s` in order) into one
/// fragmented MP4, which any MP4 reader plays.
fn join_cmaf(rendition: &Path, out: &Path) -> Result<(), String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut bytes = read(&rendition.join("init.mp4"))?;
    let mut segments: Vec<(u64, PathBuf)> = std::fs::read_dir(rendition)
        .map_err(|e| format!("{}: {e}", rendition.display()))?
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let n = path.file_stem()?.to_str()?.parse().ok()?;
            (path.extension()? == "m4s").then_some((n, path))
        })
        .collect();
    segments.sort();
    for (_, path) in segments {
        bytes.extend(read(&path)?);
    }
    std::fs::write(out, bytes).map_err(|e| format!("{}: {e}", out.display()))
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
    pub(crate) fn codec_options(
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

/// One round of one side.
#[derive(Debug, Clone)]
struct Run {
    command: String,
    wall_seconds: f64,
    cpu_seconds: f64,
}

/// Runs `cmd` to completion, writing into `out`: its wall time and CPU (it and its threads).
fn measure(cmd: &mut Command, out: &Path) -> Result<Run, String> {
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
    if dir_bytes(out) == 0 {
        return Err(format!("{} wrote nothing", describe(cmd)));
    }
    Ok(Run {
        command: describe(cmd),
        wall_seconds: wall,
        cpu_seconds: cpu,
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
