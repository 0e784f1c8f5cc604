//! Writes server websocket frames without a buffer per connection.
//!
//! Frames are built (headers by fastwebsockets' `fmt_head`) into one buffer per thread and written
//! with as few syscalls as the socket allows: a burst of queued packets costs one `write`. Only what
//! the socket did not take is copied into the connection's own buffer, so an idle connection, or one
//! whose client keeps up, holds no write buffer at all. The writer also notes since when the client
//! has taken nothing, for the connection's write timeout.

use std::cell::RefCell;
use std::io;

use fastwebsockets::{Frame, OpCode, Payload};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A per-thread buffer that grew past this is freed after use.
const SCRATCH_KEEP: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Appends one unmasked, final frame.
pub(crate) fn push_frame(buf: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    let mut head = [0u8; 16];
    let n = Frame::new(true, opcode, None, Payload::Borrowed(payload)).fmt_head(&mut head);
    buf.reserve(n + payload.len());
    buf.extend_from_slice(&head[..n]);
    buf.extend_from_slice(payload);
}

/// What a connection still has to write; empty, without an allocation, when the client keeps up.
#[derive(Debug, Default)]
pub(crate) struct FrameWriter {
    pending: Vec<u8>,
    /// While bytes are pending: when the client last took some (or when they started waiting).
    progress_at: Option<Instant>,
}

impl FrameWriter {
    /// Whether everything handed over is on the wire.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// While bytes are pending, when the client last took any: the write timeout counts from here.
    pub(crate) fn waiting_since(&self) -> Option<Instant> {
        self.progress_at
    }

    /// Notes a write of `written` bytes that left `self.pending` as it is now.
    fn note(&mut self, written: usize) {
        self.progress_at = match self.progress_at {
            _ if self.pending.is_empty() => None,
            Some(at) if written == 0 => Some(at),
            _ => Some(Instant::now()),
        };
    }

    /// Writes the frames `build` appends: at once if nothing is pending, after the pending bytes otherwise.
    pub(crate) fn send(&mut self, stream: &TcpStream, build: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        if !self.pending.is_empty() {
            build(&mut self.pending);
            return self.flush(stream);
        }
        let written = SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            build(buf);
            let result = write_some(stream, buf).inspect(|&written| {
                if written < buf.len() {
                    self.pending.extend_from_slice(&buf[written..]);
                }
            });
            if buf.capacity() > SCRATCH_KEEP {
                *buf = Vec::new();
            }
            result
        })?;
        self.note(written);
        Ok(())
    }

    /// Writes as much of the pending bytes as the socket takes now.
    pub(crate) fn flush(&mut self, stream: &TcpStream) -> io::Result<()> {
        let written = write_some(stream, &self.pending)?;
        if written == self.pending.len() {
            self.pending = Vec::new();
        } else {
            self.pending.drain(..written);
        }
        self.note(written);
        Ok(())
    }
}

/// Writes until done or the socket would block; returns how much was written.
fn write_some(stream: &TcpStream, data: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < data.len() {
        match stream.try_write(&data[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_small_medium_and_large_payloads() {
        let mut buf = Vec::new();
        push_frame(&mut buf, OpCode::Text, b"4hi");
        assert_eq!(buf, [0x81, 3, b'4', b'h', b'i']);
        buf.clear();
        push_frame(&mut buf, OpCode::Binary, &[0u8; 300]);
        assert_eq!(&buf[..4], &[0x82, 126, 1, 44]);
        assert_eq!(buf.len(), 4 + 300);
        buf.clear();
        push_frame(&mut buf, OpCode::Binary, &vec![0u8; 70_000]);
        assert_eq!(&buf[..2], &[0x82, 127]);
        assert_eq!(buf.len(), 10 + 70_000);
    }
}
