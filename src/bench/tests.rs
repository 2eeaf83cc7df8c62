//! Unit tests of the parent module (kept apart so the module reads as code).

use super::*;
use crate::encode::RateControl;

#[test]
fn the_peer_runs_encores_ladder_with_encores_options() {
    let rungs = [
        Rung {
            width: 1280,
            height: 720,
            bitrate: 3_000_000,
        },
        Rung {
            width: 640,
            height: 360,
            bitrate: 730_000,
        },
    ];
    let config = |r: &Rung| encode::Config {
        codec: VideoCodec::Avc,
        width: r.width,
        height: r.height,
        frame_rate: Rational::new(30, 1),
        timescale: 15360,
        bitrate: r.bitrate,
        rate_control: RateControl::Capped,
        preset: "veryfast".into(),
        gop: 60,
        low_latency: false,
        device: Default::default(),
    };
    let configs: Vec<_> = rungs.iter().map(config).collect();
    let cmd = ffmpeg_ladder(
        Peer::SameOptions,
        &Engine::Software,
        Path::new("in.mp4"),
        &rungs,
        &configs,
        2.0,
        Path::new("out"),
    );
    let line = describe(&cmd);
    assert!(
        line.contains("split=2[s0][s1];[s0]scale=w=1280:h=720:flags=bicubic,format=yuv420p[o0]"),
        "{line}"
    );
    assert!(
        line.contains("-map '[o1]' -c:v libx264 -preset veryfast -forced-idr 1 -x264-params keyint=60:min-keyint=30:crf=23:vbv-maxrate=730:vbv-bufsize=1460"),
        "{line}"
    );
    assert!(
        line.contains("-force_key_frames 'expr:gte(t,n_forced*2)'"),
        "{line}"
    );
    assert_eq!(ladder_arg(&rungs), "1280x720:3000000,640x360:730000");
    assert!(line.contains("-g 60 -force_key_frames"), "{line}");

    let nvenc = describe(&ffmpeg_ladder(
        Peer::SameOptions,
        &Engine::Nvenc,
        Path::new("in.mp4"),
        &rungs,
        &configs,
        2.0,
        Path::new("out"),
    ));
    assert!(
        nvenc.contains("-hwaccel cuda -hwaccel_output_format cuda -i in.mp4"),
        "{nvenc}"
    );
    assert!(
        nvenc.contains("[s1]scale_cuda=w=640:h=360:format=nv12:passthrough=0[o1]"),
        "{nvenc}"
    );
    assert!(
        nvenc.contains("-c:v h264_nvenc -preset p3 -forced-idr 1 -tune hq -rc vbr -cq 23 -maxrate 730000 -bufsize 1460000 -g 60"),
        "{nvenc}"
    );
    let vaapi = describe(&ffmpeg_ladder(
        Peer::SameOptions,
        &Engine::Vaapi("/dev/dri/renderD128".into()),
        Path::new("in.mp4"),
        &rungs,
        &configs,
        2.0,
        Path::new("out"),
    ));
    assert!(
        vaapi.contains("-vaapi_device /dev/dri/renderD128 -i in.mp4"),
        "{vaapi}"
    );
    assert!(vaapi.contains("-c:v h264_vaapi -rc_mode VBR"), "{vaapi}");
}

#[test]
fn the_usual_peer_is_a_bitrate_capped_ladder_without_scene_cuts() {
    let rung = Rung {
        width: 640,
        height: 360,
        bitrate: 1_000_000,
    };
    let config = encode::Config::for_rung(
        VideoCodec::Avc,
        &rung,
        Rational::new(30, 1),
        2.0,
        "veryfast",
    );
    let line = describe(&ffmpeg_ladder(
        Peer::Usual,
        &Engine::Software,
        Path::new("in.mp4"),
        &[rung],
        &[config],
        2.0,
        Path::new("out"),
    ));
    assert!(
        line.contains("-c:v libx264 -b:v 1000000 -maxrate 1070000 -bufsize 1500000 -preset veryfast -keyint_min 60 -sc_threshold 0 -g 60"),
        "{line}"
    );
}

#[test]
fn a_spread_is_the_median_and_the_extremes() {
    let s = Spread::of(&[3.0, 1.0, 2.0]);
    assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
    assert_eq!(Spread::of(&[1.0, 2.0, 4.0, 3.0]).median, 2.5);
}
