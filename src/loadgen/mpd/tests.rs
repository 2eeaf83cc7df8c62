use super::*;

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

#[test]
fn encores_live_mpd_maps_the_clock_to_numbers_as_docs_timing_says() {
    // D = 2 s, startNumber 0, availabilityStartTime 1970 (the fixture's): segment N covers
    // [N·D, (N+1)·D), is available from (N+1)·D, and the newest at t is floor(t/D) − 1.
    let text = include_str!("../../package/testdata/live/manifest.mpd");
    let base = url("http://o/live/ch/manifest.mpd");
    let p = read(text, &base).unwrap();
    assert!(p.timing.dynamic);
    assert_eq!(p.timing.period_start, 0.0);
    assert_eq!(p.timing.end, None);
    assert_eq!(p.timing.time_shift_buffer, Some(30.0));
    assert_eq!(p.refresh, Some(Duration::from_secs(2)));
    assert_eq!(
        p.clock,
        Some(Clock::Url(url("http://o/time?format=iso&x=1")))
    );
    let ids = |v: &[Track]| v.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&p.video), ["720p", "360p"]);
    assert_eq!(ids(&p.audio), ["audio"]);

    let video = p.track("720p").unwrap();
    assert_eq!(
        video.init_url(),
        Some(url("http://o/live/ch/720p/init.mp4"))
    );
    let t = 1_735_689_605.3; // 2025-01-01T00:00:05.300Z, timing.md §12
    let edge = video.newest_available(t, &p.timing).unwrap();
    assert_eq!(edge, 867_844_801);
    let place = video.place(edge, &p.timing).unwrap();
    assert_eq!(place.url, url("http://o/live/ch/720p/867844801.m4s"));
    assert_eq!(place.duration, 2.0);
    assert_eq!(video.available_at(&place, &p.timing), 1_735_689_604.0);
    let audio = p.track("audio").unwrap();
    assert_eq!(audio.newest_available(t, &p.timing), Some(edge));
    assert_eq!(
        audio.place(edge + 1, &p.timing).unwrap().url,
        url("http://o/live/ch/audio/867844802.m4s")
    );
    // Nothing is available before the first segment has ended.
    assert_eq!(video.newest_available(1.5, &p.timing), None);
    assert_eq!(video.live_start(1.5, &p.timing), None);
    // A player joins three segments back from the edge, within the time shift buffer: a
    // channel a few seconds old announces only that much.
    assert_eq!(video.live_start(t, &p.timing), Some(edge - 2));
    let mut young = p.timing.clone();
    young.time_shift_buffer = Some(4.0);
    assert_eq!(video.live_start(t, &young), Some(edge - 1));
    young.time_shift_buffer = Some(0.0);
    assert_eq!(video.live_start(t, &young), Some(edge));

    assert_eq!(p.choose(&Rendition::Top, 0).unwrap(), ["720p", "audio"]);
    assert_eq!(p.choose(&Rendition::Bottom, 0).unwrap(), ["360p", "audio"]);
    assert_eq!(
        p.choose(&Rendition::Named("360p".into()), 0).unwrap(),
        ["360p", "audio"]
    );
    assert!(p.choose(&Rendition::Named("1080p".into()), 0).is_err());
}

#[test]
fn encores_vod_mpd_lists_its_timeline() {
    let text = include_str!("../../package/testdata/vod/manifest.mpd");
    let p = read(text, &url("http://o/vod/x/manifest.mpd")).unwrap();
    assert!(!p.timing.dynamic);
    assert_eq!(p.refresh, None);
    assert!((p.timing.end.unwrap() - 9.51).abs() < 1e-9);
    let video = p.track("1080p").unwrap();
    let places: Vec<(f64, f64)> = (0..10)
        .map_while(|n| video.place(n, &p.timing))
        .map(|pl| (pl.start, pl.duration))
        .collect();
    assert_eq!(
        places,
        [
            (0.0, 2.002),
            (2.002, 2.002),
            (4.004, 2.002),
            (6.006, 2.002),
            (8.008, 1.5015)
        ]
    );
    assert_eq!(
        video.place(4, &p.timing).unwrap().url,
        url("http://o/vod/x/1080p/4.m4s")
    );
}

#[test]
fn templates_expand_like_the_standard_says() {
    let mpd = r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT10S">
  <BaseURL>https://cdn.example/a/</BaseURL>
  <Period>
    <AdaptationSet mimeType="video/mp4">
      <SegmentTemplate timescale="1000" duration="4000" startNumber="7"
          media="v/$RepresentationID$-$Number%05d$-$Bandwidth$-$Time$$$.m4s"/>
      <Representation id="hd" bandwidth="5000"><BaseURL>hd/</BaseURL></Representation>
    </AdaptationSet>
  </Period>
</MPD>"#;
    let p = read(mpd, &url("http://o/x.mpd")).unwrap();
    let t = p.track("hd").unwrap();
    assert_eq!(t.init_url(), None);
    let places: Vec<Place> = (7..20).map_while(|n| t.place(n, &p.timing)).collect();
    assert_eq!(places.len(), 3, "10 s of 4 s segments");
    assert_eq!(
        places[1].url,
        url("https://cdn.example/a/hd/v/hd-00008-5000-4000$.m4s")
    );
    assert_eq!(places[2].duration, 4.0);
}

#[test]
fn what_a_player_cannot_follow_is_refused_with_a_reason() {
    let list = r#"<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static">
  <Period><AdaptationSet mimeType="video/mp4"><Representation id="a" bandwidth="1">
    <SegmentList><SegmentURL media="a.m4s"/></SegmentList>
  </Representation></AdaptationSet></Period></MPD>"#;
    let e = read(list, &url("http://o/x.mpd")).unwrap_err();
    assert!(e.contains("SegmentList"), "{e}");
    assert!(read("<html></html>", &url("http://o/x.mpd")).is_err());
    assert!(read("#EXTM3U", &url("http://o/x.mpd")).is_err());
}

#[test]
fn instants_parse_as_unix_seconds() {
    assert_eq!(parse_instant("1970-01-01T00:00:00Z"), Some(0.0));
    assert_eq!(
        parse_instant("2025-01-01T00:00:05.300Z"),
        Some(1_735_689_605.3)
    );
    assert_eq!(
        parse_instant("2000-01-01T01:00:00+01:00"),
        Some(946_684_800.0)
    );
    assert_eq!(
        parse_instant(" 2024-02-29T23:59:59.5Z\n"),
        Some(1_709_251_199.5)
    );
    for bad in [
        "",
        "2025-01-01",
        "2025-13-01T00:00:00Z",
        "yesterday",
        "2025-01-01Tnoon",
    ] {
        assert_eq!(parse_instant(bad), None, "{bad:?}");
    }
}
