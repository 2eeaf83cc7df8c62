//! Reading bit fields from untrusted bytes: RBSP unescaping and an MSB-first reader with
//! Exp-Golomb codes (SPS fields, AudioSpecificConfig). Reads past the end are errors.

use super::Error;

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

pub(super) fn truncated(bit: usize) -> Error {
    Error::InvalidParameterSet(format!("truncated at bit {bit}"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
