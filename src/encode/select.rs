//! Backend choice: a candidates table, tried in order; one WARN names every refusal.

use super::{Backend, Config, Error};

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Kind {
    /// Hardware if any opens, else software.
    #[default]
    Auto,
    /// Hardware only.
    Hardware,
    /// Software only.
    Software,
    /// One backend by name (e.g. `nvenc`, `vaapi`, `software`).
    Named(String),
}

impl std::str::FromStr for Kind {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" => Kind::Auto,
            "hardware" | "hw" | "gpu" => Kind::Hardware,
            "software" | "sw" | "cpu" => Kind::Software,
            other => Kind::Named(other.to_string()),
        })
    }
}

/// One entry of the candidates table.
pub struct Candidate {
    pub name: &'static str,
    pub hardware: bool,
    pub open: fn(&Config) -> Result<Box<dyn Backend>, Error>,
}

/// Why no backend could be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SelectError {
    #[error("unknown backend {name:?} (known: {known})")]
    Unknown { name: String, known: String },
    /// Every candidate allowed by the kind refused; each refusal is listed.
    #[error("{}", refusals.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Unavailable { refusals: Vec<Error> },
}

/// Opens the first candidate allowed by `kind` that accepts `config`.
///
/// With `Auto`, a fallback past refusing hardware backends logs one WARN naming each and why.
pub fn select(
    kind: &Kind,
    candidates: &[Candidate],
    config: &Config,
) -> Result<Box<dyn Backend>, SelectError> {
    let allowed: Vec<&Candidate> = match kind {
        Kind::Auto => {
            let mut v: Vec<&Candidate> = candidates.iter().filter(|c| c.hardware).collect();
            v.extend(candidates.iter().filter(|c| !c.hardware));
            v
        }
        Kind::Hardware => candidates.iter().filter(|c| c.hardware).collect(),
        Kind::Software => candidates.iter().filter(|c| !c.hardware).collect(),
        Kind::Named(name) => {
            let found: Vec<&Candidate> = candidates.iter().filter(|c| c.name == name).collect();
            if found.is_empty() {
                return Err(SelectError::Unknown {
                    name: name.clone(),
                    known: candidates
                        .iter()
                        .map(|c| c.name)
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            found
        }
    };
    let mut refusals = Vec::new();
    for candidate in allowed {
        match (candidate.open)(config) {
            Ok(backend) => {
                if !refusals.is_empty() {
                    let why: Vec<String> = refusals.iter().map(|e: &Error| e.to_string()).collect();
                    tracing::warn!(
                        chosen = candidate.name,
                        "falling back to {}: {}",
                        candidate.name,
                        why.join("; ")
                    );
                }
                return Ok(backend);
            }
            Err(e) => refusals.push(e),
        }
    }
    Err(SelectError::Unavailable { refusals })
}

/// Opens one encoder per rung: the first rung chooses the backend (and warns once about
/// fallbacks), the others follow it, so a ladder never mixes engines.
pub fn select_ladder(
    kind: &Kind,
    candidates: &[Candidate],
    configs: &[Config],
) -> Result<Vec<Box<dyn Backend>>, SelectError> {
    let mut encoders: Vec<Box<dyn Backend>> = Vec::with_capacity(configs.len());
    for config in configs {
        let kind = match encoders.first() {
            Some(first) => Kind::Named(first.name().to_string()),
            None => kind.clone(),
        };
        encoders.push(select(&kind, candidates, config)?);
    }
    Ok(encoders)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{Packet, RateControl};
    use crate::media::{Rational, VideoCodec};

    struct Stub(&'static str);
    impl Backend for Stub {
        fn name(&self) -> &'static str {
            self.0
        }
        fn encode(
            &mut self,
            _: &mut ffmpeg_next::frame::Video,
            _: bool,
        ) -> Result<Vec<Packet>, Error> {
            Ok(vec![])
        }
        fn flush(&mut self) -> Result<Vec<Packet>, Error> {
            Ok(vec![])
        }
        fn extradata(&self) -> Vec<u8> {
            vec![]
        }
        fn pixel_format(&self) -> ffmpeg_next::format::Pixel {
            ffmpeg_next::format::Pixel::YUV420P
        }
    }

    fn refusing(_: &Config) -> Result<Box<dyn Backend>, Error> {
        Err(Error::Unavailable {
            backend: "gpu-stub",
            reason: "no device".into(),
        })
    }
    fn accepting(_: &Config) -> Result<Box<dyn Backend>, Error> {
        Ok(Box::new(Stub("cpu-stub")))
    }

    fn table() -> Vec<Candidate> {
        vec![
            Candidate {
                name: "gpu-stub",
                hardware: true,
                open: refusing,
            },
            Candidate {
                name: "cpu-stub",
                hardware: false,
                open: accepting,
            },
        ]
    }

    fn config() -> Config {
        Config {
            codec: VideoCodec::Avc,
            width: 64,
            height: 64,
            frame_rate: Rational::new(30, 1),
            timescale: 90_000,
            bitrate: 100_000,
            rate_control: RateControl::Capped,
            preset: "ultrafast".into(),
            gop: 60,
            low_latency: false,
        }
    }

    #[test]
    fn auto_falls_back_past_a_refusing_backend() {
        let b = select(&Kind::Auto, &table(), &config()).unwrap();
        assert_eq!(b.name(), "cpu-stub");
    }

    #[test]
    fn named_and_hardware_report_the_refusal() {
        let e = select(&Kind::Named("gpu-stub".into()), &table(), &config())
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "gpu-stub unavailable: no device");
        let e = select(&Kind::Hardware, &table(), &config()).err().unwrap();
        assert!(e.to_string().contains("no device"));
        let e = select(&Kind::Named("quantum".into()), &table(), &config())
            .err()
            .unwrap();
        assert!(e.to_string().contains("unknown backend"), "{e}");
        assert_eq!(
            select(&Kind::Software, &table(), &config()).unwrap().name(),
            "cpu-stub"
        );
    }
}
