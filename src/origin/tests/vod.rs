use super::*;

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
