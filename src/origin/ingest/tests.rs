//! The choice per segment number, on real CMAF bytes from the packager (no HTTP: the routes
//! are tested in tests/ingest.rs).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::channel::{IngestChannel, Outcome};
use super::inspect::tests::{track, track_sized};
use crate::origin::store::Lookup;
use crate::origin::{ChannelTiming, Origin, OriginConfig};
use crate::package::cmaf::{Sample, SegmentFlags};
use crate::package::MEDIA_EPOCH_SECONDS;

const D: Duration = Duration::from_secs(2);
/// 30 fps at 90 kHz.
const FRAME: u32 = 3000;

/// Segment `number` with `frames` frames (60 is whole), `tag` in every sample so copies from
/// different publishers differ.
fn segment(number: u64, frames: usize, slate: bool, tag: u8) -> Bytes {
    let start = (number * 2 - MEDIA_EPOCH_SECONDS) * 90_000;
    let samples: Vec<Sample> = (0..frames)
        .map(|i| Sample {
            data: vec![0, 0, 0, 1, if i == 0 { 0x65 } else { 0x41 }, tag],
            duration: FRAME,
            composition_offset: 0,
            keyframe: i == 0,
        })
        .collect();
    let flags = SegmentFlags { slate, last: false };
    Bytes::from(track().media_segment(1, start, &samples, flags).unwrap())
}

/// A channel with its wait, and the number of the segment in progress now (due within D).
fn channel(wait: Duration) -> (Origin, IngestChannel, u64) {
    let origin = Origin::new(OriginConfig::default());
    let timing = ChannelTiming {
        segment_duration: D,
        epoch: UNIX_EPOCH,
        dvr_window: Duration::from_secs(60),
    };
    let store = origin.add_channel("news", timing);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let current = now.as_secs() / 2;
    (
        origin.clone(),
        IngestChannel::new("news", store, Duration::from_secs(60), wait),
        current,
    )
}

fn served(origin: &Origin, number: u64) -> Option<Bytes> {
    match origin.channel("news").unwrap().segment("v", number) {
        Lookup::Found(o) => Some(o.body.clone()),
        _ => None,
    }
}

fn playlist(origin: &Origin) -> String {
    let o = origin
        .channel("news")
        .unwrap()
        .rendition_manifest("v", "index.m3u8")
        .unwrap();
    String::from_utf8(o.body.to_vec()).unwrap()
}

fn init() -> Bytes {
    Bytes::from(track().init_segment().unwrap())
}

/// Publishers `a` and `b` each send the init and a whole copy of `number`.
fn both_on_air(ch: &IngestChannel, number: u64) {
    for (p, tag) in [("a", 1), ("b", 2)] {
        ch.put(p, "v/init.mp4", init());
        ch.put(
            p,
            &format!("v/{number}.m4s"),
            segment(number, 60, false, tag),
        );
    }
}

#[test]
fn the_first_whole_copy_is_served_and_later_ones_are_duplicates() {
    let (origin, ch, n) = channel(Duration::from_secs(1));
    for p in ["a", "b"] {
        assert_eq!(ch.put(p, "v/init.mp4", init()), Outcome::Accepted);
    }
    let a = segment(n - 1, 60, false, 1);
    assert_eq!(
        ch.put("a", &format!("v/{}.m4s", n - 1), a.clone()),
        Outcome::Accepted
    );
    assert_eq!(served(&origin, n - 1), Some(a));
    let b = segment(n - 1, 60, false, 2);
    assert_eq!(
        ch.put("b", &format!("v/{}.m4s", n - 1), b),
        Outcome::Accepted
    );
    let state = ch.status();
    assert_eq!(state["publishers"]["a"]["served"], 1, "{state}");
    assert_eq!(state["publishers"]["b"]["duplicates"], 1, "{state}");
    assert!(playlist(&origin).contains(&format!("{}.m4s", n - 1)));
}

#[test]
fn a_slate_or_damaged_first_copy_waits_for_a_whole_one() {
    let (origin, ch, n) = channel(Duration::from_secs(1));
    for p in ["a", "b"] {
        ch.put(p, "v/init.mp4", init());
    }
    // Both publishers heard from, so one copy alone is not "every copy in".
    ch.put(
        "a",
        &format!("v/{}.m4s", n - 2),
        segment(n - 2, 60, false, 1),
    );
    ch.put(
        "b",
        &format!("v/{}.m4s", n - 2),
        segment(n - 2, 60, false, 2),
    );
    let slate = segment(n - 1, 60, true, 1);
    let held = ch.put("a", &format!("v/{}.m4s", n - 1), slate);
    assert!(matches!(held, Outcome::Held(_)), "{held:?}");
    assert_eq!(
        served(&origin, n - 1),
        None,
        "not served while a better copy may come"
    );
    assert!(!playlist(&origin).contains(&format!("{}.m4s", n - 1)));
    let whole = segment(n - 1, 60, false, 2);
    ch.put("b", &format!("v/{}.m4s", n - 1), whole.clone());
    assert_eq!(served(&origin, n - 1), Some(whole));
    assert_eq!(ch.status()["publishers"]["a"]["refused"]["slate"], 1);

    // Frames missing, and no better copy by the deadline: the damaged one is served.
    let damaged = segment(n, 50, false, 1);
    let Outcome::Held(_) = ch.put("a", &format!("v/{n}.m4s"), damaged.clone()) else {
        panic!("held")
    };
    ch.decide("v", n);
    assert_eq!(served(&origin, n), Some(damaged));
}

#[test]
fn copies_that_would_break_the_timeline_are_refused_at_once() {
    let (origin, ch, n) = channel(Duration::from_secs(1));
    ch.put("a", "v/init.mp4", init());
    // Named n − 1 but timed as n − 2.
    let out = ch.put(
        "a",
        &format!("v/{}.m4s", n - 1),
        segment(n - 2, 60, false, 1),
    );
    assert!(
        matches!(&out, Outcome::Refused(r) if r.contains("timing")),
        "{out:?}"
    );
    // Garbage.
    let out = ch.put("a", &format!("v/{n}.m4s"), Bytes::from_static(b"garbage"));
    assert!(
        matches!(&out, Outcome::Refused(r) if r.contains("unparsable")),
        "{out:?}"
    );
    // Far ahead of the clock: it would push the window forward.
    let ahead = n + 100;
    let out = ch.put("a", &format!("v/{ahead}.m4s"), segment(ahead, 60, false, 1));
    assert!(matches!(out, Outcome::Refused(_)), "{out:?}");
    // None of them holds the channel up: the next whole copy is listed.
    let whole = segment(n, 60, false, 1);
    assert_eq!(
        ch.put("a", &format!("v/{n}.m4s"), whole.clone()),
        Outcome::Accepted
    );
    assert_eq!(served(&origin, n), Some(whole));
    assert!(playlist(&origin).contains(&format!("{n}.m4s")));
    // No init from this publisher: refused with the name of what is missing.
    let out = ch.put("c", &format!("v/{n}.m4s"), segment(n, 60, false, 3));
    assert!(
        matches!(&out, Outcome::Refused(r) if r.contains("v/init.mp4")),
        "{out:?}"
    );
}

#[test]
fn a_pass_through_channel_keeps_what_its_publisher_sends() {
    let (_origin, ch, _) = channel(Duration::from_secs(1));
    // A manifest first does not fix the form; the first media file does.
    assert_eq!(
        ch.put("a", "manifest.mpd", Bytes::from_static(b"<MPD/>")),
        Outcome::Accepted
    );
    assert_eq!(
        ch.put("a", "init-stream0.m4s", Bytes::from_static(b"init")),
        Outcome::Accepted
    );
    assert_eq!(ch.status()["form"], "pass-through");
    assert_eq!(&ch.file("manifest.mpd").unwrap().body[..], b"<MPD/>");
    for i in 0..2100 {
        ch.put("a", &format!("chunk-{i}.m4s"), Bytes::from_static(b"x"));
    }
    assert!(ch.file("chunk-0.m4s").is_none(), "the oldest media evicted");
    assert!(ch.file("chunk-2099.m4s").is_some());
    assert!(ch.file("init-stream0.m4s").is_some(), "inits kept");
    assert!(ch.file("manifest.mpd").is_some(), "manifests kept");
    assert!(ch.delete("chunk-2099.m4s"));
    assert!(ch.file("chunk-2099.m4s").is_none());
    assert!(!ch.delete("chunk-2099.m4s"));
}

#[test]
fn the_channel_ends_when_every_publisher_has_stopped() {
    let (origin, ch, n) = channel(Duration::from_secs(1));
    both_on_air(&ch, n - 1);
    let live = Bytes::from_static(b"<MPD type=\"dynamic\"/>");
    // How Encore ends a live MPD: still dynamic, with its duration.
    let done = Bytes::from_static(b"<MPD type=\"dynamic\" mediaPresentationDuration=\"PT8S\"/>");
    ch.put("a", "manifest.mpd", live);
    // A stops; B goes on: nothing ends.
    ch.put("a", "manifest.mpd", done.clone());
    assert!(!ch.ended());
    assert!(!playlist(&origin).contains("#EXT-X-ENDLIST"));
    let mpd = |o: &Origin| o.channel("news").unwrap().manifest("manifest.mpd").unwrap();
    assert_eq!(&mpd(&origin).body[..], b"<MPD type=\"dynamic\"/>");
    // B stops too: the playlists end, the final MPD is served, nothing more is held.
    ch.put("b", "manifest.mpd", done.clone());
    assert!(ch.ended());
    assert!(playlist(&origin).contains("#EXT-X-ENDLIST"));
    assert_eq!(mpd(&origin).body, done);
    assert!(origin.channel("news").unwrap().finished());
}

/// An init whose sample entry differs from `init()`'s (another picture size).
fn other_init() -> Bytes {
    Bytes::from(track_sized(640, 480).init_segment().unwrap())
}

#[test]
fn a_publisher_refused_for_its_init_is_taken_back_when_the_channel_changes_to_it() {
    let (origin, ch, n) = channel(Duration::from_secs(1));
    assert_eq!(ch.put("a", "v/init.mp4", init()), Outcome::Accepted);
    ch.put(
        "a",
        &format!("v/{}.m4s", n - 2),
        segment(n - 2, 60, false, 1),
    );
    // B disagrees with the channel while A, which agrees, is on air.
    let out = ch.put("b", "v/init.mp4", other_init());
    assert!(
        matches!(&out, Outcome::Conflict(r) if r.contains("v/init.mp4")),
        "{out:?}"
    );
    let out = ch.put(
        "b",
        &format!("v/{}.m4s", n - 1),
        segment(n - 1, 60, false, 2),
    );
    assert!(
        matches!(&out, Outcome::Refused(r) if r.contains("v/init.mp4")),
        "the refusal names the init, so the publisher sends it again: {out:?}"
    );
    // A falls silent for longer than two segments; C brings B's init: the channel takes it,
    // B is taken back without sending it again, and A is refused until it sends the new one.
    std::thread::sleep(D * 2 + Duration::from_millis(200));
    assert_eq!(ch.put("c", "v/init.mp4", other_init()), Outcome::Accepted);
    assert_eq!(
        ch.status()["renditions"]["v"]["newest"],
        serde_json::Value::Null,
        "segments made with the old init are no longer listed"
    );
    assert_eq!(ch.status()["renditions"]["v"]["inits"]["b"], "accepted");
    let out = ch.put("a", &format!("v/{n}.m4s"), segment(n, 60, false, 1));
    assert!(matches!(out, Outcome::Refused(_)), "{out:?}");
    let b = segment(n, 60, false, 2);
    assert_eq!(
        ch.put("b", &format!("v/{n}.m4s"), b.clone()),
        Outcome::Accepted
    );
    assert_eq!(served(&origin, n), Some(b));
}

#[test]
fn a_copy_sent_twice_counts_once_toward_every_copy_in() {
    let (origin, ch, n) = channel(Duration::from_secs(1));
    both_on_air(&ch, n - 2);
    // A's damaged copy, sent twice (a retry): B may still bring a whole one.
    let damaged = segment(n - 1, 50, false, 1);
    for _ in 0..2 {
        ch.put("a", &format!("v/{}.m4s", n - 1), damaged.clone());
    }
    assert_eq!(served(&origin, n - 1), None, "still waiting for B");
    let whole = segment(n - 1, 60, false, 2);
    ch.put("b", &format!("v/{}.m4s", n - 1), whole.clone());
    assert_eq!(served(&origin, n - 1), Some(whole));
}

#[test]
fn a_publisher_that_sends_again_after_its_final_mpd_is_on_air_again() {
    let (origin, ch, n) = channel(Duration::from_secs(1));
    both_on_air(&ch, n - 2);
    let done = Bytes::from_static(b"<MPD type=\"dynamic\" mediaPresentationDuration=\"PT8S\"/>");
    // A stops, then comes back (a restart); then B stops: A is still on air.
    ch.put("a", "manifest.mpd", done.clone());
    ch.put(
        "a",
        &format!("v/{}.m4s", n - 1),
        segment(n - 1, 60, false, 1),
    );
    ch.put("b", "manifest.mpd", done);
    assert!(!ch.ended());
    assert!(!playlist(&origin).contains("#EXT-X-ENDLIST"));
}
