use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_requests_get_304() {
    let origin = Origin::new(OriginConfig::default());
    let base = start(&origin).await;
    let p = live_channel(
        &origin,
        "ch",
        timing(9, -100_000, D1, Duration::from_secs(3600)),
    );
    p.publish_segment("720p", 9, body(9, 100));
    let c = client();
    for path in [
        "/live/ch/720p/9.m4s",
        "/live/ch/master.m3u8",
        "/live/ch/720p/init.mp4",
    ] {
        let url = format!("{base}{path}");
        let r = c.get(&url).send().await.unwrap();
        let etag = header(r.headers(), "etag").to_owned();
        let lm = header(r.headers(), "last-modified").to_owned();

        let r = c
            .get(&url)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(header(r.headers(), "etag"), etag);
        assert!(r.bytes().await.unwrap().is_empty());
        let weak_list = format!("\"nope\", W/{etag}");
        let r = c
            .get(&url)
            .header("if-none-match", weak_list)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        let r = c
            .get(&url)
            .header("if-none-match", "*")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        let r = c
            .get(&url)
            .header("if-none-match", "\"other\"")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        // If-None-Match wins over If-Modified-Since.
        let r = c
            .get(&url)
            .header("if-none-match", "\"other\"")
            .header("if-modified-since", &lm)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);

        let r = c
            .get(&url)
            .header("if-modified-since", &lm)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        let earlier = httpdate::fmt_http_date(
            httpdate::parse_http_date(&lm).unwrap() - Duration::from_secs(10),
        );
        let r = c
            .get(&url)
            .header("if-modified-since", earlier)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = c
            .get(&url)
            .header("if-modified-since", "garbage")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    // A manifest republished unchanged keeps its ETag; a changed one gets a new one.
    let url = format!("{base}/live/ch/master.m3u8");
    let e1 = header(c.get(&url).send().await.unwrap().headers(), "etag").to_owned();
    p.publish_manifest("master.m3u8", Bytes::from_static(b"#EXTM3U\n"));
    let e2 = header(c.get(&url).send().await.unwrap().headers(), "etag").to_owned();
    assert_eq!(e1, e2);
    p.publish_manifest("master.m3u8", Bytes::from_static(b"#EXTM3U\n#changed\n"));
    let e3 = header(c.get(&url).send().await.unwrap().headers(), "etag").to_owned();
    assert_ne!(e1, e3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_ranges_and_head() {
    let origin = Origin::new(OriginConfig::default());
    let base = start(&origin).await;
    let p = live_channel(
        &origin,
        "ch",
        timing(9, -100_000, D1, Duration::from_secs(3600)),
    );
    let full = body(9, 1000);
    p.publish_segment("720p", 9, full.clone());
    let url = format!("{base}/live/ch/720p/9.m4s");
    let c = client();

    for (range, first, last) in [
        ("bytes=0-9", 0, 9),
        ("bytes=990-", 990, 999),
        ("bytes=-5", 995, 999),
        ("bytes=500-5000", 500, 999),
    ] {
        let r = c.get(&url).header("range", range).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            header(r.headers(), "content-range"),
            format!("bytes {first}-{last}/1000")
        );
        assert_eq!(
            header(r.headers(), "content-length"),
            (last - first + 1).to_string()
        );
        assert_eq!(r.bytes().await.unwrap(), full.slice(first..=last));
    }
    let r = c
        .get(&url)
        .header("range", "bytes=1000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(r.headers(), "content-range"), "bytes */1000");
    // Several ranges or bad syntax: the whole body.
    let r = c
        .get(&url)
        .header("range", "bytes=0-1,5-6")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), full);
    // If-Range: applies with the current ETag, ignored with a stale one.
    let etag = header(c.get(&url).send().await.unwrap().headers(), "etag").to_owned();
    let r = c
        .get(&url)
        .header("range", "bytes=0-9")
        .header("if-range", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    let r = c
        .get(&url)
        .header("range", "bytes=0-9")
        .header("if-range", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let r = c.head(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(r.headers(), "content-length"), "1000");
    assert_eq!(header(r.headers(), "etag"), etag);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = c
        .head(format!("{base}/live/ch/master.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(r.headers(), "content-length"), "8");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_and_headers_on_errors() {
    let origin = Origin::new(OriginConfig::default());
    let base = start(&origin).await;
    let _p = live_channel(
        &origin,
        "ch",
        timing(9, -100_000, D1, Duration::from_secs(3600)),
    );
    let r = client()
        .request(
            reqwest::Method::OPTIONS,
            format!("{base}/live/ch/720p/9.m4s"),
        )
        .header("origin", "https://player.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "range")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let h = r.headers();
    assert_eq!(header(h, "access-control-allow-origin"), "*");
    assert!(header(h, "access-control-allow-methods").contains("GET"));
    assert!(header(h, "access-control-allow-headers").contains("Range"));
    assert!(h.get("vary").is_none());

    // Refusals carry CORS too, so a browser player sees the status and not a CORS error.
    let r = get(&format!("{base}/live/ch/720p/123456789.m4s")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(r.headers(), "access-control-allow-origin"), "*");
    let r = get(&format!("{base}/nowhere")).await;
    assert_eq!(header(r.headers(), "access-control-allow-origin"), "*");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_and_health() {
    let origin = Origin::new(OriginConfig::default());
    let base = start(&origin).await;
    let r = get(&format!("{base}/time")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(r.headers(), "content-type").starts_with("text/plain"));
    assert_eq!(header(r.headers(), "cache-control"), "no-store");
    assert_eq!(header(r.headers(), "access-control-allow-origin"), "*");
    let text = r.text().await.unwrap();
    // 2026-11-25T08:00:00.123Z
    let b = text.as_bytes();
    assert_eq!(b.len(), 24, "{text}");
    for (i, c) in b.iter().enumerate() {
        match i {
            4 | 7 => assert_eq!(*c, b'-'),
            10 => assert_eq!(*c, b'T'),
            13 | 16 => assert_eq!(*c, b':'),
            19 => assert_eq!(*c, b'.'),
            23 => assert_eq!(*c, b'Z'),
            _ => assert!(c.is_ascii_digit(), "{text}"),
        }
    }
    // The same year as an independent formatter.
    let http_now = httpdate::fmt_http_date(SystemTime::now());
    assert_eq!(&text[0..4], &http_now[12..16]);

    let r = get(&format!("{base}/healthz")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "ok\n");
}
