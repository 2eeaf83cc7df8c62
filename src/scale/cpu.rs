//! The CPU ladder scaler: the CUDA kernel's twin (the software path uses swscale per rung).
//!
//! Same weights and integer arithmetic as `kernels/ladder_scale.cu`, so the result is bit-identical
//! to the kernel's. The sum is evaluated in a different order (a vertical pass over whole rows, which
//! vectorises, then a horizontal pass): every partial sum is an exact integer well inside its type,
//! so the order cannot change the result. Weight tables are built once per source size and ladder.

use super::{validate, validate_frames, Error, Format, FrameMut, FrameRef};

/// Bits of the fixed-point weights: the weights of one footprint sum to `1 << WEIGHT_BITS`.
pub const WEIGHT_BITS: u32 = 16;
const MAX_TAPS: usize = 16;

/// Fixed-point area weights for one axis: source length `src` to destination length `dst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxisWeights {
    /// First source index of each destination index's footprint.
    pub first: Vec<u32>,
    /// `weights[offset[d]..offset[d + 1]]` are destination index d's weights.
    pub offset: Vec<u32>,
    pub weights: Vec<u32>,
}

impl AxisWeights {
    /// The weights `ls_weights` in the kernel computes (same integer steps, same cap on taps).
    pub fn new(src: u32, dst: u32) -> AxisWeights {
        let mut first = Vec::with_capacity(dst as usize);
        let mut offset = Vec::with_capacity(dst as usize + 1);
        let mut weights = Vec::new();
        offset.push(0);
        for d in 0..dst {
            let lo = d * src; // footprint [lo, lo + src) in units of 1/dst source pixel
            let start = lo / dst;
            let mut prev = 0u32;
            let mut taps = 0;
            let mut s = start;
            loop {
                let c = (s + 1) * dst - lo; // overlap up to the right edge of source pixel s
                if c >= src || taps + 1 == MAX_TAPS {
                    weights.push((1 << WEIGHT_BITS) - prev);
                    break;
                }
                let cum = ((c << WEIGHT_BITS) + src / 2) / src;
                weights.push(cum - prev);
                prev = cum;
                taps += 1;
                s += 1;
            }
            first.push(start);
            offset.push(weights.len() as u32);
        }
        AxisWeights {
            first,
            offset,
            weights,
        }
    }

    fn taps(&self, d: usize) -> (usize, &[u32]) {
        let (a, b) = (self.offset[d] as usize, self.offset[d + 1] as usize);
        (self.first[d] as usize, &self.weights[a..b])
    }
}

/// A sample type: how to read one sample as the value averaged, and write it back.
trait Sample {
    const BYTES: usize;
    fn get(data: &[u8], i: usize) -> u32;
    fn put(data: &mut [u8], i: usize, v: u32);
}

struct Eight;
impl Sample for Eight {
    const BYTES: usize = 1;
    #[inline(always)]
    fn get(data: &[u8], i: usize) -> u32 {
        u32::from(data[i])
    }
    #[inline(always)]
    fn put(data: &mut [u8], i: usize, v: u32) {
        data[i] = v as u8;
    }
}

/// P010: 10 bits in the high bits of a little-endian 16-bit word.
struct P010;
impl Sample for P010 {
    const BYTES: usize = 2;
    #[inline(always)]
    fn get(data: &[u8], i: usize) -> u32 {
        u32::from(u16::from_le_bytes([data[2 * i], data[2 * i + 1]])) >> 6
    }
    #[inline(always)]
    fn put(data: &mut [u8], i: usize, v: u32) {
        data[2 * i..2 * i + 2].copy_from_slice(&((v << 6) as u16).to_le_bytes());
    }
}

/// Weight tables of one rung: per plane, (horizontal, vertical).
#[derive(Debug, Clone)]
struct RungWeights {
    width: u32,
    height: u32,
    planes: Vec<(AxisWeights, AxisWeights)>,
}

/// The CPU ladder scaler for one source size, format and ladder.
#[derive(Debug, Clone)]
pub struct Scaler {
    format: Format,
    width: u32,
    height: u32,
    rungs: Vec<RungWeights>,
}

impl Scaler {
    /// Plans the weights for a `width`x`height` source of `format` and the rung sizes `rungs`
    /// (any number of rungs, each even, at most 15 times smaller than the source).
    pub fn new(
        format: Format,
        width: u32,
        height: u32,
        rungs: &[(u32, u32)],
    ) -> Result<Scaler, Error> {
        validate(width, height, rungs)?;
        let rungs = rungs
            .iter()
            .map(|&(w, h)| RungWeights {
                width: w,
                height: h,
                planes: (0..format.plane_count())
                    .map(|plane| {
                        let (sw, sh) = format.plane_size(plane, width, height);
                        let (dw, dh) = format.plane_size(plane, w, h);
                        (AxisWeights::new(sw, dw), AxisWeights::new(sh, dh))
                    })
                    .collect(),
            })
            .collect();
        Ok(Scaler {
            format,
            width,
            height,
            rungs,
        })
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Rung sizes, in the order given to [`Scaler::new`].
    pub fn rungs(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.rungs.iter().map(|r| (r.width, r.height))
    }

    /// Writes every rung from `src`; `dst[i]` is rung i, of the size and format planned.
    pub fn scale(&self, src: &FrameRef, dst: &mut [FrameMut]) -> Result<(), Error> {
        if src.format != self.format || src.width != self.width || src.height != self.height {
            return Err(Error::InvalidSize {
                width: src.width,
                height: src.height,
                reason: "source differs from the size and format the scaler was planned for",
            });
        }
        if dst.len() != self.rungs.len() {
            return Err(Error::RungCount {
                count: dst.len(),
                max: self.rungs.len(),
            });
        }
        for (i, (d, r)) in dst.iter().zip(&self.rungs).enumerate() {
            if (d.width, d.height) != (r.width, r.height) {
                return Err(Error::InvalidRung {
                    rung: i + 1,
                    width: d.width,
                    height: d.height,
                    reason: "output differs from the size the scaler was planned for",
                });
            }
        }
        validate_frames(src, dst)?;
        let mut column = Vec::new();
        for (d, r) in dst.iter_mut().zip(&self.rungs) {
            for (plane, (wx, wy)) in r.planes.iter().enumerate() {
                let comps = self.format.components(plane);
                let (sw, sh) = self.format.plane_size(plane, src.width, src.height);
                let s = src.planes[plane];
                let o = &mut d.planes[plane];
                let src_plane = (s.data, s.stride, sw as usize, sh as usize);
                match (self.format, comps) {
                    (Format::P010, 2) => {
                        scale_plane::<P010, 2>(src_plane, (o.data, o.stride), wx, wy, &mut column)
                    }
                    (Format::P010, _) => {
                        scale_plane::<P010, 1>(src_plane, (o.data, o.stride), wx, wy, &mut column)
                    }
                    (_, 2) => {
                        scale_plane::<Eight, 2>(src_plane, (o.data, o.stride), wx, wy, &mut column)
                    }
                    _ => {
                        scale_plane::<Eight, 1>(src_plane, (o.data, o.stride), wx, wy, &mut column)
                    }
                }
            }
        }
        Ok(())
    }
}

/// One plane: `src` is (bytes, stride, width, height) in pixel positions of `C` samples each.
fn scale_plane<S: Sample, const C: usize>(
    src: (&[u8], usize, usize, usize),
    dst: (&mut [u8], usize),
    wx: &AxisWeights,
    wy: &AxisWeights,
    column: &mut Vec<u32>,
) {
    let (data, stride, sw, sh) = src;
    let (out, out_stride) = dst;
    let row_samples = sw * C;
    if wx.first.len() == sw && wy.first.len() == sh {
        // 1:1: every weight is exactly one, so the result is the source (P010's low bits cleared).
        for y in 0..sh {
            let (from, to) = (
                &data[y * stride..][..row_samples * S::BYTES],
                &mut out[y * out_stride..][..row_samples * S::BYTES],
            );
            for x in 0..row_samples {
                S::put(to, x, S::get(from, x));
            }
        }
        return;
    }
    column.clear();
    column.resize(row_samples, 0);
    let rows = wy.first.len();
    let cols = wx.first.len();
    for dy in 0..rows {
        // Vertical pass: column[x] = sum_j wy_j * p[sy + j][x]  (<= 1023 * 2^16, fits in u32).
        let (sy, wys) = wy.taps(dy);
        column.fill(0);
        for (j, &w) in wys.iter().enumerate() {
            let row = &data[(sy + j) * stride..][..row_samples * S::BYTES];
            for (x, acc) in column.iter_mut().enumerate() {
                *acc += w * S::get(row, x);
            }
        }
        // Horizontal pass, rounding once at the end.
        let out_row = &mut out[dy * out_stride..][..cols * C * S::BYTES];
        for dx in 0..cols {
            let (sx, wxs) = wx.taps(dx);
            for c in 0..C {
                let mut acc = 0u64;
                for (i, &w) in wxs.iter().enumerate() {
                    acc += u64::from(w) * u64::from(column[(sx + i) * C + c]);
                }
                S::put(out_row, dx * C + c, ((acc + (1 << 31)) >> 32) as u32);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::Frame;

    #[test]
    fn weights_sum_to_one_and_cover_the_source() {
        for &(s, d) in &[
            (1920, 1280),
            (1283, 640),
            (1080, 360),
            (642, 640),
            (7, 3),
            (100, 100),
            (360, 720),
            (15, 1),
        ] {
            let w = AxisWeights::new(s, d);
            for i in 0..d as usize {
                let (first, ws) = w.taps(i);
                assert_eq!(ws.iter().sum::<u32>(), 1 << WEIGHT_BITS, "{s}->{d} at {i}");
                assert!(
                    first + ws.len() <= s as usize,
                    "{s}->{d} at {i} reads past the source"
                );
            }
        }
    }

    #[test]
    fn exact_factors_have_exact_weights() {
        let w = AxisWeights::new(1920, 960);
        assert!(w.weights.iter().all(|&x| x == 1 << 15));
        let w = AxisWeights::new(640, 640);
        assert!(w.weights.iter().all(|&x| x == 1 << 16));
    }

    #[test]
    fn copy_is_identity_and_flat_stays_flat() {
        let mut src = Frame::new(Format::Nv12, 66, 34, 1);
        for (i, b) in src.planes[0].iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        src.planes[1].fill(77);
        let scaler = Scaler::new(Format::Nv12, 66, 34, &[(66, 34), (22, 12)]).unwrap();
        let mut a = Frame::new(Format::Nv12, 66, 34, 1);
        let mut b = Frame::new(Format::Nv12, 22, 12, 1);
        scaler
            .scale(&src.as_ref(), &mut [a.as_mut(), b.as_mut()])
            .unwrap();
        assert_eq!(a, src);
        assert!(b.planes[1].iter().all(|&v| v == 77));
    }

    #[test]
    fn refuses_bad_ladders() {
        assert!(matches!(
            Scaler::new(Format::Nv12, 1920, 1080, &[]),
            Err(Error::RungCount { .. })
        ));
        assert!(matches!(
            Scaler::new(Format::Nv12, 1920, 1080, &[(641, 360)]),
            Err(Error::InvalidRung { .. })
        ));
        assert!(matches!(
            Scaler::new(Format::Nv12, 1920, 1080, &[(64, 36)]),
            Err(Error::InvalidRung { .. })
        ));
        assert!(matches!(
            Scaler::new(Format::Nv12, 0, 1080, &[(64, 36)]),
            Err(Error::InvalidSize { .. })
        ));
    }

    #[test]
    fn refuses_short_planes() {
        let src = Frame::new(Format::Nv12, 64, 32, 1);
        let scaler = Scaler::new(Format::Nv12, 64, 32, &[(32, 16)]).unwrap();
        let mut out = Frame::new(Format::Nv12, 32, 16, 1);
        out.planes[1].pop();
        let err = scaler
            .scale(&src.as_ref(), &mut [out.as_mut()])
            .unwrap_err();
        assert!(
            matches!(err, Error::PlaneTooSmall { plane: 1, .. }),
            "{err}"
        );
    }
}
