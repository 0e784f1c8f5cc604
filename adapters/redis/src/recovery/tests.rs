//! The Redis store against a real `redis-server`: two or three stores on one instance stand for
//! nodes of a cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use switchboard_adapter::recovery::{LogSink, RecoveryLimits, SavedSession, SessionStore};
use switchboard_adapter::{BroadcastOptions, BroadcastPacket, RestoreError, Room, SocketId};
use switchboard_protocol::socketio::{Value, encode_event};
use switchboard_testkit::RedisServer;
use switchboard_testkit::eventually;

use super::RedisSessionStore;

/// A node's namespace: records what the store delivers, in order.
#[derive(Default)]
struct Node {
    got: Mutex<Vec<String>>,
}

impl LogSink for Node {
    fn deliver(&self, _opts: &BroadcastOptions, packet: &BroadcastPacket, commit: &mut dyn FnMut()) {
        commit();
        self.got.lock().unwrap().push(String::from_utf8_lossy(&packet.packet().text).into_owned());
    }
}

impl Node {
    fn got(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }
}

async fn start(redis: &RedisServer, limits: RecoveryLimits) -> (RedisSessionStore, Arc<Node>) {
    let client = redis::Client::open(redis.url()).unwrap();
    let store = RedisSessionStore::new(client, "sb#/#", limits);
    let node = Arc::new(Node::default());
    let sink: Arc<dyn LogSink> = node.clone();
    store.attach(Arc::downgrade(&sink) as Weak<dyn LogSink>);
    // The sink lives as long as the node: leak its strong count into the node's Arc.
    std::mem::forget(sink);
    tokio::time::timeout(Duration::from_secs(5), store.reading()).await.expect("the reader reads");
    (store, node)
}

fn emit(store: &RedisSessionStore, rooms: &[&str], n: u64) {
    let opts =
        BroadcastOptions { rooms: rooms.iter().map(|r| Room::from(*r)).collect(), ..Default::default() };
    let logged = store
        .append(&opts, &mut |offset| encode_event("/", "n", &[Value::from(n), Value::from(offset)], None));
    assert!(logged.is_none(), "the stream delivers, not the caller");
}

fn session(pid: &str, rooms: &[&str], since: String) -> SavedSession {
    SavedSession {
        pid: pid.into(),
        sid: SocketId::from("sid"),
        rooms: std::iter::once("sid").chain(rooms.iter().copied()).map(Room::from).collect(),
        data: serde_json::json!({"name": "a"}),
        left_at: since.clone(),
        since,
        delivered_logged: false,
    }
}

/// The offset a delivered packet carries (its last argument).
fn offset_of(text: &str) -> String {
    let start = text.rfind(",\"").expect("an offset") + 2;
    text[start..text.len() - 2].to_owned()
}

/// The number a test packet carries (its first argument).
fn number(text: &str) -> u64 {
    let start = text.find(',').expect("args") + 1;
    let end = start + text[start..].find(',').expect("an offset");
    text[start..end].parse().expect("a number")
}

fn texts(packets: &[BroadcastPacket]) -> Vec<String> {
    packets.iter().map(|p| String::from_utf8_lossy(&p.packet().text).into_owned()).collect()
}

async fn delivered(node: &Node, n: usize) {
    let ok = eventually(Duration::from_secs(5), || std::future::ready(node.got().len() >= n)).await;
    assert!(ok, "{} of {n} delivered: {:?}", node.got().len(), node.got());
}

async fn restore(
    store: &RedisSessionStore,
    saved: &SavedSession,
    offset: Option<&str>,
) -> Result<Vec<String>, RestoreError> {
    let prefetched = store.prefetch(saved, offset, usize::MAX).await?;
    store.missed(saved, offset, &prefetched, usize::MAX).map(|m| texts(&m))
}

#[tokio::test]
async fn nodes_deliver_in_one_order_and_any_node_restores_a_session_once() {
    let redis = RedisServer::start();
    let (a, node_a) = start(&redis, RecoveryLimits::default()).await;
    let (b, node_b) = start(&redis, RecoveryLimits::default()).await;
    // A client on node A, in room "r", saved eagerly as it joined.
    let saved = session("pid-1", &["r"], a.head());
    a.save_live(&saved);
    // Two nodes emit at once: both deliver one sequence, the same.
    for n in 0..20 {
        emit(if n % 2 == 0 { &a } else { &b }, &[if n % 3 == 0 { "other" } else { "r" }], n);
    }
    // Once `delivered` resolves, a node has delivered what it appended itself.
    a.delivered().await;
    b.delivered().await;
    assert_eq!(node_a.got().iter().filter(|t| number(t) % 2 == 0).count(), 10, "{:?}", node_a.got());
    assert_eq!(node_b.got().iter().filter(|t| number(t) % 2 == 1).count(), 10, "{:?}", node_b.got());
    delivered(&node_a, 20).await;
    delivered(&node_b, 20).await;
    assert_eq!(node_a.got(), node_b.got());
    // The client saw up to the fifth packet when node A died; node B restores it with the rest.
    let seen = offset_of(&node_a.got()[4]);
    let taken = b.take("pid-1").await.expect("saved eagerly, found on another node");
    assert_eq!(taken, saved);
    assert_eq!(b.take("pid-1").await, Err(RestoreError::UnknownSession), "taken once");
    let for_r =
        |texts: &[String]| -> Vec<String> { texts.iter().filter(|t| number(t) % 3 != 0).cloned().collect() };
    let wanted = for_r(&node_a.got()[5..]);
    assert_eq!(restore(&b, &taken, Some(&seen)).await, Ok(wanted.clone()));
    // A node that started after those packets reads them from the stream (in batches).
    let (c, _node_c) = start(&redis, RecoveryLimits::default()).await;
    assert_eq!(restore(&c, &taken, Some(&seen)).await, Ok(wanted.clone()));
    // A client that saw nothing replays from where its session began.
    assert_eq!(restore(&c, &taken, None).await, Ok(for_r(&node_a.got())));
}

#[tokio::test]
async fn a_trimmed_or_reset_log_is_never_a_partial_replay() {
    let mut redis = RedisServer::start();
    let limits = RecoveryLimits { max_log_packets: 10, ..RecoveryLimits::default() };
    let (a, node_a) = start(&redis, limits).await;
    let saved = session("pid-2", &["r"], a.head());
    emit(&a, &["r"], 0);
    delivered(&node_a, 1).await;
    let seen = offset_of(&node_a.got()[0]);
    for n in 1..400 {
        emit(&a, &["r"], n);
    }
    let ok = eventually(Duration::from_secs(5), || {
        std::future::ready(node_a.got().last().is_some_and(|t| number(t) == 399))
    })
    .await;
    assert!(ok, "the last packet is delivered");
    // MAXLEN ~ trims whole stream nodes (100 entries): the first packet is gone for sure.
    let (late, _) = start(&redis, limits).await;
    assert_eq!(restore(&late, &saved, Some(&seen)).await, Err(RestoreError::LogTrimmed));
    assert_eq!(restore(&a, &saved, Some(&seen)).await, Err(RestoreError::LogTrimmed));
    // The broker restarts without its data: a new epoch, and the old offsets are refused.
    let last = offset_of(node_a.got().last().unwrap());
    assert!(restore(&a, &saved, Some(&last)).await.is_ok());
    // (The server runs without persistence.)
    redis.restart();
    let before = node_a.got().len();
    // The writer and the reader find the new epoch after their connection's error.
    let ok = eventually(Duration::from_secs(10), || {
        emit(&a, &["r"], 400);
        std::future::ready(node_a.got().len() > before)
    })
    .await;
    assert!(ok, "delivered in the new log");
    assert!(!node_a.got()[before].contains(&last[..last.find('-').unwrap()]), "a new epoch");
    assert_eq!(restore(&a, &saved, Some(&last)).await, Err(RestoreError::UnknownOffset));
    assert_eq!(restore(&a, &saved, Some("garbage")).await, Err(RestoreError::UnknownOffset));
}

#[tokio::test]
async fn a_session_expires_after_the_window_and_is_bounded_when_read() {
    let redis = RedisServer::start();
    let limits = RecoveryLimits {
        max_disconnection_duration: Duration::from_millis(300),
        ..RecoveryLimits::default()
    };
    let (a, _) = start(&redis, limits).await;
    let saved = session("pid-3", &["r"], a.head());
    a.save(saved.clone()).await.expect("saved");
    let mut conn = redis.client().await;
    let gone = eventually(Duration::from_secs(5), || {
        let mut conn = conn.clone();
        async move {
            !redis::cmd("EXISTS").arg("sb#/#session#pid-3").query_async::<bool>(&mut conn).await.unwrap()
        }
    })
    .await;
    assert!(gone, "the session key expires with the window");
    assert_eq!(a.take("pid-3").await, Err(RestoreError::UnknownSession));
    // A connected socket's session is saved again before it expires.
    a.save_live(&saved);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(a.take("pid-3").await, Ok(saved.clone()));
    // Taken by a restore (here or on another node) while this node still counts it connected:
    // the keep-alive only extends expiries, so it never brings the session back.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(a.take("pid-3").await, Err(RestoreError::UnknownSession), "restored twice");
    a.forget("pid-3");
    // A value past the bound is deleted unread.
    let huge = vec![b'x'; super::MAX_SESSION_BYTES + 1];
    let () = redis::cmd("SET").arg("sb#/#session#pid-4").arg(huge).query_async(&mut conn).await.unwrap();
    assert_eq!(a.take("pid-4").await, Err(RestoreError::UnknownSession));
}

#[tokio::test]
async fn an_idle_reader_keeps_reading_and_delivers_at_once() {
    let redis = RedisServer::start();
    let (a, node_a) = start(&redis, RecoveryLimits::default()).await;
    let mut reading = a.shared.reading.subscribe();
    // Idle for more than two blocking reads: the reader must not take its own block for a lost
    // connection (and come back after a backoff).
    let dropped = tokio::time::timeout(Duration::from_millis(2_300), reading.wait_for(|r| !*r)).await;
    assert!(dropped.is_err(), "the reader stopped reading while idle");
    let sent = tokio::time::Instant::now();
    emit(&a, &["r"], 1);
    delivered(&node_a, 1).await;
    assert!(sent.elapsed() < Duration::from_millis(250), "delivered after {:?}", sent.elapsed());
}
