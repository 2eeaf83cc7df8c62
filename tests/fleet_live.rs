//! Live channels in a fleet: two `encore serve` nodes on one real PostgreSQL both configured
//! with a channel, one carrying it (its lease row) and archiving it to a real S3-compatible
//! server, the other on standby; an `encore origin` with no channel of its own serves the
//! archive to hls.js. The carrying node is killed: the standby takes the channel over.

#[path = "common/api.rs"]
mod api;
mod common;
#[path = "common/postgres.rs"]
mod postgres;
#[path = "common/s3.rs"]
mod s3;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use api::{Backend, Node};
use common::tempdir;
use s3::{OriginOnly, S3Server};

const LEASE_SECONDS: f64 = 4.0;
const SEGMENT_SECONDS: f64 = 4.0;

/// Both nodes carry the same channel; leases run out after 4 s (30 s by default). D = 4 s:
/// the worst takeover by construction is lease + (D/2 + 0.2 s) + D + publish latency.
fn config() -> String {
    format!(
        "lease_time = {LEASE_SECONDS}
store = \"s3://media/encore\"

[[channels]]
name = \"news\"
input = \"test:640x360@25\"
ladder = \"360:800k,180:300k\"
segment_duration = {SEGMENT_SECONDS}
archive = true
"
    )
}

/// The channel as `node` lists it.
fn news(node: &Node) -> Value {
    let listed = node.get("/v1/channels");
    assert_eq!(listed.status, 200, "{}", listed.text);
    listed.json["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "news")
        .cloned()
        .unwrap_or_else(|| panic!("no channel news: {}", listed.text))
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Media segments of a rendition in the bucket: number and when the store wrote it.
fn stored_segments(folder: &Path) -> Vec<(u64, SystemTime)> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, SystemTime)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let number = name.strip_suffix(".m4s")?.parse().ok()?;
            Some((number, e.metadata().ok()?.modified().ok()?))
        })
        .collect();
    found.sort();
    found
}

/// The media sequence and segment numbers of an HLS media playlist.
type Listed = (u64, Vec<u64>);

fn listed(playlist: &str) -> Listed {
    let sequence = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let numbers = playlist
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim().strip_suffix(".m4s")?.parse().ok())
        .collect();
    (sequence, numbers)
}

/// Node A carries the channel and archives it; B waits on standby. A is killed (SIGKILL) while
/// hls.js plays the archive through an origin that does not encode: B takes the channel
/// within lease time + 2·D (measured to the moment the store wrote B's first segment), its
/// segment numbers continue A's with none written twice, the origin's playlists never go
/// back, and the player stalls at most once. B's orderly stop gives the lease back without
/// ending the archived playlists (the channel goes on elsewhere).
#[test]
fn a_dead_nodes_channel_moves_to_the_standby_and_the_player_goes_on() {
    let players = common::web_players_available();
    let pg = Backend::new(true);
    let s3 = S3Server::start("media");
    let env = s3.env(s3::SECRET_KEY);
    let (dir_a, dir_b) = (tempdir(), tempdir());
    let mut a = Node::start_named(dir_a.path(), &pg, "a", &config(), &env);
    wait_until("A carries the channel", Duration::from_secs(30), || {
        let c = news(&a);
        c["state"] == "on_air" && c["node"] == "a"
    });
    let mut b = Node::start_named(dir_b.path(), &pg, "b", &config(), &env);
    wait_until(
        "B lists the channel on standby",
        Duration::from_secs(30),
        || {
            let c = news(&b);
            c["state"] == "standby" && c["node"] == "a"
        },
    );

    let origin = OriginOnly::start("s3://media/encore", &env);
    let media = format!("{}/live/news/360p/index.m3u8", origin.base);
    let client = reqwest::blocking::Client::new();
    wait_until(
        "the archive lists 3 segments",
        Duration::from_secs(30),
        || {
            client
                .get(&media)
                .send()
                .ok()
                .filter(|r| r.status() == 200)
                .and_then(|r| r.text().ok())
                .is_some_and(|t| listed(&t).1.len() >= 3)
        },
    );

    // The origin's playlists, every 200 ms until the end.
    let snapshots: Arc<Mutex<Vec<Listed>>> = Arc::default();
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (snapshots, watching, media) = (snapshots.clone(), watching.clone(), media.clone());
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            while watching.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(r) = client.get(&media).send() {
                    if r.status() == 200 {
                        snapshots.lock().unwrap().push(listed(&r.text().unwrap()));
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let master = format!("{}/live/news/master.m3u8", origin.base);
    let player = players.then(|| {
        let master = master.clone();
        std::thread::spawn(move || common::play("hls", &master, 50))
    });

    std::thread::sleep(Duration::from_secs(15));
    let folder = s3.root().join("media/encore/live/news/360p");
    a.kill9();
    let killed = SystemTime::now();
    // A write A had sent lands within this; B's first comes seconds later.
    let settled = killed + Duration::from_secs(1);
    std::thread::sleep(Duration::from_secs(1));
    let before = stored_segments(&folder);
    let last_of_a = before.last().expect("A archived segments").0;

    wait_until("B carries the channel", Duration::from_secs(30), || {
        let c = news(&b);
        c["state"] == "on_air" && c["node"] == "b"
    });
    wait_until("B archives segments", Duration::from_secs(30), || {
        stored_segments(&folder).iter().any(|(_, at)| *at > settled)
    });
    std::thread::sleep(Duration::from_secs(8));
    let after = stored_segments(&folder);
    let from_b: Vec<&(u64, SystemTime)> = after.iter().filter(|(_, at)| *at > settled).collect();
    let (first_of_b, first_written) = *from_b[0];
    let takeover = first_written.duration_since(killed).unwrap().as_secs_f64();
    println!(
        "A's last segment {last_of_a}, B's first {first_of_b}, written {takeover:.2} s after the kill"
    );
    assert!(
        takeover <= LEASE_SECONDS + 2.0 * SEGMENT_SECONDS,
        "B's first segment came {takeover:.2} s after the kill"
    );
    // No number written twice: every segment written since is after A's last, in sequence.
    assert!(first_of_b > last_of_a, "{first_of_b} after {last_of_a}");
    let numbers: Vec<u64> = from_b.iter().map(|(n, _)| *n).collect();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "B's numbers {numbers:?}"
    );
    // The playlists the origin served never went back.
    let report = player.map(|p| p.join().unwrap());
    watching.store(false, std::sync::atomic::Ordering::SeqCst);
    watcher.join().unwrap();
    let snapshots = snapshots.lock().unwrap();
    for w in snapshots.windows(2) {
        assert!(w[1].0 >= w[0].0, "media sequence went back: {w:?}");
        assert!(
            w[1].1.last() >= w[0].1.last(),
            "the newest segment went back: {w:?}"
        );
    }
    assert!(
        snapshots.iter().any(|(_, n)| n.contains(&first_of_b)),
        "the origin never listed B's segments"
    );

    if let Some(report) = report {
        common::assert_played("hls", &master, &report, 2, 30.0);
        // hls.js reports a stall as it begins (a non-fatal bufferStalledError, "Playback
        // stalling at @T"), and again when its nudge across a hole stalls once more at the same
        // place: the places where playback stopped, a second apart or more, are the stalls.
        let mut places: Vec<f64> = report["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["details"] == "bufferStalledError")
            .map(|e| {
                let reason = e["reason"].as_str().unwrap_or_default();
                let at = reason.split_once('@').map_or("", |(_, at)| at);
                let at = at.split(char::is_whitespace).next().unwrap_or_default();
                at.parse()
                    .unwrap_or_else(|_| panic!("a stall without its place: {e}"))
            })
            .collect();
        places.sort_by(f64::total_cmp);
        places.dedup_by(|b, a| *b - *a < 1.0);
        assert!(
            places.len() <= 1,
            "the player stalled at {places:?}: {report}"
        );
    }

    // An orderly stop of B: the lease is given back, the archive not ended.
    b.stop();
    let playlist = std::fs::read_to_string(folder.join("index.m3u8")).unwrap();
    assert!(!playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    drop(origin);
    assert!(
        players,
        "Chromium, node or tests/players/node_modules missing: `make test-deps`"
    );
}
