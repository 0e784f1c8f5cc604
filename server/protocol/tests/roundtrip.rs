//! Property tests: every Engine.IO packet survives encode → decode, and no input makes a decoder panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use switchboard_protocol::engineio::payload::RECORD_SEPARATOR;
use switchboard_protocol::engineio::{Packet, decode_payload, encode_payload};

/// Arbitrary packets of every variant; text data is any UTF-8, binary data any bytes.
fn any_packet() -> impl Strategy<Value = Packet> {
    packet_with_text(any::<String>())
}

/// Arbitrary packets whose text data contains no record separator, so they fit in a polling payload.
fn payload_packet() -> impl Strategy<Value = Packet> {
    packet_with_text(any::<String>().prop_map(|s| s.replace(char::from(RECORD_SEPARATOR), "")))
}

fn packet_with_text(text: impl Strategy<Value = String> + Clone + 'static) -> impl Strategy<Value = Packet> {
    let data = text.prop_map(Bytes::from);
    prop_oneof![
        data.clone().prop_map(Packet::Open),
        Just(Packet::Close),
        data.clone().prop_map(Packet::Ping),
        data.clone().prop_map(Packet::Pong),
        data.prop_map(Packet::Message),
        vec(any::<u8>(), 0..256).prop_map(|b| Packet::Binary(Bytes::from(b))),
        Just(Packet::Upgrade),
        Just(Packet::Noop),
    ]
}

fn encode_text(packet: &Packet) -> Bytes {
    let mut out = BytesMut::new();
    packet.encode_text(&mut out);
    out.freeze()
}

proptest! {
    #[test]
    fn text_len_matches_encoding(packet in any_packet()) {
        prop_assert_eq!(encode_text(&packet).len(), packet.text_len());
    }

    #[test]
    fn single_record_roundtrips_through_decode_payload(packet in payload_packet()) {
        let decoded: Vec<_> = decode_payload(encode_text(&packet)).unwrap().collect();
        prop_assert_eq!(decoded, vec![Ok(packet)]);
    }

    #[test]
    fn text_packet_roundtrips_through_decode_text(packet in any_packet()) {
        prop_assume!(!packet.is_binary());
        let encoded = encode_text(&packet);
        prop_assert_eq!(Packet::decode_text(encoded.clone()), Ok(packet.clone()));
        prop_assert_eq!(Packet::decode_text_utf8(encoded), Ok(packet));
    }

    #[test]
    fn payload_roundtrips(packets in vec(payload_packet(), 1..16)) {
        let mut out = BytesMut::new();
        encode_payload(&packets, &mut out);
        let decoded: Result<Vec<_>, _> = decode_payload(out.freeze()).unwrap().collect();
        prop_assert_eq!(decoded, Ok(packets));
    }

    #[test]
    fn ws_payload_roundtrips(packet in any_packet()) {
        let frame = packet.to_ws_payload();
        let decoded = if packet.is_binary() {
            Packet::decode_binary(frame)
        } else {
            Packet::decode_text(frame).unwrap()
        };
        prop_assert_eq!(decoded, packet);
    }

    #[test]
    fn decode_text_never_panics(input in vec(any::<u8>(), 0..128)) {
        let _ = Packet::decode_text(Bytes::from(input));
    }

    #[test]
    fn decode_payload_never_panics(input in vec(any::<u8>(), 0..128)) {
        if let Ok(decoder) = decode_payload(Bytes::from(input)) {
            decoder.for_each(drop);
        }
    }

    #[test]
    fn decode_payload_never_panics_on_near_valid_input(
        records in vec(prop_oneof![
            "[0-6b][A-Za-z0-9+/=]{0,12}",
            any::<String>(),
        ], 0..8),
    ) {
        let body = records.join("\u{1e}");
        if let Ok(decoder) = decode_payload(Bytes::from(body)) {
            decoder.for_each(drop);
        }
    }
}

#[test]
fn empty_payload_is_rejected_not_an_empty_list() {
    // encode_payload of no packets yields an empty body, which decode_payload treats as one empty record.
    let mut out = BytesMut::new();
    encode_payload(&[], &mut out);
    assert!(out.is_empty());
    let decoded: Vec<_> = decode_payload(out.freeze()).unwrap().collect();
    assert_eq!(decoded.len(), 1);
    assert!(decoded[0].is_err());
}
