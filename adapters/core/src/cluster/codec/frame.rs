//! The frame around every cluster message, whatever its kind: the fixed prefix, the msgpack
//! header's place and length, and the payload parts after it. Writing is [`Frame`]; reading is
//! [`split`] (the prefix, checked), [`header`] (a header through rmp-serde) and [`Parts`].
//!
//! ```text
//! 0      2         3      4           8               12                12+h
//! | "SB" | version | kind | h: u32 BE | n: u32 BE     | msgpack header | n × (len: u32 BE, bytes) |
//! ```
//!
//! With a cluster secret the kind byte's high bit is set and an HMAC tag follows ([`seal`](super::seal)).

use bytes::{Buf, Bytes};
use serde::{Deserialize, Serialize};
use switchboard_protocol::socketio::{self, Decoded, Packet};

use super::Kind;
use super::seal::{Key, SEALED, TAG_LEN};
use crate::error::CodecError;

/// The first two bytes of every cluster message, to tell ours from another program's on a shared channel.
pub const MAGIC: [u8; 2] = *b"SB";
/// The message-set version this build speaks; a node ignores (and counts) any other.
pub const VERSION: u8 = 1;
/// Bytes before the msgpack header: magic, version, kind, header length, number of parts.
pub const PREFIX_LEN: usize = 12;
/// Nesting the header needs (arrays of arrays of strings); deeper input is refused early.
const MAX_HEADER_DEPTH: usize = 8;
/// Most payload parts in a frame: a Socket.IO packet's text and as many attachments as a
/// Socket.IO packet may announce, so a count a peer sent never sizes more than that.
pub const MAX_PAYLOAD_PARTS: usize = 1 + socketio::DEFAULT_MAX_ATTACHMENTS;

/// A frame being written: the prefix first (lengths filled in as they are known), then the header,
/// then the parts.
pub(super) struct Frame {
    buf: Vec<u8>,
    parts: u32,
}

impl Frame {
    /// A frame of `kind` with room for about `payload` bytes of parts.
    pub(super) fn new(kind: Kind, payload: usize) -> Self {
        let mut buf = Vec::with_capacity(PREFIX_LEN + 64 + payload + TAG_LEN);
        buf.extend_from_slice(&MAGIC);
        buf.push(VERSION);
        buf.push(kind as u8);
        buf.extend_from_slice(&[0; 8]);
        Self { buf, parts: 0 }
    }

    /// Writes the header through rmp-serde.
    pub(super) fn head(&mut self, head: &impl Serialize) -> Result<(), CodecError> {
        self.head_with(|buf| rmp_serde::encode::write(buf, head).map_err(|_| CodecError::Encode))
    }

    /// Writes the header with `write` (by hand, for the broadcast fast path), then its length.
    pub(super) fn head_with(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), CodecError>,
    ) -> Result<(), CodecError> {
        write(&mut self.buf)?;
        let len = u32::try_from(self.buf.len() - PREFIX_LEN).map_err(|_| CodecError::Encode)?;
        self.buf[4..8].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    fn part(&mut self, bytes: &[u8]) -> Result<(), CodecError> {
        let len = u32::try_from(bytes.len()).map_err(|_| CodecError::Encode)?;
        self.parts = self.parts.checked_add(1).ok_or(CodecError::Encode)?;
        if self.parts as usize > MAX_PAYLOAD_PARTS {
            return Err(CodecError::Encode);
        }
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// A Socket.IO encoding as parts: the text, then each attachment.
    pub(super) fn packet(&mut self, packet: &socketio::Encoded) -> Result<(), CodecError> {
        self.part(&packet.text)?;
        packet.attachments.iter().try_for_each(|a| self.part(a))
    }

    /// The frame's bytes, sealed with `key` when there is one.
    pub(super) fn finish(mut self, key: Option<&Key>) -> Bytes {
        self.buf[8..PREFIX_LEN].copy_from_slice(&self.parts.to_be_bytes());
        if let Some(key) = key {
            key.seal(&mut self.buf);
        }
        Bytes::from(self.buf)
    }
}

/// A received frame's kind, header bytes and parts (framing checked, nothing decoded yet).
pub(super) fn split(frame: &Bytes) -> Result<(Kind, &[u8], Parts), CodecError> {
    if frame.len() < PREFIX_LEN {
        return Err(if frame.len() >= 2 && frame[..2] != MAGIC {
            CodecError::BadMagic
        } else {
            CodecError::Truncated
        });
    }
    if frame[..2] != MAGIC {
        return Err(CodecError::BadMagic);
    }
    if frame[2] != VERSION {
        return Err(CodecError::UnsupportedVersion(frame[2]));
    }
    // A sealed frame reaches here opened (its tag checked and cut off), the flag still set.
    let kind_byte = frame[3] & !SEALED;
    let kind = Kind::from_u8(kind_byte).ok_or(CodecError::UnknownKind(kind_byte))?;
    let head_len = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let part_count = u32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]);
    let head_end = usize::try_from(head_len)
        .ok()
        .and_then(|h| h.checked_add(PREFIX_LEN))
        .filter(|&end| end <= frame.len())
        .ok_or(CodecError::Truncated)?;
    let parts = Parts::new(frame.slice(head_end..), part_count)?;
    Ok((kind, &frame[PREFIX_LEN..head_end], parts))
}

/// The header bytes of a frame of this version and a known kind; `None` for anything else (cut
/// short included). Reads no further than the header.
pub(super) fn head_of(frame: &[u8]) -> Option<&[u8]> {
    if frame.len() < PREFIX_LEN || frame[..2] != MAGIC || frame[2] != VERSION {
        return None;
    }
    Kind::from_u8(frame[3] & !SEALED)?;
    let head_len = usize::try_from(u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]])).ok()?;
    frame.get(PREFIX_LEN..PREFIX_LEN.checked_add(head_len)?)
}

/// Reads a header `[sender, nsp, body]` through rmp-serde, nesting and array elements limited.
pub(super) fn header<'a, B: Deserialize<'a>>(head: &'a [u8]) -> Result<(&'a str, &'a str, B), CodecError> {
    super::msgpack::check_items(head, MAX_HEADER_DEPTH)?;
    let mut de = rmp_serde::Deserializer::from_read_ref(head);
    de.set_max_depth(MAX_HEADER_DEPTH);
    Deserialize::deserialize(&mut de).map_err(|_| CodecError::InvalidHeader)
}

/// The payload parts after the header, each a slice of the received buffer (no copy). Their
/// framing is checked whole when read, so taking them out cannot fail.
pub(super) struct Parts {
    rest: Bytes,
    left: usize,
}

impl Parts {
    /// The `count` parts in `rest`: `Truncated` if a length points past the end, `InvalidFraming`
    /// if bytes are left after the last one.
    fn new(rest: Bytes, count: u32) -> Result<Self, CodecError> {
        // Each part takes at least its 4-byte length, and there are at most `MAX_PAYLOAD_PARTS`:
        // never trust `count` for an allocation.
        let left = usize::try_from(count).map_err(|_| CodecError::InvalidFraming)?;
        if left > MAX_PAYLOAD_PARTS {
            return Err(CodecError::InvalidFraming);
        }
        if left > rest.len() / 4 {
            return Err(CodecError::Truncated);
        }
        let mut unread = &rest[..];
        for _ in 0..left {
            if unread.len() < 4 {
                return Err(CodecError::Truncated);
            }
            let len = usize::try_from(unread.get_u32()).map_err(|_| CodecError::InvalidFraming)?;
            if len > unread.len() {
                return Err(CodecError::Truncated);
            }
            unread.advance(len);
        }
        if !unread.is_empty() {
            return Err(CodecError::InvalidFraming);
        }
        Ok(Self { rest, left })
    }

    fn next(&mut self) -> Option<Bytes> {
        if self.left == 0 || self.rest.len() < 4 {
            return None;
        }
        self.left -= 1;
        let len = usize::try_from(self.rest.get_u32()).ok()?;
        Some(self.rest.split_to(len.min(self.rest.len())))
    }

    /// For the kinds without payload: there must be none.
    pub(super) fn none(&self) -> Result<(), CodecError> {
        if self.left == 0 { Ok(()) } else { Err(CodecError::InvalidFraming) }
    }

    /// The parts as the Socket.IO encoding they carry: text first, then attachments.
    pub(super) fn encoded(mut self) -> Result<socketio::Encoded, CodecError> {
        let text = self.next().ok_or(CodecError::MissingPayload)?;
        let mut attachments = Vec::with_capacity(self.left);
        while let Some(part) = self.next() {
            attachments.push(part);
        }
        Ok(socketio::Encoded { text, attachments })
    }

    /// Decodes the packet the parts carry, attachments resolved into binary values.
    pub(super) fn packet(mut self) -> Result<Packet, CodecError> {
        let text = self.next().ok_or(CodecError::MissingPayload)?;
        let text = std::str::from_utf8(&text).map_err(|_| CodecError::InvalidUtf8)?;
        match Packet::decode(text)? {
            Decoded::Complete(packet) if self.left == 0 => Ok(packet),
            Decoded::Complete(_) => Err(CodecError::InvalidFraming),
            Decoded::NeedsAttachments(mut partial) => {
                while let Some(attachment) = self.next() {
                    if let Some(packet) = partial.push(attachment)? {
                        return if self.left == 0 { Ok(packet) } else { Err(CodecError::InvalidFraming) };
                    }
                }
                Err(CodecError::MissingPayload)
            }
        }
    }
}
