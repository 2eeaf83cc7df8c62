//! Live inputs that misbehave: garbage on the UDP port, an RTMP publisher that vanishes, an
//! MPEG-TS whose video codec changes mid-stream, and an SRT caller. In every case the daemon
//! stays up, segment numbers stay continuous (slate fills the gaps), real pictures return
//! when a good input does, and failures are logged.
//!
//! Segments are epoch-locked (segment n covers [n·D, (n+1)·D) of Unix time, D = 1 s here), so
//! "real video after a push started" is checked against the wall clock.

mod common;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/live_feed.rs"]
mod live_feed;

use std::net::{TcpListener, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use daemon::Daemon;
use live_feed::*;

/// Plain red, so pictures that really come from this part can be told from anything else.
const MPEG2_RED: Video = Video {
    source: "color=c=red:size=320x180:rate=15",
    codec: "mpeg2video",
};

/// Whether every picture of segment `n` (top rendition) is plain red, as MPEG2_RED sends:
/// ffmpeg decodes init + segment and averages each picture down to one YUV 4:4:4 pixel.
fn all_red(d: &Daemon, channel: &str, n: u64) -> bool {
    let dir = tempdir();
    let path = dir.path().join("joined.mp4");
    let mut bytes = d
        .get(&format!("/live/{channel}/180p/init.mp4"))
        .bytes()
        .unwrap()
        .to_vec();
    bytes.extend(
        d.get(&format!("/live/{channel}/180p/{n}.m4s"))
            .bytes()
            .unwrap(),
    );
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args([
            "-vf",
            "scale=1:1:flags=area,format=yuv444p",
            "-f",
            "rawvideo",
            "-",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Red in limited-range BT.601: Y 81, U 90, V 240.
    !out.stdout.is_empty()
        && out
            .stdout
            .chunks(3)
            .all(|p| p.len() == 3 && p[1] < 120 && p[2] > 200)
}

#[test]
fn garbage_on_the_udp_port_then_a_real_feed() {
    let port = free_udp_port();
    let mut d = start("g", &format!("udp://127.0.0.1:{port}"));

    // ~2 MB of pseudo-random bytes (xorshift), 1316 bytes a datagram, lightly paced.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut datagram = [0u8; 1316];
    for i in 0..1600 {
        for b in datagram.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        socket
            .send_to(&datagram, ("127.0.0.1", port))
            .expect("send garbage");
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // The input is refused, and why is logged.
    let started = Instant::now();
    let refused = loop {
        if let Some(line) = warned_about_input(&d) {
            break line;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no WARN line about the garbage input: {:#?}",
            d.stderr_lines()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        refused.contains(&format!("udp://127.0.0.1:{port}")),
        "{refused}"
    );
    assert!(d.running(), "garbage must not stop the daemon");

    // Then a real MPEG-TS feed: real pictures come back. It lasts 6 s: stream analysis at
    // connect takes about 3 s of it, and a whole real segment needs a second more.
    let fed_from = epoch_second();
    push_to_end(
        &format!("udp://127.0.0.1:{port}?pkt_size=1316"),
        "mpegts",
        H264,
        6,
    );
    let mut timeline = Timeline::new(&d, "g");
    timeline.wait("real video after the feed", Duration::from_secs(10), |t| {
        real_from(t, fed_from)
    });
    // And slate again once the feed stopped.
    let stopped = epoch_second();
    let t = timeline.wait("slate after the feed", Duration::from_secs(10), |t| {
        slate_from(t, stopped + 1)
    });
    eprintln!("timeline: {t:?}");
    finish(d);
}

#[test]
fn an_rtmp_publisher_that_vanishes_can_publish_again() {
    let port = free_tcp_port();
    let url = format!("rtmp://127.0.0.1:{port}/live/key");
    let d = start("r", &url);
    let mut timeline = Timeline::new(&d, "r");

    // First publisher: killed mid-stream once its pictures are on air.
    let first_from = epoch_second();
    let started = Instant::now();
    let mut publisher = Publisher(push(&url, "flv", H264, 30));
    loop {
        if let Some(status) = publisher.0.try_wait().unwrap() {
            // Not listening yet: try again.
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "ffmpeg could not publish: {status}"
            );
            std::thread::sleep(Duration::from_millis(300));
            publisher = Publisher(push(&url, "flv", H264, 30));
            continue;
        }
        if real_from(&timeline.read(), first_from) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no real video from the first publisher: {:?}",
            timeline.read()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(1));
    publisher.0.kill().unwrap();
    publisher.0.wait().unwrap();
    let killed = epoch_second();

    // Slate while nobody publishes.
    timeline.wait(
        "slate after the publisher vanished",
        Duration::from_secs(10),
        |t| slate_from(t, killed),
    );
    let warning = warned_about_input(&d);

    // A second publisher is accepted: the daemon listens again.
    let second_from = epoch_second();
    push_to_end(&url, "flv", H264, 4);
    let t = timeline.wait(
        "real video from the second publisher",
        Duration::from_secs(10),
        |t| real_from(t, second_from),
    );
    eprintln!("timeline: {t:?}");
    // real, then slate, then real again, in that order.
    let first_real = t.iter().position(|&(n, s)| !s && n >= first_from).unwrap();
    let gap = first_real + t[first_real..].iter().position(|&(_, s)| s).unwrap();
    assert!(
        t[gap..].iter().any(|&(_, s)| !s),
        "real again after the slate: {t:?}"
    );
    assert!(
        warning.is_some(),
        "a WARN line about the lost input: {:#?}",
        d.stderr_lines()
    );
    finish(d);
}

#[test]
fn an_mpegts_whose_video_codec_changes_mid_stream() {
    let port = free_udp_port();
    let url = format!("udp://127.0.0.1:{port}?pkt_size=1316");
    let d = start("c", &format!("udp://127.0.0.1:{port}"));
    let mut timeline = Timeline::new(&d, "c");

    // H.264, then at once MPEG-2 video on the same PIDs, then H.264 again. Each part is longer
    // than stream analysis at connect (2 s), so each has a whole second of its own on air.
    let h264_from = epoch_second();
    push_to_end(&url, "mpegts", H264, 4);
    let mpeg2_from = epoch_second();
    push_to_end(&url, "mpegts", MPEG2_RED, 4);
    let again_from = epoch_second();
    // Longer: the switch back is noticed (1.5 s without a clean picture) and analysed again.
    push_to_end(&url, "mpegts", H264, 7);
    let ended = epoch_second();

    let t = timeline.wait(
        "real video from the first H.264 part",
        Duration::from_secs(10),
        |t| {
            t.iter()
                .any(|&(n, s)| !s && n >= h264_from && n < mpeg2_from)
        },
    );
    // What went on air while MPEG-2 came in: (number, slate, pictures are the MPEG-2 red).
    eprintln!(
        "after the switch to MPEG-2 (segments {mpeg2_from}..{again_from}): {:?}",
        t.iter()
            .filter(|&&(n, _)| n >= mpeg2_from && n < again_from)
            .map(|&(n, s)| (n, s, all_red(&d, "c", n)))
            .collect::<Vec<_>>()
    );
    // After the switch the channel goes on (continuous numbers, checked at every read), and
    // real pictures return once H.264 does.
    timeline.wait(
        "real video after the codec changes",
        Duration::from_secs(10),
        |t| t.iter().any(|&(n, s)| !s && n > again_from && n <= ended),
    );
    let t = timeline.wait("slate after the feed", Duration::from_secs(10), |t| {
        slate_from(t, ended + 1)
    });
    eprintln!("timeline: {t:?}");
    finish(d);
}

/// After a codec change the new codec's pictures go on air (after slate while the input is
/// analysed again), and nothing else does: no pictures the old decoder made from the new codec.
#[test]
fn after_a_codec_change_only_the_new_codec_goes_on_air() {
    let port = free_udp_port();
    let url = format!("udp://127.0.0.1:{port}?pkt_size=1316");
    let d = start("m", &format!("udp://127.0.0.1:{port}"));
    let mut timeline = Timeline::new(&d, "m");
    push_to_end(&url, "mpegts", H264, 4);
    let mpeg2_from = epoch_second();
    push_to_end(&url, "mpegts", MPEG2_RED, 8);
    let mpeg2_to = epoch_second();
    // The last H.264 picture is held for at most a second: from mpeg2_from + 2 on, every
    // segment is slate or MPEG-2 pictures.
    let t = timeline.wait("the end of the MPEG-2 part", Duration::from_secs(10), |t| {
        t.iter().any(|&(n, _)| n >= mpeg2_to)
    });
    let window: Vec<(u64, bool, bool)> = t
        .iter()
        .filter(|&&(n, _)| n >= mpeg2_from + 2 && n < mpeg2_to)
        .map(|&(n, s)| (n, s, !s && all_red(&d, "m", n)))
        .collect();
    eprintln!("(number, slate, MPEG-2 pictures): {window:?}");
    assert!(
        window.iter().all(|&(_, slate, red)| slate || red),
        "only slate or the new codec's pictures on air: {window:?}"
    );
    assert!(
        window.iter().any(|&(_, _, red)| red),
        "the new codec's pictures on air: {window:?}"
    );
    finish(d);
}

#[test]
fn an_srt_caller_is_received() {
    assert!(
        ffmpeg_has_protocol("srt"),
        "this ffmpeg has no srt protocol (Debian's has: packaging/install-deps.sh)"
    );
    let port = free_udp_port();
    let d = start("s", &format!("srt://127.0.0.1:{port}"));
    let mut timeline = Timeline::new(&d, "s");
    let from = epoch_second();
    push_to_end(
        &format!("srt://127.0.0.1:{port}?mode=caller"),
        "mpegts",
        H264,
        3,
    );
    let t = timeline.wait("real video over SRT", Duration::from_secs(10), |t| {
        real_from(t, from)
    });
    eprintln!("timeline: {t:?}");
    assert!(t.iter().any(|&(_, s)| s), "slate before the caller: {t:?}");
    finish(d);
}

/// `ffmpeg -re` with these arguments to the end (it fails only on a bad command).
fn ffmpeg_push(args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-re"])
        .args(args)
        .stdin(Stdio::null())
        .status()
        .expect("ffmpeg CLI");
    assert!(status.success(), "ffmpeg {args:?}: {status}");
}

#[test]
fn feeds_a_live_channel_does_not_take_are_refused_and_it_stays_on_slate() {
    let port = free_udp_port();
    let d = start("r", &format!("udp://127.0.0.1:{port}"));
    let url = format!("udp://127.0.0.1:{port}?pkt_size=1316");
    let mut timeline = Timeline::new(&d, "r");
    let rss_before = rss_bytes(&d);

    // A playlist arriving on the socket, naming a URL this test listens on: never fetched.
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let playlist = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nhttp://{}/x.ts\n#EXT-X-ENDLIST\n",
        trap.local_addr().unwrap()
    );
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        sender
            .send_to(playlist.as_bytes(), ("127.0.0.1", port))
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    // Pictures larger than 4096x2304 (H.264 in MPEG-TS, 4608x2592 at 5 fps):
    //   ffmpeg -f lavfi -i testsrc2=size=4608x2592:rate=5 -t 4 -c:v libx264 -preset ultrafast -f mpegts
    ffmpeg_push(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=4608x2592:rate=5",
        "-t",
        "4",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "5",
        "-f",
        "mpegts",
        &url,
    ]);
    // MPEG-4 Part 2 in MPEG-TS: an allowed container, not a codec a live channel takes. Sent
    // for 12 s: a reopen may first read the tail of the previous feed mixed with this one
    // (stream analysis then gives up after 5 s), and a refusal repeating the one before is
    // not logged again. (Before the NUT feed for the same reason.)
    ffmpeg_push(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=15",
        "-t",
        "12",
        "-c:v",
        "mpeg4",
        "-g",
        "15",
        "-f",
        "mpegts",
        &url,
    ]);
    // Bayer pictures as raw video, in NUT: neither the container nor the codec of a live feed.
    ffmpeg_push(&[
        "-f",
        "rawvideo",
        "-pix_fmt",
        "bayer_rggb8",
        "-video_size",
        "320x180",
        "-framerate",
        "15",
        "-i",
        "/dev/zero",
        "-t",
        "3",
        "-c:v",
        "rawvideo",
        "-f",
        "nut",
        &url,
    ]);
    std::thread::sleep(Duration::from_secs(2));

    assert!(
        trap.accept().is_err(),
        "the daemon connected to the URL a playlist on its input named"
    );
    let t = timeline.read();
    assert!(
        t.iter().all(|&(_, slate)| slate),
        "only slate went out: {t:?}"
    );
    let log = d.stderr_lines();
    for says in [
        "refused: 4608x2592",
        "not an allowed live container",
        "video codec",
    ] {
        assert!(
            log.iter().any(|l| l.contains("WARN") && l.contains(says)),
            "no WARN saying {says:?}"
        );
    }
    let grown = rss_bytes(&d).saturating_sub(rss_before);
    assert!(grown < 96 << 20, "RSS grew {} MB", grown >> 20);

    // A good feed afterwards goes on air (the input may be waiting out a retry first).
    let from = epoch_second();
    let _good = Publisher(push(&url, "mpegts", H264, 15));
    timeline.wait(
        "real video after the refusals",
        Duration::from_secs(15),
        |t| real_from(t, from),
    );
    finish(d);
}
