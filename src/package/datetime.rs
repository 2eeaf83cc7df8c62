//! Wall-clock and duration text for manifests: `xs:dateTime` / RFC 3339 instants and
//! `xs:duration` / ISO 8601 durations, both to the millisecond.
//!
//! Std only and always UTC (`Z`): never a local offset, never a time-zone database.
//!
//! Our own code rather than jiff: jiff prints the same RFC 3339 instants, but its ISO 8601
//! durations drop the fixed millisecond form the manifests use (`PT1H` for `PT1H0M0.000S`), its
//! timestamps are bounded (so formatting becomes fallible), and it adds ~10 s of compile for
//! ~60 lines. These run a few times per manifest (once per segment for HLS program date-times),
//! far from any hot path.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (negative before it), rounded to the nearest.
pub fn unix_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => round_millis(d) as i64,
        Err(e) => -(round_millis(e.duration()) as i64),
    }
}

/// Milliseconds since the epoch of media time `ticks` (at `timescale`) on a timeline whose
/// media time 0 is `origin`. One function for every manifest, so that HLS
/// `PROGRAM-DATE-TIME` and DASH agree on the mapping to the millisecond.
pub fn media_time_millis(origin: SystemTime, ticks: u64, timescale: u32) -> i64 {
    let ts = timescale.max(1) as u128;
    let ms = (ticks as u128 * 1000 + ts / 2) / ts;
    unix_millis(origin) + ms as i64
}

/// `2024-05-01T12:00:00.000Z` (RFC 3339, also a valid `xs:dateTime`).
pub fn datetime(t: SystemTime) -> String {
    datetime_millis(unix_millis(t))
}

/// [`datetime`] of milliseconds since the Unix epoch.
pub fn datetime_millis(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let ms_of_day = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
    let (min, rest) = (rest / 60_000, rest % 60_000);
    let (s, milli) = (rest / 1000, rest % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

/// ISO 8601 duration to the millisecond: `PT1.500S`, `PT2M0.000S`, `PT1H0M0.000S`.
/// Hours are not folded into days: a day is not always 24 hours in `xs:duration` arithmetic.
pub fn duration(d: Duration) -> String {
    duration_millis(round_millis(d))
}

/// [`duration`] of a whole number of milliseconds.
pub fn duration_millis(ms: u64) -> String {
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, milli) = (rest / 1000, rest % 1000);
    if h > 0 {
        format!("PT{h}H{m}M{s}.{milli:03}S")
    } else if m > 0 {
        format!("PT{m}M{s}.{milli:03}S")
    } else {
        format!("PT{s}.{milli:03}S")
    }
}

fn round_millis(d: Duration) -> u64 {
    ((d.as_nanos() + 500_000) / 1_000_000) as u64
}

/// (year, month, day) of a day count since 1970-01-01 in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes() {
        assert_eq!(datetime(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        assert_eq!(datetime(t), "2023-11-14T22:13:20.500Z");
        // Leap day and a century rule.
        assert_eq!(datetime_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            datetime_millis(4_107_542_399_999),
            "2100-02-28T23:59:59.999Z"
        );
        assert_eq!(datetime_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            datetime(UNIX_EPOCH - Duration::from_secs(86_400)),
            "1969-12-31T00:00:00.000Z"
        );
    }

    #[test]
    fn media_time_to_wall_clock() {
        let origin = UNIX_EPOCH + Duration::from_secs(10);
        assert_eq!(media_time_millis(origin, 3003, 90_000), 10_033);
        assert_eq!(media_time_millis(origin, 1_024, 48_000), 10_021);
    }

    #[test]
    fn durations() {
        assert_eq!(duration(Duration::from_secs(10)), "PT10.000S");
        assert_eq!(duration(Duration::from_micros(1_999_600)), "PT2.000S");
        assert_eq!(duration(Duration::from_millis(61_250)), "PT1M1.250S");
        assert_eq!(duration(Duration::from_secs(3600)), "PT1H0M0.000S");
        assert_eq!(duration(Duration::ZERO), "PT0.000S");
    }
}
