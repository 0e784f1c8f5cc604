//! The TCP stream of one client connection, as the HTTP layer hands it to hyper: writes that make
//! no progress for the write timeout fail, so a client that stops reading cannot pin a response
//! (a long-poll's whole payload) in the node for ever. hyper then drops the connection.
//!
//! A websocket takes the bare stream back out ([`ClientStream::into_inner`]) and keeps its own
//! write deadline (`ws.rs`), so an idle websocket keeps no timer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// A client's TCP stream whose writes time out when the client takes nothing (see the module docs).
#[derive(Debug)]
pub struct ClientStream {
    inner: TcpStream,
    write_timeout: Duration,
    /// Runs from the first write the socket refused, until a write goes through.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl ClientStream {
    /// Wraps an accepted stream; writes fail once the client took nothing for `write_timeout`.
    pub fn new(inner: TcpStream, write_timeout: Duration) -> Self {
        Self { inner, write_timeout, stalled: None }
    }

    /// The bare stream (a websocket's connection task owns it from the upgrade on).
    pub fn into_inner(self) -> TcpStream {
        self.inner
    }

    /// The socket would block: waits for the deadline, which fails the write once it passes.
    fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let timeout = self.write_timeout;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client took nothing within the write timeout",
        )))
    }

    /// A write ended (done or failed): the next refusal starts a new wait.
    fn progressed<T>(&mut self, result: io::Result<T>) -> Poll<io::Result<T>> {
        self.stalled = None;
        Poll::Ready(result)
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(result) => this.progressed(result),
            Poll::Pending => this.poll_stalled(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => this.progressed(result),
            Poll::Pending => this.poll_stalled(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpSocket};

    /// A connected pair: the server's end wrapped, the peer with a small receive buffer.
    async fn pair(write_timeout: Duration) -> io::Result<(ClientStream, TcpStream)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let socket = TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(8 * 1024)?;
        let peer = socket.connect(listener.local_addr()?).await?;
        let (accepted, _) = listener.accept().await?;
        Ok((ClientStream::new(accepted, write_timeout), peer))
    }

    #[tokio::test]
    async fn writes_to_a_client_that_stopped_reading_time_out() -> io::Result<()> {
        let (mut stream, _peer) = pair(Duration::from_millis(200)).await?;
        let chunk = vec![0u8; 64 * 1024];
        let result = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                stream.write_all(&chunk).await?;
            }
        })
        .await;
        let error = match result {
            Ok(Err::<(), io::Error>(e)) => e,
            Ok(Ok(())) => unreachable!("the loop only ends on an error"),
            Err(_) => panic!("writes to a peer that never reads did not time out"),
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        Ok(())
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_not_cut_off() -> io::Result<()> {
        let (mut stream, mut peer) = pair(Duration::from_millis(300)).await?;
        let total = 2 * 1024 * 1024;
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            let mut read = 0;
            while read < total {
                // Far slower than the writer, but never the timeout without taking something.
                tokio::time::sleep(Duration::from_millis(10)).await;
                read += peer.read(&mut buf).await?;
            }
            io::Result::Ok(read)
        });
        stream.write_all(&vec![0u8; total]).await?;
        assert_eq!(reader.await.map_err(io::Error::other)??, total);
        Ok(())
    }
}
