//! Rooms and broadcasts against a real server: join/leave, `to`, `except`, `socket.broadcast()`,
//! broadcast acks (all answers, and missing ones), fetchSockets with rooms and data, remote
//! socket operations, sockets_join/sockets_leave/disconnect_sockets, and volatile emits; the
//! limits on rooms (name length, rooms per socket), and broadcast acks a client never sends.
//!
//! "X does not reach C" is checked by ordering: a marker emitted to everyone afterwards must be
//! C's next packet, so no test waits out a silence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::config;
use common::sio::{Client, Fixture, fixture_with, io, recv, socket_for};
use common::{STEP, within};
use serde_json::json;
use switchboard::socketio::{
    BroadcastAckError, BroadcastError, ClusterRequestError, DisconnectReason, JoinError, Room,
    RoomNameTooLong, RoomsError, SocketIo, SocketIoConfig, SocketRef, Value,
};
use switchboard_protocol::socketio::Packet;

async fn fixture() -> Fixture {
    fixture_with(io(config())).await
}

/// A websocket client on `/` (auth `{"name": name}`) and its server-side socket.
async fn join(f: &mut Fixture, name: &str) -> (Client, SocketRef) {
    let mut c = Client::ws(&f.server).await;
    let sid = c.connect("/", Some(json!({"name": name}))).await.expect("connect");
    let socket = socket_for(&mut f.sockets, &sid).await;
    (c, socket)
}

/// Emits `marker` to everyone, then checks each client's next event names, ending with the marker.
async fn expect_then_marker(io: &SocketIo, clients: &mut [(&mut Client, &[&str])]) {
    io.emit("marker", vec![]).await.unwrap();
    for (c, events) in clients.iter_mut() {
        let mut got = Vec::new();
        loop {
            match c.next_packet().await {
                Packet::Event { event, .. } if event == "marker" => break,
                Packet::Event { event, .. } => got.push(event),
                other => panic!("event expected, got {other:?}"),
            }
        }
        assert_eq!(got, *events, "events before the marker");
    }
}

fn rooms(socket: &SocketRef) -> Vec<String> {
    socket.rooms().iter().map(|r| r.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_leave_to_except_and_socket_broadcast() {
    let mut f = fixture().await;
    let (mut a, sa) = join(&mut f, "a").await;
    let (mut b, sb) = join(&mut f, "b").await;
    let (mut c, _sc) = join(&mut f, "c").await;

    sa.join(["r1"]);
    sb.join(["r1", "r2"]);
    assert_eq!(rooms(&sa), [sa.id().to_string(), "r1".to_owned()]);
    assert_eq!(rooms(&sb), [sb.id().to_string(), "r1".to_owned(), "r2".to_owned()]);

    // to(room): members only.
    assert_eq!(f.io.to("r1").emit("news", vec![Value::from(1)]).await.unwrap(), 2);
    assert_eq!(a.next_text().await, r#"2["news",1]"#);
    expect_then_marker(&f.io, &mut [(&mut a, &[]), (&mut b, &["news"]), (&mut c, &[])]).await;

    // Several rooms: each member once.
    assert_eq!(f.io.to("r1").to("r2").emit("multi", vec![]).await.unwrap(), 2);
    expect_then_marker(&f.io, &mut [(&mut a, &["multi"]), (&mut b, &["multi"]), (&mut c, &[])]).await;

    // except(room), and a socket's own id room.
    assert_eq!(f.io.broadcast().except("r1").emit("not-r1", vec![]).await.unwrap(), 1);
    assert_eq!(f.io.to("r1").except(sb.id().room()).emit("r1-but-b", vec![]).await.unwrap(), 1);
    assert_eq!(f.io.to(sb.id().room()).emit("only-b", vec![]).await.unwrap(), 1);
    expect_then_marker(&f.io, &mut [(&mut a, &["r1-but-b"]), (&mut b, &["only-b"]), (&mut c, &["not-r1"])])
        .await;

    // socket.broadcast() excludes the sender; socket.to(room) too.
    assert_eq!(sa.broadcast().emit("from-a", vec![]).await.unwrap(), 2);
    assert_eq!(sa.to("r1").emit("a-to-r1", vec![]).await.unwrap(), 1);
    expect_then_marker(&f.io, &mut [(&mut a, &[]), (&mut b, &["from-a", "a-to-r1"]), (&mut c, &["from-a"])])
        .await;

    // leave.
    sb.leave("r1");
    assert_eq!(rooms(&sb), [sb.id().to_string(), "r2".to_owned()]);
    assert_eq!(f.io.to("r1").emit("after-leave", vec![]).await.unwrap(), 1);
    expect_then_marker(&f.io, &mut [(&mut a, &["after-leave"]), (&mut b, &[]), (&mut c, &[])]).await;
    sa.leave("r1");
    assert!(!f.io.main_namespace().adapter().local().has_room(&Room::from("r1")));
    assert_eq!(f.io.to("r1").emit("nobody", vec![]).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_with_ack_collects_all_answers_or_reports_missing_ones() {
    let mut f = fixture().await;
    let (mut a, sa) = join(&mut f, "a").await;
    let (mut b, sb) = join(&mut f, "b").await;
    let (mut c, sc) = join(&mut f, "c").await;

    let io = f.io.clone();
    let all = tokio::spawn(async move {
        io.broadcast().timeout(STEP).emit_with_ack("poll", vec![Value::from("q")]).await
    });
    let mut ids = BTreeSet::new();
    for (client, name) in [(&mut a, "a"), (&mut b, "b"), (&mut c, "c")] {
        let (args, id) = client.expect_event("poll").await;
        assert_eq!(args, vec![Value::from("q")]);
        let id = id.expect("ack id");
        ids.insert(id);
        client.ack("/", id, vec![Value::from(name)]).await;
    }
    assert_eq!(ids.len(), 1, "one ack id for the whole broadcast");
    let responses = within(STEP, "broadcast acks", all).await.unwrap().expect("all answered");
    let by_socket: BTreeMap<String, Vec<Value>> =
        responses.into_iter().map(|r| (r.socket.to_string(), r.args)).collect();
    let expected: BTreeMap<String, Vec<Value>> = [(&sa, "a"), (&sb, "b"), (&sc, "c")]
        .into_iter()
        .map(|(s, n)| (s.id().to_string(), vec![Value::from(n)]))
        .collect();
    assert_eq!(by_socket, expected);

    // c does not answer: the two answers are kept and one is reported missing.
    let io = f.io.clone();
    let partial = tokio::spawn(async move {
        io.broadcast().timeout(Duration::from_millis(300)).emit_with_ack("poll2", vec![]).await
    });
    for client in [&mut a, &mut b] {
        let (_, id) = client.expect_event("poll2").await;
        client.ack("/", id.unwrap(), vec![Value::from(true)]).await;
    }
    let (_, c_id) = c.expect_event("poll2").await;
    match within(STEP, "broadcast ack timeout", partial).await.unwrap() {
        Err(BroadcastAckError::AckTimeout { responses, missing }) => {
            assert_eq!(missing, 1);
            let who: BTreeSet<String> = responses.iter().map(|r| r.socket.to_string()).collect();
            assert_eq!(who, BTreeSet::from([sa.id().to_string(), sb.id().to_string()]));
            assert!(responses.iter().all(|r| r.args == vec![Value::from(true)]));
        }
        other => panic!("AckTimeout expected, got {other:?}"),
    }
    // c's late answer is ignored.
    c.ack("/", c_id.unwrap(), vec![]).await;
    expect_then_marker(&f.io, &mut [(&mut a, &[]), (&mut b, &[]), (&mut c, &[])]).await;

    // A room with acks; nobody selected → an empty success right away.
    sa.join(["r"]);
    let io = f.io.clone();
    let one = tokio::spawn(async move { io.to("r").timeout(STEP).emit_with_ack("poll3", vec![]).await });
    let (_, id) = a.expect_event("poll3").await;
    a.ack("/", id.unwrap(), vec![Value::from(3)]).await;
    let responses = within(STEP, "room acks", one).await.unwrap().unwrap();
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].socket, *sa.id());
    let none = within(STEP, "empty", f.io.to("nobody").timeout(STEP).emit_with_ack("x", vec![])).await;
    assert!(none.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_sockets_and_remote_socket_operations() {
    let mut f = fixture().await;
    let (mut a, sa) = join(&mut f, "a").await;
    let (mut b, sb) = join(&mut f, "b").await;
    let (mut c, sc) = join(&mut f, "c").await;
    sa.join(["r1"]);
    sb.join(["r1", "r2"]);
    sa.set_data(&json!({"role": "admin"})).unwrap();

    let all = f.io.broadcast().fetch_sockets().await.unwrap();
    let ids: BTreeSet<String> = all.iter().map(|s| s.id().to_string()).collect();
    assert_eq!(ids, [&sa, &sb, &sc].iter().map(|s| s.id().to_string()).collect());

    let r1 = f.io.to("r1").fetch_sockets().await.unwrap();
    assert_eq!(r1.len(), 2);
    for remote in &r1 {
        let info = remote.info();
        assert_eq!(info.nsp, "/");
        let rooms: BTreeSet<String> = info.rooms.iter().map(|r| r.to_string()).collect();
        if info.id == *sa.id() {
            assert_eq!(rooms, BTreeSet::from([sa.id().to_string(), "r1".to_owned()]));
            assert_eq!(info.handshake["auth"], json!({"name": "a"}));
            assert_eq!(info.data, json!({"role": "admin"}));
        } else {
            assert_eq!(info.id, *sb.id());
            assert_eq!(rooms, BTreeSet::from([sb.id().to_string(), "r1".to_owned(), "r2".to_owned()]));
            assert_eq!(info.handshake["auth"], json!({"name": "b"}));
        }
    }
    let except = f.io.broadcast().except("r2").fetch_sockets().await.unwrap();
    let ids: BTreeSet<String> = except.iter().map(|s| s.id().to_string()).collect();
    assert_eq!(ids, BTreeSet::from([sa.id().to_string(), sc.id().to_string()]));

    // RemoteSocket: emit, join, leave reach that socket only.
    let remote_b = r1.iter().find(|s| s.id() == sb.id()).unwrap();
    remote_b.emit("remote", vec![Value::from(1)]).await.unwrap();
    remote_b.join(vec!["r9".into()]).await.unwrap();
    remote_b.leave(vec!["r2".into()]).await.unwrap();
    assert_eq!(rooms(&sb), [sb.id().to_string(), "r1".to_owned(), "r9".to_owned()]);
    expect_then_marker(&f.io, &mut [(&mut a, &[]), (&mut b, &["remote"]), (&mut c, &[])]).await;

    // sockets_join / sockets_leave on a selection.
    f.io.to("r1").sockets_join(vec!["r3".into()]).await.unwrap();
    assert!(rooms(&sa).contains(&"r3".to_owned()) && rooms(&sb).contains(&"r3".to_owned()));
    assert!(!rooms(&sc).contains(&"r3".to_owned()));
    assert_eq!(f.io.to("r3").emit("r3", vec![]).await.unwrap(), 2);
    expect_then_marker(&f.io, &mut [(&mut a, &["r3"]), (&mut b, &["r3"]), (&mut c, &[])]).await;
    f.io.broadcast().sockets_leave(vec!["r1".into()]).await.unwrap();
    assert!(f.io.to("r1").fetch_sockets().await.unwrap().is_empty());
    assert!(!f.io.main_namespace().adapter().local().has_room(&Room::from("r1")));
    assert_eq!(rooms(&sa), [sa.id().to_string(), "r3".to_owned()]);

    // disconnect_sockets(false): namespace only, the sessions stay.
    f.io.to("r3").disconnect_sockets(false).await.unwrap();
    for client in [&mut a, &mut b] {
        assert_eq!(client.next_text().await, "1", "DISCONNECT for /");
    }
    let mut gone = BTreeMap::new();
    for _ in 0..2 {
        let (id, reason) = recv(&mut f.reasons, "disconnect").await;
        gone.insert(id, reason);
    }
    assert_eq!(
        gone,
        BTreeMap::from([
            (sa.id().to_string(), DisconnectReason::ServerNamespaceDisconnect),
            (sb.id().to_string(), DisconnectReason::ServerNamespaceDisconnect),
        ])
    );
    assert_eq!(f.io.main_namespace().socket_count(), 1);
    assert_eq!(f.server.engine.session_count(), 3);
    // a can join again on the same session.
    a.connect("/", None).await.expect("reconnect");

    // disconnect_sockets(true): c's whole connection closes.
    f.io.to(sc.id().room()).disconnect_sockets(true).await.unwrap();
    let before = c.expect_closed(STEP).await;
    assert!(before.iter().all(|m| m.text == "1"), "{before:?}");
    assert_eq!(
        recv(&mut f.reasons, "disconnect").await,
        (sc.id().to_string(), DisconnectReason::ServerNamespaceDisconnect)
    );
    assert!(f.server.engine.session(&c.eio_sid).is_none());
    assert_eq!(f.server.engine.session_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volatile_is_dropped_for_a_polling_client_without_a_pending_get() {
    let mut f = fixture().await;
    let mut p = Client::polling(&f.server).await;
    let p_sid = p.connect("/", None).await.expect("connect");
    let _ = socket_for(&mut f.sockets, &p_sid).await;
    let (mut w, _) = join(&mut f, "w").await;

    // No GET pending: the volatile packet is dropped for p; the websocket takes it.
    f.io.broadcast().volatile().emit("vol", vec![Value::from(1)]).await.unwrap();
    f.io.emit("nonvol", vec![Value::from(2)]).await.unwrap();
    assert_eq!(p.next_text().await, r#"2["nonvol",2]"#);
    assert_eq!(w.next_text().await, r#"2["vol",1]"#);
    assert_eq!(w.next_text().await, r#"2["nonvol",2]"#);

    // With a GET pending, a volatile packet is delivered: emit until the GET has one.
    let get = f.server.spawn_get(&p.eio_sid);
    let mut n = 0;
    while !get.is_finished() {
        assert!(n < 500, "no volatile packet reached the pending GET");
        f.io.broadcast().volatile().emit("vol2", vec![Value::from(n)]).await.unwrap();
        n += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let resp = within(STEP, "GET", get).await.unwrap();
    let body = resp.text();
    assert!(body.starts_with(r#"42["vol2","#) && !body.contains('\x1e'), "one volatile packet: {body:?}");
    f.io.emit("nonvol", vec![Value::from(3)]).await.unwrap();
    // A volatile emit racing with the end of that GET may still have been queued: skip it.
    loop {
        let text = p.next_text().await;
        if !text.starts_with(r#"2["vol2","#) {
            assert_eq!(text, r#"2["nonvol",3]"#);
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_written_waits_until_every_local_receiver_took_the_packet() {
    let mut f = fixture().await;
    let (mut w, _) = join(&mut f, "w").await;
    let mut p = Client::polling(&f.server).await;
    let p_sid = p.connect("/", None).await.expect("connect");
    let _ = socket_for(&mut f.sockets, &p_sid).await;

    // The websocket takes it at once; the polling client has no GET pending, so the emit waits.
    let io = f.io.clone();
    let emit = tokio::spawn(async move { io.broadcast().emit_written("news", vec![Value::from(1)]).await });
    assert_eq!(w.next_text().await, r#"2["news",1]"#);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!emit.is_finished(), "emit_written resolved while a receiver had not polled");

    // The GET takes the packet: the emit resolves with both recipients counted.
    assert_eq!(p.next_text().await, r#"2["news",1]"#);
    let recipients = within(STEP, "emit_written", emit).await.unwrap().unwrap();
    assert_eq!(recipients, 2);

    // With a timeout, a receiver that never polls does not hold the publisher forever.
    let started = tokio::time::Instant::now();
    let n = f.io.broadcast().timeout(Duration::from_millis(100)).emit_written("late", vec![]).await.unwrap();
    assert_eq!(n, 2);
    assert!(started.elapsed() >= Duration::from_millis(100), "resolved before p polled or the timeout");
    assert_eq!(p.next_text().await, r#"2["late"]"#, "the packet stays queued after the timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_acks_a_client_never_sends_are_dropped_at_their_timeout() {
    let mut f = fixture().await;
    let (mut a, sa) = join(&mut f, "a").await;

    // A client that never answers: each broadcast's entry goes at its timeout, not at disconnect.
    for i in 0..300 {
        let result = f.io.broadcast().timeout(Duration::from_millis(1)).emit_with_ack("poll", vec![]).await;
        match result {
            Err(BroadcastAckError::AckTimeout { responses, missing: 1 }) if responses.is_empty() => {}
            other => panic!("broadcast {i}: one missing ack expected, got {other:?}"),
        }
    }
    assert_eq!(sa.pending_acks(), 0, "acks of broadcasts that timed out are still awaited");
    assert!(sa.connected());

    // One still awaited is kept, and its answer still arrives.
    let io = f.io.clone();
    let awaited =
        tokio::spawn(async move { io.broadcast().timeout(STEP).emit_with_ack("last", vec![]).await });
    let id = loop {
        let (event, id) = match a.next_packet().await {
            Packet::Event { event, id, .. } => (event, id),
            other => panic!("event expected, got {other:?}"),
        };
        if event == "last" {
            break id.expect("ack id");
        }
    };
    assert_eq!(sa.pending_acks(), 1);
    a.ack("/", id, vec![Value::from("late but awaited")]).await;
    let responses = within(STEP, "the awaited ack", awaited).await.unwrap().expect("answered");
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].args, vec![Value::from("late but awaited")]);
    assert_eq!(sa.pending_acks(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_past_the_room_limits_are_refused_whole() {
    // Names up to 30 bytes: a socket id (25 bytes here) fits.
    let config = SocketIoConfig::default().with_max_rooms_per_socket(3).with_max_name_bytes(30);
    let mut f = fixture_with(SocketIo::new(common::config(), config)).await;
    let (mut a, sa) = join(&mut f, "a").await;
    let own = sa.id().to_string();

    sa.try_join(["r1", "r2"]).expect("two rooms");
    // r2 again is no new room, nor is the socket's own id room: 3 rooms, at the limit.
    sa.try_join(["r2", "r3", own.as_str()]).expect("one new room");
    assert_eq!(sa.try_join(["r4"]).unwrap_err(), JoinError::TooManyRooms { max: 3 });
    assert_eq!(sa.try_join(["r1", "r4"]).unwrap_err(), JoinError::TooManyRooms { max: 3 });
    assert_eq!(rooms(&sa), [own.clone(), "r1".into(), "r2".into(), "r3".into()]);
    sa.leave("r1");
    sa.try_join(["r4"]).expect("room for one after a leave");

    // Longer names are refused, whatever else the join holds.
    sa.leave("r4");
    let long = "x".repeat(31);
    let long = long.as_str();
    let too_long = RoomNameTooLong { len: 31, max: 30 };
    assert_eq!(sa.try_join(["ok", long]).unwrap_err(), JoinError::RoomName(too_long));
    assert!(sa.join([long]).is_confirmed(), "join ignores a refused join");
    assert_eq!(rooms(&sa), [own, "r2".into(), "r3".into()]);
    sa.try_join(["y".repeat(30)]).expect("a name at the limit");

    // No operation names a too-long room to the adapter.
    let err = f.io.to(long).emit("x", vec![]).await.unwrap_err();
    assert!(matches!(err, BroadcastError::RoomName(e) if e == too_long), "{err:?}");
    let err = f.io.broadcast().except(long).emit("x", vec![]).await.unwrap_err();
    assert!(matches!(err, BroadcastError::RoomName(_)), "{err:?}");
    let err = f.io.to(long).emit_with_ack("x", vec![]).await.unwrap_err();
    assert!(matches!(err, BroadcastAckError::RoomName(_)), "{err:?}");
    let err = f.io.broadcast().sockets_join(vec![long.into()]).await.unwrap_err();
    assert!(matches!(err, RoomsError::RoomName(_)), "{err:?}");
    let err = f.io.to(long).fetch_sockets().await.unwrap_err();
    assert!(matches!(err, ClusterRequestError::RoomName(_)), "{err:?}");
    let err = f.io.to(long).disconnect_sockets(true).await.unwrap_err();
    assert!(matches!(err, ClusterRequestError::RoomName(_)), "{err:?}");
    assert!(sa.connected());
    // sockets_join is server code's choice: not counted against the rooms per socket.
    f.io.broadcast().sockets_join(vec!["s1".into(), "s2".into()]).await.unwrap();
    assert_eq!(sa.rooms().len(), 6);
    expect_then_marker(&f.io, &mut [(&mut a, &[])]).await;
}
