//! Envelope ⇄ bytes: a fixed 8-byte prefix, a msgpack header, then raw payload parts.
//!
//! ```text
//! 0      2         3      4           8               12                12+h
//! | "SB" | version | kind | h: u32 BE | n: u32 BE     | msgpack header | n × (len: u32 BE, bytes) |
//! ```
//!
//! - The header is one msgpack array `[sender, nsp, body]`, `body` a kind-specific array (rooms as
//!   string arrays, flags as bits, ids as integers, socket data and handshakes as JSON text).
//! - The parts carry Socket.IO encodings: for a broadcast, the emitter's packet text and its binary
//!   attachments exactly as [`BroadcastPacket::packet`](crate::BroadcastPacket::packet) holds them,
//!   so a receiver slices them out of the received buffer (no copy, no parse) and frames them once;
//!   for values (server-side emit and ack arguments), an event or ack packet encoded with
//!   `switchboard_protocol::socketio`, so binary survives the trip.
//!
//! Decoding never panics: anything that is not a complete, well-formed message of this version is
//! a [`CodecError`], and [`CodecError::is_unsupported`] tells a newer node from garbage.

use std::time::Duration;

use bytes::{Buf, Bytes};
use serde::{Deserialize, Serialize, Serializer};
use switchboard_protocol::socketio::{self, Decoded, Packet, Value, encode_ack, encode_event};

use super::NodeId;
use super::message::{Envelope, Message, Target};
use crate::error::CodecError;
use crate::types::{BroadcastFlags, BroadcastOptions, Room, SocketId, SocketInfo};

/// The first two bytes of every cluster message, to tell ours from another program's on a shared channel.
pub const MAGIC: [u8; 2] = *b"SB";
/// The message-set version this build speaks; a node ignores (and counts) any other.
pub const VERSION: u8 = 1;
/// Bytes before the msgpack header: magic, version, kind, header length, number of parts.
pub const PREFIX_LEN: usize = 12;
/// Nesting the header needs (arrays of arrays of strings); deeper input is refused early.
const MAX_HEADER_DEPTH: usize = 8;

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

/// Encodes a message from `sender` about namespace `nsp`.
///
/// Fails only on absurd input (a payload part over 4 GiB); the caller counts that as a dropped publish.
pub fn encode(sender: &str, nsp: &str, message: &Message) -> Result<Bytes, CodecError> {
    let kind = Kind::of(message);
    let mut frame = Frame::new(kind, message);
    let head = (sender, nsp);
    match message {
        Message::Heartbeat | Message::InitialHeartbeat | Message::Closing => {
            frame.head(&(head.0, head.1, ()))?
        }
        Message::Address { address } => frame.head(&(head.0, head.1, (address.as_str(),)))?,
        Message::Broadcast { target, packet } => {
            frame.broadcast_head(sender, nsp, target)?;
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
    Ok(frame.finish())
}

struct Frame {
    buf: Vec<u8>,
    parts: u32,
}

impl Frame {
    fn new(kind: Kind, message: &Message) -> Self {
        let payload = match message {
            Message::Broadcast { packet, .. } | Message::BroadcastWithAck { packet, .. } => {
                packet.text.len() + packet.attachments.iter().map(|a| a.len() + 4).sum::<usize>() + 4
            }
            _ => 0,
        };
        let mut buf = Vec::with_capacity(PREFIX_LEN + 64 + payload);
        buf.extend_from_slice(&MAGIC);
        buf.push(VERSION);
        buf.push(kind as u8);
        buf.extend_from_slice(&[0; 8]);
        Self { buf, parts: 0 }
    }

    fn head(&mut self, head: &impl Serialize) -> Result<(), CodecError> {
        rmp_serde::encode::write(&mut self.buf, head).map_err(|_| CodecError::Encode)?;
        let len = u32::try_from(self.buf.len() - PREFIX_LEN).map_err(|_| CodecError::Encode)?;
        self.buf[4..8].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// The broadcast header `[sender, nsp, [rooms, except, flags, part]]`, written by hand: the
    /// same bytes rmp-serde writes for that tuple, at a fraction of its cost on the hot path.
    fn broadcast_head(&mut self, sender: &str, nsp: &str, target: &Target) -> Result<(), CodecError> {
        let buf = &mut self.buf;
        let o = &target.opts;
        mp::array_len(buf, 3)?;
        mp::str(buf, sender)?;
        mp::str(buf, nsp)?;
        mp::array_len(buf, 4)?;
        for rooms in [&o.rooms, &o.except] {
            mp::array_len(buf, rooms.len())?;
            for room in rooms {
                mp::str(buf, room.as_str())?;
            }
        }
        mp::uint(buf, u64::from(flag_bits(o.flags)));
        mp::uint(buf, u64::from(target.part));
        let len = u32::try_from(self.buf.len() - PREFIX_LEN).map_err(|_| CodecError::Encode)?;
        self.buf[4..8].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    fn part(&mut self, bytes: &[u8]) -> Result<(), CodecError> {
        let len = u32::try_from(bytes.len()).map_err(|_| CodecError::Encode)?;
        self.parts = self.parts.checked_add(1).ok_or(CodecError::Encode)?;
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn packet(&mut self, packet: &socketio::Encoded) -> Result<(), CodecError> {
        self.part(&packet.text)?;
        packet.attachments.iter().try_for_each(|a| self.part(a))
    }

    fn finish(mut self) -> Bytes {
        self.buf[8..PREFIX_LEN].copy_from_slice(&self.parts.to_be_bytes());
        Bytes::from(self.buf)
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

fn header<'a, B: Deserialize<'a>>(head: &'a [u8]) -> Result<(&'a str, &'a str, B), CodecError> {
    let mut de = rmp_serde::Deserializer::from_read_ref(head);
    de.set_max_depth(MAX_HEADER_DEPTH);
    Deserialize::deserialize(&mut de).map_err(|_| CodecError::InvalidHeader)
}

/// The `count` payload parts after the header, each a slice of the received buffer.
struct Parts {
    rest: Bytes,
    left: usize,
}

impl Parts {
    fn new(rest: Bytes, count: u32) -> Result<Self, CodecError> {
        // Each part takes at least its 4-byte length: never trust `count` for an allocation.
        let left = usize::try_from(count).map_err(|_| CodecError::InvalidFraming)?;
        if left > rest.len() / 4 {
            return Err(CodecError::Truncated);
        }
        Ok(Self { rest, left })
    }

    fn next(&mut self) -> Result<Option<Bytes>, CodecError> {
        if self.left == 0 {
            return if self.rest.has_remaining() { Err(CodecError::InvalidFraming) } else { Ok(None) };
        }
        if self.rest.len() < 4 {
            return Err(CodecError::Truncated);
        }
        let len = usize::try_from(self.rest.get_u32()).map_err(|_| CodecError::InvalidFraming)?;
        if len > self.rest.len() {
            return Err(CodecError::Truncated);
        }
        self.left -= 1;
        Ok(Some(self.rest.split_to(len)))
    }

    fn collect(mut self) -> Result<Vec<Bytes>, CodecError> {
        let mut out = Vec::with_capacity(self.left);
        while let Some(part) = self.next()? {
            out.push(part);
        }
        Ok(out)
    }

    /// The parts as the Socket.IO encoding they carry: text first, then attachments.
    fn encoded(mut self) -> Result<socketio::Encoded, CodecError> {
        let text = self.next()?.ok_or(CodecError::MissingPayload)?;
        let mut attachments = Vec::with_capacity(self.left);
        while let Some(part) = self.next()? {
            attachments.push(part);
        }
        Ok(socketio::Encoded { text, attachments })
    }
}

/// The parts as the Socket.IO encoding they carry: text first, then attachments.
fn encoded(parts: Vec<Bytes>) -> Result<socketio::Encoded, CodecError> {
    let mut parts = parts.into_iter();
    let text = parts.next().ok_or(CodecError::MissingPayload)?;
    Ok(socketio::Encoded { text, attachments: parts.collect() })
}

/// Decodes the packet the parts carry, attachments resolved into [`Value::Binary`].
fn packet_of(parts: Vec<Bytes>) -> Result<Packet, CodecError> {
    let mut parts = parts.into_iter();
    let text = parts.next().ok_or(CodecError::MissingPayload)?;
    let text = std::str::from_utf8(&text).map_err(|_| CodecError::InvalidUtf8)?;
    match Packet::decode(text)? {
        Decoded::Complete(packet) if parts.len() == 0 => Ok(packet),
        Decoded::Complete(_) => Err(CodecError::InvalidFraming),
        Decoded::NeedsAttachments(mut partial) => {
            for attachment in parts.by_ref() {
                if let Some(packet) = partial.push(attachment)? {
                    return if parts.len() == 0 { Ok(packet) } else { Err(CodecError::InvalidFraming) };
                }
            }
            Err(CodecError::MissingPayload)
        }
    }
}

fn ack_args(parts: Vec<Bytes>) -> Result<Vec<Value>, CodecError> {
    match packet_of(parts)? {
        Packet::Ack { args, .. } => Ok(args),
        _ => Err(CodecError::MissingPayload),
    }
}

fn no_parts(parts: &[Bytes]) -> Result<(), CodecError> {
    if parts.is_empty() { Ok(()) } else { Err(CodecError::InvalidFraming) }
}

fn json(text: &str) -> Result<serde_json::Value, CodecError> {
    serde_json::from_str(text).map_err(|_| CodecError::InvalidJson)
}

/// The sender named by a frame's header, read without decoding the rest (the first two header
/// elements are the same for every kind); `None` unless the prefix is valid for this version and
/// the header starts with `[sender, …`. A receiver drops its own echoed messages with this before
/// paying for a full [`decode`].
pub fn sender(frame: &[u8]) -> Option<&str> {
    if frame.len() < PREFIX_LEN || frame[..2] != MAGIC || frame[2] != VERSION {
        return None;
    }
    Kind::from_u8(frame[3])?;
    let head_len = usize::try_from(u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]])).ok()?;
    let head = frame.get(PREFIX_LEN..PREFIX_LEN.checked_add(head_len)?)?;
    mp::sender(head)
}

/// Decodes one message; payload parts are slices of `frame`, not copies.
pub fn decode(frame: &Bytes) -> Result<Envelope, CodecError> {
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
    let kind = Kind::from_u8(frame[3]).ok_or(CodecError::UnknownKind(frame[3]))?;
    let head_len = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let part_count = u32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]);
    let head_end = usize::try_from(head_len)
        .ok()
        .and_then(|h| h.checked_add(PREFIX_LEN))
        .filter(|&end| end <= frame.len())
        .ok_or(CodecError::Truncated)?;
    let head = &frame[PREFIX_LEN..head_end];
    let parts = Parts::new(frame.slice(head_end..), part_count)?;
    if kind == Kind::Broadcast {
        let (sender, nsp, target) = mp::broadcast_head(head)?;
        let message = Message::Broadcast { target, packet: parts.encoded()? };
        return Ok(Envelope { sender: NodeId::from(sender), nsp: nsp.to_owned(), message });
    }
    let parts = parts.collect()?;

    let (sender, nsp, message) = match kind {
        Kind::Heartbeat | Kind::InitialHeartbeat | Kind::Closing => {
            let (sender, nsp, ()) = header(head)?;
            no_parts(&parts)?;
            let message = match kind {
                Kind::Heartbeat => Message::Heartbeat,
                Kind::InitialHeartbeat => Message::InitialHeartbeat,
                _ => Message::Closing,
            };
            (sender, nsp, message)
        }
        Kind::Address => {
            let (sender, nsp, (address,)) = header::<(String,)>(head)?;
            no_parts(&parts)?;
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
                packet: encoded(parts)?,
            };
            (sender, nsp, message)
        }
        Kind::BroadcastClientCount => {
            let (sender, nsp, (request_id, count)) = header(head)?;
            no_parts(&parts)?;
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
            no_parts(&parts)?;
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
            no_parts(&parts)?;
            let target = Target { opts: opts_of((rooms, except, flags)), part };
            (sender, nsp, Message::DisconnectSockets { target, close })
        }
        Kind::FetchSockets => {
            let (sender, nsp, (request_id, rooms, except, flags)) = header::<(u64, _, _, u8)>(head)?;
            no_parts(&parts)?;
            (sender, nsp, Message::FetchSockets { request_id, opts: opts_of((rooms, except, flags)) })
        }
        Kind::FetchSocketsResponse => {
            type WireSocket<'a> = (&'a str, Vec<&'a str>, &'a str, &'a str);
            let (sender, nsp, (request_id, wire)) = header::<(u64, Vec<WireSocket<'_>>)>(head)?;
            no_parts(&parts)?;
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
            let Packet::Event { event, args, .. } = packet_of(parts)? else {
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

/// The msgpack subset of the broadcast header (arrays, strings, unsigned integers), by hand.
mod mp {
    use super::{CodecError, Target, opts_of};

    fn len_u32(n: usize) -> Result<u32, CodecError> {
        u32::try_from(n).map_err(|_| CodecError::Encode)
    }

    pub(super) fn array_len(buf: &mut Vec<u8>, n: usize) -> Result<(), CodecError> {
        let n = len_u32(n)?;
        match n {
            0..=15 => buf.push(0x90 | n as u8),
            16..=0xffff => {
                buf.push(0xdc);
                buf.extend_from_slice(&(n as u16).to_be_bytes());
            }
            _ => {
                buf.push(0xdd);
                buf.extend_from_slice(&n.to_be_bytes());
            }
        }
        Ok(())
    }

    pub(super) fn str(buf: &mut Vec<u8>, s: &str) -> Result<(), CodecError> {
        let n = len_u32(s.len())?;
        match n {
            0..=31 => buf.push(0xa0 | n as u8),
            32..=0xff => buf.extend_from_slice(&[0xd9, n as u8]),
            0x100..=0xffff => {
                buf.push(0xda);
                buf.extend_from_slice(&(n as u16).to_be_bytes());
            }
            _ => {
                buf.push(0xdb);
                buf.extend_from_slice(&n.to_be_bytes());
            }
        }
        buf.extend_from_slice(s.as_bytes());
        Ok(())
    }

    pub(super) fn uint(buf: &mut Vec<u8>, v: u64) {
        match v {
            0..=0x7f => buf.push(v as u8),
            0x80..=0xff => buf.extend_from_slice(&[0xcc, v as u8]),
            0x100..=0xffff => {
                buf.push(0xcd);
                buf.extend_from_slice(&(v as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                buf.push(0xce);
                buf.extend_from_slice(&(v as u32).to_be_bytes());
            }
            _ => {
                buf.push(0xcf);
                buf.extend_from_slice(&v.to_be_bytes());
            }
        }
    }

    struct Reader<'a>(&'a [u8]);

    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
            if n > self.0.len() {
                return Err(CodecError::InvalidHeader);
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Ok(head)
        }

        fn byte(&mut self) -> Result<u8, CodecError> {
            Ok(self.take(1)?[0])
        }

        fn be(&mut self, n: usize) -> Result<u64, CodecError> {
            Ok(self.take(n)?.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
        }

        fn array_len(&mut self) -> Result<usize, CodecError> {
            let n = match self.byte()? {
                m @ 0x90..=0x9f => u64::from(m & 0x0f),
                0xdc => self.be(2)?,
                0xdd => self.be(4)?,
                _ => return Err(CodecError::InvalidHeader),
            };
            let n = usize::try_from(n).map_err(|_| CodecError::InvalidHeader)?;
            // Every element takes a byte at least: a length beyond the input is a lie.
            if n > self.0.len() {
                return Err(CodecError::InvalidHeader);
            }
            Ok(n)
        }

        fn str(&mut self) -> Result<&'a str, CodecError> {
            let n = match self.byte()? {
                m @ 0xa0..=0xbf => u64::from(m & 0x1f),
                0xd9 => self.be(1)?,
                0xda => self.be(2)?,
                0xdb => self.be(4)?,
                _ => return Err(CodecError::InvalidHeader),
            };
            let n = usize::try_from(n).map_err(|_| CodecError::InvalidHeader)?;
            std::str::from_utf8(self.take(n)?).map_err(|_| CodecError::InvalidHeader)
        }

        fn uint(&mut self) -> Result<u64, CodecError> {
            match self.byte()? {
                m @ 0x00..=0x7f => Ok(u64::from(m)),
                0xcc => self.be(1),
                0xcd => self.be(2),
                0xce => self.be(4),
                0xcf => self.be(8),
                _ => Err(CodecError::InvalidHeader),
            }
        }

        fn strs(&mut self) -> Result<Vec<&'a str>, CodecError> {
            let n = self.array_len()?;
            (0..n).map(|_| self.str()).collect()
        }
    }

    /// The first element of a 3-element header array: the sender.
    pub(super) fn sender(head: &[u8]) -> Option<&str> {
        let mut r = Reader(head);
        (r.array_len().ok()? == 3).then_some(())?;
        r.str().ok()
    }

    /// Reads `[sender, nsp, [rooms, except, flags, part]]`; anything else, or trailing bytes, is refused.
    pub(super) fn broadcast_head(head: &[u8]) -> Result<(&str, &str, Target), CodecError> {
        let mut r = Reader(head);
        if r.array_len()? != 3 {
            return Err(CodecError::InvalidHeader);
        }
        let sender = r.str()?;
        let nsp = r.str()?;
        if r.array_len()? != 4 {
            return Err(CodecError::InvalidHeader);
        }
        let rooms = r.strs()?;
        let except = r.strs()?;
        let flags = u8::try_from(r.uint()?).map_err(|_| CodecError::InvalidHeader)?;
        let part = u32::try_from(r.uint()?).map_err(|_| CodecError::InvalidHeader)?;
        if !r.0.is_empty() {
            return Err(CodecError::InvalidHeader);
        }
        Ok((sender, nsp, Target { opts: opts_of((rooms, except, flags)), part }))
    }
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
    fn the_hand_written_broadcast_header_is_what_rmp_serde_writes() {
        let long = "r".repeat(300);
        let many: Vec<String> = (0..20).map(|i| format!("room{i}")).collect();
        let cases = [
            (vec![], vec![], 0, 0),
            (vec!["a".to_owned(), String::new()], vec!["é".to_owned()], 7, 127),
            (vec!["x".repeat(31), "x".repeat(32), long.clone()], vec!["y".repeat(255)], 2, 128),
            (many.clone(), many, 4, 70_000),
            (vec![long.repeat(300)], vec![], 1, u32::MAX),
        ];
        for (rooms, except, flags, part) in cases {
            let target = Target {
                opts: BroadcastOptions {
                    rooms: rooms.iter().map(Room::from).collect(),
                    except: except.iter().map(Room::from).collect(),
                    flags: flags_of(flags),
                },
                part,
            };
            let message =
                Message::Broadcast { target: target.clone(), packet: encode_event("/", "e", &[], None) };
            let bytes = encode("node-1", "/chat", &message).unwrap();
            let head_len = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
            let head = &bytes[PREFIX_LEN..PREFIX_LEN + head_len];
            let r: Vec<&str> = rooms.iter().map(String::as_str).collect();
            let e: Vec<&str> = except.iter().map(String::as_str).collect();
            let serde = rmp_serde::to_vec(&("node-1", "/chat", (r, e, flags, part))).unwrap();
            assert_eq!(head, &serde[..], "header differs from rmp-serde's for {flags}/{part}");
            let (sender, nsp, got): (&str, &str, (WireOpts<'_>, u32)) =
                rmp_serde::from_slice(head).map(|(s, n, (r, e, f, p))| (s, n, ((r, e, f), p))).unwrap();
            assert_eq!((sender, nsp, got.0.2, got.1), ("node-1", "/chat", flags, part));
            assert_eq!(roundtrip(message.clone()), message);
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
