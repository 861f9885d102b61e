// SPDX-License-Identifier: MPL-2.0
//! A bounds-checked cursor over a byte slice: every read is fallible, so
//! parsers built on it cannot panic on short or hostile input.

use super::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(Error::need_more());
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn skip(&mut self, n: usize) -> Result<()> {
        self.bytes(n).map(|_| ())
    }

    pub fn peek_u8(&self) -> Result<u8> {
        self.buf.get(self.pos).copied().ok_or_else(Error::need_more)
    }

    pub fn u8(&mut self) -> Result<u8> {
        let v = self.peek_u8()?;
        self.pos += 1;
        Ok(v)
    }

    pub fn u16(&mut self) -> Result<u16> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u24(&mut self) -> Result<u32> {
        let b = self.bytes(3)?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    /// A signed 24-bit big-endian value (FLV composition time).
    pub fn i24(&mut self) -> Result<i32> {
        let v = self.u24()?;
        Ok(((v << 8) as i32) >> 8)
    }

    pub fn u32(&mut self) -> Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i16(&mut self) -> Result<i16> {
        Ok(self.u16()? as i16)
    }

    pub fn f64(&mut self) -> Result<f64> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }

    pub fn fourcc(&mut self) -> Result<[u8; 4]> {
        let b = self.bytes(4)?;
        Ok([b[0], b[1], b[2], b[3]])
    }
}

/// Appends a 24-bit big-endian value; the caller guarantees it fits.
pub fn put_u24(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes()[1..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reads_fail_without_moving() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert!(r.u32().unwrap_err().is_need_more());
        assert_eq!(r.position(), 0);
        assert_eq!(r.u24().unwrap(), 0x010203);
        assert!(r.u8().is_err());
    }

    #[test]
    fn signed_24_bit() {
        assert_eq!(Reader::new(&[0xFF, 0xFF, 0xFF]).i24().unwrap(), -1);
        assert_eq!(Reader::new(&[0x80, 0, 0]).i24().unwrap(), -(1 << 23));
        assert_eq!(
            Reader::new(&[0x7F, 0xFF, 0xFF]).i24().unwrap(),
            (1 << 23) - 1
        );
    }
}
