//! Socket lifecycles against a real server: the reason `on_disconnect` sees for each way a socket
//! ends, handlers that panic or fail (only their socket goes), the send-queue bound (a stuck
//! polling client is closed, a burst under the limit arrives whole and in order), and that
//! sockets, rooms and sessions are all gone once the clients leave.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::sio::{Client, Recv, io, recv, serve_io, socket_for, wait_until};
use common::{STEP, TestServer, config, fast_heartbeat};
use switchboard::EngineConfig;
use switchboard::socketio::{DisconnectReason, Event, SocketIo, SocketRef, Value};
use tokio::sync::mpsc;

struct Fixture {
    io: SocketIo,
    server: TestServer,
    sockets: mpsc::UnboundedReceiver<SocketRef>,
    reasons: mpsc::UnboundedReceiver<(String, DisconnectReason)>,
}

/// On `/` and `/chat`: `echo`, `kick` (server namespace disconnect), `boom` (panics inline),
/// `boom-later` (panics after an await), `fail` (returns an error); every disconnect reported.
async fn fixture(engine: EngineConfig) -> Fixture {
    let io = io(engine);
    let (socket_tx, sockets) = mpsc::unbounded_channel();
    let (reason_tx, reasons) = mpsc::unbounded_channel();
    let handler = move |socket: SocketRef| {
        let (socket_tx, reason_tx) = (socket_tx.clone(), reason_tx.clone());
        async move {
            socket.on("echo", |socket: SocketRef, event: Event| async move {
                let _ = socket.emit("echo-back", event.args);
            });
            socket.on("kick", |socket: SocketRef, _event: Event| async move { socket.disconnect(false) });
            socket.on("boom", |_socket: SocketRef, _event: Event| async move {
                explode("boom handler panics (expected by the test)")
            });
            socket.on("boom-later", |_socket: SocketRef, _event: Event| async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                explode("boom-later handler panics (expected by the test)")
            });
            socket.on("fail", |_socket: SocketRef, _event: Event| async move {
                Err::<(), _>("handler failed (expected by the test)")
            });
            socket.on("join", |socket: SocketRef, event: Event| async move {
                socket.join(event.args.iter().filter_map(|a| a.as_str().map(str::to_owned)));
            });
            socket.on_disconnect(move |s, reason| {
                let _ = reason_tx.send((s.id().to_string(), reason));
            });
            let _ = socket_tx.send(socket);
        }
    };
    io.main_namespace().on_connection(handler.clone());
    io.of("/chat").on_connection(handler);
    let server = serve_io(&io).await;
    Fixture { io, server, sockets, reasons }
}

/// A handler body that panics (typed `()` so it is a valid handler output).
fn explode(message: &str) {
    panic!("{message}")
}

async fn echo_ok(c: &mut Client, what: &str) {
    c.emit("echo", vec![Value::from(what)]).await;
    let (args, _) = c.expect_event("echo-back").await;
    assert_eq!(args, vec![Value::from(what)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_namespace_disconnect() {
    let mut f = fixture(config()).await;
    let (mut c, sid) = Client::ws_connected(&f.server).await;
    c.connect("/chat", None).await.expect("connect /chat");
    c.disconnect_nsp("/").await;
    assert_eq!(recv(&mut f.reasons, "reason").await, (sid, DisconnectReason::ClientNamespaceDisconnect));
    // The session and the other namespace stay; `/` can be joined again.
    c.emit_to("/chat", "echo", vec![Value::from(1)], None).await;
    c.expect_event_on("/chat", "echo-back").await;
    assert_eq!(f.io.main_namespace().socket_count(), 0);
    assert_eq!(f.server.engine.session_count(), 1);
    let again = c.connect("/", None).await.expect("join / again");
    echo_ok(&mut c, "again").await;
    assert_eq!(f.io.main_namespace().sockets()[0].id().as_str(), again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_namespace_disconnect() {
    let mut f = fixture(config()).await;
    let (mut c, sid) = Client::ws_connected(&f.server).await;
    c.emit("kick", vec![]).await;
    assert_eq!(c.next_text().await, "1", "the client receives DISCONNECT for /");
    assert_eq!(recv(&mut f.reasons, "reason").await, (sid, DisconnectReason::ServerNamespaceDisconnect));
    assert_eq!(f.server.engine.session_count(), 1, "the session stays");
    // Same on another namespace: `41/chat,`.
    let chat = c.connect("/chat", None).await.expect("connect /chat");
    c.emit_to("/chat", "kick", vec![], None).await;
    assert_eq!(c.next_text().await, "1/chat,");
    assert_eq!(recv(&mut f.reasons, "reason").await, (chat, DisconnectReason::ServerNamespaceDisconnect));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_close() {
    let mut f = fixture(config()).await;
    // Websocket close frame, with two namespaces joined.
    let (mut c, sid) = Client::ws_connected(&f.server).await;
    let chat = c.connect("/chat", None).await.expect("connect /chat");
    c.close().await;
    let got: BTreeMap<String, DisconnectReason> =
        [recv(&mut f.reasons, "reason").await, recv(&mut f.reasons, "reason").await].into();
    let want =
        BTreeMap::from([(sid, DisconnectReason::TransportClose), (chat, DisconnectReason::TransportClose)]);
    assert_eq!(got, want);
    // Polling close packet.
    let mut p = Client::polling(&f.server).await;
    let sid = p.connect("/", None).await.expect("connect");
    p.close().await;
    assert_eq!(recv(&mut f.reasons, "reason").await, (sid, DisconnectReason::TransportClose));
    f.server.wait_sessions(0, STEP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_timeout() {
    let mut f = fixture(fast_heartbeat(200, 200)).await;
    let (mut c, sid) = Client::ws_connected(&f.server).await;
    // Stop answering pings.
    c.answer_pings = false;
    c.expect_closed(STEP).await;
    assert!(c.pings >= 1, "a ping came before the close");
    assert_eq!(recv(&mut f.reasons, "reason").await, (sid, DisconnectReason::PingTimeout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parse_error() {
    let mut f = fixture(config()).await;
    // Not a Socket.IO packet type.
    let (mut c, sid) = Client::ws_connected(&f.server).await;
    c.send_text("9garbage").await;
    c.expect_closed(STEP).await;
    assert_eq!(recv(&mut f.reasons, "reason").await, (sid, DisconnectReason::ParseError));
    // An event whose payload is not an array.
    let (mut c, sid) = Client::ws_connected(&f.server).await;
    c.send_text(r#"2{"not":"an array"}"#).await;
    c.expect_closed(STEP).await;
    assert_eq!(recv(&mut f.reasons, "reason").await, (sid, DisconnectReason::ParseError));
    // A binary attachment nobody announced.
    let (mut c, sid) = Client::ws_connected(&f.server).await;
    c.send_eio(&[switchboard_protocol::engineio::Encoded::Binary(bytes::Bytes::from_static(b"?"))]).await;
    c.expect_closed(STEP).await;
    assert_eq!(recv(&mut f.reasons, "reason").await, (sid, DisconnectReason::ParseError));
    f.server.wait_sessions(0, STEP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_handlers_disconnect_only_their_socket() {
    let mut f = fixture(config()).await;
    // A connection handler that panics, on its own namespace.
    f.io.of("/bad").on_connection(|_socket: SocketRef| async move {
        explode("connection handler panics (expected by the test)")
    });
    let (mut bystander, _) = Client::ws_connected(&f.server).await;

    let mut kept = Vec::new();
    for event in ["boom", "boom-later", "fail"] {
        let (mut c, sid) = Client::ws_connected(&f.server).await;
        c.emit(event, vec![]).await;
        assert_eq!(c.next_text().await, "1", "{event}: DISCONNECT for /");
        assert_eq!(
            recv(&mut f.reasons, event).await,
            (sid, DisconnectReason::ServerNamespaceDisconnect),
            "{event}"
        );
        echo_ok(&mut bystander, event).await;
        // The failed socket's session stays usable.
        c.connect("/", None).await.expect("join again");
        echo_ok(&mut c, "after").await;
        kept.push(c);
    }

    let mut c = Client::ws(&f.server).await;
    c.connect("/bad", None).await.expect("connect /bad");
    assert_eq!(c.next_text().await, "1/bad,");
    assert_eq!(f.io.of("/bad").socket_count(), 0);

    // The server keeps serving new clients.
    let (mut d, _) = Client::ws_connected(&f.server).await;
    echo_ok(&mut d, "new").await;
    echo_ok(&mut bystander, "end").await;
    assert_eq!(f.io.main_namespace().socket_count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_queue_bound_closes_a_stuck_client_and_keeps_bursts_whole() {
    let mut f = fixture(config().with_max_queue_bytes(4096)).await;

    // A burst well under the limit, queued while nobody polls, arrives whole and in order.
    let mut p = Client::polling(&f.server).await;
    let p_sid = p.connect("/", None).await.expect("connect");
    let sp = socket_for(&mut f.sockets, &p_sid).await;
    for i in 0..50 {
        sp.emit("n", vec![Value::from(i)]).unwrap();
    }
    for i in 0..50 {
        let (args, _) = p.expect_event("n").await;
        assert_eq!(args, vec![Value::from(i)], "event {i}");
    }

    // ~100 KB to a client that never polls: its session is closed, the others are untouched.
    let mut q = Client::polling(&f.server).await;
    let q_sid = q.connect("/", None).await.expect("connect");
    let sq = socket_for(&mut f.sockets, &q_sid).await;
    let chunk = "x".repeat(1000);
    for _ in 0..100 {
        sq.emit("big", vec![Value::from(chunk.as_str())]).unwrap();
    }
    assert_eq!(recv(&mut f.reasons, "overflow").await, (q_sid, DisconnectReason::TransportError));
    wait_until("the stuck session is gone", STEP, || f.server.engine.session(&q.eio_sid).is_none()).await;
    // Whatever it gets now (an unknown-sid 400, or the close), it gets no 100 KB.
    match q.recv(STEP).await {
        Recv::Closed => {}
        Recv::Msg(m) => panic!("closed session delivered {} bytes", m.text.len()),
        Recv::Timeout => panic!("GET on a closed session hung"),
    }
    sp.emit("still", vec![]).unwrap();
    p.expect_event("still").await;
    assert_eq!(f.server.engine.session_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_return_to_zero_after_clients_leave() {
    let f = fixture(config()).await;
    let mut clients = Vec::new();
    for i in 0..4 {
        let mut c = if i == 3 { Client::polling(&f.server).await } else { Client::ws(&f.server).await };
        c.connect("/", None).await.expect("connect /");
        c.connect("/chat", None).await.expect("connect /chat");
        c.emit("join", vec![Value::from("room-a"), Value::from(format!("room-{i}"))]).await;
        c.emit_to("/chat", "join", vec![Value::from("chat-room")], None).await;
        echo_ok(&mut c, "synced").await;
        clients.push(c);
    }
    let main = f.io.main_namespace();
    let chat = f.io.of("/chat");
    assert_eq!((main.socket_count(), chat.socket_count()), (4, 4));
    assert_eq!(main.adapter().local().len(), 4);
    assert_eq!(main.adapter().local().rooms().len(), 5);
    assert_eq!(f.server.engine.session_count(), 4);

    // Four ways out: leave both namespaces then close; websocket close frame; drop the TCP
    // connection; polling close packet.
    let mut polling = clients.pop().unwrap();
    let dropped = clients.pop().unwrap();
    let mut closing = clients.pop().unwrap();
    let mut leaving = clients.pop().unwrap();
    leaving.disconnect_nsp("/").await;
    leaving.disconnect_nsp("/chat").await;
    wait_until("namespaces left", STEP, || main.socket_count() == 3 && chat.socket_count() == 3).await;
    leaving.close().await;
    closing.close().await;
    drop(dropped);
    polling.close().await;

    wait_until("everything released", STEP, || {
        main.socket_count() == 0
            && chat.socket_count() == 0
            && main.adapter().local().is_empty()
            && chat.adapter().local().is_empty()
            && f.server.engine.session_count() == 0
    })
    .await;
    assert_eq!((main.adapter().local().len(), chat.adapter().local().len()), (0, 0));
    assert!(main.adapter().local().rooms().is_empty(), "{:?}", main.adapter().local().rooms());
    assert!(chat.adapter().local().rooms().is_empty());
    assert!(main.sockets().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_repeated_during_middleware_leaves_no_socket_behind() {
    // A CONNECT repeated while the middleware runs is ignored: one socket, and it must end with
    // the session (socket.io would make a second socket and lose track of the first).
    let f = fixture(config()).await;
    let ns = f.io.of("/slow");
    ns.use_middleware(|_socket: SocketRef| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(())
    });
    let mut c = Client::ws(&f.server).await;
    c.send_text("0/slow,").await;
    c.send_text("0/slow,").await;
    let text = c.next_text().await;
    assert!(text.starts_with(r#"0/slow,{"sid":"#), "{text}");
    assert_eq!(ns.socket_count(), 1);
    c.close().await;
    f.server.wait_sessions(0, STEP).await;
    wait_until("no socket left in /slow", Duration::from_secs(2), || {
        ns.socket_count() == 0 && ns.adapter().local().is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_and_sessions_are_freed_after_close_even_if_handlers_hold_their_socket() {
    let io = io(config());
    let (tx, mut weak) = mpsc::unbounded_channel();
    io.main_namespace().on_connection(move |socket: SocketRef| {
        let tx = tx.clone();
        async move {
            let _ = tx.send((Arc::downgrade(&socket), Arc::downgrade(socket.session())));
            // A handler that keeps its own socket, a natural thing to write.
            let me = socket.clone();
            socket.on("whoami", move |_socket: SocketRef, mut event: Event| {
                let id = me.id().to_string();
                async move { event.ack(vec![Value::from(id)]) }
            });
        }
    });
    let server = serve_io(&io).await;
    for polling in [false, true] {
        let mut c = if polling { Client::polling(&server).await } else { Client::ws(&server).await };
        let sid = c.connect("/", None).await.expect("connect");
        c.emit_with_ack("whoami", vec![], 1).await;
        assert_eq!(c.next_text().await, format!(r#"31["{sid}"]"#));
        let (socket, session) = recv(&mut weak, "weak refs").await;
        c.close().await;
        drop(c);
        server.wait_sessions(0, STEP).await;
        wait_until(&format!("socket and session freed (polling: {polling})"), Duration::from_secs(2), || {
            socket.strong_count() == 0 && session.strong_count() == 0
        })
        .await;
    }
}
