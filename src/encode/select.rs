//! Backend choice: a candidates table, tried in order; one WARN names every refusal.

use super::sessions::SessionPool;
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
    /// The engine's session cap, for backends whose driver limits open sessions.
    pub sessions: Option<&'static SessionPool>,
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

/// The candidates `kind` allows, in the order they are tried (hardware first for `Auto`).
fn allowed<'a>(
    kind: &Kind,
    candidates: &'a [Candidate],
) -> Result<Vec<&'a Candidate>, SelectError> {
    Ok(match kind {
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
    })
}

/// Opens the first candidate allowed by `kind` that accepts `config`.
///
/// With `Auto`, a fallback past refusing hardware backends logs one WARN naming each and why.
pub fn select(
    kind: &Kind,
    candidates: &[Candidate],
    config: &Config,
) -> Result<Box<dyn Backend>, SelectError> {
    let mut ladder = select_ladder(kind, candidates, std::slice::from_ref(config))?;
    Ok(ladder.remove(0))
}

/// Opens one encoder per rung, all on the first candidate allowed by `kind` that accepts every
/// rung (a ladder never mixes engines) and has a session for each under its cap. A candidate
/// that refuses any rung is passed over whole; one WARN names every refusal when `Auto` falls back.
pub fn select_ladder(
    kind: &Kind,
    candidates: &[Candidate],
    configs: &[Config],
) -> Result<Vec<Box<dyn Backend>>, SelectError> {
    let mut refusals = Vec::new();
    for candidate in allowed(kind, candidates)? {
        match open_ladder(candidate, configs) {
            Ok(encoders) => {
                if !refusals.is_empty() {
                    let why: Vec<String> = refusals.iter().map(|e: &Error| e.to_string()).collect();
                    tracing::warn!(
                        chosen = candidate.name,
                        "falling back to {}: {}",
                        candidate.name,
                        why.join("; ")
                    );
                }
                return Ok(encoders);
            }
            Err(e) => refusals.push(e),
        }
    }
    Err(SelectError::Unavailable { refusals })
}

fn open_ladder(candidate: &Candidate, configs: &[Config]) -> Result<Vec<Box<dyn Backend>>, Error> {
    if let Some(reason) = candidate
        .sessions
        .and_then(|pool| pool.refusal(configs.len() as u32))
    {
        return Err(Error::Unavailable {
            backend: candidate.name,
            reason,
        });
    }
    configs
        .iter()
        .map(|config| (candidate.open)(config))
        .collect()
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
                sessions: None,
            },
            Candidate {
                name: "cpu-stub",
                hardware: false,
                open: accepting,
                sessions: None,
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
            device: Default::default(),
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

    static CAPPED: SessionPool = SessionPool::new("stub-engine");

    fn capped_gpu(_: &Config) -> Result<Box<dyn Backend>, Error> {
        let session = CAPPED.acquire().map_err(|reason| Error::Unavailable {
            backend: "capped-gpu",
            reason,
        })?;
        Ok(Box::new(Held {
            stub: Stub("capped-gpu"),
            _session: session,
        }))
    }

    /// A stub encoder that holds a session, as the hardware backends do.
    struct Held {
        stub: Stub,
        _session: crate::encode::sessions::Session,
    }
    impl Backend for Held {
        fn name(&self) -> &'static str {
            self.stub.name()
        }
        fn encode(
            &mut self,
            f: &mut ffmpeg_next::frame::Video,
            k: bool,
        ) -> Result<Vec<Packet>, Error> {
            self.stub.encode(f, k)
        }
        fn flush(&mut self) -> Result<Vec<Packet>, Error> {
            self.stub.flush()
        }
        fn extradata(&self) -> Vec<u8> {
            vec![]
        }
        fn pixel_format(&self) -> ffmpeg_next::format::Pixel {
            self.stub.pixel_format()
        }
    }

    #[test]
    fn a_ladder_is_admitted_whole_under_the_session_cap() {
        CAPPED.set_cap(Some(5));
        let table = [
            Candidate {
                name: "capped-gpu",
                hardware: true,
                open: capped_gpu,
                sessions: Some(&CAPPED),
            },
            Candidate {
                name: "cpu-stub",
                hardware: false,
                open: accepting,
                sessions: None,
            },
        ];
        let four = vec![config(); 4];
        let first = select_ladder(&Kind::Auto, &table, &four).unwrap();
        assert!(first.iter().all(|e| e.name() == "capped-gpu"));
        assert_eq!(CAPPED.open(), 4);
        // One slot left: the next 4-rung ladder goes to software, whole.
        let second = select_ladder(&Kind::Auto, &table, &four).unwrap();
        assert!(second.iter().all(|e| e.name() == "cpu-stub"));
        let e = select_ladder(&Kind::Hardware, &table, &four).err().unwrap();
        assert_eq!(
            e.to_string(),
            "capped-gpu unavailable: stub-engine session cap reached (4 of 5 open, 4 needed)"
        );
        // Closing the first ladder gives its sessions back.
        drop(first);
        assert_eq!(CAPPED.open(), 0);
        let third = select_ladder(&Kind::Hardware, &table, &four).unwrap();
        assert_eq!(third.len(), 4);
    }

    #[test]
    fn a_candidate_refusing_one_rung_is_passed_over_whole() {
        fn small_only(c: &Config) -> Result<Box<dyn Backend>, Error> {
            if c.width > 100 {
                return Err(Error::Unavailable {
                    backend: "small-gpu",
                    reason: format!("{}x{} too large", c.width, c.height),
                });
            }
            Ok(Box::new(Stub("small-gpu")))
        }
        let table = [
            Candidate {
                name: "small-gpu",
                hardware: true,
                open: small_only,
                sessions: None,
            },
            Candidate {
                name: "cpu-stub",
                hardware: false,
                open: accepting,
                sessions: None,
            },
        ];
        let mut big = config();
        big.width = 1920;
        let ladder = select_ladder(&Kind::Auto, &table, &[config(), big]).unwrap();
        assert!(ladder.iter().all(|e| e.name() == "cpu-stub"));
    }
}
