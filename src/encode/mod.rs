//! Video encoders behind one small trait, and the choice between them.
//!
//! Codec calls are blocking: every encoder runs on its own OS thread (see `pipeline`).
//! Hardware is never a build or start requirement: a backend that cannot open returns an
//! error and selection moves on (or, when the user named it, reports it).

pub mod audio;
pub mod backend;
mod select;
pub mod sessions;

pub use select::{select, select_ladder, Candidate, Kind, SelectError};

use crate::media::{Rational, VideoCodec};

/// One encoded access unit, timestamps in the encoder's time base (1/[`Config::timescale`]).
#[derive(Debug, Clone)]
pub struct Packet {
    /// Annex B bitstream of one access unit.
    pub data: Vec<u8>,
    pub pts: i64,
    pub dts: i64,
    pub keyframe: bool,
}

/// How the encoder spends bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateControl {
    /// Constant quality capped by a VBV max rate at the rung's bitrate (the default).
    #[default]
    Capped,
    /// Constant bitrate at the rung's bitrate (HRD-conformant).
    Cbr,
}

impl std::str::FromStr for RateControl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "capped" | "vbr" | "capped-vbr" | "crf" => Ok(RateControl::Capped),
            "cbr" => Ok(RateControl::Cbr),
            other => Err(format!(
                "unknown rate control {other:?} (expected capped or cbr)"
            )),
        }
    }
}

/// Everything a backend needs to open one rung's encoder.
#[derive(Debug, Clone)]
pub struct Config {
    pub codec: VideoCodec,
    pub width: u32,
    pub height: u32,
    pub frame_rate: Rational,
    /// Ticks per second of frame timestamps (and of the track).
    pub timescale: u32,
    /// Target (capped: maximum) bitrate, bits per second.
    pub bitrate: u64,
    pub rate_control: RateControl,
    /// Encoder preset in the backend's own vocabulary (x264: ultrafast..placebo).
    pub preset: String,
    /// Frames between forced IDRs (one segment); the encoder must not place its own further apart.
    pub gop: u32,
    /// Live: favour latency (no lookahead beyond a segment).
    pub low_latency: bool,
    /// How a hardware backend takes its frames.
    pub device: DeviceInput,
}

impl Config {
    /// A rung's settings with what every pipeline shares: capped rate control, an IDR every
    /// segment, frames in system memory, no low-latency tuning (callers change what differs).
    pub fn for_rung(
        codec: VideoCodec,
        rung: &crate::media::Rung,
        frame_rate: Rational,
        segment_seconds: f64,
        preset: &str,
    ) -> Config {
        Config {
            codec,
            width: rung.width,
            height: rung.height,
            frame_rate,
            timescale: frame_rate.video_timescale(),
            bitrate: rung.bitrate,
            rate_control: RateControl::Capped,
            preset: preset.into(),
            gop: frame_rate.frames_in(segment_seconds),
            low_latency: false,
            device: DeviceInput::default(),
        }
    }
}

/// How a hardware encoder takes frames; software backends ignore it.
#[derive(Debug, Clone)]
pub struct DeviceInput {
    /// Take frames already on this kind of device (NVDEC and ladder-kernel output on CUDA,
    /// VA-API surfaces) instead of system memory: no copy across PCIe. A backend on another
    /// kind of device takes system memory.
    pub zero_copy: Option<crate::hw::accel::DeviceKind>,
    /// Layout of device frames: NV12 (8-bit) or P010 (10-bit).
    pub layout: ffmpeg_next::format::Pixel,
    /// The VA-API render node.
    pub vaapi_node: std::path::PathBuf,
}

impl Default for DeviceInput {
    fn default() -> Self {
        DeviceInput {
            zero_copy: None,
            layout: ffmpeg_next::format::Pixel::NV12,
            vaapi_node: DEFAULT_VAAPI_NODE.into(),
        }
    }
}

/// The first DRM render node, where a single-GPU machine's VA-API driver is reached.
pub const DEFAULT_VAAPI_NODE: &str = "/dev/dri/renderD128";

/// An encoder failure, naming the backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend cannot run on this machine (no driver, no device, codec not built in).
    #[error("{backend} unavailable: {reason}")]
    Unavailable {
        backend: &'static str,
        reason: String,
    },
    #[error("{backend}: {message}")]
    Encode {
        backend: &'static str,
        message: String,
    },
}

/// A video encoder. Frames in, packets out; `flush` drains what is buffered (B-frames, lookahead).
pub trait Backend: Send {
    /// The backend's name as used in logs, config and hw-profiles.
    fn name(&self) -> &'static str;
    /// Encodes one frame in the encoder's pixel format and size; `force_keyframe` makes it an IDR.
    fn encode(
        &mut self,
        frame: &mut ffmpeg_next::frame::Video,
        force_keyframe: bool,
    ) -> Result<Vec<Packet>, Error>;
    /// Drains every buffered packet at end of stream. No default: forgetting it loses frames.
    fn flush(&mut self) -> Result<Vec<Packet>, Error>;
    /// Codec configuration (SPS/PPS, VPS) as the encoder gives it (Annex B or a config record).
    fn extradata(&self) -> Vec<u8>;
    /// The pixel format frames must be given in (`CUDA`/`VAAPI`: device frames, see
    /// [`Backend::device_frames`]).
    fn pixel_format(&self) -> ffmpeg_next::format::Pixel;
    /// The pool device frames are written into for this encoder, when it takes device frames.
    /// Frames from other pools of the same device, size and layout are accepted too.
    fn device_frames(&self) -> Option<&crate::hw::accel::HwFrames> {
        None
    }
}
