//! A logged packet as a stream entry, and back. Fields: `o`, the JSON `[rooms, except]`; `p`, the
//! packet text encoded with an empty offset as its last argument (so it ends with `""]`), the
//! offset spliced in when the entry is read, since it is the entry's id, known only then; one `b`
//! per binary attachment, in order; `l`, for a packet emitted with the `local` flag, the store
//! (node) whose sockets alone get it (the others log it without delivering it).
//!
//! Entries are read back within bounds (text, attachments, rooms): anything else in the stream
//! is skipped and counted as foreign, never trusted for a size.

use bytes::{Bytes, BytesMut};
use redis::Value;
use switchboard_adapter::recovery::LogEntry;
use switchboard_adapter::{BroadcastOptions, BroadcastPacket, Room};
use switchboard_protocol::socketio::Encoded;

use super::offset;

/// Most attachments an entry may carry.
const MAX_ATTACHMENTS: usize = 64;
/// Most rooms (targeted and excepted) an entry may name.
const MAX_ROOMS: usize = 10_000;
/// What every packet text this store writes ends with: the empty offset argument.
const PLACEHOLDER: &[u8] = b"\"\"]";

/// The XADD field/value pairs of a packet; `None` if its text does not end with the empty
/// offset (not an encoding this store asked for).
pub(crate) fn fields(
    opts: &BroadcastOptions,
    packet: &Encoded,
    origin: u64,
) -> Option<Vec<(&'static str, Bytes)>> {
    if !packet.text.ends_with(PLACEHOLDER) {
        return None;
    }
    let rooms: Vec<&str> = opts.rooms.iter().map(Room::as_str).collect();
    let except: Vec<&str> = opts.except.iter().map(Room::as_str).collect();
    let o = serde_json::to_vec(&(rooms, except)).ok()?;
    let mut fields = vec![("o", Bytes::from(o)), ("p", packet.text.clone())];
    fields.extend(packet.attachments.iter().map(|a| ("b", a.clone())));
    if opts.flags.local {
        fields.push(("l", Bytes::from(origin.to_string())));
    }
    Some(fields)
}

/// Entries of an XRANGE answer, or of one stream in an XREAD answer: `(id, fields)`.
pub(crate) fn entries(value: Value) -> Vec<(String, Vec<Value>)> {
    let Value::Array(items) = value else { return Vec::new() };
    items
        .into_iter()
        .filter_map(|item| {
            let Value::Array(mut pair) = item else { return None };
            if pair.len() != 2 {
                return None;
            }
            let fields = match pair.pop() {
                Some(Value::Array(fields)) => fields,
                Some(Value::Map(map)) => map.into_iter().flat_map(|(k, v)| [k, v]).collect(),
                _ => return None,
            };
            let id = text(pair.pop()?)?;
            Some((id, fields))
        })
        .collect()
}

/// The entries of the one stream an XREAD answer carries (RESP2: `[[key, entries]]`; RESP3: a map).
pub(crate) fn xread(value: Value) -> Vec<(String, Vec<Value>)> {
    match value {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
                _ => None,
            })
            .flat_map(entries)
            .collect(),
        Value::Map(streams) => streams.into_iter().flat_map(|(_, v)| entries(v)).collect(),
        _ => Vec::new(),
    }
}

/// A log entry from a stream entry of the log of `epoch`, and the store whose sockets alone get
/// it if it was emitted `local`; `None` if it is not one this store wrote or passes a bound
/// (`max_bytes`: text and attachments together).
pub(crate) fn decode(
    epoch: u64,
    id: &str,
    fields: Vec<Value>,
    max_bytes: usize,
) -> Option<(LogEntry, Option<u64>)> {
    let position = offset::parse_stream_id(id)?;
    let mut opts = None;
    let mut text = None;
    let mut attachments = Vec::new();
    let mut only = None;
    let mut bytes = 0usize;
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        let (Value::BulkString(name), Value::BulkString(value)) = (name, value) else { return None };
        bytes = bytes.checked_add(value.len())?;
        if bytes > max_bytes {
            return None;
        }
        match name.as_slice() {
            b"o" => opts = Some(value),
            b"p" => text = Some(value),
            b"b" if attachments.len() < MAX_ATTACHMENTS => attachments.push(Bytes::from(value)),
            b"l" => only = Some(std::str::from_utf8(&value).ok()?.parse().ok()?),
            _ => return None,
        }
    }
    let (rooms, except): (Vec<String>, Vec<String>) = serde_json::from_slice(&opts?).ok()?;
    if rooms.len() + except.len() > MAX_ROOMS {
        return None;
    }
    let text = text?;
    if !text.ends_with(PLACEHOLDER) {
        return None;
    }
    let offset = offset::format(epoch, position);
    let mut spliced = BytesMut::with_capacity(text.len() + offset.len());
    spliced.extend_from_slice(&text[..text.len() - 2]);
    spliced.extend_from_slice(offset.as_bytes());
    spliced.extend_from_slice(b"\"]");
    let packet = Encoded { text: spliced.freeze(), attachments };
    let bytes = packet.text.len() + packet.attachments.iter().map(Bytes::len).sum::<usize>();
    let entry = LogEntry {
        position,
        rooms: rooms.into_iter().map(Room::from).collect(),
        except: except.into_iter().map(Room::from).collect(),
        packet: BroadcastPacket::new(packet),
        bytes,
    };
    Some((entry, only))
}

fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use switchboard_protocol::socketio::{Value as Arg, encode_event};

    use super::*;

    #[test]
    fn an_entry_comes_back_with_its_offset_as_last_argument() {
        let opts = BroadcastOptions { rooms: vec![Room::from("a")], ..Default::default() };
        let packet = encode_event("/", "n", &[Arg::from(1u64), Arg::from("")], None);
        let fields = fields(&opts, &packet, 1).expect("ours");
        let values: Vec<Value> = fields
            .into_iter()
            .flat_map(|(k, v)| [Value::BulkString(k.as_bytes().to_vec()), Value::BulkString(v.to_vec())])
            .collect();
        let (entry, only) = decode(0xab, "5-1", values.clone(), 1 << 20).expect("decodes");
        assert_eq!(only, None);
        assert_eq!(&entry.packet.packet().text[..], br#"2["n",1,"ab-5-1"]"#);
        assert_eq!(entry.rooms, vec![Room::from("a")]);
        assert!(decode(0xab, "5-1", values, 10).is_none(), "past the bound");
        // A binary packet keeps its attachments, in order; a `local` one names its node.
        let local = BroadcastOptions {
            flags: switchboard_adapter::BroadcastFlags { local: true, ..Default::default() },
            ..opts.clone()
        };
        let binary = encode_event(
            "/nsp",
            "b",
            &[
                Arg::Binary(Bytes::from_static(b"\x00\x01")),
                Arg::Binary(Bytes::from_static(b"z")),
                Arg::from(""),
            ],
            None,
        );
        let values: Vec<Value> = super::fields(&local, &binary, 7)
            .expect("ours")
            .into_iter()
            .flat_map(|(k, v)| [Value::BulkString(k.as_bytes().to_vec()), Value::BulkString(v.to_vec())])
            .collect();
        let (entry, only) = decode(0xab, "6-0", values, 1 << 20).expect("decodes");
        assert_eq!(only, Some(7));
        let packet = entry.packet.packet();
        assert!(packet.text.starts_with(b"52-/nsp,"), "{:?}", packet.text);
        assert!(packet.text.ends_with(br#","ab-6-0"]"#), "{:?}", packet.text);
        assert_eq!(packet.attachments, vec![Bytes::from_static(b"\x00\x01"), Bytes::from_static(b"z")]);
        let not_ours = encode_event("/", "n", &[Arg::from(1u64)], None);
        assert!(super::fields(&opts, &not_ours, 1).is_none());
    }
}
