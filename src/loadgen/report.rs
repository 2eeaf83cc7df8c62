//! What `encore loadgen` prints: one line a second while it runs, and a summary at the end, as
//! text or (`--json`) as one JSON document holding the summary and every second.

use std::collections::BTreeMap;
use std::fmt::{self, Display, Formatter};

use serde::Serialize;

use super::stats::{Interval, Kind, KindStats};
use super::Protocol;

/// One kind of request over an interval.
#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    pub requests: u64,
    pub errors: u64,
    pub bytes: u64,
    /// Latency to the last byte of successful requests.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl KindReport {
    fn of(k: &KindStats) -> KindReport {
        let ms = |us: u64| us as f64 / 1000.0;
        KindReport {
            requests: k.requests,
            errors: k.errors,
            bytes: k.bytes,
            p50_ms: ms(k.latency.quantile(0.50)),
            p99_ms: ms(k.latency.quantile(0.99)),
            max_ms: ms(k.latency.max()),
        }
    }

    /// `1.25/9.80`, or `-` when nothing succeeded.
    fn percentiles(&self) -> String {
        if self.requests == self.errors {
            return "-".into();
        }
        format!("{}/{}", ms(self.p50_ms), ms(self.p99_ms))
    }
}

/// Milliseconds with about three significant digits.
fn ms(v: f64) -> String {
    match v {
        v if v < 10.0 => format!("{v:.2}"),
        v if v < 100.0 => format!("{v:.1}"),
        v => format!("{v:.0}"),
    }
}

/// `404:3 timeout:1`, or `-`.
fn errors_text(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "-".into();
    }
    let parts: Vec<String> = errors.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    parts.join(" ")
}

/// The figures of one second (or of the last, shorter, stretch of a run).
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    /// Seconds since the start, at the end of this interval.
    pub t: f64,
    /// Players playing at the end of it.
    pub players: u64,
    pub requests_per_second: f64,
    pub bytes_per_second: f64,
    pub manifest: KindReport,
    pub init: KindReport,
    pub segment: KindReport,
    pub errors: BTreeMap<String, u64>,
    pub stalls: u64,
}

impl Second {
    pub fn new(interval: &Interval, t: f64, length: f64, players: u64) -> Second {
        let length = length.max(1e-3);
        Second {
            t,
            players,
            requests_per_second: interval.requests() as f64 / length,
            bytes_per_second: interval.bytes() as f64 / length,
            manifest: KindReport::of(interval.kind(Kind::Manifest)),
            init: KindReport::of(interval.kind(Kind::Init)),
            segment: KindReport::of(interval.kind(Kind::Segment)),
            errors: interval.errors.clone(),
            stalls: interval.stalls,
        }
    }

    /// The column heads above [`Second::line`]; latencies are p50/p99 in milliseconds.
    pub fn header() -> String {
        format!(
            "{:>6} {:>7} {:>8} {:>8} {:>16} {:>14} {:>16} {:>6}  errors",
            "s",
            "players",
            "req/s",
            "MB/s",
            "manifest p50/p99",
            "init p50/p99",
            "segment p50/p99",
            "stalls"
        )
    }

    /// One line of the running report.
    pub fn line(&self) -> String {
        format!(
            "{:>6.1} {:>7} {:>8.0} {:>8.2} {:>16} {:>14} {:>16} {:>6}  {}",
            self.t,
            self.players,
            self.requests_per_second,
            self.bytes_per_second / 1e6,
            self.manifest.percentiles(),
            self.init.percentiles(),
            self.segment.percentiles(),
            self.stalls,
            errors_text(&self.errors)
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Players {
    /// The `--players` asked for.
    pub target: u32,
    pub started: u64,
    /// Still playing when the run stopped.
    pub active_at_end: u64,
    pub peak_active: u64,
    /// Players whose manifest could not be fetched or read.
    pub failed_to_start: u64,
    /// Players that stalled at least once.
    pub stalled: u64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub url: String,
    /// What the URL served, as the first look at it found (`null` when it gave no manifest).
    pub protocol: Option<Protocol>,
    pub rendition: String,
    pub retry: String,
    pub ramp_per_second: f64,
    pub seconds: f64,
    pub players: Players,
    pub requests: u64,
    pub requests_per_second: f64,
    pub bytes: u64,
    pub bytes_per_second: f64,
    pub manifest: KindReport,
    pub init: KindReport,
    pub segment: KindReport,
    /// Failed requests by HTTP status or transport failure; `invalid`: unreadable manifests.
    pub errors: BTreeMap<String, u64>,
    /// Segments not complete when playback needed them.
    pub stalls: u64,
    pub stalled_seconds: f64,
    /// `EXT-X-GAP` segments skipped.
    pub gaps: u64,
    /// CPU time of the load generator itself (user + system): near `seconds` × its cores, it
    /// was what limited the run, not the origin.
    pub generator_cpu_seconds: f64,
    pub per_second: Vec<Second>,
}

/// What a run asked for, for the summary's head.
pub struct Asked {
    pub url: String,
    pub protocol: Option<Protocol>,
    pub rendition: String,
    pub retry: String,
    pub ramp: f64,
    pub players: u32,
    pub cpu_seconds: f64,
}

impl Summary {
    pub fn new(
        asked: Asked,
        totals: &Interval,
        seconds: f64,
        players: Players,
        per_second: Vec<Second>,
    ) -> Summary {
        let length = seconds.max(1e-3);
        Summary {
            url: asked.url,
            protocol: asked.protocol,
            rendition: asked.rendition,
            retry: asked.retry,
            ramp_per_second: asked.ramp,
            seconds,
            players,
            requests: totals.requests(),
            requests_per_second: totals.requests() as f64 / length,
            bytes: totals.bytes(),
            bytes_per_second: totals.bytes() as f64 / length,
            manifest: KindReport::of(totals.kind(Kind::Manifest)),
            init: KindReport::of(totals.kind(Kind::Init)),
            segment: KindReport::of(totals.kind(Kind::Segment)),
            errors: totals.errors.clone(),
            stalls: totals.stalls,
            stalled_seconds: totals.stalled.as_secs_f64(),
            gaps: totals.gaps,
            generator_cpu_seconds: asked.cpu_seconds,
            per_second,
        }
    }
}

impl Display for Summary {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let protocol = match self.protocol {
            Some(Protocol::Hls) => "HLS",
            Some(Protocol::Dash) => "DASH",
            None => "no manifest",
        };
        writeln!(
            f,
            "{} ({protocol}): {:.1} s, {} players at {}/s, rendition {}, retry {}",
            self.url,
            self.seconds,
            self.players.target,
            self.ramp_per_second,
            self.rendition,
            self.retry
        )?;
        let p = &self.players;
        writeln!(
            f,
            "players:  {} started, {} playing at the end (peak {}), {} failed to start, {} stalled",
            p.started, p.active_at_end, p.peak_active, p.failed_to_start, p.stalled
        )?;
        writeln!(
            f,
            "requests: {} ({:.1}/s), {:.2} MB ({:.2} MB/s)",
            self.requests,
            self.requests_per_second,
            self.bytes as f64 / 1e6,
            self.bytes_per_second / 1e6
        )?;
        writeln!(
            f,
            "{:<10}{:>10}{:>8}{:>12}{:>10}{:>10}{:>10}",
            "", "requests", "errors", "MB", "p50 ms", "p99 ms", "max ms"
        )?;
        for (name, k) in [
            ("manifest", &self.manifest),
            ("init", &self.init),
            ("segment", &self.segment),
        ] {
            let latency = |v: f64| match k.requests == k.errors {
                true => "-".to_string(),
                false => ms(v),
            };
            writeln!(
                f,
                "{name:<10}{:>10}{:>8}{:>12.2}{:>10}{:>10}{:>10}",
                k.requests,
                k.errors,
                k.bytes as f64 / 1e6,
                latency(k.p50_ms),
                latency(k.p99_ms),
                latency(k.max_ms)
            )?;
        }
        let errors = match errors_text(&self.errors).as_str() {
            "-" => "none".to_string(),
            e => e.to_string(),
        };
        writeln!(f, "errors:   {errors}")?;
        writeln!(
            f,
            "stalls:   {} ({:.1} s waited in all), gaps skipped: {}",
            self.stalls, self.stalled_seconds, self.gaps
        )?;
        writeln!(
            f,
            "load generator: {:.1} s of CPU ({:.0}% of one core)",
            self.generator_cpu_seconds,
            100.0 * self.generator_cpu_seconds / self.seconds.max(1e-3)
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::stats::{Outcome, Recorder};
    use super::*;

    #[test]
    fn lines_and_summaries_say_what_happened() {
        let r = Recorder::default();
        r.request(Kind::Manifest, Duration::from_millis(2), 500, Outcome::Ok);
        r.request(
            Kind::Segment,
            Duration::from_millis(40),
            250_000,
            Outcome::Ok,
        );
        r.request(
            Kind::Segment,
            Duration::from_millis(1),
            10,
            Outcome::Failed("503"),
        );
        r.stall(Duration::from_millis(700));
        let i = r.take();
        let s = Second::new(&i, 1.0, 1.0, 7);
        let line = s.line();
        assert!(line.contains("503:1"), "{line}");
        assert!(line.contains(" 7 "), "{line}");
        assert_eq!(s.init.percentiles(), "-");
        assert_eq!(s.segment.requests, 2);
        let columns = |l: &str| l.split_whitespace().count();
        assert_eq!(columns(&Second::header()), columns(&line) + 3);

        let asked = Asked {
            url: "http://o/m.m3u8".into(),
            protocol: Some(Protocol::Hls),
            rendition: "top".into(),
            retry: "none".into(),
            ramp: 5.0,
            players: 7,
            cpu_seconds: 0.5,
        };
        let players = Players {
            target: 7,
            started: 7,
            active_at_end: 7,
            peak_active: 7,
            failed_to_start: 0,
            stalled: 1,
        };
        let summary = Summary::new(asked, &i, 2.0, players, vec![s]);
        let text = summary.to_string();
        assert!(text.contains("(HLS)"), "{text}");
        assert!(text.contains("errors:   503:1"), "{text}");
        assert!(text.contains("stalls:   1 (0.7 s"), "{text}");
        assert!(text.contains("0.5 s of CPU (25% of one core)"), "{text}");
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["protocol"], "hls");
        assert_eq!(json["requests"], 3);
        assert_eq!(json["errors"]["503"], 1);
        assert_eq!(json["segment"]["bytes"], 250_010);
        assert_eq!(json["per_second"][0]["players"], 7);
    }
}
