//! Application data as Socket.IO carries it: JSON in which any node may also be raw binary.

use std::fmt;

use bytes::Bytes;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

/// One event argument: a JSON value that may hold binary anywhere, so binary needs no side channel in the API.
///
/// Objects keep their keys in wire order, duplicates included, so data is forwarded exactly as received.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Value {
    /// JSON `null`.
    #[default]
    Null,
    /// JSON `true` / `false`.
    Bool(bool),
    /// A JSON number, kept as serde_json parsed it (u64, i64 or finite f64).
    Number(Number),
    /// A JSON string.
    String(String),
    /// Raw bytes, sent as a separate attachment behind a placeholder.
    Binary(Bytes),
    /// A JSON array.
    Array(Vec<Value>),
    /// A JSON object, keys in wire order.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// Whether any node of this value is [`Value::Binary`], i.e. whether it needs a binary packet type.
    pub fn has_binary(&self) -> bool {
        match self {
            Self::Binary(_) => true,
            Self::Array(items) => items.iter().any(Self::has_binary),
            Self::Object(entries) => entries.iter().any(|(_, v)| v.has_binary()),
            Self::Null | Self::Bool(_) | Self::Number(_) | Self::String(_) => false,
        }
    }

    /// Number of [`Value::Binary`] nodes, i.e. how many attachments encoding this value produces.
    pub fn binary_count(&self) -> usize {
        match self {
            Self::Binary(_) => 1,
            Self::Array(items) => items.iter().map(Self::binary_count).sum(),
            Self::Object(entries) => entries.iter().map(|(_, v)| v.binary_count()).sum(),
            Self::Null | Self::Bool(_) | Self::Number(_) | Self::String(_) => 0,
        }
    }

    /// Plain JSON for code that does not deal with binary; `None` if the value contains any.
    ///
    /// Duplicate object keys collapse to the last one, as `JSON.parse` does.
    pub fn to_json(&self) -> Option<serde_json::Value> {
        Some(match self {
            Self::Null => serde_json::Value::Null,
            Self::Bool(b) => serde_json::Value::Bool(*b),
            Self::Number(n) => serde_json::Value::Number(n.clone()),
            Self::String(s) => serde_json::Value::String(s.clone()),
            Self::Binary(_) => return None,
            Self::Array(items) => {
                serde_json::Value::Array(items.iter().map(Self::to_json).collect::<Option<_>>()?)
            }
            Self::Object(entries) => serde_json::Value::Object(
                entries.iter().map(|(k, v)| Some((k.clone(), v.to_json()?))).collect::<Option<_>>()?,
            ),
        })
    }

    /// The string, if this is one (event names and the like).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes, if this is a binary node.
    pub fn as_binary(&self) -> Option<&Bytes> {
        match self {
            Self::Binary(b) => Some(b),
            _ => None,
        }
    }
}

impl From<serde_json::Value> for Value {
    fn from(json: serde_json::Value) -> Self {
        match json {
            serde_json::Value::Null => Self::Null,
            serde_json::Value::Bool(b) => Self::Bool(b),
            serde_json::Value::Number(n) => Self::Number(n),
            serde_json::Value::String(s) => Self::String(s),
            serde_json::Value::Array(items) => Self::Array(items.into_iter().map(Self::from).collect()),
            serde_json::Value::Object(map) => {
                Self::Object(map.into_iter().map(|(k, v)| (k, v.into())).collect())
            }
        }
    }
}

impl From<Bytes> for Value {
    fn from(bytes: Bytes) -> Self {
        Self::Binary(bytes)
    }
}

impl From<Vec<u8>> for Value {
    fn from(bytes: Vec<u8>) -> Self {
        Self::Binary(bytes.into())
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Self::String(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

impl From<Number> for Value {
    fn from(n: Number) -> Self {
        Self::Number(n)
    }
}

impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Self {
        Self::Array(items)
    }
}

macro_rules! from_integer {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Self {
                Self::Number(n.into())
            }
        }
    )*};
}
from_integer!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

impl From<f64> for Value {
    /// Non-finite floats have no JSON form and become `null`, as in serde_json.
    fn from(f: f64) -> Self {
        Number::from_f64(f).map_or(Self::Null, Self::Number)
    }
}

impl From<f32> for Value {
    /// Non-finite floats have no JSON form and become `null`, as in serde_json.
    fn from(f: f32) -> Self {
        Self::from(f64::from(f))
    }
}

/// Parses plain JSON straight into a [`Value`] (never binary: placeholders are resolved later).
pub(crate) struct Parsed(pub(crate) Value);

impl<'de> Deserialize<'de> for Parsed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor).map(Parsed)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Value::from(f))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(Parsed(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some((key, Parsed(value))) = map.next_entry::<String, Parsed>()? {
            entries.push((key, value));
        }
        Ok(Value::Object(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Value {
        serde_json::from_str::<Parsed>(s).map(|p| p.0).unwrap_or(Value::String("parse error".into()))
    }

    #[test]
    fn parses_json_keeping_key_order_and_duplicates() {
        assert_eq!(
            parse(r#"{"b":1,"a":[true,null,-2,1.5,"x"],"b":2}"#),
            Value::Object(vec![
                ("b".into(), 1.into()),
                (
                    "a".into(),
                    Value::Array(vec![true.into(), Value::Null, (-2).into(), 1.5.into(), "x".into()])
                ),
                ("b".into(), 2.into()),
            ])
        );
    }

    #[test]
    fn converts_from_and_to_json() {
        let json = serde_json::json!({"a": [1, "two", {"three": 3.5}], "b": null, "c": false});
        let value = Value::from(json.clone());
        assert!(!value.has_binary());
        assert_eq!(value.binary_count(), 0);
        assert_eq!(value.to_json(), Some(json));
    }

    #[test]
    fn binary_has_no_json_form() {
        let value = Value::Array(vec![
            1.into(),
            Value::Object(vec![("file".into(), Bytes::from_static(b"\x00\x01").into())]),
            vec![2u8].into(),
        ]);
        assert!(value.has_binary());
        assert_eq!(value.binary_count(), 2);
        assert_eq!(value.to_json(), None);
        assert_eq!(Value::from(Bytes::new()).as_binary(), Some(&Bytes::new()));
    }

    #[test]
    fn scalar_conversions() {
        assert_eq!(Value::from("a").as_str(), Some("a"));
        assert_eq!(Value::from(String::from("b")), Value::String("b".into()));
        assert_eq!(Value::from(true), Value::Bool(true));
        assert_eq!(Value::from(u64::MAX), Value::Number(u64::MAX.into()));
        assert_eq!(Value::from(-1i32), Value::Number((-1i64).into()));
        assert_eq!(Value::from(f64::NAN), Value::Null);
        assert_eq!(Value::from(f32::INFINITY), Value::Null);
        assert_eq!(Value::from(0.5f32).to_json(), Some(serde_json::json!(0.5)));
    }
}
