//! The FFmpeg CLI ladders Encore is measured against: one process, one decode, `split`, a
//! scale per rung, one encoder per rung. Two encoder settings:
//! - [`Peer::Usual`]: what an FFmpeg user writes for an ABR ladder: bitrate-capped ABR
//!   (`-b:v R -maxrate 1.07·R -bufsize 1.5·R`), a fixed GOP and no scene-cut keyframes;
//! - [`Peer::SameOptions`]: Encore's own encoder options per rung (capped CRF), so that
//!   only the plumbing differs.

use std::path::Path;
use std::process::Command;

use super::Engine;
use crate::encode;
use crate::media::{Rung, VideoCodec};

/// Which FFmpeg ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Usual,
    SameOptions,
}

impl Peer {
    pub const ALL: [Peer; 2] = [Peer::Usual, Peer::SameOptions];

    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Usual => "ffmpeg (usual ABR ladder)",
            Peer::SameOptions => "ffmpeg (encore's options)",
        }
    }

    /// The encoder and its options for one rung.
    fn encoder_args(self, engine: &Engine, config: &encode::Config) -> Vec<String> {
        let (codec_name, options) = engine.codec_options(config);
        let mut args = vec!["-c:v".to_owned(), codec_name.to_owned()];
        match self {
            Peer::SameOptions => {
                for (key, value) in options {
                    args.push(format!("-{key}"));
                    args.push(value);
                }
            }
            Peer::Usual => {
                let rate = config.bitrate;
                let gop = config.gop;
                args.extend(
                    [
                        "-b:v".to_owned(),
                        rate.to_string(),
                        "-maxrate".to_owned(),
                        (rate * 107 / 100).to_string(),
                        "-bufsize".to_owned(),
                        (rate * 3 / 2).to_string(),
                    ]
                    .into_iter(),
                );
                match (engine, config.codec) {
                    (Engine::Software, VideoCodec::Avc) => args.extend(
                        [
                            "-preset",
                            &config.preset,
                            "-keyint_min",
                            &gop.to_string(),
                            "-sc_threshold",
                            "0",
                        ]
                        .map(str::to_owned),
                    ),
                    (Engine::Software, VideoCodec::Hevc) => args.extend(
                        [
                            "-preset",
                            &config.preset,
                            "-x265-params",
                            &format!("keyint={gop}:min-keyint={gop}:scenecut=0"),
                        ]
                        .map(str::to_owned),
                    ),
                    (Engine::Nvenc, _) => args.extend(["-no-scenecut", "1"].map(str::to_owned)),
                    (Engine::Vaapi(_), _) => {}
                }
            }
        }
        args
    }
}

/// The FFmpeg CLI doing the ladder in one process as an FFmpeg user would on `engine`: one
/// decode, `split`, a scale per rung (bicubic swscale, scale_cuda or scale_vaapi), and per rung
/// the `peer`'s encoder settings, the rung's GOP, and an IDR forced at every segment start.
/// Rung `i` is written to `out/{i}.mp4`.
pub fn ffmpeg_ladder(
    peer: Peer,
    engine: &Engine,
    source: &Path,
    rungs: &[Rung],
    configs: &[encode::Config],
    segment_seconds: f64,
    out: &Path,
) -> Command {
    let n = rungs.len();
    let mut graph = format!("[0:v]split={n}");
    for i in 0..n {
        graph += &format!("[s{i}]");
    }
    for (i, r) in rungs.iter().enumerate() {
        let (w, h) = (r.width, r.height);
        let scale = match engine {
            Engine::Software => format!("scale=w={w}:h={h}:flags=bicubic,format=yuv420p"),
            Engine::Nvenc => format!("scale_cuda=w={w}:h={h}:format=nv12:passthrough=0"),
            Engine::Vaapi(_) => format!("scale_vaapi=w={w}:h={h}:format=nv12"),
        };
        graph += &format!(";[s{i}]{scale}[o{i}]");
    }
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-v", "error", "-y"]);
    match engine {
        Engine::Software => {}
        Engine::Nvenc => {
            cmd.args(["-hwaccel", "cuda", "-hwaccel_output_format", "cuda"]);
        }
        Engine::Vaapi(node) => {
            cmd.args(["-hwaccel", "vaapi", "-hwaccel_output_format", "vaapi"])
                .arg("-vaapi_device")
                .arg(node);
        }
    }
    cmd.arg("-i").arg(source).args(["-filter_complex", &graph]);
    for (i, config) in configs.iter().enumerate() {
        cmd.args(["-map", &format!("[o{i}]")])
            .args(peer.encoder_args(engine, config))
            .args([
                "-g",
                &config.gop.to_string(),
                "-force_key_frames",
                &format!("expr:gte(t,n_forced*{segment_seconds})"),
                "-an",
            ])
            .arg(out.join(format!("{i}.mp4")));
    }
    cmd
}
