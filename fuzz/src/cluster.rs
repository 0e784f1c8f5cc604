//! Cluster frames as a node receives them from the broker: [`codec::open`] (with and without a
//! cluster secret), the cheap [`codec::sender`] read, and [`codec::decode`]; and messages built
//! from structured input that must survive encode → decode, sealed and unsealed.

use arbitrary::Unstructured;
use bytes::Bytes;
use switchboard_adapter::cluster::{CodecError, Envelope, codec};

use crate::arb;

/// The secret the fuzzed nodes share (any fixed value: the fuzzer cannot forge its tags).
const SECRET: &[u8] = b"the fuzzed cluster's secret";

/// Another node's secret, which must never open our frames.
const OTHER_SECRET: &[u8] = b"another cluster's secret";

/// Encodes `envelope` again, unsealed and sealed, and checks every way back gives the same
/// message; returns the unsealed frame.
fn assert_reencodes(envelope: &Envelope) -> Bytes {
    let (sender, nsp) = (envelope.sender.as_str(), envelope.nsp.as_str());
    let frame = codec::encode(sender, nsp, &envelope.message).expect("a decoded message encodes");
    assert_eq!(codec::decode(&frame).as_ref(), Ok(envelope), "decode(encode(m)) == m");
    assert_eq!(codec::sender(&frame), Some(sender), "the cheap sender read agrees");
    assert_eq!(codec::open(&frame, None).as_ref(), Ok(&frame), "no secret: unsealed frames pass");

    let key = codec::Key::new(SECRET);
    let sealed =
        codec::encode_with(sender, nsp, &envelope.message, Some(&key)).expect("a decoded message seals");
    assert_eq!(sealed.len(), frame.len() + codec::TAG_LEN);
    let opened = codec::open(&sealed, Some(&key)).expect("a sealed frame opens with its key");
    assert_eq!(codec::decode(&opened).as_ref(), Ok(envelope), "decode(open(seal(m))) == m");
    assert_eq!(codec::open(&sealed, None), Err(CodecError::Forged), "sealed, to a node without a secret");
    let other = codec::Key::new(OTHER_SECRET);
    assert_eq!(codec::open(&sealed, Some(&other)), Err(CodecError::Forged), "sealed with another secret");
    assert_eq!(codec::open(&frame, Some(&key)), Err(CodecError::Forged), "unsealed, to a node with a secret");
    frame
}

/// Target `cluster_decode`: the input as a frame received from the broker, by a node without a
/// secret and by one with a secret; what decodes must re-encode to the same message.
pub fn decode(data: &[u8]) {
    let frame = Bytes::copy_from_slice(data);

    // A node with a secret: garbage never opens (the fuzzer cannot find a tag), and never panics.
    let key = codec::Key::new(SECRET);
    if let Ok(opened) = codec::open(&frame, Some(&key)) {
        panic!("a frame opened without its secret: {opened:?}");
    }

    // A node without one: a frame flagged sealed is refused, anything else goes on as is.
    let Ok(frame) = codec::open(&frame, None) else { return };
    assert_eq!(frame, data, "open without a secret hands the frame on unchanged");
    let sender = codec::sender(&frame);
    let Ok(envelope) = codec::decode(&frame) else { return };
    // The cheap read may give up where rmp-serde reads on (a sender written as msgpack bin), but
    // it never names another sender.
    if let Some(sender) = sender {
        assert_eq!(sender, envelope.sender.as_str(), "the cheap sender read agrees with decode");
    }

    // Encoding may differ in bytes (msgpack has several forms of one integer), not in meaning;
    // once re-encoded, the bytes are stable.
    let again = assert_reencodes(&envelope);
    let envelope = codec::decode(&again).expect("a re-encoded frame decodes");
    assert_eq!(assert_reencodes(&envelope), again, "encoding is stable");
}

/// Target `cluster_roundtrip`: a message built from the input ([`arb::message`]), from any sender
/// about any namespace, must encode and decode to itself, sealed and unsealed.
pub fn roundtrip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let (Ok(sender), Ok(nsp)) = (u.arbitrary::<&str>(), u.arbitrary::<&str>()) else { return };
    let Ok(message) = arb::message(&mut u, nsp) else { return };
    if arb::message_has_placeholder_key(&message) {
        // Arguments shaped like a placeholder inside a binary packet: see `socketio::roundtrip`.
        return;
    }
    let envelope = Envelope { sender: sender.into(), nsp: nsp.to_owned(), message };
    assert_reencodes(&envelope);
}
