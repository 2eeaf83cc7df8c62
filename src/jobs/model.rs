//! The job as the API and the store see it: its states, its error codes, its progress.
//!
//! ```text
//!             POST /v1/jobs            claimed by a node            transcode ok
//!   (new) ───────────────────► queued ─────────────────► running ─────────────────► succeeded
//!                               ▲  │                      │  │
//!          retry, or restart    │  │ DELETE               │  │ error (retried by itself while
//!          after a crash ───────┘  ▼                      │  │ retryable and attempts remain)
//!                               cancelled ◄───────────────┘  └────────────────────► failed
//!                                              DELETE
//! ```

use serde::{Deserialize, Serialize};

use crate::ingest;
use crate::pipeline;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Queued,
        State::Running,
        State::Succeeded,
        State::Failed,
        State::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// No further change happens by itself.
    pub fn is_final(self) -> bool {
        matches!(self, State::Succeeded | State::Failed | State::Cancelled)
    }
}

/// Why a job failed, with a code that stays the same across releases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobError {
    pub code: String,
    pub message: String,
    /// Trying again may succeed (the input's server was down, the disk was full).
    pub retryable: bool,
}

impl JobError {
    pub fn new(code: &str, message: impl Into<String>, retryable: bool) -> JobError {
        JobError {
            code: code.into(),
            message: message.into(),
            retryable,
        }
    }

    /// The node died while the job ran, as many times as a job may be attempted.
    pub fn interrupted(attempts: i64) -> JobError {
        JobError::new(
            "interrupted",
            format!("the node running it stopped ({attempts} attempts)"),
            true,
        )
    }

    /// The stable code for what the pipeline reported.
    pub fn from_pipeline(error: &pipeline::Error) -> JobError {
        use ingest::Error as In;
        use pipeline::Error as P;
        let message = error.to_string();
        let (code, retryable) = match error {
            P::Ingest(In::NotFound(_)) => ("input_unreachable", false),
            P::Ingest(In::Open { reason, .. }) if reason.contains("invalid data") => {
                ("not_media", false)
            }
            P::Ingest(In::Open { .. }) => ("input_unreachable", true),
            P::Ingest(In::Read { .. }) => ("input_read_failed", true),
            P::Ingest(In::NoVideo(_)) => ("no_video", false),
            P::Ingest(In::Decoder { .. }) => ("unsupported", false),
            P::Ingest(In::Truncated { .. }) => ("input_truncated", false),
            P::Ingest(In::NothingDecoded(_) | In::Unusable { .. }) => ("not_media", false),
            P::Ladder(_) => ("invalid_ladder", false),
            P::Backend(_) => ("backend_unavailable", false),
            P::Encode(_) => ("encode_failed", false),
            P::Package(_) => ("packaging_failed", false),
            P::OutputExists(_) | P::Io { .. } => ("output_write_failed", true),
            P::SegmentDuration(_) => ("invalid_options", false),
            P::Cancelled => ("cancelled", false),
            _ => ("internal", false),
        };
        JobError::new(code, message, retryable)
    }
}

/// The stage a running job is in: opening and probing its input, transcoding (each segment
/// is packaged as CMAF the moment it is encoded, so packaging is part of it), publishing
/// (manifests written, the output renamed into place), uploading (to the node's object
/// storage, when it has one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Probing,
    Transcoding,
    Publishing,
    Uploading,
}

/// Where a running job is; sent at most twice a second.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// 0 to 100; absent while the length is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    pub frames: u64,
    /// Output frames per second.
    pub fps: f64,
    /// Media seconds per wall-clock second.
    pub speed: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_s: Option<f64>,
}

impl Progress {
    pub fn of(p: &pipeline::Progress) -> Progress {
        let secs = p.elapsed.as_secs_f64().max(1e-3);
        let fps = p.frames as f64 / secs;
        let percent = p
            .expected_frames
            .filter(|&t| t > 0)
            .map(|t| (p.frames as f64 * 100.0 / t as f64).min(99.9));
        let eta_s = p
            .expected_frames
            .filter(|_| fps > 0.0)
            .map(|t| t.saturating_sub(p.frames) as f64 / fps);
        Progress {
            phase: Some(match p.stage {
                pipeline::Stage::Transcoding => Phase::Transcoding,
                pipeline::Stage::Publishing => Phase::Publishing,
            }),
            percent: percent.map(|v| (v * 10.0).round() / 10.0),
            frames: p.frames,
            fps: (fps * 10.0).round() / 10.0,
            speed: (p.media_seconds / secs * 100.0).round() / 100.0,
            eta_s: eta_s.map(|v| v.round()),
        }
    }
}

/// Milliseconds since 1970, the store's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// RFC 3339 in UTC with milliseconds, as every timestamp in the API.
pub fn rfc3339(ms: i64) -> String {
    crate::package::datetime::datetime_millis(ms)
}
