//! VA-API encoding (Intel, AMD) through libavcodec's h264_vaapi / hevc_vaapi.
//!
//! libva is opened at run time by FFmpeg; we check the render node and libva first so a machine
//! without them gets one precise reason. VA-API encoders take only VA-API surfaces: with
//! [`Config::device`]`.zero_copy` they come from the hardware front end (VA-API decode and
//! `scale_vaapi`); otherwise the encoder uploads each NV12 frame into its own surface pool.

use std::path::Path;

use ffmpeg_next::{format::Pixel, Dictionary};

use super::lavc::{Input, LavcEncoder};
use crate::encode::{Backend, Config, Error, RateControl};
use crate::hw::accel::{self, HwFrames};
use crate::media::VideoCodec;

pub const NAME: &str = "vaapi";

/// Maps Encore/x264 preset names onto VA-API's `compression_level` (the driver's quality/speed
/// level: 1 best … 7 fastest on Intel's iHD; other drivers clamp it).
pub fn compression_level_for(preset: &str) -> u32 {
    match preset {
        "ultrafast" | "superfast" | "fastest" => 7,
        "veryfast" | "faster" => 6,
        "fast" => 5,
        "medium" => 4,
        "slow" => 3,
        "slower" => 2,
        _ => 1,
    }
}

fn options_for(config: &Config, low_power: bool) -> Dictionary<'static> {
    let mut options = Dictionary::new();
    for (key, value) in codec_options(config, low_power).1 {
        options.set(key, &value);
    }
    options
}

/// The libavcodec encoder and its private options for `config`, as the FFmpeg CLI takes them:
/// one place for the encoder and the benchmark's FFmpeg peer.
pub fn codec_options(
    config: &Config,
    low_power: bool,
) -> (&'static str, Vec<(&'static str, String)>) {
    let codec_name = match config.codec {
        VideoCodec::Avc => "h264_vaapi",
        VideoCodec::Hevc => "hevc_vaapi",
    };
    let mut options: Vec<(&'static str, String)> = Vec::new();
    let rate = config.bitrate.to_string();
    match config.rate_control {
        // Peak-capped VBR: the target a little under the cap, as with the other backends.
        RateControl::Capped => {
            options.push(("rc_mode", "VBR".to_string()));
            options.push(("b", (config.bitrate * 3 / 4).to_string()));
            options.push(("maxrate", rate));
        }
        RateControl::Cbr => {
            options.push(("rc_mode", "CBR".to_string()));
            options.push(("b", rate.clone()));
            options.push(("maxrate", rate));
        }
    }
    options.push(("bufsize", (config.bitrate * 2).to_string()));
    options.push((
        "compression_level",
        compression_level_for(&config.preset).to_string(),
    ));
    // Every I frame an IDR (idr_interval 0), so forced keyframes start segments.
    options.push(("idr_interval", "0".to_string()));
    if config.low_latency {
        // No B-frames and a shallow pipeline: frames leave as soon as they are encoded.
        options.push(("bf", "0".to_string()));
        options.push(("async_depth", "1".to_string()));
    }
    if low_power {
        options.push(("low_power", "1".to_string()));
    }
    (codec_name, options)
}

pub fn open(config: &Config) -> Result<Box<dyn Backend>, Error> {
    let unavailable = |reason: String| Error::Unavailable {
        backend: NAME,
        reason,
    };
    let device =
        accel::shared_vaapi(Path::new(&config.device.vaapi_node)).map_err(|e| unavailable(e.0))?;
    let codec_name = codec_options(config, false).0;
    let pool = HwFrames::new(
        &device,
        config.device.layout,
        config.width,
        config.height,
        0,
    )
    .map_err(|e| unavailable(e.0))?;
    let input = |pool: HwFrames| {
        if config.device.zero_copy == Some(accel::DeviceKind::Vaapi) {
            Input::Device(pool)
        } else {
            Input::Upload(pool)
        }
    };
    // Some engines (Intel Arc, recent iGPUs) encode only in low-power (VDEnc) mode: try the
    // full entrypoint first, then that one.
    match LavcEncoder::open(
        NAME,
        codec_name,
        input(pool.clone()),
        config,
        options_for(config, false),
    ) {
        Ok(encoder) => Ok(Box::new(encoder)),
        Err(first) => LavcEncoder::open(
            NAME,
            codec_name,
            input(pool),
            config,
            options_for(config, true),
        )
        .map(|e| Box::new(e) as Box<dyn Backend>)
        .map_err(|_| first),
    }
}

/// The pixel layout VA-API device frames use for a source of `bit_depth`.
pub fn layout_for(bit_depth: u32) -> Pixel {
    if bit_depth > 8 {
        Pixel::P010LE
    } else {
        Pixel::NV12
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Rational;

    #[test]
    fn without_a_render_node_vaapi_refuses_with_the_reason() {
        let config = Config {
            codec: VideoCodec::Avc,
            width: 640,
            height: 360,
            frame_rate: Rational::new(30, 1),
            timescale: 90_000,
            bitrate: 1_000_000,
            rate_control: RateControl::Capped,
            preset: "veryfast".into(),
            gop: 60,
            low_latency: false,
            device: crate::encode::DeviceInput {
                vaapi_node: "/dev/dri/renderD199-missing".into(),
                ..Default::default()
            },
        };
        let e = open(&config).err().unwrap();
        assert_eq!(
            e.to_string(),
            "vaapi unavailable: no VA-API render node /dev/dri/renderD199-missing (no GPU driver loaded, or the device is not passed to this container)"
        );
    }

    #[test]
    fn presets_map_to_compression_levels() {
        assert_eq!(compression_level_for("ultrafast"), 7);
        assert_eq!(compression_level_for("veryfast"), 6);
        assert_eq!(compression_level_for("veryslow"), 1);
        let config = Config {
            codec: VideoCodec::Hevc,
            width: 640,
            height: 360,
            frame_rate: Rational::new(30, 1),
            timescale: 90_000,
            bitrate: 1_000_000,
            rate_control: RateControl::Cbr,
            preset: "medium".into(),
            gop: 60,
            low_latency: true,
            device: Default::default(),
        };
        let o = options_for(&config, true);
        assert_eq!(o.get("rc_mode"), Some("CBR"));
        assert_eq!(o.get("bf"), Some("0"));
        assert_eq!(o.get("low_power"), Some("1"));
        assert_eq!(o.get("compression_level"), Some("4"));
    }
}
