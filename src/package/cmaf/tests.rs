//! Segments built from real encoder output, checked with independent readers: mp4-atom (strict)
//! for the boxes, ffprobe for decodability and timing, and the parameter set bytes themselves for
//! codec strings. Media comes from the ffmpeg CLI at test time; without it these tests print a
//! line and pass.

use std::process::Command;

use mp4_atom::{Codec, Decode, Ftyp, Moof, Moov, Styp, TrunSamples};

use super::sps::{AvcSps, HevcSps};
use super::*;
use mp4_atom::{Atom, Avcc, Hvcc};

/// ffmpeg and ffprobe, which the project installs: their absence fails the test.
fn require_ffmpeg() {
    let ok = |bin: &str| {
        Command::new(bin)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    assert!(
        ok("ffmpeg") && ok("ffprobe"),
        "ffmpeg/ffprobe not found (packaging/install-deps.sh installs them: make deps)"
    );
}

fn ffmpeg(args: &[&str]) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs ffprobe; returns stdout and asserts that it wrote nothing to stderr.
fn ffprobe(args: &[&str], path: &std::path::Path) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .arg(path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "ffprobe {args:?}: {stderr}"
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A packet of a progressive MP4 written by ffmpeg, located through ffprobe.
#[derive(Debug)]
struct Packet {
    pts: i64,
    dts: i64,
    duration: i64,
    data: Vec<u8>,
}

fn json_i64(v: &serde_json::Value) -> i64 {
    match v {
        serde_json::Value::String(s) => s.parse().unwrap(),
        v => v.as_i64().unwrap(),
    }
}

fn packets(path: &std::path::Path) -> Vec<Packet> {
    let file = std::fs::read(path).unwrap();
    let json = ffprobe(
        &[
            "-show_entries",
            "packet=pts,dts,duration,size,pos",
            "-of",
            "json",
        ],
        path,
    );
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    json["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let (pos, size) = (json_i64(&p["pos"]) as usize, json_i64(&p["size"]) as usize);
            Packet {
                pts: json_i64(&p["pts"]),
                dts: json_i64(&p["dts"]),
                duration: json_i64(&p["duration"]),
                data: file[pos..pos + size].to_vec(),
            }
        })
        .collect()
}

/// The body of the first box of type `kind` found anywhere in `file` (a byte search).
fn find_box<'a>(file: &'a [u8], kind: &[u8; 4]) -> &'a [u8] {
    let at = file
        .windows(4)
        .position(|w| w == kind)
        .expect("box present");
    let size = u32::from_be_bytes(file[at - 4..at].try_into().unwrap()) as usize;
    &file[at + 4..at - 4 + size]
}

/// Length-prefixed sample → Annex B, with an access unit delimiter in front and both start code
/// lengths, as an encoder could emit it.
fn to_annexb(codec: VideoCodec, sample: &[u8]) -> Vec<u8> {
    let mut out = match codec {
        VideoCodec::Avc => vec![0, 0, 0, 1, 0x09, 0xf0],
        VideoCodec::Hevc => vec![0, 0, 0, 1, 0x46, 0x01, 0x50],
    };
    for (i, unit) in nal::length_prefixed_units(sample).enumerate() {
        out.extend_from_slice(if i % 2 == 0 {
            &[0, 0, 1][..]
        } else {
            &[0, 0, 0, 1][..]
        });
        out.extend_from_slice(unit.unwrap());
    }
    out
}

fn annexb_of(units: &[&[u8]]) -> Vec<u8> {
    units
        .iter()
        .flat_map(|u| [&[0u8, 0, 0, 1][..], u].concat())
        .collect()
}

struct Encoded {
    codec: VideoCodec,
    /// The avcC / hvcC record body ffmpeg wrote.
    record: Vec<u8>,
    packets: Vec<Packet>,
}

fn encode_video(codec: VideoCodec, dir: &std::path::Path) -> Encoded {
    let path = dir.join("source.mp4");
    let p = path.to_str().unwrap();
    let base = [
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=30",
        "-t",
        "1",
        "-video_track_timescale",
        "90000",
    ];
    let codec_args: &[&str] = match codec {
        VideoCodec::Avc => &[
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "15",
            "-keyint_min",
            "15",
            "-sc_threshold",
            "0",
            "-bf",
            "3",
        ],
        VideoCodec::Hevc => &[
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "keyint=15:min-keyint=15:scenecut=0:open-gop=0:bframes=3:log-level=error",
        ],
    };
    ffmpeg(&[&base[..], codec_args, &["-f", "mp4", "-y", p]].concat());
    let file = std::fs::read(&path).unwrap();
    let record = find_box(
        &file,
        if codec == VideoCodec::Avc {
            b"avcC"
        } else {
            b"hvcC"
        },
    )
    .to_vec();
    Encoded {
        codec,
        record,
        packets: packets(&path),
    }
}

/// The record's parameter sets as Annex B, as libavcodec puts them in extradata.
fn record_to_annexb(codec: VideoCodec, record: &[u8]) -> Vec<u8> {
    let units: Vec<Vec<u8>> = match codec {
        VideoCodec::Avc => {
            let avcc = Avcc::decode_body(&mut &record[..]).unwrap();
            avcc.sequence_parameter_sets
                .into_iter()
                .chain(avcc.picture_parameter_sets)
                .collect()
        }
        VideoCodec::Hevc => {
            let hvcc = Hvcc::decode_body(&mut &record[..]).unwrap();
            hvcc.arrays.into_iter().flat_map(|a| a.nalus).collect()
        }
    };
    annexb_of(&units.iter().map(Vec::as_slice).collect::<Vec<_>>())
}

/// Packages `enc` as two segments split at the second IDR, checks them box by box and with
/// ffprobe, and returns the track.
fn package_and_check(enc: &Encoded, dir: &std::path::Path) -> Track {
    let codec = enc.codec;
    let config = |extradata: Vec<u8>| TrackConfig::Video {
        codec,
        width: 320,
        height: 240,
        timescale: 90000,
        extradata,
    };
    let track = Track::new(config(record_to_annexb(codec, &enc.record))).unwrap();
    let from_record = Track::new(config(enc.record.clone())).unwrap();
    let init = track.init_segment().unwrap();
    assert_eq!(
        init,
        from_record.init_segment().unwrap(),
        "Annex B and record extradata give the same init"
    );
    assert_eq!(track.timescale(), 90000);
    assert_eq!(track.video_codec(), Some(codec));

    // Decode times start so that the first IDR's decode time equals its presentation time.
    let shift = enc.packets[0].pts - enc.packets[0].dts;
    let samples: Vec<Sample> = enc
        .packets
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let next_dts = enc.packets.get(i + 1).map_or(p.dts + p.duration, |n| n.dts);
            Sample {
                data: to_annexb(codec, &p.data),
                duration: (next_dts - p.dts) as u32,
                composition_offset: (p.pts - p.dts - shift) as i32,
                keyframe: nal::length_prefixed_units(&p.data)
                    .any(|u| nal::is_idr(codec, u.unwrap()[0])),
            }
        })
        .collect();
    assert!(
        samples.iter().any(|s| s.composition_offset < 0),
        "B-frames give negative offsets"
    );
    let idrs: Vec<usize> = (0..samples.len())
        .filter(|&i| samples[i].keyframe)
        .collect();
    assert_eq!(idrs, vec![0, 15], "encoder made an IDR every 15 frames");

    let split = idrs[1];
    let dts = |i: usize| (enc.packets[i].dts + shift) as u64;
    let parts = [
        (1, dts(0), &samples[..split]),
        (2, dts(split), &samples[split..]),
    ];
    let mut file = init.clone();
    for &(seq, tfdt, part) in &parts {
        let flags = SegmentFlags {
            last: seq == 2,
            ..Default::default()
        };
        let seg = track.media_segment(seq, tfdt, part, flags).unwrap();
        check_media_segment(&seg, seq, tfdt, part, Some(codec), flags);
        // Every mdat sample is exactly the encoder's length-prefixed sample (AUD dropped).
        let packets = &enc.packets[if seq == 1 {
            0..split
        } else {
            split..enc.packets.len()
        }];
        let payload = mdat_payload(&seg);
        let mut at = 0;
        for p in packets {
            assert_eq!(&payload[at..at + p.data.len()], &p.data[..]);
            at += p.data.len();
        }
        assert_eq!(at, payload.len());
        file.extend_from_slice(&seg);
    }
    check_init(&init, &track);

    let path = dir.join("cmaf.mp4");
    std::fs::write(&path, &file).unwrap();
    let name = if codec == VideoCodec::Avc {
        "h264"
    } else {
        "hevc"
    };
    let probe = ffprobe(
        &[
            "-count_frames",
            "-show_entries",
            "stream=codec_name,codec_tag_string,nb_read_frames",
            "-of",
            "csv=p=0",
        ],
        &path,
    );
    let tag = if codec == VideoCodec::Avc {
        "avc1"
    } else {
        "hvc1"
    };
    assert_eq!(probe.trim(), format!("{name},{tag},{}", samples.len()));
    // Decode times are the source's, shifted; presentation times are the source's too, plus the
    // largest negative offset, which libavformat adds so that no PTS precedes its DTS.
    let ours = packets(&path);
    assert_eq!(ours.len(), enc.packets.len());
    let lead = -samples
        .iter()
        .map(|s| s.composition_offset)
        .min()
        .unwrap()
        .min(0) as i64;
    assert!(lead > 0);
    for (o, s) in ours.iter().zip(&enc.packets) {
        assert_eq!((o.pts, o.dts), (s.pts + lead, s.dts + shift));
    }
    track
}

fn check_init(init: &[u8], track: &Track) {
    let buf = &mut &init[..];
    let ftyp = Ftyp::decode(buf).unwrap();
    assert!(ftyp.compatible_brands.contains(&b"cmfc".into()));
    let moov = Moov::decode(buf).unwrap();
    assert!(buf.is_empty());
    assert_eq!(moov.trak.len(), 1);
    let trak = &moov.trak[0];
    assert_eq!(trak.tkhd.track_id, TRACK_ID);
    assert!(trak.tkhd.enabled);
    let mvex = moov.mvex.as_ref().unwrap();
    assert_eq!(mvex.trex.len(), 1);
    assert_eq!(
        (
            mvex.trex[0].track_id,
            mvex.trex[0].default_sample_description_index
        ),
        (TRACK_ID, 1)
    );
    assert_eq!(trak.mdia.mdhd.timescale, track.timescale());
    assert_eq!(trak.mdia.mdhd.language, "und");
    let stbl = &trak.mdia.minf.stbl;
    assert!(stbl.stts.entries.is_empty() && stbl.stsc.entries.is_empty());
    assert_eq!(stbl.stsd.codecs.len(), 1);
    match track.video_codec() {
        Some(_) => {
            assert_eq!(trak.mdia.hdlr.handler, b"vide".into());
            assert!(trak.mdia.minf.vmhd.is_some());
            assert_eq!(
                (trak.tkhd.width.integer(), trak.tkhd.height.integer()),
                (320, 240)
            );
            let visual = stbl.stsd.codecs[0].visual().unwrap();
            assert_eq!((visual.width, visual.height), (320, 240));
        }
        None => {
            assert_eq!(trak.mdia.hdlr.handler, b"soun".into());
            assert!(trak.mdia.minf.smhd.is_some());
        }
    }
}

fn mdat_payload(seg: &[u8]) -> &[u8] {
    let at = seg.windows(4).position(|w| w == b"mdat").unwrap();
    let size = u32::from_be_bytes(seg[at - 4..at].try_into().unwrap()) as usize;
    assert_eq!(at - 4 + size, seg.len(), "mdat ends the segment");
    &seg[at + 4..]
}

fn check_media_segment(
    seg: &[u8],
    seq: u32,
    tfdt: u64,
    samples: &[Sample],
    codec: Option<VideoCodec>,
    flags: SegmentFlags,
) {
    let buf = &mut &seg[..];
    let styp = Styp::decode(buf).unwrap();
    assert_eq!(styp.major_brand, b"msdh".into());
    for (brand, wanted) in [
        (b"msdh", true),
        (b"cmfs", true),
        (b"slat", flags.slate),
        (b"lmsg", flags.last),
    ] {
        assert_eq!(
            styp.compatible_brands.contains(&brand.into()),
            wanted,
            "{brand:?}"
        );
    }
    let moof_start = seg.len() - buf.len();
    let moof = Moof::decode(buf).unwrap();
    let moof_size = seg.len() - buf.len() - moof_start;
    assert_eq!(&buf[4..8], b"mdat");

    assert_eq!(moof.mfhd.sequence_number, seq);
    assert_eq!(moof.traf.len(), 1);
    let traf = &moof.traf[0];
    assert_eq!(traf.tfhd.track_id, TRACK_ID);
    assert!(traf.tfhd.default_base_is_moof);
    assert_eq!(traf.tfdt.as_ref().unwrap().base_media_decode_time, tfdt);
    assert_eq!(traf.trun.len(), 1);
    let trun = &traf.trun[0];
    let data_offset = trun.data_offset.unwrap() as usize;
    assert_eq!(
        data_offset,
        moof_size + 8,
        "data_offset points at the mdat payload"
    );
    let TrunSamples::Explicit(entries) = &trun.samples else {
        panic!("explicit trun entries")
    };
    assert_eq!(entries.len(), samples.len());
    let any_cts = samples.iter().any(|s| s.composition_offset != 0);
    if any_cts {
        // Negative offsets need trun version 1.
        let at = seg[moof_start..]
            .windows(4)
            .position(|w| w == b"trun")
            .unwrap();
        assert_eq!(seg[moof_start + at + 4], 1, "trun version");
    }

    let mut at = moof_start + data_offset;
    for (i, (e, s)) in entries.iter().zip(samples).enumerate() {
        assert_eq!(e.duration, Some(s.duration));
        let sync = codec.is_none() || s.keyframe;
        assert_eq!(
            e.flags,
            Some(if sync { 0x0200_0000 } else { 0x0101_0000 }),
            "sample {i}"
        );
        assert_eq!(e.cts.unwrap_or(0), i64::from(s.composition_offset));
        let size = e.size.unwrap() as usize;
        let data = &seg[at..at + size];
        at += size;
        if let Some(codec) = codec {
            let units: Vec<&[u8]> = nal::length_prefixed_units(data)
                .map(Result::unwrap)
                .collect();
            assert!(
                units.iter().all(|u| !nal::is_aud(codec, u[0])),
                "AUDs are dropped"
            );
            assert_eq!(
                units.iter().any(|u| nal::is_idr(codec, u[0])),
                s.keyframe,
                "sample {i}"
            );
            if i == 0 {
                assert!(s.keyframe, "segment starts with an IDR");
            }
        } else {
            assert_eq!(data, &s.data[..]);
        }
    }
    assert_eq!(at, seg.len());
}

#[test]
fn avc_segments_decode() {
    require_ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    let enc = encode_video(VideoCodec::Avc, dir.path());
    let track = package_and_check(&enc, dir.path());

    let init = track.init_segment().unwrap();
    let buf = &mut &init[..];
    Ftyp::decode(buf).unwrap();
    let moov = Moov::decode(buf).unwrap();
    let Codec::Avc1(avc1) = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0] else {
        panic!("avc1 entry")
    };
    let ffmpeg_avcc = Avcc::decode_body(&mut &enc.record[..]).unwrap();
    assert_eq!(avc1.avcc.length_size, 4);
    assert_eq!(
        avc1.avcc.sequence_parameter_sets,
        ffmpeg_avcc.sequence_parameter_sets
    );
    assert_eq!(
        avc1.avcc.picture_parameter_sets,
        ffmpeg_avcc.picture_parameter_sets
    );
    let ext = avc1
        .avcc
        .ext
        .as_ref()
        .expect("High profile carries chroma format and bit depth");
    assert_eq!(
        (ext.chroma_format, ext.bit_depth_luma, ext.bit_depth_chroma),
        (1, 8, 8)
    );

    // The codec string is the SPS's bytes 1..4 in hex.
    let sps = &ffmpeg_avcc.sequence_parameter_sets[0];
    assert_eq!(
        track.codec_string(),
        format!("avc1.{:02x}{:02x}{:02x}", sps[1], sps[2], sps[3])
    );
    assert!(
        track.codec_string().starts_with("avc1.64"),
        "x264 defaults to High profile"
    );
    let parsed = AvcSps::parse(sps).unwrap();
    assert_eq!((parsed.width, parsed.height), (320, 240));

    // The parameter sets an encoder puts in band in its raw Annex B output work as extradata too.
    let raw = ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=30",
        "-t",
        "0.2",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-bsf:v",
        "h264_mp4toannexb",
        "-f",
        "h264",
        "pipe:",
    ]);
    let raw_track = Track::new(TrackConfig::Video {
        codec: VideoCodec::Avc,
        width: 320,
        height: 240,
        timescale: 90000,
        extradata: raw.clone(),
    })
    .unwrap();
    let raw_sps = nal::split_annexb(&raw)
        .find(|u| nal::avc_nal_type(u[0]) == nal::avc::SPS)
        .unwrap();
    assert_eq!(
        raw_track.codec_string(),
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            raw_sps[1], raw_sps[2], raw_sps[3]
        )
    );
}

#[test]
fn hevc_segments_decode() {
    require_ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    let enc = encode_video(VideoCodec::Hevc, dir.path());
    let track = package_and_check(&enc, dir.path());

    let init = track.init_segment().unwrap();
    let buf = &mut &init[..];
    Ftyp::decode(buf).unwrap();
    let moov = Moov::decode(buf).unwrap();
    let Codec::Hvc1(hvc1) = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0] else {
        panic!("hvc1 entry")
    };
    let ours = &hvc1.hvcc;
    let theirs = Hvcc::decode_body(&mut &enc.record[..]).unwrap();
    // libavformat's hvcC writer parses the same SPS independently.
    assert_eq!(ours.general_profile_space, theirs.general_profile_space);
    assert_eq!(ours.general_tier_flag, theirs.general_tier_flag);
    assert_eq!(ours.general_profile_idc, theirs.general_profile_idc);
    assert_eq!(
        ours.general_profile_compatibility_flags,
        theirs.general_profile_compatibility_flags
    );
    assert_eq!(
        ours.general_constraint_indicator_flags,
        theirs.general_constraint_indicator_flags
    );
    assert_eq!(ours.general_level_idc, theirs.general_level_idc);
    assert_eq!(ours.chroma_format_idc, theirs.chroma_format_idc);
    assert_eq!(ours.bit_depth_luma_minus8, theirs.bit_depth_luma_minus8);
    assert_eq!(ours.bit_depth_chroma_minus8, theirs.bit_depth_chroma_minus8);
    assert_eq!(ours.num_temporal_layers, theirs.num_temporal_layers);
    assert_eq!(ours.temporal_id_nested, theirs.temporal_id_nested);
    assert_eq!(ours.length_size_minus_one, 3);
    let types: Vec<u8> = ours.arrays.iter().map(|a| a.nal_unit_type).collect();
    assert_eq!(types, vec![32, 33, 34]);
    assert!(ours
        .arrays
        .iter()
        .all(|a| a.completeness && a.nalus.len() == 1));

    // Codec string from the SPS bytes: profile_tier_level starts at byte 3 (after the two header
    // bytes and the VPS id / sub-layer byte), byte-aligned.
    let sps = &ours.arrays[1].nalus[0];
    let rbsp = bits::unescape_rbsp(&sps[2..]);
    let ptl = &rbsp[1..];
    let space = ["", "A", "B", "C"][(ptl[0] >> 6) as usize];
    let tier = if ptl[0] & 0x20 != 0 { 'H' } else { 'L' };
    let compat = u32::from_be_bytes(ptl[1..5].try_into().unwrap()).reverse_bits();
    let mut expected = format!("hvc1.{space}{}.{compat:X}.{tier}{}", ptl[0] & 0x1f, ptl[11]);
    let used = ptl[5..11]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1);
    for b in &ptl[5..5 + used] {
        expected.push_str(&format!(".{b:X}"));
    }
    assert_eq!(track.codec_string(), expected);
    assert!(
        track.codec_string().starts_with("hvc1.1.6.L"),
        "x265 defaults to Main: {}",
        track.codec_string()
    );
    let parsed = HevcSps::parse(sps).unwrap();
    assert_eq!((parsed.width, parsed.height), (320, 240));
}

/// ADTS frames → (AudioSpecificConfig, raw frames).
fn split_adts(mut data: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut asc = Vec::new();
    let mut frames = Vec::new();
    while !data.is_empty() {
        assert!(
            data.len() >= 7 && data[0] == 0xff && data[1] & 0xf0 == 0xf0,
            "ADTS sync"
        );
        let protection_absent = data[1] & 1 == 1;
        let profile = data[2] >> 6;
        let sf_index = (data[2] >> 2) & 0xf;
        let channels = ((data[2] & 1) << 2) | (data[3] >> 6);
        let len =
            (((data[3] & 3) as usize) << 11) | ((data[4] as usize) << 3) | (data[5] as usize >> 5);
        let header = if protection_absent { 7 } else { 9 };
        let object_type = u16::from(profile) + 1;
        let config = (object_type << 11) | (u16::from(sf_index) << 7) | (u16::from(channels) << 3);
        asc = config.to_be_bytes().to_vec();
        frames.push(data[header..len].to_vec());
        data = &data[len..];
    }
    (asc, frames)
}

#[test]
fn aac_segments_decode() {
    require_ffmpeg();
    let adts = ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "1",
        "-ac",
        "2",
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-f",
        "adts",
        "pipe:",
    ]);
    let (asc, frames) = split_adts(&adts);
    let track = Track::new(TrackConfig::Audio {
        sample_rate: 48000,
        channels: 2,
        timescale: 48000,
        audio_specific_config: asc.clone(),
        bitrate: 128_000,
    })
    .unwrap();
    assert_eq!(track.codec_string(), "mp4a.40.2");
    assert_eq!(track.video_codec(), None);
    let init = track.init_segment().unwrap();
    check_init(&init, &track);
    let buf = &mut &init[..];
    Ftyp::decode(buf).unwrap();
    let moov = Moov::decode(buf).unwrap();
    let Codec::Mp4a(mp4a) = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0] else {
        panic!("mp4a entry")
    };
    assert_eq!(
        (
            mp4a.audio.channel_count,
            mp4a.audio.sample_size,
            mp4a.audio.sample_rate.integer()
        ),
        (2, 16, 48000)
    );
    let dec = &mp4a.esds.es_desc.dec_config;
    assert_eq!(
        (dec.object_type_indication, dec.avg_bitrate),
        (0x40, 128_000)
    );
    assert_eq!(dec.dec_specific.as_ref().unwrap().raw, asc);

    let samples: Vec<Sample> = frames
        .iter()
        .map(|f| Sample {
            data: f.clone(),
            duration: 1024,
            keyframe: false,
            ..Default::default()
        })
        .collect();
    let half = samples.len() / 2;
    let mut file = init.clone();
    for (seq, tfdt, part) in [
        (7, 0, &samples[..half]),
        (8, 1024 * half as u64, &samples[half..]),
    ] {
        let flags = SegmentFlags {
            slate: seq == 8,
            ..Default::default()
        };
        let seg = track.media_segment(seq, tfdt, part, flags).unwrap();
        check_media_segment(&seg, seq, tfdt, part, None, flags);
        file.extend_from_slice(&seg);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audio.mp4");
    std::fs::write(&path, &file).unwrap();
    let probe = ffprobe(
        &[
            "-count_frames",
            "-show_entries",
            "stream=codec_name,sample_rate,channels,nb_read_frames",
            "-of",
            "csv=p=0",
        ],
        &path,
    );
    assert_eq!(probe.trim(), format!("aac,48000,2,{}", frames.len()));
}

fn video(codec: VideoCodec, extradata: Vec<u8>) -> Result<Track, Error> {
    Track::new(TrackConfig::Video {
        codec,
        width: 320,
        height: 240,
        timescale: 90000,
        extradata,
    })
}

// 320x240 High profile SPS and a PPS, as x264 writes them.
const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
    0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60,
];
const PPS: &[u8] = &[0x68, 0xef, 0x8f, 0xcb];

#[test]
fn avc_from_constant_parameter_sets() {
    let track = video(VideoCodec::Avc, annexb_of(&[SPS, PPS])).unwrap();
    assert_eq!(track.codec_string(), "avc1.64000d");
    let parsed = AvcSps::parse(SPS).unwrap();
    assert_eq!((parsed.width, parsed.height), (320, 240));
    let samples = [
        Sample {
            data: annexb_of(&[&[0x65, 0x88, 0x84]]),
            duration: 3000,
            composition_offset: 0,
            keyframe: true,
        },
        Sample {
            data: annexb_of(&[&[0x41, 0x9a, 0x02]]),
            duration: 3000,
            composition_offset: 0,
            keyframe: false,
        },
    ];
    let seg = track
        .media_segment(3, 9000, &samples, SegmentFlags::default())
        .unwrap();
    check_media_segment(
        &seg,
        3,
        9000,
        &samples,
        Some(VideoCodec::Avc),
        SegmentFlags::default(),
    );
    // No composition offsets at all: no offset field in trun.
    let buf = &mut &seg[..];
    Styp::decode(buf).unwrap();
    let moof = Moof::decode(buf).unwrap();
    let TrunSamples::Explicit(entries) = &moof.traf[0].trun[0].samples else {
        panic!()
    };
    assert!(entries.iter().all(|e| e.cts.is_none()));
}

#[test]
fn malformed_parameter_sets_are_errors() {
    use VideoCodec::{Avc, Hevc};
    assert!(matches!(
        video(Avc, vec![]),
        Err(Error::MissingParameterSets { .. })
    ));
    assert!(matches!(
        video(Hevc, vec![]),
        Err(Error::MissingParameterSets { .. })
    ));
    assert!(matches!(
        video(Avc, annexb_of(&[PPS])),
        Err(Error::MissingParameterSets { .. })
    ));
    assert!(matches!(
        video(Avc, annexb_of(&[SPS])),
        Err(Error::MissingParameterSets { .. })
    ));
    assert!(matches!(
        video(Avc, vec![0x17, 0x42, 0x00]),
        Err(Error::MissingParameterSets { .. })
    ));
    assert!(matches!(
        video(Avc, annexb_of(&[&SPS[..6], PPS])),
        Err(Error::InvalidParameterSet(_))
    ));
    assert!(matches!(
        video(Avc, vec![1, 0x64, 0, 0x0d, 0xff, 0xe1, 0x00]),
        Err(Error::InvalidParameterSet(_))
    ));
    // An AVC SPS is not an HEVC VPS/SPS.
    assert!(matches!(
        video(Hevc, annexb_of(&[SPS, PPS])),
        Err(Error::MissingParameterSets { .. })
    ));
    let vps: &[u8] = &[0x40, 0x01, 0x0c, 0x01];
    let hsps: &[u8] = &[0x42, 0x01, 0x01, 0x01, 0x60];
    let hpps: &[u8] = &[0x44, 0x01, 0xc1];
    assert!(matches!(
        video(Hevc, annexb_of(&[hsps, hpps])),
        Err(Error::MissingParameterSets { .. })
    ));
    assert!(matches!(
        video(Hevc, annexb_of(&[vps, hsps, hpps])),
        Err(Error::InvalidParameterSet(_))
    ));
    assert!(matches!(
        video(Hevc, vec![1, 2, 3]),
        Err(Error::InvalidParameterSet(_))
    ));
}

#[test]
fn impossible_track_configs_are_errors() {
    use VideoCodec::Avc;
    let bad_size = Track::new(TrackConfig::Video {
        codec: Avc,
        width: 0,
        height: 240,
        timescale: 90000,
        extradata: annexb_of(&[SPS, PPS]),
    });
    assert!(matches!(bad_size, Err(Error::InvalidConfig(_))));
    let bad_timescale = Track::new(TrackConfig::Video {
        codec: Avc,
        width: 320,
        height: 240,
        timescale: 0,
        extradata: annexb_of(&[SPS, PPS]),
    });
    assert!(matches!(bad_timescale, Err(Error::InvalidConfig(_))));
    let audio = |asc: Vec<u8>, channels| {
        Track::new(TrackConfig::Audio {
            sample_rate: 48000,
            channels,
            timescale: 48000,
            audio_specific_config: asc,
            bitrate: 0,
        })
    };
    assert!(matches!(
        audio(vec![], 2),
        Err(Error::InvalidAudioConfig(_))
    ));
    assert!(matches!(
        audio(vec![0x11, 0x90], 0),
        Err(Error::InvalidAudioConfig(_))
    ));
}

#[test]
fn malformed_samples_are_errors() {
    let track = video(VideoCodec::Avc, annexb_of(&[SPS, PPS])).unwrap();
    let seg = |data: Vec<u8>| {
        track.media_segment(
            1,
            0,
            &[Sample {
                data,
                duration: 1,
                composition_offset: 0,
                keyframe: true,
            }],
            SegmentFlags::default(),
        )
    };
    assert!(
        matches!(
            seg(vec![0x65, 1, 2, 3]),
            Err(Error::InvalidSample { index: 0, .. })
        ),
        "length-prefixed, not Annex B"
    );
    assert!(matches!(seg(vec![]), Err(Error::InvalidSample { .. })));
    assert!(
        matches!(
            seg(vec![0, 0, 1, 0x09, 0xf0]),
            Err(Error::InvalidSample { .. })
        ),
        "AUD only"
    );
    assert!(matches!(
        track.media_segment(1, 0, &[], SegmentFlags::default()),
        Err(Error::NoSamples)
    ));
}

#[test]
fn arbitrary_bytes_never_panic() {
    use VideoCodec::{Avc, Hevc};
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for len in 0..400 {
        let mut bytes: Vec<u8> = (0..len % 64)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        if len % 3 == 0 && !bytes.is_empty() {
            bytes[0] = 1;
        }
        let mut with_sets = annexb_of(&[SPS, PPS]);
        with_sets.extend_from_slice(&[0, 0, 1]);
        with_sets.extend_from_slice(&bytes);
        for codec in [Avc, Hevc] {
            let _ = video(codec, bytes.clone());
            let _ = video(
                codec,
                [
                    &[0, 0, 1, if codec == Avc { 0x67 } else { 0x42 }][..],
                    &bytes,
                ]
                .concat(),
            );
        }
        let _ = video(Avc, with_sets);
        let _ = nal::aac_codec_string(&bytes);
    }
}
