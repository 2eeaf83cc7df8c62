//! Live audio/video sync. The source carries a shared marker: a white flash (3 frames) and a
//! 1 kHz beep (100 ms), both starting on every whole second of its timestamps. It is sent
//! over UDP and over SRT with network jitter (a relay in this test holds datagrams back by up
//! to 80 ms, in order), to two channels of one daemon. On every rung of each channel, the
//! output's flash and beep (by their media times, decoded from the CMAF segments) must stay
//! within 40 ms of each other for 60 s, and again after the sender restarts with other
//! timestamps.

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ffmpeg_next as ff;
use m3u8_rs::Playlist;

use common::*;
use daemon::Daemon;

/// The largest offset between flash and beep a viewer does not notice (and ITU-R BT.1359's
/// detectability threshold for sound ahead of picture is 45 ms).
const SYNC_TOLERANCE: f64 = 0.040;

/// 20 s of the marker source, MPEG-TS, H.264 with B-frames, AAC; looped by the sender.
fn flash_beep_source() -> std::path::PathBuf {
    fixture(
        "flash-beep.ts",
        &[
            "-f",
            "lavfi",
            "-i",
            "color=c=black:s=320x180:r=30,drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='lt(mod(t,1),0.1)'",
            "-f",
            "lavfi",
            "-i",
            "aevalsrc='if(lt(mod(t,1),0.1),0.5*sin(2*PI*1000*t),0)':s=48000:c=stereo",
            "-t",
            "20",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "30",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-f",
            "mpegts",
        ],
    )
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Datagrams from `from` to every `to`, each held back by a random 0–80 ms, order kept.
struct JitterRelay {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl JitterRelay {
    fn start(from: u16, to: Vec<u16>) -> JitterRelay {
        let socket = UdpSocket::bind(("127.0.0.1", from)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let out = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held: std::collections::VecDeque<(Instant, Vec<u8>)> = Default::default();
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            let mut buf = [0u8; 2048];
            let mut release_after = Instant::now();
            while !stopping.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let delay = Duration::from_micros(seed % 80_000);
                    // In order: never before the datagram ahead of it.
                    release_after = release_after.max(Instant::now() + delay);
                    held.push_back((release_after, buf[..n].to_vec()));
                }
                while held.front().is_some_and(|(at, _)| *at <= Instant::now()) {
                    let (_, d) = held.pop_front().unwrap();
                    for port in &to {
                        let _ = out.send_to(&d, ("127.0.0.1", *port));
                    }
                }
            }
        });
        JitterRelay {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for JitterRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A child process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ffmpeg(args: &[&str]) -> Running {
    Running(
        Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin"])
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .expect("ffmpeg CLI"),
    )
}

/// The sender (the source looped in real time, its timestamps shifted by `offset` seconds)
/// into the relay, and the bridge from the relay's second output to the SRT listener.
fn senders(
    source: &Path,
    relay_in: u16,
    bridge_in: u16,
    srt_port: u16,
    offset: u32,
) -> [Running; 2] {
    let bridge = ffmpeg(&[
        "-f",
        "mpegts",
        "-i",
        &format!("udp://127.0.0.1:{bridge_in}?fifo_size=100000&overrun_nonfatal=1"),
        "-c",
        "copy",
        "-f",
        "mpegts",
        &format!("srt://127.0.0.1:{srt_port}?mode=caller&pkt_size=1316"),
    ]);
    let sender = ffmpeg(&[
        "-re",
        "-stream_loop",
        "-1",
        "-i",
        source.to_str().unwrap(),
        "-c",
        "copy",
        "-output_ts_offset",
        &offset.to_string(),
        "-f",
        "mpegts",
        &format!("udp://127.0.0.1:{relay_in}?pkt_size=1316"),
    ]);
    [sender, bridge]
}

/// Decodes the one stream of a CMAF rendition (init + segments), frame by frame, with each
/// frame's media time in seconds.
fn decode<F: std::ops::DerefMut<Target = ff::Frame>>(
    file: &Path,
    empty: fn() -> F,
    mut each: impl FnMut(&F, f64),
) {
    ff::init().unwrap();
    let mut input = ff::format::input(file).unwrap();
    let stream = input.streams().next().unwrap();
    let (index, tb) = (stream.index(), f64::from(stream.time_base()));
    let codec = ff::decoder::find(stream.parameters().id()).unwrap();
    let mut decoder = ff::codec::context::Context::from_parameters(stream.parameters())
        .unwrap()
        .decoder()
        .open_as(codec)
        .unwrap();
    let mut drain = |decoder: &mut ff::decoder::Opened| {
        let mut frame = empty();
        while decoder.receive_frame(&mut frame).is_ok() {
            let t = frame.pts().unwrap() as f64 * tb;
            each(&frame, t);
        }
    };
    for (s, packet) in input.packets() {
        if s.index() == index {
            decoder.send_packet(&packet).unwrap();
            drain(&mut decoder);
        }
    }
    decoder.send_eof().unwrap();
    drain(&mut decoder);
}

/// Media times of the flashes: the first bright picture after a dark one.
fn flashes(file: &Path) -> Vec<f64> {
    let mut onsets = Vec::new();
    let mut bright_before = true; // none until a dark picture was seen
    decode(file, ff::frame::Video::empty, |frame, t| {
        let (w, h, stride) = (
            frame.width() as usize,
            frame.height() as usize,
            frame.stride(0),
        );
        let luma = frame.data(0);
        let sum: u64 = (0..h)
            .map(|y| {
                luma[y * stride..y * stride + w]
                    .iter()
                    .map(|&v| v as u64)
                    .sum::<u64>()
            })
            .sum();
        let bright = sum as f64 / (w * h) as f64 > 128.0;
        if bright && !bright_before {
            onsets.push(t);
        }
        bright_before = bright;
    });
    onsets
}

/// Media times of the beeps: the first loud sample after 300 ms without one.
fn beeps(file: &Path) -> Vec<f64> {
    let mut onsets = Vec::new();
    let mut last_loud: Option<f64> = None;
    decode(file, ff::frame::Audio::empty, |frame, t0| {
        assert_eq!(
            frame.format(),
            ff::format::Sample::F32(ff::format::sample::Type::Planar)
        );
        let rate = frame.rate() as f64;
        // Nothing counts until 300 ms in: the rendition may start in the middle of a beep.
        let last = last_loud.get_or_insert(t0);
        for (i, s) in frame.plane::<f32>(0).iter().enumerate() {
            let t = t0 + i as f64 / rate;
            if s.abs() > 0.25 {
                if t - *last > 0.3 {
                    onsets.push(t);
                }
                *last = t;
            }
        }
    });
    onsets
}

/// Flash-to-beep offsets (beep minus flash, seconds), each flash with the nearest beep.
fn offsets(flashes: &[f64], beeps: &[f64]) -> Vec<(f64, f64)> {
    flashes
        .iter()
        .filter_map(|&f| {
            let b = beeps
                .iter()
                .copied()
                .min_by(|a, b| (a - f).abs().total_cmp(&(b - f).abs()))?;
            ((b - f).abs() < 0.5).then_some((f, b - f))
        })
        .collect()
}

/// Fetches a rendition's init segment and every listed segment into one file.
fn download_rendition(d: &Daemon, channel: &str, playlist: &str, out: &Path) {
    let base = format!("/live/{channel}/");
    let dir = playlist
        .rsplit_once('/')
        .map(|(d, _)| format!("{base}{d}/"))
        .unwrap_or(base.clone());
    let media = d.media_playlist(&format!("{base}{playlist}"));
    let mut bytes = Vec::new();
    let init = media
        .segments
        .iter()
        .find_map(|s| s.map.as_ref())
        .expect("EXT-X-MAP");
    bytes.extend(d.get(&format!("{dir}{}", init.uri)).bytes().unwrap());
    for s in &media.segments {
        if s.unknown_tags.iter().any(|t| t.tag == "X-GAP") {
            continue;
        }
        let r = d.get(&format!("{dir}{}", s.uri));
        if r.status() == 200 {
            bytes.extend(r.bytes().unwrap());
        }
    }
    std::fs::write(out, bytes).unwrap();
}

/// The media playlists of a channel: every video rung, then the audio.
fn renditions(d: &Daemon, channel: &str) -> (Vec<String>, String) {
    let body = d
        .get(&format!("/live/{channel}/master.m3u8"))
        .bytes()
        .unwrap();
    let Ok(Playlist::MasterPlaylist(master)) = m3u8_rs::parse_playlist_res(&body) else {
        panic!("master playlist of {channel}");
    };
    let video = master.variants.iter().map(|v| v.uri.clone()).collect();
    let audio = master
        .alternatives
        .iter()
        .find_map(|a| a.uri.clone())
        .expect("an audio rendition");
    (video, audio)
}

/// Checks every rung of `channel` against its audio between media times `from` and `to`.
fn check_sync(d: &Daemon, channel: &str, from: f64, to: f64, at_least: usize, dir: &Path) {
    let (video, audio) = renditions(d, channel);
    let audio_file = dir.join(format!("{channel}-audio.mp4"));
    download_rendition(d, channel, &audio, &audio_file);
    let beeps = beeps(&audio_file);
    assert!(video.len() >= 2, "{channel}: a ladder of several rungs");
    for rung in &video {
        let file = dir.join(format!("{channel}-{}.mp4", rung.replace('/', "-")));
        download_rendition(d, channel, rung, &file);
        let flashes: Vec<f64> = flashes(&file)
            .into_iter()
            .filter(|t| (from..to).contains(t))
            .collect();
        let pairs = offsets(&flashes, &beeps);
        eprintln!(
            "{channel} {rung}: {} flashes, {} paired; offsets (ms): {:?}",
            flashes.len(),
            pairs.len(),
            pairs
                .iter()
                .map(|(_, o)| (o * 1000.0).round() as i64)
                .collect::<Vec<_>>()
        );
        assert!(
            pairs.len() >= at_least && pairs.len() + 1 >= flashes.len(),
            "{channel} {rung}: {} of {} flashes have a beep (at least {at_least} expected)",
            pairs.len(),
            flashes.len()
        );
        for (t, offset) in pairs {
            assert!(
                offset.abs() <= SYNC_TOLERANCE,
                "{channel} {rung}: the beep at media time {t:.3} is {:.0} ms from its flash",
                offset * 1000.0
            );
        }
    }
}

/// The media time now: seconds since 2000-01-01, the channels' media epoch.
fn media_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        - 946_684_800.0
}

#[test]
fn flash_and_beep_stay_together_over_udp_and_srt_with_jitter() {
    let source = flash_beep_source();
    let (udp_port, srt_port) = (free_udp_port(), free_udp_port());
    let (relay_in, bridge_in) = (free_udp_port(), free_udp_port());
    let channel = |name: &str, input: &str| {
        format!(
            "[[channels]]\nname = \"{name}\"\ninput = \"{input}\"\nformat = \"320x180@30\"\n\
             ladder = \"180:300k,90:120k\"\npreset = \"ultrafast\"\nsegment_duration = 1\n\
             dvr_window = 150\n"
        )
    };
    let d = Daemon::start_with(
        &format!(
            "{}{}",
            channel("udp", &format!("udp://127.0.0.1:{udp_port}")),
            channel("srt", &format!("srt://127.0.0.1:{srt_port}"))
        ),
        &["-v"],
    );
    for name in ["udp", "srt"] {
        d.wait_for(
            &format!("/live/{name}/master.m3u8"),
            Duration::from_secs(20),
        );
    }
    let work = tempdir();
    let _relay = JitterRelay::start(relay_in, vec![udp_port, bridge_in]);

    // 60 s of the first session, from 3 s after the feed started.
    let senders_1 = senders(&source, relay_in, bridge_in, srt_port, 0);
    let from = media_now() + 5.0;
    std::thread::sleep(Duration::from_secs(66));
    let to = media_now() - 1.0;
    drop(senders_1);

    // The sender restarts with other timestamps (and the SRT caller reconnects).
    std::thread::sleep(Duration::from_secs(3));
    let senders_2 = senders(&source, relay_in, bridge_in, srt_port, 5000);
    let from_2 = media_now() + 5.0;
    std::thread::sleep(Duration::from_secs(24));
    let to_2 = media_now() - 1.0;
    drop(senders_2);

    for name in ["udp", "srt"] {
        check_sync(&d, name, from, to, 50, work.path());
        check_sync(&d, name, from_2, to_2, 10, work.path());
    }
    d.terminate();
}
