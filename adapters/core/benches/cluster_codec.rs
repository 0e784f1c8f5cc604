//! Cost of the cluster codec on the broadcast hot path: encode on the emitter, decode plus framing
//! on each receiving node, for a 64-byte Socket.IO packet; then the same sealed with a cluster
//! secret (one HMAC-SHA256 per frame on each side: `encode_with`, then `open` before decoding).
//!
//! `cargo bench -p switchboard-adapter --bench cluster_codec` (no criterion: a plain timed loop,
//! best of several rounds, so it runs anywhere in a few seconds).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_adapter::cluster::{Message, Target, codec};
use switchboard_adapter::{BroadcastOptions, BroadcastPacket, Room};
use switchboard_protocol::socketio::{Value, encode_event};

const ITERS: u32 = 200_000;
const ROUNDS: usize = 7;

fn best(mut f: impl FnMut()) -> Duration {
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ITERS {
                f();
            }
            start.elapsed() / ITERS
        })
        .min()
        .unwrap()
}

fn case(name: &str, opts: BroadcastOptions, packet: BroadcastPacket, key: Option<&codec::Key>) {
    let message =
        Message::Broadcast { target: Target { opts, part: Target::WHOLE }, packet: packet.packet().clone() };
    let frame = codec::encode_with("node1", "/", &message, key).unwrap();
    let encode = best(|| {
        black_box(codec::encode_with(black_box("node1"), black_box("/"), black_box(&message), key).unwrap());
    });
    let decode = best(|| {
        black_box(codec::decode(&codec::open(black_box(&frame), key).unwrap()).unwrap());
    });
    let receive = best(|| {
        let env = codec::decode(&codec::open(black_box(&frame), key).unwrap()).unwrap();
        let Message::Broadcast { packet, .. } = env.message else { unreachable!() };
        black_box(BroadcastPacket::new(packet));
    });
    println!(
        "{name:<32} packet {:>3} B, frame {:>3} B: encode {:>4} ns, decode {:>4} ns, decode+frame {:>4} ns, encode+decode {:>4} ns",
        packet.len(),
        frame.len(),
        encode.as_nanos(),
        decode.as_nanos(),
        receive.as_nanos(),
        (encode + decode).as_nanos(),
    );
}

fn main() {
    // ["e","…"] padded so the Socket.IO text is exactly 64 bytes.
    let text = |len: usize| Value::from("x".repeat(len));
    let packet = BroadcastPacket::new(encode_event("/", "e", &[text(64 - 9)], None));
    assert_eq!(packet.len(), 64);
    let room = BroadcastOptions { rooms: vec![Room::from("lobby")], ..Default::default() };
    let binary = BroadcastPacket::new(encode_event(
        "/",
        "e",
        &[Value::Binary(Bytes::from(vec![7u8; 32])), Value::Binary(Bytes::from(vec![9u8; 16]))],
        None,
    ));
    let secret = codec::Key::new(b"a cluster secret of 32 bytes....");
    for (suffix, key) in [("", None), (", sealed", Some(&secret))] {
        case(&format!("namespace broadcast{suffix}"), BroadcastOptions::default(), packet.clone(), key);
        case(&format!("room broadcast{suffix}"), room.clone(), packet.clone(), key);
        case(&format!("binary (2 attachments){suffix}"), BroadcastOptions::default(), binary.clone(), key);
    }
}
