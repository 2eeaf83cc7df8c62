//! What the virtual players measure: requests, bytes and latency by kind of request, errors by
//! HTTP status or transport failure, stalls, and how many players are playing.
//!
//! Every player records into one [`Recorder`]; the reporter takes the current second's
//! [`Interval`] out of it once a second and folds it into the run's totals. Recording is a
//! short lock, never I/O.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// What a request fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A playlist or an MPD (and the DASH clock, `UTCTiming`).
    Manifest,
    /// An initialization segment.
    Init,
    /// A media segment.
    Segment,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Manifest, Kind::Init, Kind::Segment];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Manifest => "manifest",
            Kind::Init => "init",
            Kind::Segment => "segment",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Sub-buckets per power of two: values are kept to 1/64 (about 1.6 %).
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Values are capped just under 2^40 µs (12 days).
const MAX_EXPONENT: u32 = 39;
const BUCKETS: usize = ((MAX_EXPONENT - SUB_BITS + 2) as u64 * SUB) as usize;

/// Latencies in microseconds in logarithmic buckets (the layout of an HDR histogram with two
/// significant digits): fixed memory, constant-time record and merge, percentiles within 1.6 %.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

impl Histogram {
    fn bucket(value: u64) -> usize {
        let v = value.min((1 << (MAX_EXPONENT + 1)) - 1);
        if v < SUB {
            return v as usize;
        }
        let exponent = 63 - v.leading_zeros();
        let mantissa = (v >> (exponent - SUB_BITS)) & (SUB - 1);
        ((exponent - SUB_BITS + 1) as u64 * SUB + mantissa) as usize
    }

    /// The largest value that falls in bucket `i`.
    fn upper(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB {
            return i;
        }
        let exponent = (i / SUB) as u32 + SUB_BITS - 1;
        let lowest = (SUB + i % SUB) << (exponent - SUB_BITS);
        lowest + (1 << (exponent - SUB_BITS)) - 1
    }

    pub fn record(&mut self, micros: u64) {
        self.counts[Self::bucket(micros)] += 1;
        self.total += 1;
        self.max = self.max.max(micros);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0 to 1), in microseconds; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::upper(i).min(self.max);
            }
        }
        self.max
    }

    pub fn max(&self) -> u64 {
        self.max
    }
}

/// One kind's requests within an interval.
#[derive(Debug, Clone, Default)]
pub struct KindStats {
    /// Answered requests (success or error), and transport failures.
    pub requests: u64,
    pub errors: u64,
    /// Body bytes received, of every answer.
    pub bytes: u64,
    /// Time from sending to the last byte of successful answers.
    pub latency: Histogram,
}

/// Everything recorded in one stretch of time.
#[derive(Debug, Clone, Default)]
pub struct Interval {
    pub kinds: [KindStats; 3],
    /// Failed requests by HTTP status (`"404"`) or transport failure (`"timeout"`, `"connect"`,
    /// `"closed"`, `"body"`, `"transport"`), and manifests that could not be read (`"invalid"`).
    pub errors: BTreeMap<String, u64>,
    /// Segments that were not complete when the player needed them.
    pub stalls: u64,
    /// How long players waited for those segments, in all.
    pub stalled: Duration,
    /// Segments a playlist marked as missing (`EXT-X-GAP`), skipped without a request.
    pub gaps: u64,
}

impl Interval {
    pub fn kind(&self, kind: Kind) -> &KindStats {
        &self.kinds[kind.index()]
    }

    pub fn requests(&self) -> u64 {
        self.kinds.iter().map(|k| k.requests).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.kinds.iter().map(|k| k.bytes).sum()
    }

    pub fn merge(&mut self, other: &Interval) {
        for (a, b) in self.kinds.iter_mut().zip(&other.kinds) {
            a.requests += b.requests;
            a.errors += b.errors;
            a.bytes += b.bytes;
            a.latency.merge(&b.latency);
        }
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        self.stalls += other.stalls;
        self.stalled += other.stalled;
        self.gaps += other.gaps;
    }
}

/// How a request ended, for the recorder.
pub enum Outcome<'a> {
    Ok,
    /// An HTTP status or a transport failure, by its label.
    Failed(&'a str),
}

/// Shared by every player of a run.
#[derive(Debug, Default)]
pub struct Recorder {
    current: Mutex<Interval>,
    started: AtomicU64,
    active: AtomicU64,
    failed_to_start: AtomicU64,
    stalled_players: AtomicU64,
}

impl Recorder {
    pub fn request(&self, kind: Kind, latency: Duration, bytes: u64, outcome: Outcome) {
        let mut i = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let k = &mut i.kinds[kind.index()];
        k.requests += 1;
        k.bytes += bytes;
        match outcome {
            Outcome::Ok => k.latency.record(latency.as_micros() as u64),
            Outcome::Failed(label) => {
                k.errors += 1;
                *i.errors.entry(label.to_string()).or_default() += 1;
            }
        }
    }

    /// A manifest that came back but could not be read.
    pub fn invalid(&self) {
        let mut i = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *i.errors.entry("invalid".into()).or_default() += 1;
    }

    pub fn stall(&self, waited: Duration) {
        let mut i = self.current.lock().unwrap_or_else(|e| e.into_inner());
        i.stalls += 1;
        i.stalled += waited;
    }

    pub fn gap(&self) {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).gaps += 1;
    }

    /// The interval recorded since the last call; a fresh one begins.
    pub fn take(&self) -> Interval {
        std::mem::take(&mut *self.current.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn player_started(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    /// A player stopped playing: the stream ended, or it gave up.
    pub fn player_ended(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn player_failed_to_start(&self) {
        self.failed_to_start.fetch_add(1, Ordering::Relaxed);
    }

    /// A player that stalled at least once (counted once per player).
    pub fn player_stalled(&self) {
        self.stalled_players.fetch_add(1, Ordering::Relaxed);
    }

    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    pub fn failed_to_start(&self) -> u64 {
        self.failed_to_start.load(Ordering::Relaxed)
    }

    pub fn stalled_players(&self) -> u64 {
        self.stalled_players.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_in_order_within_their_precision() {
        let mut last = 0;
        for v in (0..200_000u64).chain([1 << 30, (1 << 40) - 1]) {
            let b = Histogram::bucket(v);
            assert!(b >= last, "bucket of {v} went back");
            last = b;
            let upper = Histogram::upper(b);
            assert!(upper >= v, "{v} above its bucket's upper bound {upper}");
            assert!(upper - v <= v / SUB, "{v}: bucket too wide (upper {upper})");
        }
        assert_eq!(Histogram::bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_are_read_from_the_buckets() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), 0);
        for v in 1..=1000 {
            h.record(v * 100); // 0.1 ms … 100 ms
        }
        let within = |got: u64, want: u64| got >= want && got <= want + want / 60;
        assert!(within(h.quantile(0.5), 50_000), "{}", h.quantile(0.5));
        assert!(within(h.quantile(0.99), 99_000), "{}", h.quantile(0.99));
        assert_eq!(h.quantile(1.0), 100_000);
        assert_eq!(h.max(), 100_000);
        let mut sum = Histogram::default();
        sum.merge(&h);
        sum.merge(&h);
        assert_eq!(sum.count(), 2000);
        assert_eq!(sum.quantile(0.5), h.quantile(0.5));
    }

    #[test]
    fn the_recorder_hands_out_each_interval_once() {
        let r = Recorder::default();
        r.request(Kind::Segment, Duration::from_millis(5), 1000, Outcome::Ok);
        r.request(Kind::Manifest, Duration::ZERO, 20, Outcome::Failed("404"));
        r.stall(Duration::from_millis(300));
        let i = r.take();
        assert_eq!(i.requests(), 2);
        assert_eq!(i.bytes(), 1020);
        assert_eq!(i.kind(Kind::Manifest).errors, 1);
        assert_eq!(i.errors["404"], 1);
        assert_eq!((i.stalls, i.stalled), (1, Duration::from_millis(300)));
        assert_eq!(i.kind(Kind::Segment).latency.count(), 1);
        assert_eq!(r.take().requests(), 0);
    }
}
