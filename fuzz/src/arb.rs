//! Structured inputs for the round-trip targets: Socket.IO packets and cluster messages built from
//! libFuzzer's bytes with [`arbitrary`], within what the encoders promise to carry (namespaces
//! start with `/` and hold no `,`, numbers are finite, nesting stays well under serde_json's
//! recursion limit). Lists are short so one input builds in microseconds.

use std::ops::ControlFlow;
use std::time::Duration;

use arbitrary::{Result, Unstructured};
use bytes::Bytes;
use serde_json::{Map, Number};
use switchboard_adapter::cluster::{Message, Target};
use switchboard_adapter::{BroadcastFlags, BroadcastOptions, Room, SocketInfo};
use switchboard_protocol::socketio::{Encoded, Packet, Value, encode_event};

/// Deepest nesting of arrays and objects a generated value reaches.
const MAX_DEPTH: u32 = 5;

/// Most elements of a generated list (arguments, object entries, rooms, attachments, sockets).
const MAX_ITEMS: u32 = 6;

/// The key that marks a placeholder object in a binary packet.
const PLACEHOLDER_KEY: &str = "_placeholder";

fn list<T>(
    u: &mut Unstructured<'_>,
    mut item: impl FnMut(&mut Unstructured<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    u.arbitrary_loop(None, Some(MAX_ITEMS), |u| {
        out.push(item(u)?);
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(out)
}

fn bytes(u: &mut Unstructured<'_>) -> Result<Bytes> {
    Ok(Bytes::copy_from_slice(u.arbitrary::<&[u8]>()?))
}

/// A JSON number as serde_json keeps it: unsigned, negative, or a finite float.
fn number(u: &mut Unstructured<'_>) -> Result<Number> {
    Ok(match u.int_in_range(0..=2u8)? {
        0 => Number::from(u.arbitrary::<u64>()?),
        1 => Number::from(u.arbitrary::<i64>()?),
        _ => Number::from_f64(u.arbitrary()?).unwrap_or_else(|| Number::from(0u8)),
    })
}

/// An event argument; `binary` allows [`Value::Binary`] nodes.
pub fn value(u: &mut Unstructured<'_>, binary: bool, depth: u32) -> Result<Value> {
    let kinds = if depth >= MAX_DEPTH { 4 } else { 6 };
    Ok(match u.int_in_range(0..=kinds)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::Number(number(u)?),
        3 => Value::String(u.arbitrary()?),
        4 if binary => Value::Binary(bytes(u)?),
        4 => Value::Null,
        5 => Value::Array(list(u, |u| value(u, binary, depth + 1))?),
        _ => Value::Object(list(u, |u| Ok((u.arbitrary()?, value(u, binary, depth + 1)?)))?),
    })
}

/// Event or ack arguments, binary allowed.
fn args(u: &mut Unstructured<'_>) -> Result<Vec<Value>> {
    list(u, |u| value(u, true, 1))
}

/// Plain JSON (no binary), as socket data and handshakes hold.
fn json(u: &mut Unstructured<'_>) -> Result<serde_json::Value> {
    Ok(value(u, false, 1)?.to_json().unwrap_or_default())
}

fn json_object(u: &mut Unstructured<'_>) -> Result<Map<String, serde_json::Value>> {
    let entries = list(u, |u| Ok((u.arbitrary::<String>()?, json(u)?)))?;
    Ok(entries.into_iter().collect())
}

/// A namespace the Socket.IO encoding carries faithfully: `/`, then anything but `,`.
fn namespace(u: &mut Unstructured<'_>) -> Result<String> {
    let rest: &str = u.arbitrary()?;
    Ok(format!("/{}", rest.replace(',', "")))
}

/// Any Socket.IO packet.
pub fn socketio_packet(u: &mut Unstructured<'_>) -> Result<Packet> {
    let nsp = namespace(u)?;
    Ok(match u.int_in_range(0..=4u8)? {
        0 => Packet::Connect { nsp, data: if u.arbitrary()? { Some(json_object(u)?) } else { None } },
        1 => Packet::Disconnect { nsp },
        2 => Packet::Event { nsp, event: u.arbitrary()?, args: args(u)?, id: u.arbitrary()? },
        3 => Packet::Ack { nsp, id: u.arbitrary()?, args: args(u)? },
        _ => {
            let data = if u.arbitrary()? {
                serde_json::Value::String(u.arbitrary()?)
            } else {
                serde_json::Value::Object(json_object(u)?)
            };
            Packet::ConnectError { nsp, data }
        }
    })
}

/// Whether any object in the packet's arguments has the placeholder key.
pub fn has_placeholder_key(packet: &Packet) -> bool {
    match packet {
        Packet::Event { args, .. } | Packet::Ack { args, .. } => args.iter().any(value_has_placeholder_key),
        _ => false,
    }
}

fn value_has_placeholder_key(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().any(value_has_placeholder_key),
        Value::Object(entries) => {
            entries.iter().any(|(k, v)| k == PLACEHOLDER_KEY || value_has_placeholder_key(v))
        }
        _ => false,
    }
}

/// Whether any argument a cluster message carries as a Socket.IO packet has the placeholder
/// key while the packet is binary (see [`has_placeholder_key`]).
pub fn message_has_placeholder_key(message: &Message) -> bool {
    let args = match message {
        Message::BroadcastAck { args, .. } | Message::ServerSideEmitResponse { args, .. } => args,
        Message::ServerSideEmit { args, .. } => args,
        _ => return false,
    };
    args.iter().any(Value::has_binary) && args.iter().any(value_has_placeholder_key)
}

fn rooms(u: &mut Unstructured<'_>) -> Result<Vec<Room>> {
    list(u, |u| Ok(Room::from(u.arbitrary::<String>()?)))
}

fn opts(u: &mut Unstructured<'_>) -> Result<BroadcastOptions> {
    Ok(BroadcastOptions {
        rooms: rooms(u)?,
        except: rooms(u)?,
        flags: BroadcastFlags { local: u.arbitrary()?, volatile: u.arbitrary()?, compress: u.arbitrary()? },
    })
}

fn target(u: &mut Unstructured<'_>) -> Result<Target> {
    Ok(Target { opts: opts(u)?, part: u.arbitrary()? })
}

/// A broadcast's Socket.IO encoding: a real event, or any bytes (the codec ships it unread).
fn encoded(u: &mut Unstructured<'_>) -> Result<Encoded> {
    if u.arbitrary()? {
        let id = u.arbitrary()?;
        Ok(encode_event(&namespace(u)?, u.arbitrary()?, &args(u)?, id))
    } else {
        Ok(Encoded { text: bytes(u)?, attachments: list(u, bytes)? })
    }
}

/// Any cluster message about namespace `nsp` (fetched sockets carry the envelope's namespace).
pub fn message(u: &mut Unstructured<'_>, nsp: &str) -> Result<Message> {
    Ok(match u.int_in_range(0..=14u8)? {
        0 => Message::Heartbeat,
        1 => Message::InitialHeartbeat,
        2 => Message::Address { address: u.arbitrary()? },
        3 => Message::Closing,
        4 => Message::Broadcast { target: target(u)?, packet: encoded(u)? },
        5 => Message::BroadcastWithAck {
            request_id: u.arbitrary()?,
            opts: opts(u)?,
            ack_id: u.arbitrary()?,
            timeout: Duration::from_millis(u.arbitrary()?),
            packet: encoded(u)?,
        },
        6 => Message::BroadcastClientCount { request_id: u.arbitrary()?, count: u.arbitrary()? },
        7 => Message::BroadcastAck {
            request_id: u.arbitrary()?,
            socket: u.arbitrary::<&str>()?.into(),
            args: args(u)?,
        },
        8 => Message::SocketsJoin { target: target(u)?, rooms: rooms(u)? },
        9 => Message::SocketsLeave { target: target(u)?, rooms: rooms(u)? },
        10 => Message::DisconnectSockets { target: target(u)?, close: u.arbitrary()? },
        11 => Message::FetchSockets { request_id: u.arbitrary()?, opts: opts(u)? },
        12 => Message::FetchSocketsResponse {
            request_id: u.arbitrary()?,
            sockets: list(u, |u| {
                Ok(SocketInfo {
                    id: u.arbitrary::<&str>()?.into(),
                    nsp: nsp.to_owned(),
                    rooms: rooms(u)?,
                    handshake: json(u)?,
                    data: json(u)?,
                })
            })?,
        },
        13 => Message::ServerSideEmit { request_id: u.arbitrary()?, event: u.arbitrary()?, args: args(u)? },
        _ => Message::ServerSideEmitResponse { request_id: u.arbitrary()?, args: args(u)? },
    })
}
