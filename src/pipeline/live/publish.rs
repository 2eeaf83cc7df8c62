//! The publisher actor: hands each segment to the origin the moment it is complete and keeps
//! the live manifests (media playlists, master playlist, MPD) of the DVR window current.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};

use super::clock::epoch_now;
use super::{Publisher, MEDIA_EPOCH_SECONDS};
use crate::package::{
    self, LiveTimeline, Presentation, Rendition, RenditionKind, SegmentEntry, Timeline,
};
use crate::pipeline::track::{bitrates, Sink};
use crate::pipeline::Error;

/// A track's output as events for the publisher.
pub(super) enum Event {
    Init {
        track: usize,
        bytes: Vec<u8>,
        codecs: String,
    },
    Segment {
        track: usize,
        entry: SegmentEntry,
        bytes: Vec<u8>,
    },
}

pub(super) struct EventSink {
    track: usize,
    events: Sender<Event>,
}

impl EventSink {
    pub(super) fn new(track: usize, events: Sender<Event>) -> Self {
        EventSink { track, events }
    }
}

impl Sink for EventSink {
    fn init(&mut self, bytes: Vec<u8>, codecs: &str) -> Result<(), Error> {
        let _ = self.events.send(Event::Init {
            track: self.track,
            bytes,
            codecs: codecs.into(),
        });
        Ok(())
    }
    fn segment(&mut self, entry: SegmentEntry, bytes: Vec<u8>) -> Result<(), Error> {
        let _ = self.events.send(Event::Segment {
            track: self.track,
            entry,
            bytes,
        });
        Ok(())
    }
}

pub(super) struct TrackInfo {
    pub(super) id: String,
    pub(super) kind: RenditionKind,
    pub(super) target_bitrate: u64,
    pub(super) timescale: u32,
}

/// Publishes segments as they come and keeps the manifests of the live window current.
pub(super) struct PublishLoop {
    /// The channel's name, in its metrics.
    pub(super) channel: String,
    pub(super) publisher: Arc<dyn Publisher>,
    pub(super) tracks: Vec<TrackInfo>,
    pub(super) segment_duration: Duration,
    pub(super) dvr_window: Duration,
    /// The DVR window's bytes, every rendition together, at most.
    pub(super) dvr_max_bytes: u64,
    pub(super) utc_timing_url: String,
}

/// Media time covered by every rendition's window: from the latest first segment start to the
/// earliest last segment end.
fn published_span(tracks: &[TrackInfo], windows: &[VecDeque<SegmentEntry>]) -> Duration {
    let seconds = |ticks: u64, t: &TrackInfo| ticks as f64 / t.timescale as f64;
    let mut first = f64::MIN;
    let mut last = f64::MAX;
    for (t, w) in tracks.iter().zip(windows) {
        match (w.front(), w.back()) {
            (Some(a), Some(b)) => {
                first = first.max(seconds(a.start, t));
                last = last.min(seconds(b.start + b.duration, t));
            }
            _ => return Duration::ZERO,
        }
    }
    Duration::from_secs_f64((last - first).max(0.0))
}

/// Drops the oldest segment numbers of every rendition while the windows hold more than
/// `max_bytes` (three segments always stay, so a player can still join).
fn trim_to_bytes(windows: &mut [VecDeque<SegmentEntry>], max_bytes: u64) {
    let total = |w: &[VecDeque<SegmentEntry>]| -> u64 {
        w.iter().flat_map(|w| w.iter()).map(|s| s.bytes).sum()
    };
    while total(windows) > max_bytes && windows.iter().all(|w| w.len() > 3) {
        let Some(oldest) = windows
            .iter()
            .filter_map(|w| w.front())
            .map(|s| s.number)
            .min()
        else {
            return;
        };
        for w in windows.iter_mut() {
            while w.front().is_some_and(|s| s.number <= oldest) {
                w.pop_front();
            }
        }
    }
}

/// BANDWIDTH before any peak is measured: capped VBR stays near the cap over a segment.
const DECLARED_PEAK_FACTOR: f64 = 1.5;

impl PublishLoop {
    pub(super) fn run(self, events: Receiver<Event>) {
        let n = self.tracks.len();
        let mut codecs: Vec<Option<String>> = vec![None; n];
        let mut windows: Vec<VecDeque<SegmentEntry>> = vec![VecDeque::new(); n];
        let mut peaks = vec![0u64; n];
        let mut announced = false;
        let mut first_start: Option<f64> = None;
        let mut last_end = 0.0f64;
        // Set, not added to, on each slate segment: a gauge idle for a minute leaves /metrics
        // (telemetry), and one that comes back must not start again from zero.
        let mut slate_seconds = 0.0f64;
        for event in events {
            match event {
                Event::Init {
                    track,
                    bytes,
                    codecs: c,
                } => {
                    self.publisher.init(&self.tracks[track].id, bytes);
                    codecs[track] = Some(c);
                }
                Event::Segment {
                    track,
                    entry,
                    bytes,
                } => {
                    let info = &self.tracks[track];
                    self.publisher.segment(&info.id, entry.number, bytes);
                    let seconds = |t: u64| t as f64 / info.timescale as f64;
                    // From the segment's last instant on the channel clock to its publication.
                    let latency = epoch_now()
                        - MEDIA_EPOCH_SECONDS as f64
                        - seconds(entry.start + entry.duration);
                    tracing::debug!(rendition = %info.id, number = entry.number, latency, "published");
                    let labels = [
                        ("channel", self.channel.clone()),
                        ("rendition", info.id.clone()),
                    ];
                    metrics::histogram!("encore_segment_publish_latency_seconds", &labels)
                        .record(latency.max(0.0));
                    if entry.slate && track == 0 {
                        slate_seconds += seconds(entry.duration);
                        metrics::gauge!("encore_channel_slate_seconds", "channel" => self.channel.clone())
                            .set(slate_seconds);
                    }
                    first_start.get_or_insert(seconds(entry.start));
                    last_end = last_end.max(seconds(entry.start + entry.duration));
                    let (peak, _) = bitrates(std::slice::from_ref(&entry), info.timescale);
                    peaks[track] = peaks[track].max(peak);
                    let window = &mut windows[track];
                    window.push_back(entry);
                    let keep_from =
                        seconds(entry.start + entry.duration) - self.dvr_window.as_secs_f64();
                    while window.front().is_some_and(|s| seconds(s.start) < keep_from) {
                        window.pop_front();
                    }
                    trim_to_bytes(&mut windows, self.dvr_max_bytes);
                    let window = &windows[track];
                    if track == 0 {
                        if let Some(oldest) = window.front() {
                            self.publisher.evict_before(oldest.number);
                        }
                    }
                    // Players find the channel only once every rendition has a segment:
                    // media playlists first, the master and MPD last.
                    let ready =
                        codecs.iter().all(Option::is_some) && windows.iter().all(|w| !w.is_empty());
                    if ready {
                        let p = self.presentation(&codecs, &windows, &peaks, None);
                        if announced {
                            let r = &p.renditions[track];
                            self.publisher.manifest(
                                &format!("{}/{}", r.id, package::MEDIA_PLAYLIST_NAME),
                                package::hls::media_playlist(&p, r),
                            );
                            if track == 0 {
                                // The DVR depth grows until the window is full.
                                self.publisher
                                    .manifest(package::MPD_NAME, package::dash::mpd(&p));
                            }
                        } else {
                            for r in &p.renditions {
                                self.publisher.manifest(
                                    &format!("{}/{}", r.id, package::MEDIA_PLAYLIST_NAME),
                                    package::hls::media_playlist(&p, r),
                                );
                            }
                            self.publisher.manifest(
                                package::MASTER_PLAYLIST_NAME,
                                package::hls::master_playlist(&p),
                            );
                            self.publisher
                                .manifest(package::MPD_NAME, package::dash::mpd(&p));
                            announced = true;
                        }
                    }
                }
            }
        }
        // Every track has finished: the window becomes VOD.
        if codecs.iter().all(Option::is_some) {
            let duration =
                Duration::from_secs_f64((last_end - first_start.unwrap_or(0.0)).max(0.0));
            let p = self.presentation(&codecs, &windows, &peaks, Some(duration));
            self.publisher.manifest(
                package::MASTER_PLAYLIST_NAME,
                package::hls::master_playlist(&p),
            );
            for r in &p.renditions {
                self.publisher.manifest(
                    &format!("{}/{}", r.id, package::MEDIA_PLAYLIST_NAME),
                    package::hls::media_playlist(&p, r),
                );
            }
            self.publisher
                .manifest(package::MPD_NAME, package::dash::mpd(&p));
        }
        self.publisher.end();
    }

    fn presentation(
        &self,
        codecs: &[Option<String>],
        windows: &[VecDeque<SegmentEntry>],
        peaks: &[u64],
        ended: Option<Duration>,
    ) -> Presentation {
        let renditions = self
            .tracks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let segments: Vec<SegmentEntry> = windows[i].iter().copied().collect();
                let (_, average) = bitrates(&segments, t.timescale);
                let declared = (t.target_bitrate as f64 * DECLARED_PEAK_FACTOR) as u64;
                Rendition {
                    id: t.id.clone(),
                    kind: t.kind.clone(),
                    codecs: codecs[i].clone().unwrap_or_default(),
                    peak_bitrate: peaks[i].max(declared),
                    average_bitrate: if segments.is_empty() {
                        t.target_bitrate
                    } else {
                        average
                    },
                    timescale: t.timescale,
                    segments,
                }
            })
            .collect();
        Presentation {
            segment_duration: self.segment_duration,
            renditions,
            timeline: Timeline::Live(LiveTimeline {
                availability_start: UNIX_EPOCH + Duration::from_secs(MEDIA_EPOCH_SECONDS),
                // Never announce more than is really there (DASH rule 5): a channel younger than
                // its DVR window offers only what it has published so far.
                time_shift_buffer: self.dvr_window.min(published_span(&self.tracks, windows)),
                minimum_update_period: self.segment_duration,
                suggested_presentation_delay: self.segment_duration * 3,
                utc_timing_url: self.utc_timing_url.clone(),
                publish_time: SystemTime::now(),
                // The output timeline never breaks (the synchroniser owns it): no discontinuities.
                discontinuity_sequence: 0,
                ended,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(numbers: std::ops::Range<u64>, bytes: u64) -> VecDeque<SegmentEntry> {
        numbers
            .map(|number| SegmentEntry {
                number,
                start: number * 2,
                duration: 2,
                bytes,
                discontinuity: false,
                slate: false,
            })
            .collect()
    }

    #[test]
    fn the_window_is_trimmed_to_its_bytes_oldest_numbers_first() {
        // Video 10..20 at 100 bytes, audio 10..20 at 10 bytes: 1100 in all.
        let mut windows = vec![window(10..20, 100), window(10..20, 10)];
        trim_to_bytes(&mut windows, 600);
        let first: Vec<u64> = windows.iter().map(|w| w.front().unwrap().number).collect();
        assert_eq!(first, [15, 15], "the same numbers leave every rendition");
        assert!(windows.iter().flatten().map(|s| s.bytes).sum::<u64>() <= 600);
        // Never fewer than three segments, however small the cap.
        trim_to_bytes(&mut windows, 1);
        assert!(windows.iter().all(|w| w.len() == 3));
    }
}
