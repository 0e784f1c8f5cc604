//! Engine.IO: websocket text and binary frames, and long-polling payloads (v4: records joined by
//! 0x1e, binary records as `b` + base64), each decoded and, when it decodes, re-encoded both ways
//! the server writes (a packet's own encoding, and the flush path's shared [`Encoded`] frames).

use bytes::{Bytes, BytesMut};
use switchboard_protocol::engineio::{
    Encoded, Packet, decode_payload, encode_encoded_payload, encode_payload,
};

fn encode_text(packet: &Packet) -> Bytes {
    let mut out = BytesMut::with_capacity(packet.text_len());
    packet.encode_text(&mut out);
    assert_eq!(out.len(), packet.text_len(), "text_len sizes the encoding exactly");
    out.freeze()
}

/// Target `engineio_decode`: the input as a websocket text frame, a websocket binary frame and a
/// polling body.
pub fn decode(data: &[u8]) {
    let input = Bytes::copy_from_slice(data);

    // Websocket text frame: checked UTF-8, and the same without the check when it is UTF-8.
    let text = Packet::decode_text(input.clone());
    if std::str::from_utf8(data).is_ok() {
        assert_eq!(Packet::decode_text_utf8(input.clone()), text);
    }
    if let Ok(packet) = text {
        assert_eq!(Packet::decode_text(encode_text(&packet)).as_ref(), Ok(&packet));
        assert_eq!(packet.to_ws_payload(), input, "a text frame re-encodes to its own bytes");
    }

    // Websocket binary frame: always a binary message, the bytes as they came.
    let packet = Packet::decode_binary(input.clone());
    assert_eq!(packet.to_ws_payload(), input);

    // Polling body: every record; each decoded packet survives its own round trip, and a fully
    // valid body survives both payload encoders.
    let Ok(records) = decode_payload(input) else { return };
    let mut packets = Vec::new();
    let mut all_ok = true;
    for record in records {
        match record {
            Ok(packet) => {
                let again: Result<Vec<_>, _> = decode_payload(encode_text(&packet)).map(Iterator::collect);
                assert_eq!(again, Ok(vec![Ok(packet.clone())]));
                packets.push(packet);
            }
            Err(_) => all_ok = false,
        }
    }
    if !all_ok {
        return;
    }
    let mut out = BytesMut::new();
    encode_payload(&packets, &mut out);
    let again: Result<Vec<_>, _> = decode_payload(out.freeze()).and_then(Iterator::collect);
    assert_eq!(again.as_ref(), Ok(&packets), "encode_payload");

    let frames: Vec<Encoded> = packets.iter().map(Encoded::from).collect();
    let mut out = BytesMut::new();
    encode_encoded_payload(&frames, &mut out);
    let again: Result<Vec<_>, _> = decode_payload(out.freeze()).and_then(Iterator::collect);
    assert_eq!(again, Ok(packets), "encode_encoded_payload");
}
