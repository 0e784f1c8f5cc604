//! Socket.IO values as the backend sees them: JSON, with each binary part as the object
//! `{"$binary": "<base64>"}` (standard alphabet, padded). The same marker in a webhook answer or
//! an API request becomes binary for the client again.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::socketio::Value;

/// The key of the one-key object that stands for binary data.
pub const BINARY_MARKER: &str = "$binary";

/// `value` as JSON for the backend.
pub fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Number(n) => serde_json::Value::Number(n.clone()),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Binary(bytes) => {
            serde_json::json!({ BINARY_MARKER: STANDARD.encode(bytes) })
        }
        Value::Array(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Object(entries) => {
            serde_json::Value::Object(entries.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

/// JSON from the backend as a value for the client; a marker whose text is not base64 stays JSON.
pub fn from_json(json: serde_json::Value) -> Value {
    match json {
        serde_json::Value::Object(map) => {
            if map.len() == 1 {
                if let Some(serde_json::Value::String(text)) = map.get(BINARY_MARKER) {
                    if let Ok(bytes) = STANDARD.decode(text) {
                        return Value::Binary(bytes.into());
                    }
                }
            }
            Value::Object(map.into_iter().map(|(k, v)| (k, from_json(v))).collect())
        }
        serde_json::Value::Array(items) => Value::Array(items.into_iter().map(from_json).collect()),
        other => Value::from(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_travels_as_a_base64_marker_both_ways() {
        let value = Value::Array(vec![
            Value::from(serde_json::json!({"a": 1})),
            Value::Binary(bytes::Bytes::from_static(b"\x00\xffhi")),
        ]);
        let json = to_json(&value);
        assert_eq!(json, serde_json::json!([{"a": 1}, {"$binary": "AP9oaQ=="}]));
        assert_eq!(from_json(json), value);
        let not_base64 = serde_json::json!({"$binary": "***"});
        assert_eq!(to_json(&from_json(not_base64.clone())), not_base64);
    }
}
