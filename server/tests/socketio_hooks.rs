//! What a socket lets the application hook into, and a limit of what a client may send, as a user
//! of the API sees them against a real server: `on_any` (every incoming event, before its
//! handler), `on_any_outgoing` (every event the socket emits), per-packet middleware
//! (`use_packet`: rewrite the arguments, or refuse the packet), `with_max_attachments`, and the
//! engine's `maxHttpBufferSize` over a whole binary packet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::sio::{Client, recv, serve_io};
use common::{STEP, TestServer, config};
use switchboard::socketio::{DisconnectReason, Event, SocketIo, SocketIoConfig, SocketRef, Value};
use switchboard_protocol::engineio::Encoded;
use tokio::sync::mpsc;

type Seen = mpsc::UnboundedReceiver<(String, Vec<Value>)>;

/// Serves `io` with every socket of `/` set up by `setup`, recording `events` (name and args as
/// their handler got them) and its disconnect reasons.
async fn recording(
    io: &SocketIo,
    events: &'static [&'static str],
    setup: impl Fn(&SocketRef) + Send + Sync + 'static,
) -> (TestServer, Seen, mpsc::UnboundedReceiver<DisconnectReason>) {
    let (tx, seen) = mpsc::unbounded_channel();
    let (reason_tx, reasons) = mpsc::unbounded_channel();
    let setup = std::sync::Arc::new(setup);
    io.main_namespace().on_connection(move |socket: SocketRef| {
        let (tx, reason_tx, setup) = (tx.clone(), reason_tx.clone(), setup.clone());
        async move {
            setup(&socket);
            for name in events {
                let tx = tx.clone();
                socket.on(*name, move |_socket: SocketRef, event: Event| {
                    let _ = tx.send((event.name, event.args));
                    async {}
                });
            }
            socket.on_disconnect(move |_socket, reason| {
                let _ = reason_tx.send(reason);
            });
        }
    });
    (serve_io(io).await, seen, reasons)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_any_sees_every_incoming_event_before_its_handler_even_without_one() {
    let io = SocketIo::new(config(), SocketIoConfig::default());
    let (tx, mut seen): (_, Seen) = mpsc::unbounded_channel();
    io.main_namespace().on_connection(move |socket: SocketRef| {
        let tx = tx.clone();
        async move {
            let any = tx.clone();
            socket.on_any(move |_socket, event, args| {
                let _ = any.send((format!("any:{event}"), args.to_vec()));
            });
            socket.on("known", move |_socket: SocketRef, event: Event| {
                let _ = tx.send(("handler:known".into(), event.args));
                async {}
            });
        }
    });
    let server = serve_io(&io).await;
    let (mut c, _) = Client::ws_connected(&server).await;
    c.emit("known", vec![Value::from(1)]).await;
    c.emit("unknown", vec![Value::from("x")]).await;
    assert_eq!(recv(&mut seen, "on_any").await, ("any:known".into(), vec![Value::from(1)]));
    assert_eq!(recv(&mut seen, "handler").await, ("handler:known".into(), vec![Value::from(1)]));
    assert_eq!(recv(&mut seen, "on_any").await, ("any:unknown".into(), vec![Value::from("x")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_any_outgoing_sees_every_event_the_socket_emits_but_not_acks() {
    let io = SocketIo::new(config(), SocketIoConfig::default());
    let (tx, mut seen): (_, Seen) = mpsc::unbounded_channel();
    io.main_namespace().on_connection(move |socket: SocketRef| {
        let tx = tx.clone();
        async move {
            socket.on_any_outgoing(move |_socket, event, args| {
                let _ = tx.send((event.to_owned(), args.to_vec()));
            });
            socket.on("ping-me", |socket: SocketRef, mut event: Event| async move {
                event.ack(vec![Value::from("acked")]);
                let _ = socket.emit("pong", vec![Value::from(2)]);
            });
        }
    });
    let server = serve_io(&io).await;
    let (mut c, _) = Client::ws_connected(&server).await;
    c.emit_with_ack("ping-me", vec![], 4).await;
    assert_eq!(c.next_text().await, r#"34["acked"]"#);
    assert_eq!(c.next_text().await, r#"2["pong",2]"#);
    assert_eq!(recv(&mut seen, "outgoing").await, ("pong".into(), vec![Value::from(2)]));
    assert!(seen.try_recv().is_err(), "the ack is not an outgoing event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_middleware_rewrites_arguments_or_refuses_the_packet_and_the_socket_stays() {
    let io = SocketIo::new(config(), SocketIoConfig::default());
    let (server, mut seen, mut reasons) = recording(&io, &["allowed", "forbidden"], |socket| {
        socket.use_packet(|_socket, event, args| {
            if event == "forbidden" {
                return Err("not allowed".into());
            }
            args.push(Value::from("stamped"));
            Ok(())
        });
    })
    .await;
    let (mut c, _) = Client::ws_connected(&server).await;
    c.emit("forbidden", vec![Value::from(1)]).await;
    c.emit("allowed", vec![Value::from(2)]).await;
    let expected = ("allowed".to_owned(), vec![Value::from(2), Value::from("stamped")]);
    assert_eq!(recv(&mut seen, "the allowed event").await, expected, "the refused one never ran");
    assert!(reasons.try_recv().is_err(), "a refused packet does not disconnect the socket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_announcing_more_attachments_than_allowed_is_a_parse_error() {
    let io = SocketIo::new(config(), SocketIoConfig::default().with_max_attachments(1));
    let (server, mut seen, mut reasons) = recording(&io, &["bin"], |_| {}).await;
    let (mut c, _) = Client::ws_connected(&server).await;
    // One attachment: at the limit, delivered.
    c.send_eio(&[
        Encoded::message(br#"51-["bin",{"_placeholder":true,"num":0}]"#),
        Encoded::Binary(Bytes::from_static(b"a")),
    ])
    .await;
    let (_, args) = recv(&mut seen, "an event at the limit").await;
    assert_eq!(args, vec![Value::Binary(Bytes::from_static(b"a"))]);
    // Two: over it, refused before any attachment is awaited.
    c.send_eio(&[Encoded::message(
        br#"52-["bin",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
    )])
    .await;
    c.expect_closed(STEP).await;
    assert_eq!(recv(&mut reasons, "disconnect").await, DisconnectReason::ParseError);
    assert!(seen.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_adding_up_past_max_http_buffer_size_are_a_transport_error() {
    let io = SocketIo::new(config().with_max_http_buffer_size(1_000), SocketIoConfig::default());
    let (server, mut seen, mut reasons) = recording(&io, &["bin"], |_| {}).await;
    let (mut c, _) = Client::ws_connected(&server).await;
    let text: &[u8] = br#"52-["bin",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
    // Text and attachments within 1,000 bytes together: delivered.
    let small = Bytes::from(vec![1u8; (1_000 - text.len()) / 2]);
    c.send_eio(&[Encoded::message(text), Encoded::Binary(small.clone()), Encoded::Binary(small.clone())])
        .await;
    let (_, args) = recv(&mut seen, "an event within the limit").await;
    assert_eq!(args, vec![Value::Binary(small.clone()), Value::Binary(small)]);
    // Each attachment alone is well within the engine's limit, but together they pass it: the
    // packet is one message to the application, so the client is disconnected at the second.
    let big = Bytes::from(vec![2u8; 600]);
    c.send_eio(&[Encoded::message(text), Encoded::Binary(big.clone()), Encoded::Binary(big)]).await;
    c.expect_closed(STEP).await;
    assert_eq!(recv(&mut reasons, "disconnect").await, DisconnectReason::TransportError);
    assert!(seen.try_recv().is_err(), "the oversized packet reached its handler");
}
