//! Software encoding: libx264 (AVC) and libx265 (HEVC) through libavcodec.

use ffmpeg_next::{format::Pixel, Dictionary};

use super::lavc::{Input, LavcEncoder};
use crate::encode::{Backend, Config, Error, RateControl};
use crate::media::VideoCodec;

pub const NAME: &str = "software";

/// Constant-quality targets for capped VBR: x264's and x265's own defaults.
const CRF_AVC: u32 = 23;
const CRF_HEVC: u32 = 28;

pub fn open(config: &Config) -> Result<Box<dyn Backend>, Error> {
    let (codec_name, options) = codec_options(config);
    let mut dictionary = Dictionary::new();
    for (key, value) in &options {
        dictionary.set(key, value);
    }
    Ok(Box::new(LavcEncoder::open(
        NAME,
        codec_name,
        Input::System(Pixel::YUV420P),
        config,
        dictionary,
    )?))
}

/// The libavcodec encoder and its private options for `config` (as the FFmpeg CLI would take
/// them: `-c:v libx264 -preset veryfast -forced-idr 1 -x264-params ...`). One place, so the
/// benchmark's FFmpeg peer runs the very same encoder settings.
pub fn codec_options(config: &Config) -> (&'static str, Vec<(&'static str, String)>) {
    let (codec_name, params_key) = match config.codec {
        VideoCodec::Avc => ("libx264", "x264-params"),
        VideoCodec::Hevc => ("libx265", "x265-params"),
    };
    let mut options = vec![
        ("preset", config.preset.clone()),
        ("forced-idr", "1".to_string()),
    ];
    let kbps = (config.bitrate / 1000).max(1);
    // VBV buffer of two seconds at the cap: short enough to hold the peak near the cap per segment.
    let bufsize = kbps * 2;
    let mut params: Vec<String> = Vec::new();
    match config.codec {
        VideoCodec::Avc => {
            params.push(format!(
                "keyint={}:min-keyint={}",
                config.gop,
                config.gop.min(config.gop / 2).max(1)
            ));
            match config.rate_control {
                RateControl::Capped => params.push(format!(
                    "crf={CRF_AVC}:vbv-maxrate={kbps}:vbv-bufsize={bufsize}"
                )),
                RateControl::Cbr => params.push(format!(
                    "bitrate={kbps}:vbv-maxrate={kbps}:vbv-bufsize={kbps}:nal-hrd=cbr"
                )),
            }
            if config.low_latency {
                params.push("rc-lookahead=10:sync-lookahead=0".into());
            }
        }
        VideoCodec::Hevc => {
            // Closed GOPs: every keyframe an IDR, no leading pictures across segment edges.
            params.push(format!(
                "keyint={}:min-keyint=1:open-gop=0:log-level=error",
                config.gop
            ));
            match config.rate_control {
                RateControl::Capped => params.push(format!(
                    "crf={CRF_HEVC}:vbv-maxrate={kbps}:vbv-bufsize={bufsize}"
                )),
                RateControl::Cbr => params.push(format!(
                    "bitrate={kbps}:vbv-maxrate={kbps}:vbv-bufsize={kbps}:strict-cbr=1:hrd=1"
                )),
            }
            if config.low_latency {
                params.push("rc-lookahead=10".into());
            }
        }
    }
    options.push((params_key, params.join(":")));
    (codec_name, options)
}
