//! Jobs: the VOD work that arrives over the API, kept in a durable store and run by capacity.
//!
//! ```text
//!  api ──submit──▶ store (jobs = the queue, attempts, events, deliveries) ◀──claims, leases── service
//!                                                                               │
//!                           webhook sender ◀── a delivery per state change ◀────┤
//!                                                                               ▼
//!                                             pipeline::transcode on a blocking thread → DATA_DIR/vod/{id}
//! ```
//!
//! `model` is the job's states, errors and progress; `options` the request and its checks;
//! `store` the database (SQLite or PostgreSQL); `service` the scheduler and the runs;
//! `webhook` the signed deliveries.

pub mod fleet;
pub mod model;
pub mod options;
pub mod service;
pub mod store;
pub mod webhook;

pub use model::{JobError, Progress, State};
pub use options::{FieldError, InputPolicy, JobRequest, Options, Resolved};
pub use service::{JobView, Service, Settings};
pub use store::{Store, StoreError};

/// Capacity units of this machine: its hw-profile's units times the devices (or cores) they
/// are counted per. No profile matched: the CPU profile's figure per core.
pub fn node_capacity(report: &crate::hw::ProbeReport) -> f64 {
    use crate::hw::profile::Per;
    let profiles = crate::hw::profile::builtin();
    let by_name = |name: &str| profiles.iter().find(|p| p.name == name);
    let profile = report
        .profile
        .as_deref()
        .and_then(by_name)
        .or_else(|| by_name("cpu-generic"));
    let Some(profile) = profile else { return 1.0 };
    let count = match profile.capacity.per {
        Per::Core => report.cpu.logical_cores.max(1),
        Per::Device => (report.nvidia.devices.len() + report.vaapi.devices.len()).max(1),
        Per::System => 1,
    };
    profile.capacity.units * count as f64
}
