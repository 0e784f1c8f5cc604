//! Connection state recovery across two nodes sharing a real `redis-server` (the Redis store of
//! `switchboard_redis::recovery`), with the raw test client: a client of node A whose connection
//! is lost comes back on node B with its socket id, rooms and data and the packets B emitted
//! meanwhile, in order, once; its session is in Redis as soon as it joins or sets data (before any
//! disconnect), so a node's death would not lose it; a socket that leaves on purpose is forgotten.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::sio::{Client, Fixture, fixture_with as fixture, recv, socket_for};
use common::{STEP, config};
use serde_json::json;
use switchboard::socketio::{DisconnectReason, RecoveryConfig, SocketIo, SocketIoConfig, Value};
use switchboard_adapter::cluster::Inbound;
use switchboard_protocol::socketio::Packet;
use switchboard_redis::{RedisConfig, RedisTransport};
use switchboard_testkit::{RedisServer, eventually};

/// A node whose recovery keeps sessions and the log in `redis` (its adapter is this node's own:
/// logged packets travel through the shared log, not the adapter).
async fn node(redis: &RedisServer, prefix: &str) -> Fixture {
    let transport =
        RedisTransport::connect(&[redis.url()], prefix, Inbound::new(), RedisConfig::new()).await.unwrap();
    let recovery = RecoveryConfig::default().with_store(Arc::new(transport.session_stores()));
    fixture(SocketIo::new(config(), SocketIoConfig::default().with_connection_state_recovery(recovery))).await
}

/// Connects to `/` with `auth`; the CONNECT answer's sid and pid.
async fn connect(f: &Fixture, auth: serde_json::Value) -> (Client, String, String) {
    let mut c = Client::ws(&f.server).await;
    c.send_encoded(&Packet::Connect { nsp: "/".into(), data: auth.as_object().cloned() }.encode()).await;
    match c.next_packet().await {
        Packet::Connect { data: Some(data), .. } => {
            let field = |name: &str| data.get(name).and_then(|v| v.as_str()).map(str::to_owned).expect(name);
            (c, field("sid"), field("pid"))
        }
        other => panic!("CONNECT answer expected, got {other:?}"),
    }
}

/// The next `n` event's number and offset.
async fn numbered(c: &mut Client) -> (u64, String) {
    let (args, _) = c.expect_event("n").await;
    let n = args.first().and_then(Value::to_json).and_then(|v| v.as_u64()).expect("a number");
    match args.last() {
        Some(Value::String(offset)) => (n, offset.clone()),
        other => panic!("an offset last, got {other:?}"),
    }
}

async fn session_in_redis(redis: &RedisServer, key: &str) -> Option<String> {
    let mut conn = redis.client().await;
    redis::cmd("GET").arg(key).query_async(&mut conn).await.unwrap()
}

#[tokio::test]
async fn a_client_of_one_node_is_restored_by_another_with_its_rooms_data_and_missed_packets() {
    let redis = RedisServer::start();
    let mut a = node(&redis, "rc").await;
    let b = node(&redis, "rc").await;
    let (mut c, sid, pid) = connect(&a, json!({})).await;
    let socket = socket_for(&mut a.sockets, &sid).await;
    socket.join(["r"]);
    socket.set_data(&json!({"name": "ada"})).unwrap();
    // Saved as it changed, before any disconnect: a dead node would not lose it.
    let key = format!("rc#/#session#{pid}");
    let saved = eventually(STEP, || async {
        session_in_redis(&redis, &key).await.is_some_and(|s| s.contains("ada"))
    });
    assert!(saved.await, "the session with its data in Redis while connected");

    // Node B emits; node A delivers to its client from the shared log.
    for n in 0..3u64 {
        b.io.to("r").emit("n", vec![Value::from(n)]).await.unwrap();
    }
    let mut last = String::new();
    for n in 0..3u64 {
        let (got, offset) = numbered(&mut c).await;
        assert_eq!(got, n);
        last = offset;
    }
    c.close().await;
    let (gone, reason) = recv(&mut a.reasons, "disconnect").await;
    assert_eq!((gone.as_str(), reason), (sid.as_str(), DisconnectReason::TransportClose));
    // Missed while away: to its room and to its own id, from node B.
    b.io.to("r").emit("n", vec![Value::from(3u64)]).await.unwrap();
    b.io.to(sid.as_str()).emit("n", vec![Value::from(4u64)]).await.unwrap();
    b.io.to("other").emit("n", vec![Value::from(99u64)]).await.unwrap();

    let mut b = b;
    let (mut c, again, same_pid) = connect(&b, json!({"pid": pid, "offset": last})).await;
    assert_eq!((again.as_str(), same_pid.as_str()), (sid.as_str(), pid.as_str()), "the same socket");
    let restored = socket_for(&mut b.sockets, &sid).await;
    assert!(restored.recovered());
    assert_eq!(restored.data::<serde_json::Value>(), Some(json!({"name": "ada"})));
    assert!(restored.rooms().iter().any(|r| r.as_str() == "r"));
    assert_eq!(numbered(&mut c).await.0, 3);
    assert_eq!(numbered(&mut c).await.0, 4);
    // Still in its room on B: what comes next arrives once, after the replay.
    a.io.to("r").emit("n", vec![Value::from(5u64)]).await.unwrap();
    assert_eq!(numbered(&mut c).await.0, 5);

    // Leaving on purpose forgets the session.
    restored.disconnect(false);
    let forgotten = eventually(STEP, || async { session_in_redis(&redis, &key).await.is_none() });
    assert!(forgotten.await, "the session deleted");
}

#[tokio::test]
async fn a_socket_s_own_emit_through_the_shared_log_reaches_its_outgoing_listeners_once() {
    let redis = RedisServer::start();
    let mut a = node(&redis, "ro").await;
    let (mut c, sid, _) = connect(&a, json!({})).await;
    let socket = socket_for(&mut a.sockets, &sid).await;
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = heard.clone();
    socket.on_any_outgoing(move |_, event, _| log.lock().unwrap().push(event.to_owned()));
    socket.emit("first", vec![Value::from(1)]).unwrap();
    socket.emit("second", vec![Value::from(2)]).unwrap();
    c.expect_event("first").await;
    c.expect_event("second").await;
    // Both delivered: a second notice of `first` would have come before `second` reached the client.
    assert_eq!(*heard.lock().unwrap(), ["first", "second"]);
}

#[tokio::test]
async fn a_restore_while_the_old_socket_is_still_connected_here_starts_a_new_socket() {
    let redis = RedisServer::start();
    let mut a = node(&redis, "rs").await;
    let (mut old, sid, pid) = connect(&a, json!({})).await;
    let socket = socket_for(&mut a.sockets, &sid).await;
    socket.join(["r"]);
    let key = format!("rs#/#session#{pid}");
    let saved = eventually(STEP, || async {
        session_in_redis(&redis, &key).await.is_some_and(|s| s.contains("\"r\""))
    });
    assert!(saved.await, "the session saved while connected");

    // A half-open connection: the client comes back to the same node before it noticed the drop.
    let (_new, new_sid, _) = connect(&a, json!({ "pid": pid })).await;
    assert_ne!(new_sid, sid, "two sockets under one id");
    // The old socket is untouched: still in its room, still served.
    a.io.to("r").emit("n", vec![Value::from(7u64)]).await.unwrap();
    assert_eq!(numbered(&mut old).await.0, 7);
}
