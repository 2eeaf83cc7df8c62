//! Scaling the decoded frame into every rung of the ladder.

pub mod swscale;
