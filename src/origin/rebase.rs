//! Session timelines for HLS players that count live media time from where they joined.
//!
//! Encore's live segments carry media time since 2000-01-01 in `tfdt` (docs/timing.md), the
//! same bytes for every player, every pipeline and DASH. Most HLS players place segments by that
//! time or by `EXT-X-PROGRAM-DATE-TIME`. GStreamer's older `hlsdemux` (what `playbin` picks in
//! GStreamer 1.22) instead starts its clock at 0 at the first segment of the first playlist it
//! loads while its MP4 demuxer stamps buffers from `tfdt`: a player that keeps time then waits
//! about 27 years for the first picture.
//!
//! Such a player (known by its `User-Agent`) is redirected from a live playlist to the same
//! playlist with `?rebase=N`, N being the first segment of the window at that moment. Playlists
//! fetched with `rebase=N` carry it on every URI they name, and media segments fetched with it
//! have their `tfdt` counted from the start of segment N. Every other byte stays as published,
//! so audio and video keep their alignment, and the URLs of other players are untouched (a CDN
//! caches the rebased ones apart, by their query).

use axum::http::header::{CACHE_CONTROL, LOCATION, USER_AGENT};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;

use super::http::add_cors;
use super::object::Object;
use super::store::ChannelTiming;
use crate::package::MEDIA_EPOCH_SECONDS;

/// The query parameter naming a session's first segment.
pub(crate) const PARAM: &str = "rebase";

/// What a request asks of session timelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Session {
    /// The published bytes.
    None,
    /// A session starting at segment N (`rebase=N`).
    Pinned(u64),
    /// A new session: `rebase` without a number, or a player named in `agents`.
    Wanted,
}

/// The session of a request: from its query (`rebase=N`, `rebase`), else from its
/// `User-Agent` (a substring from `agents`).
pub(crate) fn session(query: Option<&str>, req: &HeaderMap, agents: &[String]) -> Session {
    let param = query.and_then(|q| {
        q.split('&')
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(key, _)| *key == PARAM)
    });
    if let Some((_, value)) = param {
        return value.parse().map_or(Session::Wanted, Session::Pinned);
    }
    let agent = req.get(USER_AGENT).and_then(|v| v.to_str().ok());
    match agent {
        Some(agent)
            if agents
                .iter()
                .any(|a| !a.is_empty() && agent.contains(a.as_str())) =>
        {
            Session::Wanted
        }
        _ => Session::None,
    }
}

/// The 302 to `path?rebase=N`. Never cached: the number depends on the moment. `None` if the
/// path cannot be a header value (a request path always can).
pub(crate) fn redirect(path: &str, first: u64) -> Option<Response> {
    let location = HeaderValue::from_str(&format!("{path}?{PARAM}={first}")).ok()?;
    let mut res = Response::new(axum::body::Body::empty());
    *res.status_mut() = StatusCode::FOUND;
    let h = res.headers_mut();
    add_cors(h);
    h.insert(LOCATION, location);
    h.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    Some(res)
}

/// The number of the first segment a media playlist lists (`EXT-X-MEDIA-SEQUENCE`, 0 when absent
/// as RFC 8216 says); `None` if `body` is not a media playlist.
pub(crate) fn first_segment(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body).ok()?;
    if !text.contains("#EXTINF") && !text.contains("#EXT-X-TARGETDURATION") {
        return None;
    }
    Some(
        text.lines()
            .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0),
    )
}

/// `playlist` with `rebase=N` added to every URI it names: URI lines and `URI="…"` attributes.
pub(crate) fn playlist(playlist: &Object, first: u64) -> Object {
    let text = String::from_utf8_lossy(&playlist.body);
    let mut out = String::with_capacity(text.len() + 64 * 16);
    for line in text.split_inclusive('\n') {
        let content = line.strip_suffix('\n').unwrap_or(line);
        let content = content.strip_suffix('\r').unwrap_or(content);
        let end = &line[content.len()..];
        if content.is_empty() {
            out.push_str(line);
        } else if !content.starts_with('#') {
            out.push_str(&with_param(content, first));
            out.push_str(end);
        } else {
            out.push_str(&tag_with_param(content, first));
            out.push_str(end);
        }
    }
    derived(playlist, Bytes::from(out), first)
}

/// A media segment with every `tfdt` counted from the start of segment `first`; `init` is the
/// rendition's init segment (for the track's timescale). `None` when either does not parse.
pub(crate) fn segment(
    segment: &Object,
    init: &[u8],
    timing: &ChannelTiming,
    first: u64,
) -> Option<Object> {
    let timescale = timescale(init)?;
    let start = media_start_ticks(timing, first, timescale);
    let mut body = segment.body.to_vec();
    shift_decode_times(&mut body, start)?;
    Some(derived(segment, Bytes::from(body), first))
}

fn derived(original: &Object, body: Bytes, first: u64) -> Object {
    // `"abc"` → `"abc-r123"`: a different entity, so a different strong tag.
    let tag = original.etag.to_str().unwrap_or("\"\"");
    let tag = match tag.strip_suffix('"') {
        Some(open) => format!("{open}-r{first}\""),
        None => format!("\"r{first}\""),
    };
    let mut obj = Object::new(
        body,
        original.content_type.clone(),
        HeaderValue::from_str(&tag).unwrap_or_else(|_| original.etag.clone()),
        std::time::UNIX_EPOCH,
        original.cache_control.clone(),
    );
    obj.last_modified = original.last_modified.clone();
    obj.modified_secs = original.modified_secs;
    obj
}

fn with_param(uri: &str, first: u64) -> String {
    let (path, fragment) = match uri.split_once('#') {
        Some((p, f)) => (p, Some(f)),
        None => (uri, None),
    };
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut out = format!("{path}{sep}{PARAM}={first}");
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

fn tag_with_param(tag: &str, first: u64) -> String {
    const ATTR: &str = "URI=\"";
    let Some(at) = tag.find(ATTR) else {
        return tag.to_owned();
    };
    let value_start = at + ATTR.len();
    let Some(len) = tag[value_start..].find('"') else {
        return tag.to_owned();
    };
    let value_end = value_start + len;
    format!(
        "{}{}{}",
        &tag[..value_start],
        with_param(&tag[value_start..value_end], first),
        &tag[value_end..]
    )
}

/// Media time at which segment `number` starts, in `timescale` ticks (media time counts from
/// 2000-01-01; segment N starts N·D after the channel's epoch, the Unix epoch when locked). Rounded down, so a segment's own
/// `tfdt` is never below it (audio frames may start a little early: those clamp to 0).
fn media_start_ticks(timing: &ChannelTiming, number: u64, timescale: u32) -> u64 {
    let epoch_nanos = timing
        .epoch
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |e| e.as_nanos());
    let d_nanos = timing.segment_duration.as_nanos();
    let start_nanos = u128::from(number)
        .saturating_mul(d_nanos)
        .saturating_add(epoch_nanos);
    let media_nanos = start_nanos.saturating_sub(u128::from(MEDIA_EPOCH_SECONDS) * 1_000_000_000);
    u64::try_from(media_nanos * u128::from(timescale) / 1_000_000_000).unwrap_or(u64::MAX)
}

/// ISO BMFF boxes at the top of `data`: `(type, header length, whole box)` ranges.
fn boxes(data: &[u8]) -> impl Iterator<Item = ([u8; 4], usize, std::ops::Range<usize>)> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let rest = data.get(at..)?;
        if rest.len() < 8 {
            return None;
        }
        let size32 = u32::from_be_bytes(rest[0..4].try_into().ok()?);
        let kind: [u8; 4] = rest[4..8].try_into().ok()?;
        let (header, size) = match size32 {
            0 => (8, rest.len() as u64),
            1 => (16, u64::from_be_bytes(rest.get(8..16)?.try_into().ok()?)),
            n => (8, u64::from(n)),
        };
        let size = usize::try_from(size).ok()?;
        if size < header || size > rest.len() {
            return None;
        }
        let range = at..at + size;
        at += size;
        Some((kind, header, range))
    })
}

/// The timescale of the first track's media header (`moov/trak/mdia/mdhd`).
fn timescale(init: &[u8]) -> Option<u32> {
    let child = |data: &[u8], name: &[u8; 4]| -> Option<std::ops::Range<usize>> {
        boxes(data)
            .find(|(kind, _, _)| kind == name)
            .map(|(_, header, r)| r.start + header..r.end)
    };
    let moov = child(init, b"moov")?;
    let moov = &init[moov];
    let trak = &moov[child(moov, b"trak")?];
    let mdia = &trak[child(trak, b"mdia")?];
    let mdhd = &mdia[child(mdia, b"mdhd")?];
    // version, flags; creation and modification times (4 or 8 bytes each); timescale.
    let at = match *mdhd.first()? {
        0 => 12,
        1 => 20,
        _ => return None,
    };
    let value = u32::from_be_bytes(mdhd.get(at..at + 4)?.try_into().ok()?);
    (value > 0).then_some(value)
}

/// Subtracts `start` from the base media decode time of every `moof/traf/tfdt` in `data`, in
/// place (its size does not change). `None` if a `moof` has no track fragment with a `tfdt`.
fn shift_decode_times(data: &mut [u8], start: u64) -> Option<()> {
    let moofs: Vec<_> = boxes(data)
        .filter(|(kind, _, _)| kind == b"moof")
        .map(|(_, header, r)| r.start + header..r.end)
        .collect();
    let mut shifted = 0;
    for moof in moofs {
        let trafs: Vec<_> = boxes(&data[moof.clone()])
            .filter(|(kind, _, _)| kind == b"traf")
            .map(|(_, header, r)| moof.start + r.start + header..moof.start + r.end)
            .collect();
        for traf in trafs {
            let tfdt = boxes(&data[traf.clone()])
                .find(|(kind, _, _)| kind == b"tfdt")
                .map(|(_, header, r)| traf.start + r.start + header..traf.start + r.end);
            let Some(tfdt) = tfdt else { continue };
            let payload = &mut data[tfdt];
            match payload.first() {
                Some(0) if payload.len() >= 8 => {
                    let field = &mut payload[4..8];
                    let old = u32::from_be_bytes(field.try_into().ok()?);
                    let new = u64::from(old).saturating_sub(start) as u32;
                    field.copy_from_slice(&new.to_be_bytes());
                }
                Some(1) if payload.len() >= 12 => {
                    let field = &mut payload[4..12];
                    let old = u64::from_be_bytes(field.try_into().ok()?);
                    field.copy_from_slice(&old.saturating_sub(start).to_be_bytes());
                }
                _ => return None,
            }
            shifted += 1;
        }
    }
    (shifted > 0).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn object(body: &str) -> Object {
        Object::new(
            Bytes::from(body.to_owned()),
            HeaderValue::from_static("application/vnd.apple.mpegurl"),
            HeaderValue::from_static("\"7-12\""),
            SystemTime::now(),
            HeaderValue::from_static("public, max-age=1"),
        )
    }

    #[test]
    fn the_session_comes_from_the_query_then_the_player() {
        let none = HeaderMap::new();
        let mut gst = HeaderMap::new();
        gst.insert(
            USER_AGENT,
            HeaderValue::from_static("GStreamer souphttpsrc 1.22.0"),
        );
        let agents = ["GStreamer".to_owned()];
        assert_eq!(
            session(Some("rebase=42"), &none, &agents),
            Session::Pinned(42)
        );
        assert_eq!(
            session(Some("a=1&rebase=7&b"), &gst, &agents),
            Session::Pinned(7)
        );
        assert_eq!(session(Some("rebase"), &none, &agents), Session::Wanted);
        assert_eq!(session(Some("rebase=x"), &none, &agents), Session::Wanted);
        assert_eq!(session(Some("rebased=1"), &none, &agents), Session::None);
        assert_eq!(session(None, &none, &agents), Session::None);
        assert_eq!(session(None, &gst, &agents), Session::Wanted);
        assert_eq!(session(None, &gst, &[]), Session::None);
    }

    #[test]
    fn every_uri_of_a_playlist_gets_the_parameter() {
        let master = "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"audio/index.m3u8\"\n\
                      #EXT-X-STREAM-INF:BANDWIDTH=1,AUDIO=\"a\"\n180p/index.m3u8\n";
        let out = playlist(&object(master), 9);
        let text = std::str::from_utf8(&out.body).unwrap();
        assert!(text.contains("URI=\"audio/index.m3u8?rebase=9\""), "{text}");
        assert!(text.contains("\n180p/index.m3u8?rebase=9\n"), "{text}");
        assert_eq!(out.etag, "\"7-12-r9\"");

        let media = "#EXTM3U\r\n#EXT-X-MAP:URI=\"init.mp4\"\r\n#EXTINF:2.0,\r\n5.m4s?x=1\r\n";
        let out = playlist(&object(media), 5);
        let text = std::str::from_utf8(&out.body).unwrap();
        assert!(text.contains("URI=\"init.mp4?rebase=5\"\r\n"), "{text}");
        assert!(text.contains("\r\n5.m4s?x=1&rebase=5\r\n"), "{text}");
    }

    #[test]
    fn the_first_segment_of_a_media_playlist() {
        let media =
            b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:881\n#EXTINF:2,\n881.m4s\n";
        assert_eq!(first_segment(media), Some(881));
        assert_eq!(
            first_segment(b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n"),
            None
        );
    }

    #[test]
    fn segment_starts_are_counted_from_the_media_epoch() {
        let timing = ChannelTiming {
            segment_duration: Duration::from_secs(2),
            epoch: UNIX_EPOCH,
            dvr_window: Duration::from_secs(30),
        };
        let n = MEDIA_EPOCH_SECONDS / 2 + 10;
        assert_eq!(media_start_ticks(&timing, n, 90_000), 20 * 90_000);
        assert_eq!(media_start_ticks(&timing, n, 44_100), 20 * 44_100);
        assert_eq!(media_start_ticks(&timing, 3, 90_000), 0);
    }

    /// A box: size, type, payload.
    fn mp4_box(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut out = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn tfdt_is_shifted_in_place_and_the_timescale_read() {
        let mut tfdt = vec![1, 0, 0, 0];
        tfdt.extend_from_slice(&1_000_000u64.to_be_bytes());
        let traf = [mp4_box(b"tfhd", &[0; 8]), mp4_box(b"tfdt", &tfdt)].concat();
        let moof = [mp4_box(b"mfhd", &[0; 8]), mp4_box(b"traf", &traf)].concat();
        let mut segment = [
            mp4_box(b"styp", b"msdh"),
            mp4_box(b"moof", &moof),
            mp4_box(b"mdat", b"data"),
        ]
        .concat();
        let before = segment.clone();
        shift_decode_times(&mut segment, 999_000).unwrap();
        assert_eq!(segment.len(), before.len());
        let at = segment.len() - 12 - 8;
        assert_eq!(
            u64::from_be_bytes(segment[at..at + 8].try_into().unwrap()),
            1_000
        );
        assert!(shift_decode_times(&mut mp4_box(b"mdat", b"x"), 1).is_none());

        let mut mdhd = vec![0u8; 24];
        mdhd[12..16].copy_from_slice(&48_000u32.to_be_bytes());
        let init = mp4_box(
            b"moov",
            &mp4_box(b"trak", &mp4_box(b"mdia", &mp4_box(b"mdhd", &mdhd))),
        );
        let init = [mp4_box(b"ftyp", b"iso6"), init].concat();
        assert_eq!(timescale(&init), Some(48_000));
        assert_eq!(timescale(b"junk"), None);
    }
}
