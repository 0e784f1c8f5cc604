//! The messages of `@socket.io/redis-adapter` 8 (classic) and `@socket.io/redis-emitter` 5, as
//! typed values, and their bytes: broadcasts (notepack arrays), requests and responses (JSON, or
//! notepack maps for the ones that may carry binary). What each field means and where Node reads
//! it: docs/design/node-redis-adapter-wire-format.md §1 and §3.
//!
//! Decoding never trusts the peer: the bytes are bounded before they get here (the adapter drops
//! a message over its size limit unread), notepack decoding is bounded by [`notepack`], and room
//! lists by [`Limits`]. Maps are read by key, never by position (the emitter orders them
//! differently), and unknown keys are ignored.

use bytes::Bytes;
use serde_json::json;
use switchboard_adapter::{BroadcastFlags, BroadcastOptions, Room};
use switchboard_protocol::socketio::Value;

use super::notepack::{self, NotepackError};

/// What a peer's message may ask for at most, beyond its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Rooms in `rooms`, `except`, or the rooms of a socketsJoin/Leave.
    pub max_rooms: usize,
    /// Bytes of one room name.
    pub max_name_bytes: usize,
}

/// Why bytes from the broker are not a Node adapter message; the adapter counts and drops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Not notepack.
    #[error(transparent)]
    Notepack(#[from] NotepackError),
    /// Not JSON.
    #[error("invalid JSON")]
    Json,
    /// Valid encoding, but not the shape of any message of this type.
    #[error("malformed {0}")]
    Shape(&'static str),
    /// A request type this node does not know.
    #[error("unknown request type {0}")]
    UnknownType(u64),
    /// More rooms, or a longer room name, than [`Limits`] allow.
    #[error("too many rooms, or a room name too long")]
    TooManyRooms,
    /// A broadcast with acks while this node already relays as many as it may.
    #[error("too many acked broadcasts in flight")]
    TooManyRelays,
    /// Larger than the node reads (its size in bytes); dropped unread.
    #[error("message of {0} bytes over the size limit")]
    TooLarge(usize),
}

/// Request types of the classic adapter (RA `lib/index.ts` `RequestType`).
pub mod kind {
    /// Socket ids in rooms (7.x senders only).
    pub const SOCKETS: u64 = 0;
    /// Every room of every node (`allRooms`).
    pub const ALL_ROOMS: u64 = 1;
    /// `socketsJoin`.
    pub const REMOTE_JOIN: u64 = 2;
    /// `socketsLeave`.
    pub const REMOTE_LEAVE: u64 = 3;
    /// `disconnectSockets`.
    pub const REMOTE_DISCONNECT: u64 = 4;
    /// `fetchSockets`.
    pub const REMOTE_FETCH: u64 = 5;
    /// `serverSideEmit`, and its answers.
    pub const SERVER_SIDE_EMIT: u64 = 6;
    /// A broadcast with acks.
    pub const BROADCAST: u64 = 7;
    /// How many clients a node delivered an acked broadcast to.
    pub const BROADCAST_CLIENT_COUNT: u64 = 8;
    /// One client's ack of an acked broadcast.
    pub const BROADCAST_ACK: u64 = 9;
}

/// The socket.io-parser packet a broadcast carries: `data` is `[event, ...args]`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodePacket {
    /// The event name.
    pub event: String,
    /// Its arguments (binary allowed).
    pub args: Vec<Value>,
    /// The namespace (`/` when absent, as Node assumes).
    pub nsp: String,
}

/// `opts` of a broadcast or request: which sockets, and the flags that matter here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// The rooms, the flags: what the local room index takes.
    pub opts: BroadcastOptions,
    /// `flags.timeout` in ms (acked broadcasts).
    pub timeout: Option<u64>,
}

/// A broadcast (`[uid, packet, opts]`), from an adapter or an emitter (uid `emitter`).
#[derive(Debug, Clone, PartialEq)]
pub struct Broadcast {
    /// The sender's uid.
    pub uid: String,
    /// What to deliver.
    pub packet: NodePacket,
    /// To whom.
    pub selection: Selection,
}

/// A message on a namespace's request channel.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// 0 (7.x): the socket ids in `rooms`.
    Sockets {
        /// Where the answer goes.
        request_id: String,
        /// The rooms (all sockets when empty).
        rooms: Vec<Room>,
    },
    /// 1: every room with members here.
    AllRooms {
        /// The requester.
        uid: Option<String>,
        /// Where the answer goes.
        request_id: String,
    },
    /// 2 / 3: the selected sockets join or leave `rooms`; `request_id` only in the 7.x form,
    /// which wants an answer.
    Rooms {
        /// Join (true) or leave.
        join: bool,
        /// The sender (absent from emitters).
        uid: Option<String>,
        /// The sockets.
        selection: Selection,
        /// The rooms to join or leave.
        rooms: Vec<Room>,
        /// 7.x form: answer `{requestId}`.
        request_id: Option<String>,
    },
    /// 4: disconnect the selected sockets.
    Disconnect {
        /// The sender (absent from emitters).
        uid: Option<String>,
        /// The sockets.
        selection: Selection,
        /// Also close their connection.
        close: bool,
        /// 7.x form: answer `{requestId}`.
        request_id: Option<String>,
    },
    /// 5: the selected sockets' details.
    Fetch {
        /// The requester.
        uid: Option<String>,
        /// Where the answer goes.
        request_id: String,
        /// The sockets.
        selection: Selection,
    },
    /// 6: a server-side event; with a request id the sender waits for one answer per node.
    ServerSideEmit {
        /// The sender.
        uid: Option<String>,
        /// Present when an answer is awaited.
        request_id: Option<String>,
        /// The event name.
        event: String,
        /// Its arguments.
        args: Vec<Value>,
    },
    /// 7: a broadcast whose clients' acks go back to the requester.
    Broadcast {
        /// The requester.
        uid: Option<String>,
        /// Where counts and acks go.
        request_id: String,
        /// What to deliver.
        packet: NodePacket,
        /// To whom, and the timeout.
        selection: Selection,
    },
}

/// A message on a response channel.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// fetchSockets (or 7.x SOCKETS) answer: `sockets`.
    Sockets {
        /// The request answered.
        request_id: String,
        /// One entry per socket (`{id, handshake, rooms, data}`, or a bare id from 7.x).
        sockets: Vec<Value>,
    },
    /// allRooms answer.
    Rooms {
        /// The request answered.
        request_id: String,
        /// The node's rooms.
        rooms: Vec<Value>,
    },
    /// A node's answer to a server-side emit with ack.
    ServerSideEmit {
        /// The request answered.
        request_id: String,
        /// The answer's first argument (only that crosses nodes in Node).
        data: Value,
    },
    /// A node's client count for an acked broadcast.
    ClientCount {
        /// The request answered.
        request_id: String,
        /// How many of its clients got the packet.
        count: u64,
    },
    /// One client's ack of an acked broadcast.
    Ack {
        /// The request answered.
        request_id: String,
        /// The ack's first argument.
        data: Value,
    },
    /// Anything else that names a request (7.x join/leave/disconnect answers), ignored.
    Other,
}

// ------------------------------------------------------------------------------------------------
// Encoding (what this node sends, as Node 8.3 sends it)
// ------------------------------------------------------------------------------------------------

/// `{type: 2, data: [event, ...args], nsp}`.
fn packet_value(event: &str, args: &[Value], nsp: &str) -> Value {
    let mut data = Vec::with_capacity(1 + args.len());
    data.push(Value::String(event.to_owned()));
    data.extend(args.iter().cloned());
    Value::Object(vec![
        ("type".into(), Value::from(2u64)),
        ("data".into(), Value::Array(data)),
        ("nsp".into(), Value::String(nsp.to_owned())),
    ])
}

fn rooms_value(rooms: &[Room]) -> Value {
    Value::Array(rooms.iter().map(|r| Value::String(r.as_str().to_owned())).collect())
}

fn flags_value(flags: &BroadcastFlags, timeout: Option<u64>) -> Value {
    let mut entries = Vec::new();
    if flags.volatile {
        entries.push(("volatile".into(), Value::Bool(true)));
    }
    if flags.compress {
        entries.push(("compress".into(), Value::Bool(true)));
    }
    if let Some(ms) = timeout {
        entries.push(("timeout".into(), Value::from(ms)));
    }
    Value::Object(entries)
}

fn opts_value(opts: &BroadcastOptions, timeout: Option<u64>) -> Value {
    Value::Object(vec![
        ("rooms".into(), rooms_value(&opts.rooms)),
        ("except".into(), rooms_value(&opts.except)),
        ("flags".into(), flags_value(&opts.flags, timeout)),
    ])
}

fn opts_json(opts: &BroadcastOptions) -> serde_json::Value {
    let names = |rooms: &[Room]| rooms.iter().map(|r| r.as_str().to_owned()).collect::<Vec<_>>();
    json!({ "rooms": names(&opts.rooms), "except": names(&opts.except) })
}

/// A broadcast: `[uid, {type, data, nsp}, {rooms, except, flags}]` in notepack.
pub fn encode_broadcast(
    uid: &str,
    nsp: &str,
    event: &str,
    args: &[Value],
    opts: &BroadcastOptions,
) -> Vec<u8> {
    notepack::encode(&Value::Array(vec![
        Value::String(uid.to_owned()),
        packet_value(event, args, nsp),
        opts_value(opts, None),
    ]))
}

/// socketsJoin (`join`) or socketsLeave: JSON `{uid, type, opts, rooms}`.
pub fn encode_rooms(uid: &str, join: bool, opts: &BroadcastOptions, rooms: &[Room]) -> Vec<u8> {
    let kind = if join { kind::REMOTE_JOIN } else { kind::REMOTE_LEAVE };
    let rooms: Vec<&str> = rooms.iter().map(Room::as_str).collect();
    json_bytes(&json!({ "uid": uid, "type": kind, "opts": opts_json(opts), "rooms": rooms }))
}

/// disconnectSockets: JSON `{uid, type, opts, close}`.
pub fn encode_disconnect(uid: &str, opts: &BroadcastOptions, close: bool) -> Vec<u8> {
    json_bytes(
        &json!({ "uid": uid, "type": kind::REMOTE_DISCONNECT, "opts": opts_json(opts), "close": close }),
    )
}

/// fetchSockets: JSON `{uid, requestId, type, opts}`.
pub fn encode_fetch(uid: &str, request_id: &str, opts: &BroadcastOptions) -> Vec<u8> {
    json_bytes(
        &json!({ "uid": uid, "requestId": request_id, "type": kind::REMOTE_FETCH, "opts": opts_json(opts) }),
    )
}

/// serverSideEmit: JSON `{uid, [requestId], type, data: [event, ...args]}`; binary becomes what
/// `JSON.stringify` makes of a Buffer, as in Node.
pub fn encode_server_side_emit(uid: &str, request_id: Option<&str>, event: &str, args: &[Value]) -> Vec<u8> {
    let mut data = vec![serde_json::Value::String(event.to_owned())];
    data.extend(args.iter().map(node_json));
    let mut message = json!({ "uid": uid, "type": kind::SERVER_SIDE_EMIT, "data": data });
    if let Some(id) = request_id {
        message["requestId"] = json!(id);
    }
    json_bytes(&message)
}

/// A broadcast with acks: notepack `{uid, requestId, type, packet, opts}`.
pub fn encode_ack_broadcast(
    uid: &str,
    request_id: &str,
    nsp: &str,
    event: &str,
    args: &[Value],
    opts: &BroadcastOptions,
    timeout_ms: u64,
) -> Vec<u8> {
    notepack::encode(&Value::Object(vec![
        ("uid".into(), Value::String(uid.to_owned())),
        ("requestId".into(), Value::String(request_id.to_owned())),
        ("type".into(), Value::from(kind::BROADCAST)),
        ("packet".into(), packet_value(event, args, nsp)),
        ("opts".into(), opts_value(opts, Some(timeout_ms))),
    ]))
}

/// fetchSockets answer: JSON `{requestId, sockets}` (always with the array: Node stalls without).
pub fn encode_sockets_response(request_id: &str, sockets: Vec<serde_json::Value>) -> Vec<u8> {
    json_bytes(&json!({ "requestId": request_id, "sockets": sockets }))
}

/// allRooms answer: JSON `{requestId, rooms}`.
pub fn encode_rooms_response(request_id: &str, rooms: &[Room]) -> Vec<u8> {
    let rooms: Vec<&str> = rooms.iter().map(Room::as_str).collect();
    json_bytes(&json!({ "requestId": request_id, "rooms": rooms }))
}

/// A 7.x join/leave/disconnect answer: JSON `{requestId}`.
pub fn encode_done_response(request_id: &str) -> Vec<u8> {
    json_bytes(&json!({ "requestId": request_id }))
}

/// Answer to a server-side emit with ack: JSON `{type, requestId, data}` (the first argument).
pub fn encode_server_side_response(request_id: &str, first: &Value) -> Vec<u8> {
    json_bytes(&json!({ "type": kind::SERVER_SIDE_EMIT, "requestId": request_id, "data": node_json(first) }))
}

/// This node's client count for an acked broadcast: JSON `{type, requestId, clientCount}`.
pub fn encode_client_count(request_id: &str, count: usize) -> Vec<u8> {
    json_bytes(
        &json!({ "type": kind::BROADCAST_CLIENT_COUNT, "requestId": request_id, "clientCount": count }),
    )
}

/// One client's ack: notepack `{type, requestId, packet}` (the first argument, binary kept).
pub fn encode_ack(request_id: &str, first: &Value) -> Vec<u8> {
    notepack::encode(&Value::Object(vec![
        ("type".into(), Value::from(kind::BROADCAST_ACK)),
        ("requestId".into(), Value::String(request_id.to_owned())),
        ("packet".into(), first.clone()),
    ]))
}

fn json_bytes(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// `value` as `JSON.stringify` writes it in Node: binary as `{"type":"Buffer","data":[…]}`.
pub fn node_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Binary(bytes) => json!({ "type": "Buffer", "data": bytes.as_ref() }),
        Value::Array(items) => serde_json::Value::Array(items.iter().map(node_json).collect()),
        Value::Object(entries) => {
            serde_json::Value::Object(entries.iter().map(|(k, v)| (k.clone(), node_json(v))).collect())
        }
        other => other.to_json().unwrap_or_default(),
    }
}

// ------------------------------------------------------------------------------------------------
// Decoding (what Node nodes and emitters send)
// ------------------------------------------------------------------------------------------------

/// A request or response body: JSON when it starts with `{`, notepack otherwise (as Node decides).
fn body(bytes: &Bytes) -> Result<Value, MessageError> {
    match bytes.first() {
        Some(b'{') => {
            let json: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| MessageError::Json)?;
            Ok(Value::from(json))
        }
        _ => Ok(notepack::decode(bytes)?),
    }
}

/// A map's entries, or a shape error naming `what`.
fn entries<'v>(value: &'v Value, what: &'static str) -> Result<&'v [(String, Value)], MessageError> {
    match value {
        Value::Object(entries) => Ok(entries),
        _ => Err(MessageError::Shape(what)),
    }
}

fn field<'v>(entries: &'v [(String, Value)], key: &str) -> Option<&'v Value> {
    // The last one wins, as in `JSON.parse`.
    entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// A string or number field as a string (request ids are strings; be lenient with numbers).
fn string_field(entries: &[(String, Value)], key: &str) -> Option<String> {
    match field(entries, key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn uint_field(entries: &[(String, Value)], key: &str) -> Option<u64> {
    match field(entries, key)? {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        _ => None,
    }
}

fn bool_field(entries: &[(String, Value)], key: &str) -> bool {
    matches!(field(entries, key), Some(Value::Bool(true)))
}

/// A room list: strings, or numbers as JS writes them (`join(123)`); a missing list is empty.
fn rooms(value: Option<&Value>, limits: Limits) -> Result<Vec<Room>, MessageError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(MessageError::Shape("room list")),
    };
    if items.len() > limits.max_rooms {
        return Err(MessageError::TooManyRooms);
    }
    items
        .iter()
        .map(|item| {
            let name = match item {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(MessageError::Shape("room name")),
            };
            match name.len() <= limits.max_name_bytes {
                true => Ok(Room::from(name)),
                false => Err(MessageError::TooManyRooms),
            }
        })
        .collect()
}

/// `opts`: `{rooms, except, flags}`, every part optional.
fn selection(value: Option<&Value>, limits: Limits) -> Result<Selection, MessageError> {
    let Some(value) = value.filter(|v| !matches!(v, Value::Null)) else { return Ok(Selection::default()) };
    let opts = entries(value, "opts")?;
    let flags = match field(opts, "flags") {
        Some(Value::Object(flags)) => flags.as_slice(),
        _ => &[],
    };
    let mut selection = Selection {
        opts: BroadcastOptions {
            rooms: rooms(field(opts, "rooms"), limits)?,
            except: rooms(field(opts, "except"), limits)?,
            flags: BroadcastFlags::default(),
        },
        timeout: uint_field(flags, "timeout"),
    };
    selection.opts.flags.volatile = bool_field(flags, "volatile");
    selection.opts.flags.compress = bool_field(flags, "compress");
    // `local` never crosses the broker from Node; a peer that says so is obeyed by delivering
    // here only, which is what the receiver does anyway.
    Ok(selection)
}

/// `{type: 2, data: [event, ...args], nsp?}`.
fn packet(value: Option<&Value>) -> Result<NodePacket, MessageError> {
    let packet = entries(value.ok_or(MessageError::Shape("packet"))?, "packet")?;
    let Some(Value::Array(data)) = field(packet, "data") else {
        return Err(MessageError::Shape("packet data"));
    };
    let mut data = data.iter();
    let Some(Value::String(event)) = data.next() else { return Err(MessageError::Shape("event name")) };
    let nsp = match field(packet, "nsp") {
        Some(Value::String(nsp)) => nsp.clone(),
        _ => "/".to_owned(),
    };
    Ok(NodePacket { event: event.clone(), args: data.cloned().collect(), nsp })
}

/// A broadcast from the namespace's channel (or one of its room channels).
pub fn decode_broadcast(bytes: &Bytes, limits: Limits) -> Result<Broadcast, MessageError> {
    let Value::Array(parts) = notepack::decode(bytes)? else { return Err(MessageError::Shape("broadcast")) };
    let [uid, packet_part, opts, ..] = parts.as_slice() else { return Err(MessageError::Shape("broadcast")) };
    let uid = match uid {
        Value::String(uid) => uid.clone(),
        _ => return Err(MessageError::Shape("broadcast uid")),
    };
    Ok(Broadcast { uid, packet: packet(Some(packet_part))?, selection: selection(Some(opts), limits)? })
}

/// The sender's uid of a broadcast, read without decoding the rest: an echo of this node's own
/// message is dropped before its payload is parsed.
pub fn broadcast_uid(bytes: &[u8]) -> Option<&str> {
    // fixarray of 3, then a str8 or fixstr uid.
    let rest = bytes.strip_prefix(&[0x93])?;
    let (&marker, rest) = rest.split_first()?;
    let (len, rest) = match marker {
        0xa0..=0xbf => (usize::from(marker & 0x1f), rest),
        0xd9 => (usize::from(*rest.first()?), rest.get(1..)?),
        _ => return None,
    };
    std::str::from_utf8(rest.get(..len)?).ok()
}

/// A message from the request channel.
pub fn decode_request(bytes: &Bytes, limits: Limits) -> Result<Request, MessageError> {
    let value = body(bytes)?;
    let message = entries(&value, "request")?;
    let kind = uint_field(message, "type").ok_or(MessageError::Shape("request type"))?;
    let uid = string_field(message, "uid");
    let request_id = string_field(message, "requestId");
    let needs_id = |id: Option<String>| id.ok_or(MessageError::Shape("request id"));
    Ok(match kind {
        kind::SOCKETS => Request::Sockets {
            request_id: needs_id(request_id)?,
            rooms: rooms(field(message, "rooms"), limits)?,
        },
        kind::ALL_ROOMS => Request::AllRooms { uid, request_id: needs_id(request_id)? },
        kind::REMOTE_JOIN | kind::REMOTE_LEAVE => {
            let join = kind == kind::REMOTE_JOIN;
            match field(message, "opts") {
                Some(opts) => Request::Rooms {
                    join,
                    uid,
                    selection: selection(Some(opts), limits)?,
                    rooms: rooms(field(message, "rooms"), limits)?,
                    request_id: None,
                },
                // 7.x: `{sid, room}` of one socket.
                None => {
                    let sid = string_field(message, "sid").ok_or(MessageError::Shape("sid"))?;
                    let room = field(message, "room").cloned().map(|r| vec![r]);
                    Request::Rooms {
                        join,
                        uid,
                        selection: Selection {
                            opts: BroadcastOptions { rooms: vec![Room::from(sid)], ..Default::default() },
                            timeout: None,
                        },
                        rooms: rooms(room.map(Value::Array).as_ref(), limits)?,
                        request_id,
                    }
                }
            }
        }
        kind::REMOTE_DISCONNECT => {
            let close = bool_field(message, "close");
            match field(message, "opts") {
                Some(opts) => Request::Disconnect {
                    uid,
                    selection: selection(Some(opts), limits)?,
                    close,
                    request_id: None,
                },
                None => {
                    let sid = string_field(message, "sid").ok_or(MessageError::Shape("sid"))?;
                    let selection = Selection {
                        opts: BroadcastOptions { rooms: vec![Room::from(sid)], ..Default::default() },
                        timeout: None,
                    };
                    Request::Disconnect { uid, selection, close, request_id }
                }
            }
        }
        kind::REMOTE_FETCH => Request::Fetch {
            uid,
            request_id: needs_id(request_id)?,
            selection: selection(field(message, "opts"), limits)?,
        },
        kind::SERVER_SIDE_EMIT => {
            let Some(Value::Array(data)) = field(message, "data") else {
                return Err(MessageError::Shape("server-side emit data"));
            };
            let mut data = data.iter();
            let Some(Value::String(event)) = data.next() else {
                return Err(MessageError::Shape("server-side event name"));
            };
            Request::ServerSideEmit { uid, request_id, event: event.clone(), args: data.cloned().collect() }
        }
        kind::BROADCAST => Request::Broadcast {
            uid,
            request_id: needs_id(request_id)?,
            packet: packet(field(message, "packet"))?,
            selection: selection(field(message, "opts"), limits)?,
        },
        other => return Err(MessageError::UnknownType(other)),
    })
}

/// A message from a response channel (its size was bounded before; what it holds is kept until
/// the request it answers reads it).
pub fn decode_response(bytes: &Bytes) -> Result<Response, MessageError> {
    let value = body(bytes)?;
    let message = entries(&value, "response")?;
    let request_id = string_field(message, "requestId").ok_or(MessageError::Shape("request id"))?;
    Ok(match uint_field(message, "type") {
        Some(kind::SERVER_SIDE_EMIT) => {
            Response::ServerSideEmit { request_id, data: field(message, "data").cloned().unwrap_or_default() }
        }
        Some(kind::BROADCAST_CLIENT_COUNT) => {
            let count = uint_field(message, "clientCount").ok_or(MessageError::Shape("client count"))?;
            Response::ClientCount { request_id, count }
        }
        Some(kind::BROADCAST_ACK) => {
            Response::Ack { request_id, data: field(message, "packet").cloned().unwrap_or_default() }
        }
        _ => match (field(message, "sockets"), field(message, "rooms")) {
            (Some(Value::Array(sockets)), _) => Response::Sockets { request_id, sockets: sockets.clone() },
            (_, Some(Value::Array(rooms))) => Response::Rooms { request_id, rooms: rooms.clone() },
            _ => Response::Other,
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const LIMITS: Limits = Limits { max_rooms: 8, max_name_bytes: 32 };

    /// Bytes from hex digits and `"quoted"` ASCII, as the spec writes captured messages.
    fn wire(spec: &str) -> Bytes {
        let mut out = Vec::new();
        for (i, part) in spec.split('"').enumerate() {
            if i % 2 == 1 {
                out.extend_from_slice(part.as_bytes());
                continue;
            }
            let digits: String = part.split_whitespace().collect();
            for j in (0..digits.len()).step_by(2) {
                out.push(u8::from_str_radix(&digits[j..j + 2], 16).unwrap());
            }
        }
        Bytes::from(out)
    }

    fn rooms(names: &[&str]) -> Vec<Room> {
        names.iter().map(|n| Room::from(*n)).collect()
    }

    /// `io.to("room1").emit("hello", 1, Buffer[1,2,3])`, captured from socket.io 4.8.3 with the
    /// redis adapter 8.3.0 (spec §1.2), uid replaced by ours.
    const CAPTURED_BROADCAST: &str = r#"93 a6"B1yeF0" 83 a4"type" 02 a4"data" 93 a5"hello" 01 c4 03 010203 a3"nsp" a1"/"
        83 a5"rooms" 91 a5"room1" a6"except" 90 a5"flags" 80"#;

    #[test]
    fn a_broadcast_is_encoded_as_node_encodes_it() {
        let opts = BroadcastOptions { rooms: rooms(&["room1"]), ..Default::default() };
        let args = [Value::from(1u64), Value::Binary(Bytes::from_static(&[1, 2, 3]))];
        let bytes = encode_broadcast("B1yeF0", "/", "hello", &args, &opts);
        assert_eq!(Bytes::from(bytes), wire(CAPTURED_BROADCAST));
    }

    #[test]
    fn a_captured_broadcast_decodes() {
        let b = decode_broadcast(&wire(CAPTURED_BROADCAST), LIMITS).unwrap();
        assert_eq!(b.uid, "B1yeF0");
        assert_eq!(broadcast_uid(&wire(CAPTURED_BROADCAST)), Some("B1yeF0"));
        assert_eq!(b.packet.event, "hello");
        assert_eq!(b.packet.args, [Value::from(1u64), Value::Binary(Bytes::from_static(&[1, 2, 3]))]);
        assert_eq!(b.packet.nsp, "/");
        assert_eq!(b.selection.opts.rooms, rooms(&["room1"]));
        assert!(b.selection.opts.except.is_empty());
    }

    #[test]
    fn an_emitter_broadcast_decodes_whatever_its_key_order() {
        // `emitter.to("room1").volatile.emit("hello", 2)` (spec §3): flags before except.
        let captured = r#"93 a7"emitter" 83 a4"type" 02 a4"data" 92 a5"hello" 02 a3"nsp" a1"/"
            83 a5"rooms" 91 a5"room1" a5"flags" 81 a8"volatile" c3 a6"except" 90"#;
        let b = decode_broadcast(&wire(captured), LIMITS).unwrap();
        assert_eq!(b.uid, "emitter");
        assert_eq!(b.packet.args, [Value::from(2u64)]);
        assert!(b.selection.opts.flags.volatile);
        assert_eq!(b.selection.opts.rooms, rooms(&["room1"]));
        // Numeric rooms (JS `join(123)`) are their decimal string; no nsp means "/".
        let numeric = r#"93 a1"x" 82 a4"type" 02 a4"data" 91 a1"e" 82 a5"rooms" 91 7b a6"except" 91 cd 0400"#;
        let b = decode_broadcast(&wire(numeric), LIMITS).unwrap();
        assert_eq!(b.packet.nsp, "/");
        assert_eq!(b.selection.opts.rooms, rooms(&["123"]));
        assert_eq!(b.selection.opts.except, rooms(&["1024"]));
    }

    #[test]
    fn captured_requests_decode() {
        let json = |s: &str| decode_request(&Bytes::from(s.to_owned()), LIMITS).unwrap();
        assert_eq!(
            json(r#"{"uid":"BY1yeF","requestId":"o4yZH6","type":5,"opts":{"rooms":[],"except":[]}}"#),
            Request::Fetch {
                uid: Some("BY1yeF".into()),
                request_id: "o4yZH6".into(),
                selection: Selection::default()
            }
        );
        let Request::Rooms { join: true, uid, selection, rooms: joined, request_id: None } =
            json(r#"{"uid":"BY1yeF","type":2,"opts":{"rooms":["room1"],"except":[]},"rooms":["r2"]}"#)
        else {
            panic!("not a join")
        };
        assert_eq!(uid.as_deref(), Some("BY1yeF"));
        assert_eq!(selection.opts.rooms, rooms(&["room1"]));
        assert_eq!(joined, rooms(&["r2"]));
        // The emitter's socketsJoin has no uid.
        let Request::Rooms { uid: None, .. } =
            json(r#"{"type":3,"opts":{"rooms":[],"except":[]},"rooms":["r3"]}"#)
        else {
            panic!("not an emitter leave")
        };
        let Request::Disconnect { close: false, .. } =
            json(r#"{"uid":"8KGVpH","type":4,"opts":{"rooms":[],"except":[]},"close":false}"#)
        else {
            panic!("not a disconnect")
        };
        assert_eq!(
            json(r#"{"uid":"BY1yeF","requestId":"PdW2wU","type":6,"data":["ping"]}"#),
            Request::ServerSideEmit {
                uid: Some("BY1yeF".into()),
                request_id: Some("PdW2wU".into()),
                event: "ping".into(),
                args: Vec::new()
            }
        );
        // The acked broadcast is notepack.
        let acked = r#"85 a3"uid" a6"BY1yeF" a9"requestId" a6"3u1Ht0" a4"type" 07
            a6"packet" 83 a4"type" 02 a4"data" 92 a3"ack" 01 a3"nsp" a1"/"
            a4"opts" 83 a5"rooms" 90 a6"except" 90 a5"flags" 81 a7"timeout" cd 03e8"#;
        let Request::Broadcast { request_id, packet, selection, .. } =
            decode_request(&wire(acked), LIMITS).unwrap()
        else {
            panic!("not an acked broadcast")
        };
        assert_eq!(
            (request_id.as_str(), packet.event.as_str(), selection.timeout),
            ("3u1Ht0", "ack", Some(1000))
        );
    }

    #[test]
    fn captured_responses_decode_and_ours_match_them() {
        let response = |b: &[u8]| decode_response(&Bytes::copy_from_slice(b)).unwrap();
        assert_eq!(
            response(br#"{"type":8,"requestId":"3u1Ht0","clientCount":1}"#),
            Response::ClientCount { request_id: "3u1Ht0".into(), count: 1 }
        );
        assert_eq!(
            response(br#"{"type":6,"requestId":"PdW2wU","data":"pong1"}"#),
            Response::ServerSideEmit { request_id: "PdW2wU".into(), data: Value::from("pong1") }
        );
        let ack = wire(r#"83 a4"type" 09 a9"requestId" a6"3u1Ht0" a6"packet" a2"ok""#);
        assert_eq!(encode_ack("3u1Ht0", &Value::from("ok")), ack.to_vec());
        assert_eq!(response(&ack), Response::Ack { request_id: "3u1Ht0".into(), data: Value::from("ok") });
        let Response::Sockets { sockets, .. } = response(br#"{"requestId":"o4","sockets":[{"id":"a"}]}"#)
        else {
            panic!("not sockets")
        };
        assert_eq!(sockets.len(), 1);
        // What this node sends decodes as what Node sends.
        let count = encode_client_count("r", 0);
        assert_eq!(response(&count), Response::ClientCount { request_id: "r".into(), count: 0 });
        let fetch = encode_fetch("me", "r1", &BroadcastOptions::default());
        let Request::Fetch { uid, .. } = decode_request(&Bytes::from(fetch), LIMITS).unwrap() else {
            panic!()
        };
        assert_eq!(uid.as_deref(), Some("me"));
    }

    #[test]
    fn hostile_requests_are_refused() {
        let bad = |s: &str| decode_request(&Bytes::from(s.to_owned()), LIMITS).unwrap_err();
        let many: Vec<String> = (0..9).map(|i| format!("\"r{i}\"")).collect();
        let too_many = format!(r#"{{"type":2,"opts":{{"rooms":[]}},"rooms":[{}]}}"#, many.join(","));
        assert_eq!(bad(&too_many), MessageError::TooManyRooms);
        let long = format!(r#"{{"type":2,"opts":{{}},"rooms":["{}"]}}"#, "x".repeat(33));
        assert_eq!(bad(&long), MessageError::TooManyRooms);
        assert_eq!(bad(r#"{"type":42}"#), MessageError::UnknownType(42));
        assert_eq!(bad(r#"{"type":5}"#), MessageError::Shape("request id"));
        assert_eq!(bad("{"), MessageError::Json);
        assert!(matches!(
            decode_request(&Bytes::from_static(b"\xc1"), LIMITS),
            Err(MessageError::Notepack(_))
        ));
    }

    #[test]
    fn binary_in_json_is_what_node_makes_of_a_buffer() {
        let bytes = encode_server_side_emit("u", None, "e", &[Value::Binary(Bytes::from_static(&[1, 2]))]);
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["data"], json!(["e", {"type": "Buffer", "data": [1, 2]}]));
    }
}
