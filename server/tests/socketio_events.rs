//! Socket.IO events against a real server: handler arguments, unknown events, acks both ways
//! (answers, timeouts, late and unknown ids), binary arguments with attachments both ways on
//! websocket and polling, and reserved event names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::config;
use common::sio::{Client, io, json, recv, serve_io, socket_for};
use common::{STEP, TestServer, within};
use serde_json::json;
use switchboard::socketio::{
    AckError, BroadcastAckError, BroadcastError, DisconnectReason, EmitError, Event, ReservedEventName,
    ServerSideEmitError, SocketIo, SocketRef, Value,
};
use switchboard_protocol::socketio::{Packet, encode_event};
use tokio::sync::mpsc;

struct Fixture {
    io: SocketIo,
    server: TestServer,
    sockets: mpsc::UnboundedReceiver<SocketRef>,
    /// `(event, args)` of every `record` event.
    seen: mpsc::UnboundedReceiver<(String, Vec<Value>)>,
    reasons: mpsc::UnboundedReceiver<(String, DisconnectReason)>,
}

/// `/` and `/ns`: `echo` → `echo-back`; `ack-me` acked with its args; `record` and `bin` sent to
/// the test; `bin` also echoed as `bin-back` and acked with binary.
async fn fixture() -> Fixture {
    let io = io(config());
    let (socket_tx, sockets) = mpsc::unbounded_channel();
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let (reason_tx, reasons) = mpsc::unbounded_channel();
    let handler = move |socket: SocketRef| {
        let (socket_tx, seen_tx, reason_tx) = (socket_tx.clone(), seen_tx.clone(), reason_tx.clone());
        async move {
            socket.on("echo", |socket: SocketRef, event: Event| async move {
                let _ = socket.emit("echo-back", event.args);
            });
            socket.on("ack-me", |_socket: SocketRef, mut event: Event| async move {
                let args = std::mem::take(&mut event.args);
                event.ack(args);
            });
            let tx = seen_tx.clone();
            socket.on("record", move |_socket: SocketRef, event: Event| {
                let _ = tx.send((event.name.clone(), event.args.clone()));
                async {}
            });
            let tx = seen_tx;
            socket.on("bin", move |socket: SocketRef, mut event: Event| {
                let _ = tx.send((event.name.clone(), event.args.clone()));
                async move {
                    let _ = socket.emit("bin-back", event.args.clone());
                    event.ack(vec![
                        Value::Binary(Bytes::from_static(&[9])),
                        Value::Object(vec![("x".into(), Value::Binary(Bytes::from_static(&[8, 7])))]),
                    ]);
                }
            });
            // Waits inside the handler: asks the client, then reports the answer (or the error).
            socket.on("ask-me", |socket: SocketRef, mut event: Event| async move {
                let answer = socket.emit_with_ack("question", event.args.clone(), STEP).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
                match answer {
                    Ok(args) => {
                        event.ack(args.clone());
                        let _ = socket.emit("answered", args);
                    }
                    Err(e) => event.ack(vec![Value::from(e.to_string())]),
                }
            });
            socket.on_disconnect(move |s, reason| {
                let _ = reason_tx.send((s.id().to_string(), reason));
            });
            let _ = socket_tx.send(socket);
        }
    };
    io.main_namespace().on_connection(handler.clone());
    io.of("/ns").on_connection(handler);
    let server = serve_io(&io).await;
    Fixture { io, server, sockets, seen, reasons }
}

fn nested_binary() -> Vec<Value> {
    vec![
        Value::Object(vec![
            ("a".into(), Value::Binary(Bytes::from_static(&[1, 2, 3]))),
            ("list".into(), Value::Array(vec![Value::from(1), Value::Binary(Bytes::from_static(&[4, 5]))])),
        ]),
        Value::from("tail"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_receives_the_arguments() {
    let mut f = fixture().await;
    let (mut c, _) = Client::ws_connected(&f.server).await;
    c.send_text(r#"2["record",1,"two",{"three":[3,true,null]},-1.5]"#).await;
    let (name, args) = recv(&mut f.seen, "record").await;
    assert_eq!(name, "record");
    assert_eq!(
        args,
        vec![Value::from(1), Value::from("two"), json(json!({"three": [3, true, null]})), Value::from(-1.5)]
    );
    // No arguments at all.
    c.send_text(r#"2["record"]"#).await;
    assert_eq!(recv(&mut f.seen, "record").await.1, vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_event_is_ignored() {
    let f = fixture().await;
    let (mut c, _) = Client::ws_connected(&f.server).await;
    c.emit("nobody-listens", vec![Value::from(1)]).await;
    c.emit_with_ack("nobody-listens-either", vec![], 4).await;
    c.emit("echo", vec![Value::from("after")]).await;
    // Nothing for the unknown events (not even an ack), then the echo.
    assert_eq!(c.next_text().await, r#"2["echo-back","after"]"#);
    assert_eq!(f.server.engine.session_count(), 1);
    assert_eq!(f.io.main_namespace().socket_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_responder_answers_with_the_id() {
    let f = fixture().await;
    let (mut c, _) = Client::ws_connected(&f.server).await;
    c.emit_with_ack("ack-me", vec![Value::from(1), Value::from("x")], 7).await;
    assert_eq!(c.next_text().await, r#"37[1,"x"]"#);
    c.emit_with_ack("ack-me", vec![], 123456789).await;
    assert_eq!(c.next_text().await, "3123456789[]");
    // On another namespace the ack names it.
    c.connect("/ns", None).await.expect("connect /ns");
    c.send_text(r#"2/ns,12["ack-me",{"k":"v"}]"#).await;
    assert_eq!(c.next_text().await, r#"3/ns,12[{"k":"v"}]"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_emit_with_ack_gets_the_client_answer() {
    let mut f = fixture().await;
    let (mut c, sid) = Client::ws_connected(&f.server).await;
    let socket = socket_for(&mut f.sockets, &sid).await;
    let s = socket.clone();
    let pending = tokio::spawn(async move { s.emit_with_ack("question", vec![Value::from(42)], STEP).await });
    let (args, id) = c.expect_event("question").await;
    assert_eq!(args, vec![Value::from(42)]);
    let id = id.expect("the event carries an ack id");
    c.ack("/", id, vec![Value::from("answer"), Value::from(43)]).await;
    let answer = within(STEP, "ack", pending).await.unwrap();
    assert_eq!(answer, Ok(vec![Value::from("answer"), Value::from(43)]));

    // Two outstanding acks answered out of order reach the right callers.
    let (s1, s2) = (socket.clone(), socket.clone());
    let first = tokio::spawn(async move { s1.emit_with_ack("q", vec![Value::from(1)], STEP).await });
    let (_, id1) = c.expect_event("q").await;
    let second = tokio::spawn(async move { s2.emit_with_ack("q", vec![Value::from(2)], STEP).await });
    let (_, id2) = c.expect_event("q").await;
    assert_ne!(id1, id2);
    c.ack("/", id2.unwrap(), vec![Value::from("two")]).await;
    c.ack("/", id1.unwrap(), vec![Value::from("one")]).await;
    assert_eq!(within(STEP, "ack 1", first).await.unwrap(), Ok(vec![Value::from("one")]));
    assert_eq!(within(STEP, "ack 2", second).await.unwrap(), Ok(vec![Value::from("two")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_with_ack_times_out_and_late_or_unknown_acks_are_ignored() {
    let mut f = fixture().await;
    let (mut c, sid) = Client::ws_connected(&f.server).await;
    let socket = socket_for(&mut f.sockets, &sid).await;
    let s = socket.clone();
    let started = Instant::now();
    let pending =
        tokio::spawn(async move { s.emit_with_ack("question", vec![], Duration::from_millis(200)).await });
    let (_, id) = c.expect_event("question").await;
    let result = within(STEP, "ack timeout", pending).await.unwrap();
    assert_eq!(result, Err(AckError::Timeout));
    assert!(started.elapsed() >= Duration::from_millis(190), "timed out after {:?}", started.elapsed());

    // The late answer and an answer to an id never used are dropped; the socket lives on.
    c.ack("/", id.unwrap(), vec![Value::from("late")]).await;
    c.ack("/", 999_999, vec![Value::from("unknown")]).await;
    c.send_text(r#"61-999[{"_placeholder":true,"num":0}]"#).await;
    c.send_eio(&[switchboard_protocol::engineio::Encoded::Binary(Bytes::from_static(b"x"))]).await;
    c.emit("echo", vec![Value::from("alive")]).await;
    assert_eq!(c.next_text().await, r#"2["echo-back","alive"]"#);
    assert!(socket.connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_arguments_both_ways_on_websocket() {
    binary_both_ways(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_arguments_both_ways_on_polling() {
    binary_both_ways(true).await;
}

async fn binary_both_ways(polling: bool) {
    let mut f = fixture().await;
    let mut c = if polling { Client::polling(&f.server).await } else { Client::ws(&f.server).await };
    c.connect("/", None).await.expect("connect");

    let sent = encode_event("/", "bin", &nested_binary(), Some(3));
    assert_eq!(
        std::str::from_utf8(&sent.text).unwrap(),
        r#"52-3["bin",{"a":{"_placeholder":true,"num":0},"list":[1,{"_placeholder":true,"num":1}]},"tail"]"#
    );
    c.send_encoded(&sent).await;
    let (_, args) = recv(&mut f.seen, "bin").await;
    assert_eq!(args, nested_binary(), "the handler sees the bytes in place of the placeholders");

    let echo = c.next_msg().await;
    assert_eq!(
        echo.text,
        r#"52-["bin-back",{"a":{"_placeholder":true,"num":0},"list":[1,{"_placeholder":true,"num":1}]},"tail"]"#
    );
    assert_eq!(echo.attachments, [Bytes::from_static(&[1, 2, 3]), Bytes::from_static(&[4, 5])]);
    let ack = c.next_msg().await;
    assert_eq!(ack.text, r#"62-3[{"_placeholder":true,"num":0},{"x":{"_placeholder":true,"num":1}}]"#);
    assert_eq!(ack.attachments, [Bytes::from_static(&[9]), Bytes::from_static(&[8, 7])]);

    // On a namespace, and the server's own binary emit and binary ack answer.
    c.connect("/ns", None).await.expect("connect /ns");
    let ns_socket = loop {
        let s = recv(&mut f.sockets, "socket").await;
        if s.namespace().name() == "/ns" {
            break s;
        }
    };
    let s = ns_socket.clone();
    let pending = tokio::spawn(async move {
        s.emit_with_ack(
            "file",
            vec![Value::from("name"), Value::Binary(Bytes::from_static(b"\x00\xff"))],
            STEP,
        )
        .await
    });
    let msg = c.next_msg().await;
    assert!(
        msg.text.starts_with(r#"51-/ns,"#)
            && msg.text.ends_with(r#"["file","name",{"_placeholder":true,"num":0}]"#),
        "{msg:?}"
    );
    assert_eq!(msg.attachments, [Bytes::from_static(b"\x00\xff")]);
    let Packet::Event { id: Some(id), .. } = msg.packet() else { panic!("event with id: {msg:?}") };
    c.ack("/ns", id, vec![Value::Array(vec![Value::Binary(Bytes::from_static(b"ok"))])]).await;
    let answer = within(STEP, "binary ack", pending).await.unwrap();
    assert_eq!(answer, Ok(vec![Value::Array(vec![Value::Binary(Bytes::from_static(b"ok"))])]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_cannot_emit_reserved_event_names() {
    let mut f = fixture().await;
    let (mut c, sid) = Client::ws_connected(&f.server).await;
    let socket = socket_for(&mut f.sockets, &sid).await;
    for name in ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"] {
        let reserved = ReservedEventName(name);
        assert_eq!(socket.emit(name, vec![]), Err(EmitError::Reserved(reserved)), "socket.emit({name:?})");
        assert!(
            matches!(f.io.emit(name, vec![]).await, Err(BroadcastError::Reserved(r)) if r == reserved),
            "io.emit({name:?})"
        );
        assert!(
            matches!(
                f.io.to("room").emit_with_ack(name, vec![]).await,
                Err(BroadcastAckError::Reserved(r)) if r == reserved
            ),
            "broadcast emit_with_ack({name:?})"
        );
        assert!(
            matches!(
                f.io.main_namespace().server_side_emit(name, vec![]).await,
                Err(ServerSideEmitError::Reserved(r)) if r == reserved
            ),
            "server_side_emit({name:?})"
        );
        let r = socket.emit_with_ack(name, vec![], Duration::from_millis(100)).await;
        assert_eq!(r, Err(AckError::Reserved(reserved)), "socket.emit_with_ack({name:?})");
    }
    // Nothing of it reached the client.
    socket.emit("marker", vec![]).unwrap();
    assert_eq!(c.next_text().await, r#"2["marker"]"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sending_a_reserved_event_name_is_a_parse_error() {
    let mut f = fixture().await;
    let (mut c, sid) = Client::ws_connected(&f.server).await;
    c.send_text(r#"2["disconnect"]"#).await;
    c.expect_closed(STEP).await;
    assert_eq!(recv(&mut f.reasons, "disconnect").await, (sid, DisconnectReason::ParseError));
    assert_eq!(f.server.engine.session_count(), 0);

    // Same on polling, with an ack id.
    let mut p = Client::polling(&f.server).await;
    let sid = p.connect("/", None).await.expect("connect");
    p.send_eio_lossy(&[switchboard_protocol::engineio::Encoded::message(br#"21["connect",{}]"#)]).await;
    assert_eq!(recv(&mut f.reasons, "disconnect").await, (sid, DisconnectReason::ParseError));
    p.expect_closed(STEP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_can_wait_for_the_client_ack_then_answer_its_own() {
    let f = fixture().await;
    let (mut c, _) = Client::ws_connected(&f.server).await;
    c.emit_with_ack("ask-me", vec![Value::from("q")], 5).await;
    let (args, id) = c.expect_event("question").await;
    assert_eq!(args, vec![Value::from("q")]);
    c.ack("/", id.unwrap(), vec![Value::from("a")]).await;
    // The handler's own ack (sent after an await), then its emit.
    assert_eq!(c.next_text().await, r#"35["a"]"#);
    assert_eq!(c.next_text().await, r#"2["answered","a"]"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_server_ack_fails_when_the_socket_disconnects() {
    let mut f = fixture().await;
    let (mut c, sid) = Client::ws_connected(&f.server).await;
    let socket = socket_for(&mut f.sockets, &sid).await;
    let started = Instant::now();
    let pending = tokio::spawn(async move { socket.emit_with_ack("question", vec![], STEP).await });
    c.expect_event("question").await;
    c.disconnect_nsp("/").await;
    let result = within(STEP, "ack after disconnect", pending).await.unwrap();
    assert_eq!(result, Err(AckError::Disconnected));
    assert!(started.elapsed() < STEP / 2, "failed at once, not at the timeout: {:?}", started.elapsed());
}
