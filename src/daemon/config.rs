//! The daemon's TOML configuration. Every field has a default; unknown fields are errors.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! data_dir = "./data"
//!
//! [[channels]]
//! name = "news"
//! input = "udp://0.0.0.0:5000"      # or srt://0.0.0.0:9000, rtmp://0.0.0.0:1935/live/key, loop:FILE, test
//! format = "1280x720@30"            # output size and rate (29.97, 59.94, 30000/1001 too)
//! ladder = "720:3000k,480:1200k,360:730k"
//! codec = "avc"
//! segment_duration = 2
//! dvr_window = 300
//! deinterlace = "auto"              # interlaced inputs: auto, field (one picture per field) or off
//! ```
//!
//! The job API's keys (`database_url`, `api_listen`, `input_roots`, `capacity`, `webhook_secret`,
//! …) are documented on [`Config`] and in the README.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::encode::Kind;
use crate::ingest::live::{InputGuard, LiveSource};
use crate::media::{ladder::parse_bitrate, Ladder, Rational, VideoCodec};
use crate::pipeline::live::ChannelConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the HTTP origin (and of the API, unless `api_listen` moves it).
    pub listen: String,
    /// The REST API's own address; absent = on `listen`.
    pub api_listen: Option<String>,
    /// Where VOD outputs live (served under /vod/) and, by default, the job database.
    pub data_dir: PathBuf,
    /// `postgres://…` for a shared PostgreSQL; absent = SQLite at DATA_DIR/encore.db.
    pub database_url: Option<String>,
    /// A file holding the API's bearer token (ENCORE_API_TOKEN also sets it).
    pub api_token_file: Option<PathBuf>,
    /// Serve the API on a non-loopback address without a token (refused otherwise).
    pub insecure_no_auth: bool,
    /// Folders whose files jobs may name as input; none = URL inputs only.
    pub input_roots: Vec<PathBuf>,
    /// Allow URL inputs on link-local addresses (cloud metadata endpoints live there).
    pub allow_link_local_inputs: bool,
    /// Capacity units of this node; absent = from its hw-profile.
    pub capacity: Option<f64>,
    /// Queued jobs beyond which submissions get 429.
    pub max_queued_jobs: i64,
    /// Attempts of a job whose node died (or whose failure is retryable) before it fails.
    pub max_attempts: i64,
    /// Signs webhooks: `whsec_` + base64 (Standard Webhooks), or at least 16 characters.
    pub webhook_secret: Option<String>,
    /// Object storage for job outputs (`s3://BUCKET/PREFIX`, `file:///FOLDER`): a finished
    /// job's folder is uploaded there, segments first and manifests last. Absent: outputs stay
    /// in DATA_DIR/vod only.
    pub store: Option<String>,
    /// This node's name in job attempts and the fleet's node list; absent = the host name.
    pub node_name: Option<String>,
    /// Seconds without a heartbeat after which a node counts as gone and its jobs run
    /// elsewhere (the same on every node of a fleet).
    pub lease_time: f64,
    /// Base of the playback URLs in job records (e.g. a CDN); absent = this origin's address.
    pub public_url: Option<String>,
    /// Requests served at once before the origin answers 503 with Retry-After.
    pub max_in_flight: usize,
    /// Requests one client (an IP address, an IPv6 /64) may have in flight; absent = an eighth
    /// of `max_in_flight`, at least 64. Raise it behind a CDN or proxy.
    pub max_in_flight_per_client: Option<usize>,
    /// Open HTTP connections at most; absent = sized from the open-files limit (which the
    /// daemon raises to its hard limit at start).
    pub max_connections: Option<usize>,
    /// Seconds a client has to send a request head; also how long a keep-alive connection
    /// may stay idle.
    pub header_timeout: f64,
    /// Seconds a response may wait for a client that takes no data before it is closed.
    pub send_timeout: f64,
    /// How many nice steps below the HTTP side media work runs (decoders, scalers, encoders of
    /// channels and jobs): on a box encoding at its limit the origin answers players first.
    /// 0 to 19; 0: the same priority.
    pub media_nice: i32,
    /// HLS players, by a substring of their `User-Agent`, that count live media time from the
    /// first segment they load (GStreamer's `hlsdemux`): they get a session timeline
    /// (`?rebase=N`). Empty: none.
    pub rebase_user_agents: Vec<String>,
    /// Publishers that may push live channels to this node's `/ingest/` (CMAF ingest).
    pub ingest: IngestSection,
    pub channels: Vec<ChannelSpec>,
}

/// `[ingest]`: who may publish live channels to this origin, and their timing.
///
/// ```toml
/// [ingest]
/// segment_duration = 2        # D of the channels published here
/// wait = 1.0                  # for a better copy when the first fails a check; default D/2
/// dvr_window = 300
/// [[ingest.publishers]]
/// name = "a"
/// token_file = "/etc/encore/publisher-a.token"   # or token = "…" (16 characters at least)
/// channels = ["news"]         # optional: the channels it may publish
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSection {
    pub segment_duration: f64,
    pub wait: Option<f64>,
    pub dvr_window: f64,
    pub publishers: Vec<PublisherSpec>,
}

impl Default for IngestSection {
    fn default() -> Self {
        IngestSection {
            segment_duration: default_segment(),
            wait: None,
            dvr_window: default_dvr(),
            publishers: Vec::new(),
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublisherSpec {
    pub name: String,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub channels: Vec<String>,
}

impl std::fmt::Debug for PublisherSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublisherSpec")
            .field("name", &self.name)
            .field("token_file", &self.token_file)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

/// Tokens shorter than this are refused (publishers' and the API's alike).
pub const MIN_TOKEN_CHARS: usize = 16;

impl IngestSection {
    /// Loads `[ingest]` from a TOML file of its own (`encore origin --ingest FILE`).
    pub fn load(path: &std::path::Path) -> Result<IngestSection, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Checks every field, reads the token files, and builds the origin's settings.
    pub fn resolve(&self) -> Result<crate::origin::IngestConfig, String> {
        let segment_duration =
            crate::media::time::segment_duration_from_seconds(self.segment_duration)
                .map_err(|e| format!("ingest.segment_duration: {e}"))?;
        let wait = match self.wait {
            Some(w) if !(0.0..=self.segment_duration).contains(&w) => {
                return Err(format!("ingest.wait {w} s: 0 to segment_duration"))
            }
            Some(w) => Some(Duration::from_secs_f64(w)),
            None => None,
        };
        if self.dvr_window.is_nan()
            || self.dvr_window < 3.0 * self.segment_duration
            || self.dvr_window > MAX_DVR_WINDOW_SECONDS
        {
            return Err(format!(
                "ingest.dvr_window {} s: 3 segments to {MAX_DVR_WINDOW_SECONDS} s",
                self.dvr_window
            ));
        }
        let mut publishers = Vec::new();
        for p in &self.publishers {
            let at = |e: String| format!("ingest publisher {:?}: {e}", p.name);
            if p.name.is_empty() || p.name.len() > 64 {
                return Err(at("a name of 1 to 64 characters".into()));
            }
            let token = match (&p.token, &p.token_file) {
                (Some(t), None) => t.clone(),
                (None, Some(file)) => std::fs::read_to_string(file)
                    .map_err(|e| at(format!("token_file {}: {e}", file.display())))?
                    .trim()
                    .to_owned(),
                _ => return Err(at("give token or token_file (one of them)".into())),
            };
            if token.chars().count() < MIN_TOKEN_CHARS {
                return Err(at(format!(
                    "tokens are {MIN_TOKEN_CHARS} characters at least"
                )));
            }
            if publishers
                .iter()
                .any(|q: &crate::origin::IngestPublisher| q.name == p.name || q.token == token)
            {
                return Err(at("names and tokens must differ between publishers".into()));
            }
            publishers.push(crate::origin::IngestPublisher {
                name: p.name.clone(),
                token,
                channels: p.channels.clone(),
            });
        }
        Ok(crate::origin::IngestConfig {
            publishers,
            segment_duration,
            wait,
            dvr_window: Duration::from_secs_f64(self.dvr_window),
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            api_listen: None,
            data_dir: PathBuf::from("./data"),
            database_url: None,
            api_token_file: None,
            insecure_no_auth: false,
            input_roots: Vec::new(),
            allow_link_local_inputs: false,
            capacity: None,
            max_queued_jobs: 1000,
            max_attempts: 3,
            webhook_secret: None,
            store: None,
            node_name: None,
            lease_time: 30.0,
            public_url: None,
            max_in_flight: 4096,
            max_in_flight_per_client: None,
            max_connections: None,
            header_timeout: 10.0,
            send_timeout: 60.0,
            media_nice: 10,
            rebase_user_agents: crate::origin::default_rebase_user_agents(),
            ingest: IngestSection::default(),
            channels: Vec::new(),
        }
    }
}

/// One live channel as written in the configuration (or posted to `/v1/channels`).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    pub name: String,
    pub input: String,
    /// Output `WIDTHxHEIGHT@FPS`; default: the test pattern's own, else 1280x720@30.
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub ladder: Option<String>,
    #[serde(default = "default_codec")]
    pub codec: String,
    #[serde(default = "default_preset")]
    pub preset: String,
    #[serde(default = "default_backend")]
    pub backend: String,
    /// VA-API render node for `backend = "vaapi"` (or `auto` on a VA-API machine).
    #[serde(default = "default_vaapi_device")]
    pub vaapi_device: PathBuf,
    /// Seconds: whole milliseconds from 1 to 10 s that divide a day.
    #[serde(default = "default_segment")]
    pub segment_duration: f64,
    /// DVR window in seconds.
    #[serde(default = "default_dvr")]
    pub dvr_window: f64,
    /// The DVR window's size in megabytes (every rendition together), at most: whichever of
    /// `dvr_window` and this is reached first bounds the window.
    #[serde(default = "default_dvr_max_mb")]
    pub dvr_max_mb: u64,
    #[serde(default = "default_audio")]
    pub audio_bitrate: String,
    /// Interlaced inputs: "auto" (deinterlace, one picture per frame), "field" (one per field,
    /// for sport: give the channel twice the input's frame rate) or "off".
    #[serde(default = "default_deinterlace")]
    pub deinterlace: String,
    /// SRT inputs: the passphrase senders must use (10 to 79 characters). Never shown by the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<String>,
    /// UDP inputs: the only source addresses accepted; empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_sources: Vec<String>,
    /// SRT inputs: the only stream id a caller may name (a listener), or the one it names
    /// (`mode=caller`); 1 to 512 characters. Never shown by the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streamid: Option<String>,
    /// Also write the channel's segments and manifests to the node's object store, under
    /// `live/{name}/` (catch-up, and origins that do not encode). Needs `store`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub archive: bool,
    /// Also publish the channel to another origin's CMAF ingest, e.g.
    /// `https://origin.example/ingest/news` (redundant pipelines: docs/origin.md §15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_to: Option<String>,
    /// The bearer token `publish_to` expects. Never shown by the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_token: Option<String>,
}

/// The longest DVR window: a day of segments, held in memory.
pub const MAX_DVR_WINDOW_SECONDS: f64 = 86_400.0;

fn default_codec() -> String {
    "avc".into()
}
fn default_preset() -> String {
    "veryfast".into()
}
fn default_backend() -> String {
    "auto".into()
}
fn default_vaapi_device() -> PathBuf {
    crate::encode::DEFAULT_VAAPI_NODE.into()
}
fn default_segment() -> f64 {
    2.0
}
fn default_dvr() -> f64 {
    300.0
}
fn default_dvr_max_mb() -> u64 {
    2048
}
fn default_audio() -> String {
    "128k".into()
}
fn default_deinterlace() -> String {
    "auto".into()
}

impl ChannelSpec {
    /// The built-in demo channel: the test pattern through the default ladder.
    pub fn demo() -> ChannelSpec {
        ChannelSpec {
            name: "demo".into(),
            input: "test:1280x720@30".into(),
            format: None,
            ladder: None,
            codec: default_codec(),
            preset: default_preset(),
            backend: default_backend(),
            vaapi_device: default_vaapi_device(),
            segment_duration: default_segment(),
            dvr_window: default_dvr(),
            dvr_max_mb: default_dvr_max_mb(),
            audio_bitrate: default_audio(),
            deinterlace: default_deinterlace(),
            passphrase: None,
            allowed_sources: Vec::new(),
            streamid: None,
            archive: false,
            publish_to: None,
            publish_token: None,
        }
    }

    /// Checks every field and builds the pipeline's settings; errors name the channel and field.
    pub fn resolve(&self) -> Result<ChannelConfig, String> {
        let at = |field: &str, e: String| format!("channel {:?}: {field}: {e}", self.name);
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "channel name {:?}: use letters, digits, '-' and '_'",
                self.name
            ));
        }
        let input: LiveSource = self.input.parse().map_err(|e| at("input", e))?;
        let (width, height, fps) = match (&self.format, &input) {
            (Some(f), _) => parse_format(f).map_err(|e| at("format", e))?,
            (None, LiveSource::TestPattern { width, height, fps }) => (*width, *height, *fps),
            (None, _) => (1280, 720, Rational::new(30, 1)),
        };
        let ladder = match &self.ladder {
            Some(l) => Some(Ladder::from_arg(l).map_err(|e| at("ladder", e.to_string()))?),
            None => None,
        };
        // Segment edges must fall on midnight UTC (the media epoch is one): D divides a day.
        let segment_duration =
            crate::media::time::segment_duration_from_seconds(self.segment_duration)
                .map_err(|e| at("segment_duration", e))?;
        if self.dvr_window.is_nan() || self.dvr_window < 3.0 * self.segment_duration {
            return Err(at("dvr_window", "must hold at least 3 segments".into()));
        }
        if !(16..=1_000_000).contains(&self.dvr_max_mb) {
            return Err(at(
                "dvr_max_mb",
                format!("{} MB: 16 to 1000000", self.dvr_max_mb),
            ));
        }
        if self.dvr_window > MAX_DVR_WINDOW_SECONDS {
            return Err(at(
                "dvr_window",
                format!(
                    "{} s is longer than the {MAX_DVR_WINDOW_SECONDS} s the origin keeps in memory",
                    self.dvr_window
                ),
            ));
        }
        let input_guard = self.input_guard(&input).map_err(|e| at(e.0, e.1))?;
        if let Some(url) = &self.publish_to {
            let parsed = reqwest::Url::parse(url).map_err(|e| at("publish_to", e.to_string()))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(at("publish_to", format!("{url}: an http(s) URL")));
            }
            if self.publish_token.is_none() {
                return Err(at(
                    "publish_token",
                    "publish_to needs the origin's token".into(),
                ));
            }
        } else if self.publish_token.is_some() {
            return Err(at("publish_token", "only with publish_to".into()));
        }
        Ok(ChannelConfig {
            name: self.name.clone(),
            input,
            input_guard,
            width,
            height,
            frame_rate: fps,
            ladder,
            codec: self
                .codec
                .parse::<VideoCodec>()
                .map_err(|e| at("codec", e))?,
            preset: self.preset.clone(),
            backend: self
                .backend
                .parse::<Kind>()
                .map_err(|e| at("backend", e.to_string()))?,
            vaapi_node: self.vaapi_device.clone(),
            segment_duration,
            dvr_window: Duration::from_secs_f64(self.dvr_window),
            dvr_max_bytes: self.dvr_max_mb.saturating_mul(1_000_000),
            audio_bitrate: match parse_bitrate(&self.audio_bitrate) {
                Ok(b) if (8_000..=512_000).contains(&b) => b,
                Ok(b) => {
                    return Err(at(
                        "audio_bitrate",
                        format!("{b} b/s is outside 8k to 512k"),
                    ))
                }
                Err(e) => return Err(at("audio_bitrate", e)),
            },
            deinterlace: self.deinterlace.parse().map_err(|e| at("deinterlace", e))?,
            utc_timing_url: "/time".into(),
            join_segment_in_progress: false,
        })
    }
}

impl ChannelSpec {
    /// The input's guard: the passphrase and stream id for SRT, the allowed sources for UDP, and a receive
    /// buffer sized from the ladder (the input's rate is not known before it arrives).
    fn input_guard(&self, input: &LiveSource) -> Result<InputGuard, (&'static str, String)> {
        let url = match input {
            LiveSource::Url(u) => u.as_str(),
            _ => "",
        };
        if let Some(p) = &self.passphrase {
            if !url.starts_with("srt://") {
                return Err(("passphrase", "only SRT inputs take a passphrase".into()));
            }
            if !(10..=79).contains(&p.len()) {
                return Err((
                    "passphrase",
                    "SRT passphrases are 10 to 79 characters".into(),
                ));
            }
        }
        if let Some(id) = &self.streamid {
            if !url.starts_with("srt://") {
                return Err(("streamid", "only SRT inputs take a stream id".into()));
            }
            if !(1..=512).contains(&id.len()) {
                return Err(("streamid", "SRT stream ids are 1 to 512 characters".into()));
            }
        }
        if !self.allowed_sources.is_empty() && !url.starts_with("udp://") {
            return Err((
                "allowed_sources",
                "only UDP inputs take allowed sources".into(),
            ));
        }
        let allowed_sources = self
            .allowed_sources
            .iter()
            .map(|a| {
                a.parse::<std::net::IpAddr>()
                    .map_err(|_| ("allowed_sources", format!("{a:?} is not an IP address")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Two seconds of a feed at up to four times the top rung, at least the default.
        let top = self
            .ladder
            .as_deref()
            .and_then(|l| Ladder::from_arg(l).ok())
            .and_then(|l| l.rungs.iter().map(|r| r.bitrate).max())
            .unwrap_or(0);
        let udp_fifo_bytes = (top.saturating_mul(2 * 4) / 8)
            .clamp(crate::ingest::live::DEFAULT_UDP_FIFO_BYTES as u64, 1 << 30)
            as usize;
        Ok(InputGuard {
            channel: self.name.clone(),
            passphrase: self.passphrase.clone(),
            streamid: self.streamid.clone(),
            allowed_sources,
            udp_fifo_bytes,
        })
    }
}

/// `1280x720@30`, `1920x1080@29.97`, `1920x1080@30000/1001`.
fn parse_format(s: &str) -> Result<(u32, u32, Rational), String> {
    crate::media::time::parse_picture_format(s)
}

impl Config {
    /// The daemon-wide values (channels are checked by [`ChannelSpec::resolve`]).
    pub fn check(&self) -> Result<(), String> {
        if !(0.5..=300.0).contains(&self.header_timeout) {
            return Err(format!(
                "header_timeout {} s: 0.5 to 300",
                self.header_timeout
            ));
        }
        if !(1.0..=3600.0).contains(&self.send_timeout) {
            return Err(format!("send_timeout {} s: 1 to 3600", self.send_timeout));
        }
        if !(0..=19).contains(&self.media_nice) {
            return Err(format!("media_nice {}: 0 to 19", self.media_nice));
        }
        if self.max_in_flight_per_client == Some(0) {
            return Err("max_in_flight_per_client must be at least 1".into());
        }
        if self.max_connections == Some(0) {
            return Err("max_connections must be at least 1".into());
        }
        if self.max_in_flight == 0 {
            return Err("max_in_flight must be at least 1 (0 would refuse every request)".into());
        }
        if self.store.is_none() {
            if let Some(c) = self.channels.iter().find(|c| c.archive) {
                return Err(format!(
                    "channel {:?}: archive = true needs an object store (store = \"s3://…\")",
                    c.name
                ));
            }
        }
        Ok(())
    }

    pub fn load(path: &std::path::Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors() {
        let c: Config = toml::from_str("[[channels]]\nname = \"a\"\ninput = \"test\"\n").unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        let ch = c.channels[0].resolve().unwrap();
        assert_eq!((ch.width, ch.height), (1280, 720));
        assert_eq!(ch.segment_duration, Duration::from_secs(2));
        assert!(toml::from_str::<Config>("bogus = 1").is_err());
        let mut bad = ChannelSpec::demo();
        bad.input = "ftp://x".into();
        assert!(bad.resolve().unwrap_err().contains("input"));
        let mut bad = ChannelSpec::demo();
        bad.format = Some("1281x720@30".into());
        assert!(bad.resolve().unwrap_err().contains("format"));
        let mut bad = ChannelSpec::demo();
        bad.name = "../x".into();
        assert!(bad.resolve().is_err());
        for d in [7.0, 2.0001] {
            let mut bad = ChannelSpec::demo();
            bad.segment_duration = d;
            let e = bad.resolve().unwrap_err();
            assert!(
                e.contains("segment_duration") && e.contains("divide a day"),
                "{e}"
            );
        }
        let mut ok = ChannelSpec::demo();
        ok.segment_duration = 1.5;
        assert!(ok.resolve().is_ok());
        assert_eq!(c.media_nice, 10);
        for (nice, fine) in [(0, true), (19, true), (20, false), (-1, false)] {
            let c: Config = toml::from_str(&format!("media_nice = {nice}")).unwrap();
            assert_eq!(c.check().is_ok(), fine, "{nice}");
        }
    }
}
