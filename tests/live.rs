//! `encore serve` end to end: a real daemon on 127.0.0.1:0, real HTTP, independent parsers,
//! ffmpeg as a player, SIGTERM at the end.

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use daemon::Daemon;
use m3u8_rs::Playlist;

/// 2000-01-01T00:00:00Z in Unix seconds: media time zero of live channels.
const MEDIA_EPOCH: u64 = 946_684_800;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// ffmpeg reads `seconds` of every stream of `url` (a real client) without an error.
fn assert_ffmpeg_plays(url: &str, seconds: u32) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i", url, "-t", &seconds.to_string()])
        .args(["-map", "0", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn segment_view(bytes: &[u8]) -> SegmentView {
    let dir = tempdir();
    let p = dir.path().join("s.m4s");
    std::fs::write(&p, bytes).unwrap();
    read_segment(&p)
}

const TEST_CHANNEL: &str = r#"
[[channels]]
name = "t"
input = "test:320x180@15"
ladder = "180:300k,90:120k"
preset = "ultrafast"
segment_duration = 1
dvr_window = 30
"#;

#[test]
fn test_pattern_channel_is_epoch_locked_and_stops_cleanly() {
    let d = Daemon::start(TEST_CHANNEL);
    let master = d.wait_for("/live/t/master.m3u8", Duration::from_secs(20));
    assert_eq!(
        master.headers()["content-type"],
        "application/vnd.apple.mpegurl"
    );
    let master = match m3u8_rs::parse_playlist_res(&master.bytes().unwrap()) {
        Ok(Playlist::MasterPlaylist(m)) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(master.variants.len(), 2);
    assert!(master.variants[0]
        .codecs
        .as_deref()
        .unwrap()
        .contains("mp4a.40.2"));

    // Let a few segments accumulate.
    std::thread::sleep(Duration::from_secs(4));
    let pl = d.media_playlist("/live/t/180p/index.m3u8");
    assert!(!pl.end_list, "live playlists have no ENDLIST");
    assert!(pl.playlist_type.is_none());
    assert!(pl.segments.len() >= 3, "{} segments", pl.segments.len());
    assert!(
        pl.segments[0].program_date_time.is_some(),
        "PROGRAM-DATE-TIME"
    );
    // Epoch locking: the newest number is the current second (D = 1 s), within encoder latency.
    let last: u64 = pl
        .segments
        .last()
        .unwrap()
        .uri
        .trim_end_matches(".m4s")
        .parse()
        .unwrap();
    let edge = now().floor() as u64;
    assert!(
        last + 3 >= edge && last <= edge,
        "last segment {last} vs clock {edge}"
    );
    assert_eq!(pl.media_sequence + pl.segments.len() as u64 - 1, last);

    // Segments: tfdt = n·D − the media epoch (2000-01-01, the MPD's AST) on both rungs and
    // audio, IDR first, immutable caching.
    for (rendition, hevc_or_audio) in [("180p", false), ("90p", false)] {
        let r = d.get(&format!("/live/t/{rendition}/{last}.m4s"));
        assert_eq!(r.status(), 200);
        assert!(r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable"));
        assert!(r.headers().contains_key("etag"));
        let view = segment_view(&r.bytes().unwrap());
        assert_eq!(view.tfdt, (last - MEDIA_EPOCH) * 90_000, "{rendition}");
        let types = first_sample_nal_types(&view, hevc_or_audio);
        assert!(types.contains(&5), "{rendition}: {types:?}");
    }
    let audio = segment_view(
        &d.get(&format!("/live/t/audio/{}.m4s", last - 1))
            .bytes()
            .unwrap(),
    );
    assert!((audio.tfdt as f64 / 48_000.0 - (last - 1 - MEDIA_EPOCH) as f64).abs() < 0.03);

    // Far ahead of the edge: 404 with a max-age until it is due.
    let ahead = d.get(&format!("/live/t/180p/{}.m4s", last + 10));
    assert_eq!(ahead.status(), 404);
    assert!(ahead.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age="));

    // DASH: dynamic, UTCTiming served by the origin itself.
    let mpd = d.get("/live/t/manifest.mpd").text().unwrap();
    let parsed = dash_mpd::parse(&mpd).expect("dash-mpd parses");
    assert_eq!(parsed.mpdtype.as_deref(), Some("dynamic"));
    assert!(!parsed.UTCTiming.is_empty());
    let time = d.get("/time").text().unwrap();
    assert!(time.starts_with("20") && time.ends_with('Z'), "{time}");

    // A real client plays it.
    assert_ffmpeg_plays(&format!("{}/live/t/master.m3u8", d.base), 2);

    assert!(d.terminate().success(), "SIGTERM exits 0");
}

/// GStreamer's older `hlsdemux` counts media time from the first segment it loads: its
/// session gets playlists that say so in every URI and segments whose `tfdt` counts from there.
#[test]
fn a_gstreamer_session_gets_a_timeline_from_its_first_segment() {
    let d = Daemon::start(TEST_CHANNEL);
    d.wait_for("/live/t/master.m3u8", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(3));
    let gstreamer = reqwest::blocking::Client::builder()
        .user_agent("GStreamer souphttpsrc 1.22.0 libsoup/3.2.2")
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let get = |path: &str| gstreamer.get(format!("{}{path}", d.base)).send().unwrap();

    // The master playlist redirects to a session starting at the window's first segment.
    let redirect = get("/live/t/master.m3u8");
    assert_eq!(redirect.status(), 302);
    assert_eq!(redirect.headers()["cache-control"], "private, no-store");
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    let first: u64 = location
        .strip_prefix("/live/t/master.m3u8?rebase=")
        .unwrap_or_else(|| panic!("{location}"))
        .parse()
        .unwrap();
    let window = d.media_playlist("/live/t/180p/index.m3u8").media_sequence;
    assert!(
        first <= window && window <= first + 2,
        "{first} vs {window}"
    );

    // Its playlists name every URI with the session; other players' are unchanged.
    let master = match m3u8_rs::parse_playlist_res(&get(&location).bytes().unwrap()) {
        Ok(Playlist::MasterPlaylist(m)) => m,
        other => panic!("{other:?}"),
    };
    let session = format!("?rebase={first}");
    assert!(master.variants.iter().all(|v| v.uri.ends_with(&session)));
    assert!(master
        .alternatives
        .iter()
        .all(|a| a.uri.as_deref().is_some_and(|u| u.ends_with(&session))));
    let plain = d.get("/live/t/master.m3u8");
    assert_eq!(plain.status(), 200);
    assert!(!plain.text().unwrap().contains("rebase"));
    let media = match m3u8_rs::parse_playlist_res(
        &get(&format!("/live/t/180p/index.m3u8{session}"))
            .bytes()
            .unwrap(),
    ) {
        Ok(Playlist::MediaPlaylist(m)) => m,
        other => panic!("{other:?}"),
    };
    assert!(media.segments.iter().all(|s| s.uri.ends_with(&session)));
    let newest = media.media_sequence + media.segments.len() as u64 - 1;
    // Any player may ask for a session: `?rebase` without a number (a CDN passes it on).
    let asked = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/live/t/audio/index.m3u8?rebase", d.base))
        .send()
        .unwrap();
    assert_eq!(asked.status(), 302);
    assert!(asked.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/live/t/audio/index.m3u8?rebase="));

    // Its segments: tfdt counts from segment `first` (D = 1 s), video and audio alike; every
    // other byte is the published segment's.
    for (rendition, timescale) in [("180p", 90_000u64), ("audio", 48_000)] {
        let path = format!("/live/t/{rendition}/{newest}.m4s");
        let published = d.get(&path);
        let rebased = get(&format!("{path}{session}"));
        assert_eq!(rebased.status(), 200);
        assert_ne!(published.headers()["etag"], rebased.headers()["etag"]);
        let (published, rebased) = (published.bytes().unwrap(), rebased.bytes().unwrap());
        assert_eq!(published.len(), rebased.len());
        let differing = published
            .iter()
            .zip(rebased.iter())
            .filter(|(a, b)| a != b)
            .count();
        assert!((1..=8).contains(&differing), "{differing} bytes differ");
        let (published, rebased) = (segment_view(&published), segment_view(&rebased));
        assert_eq!(
            published.tfdt - rebased.tfdt,
            (first - MEDIA_EPOCH) * timescale,
            "{rendition}"
        );
        assert_eq!(published.samples, rebased.samples);
    }
    d.terminate();
}

#[test]
fn a_file_played_once_ends_as_vod() {
    // 3 s at 15 fps with audio.
    let src = fixture(
        "src-180p15-3s.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=15",
            "-f",
            "lavfi",
            "-i",
            "sine=sample_rate=48000",
            "-t",
            "3",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
        ],
    );
    let d = Daemon::start(&format!(
        "[[channels]]\nname = \"f\"\ninput = \"file:{}\"\nformat = \"320x180@15\"\nladder = \"180:300k\"\npreset = \"ultrafast\"\nsegment_duration = 1\ndvr_window = 30\n",
        src.display()
    ));
    d.wait_for("/live/f/master.m3u8", Duration::from_secs(20));
    let start = Instant::now();
    let pl = loop {
        let pl = d.media_playlist("/live/f/180p/index.m3u8");
        if pl.end_list {
            break pl;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never ended");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(pl.segments.len() >= 2);
    let mpd = d.get("/live/f/manifest.mpd").text().unwrap();
    assert!(!mpd.contains("minimumUpdatePeriod"), "{mpd}");
    dash_mpd::parse(&mpd).expect("final MPD parses");
    // The last segment carries lmsg.
    let last = pl.segments.last().unwrap();
    let view = segment_view(
        &d.get(&format!("/live/f/180p/{}", last.uri))
            .bytes()
            .unwrap(),
    );
    assert!(view.brands.iter().any(|b| b == "lmsg"), "{:?}", view.brands);
    // Still served as VOD after the end.
    let (ok, errors) = {
        let out = Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-i",
                &format!("{}/live/f/master.m3u8", d.base),
                "-map",
                "0",
                "-f",
                "null",
                "-",
            ])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(ok, "{errors}");
    assert!(d.terminate().success());
}

#[test]
fn a_lost_udp_input_becomes_slate_and_comes_back() {
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let d = Daemon::start(&format!(
        "[[channels]]\nname = \"u\"\ninput = \"udp://127.0.0.1:{port}\"\nformat = \"320x180@15\"\nladder = \"180:300k\"\npreset = \"ultrafast\"\nsegment_duration = 1\ndvr_window = 30\n"
    ));
    // No input yet: the channel runs on slate.
    d.wait_for("/live/u/master.m3u8", Duration::from_secs(20));
    // Feed 4 s of MPEG-TS in real time, then stop.
    let status = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=15",
            "-f",
            "lavfi",
            "-i",
            "sine=sample_rate=48000",
            "-t",
            "4",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "15",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-f",
            "mpegts",
        ])
        .arg(format!("udp://127.0.0.1:{port}?pkt_size=1316"))
        .status()
        .unwrap();
    assert!(status.success());
    let stopped = now();
    std::thread::sleep(Duration::from_secs(4));
    let pl = d.media_playlist("/live/u/180p/index.m3u8");
    let numbers: Vec<u64> = pl
        .segments
        .iter()
        .map(|s| s.uri.trim_end_matches(".m4s").parse().unwrap())
        .collect();
    for w in numbers.windows(2) {
        assert_eq!(w[1], w[0] + 1, "numbering is continuous: {numbers:?}");
    }
    let slate: Vec<bool> = numbers
        .iter()
        .map(|n| {
            segment_view(&d.get(&format!("/live/u/180p/{n}.m4s")).bytes().unwrap())
                .brands
                .iter()
                .any(|b| b == "slat")
        })
        .collect();
    assert!(
        slate.iter().any(|s| *s),
        "slate before and after the feed: {slate:?}"
    );
    assert!(slate.iter().any(|s| !*s), "real video while fed: {slate:?}");
    assert!(
        *slate.last().unwrap(),
        "slate again after the feed stopped: {slate:?}"
    );
    // Within 2·D of the pusher stopping, every segment is slate (D = 1 s).
    for (n, s) in numbers.iter().zip(&slate) {
        if *n as f64 >= stopped + 2.0 {
            assert!(
                *s,
                "segment {n} starts 2·D after the feed stopped but is not slate: {slate:?}"
            );
        }
    }
    assert!(d.terminate().success());
}

/// The live acceptance list with D = 2 s: timing of the first segments, the wall-clock →
/// number mapping read from the MPD alone, the edge rules, alignment across the ladder, and
/// real clients on both manifests.
#[test]
fn live_edge_rules_and_alignment_with_two_second_segments() {
    let d_secs = 2u64;
    let started = Instant::now();
    let d = Daemon::start(
        r#"
[[channels]]
name = "demo"
input = "test:320x180@15"
ladder = "180:300k,90:120k"
preset = "ultrafast"
segment_duration = 2
dvr_window = 60
"#,
    );
    // Within 3·D of the daemon starting, the MPD and the playlists list segments.
    let within = Duration::from_secs(3 * d_secs) + Duration::from_millis(500);
    d.wait_for("/live/demo/180p/index.m3u8", within);
    d.wait_for("/live/demo/manifest.mpd", within);
    assert!(
        started.elapsed() <= within + Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // N from the MPD's availabilityStartTime, startNumber and duration (DASH rule 4) and the clock.
    let mpd = dash_mpd::parse(&d.get("/live/demo/manifest.mpd").text().unwrap()).unwrap();
    let ast = mpd.availabilityStartTime.unwrap().timestamp_millis() as f64 / 1000.0;
    let t = mpd.periods[0].adaptations[0].representations[0]
        .SegmentTemplate
        .clone()
        .unwrap();
    let d_mpd = t.duration.unwrap() / t.timescale.unwrap() as f64;
    assert_eq!(d_mpd, d_secs as f64);
    let n = t.startNumber.unwrap() + ((now() - ast) / d_mpd).floor() as u64 - 1;
    let r = d.get(&format!("/live/demo/180p/{n}.m4s"));
    let listed: Vec<String> = d
        .media_playlist("/live/demo/180p/index.m3u8")
        .segments
        .iter()
        .map(|s| s.uri.clone())
        .collect();
    assert_eq!(
        r.status(),
        200,
        "segment {n}, computed from the MPD, is served (listed: {listed:?}, now {})",
        now()
    );

    // N + 3: 404 with a max-age of at most 3·D.
    let ahead = d.get(&format!("/live/demo/180p/{}.m4s", n + 3));
    assert_eq!(ahead.status(), 404);
    let cc = ahead.headers()["cache-control"]
        .to_str()
        .unwrap()
        .to_string();
    let max_age: u64 = cc
        .split("max-age=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((1..=3 * d_secs).contains(&max_age), "{cc}");

    // The next segment, asked for right after N: held, then 200 within D + 0.5 s.
    let asked = Instant::now();
    let next = d.get(&format!("/live/demo/180p/{}.m4s", n + 1));
    assert_eq!(next.status(), 200, "held, not 404");
    assert!(
        asked.elapsed() <= Duration::from_millis(d_secs * 1000 + 500),
        "{:?}",
        asked.elapsed()
    );

    // Every published segment of every rung starts with an IDR, tfdt equal across rungs, and
    // PROGRAM-DATE-TIME identical across variants.
    let top = d.media_playlist("/live/demo/180p/index.m3u8");
    let low = d.media_playlist("/live/demo/90p/index.m3u8");
    for s in &top.segments {
        let Some(other) = low.segments.iter().find(|o| o.uri == s.uri) else {
            continue;
        };
        assert_eq!(s.program_date_time, other.program_date_time, "{}", s.uri);
        let a = segment_view(
            &d.get(&format!("/live/demo/180p/{}", s.uri))
                .bytes()
                .unwrap(),
        );
        let b = segment_view(&d.get(&format!("/live/demo/90p/{}", s.uri)).bytes().unwrap());
        assert_eq!(a.tfdt, b.tfdt, "{}", s.uri);
        for view in [&a, &b] {
            assert!(
                first_sample_nal_types(view, false).contains(&5),
                "{}: IDR first",
                s.uri
            );
        }
    }

    // Real clients: ffmpeg plays 6 s of each manifest with no error.
    for manifest in ["master.m3u8", "manifest.mpd"] {
        let out = Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-i",
                &format!("{}/live/demo/{manifest}", d.base),
                "-t",
                "6",
                "-f",
                "null",
                "-",
            ])
            .output()
            .unwrap();
        let errors = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && errors.trim().is_empty(),
            "{manifest}: {errors}"
        );
    }
    assert!(d.terminate().success());
}

/// A running channel's memory levels off: sampled after warm-up and 10 s later, it grows by
/// little more than the segments the DVR window keeps. (Every demuxed packet once leaked: a
/// whole raw picture per frame for this source, 10 MB/s at 640x360.)
#[test]
fn a_channel_does_not_grow_without_bound() {
    let d = Daemon::start(
        "[[channels]]\nname = \"soak\"\ninput = \"test:640x360@30\"\nladder = \"360:800k,240:400k\"\ndvr_window = 6.0\nsegment_duration = 2.0\n",
    );
    d.wait_for("/live/soak/master.m3u8", Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(4));
    let pid = d.child.id();
    let before = encore::hw::probe::resident_bytes(pid).unwrap_or(0);
    std::thread::sleep(Duration::from_secs(10));
    let after = encore::hw::probe::resident_bytes(pid).unwrap_or(0);
    let grown = after.saturating_sub(before);
    println!("RSS {} MB -> {} MB", before >> 20, after >> 20);
    assert!(before > 0, "no /proc status for the daemon");
    // 10 s of this ladder is ~1.5 MB of segments; leaking pictures would be ~100 MB.
    assert!(grown < 30 << 20, "RSS grew {} MB in 10 s", grown >> 20);
    assert!(d.terminate().success());
}

/// Frames of a 30000/1001 channel shown before `seconds` since the Unix epoch (whole frames:
/// frame k is shown at k·1001/30000 s).
fn ntsc_frames_before(seconds: u64) -> u64 {
    (seconds * 30_000).div_ceil(1001)
}

#[test]
fn a_29_97_channel_cuts_whole_frames_aligned_across_rungs() {
    let d = Daemon::start(
        "[[channels]]\nname = \"n\"\ninput = \"test:320x180@29.97\"\nformat = \"320x180@29.97\"\nladder = \"180:300k,90:120k\"\npreset = \"ultrafast\"\nsegment_duration = 2\ndvr_window = 30\n",
    );
    d.wait_for("/live/n/master.m3u8", Duration::from_secs(20));
    // Four whole segments.
    let started = Instant::now();
    let pl = loop {
        let pl = d.media_playlist("/live/n/180p/index.m3u8");
        if pl.segments.len() >= 4 {
            break pl;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no 4 segments");
        std::thread::sleep(Duration::from_millis(300));
    };
    let low = d.media_playlist("/live/n/90p/index.m3u8");
    let numbers: Vec<u64> = pl.segments[pl.segments.len() - 4..]
        .iter()
        .map(|s| s.uri.trim_end_matches(".m4s").parse().unwrap())
        .collect();
    let mut counts = Vec::new();
    for n in &numbers {
        // Segment n holds the frames shown in [2n, 2n + 2) s: 59 or 60 of them.
        let first = ntsc_frames_before(2 * n);
        let frames = ntsc_frames_before(2 * (n + 1)) - first;
        counts.push(frames);
        let expected_tfdt = first * 3003 - MEDIA_EPOCH * 90_000;
        let mut views = Vec::new();
        for rendition in ["180p", "90p"] {
            let view = segment_view(
                &d.get(&format!("/live/n/{rendition}/{n}.m4s"))
                    .bytes()
                    .unwrap(),
            );
            assert_eq!(view.tfdt, expected_tfdt, "{rendition} segment {n}: tfdt");
            assert_eq!(
                view.samples.len() as u64,
                frames,
                "{rendition} segment {n}: frames"
            );
            assert!(
                view.samples.iter().all(|s| s.0 == 3003),
                "{rendition}: frame durations"
            );
            assert!(
                first_sample_nal_types(&view, false).contains(&5),
                "{rendition} {n}: IDR first"
            );
            views.push(view);
        }
        // IDRs at the same frames in both rungs (sync-sample flags equal, sample by sample).
        let sync = |v: &SegmentView| -> Vec<bool> {
            v.samples.iter().map(|s| s.2 & 0x0001_0000 == 0).collect()
        };
        assert_eq!(
            sync(&views[0]),
            sync(&views[1]),
            "segment {n}: IDR positions"
        );
        // Both playlists give the segment its real duration.
        for playlist in [&pl, &low] {
            let entry = playlist
                .segments
                .iter()
                .find(|s| s.uri == format!("{n}.m4s"))
                .unwrap();
            let real = frames as f64 * 1001.0 / 30_000.0;
            assert!(
                (entry.duration as f64 - real).abs() < 0.001,
                "EXTINF {} vs {real}",
                entry.duration
            );
        }
        // The MPD's template puts segment n at 2n s after the AST: the real start is within one frame.
        let nominal = (2 * n - MEDIA_EPOCH) as f64;
        let real = expected_tfdt as f64 / 90_000.0;
        assert!(real >= nominal && real - nominal < 1001.0 / 30_000.0);
    }
    // 59.94 frames per segment: 60, with a 59-frame segment about every 17th.
    assert!(counts.iter().all(|c| *c == 59 || *c == 60), "{counts:?}");
    assert_eq!(pl.target_duration, 2);

    let mpd = dash_mpd::parse(&d.get("/live/n/manifest.mpd").text().unwrap()).unwrap();
    let video = &mpd.periods[0].adaptations[0];
    assert!(video
        .representations
        .iter()
        .all(|r| r.frameRate.as_deref() == Some("30000/1001")
            || video.frameRate.as_deref() == Some("30000/1001")));
    let template = video
        .SegmentTemplate
        .as_ref()
        .or(video.representations[0].SegmentTemplate.as_ref())
        .unwrap();
    assert_eq!(
        template.duration.unwrap() / template.timescale.unwrap() as f64,
        2.0
    );

    // A real client plays it.
    assert_ffmpeg_plays(&format!("{}/live/n/master.m3u8", d.base), 3);
    assert!(d.terminate().success());
}
