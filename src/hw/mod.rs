//! The machine Encore runs on: what hardware it has ([`probe`]) and what each kind of hardware can
//! do ([`profile`], from the TOML files in `hw-profiles/`).
//!
//! Nothing here may fail on a machine without a GPU: a missing driver, device or library is a
//! reason in the report, never a panic or a build requirement.

pub mod accel;
pub mod filter;
pub mod probe;
pub mod profile;
pub mod report;

pub use probe::{probe, probe_with};
pub use profile::{load_all, Profile};
pub use report::{BackendStatus, ProbeReport};

/// Initialises FFmpeg once and keeps its own logging quiet unless asked (`ENCORE_FFMPEG_LOG=1`).
pub fn init_ffmpeg() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ffmpeg_next::init();
        let level = if std::env::var_os("ENCORE_FFMPEG_LOG").is_some() {
            ffmpeg_next::util::log::Level::Warning
        } else {
            ffmpeg_next::util::log::Level::Fatal
        };
        ffmpeg_next::util::log::set_level(level);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Development and CI machines have no GPU: the probe must say so, with reasons, and still
    /// find the software backend.
    #[test]
    fn probe_on_this_machine() {
        let report = probe();
        println!("{report}");
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.contains("\"backends\""));
        let nvenc = report.backend("nvenc").unwrap();
        if report.nvidia.devices.is_empty() {
            assert!(!nvenc.usable);
            assert!(
                nvenc.reason.as_deref().is_some_and(|r| !r.is_empty()),
                "nvenc needs a reason"
            );
            assert!(report.nvidia.reason.is_some());
        } else {
            println!("NVIDIA devices present: not checking the no-GPU path");
        }
        if report.vaapi.devices.is_empty() {
            let vaapi = report.backend("vaapi").unwrap();
            assert!(!vaapi.usable);
            assert!(
                vaapi
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.contains("render node")),
                "{vaapi:?}"
            );
        }
        assert!(
            report.backend("software").unwrap().usable,
            "libx264 missing from FFmpeg"
        );
        assert!(report.cpu.logical_cores >= 1);
        assert!(report.memory.total_bytes > 0);
        if report.nvidia.devices.is_empty() && report.vaapi.devices.is_empty() {
            assert_eq!(report.profile.as_deref(), Some("cpu-generic"));
        }
    }
}
