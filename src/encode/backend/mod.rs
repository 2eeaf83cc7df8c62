//! The backends, one per file, and the candidates table used by selection.

mod lavc;
pub mod nvenc;
pub mod software;
pub mod vaapi;

use super::Candidate;

/// Every backend this build knows, hardware first.
pub fn candidates() -> Vec<Candidate> {
    vec![
        Candidate {
            name: nvenc::NAME,
            hardware: true,
            open: nvenc::open,
            sessions: Some(&nvenc::SESSIONS),
        },
        Candidate {
            name: vaapi::NAME,
            hardware: true,
            open: vaapi::open,
            sessions: None,
        },
        Candidate {
            name: software::NAME,
            hardware: false,
            open: software::open,
            sessions: None,
        },
    ]
}
