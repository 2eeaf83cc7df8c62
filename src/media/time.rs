//! Rational numbers for frame rates and time bases, and the rule for segment durations.

use std::time::Duration;

/// A positive rational number `num / den`, e.g. a frame rate of 30000/1001.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Rational {
    pub num: u32,
    pub den: u32,
}

impl Rational {
    pub const fn new(num: u32, den: u32) -> Self {
        Rational { num, den }
    }

    /// Frames in `seconds` at this rate, at least 1: the IDR interval of a segment.
    pub fn frames_in(self, seconds: f64) -> u32 {
        (seconds * self.as_f64()).round().max(1.0) as u32
    }

    pub fn as_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// The smallest timescale (ticks per second) that is a multiple of this frame rate and
    /// preferably 90 kHz: frame durations are whole ticks (docs/timing.md, "Timescales").
    pub fn video_timescale(self) -> u32 {
        let frame_ticks_90k = 90_000u64 * self.den as u64;
        if self.num > 0 && frame_ticks_90k.is_multiple_of(self.num as u64) {
            90_000
        } else {
            // num frames per den seconds: a timescale of num ticks gives den ticks per frame.
            let mut ts = self.num;
            while ts < 10_000 {
                ts *= 10;
            }
            ts
        }
    }

    /// Ticks of one frame at `timescale` (exact when `timescale` came from [`Self::video_timescale`]).
    pub fn frame_ticks(self, timescale: u32) -> u64 {
        (timescale as u64 * self.den as u64) / self.num as u64
    }
}

/// The highest frame rate accepted anywhere a rate is written by hand.
pub const MAX_FRAME_RATE: f64 = 120.0;

impl Rational {
    /// Parses a frame rate as people write it: `30`, `25`, `30000/1001`, or the broadcast
    /// shorthands `23.976`, `29.97`, `47.952`, `59.94`, `119.88` (each meaning N·1000/1001).
    /// Other decimals are taken exactly (`12.5` = 25/2). Between 1 and 120 frames per second.
    pub fn parse_frame_rate(s: &str) -> Result<Rational, String> {
        let bad = || format!("{s:?}: expected a frame rate such as 30, 29.97 or 30000/1001");
        let s = s.trim();
        let rate = if let Some((num, den)) = s.split_once('/') {
            let num: u32 = num.trim().parse().map_err(|_| bad())?;
            let den: u32 = den.trim().parse().map_err(|_| bad())?;
            if den == 0 {
                return Err(bad());
            }
            Rational::new(num, den)
        } else if let Some((whole, fraction)) = s.split_once('.') {
            let digits_only = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
            if !digits_only(whole) || !digits_only(fraction) || fraction.len() > 3 {
                return Err(bad());
            }
            let whole: u32 = whole.parse().map_err(|_| bad())?;
            if whole > MAX_FRAME_RATE as u32 {
                return Err(bad());
            }
            let digits = fraction.len() as u32;
            let scale = 10u32.pow(digits);
            let millis = whole
                .checked_mul(scale)
                .and_then(|w| w.checked_add(fraction.parse::<u32>().ok()?))
                .ok_or_else(bad)?;
            // NTSC family: N·1000/1001 for a whole N, written rounded or cut to 2 or 3 digits.
            let n = (whole + 1) * 1000;
            let exact = n as f64 / 1001.0 * scale as f64;
            let ntsc =
                digits >= 2 && (exact.round() as u32 == millis || exact.floor() as u32 == millis);
            if ntsc {
                Rational::new(n, 1001)
            } else {
                Rational::new(millis, scale)
            }
        } else {
            Rational::new(s.parse().map_err(|_| bad())?, 1)
        };
        let rate = rate.reduced();
        if !(1.0..=MAX_FRAME_RATE).contains(&rate.as_f64()) {
            return Err(format!("{s:?}: frame rate outside 1 to {MAX_FRAME_RATE}"));
        }
        Ok(rate)
    }

    /// The same rate with numerator and denominator divided by their greatest common divisor.
    pub fn reduced(self) -> Rational {
        fn gcd(a: u32, b: u32) -> u32 {
            if b == 0 {
                a
            } else {
                gcd(b, a % b)
            }
        }
        let g = gcd(self.num, self.den).max(1);
        Rational::new(self.num / g, self.den / g)
    }
}

/// Parses `WIDTHxHEIGHT@RATE` (`1280x720@30`, `1920x1080@29.97`, `1920x1080@30000/1001`): an
/// output picture format, with even sizes of at least 16.
pub fn parse_picture_format(s: &str) -> Result<(u32, u32, Rational), String> {
    let bad = || format!("{s:?}: expected WIDTHxHEIGHT@FPS, e.g. 1280x720@30 or 1920x1080@29.97");
    let (size, fps) = s.split_once('@').ok_or_else(bad)?;
    let (w, h) = size.split_once('x').ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    if w < 16 || h < 16 || w % 2 == 1 || h % 2 == 1 || w > 8192 || h > 8192 {
        return Err(bad());
    }
    let fps = Rational::parse_frame_rate(fps).map_err(|e| format!("{s:?}: {e}"))?;
    Ok((w, h, fps))
}

/// Milliseconds in a day: every segment duration divides it.
pub const DAY_MS: u64 = 86_400_000;

/// The one rule for segment durations, live and VOD alike: a whole number of milliseconds
/// from 1 to 10 s that divides a day, so segment edges fall on every midnight UTC and on the
/// media epoch (docs/timing.md, "Why D must divide a day"). Every place that reads a duration
/// (channel config, the CLI, the REST API, both pipelines) goes through here, so no two of
/// them can round a value differently: 1.0005 s, which one place once cut to 1 s while
/// another kept it, is refused everywhere.
pub fn segment_duration_from_seconds(seconds: f64) -> Result<Duration, String> {
    let millis = seconds * 1000.0;
    if !millis.is_finite() || !(1000.0..=10_000.0).contains(&millis.round()) {
        return Err(format!("{seconds} s is outside 1 to 10 s"));
    }
    if (millis - millis.round()).abs() > 1e-6 {
        return Err(not_a_divisor_of_a_day(seconds));
    }
    check_segment_duration(Duration::from_millis(millis.round() as u64))
}

/// [`segment_duration_from_seconds`] for a duration already made: returns it when allowed.
pub fn check_segment_duration(d: Duration) -> Result<Duration, String> {
    let seconds = d.as_secs_f64();
    if !(Duration::from_secs(1)..=Duration::from_secs(10)).contains(&d) {
        return Err(format!("{seconds} s is outside 1 to 10 s"));
    }
    let whole_ms = d.subsec_nanos().is_multiple_of(1_000_000);
    if !whole_ms || !DAY_MS.is_multiple_of(d.as_millis() as u64) {
        return Err(not_a_divisor_of_a_day(seconds));
    }
    Ok(d)
}

fn not_a_divisor_of_a_day(seconds: f64) -> String {
    format!(
        "{seconds} s does not divide a day into whole segments of whole milliseconds (segment edges fall on midnight UTC); use 1, 2, 3, 4, 5, 6, 8, 9 or 10 s, or e.g. 1.5 or 2.4"
    )
}

impl std::fmt::Display for Rational {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timescales_hold_whole_frames() {
        for fps in [
            Rational::new(30, 1),
            Rational::new(30000, 1001),
            Rational::new(25, 1),
            Rational::new(24000, 1001),
            Rational::new(60, 1),
            Rational::new(7, 1),
        ] {
            let ts = fps.video_timescale();
            assert_eq!((ts as u64 * fps.den as u64) % fps.num as u64, 0, "{fps}");
        }
        assert_eq!(Rational::new(30, 1).video_timescale(), 90_000);
        assert_eq!(Rational::new(30000, 1001).frame_ticks(90_000), 3003);
    }

    #[test]
    fn frame_rates_as_people_write_them() {
        let parse = |s| Rational::parse_frame_rate(s).unwrap();
        assert_eq!(parse("30"), Rational::new(30, 1));
        assert_eq!(parse("29.97"), Rational::new(30000, 1001));
        assert_eq!(parse("59.94"), Rational::new(60000, 1001));
        assert_eq!(parse("23.976"), Rational::new(24000, 1001));
        assert_eq!(parse("23.98"), Rational::new(24000, 1001));
        assert_eq!(parse("119.88"), Rational::new(120000, 1001));
        assert_eq!(parse("30000/1001"), Rational::new(30000, 1001));
        assert_eq!(parse("60/2"), Rational::new(30, 1));
        assert_eq!(parse("12.5"), Rational::new(25, 2));
        assert_eq!(parse("25.0"), Rational::new(25, 1));
        for bad in [
            "",
            "0",
            "121",
            "30/0",
            "abc",
            "29.",
            ".5",
            "29.9700",
            "-30",
            "1e3",
            "4294967295.9",
        ] {
            assert!(Rational::parse_frame_rate(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_picture_format("1920x1080@29.97").unwrap(),
            (1920, 1080, Rational::new(30000, 1001))
        );
        assert!(parse_picture_format("1921x1080@30").is_err());
        assert!(parse_picture_format("1920x1080").is_err());
    }

    /// One rule, whether the duration comes as seconds or as a `Duration`: whole
    /// milliseconds, 1 to 10 s, dividing a day.
    #[test]
    fn segment_durations_are_whole_milliseconds_that_divide_a_day() {
        for ok in [1.0, 1.5, 2.0, 2.4, 3.0, 6.0, 6.4, 10.0] {
            let d = segment_duration_from_seconds(ok).unwrap();
            assert_eq!(d.as_nanos() % 1_000_000, 0, "{ok}");
            assert_eq!(check_segment_duration(d), Ok(d));
        }
        // 1.0005 s: once cut to 1 s in one place and kept in another.
        for bad in [
            1.0005,
            2.0001,
            7.0,
            0.5,
            10.5,
            11.0,
            f64::NAN,
            f64::INFINITY,
        ] {
            let e = segment_duration_from_seconds(bad).unwrap_err();
            assert!(
                e.contains("divide a day") || e.contains("outside 1 to 10"),
                "{e}"
            );
        }
        for bad in [
            Duration::from_micros(1_000_500),
            Duration::from_nanos(2_000_000_001),
            Duration::from_secs(7),
            Duration::ZERO,
        ] {
            assert!(check_segment_duration(bad).is_err(), "{bad:?}");
        }
    }
}
