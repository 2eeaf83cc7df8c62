//! Unit tests of the parent module (kept apart so the module reads as code).

use std::time::{Duration, UNIX_EPOCH};

use dash_mpd::{AdaptationSet, MPD};

use super::*;
use crate::package::presentation::fixtures::{self, golden, LIVE_FIRST, LIVE_LAST, NOW_MS};

fn parse(xml: &str) -> MPD {
    dash_mpd::parse(xml).unwrap_or_else(|e| panic!("{e}\n{xml}"))
}

fn ids(set: &AdaptationSet) -> Vec<&str> {
    set.representations
        .iter()
        .map(|r| r.id.as_deref().unwrap())
        .collect()
}

fn check_sets(p: &Presentation, m: &MPD) {
    let period = &m.periods[0];
    assert_eq!(period.id.as_deref(), Some("0"));
    assert_eq!(period.start, Some(Duration::ZERO));
    let video = &period.adaptations[0];
    assert_eq!(video.id.as_deref(), Some("0"));
    assert_eq!(video.contentType.as_deref(), Some("video"));
    assert_eq!(video.mimeType.as_deref(), Some("video/mp4"));
    assert_eq!(video.segmentAlignment, Some(true));
    assert_eq!(video.startWithSAP, Some(1));
    assert_eq!(video.maxFrameRate.as_deref(), Some("30000/1001"));
    let want: Vec<&str> = p.video().map(|r| r.id.as_str()).collect();
    assert_eq!(ids(video), want);
    for (rep, r) in video.representations.iter().zip(p.video()) {
        let RenditionKind::Video { width, height, .. } = r.kind else {
            unreachable!()
        };
        assert_eq!(rep.bandwidth, Some(r.peak_bitrate));
        assert_eq!(rep.codecs.as_deref(), Some(r.codecs.as_str()));
        assert_eq!(
            (rep.width, rep.height),
            (Some(width as u64), Some(height as u64))
        );
        assert_eq!(rep.frameRate.as_deref(), Some("30000/1001"));
        assert_eq!(rep.sar.as_deref(), Some("1:1"));
        let t = rep.SegmentTemplate.as_ref().unwrap();
        check_template(p, r, t, 90_000);
        assert_eq!(
            t.initialization.as_deref(),
            Some("$RepresentationID$/init.mp4")
        );
        assert_eq!(t.media.as_deref(), Some("$RepresentationID$/$Number$.m4s"));
    }
    let widest = p.video().filter_map(|r| match r.kind {
        RenditionKind::Video { width, height, .. } => Some((width as u64, height as u64)),
        RenditionKind::Audio { .. } => None,
    });
    let (w, h) = widest.fold((0, 0), |(w, h), (x, y)| (w.max(x), h.max(y)));
    assert_eq!((video.maxWidth, video.maxHeight), (Some(w), Some(h)));

    let audio = &period.adaptations[1];
    assert_eq!(audio.id.as_deref(), Some("1"));
    assert_eq!(audio.contentType.as_deref(), Some("audio"));
    assert_eq!(audio.mimeType.as_deref(), Some("audio/mp4"));
    assert_eq!(audio.lang.as_deref(), Some("en"));
    assert_eq!(ids(audio), ["audio"]);
    let rep = &audio.representations[0];
    assert_eq!(rep.audioSamplingRate.as_deref(), Some("48000"));
    assert_eq!(rep.codecs.as_deref(), Some("mp4a.40.2"));
    assert_eq!(rep.bandwidth, Some(132_000));
    let acc = &rep.AudioChannelConfiguration[0];
    assert_eq!(acc.schemeIdUri, CHANNEL_SCHEME);
    assert_eq!(acc.value.as_deref(), Some("2"));
    let t = rep.SegmentTemplate.as_ref().unwrap();
    let r = p.audio().next().unwrap();
    check_template(p, r, t, 48_000);
}

/// Live: @duration = D; VOD: a SegmentTimeline that lists exactly the rendition's segments.
fn check_template(p: &Presentation, r: &Rendition, t: &dash_mpd::SegmentTemplate, ts: u64) {
    assert_eq!(t.timescale, Some(ts));
    match p.timeline {
        Timeline::Live(_) => assert_eq!(t.duration, Some(2.0 * ts as f64)),
        Timeline::Vod => {
            assert_eq!(t.duration, None);
            let timeline = t.SegmentTimeline.as_ref().expect("SegmentTimeline");
            let mut listed = Vec::new();
            let mut next = 0u64;
            for s in &timeline.segments {
                let mut start = s.t.unwrap_or(next);
                for _ in 0..=s.r.unwrap_or(0) {
                    listed.push((start, s.d));
                    start += s.d;
                }
                next = start;
            }
            let want: Vec<(u64, u64)> = r.segments.iter().map(|s| (s.start, s.duration)).collect();
            assert_eq!(listed, want);
            assert_eq!(t.startNumber, Some(r.segments[0].number));
        }
    }
}

#[test]
fn vod() {
    let p = fixtures::vod();
    let xml = mpd(&p);
    let m = parse(&xml);
    assert_eq!(m.mpdtype.as_deref(), Some("static"));
    assert_eq!(m.profiles.as_deref(), Some(PROFILE));
    // The video's duration (audio runs a fraction of a frame longer).
    let video_ms = p.video().map(vod_duration_ms).max().unwrap();
    assert_eq!(
        m.mediaPresentationDuration,
        Some(Duration::from_millis(video_ms))
    );
    assert_eq!(m.minBufferTime, Some(Duration::from_secs(2)));
    assert_eq!(m.minimumUpdatePeriod, None);
    assert!(m.UTCTiming.is_empty());
    assert_eq!(m.periods.len(), 1);
    assert_eq!(m.periods[0].adaptations.len(), 2);
    check_sets(&p, &m);
    let video = &m.periods[0].adaptations[0];
    assert_eq!((video.maxWidth, video.maxHeight), (Some(1920), Some(1080)));
    for set in &m.periods[0].adaptations {
        for rep in &set.representations {
            let t = rep.SegmentTemplate.as_ref().unwrap();
            assert_eq!(t.startNumber, Some(0));
            assert_eq!(t.presentationTimeOffset.unwrap_or(0), 0);
        }
    }
    golden("vod/manifest.mpd", &xml);
}

#[test]
fn video_only_has_one_set() {
    let p = fixtures::video_only();
    let m = parse(&mpd(&p));
    let sets = &m.periods[0].adaptations;
    assert_eq!(sets.len(), 1);
    assert_eq!(ids(&sets[0]), ["1080p", "720p", "360p"]);
}

#[test]
fn vod_numbering_that_does_not_start_at_zero() {
    let mut p = fixtures::vod();
    for r in &mut p.renditions {
        r.segments.remove(0);
    }
    let m = parse(&mpd(&p));
    let t = m.periods[0].adaptations[0].representations[0]
        .SegmentTemplate
        .clone()
        .unwrap();
    assert_eq!(t.startNumber, Some(1));
    assert_eq!(
        t.presentationTimeOffset,
        Some(p.renditions[0].segments[0].start)
    );
}

#[test]
fn audio_languages_get_their_own_sets() {
    let mut p = fixtures::vod();
    let mut fr = p.renditions[3].clone();
    fr.id = "audio-fr".into();
    if let RenditionKind::Audio { language, .. } = &mut fr.kind {
        *language = Some("fr".into());
    }
    p.renditions.push(fr);
    let m = parse(&mpd(&p));
    let sets = &m.periods[0].adaptations;
    assert_eq!(sets.len(), 3);
    assert_eq!(
        (sets[2].id.as_deref(), sets[2].lang.as_deref()),
        (Some("2"), Some("fr"))
    );
    assert_eq!(ids(&sets[2]), ["audio-fr"]);
}

#[test]
fn live() {
    let p = fixtures::live();
    let xml = mpd(&p);
    let m = parse(&xml);
    assert_eq!(m.mpdtype.as_deref(), Some("dynamic"));
    assert_eq!(m.availabilityStartTime.unwrap().timestamp_millis(), 0);
    assert_eq!(m.publishTime.unwrap().timestamp_millis(), NOW_MS as i64);
    assert_eq!(m.minimumUpdatePeriod, Some(Duration::from_secs(2)));
    assert_eq!(m.timeShiftBufferDepth, Some(Duration::from_secs(30)));
    assert_eq!(m.suggestedPresentationDelay, Some(Duration::from_secs(6)));
    assert_eq!(m.minBufferTime, Some(Duration::from_secs(2)));
    assert_eq!(m.mediaPresentationDuration, None);
    assert_eq!(m.periods[0].duration, None);
    assert_eq!(m.UTCTiming.len(), 1);
    assert_eq!(m.UTCTiming[0].schemeIdUri, UTC_TIMING_SCHEME);
    assert_eq!(
        m.UTCTiming[0].value.as_deref(),
        Some("/time?format=iso&x=1")
    );
    check_sets(&p, &m);
    for set in &m.periods[0].adaptations {
        for rep in &set.representations {
            let t = rep.SegmentTemplate.as_ref().unwrap();
            assert_eq!(t.startNumber, Some(0));
            assert_eq!(t.presentationTimeOffset.unwrap_or(0), 0);
        }
    }
    golden("live/manifest.mpd", &xml);
}

/// What a client knows of one Representation, from the MPD alone.
struct Clock {
    ast_ms: i64,
    period_start_ms: i64,
    tsbd_ms: i64,
    d_ms: f64,
    start_number: i64,
    timescale: f64,
    pto: f64,
}

impl Clock {
    fn of(m: &MPD, set: usize, rep: usize) -> Clock {
        let t = m.periods[0].adaptations[set].representations[rep]
            .SegmentTemplate
            .clone()
            .unwrap();
        let timescale = t.timescale.unwrap_or(1) as f64;
        Clock {
            ast_ms: m.availabilityStartTime.unwrap().timestamp_millis(),
            period_start_ms: m.periods[0].start.unwrap().as_millis() as i64,
            tsbd_ms: m.timeShiftBufferDepth.unwrap().as_millis() as i64,
            d_ms: t.duration.unwrap() * 1000.0 / timescale,
            start_number: t.startNumber.unwrap_or(1) as i64,
            timescale,
            pto: t.presentationTimeOffset.unwrap_or(0) as f64,
        }
    }

    /// Rule 4: N is available from AST + Period@start + (N − s + 1)·d until that
    /// time + timeShiftBufferDepth. Returns the available numbers at `now_ms`.
    fn available(&self, now_ms: i64) -> (i64, i64) {
        let since = (now_ms - self.ast_ms - self.period_start_ms) as f64;
        let last = (since / self.d_ms).floor() as i64 - 1 + self.start_number;
        let first =
            ((since - self.tsbd_ms as f64) / self.d_ms).ceil() as i64 - 1 + self.start_number;
        (first, last)
    }

    /// Media time (seconds) at which segment N starts, by the MPD.
    fn media_start(&self, n: i64) -> f64 {
        (n - self.start_number) as f64 * self.d_ms / 1000.0 + self.pto / self.timescale
    }
}

#[test]
fn wall_clock_maps_to_the_published_segments() {
    let p = fixtures::live();
    let m = parse(&mpd(&p));
    let mut reps = Vec::new();
    for (s, set) in m.periods[0].adaptations.iter().enumerate() {
        for i in 0..set.representations.len() {
            reps.push(Clock::of(&m, s, i));
        }
    }
    let by_id: Vec<&Rendition> = m.periods[0]
        .adaptations
        .iter()
        .flat_map(|s| &s.representations)
        .map(|rep| {
            p.renditions
                .iter()
                .find(|r| Some(r.id.as_str()) == rep.id.as_deref())
                .unwrap()
        })
        .collect();
    for (clock, r) in reps.iter().zip(by_id) {
        let (first, last) = clock.available(NOW_MS as i64);
        // The newest segment the MPD announces is the newest published...
        assert_eq!(last as u64, LIVE_LAST, "{}", r.id);
        // ...and every one it announces is in the window (rule 5).
        assert!(first as u64 >= LIVE_FIRST);
        for n in first..=last {
            let s = r
                .segments
                .iter()
                .find(|s| s.number == n as u64)
                .expect("announced, not published");
            // The MPD's media time of N is the segment's own tfdt, within ±50 % of d (rule 6).
            let tfdt = s.start as f64 / r.timescale as f64;
            assert!((clock.media_start(n) - tfdt).abs() <= 0.5 * clock.d_ms / 1000.0);
        }
        // One millisecond before the next segment is due, nothing new is announced.
        let due = (LIVE_LAST as i64 + 2) * 2000;
        assert_eq!(clock.available(due - 1).1 as u64, LIVE_LAST);
        assert_eq!(clock.available(due).1 as u64, LIVE_LAST + 1);
    }
}

#[test]
fn stable_across_updates() {
    let p = fixtures::live();
    let mut later = p.clone();
    for r in &mut later.renditions {
        r.segments.drain(..5);
    }
    if let Timeline::Live(live) = &mut later.timeline {
        live.publish_time += Duration::from_secs(10);
    }
    let (a, b) = (parse(&mpd(&p)), parse(&mpd(&later)));
    assert_eq!(a.availabilityStartTime, b.availabilityStartTime);
    assert_eq!(a.periods[0].start, b.periods[0].start);
    for (x, y) in a.periods[0]
        .adaptations
        .iter()
        .zip(&b.periods[0].adaptations)
    {
        assert_eq!(x.id, y.id);
        assert_eq!(ids(x), ids(y));
        for (rx, ry) in x.representations.iter().zip(&y.representations) {
            assert_eq!(rx.SegmentTemplate, ry.SegmentTemplate);
        }
    }
    // Only publishTime differs in the text.
    let strip = |s: String| {
        s.lines()
            .map(|l| l.split(" publishTime").next().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(mpd(&p)), strip(mpd(&later)));
}

/// An ended stream whose last audio frame runs past its segment's nominal end: the
/// Period ends at that nominal end (in media time from 2000-01-01, as the daemon counts),
/// so the template never names a segment that does not exist.
#[test]
fn ended_live_ends_at_the_last_nominal_edge() {
    let mut p = fixtures::live_ended();
    for r in &mut p.renditions {
        let last = r.segments.last_mut().unwrap();
        let nominal_end = (LIVE_LAST + 1) * 2 * r.timescale as u64;
        last.duration = nominal_end + r.timescale as u64 / 100 - last.start;
    }
    let p = fixtures::from_media_epoch(p);
    let m = parse(&mpd(&p));
    let end = m.mediaPresentationDuration.unwrap();
    let nominal = Duration::from_secs((LIVE_LAST + 1) * 2 - fixtures::MEDIA_EPOCH_SECONDS);
    assert_eq!(end, nominal);
    assert_eq!(
        m.availabilityStartTime,
        Some((UNIX_EPOCH + Duration::from_secs(fixtures::MEDIA_EPOCH_SECONDS)).into())
    );
}

#[test]
fn ended_live() {
    let p = fixtures::live_ended();
    let live = parse(&mpd(&fixtures::live()));
    let m = parse(&mpd(&p));
    assert_eq!(m.mpdtype.as_deref(), Some("dynamic"));
    assert_eq!(m.minimumUpdatePeriod, None);
    let end = m.mediaPresentationDuration.unwrap();
    assert_eq!(m.periods[0].duration, Some(end));
    let want = Duration::from_millis(LIVE_LAST * 2000 + 1200);
    assert!(
        end >= want && end - want <= Duration::from_millis(34),
        "{end:?}"
    );
    // The Period's last segment is the last published one.
    let d = Duration::from_secs(2).as_secs_f64();
    assert_eq!((end.as_secs_f64() / d).ceil() as u64 - 1, LIVE_LAST);
    // Ids and order as while live.
    for (x, y) in live.periods[0]
        .adaptations
        .iter()
        .zip(&m.periods[0].adaptations)
    {
        assert_eq!((x.id.as_deref(), ids(x)), (y.id.as_deref(), ids(y)));
    }
    assert_eq!(m.availabilityStartTime, Some(UNIX_EPOCH.into()));
    assert_eq!(m.UTCTiming.len(), 1);
}

#[test]
fn attribute_values_are_escaped() {
    let mut p = fixtures::vod();
    p.renditions[0].id = "a&b<\"c\">".into();
    let m = parse(&mpd(&p));
    assert_eq!(
        m.periods[0].adaptations[0].representations[0].id.as_deref(),
        Some("a&b<\"c\">")
    );
}
