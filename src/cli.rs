//! The command line: argument types shared by `main` (kept thin) and the subcommands.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::encode::{Kind, RateControl};
use crate::media::{ladder::parse_bitrate, Ladder, VideoCodec};

#[derive(Debug, Parser)]
#[command(
    name = "encore",
    version,
    about = "GPU transcoding appliance: ABR ladders, CMAF, HLS and DASH, a live origin"
)]
pub struct Cli {
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Transcode a media file into a CMAF ABR package (HLS + DASH).
    Transcode(TranscodeArgs),
    /// Run the daemon: the HTTP origin and the live channels of the configuration.
    Serve(ServeArgs),
    /// Report this machine's CPU, memory, GPUs, usable backends and matching hw-profile.
    Probe {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Measure the VOD ladder against the single-process FFmpeg CLI doing the same ladder
    /// (or, with --origin, the HTTP origin against nginx).
    Bench(BenchArgs),
    /// Check the ladder kernel (and, with --gpu, the GPU kernel and a ladder on every GPU path).
    Selftest {
        /// Also run the checks that need an NVIDIA GPU.
        #[arg(long)]
        gpu: bool,
    },
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Benchmark the HTTP origin against nginx instead of the ladder against FFmpeg.
    #[arg(long)]
    pub origin: bool,
    /// Origin: keep-alive connections of the load generator.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Origin: size of the file requested, bytes.
    #[arg(long, default_value_t = 1024)]
    pub file_bytes: usize,
    /// Source length in seconds (origin: seconds of load per server).
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    /// Source size, WIDTHxHEIGHT.
    #[arg(long, default_value = "1920x1080", value_parser = parse_size)]
    pub size: (u32, u32),
    /// Source frame rate.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    #[arg(long, default_value = "avc", value_parser = parse_codec)]
    pub codec: VideoCodec,
    /// x264/x265 preset used by both sides.
    #[arg(long, default_value = "veryfast")]
    pub preset: String,
    /// Engine both sides encode on: software, nvenc (FFmpeg side: NVDEC + scale_cuda) or
    /// vaapi (VA-API decode + scale_vaapi).
    #[arg(long, default_value = "software")]
    pub backend: String,
    /// VA-API render node for --backend vaapi.
    #[arg(long, default_value = crate::encode::DEFAULT_VAAPI_NODE)]
    pub vaapi_device: PathBuf,
    /// Ladder (as for transcode); default: the codec's default ladder for the source.
    #[arg(long, value_parser = parse_ladder)]
    pub ladder: Option<Ladder>,
    /// Keep the source and both outputs in this folder.
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    pub fn origin_options(&self) -> Result<crate::bench::origin::Options, String> {
        Ok(crate::bench::origin::Options {
            encore: std::env::current_exe().map_err(|e| format!("cannot find encore: {e}"))?,
            seconds: self.seconds,
            connections: self.connections.max(1),
            file_bytes: self.file_bytes,
        })
    }

    pub fn options(&self) -> Result<crate::bench::Options, String> {
        Ok(crate::bench::Options {
            encore: std::env::current_exe().map_err(|e| format!("cannot find encore: {e}"))?,
            width: self.size.0,
            height: self.size.1,
            fps: self.fps,
            seconds: self.seconds,
            codec: self.codec,
            preset: self.preset.clone(),
            engine: match self.backend.as_str() {
                "software" => crate::bench::Engine::Software,
                "nvenc" => crate::bench::Engine::Nvenc,
                "vaapi" => crate::bench::Engine::Vaapi(self.vaapi_device.clone()),
                other => {
                    return Err(format!(
                        "unknown backend {other:?} for bench (software, nvenc or vaapi)"
                    ))
                }
            },
            ladder: self.ladder.clone(),
            keep: self.keep.clone(),
        })
    }
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{s:?}: expected WIDTHxHEIGHT, e.g. 1920x1080");
    let (w, h) = s.split_once('x').ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    if !(16..=8192).contains(&w) || !(16..=8192).contains(&h) || w % 2 == 1 || h % 2 == 1 {
        return Err(bad());
    }
    Ok((w, h))
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration (every field has a default).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Listen address, e.g. 127.0.0.1:8080 (overrides the configuration).
    #[arg(short, long)]
    pub listen: Option<String>,
    /// Data folder (overrides the configuration).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Add a channel named `demo` fed by the built-in test pattern.
    #[arg(long)]
    pub demo: bool,
    /// Job store: postgres://USER@HOST/DB (default: SQLite at DATA_DIR/encore.db).
    #[arg(long, env = "ENCORE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Serve the /v1 API on its own address instead of the origin's.
    #[arg(long)]
    pub api_listen: Option<String>,
    /// File holding the API's bearer token (ENCORE_API_TOKEN also sets it).
    #[arg(long)]
    pub api_token_file: Option<PathBuf>,
    /// Serve the API on a non-loopback address without a token.
    #[arg(long)]
    pub insecure_no_auth: bool,
}

impl ServeArgs {
    pub fn config(&self) -> Result<crate::daemon::Config, String> {
        let mut config = match &self.config {
            Some(path) => crate::daemon::Config::load(path)?,
            None => crate::daemon::Config::default(),
        };
        if let Some(listen) = &self.listen {
            config.listen = listen.clone();
        }
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(url) = &self.database_url {
            config.database_url = Some(url.clone());
        }
        if let Some(addr) = &self.api_listen {
            config.api_listen = Some(addr.clone());
        }
        if let Some(file) = &self.api_token_file {
            config.api_token_file = Some(file.clone());
        }
        config.insecure_no_auth |= self.insecure_no_auth;
        if self.demo && !config.channels.iter().any(|c| c.name == "demo") {
            config.channels.push(crate::daemon::ChannelSpec::demo());
        }
        Ok(config)
    }
}

#[derive(Debug, Args)]
pub struct TranscodeArgs {
    /// Input file (MP4, MOV, MKV, MPEG-TS, ... anything libavformat opens) or URL.
    pub input: String,
    /// Output folder: master.m3u8 and manifest.mpd at the top, one folder per rendition.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Ladder: `1080:6000k,720:3000k,...` (HEIGHT or WxH : bitrate), or a .toml/.json file.
    /// Default: 1080/720/480/360, rungs above the source dropped.
    #[arg(long, value_parser = parse_ladder)]
    pub ladder: Option<Ladder>,
    /// Video codec.
    #[arg(long, default_value = "avc", value_parser = parse_codec)]
    pub codec: VideoCodec,
    /// Segment duration in seconds (1 to 10).
    #[arg(long, default_value_t = 2.0, value_parser = parse_segment_duration)]
    pub segment_duration: f64,
    /// Encoder preset (x264/x265 names: ultrafast … veryslow; mapped to p1–p7 on NVENC).
    #[arg(long, default_value = "veryfast")]
    pub preset: String,
    /// Rate control: capped (constant quality under a max rate at the rung's bitrate) or cbr.
    #[arg(long, default_value = "capped", value_parser = parse_rate_control)]
    pub rate_control: RateControl,
    /// Encoder backend: auto, hardware, software, or a name (nvenc, vaapi, software).
    #[arg(long, default_value = "auto", value_parser = parse_backend)]
    pub backend: Kind,
    /// VA-API render node for the vaapi backend.
    #[arg(long, default_value = crate::encode::DEFAULT_VAAPI_NODE)]
    pub vaapi_device: PathBuf,
    /// On NVIDIA, scale with FFmpeg's scale_cuda instead of Encore's ladder kernel.
    #[arg(long)]
    pub no_ladder_kernel: bool,
    /// Interlaced sources: auto (deinterlace, one picture per frame), field (one picture per
    /// field: twice the frame rate) or off.
    #[arg(long, default_value = "auto", value_parser = parse_deinterlace)]
    pub deinterlace: crate::ingest::deinterlace::Mode,
    /// AAC bitrate, e.g. 128k.
    #[arg(long, default_value = "128k", value_parser = parse_bitrate_arg)]
    pub audio_bitrate: u64,
    /// Replace an existing output folder.
    #[arg(long)]
    pub force: bool,
    /// Print a JSON summary on stdout at the end.
    #[arg(long)]
    pub json: bool,
}

impl TranscodeArgs {
    pub fn job(&self) -> crate::pipeline::Job {
        crate::pipeline::Job {
            input: self.input.clone(),
            out: self.out.clone(),
            ladder: self.ladder.clone(),
            codec: self.codec,
            segment_duration: Duration::from_secs_f64(self.segment_duration),
            preset: self.preset.clone(),
            rate_control: self.rate_control,
            backend: self.backend.clone(),
            vaapi_node: self.vaapi_device.clone(),
            ladder_kernel: !self.no_ladder_kernel,
            deinterlace: self.deinterlace,
            audio_bitrate: self.audio_bitrate,
            force: self.force,
            cancel: None,
        }
    }
}

fn parse_ladder(s: &str) -> Result<Ladder, String> {
    Ladder::from_arg(s).map_err(|e| e.to_string())
}
fn parse_deinterlace(s: &str) -> Result<crate::ingest::deinterlace::Mode, String> {
    s.parse()
}
fn parse_codec(s: &str) -> Result<VideoCodec, String> {
    s.parse()
}
fn parse_rate_control(s: &str) -> Result<RateControl, String> {
    s.parse()
}
fn parse_backend(s: &str) -> Result<Kind, String> {
    s.parse()
        .map_err(|e: std::convert::Infallible| e.to_string())
}
fn parse_bitrate_arg(s: &str) -> Result<u64, String> {
    match parse_bitrate(s)? {
        0 => Err("bitrate must not be zero".into()),
        b => Ok(b),
    }
}
fn parse_segment_duration(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if (1.0..=10.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} s is outside 1 to 10 s"))
    }
}
