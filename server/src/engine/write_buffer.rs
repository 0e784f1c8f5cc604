//! A write half that coalesces every frame written between two flushes into one write.
//!
//! fastwebsockets writes each frame as it is given; behind this buffer, the websocket writer
//! queues all pending frames and then flushes once, so a burst costs one syscall, not one per frame.
//! The buffer is released after a flush that needed a large one, so idle sessions hold almost nothing.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::AsyncWrite;

/// Buffers above this size are freed after a flush instead of kept for reuse.
const KEEP_CAPACITY: usize = 16 * 1024;

/// See the module docs.
pub(crate) struct WriteBuffer<W> {
    inner: W,
    buf: Vec<u8>,
    written: usize,
}

impl<W> WriteBuffer<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self { inner, buf: Vec::new(), written: 0 }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for WriteBuffer<W> {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut n = 0;
        for b in bufs {
            this.buf.extend_from_slice(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.written < this.buf.len() {
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &this.buf[this.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            this.written += n;
        }
        this.written = 0;
        if this.buf.capacity() > KEEP_CAPACITY {
            this.buf = Vec::new();
        } else {
            this.buf.clear();
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
