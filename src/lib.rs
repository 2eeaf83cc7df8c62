//! Encore: a transcoding appliance. One decode, an ABR ladder, CMAF with HLS and DASH, a live origin.
//!
//! Layers (dependencies point one way): `media` ← `package` ← `origin`;
//! `media` ← `ingest`/`scale`/`encode` ← `pipeline`; `api`/`jobs` drive `pipeline` and read `origin`.

pub mod bench;
pub mod cli;
pub mod daemon;
pub mod encode;
pub mod hw;
pub mod ingest;
pub mod media;
pub mod origin;
pub mod package;
pub mod pipeline;
pub mod scale;
