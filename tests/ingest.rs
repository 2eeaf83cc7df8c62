//! CMAF ingest and redundant pipelines (docs/origin.md §15): publishers push live channels to
//! an origin that does not encode (`encore origin --ingest`); two Encore nodes publish the
//! same channel and the origin serves, per segment number, a copy that passes its checks.
//!
//! Feeds and players are real: an FFmpeg UDP feed sent to both nodes (`-f tee`), FFmpeg's
//! own `dash` muxer pushing with `-method PUT`, hls.js and dash.js in Chromium, ffmpeg reading
//! the origin's output.

mod common;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/live_feed.rs"]
mod live_feed;
#[path = "common/s3.rs"]
mod s3;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mp4_atom::{Any, Encode};
use serde_json::Value;

use daemon::Daemon;
use s3::OriginOnly;

const TOKEN_A: &str = "token-of-publisher-a-0123";
const TOKEN_B: &str = "token-of-publisher-b-4567";

/// `encore origin --ingest` with publishers `a` and `b`.
struct IngestOrigin {
    base: String,
    _origin: OriginOnly,
    _dir: tempfile::TempDir,
}

impl IngestOrigin {
    fn start() -> IngestOrigin {
        let dir = common::tempdir();
        let file = dir.path().join("ingest.toml");
        std::fs::write(
            &file,
            format!(
                "segment_duration = 2\n\
                 [[publishers]]\nname = \"a\"\ntoken = \"{TOKEN_A}\"\n\
                 [[publishers]]\nname = \"b\"\ntoken = \"{TOKEN_B}\"\n"
            ),
        )
        .unwrap();
        let origin = OriginOnly::start_with(&["--ingest", file.to_str().unwrap()], &[]);
        IngestOrigin {
            base: origin.base.clone(),
            _origin: origin,
            _dir: dir,
        }
    }

    fn get(&self, path: &str) -> reqwest::blocking::Response {
        reqwest::blocking::Client::new()
            .get(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(10))
            .send()
            .unwrap()
    }

    /// The channel's state as its publishers see it.
    fn state(&self, channel: &str) -> Value {
        reqwest::blocking::Client::new()
            .get(format!("{}/ingest/{channel}", self.base))
            .bearer_auth(TOKEN_A)
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    fn put(&self, path: &str, token: Option<&str>, body: Vec<u8>) -> reqwest::blocking::Response {
        let mut req = reqwest::blocking::Client::new()
            .put(format!("{}/ingest/{path}", self.base))
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().unwrap()
    }
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Segment numbers a media playlist lists.
fn listed(playlist: &str) -> Vec<u64> {
    playlist
        .lines()
        .filter_map(|l| l.strip_suffix(".m4s")?.parse().ok())
        .collect()
}

/// A node encoding channel `news` from `input` and publishing it to `origin` with `token`.
fn node(input: &str, origin: &IngestOrigin, token: &str) -> Daemon {
    Daemon::start(&format!(
        "[[channels]]\nname = \"news\"\ninput = \"{input}\"\nformat = \"320x180@15\"\n\
         ladder = \"180:300k\"\npreset = \"ultrafast\"\n\
         publish_to = \"{}/ingest/news\"\npublish_token = \"{token}\"\n",
        origin.base
    ))
}

/// `tfdt` and summed sample durations of a media segment.
fn timing(bytes: &[u8]) -> (u64, u64) {
    let mut out = (0, 0);
    for b in common::boxes(bytes) {
        if let Any::Moof(m) = b {
            let traf = &m.traf[0];
            out.0 = traf.tfdt.as_ref().unwrap().base_media_decode_time;
            out.1 += traf
                .trun
                .iter()
                .flat_map(|t| t.samples.iter())
                .map(|s| u64::from(s.duration.unwrap()))
                .sum::<u64>();
        }
    }
    out
}

/// Media timescale of an init segment.
fn timescale(init: &[u8]) -> u64 {
    common::boxes(init)
        .into_iter()
        .find_map(|b| match b {
            Any::Moov(m) => Some(u64::from(m.trak[0].mdia.mdhd.timescale)),
            _ => None,
        })
        .unwrap()
}

/// `segment` moved `shift` ticks later with its last `drop` frames cut: a copy of the next
/// number that lost frames on the way.
fn damaged_copy(segment: &[u8], shift: u64, drop: usize) -> Vec<u8> {
    let mut boxes = common::boxes(segment);
    let mut kept_bytes = 0usize;
    for b in &mut boxes {
        if let Any::Moof(m) = b {
            let traf = &mut m.traf[0];
            traf.tfdt.as_mut().unwrap().base_media_decode_time += shift;
            let mp4_atom::TrunSamples::Explicit(entries) = &mut traf.trun[0].samples else {
                panic!("per-sample entries")
            };
            let keep = entries.len() - drop;
            entries.truncate(keep);
            kept_bytes = entries.iter().map(|e| e.size.unwrap() as usize).sum();
        }
    }
    // The moof shrank: the data offset (moof size + mdat header) follows it.
    for _ in 0..2 {
        let moof_len = boxes
            .iter()
            .find_map(|b| match b {
                Any::Moof(m) => {
                    let mut buf = Vec::new();
                    m.encode(&mut buf).unwrap();
                    Some(buf.len())
                }
                _ => None,
            })
            .unwrap();
        for b in &mut boxes {
            if let Any::Moof(m) = b {
                m.traf[0].trun[0].data_offset = Some((moof_len + 8) as i32);
            }
        }
    }
    let mut out = Vec::new();
    for b in &mut boxes {
        if let Any::Mdat(m) = b {
            m.data.truncate(kept_bytes);
        }
        b.encode(&mut out).unwrap();
    }
    out
}

/// Without a publisher's token a PUT gets 401 (with the challenge) and nothing is stored: the
/// channel does not exist afterwards, for players or for publishers.
#[test]
fn without_a_token_a_put_gets_401_and_nothing_is_stored() {
    let origin = IngestOrigin::start();
    let body = b"<MPD type=\"dynamic\"/>".to_vec();
    for token in [None, Some("not-a-token-of-anyone-at-all")] {
        let res = origin.put("secret/manifest.mpd", token, body.clone());
        assert_eq!(res.status(), 401, "token {token:?}");
        let challenge = res.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }
    // Basic with the token as password is no better without the right token.
    let res = reqwest::blocking::Client::new()
        .put(format!("{}/ingest/secret/init-stream0.m4s", origin.base))
        .basic_auth("a", Some("wrong-password-wrong-password"))
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(origin.get("/live/secret/manifest.mpd").status(), 404);
    assert_eq!(origin.get("/live/secret/init-stream0.m4s").status(), 404);
    let res = reqwest::blocking::Client::new()
        .get(format!("{}/ingest/secret", origin.base))
        .bearer_auth(TOKEN_A)
        .send()
        .unwrap();
    assert_eq!(res.status(), 404, "no channel was opened");
    // Paths that leave the channel's folder are refused even with a token.
    let res = origin.put("secret/..%2F..%2Fetc/x.m4s", Some(TOKEN_A), vec![0; 8]);
    assert!(res.status().is_client_error(), "{}", res.status());
    // With the token, the same PUT is stored and served.
    assert_eq!(
        origin
            .put("secret/manifest.mpd", Some(TOKEN_A), body.clone())
            .status(),
        201
    );
    assert_eq!(
        origin
            .put("secret/init-stream0.m4s", Some(TOKEN_A), vec![1, 2, 3])
            .status(),
        201
    );
    let served = origin.get("/live/secret/manifest.mpd");
    assert_eq!(served.status(), 200);
    assert_eq!(served.bytes().unwrap().to_vec(), body);
    // The scheme's name is case-insensitive.
    let res = reqwest::blocking::Client::new()
        .put(format!("{}/ingest/secret/manifest.mpd", origin.base))
        .header("authorization", format!("bearer {TOKEN_A}"))
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(res.status(), 201);

    // A body is read only for a publisher: a stranger announcing 60 MiB gets its 401 before
    // sending a byte of it, and a publisher announcing too much gets 413 the same way.
    for (token, want) in [(None, "401"), (Some(TOKEN_A), "413")] {
        let length = if token.is_some() { 100 << 20 } else { 60 << 20 };
        let answer = headers_only_put(&origin.base, "secret/big.m4s", token, length);
        assert!(answer.starts_with(&format!("HTTP/1.1 {want}")), "{answer}");
    }
}

/// Sends a PUT's head announcing `length` bytes, and no body; the status line answered.
fn headers_only_put(base: &str, path: &str, token: Option<&str>, length: u64) -> String {
    use std::io::{BufRead, BufReader, Write};
    let host = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "PUT /ingest/{path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Length: {length}\r\n\r\n"
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .expect("answered without the body");
    line
}

/// FFmpeg's own DASH muxer publishing with `-method PUT` (its files under their own names,
/// sent with chunked transfer): the origin serves them as a live channel, and ffmpeg plays it.
#[test]
fn ffmpeg_pushing_dash_with_put_is_served_as_a_live_channel() {
    let origin = IngestOrigin::start();
    let header = format!("headers='Authorization: Bearer {TOKEN_A}'");
    let url = format!("{}/ingest/ff/manifest.mpd", origin.base);
    // ffmpeg -re -f lavfi -i testsrc2=size=320x180:rate=15 -f lavfi -i sine=sample_rate=48000
    //   -t 30 -c:v libx264 -preset ultrafast -g 30 -c:a aac -f dash -seg_duration 2
    //   -window_size 5 -extra_window_size 3 -method PUT -http_opts headers='…' URL
    let push = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-re", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x180:rate=15")
        .args(["-f", "lavfi", "-i", "sine=sample_rate=48000", "-t", "30"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "30"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "dash"])
        .args([
            "-seg_duration",
            "2",
            "-window_size",
            "5",
            "-extra_window_size",
            "3",
        ])
        .args(["-method", "PUT", "-http_opts", &header, &url])
        .stdin(Stdio::null())
        .spawn()
        .expect("ffmpeg CLI");
    let _push = live_feed::Publisher(push);
    wait_until(
        "the MPD lists three segments",
        Duration::from_secs(30),
        || {
            let r = origin.get("/live/ff/manifest.mpd");
            r.status() == 200 && origin.state("ff")["files"].as_u64().unwrap_or(0) >= 7
        },
    );
    let state = origin.state("ff");
    assert_eq!(state["form"], "pass-through", "{state}");
    let mpd = origin.get("/live/ff/manifest.mpd");
    assert_eq!(mpd.headers()["content-type"], "application/dash+xml");
    let mpd = mpd.text().unwrap();
    assert!(mpd.contains("type=\"dynamic\""), "{mpd}");
    // ffmpeg plays it: four seconds of video frames decoded from the origin.
    let out = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-i",
            &format!("{}/live/ff/manifest.mpd", origin.base),
        ])
        .args(["-t", "4", "-map", "0:v", "-f", "framecrc", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    assert!(frames >= 45, "{frames} frames decoded");
}

/// A publisher sends a copy of one segment with frames missing before the other publisher's
/// whole copy: the origin holds it, serves the whole copy, and counts the refusal on the
/// channel's state and on `/metrics`.
#[test]
fn a_damaged_copy_is_refused_and_the_other_publishers_copy_is_served() {
    let origin = IngestOrigin::start();
    let b = node("test:320x180@15", &origin, TOKEN_B);
    let playlist = "/live/news/180p/index.m3u8";
    wait_until(
        "the origin lists 2 segments",
        Duration::from_secs(40),
        || {
            let r = origin.get(playlist);
            r.status() == 200 && listed(&r.text().unwrap()).len() >= 2
        },
    );
    // Publisher A, played by this test: B's own init (interchangeable: accepted) ...
    let init = b.get("/live/news/180p/init.mp4").bytes().unwrap().to_vec();
    assert_eq!(
        origin
            .put("news/180p/init.mp4", Some(TOKEN_A), init.clone())
            .status(),
        201
    );
    // ... and, as soon as B published segment N, a copy of N + 1 made from it: ten frames
    // (of 30) gone, moved to N + 1's place on the timeline.
    let newest = *listed(&b.get(playlist).text().unwrap()).last().unwrap();
    wait_until(
        "B publishes the next segment",
        Duration::from_secs(10),
        || listed(&b.get(playlist).text().unwrap()).last() > Some(&newest),
    );
    let n = newest + 1;
    let whole = b.get(&format!("/live/news/180p/{n}.m4s")).bytes().unwrap();
    let shift = 2 * timescale(&init);
    let target = n + 1;
    let damaged = damaged_copy(&whole, shift, 10);
    assert_eq!(timing(&damaged).0, timing(&whole).0 + shift);
    let res = origin.put(
        &format!("news/180p/{target}.m4s"),
        Some(TOKEN_A),
        damaged.clone(),
    );
    assert_eq!(res.status(), 202, "held for a better copy");

    wait_until("the origin lists N + 1", Duration::from_secs(10), || {
        listed(&origin.get(playlist).text().unwrap()).contains(&target)
    });
    let served = origin
        .get(&format!("/live/news/180p/{target}.m4s"))
        .bytes()
        .unwrap();
    let from_b = b
        .get(&format!("/live/news/180p/{target}.m4s"))
        .bytes()
        .unwrap();
    assert_eq!(served, from_b, "B's whole copy is served");
    assert_ne!(served.to_vec(), damaged);
    let state = origin.state("news");
    println!("{state}");
    let refused = &state["publishers"]["a"]["refused"];
    assert_eq!(refused["duration"], 1, "{state}");
    assert!(state["publishers"]["b"]["served"].as_u64().unwrap() >= 3);
    let metrics = origin.get("/metrics").text().unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("encore_ingest_refusals_total")
                && l.contains("publisher=\"a\"")
                && l.contains("reason=\"duration\"")
        })
        .unwrap_or_else(|| panic!("no refusal counted: {metrics}"));
    assert!(line.ends_with(" 1"), "{line}");
    // An init that cannot stand in for the channel's is refused with the reason.
    let mut other = Vec::new();
    for mut b in common::boxes(&init) {
        if let Any::Moov(m) = &mut b {
            m.trak[0].mdia.mdhd.timescale = 1000;
        }
        b.encode(&mut other).unwrap();
    }
    let res = origin.put("news/180p/init.mp4", Some(TOKEN_A), other);
    assert_eq!(res.status(), 409);
    assert!(res.text().unwrap().contains("timescale"));
}

/// The publisher counts of the origin's state: (served, duplicates, refusals).
fn counts(state: &Value, publisher: &str) -> (u64, u64, u64) {
    let p = &state["publishers"][publisher];
    let refused = p["refused"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
    (
        p["served"].as_u64().unwrap_or(0),
        p["duplicates"].as_u64().unwrap_or(0),
        refused,
    )
}

/// Stalls a player reported: places where playback stopped for data, a second apart or more.
fn stalls(report: &Value) -> Vec<f64> {
    let mut places: Vec<f64> = report["stalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    places.sort_by(f64::total_cmp);
    places.dedup_by(|b, a| *b - *a < 1.0);
    places
}

/// Two nodes encode the same UDP feed and publish channel `news` to an origin that does not
/// encode. While both run, every segment the origin serves is a complete copy of one of
/// theirs, with a continuous timeline. hls.js and dash.js play from the origin while A is
/// killed, comes back (and is used again), and then B is killed: neither player stalls, and
/// the origin's playlists never skip a number. When A then stops in good order, the origin's
/// playlists end.
#[test]
fn two_pipelines_keep_the_channel_on_air_when_either_fails() {
    let players = common::web_players_available();
    let origin = IngestOrigin::start();
    let (port_a, port_b) = (live_feed::free_udp_port(), live_feed::free_udp_port());
    // ffmpeg -re -f lavfi -i testsrc2=size=320x180:rate=15 -f lavfi -i sine=sample_rate=48000
    //   -t 150 -map 0:v -map 1:a -c:v libx264 -preset ultrafast -g 15 -c:a aac
    //   -f tee "[f=mpegts]udp://127.0.0.1:A?pkt_size=1316|[f=mpegts]udp://127.0.0.1:B?pkt_size=1316"
    let slaves = format!(
        "[f=mpegts]udp://127.0.0.1:{port_a}?pkt_size=1316|[f=mpegts]udp://127.0.0.1:{port_b}?pkt_size=1316"
    );
    let feed = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-re", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x180:rate=15")
        .args(["-f", "lavfi", "-i", "sine=sample_rate=48000", "-t", "150"])
        .args([
            "-map",
            "0:v",
            "-map",
            "1:a",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ])
        .args([
            "-g", "15", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "tee", &slaves,
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("ffmpeg CLI");
    let _feed = live_feed::Publisher(feed);
    let input_a = format!("udp://127.0.0.1:{port_a}");
    let input_b = format!("udp://127.0.0.1:{port_b}");
    let a = node(&input_a, &origin, TOKEN_A);
    let b = node(&input_b, &origin, TOKEN_B);
    let playlist = "/live/news/180p/index.m3u8";
    wait_until(
        "the origin lists 4 segments",
        Duration::from_secs(60),
        || {
            let r = origin.get(playlist);
            r.status() == 200 && listed(&r.text().unwrap()).len() >= 4
        },
    );
    wait_until("both publishers are heard", Duration::from_secs(20), || {
        let s = origin.state("news");
        let (a, b) = (counts(&s, "a"), counts(&s, "b"));
        a.0 + a.1 > 0 && b.0 + b.1 > 0
    });

    // Both healthy: every served segment is one of theirs, whole, and the timeline runs on.
    std::thread::sleep(Duration::from_secs(4));
    let numbers = listed(&origin.get(playlist).text().unwrap());
    let window = &numbers[numbers.len() - 3..];
    let mut previous_end = None;
    for n in window {
        let path = format!("/live/news/180p/{n}.m4s");
        let served = origin.get(&path).bytes().unwrap();
        let copies = [a.get(&path).bytes().unwrap(), b.get(&path).bytes().unwrap()];
        assert!(
            copies.contains(&served),
            "segment {n}: {} bytes served, A's {} and B's {}",
            served.len(),
            copies[0].len(),
            copies[1].len()
        );
        let (tfdt, duration) = timing(&served);
        if let Some(end) = previous_end {
            assert_eq!(tfdt, end, "segment {n} starts where the one before ended");
        }
        previous_end = Some(tfdt + duration);
    }

    // The origin's playlist every 300 ms, for holes.
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (watching, url) = (watching.clone(), format!("{}{playlist}", origin.base));
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            let mut seen = Vec::new();
            while watching.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(text) = client.get(&url).send().and_then(|r| r.text()) {
                    seen.push(text);
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            seen
        })
    };
    let play = |kind: &'static str, file: &str| {
        let url = format!("{}/live/news/{file}", origin.base);
        std::thread::spawn(move || (url.clone(), common::play(kind, &url, 60)))
    };
    let hls = players.then(|| play("hls", "master.m3u8"));
    let dash = players.then(|| play("dash", "manifest.mpd"));

    std::thread::sleep(Duration::from_secs(15));
    drop(a); // SIGKILL
    println!("A killed");
    std::thread::sleep(Duration::from_secs(10));
    let before = counts(&origin.state("news"), "a");
    let a = node(&input_a, &origin, TOKEN_A);
    println!("A started again");
    wait_until(
        "A's copies are taken again",
        Duration::from_secs(25),
        || {
            let now = counts(&origin.state("news"), "a");
            now.0 + now.1 >= before.0 + before.1 + 3
        },
    );
    drop(b); // SIGKILL
    println!("B killed");
    let served_before = counts(&origin.state("news"), "a").0;
    wait_until("A carries the channel", Duration::from_secs(15), || {
        counts(&origin.state("news"), "a").0 >= served_before + 3
    });

    let reports: Vec<(String, Value)> = [hls, dash]
        .into_iter()
        .flatten()
        .map(|p| p.join().unwrap())
        .collect();
    watching.store(false, std::sync::atomic::Ordering::SeqCst);
    let seen = watcher.join().unwrap();
    let state = origin.state("news");
    println!("{state}");
    for text in &seen {
        let n = listed(text);
        assert!(
            n.windows(2).all(|w| w[1] == w[0] + 1) && !text.contains("#EXT-X-GAP"),
            "a hole in the origin's playlist: {text}"
        );
    }
    for (url, report) in &reports {
        let kind = if url.ends_with(".mpd") { "dash" } else { "hls" };
        common::assert_played(kind, url, report, 1, 40.0);
        assert!(stalls(report).is_empty(), "{kind} stalled: {report}");
    }
    // A, the last publisher, stops in good order: its final manifests reach the origin,
    // whose playlists end.
    assert!(a.terminate().success());
    wait_until(
        "the origin's playlist ends",
        Duration::from_secs(10),
        || {
            origin
                .get(playlist)
                .text()
                .unwrap()
                .contains("#EXT-X-ENDLIST")
        },
    );
    assert!(
        players,
        "Chromium, node or tests/players/node_modules missing: `make test-deps`"
    );
}
