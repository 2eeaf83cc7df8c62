//! The packager: CMAF segments (`cmaf`), HLS playlists (`hls`) and DASH MPDs (`dash`).
//!
//! Pure: samples in, bytes out; snapshots in, manifest text out. It must never do I/O, spawn
//! threads, or depend on FFmpeg or tokio.

pub mod cmaf;
pub mod dash;
pub mod datetime;
pub mod hls;
pub mod presentation;

pub use presentation::{
    LiveTimeline, Presentation, Rendition, RenditionKind, SegmentEntry, Timeline,
};

/// Media time zero of every live channel: 2000-01-01T00:00:00Z in Unix seconds, the DASH
/// availabilityStartTime. Segment numbers still count D-long segments since the Unix epoch
/// (this instant is a whole number of segments after it, since live D divides a day); media
/// time starts here because some clients read an availabilityStartTime of 1970 as absent.
pub const MEDIA_EPOCH_SECONDS: u64 = 946_684_800;

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
