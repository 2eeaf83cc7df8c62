//! The command line: argument types shared by `main` (kept thin) and the subcommands.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::api::client::Client;
use crate::encode::{Kind, RateControl};
use crate::media::{ladder::parse_bitrate, Ladder, VideoCodec};

mod loadgen;
pub use loadgen::LoadgenArgs;

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
    /// A stateless origin: serves `/vod/{job}/…` of every job of a fleet, and
    /// `/live/{channel}/…` of every archived channel, from object storage (no data folder, no
    /// database, no encoding), for a CDN or a cache to sit in front of.
    Origin(OriginArgs),
    /// Report this machine's CPU, memory, GPUs, usable backends and matching hw-profile.
    Probe {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Measure the VOD ladder against the FFmpeg CLI doing the same ladder (CPU, bytes and
    /// quality per rung, over interleaved rounds); with --live, how many live channels this
    /// machine carries; with --origin, the HTTP origin against nginx (--live: while encoding).
    Bench(BenchArgs),
    /// Check the ladder kernel (and, with --gpu, the GPU kernel and a ladder on every GPU path).
    Selftest {
        /// Also run the checks that need an NVIDIA GPU.
        #[arg(long)]
        gpu: bool,
    },
    /// Submit, follow and manage transcode jobs on a running daemon (`encore serve`).
    Jobs(JobsArgs),
    /// List, add and remove live channels on a running daemon.
    Channels(ChannelsArgs),
    /// Simulated players against an HLS or DASH origin (Encore, nginx, a CDN): requests,
    /// bytes, latency, errors and stalls, a line a second and a summary.
    Loadgen(LoadgenArgs),
}

#[derive(Debug, Clone, Args)]
pub struct OriginArgs {
    /// Object storage holding the outputs: s3://BUCKET/PREFIX (credentials, region and
    /// endpoint from the AWS_* environment variables) or file:///FOLDER.
    #[arg(long, env = "ENCORE_STORE", required_unless_present = "ingest")]
    pub store: Option<String>,
    /// Take live channels from publishers (CMAF ingest under /ingest/): a TOML file with the
    /// `[ingest]` keys of `encore serve`'s configuration (publishers and their tokens).
    #[arg(long)]
    pub ingest: Option<PathBuf>,
    /// Listen address.
    #[arg(short, long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Requests served at once before the origin answers 503 with Retry-After.
    #[arg(long, default_value_t = 4096)]
    pub max_in_flight: usize,
    /// Requests one client may have in flight (default: an eighth of max-in-flight).
    #[arg(long)]
    pub max_in_flight_per_client: Option<usize>,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Benchmark the HTTP origin against nginx instead of the ladder against FFmpeg.
    #[arg(long)]
    pub origin: bool,
    /// Origin: keep-alive connections of the load generator.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// With --origin: serve the demo channel's live playlist and newest segment while it
    /// encodes on the servers' core (nginx serves copies beside it). Alone: live channel
    /// density, channels of the --size/--fps feed through the default ladder, added until one
    /// misses real time (--seconds measured per step).
    #[arg(long)]
    pub live: bool,
    /// Live density: the most channels tried.
    #[arg(long, default_value_t = 16)]
    pub max_channels: usize,
    /// Origin --live: the serving Encore's `media_nice` (how far below the HTTP side its
    /// encoders run; 0 to compare with no difference).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub media_nice: i32,
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
    /// Rounds of Encore and each FFmpeg ladder, interleaved; the report gives medians and
    /// spreads over them.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub runs: u32,
    /// Skip the per-rung quality (SSIM, PSNR-Y, VMAF where FFmpeg has it).
    #[arg(long)]
    pub no_quality: bool,
    /// Keep the source and the outputs in this folder.
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
            live: self.live,
            media_nice: self.media_nice,
        })
    }

    pub fn live_options(&self) -> Result<crate::bench::live::Options, String> {
        Ok(crate::bench::live::Options {
            encore: std::env::current_exe().map_err(|e| format!("cannot find encore: {e}"))?,
            width: self.size.0,
            height: self.size.1,
            fps: self.fps,
            preset: self.preset.clone(),
            seconds: self.seconds.max(4),
            max_channels: self.max_channels.max(1),
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
            runs: self.runs as usize,
            quality: !self.no_quality,
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

#[derive(Debug, Clone, Args)]
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
    /// Object storage for job outputs: s3://BUCKET/PREFIX (credentials, region and endpoint
    /// from the AWS_* environment variables) or file:///FOLDER.
    #[arg(long, env = "ENCORE_STORE")]
    pub store: Option<String>,
    /// This node's name in a fleet (default: the host name).
    #[arg(long)]
    pub node: Option<String>,
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
        if let Some(store) = &self.store {
            config.store = Some(store.clone());
        }
        if let Some(node) = &self.node {
            config.node_name = Some(node.clone());
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
    /// Segment duration in seconds: whole milliseconds from 1 to 10 s that divide a day
    /// (1, 2, 3, 4, 5, 6, 8, 9, 10, or e.g. 1.5).
    #[arg(long, default_value = "2", value_parser = parse_segment_duration)]
    pub segment_duration: Duration,
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
            segment_duration: self.segment_duration,
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
fn parse_segment_duration(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    crate::media::time::segment_duration_from_seconds(v)
}

// `encore jobs` and `encore channels`: the daemon's clients. Their arguments, the bodies they
// send (only what was given: the server owns the defaults) and their human output.

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The daemon's address.
    #[arg(
        long,
        global = true,
        help_heading = "Server",
        env = "ENCORE_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// File holding the API's bearer token (else ENCORE_API_TOKEN, when set).
    #[arg(long, global = true, help_heading = "Server")]
    pub token_file: Option<PathBuf>,
    /// Print the server's JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

impl ClientArgs {
    /// The token: the file's when one is named, else `ENCORE_API_TOKEN`'s, else none.
    pub fn token(&self) -> Result<Option<String>, String> {
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("token file {}: {e}", path.display()))?;
            return match text.trim() {
                "" => Err(format!("token file {} is empty", path.display())),
                token => Ok(Some(token.to_string())),
            };
        }
        Ok(std::env::var("ENCORE_API_TOKEN")
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty()))
    }

    pub fn client(&self) -> Result<Client, String> {
        Client::new(&self.server, self.token()?).map_err(|e| e.to_string())
    }
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: JobsCommand,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Queue a transcode; prints its id (with --wait, follows it to the end).
    Submit(Box<SubmitArgs>),
    /// The newest jobs first.
    List {
        /// Only jobs in this state: queued, running, succeeded, failed or cancelled.
        #[arg(long)]
        state: Option<String>,
        /// How many (1 to 200; the server's default is 50).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// A job's state, options, attempts, error and playback URLs.
    Show { id: String },
    /// Cancel a queued or running job; remove a finished one and its output.
    Cancel { id: String },
    /// Queue a failed or cancelled job again.
    Retry { id: String },
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The source: an http(s) URL, or a path inside one of the daemon's input roots.
    pub input: String,
    /// Ladder: `1080:6000k,720:3000k,...` (HEIGHT or WxH : bitrate).
    #[arg(long)]
    pub ladder: Option<String>,
    /// Video codec: avc or hevc.
    #[arg(long)]
    pub codec: Option<String>,
    /// Segment duration in seconds (1 to 10, whole milliseconds dividing a day).
    #[arg(long)]
    pub segment_duration: Option<f64>,
    /// Encoder preset (ultrafast … veryslow, p1 … p7).
    #[arg(long)]
    pub preset: Option<String>,
    /// Rate control: capped or cbr.
    #[arg(long)]
    pub rate_control: Option<String>,
    /// Encoder backend: auto, hardware, software, nvenc or vaapi.
    #[arg(long)]
    pub backend: Option<String>,
    /// AAC bitrate, e.g. 128k.
    #[arg(long)]
    pub audio_bitrate: Option<String>,
    /// Interlaced sources: auto, field or off.
    #[arg(long)]
    pub deinterlace: Option<String>,
    /// -50 to 50: higher runs first.
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i64>,
    /// A template stored on the server; the options given here override its own.
    #[arg(long)]
    pub template: Option<String>,
    /// A JSON object kept with the job, e.g. '{"customer":"c1"}'.
    #[arg(long, value_parser = parse_json)]
    pub metadata: Option<serde_json::Value>,
    /// A URL the daemon POSTs the job's state changes to (it needs webhook_secret).
    #[arg(long)]
    pub webhook: Option<String>,
    /// The same key again returns the first job instead of queueing another.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Follow the job to its end (a progress bar), then print its result; exit 1 unless it
    /// succeeded.
    #[arg(long)]
    pub wait: bool,
}

impl SubmitArgs {
    /// The `POST /v1/jobs` body: the input and only the options given.
    pub fn body(&self) -> serde_json::Value {
        use serde_json::Value;
        let text = |v: &Option<String>| v.clone().map(Value::from);
        let fields = [
            ("template", text(&self.template)),
            ("ladder", text(&self.ladder)),
            ("codec", text(&self.codec)),
            ("segment_duration", self.segment_duration.map(Value::from)),
            ("preset", text(&self.preset)),
            ("rate_control", text(&self.rate_control)),
            ("backend", text(&self.backend)),
            ("audio_bitrate", text(&self.audio_bitrate)),
            ("deinterlace", text(&self.deinterlace)),
            ("priority", self.priority.map(Value::from)),
            ("metadata", self.metadata.clone()),
            (
                "webhook",
                self.webhook
                    .clone()
                    .map(|url| serde_json::json!({ "url": url })),
            ),
        ];
        let mut body = serde_json::Map::new();
        body.insert("input".into(), self.input.clone().into());
        body.extend(
            fields
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k.to_string(), v))),
        );
        Value::Object(body)
    }
}

fn parse_json(s: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(s).map_err(|e| format!("not JSON: {e}"))
}

#[derive(Debug, Args)]
pub struct ChannelsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: ChannelsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ChannelsCommand {
    /// The channels: the configuration file's and those added here.
    List,
    /// Start a channel; the daemon keeps it across restarts.
    Add(AddChannelArgs),
    /// Stop a channel added with `add` (its playlists end) and forget it.
    Remove { name: String },
}

#[derive(Debug, Args)]
pub struct AddChannelArgs {
    /// The channel's name, in its URLs (/live/NAME/…).
    pub name: String,
    /// udp://, srt://, rtmp://, loop:PATH, file:PATH, test or test:WIDTHxHEIGHT@FPS.
    pub input: String,
    /// Output WIDTHxHEIGHT@FPS.
    #[arg(long)]
    pub format: Option<String>,
    /// Ladder: `720:3000k,480:1200k,...`.
    #[arg(long)]
    pub ladder: Option<String>,
    /// Video codec: avc or hevc.
    #[arg(long)]
    pub codec: Option<String>,
    /// Segment duration in seconds (1 to 10, whole milliseconds dividing a day).
    #[arg(long)]
    pub segment_duration: Option<f64>,
    /// Seconds kept in the live window.
    #[arg(long)]
    pub dvr_window: Option<f64>,
}

impl AddChannelArgs {
    /// The `POST /v1/channels` body: name, input and only the fields given.
    pub fn body(&self) -> serde_json::Value {
        use serde_json::Value;
        let fields = [
            ("format", self.format.clone().map(Value::from)),
            ("ladder", self.ladder.clone().map(Value::from)),
            ("codec", self.codec.clone().map(Value::from)),
            ("segment_duration", self.segment_duration.map(Value::from)),
            ("dvr_window", self.dvr_window.map(Value::from)),
        ];
        let mut body = serde_json::Map::new();
        body.insert("name".into(), self.name.clone().into());
        body.insert("input".into(), self.input.clone().into());
        body.extend(
            fields
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k.to_string(), v))),
        );
        Value::Object(body)
    }
}

/// The text form of the API's JSON (what `--json` prints as it is).
pub mod human {
    use serde_json::Value;

    fn text(v: &Value) -> &str {
        v.as_str().unwrap_or("-")
    }

    /// Rows under a header, each column as wide as its widest cell (the last one unpadded).
    pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    out.push_str(cell);
                } else {
                    out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
                }
            }
            out.trim_end().to_string() + "\n"
        };
        let mut out = line(header.to_vec());
        for row in rows {
            out.push_str(&line(row.iter().map(String::as_str).collect()));
        }
        out
    }

    /// `42s`, `3m20s`, `1h02m`.
    pub fn duration(seconds: f64) -> String {
        let s = seconds.max(0.0).round() as u64;
        match s {
            0..60 => format!("{s}s"),
            60..3600 => format!("{}m{:02}s", s / 60, s % 60),
            _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        }
    }

    /// `2025-06-01T12:00:00.123Z` → `2025-06-01 12:00:00Z`.
    fn time(v: &Value) -> String {
        match v.as_str() {
            Some(t) if t.len() >= 19 => format!("{}Z", t[..19].replacen('T', " ", 1)),
            Some(t) => t.to_string(),
            None => "-".into(),
        }
    }

    /// Where a running job is, from a job or a progress event: `transcoding 42.0%, 120.0 fps,
    /// 4.00x, ETA 3s` (what is known of it).
    pub fn progress(p: &Value) -> String {
        let mut head = p["phase"].as_str().unwrap_or("running").to_string();
        if let Some(percent) = p["percent"].as_f64() {
            head.push_str(&format!(" {percent:.1}%"));
        }
        let mut parts = vec![head];
        if let Some(fps) = p["fps"].as_f64().filter(|f| *f > 0.0) {
            parts.push(format!("{fps:.1} fps"));
        }
        if let Some(speed) = p["speed"].as_f64().filter(|s| *s > 0.0) {
            parts.push(format!("{speed:.2}x"));
        }
        if let Some(eta) = p["eta_s"].as_f64() {
            parts.push(format!("ETA {}", duration(eta)));
        }
        parts.join(", ")
    }

    /// `360:800k,240:400k` from the options' rungs; `default` when there are none (the
    /// codec's own ladder, fitted to the source).
    fn ladder(rungs: &Value) -> String {
        let Some(rungs) = rungs.as_array() else {
            return "default".into();
        };
        let rung = |r: &Value| {
            let size = match r["width"].as_u64() {
                Some(w) => format!("{w}x{}", r["height"]),
                None => r["height"].to_string(),
            };
            match r["bitrate"].as_u64() {
                Some(b) if b % 1000 == 0 => format!("{size}:{}k", b / 1000),
                _ => format!("{size}:{}", r["bitrate"]),
            }
        };
        rungs.iter().map(rung).collect::<Vec<_>>().join(",")
    }

    /// `encore jobs list`.
    pub fn jobs_table(page: &Value) -> String {
        let jobs = page["jobs"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if jobs.is_empty() {
            return "no jobs\n".into();
        }
        let rows: Vec<Vec<String>> = jobs
            .iter()
            .map(|job| {
                let progress = match text(&job["state"]) {
                    "running" if job["cancel_requested"] == true => "cancelling".into(),
                    "running" => progress(job),
                    "succeeded" => "100%".into(),
                    "failed" => text(&job["error"]["code"]).to_string(),
                    _ => "-".into(),
                };
                vec![
                    text(&job["id"]).into(),
                    text(&job["state"]).into(),
                    time(&job["created_at"]),
                    progress,
                    text(&job["input"]).into(),
                ]
            })
            .collect();
        let mut out = table(&["ID", "STATE", "CREATED", "PROGRESS", "INPUT"], &rows);
        if page["next_cursor"].is_string() {
            out.push_str("… more jobs: a larger --limit (up to 200) shows them\n");
        }
        out
    }

    /// The line after `state` in `encore jobs show`.
    fn state_line(job: &Value) -> String {
        let state = text(&job["state"]);
        match state {
            "running" if job["cancel_requested"] == true => "running, cancel requested".into(),
            "running" => format!("running: {}", progress(job)),
            "queued" if job["attempts"].as_array().is_some_and(|a| !a.is_empty()) => {
                "queued (to be tried again)".into()
            }
            _ => state.to_string(),
        }
    }

    /// `3 renditions, 5 segments, 1.2 MB in 4.1s (2.30x real time), software`.
    fn summary_line(summary: &Value) -> Option<String> {
        let renditions = summary["renditions"].as_array()?.len();
        Some(format!(
            "{renditions} renditions, {} segments, {:.1} MB in {} ({:.2}x real time), {}",
            summary["segments"],
            summary["bytes"].as_f64().unwrap_or(0.0) / 1e6,
            match summary["wall_time"].as_f64().unwrap_or(0.0) {
                t if t < 60.0 => format!("{t:.1}s"),
                t => duration(t),
            },
            summary["speed"].as_f64().unwrap_or(0.0),
            text(&summary["backend"]),
        ))
    }

    /// `encore jobs show`.
    pub fn job(job: &Value) -> String {
        let o = &job["options"];
        let mut rows: Vec<(&str, String)> = vec![
            ("id", text(&job["id"]).into()),
            ("state", state_line(job)),
            ("input", text(&job["input"]).into()),
            ("created", time(&job["created_at"])),
            ("updated", time(&job["updated_at"])),
            ("priority", job["priority"].to_string()),
            (
                "options",
                format!(
                    "{}, ladder {}, {} s segments, preset {}, {}, backend {}, audio {}k, deinterlace {}",
                    text(&o["codec"]),
                    ladder(&o["ladder"]),
                    o["segment_duration"].as_f64().unwrap_or(0.0),
                    text(&o["preset"]),
                    text(&o["rate_control"]),
                    text(&o["backend"]),
                    o["audio_bitrate"].as_u64().unwrap_or(0) / 1000,
                    text(&o["deinterlace"]),
                ),
            ),
        ];
        if let Some(t) = job["template"].as_str() {
            rows.push(("template", t.into()));
        }
        for a in job["attempts"].as_array().into_iter().flatten() {
            let end = match a["outcome"].as_str() {
                Some(outcome) => format!("{}, {outcome}", time(&a["ended_at"])),
                None => "running".into(),
            };
            let line = format!(
                "{} on {}: {} → {end}",
                a["number"],
                text(&a["node"]),
                time(&a["started_at"])
            );
            rows.push(("attempt", line));
        }
        if job["error"].is_object() {
            let e = &job["error"];
            let retry = if e["retryable"] == true {
                " (retryable)"
            } else {
                ""
            };
            rows.push((
                "error",
                format!("{}: {}{retry}", text(&e["code"]), text(&e["message"])),
            ));
        }
        if let Some(line) = summary_line(&job["summary"]) {
            rows.push(("summary", line));
        }
        if job["metadata"].is_object() {
            rows.push(("metadata", job["metadata"].to_string()));
        }
        for (label, key) in [("HLS", "hls"), ("DASH", "dash")] {
            if let Some(url) = job["playback"][key].as_str() {
                rows.push((label, url.into()));
            }
        }
        rows.iter().map(|(k, v)| format!("{k:<9} {v}\n")).collect()
    }

    /// What `encore jobs submit --wait` prints for a job that succeeded.
    pub fn succeeded(job: &Value) -> String {
        let mut out = match summary_line(&job["summary"]) {
            Some(line) => format!("succeeded: {line}\n"),
            None => "succeeded\n".into(),
        };
        for (label, key) in [("HLS: ", "hls"), ("DASH:", "dash")] {
            if let Some(url) = job["playback"][key].as_str() {
                out.push_str(&format!("{label} {url}\n"));
            }
        }
        out
    }

    /// `encore channels list`.
    pub fn channels_table(list: &Value) -> String {
        let channels = list["channels"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if channels.is_empty() {
            return "no channels\n".into();
        }
        let rows: Vec<Vec<String>> = channels
            .iter()
            .map(|c| {
                ["name", "source", "state", "input", "hls"]
                    .map(|k| text(&c[k]).to_string())
                    .to_vec()
            })
            .collect();
        table(&["NAME", "SOURCE", "STATE", "INPUT", "HLS"], &rows)
    }

    /// `encore channels add`.
    pub fn channel(c: &Value) -> String {
        format!(
            "{} {}\nHLS:  {}\nDASH: {}\n",
            text(&c["name"]),
            text(&c["state"]),
            text(&c["hls"]),
            text(&c["dash"])
        )
    }

    #[cfg(test)]
    mod tests {
        use serde_json::json;

        #[test]
        fn tables_align_their_columns() {
            let rows = vec![
                vec!["a".to_string(), "long value".into(), "x".into()],
                vec!["bbb".into(), "v".into(), "last column".into()],
            ];
            assert_eq!(
                super::table(&["K", "VALUE", "END"], &rows),
                "K    VALUE       END\na    long value  x\nbbb  v           last column\n"
            );
        }

        #[test]
        fn progress_says_what_is_known() {
            let p = json!({"phase": "transcoding", "percent": 42.04, "fps": 120.0, "speed": 4.0,
                "eta_s": 75.0, "frames": 10, "state": "running"});
            assert_eq!(
                super::progress(&p),
                "transcoding 42.0%, 120.0 fps, 4.00x, ETA 1m15s"
            );
            assert_eq!(
                super::progress(&json!({"phase": "probing", "fps": 0.0})),
                "probing"
            );
        }

        #[test]
        fn ladders_read_as_given() {
            let rungs = json!([{"height": 720, "bitrate": 3000000}, {"height": 360, "width": 640,
                "bitrate": 800500}]);
            assert_eq!(super::ladder(&rungs), "720:3000k,640x360:800500");
            assert_eq!(super::ladder(&json!(null)), "default");
        }
    }
}
