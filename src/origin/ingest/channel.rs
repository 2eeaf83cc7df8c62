//! One ingested channel: the copies its publishers send, the choice of one per segment number,
//! and what that choice publishes to the origin's live store.
//!
//! Two forms, fixed by the first file a channel receives:
//! - **Encore's layout** (`{rendition}/init.mp4`, `{rendition}/{number}.m4s`, epoch-locked
//!   numbers): copies from any number of publishers; per number the first copy that passes
//!   every check ([`judge`](super::judge)) is served at once, and when the first ones fail,
//!   the origin waits up to `wait` for a better one. The media playlists are the origin's own,
//!   built from the chosen segments; the master playlist and MPD (which name no segment) are
//!   the publishers'. Everything the live store does (holding requests at the edge, the DVR
//!   window, load shedding) applies.
//! - **Any other layout** (FFmpeg's `dash` and `hls` muxers): a single publisher's files are
//!   stored as sent and served as they are, manifests included, until deleted or evicted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::inspect::{self, InitFacts, SegmentFacts};
use super::judge::{judge, Expect, Reason, Verdict};
use super::pass_through::{self, PassThrough};
use crate::origin::object::{cache_control_value, Object};
use crate::origin::store::ChannelPublisher;
use crate::package::{
    self, LiveTimeline, Presentation, Rendition, RenditionKind, SegmentEntry, Timeline,
    MEDIA_EPOCH_SECONDS,
};

/// What became of one PUT.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Stored or served.
    Accepted,
    /// Held while a better copy may come; decide again at this instant.
    Held(Instant),
    /// Not used, for this reason (the publisher should not send it again).
    Refused(String),
    /// This publisher's init cannot stand in for the channel's.
    Conflict(String),
}

pub(crate) struct IngestChannel {
    pub name: String,
    segment_duration: Duration,
    dvr_window: Duration,
    wait: Duration,
    publisher: ChannelPublisher,
    created: Instant,
    /// Milliseconds from `created` to the last file any publisher sent (read without the
    /// state's lock, by the idle sweep).
    last_put_ms: AtomicU64,
    state: Mutex<State>,
}

/// Manifests kept at most before the channel's form is known.
const EARLY_MANIFESTS: usize = 8;

#[derive(Default)]
struct State {
    form: Option<Form>,
    renditions: BTreeMap<String, RenditionState>,
    /// The publishers' master playlist and MPD, until every rendition has a segment.
    waiting_manifests: BTreeMap<String, Bytes>,
    /// Manifests that came before any media file told the channel's form.
    early: Vec<(String, Bytes)>,
    /// Publishers that sent their final (static) MPD.
    finished_publishers: BTreeSet<String>,
    /// Every publisher heard from has finished: the playlists are final.
    ended: bool,
    publishers: BTreeMap<String, PublisherStats>,
    files: PassThrough,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Encore,
    PassThrough,
}

#[derive(Default)]
struct RenditionState {
    /// The channel's init for this rendition: the first one accepted.
    init: Option<InitFacts>,
    /// Each publisher's init for it, and whether it may stand in for the channel's.
    inits: HashMap<String, PublisherInit>,
    frame: Option<u32>,
    pending: BTreeMap<u64, Vec<Copy>>,
    /// Numbers decided (served or given up), with what was served.
    chosen: BTreeMap<u64, Option<SegmentEntry>>,
    /// An init that replaced the channel's, published with the first segment made with it:
    /// until then the store keeps serving the old init with the old playlist.
    unpublished_init: Option<Bytes>,
}

/// One publisher's init segment of a rendition.
struct PublisherInit {
    /// What it says (`None`: it did not parse).
    facts: Option<InitFacts>,
    /// Why its segments are refused; `None`: accepted.
    refused: Option<String>,
}

struct Copy {
    publisher: String,
    bytes: Bytes,
    verdict: Verdict,
    entry: Option<SegmentEntry>,
}

#[derive(Default, Debug, Clone, serde::Serialize)]
pub(crate) struct PublisherStats {
    pub served: u64,
    pub duplicates: u64,
    pub refused: BTreeMap<&'static str, u64>,
    pub last_refusal: Option<String>,
    #[serde(skip)]
    pub last_segment: Option<Instant>,
    /// The last file of any kind.
    #[serde(skip)]
    pub last_heard: Option<Instant>,
}

impl IngestChannel {
    pub fn new(
        name: &str,
        publisher: ChannelPublisher,
        dvr_window: Duration,
        wait: Duration,
    ) -> IngestChannel {
        IngestChannel {
            name: name.to_owned(),
            segment_duration: publisher.timing().segment_duration,
            dvr_window,
            wait,
            publisher,
            created: Instant::now(),
            last_put_ms: AtomicU64::new(0),
            state: Mutex::new(State::default()),
        }
    }

    pub fn publisher(&self) -> &ChannelPublisher {
        &self.publisher
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A file of the channel from `publisher`; `path` is one or two checked names.
    pub fn put(&self, publisher: &str, path: &str, bytes: Bytes) -> Outcome {
        let layout = EncorePath::parse(path);
        self.touch();
        // CMAF is parsed before the channel's lock is taken: a large file from one publisher
        // does not hold up the others, nor the idle sweep.
        let parsed = match &layout {
            EncorePath::Init(_) => Parsed::Init(inspect::init(&bytes)),
            EncorePath::Segment(rendition, _) => match self.accepted_init(publisher, rendition) {
                Some(init) => {
                    let facts = inspect::segment(&bytes, &init);
                    Parsed::Segment(init, facts)
                }
                None => Parsed::Nothing,
            },
            _ => Parsed::Nothing,
        };
        let mut state = self.lock();
        state
            .publishers
            .entry(publisher.to_owned())
            .or_default()
            .last_heard = Some(Instant::now());
        if state.ended {
            // The event is over; what its publishers still send changes nothing.
            return Outcome::Accepted;
        }
        let form = match (state.form, &layout) {
            (Some(form), _) => form,
            // A manifest alone does not tell the layout: it waits for the first media file.
            (None, EncorePath::TopManifest(_) | EncorePath::MediaPlaylist) => {
                state.early.retain(|(p, _)| p != path);
                if state.early.len() >= EARLY_MANIFESTS {
                    state.early.remove(0);
                }
                state.early.push((path.to_owned(), bytes));
                return Outcome::Accepted;
            }
            (None, EncorePath::Other) => self.set_form(&mut state, publisher, Form::PassThrough),
            (None, _) => self.set_form(&mut state, publisher, Form::Encore),
        };
        match (form, layout) {
            (Form::PassThrough, _) => {
                self.store_file(&mut state, path, bytes);
                Outcome::Accepted
            }
            (Form::Encore, EncorePath::Init(r)) => {
                // Parsed above; parsed here only if that ever changes.
                let facts = match parsed {
                    Parsed::Init(facts) => facts,
                    _ => inspect::init(&bytes),
                };
                self.put_init(&mut state, publisher, r, facts, bytes)
            }
            (Form::Encore, EncorePath::Segment(r, n)) => {
                let parsed = match parsed {
                    Parsed::Segment(init, facts) => Some((init, facts)),
                    _ => None,
                };
                self.put_segment(&mut state, publisher, r, n, bytes, parsed)
            }
            (Form::Encore, EncorePath::MediaPlaylist) => Outcome::Accepted,
            (Form::Encore, EncorePath::TopManifest(name)) => {
                self.put_top_manifest(&mut state, publisher, name, bytes)
            }
            (Form::Encore, EncorePath::Other) => Outcome::Refused(format!(
                "{path}: this channel takes Encore's layout ({{rendition}}/init.mp4, \
                 {{rendition}}/{{number}}.m4s, master.m3u8, manifest.mpd)"
            )),
        }
    }

    /// The publisher's accepted init of `rendition`, if it has one.
    fn accepted_init(&self, publisher: &str, rendition: &str) -> Option<InitFacts> {
        let state = self.lock();
        let i = state.renditions.get(rendition)?.inits.get(publisher)?;
        i.refused.is_none().then(|| i.facts.clone()).flatten()
    }

    fn set_form(&self, state: &mut State, publisher: &str, form: Form) -> Form {
        state.form = Some(form);
        for (path, bytes) in std::mem::take(&mut state.early) {
            match (form, EncorePath::parse(&path)) {
                (Form::PassThrough, _) => self.store_file(state, &path, bytes),
                (Form::Encore, EncorePath::TopManifest(name)) => {
                    self.put_top_manifest(state, publisher, name, bytes);
                }
                _ => {}
            }
        }
        form
    }

    /// Removes a pass-through file (FFmpeg deletes segments that left its window).
    pub fn delete(&self, path: &str) -> bool {
        self.lock().files.remove(path)
    }

    /// A pass-through file, for GET.
    pub fn file(&self, path: &str) -> Option<Arc<Object>> {
        self.lock().files.get(path)
    }

    fn store_file(&self, state: &mut State, path: &str, bytes: Bytes) {
        let cache = pass_through::cache_control(path, self.segment_duration);
        let object = self.publisher.object(
            bytes,
            crate::origin::object::content_type_for(path),
            cache_control_value(&cache),
        );
        state.files.insert(path, object);
    }

    fn put_init(
        &self,
        state: &mut State,
        publisher: &str,
        rendition: &str,
        facts: Result<InitFacts, String>,
        bytes: Bytes,
    ) -> Outcome {
        let facts = match facts {
            Ok(f) => f,
            Err(e) => {
                let reason = format!("{rendition}/{}: {e}", package::INIT_NAME);
                return self.refuse_init(state, publisher, rendition, None, reason);
            }
        };
        // Publishers heard from lately; one gone for long has no say over the channel's init.
        let now = Instant::now();
        let recent = self.segment_duration * 2;
        let active: BTreeSet<&String> = state
            .publishers
            .iter()
            .filter(|(_, s)| {
                s.last_heard
                    .is_some_and(|t| now.duration_since(t) <= recent)
            })
            .map(|(p, _)| p)
            .collect();
        let r = state.renditions.entry(rendition.to_owned()).or_default();
        let replace = match &r.init {
            None => true,
            Some(channel) => match channel.difference(&facts) {
                None => false,
                // The channel's init changes only when no other active publisher still
                // agrees with the old one (a restarted encoder with new settings, alone).
                Some(why) => {
                    let others_agree = r.inits.iter().any(|(p, i)| {
                        p != publisher
                            && active.contains(p)
                            && i.refused.is_none()
                            && i.facts
                                .as_ref()
                                .is_some_and(|i| i.difference(channel).is_none())
                    });
                    if others_agree {
                        let reason = format!(
                            "{rendition}/{} cannot replace the channel's: {why}",
                            package::INIT_NAME
                        );
                        return self.refuse_init(state, publisher, rendition, Some(facts), reason);
                    }
                    true
                }
            },
        };
        let had_init = r.init.is_some();
        r.inits.insert(
            publisher.to_owned(),
            PublisherInit {
                facts: Some(facts.clone()),
                refused: None,
            },
        );
        if replace {
            // Every publisher is judged again against the new init: those that disagree are
            // refused until they send it, those that already match are taken back.
            for i in r.inits.values_mut() {
                if let Some(other) = &i.facts {
                    i.refused = facts.difference(other);
                }
            }
            r.init = Some(facts);
            r.frame = None;
            if had_init {
                // Segments made with the old init cannot be listed under the new one.
                r.chosen.clear();
                r.pending.clear();
                r.unpublished_init = Some(bytes);
                tracing::warn!(channel = %self.name, publisher, rendition, "the channel's init segment changed; its segments start afresh");
            } else {
                self.publisher.publish_init(rendition, bytes);
            }
        }
        Outcome::Accepted
    }

    fn refuse_init(
        &self,
        state: &mut State,
        publisher: &str,
        rendition: &str,
        facts: Option<InitFacts>,
        reason: String,
    ) -> Outcome {
        tracing::warn!(channel = %self.name, publisher, rendition, %reason, "init segment refused");
        let r = state.renditions.entry(rendition.to_owned()).or_default();
        r.inits.insert(
            publisher.to_owned(),
            PublisherInit {
                facts,
                refused: Some(reason.clone()),
            },
        );
        count(&self.name, state, publisher, Reason::Init, &reason);
        Outcome::Conflict(reason)
    }

    fn put_segment(
        &self,
        state: &mut State,
        publisher: &str,
        rendition: &str,
        number: u64,
        bytes: Bytes,
        parsed: Option<(InitFacts, Result<SegmentFacts, String>)>,
    ) -> Outcome {
        let now = Instant::now();
        let Some(r) = state.renditions.get_mut(rendition) else {
            let reason = format!("{rendition}/{number}.m4s: no {rendition}/init.mp4 yet");
            count(&self.name, state, publisher, Reason::Init, &reason);
            return Outcome::Refused(reason);
        };
        let init = match r.inits.get(publisher) {
            Some(PublisherInit {
                facts: Some(i),
                refused: None,
            }) => i.clone(),
            Some(PublisherInit {
                refused: Some(why), ..
            }) => {
                // The path is named, so `publish_to` sends its init again.
                let reason = format!(
                    "{rendition}/{number}.m4s: this publisher's {rendition}/{} was refused: {why}",
                    package::INIT_NAME
                );
                count(&self.name, state, publisher, Reason::Init, &reason);
                return Outcome::Refused(reason);
            }
            _ => {
                let reason = format!("{rendition}/{number}.m4s: send {rendition}/init.mp4 first");
                count(&self.name, state, publisher, Reason::Init, &reason);
                return Outcome::Refused(reason);
            }
        };
        // Heard from: its copies count as coming, duplicates included (the slower pipeline's
        // copies are mostly duplicates). A publisher that sends again has not finished.
        state
            .publishers
            .entry(publisher.to_owned())
            .or_default()
            .last_segment = Some(now);
        state.finished_publishers.remove(publisher);
        let r = state.renditions.get_mut(rendition).expect("present above");
        if r.chosen.contains_key(&number) || self.below_window(r, number) {
            let reason = if r.chosen.get(&number).is_some_and(Option::is_some) {
                Reason::Duplicate
            } else {
                Reason::Late
            };
            let message = format!("{rendition}/{number}.m4s: already decided");
            count(&self.name, state, publisher, reason, &message);
            return Outcome::Accepted;
        }
        // No encoder delivers a segment before its end: one due more than a segment from now
        // is a wrong number (or clock), and would push the channel's window ahead.
        let due = self.publisher.timing().due(number);
        if due.is_none_or(|due| due > SystemTime::now() + self.segment_duration) {
            let reason =
                format!("{rendition}/{number}.m4s: a number not due for more than one segment");
            count(&self.name, state, publisher, Reason::Timing, &reason);
            return Outcome::Refused(reason);
        }
        let r = state.renditions.get_mut(rendition).expect("present above");
        // Parsed outside the lock, unless the publisher's init changed meanwhile.
        let facts = match parsed {
            Some((parsed_with, facts)) if parsed_with == init => facts,
            _ => inspect::segment(&bytes, &init),
        };
        let verdict = judge(
            &facts,
            &init,
            number,
            Expect {
                segment_duration: self.segment_duration,
                frame: r.frame,
            },
        );
        let entry = facts.as_ref().ok().map(|f| SegmentEntry {
            number,
            start: f.start,
            duration: f.duration,
            bytes: bytes.len() as u64,
            discontinuity: false,
            slate: f.slate,
        });
        if verdict == Verdict::Good && init.is_video() && r.frame.is_none() {
            r.frame = facts.as_ref().ok().map(|f| f.shortest_sample);
        }
        if let Verdict::Unusable(why) = &verdict {
            // Never served: counted now, not kept.
            let detail = facts.as_ref().err().map(|e| format!(": {e}"));
            let reason = format!(
                "{rendition}/{number}.m4s: {}{}",
                why.label(),
                detail.unwrap_or_default()
            );
            count(&self.name, state, publisher, *why, &reason);
            return Outcome::Refused(reason);
        }
        let copies = r.pending.entry(number).or_default();
        let first = copies.is_empty();
        let copy = Copy {
            publisher: publisher.to_owned(),
            bytes,
            verdict: verdict.clone(),
            entry,
        };
        // One copy per publisher: a copy sent again replaces its first.
        match copies.iter_mut().find(|c| c.publisher == publisher) {
            Some(earlier) => *earlier = copy,
            None => copies.push(copy),
        }
        // Every publisher heard from lately has sent its copy: nothing better is coming.
        let active = self.active_publishers(state, now);
        let r = state.renditions.get_mut(rendition).expect("present above");
        let all_in = r.pending.get(&number).map_or(0, Vec::len) >= active;
        if verdict == Verdict::Good || all_in {
            self.decide_locked(state, rendition, number);
        }
        let r = state.renditions.get(rendition).expect("present above");
        if first && r.pending.contains_key(&number) {
            Outcome::Held(self.decision_time(number, now))
        } else {
            Outcome::Accepted
        }
    }

    /// When the wait for a better copy of `number` ends: `wait` after the later of its
    /// arrival and the segment's due time (no encoder can deliver a segment before its end,
    /// so the other pipeline's copy cannot be expected earlier).
    fn decision_time(&self, number: u64, now: Instant) -> Instant {
        let due = self.publisher.timing().due(number);
        let until_due = due
            .and_then(|d| d.duration_since(SystemTime::now()).ok())
            .unwrap_or_default()
            // A copy far ahead of its time waits no longer than one segment for it.
            .min(self.segment_duration);
        now + until_due + self.wait
    }

    fn below_window(&self, r: &RenditionState, number: u64) -> bool {
        r.chosen
            .keys()
            .next_back()
            .is_some_and(|newest| number.saturating_add(self.window_segments()) < *newest)
    }

    fn window_segments(&self) -> u64 {
        let d = self.segment_duration.as_nanos().max(1);
        (self.dvr_window.as_nanos().div_ceil(d) as u64).max(3)
    }

    /// Publishers that sent a segment within the last two segment durations (at least one).
    fn active_publishers(&self, state: &State, now: Instant) -> usize {
        let recent = self.segment_duration * 2;
        state
            .publishers
            .values()
            .filter(|p| {
                p.last_segment
                    .is_some_and(|t| now.duration_since(t) <= recent)
            })
            .count()
            .max(1)
    }

    /// The wait for a better copy of `number` is over: serve the best one there is.
    pub fn decide(&self, rendition: &str, number: u64) {
        let mut state = self.lock();
        self.decide_locked(&mut state, rendition, number);
    }

    fn decide_locked(&self, state: &mut State, rendition: &str, number: u64) {
        let Some(r) = state.renditions.get_mut(rendition) else {
            return;
        };
        let Some(mut copies) = r.pending.remove(&number) else {
            return;
        };
        // The best copy; among equals, the first to arrive.
        let best = copies
            .iter()
            .enumerate()
            .filter(|(_, c)| c.verdict.rank() > 0)
            .max_by_key(|(i, c)| (c.verdict.rank(), std::cmp::Reverse(*i)))
            .map(|(i, _)| i);
        let served = best.map(|i| copies.remove(i));
        if served.is_some() {
            if let Some(init) = r.unpublished_init.take() {
                self.publisher.publish_init(rendition, init);
            }
        }
        r.chosen
            .insert(number, served.as_ref().and_then(|c| c.entry));
        if let Some(c) = &served {
            self.publisher
                .publish_segment(rendition, number, c.bytes.clone());
            metrics::counter!("encore_ingest_segments_total", "channel" => self.name.clone(), "publisher" => c.publisher.clone(), "outcome" => "served").increment(1);
            state
                .publishers
                .entry(c.publisher.clone())
                .or_default()
                .served += 1;
        }
        for c in copies {
            let reason = c.verdict.reason();
            let message = format!("{rendition}/{number}.m4s: {}", reason.label());
            count(&self.name, state, &c.publisher, reason, &message);
        }
        self.publish_playlist(state, rendition);
        self.flush_manifests(state);
    }

    /// The rendition's media playlist: the chosen segments of the DVR window, up to the first
    /// number still waiting for a better copy (a player never sees a hole that fills later).
    fn publish_playlist(&self, state: &mut State, rendition: &str) {
        let window = self.window_segments();
        let Some(r) = state.renditions.get_mut(rendition) else {
            return;
        };
        if let Some(&newest) = r.chosen.keys().next_back() {
            let keep_from = newest.saturating_sub(window - 1);
            r.chosen = r.chosen.split_off(&keep_from);
        }
        let Some(init) = &r.init else {
            return;
        };
        let waiting = r.pending.keys().next().copied().unwrap_or(u64::MAX);
        let segments: Vec<SegmentEntry> =
            r.chosen.range(..waiting).filter_map(|(_, e)| *e).collect();
        if segments.is_empty() {
            return;
        }
        let oldest = segments[0].number;
        let p = self.presentation(rendition, init.timescale, segments, state.ended);
        let text = package::hls::media_playlist(&p, &p.renditions[0]);
        self.publisher.publish_manifest(
            &format!("{rendition}/{}", package::MEDIA_PLAYLIST_NAME),
            Bytes::from(text),
        );
        // The store drops segments below the oldest any rendition still lists.
        let lowest = state
            .renditions
            .values()
            .filter_map(|r| r.chosen.keys().next().copied())
            .min()
            .unwrap_or(oldest);
        self.publisher.evict_before(lowest);
    }

    fn presentation(
        &self,
        rendition: &str,
        timescale: u32,
        segments: Vec<SegmentEntry>,
        ended: bool,
    ) -> Presentation {
        let span = segments
            .last()
            .map(|l| {
                l.start
                    .saturating_add(l.duration)
                    .saturating_sub(segments[0].start)
            })
            .unwrap_or(0);
        let span = Duration::from_secs_f64(span as f64 / f64::from(timescale.max(1)));
        Presentation {
            segment_duration: self.segment_duration,
            renditions: vec![Rendition {
                id: rendition.to_owned(),
                // A media playlist names neither kind, codecs nor bitrates.
                kind: RenditionKind::Audio {
                    sample_rate: 0,
                    channels: 0,
                    language: None,
                },
                codecs: String::new(),
                peak_bitrate: 0,
                average_bitrate: 0,
                timescale,
                segments,
            }],
            timeline: Timeline::Live(LiveTimeline {
                availability_start: UNIX_EPOCH + Duration::from_secs(MEDIA_EPOCH_SECONDS),
                time_shift_buffer: self.dvr_window.min(span),
                minimum_update_period: self.segment_duration,
                suggested_presentation_delay: self.segment_duration * 3,
                utc_timing_url: "/time".into(),
                publish_time: SystemTime::now(),
                discontinuity_sequence: 0,
                ended: ended.then_some(span),
            }),
        }
    }

    fn put_top_manifest(
        &self,
        state: &mut State,
        publisher: &str,
        name: &str,
        bytes: Bytes,
    ) -> Outcome {
        let refused = state.renditions.iter().find_map(|(r, s)| {
            let why = s.inits.get(publisher)?.refused.as_ref()?;
            Some(format!(
                "this publisher's {r}/{} was refused: {why}",
                package::INIT_NAME
            ))
        });
        if let Some(reason) = refused {
            return Outcome::Refused(reason);
        }
        // A publisher that stops ends its own presentation, not the channel: the others may
        // go on. The channel ends when every publisher heard from has stopped.
        if name == package::MPD_NAME && is_final_mpd(&String::from_utf8_lossy(&bytes)) {
            state.finished_publishers.insert(publisher.to_owned());
            let now = Instant::now();
            let recent = self.segment_duration * 2;
            let all_finished = state.publishers.iter().all(|(p, stats)| {
                state.finished_publishers.contains(p)
                    || stats
                        .last_segment
                        .is_none_or(|t| now.duration_since(t) > recent)
            });
            if all_finished {
                self.end(state, bytes);
            }
            return Outcome::Accepted;
        }
        state.waiting_manifests.insert(name.to_owned(), bytes);
        self.flush_manifests(state);
        Outcome::Accepted
    }

    /// The last publisher stopped: what waits is decided, the media playlists are ended, the
    /// final MPD published, and requests are no longer held.
    fn end(&self, state: &mut State, final_mpd: Bytes) {
        let pending: Vec<(String, u64)> = state
            .renditions
            .iter()
            .flat_map(|(r, s)| s.pending.keys().map(move |n| (r.clone(), *n)))
            .collect();
        for (rendition, number) in pending {
            self.decide_locked(state, &rendition, number);
        }
        state.ended = true;
        let renditions: Vec<String> = state.renditions.keys().cloned().collect();
        for rendition in renditions {
            self.publish_playlist(state, &rendition);
        }
        state.waiting_manifests.clear();
        self.publisher
            .publish_manifest(package::MPD_NAME, final_mpd);
        self.publisher.end();
        tracing::info!(channel = %self.name, "ingest channel ended: every publisher stopped");
    }

    /// The channel ended (its publishers all stopped).
    pub fn ended(&self) -> bool {
        self.lock().ended
    }

    /// A publisher's request was admitted: the channel is not idle while its body is read.
    pub fn touch(&self) {
        self.last_put_ms
            .store(self.created.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Time since any publisher sent anything (or since the channel opened).
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_put_ms.load(Ordering::Relaxed));
        self.created.elapsed().saturating_sub(last)
    }

    /// Publishes the master playlist and MPD once every rendition has a listed segment, so
    /// a player never finds the channel before it can play.
    fn flush_manifests(&self, state: &mut State) {
        if state.waiting_manifests.is_empty() {
            return;
        }
        // Renditions the channel has an init for; one only a refused init named does not count.
        let mut renditions = state
            .renditions
            .values()
            .filter(|r| r.init.is_some())
            .peekable();
        let ready = renditions.peek().is_some()
            && renditions.all(|r| r.chosen.values().any(Option::is_some));
        if !ready {
            return;
        }
        for (name, bytes) in std::mem::take(&mut state.waiting_manifests) {
            self.publisher.publish_manifest(&name, bytes);
        }
    }

    /// The channel as `GET /ingest/{channel}` shows it.
    pub fn status(&self) -> serde_json::Value {
        let state = self.lock();
        let renditions: serde_json::Map<String, serde_json::Value> = state
            .renditions
            .iter()
            .map(|(name, r)| {
                let inits: serde_json::Map<String, serde_json::Value> = r
                    .inits
                    .iter()
                    .map(|(p, i)| {
                        let v = match &i.refused {
                            None => serde_json::json!("accepted"),
                            Some(why) => serde_json::json!({ "refused": why }),
                        };
                        (p.clone(), v)
                    })
                    .collect();
                let newest = r.chosen.keys().next_back().copied();
                (
                    name.clone(),
                    serde_json::json!({ "inits": inits, "newest": newest }),
                )
            })
            .collect();
        serde_json::json!({
            "channel": self.name,
            "form": match state.form {
                Some(Form::Encore) => "encore",
                Some(Form::PassThrough) => "pass-through",
                None => "empty",
            },
            "publishers": state.publishers,
            "renditions": renditions,
            "files": state.files.len(),
        })
    }
}

/// A file parsed before the channel's lock is taken.
enum Parsed {
    Init(Result<InitFacts, String>),
    /// A segment, with the publisher's init it was read against.
    Segment(InitFacts, Result<SegmentFacts, String>),
    Nothing,
}

/// Counts a refused (or duplicate) copy for `publisher`.
fn count(channel: &str, state: &mut State, publisher: &str, reason: Reason, message: &str) {
    let stats = state.publishers.entry(publisher.to_owned()).or_default();
    if reason == Reason::Duplicate {
        stats.duplicates += 1;
        return;
    }
    *stats.refused.entry(reason.label()).or_default() += 1;
    stats.last_refusal = Some(message.to_owned());
    metrics::counter!(
        "encore_ingest_refusals_total",
        "channel" => channel.to_owned(),
        "publisher" => publisher.to_owned(),
        "reason" => reason.label()
    )
    .increment(1);
}

/// An MPD that says the presentation is over: `static`, or a live one that got its
/// `mediaPresentationDuration` (how Encore ends a live MPD: docs/timing.md, DASH rule 7).
fn is_final_mpd(text: &str) -> bool {
    !text.contains("type=\"dynamic\"") || text.contains("mediaPresentationDuration=")
}

/// A path in Encore's own layout, or not.
#[derive(Debug, PartialEq, Eq)]
enum EncorePath<'a> {
    Init(&'a str),
    Segment(&'a str, u64),
    MediaPlaylist,
    TopManifest(&'a str),
    Other,
}

impl<'a> EncorePath<'a> {
    fn parse(path: &'a str) -> EncorePath<'a> {
        match path.split_once('/') {
            None if path == package::MASTER_PLAYLIST_NAME || path == package::MPD_NAME => {
                EncorePath::TopManifest(path)
            }
            None => EncorePath::Other,
            Some((rendition, file)) => {
                if file == package::INIT_NAME {
                    EncorePath::Init(rendition)
                } else if file == package::MEDIA_PLAYLIST_NAME {
                    EncorePath::MediaPlaylist
                } else if let Some(n) = crate::origin::store::parse_segment_name(file) {
                    EncorePath::Segment(rendition, n)
                } else {
                    EncorePath::Other
                }
            }
        }
    }
}
