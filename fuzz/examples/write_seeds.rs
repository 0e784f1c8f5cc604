//! Writes the seed corpora in `fuzz/seeds/<target>/` from real messages: the frames and packets
//! the unit tests use and a browser client sends, and cluster frames of every kind as a node
//! publishes them (the codec's own encoder). Run after a wire change, then commit the result:
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --no-default-features --example write_seeds
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use switchboard_adapter::cluster::{Message, Target, codec};
use switchboard_adapter::{BroadcastFlags, BroadcastOptions, Room, SocketInfo};
use switchboard_protocol::socketio::{Value, encode_event};

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), data).unwrap();
}

fn engineio() {
    let seeds: &[(&str, &[u8])] = &[
        (
            "open",
            br#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#,
        ),
        ("close", b"1"),
        ("ping", b"2"),
        ("ping-probe", b"2probe"),
        ("pong-probe", b"3probe"),
        ("message", b"4hello"),
        ("message-utf8", "4héllo €".as_bytes()),
        ("upgrade", b"5"),
        ("noop", b"6"),
        ("socketio-connect", br#"40{"token":"abc"}"#),
        ("socketio-event", br#"42["chat message","hi"]"#),
        ("socketio-binary-event", br#"451-["upload",{"_placeholder":true,"num":0}]"#),
        ("binary-record", b"bAQIDBA=="),
        ("payload", b"4hello\x1ebAQIDBA==\x1e2"),
        ("payload-socketio", b"40\x1e42[\"a\",1]\x1e451-[\"b\",{\"_placeholder\":true,\"num\":0}]\x1ebAAECAw==\x1e3"),
        ("payload-upgrade", b"6\x1e6\x1e5"),
        ("binary-frame", &[0x00, 0x01, 0x02, 0xff, 0xfe]),
        ("bad-base64", b"babc!"),
        ("bad-utf8", b"4\xff"),
        ("bad-type", b"7"),
    ];
    for (name, data) in seeds {
        write("engineio_decode", name, data);
    }
}

fn socketio() {
    let placeholder = |n: u8| format!(r#"{{"_placeholder":true,"num":{n}}}"#);
    let with_attachments = |text: &str, attachments: &[&[u8]]| {
        let mut data = text.as_bytes().to_vec();
        for a in attachments {
            data.push(0xff);
            data.extend_from_slice(a);
        }
        data
    };
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("connect", b"0".to_vec()),
        ("connect-auth", br#"0{"token":"abc"}"#.to_vec()),
        ("connect-nsp", br#"0/admin,{"token":"abc"}"#.to_vec()),
        ("connect-sid", br#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#.to_vec()),
        ("disconnect", b"1/admin,".to_vec()),
        ("event", br#"2["hello",1,{"a":"b"},[true,null,2.5]]"#.to_vec()),
        ("event-nsp-ack", br#"2/chat,12["ev","x"]"#.to_vec()),
        ("ack", br#"31[]"#.to_vec()),
        ("ack-nsp", br#"3/chat,7["ok",{"n":-1}]"#.to_vec()),
        ("connect-error", br#"4{"message":"Not authorized"}"#.to_vec()),
        ("connect-error-data", br#"4/admin,{"message":"m","data":{"x":1}}"#.to_vec()),
        ("connect-error-string", br#"4"legacy error""#.to_vec()),
        (
            "binary-event",
            with_attachments(&format!(r#"51-["upload",{}]"#, placeholder(0)), &[b"\x00\x01\x02"]),
        ),
        (
            "binary-event-nested",
            with_attachments(
                &format!(r#"52-/files,4["up",[{}],{{"x":{{"y":{}}}}}]"#, placeholder(1), placeholder(0)),
                &[b"zero", b"one"],
            ),
        ),
        ("binary-ack", with_attachments(&format!(r#"61-9[{}]"#, placeholder(0)), &[b"bin"])),
        ("binary-event-short", br#"52-["a",{"_placeholder":true,"num":1}]"#.to_vec()),
        ("binary-event-compact", b"51-[\"e\",\xfe0}]\xffx".to_vec()),
        ("plain-placeholder", format!(r#"2["e",{}]"#, placeholder(0)).into_bytes()),
        ("too-many-attachments", br#"5999-["e"]"#.to_vec()),
        ("bad-ack-id", br#"299999999999999999999999["e"]"#.to_vec()),
    ];
    for (name, data) in seeds {
        write("socketio_decode", name, &data);
    }
}

fn cluster() {
    let opts = |rooms: &[&str], except: &[&str]| BroadcastOptions {
        rooms: rooms.iter().map(|&r| Room::from(r)).collect(),
        except: except.iter().map(|&r| Room::from(r)).collect(),
        flags: BroadcastFlags { local: false, volatile: true, compress: true },
    };
    let args = vec![
        Value::from("text"),
        Value::Binary(Bytes::from_static(b"\x00\x01\xff")),
        Value::Object(vec![("nested".into(), Value::Binary(Bytes::from_static(b"bin")))]),
    ];
    let target = Target { opts: opts(&["r", "s.t"], &["x"]), part: 1 };
    let info = SocketInfo {
        id: "node-2.AbCdEfGhIjKlMnOpQrStUv".into(),
        nsp: "/chat".into(),
        rooms: vec!["node-2.AbCdEfGhIjKlMnOpQrStUv".into(), "lobby".into()],
        handshake: serde_json::json!({"headers": {"host": "example.com"}, "query": {"EIO": "4"}, "time": 3}),
        data: serde_json::json!([1, "two", null, 2.5]),
    };
    let messages = [
        ("heartbeat", Message::Heartbeat),
        ("initial-heartbeat", Message::InitialHeartbeat),
        ("address", Message::Address { address: "10.0.0.7:3000".into() }),
        ("closing", Message::Closing),
        (
            "broadcast",
            Message::Broadcast { target: target.clone(), packet: encode_event("/chat", "ev", &args, None) },
        ),
        (
            "broadcast-whole",
            Message::Broadcast {
                target: Target { opts: opts(&[], &[]), part: Target::WHOLE },
                packet: encode_event("/chat", "news", &[Value::from(1)], None),
            },
        ),
        (
            "broadcast-with-ack",
            Message::BroadcastWithAck {
                request_id: 9,
                opts: opts(&[], &["e"]),
                ack_id: 42,
                timeout: Duration::from_millis(1500),
                packet: encode_event("/chat", "ev", &[], Some(42)),
            },
        ),
        ("broadcast-client-count", Message::BroadcastClientCount { request_id: 9, count: 3 }),
        (
            "broadcast-ack",
            Message::BroadcastAck {
                request_id: 9,
                socket: "node-2.AbCdEfGhIjKlMnOpQrStUv".into(),
                args: args.clone(),
            },
        ),
        (
            "sockets-join",
            Message::SocketsJoin { target: target.clone(), rooms: vec!["a".into(), "b".into()] },
        ),
        ("sockets-leave", Message::SocketsLeave { target: target.clone(), rooms: vec!["a".into()] }),
        ("disconnect-sockets", Message::DisconnectSockets { target, close: true }),
        ("fetch-sockets", Message::FetchSockets { request_id: 7, opts: opts(&["lobby"], &[]) }),
        ("fetch-sockets-response", Message::FetchSocketsResponse { request_id: 7, sockets: vec![info] }),
        (
            "server-side-emit",
            Message::ServerSideEmit { request_id: Some(5), event: "ping".into(), args: args.clone() },
        ),
        ("server-side-emit-response", Message::ServerSideEmitResponse { request_id: 5, args }),
    ];
    for (name, message) in &messages {
        write("cluster_decode", name, &codec::encode("node-1", "/chat", message).unwrap());
    }
    let key = codec::Key::new(b"a cluster secret");
    write(
        "cluster_decode",
        "sealed-heartbeat",
        &codec::encode_with("node-1", "/", &Message::Heartbeat, Some(&key)).unwrap(),
    );
}

/// Fixed byte strings for the structured targets, whose inputs only mean something to `arbitrary`.
fn structured(target: &str) {
    let mut state = 0x2545_f491_4f6c_dd1d_u64 ^ target.len() as u64;
    for i in 0..8u32 {
        let len = 32 << (i % 5);
        let data: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        write(target, &format!("random-{i}"), &data);
    }
}

fn main() {
    engineio();
    socketio();
    cluster();
    structured("socketio_roundtrip");
    structured("cluster_roundtrip");
}
