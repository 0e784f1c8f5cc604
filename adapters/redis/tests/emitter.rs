//! `@socket.io/redis-emitter` messages on a native Switchboard cluster ([`EmitterBridge`]) over a
//! real `redis-server`: two native nodes, messages published as the emitter 5.1 writes them,
//! applied once to each node's own sockets (never re-broadcast over the cluster), and what a
//! hostile publisher gets: drops, counted. The real emitter against real nodes is in
//! server/e2e/test/emitter.test.js.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_adapter::cluster::{ClusterAdapterFactory, ClusterConfig, Inbound};
use switchboard_adapter::{
    Adapter, AdapterFactory, BroadcastOptions, BroadcastPacket, InboundHandler, Room, ServerSideAck,
};
use switchboard_protocol::socketio::{Value, encode_event};
use switchboard_redis::node_format::{EmitterBridge, EmitterStats, NodeFormatConfig, notepack};
use switchboard_redis::{RedisConfig, RedisTransport};
use switchboard_testkit::contract::TestSocket;
use switchboard_testkit::{RedisServer, eventually};

const WAIT: Duration = Duration::from_secs(5);
/// How long a socket that must not get something is watched.
const QUIET: Duration = Duration::from_millis(300);

/// One native node (cluster adapter over Redis), its factory behind the bridge unless `bridge` is
/// false, serving `/`.
struct Node {
    bridge: Option<EmitterBridge>,
    adapter: Arc<dyn Adapter>,
    _transport: RedisTransport,
}

async fn node(server: &RedisServer, id: &str, bridge: bool) -> Node {
    let inbound = Inbound::new();
    let transport = RedisTransport::connect(&[server.url()], "sbtest", inbound.clone(), RedisConfig::new())
        .await
        .unwrap();
    let config = ClusterConfig::new(id)
        .unwrap()
        .with_heartbeat_interval(Duration::from_millis(100))
        .with_heartbeat_timeout(Duration::from_millis(400));
    let native = ClusterAdapterFactory::new(config, Arc::new(transport.clone()), &inbound).unwrap();
    tokio::time::timeout(WAIT, transport.settle()).await.unwrap();
    let (factory, bridge): (Arc<dyn AdapterFactory>, _) = match bridge {
        true => {
            let b = EmitterBridge::open(
                &server.url(),
                Arc::new(native),
                &NodeFormatConfig::new(),
                RedisConfig::new(),
            )
            .await
            .unwrap();
            (Arc::new(b.clone()), Some(b))
        }
        false => (Arc::new(native), None),
    };
    let adapter = factory.create("/");
    tokio::time::timeout(WAIT, transport.settle()).await.unwrap();
    Node { bridge, adapter, _transport: transport }
}

/// Two bridged nodes that see each other.
async fn two_nodes(server: &RedisServer) -> (Node, Node) {
    let (a, b) = (node(server, "a", true).await, node(server, "b", true).await);
    assert!(eventually(WAIT, || async { a.adapter.server_count().await.ok() == Some(2) }).await);
    (a, b)
}

/// A broadcast as `@socket.io/redis-emitter` 5.1 writes it (uid `emitter`; its key order).
fn emitted(nsp: &str, data: Vec<Value>, rooms: &[&str], except: &[&str]) -> Vec<u8> {
    let names = |list: &[&str]| Value::Array(list.iter().map(|r| Value::from(*r)).collect());
    notepack::encode(&Value::Array(vec![
        Value::from("emitter"),
        Value::Object(vec![
            ("type".into(), Value::from(2u64)),
            ("data".into(), Value::Array(data)),
            ("nsp".into(), Value::from(nsp)),
        ]),
        Value::Object(vec![
            ("rooms".into(), names(rooms)),
            ("flags".into(), Value::Object(Vec::new())),
            ("except".into(), names(except)),
        ]),
    ]))
}

/// `emitter.to("r").emit("ev", "one")`; how many subscribers Redis reached.
async fn emit_one_to_r(server: &RedisServer) -> usize {
    let message = emitted("/", vec![Value::from("ev"), Value::from("one")], &["r"], &[]);
    server.publish("socket.io#/#r#", &message).await
}

/// What a socket receives for event `name` with the one string argument `tag`.
fn text(name: &str, tag: &str) -> String {
    format!(r#"2["{name}","{tag}"]"#)
}

fn member(adapter: &Arc<dyn Adapter>, id: &str, rooms: &[&str]) -> Arc<TestSocket> {
    let socket = TestSocket::new(id, "/");
    adapter.add_socket(socket.clone());
    let rooms: Vec<Room> = rooms.iter().map(|r| Room::from(*r)).collect();
    drop(adapter.join(&id.into(), &rooms));
    socket
}

fn stats(node: &Node) -> EmitterStats {
    node.bridge.as_ref().unwrap().stats()
}

#[derive(Default)]
struct Listener {
    got: Mutex<Vec<(String, Vec<Value>, bool)>>,
}

impl InboundHandler for Listener {
    fn on_server_side_emit(&self, event: String, args: Vec<Value>, ack: Option<ServerSideAck>) {
        self.got.lock().unwrap().push((event, args, ack.is_some()));
    }
}

#[tokio::test]
async fn emitter_broadcasts_reach_each_nodes_own_members_once() {
    let server = RedisServer::start();
    let (a, b) = two_nodes(&server).await;
    let (sa, sb) = (member(&a.adapter, "sa", &["r"]), member(&b.adapter, "sb", &["r", "x"]));
    let (outside, excluded) = (member(&b.adapter, "so", &[]), member(&a.adapter, "sx", &["r", "x"]));

    // One room: the room's channel, as the emitter publishes it.
    assert_eq!(emit_one_to_r(&server).await, 2, "subscribers");
    assert!(
        eventually(WAIT, || async { sa.count(&text("ev", "one")) == 1 && sb.count(&text("ev", "one")) == 1 })
            .await
    );
    // Rooms with except, binary: the namespace's channel.
    let binary = vec![Value::from("ev"), Value::from("two"), Value::Binary(vec![4, 2].into())];
    server.publish("socket.io#/#", &emitted("/", binary, &["r"], &["x"])).await;
    assert!(eventually(WAIT, || async { sa.deliveries().len() == 2 }).await);
    let last = sa.deliveries().pop().unwrap().text;
    assert_eq!(last, r#"51-["ev","two",{"_placeholder":true,"num":0}]"#, "binary as an attachment");
    tokio::time::sleep(QUIET).await;
    // Once each (every node hears the emitter: none passes it on), members only, except applied.
    assert_eq!(sa.count(&text("ev", "one")), 1);
    assert_eq!(sb.deliveries().len(), 1, "except ignored, or a node re-broadcast it");
    assert_eq!(outside.deliveries().len() + excluded.count(&text("ev", "one")), 1, "only sx is in r");
    assert_eq!((stats(&a).applied, stats(&b).applied), (2, 2));
}

#[tokio::test]
async fn emitter_requests_join_leave_disconnect_and_reach_server_side_listeners() {
    let server = RedisServer::start();
    let (a, b) = two_nodes(&server).await;
    let (sa, sb) = (member(&a.adapter, "sa", &["vip"]), member(&b.adapter, "sb", &["vip"]));
    let other = member(&b.adapter, "so", &[]);
    let listener = Arc::new(Listener::default());
    b.adapter.set_inbound_handler(listener.clone());

    let request = |json: &str| json.as_bytes().to_vec();
    server
        .publish(
            "socket.io-request#/#",
            &request(r#"{"type":2,"opts":{"rooms":["vip"],"except":[]},"rooms":["joined"]}"#),
        )
        .await;
    assert!(
        eventually(WAIT, || async { b.adapter.local().is_member(&"sb".into(), &Room::from("joined")) }).await
    );
    // Joined through the native adapter: its own cross-node broadcasts to the room reach sb.
    let packet = BroadcastPacket::new(encode_event("/", "native", &[Value::from("n")], None));
    let opts = BroadcastOptions { rooms: vec![Room::from("joined")], ..Default::default() };
    assert!(
        eventually(WAIT, || async {
            a.adapter.broadcast(packet.clone(), opts.clone()).await.unwrap();
            sb.count(&text("native", "n")) > 0
        })
        .await,
        "the native cluster routes the emitter-joined room"
    );
    assert!(sa.count(&text("native", "n")) > 0, "sa joined too");
    assert!(!b.adapter.local().is_member(&"so".into(), &Room::from("joined")));

    server
        .publish(
            "socket.io-request#/#",
            &request(r#"{"type":3,"opts":{"rooms":["vip"],"except":[]},"rooms":["joined"]}"#),
        )
        .await;
    assert!(
        eventually(WAIT, || async { !b.adapter.local().is_member(&"sb".into(), &Room::from("joined")) })
            .await
    );

    server.publish("socket.io-request#/#", &request(r#"{"type":6,"data":["tick",7]}"#)).await;
    assert!(eventually(WAIT, || async { !listener.got.lock().unwrap().is_empty() }).await);
    assert_eq!(*listener.got.lock().unwrap(), vec![("tick".to_owned(), vec![Value::from(7u64)], false)]);

    server
        .publish(
            "socket.io-request#/#",
            &request(r#"{"type":4,"opts":{"rooms":["vip"],"except":[]},"close":true}"#),
        )
        .await;
    assert!(eventually(WAIT, || async { sa.disconnects() == [true] && sb.disconnects() == [true] }).await);
    assert!(other.disconnects().is_empty());
}

#[tokio::test]
async fn hostile_or_foreign_messages_are_dropped_and_counted() {
    let server = RedisServer::start();
    let a = node(&server, "a", true).await;
    let s = member(&a.adapter, "s", &[]);

    server.publish("socket.io#/#", b"not a message").await;
    server.publish("socket.io-request#/#", br#"{"type":2,"opts":{"rooms":[]},"rooms":"nope"}"#).await;
    // A packet for another namespace than its channel's.
    server.publish("socket.io#/#", &emitted("/other", vec![Value::from("x")], &[], &[])).await;
    let mut deep = b"[".repeat(10_000);
    deep.extend(b"]".repeat(10_000));
    server.publish("socket.io-request#/#", &deep).await;
    let many: Vec<String> = (0..1_001).map(|i| format!("\"r{i}\"")).collect();
    let too_many = format!(r#"{{"type":2,"opts":{{"rooms":[]}},"rooms":[{}]}}"#, many.join(","));
    server.publish("socket.io-request#/#", too_many.as_bytes()).await;
    server.publish("socket.io#/#", &vec![0x90; 5 << 20]).await;
    assert!(eventually(WAIT, || async { stats(&a).malformed == 6 }).await, "{:?}", stats(&a));

    // Namespaces this node does not serve; a Node server's request an emitter never sends.
    server.publish("socket.io#/admin#", &emitted("/admin", vec![Value::from("x")], &[], &[])).await;
    server.publish("socket.io-request#/admin#", br#"{"type":6,"data":["tick"]}"#).await;
    server.publish("socket.io-request#/#", br#"{"type":5,"requestId":"q","opts":{"rooms":[]}}"#).await;
    assert!(
        eventually(WAIT, || async { (stats(&a).unroutable, stats(&a).unsupported) == (2, 1) }).await,
        "{:?}",
        stats(&a)
    );
    assert_eq!(stats(&a).applied, 0);
    assert!(s.deliveries().is_empty() && s.disconnects().is_empty());
    assert_eq!(stats(&a).received, 9);
}

#[tokio::test]
async fn without_the_bridge_nothing_arrives() {
    let server = RedisServer::start();
    let plain = node(&server, "p", false).await;
    let s = member(&plain.adapter, "s", &["r"]);
    assert_eq!(emit_one_to_r(&server).await, 0, "subscribers");
    server.publish("socket.io-request#/#", br#"{"type":4,"opts":{"rooms":["r"]},"close":true}"#).await;
    tokio::time::sleep(QUIET).await;
    assert!(s.deliveries().is_empty() && s.disconnects().is_empty());
}
