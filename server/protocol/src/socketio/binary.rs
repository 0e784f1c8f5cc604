//! Binary attachments: placeholders numbered while the JSON is written, and resolved once every
//! attachment of a received packet has arrived.

use std::cell::RefCell;

use bytes::{BufMut, Bytes, BytesMut};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use super::packet::Packet;
use super::value::Value;
use crate::SocketIoError;

/// Key marking an object as a binary placeholder (`{"_placeholder":true,"num":k}`).
const PLACEHOLDER_KEY: &str = "_placeholder";
/// Key holding the attachment index inside a placeholder.
const NUM_KEY: &str = "num";

/// Writes `[event, args...]` (or `[args...]` without an event) as compact JSON, each binary node as a
/// placeholder numbered depth-first, and returns the attachments in that order.
pub(crate) fn write_array(
    out: &mut BytesMut,
    event: Option<&str>,
    args: &[Value],
    binaries: usize,
) -> Vec<Bytes> {
    let attachments = RefCell::new(Vec::with_capacity(binaries));
    let array = Array { event, args, attachments: &attachments };
    let written = serde_json::to_writer((&mut *out).writer(), &array);
    // Infallible: the writer is a growable buffer and every key is a string.
    debug_assert!(written.is_ok(), "JSON serialization failed: {written:?}");
    attachments.into_inner()
}

/// The top-level payload array; borrows the caller's data so nothing is cloned but attachment handles.
struct Array<'a> {
    event: Option<&'a str>,
    args: &'a [Value],
    attachments: &'a RefCell<Vec<Bytes>>,
}

impl Serialize for Array<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let len = self.args.len() + usize::from(self.event.is_some());
        let mut seq = serializer.serialize_seq(Some(len))?;
        if let Some(event) = self.event {
            seq.serialize_element(event)?;
        }
        for value in self.args {
            seq.serialize_element(&Node { value, attachments: self.attachments })?;
        }
        seq.end()
    }
}

/// One value of the tree; a binary node takes the next attachment number.
struct Node<'a> {
    value: &'a Value,
    attachments: &'a RefCell<Vec<Bytes>>,
}

impl Serialize for Node<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.value {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Number(n) => n.serialize(serializer),
            Value::String(s) => serializer.serialize_str(s),
            Value::Binary(bytes) => {
                let num = {
                    let mut attachments = self.attachments.borrow_mut();
                    attachments.push(bytes.clone());
                    attachments.len() - 1
                };
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry(PLACEHOLDER_KEY, &true)?;
                map.serialize_entry(NUM_KEY, &num)?;
                map.end()
            }
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for value in items {
                    seq.serialize_element(&Node { value, attachments: self.attachments })?;
                }
                seq.end()
            }
            Value::Object(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, &Node { value, attachments: self.attachments })?;
                }
                map.end()
            }
        }
    }
}

/// A binary packet whose JSON part has been decoded, waiting for its attachments (separate Engine.IO binary messages).
///
/// It holds what arrived so far, never more than the packet's byte limit: the attachment that
/// would pass it is refused and everything held is dropped at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialBinary {
    /// The packet with placeholders still in place; `None` once it has been handed out.
    packet: Option<Packet>,
    /// How many attachments the header announced (at least 1).
    expected: usize,
    attachments: Vec<Bytes>,
    /// Bytes of the packet so far: its text, then each attachment as it arrives.
    bytes: usize,
    /// The most `bytes` may reach ([`crate::socketio::DecodeLimits::max_bytes`]).
    max_bytes: usize,
}

impl PartialBinary {
    /// Wraps a freshly decoded binary packet whose placeholders were already checked against
    /// `expected`; its text took `text_bytes` of the `max_bytes` the whole packet may hold.
    pub(crate) fn new(packet: Packet, expected: usize, text_bytes: usize, max_bytes: usize) -> Self {
        Self {
            packet: Some(packet),
            expected,
            attachments: Vec::with_capacity(expected.min(64)),
            bytes: text_bytes,
            max_bytes,
        }
    }

    /// How many attachments the packet announced.
    pub fn expected(&self) -> usize {
        self.expected
    }

    /// How many attachments are still missing (0 once the packet has been returned).
    pub fn remaining(&self) -> usize {
        if self.packet.is_none() { 0 } else { self.expected - self.attachments.len() }
    }

    /// The namespace of the pending packet, so the caller can route or reject it before its attachments arrive.
    pub fn nsp(&self) -> Option<&str> {
        self.packet.as_ref().map(Packet::nsp)
    }

    /// Bytes held so far: the packet text and the attachments received.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds the next attachment; returns the complete packet, placeholders replaced by [`Value::Binary`],
    /// once the last one has arrived. An attachment that takes the packet past its byte limit is
    /// refused with [`SocketIoError::PacketTooLarge`], and the packet is dropped.
    pub fn push(&mut self, attachment: Bytes) -> Result<Option<Packet>, SocketIoError> {
        if self.packet.is_none() {
            return Err(SocketIoError::UnexpectedAttachment);
        }
        match self.bytes.checked_add(attachment.len()).filter(|&n| n <= self.max_bytes) {
            Some(n) => self.bytes = n,
            None => {
                self.packet = None;
                self.attachments = Vec::new();
                return Err(SocketIoError::PacketTooLarge(self.max_bytes));
            }
        }
        self.attachments.push(attachment);
        if self.attachments.len() < self.expected {
            return Ok(None);
        }
        let Some(mut packet) = self.packet.take() else {
            return Err(SocketIoError::UnexpectedAttachment);
        };
        let attachments = std::mem::take(&mut self.attachments);
        if let Some(args) = packet.args_mut() {
            for value in args {
                resolve(value, attachments.len(), Some(&attachments))?;
            }
        }
        Ok(Some(packet))
    }
}

/// Walks a decoded value: checks every placeholder against `count` and, given the attachments,
/// replaces it by its bytes. Objects that are not placeholders are searched recursively.
pub(crate) fn resolve(
    value: &mut Value,
    count: usize,
    attachments: Option<&[Bytes]>,
) -> Result<(), SocketIoError> {
    match value {
        Value::Array(items) => items.iter_mut().try_for_each(|v| resolve(v, count, attachments)),
        Value::Object(entries) => match placeholder_num(entries, count) {
            None => entries.iter_mut().try_for_each(|(_, v)| resolve(v, count, attachments)),
            Some(num) => {
                let num = num?;
                if let Some(attachments) = attachments {
                    let bytes = attachments.get(num).ok_or(SocketIoError::PlaceholderOutOfRange {
                        num: num as u64,
                        attachments: attachments.len(),
                    })?;
                    *value = Value::Binary(bytes.clone());
                }
                Ok(())
            }
        },
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Binary(_) => Ok(()),
    }
}

/// `None` if the object is no placeholder (no `"_placeholder": true`), else its checked attachment index.
///
/// As with `JSON.parse`, the last of duplicate keys wins; other keys are ignored, as socket.io does.
fn placeholder_num(entries: &[(String, Value)], count: usize) -> Option<Result<usize, SocketIoError>> {
    let last = |key: &str| entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v);
    if last(PLACEHOLDER_KEY) != Some(&Value::Bool(true)) {
        return None;
    }
    let Some(Value::Number(num)) = last(NUM_KEY) else {
        return Some(Err(SocketIoError::InvalidPlaceholder));
    };
    let Some(num) = num.as_u64() else {
        return Some(Err(SocketIoError::InvalidPlaceholder));
    };
    Some(match usize::try_from(num) {
        Ok(index) if index < count => Ok(index),
        _ => Err(SocketIoError::PlaceholderOutOfRange { num, attachments: count }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placeholder(num: i64) -> Value {
        Value::Object(vec![(PLACEHOLDER_KEY.into(), true.into()), (NUM_KEY.into(), num.into())])
    }

    fn written(args: &[Value]) -> (String, Vec<Bytes>) {
        let mut out = BytesMut::new();
        let count = args.iter().map(Value::binary_count).sum();
        let attachments = write_array(&mut out, Some("ev"), args, count);
        (String::from_utf8(out.to_vec()).unwrap_or_default(), attachments)
    }

    #[test]
    fn numbers_placeholders_depth_first() {
        let a = Bytes::from_static(b"a");
        let b = Bytes::from_static(b"b");
        let c = Bytes::from_static(b"c");
        let args = vec![
            Value::Array(vec![a.clone().into(), Value::Object(vec![("x".into(), b.clone().into())])]),
            c.clone().into(),
        ];
        let (text, attachments) = written(&args);
        assert_eq!(
            text,
            r#"["ev",[{"_placeholder":true,"num":0},{"x":{"_placeholder":true,"num":1}}],{"_placeholder":true,"num":2}]"#
        );
        assert_eq!(attachments, vec![a, b, c]);
    }

    #[test]
    fn resolves_nested_placeholders() {
        let mut value =
            Value::Object(vec![("deep".into(), Value::Array(vec![placeholder(1), placeholder(0)]))]);
        let attachments = [Bytes::from_static(b"zero"), Bytes::from_static(b"one")];
        assert_eq!(resolve(&mut value, 2, None), Ok(()));
        assert_eq!(resolve(&mut value, 2, Some(&attachments)), Ok(()));
        assert_eq!(
            value,
            Value::Object(vec![(
                "deep".into(),
                Value::Array(vec![attachments[1].clone().into(), attachments[0].clone().into()])
            )])
        );
    }

    #[test]
    fn rejects_bad_placeholders() {
        assert_eq!(
            resolve(&mut placeholder(1), 1, None),
            Err(SocketIoError::PlaceholderOutOfRange { num: 1, attachments: 1 })
        );
        assert_eq!(resolve(&mut placeholder(-1), 1, None), Err(SocketIoError::InvalidPlaceholder));
        let mut float =
            Value::Object(vec![(PLACEHOLDER_KEY.into(), true.into()), (NUM_KEY.into(), 0.5.into())]);
        assert_eq!(resolve(&mut float, 1, None), Err(SocketIoError::InvalidPlaceholder));
        let mut missing = Value::Object(vec![(PLACEHOLDER_KEY.into(), true.into())]);
        assert_eq!(resolve(&mut missing, 1, None), Err(SocketIoError::InvalidPlaceholder));
    }

    #[test]
    fn objects_without_true_flag_are_plain() {
        let mut value =
            Value::Object(vec![(PLACEHOLDER_KEY.into(), "true".into()), (NUM_KEY.into(), 9.into())]);
        let before = value.clone();
        assert_eq!(resolve(&mut value, 1, Some(&[Bytes::new()])), Ok(()));
        assert_eq!(value, before);
    }
}
