//! The msgpack subset the broadcast header needs (arrays, strings, unsigned integers), written and
//! read by hand: the same bytes rmp-serde writes, without its per-call cost on the hot path.
//! Everything else goes through rmp-serde, after [`check_items`] has bounded what it may allocate.

use crate::error::CodecError;

/// Most array elements in one header, all arrays together: each may become an allocation (a room
/// name is an `Arc<str>`, a socket a `SocketInfo`), so a header of 1-byte elements would decode
/// to about 60 times its size. 1,048,576 bounds that to tens of MiB, and still carries a
/// fetchSockets answer of 100,000 sockets in a few rooms each.
pub const MAX_HEADER_ITEMS: usize = 1 << 20;

/// A length msgpack can carry (32 bits).
fn len_u32(n: usize) -> Result<u32, CodecError> {
    u32::try_from(n).map_err(|_| CodecError::Encode)
}

/// Writes the header of an array of `n` elements.
pub(super) fn write_array_len(buf: &mut Vec<u8>, n: usize) -> Result<(), CodecError> {
    let n = len_u32(n)?;
    match n {
        0..=15 => buf.push(0x90 | n as u8),
        16..=0xffff => {
            buf.push(0xdc);
            buf.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            buf.push(0xdd);
            buf.extend_from_slice(&n.to_be_bytes());
        }
    }
    Ok(())
}

/// Writes a string.
pub(super) fn write_str(buf: &mut Vec<u8>, s: &str) -> Result<(), CodecError> {
    let n = len_u32(s.len())?;
    match n {
        0..=31 => buf.push(0xa0 | n as u8),
        32..=0xff => buf.extend_from_slice(&[0xd9, n as u8]),
        0x100..=0xffff => {
            buf.push(0xda);
            buf.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            buf.push(0xdb);
            buf.extend_from_slice(&n.to_be_bytes());
        }
    }
    buf.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Writes an unsigned integer in its shortest form.
pub(super) fn write_uint(buf: &mut Vec<u8>, v: u64) {
    match v {
        0..=0x7f => buf.push(v as u8),
        0x80..=0xff => buf.extend_from_slice(&[0xcc, v as u8]),
        0x100..=0xffff => {
            buf.push(0xcd);
            buf.extend_from_slice(&(v as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            buf.push(0xce);
            buf.extend_from_slice(&(v as u32).to_be_bytes());
        }
        _ => {
            buf.push(0xcf);
            buf.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// Reads msgpack values off the front of a header, at most [`MAX_HEADER_ITEMS`] array elements.
pub(super) struct Reader<'a> {
    rest: &'a [u8],
    items_left: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(head: &'a [u8]) -> Self {
        Self { rest: head, items_left: MAX_HEADER_ITEMS }
    }

    /// Whether everything was read.
    pub(super) fn is_done(&self) -> bool {
        self.rest.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if n > self.rest.len() {
            return Err(CodecError::InvalidHeader);
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    fn be(&mut self, n: usize) -> Result<u64, CodecError> {
        Ok(self.take(n)?.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    pub(super) fn array_len(&mut self) -> Result<usize, CodecError> {
        let n = match self.byte()? {
            m @ 0x90..=0x9f => u64::from(m & 0x0f),
            0xdc => self.be(2)?,
            0xdd => self.be(4)?,
            _ => return Err(CodecError::InvalidHeader),
        };
        let n = usize::try_from(n).map_err(|_| CodecError::InvalidHeader)?;
        // Every element takes a byte at least: a length beyond the input is a lie.
        if n > self.rest.len() {
            return Err(CodecError::InvalidHeader);
        }
        self.items_left = self.items_left.checked_sub(n).ok_or(CodecError::InvalidHeader)?;
        Ok(n)
    }

    /// Skips one value of any type rmp-serde writes for a header (arrays, strings, integers,
    /// nil, booleans), at most `depth` arrays deep; anything else is refused.
    fn skip(&mut self, depth: usize) -> Result<(), CodecError> {
        let marker = *self.rest.first().ok_or(CodecError::InvalidHeader)?;
        if matches!(marker, 0x90..=0x9f | 0xdc | 0xdd) {
            let depth = depth.checked_sub(1).ok_or(CodecError::InvalidHeader)?;
            for _ in 0..self.array_len()? {
                self.skip(depth)?;
            }
            return Ok(());
        }
        let n = match self.byte()? {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => 0,
            0xcc | 0xd0 => 1,
            0xcd | 0xd1 => 2,
            0xce | 0xd2 => 4,
            0xcf | 0xd3 => 8,
            m @ 0xa0..=0xbf => u64::from(m & 0x1f),
            0xd9 => self.be(1)?,
            0xda => self.be(2)?,
            0xdb => self.be(4)?,
            _ => return Err(CodecError::InvalidHeader),
        };
        self.take(usize::try_from(n).map_err(|_| CodecError::InvalidHeader)?).map(|_| ())
    }

    pub(super) fn str(&mut self) -> Result<&'a str, CodecError> {
        let n = match self.byte()? {
            m @ 0xa0..=0xbf => u64::from(m & 0x1f),
            0xd9 => self.be(1)?,
            0xda => self.be(2)?,
            0xdb => self.be(4)?,
            _ => return Err(CodecError::InvalidHeader),
        };
        let n = usize::try_from(n).map_err(|_| CodecError::InvalidHeader)?;
        std::str::from_utf8(self.take(n)?).map_err(|_| CodecError::InvalidHeader)
    }

    pub(super) fn uint(&mut self) -> Result<u64, CodecError> {
        match self.byte()? {
            m @ 0x00..=0x7f => Ok(u64::from(m)),
            0xcc => self.be(1),
            0xcd => self.be(2),
            0xce => self.be(4),
            0xcf => self.be(8),
            _ => Err(CodecError::InvalidHeader),
        }
    }

    pub(super) fn strs(&mut self) -> Result<Vec<&'a str>, CodecError> {
        let n = self.array_len()?;
        (0..n).map(|_| self.str()).collect()
    }
}

/// Refuses a header with more than [`MAX_HEADER_ITEMS`] array elements, nested deeper than
/// `depth`, holding types no header has, or with bytes after its one value, before rmp-serde
/// allocates anything for it.
pub(super) fn check_items(head: &[u8], depth: usize) -> Result<(), CodecError> {
    let mut r = Reader::new(head);
    r.skip(depth)?;
    if r.is_done() { Ok(()) } else { Err(CodecError::InvalidHeader) }
}
