//! Encore: a transcoding appliance. One decode, an ABR ladder, CMAF with HLS and DASH, a live origin.
//!
//! Layers (dependencies point down only, docs/architecture.md):
//! `media` ← `package`, `scale`, `ingest`, `encode`, `hw` ← `pipeline` ← `origin` ← `daemon`,
//! `bench`, `selftest`, `loadgen` ← `cli`. A lower layer never names a higher one.

pub mod api;
pub mod bench;
pub mod cli;
pub mod daemon;
pub mod encode;
pub mod hw;
pub mod ingest;
pub mod jobs;
pub mod loadgen;
pub mod media;
pub mod objects;
pub mod origin;
pub mod package;
pub mod pipeline;
pub mod scale;
pub mod selftest;
pub mod telemetry;
