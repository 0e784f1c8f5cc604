//! Envelope ⇄ bytes: a fixed 12-byte prefix, a msgpack header, then raw payload parts.
//!
//! - The frame (`frame.rs`): the prefix (magic, version, kind, header length, part count), then
//!   the header, then each part as a length and its bytes.
//! - The header is one msgpack array `[sender, nsp, body]`, `body` a kind-specific array (rooms as
//!   string arrays, flags as bits, ids as integers, socket data and handshakes as JSON text): this
//!   file says which body and parts each kind has. It goes through rmp-serde, except a broadcast's,
//!   written and read by hand on the hot path (`broadcast.rs`, `msgpack.rs`), to the same bytes.
//! - The parts carry Socket.IO encodings: for a broadcast, the emitter's packet text and its binary
//!   attachments exactly as [`BroadcastPacket::packet`](crate::BroadcastPacket::packet) holds them,
//!   so a receiver slices them out of the received buffer (no copy, no parse) and frames them once;
//!   for values (server-side emit and ack arguments), an event or ack packet encoded with
//!   `switchboard_protocol::socketio`, so binary survives the trip.
//!
//! - With a cluster secret, the frame is sealed (`seal.rs`): a flag in the kind byte and an
//!   HMAC-SHA256 tag after the frame. A receiver [`open`]s every frame before reading it.
//!
//! Decoding never panics: anything that is not a complete, well-formed message of this version is
//! a [`CodecError`], and [`CodecError::is_unsupported`] tells a newer node from garbage. No count
//! or length in a frame sizes an allocation beyond the frame's own length (and the part count
//! beyond [`MAX_PAYLOAD_PARTS`]).

mod broadcast;
mod frame;
mod msgpack;
mod seal;

use std::time::Duration;

use bytes::Bytes;
use serde::{Serialize, Serializer};
use switchboard_protocol::socketio::{Packet, Value, encode_ack, encode_event};

use super::NodeId;
use super::message::{Envelope, Message, Target};
use crate::error::CodecError;
use crate::types::{BroadcastFlags, BroadcastOptions, Room, SocketId, SocketInfo};
use frame::{Frame, Parts, header};
pub use frame::{MAGIC, MAX_PAYLOAD_PARTS, PREFIX_LEN, VERSION};
pub use seal::{Key, TAG_LEN, open};

/// A message kind's number in the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Heartbeat = 1,
    InitialHeartbeat = 2,
    Closing = 3,
    Address = 4,
    Broadcast = 10,
    BroadcastWithAck = 11,
    BroadcastClientCount = 12,
    BroadcastAck = 13,
    SocketsJoin = 20,
    SocketsLeave = 21,
    DisconnectSockets = 22,
    FetchSockets = 30,
    FetchSocketsResponse = 31,
    ServerSideEmit = 40,
    ServerSideEmitResponse = 41,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Heartbeat,
            2 => Self::InitialHeartbeat,
            3 => Self::Closing,
            4 => Self::Address,
            10 => Self::Broadcast,
            11 => Self::BroadcastWithAck,
            12 => Self::BroadcastClientCount,
            13 => Self::BroadcastAck,
            20 => Self::SocketsJoin,
            21 => Self::SocketsLeave,
            22 => Self::DisconnectSockets,
            30 => Self::FetchSockets,
            31 => Self::FetchSocketsResponse,
            40 => Self::ServerSideEmit,
            41 => Self::ServerSideEmitResponse,
            _ => return None,
        })
    }

    fn of(message: &Message) -> Self {
        match message {
            Message::Heartbeat => Self::Heartbeat,
            Message::InitialHeartbeat => Self::InitialHeartbeat,
            Message::Address { .. } => Self::Address,
            Message::Closing => Self::Closing,
            Message::Broadcast { .. } => Self::Broadcast,
            Message::BroadcastWithAck { .. } => Self::BroadcastWithAck,
            Message::BroadcastClientCount { .. } => Self::BroadcastClientCount,
            Message::BroadcastAck { .. } => Self::BroadcastAck,
            Message::SocketsJoin { .. } => Self::SocketsJoin,
            Message::SocketsLeave { .. } => Self::SocketsLeave,
            Message::DisconnectSockets { .. } => Self::DisconnectSockets,
            Message::FetchSockets { .. } => Self::FetchSockets,
            Message::FetchSocketsResponse { .. } => Self::FetchSocketsResponse,
            Message::ServerSideEmit { .. } => Self::ServerSideEmit,
            Message::ServerSideEmitResponse { .. } => Self::ServerSideEmitResponse,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding.

/// A room list serialized as a msgpack string array, without building a `Vec<&str>`.
struct Rooms<'a>(&'a [Room]);

impl Serialize for Rooms<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(Room::as_str))
    }
}

const FLAG_LOCAL: u8 = 1;
const FLAG_VOLATILE: u8 = 2;
const FLAG_COMPRESS: u8 = 4;

fn flag_bits(f: BroadcastFlags) -> u8 {
    let bit = |on: bool, bit: u8| if on { bit } else { 0 };
    bit(f.local, FLAG_LOCAL) | bit(f.volatile, FLAG_VOLATILE) | bit(f.compress, FLAG_COMPRESS)
}

fn flags_of(bits: u8) -> BroadcastFlags {
    BroadcastFlags {
        local: bits & FLAG_LOCAL != 0,
        volatile: bits & FLAG_VOLATILE != 0,
        compress: bits & FLAG_COMPRESS != 0,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Encodes a message from `sender` about namespace `nsp`, unsealed (a cluster without a secret).
///
/// Fails only on absurd input (a payload part over 4 GiB, more than [`MAX_PAYLOAD_PARTS`] parts);
/// the caller counts that as a dropped publish.
pub fn encode(sender: &str, nsp: &str, message: &Message) -> Result<Bytes, CodecError> {
    encode_with(sender, nsp, message, None)
}

/// Encodes like [`encode`], sealed with `key` when there is one (see [`open`]).
pub fn encode_with(
    sender: &str,
    nsp: &str,
    message: &Message,
    key: Option<&Key>,
) -> Result<Bytes, CodecError> {
    let mut frame = Frame::new(Kind::of(message), payload_len(message));
    let head = (sender, nsp);
    match message {
        Message::Heartbeat | Message::InitialHeartbeat | Message::Closing => {
            frame.head(&(head.0, head.1, ()))?
        }
        Message::Address { address } => frame.head(&(head.0, head.1, (address.as_str(),)))?,
        Message::Broadcast { target, packet } => {
            frame.head_with(|buf| broadcast::write_head(buf, sender, nsp, target))?;
            frame.packet(packet)?;
        }
        Message::BroadcastWithAck { request_id, opts: o, ack_id, timeout, packet } => {
            let body =
                (request_id, Rooms(&o.rooms), Rooms(&o.except), flag_bits(o.flags), ack_id, millis(*timeout));
            frame.head(&(head.0, head.1, body))?;
            frame.packet(packet)?;
        }
        Message::BroadcastClientCount { request_id, count } => {
            frame.head(&(head.0, head.1, (request_id, count)))?;
        }
        Message::BroadcastAck { request_id, socket, args } => {
            frame.head(&(head.0, head.1, (request_id, socket.as_str())))?;
            frame.packet(&encode_ack("/", 0, args))?;
        }
        Message::SocketsJoin { target, rooms } | Message::SocketsLeave { target, rooms } => {
            let o = &target.opts;
            let body = (Rooms(&o.rooms), Rooms(&o.except), flag_bits(o.flags), target.part, Rooms(rooms));
            frame.head(&(head.0, head.1, body))?;
        }
        Message::DisconnectSockets { target, close } => {
            let o = &target.opts;
            let body = (Rooms(&o.rooms), Rooms(&o.except), flag_bits(o.flags), target.part, close);
            frame.head(&(head.0, head.1, body))?;
        }
        Message::FetchSockets { request_id, opts: o } => {
            let body = (request_id, Rooms(&o.rooms), Rooms(&o.except), flag_bits(o.flags));
            frame.head(&(head.0, head.1, body))?;
        }
        Message::FetchSocketsResponse { request_id, sockets } => {
            let mut wire = Vec::with_capacity(sockets.len());
            for s in sockets {
                let handshake = serde_json::to_string(&s.handshake).map_err(|_| CodecError::Encode)?;
                let data = serde_json::to_string(&s.data).map_err(|_| CodecError::Encode)?;
                wire.push((s.id.as_str(), Rooms(&s.rooms), handshake, data));
            }
            frame.head(&(head.0, head.1, (request_id, wire)))?;
        }
        Message::ServerSideEmit { request_id, event, args } => {
            frame.head(&(head.0, head.1, (request_id,)))?;
            frame.packet(&encode_event("/", event, args, None))?;
        }
        Message::ServerSideEmitResponse { request_id, args } => {
            frame.head(&(head.0, head.1, (request_id,)))?;
            frame.packet(&encode_ack("/", 0, args))?;
        }
    }
    Ok(frame.finish(key))
}

/// About how many payload bytes `message` has, to size its frame once.
fn payload_len(message: &Message) -> usize {
    match message {
        Message::Broadcast { packet, .. } | Message::BroadcastWithAck { packet, .. } => {
            packet.text.len() + packet.attachments.iter().map(|a| a.len() + 4).sum::<usize>() + 4
        }
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding.

type WireOpts<'a> = (Vec<&'a str>, Vec<&'a str>, u8);

fn opts_of((rooms, except, flags): WireOpts<'_>) -> BroadcastOptions {
    BroadcastOptions { rooms: rooms_of(rooms), except: rooms_of(except), flags: flags_of(flags) }
}

fn rooms_of(names: Vec<&str>) -> Vec<Room> {
    names.into_iter().map(Room::from).collect()
}

fn ack_args(parts: Parts) -> Result<Vec<Value>, CodecError> {
    match parts.packet()? {
        Packet::Ack { args, .. } => Ok(args),
        _ => Err(CodecError::MissingPayload),
    }
}

fn json(text: &str) -> Result<serde_json::Value, CodecError> {
    serde_json::from_str(text).map_err(|_| CodecError::InvalidJson)
}

/// The sender named by a frame's header, read without decoding the rest (the first two header
/// elements are the same for every kind); `None` unless the prefix is valid for this version and
/// the header starts with `[sender, …`. A receiver drops its own echoed messages with this before
/// paying for a full [`decode`].
pub fn sender(frame: &[u8]) -> Option<&str> {
    let mut head = msgpack::Reader::new(frame::head_of(frame)?);
    (head.array_len().ok()? == 3).then_some(())?;
    head.str().ok()
}

/// Decodes one message; payload parts are slices of `frame`, not copies. A sealed frame must be
/// [`open`]ed first (its tag would read as trailing bytes).
pub fn decode(frame: &Bytes) -> Result<Envelope, CodecError> {
    let (kind, head, parts) = frame::split(frame)?;
    if kind == Kind::Broadcast {
        let (sender, nsp, target) = broadcast::read_head(head)?;
        let message = Message::Broadcast { target, packet: parts.encoded()? };
        return Ok(Envelope { sender: NodeId::from(sender), nsp: nsp.to_owned(), message });
    }
    let (sender, nsp, message) = match kind {
        Kind::Heartbeat | Kind::InitialHeartbeat | Kind::Closing => {
            let (sender, nsp, ()) = header(head)?;
            parts.none()?;
            let message = match kind {
                Kind::Heartbeat => Message::Heartbeat,
                Kind::InitialHeartbeat => Message::InitialHeartbeat,
                _ => Message::Closing,
            };
            (sender, nsp, message)
        }
        Kind::Address => {
            let (sender, nsp, (address,)) = header::<(String,)>(head)?;
            parts.none()?;
            (sender, nsp, Message::Address { address })
        }
        Kind::Broadcast => return Err(CodecError::InvalidHeader),
        Kind::BroadcastWithAck => {
            let (sender, nsp, (request_id, rooms, except, flags, ack_id, timeout)) =
                header::<(u64, _, _, u8, u64, u64)>(head)?;
            let message = Message::BroadcastWithAck {
                request_id,
                opts: opts_of((rooms, except, flags)),
                ack_id,
                timeout: Duration::from_millis(timeout),
                packet: parts.encoded()?,
            };
            (sender, nsp, message)
        }
        Kind::BroadcastClientCount => {
            let (sender, nsp, (request_id, count)) = header(head)?;
            parts.none()?;
            (sender, nsp, Message::BroadcastClientCount { request_id, count })
        }
        Kind::BroadcastAck => {
            let (sender, nsp, (request_id, socket)) = header::<(u64, &str)>(head)?;
            let message =
                Message::BroadcastAck { request_id, socket: SocketId::from(socket), args: ack_args(parts)? };
            (sender, nsp, message)
        }
        Kind::SocketsJoin | Kind::SocketsLeave => {
            let (sender, nsp, (rooms, except, flags, part, joined)) =
                header::<(_, _, u8, u32, Vec<&str>)>(head)?;
            parts.none()?;
            let target = Target { opts: opts_of((rooms, except, flags)), part };
            let rooms = rooms_of(joined);
            let message = if kind == Kind::SocketsJoin {
                Message::SocketsJoin { target, rooms }
            } else {
                Message::SocketsLeave { target, rooms }
            };
            (sender, nsp, message)
        }
        Kind::DisconnectSockets => {
            let (sender, nsp, (rooms, except, flags, part, close)) = header::<(_, _, u8, u32, bool)>(head)?;
            parts.none()?;
            let target = Target { opts: opts_of((rooms, except, flags)), part };
            (sender, nsp, Message::DisconnectSockets { target, close })
        }
        Kind::FetchSockets => {
            let (sender, nsp, (request_id, rooms, except, flags)) = header::<(u64, _, _, u8)>(head)?;
            parts.none()?;
            (sender, nsp, Message::FetchSockets { request_id, opts: opts_of((rooms, except, flags)) })
        }
        Kind::FetchSocketsResponse => {
            type WireSocket<'a> = (&'a str, Vec<&'a str>, &'a str, &'a str);
            let (sender, nsp, (request_id, wire)) = header::<(u64, Vec<WireSocket<'_>>)>(head)?;
            parts.none()?;
            let sockets = wire
                .into_iter()
                .map(|(id, rooms, handshake, data)| {
                    Ok(SocketInfo {
                        id: SocketId::from(id),
                        nsp: nsp.to_owned(),
                        rooms: rooms_of(rooms),
                        handshake: json(handshake)?,
                        data: json(data)?,
                    })
                })
                .collect::<Result<_, CodecError>>()?;
            (sender, nsp, Message::FetchSocketsResponse { request_id, sockets })
        }
        Kind::ServerSideEmit => {
            let (sender, nsp, (request_id,)) = header::<(Option<u64>,)>(head)?;
            let Packet::Event { event, args, .. } = parts.packet()? else {
                return Err(CodecError::MissingPayload);
            };
            (sender, nsp, Message::ServerSideEmit { request_id, event, args })
        }
        Kind::ServerSideEmitResponse => {
            let (sender, nsp, (request_id,)) = header::<(u64,)>(head)?;
            (sender, nsp, Message::ServerSideEmitResponse { request_id, args: ack_args(parts)? })
        }
    };
    Ok(Envelope { sender: NodeId::from(sender), nsp: nsp.to_owned(), message })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use proptest::prelude::*;

    use super::*;

    fn roundtrip(message: Message) -> Message {
        let bytes = encode("node-1", "/chat", &message).unwrap();
        let env = decode(&bytes).unwrap();
        assert_eq!(env.sender.as_str(), "node-1");
        assert_eq!(env.nsp, "/chat");
        env.message
    }

    fn opts(rooms: &[&str], except: &[&str]) -> BroadcastOptions {
        BroadcastOptions {
            rooms: rooms.iter().map(|&r| Room::from(r)).collect(),
            except: except.iter().map(|&r| Room::from(r)).collect(),
            flags: BroadcastFlags { local: false, volatile: true, compress: true },
        }
    }

    fn binary_args() -> Vec<Value> {
        vec![
            Value::from("text"),
            Value::Binary(Bytes::from_static(b"\x00\x01\xff")),
            Value::Object(vec![("nested".into(), Value::Binary(Bytes::from_static(b"bin")))]),
        ]
    }

    #[test]
    fn every_kind_roundtrips() {
        let packet = encode_event("/chat", "ev", &binary_args(), None);
        let target = Target { opts: opts(&["r", "s.t"], &["x"]), part: 1 };
        let info = SocketInfo {
            id: "n.abc".into(),
            nsp: "/chat".into(),
            rooms: vec!["n.abc".into(), "r".into()],
            handshake: serde_json::json!({"query": {"a": "1"}, "time": 3}),
            data: serde_json::json!([1, "two", null]),
        };
        let messages = vec![
            Message::Heartbeat,
            Message::InitialHeartbeat,
            Message::Address { address: "10.0.0.7:3000".into() },
            Message::Address { address: "[::1]:3000".into() },
            Message::Closing,
            Message::Broadcast { target: target.clone(), packet: packet.clone() },
            Message::BroadcastWithAck {
                request_id: 9,
                opts: opts(&[], &["e"]),
                ack_id: 42,
                timeout: Duration::from_millis(1500),
                packet: encode_event("/chat", "ev", &[], Some(42)),
            },
            Message::BroadcastClientCount { request_id: 9, count: u64::MAX },
            Message::BroadcastAck { request_id: 9, socket: "s1".into(), args: binary_args() },
            Message::SocketsJoin { target: target.clone(), rooms: vec!["a".into(), "".into()] },
            Message::SocketsLeave { target: target.clone(), rooms: vec![] },
            Message::DisconnectSockets { target, close: true },
            Message::FetchSockets { request_id: 1, opts: opts(&["r"], &[]) },
            Message::FetchSocketsResponse { request_id: 1, sockets: vec![info.clone(), info] },
            Message::ServerSideEmit { request_id: None, event: "hello".into(), args: vec![] },
            Message::ServerSideEmit { request_id: Some(3), event: "bin".into(), args: binary_args() },
            Message::ServerSideEmitResponse { request_id: 3, args: binary_args() },
            Message::ServerSideEmitResponse { request_id: 4, args: vec![] },
        ];
        for m in messages {
            assert_eq!(roundtrip(m.clone()), m, "{}", m.name());
        }
    }

    #[test]
    fn broadcast_payload_is_sliced_from_the_frame() {
        let packet = encode_event("/", "ev", &binary_args(), None);
        let message = Message::Broadcast { target: Target::default(), packet: packet.clone() };
        let bytes = encode("n", "/", &message).unwrap();
        let Message::Broadcast { packet: got, .. } = decode(&bytes).unwrap().message else { panic!() };
        assert_eq!(got, packet);
        let range = bytes.as_ptr_range();
        assert!(range.contains(&got.text.as_ptr()), "the text was copied");
        assert!(got.attachments.iter().all(|a| range.contains(&a.as_ptr())), "an attachment was copied");
    }

    #[test]
    fn an_address_is_an_unknown_kind_to_a_node_that_predates_it() {
        // Nodes before forwarding knew kinds 1-3 and 10-41: kind 4 is "unsupported" to them,
        // counted and dropped, while heartbeats stay exactly what they were.
        let frame = encode("n", "/", &Message::Address { address: "10.0.0.7:3000".into() }).unwrap();
        assert_eq!(frame[3], 4);
        let hb = encode("n", "/", &Message::Heartbeat).unwrap();
        assert_eq!(&hb[..], b"SB\x01\x01\0\0\0\x06\0\0\0\0\x93\xa1n\xa1/\xc0");
    }

    #[test]
    fn wrong_version_kind_and_magic_are_typed() {
        let good = encode("n", "/", &Message::Heartbeat).unwrap();
        let mut v2 = good.to_vec();
        v2[2] = 2;
        assert_eq!(decode(&v2.into()), Err(CodecError::UnsupportedVersion(2)));
        let mut kind = good.to_vec();
        kind[3] = 99;
        let err = decode(&kind.into()).unwrap_err();
        assert_eq!(err, CodecError::UnknownKind(99));
        assert!(err.is_unsupported());
        assert_eq!(decode(&Bytes::from_static(b"{\"hello\":1}")), Err(CodecError::BadMagic));
        assert_eq!(decode(&Bytes::from_static(b"SB")), Err(CodecError::Truncated));
        assert_eq!(decode(&Bytes::new()), Err(CodecError::Truncated));
        // A heartbeat whose header is a broadcast body: wrong shape for its kind.
        let b = encode(
            "n",
            "/",
            &Message::Broadcast { target: Target::default(), packet: encode_event("/", "e", &[], None) },
        )
        .unwrap();
        let mut wrong = b.to_vec();
        wrong[3] = Kind::FetchSockets as u8;
        assert!(decode(&wrong.into()).is_err());
    }

    #[test]
    fn the_sender_is_read_from_the_header_alone() {
        let packet = encode_event("/", "e", &[], None);
        let b = encode("node-7", "/x", &Message::Broadcast { target: Target::default(), packet }).unwrap();
        assert_eq!(sender(&b), Some("node-7"));
        // Only the header is read: a broken payload still names its sender.
        let head_end = PREFIX_LEN + u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
        assert_eq!(sender(&b[..head_end]), Some("node-7"));
        assert!(decode(&b.slice(..head_end)).is_err());
        let hb = encode("n", "/", &Message::Heartbeat).unwrap();
        assert_eq!(sender(&hb), Some("n"));
        let mut other_version = hb.to_vec();
        other_version[2] = VERSION + 1;
        assert_eq!(sender(&other_version), None, "another version's header may differ");
        let mut unknown = hb.to_vec();
        unknown[3] = 99;
        assert_eq!(sender(&unknown), None);
        assert_eq!(sender(&hb[..hb.len() - 1]), None, "header cut short");
        assert_eq!(sender(b"hello from another program"), None);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let packet = encode_event("/", "ev", &binary_args(), None);
        let messages = [
            Message::Broadcast { target: Target { opts: opts(&["a", "b"], &["c"]), part: 0 }, packet },
            Message::ServerSideEmitResponse { request_id: 3, args: binary_args() },
            Message::FetchSockets { request_id: 1, opts: opts(&["r"], &[]) },
        ];
        for m in messages {
            let bytes = encode("node", "/nsp", &m).unwrap();
            for len in 0..bytes.len() {
                assert!(decode(&bytes.slice(..len)).is_err(), "{} cut at {len} decoded", m.name());
            }
            let mut longer = bytes.to_vec();
            longer.push(0);
            assert!(decode(&longer.into()).is_err(), "{} with a trailing byte decoded", m.name());
        }
    }

    #[test]
    fn a_part_length_past_the_end_is_an_error() {
        let bytes =
            encode("n", "/", &Message::ServerSideEmit { request_id: None, event: "e".into(), args: vec![] })
                .unwrap();
        let mut v = bytes.to_vec();
        let head_len = u32::from_be_bytes([v[4], v[5], v[6], v[7]]) as usize;
        let at = PREFIX_LEN + head_len;
        v[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode(&v.into()), Err(CodecError::Truncated));
    }

    #[test]
    fn deep_header_nesting_is_refused() {
        // A header of 10 000 nested arrays: refused by depth, not by the stack.
        let mut v = b"SB\x01\x0a".to_vec();
        let head = vec![0x91u8; 10_000];
        v.extend_from_slice(&(head.len() as u32).to_be_bytes());
        v.extend_from_slice(&0u32.to_be_bytes());
        v.extend_from_slice(&head);
        assert_eq!(decode(&v.into()), Err(CodecError::InvalidHeader));
    }

    #[test]
    fn a_part_count_over_the_limit_is_refused_unread() {
        let frame = |parts: usize| {
            let mut v = encode("n", "/", &Message::Heartbeat).unwrap().to_vec();
            v[8..12].copy_from_slice(&(parts as u32).to_be_bytes());
            v.extend(std::iter::repeat_n(0u8, 4 * parts));
            Bytes::from(v)
        };
        assert_eq!(decode(&frame(MAX_PAYLOAD_PARTS + 1)), Err(CodecError::InvalidFraming));
        // Within the limit, the framing is read (and a heartbeat with parts is still refused).
        assert_eq!(decode(&frame(MAX_PAYLOAD_PARTS)), Err(CodecError::InvalidFraming));
        assert_eq!(decode(&frame(1)), Err(CodecError::InvalidFraming));
        let too_many = vec![Bytes::new(); MAX_PAYLOAD_PARTS];
        let packet =
            switchboard_protocol::socketio::Encoded { text: Bytes::from_static(b"2"), attachments: too_many };
        let message = Message::Broadcast { target: Target::default(), packet };
        assert_eq!(encode("n", "/", &message), Err(CodecError::Encode), "nor is such a frame written");
    }

    #[test]
    fn a_header_of_too_many_names_is_refused_before_it_is_read() {
        // A broadcast (read by hand) and a socketsJoin (through rmp-serde), each naming one more
        // empty room than a header may hold: about 60 MiB of rooms from a 1 MiB header, if read.
        let n = u32::try_from(msgpack::MAX_HEADER_ITEMS).unwrap();
        let frame = |kind: Kind, body: &[u8], tail: &[u8]| {
            let mut head = vec![0x93, 0xa1, b'n', 0xa1, b'/'];
            head.extend_from_slice(body);
            head.push(0xdd);
            head.extend_from_slice(&n.to_be_bytes());
            head.extend(std::iter::repeat_n(0xa0u8, msgpack::MAX_HEADER_ITEMS));
            head.extend_from_slice(tail);
            let mut v = vec![b'S', b'B', VERSION, kind as u8];
            v.extend_from_slice(&(head.len() as u32).to_be_bytes());
            v.extend_from_slice(&0u32.to_be_bytes());
            v.extend_from_slice(&head);
            Bytes::from(v)
        };
        let broadcast = frame(Kind::Broadcast, &[0x94], &[0x90, 0, 0]);
        assert_eq!(decode(&broadcast), Err(CodecError::InvalidHeader));
        let join = frame(Kind::SocketsJoin, &[0x95], &[0x90, 0, 0, 0x90]);
        assert_eq!(decode(&join), Err(CodecError::InvalidHeader));
    }

    fn arb_name() -> impl Strategy<Value = String> {
        prop_oneof![".*", "[a-z.#%_]{0,6}", Just(String::new())]
    }

    fn arb_opts() -> impl Strategy<Value = BroadcastOptions> {
        (
            prop::collection::vec(arb_name(), 0..4),
            prop::collection::vec(arb_name(), 0..3),
            any::<(bool, bool, bool)>(),
        )
            .prop_map(|(rooms, except, (local, volatile, compress))| BroadcastOptions {
                rooms: rooms.into_iter().map(Room::from).collect(),
                except: except.into_iter().map(Room::from).collect(),
                flags: BroadcastFlags { local, volatile, compress },
            })
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| Value::Number(n.into())),
            ".*".prop_map(Value::String),
            prop::collection::vec(any::<u8>(), 0..16).prop_map(|b| Value::Binary(b.into())),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[a-z]{0,4}", inner), 0..4).prop_map(Value::Object),
            ]
        })
    }

    fn arb_args() -> impl Strategy<Value = Vec<Value>> {
        prop::collection::vec(arb_value(), 0..4)
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        prop_oneof![
            Just(Message::Heartbeat),
            Just(Message::InitialHeartbeat),
            "[a-z0-9.:]{0,20}".prop_map(|address| Message::Address { address }),
            Just(Message::Closing),
            (arb_opts(), any::<u32>(), "[a-z]{1,8}", arb_args()).prop_map(|(opts, part, ev, args)| {
                Message::Broadcast {
                    target: Target { opts, part },
                    packet: encode_event("/x", &ev, &args, None),
                }
            }),
            (any::<u64>(), arb_opts(), any::<u64>(), 0u64..1_000_000, arb_args()).prop_map(
                |(request_id, opts, ack_id, ms, args)| Message::BroadcastWithAck {
                    request_id,
                    opts,
                    ack_id,
                    timeout: Duration::from_millis(ms),
                    packet: encode_event("/", "e", &args, Some(ack_id)),
                }
            ),
            (any::<u64>(), any::<u64>())
                .prop_map(|(request_id, count)| Message::BroadcastClientCount { request_id, count }),
            (any::<u64>(), arb_name(), arb_args()).prop_map(|(request_id, s, args)| Message::BroadcastAck {
                request_id,
                socket: s.into(),
                args
            }),
            (arb_opts(), any::<u32>(), prop::collection::vec(arb_name(), 0..3)).prop_map(
                |(opts, part, rooms)| {
                    Message::SocketsJoin {
                        target: Target { opts, part },
                        rooms: rooms.into_iter().map(Room::from).collect(),
                    }
                }
            ),
            (arb_opts(), any::<u32>(), any::<bool>()).prop_map(|(opts, part, close)| {
                Message::DisconnectSockets { target: Target { opts, part }, close }
            }),
            (any::<u64>(), arb_opts())
                .prop_map(|(request_id, opts)| Message::FetchSockets { request_id, opts }),
            (any::<Option<u64>>(), "[a-z]{1,8}", arb_args())
                .prop_map(|(request_id, event, args)| Message::ServerSideEmit { request_id, event, args }),
            (any::<u64>(), arb_args())
                .prop_map(|(request_id, args)| Message::ServerSideEmitResponse { request_id, args }),
        ]
    }

    proptest! {
        #[test]
        fn roundtrips(sender in "[A-Za-z0-9_-]{1,12}", nsp in "/.*", message in arb_message()) {
            let bytes = encode(&sender, &nsp, &message).unwrap();
            let env = decode(&bytes).unwrap();
            prop_assert_eq!(env.sender.as_str(), sender.as_str());
            prop_assert_eq!(super::sender(&bytes), Some(sender.as_str()), "the cheap sender read agrees");
            prop_assert_eq!(env.nsp, nsp);
            prop_assert_eq!(env.message, message);
        }

        #[test]
        fn sealed_frames_roundtrip(sender in "[A-Za-z0-9_-]{1,12}", message in arb_message()) {
            let key = Key::new(b"the secret of the cluster");
            let bytes = encode_with(&sender, "/n", &message, Some(&key)).unwrap();
            let opened = open(&bytes, Some(&key)).unwrap();
            prop_assert_eq!(super::sender(&opened), Some(sender.as_str()));
            let env = decode(&opened).unwrap();
            prop_assert_eq!(env.sender.as_str(), sender.as_str());
            prop_assert_eq!(env.message, message);
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = super::sender(&bytes);
            let _ = decode(&bytes.into());
        }

        #[test]
        fn garbage_after_a_valid_prefix_never_panics(
            kind in 0u8..50,
            count in 0u32..4,
            head in prop::collection::vec(any::<u8>(), 0..128),
            tail in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut v = b"SB\x01".to_vec();
            v.push(kind);
            v.extend_from_slice(&(head.len() as u32).to_be_bytes());
            v.extend_from_slice(&count.to_be_bytes());
            v.extend_from_slice(&head);
            v.extend_from_slice(&tail);
            let _ = super::sender(&v);
            let _ = decode(&v.into());
        }

        #[test]
        fn flipped_bytes_never_panic(message in arb_message(), at in any::<prop::sample::Index>(), xor in 1u8..) {
            let mut v = encode("n", "/", &message).unwrap().to_vec();
            let i = at.index(v.len());
            v[i] ^= xor;
            let _ = super::sender(&v);
            let _ = decode(&v.into());
        }
    }
}
