//! The Node format (`switchboard_redis::node_format`) over a real `redis-server`: two Switchboard
//! nodes speaking `@socket.io/redis-adapter`'s format to each other (server count by NUMSUB,
//! broadcasts, server-side emits, requests), and what a hostile publisher on the broker can and
//! cannot do. Interop with real Node servers is in server/e2e/test/node-interop.test.js.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use switchboard_adapter::{
    Adapter, AdapterError, AdapterFactory, BroadcastOptions, BroadcastPacket, InboundHandler, PartialReplies,
    Room, ServerSideAck,
};
use switchboard_protocol::socketio::{Value, encode_event};
use switchboard_redis::RedisConfig;
use switchboard_redis::node_format::{
    NodeFormatAdapter, NodeFormatConfig, NodeFormatFactory, message, notepack,
};
use switchboard_testkit::contract::TestSocket;
use switchboard_testkit::{RedisServer, eventually};

const WAIT: Duration = Duration::from_secs(5);

async fn node_at(url: &str) -> (NodeFormatFactory, Arc<NodeFormatAdapter>) {
    let factory =
        NodeFormatFactory::connect(url, "a", NodeFormatConfig::new(), RedisConfig::new()).await.unwrap();
    let adapter = factory.create_subscribed("/").await.unwrap();
    (factory, adapter)
}

async fn node(
    server: &RedisServer,
    id: &str,
    config: NodeFormatConfig,
) -> (NodeFormatFactory, Arc<NodeFormatAdapter>) {
    let factory = NodeFormatFactory::connect(&server.url(), id, config, RedisConfig::new()).await.unwrap();
    let adapter = factory.create_subscribed("/").await.unwrap();
    (factory, adapter)
}

fn packet(event: &str) -> BroadcastPacket {
    BroadcastPacket::new(encode_event("/", event, &[Value::from(1u64)], None))
}

fn to(room: &str) -> BroadcastOptions {
    BroadcastOptions { rooms: vec![Room::from(room)], ..Default::default() }
}

/// A broadcast as `@socket.io/redis-emitter` 5.1 writes it: uid `emitter`, and its own key order
/// in the options (`rooms, flags, except`).
fn emitter_message(nsp: &str, data: &[Value], rooms: &[&str], volatile: bool) -> Vec<u8> {
    let flags = match volatile {
        true => vec![("volatile".to_owned(), Value::Bool(true))],
        false => Vec::new(),
    };
    notepack::encode(&Value::Array(vec![
        Value::from("emitter"),
        Value::Object(vec![
            ("type".into(), Value::from(2u64)),
            ("data".into(), Value::Array(data.to_vec())),
            ("nsp".into(), Value::from(nsp)),
        ]),
        Value::Object(vec![
            ("rooms".into(), Value::Array(rooms.iter().map(|r| Value::from(*r)).collect())),
            ("flags".into(), Value::Object(flags)),
            ("except".into(), Value::Array(Vec::new())),
        ]),
    ]))
}

/// Records server-side emits; answers those with an ack with `"pong"`.
#[derive(Default)]
struct Listener {
    got: Mutex<Vec<(String, Vec<Value>)>>,
}

impl InboundHandler for Listener {
    fn on_server_side_emit(&self, event: String, args: Vec<Value>, ack: Option<ServerSideAck>) {
        self.got.lock().unwrap().push((event, args));
        if let Some(ack) = ack {
            ack.send(vec![Value::from("pong")]);
        }
    }
}

#[tokio::test]
async fn two_nodes_count_each_other_and_broadcast_to_rooms() {
    let server = RedisServer::start();
    let (_fa, a) = node(&server, "a", NodeFormatConfig::new()).await;
    let (_fb, b) = node(&server, "b", NodeFormatConfig::new()).await;
    assert_eq!(a.server_count().await.unwrap(), 2);
    assert_eq!(b.server_count().await.unwrap(), 2);
    assert_eq!(server.subscribers("socket.io-request#/#").await, 2, "one SUBSCRIBE per node");

    let (sa, sb, other) =
        (TestSocket::new("sa", "/"), TestSocket::new("sb", "/"), TestSocket::new("sc", "/"));
    a.add_socket(sa.clone());
    b.add_socket(sb.clone());
    b.add_socket(other.clone());
    a.join(&"sa".into(), &[Room::from("r")]);
    b.join(&"sb".into(), &[Room::from("r")]);
    assert_eq!(a.broadcast(packet("hello"), to("r")).await.unwrap(), 1);
    assert!(
        eventually(WAIT, || async { sb.count(r#"2["hello",1]"#) == 1 }).await,
        "the other node's member got it"
    );
    // Nothing more arrives: the sender drops its own echo, the non-member is skipped.
    let after = packet("after");
    a.broadcast(after, to("r")).await.unwrap();
    assert!(eventually(WAIT, || async { sb.count(r#"2["after",1]"#) == 1 }).await);
    assert_eq!((sa.count(r#"2["hello",1]"#), other.count(r#"2["hello",1]"#)), (1, 0));
}

#[tokio::test]
async fn requests_between_nodes_are_answered() {
    let server = RedisServer::start();
    let (_fa, a) = node(&server, "a", NodeFormatConfig::new()).await;
    let (_fb, b) = node(&server, "b", NodeFormatConfig::new()).await;
    let listener = Arc::new(Listener::default());
    b.set_inbound_handler(listener.clone());
    let sb = TestSocket::with_data("sb", "/", serde_json::json!({"n": 1}));
    b.add_socket(sb.clone());

    a.server_side_emit("news".into(), vec![Value::from(7u64)], None).await.unwrap();
    assert!(eventually(WAIT, || async { listener.got.lock().unwrap().len() == 1 }).await);
    let answers = a.server_side_emit("ping".into(), Vec::new(), Some(WAIT)).await.unwrap();
    assert_eq!(answers, vec![vec![Value::from("pong")]]);

    let found = a.fetch_sockets(BroadcastOptions::default()).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].id.as_str(), &found[0].data), ("sb", &serde_json::json!({"n": 1})));

    // An emitter's serverSideEmit (captured from @socket.io/redis-emitter 5.1) reaches the listener.
    server.publish("socket.io-request#/#", br#"{"uid":"emitter","type":6,"data":["from-emitter",2]}"#).await;
    assert!(
        eventually(WAIT, || async {
            listener
                .got
                .lock()
                .unwrap()
                .iter()
                .any(|(e, args)| e == "from-emitter" && args == &[Value::from(2u64)])
        })
        .await
    );

    a.add_sockets(BroadcastOptions::default(), vec![Room::from("joined")]).await.unwrap();
    assert!(eventually(WAIT, || async { b.local().is_member(&"sb".into(), &Room::from("joined")) }).await);
    a.disconnect_sockets(to("joined"), true).await.unwrap();
    assert!(eventually(WAIT, || async { sb.disconnects() == [true] }).await);
}

#[tokio::test]
async fn requests_are_bounded_and_end_by_their_timeout() {
    let server = RedisServer::start();
    let config = NodeFormatConfig::new()
        .with_max_pending_requests(1)
        .with_requests_timeout(Duration::from_millis(300));
    let (_fa, a) = node(&server, "a", config).await;
    a.add_socket(TestSocket::new("sa", "/"));
    // A peer that subscribes (so it is counted) and never answers.
    let _silent = server.subscribe("socket.io-request#/#").await;
    assert_eq!(a.server_count().await.unwrap(), 2);
    let (first, second) = tokio::join!(
        a.fetch_sockets(BroadcastOptions::default()),
        a.fetch_sockets(BroadcastOptions::default())
    );
    let outcomes = [first, second];
    assert!(
        outcomes.iter().any(|r| matches!(r, Err(AdapterError::TooManyRequests { limit: 1 }))),
        "{outcomes:?}"
    );
    let timed_out = outcomes.into_iter().find_map(|r| match r {
        Err(AdapterError::Timeout { missing, partial: PartialReplies::Sockets(local) }) => {
            Some((missing, local))
        }
        _ => None,
    });
    let (missing, local) = timed_out.expect("one fetch timed out");
    assert_eq!((missing, local.len()), (1, 1));
    // The slot is free again.
    assert!(matches!(a.fetch_sockets(BroadcastOptions::default()).await, Err(AdapterError::Timeout { .. })));
}

#[tokio::test]
async fn hostile_messages_are_counted_and_dropped() {
    let server = RedisServer::start();
    let config = NodeFormatConfig::new().with_max_message_size(2048).with_room_limits(4, 16);
    let (factory, a) = node(&server, "a", config).await;
    let sa = TestSocket::new("sa", "/");
    a.add_socket(sa.clone());
    let rooms = |n: usize| (0..n).map(|i| format!("\"r{i}\"")).collect::<Vec<_>>().join(",");
    let deep = [vec![0x93, 0xa1, b'x'], vec![0x91; 40], vec![0xc0, 0x80]].concat();
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("socket.io#/#", b"garbage".to_vec()),
        ("socket.io#/#", deep),
        ("socket.io#/#", vec![0xdd, 0xff, 0xff, 0xff, 0xff]),
        ("socket.io-request#/#", b"{not json".to_vec()),
        ("socket.io-request#/#", format!(r#"{{"type":2,"opts":{{}},"rooms":[{}]}}"#, rooms(5)).into_bytes()),
        (
            "socket.io-request#/#",
            format!(r#"{{"type":2,"opts":{{}},"rooms":["{}"]}}"#, "x".repeat(17)).into_bytes(),
        ),
        ("socket.io-request#/#", br#"{"type":99}"#.to_vec()),
        ("socket.io-request#/#", vec![b'{'; 4096]),
        ("socket.io-response#/#", b"\xc1".to_vec()),
    ];
    for (channel, payload) in &hostile {
        assert_eq!(server.publish(channel, payload).await, 1, "{channel}");
    }
    let n = hostile.len() as u64;
    assert!(eventually(WAIT, || async { factory.stats().malformed == n }).await, "{:?}", factory.stats());
    assert!(sa.deliveries().is_empty() && sa.disconnects().is_empty());
    // Still serving: an emitter's broadcast arrives.
    let emitter = emitter_message("/", &["ok".into()], &[], false);
    server.publish("socket.io#/#", &emitter).await;
    assert!(eventually(WAIT, || async { sa.count(r#"2["ok"]"#) == 1 }).await, "{:?}", sa.deliveries());
}

#[tokio::test]
async fn an_emitter_reaches_other_namespaces_and_room_channels() {
    let server = RedisServer::start();
    let (factory, _root) = node(&server, "a", NodeFormatConfig::new()).await;
    let admin = factory.create_subscribed("/admin").await.unwrap();
    let (member, outsider) = (TestSocket::new("m", "/admin"), TestSocket::new("o", "/admin"));
    admin.add_socket(member.clone());
    admin.add_socket(outsider.clone());
    admin.join(&"m".into(), &[Room::from("room1")]);
    // `emitter.of("/admin").to("room1").volatile.emit("hello", 2)`, on the room's channel.
    let message = emitter_message("/admin", &["hello".into(), Value::from(2u64)], &["room1"], true);
    assert_eq!(server.publish("socket.io#/admin#room1#", &message).await, 1);
    let text = r#"2/admin,["hello",2]"#;
    assert!(eventually(WAIT, || async { member.count(text) == 1 }).await, "{:?}", member.deliveries());
    assert!(member.deliveries_of(text)[0].volatile);
    assert_eq!(outsider.count(text), 0);
    // The same on the channel of a room with no member here is dropped unread.
    server.publish("socket.io#/admin#nobody#", &message).await;
    server.publish("socket.io#/admin#", b"after").await;
    assert!(eventually(WAIT, || async { factory.stats().malformed == 1 }).await);
    assert_eq!(member.count(text), 1);
}

#[tokio::test]
async fn a_namespace_is_counted_while_it_lives_and_never_twice() {
    let server = RedisServer::start();
    let (factory, _root) = node(&server, "a", NodeFormatConfig::new()).await;
    let made = AdapterFactory::create(&factory, "/brief");
    drop(made);
    // Changes apply in order: once a later namespace is subscribed, the earlier one is gone.
    let _kept = factory.create_subscribed("/kept").await.unwrap();
    assert_eq!(server.subscribers("socket.io-request#/brief#").await, 0);
    assert_eq!(server.subscribers("socket.io-request#/kept#").await, 1);
    assert_eq!(server.subscribers("socket.io-request#/#").await, 1);
}

#[tokio::test]
async fn a_lost_redis_is_noticed_and_the_subscriptions_come_back() {
    let mut server = RedisServer::start();
    let (factory, a) = node(&server, "a", NodeFormatConfig::new()).await;
    let sa = TestSocket::new("sa", "/");
    a.add_socket(sa.clone());
    assert!(factory.is_connected());
    server.kill();
    assert!(eventually(WAIT, || async { !factory.is_connected() }).await, "a dead Redis went unnoticed");
    assert!(matches!(
        a.fetch_sockets(BroadcastOptions::default()).await,
        Err(AdapterError::BrokerUnavailable(_))
    ));
    server.restart();
    assert!(eventually(Duration::from_secs(10), || async { factory.is_connected() }).await);
    // Resubscribed by itself: counted by Node again, and hearing broadcasts.
    assert!(eventually(WAIT, || async { server.subscribers("socket.io-request#/#").await == 1 }).await);
    let message = emitter_message("/", &["back".into()], &[], false);
    assert!(
        eventually(WAIT, || async {
            server.publish("socket.io#/#", &message).await;
            sa.count(r#"2["back"]"#) > 0
        })
        .await
    );
}

#[tokio::test]
async fn acked_broadcasts_being_relayed_are_bounded() {
    let server = RedisServer::start();
    let config = NodeFormatConfig::new().with_max_pending_requests(1);
    let (factory, a) = node(&server, "a", config).await;
    let sa = TestSocket::new("sa", "/");
    a.add_socket(sa.clone());
    let mut responses = server.subscribe("socket.io-response#/#").await;
    let all = BroadcastOptions::default();
    for id in ["first", "second"] {
        let request = message::encode_ack_broadcast("peer", id, "/", "q", &[], &all, 60_000);
        server.publish("socket.io-request#/#", &request).await;
    }
    let mut counts = Vec::new();
    while counts.len() < 2 {
        let Some(bytes) = responses.next(WAIT).await else { break };
        counts.push(serde_json::from_slice::<serde_json::Value>(&bytes).unwrap());
    }
    let count_of = |id: &str| counts.iter().find(|c| c["requestId"] == id).map(|c| c["clientCount"].clone());
    assert_eq!(count_of("first"), Some(serde_json::json!(1)), "{counts:?}");
    assert_eq!(count_of("second"), Some(serde_json::json!(0)), "refused: the one relay slot is taken");
    assert_eq!(factory.stats().malformed, 1);
    assert_eq!(sa.pending_acks().len(), 1);
    // The socket answers: its ack reaches the requester, and the slot is free again.
    assert_eq!(sa.answer_acks(&[Value::from("yes")]), 1);
    let ack = responses.next(WAIT).await.expect("the relayed ack");
    assert_eq!(ack, Bytes::from(message::encode_ack("first", &Value::from("yes"))));
    let third = message::encode_ack_broadcast("peer", "third", "/", "q", &[], &all, 60_000);
    assert!(
        eventually(WAIT, || async {
            server.publish("socket.io-request#/#", &third).await;
            sa.pending_acks().len() == 1
        })
        .await
    );
}

#[tokio::test]
async fn a_node_started_without_redis_joins_when_it_appears() {
    let mut server = RedisServer::start();
    server.kill();
    let url = server.url();
    assert!(
        NodeFormatFactory::connect(&url, "a", NodeFormatConfig::new(), RedisConfig::new()).await.is_err()
    );
    let factory =
        NodeFormatFactory::open(&url, "a", NodeFormatConfig::new(), RedisConfig::new()).await.unwrap();
    assert!(!factory.is_connected());
    let root = AdapterFactory::create(&factory, "/");
    let sa = TestSocket::new("sa", "/");
    root.add_socket(sa.clone());
    // Local delivery goes on meanwhile.
    assert_eq!(root.broadcast(packet("local"), BroadcastOptions::default()).await.unwrap(), 1);
    server.restart();
    assert!(eventually(Duration::from_secs(10), || async { factory.is_connected() }).await);
    assert!(eventually(WAIT, || async { server.subscribers("socket.io-request#/#").await == 1 }).await);
    let message = emitter_message("/", &["joined".into()], &[], false);
    assert!(
        eventually(WAIT, || async {
            server.publish("socket.io#/#", &message).await;
            sa.count(r#"2["joined"]"#) > 0
        })
        .await
    );
}

#[tokio::test]
async fn a_refused_password_fails_at_start_up() {
    let server =
        RedisServer::start_with(switchboard_testkit::Redis::default().with_password("right-password"));
    let port = server.port();
    let wrong = format!("redis://:wrong-password@127.0.0.1:{port}");
    let refused = NodeFormatFactory::open(&wrong, "a", NodeFormatConfig::new(), RedisConfig::new()).await;
    assert!(matches!(refused, Err(switchboard_redis::ConnectError::Refused { .. })), "{refused:?}");
    let right = format!("redis://:right-password@127.0.0.1:{port}");
    let (_factory, a) = node_at(&right).await;
    assert_eq!(a.server_count().await.unwrap(), 1);
}
