//! A DASH MPD as a player reads it: one Period, its video and audio Representations with their
//! `SegmentTemplate` (`$Number$` or `$Time$`, `@duration` or a `SegmentTimeline`), and the
//! timing that maps segment numbers to the wall clock (ISO/IEC 23009-1 §5.3.9.5; for Encore's
//! live channels, docs/timing.md §7).
//!
//! `SegmentBase` and `SegmentList` are refused with a clear error: live origins and CMAF
//! packagers use templates, and a load generator that guessed would measure the wrong thing.

use std::time::Duration;

use dash_mpd::{AdaptationSet, Period, Representation, SegmentTemplate, MPD};
use reqwest::Url;

use super::{Rendition, LIVE_START_SEGMENTS};

/// The timeline of the chosen Period.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// `type="dynamic"`: segments appear as the wall clock passes their end.
    pub dynamic: bool,
    /// `availabilityStartTime` + `Period@start`, Unix seconds (0 when the MPD has none).
    pub period_start: f64,
    /// Media seconds from the Period's start after which there are no segments
    /// (`Period@duration`, else `mediaPresentationDuration` less the Period's start).
    pub end: Option<f64>,
    /// `timeShiftBufferDepth`, seconds.
    pub time_shift_buffer: Option<f64>,
}

/// One Representation's segments.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    pub id: String,
    pub bandwidth: u64,
    base: Url,
    media: String,
    initialization: Option<String>,
    timescale: u64,
    start_number: u64,
    presentation_time_offset: u64,
    /// `@duration` in `timescale` units, when there is no timeline.
    duration: Option<u64>,
    /// `SegmentTimeline`, expanded: the start and duration of segment `start_number + i`.
    timeline: Vec<(u64, u64)>,
    /// `availabilityTimeOffset`, seconds: segments are available this much earlier.
    availability_offset: f64,
}

/// Where segment `number` sits: media seconds from the Period's start, its length, and its URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    pub start: f64,
    pub duration: f64,
    pub url: Url,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Presentation {
    pub timing: Timing,
    /// `minimumUpdatePeriod` of a dynamic MPD: how often a player fetches it again.
    pub refresh: Option<Duration>,
    /// The `UTCTiming` a player synchronises its clock with: a URL answering an ISO 8601 time
    /// (`http-iso`, `http-xsdate`), or the time itself (`direct`).
    pub clock: Option<Clock>,
    pub video: Vec<Track>,
    pub audio: Vec<Track>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Clock {
    Url(Url),
    Direct(String),
}

/// Reads the MPD `text` fetched from `url`.
pub fn read(text: &str, url: &Url) -> Result<Presentation, String> {
    let mpd = dash_mpd::parse(text).map_err(|e| format!("not a DASH MPD: {e}"))?;
    let dynamic = mpd.mpdtype.as_deref() == Some("dynamic");
    // A live MPD's current Period is its last; a static one plays from its first.
    let period = if dynamic {
        mpd.periods.last()
    } else {
        mpd.periods.first()
    }
    .ok_or("an MPD without a Period")?;
    let ast = mpd
        .availabilityStartTime
        .map_or(0.0, |t| t.timestamp_millis() as f64 / 1000.0);
    let start = period.start.map_or(0.0, |d| d.as_secs_f64());
    let end = period.duration.map(|d| d.as_secs_f64()).or_else(|| {
        mpd.mediaPresentationDuration
            .map(|d| d.as_secs_f64() - start)
    });
    let timing = Timing {
        dynamic,
        period_start: ast + start,
        end,
        time_shift_buffer: mpd.timeShiftBufferDepth.map(|d| d.as_secs_f64()),
    };
    let mut base = url.clone();
    for b in [mpd.base_url.first(), period.BaseURL.first()]
        .into_iter()
        .flatten()
    {
        base = join(&base, &b.base)?;
    }
    let (mut video, mut audio) = (Vec::new(), Vec::new());
    for set in &period.adaptations {
        let kind = set
            .contentType
            .as_deref()
            .or(set.mimeType.as_deref())
            .unwrap_or("video");
        for rep in &set.representations {
            let kind = rep.mimeType.as_deref().unwrap_or(kind);
            let list = if kind.starts_with("audio") {
                &mut audio
            } else if kind.starts_with("video") {
                &mut video
            } else {
                continue; // text, images
            };
            list.push(track(&base, period, set, rep)?);
        }
    }
    if video.is_empty() && audio.is_empty() {
        return Err("an MPD without video or audio Representations".into());
    }
    Ok(Presentation {
        timing,
        refresh: mpd.minimumUpdatePeriod.filter(|_| dynamic),
        clock: clock(&mpd, url),
        video,
        audio,
    })
}

fn join(base: &Url, relative: &str) -> Result<Url, String> {
    base.join(relative.trim())
        .map_err(|e| format!("BaseURL {relative:?}: {e}"))
}

fn clock(mpd: &MPD, url: &Url) -> Option<Clock> {
    mpd.UTCTiming.iter().find_map(|t| {
        let value = t.value.as_deref()?.split_whitespace().next()?;
        match t.schemeIdUri.as_str() {
            "urn:mpeg:dash:utc:http-iso:2014" | "urn:mpeg:dash:utc:http-xsdate:2014" => {
                url.join(value).ok().map(Clock::Url)
            }
            "urn:mpeg:dash:utc:direct:2014" => Some(Clock::Direct(value.into())),
            _ => None,
        }
    })
}

/// The Representation's template: its own attributes over its AdaptationSet's over its
/// Period's.
fn track(
    base: &Url,
    period: &Period,
    set: &AdaptationSet,
    rep: &Representation,
) -> Result<Track, String> {
    let id = rep.id.clone().unwrap_or_default();
    let levels: Vec<&SegmentTemplate> = [
        rep.SegmentTemplate.as_ref(),
        set.SegmentTemplate.as_ref(),
        period.SegmentTemplate.as_ref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    macro_rules! pick {
        ($field:ident) => {
            levels.iter().find_map(|t| t.$field.clone())
        };
    }
    let media = pick!(media).ok_or_else(|| {
        format!(
            "Representation {id:?} has no SegmentTemplate@media (SegmentBase and SegmentList are \
             not followed)"
        )
    })?;
    let timescale = pick!(timescale).unwrap_or(1).max(1);
    let start_number = pick!(startNumber).unwrap_or(1);
    let timeline = levels
        .iter()
        .find_map(|t| t.SegmentTimeline.as_ref())
        .map(|tl| {
            let mut out = Vec::new();
            let mut t = 0u64;
            for s in &tl.segments {
                t = s.t.unwrap_or(t);
                // A negative @r repeats to the next S or the Period's end: one is enough for a
                // player that reads the MPD again.
                for _ in 0..=s.r.unwrap_or(0).clamp(0, 100_000) {
                    out.push((t, s.d));
                    t += s.d;
                }
            }
            out
        })
        .unwrap_or_default();
    let duration = pick!(duration).map(|d| d.round() as u64).filter(|&d| d > 0);
    if timeline.is_empty() && duration.is_none() {
        return Err(format!(
            "Representation {id:?}: a SegmentTemplate with neither @duration nor a SegmentTimeline"
        ));
    }
    let mut rep_base = base.clone();
    for b in [set.BaseURL.first(), rep.BaseURL.first()]
        .into_iter()
        .flatten()
    {
        rep_base = join(&rep_base, &b.base)?;
    }
    Ok(Track {
        bandwidth: rep.bandwidth.unwrap_or(0),
        base: rep_base,
        media,
        initialization: pick!(initialization).or_else(|| {
            levels
                .iter()
                .find_map(|t| t.Initialization.as_ref()?.sourceURL.clone())
        }),
        timescale,
        start_number,
        presentation_time_offset: pick!(presentationTimeOffset).unwrap_or(0),
        duration,
        timeline,
        availability_offset: pick!(availabilityTimeOffset)
            .filter(|o| o.is_finite())
            .unwrap_or(0.0),
        id,
    })
}

impl Presentation {
    /// The Representations a player of `choice` fetches: a video one, and the first audio one.
    pub fn choose(&self, choice: &Rendition, random: u64) -> Result<Vec<String>, String> {
        let mut ids = Vec::new();
        let main = if self.video.is_empty() {
            &self.audio
        } else {
            &self.video
        };
        let names: Vec<(&str, u64)> = main.iter().map(|t| (t.id.as_str(), t.bandwidth)).collect();
        let i = super::choose(&names, choice, random)
            .ok_or_else(|| super::no_such_rendition(choice, &names))?;
        ids.push(main[i].id.clone());
        if !self.video.is_empty() {
            if let Some(a) = self.audio.first() {
                ids.push(a.id.clone());
            }
        }
        Ok(ids)
    }

    pub fn track(&self, id: &str) -> Option<&Track> {
        self.video.iter().chain(&self.audio).find(|t| t.id == id)
    }
}

impl Track {
    pub fn init_url(&self) -> Option<Url> {
        let init = self.initialization.as_deref()?;
        self.base.join(&self.expand(init, 0, 0)).ok()
    }

    /// The number of the first segment (`startNumber`).
    pub fn first_number(&self) -> u64 {
        self.start_number
    }

    /// Segment `number`, if the template has it (before the Period's end).
    pub fn place(&self, number: u64, timing: &Timing) -> Option<Place> {
        let index = number.checked_sub(self.start_number)?;
        let ts = self.timescale as f64;
        let (time, length) = match self.duration {
            _ if !self.timeline.is_empty() => *self.timeline.get(usize::try_from(index).ok()?)?,
            Some(d) => (self.presentation_time_offset + index * d, d),
            None => return None,
        };
        let start = (time as f64 - self.presentation_time_offset as f64) / ts;
        if timing.end.is_some_and(|end| start >= end - 1e-6) {
            return None;
        }
        let url = self
            .base
            .join(&self.expand(&self.media, number, time))
            .ok()?;
        Some(Place {
            start,
            duration: length as f64 / ts,
            url,
        })
    }

    /// Wall-clock time (Unix seconds) from which segment `number` can be fetched.
    pub fn available_at(&self, place: &Place, timing: &Timing) -> f64 {
        timing.period_start + place.start + place.duration - self.availability_offset
    }

    /// The newest segment available at `now` (Unix seconds) of a dynamic MPD, if any yet.
    pub fn newest_available(&self, now: f64, timing: &Timing) -> Option<u64> {
        let since = now - timing.period_start + self.availability_offset;
        if !self.timeline.is_empty() {
            let ts = self.timescale as f64;
            let pto = self.presentation_time_offset as f64;
            let done = self
                .timeline
                .iter()
                .take_while(|(t, d)| (*t + *d) as f64 - pto <= since * ts)
                .count() as u64;
            return done.checked_sub(1).map(|i| self.start_number + i);
        }
        let d = self.duration? as f64 / self.timescale as f64;
        let whole = (since / d).floor();
        (whole >= 1.0).then(|| self.start_number + whole as u64 - 1)
    }

    /// Where a player joining a dynamic MPD at `now` starts: [`LIVE_START_SEGMENTS`] back
    /// from the newest available segment, but not before the first one nor before the time
    /// shift buffer (a young channel announces only what it has); `None` before anything is
    /// available.
    pub fn live_start(&self, now: f64, timing: &Timing) -> Option<u64> {
        let edge = self.newest_available(now, timing)?;
        let mut start = edge
            .saturating_sub(LIVE_START_SEGMENTS - 1)
            .max(self.start_number);
        if let Some(depth) = timing.time_shift_buffer {
            while start < edge
                && self
                    .place(start, timing)
                    .is_some_and(|p| self.available_at(&p, timing) + depth < now)
            {
                start += 1;
            }
        }
        Some(start)
    }

    /// `$RepresentationID$`, `$Number$` (with a `%0Nd` width), `$Bandwidth$`, `$Time$`, `$$`.
    fn expand(&self, template: &str, number: u64, time: u64) -> String {
        let mut out = String::with_capacity(template.len() + 16);
        let mut parts = template.split('$');
        out.push_str(parts.next().unwrap_or(""));
        let mut inside = true;
        for part in parts {
            if !inside {
                out.push_str(part);
                inside = true;
                continue;
            }
            inside = false;
            let (name, width) = match part.split_once('%') {
                Some((n, f)) => (
                    n,
                    f.trim_start_matches('0').trim_end_matches('d').parse().ok(),
                ),
                None => (part, None),
            };
            let value = match name {
                "" => "$".to_string(),
                "RepresentationID" => self.id.clone(),
                "Number" => number.to_string(),
                "Bandwidth" => self.bandwidth.to_string(),
                "Time" => time.to_string(),
                other => format!("${other}$"),
            };
            match width {
                Some(w) => out.push_str(&format!("{value:0>w$}")),
                None => out.push_str(&value),
            }
        }
        out
    }
}

/// Unix seconds of an ISO 8601 / `xs:dateTime` instant (`2025-01-01T00:00:05.300Z`, or with a
/// `±hh:mm` offset), as `/time` and `UTCTiming` give it.
pub fn parse_instant(text: &str) -> Option<f64> {
    let t = text.trim();
    let num = |s: &str| s.parse::<i64>().ok();
    let (date, time) = t.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let (y, m, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    let (clock, offset) = match time.find(['Z', '+', '-']) {
        Some(i) => (&time[..i], &time[i..]),
        None => (time, "Z"),
    };
    let mut c = clock.splitn(3, ':');
    let (h, min) = (num(c.next()?)?, num(c.next()?)?);
    let s: f64 = c.next()?.parse().ok()?;
    let offset = match offset {
        "Z" => 0,
        o => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (oh, om) = o[1..].split_once(':').unwrap_or((&o[1..], "0"));
            sign * (num(oh)? * 3600 + num(om)? * 60)
        }
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || !(0..=23).contains(&h) {
        return None;
    }
    let days = days_from_civil(y, m, day);
    Some((days * 86_400 + h * 3600 + min * 60 - offset) as f64 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests;
