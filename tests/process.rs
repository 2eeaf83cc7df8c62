//! The daemon as a process: SIGHUP reloads the configuration's channels (new ones start,
//! removed ones end, unchanged ones go on untouched), a channel that cannot start does not
//! stop the others, and SIGTERM still stops it cleanly afterwards.

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::time::{Duration, Instant};

use daemon::Daemon;

fn channel(name: &str, extra: &str) -> String {
    format!(
        "[[channels]]\nname = \"{name}\"\ninput = \"test:320x180@15\"\nladder = \"180:300k\"\n\
         preset = \"ultrafast\"\nsegment_duration = 1\ndvr_window = 30\n{extra}"
    )
}

/// The daemon's own configuration lines (listen, data_dir) followed by `channels`.
fn rewrite_channels(d: &Daemon, channels: &str) {
    let path = d.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let head: String = text
        .lines()
        .take_while(|l| !l.starts_with("[[channels]]"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, format!("{head}{channels}")).unwrap();
}

fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < within, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sighup_reloads_the_channels_and_leaves_unchanged_ones_alone() {
    let mut d = Daemon::start_with(
        &format!("{}{}", channel("keep", ""), channel("gone", "")),
        &["-v"],
    );
    d.wait_for("/live/keep/master.m3u8", Duration::from_secs(30));
    d.wait_for("/live/gone/master.m3u8", Duration::from_secs(30));
    let before = d.media_playlist("/live/keep/180p/index.m3u8");
    let init_before = d.get("/live/keep/180p/init.mp4").bytes().unwrap();

    rewrite_channels(
        &d,
        &format!("{}{}", channel("keep", ""), channel("new", "")),
    );
    d.signal("HUP");
    d.wait_for("/live/new/master.m3u8", Duration::from_secs(30));
    // The removed channel ended: its playlist is closed.
    wait_until(
        "the removed channel's playlist ends",
        Duration::from_secs(20),
        || d.media_playlist("/live/gone/180p/index.m3u8").end_list,
    );
    // The unchanged one went on: same init segment, numbering continued, never ended.
    let after = d.media_playlist("/live/keep/180p/index.m3u8");
    assert!(!after.end_list);
    let last = |p: &m3u8_rs::MediaPlaylist| p.media_sequence + p.segments.len() as u64;
    assert!(last(&after) > last(&before));
    assert_eq!(
        d.get("/live/keep/180p/init.mp4").bytes().unwrap(),
        init_before
    );
    let reloaded = d
        .stderr_lines()
        .iter()
        .any(|l| l.contains("reloaded") && l.contains("unchanged=1"));
    assert!(reloaded, "no reload line with one unchanged channel");

    // A configuration that does not parse is refused, and nothing changes.
    std::fs::write(d.config_path(), "this is not toml [").unwrap();
    d.signal("HUP");
    wait_until("a refusal in the log", Duration::from_secs(10), || {
        d.stderr_lines()
            .iter()
            .any(|l| l.contains("ERROR") && l.contains("not reloaded"))
    });
    assert!(d.running());
    assert!(!d.media_playlist("/live/new/180p/index.m3u8").end_list);
    assert!(d.terminate().success(), "SIGTERM after reloads exits 0");
}

#[test]
fn a_channel_that_cannot_start_does_not_stop_the_daemon() {
    // NVENC is absent here (and on a GPU server this is a rung its engine refuses).
    let d = Daemon::start_with(
        &format!(
            "{}{}",
            channel("broken", "backend = \"nvenc\"\n"),
            channel("fine", "")
        ),
        &["-v"],
    );
    d.wait_for("/live/fine/master.m3u8", Duration::from_secs(30));
    assert_eq!(d.get("/live/broken/master.m3u8").status(), 404);
    let broken: serde_json::Value = d.get("/v1/channels/broken").json().unwrap();
    assert_eq!(broken["state"], "failed", "{broken}");
    assert!(
        broken["error"]
            .as_str()
            .is_some_and(|e| e.contains("nvenc")),
        "{broken}"
    );
    assert!(d.terminate().success());
}

/// A rung whose encoder fails (injected: debug builds read `ENCORE_TEST_FAIL_RUNG`) is
/// restarted at the next segment: every rung's segments stay aligned and numbered in
/// sequence, the failing rung misses at most the segment in progress, and the channel shows
/// one restart.
#[test]
fn a_failed_rung_restarts_at_the_next_segment() {
    std::env::set_var("ENCORE_TEST_FAIL_RUNG", "90p:40");
    let d = Daemon::start_with(
        &channel("r", "").replace("180:300k", "180:300k,90:120k"),
        &["-v"],
    );
    std::env::remove_var("ENCORE_TEST_FAIL_RUNG");
    d.wait_for("/live/r/master.m3u8", Duration::from_secs(30));
    wait_until("the failure and a restart", Duration::from_secs(20), || {
        d.stderr_lines().iter().any(|l| l.contains("rung failed"))
    });
    // A few segments after the restart.
    std::thread::sleep(Duration::from_secs(5));
    let info: serde_json::Value = d.get("/v1/channels/r").json().unwrap();
    assert_eq!(info["restarts"], 1, "{info}");
    assert_eq!(info["state"], "on_air", "{info}");

    let numbers = |rendition: &str| -> Vec<u64> {
        d.media_playlist(&format!("/live/r/{rendition}/index.m3u8"))
            .segments
            .iter()
            .filter(|s| !s.uri.is_empty() && s.uri.ends_with(".m4s"))
            .map(|s| s.uri.trim_end_matches(".m4s").parse().unwrap())
            .collect()
    };
    let top = numbers("180p");
    let low = numbers("90p");
    for w in top.windows(2) {
        assert_eq!(w[1], w[0] + 1, "the healthy rung is continuous: {top:?}");
    }
    // The failed rung lost at most the segment in progress, then went on in step.
    let missing: Vec<&u64> = top.iter().filter(|n| !low.contains(n)).collect();
    assert!(missing.len() <= 2, "90p misses {missing:?} of {top:?}");
    let last = *top.last().unwrap();
    assert!(
        low.contains(&last) || low.contains(&(last - 1)),
        "90p caught up: {low:?}"
    );
    // Its segments after the restart start where the top rung's do (same tfdt).
    let n = *low.last().unwrap();
    let tfdt = |rendition: &str| {
        let bytes = d
            .get(&format!("/live/r/{rendition}/{n}.m4s"))
            .bytes()
            .unwrap();
        let dir = common::tempdir();
        let path = dir.path().join("s.m4s");
        std::fs::write(&path, bytes).unwrap();
        common::read_segment(&path).tfdt
    };
    assert_eq!(
        tfdt("90p"),
        tfdt("180p"),
        "segment {n} aligned across rungs"
    );
    assert!(d.terminate().success());
}
