//! Rational numbers for frame rates and time bases.

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
    /// preferably 90 kHz: frame durations are whole ticks (standards.md, CMAF rule 5).
    pub fn video_timescale(self) -> u32 {
        let frame_ticks_90k = 90_000u64 * self.den as u64;
        if self.num > 0 && frame_ticks_90k % self.num as u64 == 0 {
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
}
