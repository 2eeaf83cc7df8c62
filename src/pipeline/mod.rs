//! Wires ingest → scale → encoders → packager.
//!
//! One decode feeds every rung: the decoded frame is shared read-only (`Arc`), each rung scales
//! and encodes on its own OS thread, and bounded channels make a slow rung slow the decoder
//! down instead of growing memory. Segment boundaries come from the clock (`segmenter`).

mod cfr;
pub mod frontend;
pub mod live;
mod priority;
pub mod segmenter;
pub mod track;
pub mod vod;

pub use priority::at_lower_priority;
pub use vod::{transcode, Job, Progress, Stage, Summary};

use std::path::PathBuf;

/// Why a job failed. `exit_code` tells the CLI whether the user or the machine is at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Ingest(#[from] crate::ingest::Error),
    #[error(transparent)]
    Ladder(#[from] crate::media::LadderError),
    #[error("{0}")]
    Backend(#[from] crate::encode::SelectError),
    #[error(transparent)]
    Encode(#[from] crate::encode::Error),
    #[error("packaging: {0}")]
    Package(#[from] crate::package::cmaf::Error),
    #[error("output {0} already exists (use --force to replace it)")]
    OutputExists(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid segment duration: {0}")]
    SegmentDuration(String),
    #[error("a pipeline thread stopped unexpectedly: {0}")]
    Thread(String),
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    /// 2 for problems with the input, the arguments or the machine's capabilities; 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Ingest(_)
            | Error::Ladder(_)
            | Error::Backend(_)
            | Error::OutputExists(_)
            | Error::SegmentDuration(_) => 2,
            Error::Encode(crate::encode::Error::Unavailable { .. }) => 2,
            _ => 1,
        }
    }
}

pub(crate) fn io_error(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
