//! The ABR ladder: what the user asks for ([`RungSpec`]) and what a given source gets ([`Rung`]).
//!
//! Planning never upscales, keeps the source's display aspect and gives even dimensions
//! (4:2:0 chroma needs them).

use serde::{Deserialize, Serialize};

use super::VideoCodec;

/// A rung as requested: a height (and optionally a width) and a target bitrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RungSpec {
    /// Output height in pixels (even).
    pub height: u32,
    /// Output width; derived from the source's display aspect when absent.
    #[serde(default)]
    pub width: Option<u32>,
    /// Target bitrate in bits per second (in files: a number, or a string such as "3000k").
    #[serde(deserialize_with = "de_bitrate")]
    pub bitrate: u64,
}

/// A rung planned for one source: exact output size and bitrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rung {
    pub width: u32,
    pub height: u32,
    /// Target bitrate in bits per second.
    pub bitrate: u64,
}

impl Rung {
    /// A stable identifier, also the rendition's folder: `720p`, or `720p-3000k` when two rungs
    /// share a height.
    pub fn id(&self, ladder: &[Rung]) -> String {
        let same_height = ladder.iter().filter(|r| r.height == self.height).count();
        if same_height > 1 {
            format!("{}p-{}k", self.height, self.bitrate / 1000)
        } else {
            format!("{}p", self.height)
        }
    }
}

/// A problem with a requested ladder, naming the rung and the numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LadderError {
    #[error("invalid ladder: {0}")]
    Syntax(String),
    #[error("invalid ladder: rung {rung} ({width}x{height}): {reason}")]
    InvalidRung {
        rung: usize,
        width: u32,
        height: u32,
        reason: &'static str,
    },
    #[error("invalid ladder: it has no rungs")]
    Empty,
    #[error("invalid ladder: every rung is above the source height {source_height} (Encore never upscales)")]
    AllAboveSource { source_height: u32 },
}

/// The requested ladder: the default one, or the user's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ladder {
    pub rungs: Vec<RungSpec>,
    /// True for the built-in ladder: a source below its lowest rung still gets one rung at its own size.
    #[serde(skip)]
    pub is_default: bool,
}

/// Largest dimension any encoder here accepts (8K).
const MAX_DIMENSION: u32 = 8192;

impl Ladder {
    /// The default ladder (1080/720/480/360), bitrates after Apple's HLS authoring ladder;
    /// HEVC gets about 65% of the AVC bitrate for the same quality.
    pub fn default_for(codec: VideoCodec) -> Ladder {
        let avc: [(u32, u64); 4] = [
            (1080, 6_000_000),
            (720, 3_000_000),
            (480, 1_200_000),
            (360, 730_000),
        ];
        let scale = match codec {
            VideoCodec::Avc => 100,
            VideoCodec::Hevc => 65,
        };
        Ladder {
            rungs: avc
                .iter()
                .map(|&(height, bitrate)| RungSpec {
                    height,
                    width: None,
                    bitrate: bitrate * scale / 100,
                })
                .collect(),
            is_default: true,
        }
    }

    /// Parses `1080:6000k,720:3000k` (also `1280x720:3M`, bitrates in b/s, k or M).
    pub fn parse_spec(spec: &str) -> Result<Ladder, LadderError> {
        let mut rungs = Vec::new();
        for (i, part) in spec.split(',').map(str::trim).enumerate() {
            if part.is_empty() {
                continue;
            }
            let (size, rate) = part.split_once(':').ok_or_else(|| {
                LadderError::Syntax(format!(
                    "rung {} {part:?}: expected HEIGHT:BITRATE, e.g. 720:3000k",
                    i + 1
                ))
            })?;
            let (width, height) = match size.split_once(['x', 'X']) {
                Some((w, h)) => (Some(parse_dim(w, i)?), parse_dim(h, i)?),
                None => (None, parse_dim(size, i)?),
            };
            let bitrate = parse_bitrate(rate)
                .map_err(|e| LadderError::Syntax(format!("rung {} {part:?}: {e}", i + 1)))?;
            rungs.push(RungSpec {
                height,
                width,
                bitrate,
            });
        }
        let ladder = Ladder {
            rungs,
            is_default: false,
        };
        ladder.validate()?;
        Ok(ladder)
    }

    /// Reads a ladder from a TOML or JSON file: `[[rungs]] height = 720  bitrate = "3000k"`.
    pub fn from_file(path: &std::path::Path) -> Result<Ladder, LadderError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            LadderError::Syntax(format!("cannot read ladder file {}: {e}", path.display()))
        })?;
        let ladder: Ladder = if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            serde_json::from_str(&text)
                .map_err(|e| LadderError::Syntax(format!("{}: {e}", path.display())))?
        } else {
            toml::from_str(&text)
                .map_err(|e| LadderError::Syntax(format!("{}: {e}", path.display())))?
        };
        ladder.validate()?;
        Ok(ladder)
    }

    /// `--ladder` takes either a spec or the path of a .toml/.json file.
    pub fn from_arg(arg: &str) -> Result<Ladder, LadderError> {
        let lower = arg.to_ascii_lowercase();
        if lower.ends_with(".toml") || lower.ends_with(".json") {
            Ladder::from_file(std::path::Path::new(arg))
        } else {
            Ladder::parse_spec(arg)
        }
    }

    /// Checks every rung on its own: non-zero even sizes, non-zero bitrate.
    pub fn validate(&self) -> Result<(), LadderError> {
        if self.rungs.is_empty() {
            return Err(LadderError::Empty);
        }
        for (i, r) in self.rungs.iter().enumerate() {
            let width = r.width.unwrap_or(0);
            let bad = |reason| LadderError::InvalidRung {
                rung: i + 1,
                width,
                height: r.height,
                reason,
            };
            if r.height == 0 || r.width == Some(0) {
                return Err(bad("size must not be zero"));
            }
            if r.height % 2 == 1 || r.width.is_some_and(|w| w % 2 == 1) {
                return Err(bad("size must be even (4:2:0 chroma)"));
            }
            if r.height > MAX_DIMENSION || width > MAX_DIMENSION {
                return Err(bad("size above 8192"));
            }
            if r.bitrate == 0 {
                return Err(bad("bitrate must not be zero"));
            }
            if r.bitrate < 16_000 {
                return Err(bad("bitrate below 16 kb/s (did you forget the k suffix?)"));
            }
        }
        Ok(())
    }

    /// Plans the rungs for a source of `width`x`height` with display aspect `dar` (width/height):
    /// rungs above the source are dropped, the order is top rung first, duplicates removed.
    pub fn plan(&self, width: u32, height: u32, dar: f64) -> Result<Vec<Rung>, LadderError> {
        self.validate()?;
        let dar = if dar.is_finite() && dar > 0.0 {
            dar
        } else {
            width as f64 / height.max(1) as f64
        };
        let even = |v: f64| ((v / 2.0).round() as u32 * 2).max(2);
        let mut out: Vec<Rung> = self
            .rungs
            .iter()
            .filter(|r| r.height <= height)
            .map(|r| Rung {
                width: r.width.unwrap_or_else(|| even(r.height as f64 * dar)),
                height: r.height,
                bitrate: r.bitrate,
            })
            .collect();
        if out.is_empty() {
            if !self.is_default {
                return Err(LadderError::AllAboveSource {
                    source_height: height,
                });
            }
            // A small source still gets one rung at its own size, bitrate scaled by pixel count.
            let lowest = self
                .rungs
                .iter()
                .min_by_key(|r| r.height)
                .ok_or(LadderError::Empty)?;
            let h = even(height as f64);
            let w = even(h as f64 * dar);
            let area =
                (w as f64 * h as f64) / (lowest.height as f64 * lowest.height as f64 * 16.0 / 9.0);
            out.push(Rung {
                width: w,
                height: h,
                bitrate: ((lowest.bitrate as f64 * area) as u64).max(100_000),
            });
        }
        out.sort_by(|a, b| b.height.cmp(&a.height).then(b.bitrate.cmp(&a.bitrate)));
        out.dedup();
        Ok(out)
    }
}

fn parse_dim(s: &str, i: usize) -> Result<u32, LadderError> {
    s.trim()
        .trim_end_matches('p')
        .parse()
        .map_err(|_| LadderError::Syntax(format!("rung {}: {s:?} is not a size", i + 1)))
}

/// Parses `3000k`, `3M`, `3.5M`, `730000` into bits per second.
pub fn parse_bitrate(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1_000.0),
        Some('m' | 'M') => (&s[..s.len() - 1], 1_000_000.0),
        _ => (s, 1.0),
    };
    let v: f64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a bitrate (e.g. 3000k)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("{s:?} is not a bitrate"));
    }
    Ok((v * mult).round() as u64)
}

fn de_bitrate<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Num(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Num(n) => Ok(n),
        Raw::Text(t) => parse_bitrate(&t).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ladder_never_upscales() {
        let l = Ladder::default_for(VideoCodec::Avc);
        let hd = l.plan(1280, 720, 16.0 / 9.0).unwrap();
        assert_eq!(
            hd.iter().map(|r| r.height).collect::<Vec<_>>(),
            vec![720, 480, 360]
        );
        assert_eq!((hd[0].width, hd[1].width, hd[2].width), (1280, 854, 640));
        let fhd = l.plan(1920, 1080, 16.0 / 9.0).unwrap();
        assert_eq!(fhd.len(), 4);
        let small = l.plan(640, 360, 16.0 / 9.0).unwrap();
        assert_eq!(
            small,
            vec![Rung {
                width: 640,
                height: 360,
                bitrate: 730_000
            }]
        );
        let tiny = l.plan(320, 240, 4.0 / 3.0).unwrap();
        assert_eq!((tiny[0].width, tiny[0].height), (320, 240));
    }

    #[test]
    fn spec_parsing_and_errors() {
        let l = Ladder::parse_spec("1080:6000k, 1280x720:3M,360:730000").unwrap();
        assert_eq!(
            l.rungs[1],
            RungSpec {
                height: 720,
                width: Some(1280),
                bitrate: 3_000_000
            }
        );
        assert!(
            matches!(Ladder::parse_spec("720:0k"), Err(LadderError::InvalidRung { reason, .. }) if reason.contains("zero"))
        );
        assert!(
            matches!(Ladder::parse_spec("721:3000k"), Err(LadderError::InvalidRung { reason, .. }) if reason.contains("even"))
        );
        assert!(matches!(
            Ladder::parse_spec("0:3000k"),
            Err(LadderError::InvalidRung { .. })
        ));
        assert!(matches!(
            Ladder::parse_spec("720"),
            Err(LadderError::Syntax(_))
        ));
        assert!(matches!(Ladder::parse_spec(""), Err(LadderError::Empty)));
        let user = Ladder::parse_spec("1080:6000k").unwrap();
        assert!(matches!(
            user.plan(640, 360, 16.0 / 9.0),
            Err(LadderError::AllAboveSource { .. })
        ));
    }

    #[test]
    fn ladder_files() {
        let dir = std::env::temp_dir().join(format!("encore-ladder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = dir.join("l.toml");
        std::fs::write(&t, "[[rungs]]\nheight = 720\nbitrate = \"3000k\"\n[[rungs]]\nheight = 360\nbitrate = 800000\n").unwrap();
        let l = Ladder::from_arg(t.to_str().unwrap()).unwrap();
        assert_eq!(l.rungs.len(), 2);
        let j = dir.join("l.json");
        std::fs::write(&j, r#"{"rungs":[{"height":480,"bitrate":"1.2M"}]}"#).unwrap();
        assert_eq!(
            Ladder::from_arg(j.to_str().unwrap()).unwrap().rungs[0].bitrate,
            1_200_000
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
