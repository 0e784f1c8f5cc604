//! Reads client websocket frames with a buffer that fits the traffic.
//!
//! fastwebsockets' reader keeps a fixed 8 KiB buffer per connection, the largest single item in an
//! idle session's memory. This reader starts with a small buffer, grows it only for the frame at
//! hand, and drops it after a large frame, so an idle connection costs [`INITIAL`] bytes. It handles
//! only what a server reads: masked client frames (unmasked with fastwebsockets' `unmask`); frames
//! are still written with fastwebsockets.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use fastwebsockets::OpCode;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Buffer size of an idle connection: enough for a typical small message in one read.
const INITIAL: usize = 512;

/// Buffers grown past this are freed once emptied, instead of kept for the next frame.
const KEEP: usize = 4096;

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
    /// The client closed the connection.
    #[error("connection closed")]
    Eof,
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
pub(crate) struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    max_frame: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(io: R, max_frame: usize) -> Self {
        Self { io, buf: BytesMut::new(), max_frame }
    }

    /// The next frame; cancel-safe (bytes read so far stay in the buffer).
    pub(crate) async fn next(&mut self) -> Result<InFrame, ReadError> {
        loop {
            let needed = match self.parse()? {
                Parsed::Frame(frame) => return Ok(frame),
                Parsed::Need(n) => n,
            };
            let spare = self.buf.capacity() - self.buf.len();
            if spare < needed.max(1) {
                self.buf.reserve(needed.max(INITIAL));
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Err(ReadError::Eof);
            }
        }
    }

    fn parse(&mut self) -> Result<Parsed, ReadError> {
        let b = &self.buf[..];
        if b.len() < 2 {
            return Ok(Parsed::Need(2 - b.len()));
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
            126 => return Ok(Parsed::Need(4 - b.len())),
            127 => return Ok(Parsed::Need(10 - b.len())),
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
            return Ok(Parsed::Need(total - b.len()));
        }
        let mask = [b[header - 4], b[header - 3], b[header - 2], b[header - 1]];
        let mut frame = self.buf.split_to(total);
        frame.advance(header);
        fastwebsockets::unmask(&mut frame, mask);
        if self.buf.is_empty() && self.buf.capacity() > KEEP {
            self.buf = BytesMut::new();
        }
        Ok(Parsed::Frame(InFrame { fin, opcode, payload: frame.freeze() }))
    }
}

enum Parsed {
    Frame(InFrame),
    Need(usize),
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

    async fn read_all(bytes: Vec<u8>, max: usize) -> Vec<Result<InFrame, String>> {
        let mut reader = FrameReader::new(&bytes[..], max);
        let mut out = Vec::new();
        loop {
            match reader.next().await {
                Err(ReadError::Eof) => return out,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
                Ok(f) => out.push(Ok(f)),
            }
        }
    }

    #[tokio::test]
    async fn reads_small_medium_and_large_frames() {
        let big = vec![7u8; 70_000];
        let mut wire = masked(0x81, b"4hello");
        wire.extend(masked(0x82, &[0u8; 300]));
        wire.extend(masked(0x82, &big));
        let frames = read_all(wire, 1_000_000).await;
        let frames: Vec<InFrame> = frames.into_iter().map(|f| f.unwrap_or_else(|e| panic!("{e}"))).collect();
        assert_eq!(frames.len(), 3);
        assert_eq!(&frames[0].payload[..], b"4hello");
        assert_eq!(frames[0].opcode, OpCode::Text);
        assert_eq!(frames[1].payload.len(), 300);
        assert_eq!(&frames[2].payload[..], &big[..]);
    }

    #[tokio::test]
    async fn refuses_bad_frames() {
        let unmasked = vec![0x81, 0x01, b'x'];
        assert!(matches!(&read_all(unmasked, 100).await[..], [Err(_)]));
        assert!(matches!(&read_all(masked(0xC1, b"x"), 100).await[..], [Err(_)]), "reserved bit");
        assert!(matches!(&read_all(masked(0x09, b"x"), 100).await[..], [Err(_)]), "fragmented ping");
        assert!(matches!(&read_all(masked(0x82, &[0; 101]), 100).await[..], [Err(_)]), "too large");
        assert!(matches!(&read_all(masked(0x82, &[0; 100]), 100).await[..], [Ok(_)]), "at the limit");
    }
}
