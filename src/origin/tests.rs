//! The origin over real HTTP: the router served on 127.0.0.1:0, requests from reqwest or a raw
//! TCP stream. Time-dependent rules use a channel epoch placed relative to now, with margins of
//! hundreds of milliseconds, and assert on status and headers, never on durations.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const D1: Duration = Duration::from_secs(1);

async fn start(origin: &Origin) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = origin.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Timing where segment `number` is due `due_in_ms` from now (negative: already due).
fn timing(number: u64, due_in_ms: i64, d: Duration, dvr: Duration) -> ChannelTiming {
    let now = SystemTime::now();
    let span = d * (number as u32 + 1);
    let due = if due_in_ms >= 0 {
        now + Duration::from_millis(due_in_ms as u64)
    } else {
        now - Duration::from_millis((-due_in_ms) as u64)
    };
    ChannelTiming {
        segment_duration: d,
        epoch: due - span,
        dvr_window: dvr,
    }
}

/// A body whose every byte depends on `tag` and position, so a mix-up or a torn body shows.
fn body(tag: u8, len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| tag.wrapping_mul(31).wrapping_add(i as u8))
            .collect::<Vec<u8>>(),
    )
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .unwrap()
}

async fn get(url: &str) -> reqwest::Response {
    client().get(url).send().await.unwrap()
}

/// Sends `target` verbatim (no client-side URL normalisation); returns the status code.
async fn raw_status(base: &str, target: &str) -> u16 {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    let status = text.split_whitespace().nth(1).expect("a status line");
    status.parse().unwrap()
}

/// Waits (bounded) until the origin counts `n` requests in flight.
async fn wait_in_flight(origin: &Origin, n: usize) {
    for _ in 0..2000 {
        if origin.in_flight() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("in flight: {} (wanted {n})", origin.in_flight());
}

fn live_channel(origin: &Origin, name: &str, t: ChannelTiming) -> ChannelPublisher {
    let p = origin.add_channel(name, t);
    p.publish_manifest("master.m3u8", Bytes::from_static(b"#EXTM3U\n"));
    p.publish_manifest("manifest.mpd", Bytes::from_static(b"<MPD/>"));
    p.publish_manifest("720p/index.m3u8", Bytes::from_static(b"#EXTM3U\n#720p\n"));
    p.publish_init("720p", Bytes::from_static(b"ftyp-moov"));
    p
}

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
async fn overload_sheds_dvr_first_then_everything_with_503() {
    let cfg = OriginConfig {
        max_in_flight: 2,
        low_priority_max_in_flight: Some(1),
        retry_after: Duration::from_secs(3),
        ..OriginConfig::default()
    };
    let origin = Origin::new(cfg);
    let base = start(&origin).await;
    // D = 2 s; segment 100 due in 1.5 s (held, deadline 3.5 s from now); 90 is DVR.
    let d = Duration::from_secs(2);
    let p = live_channel(
        &origin,
        "ch",
        timing(100, 1_500, d, Duration::from_secs(3600)),
    );
    p.publish_segment("720p", 90, body(90, 100));
    p.publish_segment("720p", 98, body(98, 100));
    let c = client();
    let dvr = format!("{base}/live/ch/720p/90.m4s");
    assert_eq!(c.get(&dvr).send().await.unwrap().status(), StatusCode::OK);

    let held = format!("{base}/live/ch/720p/100.m4s");
    let first = tokio::spawn({
        let (c, u) = (c.clone(), held.clone());
        async move { c.get(u).send().await.unwrap() }
    });
    wait_in_flight(&origin, 1).await;

    // One in flight: DVR (limit 1) refused; manifests and the live edge (limit 2) served.
    let r = c.get(&dvr).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(r.headers(), "retry-after"), "3");
    assert_eq!(header(r.headers(), "cache-control"), "max-age=1");
    assert_eq!(header(r.headers(), "access-control-allow-origin"), "*");
    let r = c
        .get(format!("{base}/live/ch/master.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .get(format!("{base}/live/ch/720p/98.m4s"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let second = tokio::spawn({
        let (c, u) = (c.clone(), held.clone());
        async move { c.get(u).send().await.unwrap() }
    });
    wait_in_flight(&origin, 2).await;
    // Two in flight: everything refused.
    for path in [
        "/live/ch/master.m3u8",
        "/live/ch/720p/98.m4s",
        "/live/ch/720p/100.m4s",
    ] {
        let r = c.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
    }
    assert!(origin.shed_count() >= 4);

    p.publish_segment("720p", 100, body(100, 100));
    assert_eq!(first.await.unwrap().status(), StatusCode::OK);
    assert_eq!(second.await.unwrap().status(), StatusCode::OK);
    wait_in_flight(&origin, 0).await;
    assert_eq!(c.get(&dvr).send().await.unwrap().status(), StatusCode::OK);
}

#[test]
fn top_rungs_are_shed_before_bottom_rungs() {
    let origin = Origin::new(OriginConfig {
        max_in_flight: 8,
        low_priority_max_in_flight: Some(4),
        ..OriginConfig::default()
    });
    let rung = |rank| Priority::Rung { rank, count: 4 };
    // Limits: low 4; rungs 0..3 → 5, 6, 7, 8; essential 8.
    let mut held: Vec<_> = (0..4)
        .map(|_| origin.admit(Priority::Essential).unwrap())
        .collect();
    assert!(origin.admit(Priority::Low).is_err());
    held.push(origin.admit(rung(0)).unwrap()); // 5th
    assert!(origin.admit(rung(0)).is_err());
    held.push(origin.admit(rung(1)).unwrap()); // 6th
    assert!(origin.admit(rung(1)).is_err());
    held.push(origin.admit(rung(3)).unwrap()); // 7th
    assert!(origin.admit(rung(2)).is_err());
    held.push(origin.admit(Priority::Essential).unwrap()); // 8th
    assert!(origin.admit(rung(3)).is_err());
    assert!(origin.admit(Priority::Essential).is_err());
    assert_eq!(origin.in_flight(), 8);
    drop(held);
    assert_eq!(origin.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_ladder_sheds_top_rung_over_http() {
    let origin = Origin::new(OriginConfig {
        max_in_flight: 3,
        low_priority_max_in_flight: Some(1),
        ..OriginConfig::default()
    });
    let base = start(&origin).await;
    let p = live_channel(
        &origin,
        "ch",
        timing(
            100,
            1_500,
            Duration::from_secs(2),
            Duration::from_secs(3600),
        ),
    );
    p.set_rendition_order(&["1080p", "720p"]);
    p.publish_init("1080p", Bytes::from_static(b"init"));
    p.publish_segment("1080p", 99, body(1, 10));
    p.publish_segment("720p", 99, body(2, 10));
    // Limits: 1080p live edge 2, 720p live edge 3.
    let c = client();
    let held = format!("{base}/live/ch/720p/100.m4s");
    let pending: Vec<_> = (0..2)
        .map(|_| {
            let (c, u) = (c.clone(), held.clone());
            tokio::spawn(async move { c.get(u).send().await.unwrap() })
        })
        .collect();
    wait_in_flight(&origin, 2).await;
    let top = c
        .get(format!("{base}/live/ch/1080p/99.m4s"))
        .send()
        .await
        .unwrap();
    assert_eq!(top.status(), StatusCode::SERVICE_UNAVAILABLE);
    let bottom = c
        .get(format!("{base}/live/ch/720p/99.m4s"))
        .send()
        .await
        .unwrap();
    assert_eq!(bottom.status(), StatusCode::OK);
    p.publish_segment("720p", 100, body(3, 10));
    for h in pending {
        assert_eq!(h.await.unwrap().status(), StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vod_is_served_read_only_from_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("vod");
    let show = root.join("show");
    std::fs::create_dir_all(show.join("720p")).unwrap();
    std::fs::write(show.join("master.m3u8"), b"#EXTM3U\n#vod\n").unwrap();
    std::fs::write(show.join("manifest.mpd"), b"<MPD type=\"static\"/>").unwrap();
    std::fs::write(show.join("720p/init.mp4"), b"init").unwrap();
    let big = body(5, 1024 * 1024 + 17); // mapped, not read
    std::fs::write(show.join("720p/0.m4s"), &big).unwrap();
    std::fs::write(show.join("720p/1.m4s"), b"").unwrap();
    std::fs::write(show.join("720p/notes.txt"), b"private").unwrap();
    std::fs::write(show.join(".hidden.m3u8"), b"private").unwrap();
    std::fs::write(dir.path().join("secret.m3u8"), b"private").unwrap();
    std::fs::create_dir_all(show.join("dir.m3u8")).unwrap();

    let origin = Origin::new(OriginConfig {
        vod_root: Some(root),
        ..OriginConfig::default()
    });
    let base = start(&origin).await;
    let c = client();

    let r = c
        .get(format!("{base}/vod/show/master.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(r.headers(), "content-type"),
        "application/vnd.apple.mpegurl"
    );
    assert_eq!(header(r.headers(), "cache-control"), "public, max-age=300");
    assert_eq!(r.bytes().await.unwrap(), &b"#EXTM3U\n#vod\n"[..]);
    let r = c
        .get(format!("{base}/vod/show/manifest.mpd"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(r.headers(), "content-type"), "application/dash+xml");

    let url = format!("{base}/vod/show/720p/0.m4s");
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(r.headers(), "cache-control"),
        "public, max-age=86400, immutable"
    );
    assert_eq!(header(r.headers(), "content-type"), "video/mp4");
    let etag = header(r.headers(), "etag").to_owned();
    assert_eq!(r.bytes().await.unwrap(), big);
    // Stable ETag; 304; ranges on the mapped file.
    let r = c
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = c
        .get(&url)
        .header("range", "bytes=1048570-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap(), big.slice(1_048_570..));
    let r = c.head(&url).send().await.unwrap();
    assert_eq!(header(r.headers(), "content-length"), big.len().to_string());
    let r = c
        .get(format!("{base}/vod/show/720p/1.m4s"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(r.headers(), "content-length"), "0");
    let r = c
        .get(format!("{base}/vod/show/720p/init.mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), &b"init"[..]);

    for path in [
        "/vod/show/720p/notes.txt",
        "/vod/show/.hidden.m3u8",
        "/vod/show/720p/2.m4s",
        "/vod/show/dir.m3u8",
        "/vod/other/master.m3u8",
        "/vod/show/720p/x/0.m4s",
    ] {
        let r = c.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    for target in [
        "/vod/../secret.m3u8",
        "/vod/show/../secret.m3u8",
        "/vod/show/%2e%2e/%2e%2e/secret.m3u8",
        "/vod/%2e%2e/secret.m3u8",
        "/vod/show/%2e%2e%2f%2e%2e%2fsecret.m3u8",
        "/vod/%2e%2e%2fvod%2fshow/master.m3u8",
        "/vod/show/..%5c..%5csecret.m3u8",
        "/vod/show/%00.m3u8",
    ] {
        let status = raw_status(&base, target).await;
        assert!(status == 404 || status == 400, "{target}: {status}");
    }

    // No VOD folder configured: 404.
    let bare = Origin::new(OriginConfig::default());
    let base = start(&bare).await;
    let r = c
        .get(format!("{base}/vod/show/master.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
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

/// Sends `target` verbatim with an optional extra header line; returns status and body.
async fn raw_response(base: &str, target: &str, extra: &str) -> (u16, Vec<u8>) {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nHost: origin\r\n{extra}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(out.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&out[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, out[split..].to_vec())
}

/// Seeded random request targets and Range headers against live and VOD content: every answer
/// is a status the origin means to give, no file outside the published set is ever served, and
/// the origin is still healthy afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_request_targets_get_clean_answers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("vod");
    std::fs::create_dir_all(root.join("show/720p")).unwrap();
    std::fs::write(root.join("show/master.m3u8"), b"#EXTM3U\n#vod\n").unwrap();
    std::fs::write(root.join("show/720p/0.m4s"), body(3, 5000)).unwrap();
    std::fs::write(root.join("show/720p/notes.txt"), b"PRIVATE").unwrap();
    std::fs::write(dir.path().join("secret.m3u8"), b"PRIVATE").unwrap();
    let origin = Origin::new(OriginConfig {
        vod_root: Some(root),
        ..OriginConfig::default()
    });
    let base = start(&origin).await;
    let p = live_channel(
        &origin,
        "ch",
        timing(20, -100_000, D1, Duration::from_secs(3600)),
    );
    for n in 10..21 {
        p.publish_segment("720p", n, body(n as u8, 700));
    }

    let parts = [
        "live",
        "vod",
        "ch",
        "show",
        "720p",
        "master.m3u8",
        "index.m3u8",
        "manifest.mpd",
        "init.mp4",
        "0.m4s",
        "15.m4s",
        "20.m4s",
        "21.m4s",
        "99999999999999999999.m4s",
        "..",
        "%2e%2e",
        "%2f",
        "%00",
        "%ff",
        ".",
        "",
        "secret.m3u8",
        "notes.txt",
        "time",
        "healthz",
        "a%20b",
        "-1.m4s",
        "0x10.m4s",
        "%5c..",
        "~",
        "?",
        "#",
        ";",
        "*",
    ];
    let ranges = [
        "",
        "Range: bytes=0-99\r\n",
        "Range: bytes=-10\r\n",
        "Range: bytes=999999-\r\n",
        "Range: bytes=5-1\r\n",
        "Range: bytes=0-0,5-9\r\n",
        "Range: items=0-1\r\n",
        "Range: bytes=18446744073709551615-18446744073709551616\r\n",
    ];
    let mut seed = 0x0819_u64;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut served = 0;
    for _ in 0..400 {
        let mut target = String::new();
        for _ in 0..1 + next(5) {
            target.push('/');
            target += parts[next(parts.len())];
        }
        let range = ranges[next(ranges.len())];
        let (status, body) = raw_response(&base, &target, range).await;
        assert!(
            matches!(status, 200 | 206 | 400 | 404 | 405 | 416),
            "{target} [{range:?}]: {status}"
        );
        assert!(
            !body.windows(7).any(|w| w == b"PRIVATE"),
            "{target} served a private file"
        );
        served += usize::from(status == 200 || status == 206);
    }
    println!("{served} of 400 random targets served content");
    let r = get(&format!("{base}/healthz")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(origin.in_flight(), 0);
}

/// A VOD file served from memory after its first request is read again once the cache's
/// revalidation time has passed: an output replaced in place shows within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_vod_file_is_served_anew() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("vod");
    std::fs::create_dir_all(root.join("show")).unwrap();
    std::fs::write(root.join("show/master.m3u8"), b"#EXTM3U\n#one\n").unwrap();
    let origin = Origin::new(OriginConfig {
        vod_root: Some(root.clone()),
        ..OriginConfig::default()
    });
    let base = start(&origin).await;
    let url = format!("{base}/vod/show/master.m3u8");
    assert_eq!(get(&url).await.text().await.unwrap(), "#EXTM3U\n#one\n");
    assert_eq!(get(&url).await.text().await.unwrap(), "#EXTM3U\n#one\n");
    std::fs::write(root.join("show/master.m3u8"), b"#EXTM3U\n#two\n").unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(get(&url).await.text().await.unwrap(), "#EXTM3U\n#two\n");
    // Deleted: 404 once revalidated.
    std::fs::remove_file(root.join("show/master.m3u8")).unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(get(&url).await.status(), StatusCode::NOT_FOUND);
}
