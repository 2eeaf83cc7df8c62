//! Packager and manifest benchmarks.
//!
//! What is measured: (1) `cmaf::Track::media_segment` turning one 2 s segment of real x264 output
//! (1280x720, 60 access units, Annex B) into styp/moof/mdat, reported as bytes per second — the
//! goal is at least 1 GB/s per core with each media byte copied once; (2) rendering the HLS media
//! playlist and the DASH MPD of a one-hour VOD ladder (4 video renditions + audio, 1800
//! segments each). Run: `cargo bench --bench packager` (criterion; reports under target/criterion).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use encore::encode::{self, RateControl};
use encore::media::{Rational, VideoCodec};
use encore::package::{self, cmaf, Presentation, Rendition, RenditionKind, SegmentEntry, Timeline};
use ffmpeg_next as ff;

/// 60 frames of a moving gradient through libx264 (ultrafast): real access units and extradata.
fn encoded_segment() -> (Vec<u8>, Vec<cmaf::Sample>) {
    encore::ingest::init();
    let config = encode::Config {
        codec: VideoCodec::Avc,
        width: 1280,
        height: 720,
        frame_rate: Rational::new(30, 1),
        timescale: 90_000,
        bitrate: 3_000_000,
        rate_control: RateControl::Capped,
        preset: "ultrafast".into(),
        gop: 60,
        low_latency: false,
        device: Default::default(),
    };
    let mut encoder = encode::backend::software::open(&config).expect("libx264");
    let mut packets = Vec::new();
    for i in 0..60i64 {
        let mut frame = ff::frame::Video::new(ff::format::Pixel::YUV420P, 1280, 720);
        for plane in 0..3 {
            let stride = frame.stride(plane);
            let data = frame.data_mut(plane);
            for (j, b) in data.iter_mut().enumerate() {
                *b = ((j % stride) as i64 + (j / stride) as i64 * 3 + i * 7) as u8;
            }
        }
        frame.set_pts(Some(i * 3000));
        packets.extend(encoder.encode(&mut frame, i == 0).expect("encode"));
    }
    packets.extend(encoder.flush().expect("flush"));
    let samples = packets
        .iter()
        .map(|p| cmaf::Sample {
            data: p.data.clone(),
            duration: 3000,
            composition_offset: (p.pts - p.dts) as i32,
            keyframe: p.keyframe,
        })
        .collect();
    (encoder.extradata(), samples)
}

fn bench_media_segment(c: &mut Criterion) {
    let (extradata, samples) = encoded_segment();
    let track = cmaf::Track::new(cmaf::TrackConfig::Video {
        codec: VideoCodec::Avc,
        width: 1280,
        height: 720,
        timescale: 90_000,
        extradata,
    })
    .expect("track");
    let bytes: usize = samples.iter().map(|s| s.data.len()).sum();
    let mut group = c.benchmark_group("cmaf");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("media_segment_720p_2s", |b| {
        b.iter(|| {
            track
                .media_segment(1, 0, &samples, cmaf::SegmentFlags::default())
                .expect("segment")
        })
    });
    group.finish();
}

fn one_hour_vod() -> Presentation {
    let rendition = |id: &str, kind: RenditionKind, timescale: u32, d: u64| Rendition {
        id: id.into(),
        kind,
        codecs: "avc1.64001f".into(),
        peak_bitrate: 3_300_000,
        average_bitrate: 2_900_000,
        timescale,
        segments: (0..1800u64)
            .map(|n| SegmentEntry {
                number: n,
                start: n * d,
                duration: d,
                bytes: 750_000,
                discontinuity: false,
                slate: false,
            })
            .collect(),
    };
    let fps = Rational::new(30, 1);
    let mut renditions: Vec<Rendition> = [(1080, 1920), (720, 1280), (480, 854), (360, 640)]
        .iter()
        .map(|&(h, w)| {
            rendition(
                &format!("{h}p"),
                RenditionKind::Video {
                    width: w,
                    height: h,
                    frame_rate: fps,
                },
                90_000,
                180_000,
            )
        })
        .collect();
    let mut audio = rendition(
        "audio",
        RenditionKind::Audio {
            sample_rate: 48_000,
            channels: 2,
            language: None,
        },
        48_000,
        96_000,
    );
    audio.codecs = "mp4a.40.2".into();
    renditions.push(audio);
    Presentation {
        segment_duration: Duration::from_secs(2),
        renditions,
        timeline: Timeline::Vod,
    }
}

fn bench_manifests(c: &mut Criterion) {
    let p = one_hour_vod();
    let mut group = c.benchmark_group("manifests");
    group.bench_function("hls_media_playlist_1800_segments", |b| {
        b.iter(|| package::hls::media_playlist(&p, &p.renditions[0]))
    });
    group.bench_function("hls_master", |b| {
        b.iter(|| package::hls::master_playlist(&p))
    });
    group.bench_function("dash_mpd_vod_5_renditions", |b| {
        b.iter(|| package::dash::mpd(&p))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = bench_media_segment, bench_manifests
}
criterion_main!(benches);
