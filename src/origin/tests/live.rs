use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_resources_carry_types_and_cache_headers() {
    let origin = Origin::new(OriginConfig::default());
    let base = start(&origin).await;
    // D = 4 s: manifests max-age 2; segment due long ago, DVR window one hour.
    let t = timing(
        100,
        -50_000,
        Duration::from_secs(4),
        Duration::from_secs(3600),
    );
    let p = live_channel(&origin, "ch", t);
    p.publish_segment("720p", 100, body(1, 1000));

    let r = get(&format!("{base}/live/ch/master.m3u8")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert_eq!(header(&h, "content-type"), "application/vnd.apple.mpegurl");
    assert_eq!(header(&h, "cache-control"), "public, max-age=2");
    assert_eq!(header(&h, "access-control-allow-origin"), "*");
    assert!(header(&h, "access-control-expose-headers").contains("ETag"));
    assert!(header(&h, "access-control-expose-headers").contains("Date"));
    assert!(header(&h, "etag").starts_with('"'));
    httpdate::parse_http_date(header(&h, "last-modified")).unwrap();
    assert_eq!(r.bytes().await.unwrap(), &b"#EXTM3U\n"[..]);

    let r = get(&format!("{base}/live/ch/manifest.mpd")).await;
    assert_eq!(header(r.headers(), "content-type"), "application/dash+xml");

    let r = get(&format!("{base}/live/ch/720p/index.m3u8")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), &b"#EXTM3U\n#720p\n"[..]);

    let r = get(&format!("{base}/live/ch/720p/init.mp4")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(r.headers(), "content-type"), "video/mp4");
    assert_eq!(header(r.headers(), "cache-control"), "public, max-age=4");

    let r = get(&format!("{base}/live/ch/720p/100.m4s")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert_eq!(header(&h, "content-type"), "video/mp4");
    assert_eq!(
        header(&h, "cache-control"),
        "public, max-age=3600, immutable"
    );
    assert_eq!(header(&h, "accept-ranges"), "bytes");
    assert_eq!(header(&h, "content-length"), "1000");
    assert_eq!(r.bytes().await.unwrap(), body(1, 1000));

    // D = 1 s: half a segment rounds to 0, so manifests must be revalidated every time.
    let t = timing(0, -10_000, D1, Duration::from_secs(60));
    live_channel(&origin, "fast", t);
    let r = get(&format!("{base}/live/fast/master.m3u8")).await;
    assert_eq!(
        header(r.headers(), "cache-control"),
        "public, max-age=0, no-cache"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_is_never_partial_while_segments_are_published() {
    let origin = Origin::new(OriginConfig::default());
    let base = start(&origin).await;
    // All segments long past their deadline: a missing one is an immediate 404, never held.
    let t = timing(0, -1_000_000, D1, Duration::from_secs(100_000));
    let p = live_channel(&origin, "ch", t);
    let edge = t.edge_at(SystemTime::now()).unwrap();
    let first = edge - 200;
    const LEN: usize = 300 * 1024;

    let publisher = std::thread::spawn(move || {
        for n in 0..40u64 {
            p.publish_segment("720p", first + n, body(n as u8, LEN));
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let c = client();
    let mut seen = 0;
    for round in 0..160u64 {
        let n = round % 40;
        let r = c
            .get(format!("{base}/live/ch/720p/{}.m4s", first + n))
            .send()
            .await
            .unwrap();
        match r.status() {
            StatusCode::OK => {
                assert_eq!(r.bytes().await.unwrap(), body(n as u8, LEN), "segment {n}");
                seen += 1;
            }
            StatusCode::NOT_FOUND => {}
            s => panic!("unexpected {s}"),
        }
    }
    publisher.join().unwrap();
    for n in 0..40u64 {
        let r = get(&format!("{base}/live/ch/720p/{}.m4s", first + n)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.bytes().await.unwrap(), body(n as u8, LEN));
    }
    // Whatever the interleaving, every 200 above was whole; most rounds see one.
    assert!(seen > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_just_ahead_is_held_until_published() {
    let origin = Origin::new(OriginConfig::default());
    let base = start(&origin).await;
    // Segment 10 due in 0.5 s (within one D): held; deadline 1.5 s from now.
    let p = live_channel(&origin, "ch", timing(10, 500, D1, Duration::from_secs(60)));
    let url = format!("{base}/live/ch/720p/10.m4s");
    let pending = tokio::spawn(async move { client().get(url).send().await.unwrap() });
    wait_in_flight(&origin, 1).await;
    assert!(!pending.is_finished());
    // Published from a plain thread, as the pipeline does.
    std::thread::spawn(move || p.publish_segment("720p", 10, body(10, 5000)))
        .join()
        .unwrap();
    let r = pending.await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), body(10, 5000));
    wait_in_flight(&origin, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_segment_is_held_too() {
    let origin = Origin::new(OriginConfig::default());
    let base = start(&origin).await;
    // Due 0.3 s ago, not published yet: the encoder is late; held until due + D.
    let p = live_channel(&origin, "ch", timing(7, -300, D1, Duration::from_secs(60)));
    let url = format!("{base}/live/ch/720p/7.m4s");
    let pending = tokio::spawn(async move { client().get(url).send().await.unwrap() });
    wait_in_flight(&origin, 1).await;
    p.publish_segment("720p", 7, body(7, 10));
    let r = pending.await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), body(7, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_request_gives_up_with_404_after_one_more_duration() {
    let origin = Origin::new(OriginConfig::default());
    let base = start(&origin).await;
    // Due in 0.2 s, never published: 404 at due + D.
    let _p = live_channel(&origin, "ch", timing(3, 200, D1, Duration::from_secs(60)));
    let r = get(&format!("{base}/live/ch/720p/3.m4s")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(r.headers(), "cache-control"), "max-age=1");
    assert_eq!(origin.in_flight(), 0);

    // Already past due + D and never published: 404 at once, not held.
    let _p = live_channel(
        &origin,
        "old",
        timing(3, -1500, D1, Duration::from_secs(60)),
    );
    let r = get(&format!("{base}/live/old/720p/3.m4s")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(r.headers(), "cache-control"), "max-age=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_and_removal_release_held_requests() {
    let origin = Origin::new(OriginConfig::default());
    let base = start(&origin).await;
    let p = live_channel(&origin, "ch", timing(5, 800, D1, Duration::from_secs(60)));
    let url = format!("{base}/live/ch/720p/5.m4s");
    let pending = tokio::spawn(async move { client().get(url).send().await.unwrap() });
    wait_in_flight(&origin, 1).await;
    p.end();
    assert_eq!(pending.await.unwrap().status(), StatusCode::NOT_FOUND);
    // After the end, numbers not published are 404 at once.
    let r = get(&format!("{base}/live/ch/720p/5.m4s")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Published ones (and the final manifests) are still served.
    p.publish_manifest(
        "manifest.mpd",
        Bytes::from_static(b"<MPD type=\"static\"/>"),
    );
    let r = get(&format!("{base}/live/ch/manifest.mpd")).await;
    assert_eq!(r.bytes().await.unwrap(), &b"<MPD type=\"static\"/>"[..]);

    let _p2 = live_channel(&origin, "gone", timing(5, 800, D1, Duration::from_secs(60)));
    let url = format!("{base}/live/gone/720p/5.m4s");
    let pending = tokio::spawn(async move { client().get(url).send().await.unwrap() });
    wait_in_flight(&origin, 1).await;
    origin.remove_channel("gone");
    assert_eq!(pending.await.unwrap().status(), StatusCode::NOT_FOUND);
    let r = get(&format!("{base}/live/gone/master.m3u8")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_channel_detaches_the_old_publisher() {
    let origin = Origin::new(OriginConfig::default());
    let base = start(&origin).await;
    let old = live_channel(&origin, "ch", timing(5, 800, D1, Duration::from_secs(60)));
    let url = format!("{base}/live/ch/720p/5.m4s");
    let pending = tokio::spawn(async move { client().get(url).send().await.unwrap() });
    wait_in_flight(&origin, 1).await;
    let new = origin.add_channel("ch", timing(5, -100_000, D1, Duration::from_secs(60)));
    assert_eq!(pending.await.unwrap().status(), StatusCode::NOT_FOUND);
    old.publish_manifest("master.m3u8", Bytes::from_static(b"old"));
    new.publish_manifest("master.m3u8", Bytes::from_static(b"new"));
    old.publish_manifest("master.m3u8", Bytes::from_static(b"old again"));
    let r = get(&format!("{base}/live/ch/master.m3u8")).await;
    assert_eq!(r.bytes().await.unwrap(), &b"new"[..]);
    assert_eq!(origin.channels(), vec!["ch".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_ahead_is_404_cached_until_due() {
    let origin = Origin::new(OriginConfig::default());
    let base = start(&origin).await;
    // Segment 20 due in 10.6 s: beyond one D, refused at once.
    let _p = live_channel(
        &origin,
        "ch",
        timing(20, 10_600, D1, Duration::from_secs(60)),
    );
    let r = get(&format!("{base}/live/ch/720p/20.m4s")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let cc = header(r.headers(), "cache-control");
    let secs: u64 = cc.strip_prefix("max-age=").unwrap().parse().unwrap();
    assert!((9..=10).contains(&secs), "{cc}");
    // Just over one D ahead: at least 1 s.
    let _p = live_channel(
        &origin,
        "ch2",
        timing(20, 1_900, D1, Duration::from_secs(60)),
    );
    let r = get(&format!("{base}/live/ch2/720p/20.m4s")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(r.headers(), "cache-control"), "max-age=1");
    // Far beyond any clock: still a clean 404.
    let r = get(&format!("{base}/live/ch/720p/{}.m4s", u64::MAX)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(origin.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_unknown_and_malformed_are_404_not_panics() {
    let origin = Origin::new(OriginConfig::default());
    let base = start(&origin).await;
    let p = live_channel(
        &origin,
        "ch",
        timing(9, -100_000, D1, Duration::from_secs(3600)),
    );
    for n in 0..10 {
        p.publish_segment("720p", n, body(n as u8, 100));
    }
    p.evict_before(4);
    for n in 0..4 {
        let r = get(&format!("{base}/live/ch/720p/{n}.m4s")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{n}");
    }
    let r = get(&format!("{base}/live/ch/720p/4.m4s")).await;
    assert_eq!(r.status(), StatusCode::OK);
    // Publishing below the window is ignored.
    p.publish_segment("720p", 1, body(1, 100));
    assert_eq!(
        get(&format!("{base}/live/ch/720p/1.m4s")).await.status(),
        StatusCode::NOT_FOUND
    );

    for path in [
        "/live/nope/master.m3u8",
        "/live/nope/720p/4.m4s",
        "/live/ch/1080p/4.m4s",
        "/live/ch/1080p/init.mp4",
        "/live/ch/720p/abc.m4s",
        "/live/ch/720p/04.m4s",
        "/live/ch/720p/-4.m4s",
        "/live/ch/720p/4.mp4",
        "/live/ch/720p/99999999999999999999999.m4s",
        "/live/ch/720p/4.m4s/extra",
        "/live/ch/other.m3u8",
        "/live/ch/720p/other.m3u8",
        "/live/ch/init.mp4",
        "/live/ch",
        "/live",
        "/nothing",
        "/vod/x/master.m3u8",
    ] {
        let r = get(&format!("{base}{path}")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    for target in [
        "/live/ch/../ch/master.m3u8",
        "/live/ch/720p/..",
        "/live/ch/720p/%2e%2e",
        "/live/ch/720p/%2F4.m4s",
        "/live/ch/%2e%2e%2f720p/4.m4s",
        "/live/ch/720p/%ff.m4s",
        "/live/ch/720p/4.m4s?x=1",
    ] {
        let status = raw_status(&base, target).await;
        if target.ends_with("?x=1") {
            assert_eq!(status, 200, "{target}");
        } else {
            assert!(status == 404 || status == 400, "{target}: {status}");
        }
    }
}
