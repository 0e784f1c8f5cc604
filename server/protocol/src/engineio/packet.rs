//! One Engine.IO packet: a type digit followed by its data, or a raw binary message.

use bytes::{BufMut, Bytes, BytesMut};

use crate::DecodeError;

/// The seven Engine.IO packet types, numbered as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// Server → client handshake carrying the session parameters as JSON.
    Open = 0,
    /// Either side ends the session.
    Close = 1,
    /// Heartbeat request (server → client, or `probe` during an upgrade).
    Ping = 2,
    /// Heartbeat answer.
    Pong = 3,
    /// Application data, text or binary.
    Message = 4,
    /// Client confirms the switch to the probed transport.
    Upgrade = 5,
    /// Does nothing; ends a pending long-poll during an upgrade.
    Noop = 6,
}

impl PacketType {
    /// The ASCII digit that starts a text-encoded packet of this type.
    pub const fn digit(self) -> u8 {
        b'0' + self as u8
    }

    /// Reads the type digit, the only place where a type byte is trusted.
    pub const fn from_digit(byte: u8) -> Result<Self, DecodeError> {
        Ok(match byte {
            b'0' => Self::Open,
            b'1' => Self::Close,
            b'2' => Self::Ping,
            b'3' => Self::Pong,
            b'4' => Self::Message,
            b'5' => Self::Upgrade,
            b'6' => Self::Noop,
            other => return Err(DecodeError::UnknownType(other)),
        })
    }

    /// Whether packets of this type may carry data after the type digit.
    const fn takes_data(self) -> bool {
        matches!(self, Self::Open | Self::Ping | Self::Pong | Self::Message)
    }
}

/// A decoded Engine.IO packet; text data is kept as validated UTF-8 bytes so it can be shared without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Handshake JSON (server → client).
    Open(Bytes),
    /// End of session.
    Close,
    /// Heartbeat request; the data is empty or `probe`.
    Ping(Bytes),
    /// Heartbeat answer; echoes the ping's data.
    Pong(Bytes),
    /// Text message (UTF-8).
    Message(Bytes),
    /// Binary message: raw bytes on websocket, `b` + base64 on polling.
    Binary(Bytes),
    /// Transport switch confirmation.
    Upgrade,
    /// Filler.
    Noop,
}

impl Packet {
    /// The wire type of this packet (binary messages are messages).
    pub fn packet_type(&self) -> PacketType {
        match self {
            Self::Open(_) => PacketType::Open,
            Self::Close => PacketType::Close,
            Self::Ping(_) => PacketType::Ping,
            Self::Pong(_) => PacketType::Pong,
            Self::Message(_) | Self::Binary(_) => PacketType::Message,
            Self::Upgrade => PacketType::Upgrade,
            Self::Noop => PacketType::Noop,
        }
    }

    /// The data carried after the type digit (or the raw bytes of a binary message).
    pub fn data(&self) -> &[u8] {
        match self {
            Self::Open(d) | Self::Ping(d) | Self::Pong(d) | Self::Message(d) | Self::Binary(d) => d,
            Self::Close | Self::Upgrade | Self::Noop => &[],
        }
    }

    /// Whether this packet travels as binary (a websocket binary frame, `b` on polling).
    pub fn is_binary(&self) -> bool {
        matches!(self, Self::Binary(_))
    }

    /// Decodes a text packet (a websocket text frame, or one record of a polling payload).
    ///
    /// The input must be valid UTF-8; it is checked here unless the caller already did
    /// (websocket text frames), see [`Packet::decode_text_utf8`].
    pub fn decode_text(bytes: Bytes) -> Result<Self, DecodeError> {
        std::str::from_utf8(&bytes).map_err(|_| DecodeError::InvalidUtf8)?;
        Self::decode_text_utf8(bytes)
    }

    /// Decodes a text packet whose bytes are already known to be UTF-8.
    pub fn decode_text_utf8(mut bytes: Bytes) -> Result<Self, DecodeError> {
        let Some(&first) = bytes.first() else {
            return Err(DecodeError::Empty);
        };
        let kind = PacketType::from_digit(first)?;
        let data = bytes.split_off(1);
        if !kind.takes_data() && !data.is_empty() {
            return Err(DecodeError::UnexpectedData(first as char));
        }
        Ok(match kind {
            PacketType::Open => Self::Open(data),
            PacketType::Close => Self::Close,
            PacketType::Ping => Self::Ping(data),
            PacketType::Pong => Self::Pong(data),
            PacketType::Message => Self::Message(data),
            PacketType::Upgrade => Self::Upgrade,
            PacketType::Noop => Self::Noop,
        })
    }

    /// Decodes a websocket binary frame: always a binary message, the bytes as they came.
    pub fn decode_binary(bytes: Bytes) -> Self {
        Self::Binary(bytes)
    }

    /// Length of [`Packet::encode_text`]'s output, so buffers can be sized once.
    pub fn text_len(&self) -> usize {
        match self {
            Self::Binary(d) => 1 + base64_len(d.len()),
            other => 1 + other.data().len(),
        }
    }

    /// Appends the text encoding: type digit + data, or `b` + base64 for a binary message (polling form).
    pub fn encode_text(&self, out: &mut BytesMut) {
        match self {
            Self::Binary(d) => Encoded::Binary(d.clone()).encode_polling(out),
            other => {
                out.reserve(1 + other.data().len());
                out.put_u8(other.packet_type().digit());
                out.put_slice(other.data());
            }
        }
    }

    /// The websocket frame payload for this packet: raw bytes for binary (no prefix), text encoding otherwise.
    pub fn to_ws_payload(&self) -> Bytes {
        match self {
            Self::Binary(d) => d.clone(),
            other => {
                let mut out = BytesMut::with_capacity(other.text_len());
                other.encode_text(&mut out);
                out.freeze()
            }
        }
    }
}

/// A packet encoded once for the wire and shared by every recipient: the text form (type digit + data)
/// or the raw bytes of a binary message. Cloning only bumps a reference count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoded {
    /// Type digit followed by UTF-8 data: one websocket text frame, or one polling record as is.
    Text(Bytes),
    /// Raw binary message: one websocket binary frame, or `b` + base64 on polling.
    Binary(Bytes),
}

impl Encoded {
    /// Encodes a text message once (`4` + data), ready to be shared with many sessions.
    pub fn message(data: &[u8]) -> Self {
        let mut out = BytesMut::with_capacity(1 + data.len());
        out.put_u8(PacketType::Message.digit());
        out.put_slice(data);
        Self::Text(out.freeze())
    }

    /// Bytes this packet occupies in a session's outgoing queue.
    pub fn len(&self) -> usize {
        match self {
            Self::Text(b) | Self::Binary(b) => b.len(),
        }
    }

    /// Whether the packet carries no bytes at all (never true for a valid packet).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the polling form: text as is, binary as `b` + base64.
    pub fn encode_polling(&self, out: &mut BytesMut) {
        match self {
            Self::Text(b) => out.extend_from_slice(b),
            Self::Binary(d) => {
                out.reserve(1 + base64_len(d.len()));
                out.put_u8(b'b');
                let start = out.len();
                out.resize(start + base64_len(d.len()), 0);
                let written = base64_encode_slice(d, &mut out[start..]);
                out.truncate(start + written);
            }
        }
    }
}

impl From<&Packet> for Encoded {
    fn from(packet: &Packet) -> Self {
        match packet {
            Packet::Binary(d) => Self::Binary(d.clone()),
            other => Self::Text(other.to_ws_payload()),
        }
    }
}

impl From<Packet> for Encoded {
    fn from(packet: Packet) -> Self {
        Self::from(&packet)
    }
}

fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

fn base64_encode_slice(input: &[u8], out: &mut [u8]) -> usize {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode_slice(input, out).unwrap_or(0)
}

pub(crate) fn base64_decode(input: &[u8]) -> Result<Bytes, DecodeError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(input)
        .map(Bytes::from)
        .map_err(|_| DecodeError::InvalidBase64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Result<Packet, DecodeError> {
        Packet::decode_text(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn encode(p: &Packet) -> String {
        let mut out = BytesMut::new();
        p.encode_text(&mut out);
        String::from_utf8(out.to_vec()).unwrap_or_default()
    }

    #[test]
    fn decodes_every_type() {
        assert_eq!(text("0{}"), Ok(Packet::Open(Bytes::from_static(b"{}"))));
        assert_eq!(text("1"), Ok(Packet::Close));
        assert_eq!(text("2"), Ok(Packet::Ping(Bytes::new())));
        assert_eq!(text("2probe"), Ok(Packet::Ping(Bytes::from_static(b"probe"))));
        assert_eq!(text("3probe"), Ok(Packet::Pong(Bytes::from_static(b"probe"))));
        assert_eq!(text("4héllo"), Ok(Packet::Message(Bytes::from("héllo"))));
        assert_eq!(text("5"), Ok(Packet::Upgrade));
        assert_eq!(text("6"), Ok(Packet::Noop));
    }

    #[test]
    fn rejects_bad_packets() {
        assert_eq!(text(""), Err(DecodeError::Empty));
        assert_eq!(text("abc"), Err(DecodeError::UnknownType(b'a')));
        assert_eq!(text("7"), Err(DecodeError::UnknownType(b'7')));
        assert_eq!(text("1x"), Err(DecodeError::UnexpectedData('1')));
        assert_eq!(text("5x"), Err(DecodeError::UnexpectedData('5')));
        assert_eq!(Packet::decode_text(Bytes::from_static(&[b'4', 0xff])), Err(DecodeError::InvalidUtf8));
    }

    #[test]
    fn encodes_text_and_binary() {
        assert_eq!(encode(&Packet::Message(Bytes::from("hello"))), "4hello");
        assert_eq!(encode(&Packet::Ping(Bytes::new())), "2");
        assert_eq!(encode(&Packet::Binary(Bytes::from_static(&[1, 2, 3, 4]))), "bAQIDBA==");
        assert_eq!(Packet::Binary(Bytes::from_static(&[1, 2])).to_ws_payload(), Bytes::from_static(&[1, 2]));
        assert_eq!(Packet::Noop.to_ws_payload(), Bytes::from_static(b"6"));
    }
}
