//! NVIDIA NVENC through libavcodec's h264_nvenc / hevc_nvenc.
//!
//! FFmpeg loads libcuda and libnvidia-encode at run time, so this builds and starts everywhere;
//! we probe for the driver library first to give a precise reason when it is absent.
//!
//! With [`Config::device`]`.zero_copy` the encoder takes CUDA frames of a pool on the shared CUDA
//! device (NVDEC and ladder-kernel output): only bitstreams cross PCIe. Otherwise libavcodec
//! uploads system-memory frames itself.
//!
//! Every encoder holds one session of [`SESSIONS`], whose cap comes from the GPU's hw-profile
//! (8 per system on GeForce cards, none on datacenter cards).

use ffmpeg_next::{format::Pixel, Dictionary};

use super::lavc::{Input, LavcEncoder};
use crate::encode::sessions::SessionPool;
use crate::encode::{Backend, Config, Error, RateControl};
use crate::hw::accel::{self, HwFrames};
use crate::media::VideoCodec;

pub const NAME: &str = "nvenc";

/// Open NVENC sessions in this process, under the cap of the GPU's hw-profile.
pub static SESSIONS: SessionPool = SessionPool::discovered_by("NVENC", discover_session_cap);

/// The session cap NVIDIA's driver enforces on a GPU named `device_name`, from the built-in
/// hw-profiles; GeForce cards no profile names get the consumer driver's 8. A GPU whose
/// profile lists no NVENC engine (A100, H100) gets 0.
pub fn session_cap_for(device_name: &str) -> Option<u32> {
    use crate::hw::profile::{builtin, SessionCap};
    let profiles = builtin();
    match profiles.iter().find(|p| p.matches_nvidia(device_name)) {
        Some(p) if p.engines.nvenc == 0 => Some(0),
        Some(p) => match p.sessions.encode {
            SessionCap::Limit(n) => Some(n),
            SessionCap::Unlimited => None,
        },
        None if device_name.contains("GeForce") => Some(CONSUMER_SESSION_CAP),
        None => None,
    }
}

/// Device 0's hw-profile preset map (Encore preset → p1..p7), when a profile names the GPU.
static PROFILE_PRESETS: std::sync::OnceLock<std::collections::BTreeMap<String, String>> =
    std::sync::OnceLock::new();

/// The NVENC preset for `preset`: an Encore preset name (fastest … slowest) through the GPU's
/// hw-profile, anything else (x264 names, p1..p7) through [`preset_for`].
pub fn nvenc_preset(
    preset: &str,
    profile_map: Option<&std::collections::BTreeMap<String, String>>,
) -> String {
    profile_map
        .and_then(|m| m.get(preset))
        .filter(|p| preset_for(p) == p.as_str())
        .cloned()
        .unwrap_or_else(|| preset_for(preset).to_string())
}

/// NVENC sessions per system on GeForce cards (driver 550 and later).
pub const CONSUMER_SESSION_CAP: u32 = 8;

/// The session cap of device 0 from its name and hw-profile; `None` (no cap) when there is no
/// driver or device. Runs once, when [`SESSIONS`] is first asked.
fn discover_session_cap() -> Option<u32> {
    // FFmpeg's device first: it sets the primary context's flags, which it cannot once
    // another user (cudarc, below) has made the context active.
    let _ = accel::shared_cuda();
    let name = crate::scale::cuda::guarded("naming the GPU", || {
        let ctx = cudarc::driver::CudaContext::new(0)
            .map_err(|e| crate::scale::Error::Cuda(e.to_string()))?;
        ctx.name()
            .map_err(|e| crate::scale::Error::Cuda(e.to_string()))
    })
    .ok()?;
    let profiles = crate::hw::profile::builtin();
    if let Some(p) = profiles.iter().find(|p| p.matches_nvidia(&name)) {
        let _ = PROFILE_PRESETS.set(p.presets.clone());
    }
    let cap = session_cap_for(&name);
    tracing::debug!(device = %name, cap = ?cap, "NVENC session cap");
    cap
}

/// The CUDA driver library NVENC needs; absent on machines without an NVIDIA driver.
pub const DRIVER_LIBRARY: &str = "libcuda.so.1";

/// True when the NVIDIA driver library can be loaded (it is unloaded again at once).
pub fn driver_present() -> bool {
    // SAFETY: loading libcuda runs no user code beyond its initialisers; it is dropped at once.
    unsafe { libloading::Library::new(DRIVER_LIBRARY).is_ok() }
}

/// Maps Encore/x264 preset names onto NVENC's p1 (fastest) … p7 (best).
pub fn preset_for(preset: &str) -> &'static str {
    match preset {
        "ultrafast" | "p1" => "p1",
        "superfast" | "p2" => "p2",
        "veryfast" | "p3" => "p3",
        "faster" | "fast" | "p4" => "p4",
        "medium" | "p5" => "p5",
        "slow" | "p6" => "p6",
        _ => "p7",
    }
}

/// The libavcodec encoder and its private options for `config`, as the FFmpeg CLI takes them
/// (`-c:v h264_nvenc -preset p3 -forced-idr 1 ...`): one place for the encoder and the
/// benchmark's FFmpeg peer.
pub fn codec_options(config: &Config) -> (&'static str, Vec<(&'static str, String)>) {
    let codec_name = match config.codec {
        VideoCodec::Avc => "h264_nvenc",
        VideoCodec::Hevc => "hevc_nvenc",
    };
    let mut options = vec![
        (
            "preset",
            nvenc_preset(&config.preset, PROFILE_PRESETS.get()),
        ),
        ("forced-idr", "1".to_string()),
        (
            "tune",
            if config.low_latency { "ll" } else { "hq" }.to_string(),
        ),
    ];
    if config.low_latency {
        options.push(("zerolatency", "1".to_string()));
    }
    let rate = config.bitrate.to_string();
    match config.rate_control {
        RateControl::Capped => {
            options.push(("rc", "vbr".to_string()));
            options.push(("cq", "23".to_string()));
            options.push(("maxrate", rate));
        }
        RateControl::Cbr => {
            options.push(("rc", "cbr".to_string()));
            options.push(("b", rate));
        }
    }
    options.push(("bufsize", (config.bitrate * 2).to_string()));
    (codec_name, options)
}

pub fn open(config: &Config) -> Result<Box<dyn Backend>, Error> {
    if !driver_present() {
        return Err(Error::Unavailable {
            backend: NAME,
            reason: format!("{DRIVER_LIBRARY} not found"),
        });
    }
    let session = SESSIONS.acquire().map_err(|reason| Error::Unavailable {
        backend: NAME,
        reason,
    })?;
    let (codec_name, pairs) = codec_options(config);
    let mut options = Dictionary::new();
    for (key, value) in &pairs {
        options.set(key, value);
    }
    let input = if config.device.zero_copy == Some(accel::DeviceKind::Cuda) {
        let unavailable = |e: accel::Error| Error::Unavailable {
            backend: NAME,
            reason: e.0,
        };
        let device = accel::shared_cuda().map_err(unavailable)?;
        let pool = HwFrames::new(
            &device,
            config.device.layout,
            config.width,
            config.height,
            0,
        )
        .map_err(unavailable)?;
        Input::Device(pool)
    } else {
        Input::System(Pixel::YUV420P)
    };
    let encoder = LavcEncoder::open(NAME, codec_name, input, config, options).map_err(|e| {
        match (e, SESSIONS.cap()) {
            // The driver counts sessions across every process on the machine.
            (Error::Unavailable { backend, reason }, Some(cap)) if cap > 0 => Error::Unavailable {
                backend,
                reason: format!(
                    "{reason}; this GPU allows {cap} NVENC sessions across all processes, \
                         {} of them open here",
                    SESSIONS.open().saturating_sub(1)
                ),
            },
            (e, _) => e,
        }
    })?;
    Ok(Box::new(encoder.with_session(session)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_caps_come_from_the_profiles() {
        assert_eq!(session_cap_for("NVIDIA L4"), None);
        assert_eq!(session_cap_for("NVIDIA GeForce RTX 4090"), Some(8));
        assert_eq!(session_cap_for("NVIDIA GeForce GTX 1660"), Some(8));
        assert_eq!(session_cap_for("NVIDIA H100 80GB HBM3"), Some(0));
    }

    #[test]
    fn presets_come_from_the_profile_then_the_x264_names() {
        let profiles = crate::hw::profile::builtin();
        let l4 = profiles.iter().find(|p| p.name == "nvidia-l4").unwrap();
        assert_eq!(nvenc_preset("fast", Some(&l4.presets)), "p3");
        assert_eq!(nvenc_preset("slowest", Some(&l4.presets)), "p7");
        assert_eq!(nvenc_preset("veryfast", Some(&l4.presets)), "p3");
        assert_eq!(nvenc_preset("p5", None), "p5");
        assert_eq!(nvenc_preset("ultrafast", None), "p1");
    }
}
