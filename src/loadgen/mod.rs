//! `encore loadgen`: simulated players against any HLS or DASH origin (Encore, nginx, a CDN).
//!
//! ```text
//!  ramp: N starts a second ──► player ×M (a tokio task each, its own keep-alive connections)
//!                               │ open: the URL → HLS variant + audio playlists, or MPD tracks
//!                               │ per track: playlist reloads / MPD clock → segment after segment,
//!                               │            playback clock → stalls
//!                               ▼
//!                            Recorder (one short lock per answer)
//!                               │ taken once a second
//!                               ▼
//!                            report: a line a second; the summary (text or JSON) at the end
//! ```
//!
//! Everything is bounded: `--players` (at most [`MAX_PLAYERS`]) and `--duration` (at most
//! [`MAX_DURATION`]); at the end every player is stopped where it is and requests in flight are
//! dropped uncounted. It never writes what it fetches anywhere: bodies are counted and dropped.

mod dash;
mod hls;
mod http;
mod mpd;
mod player;
mod report;
mod stats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;
use serde::Serialize;
use tokio::task::JoinSet;

pub use http::Retry;
pub use report::{Second, Summary};

use player::Shared;
use report::{Asked, Players};
use stats::{Interval, Recorder};

/// The most players one run may start.
pub const MAX_PLAYERS: u32 = 50_000;
/// The longest run.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Segments a player fetches before it starts playing, counted back from the live edge.
const LIVE_START_SEGMENTS: u64 = 3;

/// Which rendition each player plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendition {
    /// The highest bandwidth.
    Top,
    /// The lowest bandwidth.
    Bottom,
    /// One at random, for each player.
    Random,
    /// By name: an HLS variant's folder (`720p` for `720p/index.m3u8`) or URI, a DASH
    /// Representation's id.
    Named(String),
}

impl std::str::FromStr for Rendition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "" => return Err("an empty rendition name".into()),
            "top" => Rendition::Top,
            "bottom" => Rendition::Bottom,
            "random" => Rendition::Random,
            name => Rendition::Named(name.into()),
        })
    }
}

impl std::fmt::Display for Rendition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rendition::Top => f.write_str("top"),
            Rendition::Bottom => f.write_str("bottom"),
            Rendition::Random => f.write_str("random"),
            Rendition::Named(n) => f.write_str(n),
        }
    }
}

/// The index of the rendition `choice` picks among `(name, bandwidth)`.
fn choose(names: &[(&str, u64)], choice: &Rendition, random: u64) -> Option<usize> {
    let by_bandwidth = names.iter().enumerate().map(|(i, (_, b))| (*b, i));
    match choice {
        Rendition::Top => by_bandwidth.max_by_key(|&(b, i)| (b, std::cmp::Reverse(i))),
        Rendition::Bottom => by_bandwidth.min(),
        Rendition::Random if names.is_empty() => None,
        Rendition::Random => Some((0, (random % names.len() as u64) as usize)),
        Rendition::Named(n) => names.iter().position(|(name, _)| name == n).map(|i| (0, i)),
    }
    .map(|(_, i)| i)
}

fn no_such_rendition(choice: &Rendition, names: &[(&str, u64)]) -> String {
    let list: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
    format!("no rendition {choice}; there are: {}", list.join(", "))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Hls,
    Dash,
}

/// A segment a track fetches next.
#[derive(Debug, Clone, PartialEq)]
struct Segment {
    url: Url,
    /// Media seconds.
    duration: f64,
    /// The initialization segment it needs.
    init: Option<Url>,
    /// Listed as missing: skipped without a request.
    gap: bool,
}

/// What a track does next.
#[derive(Debug)]
enum Next {
    Segment(Segment),
    /// The track fell out of the live window: it starts again at the live edge.
    Rejoin,
    /// Nothing more to play: the stream ended, or the run did.
    Ended,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub url: Url,
    pub players: u32,
    /// Player starts per second.
    pub ramp: f64,
    pub duration: Duration,
    pub rendition: Rendition,
    pub retry: Retry,
}

impl Options {
    pub fn check(&self) -> Result<(), String> {
        if !matches!(self.url.scheme(), "http" | "https") {
            return Err(format!("{}: only http and https URLs", self.url));
        }
        if !(1..=MAX_PLAYERS).contains(&self.players) {
            return Err(format!("--players {}: 1 to {MAX_PLAYERS}", self.players));
        }
        if !(self.ramp.is_finite() && self.ramp > 0.0) {
            return Err(format!("--ramp {}: more than 0 starts a second", self.ramp));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return Err(format!(
                "--duration {} s: more than 0, at most {} s",
                self.duration.as_secs_f64(),
                MAX_DURATION.as_secs()
            ));
        }
        Ok(())
    }
}

/// Runs the players for `options.duration`, calling `each_second` once a second; returns the
/// summary. Errors only for what makes a run pointless: bad options, or a URL that answers
/// with something that is neither an HLS playlist nor a DASH MPD (or has no such rendition).
/// An origin that fails or refuses is what is measured: its errors are counted.
pub fn run(options: &Options, each_second: &mut dyn FnMut(&Second)) -> Result<Summary, String> {
    options.check()?;
    raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("encore-loadgen")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(run_async(options, each_second))
}

/// A first look at the URL, uncounted: what it serves, and whether players can play it.
async fn look(options: &Options) -> Result<Option<Protocol>, String> {
    let client = http::Client::new(
        Arc::new(Recorder::default()),
        Retry::None,
        options.url.scheme() == "https",
    )?;
    let give_up = Instant::now() + Duration::from_secs(10);
    let Ok(body) = client
        .get(stats::Kind::Manifest, &options.url, true, give_up)
        .await
    else {
        return Ok(None);
    };
    let opened = player::open(&body, &options.url, &options.rendition, 0)
        .map_err(|e| format!("{}: {e}", options.url))?;
    Ok(Some(opened.protocol()))
}

async fn run_async(
    options: &Options,
    each_second: &mut dyn FnMut(&Second),
) -> Result<Summary, String> {
    let protocol = look(options).await?;
    let cpu_before = cpu_seconds();
    let recorder = Arc::new(Recorder::default());
    let start = Instant::now();
    let end = start + options.duration;
    let shared = Arc::new(Shared {
        url: options.url.clone(),
        rendition: options.rendition.clone(),
        retry: options.retry,
        recorder: recorder.clone(),
        end,
    });
    let mut players = JoinSet::new();
    let mut started = 0u32;
    let start_of = |n: u32| start + Duration::from_secs_f64(n as f64 / options.ramp);
    let mut ticks = tokio::time::interval_at(
        (start + Duration::from_secs(1)).into(),
        Duration::from_secs(1),
    );
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut totals, mut seconds, mut peak) = (Interval::default(), Vec::new(), 0);
    let mut last_tick = start;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(start_of(started).into()), if started < options.players => {
                players.spawn(player::play(shared.clone(), started as u64));
                started += 1;
            }
            tick = ticks.tick() => {
                let now = tick.into_std().min(end).max(last_tick);
                let interval = recorder.take();
                let active = recorder.active();
                peak = peak.max(active);
                let second = Second::new(
                    &interval,
                    (now - start).as_secs_f64(),
                    (now - last_tick).as_secs_f64(),
                    active,
                );
                each_second(&second);
                totals.merge(&interval);
                seconds.push(second);
                last_tick = now;
                if now >= end {
                    break;
                }
            }
            Some(_) = players.join_next(), if !players.is_empty() => {}
        }
    }
    let active_at_end = recorder.active();
    players.shutdown().await;
    totals.merge(&recorder.take());
    let asked = Asked {
        url: options.url.to_string(),
        protocol,
        rendition: options.rendition.to_string(),
        retry: match options.retry {
            Retry::None => "none",
            Retry::Immediate => "immediate",
            Retry::RetryAfter => "retry-after",
        }
        .into(),
        ramp: options.ramp,
        players: options.players,
        cpu_seconds: cpu_seconds() - cpu_before,
    };
    let players = Players {
        target: options.players,
        started: recorder.started(),
        active_at_end,
        peak_active: peak,
        failed_to_start: recorder.failed_to_start(),
        stalled: recorder.stalled_players(),
    };
    let elapsed = (last_tick - start).as_secs_f64();
    Ok(Summary::new(asked, &totals, elapsed, players, seconds))
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills a local struct.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Each player holds a connection or two: lift the soft limit on open files to the hard one.
fn raise_open_files_limit() {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renditions_are_chosen_by_bandwidth_or_name() {
        let names = [("720p", 3000), ("1080p", 6000), ("360p", 800)];
        assert_eq!(choose(&names, &Rendition::Top, 0), Some(1));
        assert_eq!(choose(&names, &Rendition::Bottom, 0), Some(2));
        assert_eq!(choose(&names, &Rendition::Random, 4), Some(1));
        assert_eq!(choose(&names, &"360p".parse().unwrap(), 0), Some(2));
        assert_eq!(choose(&names, &"4k".parse().unwrap(), 0), None);
        assert_eq!(choose(&[], &Rendition::Random, 4), None);
        assert!("".parse::<Rendition>().is_err());
        assert_eq!(
            no_such_rendition(&Rendition::Named("4k".into()), &names),
            "no rendition 4k; there are: 720p, 1080p, 360p"
        );
    }

    #[test]
    fn options_are_bounded() {
        let ok = Options {
            url: Url::parse("http://127.0.0.1:1/m.m3u8").unwrap(),
            players: 10,
            ramp: 5.0,
            duration: Duration::from_secs(30),
            rendition: Rendition::Top,
            retry: Retry::None,
        };
        assert_eq!(ok.check(), Ok(()));
        let bad = |f: &dyn Fn(&mut Options)| {
            let mut o = ok.clone();
            f(&mut o);
            o.check().unwrap_err()
        };
        assert!(bad(&|o| o.players = 0).contains("--players"));
        assert!(bad(&|o| o.players = MAX_PLAYERS + 1).contains("--players"));
        assert!(bad(&|o| o.ramp = 0.0).contains("--ramp"));
        assert!(bad(&|o| o.duration = Duration::ZERO).contains("--duration"));
        assert!(bad(&|o| o.duration = MAX_DURATION * 2).contains("--duration"));
        assert!(bad(&|o| o.url = Url::parse("ftp://x/y").unwrap()).contains("http"));
    }
}
