use super::*;

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
