//! Core media types shared by every stage: codecs, rungs and ladders, rational time, pixel
//! formats.
//!
//! Nothing here touches files or threads, and only `pixel` names FFmpeg's types; the packager
//! depends on this module alone (and not on `pixel`).

pub mod ladder;
pub mod pixel;
pub mod time;

pub use ladder::{Ladder, LadderError, Rung, RungSpec};
pub use time::Rational;

/// Video codec of an encoded rendition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    /// H.264 / AVC.
    Avc,
    /// H.265 / HEVC.
    Hevc,
}

impl VideoCodec {
    pub fn as_str(self) -> &'static str {
        match self {
            VideoCodec::Avc => "avc",
            VideoCodec::Hevc => "hevc",
        }
    }
}

impl std::str::FromStr for VideoCodec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "avc" | "h264" | "h.264" | "x264" => Ok(VideoCodec::Avc),
            "hevc" | "h265" | "h.265" | "x265" => Ok(VideoCodec::Hevc),
            other => Err(format!("unknown codec {other:?} (expected avc or hevc)")),
        }
    }
}

impl std::fmt::Display for VideoCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
