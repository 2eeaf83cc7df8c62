//! One virtual player: it opens the URL (an HLS multivariant or media playlist, or a DASH MPD),
//! picks its rendition, then follows each of its tracks (video, and audio when the stream has it
//! apart) at real time on its own connections, and counts a stall whenever a segment was not
//! complete by the moment playback needed it.
//!
//! Playback model: a track starts playing once its first three segments are in (hls.js's
//! `liveSyncDurationCount`); from then on each segment is due when the one before it has played
//! out. A late segment stalls playback until it arrives (the player rebuffers, so one slow
//! answer is one stall, not a cascade); a segment that never comes (it failed and was not
//! retried, or retries ran past two segment durations after its due time) is a stall too, and
//! is skipped. A VOD player keeps at most 30 s ahead of playback, as players do.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::Url;
use tokio::sync::watch;

use super::dash::{self, TrackSource};
use super::hls::{self, MediaSource, Playlist};
use super::http::{Client, Retry};
use super::mpd::{self, Presentation};
use super::stats::{Kind, Recorder};
use super::{Next, Protocol, Rendition, LIVE_START_SEGMENTS};

/// How far ahead of playback a player fetches when it can (VOD): hls.js's `maxBufferLength`.
const MAX_BUFFER: Duration = Duration::from_secs(30);

/// What every player of a run shares.
pub struct Shared {
    pub url: Url,
    pub rendition: Rendition,
    pub retry: Retry,
    pub recorder: Arc<Recorder>,
    /// The run stops here.
    pub end: Instant,
}

/// What the URL's manifest gives a player: the tracks it follows.
#[derive(Debug)]
pub enum Opened {
    /// Media playlists; the first is the URL itself when it was one.
    Hls(Vec<Url>),
    /// The MPD and the chosen Representations.
    Dash(Box<Presentation>, Vec<String>),
}

impl Opened {
    pub fn protocol(&self) -> Protocol {
        match self {
            Opened::Hls(_) => Protocol::Hls,
            Opened::Dash(..) => Protocol::Dash,
        }
    }
}

/// Reads the manifest `body` fetched from `url` and chooses what to play.
pub fn open(body: &[u8], url: &Url, choice: &Rendition, random: u64) -> Result<Opened, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the manifest is not UTF-8 text")?;
    let head = text.trim_start_matches('\u{feff}').trim_start();
    if head.starts_with("#EXTM3U") {
        return match hls::parse(text)? {
            Playlist::Master(m) => Ok(Opened::Hls(hls::choose(&m, url, choice, random)?)),
            Playlist::Media(_) => Ok(Opened::Hls(vec![url.clone()])),
        };
    }
    if head.starts_with('<') {
        let p = mpd::read(text, url)?;
        let ids = p.choose(choice, random)?;
        return Ok(Opened::Dash(Box::new(p), ids));
    }
    Err("neither an HLS playlist nor a DASH MPD".into())
}

/// Plays until the stream ends, the player gives up, or the run's end.
pub async fn play(shared: Arc<Shared>, number: u64) {
    let recorder = shared.recorder.clone();
    recorder.player_started();
    let tls = shared.url.scheme() == "https";
    match Client::new(recorder.clone(), shared.retry, tls) {
        Ok(client) => {
            if !run(&shared, &client, number).await {
                recorder.player_failed_to_start();
            }
        }
        Err(_) => recorder.player_failed_to_start(),
    }
    // Stopped by the run's end is still playing, for the report.
    if Instant::now() < shared.end {
        recorder.player_ended();
    }
}

/// False when the player could not start (no manifest, or one it cannot read).
async fn run(shared: &Shared, client: &Client, number: u64) -> bool {
    let end = shared.end;
    // A player whose first request failed is a viewer who saw an error: with `--retry none`,
    // gone; with a retry policy, `get` has retried until the end.
    let Ok(body) = client.get(Kind::Manifest, &shared.url, true, end).await else {
        return false;
    };
    let random = splitmix(number);
    let opened = match open(&body, &shared.url, &shared.rendition, random) {
        Ok(o) => o,
        Err(_) => {
            client.recorder().invalid();
            return false;
        }
    };
    let stalled = AtomicBool::new(false);
    match opened {
        Opened::Hls(urls) => {
            let tracks = urls.into_iter().map(|url| {
                let source = Source::Hls(MediaSource::new(url));
                follow(source, client, end, &stalled)
            });
            join_all(tracks).await;
        }
        Opened::Dash(presentation, ids) => {
            let offset = match &presentation.clock {
                Some(clock) => dash::clock_offset(client, clock, end).await,
                None => 0.0,
            };
            let (sender, receiver) = watch::channel(Arc::new(*presentation));
            let tracks = ids.into_iter().map(|id| {
                let source = Source::Dash(TrackSource::new(id, receiver.clone(), offset));
                follow(source, client, end, &stalled)
            });
            let text = String::from_utf8_lossy(&body).into_owned();
            tokio::select! {
                _ = join_all(tracks) => {}
                _ = dash::refresh(client, &shared.url, text, sender, end) => {}
            }
        }
    }
    true
}

/// Where a track's segments come from.
enum Source {
    Hls(MediaSource),
    Dash(TrackSource),
}

impl Source {
    async fn next(&mut self, client: &Client, end: Instant) -> Next {
        match self {
            Source::Hls(s) => s.next(client, end).await,
            Source::Dash(s) => s.next(end).await,
        }
    }
}

/// Fetches one track's segments in order and plays them out.
async fn follow(mut source: Source, client: &Client, end: Instant, stalled: &AtomicBool) {
    let recorder = client.recorder();
    let mut playback = Playback::default();
    let mut init: Option<Url> = None;
    let stall = |waited: Duration| {
        recorder.stall(waited);
        if !stalled.swap(true, Ordering::Relaxed) {
            recorder.player_stalled();
        }
    };
    loop {
        let segment = match source.next(client, end).await {
            Next::Ended => return,
            Next::Rejoin => {
                // Fell out of the window: it was late already; start again at the live edge.
                playback = Playback::default();
                tokio::task::yield_now().await;
                continue;
            }
            Next::Segment(s) => s,
        };
        if let Some(due) = playback.due() {
            if due > Instant::now() + MAX_BUFFER {
                tokio::time::sleep_until((due - MAX_BUFFER).min(end).into()).await;
            }
        }
        if segment.gap {
            recorder.gap();
            playback.arrived(segment.duration, Instant::now());
            continue;
        }
        if let Some(url) = segment.init.as_ref().filter(|u| init.as_ref() != Some(*u)) {
            if client.get(Kind::Init, url, false, end).await.is_ok() {
                init = Some(url.clone());
            }
        }
        let grace = Duration::from_secs_f64(2.0 * segment.duration.clamp(0.0, 60.0));
        let give_up = playback.due().map_or(end, |due| (due + grace).min(end));
        let fetched = client
            .get(Kind::Segment, &segment.url, false, give_up)
            .await;
        let now = Instant::now();
        if now >= end {
            return;
        }
        let late = match fetched {
            Ok(_) => playback.arrived(segment.duration, now),
            Err(_) => playback.missing(now),
        };
        if let Some(waited) = late {
            stall(waited);
        }
    }
}

/// A track's playback clock.
#[derive(Debug, Default)]
pub struct Playback {
    /// Segments in before playback started, and their media seconds.
    buffered: u32,
    pending: f64,
    /// When the next segment must be in; `None` until playback starts.
    next_due: Option<Instant>,
}

impl Playback {
    pub fn due(&self) -> Option<Instant> {
        self.next_due
    }

    /// A segment of `duration` seconds came in at `at`: how long playback waited for it, if it
    /// was late.
    pub fn arrived(&mut self, duration: f64, at: Instant) -> Option<Duration> {
        let length = Duration::from_secs_f64(duration.clamp(0.0, 3600.0));
        match self.next_due {
            None => {
                self.buffered += 1;
                self.pending += duration.clamp(0.0, 3600.0);
                if self.buffered >= LIVE_START_SEGMENTS as u32 {
                    self.next_due = Some(at + Duration::from_secs_f64(self.pending));
                }
                None
            }
            Some(due) if at > due => {
                self.next_due = Some(at + length);
                Some(at - due)
            }
            Some(due) => {
                self.next_due = Some(due + length);
                None
            }
        }
    }

    /// A segment that will not come: a stall when playback reaches it (playback then goes on
    /// with the next one). Before playback starts it only delays the start.
    pub fn missing(&mut self, at: Instant) -> Option<Duration> {
        let due = self.next_due?;
        if at > due {
            self.next_due = Some(at);
            Some(at - due)
        } else {
            Some(Duration::ZERO)
        }
    }
}

/// A well-mixed number from a player's number, for `--rendition random`.
fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playback_starts_after_three_segments_and_counts_late_ones() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let mut p = Playback::default();
        for s in [0.1, 0.2, 0.3] {
            assert_eq!(p.arrived(2.0, at(s)), None);
        }
        // Playing from 0.3 s: the fourth segment is due at 6.3 s.
        assert_eq!(p.due(), Some(at(6.3)));
        assert_eq!(p.arrived(2.0, at(6.0)), None);
        assert_eq!(p.due(), Some(at(8.3)));
        // 0.5 s late: one stall; playback resumes when it arrives.
        assert_eq!(p.arrived(2.0, at(8.8)), Some(Duration::from_millis(500)));
        assert_eq!(p.due(), Some(at(10.8)));
        // A missing segment before its due time is a stall when playback gets there, and the
        // next one is due in its place.
        assert_eq!(p.missing(at(9.0)), Some(Duration::ZERO));
        assert_eq!(p.due(), Some(at(10.8)));
        // One that gave up after its due time stalled playback until then.
        assert_eq!(p.missing(at(11.8)), Some(Duration::from_secs(1)));
        assert_eq!(p.due(), Some(at(11.8)));
    }

    #[test]
    fn a_missing_segment_before_playback_only_delays_it() {
        let mut p = Playback::default();
        assert_eq!(p.missing(Instant::now()), None);
        assert_eq!(p.due(), None);
    }

    #[test]
    fn players_open_hls_and_dash_and_refuse_anything_else() {
        let url = Url::parse("http://o/live/ch/manifest.mpd").unwrap();
        let mpd = include_str!("../package/testdata/live/manifest.mpd");
        let opened = open(mpd.as_bytes(), &url, &Rendition::Bottom, 0).unwrap();
        assert!(matches!(&opened, Opened::Dash(_, ids) if ids == &["360p", "audio"]));
        let master = include_str!("../package/testdata/vod/master.m3u8");
        let opened = open(master.as_bytes(), &url, &Rendition::Top, 0).unwrap();
        assert_eq!(opened.protocol(), Protocol::Hls);
        let media = include_str!("../package/testdata/vod/1080p/index.m3u8");
        let Opened::Hls(urls) = open(media.as_bytes(), &url, &Rendition::Top, 0).unwrap() else {
            panic!()
        };
        assert_eq!(urls, std::slice::from_ref(&url));
        for bad in [
            &b"<html><body>hello</body></html>"[..],
            b"hello",
            b"\xff\xfe",
        ] {
            assert!(open(bad, &url, &Rendition::Top, 0).is_err());
        }
    }

    #[test]
    fn random_choices_spread() {
        let picks: std::collections::BTreeSet<u64> = (0..64).map(|i| splitmix(i) % 3).collect();
        assert_eq!(picks.len(), 3);
    }
}
