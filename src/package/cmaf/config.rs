//! Decoder configuration records from an encoder's extradata: `avcC` for H.264, `hvcC` for
//! H.265, with the parameter sets in them and the SPS fields the sample entry needs.

use mp4_atom::{Atom, Avcc, AvccExt, HvcCArray, Hvcc};

use crate::media::VideoCodec;

use super::nal;
use super::sps::{AvcSps, HevcSps};
use super::Error;

/// Parameter sets found in extradata, in order of appearance, duplicates removed.
#[derive(Default)]
struct ParameterSets {
    vps: Vec<Vec<u8>>,
    sps: Vec<Vec<u8>>,
    pps: Vec<Vec<u8>>,
    sps_ext: Vec<Vec<u8>>,
}

fn push_unique(list: &mut Vec<Vec<u8>>, nal: &[u8]) {
    if !list.iter().any(|n| n == nal) {
        list.push(nal.to_vec());
    }
}

pub(super) fn avc_config(extradata: &[u8]) -> Result<(Avcc, AvcSps), Error> {
    let mut sets = ParameterSets::default();
    match extradata.first() {
        None => {
            return Err(Error::MissingParameterSets {
                codec: VideoCodec::Avc,
                missing: "extradata is empty",
            })
        }
        Some(1) => {
            let record = Avcc::decode_body(&mut &extradata[..])
                .map_err(|e| Error::InvalidParameterSet(format!("avcC record: {e}")))?;
            sets.sps = record.sequence_parameter_sets;
            sets.pps = record.picture_parameter_sets;
            sets.sps_ext = record
                .ext
                .map(|e| e.sequence_parameter_sets_ext)
                .unwrap_or_default();
        }
        Some(_) => {
            for unit in nal::split_annexb(extradata) {
                match nal::avc_nal_type(unit[0]) {
                    nal::avc::SPS => push_unique(&mut sets.sps, unit),
                    nal::avc::PPS => push_unique(&mut sets.pps, unit),
                    nal::avc::SPS_EXT => push_unique(&mut sets.sps_ext, unit),
                    _ => {}
                }
            }
        }
    }
    let missing = |missing| Error::MissingParameterSets {
        codec: VideoCodec::Avc,
        missing,
    };
    let first = sets.sps.first().ok_or_else(|| missing("no SPS"))?;
    if sets.pps.is_empty() {
        return Err(missing("no PPS"));
    }
    let sps = AvcSps::parse(first)?;
    for other in &sets.sps[1..] {
        AvcSps::parse(other)?;
    }
    if sets.sps.len() > 31 || sets.pps.len() > 255 || sets.sps_ext.len() > 255 {
        return Err(Error::InvalidParameterSet("too many parameter sets".into()));
    }
    if let Some(big) = sets
        .sps
        .iter()
        .chain(&sets.pps)
        .chain(&sets.sps_ext)
        .find(|n| n.len() > 0xffff)
    {
        return Err(Error::InvalidParameterSet(format!(
            "parameter set of {} bytes",
            big.len()
        )));
    }
    // ISO/IEC 14496-15 5.3.3.1: the chroma/bit-depth fields exist for these profiles only.
    let ext = matches!(sps.profile_idc, 100 | 110 | 122 | 144).then(|| AvccExt {
        chroma_format: sps.chroma_format_idc,
        bit_depth_luma: sps.bit_depth_luma,
        bit_depth_chroma: sps.bit_depth_chroma,
        sequence_parameter_sets_ext: sets.sps_ext,
    });
    let avcc = Avcc {
        configuration_version: 1,
        avc_profile_indication: sps.profile_idc,
        profile_compatibility: sps.constraint_flags,
        avc_level_indication: sps.level_idc,
        length_size: 4,
        sequence_parameter_sets: sets.sps,
        picture_parameter_sets: sets.pps,
        ext,
    };
    Ok((avcc, sps))
}

pub(super) fn hevc_config(extradata: &[u8]) -> Result<(Hvcc, HevcSps), Error> {
    let mut sets = ParameterSets::default();
    match extradata.first() {
        None => {
            return Err(Error::MissingParameterSets {
                codec: VideoCodec::Hevc,
                missing: "extradata is empty",
            })
        }
        Some(1) => {
            let record = Hvcc::decode_body(&mut &extradata[..])
                .map_err(|e| Error::InvalidParameterSet(format!("hvcC record: {e}")))?;
            for array in record.arrays {
                let list = match array.nal_unit_type {
                    nal::hevc::VPS => &mut sets.vps,
                    nal::hevc::SPS => &mut sets.sps,
                    nal::hevc::PPS => &mut sets.pps,
                    _ => continue,
                };
                for unit in &array.nalus {
                    push_unique(list, unit);
                }
            }
        }
        Some(_) => {
            for unit in nal::split_annexb(extradata) {
                match nal::hevc_nal_type(unit[0]) {
                    nal::hevc::VPS => push_unique(&mut sets.vps, unit),
                    nal::hevc::SPS => push_unique(&mut sets.sps, unit),
                    nal::hevc::PPS => push_unique(&mut sets.pps, unit),
                    _ => {}
                }
            }
        }
    }
    let missing = |missing| Error::MissingParameterSets {
        codec: VideoCodec::Hevc,
        missing,
    };
    if sets.vps.is_empty() {
        return Err(missing("no VPS"));
    }
    let first = sets.sps.first().ok_or_else(|| missing("no SPS"))?;
    if sets.pps.is_empty() {
        return Err(missing("no PPS"));
    }
    let sps = HevcSps::parse(first)?;
    for other in &sets.sps[1..] {
        HevcSps::parse(other)?;
    }
    if let Some(big) = sets
        .vps
        .iter()
        .chain(&sets.sps)
        .chain(&sets.pps)
        .find(|n| n.len() > 0xffff)
    {
        return Err(Error::InvalidParameterSet(format!(
            "parameter set of {} bytes",
            big.len()
        )));
    }
    let c = sps.general_constraint_indicator_flags;
    let arrays = [
        (nal::hevc::VPS, sets.vps),
        (nal::hevc::SPS, sets.sps),
        (nal::hevc::PPS, sets.pps),
    ]
    .into_iter()
    .map(|(nal_unit_type, nalus)| HvcCArray {
        completeness: true,
        nal_unit_type,
        nalus,
    })
    .collect();
    let hvcc = Hvcc {
        configuration_version: 1,
        general_profile_space: sps.general_profile_space,
        general_tier_flag: sps.general_tier_flag,
        general_profile_idc: sps.general_profile_idc,
        general_profile_compatibility_flags: sps.general_profile_compatibility_flags.to_be_bytes(),
        general_constraint_indicator_flags: c,
        general_level_idc: sps.general_level_idc,
        // Unknown without parsing the VUI; 0 is the value for "not signalled".
        min_spatial_segmentation_idc: 0,
        parallelism_type: 0,
        chroma_format_idc: sps.chroma_format_idc,
        bit_depth_luma_minus8: sps.bit_depth_luma - 8,
        bit_depth_chroma_minus8: sps.bit_depth_chroma - 8,
        avg_frame_rate: 0,
        constant_frame_rate: 0,
        num_temporal_layers: sps.max_sub_layers,
        temporal_id_nested: sps.temporal_id_nesting,
        length_size_minus_one: 3,
        arrays,
    };
    Ok((hvcc, sps))
}
