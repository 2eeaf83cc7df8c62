//! Live inputs: the built-in test source, MPEG-TS over UDP, SRT and RTMP listeners, a file
//! played (or looped) as live.
//!
//! Every input is opened through libavformat with an interrupt callback, so a stalled network
//! read gives up after a deadline instead of hanging a channel, and a stop request is honoured
//! at once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ffmpeg_next as ff;

use super::Error;
use crate::media::Rational;

/// Where a live channel's pictures and sound come from.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveSource {
    /// Moving test pattern with the wall-clock time and frame number drawn in, and a tone.
    TestPattern {
        width: u32,
        height: u32,
        fps: Rational,
    },
    /// A URL libavformat reads: `udp://0.0.0.0:5000`, `srt://0.0.0.0:9000`, `rtmp://0.0.0.0:1935/live/key`.
    Url(String),
    /// A media file played at real-time speed, looped or once (then the channel ends).
    File { path: String, looped: bool },
}

impl std::str::FromStr for LiveSource {
    type Err = String;

    /// `test`, `test:1280x720@30`, `udp://…`, `srt://…`, `rtmp://…`, `loop:PATH`, `file:PATH`.
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "test" || s == "testsrc" {
            return Ok(LiveSource::TestPattern {
                width: 1280,
                height: 720,
                fps: Rational::new(30, 1),
            });
        }
        if let Some(spec) = s.strip_prefix("test:") {
            let (width, height, fps) = crate::media::time::parse_picture_format(spec)
                .map_err(|e| format!("test source: {e}"))?;
            return Ok(LiveSource::TestPattern { width, height, fps });
        }
        if let Some(path) = s.strip_prefix("loop:") {
            return Ok(LiveSource::File {
                path: path.into(),
                looped: true,
            });
        }
        if let Some(path) = s.strip_prefix("file:") {
            return Ok(LiveSource::File {
                path: path.into(),
                looped: false,
            });
        }
        for scheme in [
            "udp://", "srt://", "rtmp://", "rtp://", "tcp://", "http://", "https://", "rist://",
        ] {
            if s.starts_with(scheme) {
                return Ok(LiveSource::Url(s.into()));
            }
        }
        Err(format!(
            "unknown live input {s:?} (expected test, test:WxH@FPS, udp://, srt://, rtmp://, loop:PATH or file:PATH)"
        ))
    }
}

impl LiveSource {
    /// Inputs that arrive faster than real time and must be paced by their timestamps.
    pub fn needs_pacing(&self) -> bool {
        !matches!(self, LiveSource::Url(_))
    }

    /// Inputs that wait for a sender (RTMP, an SRT listener, UDP, a TCP listener): a failed
    /// open means a sender misbehaved or left, not that the source is down, so the input is
    /// reopened at once for the next one.
    pub fn listens(&self) -> bool {
        let LiveSource::Url(url) = self else {
            return false;
        };
        url.starts_with("rtmp://")
            || url.starts_with("udp://")
            || (url.starts_with("srt://") && srt_listens(url))
            || (url.starts_with("tcp://") && url.contains("listen"))
    }

    /// A short name for logs.
    pub fn describe(&self) -> String {
        match self {
            LiveSource::TestPattern { width, height, fps } => {
                format!("test pattern {width}x{height}@{fps}")
            }
            LiveSource::Url(u) => u.clone(),
            LiveSource::File { path, looped: true } => format!("{path} (looped)"),
            LiveSource::File { path, .. } => path.clone(),
        }
    }
}

/// Who may send a network input, and how much it may buffer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InputGuard {
    /// The channel's name, for the WARNs about refused senders.
    pub channel: String,
    /// SRT: the passphrase a sender must use (the handshake fails without it).
    pub passphrase: Option<String>,
    /// SRT: the only stream id a caller may name (a listener), or the one to name (a caller).
    pub streamid: Option<String>,
    /// UDP: the only source addresses whose packets are taken (empty: any).
    pub allowed_sources: Vec<std::net::IpAddr>,
    /// UDP: the receive FIFO in bytes (0: [`DEFAULT_UDP_FIFO_BYTES`]).
    pub udp_fifo_bytes: usize,
}

/// A UDP receive FIFO for a feed of unknown rate: 2 s at 40 Mb/s.
pub const DEFAULT_UDP_FIFO_BYTES: usize = 10_000_000;
/// Bytes in one FIFO slot of libavformat's UDP reader (`fifo_size` counts MPEG-TS packets).
const TS_PACKET: usize = 188;

/// The containers a live contribution feed arrives in; nothing else is demuxed from a socket,
/// so a playlist or a concat file sent to an input can never make the daemon open another URL.
const LIVE_FORMATS: &str = "mpegts,flv,live_flv,matroska";
/// The codecs a live feed may carry.
const LIVE_VIDEO_CODECS: [ff::codec::Id; 3] = [
    ff::codec::Id::H264,
    ff::codec::Id::HEVC,
    ff::codec::Id::MPEG2VIDEO,
];
const LIVE_AUDIO_CODECS: [ff::codec::Id; 5] = [
    ff::codec::Id::AAC,
    ff::codec::Id::MP2,
    ff::codec::Id::AC3,
    ff::codec::Id::EAC3,
    ff::codec::Id::OPUS,
];
/// The largest live picture (4096x2304, either way round) and rate.
pub const MAX_LIVE_PIXELS: u64 = 4096 * 2304;
pub const MAX_LIVE_SIDE: u32 = 4096;
pub const MAX_LIVE_FPS: f64 = 120.0;

/// An SRT URL Encore listens on (the default) rather than calls out from.
fn srt_listens(url: &str) -> bool {
    !url.contains("mode=") || url.contains("mode=listener")
}

/// The protocols libavformat may use for a live URL: its own scheme and what that one needs.
fn protocols_for(url: &str) -> &'static str {
    let scheme = url.split("://").next().unwrap_or("");
    match scheme {
        "udp" => "udp",
        "srt" => "srt",
        "rtmp" => "rtmp,tcp",
        "rtp" => "rtp,udp",
        "tcp" => "tcp",
        "rist" => "rist",
        "https" => "https,http,tcp,tls",
        _ => "http,tcp",
    }
}

/// A picture a live channel takes: not larger than [`MAX_LIVE_PIXELS`] (sides at most
/// [`MAX_LIVE_SIDE`]).
pub fn picture_allowed(width: u32, height: u32) -> bool {
    width <= MAX_LIVE_SIDE
        && height <= MAX_LIVE_SIDE
        && width as u64 * height as u64 <= MAX_LIVE_PIXELS
}

/// Refuses a network feed outside what a live channel takes: its codecs, its picture size and
/// its frame rate.
pub fn check_feed(source: &super::Source) -> Result<(), Error> {
    let refuse = |reason: String| {
        Err(Error::Open {
            path: source.location.clone(),
            reason: format!("refused: {reason}"),
        })
    };
    let codec_of = |index: usize| {
        source
            .input
            .stream(index)
            .map(|s| s.parameters().id())
            .unwrap_or(ff::codec::Id::None)
    };
    let video = codec_of(source.video.index);
    if !LIVE_VIDEO_CODECS.contains(&video) {
        return refuse(format!(
            "video codec {video:?} (a live input takes H.264, HEVC or MPEG-2)"
        ));
    }
    if let Some(audio) = &source.audio {
        let codec = codec_of(audio.index);
        if !LIVE_AUDIO_CODECS.contains(&codec) {
            return refuse(format!(
                "audio codec {codec:?} (a live input takes AAC, MP2, AC-3, E-AC-3 or Opus)"
            ));
        }
    }
    let (w, h) = (source.video.width, source.video.height);
    if !picture_allowed(w, h) {
        return refuse(format!("{w}x{h} pictures (at most 4096x2304)"));
    }
    let fps = source.video.frame_rate.as_f64();
    if fps > MAX_LIVE_FPS {
        return refuse(format!("{fps:.2} fps (at most {MAX_LIVE_FPS})"));
    }
    Ok(())
}

/// Stop flag and read deadline shared with libavformat's interrupt callback.
#[derive(Debug, Default)]
pub struct Watchdog {
    stop: AtomicBool,
    /// Unix milliseconds after which a blocking read is abandoned (0 = none).
    deadline_ms: AtomicU64,
}

impl Watchdog {
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
    /// Allows the next blocking operation `within` from now.
    pub fn arm(&self, within: Duration) {
        self.deadline_ms
            .store(now_ms() + within.as_millis() as u64, Ordering::SeqCst);
    }
    fn expired(&self) -> bool {
        let d = self.deadline_ms.load(Ordering::SeqCst);
        self.stopped() || (d != 0 && now_ms() > d)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The test pattern's filter graph: pattern + clock and frame counter, and a 1 kHz tone.
/// The clock is drawn from the frame's timestamp plus the start time, so it shows the wall
/// clock when frames are paced in real time.
fn test_graph(width: u32, height: u32, fps: Rational, start_unix: u64) -> String {
    let size = (height / 12).max(12);
    format!(
        "testsrc2=size={width}x{height}:rate={}/{},\
         drawtext=text='%{{pts\\:gmtime\\:{start_unix}}} UTC  frame %{{n}}':fontsize={size}:fontcolor=white:\
         box=1:boxcolor=black@0.6:x=(w-tw)/2:y=h-2*th[out0];\
         sine=frequency=1000:sample_rate=48000[out1]",
        fps.num, fps.den
    )
}

/// A still "signal lost" picture for slate segments.
pub fn slate_picture(width: u32, height: u32) -> Result<ff::frame::Video, Error> {
    let size = (height / 10).max(12);
    let graph = format!(
        "color=c=0x101010:size={width}x{height}:rate=1,\
         drawtext=text='SIGNAL LOST':fontsize={size}:fontcolor=white:x=(w-tw)/2:y=(h-th)/2,format=yuv420p[out0]"
    );
    let mut source = open_with_format(&graph, Some("lavfi"), ff::Dictionary::new(), None)?;
    let index = source.video.index;
    let stream = source.input.stream(index).expect("chosen stream exists");
    let mut decoder = super::decode::VideoDecoder::open(&stream).map_err(|e| Error::Decoder {
        path: "slate".into(),
        reason: e.to_string(),
    })?;
    let mut packet = ff::Packet::empty();
    while super::read_packet(&mut source.input, &mut packet).is_ok() {
        if packet.stream() != index {
            continue;
        }
        decoder.send(&packet);
        if let Some(frame) = decoder.receive::<ff::frame::Video>() {
            return Ok(frame);
        }
    }
    Err(Error::NothingDecoded("slate".into()))
}

/// How long a connected sender may stay silent before it is dropped, in microseconds.
const SILENT_SENDER_US: u64 = 5_000_000;

/// How much of a network input stream analysis may read at each connect, in microseconds.
const LIVE_ANALYZE_DURATION_US: u64 = 2_000_000;

/// How long stream analysis may take once a network sender's data has arrived. A feed that
/// changes under the same port (a new sender's stream after the tail of the old one) can
/// leave a stream whose parameters never come, and libavformat would then read up to its
/// probe size (minutes at a low bitrate) with the input deaf to everything else.
const STREAM_INFO_WITHIN: Duration = Duration::from_secs(5);

/// Opens a live source; `watchdog` can interrupt the open and every later read.
pub fn open(
    source: &LiveSource,
    guard: &InputGuard,
    watchdog: Arc<Watchdog>,
) -> Result<super::Source, Error> {
    let mut options = ff::Dictionary::new();
    match source {
        LiveSource::TestPattern { width, height, fps } => {
            let start = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            open_with_format(
                &test_graph(*width, *height, *fps, start),
                Some("lavfi"),
                options,
                Some(watchdog),
            )
        }
        LiveSource::File { path, .. } => {
            if !std::path::Path::new(path).exists() {
                return Err(Error::NotFound(path.into()));
            }
            open_with_format(path, None, options, Some(watchdog))
        }
        LiveSource::Url(url) => {
            // MPEG-TS and FLV may add streams at any time, so libavformat never ends stream
            // analysis early for them: with the default it reads 5 s of a live input (all of
            // it lost to slate) at every connect. Two seconds covers a 2 s GOP, enough to see
            // the parameter sets; the packets read meanwhile are still demuxed afterwards.
            options.set("analyzeduration", &LIVE_ANALYZE_DURATION_US.to_string());
            options.set("protocol_whitelist", protocols_for(url));
            if !url.starts_with("rtp://") {
                options.set("format_whitelist", LIVE_FORMATS);
            }
            if url.starts_with("rtmp://") {
                // Encore receives the push: listen rather than connect.
                options.set("listen", "1");
            }
            if ["rtmp://", "srt://", "tcp://"]
                .iter()
                .any(|s| url.starts_with(s))
            {
                // A sender that connects and then sends nothing is dropped after this, so the
                // listener is free again for the real one (the open itself may wait for a
                // sender as long as it takes).
                options.set("rw_timeout", &SILENT_SENDER_US.to_string());
            }
            // Where libavformat reads: the URL itself, or the loopback side of a gate.
            let mut location = url.clone();
            let mut gate = None;
            if url.starts_with("srt://") {
                let listener = srt_listens(url);
                if listener {
                    options.set("mode", "listener");
                }
                if let Some(passphrase) = &guard.passphrase {
                    options.set("passphrase", passphrase);
                }
                if listener && (guard.passphrase.is_some() || guard.streamid.is_some()) {
                    let (inner, g) =
                        super::srt_gate::open(url, guard.streamid.as_deref(), &guard.channel)
                            .map_err(|reason| Error::Open {
                                path: url.clone(),
                                reason,
                            })?;
                    (location, gate) = (inner, Some(g));
                } else if let Some(id) = guard.streamid.as_deref().filter(|_| !listener) {
                    options.set("streamid", id);
                }
            }
            if url.starts_with("udp://") {
                // Room for bursts, sized in bytes (the option counts 188-byte packets).
                let bytes = match guard.udp_fifo_bytes {
                    0 => DEFAULT_UDP_FIFO_BYTES,
                    n => n,
                };
                options.set("fifo_size", &(bytes / TS_PACKET).max(64).to_string());
                options.set("overrun_nonfatal", "1");
                if !guard.allowed_sources.is_empty() {
                    let (inner, g) =
                        super::udp_gate::open(url, &guard.allowed_sources, &guard.channel, bytes)
                            .map_err(|reason| Error::Open {
                            path: url.clone(),
                            reason,
                        })?;
                    (location, gate) = (inner, Some(g));
                }
            }
            if url.starts_with("rtmp://") {
                super::rtmp_key::install();
                super::rtmp_key::reset();
            }
            let opened = open_with_format(&location, None, options, Some(watchdog))
                .map_err(|e| named_as(e, url));
            // The open was cut short (or finished) after the publisher named another key.
            if url.starts_with("rtmp://") && super::rtmp_key::wrong_key_seen() {
                return Err(Error::Open {
                    path: url.clone(),
                    reason: "refused: the publisher named another stream key".into(),
                });
            }
            let mut source = opened?;
            source.location = url.clone();
            source.gate = gate;
            Ok(source)
        }
    }
}

/// An error about a gate's loopback side, told about the input's own URL.
fn named_as(error: Error, url: &str) -> Error {
    match error {
        Error::Open { reason, .. } => Error::Open {
            path: url.into(),
            reason,
        },
        Error::NoVideo(_) => Error::NoVideo(url.into()),
        other => other,
    }
}

/// avformat_open_input with an optional forced format and interrupt callback.
fn open_with_format(
    location: &str,
    format: Option<&str>,
    options: ff::Dictionary,
    watchdog: Option<Arc<Watchdog>>,
) -> Result<super::Source, Error> {
    super::init();
    ff::device::register_all();
    let fail = |reason: String| Error::Open {
        path: location.into(),
        reason,
    };
    let c_location =
        std::ffi::CString::new(location).map_err(|_| fail("contains a NUL byte".into()))?;
    // SAFETY: plain libavformat calls; every pointer is checked, and the context is owned by
    // `Input` (with the interrupt guard kept alive beside it) once open succeeds.
    unsafe {
        let input_format = match format {
            Some(name) => {
                let c = std::ffi::CString::new(name).expect("static format name");
                let f = ff::ffi::av_find_input_format(c.as_ptr());
                if f.is_null() {
                    return Err(fail(format!("this FFmpeg has no {name} input")));
                }
                f
            }
            None => std::ptr::null(),
        };
        let mut ps = ff::ffi::avformat_alloc_context();
        if ps.is_null() {
            return Err(fail("out of memory".into()));
        }
        let network = location.contains("://");
        let deadline = watchdog.clone().filter(|_| network);
        let guard = watchdog.map(|w| {
            // A publisher naming another RTMP stream key is cut off as soon as FFmpeg names
            // it, not after its stream has been probed, so the listener is free again at once.
            let interrupt = ff::util::interrupt::new(Box::new(move || {
                w.expired() || super::rtmp_key::wrong_key_seen()
            }));
            (*ps).interrupt_callback = interrupt.interrupt;
            interrupt.guard
        });
        let mut opts = options.disown();
        let rc = ff::ffi::avformat_open_input(
            &mut ps,
            c_location.as_ptr(),
            input_format as _,
            &mut opts,
        );
        ff::Dictionary::own(opts);
        if rc < 0 {
            let error = ff::Error::from(rc);
            // libavformat answers EINVAL when the whitelists refuse what arrived.
            if rc == -libc::EINVAL && location.contains("://") {
                return Err(fail(format!(
                    "refused: not an allowed live container ({LIVE_FORMATS}) or protocol ({error})"
                )));
            }
            return Err(fail(error.to_string()));
        }
        if let Some(w) = &deadline {
            w.arm(STREAM_INFO_WITHIN);
        }
        let rc = ff::ffi::avformat_find_stream_info(ps, std::ptr::null_mut());
        if rc < 0 {
            ff::ffi::avformat_close_input(&mut ps);
            if deadline
                .as_ref()
                .is_some_and(|w| w.expired() && !w.stopped())
            {
                return Err(fail(format!(
                    "refused: no usable stream description within {} s of the feed's data",
                    STREAM_INFO_WITHIN.as_secs()
                )));
            }
            return Err(fail(format!(
                "no stream information: {}",
                ff::Error::from(rc)
            )));
        }
        let input = match guard {
            Some(g) => ff::format::context::Input::wrap_with_interrupt(ps, g),
            None => ff::format::context::Input::wrap(ps),
        };
        super::describe(input, location)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rss_bytes() -> u64 {
        crate::hw::probe::resident_bytes(std::process::id()).unwrap_or(0)
    }

    /// The test pattern's packets each carry a whole raw picture: reading 600 of them through
    /// one reused packet must not keep them (it did: 41 MB/s for a 720p channel).
    #[test]
    fn reading_packets_releases_each_one() {
        let source = LiveSource::TestPattern {
            width: 640,
            height: 360,
            fps: Rational::new(30, 1),
        };
        let mut input = open(
            &source,
            &InputGuard::default(),
            Arc::new(Watchdog::default()),
        )
        .unwrap();
        let mut packet = ff::Packet::empty();
        for _ in 0..50 {
            crate::ingest::read_packet(&mut input.input, &mut packet).unwrap();
        }
        let before = rss_bytes();
        for _ in 0..1200 {
            crate::ingest::read_packet(&mut input.input, &mut packet).unwrap();
        }
        let grown = rss_bytes().saturating_sub(before);
        // Leaking, 600 pictures of 640x360 would be ~200 MB.
        assert!(grown < 40 << 20, "RSS grew {} MB", grown >> 20);
    }
}
