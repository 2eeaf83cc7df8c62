//! Unit tests of the parent module (kept apart so the module reads as code).

use m3u8_rs::{MasterPlaylist, MediaPlaylist, MediaPlaylistType, Playlist};

use super::*;
use crate::package::presentation::fixtures::{self, golden, LIVE_FIRST, LIVE_LAST};

fn parse_master(text: &str) -> MasterPlaylist {
    match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(Playlist::MasterPlaylist(m)) => m,
        other => panic!("not a multivariant playlist: {other:?}\n{text}"),
    }
}

fn parse_media(text: &str) -> MediaPlaylist {
    match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(Playlist::MediaPlaylist(m)) => m,
        other => panic!("not a media playlist: {other:?}\n{text}"),
    }
}

fn seconds(r: &Rendition) -> f64 {
    r.segments.iter().map(|s| r.seconds(s.duration)).sum()
}

/// HLS rule 2 on a parsed playlist.
fn assert_extinf_within_target(m: &MediaPlaylist) {
    for s in &m.segments {
        assert!(
            (s.duration as f64).round() as u64 <= m.target_duration,
            "EXTINF {} rounds above TARGETDURATION {}",
            s.duration,
            m.target_duration
        );
    }
}

#[test]
fn vod_master() {
    let p = fixtures::vod();
    let text = master_playlist(&p);
    let m = parse_master(&text);
    assert_eq!(m.version, Some(7));
    assert!(m.independent_segments);

    assert_eq!(m.alternatives.len(), 1);
    let a = &m.alternatives[0];
    assert_eq!(a.media_type, m3u8_rs::AlternativeMediaType::Audio);
    assert_eq!(a.group_id, "audio");
    assert_eq!(a.name, "audio");
    assert_eq!(a.language.as_deref(), Some("en"));
    assert!(a.default && a.autoselect);
    assert_eq!(a.channels.as_deref(), Some("2"));
    assert_eq!(a.uri.as_deref(), Some("audio/index.m3u8"));

    let uris: Vec<&str> = m.variants.iter().map(|v| v.uri.as_str()).collect();
    assert_eq!(
        uris,
        ["1080p/index.m3u8", "720p/index.m3u8", "360p/index.m3u8"]
    );
    let audio = p.audio().next().unwrap();
    for (v, r) in m.variants.iter().zip(p.video()) {
        let RenditionKind::Video { width, height, .. } = r.kind else {
            unreachable!()
        };
        assert_eq!(v.bandwidth, r.peak_bitrate + audio.peak_bitrate);
        assert_eq!(
            v.average_bandwidth,
            Some(r.average_bitrate + audio.average_bitrate)
        );
        assert_eq!(
            v.codecs.as_deref(),
            Some(format!("{},mp4a.40.2", r.codecs).as_str())
        );
        let res = v.resolution.unwrap();
        assert_eq!((res.width, res.height), (width as u64, height as u64));
        assert_eq!(v.frame_rate, Some(29.97));
        assert_eq!(v.audio.as_deref(), Some("audio"));
    }
    golden("vod/master.m3u8", &text);
}

#[test]
fn video_only_master_has_no_audio_group() {
    let p = fixtures::video_only();
    let m = parse_master(&master_playlist(&p));
    assert!(m.alternatives.is_empty());
    assert_eq!(m.variants.len(), 3);
    for (v, r) in m.variants.iter().zip(p.video()) {
        assert_eq!(v.audio, None);
        assert_eq!(v.codecs.as_deref(), Some(r.codecs.as_str()));
        assert_eq!(v.bandwidth, r.peak_bitrate);
    }
}

#[test]
fn audio_only_master_points_at_audio() {
    let p = fixtures::audio_only();
    let m = parse_master(&master_playlist(&p));
    assert!(m.alternatives.is_empty());
    assert_eq!(m.variants.len(), 1);
    let v = &m.variants[0];
    assert_eq!(v.uri, "audio/index.m3u8");
    assert_eq!(v.codecs.as_deref(), Some("mp4a.40.2"));
    assert_eq!((v.bandwidth, v.average_bandwidth), (132_000, Some(128_000)));
    assert_eq!(v.resolution, None);
}

#[test]
fn vod_media_playlists() {
    let p = fixtures::vod();
    for r in &p.renditions {
        let text = media_playlist(&p, r);
        let m = parse_media(&text);
        assert_eq!(m.version, Some(7));
        assert_eq!(m.target_duration, 2, "{}", r.id);
        assert_eq!(m.media_sequence, 0);
        assert_eq!(m.playlist_type, Some(MediaPlaylistType::Vod));
        assert!(m.end_list && m.independent_segments);
        assert_eq!(m.segments.len(), 5);
        assert_eq!(
            m.segments[0].map.as_ref().map(|m| m.uri.as_str()),
            Some("init.mp4")
        );
        let uris: Vec<&str> = m.segments.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(uris, ["0.m4s", "1.m4s", "2.m4s", "3.m4s", "4.m4s"]);
        let sum: f64 = m.segments.iter().map(|s| s.duration as f64).sum();
        assert!((sum - seconds(r)).abs() < 1e-3, "{sum} vs {}", seconds(r));
        assert!(m
            .segments
            .iter()
            .all(|s| !s.discontinuity && s.program_date_time.is_none()));
        assert_extinf_within_target(&m);
    }
    golden(
        "vod/1080p/index.m3u8",
        &media_playlist(&p, &p.renditions[0]),
    );
    golden(
        "vod/audio/index.m3u8",
        &media_playlist(&p, &p.renditions[3]),
    );
}

#[test]
fn live_media_playlists() {
    let p = fixtures::live();
    let Timeline::Live(live) = &p.timeline else {
        unreachable!()
    };
    let mut dates = Vec::new();
    for r in &p.renditions {
        let text = media_playlist(&p, r);
        let m = parse_media(&text);
        assert_eq!(m.playlist_type, None);
        assert!(!m.end_list);
        assert_eq!(m.target_duration, 2);
        assert_eq!(m.media_sequence, LIVE_FIRST);
        assert_eq!(m.discontinuity_sequence, 3);
        assert_eq!(m.segments.len(), (LIVE_LAST - LIVE_FIRST + 1) as usize);
        let flagged: Vec<usize> = (0..m.segments.len())
            .filter(|&i| m.segments[i].discontinuity)
            .collect();
        assert_eq!(flagged, [8, 10]);
        // Rule 4: at least three target durations.
        let sum: f64 = m.segments.iter().map(|s| s.duration as f64).sum();
        assert!(sum >= 3.0 * m.target_duration as f64);
        assert!((sum - seconds(r)).abs() < 1e-3);
        assert_extinf_within_target(&m);
        // Rule 3: every segment's date is its own tfdt on the availability timeline.
        let ms: Vec<i64> = m
            .segments
            .iter()
            .map(|s| {
                s.program_date_time
                    .expect("PROGRAM-DATE-TIME")
                    .timestamp_millis()
            })
            .collect();
        for (ms, s) in ms.iter().zip(&r.segments) {
            let want = datetime::media_time_millis(live.availability_start, s.start, r.timescale);
            assert_eq!(*ms, want);
        }
        dates.push(ms);
    }
    // The same mapping in every variant: segment n starts at n·D in each, up to a frame.
    for other in &dates[1..] {
        for (a, b) in dates[0].iter().zip(other) {
            assert!((a - b).abs() <= 34, "{a} vs {b}");
        }
    }
    golden(
        "live/720p/index.m3u8",
        &media_playlist(&p, &p.renditions[0]),
    );
}

#[test]
fn ended_live_playlist_ends_without_a_type() {
    let live = fixtures::live();
    let p = fixtures::live_ended();
    for r in &p.renditions {
        let m = parse_media(&media_playlist(&p, r));
        assert!(m.end_list);
        assert_eq!(m.playlist_type, None);
        assert_eq!(m.media_sequence, LIVE_FIRST);
        assert_eq!(m.discontinuity_sequence, 3);
        assert_eq!(m.target_duration, target_duration(&live, r));
        assert!(m.segments.iter().all(|s| s.program_date_time.is_some()));
        let last = m.segments.last().unwrap().duration;
        assert!((last - 1.2).abs() < 0.03, "{last}");
    }
}

/// Program date-times map segment n to n·D since the Unix epoch in every variant, for
/// published segments and for the gaps where a number is missing, with media time counted
/// from 2000-01-01 as the daemon does.
#[test]
fn program_date_times_follow_the_numbers_across_gaps() {
    let mut p = fixtures::from_media_epoch(fixtures::live());
    for r in &mut p.renditions {
        r.segments.retain(|s| s.number != LIVE_FIRST + 5);
    }
    for r in &p.renditions {
        let text = media_playlist(&p, r);
        let mut date = None;
        let mut gap = false;
        let mut gaps = 0;
        for line in text.lines() {
            if let Some(d) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
                date = Some(d.to_string());
            } else if line == "#EXT-X-GAP" {
                gap = true;
            } else if let Some(n) = line.strip_suffix(".m4s") {
                let n: u64 = n.parse().unwrap();
                let nominal = datetime::datetime_millis((n * 2000) as i64);
                let date = date.take().expect("a date for every segment");
                if gap {
                    // A missing number sits exactly at its nominal place.
                    assert_eq!(date, nominal, "{} gap {n}", r.id);
                    gaps += 1;
                } else {
                    // A published segment starts at its first frame: within the same second.
                    assert_eq!(date[..19], nominal[..19], "{} segment {n}", r.id);
                }
                gap = false;
            }
        }
        assert_eq!(gaps, 1, "{text}");
    }
}

#[test]
fn target_duration_is_constant_while_the_window_slides() {
    let p = fixtures::live();
    let mut window = p.clone();
    for _ in 0..10 {
        for r in &mut window.renditions {
            r.segments.remove(0);
        }
        for (r, full) in window.renditions.iter().zip(&p.renditions) {
            assert_eq!(target_duration(&window, r), 2);
            assert_eq!(target_duration(&window, r), target_duration(&p, full));
        }
    }
    // A non-integer D: ceil(D), whatever the segments.
    let mut q = fixtures::vod();
    q.segment_duration = std::time::Duration::from_millis(2500);
    assert_eq!(target_duration(&q, &q.renditions[0]), 3);
    // Safety net: a long segment raises it rather than break rule 2.
    let mut q = fixtures::vod();
    q.renditions[0].segments[1].duration = 3 * 90_000;
    let m = parse_media(&media_playlist(&q, &q.renditions[0]));
    assert_eq!(m.target_duration, 3);
    assert_extinf_within_target(&m);
}

#[test]
fn missing_segments_become_gaps() {
    let mut p = fixtures::live();
    let r = &mut p.renditions[0];
    r.segments
        .retain(|s| s.number != LIVE_FIRST + 3 && s.number != LIVE_FIRST + 4);
    let text = media_playlist(&p, &p.renditions[0]);
    let m = parse_media(&text);
    assert_eq!(m.segments.len(), 16);
    for (i, s) in m.segments.iter().enumerate() {
        assert_eq!(s.uri, segment_name(LIVE_FIRST + i as u64));
        let gap = s.unknown_tags.iter().any(|t| t.tag == "X-GAP");
        assert_eq!(gap, i == 3 || i == 4, "{i}");
        // Dates keep the nominal mapping across the gap.
        let ms = s.program_date_time.unwrap().timestamp_millis();
        assert!((ms - (LIVE_FIRST + i as u64) as i64 * 2000).abs() <= 34);
    }
    assert_eq!(text.matches("#EXT-X-GAP\n").count(), 2);
}

#[test]
fn quoted_strings_stay_parseable() {
    let mut p = fixtures::vod();
    if let RenditionKind::Audio { language, .. } = &mut p.renditions[3].kind {
        *language = Some("e\"n\r\n".into());
    }
    let m = parse_master(&master_playlist(&p));
    assert_eq!(m.alternatives[0].language.as_deref(), Some("en"));
}
