//! The broadcast fast path: the header of a `Broadcast`, `[sender, nsp, [rooms, except, flags,
//! part]]`, written and read by hand with the [msgpack subset](super::msgpack) it needs. These are
//! the bytes rmp-serde writes for that tuple (a test checks), at a fraction of its cost; a
//! broadcast's payload is the emitter's packet, sliced out of the frame on receipt.

use super::msgpack::{Reader, write_array_len, write_str, write_uint};
use super::{flag_bits, opts_of};
use crate::cluster::message::Target;
use crate::error::CodecError;

/// Writes the header of a broadcast from `sender` about `nsp` to `target`.
pub(super) fn write_head(
    buf: &mut Vec<u8>,
    sender: &str,
    nsp: &str,
    target: &Target,
) -> Result<(), CodecError> {
    let o = &target.opts;
    write_array_len(buf, 3)?;
    write_str(buf, sender)?;
    write_str(buf, nsp)?;
    write_array_len(buf, 4)?;
    for rooms in [&o.rooms, &o.except] {
        write_array_len(buf, rooms.len())?;
        for room in rooms {
            write_str(buf, room.as_str())?;
        }
    }
    write_uint(buf, u64::from(flag_bits(o.flags)));
    write_uint(buf, u64::from(target.part));
    Ok(())
}

/// Reads a broadcast's header; anything else, or trailing bytes, is refused.
pub(super) fn read_head(head: &[u8]) -> Result<(&str, &str, Target), CodecError> {
    let mut r = Reader::new(head);
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
    if !r.is_done() {
        return Err(CodecError::InvalidHeader);
    }
    Ok((sender, nsp, Target { opts: opts_of((rooms, except, flags)), part }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use switchboard_protocol::socketio::encode_event;

    use super::super::{PREFIX_LEN, WireOpts, decode, encode, flags_of};
    use crate::cluster::message::{Message, Target};
    use crate::types::{BroadcastOptions, Room};

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
            assert_eq!(decode(&bytes).unwrap().message, message);
        }
    }
}
