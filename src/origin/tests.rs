//! Origin over real HTTP.
