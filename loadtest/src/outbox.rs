//! Packets waiting to be written, packed into one reused buffer: a send costs a copy and an in-place
//! mask, never an allocation once the buffer has grown to the largest burst.

use bytes::{BufMut, BytesMut};
use fastwebsockets::{Frame, Payload, WebSocketWrite};
use switchboard_protocol::engineio::RECORD_SEPARATOR;
use tokio::io::AsyncWrite;

use crate::ConnError;

/// Engine.IO text packets queued by a behaviour, written as one text frame each on the next flush.
#[derive(Debug, Default)]
pub struct Outbox {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Outbox {
    /// Queues one packet (its bytes as given, e.g. `b"3"` for a pong).
    pub fn push(&mut self, packet: &[u8]) {
        self.push_with(|buf| buf.extend_from_slice(packet));
    }

    /// Queues one packet that `write` appends to the buffer (so templates fill in ids and stamps in place).
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.buf);
        self.ends.push(self.buf.len());
    }

    /// Number of queued packets.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The queued packets, in order (for tests and inspection).
    pub fn packets(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.ends.iter().copied()).map(|(s, e)| &self.buf[s..e])
    }

    /// Bytes [`Outbox::encode_payload`] appends.
    pub fn payload_len(&self) -> usize {
        self.buf.len() + self.ends.len().saturating_sub(1)
    }

    /// Appends the queued packets as one long-polling payload (joined by the record separator), the body
    /// of a POST. They are already text-encoded, so they are copied as they are, not decoded again.
    pub fn encode_payload(&self, out: &mut BytesMut) {
        out.reserve(self.payload_len());
        for (i, packet) in self.packets().enumerate() {
            if i > 0 {
                out.put_u8(RECORD_SEPARATOR);
            }
            out.put_slice(packet);
        }
    }

    /// Writes every queued packet as a masked text frame, then empties the queue (keeping its capacity).
    pub async fn flush<S: AsyncWrite + Unpin>(
        &mut self,
        ws: &mut WebSocketWrite<S>,
    ) -> Result<(), ConnError> {
        let mut start = 0;
        for &end in &self.ends {
            let frame = Frame::text(Payload::BorrowedMut(&mut self.buf[start..end]));
            ws.write_frame(frame).await.map_err(ConnError::from_ws)?;
            start = end;
        }
        self.clear();
        Ok(())
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_packets_back_to_back() {
        let mut out = Outbox::default();
        out.push(b"3");
        out.push_with(|b| b.extend_from_slice(b"42[\"a\"]"));
        assert_eq!(out.len(), 2);
        assert_eq!(out.packets().collect::<Vec<_>>(), vec![&b"3"[..], &b"42[\"a\"]"[..]]);
        out.clear();
        assert!(out.is_empty());
    }

    #[test]
    fn encodes_a_polling_payload_the_codec_splits_back() {
        use switchboard_protocol::engineio::{Packet, decode_payload};
        let mut out = Outbox::default();
        out.push(b"3");
        out.push(br#"420["echo","x"]"#);
        let mut body = BytesMut::new();
        out.encode_payload(&mut body);
        assert_eq!(&body[..], b"3\x1e420[\"echo\",\"x\"]");
        assert_eq!(body.len(), out.payload_len());
        let packets: Vec<Packet> =
            decode_payload(body.freeze()).into_iter().flatten().collect::<Result<_, _>>().unwrap_or_default();
        assert_eq!(
            packets,
            vec![
                Packet::Pong(bytes::Bytes::new()),
                Packet::Message(bytes::Bytes::from_static(br#"20["echo","x"]"#))
            ]
        );
    }
}
