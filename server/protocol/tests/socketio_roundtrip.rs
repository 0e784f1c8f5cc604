//! Property tests: every Socket.IO packet, binary anywhere in its arguments, survives encode → decode
//! (attachments fed back in order), and no input makes the decoder panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use switchboard_protocol::SocketIoError;
use switchboard_protocol::socketio::{Decoded, Encoded, Packet, Value, encode_ack, encode_event};

/// JSON numbers serde_json reproduces exactly: any i64/u64, and finite f64.
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(Value::from),
    ]
}

/// Arbitrary values: scalars, binary and nested arrays/objects (any key, duplicates possible).
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        any::<String>().prop_map(Value::from),
        vec(any::<u8>(), 0..32).prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((any::<String>(), inner), 0..6).prop_map(Value::Object),
        ]
    })
}

/// Arbitrary values without binary, as plain JSON.
fn json() -> impl Strategy<Value = serde_json::Value> {
    value().prop_map(|v| strip_binary(v).to_json().unwrap())
}

fn strip_binary(value: Value) -> Value {
    match value {
        Value::Binary(b) => Value::from(b.len()),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_binary).collect()),
        Value::Object(entries) => {
            Value::Object(entries.into_iter().map(|(k, v)| (k, strip_binary(v))).collect())
        }
        other => other,
    }
}

fn nsp() -> impl Strategy<Value = String> {
    prop_oneof![Just("/".to_owned()), "/[a-z]{1,8}"]
}

fn args() -> impl Strategy<Value = Vec<Value>> {
    vec(value(), 0..5)
}

fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        (nsp(), proptest::option::of(proptest::collection::btree_map(any::<String>(), json(), 0..4)))
            .prop_map(|(nsp, data)| Packet::Connect { nsp, data: data.map(|m| m.into_iter().collect()) }),
        nsp().prop_map(|nsp| Packet::Disconnect { nsp }),
        (nsp(), any::<String>(), args(), any::<Option<u64>>())
            .prop_map(|(nsp, event, args, id)| Packet::Event { nsp, event, args, id }),
        (nsp(), any::<u64>(), args()).prop_map(|(nsp, id, args)| Packet::Ack { nsp, id, args }),
        (
            nsp(),
            prop_oneof![
                any::<String>().prop_map(serde_json::Value::from),
                json().prop_map(|v| { serde_json::json!({"message": "refused", "data": v}) })
            ]
        )
            .prop_map(|(nsp, data)| Packet::ConnectError { nsp, data }),
    ]
}

/// Decodes a text, then feeds the attachments one by one, as the server does with Engine.IO messages.
fn decode(text: &[u8], attachments: &[Bytes]) -> Result<Packet, SocketIoError> {
    match Packet::decode(std::str::from_utf8(text).unwrap())? {
        Decoded::Complete(packet) => {
            assert!(attachments.is_empty(), "complete packet but {} attachments", attachments.len());
            Ok(packet)
        }
        Decoded::NeedsAttachments(mut partial) => {
            assert_eq!(partial.expected(), attachments.len());
            let (last, first) = attachments.split_last().unwrap();
            for attachment in first {
                assert_eq!(partial.push(attachment.clone())?, None);
            }
            Ok(partial.push(last.clone())?.unwrap())
        }
    }
}

fn decode_encoded(encoded: &Encoded) -> Result<Packet, SocketIoError> {
    decode(&encoded.text, &encoded.attachments)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn packet_roundtrips(packet in packet()) {
        let encoded = packet.encode();
        let binaries = match &packet {
            Packet::Event { args, .. } | Packet::Ack { args, .. } => args.iter().map(Value::binary_count).sum(),
            _ => 0,
        };
        prop_assert_eq!(encoded.attachments.len(), binaries);
        prop_assert_eq!(decode_encoded(&encoded), Ok(packet));
    }

    #[test]
    fn borrowed_helpers_match_packet_encoding(nsp in nsp(), event in any::<String>(), args in args(), id in any::<u64>()) {
        let packet = Packet::Event { nsp: nsp.clone(), event: event.clone(), args: args.clone(), id: Some(id) };
        prop_assert_eq!(encode_event(&nsp, &event, &args, Some(id)), packet.encode());
        let packet = Packet::Ack { nsp: nsp.clone(), id, args: args.clone() };
        prop_assert_eq!(encode_ack(&nsp, id, &args), packet.encode());
    }

    #[test]
    fn value_json_roundtrips_through_value(json in json()) {
        prop_assert_eq!(Value::from(json.clone()).to_json(), Some(json));
    }

    #[test]
    fn decode_never_panics(text in any::<String>(), attachments in vec(vec(any::<u8>(), 0..8), 0..4)) {
        feed(&text, attachments);
    }

    #[test]
    fn decode_never_panics_on_near_valid_input(
        header in "[0-7]([0-9]{0,3}-)?(/[a-z,]{0,4},?)?[0-9]{0,3}",
        body in prop_oneof![
            Just(String::new()),
            json().prop_map(|j| j.to_string()),
            vec(json(), 0..4).prop_map(|v| serde_json::Value::Array(v).to_string()),
            (0u64..4, any::<bool>()).prop_map(|(n, flag)| format!(r#"["e",{{"_placeholder":{flag},"num":{n}}}]"#)),
            any::<String>(),
        ],
        attachments in vec(vec(any::<u8>(), 0..8), 0..4),
    ) {
        feed(&(header + &body), attachments);
    }
}

/// Decodes arbitrary input; whatever decodes must re-encode and decode to itself.
fn feed(text: &str, attachments: Vec<Vec<u8>>) {
    let packet = match Packet::decode(text) {
        Err(_) => return,
        Ok(Decoded::Complete(packet)) => packet,
        Ok(Decoded::NeedsAttachments(mut partial)) => {
            let mut done = None;
            for attachment in attachments {
                if let Ok(Some(packet)) = partial.push(Bytes::from(attachment)) {
                    done = Some(packet);
                }
            }
            let Some(packet) = done else { return };
            packet
        }
    };
    assert_eq!(decode_encoded(&packet.encode()), Ok(packet));
}
