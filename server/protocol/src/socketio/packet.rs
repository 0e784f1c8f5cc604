//! One Socket.IO packet: `<type>[<attachments>-][<nsp>,][<ack id>][JSON data]`, carried in one Engine.IO message.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::binary::{self, PartialBinary};
use super::value::{Parsed, Value};
use crate::SocketIoError;

/// The namespace every client joins unless it names another; it is left out on the wire.
pub const DEFAULT_NAMESPACE: &str = "/";

/// Attachment count [`Packet::decode`] accepts at most, so a header cannot make the server wait for (and
/// reserve room for) an absurd number of binary messages.
pub const DEFAULT_MAX_ATTACHMENTS: usize = 10_000;

/// What [`Packet::decode_with_limits`] accepts from one peer at most, so a header cannot make the
/// receiver wait for, or hold, more than it chose to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecodeLimits {
    /// Attachments a binary packet may announce.
    pub max_attachments: usize,
    /// Bytes the whole packet may hold: its text plus every attachment, as the application gets
    /// it as one message (a server gives its `maxHttpBufferSize`).
    pub max_bytes: usize,
}

impl DecodeLimits {
    /// At most `max_attachments` attachments and `max_bytes` bytes in all.
    pub const fn new(max_attachments: usize, max_bytes: usize) -> Self {
        Self { max_attachments, max_bytes }
    }
}

impl Default for DecodeLimits {
    /// What [`Packet::decode`] applies: [`DEFAULT_MAX_ATTACHMENTS`], and no byte limit (the
    /// decoder cannot know the transport's; a server passes its own).
    fn default() -> Self {
        Self::new(DEFAULT_MAX_ATTACHMENTS, usize::MAX)
    }
}

/// The seven Socket.IO packet types, numbered as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// Joins a namespace (client → server, with auth) or confirms it (server → client, with the sid).
    Connect = 0,
    /// Leaves a namespace.
    Disconnect = 1,
    /// An emitted event without binary.
    Event = 2,
    /// The answer to an event that asked for one, without binary.
    Ack = 3,
    /// Refuses a namespace join.
    ConnectError = 4,
    /// An emitted event whose arguments hold binary attachments.
    BinaryEvent = 5,
    /// An acknowledgement whose arguments hold binary attachments.
    BinaryAck = 6,
}

impl PacketType {
    /// The ASCII digit that starts a packet of this type.
    pub const fn digit(self) -> u8 {
        b'0' + self as u8
    }

    /// Reads the type character, the only place where a type is trusted.
    pub const fn from_char(c: char) -> Result<Self, SocketIoError> {
        Ok(match c {
            '0' => Self::Connect,
            '1' => Self::Disconnect,
            '2' => Self::Event,
            '3' => Self::Ack,
            '4' => Self::ConnectError,
            '5' => Self::BinaryEvent,
            '6' => Self::BinaryAck,
            other => return Err(SocketIoError::UnknownType(other)),
        })
    }

    /// Whether this type announces binary attachments (`N-` after the type).
    pub const fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }

    /// The protocol's name for the type, for logs and errors.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::Disconnect => "DISCONNECT",
            Self::Event => "EVENT",
            Self::Ack => "ACK",
            Self::ConnectError => "CONNECT_ERROR",
            Self::BinaryEvent => "BINARY_EVENT",
            Self::BinaryAck => "BINARY_ACK",
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A decoded Socket.IO packet. Binary and plain events (and acks) are one variant each: the encoder
/// picks the binary type exactly when the arguments contain [`Value::Binary`].
///
/// `nsp` is `"/"` or starts with `'/'` and holds no `','`; other namespaces cannot be encoded faithfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `0`: joins a namespace; the optional object is the client's auth, or the server's `{"sid": …}`.
    Connect {
        /// The namespace joined.
        nsp: String,
        /// Auth (client → server) or handshake data (server → client), always a JSON object; its keys
        /// are re-encoded sorted, as serde_json maps keep them.
        data: Option<serde_json::Map<String, serde_json::Value>>,
    },
    /// `1`: leaves a namespace.
    Disconnect {
        /// The namespace left.
        nsp: String,
    },
    /// `2` or `5`: an event `["name", args...]`, with an ack id when the sender wants an answer.
    Event {
        /// The namespace the event belongs to.
        nsp: String,
        /// The event name, first element of the JSON array.
        event: String,
        /// The remaining elements of the array.
        args: Vec<Value>,
        /// Present when the sender expects an ACK with the same id.
        id: Option<u64>,
    },
    /// `3` or `6`: the answer to the event with the same id; the data is the argument array.
    Ack {
        /// The namespace of the acknowledged event.
        nsp: String,
        /// The id of the acknowledged event.
        id: u64,
        /// The answer's arguments.
        args: Vec<Value>,
    },
    /// `4`: refuses a namespace join.
    ConnectError {
        /// The namespace refused.
        nsp: String,
        /// `{"message": …, "data": …}` in v5, a bare string from older servers; nothing else decodes.
        /// Object keys are re-encoded sorted, as serde_json maps keep them.
        data: serde_json::Value,
    },
}

/// A packet encoded once for the wire and shareable by every recipient: the text message, then each
/// attachment as its own binary message, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The packet text (an Engine.IO message once prefixed with `4`).
    pub text: Bytes,
    /// Binary attachments, `num` 0 first; empty for non-binary packets.
    pub attachments: Vec<Bytes>,
}

/// The outcome of decoding a packet text: a packet, or a binary packet still waiting for its attachments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// The packet is complete.
    Complete(Packet),
    /// A binary packet: feed the following binary messages to [`PartialBinary::push`].
    NeedsAttachments(PartialBinary),
}

impl Packet {
    /// The namespace the packet belongs to.
    pub fn nsp(&self) -> &str {
        match self {
            Self::Connect { nsp, .. }
            | Self::Disconnect { nsp }
            | Self::Event { nsp, .. }
            | Self::Ack { nsp, .. }
            | Self::ConnectError { nsp, .. } => nsp,
        }
    }

    /// The wire type [`Packet::encode`] writes: the binary variant when the arguments hold binary.
    pub fn packet_type(&self) -> PacketType {
        let binary = |args: &[Value]| args.iter().any(Value::has_binary);
        match self {
            Self::Connect { .. } => PacketType::Connect,
            Self::Disconnect { .. } => PacketType::Disconnect,
            Self::Event { args, .. } if binary(args) => PacketType::BinaryEvent,
            Self::Event { .. } => PacketType::Event,
            Self::Ack { args, .. } if binary(args) => PacketType::BinaryAck,
            Self::Ack { .. } => PacketType::Ack,
            Self::ConnectError { .. } => PacketType::ConnectError,
        }
    }

    /// The event or ack arguments, the only place binary can live.
    pub(crate) fn args_mut(&mut self) -> Option<&mut Vec<Value>> {
        match self {
            Self::Event { args, .. } | Self::Ack { args, .. } => Some(args),
            Self::Connect { .. } | Self::Disconnect { .. } | Self::ConnectError { .. } => None,
        }
    }

    /// Encodes the packet: its text plus the binary attachments its placeholders refer to.
    pub fn encode(&self) -> Encoded {
        let mut out = BytesMut::new();
        let attachments = self.encode_into(&mut out);
        Encoded { text: out.freeze(), attachments }
    }

    /// Appends the packet text to `out` (e.g. after an Engine.IO `4`) and returns the attachments.
    pub fn encode_into(&self, out: &mut BytesMut) -> Vec<Bytes> {
        match self {
            Self::Connect { nsp, data } => {
                put_header(out, PacketType::Connect, 0, nsp, None);
                if let Some(data) = data {
                    put_json(out, data);
                }
                Vec::new()
            }
            Self::Disconnect { nsp } => {
                put_header(out, PacketType::Disconnect, 0, nsp, None);
                Vec::new()
            }
            Self::Event { nsp, event, args, id } => event_into(out, nsp, event, args, *id),
            Self::Ack { nsp, id, args } => ack_into(out, nsp, *id, args),
            Self::ConnectError { nsp, data } => {
                put_header(out, PacketType::ConnectError, 0, nsp, None);
                put_json(out, data);
                Vec::new()
            }
        }
    }

    /// Decodes a packet text (the data of an Engine.IO text message) with the default
    /// [`DecodeLimits`]: [`DEFAULT_MAX_ATTACHMENTS`], no byte limit.
    pub fn decode(text: &str) -> Result<Decoded, SocketIoError> {
        Self::decode_with_limits(text, DecodeLimits::default())
    }

    /// Decodes a packet text, rejecting binary packets that announce more than `max_attachments`.
    pub fn decode_with_max_attachments(text: &str, max_attachments: usize) -> Result<Decoded, SocketIoError> {
        Self::decode_with_limits(text, DecodeLimits { max_attachments, ..DecodeLimits::default() })
    }

    /// Decodes a packet text within `limits`: a binary packet that announces too many attachments
    /// is refused here, one whose attachments add up to too many bytes by [`PartialBinary::push`].
    pub fn decode_with_limits(text: &str, limits: DecodeLimits) -> Result<Decoded, SocketIoError> {
        let DecodeLimits { max_attachments, max_bytes } = limits;
        if text.len() > max_bytes {
            return Err(SocketIoError::PacketTooLarge(max_bytes));
        }
        let mut chars = text.chars();
        let kind = PacketType::from_char(chars.next().ok_or(SocketIoError::Empty)?)?;
        let mut rest = chars.as_str();

        let attachments = if kind.is_binary() {
            let (count, after) = rest.split_once('-').ok_or(SocketIoError::InvalidAttachmentCount)?;
            if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
                return Err(SocketIoError::InvalidAttachmentCount);
            }
            let count = parse_decimal(count)
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n <= max_attachments)
                .ok_or(SocketIoError::TooManyAttachments(max_attachments))?;
            if count == 0 {
                return Err(SocketIoError::NoAttachments);
            }
            rest = after;
            count
        } else {
            0
        };

        // The namespace runs to the first ',' (socket.io also accepts it running to the end).
        let nsp = if rest.starts_with('/') {
            let (nsp, after) = rest.split_once(',').unwrap_or((rest, ""));
            rest = after;
            nsp
        } else {
            DEFAULT_NAMESPACE
        };

        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (id, data) = rest.split_at_checked(digits).ok_or(SocketIoError::AckIdOverflow)?;
        let id = match id {
            "" => None,
            id => Some(parse_decimal(id).ok_or(SocketIoError::AckIdOverflow)?),
        };
        let data = (!data.is_empty()).then_some(data);
        let nsp = nsp.to_owned();

        let packet = match kind {
            PacketType::Connect | PacketType::Disconnect | PacketType::ConnectError if id.is_some() => {
                return Err(SocketIoError::UnexpectedAckId(kind));
            }
            PacketType::Connect => {
                let data = match data.map(parse_json::<serde_json::Value>).transpose()? {
                    None => None,
                    Some(serde_json::Value::Object(map)) => Some(map),
                    Some(_) => return Err(SocketIoError::InvalidData(kind)),
                };
                Self::Connect { nsp, data }
            }
            PacketType::Disconnect => match data {
                None => Self::Disconnect { nsp },
                Some(_) => return Err(SocketIoError::UnexpectedData(kind)),
            },
            PacketType::ConnectError => match parse_json(data.ok_or(SocketIoError::MissingData(kind))?)? {
                data @ (serde_json::Value::Object(_) | serde_json::Value::String(_)) => {
                    Self::ConnectError { nsp, data }
                }
                _ => return Err(SocketIoError::InvalidData(kind)),
            },
            PacketType::Event | PacketType::BinaryEvent => {
                let Parsed(payload) = parse_json(data.ok_or(SocketIoError::MissingData(kind))?)?;
                let Value::Array(items) = payload else {
                    return Err(SocketIoError::InvalidData(kind));
                };
                let mut items = items.into_iter();
                let Some(Value::String(event)) = items.next() else {
                    return Err(SocketIoError::InvalidData(kind));
                };
                Self::Event { nsp, event, args: items.collect(), id }
            }
            PacketType::Ack | PacketType::BinaryAck => {
                let id = id.ok_or(SocketIoError::MissingAckId(kind))?;
                let Parsed(payload) = parse_json(data.ok_or(SocketIoError::MissingData(kind))?)?;
                let Value::Array(args) = payload else {
                    return Err(SocketIoError::InvalidData(kind));
                };
                Self::Ack { nsp, id, args }
            }
        };

        if !kind.is_binary() {
            // Placeholder-shaped objects in a plain packet are ordinary data, as in socket.io.
            return Ok(Decoded::Complete(packet));
        }
        let mut packet = packet;
        if let Some(args) = packet.args_mut() {
            for value in args {
                binary::resolve(value, attachments, None)?;
            }
        }
        Ok(Decoded::NeedsAttachments(PartialBinary::new(packet, attachments, text.len(), max_bytes)))
    }
}

impl Encoded {
    /// Whether the packet goes out as more than one Engine.IO message.
    pub fn is_binary(&self) -> bool {
        !self.attachments.is_empty()
    }
}

/// Encodes an event from borrowed parts, so a broadcast is encoded once without building a [`Packet`].
pub fn encode_event(nsp: &str, event: &str, args: &[Value], id: Option<u64>) -> Encoded {
    let mut out = BytesMut::new();
    let attachments = event_into(&mut out, nsp, event, args, id);
    Encoded { text: out.freeze(), attachments }
}

/// Encodes an acknowledgement from borrowed parts.
pub fn encode_ack(nsp: &str, id: u64, args: &[Value]) -> Encoded {
    let mut out = BytesMut::new();
    let attachments = ack_into(&mut out, nsp, id, args);
    Encoded { text: out.freeze(), attachments }
}

fn event_into(out: &mut BytesMut, nsp: &str, event: &str, args: &[Value], id: Option<u64>) -> Vec<Bytes> {
    let binaries = args.iter().map(Value::binary_count).sum();
    let kind = if binaries > 0 { PacketType::BinaryEvent } else { PacketType::Event };
    put_header(out, kind, binaries, nsp, id);
    binary::write_array(out, Some(event), args, binaries)
}

fn ack_into(out: &mut BytesMut, nsp: &str, id: u64, args: &[Value]) -> Vec<Bytes> {
    let binaries = args.iter().map(Value::binary_count).sum();
    let kind = if binaries > 0 { PacketType::BinaryAck } else { PacketType::Ack };
    put_header(out, kind, binaries, nsp, Some(id));
    binary::write_array(out, None, args, binaries)
}

/// Writes everything before the JSON: type, `N-` for binary types, `nsp,` unless default, ack id.
fn put_header(out: &mut BytesMut, kind: PacketType, attachments: usize, nsp: &str, id: Option<u64>) {
    out.put_u8(kind.digit());
    if kind.is_binary() {
        put_decimal(out, attachments as u64);
        out.put_u8(b'-');
    }
    if !nsp.is_empty() && nsp != DEFAULT_NAMESPACE {
        out.put_slice(nsp.as_bytes());
        out.put_u8(b',');
    }
    if let Some(id) = id {
        put_decimal(out, id);
    }
}

fn put_json(out: &mut BytesMut, value: &impl serde::Serialize) {
    let written = serde_json::to_writer((&mut *out).writer(), value);
    // Infallible: the writer is a growable buffer and serde_json values always serialize.
    debug_assert!(written.is_ok(), "JSON serialization failed: {written:?}");
}

fn put_decimal(out: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[start..]);
}

/// Parses ASCII decimal digits (already checked), `None` on overflow.
fn parse_decimal(digits: &str) -> Option<u64> {
    digits.bytes().try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

fn parse_json<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, SocketIoError> {
    serde_json::from_str(json).map_err(|e| SocketIoError::InvalidJson { column: e.column() })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;
    use crate::engineio;

    fn placeholder(num: u64) -> Value {
        Value::Object(vec![("_placeholder".into(), true.into()), ("num".into(), num.into())])
    }

    fn complete(text: &str) -> Packet {
        match Packet::decode(text) {
            Ok(Decoded::Complete(packet)) => packet,
            other => panic!("{text}: {other:?}"),
        }
    }

    fn with_attachments(text: &str, attachments: &[&'static [u8]]) -> Packet {
        let Ok(Decoded::NeedsAttachments(mut partial)) = Packet::decode(text) else {
            panic!("{text} is not a binary packet");
        };
        assert_eq!(partial.expected(), attachments.len());
        let (last, first) = attachments.split_last().unwrap();
        for a in first {
            assert_eq!(partial.push(Bytes::from_static(a)), Ok(None));
        }
        assert_eq!(partial.remaining(), 1);
        let packet = partial.push(Bytes::from_static(last)).unwrap().unwrap();
        assert_eq!(partial.remaining(), 0);
        assert_eq!(partial.push(Bytes::new()), Err(SocketIoError::UnexpectedAttachment));
        packet
    }

    fn text(packet: &Packet) -> String {
        String::from_utf8(packet.encode().text.to_vec()).unwrap()
    }

    fn err(text: &str) -> SocketIoError {
        Packet::decode(text).expect_err(text)
    }

    /// The data of an Engine.IO text message, as the server hands it to the Socket.IO decoder.
    fn engineio_message(frame: &'static str) -> String {
        match engineio::Packet::decode_text(Bytes::from_static(frame.as_bytes())) {
            Ok(engineio::Packet::Message(data)) => String::from_utf8(data.to_vec()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decodes_and_reencodes_the_protocol_examples() {
        let plain = [
            ("0", Packet::Connect { nsp: "/".into(), data: None }),
            (
                r#"0/admin,{"token":"x"}"#,
                Packet::Connect { nsp: "/admin".into(), data: json!({"token": "x"}).as_object().cloned() },
            ),
            (
                r#"2["hello",1]"#,
                Packet::Event { nsp: "/".into(), event: "hello".into(), args: vec![1.into()], id: None },
            ),
            (
                r#"2/admin,12["ev",{"a":1}]"#,
                Packet::Event {
                    nsp: "/admin".into(),
                    event: "ev".into(),
                    args: vec![Value::Object(vec![("a".into(), 1.into())])],
                    id: Some(12),
                },
            ),
            (r#"3/admin,12["ok"]"#, Packet::Ack { nsp: "/admin".into(), id: 12, args: vec!["ok".into()] }),
            (
                r#"4{"message":"Not authorized","data":{}}"#,
                Packet::ConnectError {
                    nsp: "/".into(),
                    data: json!({"message": "Not authorized", "data": {}}),
                },
            ),
            ("1/admin,", Packet::Disconnect { nsp: "/admin".into() }),
        ];
        for (wire, packet) in plain {
            assert_eq!(complete(wire), packet, "{wire}");
            assert!(packet.encode().attachments.is_empty());
            if let Packet::ConnectError { .. } = packet {
                // serde_json objects sort their keys (no `preserve_order`): same JSON, other text.
                assert_eq!(text(&packet), r#"4{"data":{},"message":"Not authorized"}"#);
            } else {
                assert_eq!(text(&packet), wire);
            }
        }
    }

    #[test]
    fn decodes_and_reencodes_binary_packets() {
        let wire = engineio_message(r#"451-["bin",{"_placeholder":true,"num":0}]"#);
        let packet = with_attachments(&wire, &[b"\x01\x02"]);
        assert_eq!(
            packet,
            Packet::Event {
                nsp: "/".into(),
                event: "bin".into(),
                args: vec![Bytes::from_static(b"\x01\x02").into()],
                id: None,
            }
        );
        assert_eq!(packet.packet_type(), PacketType::BinaryEvent);
        let encoded = packet.encode();
        assert_eq!(encoded.text, wire.as_bytes());
        assert_eq!(encoded.attachments, vec![Bytes::from_static(b"\x01\x02")]);
        assert!(encoded.is_binary());

        let wire = r#"61-/admin,7[{"_placeholder":true,"num":0}]"#;
        let packet = with_attachments(wire, &[b"x"]);
        assert_eq!(
            packet,
            Packet::Ack { nsp: "/admin".into(), id: 7, args: vec![Bytes::from_static(b"x").into()] }
        );
        assert_eq!(text(&packet), wire);
    }

    #[test]
    fn resolves_several_attachments_in_any_placeholder_order() {
        let wire = r#"52-/chat,["up",{"b":{"_placeholder":true,"num":1}},[{"_placeholder":true,"num":0}]]"#;
        let packet = with_attachments(wire, &[b"zero", b"one"]);
        let Packet::Event { args, .. } = &packet else { panic!() };
        assert_eq!(
            args,
            &vec![
                Value::Object(vec![("b".into(), Bytes::from_static(b"one").into())]),
                Value::Array(vec![Bytes::from_static(b"zero").into()]),
            ]
        );
        // Re-encoding numbers placeholders depth-first again.
        let encoded = packet.encode();
        assert_eq!(
            encoded.text,
            r#"52-/chat,["up",{"b":{"_placeholder":true,"num":0}},[{"_placeholder":true,"num":1}]]"#
        );
        assert_eq!(encoded.attachments, vec![Bytes::from_static(b"one"), Bytes::from_static(b"zero")]);
    }

    #[test]
    fn decodes_the_server_handshake_inside_an_engineio_message() {
        let wire = engineio_message(r#"40/admin,{"sid":"abc"}"#);
        let packet = complete(&wire);
        assert_eq!(
            packet,
            Packet::Connect { nsp: "/admin".into(), data: json!({"sid": "abc"}).as_object().cloned() }
        );
        assert_eq!(text(&packet), wire);
        // Without the Engine.IO layer the same text is a CONNECT_ERROR with a stray id.
        assert_eq!(
            err(r#"40/admin,{"sid":"abc"}"#),
            SocketIoError::UnexpectedAckId(PacketType::ConnectError)
        );
    }

    #[test]
    fn encode_into_appends_after_an_engineio_prefix() {
        let mut out = BytesMut::from(&b"4"[..]);
        let packet = Packet::Event { nsp: "/".into(), event: "a".into(), args: vec![], id: Some(0) };
        assert!(packet.encode_into(&mut out).is_empty());
        assert_eq!(out, &br#"420["a"]"#[..]);
    }

    #[test]
    fn borrowed_helpers_match_packet_encoding() {
        let args = vec![Value::from("x"), Value::from(Bytes::from_static(b"b"))];
        let event = Packet::Event { nsp: "/n".into(), event: "e".into(), args: args.clone(), id: Some(3) };
        assert_eq!(encode_event("/n", "e", &args, Some(3)), event.encode());
        let ack = Packet::Ack { nsp: "/".into(), id: 9, args: args.clone() };
        assert_eq!(encode_ack("/", 9, &args), ack.encode());
        assert_eq!(encode_ack("/", 9, &args).text, r#"61-9["x",{"_placeholder":true,"num":0}]"#);
        assert_eq!(encode_event("", "e", &[], None).text, r#"2["e"]"#);
    }

    #[test]
    fn accepts_what_socketio_accepts() {
        // Namespace running to the end of the packet, explicit default namespace, leading zeros, whitespace.
        assert_eq!(complete("1/admin"), Packet::Disconnect { nsp: "/admin".into() });
        assert_eq!(complete("0/,"), Packet::Connect { nsp: "/".into(), data: None });
        assert_eq!(complete("0{}"), Packet::Connect { nsp: "/".into(), data: Some(serde_json::Map::new()) });
        assert_eq!(complete(r#"3007[]"#), Packet::Ack { nsp: "/".into(), id: 7, args: vec![] });
        assert_eq!(complete(r#"2 ["a"] "#), complete(r#"2["a"]"#));
        assert_eq!(
            complete(r#"4"refused""#),
            Packet::ConnectError { nsp: "/".into(), data: json!("refused") }
        );
        assert_eq!(
            complete(&format!("3{}[]", u64::MAX)),
            Packet::Ack { nsp: "/".into(), id: u64::MAX, args: vec![] }
        );
    }

    #[test]
    fn placeholders_in_plain_packets_stay_objects() {
        let packet = complete(r#"2["ev",{"_placeholder":true,"num":0}]"#);
        assert_eq!(
            packet,
            Packet::Event { nsp: "/".into(), event: "ev".into(), args: vec![placeholder(0)], id: None }
        );
        assert_eq!(packet.packet_type(), PacketType::Event);
        assert_eq!(text(&packet), r#"2["ev",{"_placeholder":true,"num":0}]"#);
    }

    #[test]
    fn binary_packets_may_leave_attachments_unreferenced() {
        let packet = with_attachments(r#"52-["ev",1]"#, &[b"a", b"b"]);
        assert_eq!(
            packet,
            Packet::Event { nsp: "/".into(), event: "ev".into(), args: vec![1.into()], id: None }
        );
        assert_eq!(text(&packet), r#"2["ev",1]"#);
        let Ok(Decoded::NeedsAttachments(partial)) = Packet::decode(r#"52-/x,["ev"]"#) else { panic!() };
        assert_eq!(partial.nsp(), Some("/x"));
    }

    #[test]
    fn rejects_bad_headers() {
        use PacketType::*;
        assert_eq!(err(""), SocketIoError::Empty);
        assert_eq!(err("7"), SocketIoError::UnknownType('7'));
        assert_eq!(err("é"), SocketIoError::UnknownType('é'));
        assert_eq!(err(r#"5["a"]"#), SocketIoError::InvalidAttachmentCount);
        assert_eq!(err(r#"5-["a"]"#), SocketIoError::InvalidAttachmentCount);
        assert_eq!(err(r#"5x1-["a"]"#), SocketIoError::InvalidAttachmentCount);
        assert_eq!(err(r#"51["a-b"]"#), SocketIoError::InvalidAttachmentCount);
        assert_eq!(err(r#"50-["a"]"#), SocketIoError::NoAttachments);
        assert_eq!(err(r#"510001-["a"]"#), SocketIoError::TooManyAttachments(DEFAULT_MAX_ATTACHMENTS));
        assert_eq!(err(r#"599999999999999999999999-["a"]"#), SocketIoError::TooManyAttachments(10_000));
        assert_eq!(
            Packet::decode_with_max_attachments(r#"53-["a"]"#, 2).unwrap_err(),
            SocketIoError::TooManyAttachments(2)
        );
        assert!(Packet::decode_with_max_attachments(r#"52-["a"]"#, 2).is_ok());
        assert_eq!(err(r#"218446744073709551616["a"]"#), SocketIoError::AckIdOverflow);
        assert_eq!(err("01{}"), SocketIoError::UnexpectedAckId(Connect));
        assert_eq!(err("1/a,1"), SocketIoError::UnexpectedAckId(Disconnect));
        assert_eq!(err(r#"41{"message":"x"}"#), SocketIoError::UnexpectedAckId(ConnectError));
        assert_eq!(err(r#"3["ok"]"#), SocketIoError::MissingAckId(Ack));
        assert_eq!(err(r#"61-[{"_placeholder":true,"num":0}]"#), SocketIoError::MissingAckId(BinaryAck));
    }

    #[test]
    fn limits_the_bytes_of_the_whole_packet_text_and_attachments() {
        let text = r#"52-["up",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
        let limits = |max_bytes| DecodeLimits::new(DEFAULT_MAX_ATTACHMENTS, max_bytes);
        let partial = |max_bytes| match Packet::decode_with_limits(text, limits(max_bytes)) {
            Ok(Decoded::NeedsAttachments(partial)) => partial,
            other => panic!("{other:?}"),
        };

        // Exactly at the limit: accepted.
        let mut p = partial(text.len() + 6);
        assert_eq!(p.bytes(), text.len());
        assert_eq!(p.push(Bytes::from_static(b"abc")), Ok(None));
        assert!(matches!(p.push(Bytes::from_static(b"def")), Ok(Some(Packet::Event { .. }))));

        // One byte over, in the last attachment: refused, and what was held is dropped.
        let mut p = partial(text.len() + 5);
        assert_eq!(p.push(Bytes::from_static(b"abc")), Ok(None));
        assert_eq!(p.push(Bytes::from_static(b"def")), Err(SocketIoError::PacketTooLarge(text.len() + 5)));
        assert_eq!(p.remaining(), 0);
        assert_eq!(p.push(Bytes::new()), Err(SocketIoError::UnexpectedAttachment));

        // Many small attachments count together, not one by one.
        let many = format!(r#"5{}-["up"]"#, 1000);
        let Ok(Decoded::NeedsAttachments(mut p)) =
            Packet::decode_with_limits(&many, limits(many.len() + 999))
        else {
            panic!("binary packet expected");
        };
        for _ in 0..999 {
            assert_eq!(p.push(Bytes::from_static(b"x")), Ok(None));
        }
        assert_eq!(p.push(Bytes::from_static(b"x")), Err(SocketIoError::PacketTooLarge(many.len() + 999)));

        // A text alone over the limit, binary or not, is refused before any parsing.
        assert_eq!(
            Packet::decode_with_limits(r#"2["ev"]"#, limits(6)).unwrap_err(),
            SocketIoError::PacketTooLarge(6)
        );
        assert!(Packet::decode_with_limits(r#"2["ev"]"#, limits(7)).is_ok());
        // The default applies no byte limit (a peer node's packet may be large).
        assert_eq!(DecodeLimits::default().max_bytes, usize::MAX);
    }

    #[test]
    fn rejects_bad_data() {
        use PacketType::*;
        assert_eq!(err(r#"2/a,1x["a"]"#), SocketIoError::InvalidJson { column: 1 });
        assert_eq!(err(r#"2["a"]x"#), SocketIoError::InvalidJson { column: 6 });
        assert_eq!(err(r#"2["a""#), SocketIoError::InvalidJson { column: 4 });
        assert_eq!(err(r#"0admin,{}"#), SocketIoError::InvalidJson { column: 1 });
        assert_eq!(err("2"), SocketIoError::MissingData(Event));
        assert_eq!(err("2/a,"), SocketIoError::MissingData(Event));
        assert_eq!(err("31"), SocketIoError::MissingData(Ack));
        assert_eq!(err("4"), SocketIoError::MissingData(ConnectError));
        assert_eq!(err("51-"), SocketIoError::MissingData(BinaryEvent));
        assert_eq!(err("1/a,{}"), SocketIoError::UnexpectedData(Disconnect));
        assert_eq!(err("1{}"), SocketIoError::UnexpectedData(Disconnect));
        assert_eq!(err("2[]"), SocketIoError::InvalidData(Event));
        assert_eq!(err("2[1]"), SocketIoError::InvalidData(Event));
        assert_eq!(err(r#"2{"a":1}"#), SocketIoError::InvalidData(Event));
        assert_eq!(err(r#"2"ev""#), SocketIoError::InvalidData(Event));
        assert_eq!(err(r#"51-[{"_placeholder":true,"num":0}]"#), SocketIoError::InvalidData(BinaryEvent));
        assert_eq!(err(r#"31{}"#), SocketIoError::InvalidData(Ack));
        assert_eq!(err(r#"61-1"x""#), SocketIoError::InvalidData(BinaryAck));
        assert_eq!(err(r#"0[]"#), SocketIoError::InvalidData(Connect));
        assert_eq!(err(r#"0null"#), SocketIoError::InvalidData(Connect));
        assert_eq!(err(r#"0"tok""#), SocketIoError::InvalidData(Connect));
        assert_eq!(err(r#"4null"#), SocketIoError::InvalidData(ConnectError));
        assert_eq!(err(r#"4[]"#), SocketIoError::InvalidData(ConnectError));
        assert_eq!(err(r#"4 1"#), SocketIoError::InvalidData(ConnectError));
    }

    #[test]
    fn rejects_bad_placeholders() {
        assert_eq!(
            err(r#"51-["a",{"_placeholder":true,"num":1}]"#),
            SocketIoError::PlaceholderOutOfRange { num: 1, attachments: 1 }
        );
        assert_eq!(
            err(r#"52-["a",[[{"x":{"_placeholder":true,"num":18446744073709551615}}]]]"#),
            SocketIoError::PlaceholderOutOfRange { num: u64::MAX, attachments: 2 }
        );
        assert_eq!(err(r#"51-["a",{"_placeholder":true,"num":-1}]"#), SocketIoError::InvalidPlaceholder);
        assert_eq!(err(r#"51-["a",{"_placeholder":true,"num":0.0}]"#), SocketIoError::InvalidPlaceholder);
        assert_eq!(err(r#"51-["a",{"_placeholder":true,"num":"0"}]"#), SocketIoError::InvalidPlaceholder);
        assert_eq!(err(r#"61-1[{"_placeholder":true}]"#), SocketIoError::InvalidPlaceholder);
    }

    #[test]
    fn rejects_over_deep_json_without_overflowing_the_stack() {
        let deep = format!(r#"2["a",{}{}]"#, "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(err(&deep), SocketIoError::InvalidJson { .. }));
    }

    #[test]
    fn packet_type_digits_and_names() {
        for digit in b'0'..=b'6' {
            let kind = PacketType::from_char(char::from(digit)).unwrap();
            assert_eq!(kind.digit(), digit);
            assert_eq!(kind.is_binary(), digit >= b'5');
        }
        assert_eq!(PacketType::BinaryAck.to_string(), "BINARY_ACK");
        assert_eq!(
            SocketIoError::InvalidData(PacketType::Event).to_string(),
            "invalid data for EVENT packet"
        );
    }
}
