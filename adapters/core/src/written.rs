//! A signal that a broadcast's local copies have all been taken by their transports, so a
//! publisher can pace itself on its receivers the way Node's synchronous `ws.send` does.
//!
//! The first frame's bytes are built over an owner whose `Drop` fires the signal: every recipient
//! queue holds a reference-counted clone of those bytes, and a transport drops its clone once the
//! frame is written to the socket (or copied into the connection's own buffer) or into a polling
//! response. So tracking costs nothing per recipient beyond the clone every delivery makes anyway.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::oneshot;

/// The frame's bytes plus the sender fired when the last clone of them is dropped.
struct Tracked {
    bytes: Vec<u8>,
    done: Option<oneshot::Sender<()>>,
}

impl AsRef<[u8]> for Tracked {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
    }
}

/// Builds `bytes` so that [`Written`] resolves when the last clone of the result is dropped.
pub(crate) fn tracked(bytes: Vec<u8>) -> (Bytes, Written) {
    let (tx, rx) = oneshot::channel();
    (Bytes::from_owner(Tracked { bytes, done: Some(tx) }), Written(rx))
}

/// Resolves once every local recipient's transport has taken the broadcast (immediately when it
/// had no local recipient). A closed session drops its queue with the session, which also counts.
#[derive(Debug)]
pub struct Written(oneshot::Receiver<()>);

impl Future for Written {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // A dropped sender is the same event as a sent one: the owner was dropped.
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_when_the_last_clone_drops() {
        let (bytes, mut written) = tracked(b"4hello".to_vec());
        let copies: Vec<Bytes> = (0..3).map(|_| bytes.clone()).collect();
        drop(bytes);
        assert_eq!(&copies[0][..], b"4hello");
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Pin::new(&mut written).poll(&mut cx).is_pending());
        drop(copies);
        written.await;
    }
}
