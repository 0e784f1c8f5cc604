//! Decodes client websocket frames from bytes the connection task read.
//!
//! fastwebsockets' reader keeps a fixed 8 KiB buffer per connection, the largest single item in an
//! idle session's memory. The connection task reads into a stack buffer instead and hands the bytes
//! here; this decoder keeps only an incomplete frame, and nothing at all between messages. It handles
//! only what a server reads: masked client frames (unmasked with fastwebsockets' `unmask`).

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use fastwebsockets::OpCode;

/// One frame as the client sent it, unmasked.
#[derive(Debug)]
pub(crate) struct InFrame {
    pub(crate) fin: bool,
    pub(crate) opcode: OpCode,
    pub(crate) payload: Bytes,
}

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// An I/O error.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A frame that breaks RFC 6455 for a server (unmasked, reserved bits, bad control frame).
    #[error("websocket protocol violation: {0}")]
    Protocol(&'static str),
    /// A frame larger than the message limit.
    #[error("frame too large")]
    TooLarge,
}

/// See the module docs.
pub(crate) struct FrameDecoder {
    buf: BytesMut,
    max_frame: usize,
}

impl FrameDecoder {
    pub(crate) fn new(max_frame: usize) -> Self {
        Self { buf: BytesMut::new(), max_frame }
    }

    /// Appends bytes read from the connection.
    pub(crate) fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, `None` until more bytes arrive.
    pub(crate) fn next_frame(&mut self) -> Result<Option<InFrame>, ReadError> {
        let frame = self.parse()?;
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            // Between messages an idle connection keeps no buffer at all.
            self.buf = BytesMut::new();
        }
        Ok(frame)
    }

    fn parse(&mut self) -> Result<Option<InFrame>, ReadError> {
        let b = &self.buf[..];
        if b.len() < 2 {
            return Ok(None);
        }
        if b[0] & 0x70 != 0 {
            return Err(ReadError::Protocol("reserved bits set"));
        }
        let fin = b[0] & 0x80 != 0;
        let opcode = match b[0] & 0x0f {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return Err(ReadError::Protocol("unknown opcode")),
        };
        if b[1] & 0x80 == 0 {
            return Err(ReadError::Protocol("client frame not masked"));
        }
        let (len, len_bytes) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 2),
            127 if b.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&b[2..10]);
                (u64::from_be_bytes(n), 8)
            }
            126 | 127 => return Ok(None),
            n => (u64::from(n), 0),
        };
        let control = matches!(opcode, OpCode::Close | OpCode::Ping | OpCode::Pong);
        if control && (len > 125 || !fin) {
            return Err(ReadError::Protocol("bad control frame"));
        }
        let len = usize::try_from(len).map_err(|_| ReadError::TooLarge)?;
        if len > self.max_frame {
            return Err(ReadError::TooLarge);
        }
        let header = 2 + len_bytes + 4;
        let total = header + len;
        if b.len() < total {
            return Ok(None);
        }
        let mask = [b[header - 4], b[header - 3], b[header - 2], b[header - 1]];
        let mut frame = self.buf.split_to(total);
        frame.advance(header);
        fastwebsockets::unmask(&mut frame, mask);
        Ok(Some(InFrame { fin, opcode, payload: frame.freeze() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n < 65536 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// Feeds the bytes in small pieces, as reads would deliver them.
    fn read_all(bytes: Vec<u8>, max: usize) -> Vec<Result<InFrame, String>> {
        let mut decoder = FrameDecoder::new(max);
        let mut out = Vec::new();
        for piece in bytes.chunks(7) {
            decoder.extend(piece);
            loop {
                match decoder.next_frame() {
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e.to_string()));
                        return out;
                    }
                    Ok(Some(f)) => out.push(Ok(f)),
                }
            }
        }
        assert!(decoder.buf.is_empty() && decoder.buf.capacity() == 0, "idle decoder keeps no buffer");
        out
    }

    #[test]
    fn reads_small_medium_and_large_frames() {
        let big = vec![7u8; 70_000];
        let mut wire = masked(0x81, b"4hello");
        wire.extend(masked(0x82, &[0u8; 300]));
        wire.extend(masked(0x82, &big));
        let frames = read_all(wire, 1_000_000);
        let frames: Vec<InFrame> = frames.into_iter().map(|f| f.unwrap_or_else(|e| panic!("{e}"))).collect();
        assert_eq!(frames.len(), 3);
        assert_eq!(&frames[0].payload[..], b"4hello");
        assert_eq!(frames[0].opcode, OpCode::Text);
        assert_eq!(frames[1].payload.len(), 300);
        assert_eq!(&frames[2].payload[..], &big[..]);
    }

    #[test]
    fn refuses_bad_frames() {
        let unmasked = vec![0x81, 0x01, b'x'];
        assert!(matches!(&read_all(unmasked, 100)[..], [Err(_)]));
        assert!(matches!(&read_all(masked(0xC1, b"x"), 100)[..], [Err(_)]), "reserved bit");
        assert!(matches!(&read_all(masked(0x09, b"x"), 100)[..], [Err(_)]), "fragmented ping");
        assert!(matches!(&read_all(masked(0x82, &[0; 101]), 100)[..], [Err(_)]), "too large");
        assert!(matches!(&read_all(masked(0x82, &[0; 100]), 100)[..], [Ok(_)]), "at the limit");
    }
}
