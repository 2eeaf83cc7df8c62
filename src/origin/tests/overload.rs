use super::*;

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
        .map(|_| origin.admit(Priority::Essential, None).unwrap())
        .collect();
    assert!(origin.admit(Priority::Low, None).is_err());
    held.push(origin.admit(rung(0), None).unwrap()); // 5th
    assert!(origin.admit(rung(0), None).is_err());
    held.push(origin.admit(rung(1), None).unwrap()); // 6th
    assert!(origin.admit(rung(1), None).is_err());
    held.push(origin.admit(rung(3), None).unwrap()); // 7th
    assert!(origin.admit(rung(2), None).is_err());
    held.push(origin.admit(Priority::Essential, None).unwrap()); // 8th
    assert!(origin.admit(rung(3), None).is_err());
    assert!(origin.admit(Priority::Essential, None).is_err());
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

/// A download counts until the connection has taken its body: a client that stops reading a
/// large segment still weighs on the origin (it did not: the count dropped before the body
/// was sent, so slow downloads never triggered shedding).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_download_counts_until_its_body_is_sent() {
    let origin = Origin::new(OriginConfig::default());
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
    // More than the socket buffers and the connection's own can hold.
    let size = 48 << 20;
    p.publish_segment("720p", 99, body(5, size));
    let addr = base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"GET /live/ch/720p/99.m4s HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The client reads nothing: the request stays counted.
    wait_in_flight(&origin, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(origin.in_flight(), 1);
    // Once the client has read it all, it no longer counts.
    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    while received < size {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after {received} bytes");
        received += n;
    }
    wait_in_flight(&origin, 0).await;
}
