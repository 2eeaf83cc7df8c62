//! NAL unit utilities for H.264 and H.265: Annex B and length-prefixed framing, NAL types, and the
//! few sequence parameter set fields a packager needs (profile, level, chroma format, bit depth,
//! picture size).
//!
//! Everything here reads untrusted bytes: malformed input is an `Err`, never a panic.

use super::Error;
use crate::media::VideoCodec;

/// H.264 NAL unit types used by the packager.
pub mod avc {
    /// Coded slice of an IDR picture.
    pub const IDR: u8 = 5;
    /// Supplemental enhancement information.
    pub const SEI: u8 = 6;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
    /// Sequence parameter set extension.
    pub const SPS_EXT: u8 = 13;
}

/// H.265 NAL unit types used by the packager.
pub mod hevc {
    /// First IRAP type (BLA_W_LP).
    pub const BLA_W_LP: u8 = 16;
    /// IDR picture that may have leading pictures (RADL).
    pub const IDR_W_RADL: u8 = 19;
    /// IDR picture without leading pictures.
    pub const IDR_N_LP: u8 = 20;
    /// Clean random access picture.
    pub const CRA: u8 = 21;
    /// Last reserved IRAP type.
    pub const RSV_IRAP_23: u8 = 23;
    /// Video parameter set.
    pub const VPS: u8 = 32;
    /// Sequence parameter set.
    pub const SPS: u8 = 33;
    /// Picture parameter set.
    pub const PPS: u8 = 34;
    /// Access unit delimiter.
    pub const AUD: u8 = 35;
    /// Prefix SEI.
    pub const PREFIX_SEI: u8 = 39;
}

/// NAL unit type of an H.264 NAL unit, from its first header byte.
pub fn avc_nal_type(header: u8) -> u8 {
    header & 0x1f
}

/// NAL unit type of an H.265 NAL unit, from its first header byte.
pub fn hevc_nal_type(header: u8) -> u8 {
    (header >> 1) & 0x3f
}

/// NAL unit type for `codec`, from the NAL unit's first header byte.
pub fn nal_type(codec: VideoCodec, header: u8) -> u8 {
    match codec {
        VideoCodec::Avc => avc_nal_type(header),
        VideoCodec::Hevc => hevc_nal_type(header),
    }
}

/// True for an IDR picture's NAL unit: H.264 type 5, H.265 types 19 and 20 (not CRA or BLA).
pub fn is_idr(codec: VideoCodec, header: u8) -> bool {
    match codec {
        VideoCodec::Avc => avc_nal_type(header) == avc::IDR,
        VideoCodec::Hevc => matches!(hevc_nal_type(header), hevc::IDR_W_RADL | hevc::IDR_N_LP),
    }
}

/// True for a random access point's NAL unit: an IDR, and for H.265 also CRA and BLA (IRAP).
pub fn is_random_access(codec: VideoCodec, header: u8) -> bool {
    match codec {
        VideoCodec::Avc => avc_nal_type(header) == avc::IDR,
        VideoCodec::Hevc => (hevc::BLA_W_LP..=hevc::RSV_IRAP_23).contains(&hevc_nal_type(header)),
    }
}

/// True for an access unit delimiter, which CMAF samples do not carry.
pub fn is_aud(codec: VideoCodec, header: u8) -> bool {
    nal_type(codec, header)
        == match codec {
            VideoCodec::Avc => avc::AUD,
            VideoCodec::Hevc => hevc::AUD,
        }
}

/// Splits an Annex B byte stream into NAL units, without start codes or trailing zero bytes.
///
/// Start codes may be 3 or 4 bytes long. Bytes before the first start code are skipped; empty
/// NAL units are not yielded.
pub fn split_annexb(data: &[u8]) -> AnnexB<'_> {
    let rest = match find_start_code(data, 0) {
        Some((_, payload)) => &data[payload..],
        None => &[],
    };
    AnnexB { rest }
}

/// Whether `data` begins with an Annex B start code (`00 00 01` or `00 00 00 01`).
pub fn starts_with_start_code(data: &[u8]) -> bool {
    data.starts_with(&[0, 0, 1]) || data.starts_with(&[0, 0, 0, 1])
}

/// Iterator over the NAL units of an Annex B byte stream; see [`split_annexb`].
#[derive(Debug, Clone)]
pub struct AnnexB<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for AnnexB<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (nal, rest) = match find_start_code(self.rest, 0) {
                Some((start, payload)) => (&self.rest[..start], &self.rest[payload..]),
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            let end = nal.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            if end > 0 {
                return Some(&nal[..end]);
            }
        }
    }
}

/// Finds the next `00 00 01` at or after `from`: (index of the first zero, index after the `01`).
fn find_start_code(data: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i + 2 < data.len() {
        // Skip ahead quickly: a start code needs data[i + 2] == 1 and two zeros before it.
        match data[i + 2] {
            1 if data[i] == 0 && data[i + 1] == 0 => return Some((i, i + 3)),
            0 | 1 => i += 1,
            _ => i += 3,
        }
    }
    None
}

/// Iterates the NAL units of a sample in 4-byte length-prefixed form (as stored in `mdat`).
pub fn length_prefixed_units(data: &[u8]) -> LengthPrefixed<'_> {
    LengthPrefixed { rest: data }
}

/// Iterator over 4-byte length-prefixed NAL units; a truncated unit yields one `Err`, then stops.
#[derive(Debug, Clone)]
pub struct LengthPrefixed<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for LengthPrefixed<'a> {
    type Item = Result<&'a [u8], Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.rest);
        if rest.len() < 4 {
            return Some(Err(Error::InvalidNal(format!(
                "{} bytes left, less than a length",
                rest.len()
            ))));
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len > rest.len() - 4 {
            return Some(Err(Error::InvalidNal(format!(
                "NAL unit of {len} bytes with {} bytes left",
                rest.len() - 4
            ))));
        }
        self.rest = &rest[4 + len..];
        Some(Ok(&rest[4..4 + len]))
    }
}

/// Removes emulation prevention bytes (`00 00 03` → `00 00`), giving the RBSP.
pub fn unescape_rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// MSB-first bit reader with Exp-Golomb codes, over an RBSP.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    /// Bits consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn read_bit(&mut self) -> Result<bool, Error> {
        let byte = self
            .data
            .get(self.pos / 8)
            .ok_or_else(|| truncated(self.pos))?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    /// Reads `n` ≤ 32 bits as an unsigned number.
    pub fn read_bits(&mut self, n: u32) -> Result<u32, Error> {
        debug_assert!(n <= 32);
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.read_bit()?);
        }
        Ok(v as u32)
    }

    pub fn read_u8(&mut self) -> Result<u8, Error> {
        Ok(self.read_bits(8)? as u8)
    }

    pub fn skip(&mut self, n: usize) -> Result<(), Error> {
        if self.pos + n > self.data.len() * 8 {
            return Err(truncated(self.data.len() * 8));
        }
        self.pos += n;
        Ok(())
    }

    /// Unsigned Exp-Golomb `ue(v)`.
    pub fn read_ue(&mut self) -> Result<u32, Error> {
        let mut zeros = 0;
        while !self.read_bit()? {
            zeros += 1;
            if zeros > 31 {
                return Err(Error::InvalidParameterSet(
                    "Exp-Golomb code longer than 32 bits".into(),
                ));
            }
        }
        let rest = self.read_bits(zeros)?;
        Ok(((1u64 << zeros) - 1 + u64::from(rest)).min(u64::from(u32::MAX)) as u32)
    }

    /// Signed Exp-Golomb `se(v)`.
    pub fn read_se(&mut self) -> Result<i32, Error> {
        let k = self.read_ue()? as i64;
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        Ok(v as i32)
    }
}

fn truncated(bit: usize) -> Error {
    Error::InvalidParameterSet(format!("truncated at bit {bit}"))
}

/// The fields of an H.264 sequence parameter set that the packager uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcSps {
    pub profile_idc: u8,
    /// The byte holding constraint_set0..5 flags and the reserved bits.
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub seq_parameter_set_id: u32,
    pub chroma_format_idc: u8,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    /// Displayed width (after cropping).
    pub width: u32,
    /// Displayed height (after cropping).
    pub height: u32,
}

impl AvcSps {
    /// Parses an SPS NAL unit, header byte included.
    pub fn parse(nal: &[u8]) -> Result<AvcSps, Error> {
        let header = *nal
            .first()
            .ok_or_else(|| Error::InvalidParameterSet("empty SPS".into()))?;
        if avc_nal_type(header) != avc::SPS {
            return Err(Error::InvalidParameterSet(format!(
                "NAL type {} is not an H.264 SPS",
                avc_nal_type(header)
            )));
        }
        let rbsp = unescape_rbsp(&nal[1..]);
        let mut r = BitReader::new(&rbsp);
        let profile_idc = r.read_u8()?;
        let constraint_flags = r.read_u8()?;
        let level_idc = r.read_u8()?;
        let seq_parameter_set_id = r.read_ue()?;
        if seq_parameter_set_id > 31 {
            return Err(invalid("seq_parameter_set_id", seq_parameter_set_id));
        }
        let (mut chroma_format_idc, mut separate_colour_plane, mut depth_luma, mut depth_chroma) =
            (1, false, 8, 8);
        if matches!(
            profile_idc,
            100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
        ) {
            chroma_format_idc = r.read_ue()?;
            if chroma_format_idc > 3 {
                return Err(invalid("chroma_format_idc", chroma_format_idc));
            }
            if chroma_format_idc == 3 {
                separate_colour_plane = r.read_bit()?;
            }
            depth_luma = r.read_ue()? + 8;
            depth_chroma = r.read_ue()? + 8;
            if depth_luma > 14 || depth_chroma > 14 {
                return Err(invalid("bit_depth", depth_luma.max(depth_chroma)));
            }
            r.read_bit()?; // qpprime_y_zero_transform_bypass_flag
            if r.read_bit()? {
                // seq_scaling_matrix_present_flag
                let lists = if chroma_format_idc == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if r.read_bit()? {
                        skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }
        r.read_ue()?; // log2_max_frame_num_minus4
        match r.read_ue()? {
            0 => {
                r.read_ue()?; // log2_max_pic_order_cnt_lsb_minus4
            }
            1 => {
                r.read_bit()?; // delta_pic_order_always_zero_flag
                r.read_se()?; // offset_for_non_ref_pic
                r.read_se()?; // offset_for_top_to_bottom_field
                let cycle = r.read_ue()?;
                if cycle > 255 {
                    return Err(invalid("num_ref_frames_in_pic_order_cnt_cycle", cycle));
                }
                for _ in 0..cycle {
                    r.read_se()?;
                }
            }
            2 => {}
            other => return Err(invalid("pic_order_cnt_type", other)),
        }
        r.read_ue()?; // max_num_ref_frames
        r.read_bit()?; // gaps_in_frame_num_value_allowed_flag
        let width_mbs = u64::from(r.read_ue()?) + 1;
        let height_map_units = u64::from(r.read_ue()?) + 1;
        let frame_mbs_only = r.read_bit()?;
        if !frame_mbs_only {
            r.read_bit()?; // mb_adaptive_frame_field_flag
        }
        r.read_bit()?; // direct_8x8_inference_flag
        let mut crop = [0u64; 4];
        if r.read_bit()? {
            for c in &mut crop {
                *c = u64::from(r.read_ue()?);
            }
        }
        let field_factor = if frame_mbs_only { 1 } else { 2 };
        let chroma_array_type = if separate_colour_plane {
            0
        } else {
            chroma_format_idc
        };
        let (crop_x, crop_y) = match chroma_array_type {
            0 => (1, field_factor),
            1 => (2, 2 * field_factor),
            2 => (2, field_factor),
            _ => (1, field_factor),
        };
        let coded_w = width_mbs * 16;
        let coded_h = height_map_units * 16 * field_factor;
        let (cw, ch) = (crop_x * (crop[0] + crop[1]), crop_y * (crop[2] + crop[3]));
        if cw >= coded_w || ch >= coded_h || coded_w > 65536 || coded_h > 65536 {
            return Err(Error::InvalidParameterSet(format!(
                "picture size {coded_w}x{coded_h} with cropping {cw}x{ch}"
            )));
        }
        Ok(AvcSps {
            profile_idc,
            constraint_flags,
            level_idc,
            seq_parameter_set_id,
            chroma_format_idc: chroma_format_idc as u8,
            bit_depth_luma: depth_luma as u8,
            bit_depth_chroma: depth_chroma as u8,
            width: (coded_w - cw) as u32,
            height: (coded_h - ch) as u32,
        })
    }

    /// RFC 6381 codec string: `avc1.PPCCLL`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile_idc, self.constraint_flags, self.level_idc
        )
    }
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), Error> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            let delta = r.read_se()?;
            next = (last + delta).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

fn invalid(field: &str, value: u32) -> Error {
    Error::InvalidParameterSet(format!("{field} = {value} is out of range"))
}

/// The fields of an H.265 sequence parameter set that the packager uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HevcSps {
    pub max_sub_layers: u8,
    pub temporal_id_nesting: bool,
    pub general_profile_space: u8,
    pub general_tier_flag: bool,
    pub general_profile_idc: u8,
    /// general_profile_compatibility_flag[0..32], flag 0 in the most significant bit.
    pub general_profile_compatibility_flags: u32,
    /// The 48 constraint indicator bits, as stored (progressive_source_flag first).
    pub general_constraint_indicator_flags: [u8; 6],
    pub general_level_idc: u8,
    pub seq_parameter_set_id: u32,
    pub chroma_format_idc: u8,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    /// Displayed width (after the conformance window).
    pub width: u32,
    /// Displayed height (after the conformance window).
    pub height: u32,
}

impl HevcSps {
    /// Parses an SPS NAL unit, both header bytes included.
    pub fn parse(nal: &[u8]) -> Result<HevcSps, Error> {
        if nal.len() < 2 || hevc_nal_type(nal[0]) != hevc::SPS {
            return Err(Error::InvalidParameterSet(match nal.first() {
                Some(&h) => format!("NAL type {} is not an H.265 SPS", hevc_nal_type(h)),
                None => "empty SPS".into(),
            }));
        }
        let rbsp = unescape_rbsp(&nal[2..]);
        let mut r = BitReader::new(&rbsp);
        r.read_bits(4)?; // sps_video_parameter_set_id
        let max_sub_layers_minus1 = r.read_bits(3)? as u8;
        if max_sub_layers_minus1 > 6 {
            return Err(invalid(
                "sps_max_sub_layers_minus1",
                max_sub_layers_minus1.into(),
            ));
        }
        let temporal_id_nesting = r.read_bit()?;

        // profile_tier_level(1, sps_max_sub_layers_minus1)
        let general_profile_space = r.read_bits(2)? as u8;
        let general_tier_flag = r.read_bit()?;
        let general_profile_idc = r.read_bits(5)? as u8;
        let general_profile_compatibility_flags = r.read_bits(32)?;
        let mut general_constraint_indicator_flags = [0u8; 6];
        for b in &mut general_constraint_indicator_flags {
            *b = r.read_u8()?;
        }
        let general_level_idc = r.read_u8()?;
        let mut present = [(false, false); 8];
        for p in present.iter_mut().take(max_sub_layers_minus1 as usize) {
            *p = (r.read_bit()?, r.read_bit()?);
        }
        if max_sub_layers_minus1 > 0 {
            r.skip(2 * (8 - max_sub_layers_minus1 as usize))?; // reserved_zero_2bits
        }
        for &(profile_present, level_present) in present.iter().take(max_sub_layers_minus1 as usize)
        {
            if profile_present {
                r.skip(88)?;
            }
            if level_present {
                r.skip(8)?;
            }
        }

        let seq_parameter_set_id = r.read_ue()?;
        if seq_parameter_set_id > 15 {
            return Err(invalid("sps_seq_parameter_set_id", seq_parameter_set_id));
        }
        let chroma_format_idc = r.read_ue()?;
        if chroma_format_idc > 3 {
            return Err(invalid("chroma_format_idc", chroma_format_idc));
        }
        let separate_colour_plane = chroma_format_idc == 3 && r.read_bit()?;
        let coded_w = u64::from(r.read_ue()?);
        let coded_h = u64::from(r.read_ue()?);
        let mut window = [0u64; 4];
        if r.read_bit()? {
            for w in &mut window {
                *w = u64::from(r.read_ue()?);
            }
        }
        let depth_luma = r.read_ue()? + 8;
        let depth_chroma = r.read_ue()? + 8;
        if depth_luma > 16 || depth_chroma > 16 {
            return Err(invalid("bit_depth", depth_luma.max(depth_chroma)));
        }
        let chroma_array_type = if separate_colour_plane {
            0
        } else {
            chroma_format_idc
        };
        let (sub_w, sub_h) = match chroma_array_type {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let (cw, ch) = (
            sub_w * (window[0] + window[1]),
            sub_h * (window[2] + window[3]),
        );
        if coded_w == 0
            || coded_h == 0
            || cw >= coded_w
            || ch >= coded_h
            || coded_w > 65536
            || coded_h > 65536
        {
            return Err(Error::InvalidParameterSet(format!(
                "picture size {coded_w}x{coded_h} with conformance window {cw}x{ch}"
            )));
        }
        Ok(HevcSps {
            max_sub_layers: max_sub_layers_minus1 + 1,
            temporal_id_nesting,
            general_profile_space,
            general_tier_flag,
            general_profile_idc,
            general_profile_compatibility_flags,
            general_constraint_indicator_flags,
            general_level_idc,
            seq_parameter_set_id,
            chroma_format_idc: chroma_format_idc as u8,
            bit_depth_luma: depth_luma as u8,
            bit_depth_chroma: depth_chroma as u8,
            width: (coded_w - cw) as u32,
            height: (coded_h - ch) as u32,
        })
    }

    /// RFC 6381 / ISO/IEC 14496-15 Annex E codec string, e.g. `hvc1.1.6.L93.B0`.
    pub fn codec_string(&self) -> String {
        let space = match self.general_profile_space {
            0 => "",
            1 => "A",
            2 => "B",
            _ => "C",
        };
        let tier = if self.general_tier_flag { 'H' } else { 'L' };
        let mut s = format!(
            "hvc1.{space}{}.{:X}.{tier}{}",
            self.general_profile_idc,
            self.general_profile_compatibility_flags.reverse_bits(),
            self.general_level_idc
        );
        let flags = &self.general_constraint_indicator_flags;
        let used = flags.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        for b in &flags[..used] {
            s.push_str(&format!(".{b:X}"));
        }
        s
    }
}

/// AAC codec string from an AudioSpecificConfig: `mp4a.40.{audioObjectType}`.
pub fn aac_codec_string(audio_specific_config: &[u8]) -> Result<String, Error> {
    Ok(format!(
        "mp4a.40.{}",
        aac_object_type(audio_specific_config)?
    ))
}

/// The audioObjectType of an AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1), escape included.
pub fn aac_object_type(asc: &[u8]) -> Result<u8, Error> {
    let mut r = BitReader::new(asc);
    let short = |_| Error::InvalidAudioConfig("AudioSpecificConfig is truncated".into());
    let aot = r.read_bits(5).map_err(short)? as u8;
    let aot = if aot == 31 {
        32 + r.read_bits(6).map_err(short)? as u8
    } else {
        aot
    };
    if aot == 0 {
        return Err(Error::InvalidAudioConfig("audioObjectType 0".into()));
    }
    Ok(aot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_annexb_with_both_start_code_lengths() {
        let data = [
            0, 0, 0, 1, 9, 0xf0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 0, 1, 0x68, 3, 0, 0, 1, 0x65, 0, 0,
            3, 1,
        ];
        let units: Vec<&[u8]> = split_annexb(&data).collect();
        assert_eq!(
            units,
            vec![
                &[9, 0xf0][..],
                &[0x67, 1, 2],
                &[0x68, 3],
                &[0x65, 0, 0, 3, 1]
            ]
        );
        assert_eq!(split_annexb(&[1, 2, 3]).count(), 0);
        assert_eq!(split_annexb(&[]).count(), 0);
        assert_eq!(split_annexb(&[0, 0, 1]).count(), 0);
        assert_eq!(
            split_annexb(&[0, 0, 1, 0, 0, 1, 5]).collect::<Vec<_>>(),
            vec![&[5][..]]
        );
    }

    #[test]
    fn length_prefixed_reports_truncation() {
        let data = [0, 0, 0, 2, 0x65, 1, 0, 0, 0, 1, 0x41];
        let units: Vec<_> = length_prefixed_units(&data).map(Result::unwrap).collect();
        assert_eq!(units, vec![&[0x65, 1][..], &[0x41]]);
        let bad = [0, 0, 0, 9, 0x65];
        let mut it = length_prefixed_units(&bad);
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
        assert!(length_prefixed_units(&[0, 0]).next().unwrap().is_err());
    }

    #[test]
    fn unescapes_emulation_prevention() {
        assert_eq!(
            unescape_rbsp(&[0, 0, 3, 1, 0, 0, 3, 0, 0, 3]),
            vec![0, 0, 1, 0, 0, 0, 0]
        );
    }

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 | 00101 → ue 0, 1, 2, 3; se of 4 is -2
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = BitReader::new(&data);
        assert_eq!(r.read_ue().unwrap(), 0);
        assert_eq!(r.read_ue().unwrap(), 1);
        assert_eq!(r.read_ue().unwrap(), 2);
        assert_eq!(r.read_ue().unwrap(), 3);
        assert_eq!(r.read_se().unwrap(), -2);
        assert!(r.read_ue().is_err());
        assert!(BitReader::new(&[0, 0, 0, 0, 0]).read_ue().is_err());
    }

    #[test]
    fn nal_types() {
        assert!(is_idr(VideoCodec::Avc, 0x65));
        assert!(!is_idr(VideoCodec::Avc, 0x41));
        assert!(is_idr(VideoCodec::Hevc, 19 << 1));
        assert!(is_idr(VideoCodec::Hevc, 20 << 1));
        assert!(!is_idr(VideoCodec::Hevc, 21 << 1));
        assert!(is_random_access(VideoCodec::Hevc, 21 << 1));
        assert!(is_aud(VideoCodec::Avc, 0x09));
        assert!(is_aud(VideoCodec::Hevc, 35 << 1));
        assert_eq!(hevc_nal_type(0x42), 33);
    }

    #[test]
    fn parses_known_sps() {
        // 1920x1080 High profile level 4.0 SPS (from mp4-atom's test vector).
        let sps = [
            103, 100, 0, 40, 172, 217, 64, 120, 2, 39, 229, 132, 0, 0, 3, 0, 4, 0, 0, 3, 0, 240,
            60, 96, 198, 88,
        ];
        let s = AvcSps::parse(&sps).unwrap();
        assert_eq!(
            (s.profile_idc, s.constraint_flags, s.level_idc),
            (100, 0, 40)
        );
        assert_eq!(
            (s.width, s.height, s.chroma_format_idc, s.bit_depth_luma),
            (1920, 1080, 1, 8)
        );
        assert_eq!(s.codec_string(), "avc1.640028");
        for n in 0..sps.len() - 2 {
            // Every truncation fails cleanly or parses; never panics.
            let _ = AvcSps::parse(&sps[..n]);
        }
        assert!(AvcSps::parse(&[]).is_err());
        assert!(AvcSps::parse(&[0x67]).is_err());

        // Main profile HEVC SPS written by x265 through libheif (mp4-atom's test vector).
        let hsps = [
            66, 1, 1, 1, 96, 0, 0, 3, 0, 144, 0, 0, 3, 0, 0, 3, 0, 120, 160, 2, 128, 128, 53, 159,
            89, 102, 98, 164, 145, 38, 191, 252, 26, 176, 26, 172, 4, 0, 0, 3, 0, 4, 0, 0, 3, 0,
            100, 32,
        ];
        let h = HevcSps::parse(&hsps).unwrap();
        assert_eq!(
            (
                h.general_profile_idc,
                h.general_level_idc,
                h.general_tier_flag
            ),
            (1, 120, false)
        );
        assert_eq!(h.general_profile_compatibility_flags, 0x6000_0000);
        assert_eq!(h.general_constraint_indicator_flags, [0x90, 0, 0, 0, 0, 0]);
        assert_eq!(h.codec_string(), "hvc1.1.6.L120.90");
        for n in 0..hsps.len() {
            let _ = HevcSps::parse(&hsps[..n]);
        }
    }

    #[test]
    fn aac_object_types() {
        assert_eq!(aac_codec_string(&[0x11, 0x90]).unwrap(), "mp4a.40.2");
        assert_eq!(aac_codec_string(&[0xf8, 0x40]).unwrap(), "mp4a.40.34");
        assert!(aac_codec_string(&[]).is_err());
        assert!(aac_codec_string(&[0x00, 0x00]).is_err());
    }
}
