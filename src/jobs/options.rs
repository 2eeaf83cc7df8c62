//! What a job asks for: the request body, its checks (each problem names its field as a JSON
//! pointer), templates, and the options a job resolves to and keeps.
//!
//! A job is resolved once, at submission: the template's options, then the job's own fields
//! over them, then the defaults. The resolved options are stored with the job, so a template
//! changed later does not change a job already submitted.

use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::encode::RateControl;
use crate::ingest::deinterlace;
use crate::media::{ladder::parse_bitrate, Ladder, RungSpec, VideoCodec};
use crate::pipeline;

/// One problem with a request: where (RFC 6901 pointer into the body) and what.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub pointer: String,
    pub detail: String,
}

impl FieldError {
    pub fn new(pointer: &str, detail: impl Into<String>) -> FieldError {
        FieldError {
            pointer: pointer.into(),
            detail: detail.into(),
        }
    }
}

/// Why a body was refused: not JSON at all (400) or JSON with wrong values (422).
#[derive(Debug)]
pub enum BodyError {
    Malformed(String),
    Invalid(Vec<FieldError>),
}

impl From<Vec<FieldError>> for BodyError {
    fn from(errors: Vec<FieldError>) -> Self {
        BodyError::Invalid(errors)
    }
}

/// The transcode options a job or a template may set; every one optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Options {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ladder: Option<LadderField>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_duration: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_control: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_bitrate: Option<Bitrate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deinterlace: Option<String>,
}

const OPTION_FIELDS: [&str; 8] = [
    "ladder",
    "codec",
    "segment_duration",
    "preset",
    "rate_control",
    "backend",
    "audio_bitrate",
    "deinterlace",
];

/// A ladder as `"1080:6000k,720:3000k"` or as an array of rungs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum LadderField {
    Spec(String),
    Rungs(Vec<RungSpec>),
}

/// A bitrate as a number of bits per second or a string such as `"128k"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Bitrate {
    Bits(u64),
    Text(String),
}

/// `POST /v1/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobRequest {
    /// An http(s) URL, an object `s3://BUCKET/KEY` (read in place), or a path inside one of
    /// the node's input roots.
    pub input: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(flatten)]
    pub options: Options,
    #[serde(default)]
    pub priority: i64,
    /// Free JSON, returned as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookRequest>,
}

const JOB_FIELDS: [&str; 5] = ["input", "template", "priority", "metadata", "webhook"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    pub url: String,
    /// Which state changes to send (`job.queued` … `job.cancelled`); all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
}

/// The events a webhook may ask for.
pub const WEBHOOK_EVENTS: [&str; 5] = [
    "job.queued",
    "job.running",
    "job.succeeded",
    "job.failed",
    "job.cancelled",
];

pub const PRIORITY_RANGE: std::ops::RangeInclusive<i64> = -50..=50;
const MAX_METADATA_BYTES: usize = 16 * 1024;
const AUDIO_BITRATE_RANGE: std::ops::RangeInclusive<u64> = 32_000..=512_000;
const PRESETS: [&str; 19] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "fastest",
    "slowest",
    "p1",
    "p2",
    "p3",
    "p4",
    "p5",
    "p6",
    "p7",
    "default",
];
const BACKENDS: [&str; 5] = ["auto", "hardware", "software", "nvenc", "vaapi"];

/// Parses a JSON body into `T`, allowing exactly `fields` at the top level.
fn parse_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    fields: &[&str],
) -> Result<T, BodyError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| BodyError::Malformed(format!("malformed JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(vec![FieldError::new("", "the body must be a JSON object")].into());
    };
    let unknown: Vec<FieldError> = object
        .keys()
        .filter(|k| !fields.contains(&k.as_str()))
        .map(|k| FieldError::new(&pointer_to(&[k]), format!("unknown field {k:?}")))
        .collect();
    if !unknown.is_empty() {
        return Err(unknown.into());
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let parts: Vec<&str> = path
            .split('.')
            .filter(|p| !p.is_empty() && *p != "?")
            .collect();
        let pointer = pointer_to(&parts);
        BodyError::Invalid(vec![FieldError::new(&pointer, e.into_inner().to_string())])
    })
}

/// An RFC 6901 pointer from path parts (`a`, `[2]` → `/a/2`).
fn pointer_to(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| {
            let p = p.trim_start_matches('[').trim_end_matches(']');
            format!("/{}", p.replace('~', "~0").replace('/', "~1"))
        })
        .collect()
}

impl JobRequest {
    pub fn parse(body: &[u8]) -> Result<JobRequest, BodyError> {
        let fields: Vec<&str> = JOB_FIELDS.iter().chain(&OPTION_FIELDS).copied().collect();
        let request: JobRequest = parse_body(body, &fields)?;
        let mut errors = Vec::new();
        if !PRIORITY_RANGE.contains(&request.priority) {
            errors.push(FieldError::new("/priority", "priority must be -50 to 50"));
        }
        if let Some(m) = &request.metadata {
            if serde_json::to_vec(m).map_or(0, |v| v.len()) > MAX_METADATA_BYTES {
                errors.push(FieldError::new(
                    "/metadata",
                    "metadata is larger than 16 KiB",
                ));
            }
        }
        if let Some(hook) = &request.webhook {
            check_webhook(hook, &mut errors);
        }
        if request.input.trim().is_empty() || request.input.contains('\0') {
            errors.push(FieldError::new(
                "/input",
                "input must not be empty (nor hold NUL)",
            ));
        }
        if errors.is_empty() {
            Ok(request)
        } else {
            Err(errors.into())
        }
    }
}

fn check_webhook(hook: &WebhookRequest, errors: &mut Vec<FieldError>) {
    let scheme_ok = hook.url.starts_with("http://") || hook.url.starts_with("https://");
    if !scheme_ok || url_host(&hook.url).is_none() || hook.url.contains(char::is_control) {
        errors.push(FieldError::new(
            "/webhook/url",
            "the webhook URL must be http:// or https:// with a host",
        ));
    }
    for (i, event) in hook.events.iter().flatten().enumerate() {
        if !WEBHOOK_EVENTS.contains(&event.as_str()) {
            errors.push(FieldError::new(
                &format!("/webhook/events/{i}"),
                format!(
                    "unknown event {event:?} (known: {})",
                    WEBHOOK_EVENTS.join(", ")
                ),
            ));
        }
    }
}

impl Options {
    /// A template body: only the transcode options.
    pub fn parse_template(body: &[u8]) -> Result<Options, BodyError> {
        let options: Options = parse_body(body, &OPTION_FIELDS)?;
        options.resolve_over(&Options::default())?;
        Ok(options)
    }

    /// These options over `base` (a template's), checked, with the defaults for the rest.
    pub fn resolve_over(&self, base: &Options) -> Result<Resolved, Vec<FieldError>> {
        let mut errors = Vec::new();
        let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
        let codec_text = pick(&self.codec, &base.codec).unwrap_or_else(|| "avc".into());
        let codec = codec_text.parse::<VideoCodec>().unwrap_or_else(|e| {
            errors.push(FieldError::new("/codec", e));
            VideoCodec::Avc
        });
        let ladder = match self.ladder.as_ref().or(base.ladder.as_ref()) {
            None => None,
            Some(field) => match field.to_ladder() {
                Ok(l) => Some(l.rungs),
                Err(e) => {
                    errors.push(FieldError::new("/ladder", e));
                    None
                }
            },
        };
        let segment_duration = self
            .segment_duration
            .or(base.segment_duration)
            .unwrap_or(2.0);
        if let Err(e) = crate::media::time::segment_duration_from_seconds(segment_duration) {
            errors.push(FieldError::new("/segment_duration", e));
        }
        let preset = pick(&self.preset, &base.preset).unwrap_or_else(|| "veryfast".into());
        if !PRESETS.contains(&preset.as_str()) {
            errors.push(FieldError::new(
                "/preset",
                format!("unknown preset {preset:?} (x264 names ultrafast … veryslow, fastest … slowest, or p1 … p7)"),
            ));
        }
        let rate_control =
            pick(&self.rate_control, &base.rate_control).unwrap_or_else(|| "capped".into());
        if let Err(e) = rate_control.parse::<RateControl>() {
            errors.push(FieldError::new("/rate_control", e));
        }
        let backend = pick(&self.backend, &base.backend).unwrap_or_else(|| "auto".into());
        if !BACKENDS.contains(&backend.as_str()) {
            errors.push(FieldError::new(
                "/backend",
                format!(
                    "unknown backend {backend:?} (expected {})",
                    BACKENDS.join(", ")
                ),
            ));
        }
        let audio_bitrate = match self.audio_bitrate.as_ref().or(base.audio_bitrate.as_ref()) {
            None => 128_000,
            Some(b) => b.bits().unwrap_or_else(|e| {
                errors.push(FieldError::new("/audio_bitrate", e));
                0
            }),
        };
        if audio_bitrate != 0 && !AUDIO_BITRATE_RANGE.contains(&audio_bitrate) {
            errors.push(FieldError::new(
                "/audio_bitrate",
                format!("{audio_bitrate} b/s is outside 32k to 512k"),
            ));
        }
        let deinterlace =
            pick(&self.deinterlace, &base.deinterlace).unwrap_or_else(|| "auto".into());
        if let Err(e) = deinterlace.parse::<deinterlace::Mode>() {
            errors.push(FieldError::new("/deinterlace", e));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Resolved {
            ladder,
            codec: codec.as_str().into(),
            segment_duration,
            preset,
            rate_control,
            backend,
            audio_bitrate,
            deinterlace,
        })
    }
}

impl LadderField {
    fn to_ladder(&self) -> Result<Ladder, String> {
        match self {
            LadderField::Spec(spec) => Ladder::parse_spec(spec).map_err(|e| e.to_string()),
            LadderField::Rungs(rungs) => {
                let ladder = Ladder {
                    rungs: rungs.clone(),
                    is_default: false,
                };
                ladder.validate().map_err(|e| e.to_string())?;
                Ok(ladder)
            }
        }
    }
}

impl Bitrate {
    fn bits(&self) -> Result<u64, String> {
        match self {
            Bitrate::Bits(b) => Ok(*b),
            Bitrate::Text(t) => parse_bitrate(t),
        }
    }
}

/// The options a job runs with, fixed at submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Resolved {
    /// The rungs asked for; absent = the codec's default ladder.
    pub ladder: Option<Vec<RungSpec>>,
    pub codec: String,
    pub segment_duration: f64,
    pub preset: String,
    pub rate_control: String,
    pub backend: String,
    pub audio_bitrate: u64,
    pub deinterlace: String,
}

/// One capacity unit is the hw-profiles' reference ladder: 1080p30 into 1080/720/480/360.
const REFERENCE_PIXELS_PER_SECOND: f64 =
    (1920.0 * 1080.0 + 1280.0 * 720.0 + 854.0 * 480.0 + 640.0 * 360.0) * 30.0;

impl Resolved {
    pub fn codec(&self) -> VideoCodec {
        self.codec.parse().unwrap_or(VideoCodec::Avc)
    }

    /// The pipeline's job for `input`, written to `out`.
    pub fn pipeline_job(&self, input: &str, out: PathBuf) -> pipeline::Job {
        let mut job = pipeline::Job::new(input, out);
        job.ladder = self.ladder.clone().map(|rungs| Ladder {
            rungs,
            is_default: false,
        });
        job.codec = self.codec();
        // Checked at submission; the same rule rounds it here as everywhere else.
        job.segment_duration =
            crate::media::time::segment_duration_from_seconds(self.segment_duration)
                .unwrap_or(job.segment_duration);
        job.preset = self.preset.clone();
        job.rate_control = self.rate_control.parse().unwrap_or_default();
        job.backend = self.backend.parse().unwrap_or_default();
        job.audio_bitrate = self.audio_bitrate;
        job.deinterlace = self.deinterlace.parse().unwrap_or(deinterlace::Mode::Auto);
        job
    }

    /// Capacity units: the ladder's output pixel rate at 30 fps against the reference ladder's,
    /// twice for HEVC (about twice the work per pixel on every engine Encore drives).
    pub fn cost(&self) -> f64 {
        let rungs = self
            .ladder
            .clone()
            .unwrap_or_else(|| Ladder::default_for(self.codec()).rungs);
        ladder_cost(&rungs, 30.0, self.codec())
    }
}

/// Capacity units of a ladder at `fps` (a rung without a width is taken as 16:9).
pub fn ladder_cost(rungs: &[RungSpec], fps: f64, codec: VideoCodec) -> f64 {
    let pixels: f64 = rungs
        .iter()
        .map(|r| {
            let width = r.width.unwrap_or((r.height * 16).div_ceil(9));
            f64::from(width) * f64::from(r.height)
        })
        .sum();
    let factor = match codec {
        VideoCodec::Avc => 1.0,
        VideoCodec::Hevc => 2.0,
    };
    pixels * fps / REFERENCE_PIXELS_PER_SECOND * factor
}

/// Where inputs may come from.
#[derive(Debug, Clone, Default)]
pub struct InputPolicy {
    /// Folders local paths must be inside; none = no local paths.
    pub roots: Vec<PathBuf>,
    /// Allow URLs whose host is link-local (169.254.0.0/16, fe80::/10: cloud metadata services).
    pub allow_link_local: bool,
}

impl InputPolicy {
    /// Checks `input` (pointer `/input`); returns the location the pipeline opens.
    pub async fn check(&self, input: &str) -> Result<String, FieldError> {
        let bad = |detail: String| FieldError::new("/input", detail);
        if let Some(object) = crate::objects::InputObject::parse(input) {
            object.map_err(&bad)?.check().await.map_err(bad)?;
            return Ok(input.to_string());
        }
        if input.contains("://") {
            self.check_url(input, "/input").await?;
            return Ok(input.to_string());
        }
        if input.contains(':') && !input.starts_with('/') {
            return Err(bad(
                "only http, https and s3 URLs, or paths, are allowed".into()
            ));
        }
        let path = Path::new(input);
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(bad("the path must not contain \"..\"".into()));
        }
        if self.roots.is_empty() {
            return Err(bad(
                "local paths need an input root (input_roots in the configuration)".into(),
            ));
        }
        for root in &self.roots {
            let candidate = if path.is_absolute() {
                path.to_path_buf()
            } else {
                root.join(path)
            };
            let (Ok(real), Ok(root)) = (candidate.canonicalize(), root.canonicalize()) else {
                continue;
            };
            if real.starts_with(&root) && real.is_file() {
                return Ok(real.to_string_lossy().into_owned());
            }
        }
        Err(bad(format!(
            "{input} is not a file inside an input root ({})",
            self.roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

impl InputPolicy {
    /// An http(s) URL whose host resolves to no link-local or unspecified address (also
    /// for webhooks: a job must not make the node call its cloud's metadata service).
    pub async fn check_url(&self, url: &str, pointer: &str) -> Result<(), FieldError> {
        let bad = |detail: String| FieldError::new(pointer, detail);
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        if scheme != "http" && scheme != "https" {
            return Err(bad(format!(
                "the scheme {scheme:?} is not allowed (http, https, s3, or a path inside an input root)"
            )));
        }
        let (host, port) = url_host(url).ok_or_else(|| bad("the URL has no host".into()))?;
        let port = port.unwrap_or(if scheme == "https" { 443 } else { 80 });
        let addresses = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| bad(format!("cannot resolve {host}: {e}")))?;
        for address in addresses {
            let ip = address.ip();
            if ip.is_unspecified() || (is_link_local(ip) && !self.allow_link_local) {
                return Err(bad(format!(
                    "{host} is {ip}, a link-local or unspecified address (allow_link_local_inputs in the configuration allows it)"
                )));
            }
        }
        Ok(())
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
        }
    }
}

/// The host (brackets removed) and port of an `scheme://[user@]host[:port]/…` URL.
pub fn url_host(url: &str) -> Option<(String, Option<u16>)> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = after.strip_prefix(':');
        (host.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse().ok()?),
        None => None,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(body: &str) -> Vec<FieldError> {
        match JobRequest::parse(body.as_bytes()) {
            Err(BodyError::Invalid(e)) => e,
            other => panic!("expected 422 errors, got {other:?}"),
        }
    }

    #[test]
    fn malformed_json_is_not_a_field_error() {
        assert!(matches!(
            JobRequest::parse(b"{\"input\": "),
            Err(BodyError::Malformed(_))
        ));
    }

    #[test]
    fn problems_name_their_field() {
        assert_eq!(invalid(r#"{"input":"a","colour":1}"#)[0].pointer, "/colour");
        assert_eq!(
            invalid(r#"{"input":"a","priority":99}"#)[0].pointer,
            "/priority"
        );
        assert_eq!(
            invalid(r#"{"input":"a","priority":"x"}"#)[0].pointer,
            "/priority"
        );
        assert_eq!(
            invalid(r#"{"input":"a","webhook":{"url":"ftp://x"}}"#)[0].pointer,
            "/webhook/url"
        );
        assert_eq!(
            invalid(r#"{"input":"a","webhook":{"url":"http://x","events":["job.queued","nope"]}}"#)
                [0]
            .pointer,
            "/webhook/events/1"
        );
        assert_eq!(invalid(r#"{"priority":1}"#)[0].pointer, "");
        // Not a whole number of milliseconds dividing a day: refused as in every other place.
        for d in [1.0005, 7.0, 30.0] {
            let options = Options {
                segment_duration: Some(d),
                ..Options::default()
            };
            let errors = options.resolve_over(&Options::default()).unwrap_err();
            assert_eq!(errors[0].pointer, "/segment_duration", "{d}");
        }
    }

    #[test]
    fn options_resolve_over_a_template() {
        let template = Options {
            codec: Some("hevc".into()),
            segment_duration: Some(4.0),
            ..Options::default()
        };
        let own = Options {
            segment_duration: Some(6.0),
            ..Options::default()
        };
        let r = own.resolve_over(&template).unwrap();
        assert_eq!((r.codec.as_str(), r.segment_duration), ("hevc", 6.0));
        let bad = Options {
            codec: Some("vp9".into()),
            ladder: Some(LadderField::Spec("720:0".into())),
            audio_bitrate: Some(Bitrate::Text("9M".into())),
            ..Options::default()
        };
        let pointers: Vec<String> = bad
            .resolve_over(&Options::default())
            .unwrap_err()
            .into_iter()
            .map(|e| e.pointer)
            .collect();
        assert_eq!(pointers, ["/codec", "/ladder", "/audio_bitrate"]);
    }

    #[test]
    fn the_default_ladder_costs_one_unit() {
        let r = Options::default()
            .resolve_over(&Options::default())
            .unwrap();
        assert!((r.cost() - 1.0).abs() < 0.01, "{}", r.cost());
    }

    #[test]
    fn hosts_are_found_in_urls() {
        assert_eq!(url_host("http://a.b:81/x"), Some(("a.b".into(), Some(81))));
        assert_eq!(
            url_host("https://u:p@[fe80::1]/x"),
            Some(("fe80::1".into(), None))
        );
        assert_eq!(url_host("http:///x"), None);
    }

    #[tokio::test]
    async fn inputs_outside_the_policy_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.mp4"), b"x").unwrap();
        let policy = InputPolicy {
            roots: vec![dir.path().to_path_buf()],
            allow_link_local: false,
        };
        assert!(policy.check("a.mp4").await.is_ok());
        assert!(policy
            .check(&dir.path().join("a.mp4").to_string_lossy())
            .await
            .is_ok());
        for bad in [
            "../a.mp4",
            "/etc/passwd",
            "file:///etc/passwd",
            "concat:a.mp4",
            "http://169.254.169.254/latest",
            "http://[fe80::1]/x",
            "http://0.0.0.0/x",
        ] {
            assert!(policy.check(bad).await.is_err(), "{bad} was accepted");
        }
    }
}
