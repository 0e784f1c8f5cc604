//! socket.io 4.8's per-socket semantics in the Rust API, against a real server and a raw client:
//! `on_disconnecting` (before `on_disconnect`, rooms still joined), the reasons a confused client
//! and a shutdown give there, the any-listener family (`on_any`, `prepend_any`, `off_any` and their
//! outgoing twins: the socket's own emits, and a listener may call the socket), and the per-emit flags (`volatile`, `compress`, `timeout`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::sio::{Client, Fixture, fixture_with, io, recv, serve_io, socket_for};
use common::{STEP, TestServer, config, within};
use switchboard::socketio::{AckError, DisconnectReason, Event, SocketIo, SocketRef, Value};
use switchboard_protocol::socketio::Packet;
use tokio::sync::mpsc;

/// What a `disconnecting` or `disconnect` handler saw: which one, the reason, the socket's rooms
/// and whether it was still connected.
type Seen = (&'static str, DisconnectReason, Vec<String>, bool);

fn seen(which: &'static str, socket: &SocketRef, reason: DisconnectReason) -> Seen {
    let rooms = socket.rooms().iter().map(|r| r.to_string()).collect();
    (which, reason, rooms, socket.connected())
}

/// A server whose sockets of `/` join a room on `join` and record what their `disconnecting`
/// and `disconnect` handlers see.
async fn recording() -> (SocketIo, TestServer, mpsc::UnboundedReceiver<Seen>) {
    let io = io(config());
    let (tx, seen_rx) = mpsc::unbounded_channel();
    io.main_namespace().on_connection(move |socket: SocketRef| {
        let tx = tx.clone();
        async move {
            socket.on("join", |socket: SocketRef, mut event: Event| async move {
                socket.join([event.arg::<String>(0).unwrap_or_default()]);
                event.ack(vec![]);
            });
            let early = tx.clone();
            socket.on_disconnecting(move |socket, reason| {
                let _ = early.send(seen("disconnecting", &socket, reason));
                // Still in its rooms: the others there hear it leave.
                let op = socket.to("lobby");
                tokio::spawn(async move { op.emit("gone", vec![]).await });
            });
            socket.on_disconnect(move |socket, reason| {
                let _ = tx.send(seen("disconnect", &socket, reason));
            });
        }
    });
    let server = serve_io(&io).await;
    (io, server, seen_rx)
}

async fn join(c: &mut Client, room: &str) {
    c.emit_with_ack("join", vec![Value::from(room)], 1).await;
    assert!(matches!(c.next_packet().await, Packet::Ack { id: 1, .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnecting_runs_first_with_the_rooms_still_joined() {
    let (_io, server, mut seen_rx) = recording().await;
    let (mut leaver, sid) = Client::ws_connected(&server).await;
    let (mut stayer, _) = Client::ws_connected(&server).await;
    join(&mut leaver, "lobby").await;
    join(&mut stayer, "lobby").await;

    leaver.disconnect_nsp("/").await;
    let reason = DisconnectReason::ClientNamespaceDisconnect;
    let (which, got, mut rooms, connected) = recv(&mut seen_rx, "disconnecting").await;
    rooms.sort();
    let mut want = vec![sid.clone(), "lobby".to_owned()];
    want.sort();
    assert_eq!((which, got, rooms, connected), ("disconnecting", reason, want, true));
    assert_eq!(recv(&mut seen_rx, "disconnect").await, ("disconnect", reason, vec![], false));
    // The disconnecting handler's emit to its room reached the member left there.
    stayer.expect_event("gone").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_for_a_namespace_not_joined_is_a_forced_close_in_disconnecting_too() {
    let (_io, server, mut seen_rx) = recording().await;
    let (mut c, _) = Client::ws_connected(&server).await;
    c.send_text(r#"2/elsewhere,["hi"]"#).await;
    // As socket.io 4.8.4 (its client closes the connection, whose engine says so first).
    let reason = DisconnectReason::ForcedClose;
    assert_eq!(recv(&mut seen_rx, "disconnecting").await.1, reason);
    assert_eq!(recv(&mut seen_rx, "disconnect").await.1, reason);
    assert_eq!(reason.as_str(), "forced close");
    c.expect_closed(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_server_is_server_shutting_down_in_disconnecting_too() {
    let (io, server, mut seen_rx) = recording().await;
    let (_c, _) = Client::ws_connected(&server).await;
    io.close();
    let reason = DisconnectReason::ServerShuttingDown;
    assert_eq!(recv(&mut seen_rx, "disconnecting").await.1, reason);
    assert_eq!(recv(&mut seen_rx, "disconnect").await.1, reason);
}

/// Serves `/` and hands each socket to the test.
async fn sockets() -> Fixture {
    fixture_with(io(config())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_listeners_run_in_order_and_come_off_one_or_all() {
    let mut f = sockets().await;
    let (mut c, sid) = Client::ws_connected(&f.server).await;
    let socket = socket_for(&mut f.sockets, &sid).await;
    let (tx, mut heard) = mpsc::unbounded_channel();
    let listener = |name: &'static str| {
        let tx = tx.clone();
        move |_: &switchboard::socketio::Socket, event: &str, _: &[Value]| {
            let _ = tx.send(format!("{name}:{event}"));
        }
    };
    let second = socket.on_any(listener("second"));
    socket.on_any(listener("third"));
    socket.prepend_any(listener("first"));
    let out_second = socket.on_any_outgoing(listener("out-second"));
    socket.prepend_any_outgoing(listener("out-first"));

    c.emit("one", vec![]).await;
    for want in ["first:one", "second:one", "third:one"] {
        assert_eq!(recv(&mut heard, want).await, want);
    }
    socket.emit("out", vec![]).unwrap();
    for want in ["out-first:out", "out-second:out"] {
        assert_eq!(recv(&mut heard, want).await, want);
    }
    c.expect_event("out").await;

    socket.off_any(Some(second));
    socket.off_any_outgoing(Some(out_second));
    c.emit("two", vec![]).await;
    for want in ["first:two", "third:two"] {
        assert_eq!(recv(&mut heard, want).await, want);
    }
    socket.emit("out2", vec![]).unwrap();
    assert_eq!(recv(&mut heard, "out-first:out2").await, "out-first:out2");
    c.expect_event("out2").await;

    socket.off_any(None);
    socket.off_any_outgoing(None);
    let handled = tx.clone();
    socket.on("three", move |_socket: SocketRef, _event: Event| {
        let _ = handled.send("handler:three".to_owned());
        async {}
    });
    // Outgoing listeners run within `emit`, incoming ones before the handler: none is left.
    socket.emit("out3", vec![]).unwrap();
    c.emit("three", vec![]).await;
    assert_eq!(recv(&mut heard, "the handler").await, "handler:three");
    c.expect_event("out3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volatile_emit_behind_a_queued_packet_is_dropped_and_one_to_an_idle_socket_is_not() {
    let mut f = sockets().await;
    let (mut c, sid) = Client::ws_connected(&f.server).await;
    let socket = socket_for(&mut f.sockets, &sid).await;
    // Over a websocket, a handler runs in its connection's task: `first` is still queued.
    socket.on("burst", |socket: SocketRef, _event: Event| async move {
        socket.emit("first", vec![]).unwrap();
        socket.volatile().emit("dropped", vec![]).unwrap();
        socket.emit("last", vec![]).unwrap();
    });

    c.emit("burst", vec![]).await;
    c.expect_event("first").await;
    c.expect_event("last").await;

    // Idle (and pings a minute apart): it goes out.
    socket.volatile().compress(false).emit("idle", vec![Value::from(1)]).unwrap();
    assert_eq!(c.expect_event("idle").await.0, vec![Value::from(1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_ack_fails_when_unanswered_and_without_one_waits_for_the_answer() {
    let mut f = sockets().await;
    let (mut c, sid) = Client::ws_connected(&f.server).await;
    let socket = socket_for(&mut f.sockets, &sid).await;

    let asking = socket.clone();
    let unanswered =
        tokio::spawn(
            async move { asking.timeout(Duration::from_millis(100)).emit_with_ack("q", vec![]).await },
        );
    let (_, id) = c.expect_event("q").await;
    assert!(id.is_some(), "sent with an ack id");
    assert_eq!(within(STEP, "unanswered", unanswered).await.unwrap(), Err(AckError::Timeout));
    assert_eq!(socket.pending_acks(), 0);

    // No timeout: the answer, whenever it comes.
    let asking = socket.clone();
    let answered = tokio::spawn(async move { asking.compress(false).emit_with_ack("q2", vec![]).await });
    let (_, id) = c.expect_event("q2").await;
    c.ack("/", id.unwrap(), vec![Value::from("late")]).await;
    assert_eq!(within(STEP, "answered", answered).await.unwrap(), Ok(vec![Value::from("late")]));

    // No timeout and no answer: it ends when the socket does.
    let asking = socket.clone();
    let abandoned = tokio::spawn(async move { asking.compress(true).emit_with_ack("q3", vec![]).await });
    c.expect_event("q3").await;
    c.close().await;
    assert_eq!(within(STEP, "abandoned", abandoned).await.unwrap(), Err(AckError::Disconnected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outgoing_listener_may_join_and_emit_and_does_not_hear_broadcasts() {
    let mut f = sockets().await;
    let (mut c, sid) = Client::ws_connected(&f.server).await;
    let socket = socket_for(&mut f.sockets, &sid).await;
    let (tx, mut heard) = mpsc::unbounded_channel();
    socket.on_any_outgoing(move |s, event, _| {
        let _ = tx.send(event.to_owned());
        if event == "welcome" {
            // Socket calls from a listener: they take the room index's locks, so the listener
            // must never run under them.
            s.join(["joined-by-listener"]);
            let _ = s.emit("echoed", vec![]);
        }
    });
    socket.emit("welcome", vec![]).unwrap();
    // The listener runs before `welcome` is queued, as socket.io's does: its own emit goes first.
    c.expect_event("echoed").await;
    c.expect_event("welcome").await;
    assert_eq!(recv(&mut heard, "the emit").await, "welcome");
    assert_eq!(recv(&mut heard, "the listener's own emit").await, "echoed");

    let ns = f.io.main_namespace();
    ns.broadcast().emit("news", vec![Value::from("x")]).await.unwrap();
    c.expect_event("news").await;
    // The listener's join took effect, and a broadcast to that room reaches the socket.
    ns.to("joined-by-listener").emit("room-news", vec![]).await.unwrap();
    c.expect_event("room-news").await;
    assert!(heard.try_recv().is_err(), "broadcasts are not told to outgoing listeners");
}
