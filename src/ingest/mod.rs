//! Opening inputs through libavformat and decoding them once.
//!
//! `open` picks the best video and audio streams and says plainly what is wrong with an input
//! it cannot use. Decoders count corrupt packets and go on; they never stop a job for one.

pub mod decode;
pub mod deinterlace;
mod gate;
pub mod live;
mod rtmp_key;
mod srt_gate;
mod srt_handshake;
mod udp_gate;

use std::path::{Path, PathBuf};

use ff::media::Type;
use ffmpeg_next as ff;

use crate::media::Rational;

/// Why an input cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("input not found: {0}")]
    NotFound(PathBuf),
    #[error("cannot read input {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("input {0} has no video stream")]
    NoVideo(String),
    #[error("input {path}: video decoder unavailable: {reason}")]
    Decoder { path: String, reason: String },
    #[error("input {path} is truncated: media ends at {got:.2} s of {expected:.2} s")]
    Truncated {
        path: String,
        got: f64,
        expected: f64,
    },
    #[error("input {path}: read failed at {at:.2} s: {reason}")]
    Read {
        path: String,
        at: f64,
        reason: String,
    },
    #[error("input {0}: no video frame could be decoded")]
    NothingDecoded(String),
    #[error("input {path}: {reason}")]
    Unusable { path: String, reason: String },
}

/// The chosen video stream, as the container describes it.
#[derive(Debug, Clone)]
pub struct VideoInfo {
    pub index: usize,
    pub width: u32,
    pub height: u32,
    /// Display aspect ratio (width / height after the sample aspect ratio).
    pub display_aspect: f64,
    pub frame_rate: Rational,
    pub time_base: ff::Rational,
    pub codec: String,
}

/// The chosen audio stream.
#[derive(Debug, Clone)]
pub struct AudioInfo {
    pub index: usize,
    pub time_base: ff::Rational,
    pub codec: String,
    pub language: Option<String>,
}

/// An opened input with its chosen streams.
pub struct Source {
    pub input: ff::format::context::Input,
    pub location: String,
    pub video: VideoInfo,
    pub audio: Option<AudioInfo>,
    /// Container duration in seconds, when known.
    pub duration: Option<f64>,
    /// The gate a guarded network input is read through; it closes after `input` (fields drop
    /// in order).
    pub gate: Option<gate::Gate>,
}

/// Reads the next packet into `packet`, releasing what it held first.
///
/// `av_read_frame` overwrites the packet it is given without unreferencing it, so reusing one
/// packet across reads leaks every buffer it held (a raw picture per frame for the test
/// pattern's wrapped frames, the input bitrate for network feeds).
pub fn read_packet(
    input: &mut ff::format::context::Input,
    packet: &mut ff::Packet,
) -> Result<(), ff::Error> {
    // SAFETY: the packet is valid; unref leaves it blank and ready for av_read_frame.
    unsafe { ff::ffi::av_packet_unref(ff::packet::Mut::as_mut_ptr(packet)) };
    packet.read(input)
}

/// Whether the input's format lets timestamps jump (MPEG-TS and others libavformat flags
/// `AVFMT_TS_DISCONT`): there a jump is a discontinuity, not a hole.
pub fn timestamps_may_jump(input: &ff::format::context::Input) -> bool {
    // SAFETY: an open input's format is a static libavformat descriptor.
    let flags = unsafe { (*input.format().as_ptr()).flags };
    flags & ff::ffi::AVFMT_TS_DISCONT != 0
}

/// Initialises FFmpeg once (see [`crate::hw::init_ffmpeg`]).
pub use crate::hw::init_ffmpeg as init;

/// Opens `location` (a file path or a URL libavformat understands) and picks its streams.
pub fn open(location: &str) -> Result<Source, Error> {
    init();
    let is_url = location.contains("://");
    if !is_url && !Path::new(location).exists() {
        return Err(Error::NotFound(PathBuf::from(location)));
    }
    if !is_url && Path::new(location).is_dir() {
        return Err(Error::Open {
            path: location.into(),
            reason: "is a directory".into(),
        });
    }
    let opened = if location.starts_with("http://") || location.starts_with("https://") {
        ff::format::input_with_dictionary(&location, http_options())
    } else {
        ff::format::input(&location)
    };
    let input = opened.map_err(|e| Error::Open {
        path: location.into(),
        reason: match e {
            ff::Error::InvalidData => "not a media file libavformat can open (invalid data)".into(),
            other => other.to_string(),
        },
    })?;
    describe(input, location)
}

/// HTTP inputs: a stalled server is an error after 20 s rather than a job that never ends, and
/// what the input names (an HLS playlist's segments, a redirect) stays on HTTP: no `file:` or
/// other protocols reachable through a URL someone else wrote.
fn http_options() -> ff::Dictionary<'static> {
    let mut options = ff::Dictionary::new();
    options.set("rw_timeout", "20000000");
    options.set("protocol_whitelist", "http,https,tcp,tls,crypto,httpproxy");
    options
}

/// Picks the best video and audio streams of an opened input.
pub(crate) fn describe(input: ff::format::context::Input, location: &str) -> Result<Source, Error> {
    let video_stream = input
        .streams()
        .best(Type::Video)
        .ok_or_else(|| Error::NoVideo(location.into()))?;
    let params = video_stream.parameters();
    // SAFETY: parameters() wraps the stream's codecpar, valid while `input` lives.
    let (width, height, sar) = unsafe {
        let p = params.as_ptr();
        (
            (*p).width.max(0) as u32,
            (*p).height.max(0) as u32,
            (*p).sample_aspect_ratio,
        )
    };
    if width == 0 || height == 0 {
        return Err(Error::NoVideo(location.into()));
    }
    let sar = if sar.num > 0 && sar.den > 0 {
        sar.num as f64 / sar.den as f64
    } else {
        1.0
    };
    let codec = ff::codec::decoder::find(params.id())
        .map(|c| c.name().to_string())
        .unwrap_or_else(|| format!("{:?}", params.id()));
    let video = VideoInfo {
        index: video_stream.index(),
        width,
        height,
        display_aspect: width as f64 * sar / height as f64,
        frame_rate: frame_rate_of(&video_stream),
        time_base: video_stream.time_base(),
        codec,
    };
    let audio = input.streams().best(Type::Audio).map(|s| AudioInfo {
        index: s.index(),
        time_base: s.time_base(),
        codec: ff::codec::decoder::find(s.parameters().id())
            .map(|c| c.name().to_string())
            .unwrap_or_default(),
        language: s
            .metadata()
            .get("language")
            .filter(|l| *l != "und")
            .map(str::to_string),
    });
    let duration =
        (input.duration() > 0).then(|| input.duration() as f64 / f64::from(ff::ffi::AV_TIME_BASE));
    Ok(Source {
        input,
        location: location.into(),
        video,
        audio,
        duration,
        gate: None,
    })
}
/// The stream's frame rate: average if sane, else the container's base rate, else 30.
fn frame_rate_of(stream: &ff::format::stream::Stream) -> Rational {
    let sane = |r: ff::Rational| {
        r.numerator() > 0 && r.denominator() > 0 && {
            let f = r.numerator() as f64 / r.denominator() as f64;
            (1.0..=240.0).contains(&f)
        }
    };
    let r = [stream.avg_frame_rate(), stream.rate()]
        .into_iter()
        .find(|r| sane(*r));
    match r {
        Some(r) => reduce(r.numerator() as u32, r.denominator() as u32),
        None => Rational::new(30, 1),
    }
}

fn reduce(num: u32, den: u32) -> Rational {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let g = gcd(num, den).max(1);
    Rational::new(num / g, den / g)
}
