//! Connection state recovery on one node, against a real server with the raw test client: a
//! client whose connection is lost comes back with its socket id, rooms and data and the packets
//! it missed, in order and before new ones, with or without an offset; emits that race the loss
//! and the restore are neither lost nor duplicated; a disconnect past the window, a trimmed log,
//! an unknown session, a socket that left on purpose and recovery off give a new socket and no
//! replay; the middleware is skipped or not as configured; the metrics count each outcome; a
//! dynamic child namespace outlives its cleanup delay while its sessions are restorable; a restore
//! interrupted by its connection's loss keeps the session for the next attempt.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::config;
use common::sio::{Client, Fixture, fixture_with as fixture, recv, socket_for, wait_until};
use common::{STEP, within};
use serde_json::json;
use switchboard::socketio::{DisconnectReason, RecoveryConfig, SocketIo, SocketIoConfig, SocketRef, Value};
use switchboard_protocol::socketio::Packet;
use tokio::sync::mpsc;

fn recovering(recovery: RecoveryConfig) -> SocketIo {
    SocketIo::new(config(), SocketIoConfig::default().with_connection_state_recovery(recovery))
}

/// What a CONNECT answer gave: the socket id and the private session id, if any.
struct Connected {
    sid: String,
    pid: Option<String>,
}

/// Connects a new websocket client to `/` with `auth`.
async fn connect(f: &Fixture, auth: serde_json::Value) -> (Client, Connected) {
    connect_to(f, "/", auth).await
}

/// Connects a new websocket client to `nsp` with `auth`.
async fn connect_to(f: &Fixture, nsp: &str, auth: serde_json::Value) -> (Client, Connected) {
    let mut c = Client::ws(&f.server).await;
    let data = auth.as_object().cloned();
    c.send_encoded(&Packet::Connect { nsp: nsp.into(), data }.encode()).await;
    match c.next_packet().await {
        Packet::Connect { data: Some(data), .. } => {
            let field = |name: &str| data.get(name).and_then(|v| v.as_str()).map(str::to_owned);
            let connected = Connected { sid: field("sid").expect("sid"), pid: field("pid") };
            (c, connected)
        }
        other => panic!("CONNECT answer expected, got {other:?}"),
    }
}

/// The next event's name and arguments.
async fn event(c: &mut Client) -> (String, Vec<Value>) {
    match c.next_packet().await {
        Packet::Event { event, args, .. } => (event, args),
        other => panic!("event expected, got {other:?}"),
    }
}

/// The offset a logged packet carries: its last argument.
fn offset(args: &[Value]) -> String {
    match args.last() {
        Some(Value::String(offset)) => offset.clone(),
        other => panic!("offset expected as the last argument, got {other:?}"),
    }
}

/// The first argument as a number.
fn number(args: &[Value]) -> u64 {
    args.first().and_then(Value::to_json).and_then(|v| v.as_u64()).expect("a number first")
}

/// Closes the client's connection and waits until the server saw its socket go.
async fn lose(f: &mut Fixture, mut c: Client, sid: &str) {
    c.close().await;
    loop {
        let (id, reason) = recv(&mut f.reasons, "disconnect").await;
        if id == sid {
            assert_eq!(reason, DisconnectReason::TransportClose);
            return;
        }
    }
}

fn metrics(io: &SocketIo) -> String {
    String::from_utf8(switchboard::metrics::render(io.engine().registry())).unwrap()
}

fn metric(io: &SocketIo, series: &str) -> u64 {
    let text = metrics(io);
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
}

#[tokio::test]
async fn a_lost_connection_comes_back_with_its_id_rooms_data_and_missed_packets_in_order() {
    let mut f = fixture(recovering(RecoveryConfig::default())).await;
    let (mut c, first) = connect(&f, json!({"token": "t"})).await;
    let pid = first.pid.clone().expect("a pid in the CONNECT answer");
    let socket = socket_for(&mut f.sockets, &first.sid).await;
    assert!(!socket.recovered());
    socket.join(["r"]);
    socket.set_data(&json!({"name": "ada"})).unwrap();

    f.io.to("r").emit("m", vec![Value::from(1u64)]).await.unwrap();
    socket.emit("own", vec![Value::from(2u64)]).unwrap();
    let (name, args) = event(&mut c).await;
    assert_eq!((name.as_str(), number(&args), args.len()), ("m", 1, 2), "{args:?}");
    let (name, args) = event(&mut c).await;
    assert_eq!((name.as_str(), number(&args)), ("own", 2));
    let last = offset(&args);
    lose(&mut f, c, &first.sid).await;

    // While it is away: for its room, for its own id, for everyone; and what is not for it or
    // not logged (volatile, another room, a room it is excepted from).
    f.io.to("r").emit("m", vec![Value::from(3u64)]).await.unwrap();
    f.io.to("other").emit("x", vec![Value::from(0u64)]).await.unwrap();
    f.io.to(first.sid.as_str()).emit("own", vec![Value::from(4u64)]).await.unwrap();
    f.io.to("r").volatile().emit("v", vec![Value::from(0u64)]).await.unwrap();
    f.io.broadcast().except("r").emit("x", vec![Value::from(0u64)]).await.unwrap();
    f.io.emit("all", vec![Value::from(5u64)]).await.unwrap();

    let (mut c, again) = connect(&f, json!({"pid": pid, "offset": last, "token": "t"})).await;
    assert_eq!(again.sid, first.sid, "same socket id");
    assert_eq!(again.pid.as_deref(), Some(pid.as_str()), "same private session id");
    let restored = socket_for(&mut f.sockets, &first.sid).await;
    assert!(restored.recovered());
    assert!(restored.rooms().iter().any(|r| r.as_str() == "r"), "{:?}", restored.rooms());
    assert_eq!(restored.data::<serde_json::Value>(), Some(json!({"name": "ada"})));
    // The recovery fields are the client's, not the application's auth.
    assert_eq!(restored.handshake().auth, json!({"token": "t"}).as_object().cloned().unwrap());

    f.io.to("r").emit("m", vec![Value::from(6u64)]).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        let (name, args) = event(&mut c).await;
        got.push((name, number(&args)));
    }
    let expected = [("m", 3), ("own", 4), ("all", 5), ("m", 6)].map(|(n, i)| (n.to_owned(), i));
    assert_eq!(got, expected);
    assert_eq!(metric(&f.io, "switchboard_recovery_attempts_total"), 1);
    assert_eq!(metric(&f.io, "switchboard_recovery_restored_total"), 1);
    assert_eq!(metric(&f.io, "switchboard_recovery_replayed_packets_total"), 3);
}

#[tokio::test]
async fn a_client_that_saw_no_packet_is_restored_without_an_offset() {
    let mut f = fixture(recovering(RecoveryConfig::default())).await;
    // Packets before it connected are not its own.
    f.io.emit("before", vec![Value::from(0u64)]).await.unwrap();
    let (c, first) = connect(&f, json!({})).await;
    let socket = socket_for(&mut f.sockets, &first.sid).await;
    socket.join(["r"]);
    lose(&mut f, c, &first.sid).await;
    f.io.to("r").emit("m", vec![Value::from(1u64)]).await.unwrap();

    // socket.io-client sends no `offset` when it saw no logged packet.
    let (mut c, again) = connect(&f, json!({"pid": first.pid.unwrap()})).await;
    assert_eq!(again.sid, first.sid);
    f.io.emit("after", vec![Value::from(2u64)]).await.unwrap();
    assert_eq!(event(&mut c).await.0, "m");
    assert_eq!(event(&mut c).await.0, "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn emits_racing_the_loss_and_the_restore_are_neither_lost_nor_duplicated() {
    const COUNT: u64 = 400;
    let mut f = fixture(recovering(RecoveryConfig::default())).await;
    let (mut c, first) = connect(&f, json!({})).await;
    let pid = first.pid.clone().unwrap();
    let socket = socket_for(&mut f.sockets, &first.sid).await;
    socket.join(["r"]);
    // Two emitters at once: one to the room, one to the socket's own id room.
    let mut emitters = Vec::new();
    for (event, room) in [("room", "r".to_owned()), ("own", first.sid.clone())] {
        let io = f.io.clone();
        emitters.push(tokio::spawn(async move {
            for i in 0..COUNT {
                io.to(room.as_str()).emit(event, vec![Value::from(i)]).await.unwrap();
                if i % 8 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    let mut seen: Vec<(String, u64)> = Vec::new();
    let mut last = None;
    let mut lost = false;
    let mut restores = 0;
    while seen.len() < 2 * COUNT as usize {
        if !lost && seen.len() >= 40 * (restores + 1) && restores < 3 {
            lost = true;
            let old = std::mem::replace(&mut c, Client::ws(&f.server).await);
            lose(&mut f, old, &first.sid).await;
            let mut auth = json!({"pid": pid});
            if let Some(last) = &last {
                auth["offset"] = json!(last);
            }
            let (fresh, again) = connect(&f, auth).await;
            assert_eq!(again.sid, first.sid, "restore {restores} recovered");
            c = fresh;
            restores += 1;
            continue;
        }
        lost = false;
        let (name, args) = within(STEP, "next sequence packet", event(&mut c)).await;
        last = Some(offset(&args));
        seen.push((name, number(&args)));
    }
    for e in emitters {
        e.await.unwrap();
    }
    assert_eq!(restores, 3);
    for name in ["room", "own"] {
        let got: Vec<u64> = seen.iter().filter(|(n, _)| n == name).map(|(_, i)| *i).collect();
        assert_eq!(got, (0..COUNT).collect::<Vec<_>>(), "{name}: an unbroken sequence without duplicates");
    }
}

#[tokio::test]
async fn a_disconnect_longer_than_the_window_is_not_recovered() {
    let window = Duration::from_millis(300);
    let mut f = fixture(recovering(RecoveryConfig::default().with_max_disconnection_duration(window))).await;
    let (c, first) = connect(&f, json!({})).await;
    lose(&mut f, c, &first.sid).await;
    // The window is what is under test: wait it out.
    tokio::time::sleep(window + Duration::from_millis(100)).await;
    let (_c, again) = connect(&f, json!({"pid": first.pid.clone().unwrap()})).await;
    assert_ne!(again.sid, first.sid);
    assert_ne!(again.pid, first.pid, "a new socket gets a new private session id");
    assert!(!socket_for(&mut f.sockets, &again.sid).await.recovered());
    assert_eq!(metric(&f.io, r#"switchboard_recovery_failures_total{reason="expired"}"#), 1);
}

#[tokio::test]
async fn a_trimmed_log_gives_a_new_socket_and_no_replay() {
    let mut f = fixture(recovering(RecoveryConfig::default().with_max_log_packets(3))).await;
    let (mut c, first) = connect(&f, json!({})).await;
    let socket = socket_for(&mut f.sockets, &first.sid).await;
    socket.join(["r"]);
    f.io.to("r").emit("m", vec![Value::from(0u64)]).await.unwrap();
    let last = offset(&event(&mut c).await.1);
    lose(&mut f, c, &first.sid).await;
    for i in 1..=5u64 {
        f.io.to("r").emit("m", vec![Value::from(i)]).await.unwrap();
    }
    let (mut c, again) = connect(&f, json!({"pid": first.pid.unwrap(), "offset": last})).await;
    assert_ne!(again.sid, first.sid);
    assert!(!socket_for(&mut f.sockets, &again.sid).await.recovered());
    // Not even the packets still logged: a marker sent now is the first thing it gets.
    f.io.emit("marker", vec![]).await.unwrap();
    assert_eq!(event(&mut c).await.0, "marker");
    assert_eq!(metric(&f.io, r#"switchboard_recovery_failures_total{reason="log_trimmed"}"#), 1);
}

#[tokio::test]
async fn unknown_sessions_offsets_and_sockets_that_left_on_purpose_are_not_recovered() {
    let mut f = fixture(recovering(RecoveryConfig::default())).await;
    let (_c, other) = connect(&f, json!({"pid": "made-up", "offset": "0-0"})).await;
    assert!(!socket_for(&mut f.sockets, &other.sid).await.recovered());

    // A client that leaves the namespace is not kept.
    let (mut c, first) = connect(&f, json!({})).await;
    c.disconnect_nsp("/").await;
    let (id, reason) = recv(&mut f.reasons, "disconnect").await;
    assert_eq!((id.as_str(), reason), (first.sid.as_str(), DisconnectReason::ClientNamespaceDisconnect));
    let (_c, again) = connect(&f, json!({"pid": first.pid.unwrap()})).await;
    assert_ne!(again.sid, first.sid);

    // An offset this log never gave out.
    let (c, third) = connect(&f, json!({})).await;
    lose(&mut f, c, &third.sid).await;
    let (_c, again) = connect(&f, json!({"pid": third.pid.unwrap(), "offset": "1-999"})).await;
    assert_ne!(again.sid, third.sid);
    assert_eq!(metric(&f.io, r#"switchboard_recovery_failures_total{reason="unknown_session"}"#), 2);
    assert_eq!(metric(&f.io, r#"switchboard_recovery_failures_total{reason="unknown_offset"}"#), 1);
    assert_eq!(metric(&f.io, "switchboard_recovery_restored_total"), 0);
}

#[tokio::test]
async fn recovery_off_sends_no_pid_and_logs_nothing() {
    let mut f = fixture(SocketIo::new(config(), SocketIoConfig::default())).await;
    let (mut c, first) = connect(&f, json!({})).await;
    assert_eq!(first.pid, None);
    let socket = socket_for(&mut f.sockets, &first.sid).await;
    socket.join(["r"]);
    f.io.to("r").emit("m", vec![Value::from(1u64)]).await.unwrap();
    socket.emit("own", vec![Value::from(2u64)]).unwrap();
    assert_eq!(event(&mut c).await.1, vec![Value::from(1u64)], "no offset appended");
    assert_eq!(event(&mut c).await.1, vec![Value::from(2u64)], "no offset appended");
    lose(&mut f, c, &first.sid).await;
    let (_c, again) = connect(&f, json!({"pid": "p", "offset": "o"})).await;
    assert_ne!(again.sid, first.sid);
    assert!(!socket_for(&mut f.sockets, &again.sid).await.recovered());
    assert_eq!(metric(&f.io, "switchboard_recovery_attempts_total"), 0);
}

#[tokio::test]
async fn a_restored_socket_skips_the_middleware_unless_told_not_to() {
    for skip in [true, false] {
        let io = recovering(RecoveryConfig::default().with_skip_middlewares(skip));
        let runs = Arc::new(AtomicUsize::new(0));
        let saw_recovered = Arc::new(AtomicUsize::new(0));
        let (r, s) = (runs.clone(), saw_recovered.clone());
        io.main_namespace().use_middleware(move |socket: SocketRef| {
            r.fetch_add(1, Ordering::SeqCst);
            if socket.recovered() {
                s.fetch_add(1, Ordering::SeqCst);
            }
            async { Ok(()) }
        });
        let mut f = fixture(io).await;
        let (c, first) = connect(&f, json!({})).await;
        assert!(!socket_for(&mut f.sockets, &first.sid).await.recovered());
        lose(&mut f, c, &first.sid).await;
        let (_c, again) = connect(&f, json!({"pid": first.pid.unwrap()})).await;
        assert_eq!(again.sid, first.sid);
        assert!(socket_for(&mut f.sockets, &first.sid).await.recovered());
        let expected = if skip { (1, 0) } else { (2, 1) };
        assert_eq!(
            (runs.load(Ordering::SeqCst), saw_recovered.load(Ordering::SeqCst)),
            expected,
            "skip {skip}"
        );
    }
}

#[tokio::test]
async fn a_dynamic_child_namespace_stays_while_its_sessions_can_be_restored() {
    let cleanup = Duration::from_millis(20);
    let config = SocketIoConfig::default()
        .with_child_namespace_cleanup(Some(cleanup))
        .with_connection_state_recovery(RecoveryConfig::default());
    let io = SocketIo::new(common::config(), config);
    let (tx, mut children) = mpsc::unbounded_channel();
    io.of_dynamic(|name| name.starts_with("/dyn-")).on_connection(move |socket: SocketRef| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(socket);
        }
    });
    let f = fixture(io).await;
    let (mut c, first) = connect_to(&f, "/dyn-1", json!({})).await;
    let socket = socket_for(&mut children, &first.sid).await;
    c.close().await;
    wait_until("the socket is gone", STEP, || !socket.connected()).await;
    // Many sweeps of the cleanup: the emptied child would be gone by now without recovery.
    tokio::time::sleep(cleanup * 10).await;
    assert!(f.io.namespace_names().contains(&"/dyn-1".to_owned()));
    let (_c, again) = connect_to(&f, "/dyn-1", json!({"pid": first.pid.unwrap()})).await;
    assert_eq!(again.sid, first.sid);
    assert!(socket_for(&mut children, &first.sid).await.recovered());
}

#[tokio::test]
async fn a_restore_whose_connection_drops_midway_keeps_the_session() {
    let io = recovering(RecoveryConfig::default().with_skip_middlewares(false));
    // The middleware holds restores until the test lets them go, and says when one is done.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (waiting_tx, mut waiting) = mpsc::unbounded_channel();
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let g = gate.clone();
    io.main_namespace().use_middleware(move |socket: SocketRef| {
        let (g, waiting_tx, done_tx) = (g.clone(), waiting_tx.clone(), done_tx.clone());
        async move {
            if socket.recovered() {
                let _ = waiting_tx.send(());
                if let Ok(permit) = g.acquire().await {
                    permit.forget();
                }
                // On this current-thread runtime the connect finishes before the test runs again.
                let _ = done_tx.send(());
            }
            Ok(())
        }
    });
    let mut f = fixture(io).await;
    let (c, first) = connect(&f, json!({})).await;
    let pid = first.pid.clone().unwrap();
    socket_for(&mut f.sockets, &first.sid).await;
    lose(&mut f, c, &first.sid).await;

    let mut c = Client::ws(&f.server).await;
    let auth = json!({"pid": pid}).as_object().cloned();
    c.send_encoded(&Packet::Connect { nsp: "/".into(), data: auth }.encode()).await;
    recv(&mut waiting, "the restore in the middleware").await;
    c.close().await;
    f.server.wait_sessions(0, STEP).await;
    gate.add_permits(1);
    recv(&mut done, "the interrupted restore").await;

    gate.add_permits(1);
    let (_c, again) = connect(&f, json!({"pid": pid})).await;
    assert_eq!(again.sid, first.sid, "the session was kept for the next attempt");
}

#[tokio::test]
async fn binary_packets_are_logged_and_replayed_with_their_attachments() {
    let mut f = fixture(recovering(RecoveryConfig::default())).await;
    let (c, first) = connect(&f, json!({})).await;
    socket_for(&mut f.sockets, &first.sid).await.join(["r"]);
    lose(&mut f, c, &first.sid).await;
    let blob = bytes::Bytes::from_static(&[0, 1, 2, 255]);
    f.io.to("r").emit("bin", vec![Value::from(blob.clone()), Value::from("text")]).await.unwrap();
    let (mut c, again) = connect(&f, json!({"pid": first.pid.unwrap()})).await;
    assert_eq!(again.sid, first.sid);
    let (name, args) = event(&mut c).await;
    assert_eq!(name, "bin");
    assert_eq!(args[..2], [Value::from(blob), Value::from("text")]);
    offset(&args);
}

#[tokio::test]
async fn a_written_emit_resolves_once_written_although_the_log_keeps_the_packet() {
    let mut f = fixture(recovering(RecoveryConfig::default())).await;
    let (mut c, first) = connect(&f, json!({})).await;
    socket_for(&mut f.sockets, &first.sid).await.join(["r"]);
    let op = f.io.to("r").timeout(Duration::from_secs(60));
    let emit = op.emit_written("m", vec![Value::from(1u64)]);
    // Resolved as soon as the client's transport took it, not at the 60 s timeout.
    let (sent, (name, _)) = within(STEP, "emit_written", async { tokio::join!(emit, event(&mut c)) }).await;
    assert_eq!((sent.unwrap(), name.as_str()), (1, "m"));
}
