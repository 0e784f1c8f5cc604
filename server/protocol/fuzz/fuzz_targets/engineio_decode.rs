//! Fuzz target: every Engine.IO decoder on arbitrary bytes; whatever decodes must re-encode and decode to itself.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use switchboard_protocol::engineio::{Packet, decode_payload, encode_payload};

fn encode_text(packet: &Packet) -> Bytes {
    let mut out = BytesMut::new();
    packet.encode_text(&mut out);
    out.freeze()
}

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);

    // Websocket text frame (and a polling record without the separator logic).
    if let Ok(packet) = Packet::decode_text(input.clone()) {
        assert_eq!(
            Packet::decode_text(encode_text(&packet)),
            Ok(packet.clone())
        );
        assert_eq!(Packet::decode_text(packet.to_ws_payload()), Ok(packet));
    }

    // Websocket binary frame: always decodes, and the frame is the bytes themselves.
    let packet = Packet::decode_binary(input.clone());
    assert_eq!(packet.to_ws_payload(), input);
    assert_eq!(Packet::decode_binary(packet.to_ws_payload()), packet);

    // Polling payload: consume every record; each packet must survive its own round trip,
    // and a fully valid payload must survive encode_payload.
    if let Ok(decoder) = decode_payload(input) {
        let mut all = Vec::new();
        let mut all_ok = true;
        for record in decoder {
            match record {
                Ok(packet) => {
                    let again: Vec<_> = decode_payload(encode_text(&packet))
                        .map(Iterator::collect)
                        .unwrap_or_default();
                    assert_eq!(again, vec![Ok(packet.clone())]);
                    all.push(packet);
                }
                Err(_) => all_ok = false,
            }
        }
        if all_ok {
            let mut out = BytesMut::new();
            encode_payload(&all, &mut out);
            let again: Result<Vec<_>, _> = decode_payload(out.freeze())
                .map(Iterator::collect)
                .and_then(|r| r);
            assert_eq!(again, Ok(all));
        }
    }
});
