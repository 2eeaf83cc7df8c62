//! The packager: CMAF segments (`cmaf`), HLS playlists (`hls`) and DASH MPDs (`dash`).
//!
//! Pure: samples in, bytes out; snapshots in, manifest text out. It must never do I/O, spawn
//! threads, or depend on FFmpeg or tokio.

pub mod cmaf;
pub mod dash;
pub mod hls;
pub mod presentation;

pub use presentation::{
    LiveTimeline, Presentation, Rendition, RenditionKind, SegmentEntry, Timeline,
};

/// Name of a rendition's init segment inside its folder.
pub const INIT_NAME: &str = "init.mp4";
/// Name of a rendition's HLS media playlist inside its folder.
pub const MEDIA_PLAYLIST_NAME: &str = "index.m3u8";
/// Name of the HLS multivariant playlist at the top of a presentation.
pub const MASTER_PLAYLIST_NAME: &str = "master.m3u8";
/// Name of the DASH MPD at the top of a presentation.
pub const MPD_NAME: &str = "manifest.mpd";

/// File name of media segment `number` inside its rendition's folder (DASH: `$Number$.m4s`).
pub fn segment_name(number: u64) -> String {
    format!("{number}.m4s")
}
