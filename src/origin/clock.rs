//! The origin's clock endpoint format: ISO 8601 UTC with milliseconds, as DASH
//! `UTCTiming` `urn:mpeg:dash:utc:http-iso:2014` expects (`2026-11-25T08:00:00.123Z`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Formats `t` as `YYYY-MM-DDThh:mm:ss.sssZ`. Instants before 1970 print as the epoch.
pub fn iso8601_millis(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let millis = since.subsec_millis();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's
/// `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod unit {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        let at = |s: u64, ms: u64| UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms);
        assert_eq!(iso8601_millis(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            iso8601_millis(at(951_782_400, 5)),
            "2000-02-29T00:00:00.005Z"
        );
        assert_eq!(
            iso8601_millis(at(1_795_593_600, 123)),
            "2026-11-25T08:00:00.123Z"
        );
        assert_eq!(
            iso8601_millis(at(4_107_542_399, 999)),
            "2100-02-28T23:59:59.999Z"
        );
    }

    #[test]
    fn agrees_with_http_dates() {
        // httpdate formats the same instant independently (to the second).
        for s in [1u64, 86_399, 1_000_000_000, 1_700_000_000, 2_000_000_000] {
            let t = UNIX_EPOCH + Duration::from_secs(s);
            let back = httpdate::parse_http_date(&httpdate::fmt_http_date(t)).unwrap();
            assert_eq!(back, t);
            let iso = iso8601_millis(t);
            let http = httpdate::fmt_http_date(t);
            // "Sun, 09 Sep 2001 01:46:40 GMT" vs "2001-09-09T01:46:40.000Z"
            let day = &http[5..7];
            let year = &http[12..16];
            let hms = &http[17..25];
            assert_eq!(&iso[0..4], year);
            assert_eq!(&iso[8..10], day);
            assert_eq!(&iso[11..19], hms);
        }
    }
}
