//! HLS playlists rendered from a [`Presentation`](super::Presentation) snapshot
//! (draft-pantos-hls-rfc8216bis, Apple's HLS Authoring Specification).
//!
//! Pure functions of the snapshot: they must never do I/O or read the clock; every instant
//! they write comes from the snapshot, so a live playlist is reproducible from its inputs.
//!
//! Decisions (the playlists as docs/timing.md describes them):
//! - `EXT-X-TARGETDURATION` is ceil(D), raised only by a segment whose rounded `EXTINF`
//!   exceeds it ([`target_duration`]). The segmenter cuts at the first frame at or after
//!   n·D, so a real segment is D plus less than a frame and rounds to at most ceil(D): the
//!   value depends on D alone and stays the same through every live update and at the end of
//!   the stream (rule 2). The raise is a safety net, because a rounded `EXTINF` above the
//!   target duration is the worse fault: clients may reject the whole playlist.
//! - Live: `EXT-X-PROGRAM-DATE-TIME` on every segment, computed from that segment's own
//!   `tfdt` (availability start + media time). Every variant then gives the same mapping to
//!   the millisecond whatever its segment durations, across gaps and discontinuities, at
//!   the cost of about 45 bytes a segment (rule 3).
//! - A live stream that has ended gets `EXT-X-ENDLIST` and still no `EXT-X-PLAYLIST-TYPE`:
//!   `VOD` would claim the playlist never changed and `EVENT` forbids removing segments from
//!   the top, both false for a sliding window. RFC 8216bis allows `ENDLIST` on an untyped
//!   playlist; AVPlayer, hls.js, Shaka and ExoPlayer stop reloading and play it to the end.
//!   `PROGRAM-DATE-TIME` and `DISCONTINUITY-SEQUENCE` stay, so positions do not move.
//! - A segment number missing from the snapshot becomes an `EXT-X-GAP` entry of nominal
//!   duration (rule 6), so the media sequence number of every segment equals its file
//!   number in every update and every variant.

use std::fmt::Write;

use super::{
    datetime, segment_name, Presentation, Rendition, RenditionKind, SegmentEntry, Timeline,
    INIT_NAME, MEDIA_PLAYLIST_NAME,
};

/// `EXT-X-VERSION`: 6 is the minimum for `EXT-X-MAP` in a media playlist; 7 is what Apple's
/// authoring specification asks of fMP4 streams.
pub const VERSION: u32 = 7;

/// `GROUP-ID` of the audio renditions.
pub const AUDIO_GROUP: &str = "audio";

/// The multivariant playlist (`master.m3u8`): one `EXT-X-STREAM-INF` per video rendition, top
/// rung first, with the audio renditions as one `EXT-X-MEDIA` group. Without video, one
/// `EXT-X-STREAM-INF` per audio rendition.
pub fn master_playlist(p: &Presentation) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:{VERSION}\n#EXT-X-INDEPENDENT-SEGMENTS"
    );
    let audio: Vec<&Rendition> = p.audio().collect();

    if p.video().next().is_none() {
        for a in &audio {
            let _ = writeln!(
                out,
                "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\"\n{}",
                a.peak_bitrate,
                a.average_bitrate,
                quoted(&a.codecs),
                playlist_uri(a)
            );
        }
        return out;
    }

    for (i, a) in audio.iter().enumerate() {
        let RenditionKind::Audio {
            channels, language, ..
        } = &a.kind
        else {
            continue;
        };
        let _ = write!(
            out,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"{AUDIO_GROUP}\",NAME=\"{}\"",
            quoted(&a.id)
        );
        if let Some(language) = language {
            let _ = write!(out, ",LANGUAGE=\"{}\"", quoted(language));
        }
        let default = if i == 0 { "YES" } else { "NO" };
        let _ = writeln!(
            out,
            ",DEFAULT={default},AUTOSELECT=YES,CHANNELS=\"{channels}\",URI=\"{}\"",
            playlist_uri(a)
        );
    }

    // A variant must announce the most any audio choice can add, and every codec it may
    // have to decode.
    let audio_peak = audio.iter().map(|a| a.peak_bitrate).max().unwrap_or(0);
    let audio_average = audio.iter().map(|a| a.average_bitrate).max().unwrap_or(0);
    let mut audio_codecs: Vec<&str> = Vec::new();
    for a in &audio {
        if !audio_codecs.contains(&a.codecs.as_str()) {
            audio_codecs.push(&a.codecs);
        }
    }

    for v in p.video() {
        let RenditionKind::Video {
            width,
            height,
            frame_rate,
        } = v.kind
        else {
            continue;
        };
        let mut codecs = v.codecs.clone();
        for c in &audio_codecs {
            codecs.push(',');
            codecs.push_str(c);
        }
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\",RESOLUTION={width}x{height},FRAME-RATE={:.3}",
            v.peak_bitrate + audio_peak,
            v.average_bitrate + audio_average,
            quoted(&codecs),
            frame_rate.as_f64(),
        );
        if !audio.is_empty() {
            let _ = write!(out, ",AUDIO=\"{AUDIO_GROUP}\"");
        }
        let _ = writeln!(out, "\n{}", playlist_uri(v));
    }
    out
}

/// The media playlist of one rendition (`{id}/index.m3u8`); URIs are relative to its folder.
pub fn media_playlist(p: &Presentation, rendition: &Rendition) -> String {
    let entries = entries(p, rendition);
    let target = target_duration_of(p, &entries);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:{VERSION}\n#EXT-X-TARGETDURATION:{target}"
    );
    let _ = writeln!(
        out,
        "#EXT-X-MEDIA-SEQUENCE:{}",
        entries.first().map_or(0, |e| e.number)
    );
    let ended = match &p.timeline {
        Timeline::Vod => {
            out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n");
            true
        }
        Timeline::Live(live) => {
            let _ = writeln!(
                out,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                live.discontinuity_sequence
            );
            live.ended.is_some()
        }
    };
    let _ = writeln!(
        out,
        "#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"{INIT_NAME}\""
    );

    for e in &entries {
        if e.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if let Some(ms) = e.program_date_time {
            let _ = writeln!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                datetime::datetime_millis(ms)
            );
        }
        if e.gap {
            out.push_str("#EXT-X-GAP\n");
        }
        let _ = writeln!(
            out,
            "#EXTINF:{}.{:06},\n{}",
            e.micros / 1_000_000,
            e.micros % 1_000_000,
            segment_name(e.number)
        );
    }
    if ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// `EXT-X-TARGETDURATION` of `rendition`'s media playlist, in seconds: ceil(D), or the
/// largest rounded `EXTINF` when a segment is longer (see the module notes). The origin
/// uses it for blocking-reload and hold-back timing.
pub fn target_duration(p: &Presentation, rendition: &Rendition) -> u64 {
    target_duration_of(p, &entries(p, rendition))
}

fn target_duration_of(p: &Presentation, entries: &[Entry]) -> u64 {
    let nominal = p.segment_duration.as_nanos().div_ceil(1_000_000_000).max(1) as u64;
    entries
        .iter()
        .map(|e| (e.micros + 500_000) / 1_000_000)
        .fold(nominal, u64::max)
}

/// One line group of a media playlist: a real segment or a gap.
struct Entry {
    number: u64,
    /// `EXTINF` in microseconds: the value written, and the value rounded for the target
    /// duration, so the two always agree.
    micros: u64,
    /// Live only: milliseconds since the Unix epoch.
    program_date_time: Option<i64>,
    discontinuity: bool,
    gap: bool,
}

fn entries(p: &Presentation, r: &Rendition) -> Vec<Entry> {
    let origin = match &p.timeline {
        Timeline::Vod => None,
        Timeline::Live(live) => Some(live.availability_start),
    };
    let d_nanos = p.segment_duration.as_nanos();
    let ts = r.timescale.max(1) as u128;
    let mut out = Vec::with_capacity(r.segments.len());
    let mut next: Option<u64> = None;
    for s in &r.segments {
        // Numbers the snapshot skips: announced as gaps of nominal duration at their
        // nominal place on the timeline.
        for number in next.unwrap_or(s.number)..s.number {
            out.push(Entry {
                number,
                micros: ((d_nanos + 500) / 1000) as u64,
                // Segment numbers count D-long segments since the Unix epoch (docs/timing.md),
                // whatever instant media time counts from.
                program_date_time: origin
                    .map(|_| ((number as u128 * d_nanos + 500_000) / 1_000_000) as i64),
                discontinuity: false,
                gap: true,
            });
        }
        out.push(segment_entry(s, ts, origin, r.timescale));
        next = Some(s.number + 1);
    }
    out
}

fn segment_entry(
    s: &SegmentEntry,
    ts: u128,
    origin: Option<std::time::SystemTime>,
    timescale: u32,
) -> Entry {
    Entry {
        number: s.number,
        micros: ((s.duration as u128 * 1_000_000 + ts / 2) / ts) as u64,
        program_date_time: origin.map(|o| datetime::media_time_millis(o, s.start, timescale)),
        discontinuity: s.discontinuity,
        gap: false,
    }
}

fn playlist_uri(r: &Rendition) -> String {
    format!("{}/{MEDIA_PLAYLIST_NAME}", r.id)
}

/// A quoted-string may not hold `"`, CR or LF (RFC 8216bis 4.2); drop them rather than
/// write a playlist no client can parse.
fn quoted(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '"' | '\r' | '\n'))
        .collect()
}

#[cfg(test)]
mod tests;
