//! NVIDIA NVENC through libavcodec's h264_nvenc / hevc_nvenc.
//!
//! FFmpeg loads libcuda and libnvidia-encode at run time, so this builds and starts everywhere;
//! we probe for the driver library first to give a precise reason when it is absent.
//! Frames are uploaded by libavcodec from system memory here; the zero-copy path (CUDA frames
//! from NVDEC and the ladder kernel) is the hardware pipeline's job.

use ffmpeg_next::{format::Pixel, Dictionary};

use super::lavc::LavcEncoder;
use crate::encode::{Backend, Config, Error, RateControl};
use crate::media::VideoCodec;

pub const NAME: &str = "nvenc";

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

pub fn open(config: &Config) -> Result<Box<dyn Backend>, Error> {
    if !driver_present() {
        return Err(Error::Unavailable {
            backend: NAME,
            reason: format!("{DRIVER_LIBRARY} not found"),
        });
    }
    let codec_name = match config.codec {
        VideoCodec::Avc => "h264_nvenc",
        VideoCodec::Hevc => "hevc_nvenc",
    };
    let mut options = Dictionary::new();
    options.set("preset", preset_for(&config.preset));
    options.set("forced-idr", "1");
    options.set("tune", if config.low_latency { "ll" } else { "hq" });
    if config.low_latency {
        options.set("zerolatency", "1");
    }
    let rate = config.bitrate.to_string();
    match config.rate_control {
        RateControl::Capped => {
            options.set("rc", "vbr");
            options.set("cq", "23");
            options.set("maxrate", &rate);
        }
        RateControl::Cbr => {
            options.set("rc", "cbr");
            options.set("b", &rate);
        }
    }
    options.set("bufsize", &(config.bitrate * 2).to_string());
    Ok(Box::new(LavcEncoder::open(
        NAME,
        codec_name,
        Pixel::YUV420P,
        config,
        options,
    )?))
}
