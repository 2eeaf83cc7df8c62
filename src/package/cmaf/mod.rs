//! CMAF fragmented MP4: init and media segments, written through mp4-atom.
//!
//! One [`Track`] per rendition: built once from the encoder's configuration (parameter sets are
//! parsed here, once), then asked for an init segment and for media segments of samples. Pure:
//! bytes in, bytes out. It must never do I/O, spawn threads, or depend on FFmpeg or tokio.
//!
//! Timing contract for callers: `base_media_decode_time` and each sample's `duration` are in the
//! track's timescale and follow decode order; `composition_offset` is PTS − DTS of the sample, and
//! may be negative (written with `trun` version 1), so the first IDR's decode time can equal its
//! presentation time and no edit list is needed.

mod bits;
mod config;
pub mod nal;
pub mod sps;

use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor, SLConfig};
use mp4_atom::{
    Audio, Avc1, Codec, Dinf, Dref, Encode, Esds, Ftyp, Hdlr, Hvc1, Mdhd, Mdia, Mfhd, Minf, Moof,
    Moov, Mp4a, Mvex, Mvhd, Smhd, Stbl, Stco, Stsd, Styp, Tfdt, Tfhd, Tkhd, Traf, Trak, Trex, Trun,
    TrunEntry, Url, Visual, Vmhd,
};

use crate::media::VideoCodec;
use config::{avc_config, hevc_config};

/// Errors of the CMAF packager.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{codec} extradata lacks parameter sets: {missing}")]
    MissingParameterSets {
        codec: VideoCodec,
        missing: &'static str,
    },
    #[error("invalid parameter set: {0}")]
    InvalidParameterSet(String),
    #[error("invalid NAL unit: {0}")]
    InvalidNal(String),
    #[error("invalid audio configuration: {0}")]
    InvalidAudioConfig(String),
    #[error("invalid track configuration: {0}")]
    InvalidConfig(String),
    #[error("sample {index}: {reason}")]
    InvalidSample { index: usize, reason: String },
    #[error("a media segment needs at least one sample")]
    NoSamples,
    #[error("mp4 encoding: {0}")]
    Mp4(#[from] mp4_atom::Error),
}

/// What a track carries, as the encoder configured it.
#[derive(Debug, Clone)]
pub enum TrackConfig {
    Video {
        codec: VideoCodec,
        /// Displayed size, written in `tkhd` and the sample entry.
        width: u32,
        height: u32,
        timescale: u32,
        /// The encoder's global header: Annex B parameter sets (SPS/PPS, or VPS/SPS/PPS), or an
        /// avcC / hvcC record (first byte 1).
        extradata: Vec<u8>,
    },
    Audio {
        sample_rate: u32,
        channels: u32,
        timescale: u32,
        /// AAC AudioSpecificConfig (the encoder's extradata).
        audio_specific_config: Vec<u8>,
        /// Average bitrate in bits per second, written in `esds`.
        bitrate: u64,
    },
}

/// One sample in decode order.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Video: one access unit in Annex B (3- or 4-byte start codes). Audio: one raw AAC frame.
    pub data: Vec<u8>,
    /// Decode duration, in the track's timescale.
    pub duration: u32,
    /// PTS − DTS in the track's timescale; may be negative.
    pub composition_offset: i32,
    /// A sync sample (IDR). Ignored for audio, where every sample is a sync sample.
    pub keyframe: bool,
}

/// Brands of a media segment beyond the defaults.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SegmentFlags {
    /// Filler made while the input was lost: adds the `slat` brand.
    pub slate: bool,
    /// The last segment of a finished live stream: adds the `lmsg` brand.
    pub last: bool,
}

/// The only track of every CMAF file we write.
pub const TRACK_ID: u32 = 1;

// ISO/IEC 14496-12 sample flags: sample_depends_on in bits 24-25, sample_is_non_sync_sample bit 16.
const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// A CMAF track: its sample entry and codec string, ready to write segments.
#[derive(Debug, Clone)]
pub struct Track {
    kind: Kind,
    timescale: u32,
    codec_string: String,
    entry: Codec,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Video {
        codec: VideoCodec,
        width: u16,
        height: u16,
    },
    Audio,
}

impl Track {
    /// Builds a track, parsing the parameter sets (or AudioSpecificConfig) once.
    pub fn new(config: TrackConfig) -> Result<Track, Error> {
        match config {
            TrackConfig::Video {
                codec,
                width,
                height,
                timescale,
                extradata,
            } => {
                check_timescale(timescale)?;
                let (w, h) = match (u16::try_from(width), u16::try_from(height)) {
                    (Ok(w), Ok(h)) if w > 0 && h > 0 => (w, h),
                    _ => return Err(Error::InvalidConfig(format!("video size {width}x{height}"))),
                };
                let visual = Visual {
                    data_reference_index: 1,
                    width: w,
                    height: h,
                    ..Default::default()
                };
                let (entry, codec_string) = match codec {
                    VideoCodec::Avc => {
                        let (avcc, sps) = avc_config(&extradata)?;
                        let entry = Avc1 {
                            visual,
                            avcc,
                            ..Default::default()
                        };
                        (Codec::Avc1(entry), sps.codec_string())
                    }
                    VideoCodec::Hevc => {
                        let (hvcc, sps) = hevc_config(&extradata)?;
                        let entry = Hvc1 {
                            visual,
                            hvcc,
                            ..Default::default()
                        };
                        (Codec::Hvc1(entry), sps.codec_string())
                    }
                };
                Ok(Track {
                    kind: Kind::Video {
                        codec,
                        width: w,
                        height: h,
                    },
                    timescale,
                    codec_string,
                    entry,
                })
            }
            TrackConfig::Audio {
                sample_rate,
                channels,
                timescale,
                audio_specific_config,
                bitrate,
            } => {
                check_timescale(timescale)?;
                let codec_string = nal::aac_codec_string(&audio_specific_config)?;
                let channel_count = match u16::try_from(channels) {
                    Ok(c) if c > 0 => c,
                    _ => return Err(Error::InvalidAudioConfig(format!("{channels} channels"))),
                };
                if sample_rate == 0 {
                    return Err(Error::InvalidAudioConfig("sample rate 0".into()));
                }
                let bitrate = u32::try_from(bitrate).unwrap_or(u32::MAX);
                // AAC frames are at most 6144 bits per channel.
                let buffer_size = (768 * u32::from(channel_count))
                    .min(0xff_ffff)
                    .to_be_bytes();
                let entry = Mp4a {
                    audio: Audio {
                        data_reference_index: 1,
                        channel_count,
                        sample_size: 16,
                        // 16.16 field: rates above 65535 Hz are signalled by the ASC alone.
                        sample_rate: u16::try_from(sample_rate).unwrap_or(0).into(),
                    },
                    esds: Esds {
                        es_desc: EsDescriptor {
                            es_id: 0,
                            dec_config: DecoderConfig {
                                object_type_indication: 0x40, // MPEG-4 Audio
                                stream_type: 0x05,            // AudioStream
                                up_stream: 0,
                                buffer_size_db: [buffer_size[1], buffer_size[2], buffer_size[3]]
                                    .into(),
                                max_bitrate: bitrate,
                                avg_bitrate: bitrate,
                                dec_specific: Some(DecoderSpecific {
                                    raw: audio_specific_config,
                                    ..Default::default()
                                }),
                            },
                            sl_config: SLConfig::default(),
                            ..Default::default()
                        },
                    },
                    btrt: None,
                    taic: None,
                };
                Ok(Track {
                    kind: Kind::Audio,
                    timescale,
                    codec_string,
                    entry: Codec::Mp4a(entry),
                })
            }
        }
    }

    /// RFC 6381 codec string (`avc1.64001f`, `hvc1.1.6.L93.B0`, `mp4a.40.2`), from the real
    /// parameter sets.
    pub fn codec_string(&self) -> String {
        self.codec_string.clone()
    }

    /// The media timescale (`mdhd`), in ticks per second.
    pub fn timescale(&self) -> u32 {
        self.timescale
    }

    /// The video codec, or `None` for audio.
    pub fn video_codec(&self) -> Option<VideoCodec> {
        match self.kind {
            Kind::Video { codec, .. } => Some(codec),
            Kind::Audio => None,
        }
    }

    /// The CMAF header: `ftyp` + `moov` with one `trak` and `mvex`, no samples.
    pub fn init_segment(&self) -> Result<Vec<u8>, Error> {
        let (tkhd_size, volume, handler, name, vmhd, smhd) = match self.kind {
            Kind::Video { width, height, .. } => (
                (width, height),
                0,
                b"vide",
                "VideoHandler",
                Some(Vmhd::default()),
                None,
            ),
            Kind::Audio => (
                (0, 0),
                1,
                b"soun",
                "SoundHandler",
                None,
                Some(Smhd::default()),
            ),
        };
        let ftyp = Ftyp {
            major_brand: b"iso6".into(),
            minor_version: 0,
            compatible_brands: vec![
                b"iso6".into(),
                b"cmfc".into(),
                b"mp41".into(),
                b"dash".into(),
            ],
        };
        let moov = Moov {
            mvhd: Mvhd {
                timescale: self.timescale,
                duration: 0,
                rate: 1.into(),
                volume: 1.into(),
                next_track_id: TRACK_ID + 1,
                ..Default::default()
            },
            trak: vec![Trak {
                tkhd: Tkhd {
                    track_id: TRACK_ID,
                    enabled: true,
                    in_movie: true,
                    volume: volume.into(),
                    width: tkhd_size.0.into(),
                    height: tkhd_size.1.into(),
                    ..Default::default()
                },
                mdia: Mdia {
                    mdhd: Mdhd {
                        timescale: self.timescale,
                        language: "und".into(),
                        ..Default::default()
                    },
                    hdlr: Hdlr {
                        handler: handler.into(),
                        name: name.into(),
                    },
                    minf: Minf {
                        vmhd,
                        smhd,
                        dinf: Dinf {
                            dref: Dref {
                                entries: vec![Url::default().into()],
                            },
                        },
                        stbl: Stbl {
                            stsd: Stsd {
                                codecs: vec![self.entry.clone()],
                            },
                            stco: Some(Stco::default()),
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                },
                ..Default::default()
            }],
            mvex: Some(Mvex {
                mehd: None,
                trex: vec![Trex {
                    track_id: TRACK_ID,
                    default_sample_description_index: 1,
                    ..Default::default()
                }],
            }),
            ..Default::default()
        };
        let mut out = Vec::with_capacity(1024);
        ftyp.encode(&mut out)?;
        moov.encode(&mut out)?;
        Ok(out)
    }

    /// A CMAF media segment of one fragment: `styp`, `moof` (`mfhd`, `traf` with `tfhd`,
    /// `tfdt`, `trun`), `mdat`. Samples are in decode order; video access units are converted
    /// from Annex B to 4-byte length prefixes (access unit delimiters dropped).
    pub fn media_segment(
        &self,
        sequence_number: u32,
        base_media_decode_time: u64,
        samples: &[Sample],
        flags: SegmentFlags,
    ) -> Result<Vec<u8>, Error> {
        if samples.is_empty() {
            return Err(Error::NoSamples);
        }
        let video = self.video_codec();
        let sizes = samples
            .iter()
            .enumerate()
            .map(|(index, s)| {
                sample_size(video, s).map_err(|reason| Error::InvalidSample { index, reason })
            })
            .collect::<Result<Vec<u32>, Error>>()?;
        let payload: u64 = sizes.iter().map(|&s| u64::from(s)).sum();

        let cts = samples.iter().any(|s| s.composition_offset != 0);
        let entries = samples
            .iter()
            .zip(&sizes)
            .map(|(s, &size)| TrunEntry {
                duration: Some(s.duration),
                size: Some(size),
                flags: Some(if video.is_none() || s.keyframe {
                    SYNC_SAMPLE_FLAGS
                } else {
                    NON_SYNC_SAMPLE_FLAGS
                }),
                cts: cts.then_some(i64::from(s.composition_offset)),
            })
            .collect::<Vec<_>>();

        let mut brands = vec![b"msdh".into(), b"cmfs".into(), b"cmff".into()];
        if flags.slate {
            brands.push(b"slat".into());
        }
        if flags.last {
            brands.push(b"lmsg".into());
        }
        let styp = Styp {
            major_brand: b"msdh".into(),
            minor_version: 0,
            compatible_brands: brands,
        };

        let mut moof = Moof {
            mfhd: Mfhd { sequence_number },
            traf: vec![Traf {
                tfhd: Tfhd {
                    track_id: TRACK_ID,
                    default_base_is_moof: true,
                    ..Default::default()
                },
                tfdt: Some(Tfdt {
                    base_media_decode_time,
                }),
                trun: vec![Trun {
                    data_offset: Some(0),
                    samples: entries.into(),
                }],
                ..Default::default()
            }],
        };
        // The moof's size does not depend on the offset's value: measure, then write for real.
        let mut measure = Vec::new();
        moof.encode(&mut measure)?;
        let mdat_header = if payload + 8 > u64::from(u32::MAX) {
            16
        } else {
            8
        };
        let data_offset = i32::try_from(measure.len() + mdat_header)
            .map_err(|_| Error::InvalidConfig("moof larger than 2 GiB".into()))?;
        moof.traf[0].trun[0].data_offset = Some(data_offset);

        let mut out = Vec::with_capacity(64 + measure.len() + mdat_header + payload as usize);
        styp.encode(&mut out)?;
        let moof_start = out.len();
        moof.encode(&mut out)?;
        debug_assert_eq!(out.len() - moof_start, measure.len());
        if mdat_header == 16 {
            out.extend_from_slice(&1u32.to_be_bytes());
            out.extend_from_slice(b"mdat");
            out.extend_from_slice(&(payload + 16).to_be_bytes());
        } else {
            out.extend_from_slice(&((payload + 8) as u32).to_be_bytes());
            out.extend_from_slice(b"mdat");
        }
        for s in samples {
            match video {
                Some(codec) => {
                    for unit in nal::split_annexb(&s.data).filter(|u| !nal::is_aud(codec, u[0])) {
                        out.extend_from_slice(&(unit.len() as u32).to_be_bytes());
                        out.extend_from_slice(unit);
                    }
                }
                None => out.extend_from_slice(&s.data),
            }
        }
        Ok(out)
    }
}

fn check_timescale(timescale: u32) -> Result<(), Error> {
    if timescale == 0 {
        return Err(Error::InvalidConfig("timescale 0".into()));
    }
    Ok(())
}

/// Size of a sample once written in `mdat`.
fn sample_size(video: Option<VideoCodec>, sample: &Sample) -> Result<u32, String> {
    let size = match video {
        None => sample.data.len() as u64,
        Some(codec) => {
            if !nal::starts_with_start_code(&sample.data) {
                return Err("video sample does not start with an Annex B start code".into());
            }
            nal::split_annexb(&sample.data)
                .filter(|u| !nal::is_aud(codec, u[0]))
                .map(|u| 4 + u.len() as u64)
                .sum()
        }
    };
    if size == 0 {
        return Err("no media data".into());
    }
    u32::try_from(size).map_err(|_| format!("{size} bytes is too large"))
}

#[cfg(test)]
mod tests;
