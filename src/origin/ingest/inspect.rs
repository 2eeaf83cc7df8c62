//! What the origin reads from an ingested CMAF file before it serves it: an init segment's
//! track (to tell whether two publishers' inits are interchangeable) and a media segment's
//! timing, samples and brands (to tell a whole segment from a damaged or slate one).
//!
//! Every input is hostile until it parses: errors are values, never panics.

use mp4_atom::{Any, Codec, Decode, FourCC, Moof, Moov};

/// The parts of an init segment two interchangeable publishers must agree on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InitFacts {
    pub track_id: u32,
    pub timescale: u32,
    pub handler: FourCC,
    /// Sample entries, codec configuration (SPS/PPS, AudioSpecificConfig) included.
    pub codecs: Vec<Codec>,
    /// `trex` defaults, for segments whose `trun` leaves them out.
    pub default_duration: u32,
    pub default_size: u32,
    pub default_flags: u32,
}

impl InitFacts {
    pub fn is_video(&self) -> bool {
        self.handler == FourCC::new(b"vide")
    }

    /// Why `other` cannot stand in for `self`, or `None` when it can.
    pub fn difference(&self, other: &InitFacts) -> Option<String> {
        if self.track_id != other.track_id {
            return Some(format!(
                "track id {} where the channel's is {}",
                other.track_id, self.track_id
            ));
        }
        if self.timescale != other.timescale {
            return Some(format!(
                "timescale {} where the channel's is {}",
                other.timescale, self.timescale
            ));
        }
        if self.handler != other.handler {
            return Some(format!(
                "a {} track where the channel's is {}",
                other.handler, self.handler
            ));
        }
        if self.codecs != other.codecs {
            return Some("codec configuration (sample entry, parameter sets) differs".into());
        }
        None
    }
}

/// Reads a single-track CMAF init segment (`ftyp` + `moov`).
pub(crate) fn init(bytes: &[u8]) -> Result<InitFacts, String> {
    let moov = boxes(bytes)?
        .into_iter()
        .find_map(|b| match b {
            Any::Moov(m) => Some(m),
            _ => None,
        })
        .ok_or("no moov box")?;
    init_of(&moov)
}

fn init_of(moov: &Moov) -> Result<InitFacts, String> {
    let [trak] = moov.trak.as_slice() else {
        return Err(format!(
            "{} tracks: a CMAF init segment has one",
            moov.trak.len()
        ));
    };
    let track_id = trak.tkhd.track_id;
    let trex = moov
        .mvex
        .as_ref()
        .and_then(|m| m.trex.iter().find(|t| t.track_id == track_id));
    let timescale = trak.mdia.mdhd.timescale;
    if timescale == 0 {
        return Err("timescale 0".into());
    }
    Ok(InitFacts {
        track_id,
        timescale,
        handler: trak.mdia.hdlr.handler,
        codecs: trak.mdia.minf.stbl.stsd.codecs.clone(),
        default_duration: trex.map_or(0, |t| t.default_sample_duration),
        default_size: trex.map_or(0, |t| t.default_sample_size),
        default_flags: trex.map_or(0, |t| t.default_sample_flags),
    })
}

/// A media segment as the origin judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentFacts {
    /// `tfdt` of its first fragment, in the track's timescale.
    pub start: u64,
    /// Sum of every sample's duration.
    pub duration: u64,
    pub samples: u64,
    /// The shortest sample duration (a frame, for constant-rate video).
    pub shortest_sample: u32,
    /// The first sample is a sync sample (flags say so).
    pub starts_with_sync: bool,
    /// Brand `slat`: filler made while the input was lost.
    pub slate: bool,
    /// Brand `lmsg`: the last segment of a stream.
    pub last: bool,
}

// ISO/IEC 14496-12 sample flags: sample_is_non_sync_sample.
const NON_SYNC: u32 = 0x0001_0000;

/// Samples one segment may hold: 10 s of 48 kHz PCM, one sample each, with room. A `trun`
/// states its count in 32 bits; past this the copy is refused before any is visited.
pub(crate) const MAX_SAMPLES: u64 = 1 << 20;

/// Reads a CMAF media segment (`styp`? then `moof` + `mdat` pairs) of the track `init` describes.
pub(crate) fn segment(bytes: &[u8], init: &InitFacts) -> Result<SegmentFacts, String> {
    let mut facts = SegmentFacts {
        start: 0,
        duration: 0,
        samples: 0,
        shortest_sample: u32::MAX,
        starts_with_sync: false,
        slate: false,
        last: false,
    };
    let mut fragments = 0usize;
    // Sample bytes the last moof promised, checked against the mdat that follows it.
    let mut promised: Option<u64> = None;
    for b in boxes(bytes)? {
        match b {
            Any::Styp(styp) => {
                facts.slate |= styp.compatible_brands.contains(&FourCC::new(b"slat"));
                facts.last |= styp.compatible_brands.contains(&FourCC::new(b"lmsg"));
            }
            Any::Moof(moof) => {
                if promised.is_some() {
                    return Err("a moof without its mdat".into());
                }
                promised = Some(fragment(&moof, init, &mut facts, fragments == 0)?);
                fragments += 1;
            }
            Any::Mdat(mdat) => {
                let want = promised.take().ok_or("an mdat before any moof")?;
                if (mdat.data.len() as u64) < want {
                    return Err(format!(
                        "mdat holds {} bytes, its samples need {want}",
                        mdat.data.len()
                    ));
                }
            }
            _ => {}
        }
    }
    if fragments == 0 {
        return Err("no moof box".into());
    }
    if promised.is_some() {
        return Err("the last moof has no mdat".into());
    }
    if facts.samples == 0 {
        return Err("no samples".into());
    }
    Ok(facts)
}

/// Adds one fragment's samples to `facts`; returns the bytes its samples take in the mdat.
fn fragment(
    moof: &Moof,
    init: &InitFacts,
    facts: &mut SegmentFacts,
    first: bool,
) -> Result<u64, String> {
    let [traf] = moof.traf.as_slice() else {
        return Err(format!("{} track fragments in a moof", moof.traf.len()));
    };
    if traf.tfhd.track_id != init.track_id {
        return Err(format!(
            "track {} where the init's is {}",
            traf.tfhd.track_id, init.track_id
        ));
    }
    let tfdt = traf.tfdt.as_ref().ok_or("no tfdt")?.base_media_decode_time;
    if first {
        facts.start = tfdt;
    } else if tfdt != facts.start.saturating_add(facts.duration) {
        return Err("fragments are not contiguous".into());
    }
    let default_duration = traf
        .tfhd
        .default_sample_duration
        .unwrap_or(init.default_duration);
    let default_size = traf.tfhd.default_sample_size.unwrap_or(init.default_size);
    let default_flags = traf.tfhd.default_sample_flags.unwrap_or(init.default_flags);
    let stated = traf
        .trun
        .iter()
        .map(|t| t.samples.len() as u64)
        .fold(facts.samples, u64::saturating_add);
    if stated > MAX_SAMPLES {
        return Err(format!(
            "{stated} samples: more than a segment holds ({MAX_SAMPLES})"
        ));
    }
    let mut bytes = 0u64;
    for trun in &traf.trun {
        for (i, s) in trun.samples.iter().enumerate() {
            let duration = s.duration.unwrap_or(default_duration);
            let flags = s.flags.unwrap_or(default_flags);
            if first && facts.samples == 0 && i == 0 {
                facts.starts_with_sync = flags & NON_SYNC == 0;
            }
            facts.duration = facts.duration.saturating_add(u64::from(duration));
            facts.shortest_sample = facts.shortest_sample.min(duration);
            facts.samples += 1;
            bytes = bytes.saturating_add(u64::from(s.size.unwrap_or(default_size)));
        }
    }
    Ok(bytes)
}

/// Every top-level box, or why the bytes are not a sequence of whole boxes.
fn boxes(mut bytes: &[u8]) -> Result<Vec<Any>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        // The parser is not ours: a panic on hostile bytes is turned into an error too.
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut rest = bytes;
            Any::decode(&mut rest).map(|b| (b, bytes.len() - rest.len()))
        }));
        match decoded {
            Ok(Ok((b, used))) if used > 0 => {
                out.push(b);
                bytes = &bytes[used..];
            }
            Ok(Ok(_)) => return Err("an empty box".into()),
            Ok(Err(e)) => return Err(format!("not a whole MP4 box: {e}")),
            Err(_) => return Err("not a valid MP4 box".into()),
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::media::VideoCodec;
    use crate::package::cmaf::{Sample, SegmentFlags, Track, TrackConfig};

    /// A one-rendition AVC track (320x240) from constant parameter sets, as the packager's own
    /// tests use.
    pub(crate) fn track() -> Track {
        track_sized(320, 240)
    }

    /// The same track with another picture size (a sample entry that differs).
    pub(crate) fn track_sized(width: u32, height: u32) -> Track {
        let sps: &[u8] = &[
            0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03,
            0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60,
        ];
        let pps: &[u8] = &[0x68, 0xef, 0x8f, 0xcb];
        let mut extradata = vec![0, 0, 0, 1];
        extradata.extend_from_slice(sps);
        extradata.extend_from_slice(&[0, 0, 0, 1]);
        extradata.extend_from_slice(pps);
        Track::new(TrackConfig::Video {
            codec: VideoCodec::Avc,
            width,
            height,
            timescale: 90_000,
            extradata,
        })
        .unwrap()
    }

    fn samples(count: usize) -> Vec<Sample> {
        (0..count)
            .map(|i| Sample {
                data: vec![0, 0, 0, 1, if i == 0 { 0x65 } else { 0x41 }, 0x88, 0x84],
                duration: 3000,
                composition_offset: 0,
                keyframe: i == 0,
            })
            .collect()
    }

    #[test]
    fn a_segment_reads_back_as_written() {
        let t = track();
        let init = init(&t.init_segment().unwrap()).unwrap();
        assert!(init.is_video());
        assert_eq!(init.timescale, 90_000);
        let bytes = t
            .media_segment(7, 180_000, &samples(60), SegmentFlags::default())
            .unwrap();
        let facts = segment(&bytes, &init).unwrap();
        assert_eq!(
            (facts.start, facts.duration, facts.samples),
            (180_000, 180_000, 60)
        );
        assert!(facts.starts_with_sync && !facts.slate && !facts.last);
        assert_eq!(facts.shortest_sample, 3000);
        let slate = t
            .media_segment(
                8,
                360_000,
                &samples(60),
                SegmentFlags {
                    slate: true,
                    last: true,
                },
            )
            .unwrap();
        let facts = segment(&slate, &init).unwrap();
        assert!(facts.slate && facts.last);
    }

    #[test]
    fn damaged_bytes_are_errors_not_panics() {
        let t = track();
        let init = init(&t.init_segment().unwrap()).unwrap();
        let bytes = t
            .media_segment(7, 180_000, &samples(10), SegmentFlags::default())
            .unwrap();
        // Every truncation, and every single-byte change in the boxes' headers.
        for cut in 0..bytes.len() {
            let _ = segment(&bytes[..cut], &init);
        }
        for at in 0..bytes.len().min(400) {
            let mut b = bytes.clone();
            b[at] ^= 0xff;
            let _ = segment(&b, &init);
        }
        assert!(segment(&bytes[..bytes.len() - 1], &init).is_err());
        assert!(segment(b"not an mp4 at all", &init).is_err());
        assert!(super::init(&bytes).is_err(), "a media segment is no init");
    }

    #[test]
    fn a_run_that_states_billions_of_samples_is_refused_at_once() {
        use mp4_atom::Encode;
        let t = track();
        let init = init(&t.init_segment().unwrap()).unwrap();
        let bytes = t
            .media_segment(7, 180_000, &samples(10), SegmentFlags::default())
            .unwrap();
        let mut out = Vec::new();
        for b in boxes(&bytes).unwrap() {
            let b = match b {
                // The run inherits every field, so its count alone says how many samples.
                Any::Moof(mut m) => {
                    m.traf[0].trun[0].samples = mp4_atom::TrunSamples::Inherited {
                        count: u32::MAX,
                        first_flags: None,
                    };
                    Any::Moof(m)
                }
                other => other,
            };
            b.encode(&mut out).unwrap();
        }
        let e = segment(&out, &init).unwrap_err();
        assert!(e.contains("more than a segment holds"), "{e}");
    }

    #[test]
    fn inits_differ_with_a_reason() {
        let a = init(&track().init_segment().unwrap()).unwrap();
        let mut b = a.clone();
        assert_eq!(a.difference(&b), None);
        b.timescale = 1000;
        assert!(a.difference(&b).unwrap().contains("timescale"));
    }
}
