//! DASH MPDs rendered from a [`Presentation`](super::Presentation) snapshot
//! (ISO/IEC 23009-1, DASH-IF interoperability guidelines and timing model).
//!
//! A pure function of the snapshot: it must never do I/O or read the clock; `publishTime` and
//! every other instant come from the snapshot.
//!
//! Layout: one Period (`id="0"`, `start="PT0S"`), one video AdaptationSet (`id="0"`), one audio
//! AdaptationSet per language and codec (`id="1"`, `"2"`, ... in rendition order), and a
//! `SegmentTemplate` with `@duration` and `$Number$` in each Representation (video and audio
//! timescales differ, and the template's timescale is the track's).
//!
//! Decisions (the MPD as docs/timing.md describes it):
//! - Live numbering is epoch-locked: the AST is media time 0 and lies a whole number s of
//!   segments after the Unix epoch; `startNumber` = s, `presentationTimeOffset` 0 and
//!   `Period@start` 0, so segment N covers wall-clock [N·D, (N+1)·D) since the Unix epoch
//!   (media time [(N−s)·D, (N−s+1)·D)), and rule 4 makes it available from
//!   AST + (N−s+1)·D: exactly when the segmenter can have finished it. None of these values depends on the
//!   window, so none changes between updates (rule 2); the DVR window is
//!   `timeShiftBufferDepth` alone and no refresh is needed to find new segments. DASH-IF
//!   livesim2 numbers its streams the same way.
//! - VOD: `startNumber` is the first segment's number and `presentationTimeOffset` its `tfdt`,
//!   so the presentation starts at 0 whatever the numbering (normally both are 0 and the
//!   offset is left out).
//! - A live stream that has ended stays `type="dynamic"`; `minimumUpdatePeriod` goes and the
//!   Period gets `@duration` (and the MPD `@mediaPresentationDuration`) up to the end of the
//!   last segment (rule 7). That is the timing model's form of an ended live presentation, and
//!   dash.js and Shaka play it to the end and stop (livesim2's `stoprel` does the same). A
//!   switch to `static` would declare every segment since `Period@start` available, which for
//!   an epoch-locked stream reaches back to 1970, past the DVR window whose segments the origin
//!   no longer serves (rule 5).
//! - The Period end is the end of the last real segment, clamped to its nominal end, so that
//!   ceil(duration / d) never names a segment past the last one.

use std::fmt::Write;

use super::{datetime, LiveTimeline, Presentation, Rendition, RenditionKind, Timeline, INIT_NAME};
use crate::media::Rational;

/// `MPD@profiles`: the live profile, `SegmentTemplate` with `$Number$` (rule 1).
pub const PROFILE: &str = "urn:mpeg:dash:profile:isoff-live:2011";
/// `UTCTiming@schemeIdUri`: the origin's clock endpoint answers with an ISO 8601 instant.
pub const UTC_TIMING_SCHEME: &str = "urn:mpeg:dash:utc:http-iso:2014";
const CHANNEL_SCHEME: &str = "urn:mpeg:dash:23003:3:audio_channel_configuration:2011";

/// The MPD ([`MPD_NAME`](super::MPD_NAME), at the top of the presentation; `SegmentTemplate`
/// URLs are relative to it).
pub fn mpd(p: &Presentation) -> String {
    let d_ms = millis(p.segment_duration.as_nanos());
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = write!(
        out,
        "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"{PROFILE}\""
    );
    let mut period_duration = None;
    match &p.timeline {
        Timeline::Vod => {
            // The video's duration when there is video: audio may run up to one AAC frame
            // longer, and a player that divides the presentation by D must not look for a
            // segment past the last one.
            let video = p.video().map(vod_duration_ms).max();
            let total = video
                .unwrap_or_else(|| p.renditions.iter().map(vod_duration_ms).max().unwrap_or(0));
            let _ = write!(
                out,
                " type=\"static\" mediaPresentationDuration=\"{}\"",
                datetime::duration_millis(total)
            );
        }
        Timeline::Live(live) => {
            let _ = write!(
                out,
                " type=\"dynamic\" availabilityStartTime=\"{}\" publishTime=\"{}\"",
                datetime::datetime(live.availability_start),
                datetime::datetime(live.publish_time)
            );
            if live.ended.is_some() {
                let end = live_end_ms(p);
                period_duration = Some(end);
                let _ = write!(
                    out,
                    " mediaPresentationDuration=\"{}\"",
                    datetime::duration_millis(end)
                );
            } else {
                let _ = write!(
                    out,
                    " minimumUpdatePeriod=\"{}\"",
                    datetime::duration(live.minimum_update_period)
                );
            }
            let _ = write!(
                out,
                " timeShiftBufferDepth=\"{}\" suggestedPresentationDelay=\"{}\"",
                datetime::duration(live.time_shift_buffer),
                datetime::duration(live.suggested_presentation_delay)
            );
        }
    }
    let _ = writeln!(
        out,
        " minBufferTime=\"{}\">",
        datetime::duration_millis(d_ms)
    );

    let _ = write!(out, "  <Period id=\"0\" start=\"PT0S\"");
    if let Some(end) = period_duration {
        let _ = write!(out, " duration=\"{}\"", datetime::duration_millis(end));
    }
    out.push_str(">\n");

    let video: Vec<&Rendition> = p.video().collect();
    if !video.is_empty() {
        video_set(&mut out, p, &video);
    }
    for (i, set) in audio_sets(p).iter().enumerate() {
        audio_set(&mut out, p, i + 1, set);
    }
    out.push_str("  </Period>\n");

    if let Timeline::Live(live) = &p.timeline {
        let _ = writeln!(
            out,
            "  <UTCTiming schemeIdUri=\"{UTC_TIMING_SCHEME}\" value=\"{}\"/>",
            escape(&live.utc_timing_url)
        );
    }
    out.push_str("</MPD>\n");
    out
}

fn video_set(out: &mut String, p: &Presentation, video: &[&Rendition]) {
    let mut max_width = 0;
    let mut max_height = 0;
    let mut max_rate: Option<Rational> = None;
    for r in video {
        if let RenditionKind::Video {
            width,
            height,
            frame_rate,
        } = r.kind
        {
            max_width = max_width.max(width);
            max_height = max_height.max(height);
            let faster = |m: Rational| {
                frame_rate.num as u64 * m.den as u64 > m.num as u64 * frame_rate.den as u64
            };
            if max_rate.is_none_or(faster) {
                max_rate = Some(frame_rate);
            }
        }
    }
    let _ = write!(
        out,
        "    <AdaptationSet id=\"0\" contentType=\"video\" mimeType=\"video/mp4\" \
         segmentAlignment=\"true\" startWithSAP=\"1\" maxWidth=\"{max_width}\" maxHeight=\"{max_height}\""
    );
    if let Some(rate) = max_rate {
        let _ = write!(out, " maxFrameRate=\"{rate}\"");
    }
    out.push_str(">\n");
    for r in video {
        let RenditionKind::Video {
            width,
            height,
            frame_rate,
        } = r.kind
        else {
            continue;
        };
        let _ = writeln!(
            out,
            "      <Representation id=\"{}\" bandwidth=\"{}\" codecs=\"{}\" width=\"{width}\" \
             height=\"{height}\" frameRate=\"{frame_rate}\" sar=\"1:1\">",
            escape(&r.id),
            r.peak_bitrate,
            escape(&r.codecs)
        );
        segment_template(out, p, r);
        out.push_str("      </Representation>\n");
    }
    out.push_str("    </AdaptationSet>\n");
}

/// Audio renditions grouped into AdaptationSets: a client switches bitrate only inside one,
/// so languages and codecs each get their own.
fn audio_sets(p: &Presentation) -> Vec<Vec<&Rendition>> {
    let key = |r: &Rendition| match &r.kind {
        RenditionKind::Audio { language, .. } => (language.clone(), r.codecs.clone()),
        RenditionKind::Video { .. } => (None, String::new()),
    };
    let mut sets: Vec<Vec<&Rendition>> = Vec::new();
    for r in p.audio() {
        match sets.iter_mut().find(|s| key(s[0]) == key(r)) {
            Some(set) => set.push(r),
            None => sets.push(vec![r]),
        }
    }
    sets
}

fn audio_set(out: &mut String, p: &Presentation, id: usize, set: &[&Rendition]) {
    let _ = write!(
        out,
        "    <AdaptationSet id=\"{id}\" contentType=\"audio\" mimeType=\"audio/mp4\""
    );
    if let RenditionKind::Audio {
        language: Some(lang),
        ..
    } = &set[0].kind
    {
        let _ = write!(out, " lang=\"{}\"", escape(lang));
    }
    out.push_str(" segmentAlignment=\"true\" startWithSAP=\"1\">\n");
    for r in set {
        let RenditionKind::Audio {
            sample_rate,
            channels,
            ..
        } = r.kind
        else {
            continue;
        };
        let _ = writeln!(
            out,
            "      <Representation id=\"{}\" bandwidth=\"{}\" codecs=\"{}\" audioSamplingRate=\"{sample_rate}\">\n\
             \x20       <AudioChannelConfiguration schemeIdUri=\"{CHANNEL_SCHEME}\" value=\"{channels}\"/>",
            escape(&r.id),
            r.peak_bitrate,
            escape(&r.codecs)
        );
        segment_template(out, p, r);
        out.push_str("      </Representation>\n");
    }
    out.push_str("    </AdaptationSet>\n");
}

/// Live: `@duration` maps the wall clock to numbers with no timeline to refresh (rule 4).
/// VOD: a `SegmentTimeline` with the real durations, so a client knows exactly how many
/// segments there are and where each starts (audio segments are not exactly D long).
fn segment_template(out: &mut String, p: &Presentation, r: &Rendition) {
    let ts = r.timescale.max(1);
    let media = format!(
        " initialization=\"$RepresentationID$/{INIT_NAME}\" media=\"$RepresentationID$/$Number$.m4s\""
    );
    match (&p.timeline, r.segments.first()) {
        (Timeline::Vod, Some(first)) => {
            let _ = write!(
                out,
                "        <SegmentTemplate timescale=\"{ts}\" startNumber=\"{}\"",
                first.number
            );
            if first.start != 0 {
                let _ = write!(out, " presentationTimeOffset=\"{}\"", first.start);
            }
            let _ = writeln!(out, "{media}>\n          <SegmentTimeline>");
            // Runs of equal durations become one S with @r.
            let mut i = 0;
            while i < r.segments.len() {
                let s = &r.segments[i];
                let mut repeat = 0;
                while i + repeat + 1 < r.segments.len()
                    && r.segments[i + repeat + 1].duration == s.duration
                    && r.segments[i + repeat + 1].start == r.segments[i + repeat].start + s.duration
                {
                    repeat += 1;
                }
                let _ = write!(out, "            <S t=\"{}\" d=\"{}\"", s.start, s.duration);
                if repeat > 0 {
                    let _ = write!(out, " r=\"{repeat}\"");
                }
                out.push_str("/>\n");
                i += repeat + 1;
            }
            out.push_str("          </SegmentTimeline>\n        </SegmentTemplate>\n");
        }
        (timeline, _) => {
            let duration =
                (p.segment_duration.as_nanos() * ts as u128 + 500_000_000) / 1_000_000_000;
            let start_number = match timeline {
                Timeline::Live(live) => live_start_number(p, live),
                Timeline::Vod => 0,
            };
            let _ = writeln!(
                out,
                "        <SegmentTemplate timescale=\"{ts}\" duration=\"{duration}\" startNumber=\"{start_number}\"{media}/>"
            );
        }
    }
}

/// Segments between the Unix epoch and the AST: the number of the segment that starts at
/// media time 0, so numbers count segments since the Unix epoch (epoch locking).
fn live_start_number(p: &Presentation, live: &LiveTimeline) -> u64 {
    let anchor_ms = live
        .availability_start
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    (anchor_ms / p.segment_duration.as_millis().max(1)) as u64
}

/// A VOD rendition's duration: from its first sample to the end of its last segment.
fn vod_duration_ms(r: &Rendition) -> u64 {
    match (r.segments.first(), r.segments.last()) {
        (Some(first), Some(last)) => {
            ticks_ms(last.start + last.duration - first.start, r.timescale)
        }
        _ => 0,
    }
}

/// Media time (from 0, which is `Period@start`) at which an ended live presentation ends.
fn live_end_ms(p: &Presentation) -> u64 {
    let real = p
        .renditions
        .iter()
        .filter_map(|r| {
            r.segments
                .last()
                .map(|s| ticks_ms(s.start + s.duration, r.timescale))
        })
        .max()
        .unwrap_or(0);
    let last_number = p
        .renditions
        .iter()
        .filter_map(|r| r.segments.last().map(|s| s.number))
        .max()
        .unwrap_or(0);
    // Numbers count from the Unix epoch, media time from the availability start.
    let availability_start_ms = match &p.timeline {
        Timeline::Live(live) => live
            .availability_start
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        Timeline::Vod => 0,
    };
    let nominal = millis((last_number as u128 + 1) * p.segment_duration.as_nanos())
        .saturating_sub(availability_start_ms);
    real.min(nominal)
}

fn ticks_ms(ticks: u64, timescale: u32) -> u64 {
    let ts = timescale.max(1) as u128;
    ((ticks as u128 * 1000 + ts / 2) / ts) as u64
}

fn millis(nanos: u128) -> u64 {
    ((nanos + 500_000) / 1_000_000) as u64
}

/// XML attribute value escaping.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
