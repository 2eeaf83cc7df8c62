//! The backends, one per file, and the candidates table used by selection.

mod lavc;
pub mod nvenc;
pub mod software;

use super::Candidate;

/// Every backend this build knows, hardware first.
pub fn candidates() -> Vec<Candidate> {
    vec![
        Candidate {
            name: nvenc::NAME,
            hardware: true,
            open: nvenc::open,
        },
        Candidate {
            name: software::NAME,
            hardware: false,
            open: software::open,
        },
    ]
}
