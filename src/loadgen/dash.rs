//! DASH as a player follows it: the clock synchronised once with the MPD's `UTCTiming`, the MPD
//! fetched again every `minimumUpdatePeriod`, and each Representation's segments requested from
//! the moment the MPD makes them available, starting three segments behind the live edge (the
//! `suggestedPresentationDelay` Encore announces, and what hls.js does for HLS).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Url;
use tokio::sync::watch;

use super::http::Client;
use super::mpd::{self, Clock, Presentation};
use super::stats::Kind;
use super::{Next, Segment};

/// The shortest wait between two fetches of a dynamic MPD, whatever it says.
const MIN_REFRESH: Duration = Duration::from_millis(500);

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The origin's clock minus ours, in seconds, from the MPD's `UTCTiming` (0 when it cannot be
/// read: the failed request is counted like any other).
pub async fn clock_offset(client: &Client, clock: &Clock, end: Instant) -> f64 {
    match clock {
        Clock::Direct(text) => mpd::parse_instant(text).map_or(0.0, |t| t - unix_now()),
        Clock::Url(url) => {
            let before = unix_now();
            let Ok(body) = client.get(Kind::Manifest, url, true, end).await else {
                return 0.0;
            };
            let after = unix_now();
            match std::str::from_utf8(&body).ok().and_then(mpd::parse_instant) {
                Some(t) => t - (before + after) / 2.0,
                None => {
                    client.recorder().invalid();
                    0.0
                }
            }
        }
    }
}

/// Fetches the MPD `url` again every `minimumUpdatePeriod` while it is dynamic and hands each
/// new reading to the player's tracks. Never returns before `end`.
pub async fn refresh(
    client: &Client,
    url: &Url,
    first: String,
    sender: watch::Sender<Arc<Presentation>>,
    end: Instant,
) {
    let mut last = first;
    loop {
        // (A statement of its own: the MPD's lock is not held across the waits below.)
        let Some(period) = sender.borrow().refresh else {
            break;
        };
        let wake = (Instant::now() + period.max(MIN_REFRESH)).min(end);
        tokio::time::sleep_until(wake.into()).await;
        if Instant::now() >= end {
            break;
        }
        let Ok(body) = client.get(Kind::Manifest, url, true, end).await else {
            continue;
        };
        let Ok(text) = String::from_utf8(body) else {
            client.recorder().invalid();
            continue;
        };
        // Encore's live MPD changes only its publishTime between segments: no need to read it.
        if without_publish_time(&text) == without_publish_time(&last) {
            continue;
        }
        match mpd::read(&text, url) {
            Ok(p) => {
                sender.send_replace(Arc::new(p));
                last = text;
            }
            Err(_) => client.recorder().invalid(),
        }
    }
    tokio::time::sleep_until(end.into()).await;
}

fn without_publish_time(mpd: &str) -> (&str, &str) {
    const ATTRIBUTE: &str = "publishTime=\"";
    match mpd.find(ATTRIBUTE) {
        Some(i) => {
            let rest = &mpd[i + ATTRIBUTE.len()..];
            (&mpd[..i], &rest[rest.find('"').unwrap_or(rest.len())..])
        }
        None => (mpd, ""),
    }
}

/// One Representation, followed.
pub struct TrackSource {
    id: String,
    presentation: watch::Receiver<Arc<Presentation>>,
    clock_offset: f64,
    /// The number of the next segment to hand out.
    cursor: Option<u64>,
}

impl TrackSource {
    pub fn new(
        id: String,
        presentation: watch::Receiver<Arc<Presentation>>,
        clock_offset: f64,
    ) -> TrackSource {
        TrackSource {
            id,
            presentation,
            clock_offset,
            cursor: None,
        }
    }

    /// Our instant for the origin's Unix time `t` (at least a millisecond ahead, so that a
    /// wait for it always yields).
    fn instant_of(&self, t: f64) -> Instant {
        let ahead = t - self.clock_offset - unix_now();
        Instant::now() + Duration::from_secs_f64(ahead.clamp(0.001, 86_400.0))
    }

    /// The next segment, once the MPD says it is available; `Ended` past the Period's end, when
    /// the Representation disappears, or at `end`.
    pub async fn next(&mut self, end: Instant) -> Next {
        loop {
            if Instant::now() >= end {
                return Next::Ended;
            }
            let p = self.presentation.borrow().clone();
            let Some(track) = p.track(&self.id) else {
                return Next::Ended;
            };
            let timing = &p.timing;
            let now = unix_now() + self.clock_offset;
            let (cursor, fresh) = match self.cursor {
                Some(c) => (c, false),
                None if !timing.dynamic => (track.first_number(), true),
                None => match track.live_start(now, timing) {
                    Some(start) => (start, true),
                    None => {
                        // Nothing is available yet: look again in a while.
                        self.wait(Instant::now() + Duration::from_secs(1), end)
                            .await;
                        continue;
                    }
                },
            };
            self.cursor = Some(cursor);
            let Some(place) = track.place(cursor, timing) else {
                if !timing.dynamic || timing.end.is_some() {
                    return Next::Ended;
                }
                // A timeline that does not list it yet: wait for the next MPD.
                self.wait(Instant::now() + Duration::from_secs(1), end)
                    .await;
                continue;
            };
            let available = track.available_at(&place, timing);
            if timing.dynamic {
                let gone = timing
                    .time_shift_buffer
                    .is_some_and(|depth| available + depth < now);
                if gone && !fresh {
                    self.cursor = None;
                    return Next::Rejoin;
                }
                if available > now {
                    self.wait(self.instant_of(available), end).await;
                    continue;
                }
            }
            self.cursor = Some(cursor + 1);
            return Next::Segment(Segment {
                url: place.url,
                duration: place.duration,
                init: track.init_url(),
                gap: false,
            });
        }
    }

    /// Sleeps until `until` (at most to `end`), or until a new MPD arrives.
    async fn wait(&mut self, until: Instant, end: Instant) {
        let until = until.min(end);
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => {}
            changed = self.presentation.changed() => {
                if changed.is_err() {
                    // No more MPDs will come (the player is ending): just wait.
                    tokio::time::sleep_until(until.into()).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_publish_time_is_ignored() {
        let a = r#"<MPD type="dynamic" publishTime="2025-01-01T00:00:00.000Z" x="1">"#;
        let b = r#"<MPD type="dynamic" publishTime="2025-01-01T00:00:02.000Z" x="1">"#;
        let c = r#"<MPD type="dynamic" publishTime="2025-01-01T00:00:02.000Z" x="2">"#;
        assert_eq!(without_publish_time(a), without_publish_time(b));
        assert_ne!(without_publish_time(b), without_publish_time(c));
        assert_eq!(without_publish_time("<MPD/>"), ("<MPD/>", ""));
    }
}
