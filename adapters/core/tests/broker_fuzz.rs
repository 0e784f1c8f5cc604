//! The broker is not trusted: real cluster messages, captured from two nodes talking over the
//! in-process bus, are mutated (truncated, bit-flipped, huge counts and lengths, other versions
//! and kinds, forged senders) and replayed into a node, which must stay up and healthy; with a
//! cluster secret, every forgery is rejected and counted. Plus the forged values that used to
//! crash a node or blow up its memory, one test each. Deterministic: a seeded generator, a few
//! thousand cases per test.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchboard_adapter::cluster::{
    ClusterAdapter, ClusterAdapterFactory, ClusterConfig, ClusterStats, Inbound, Message, NodeId, Route,
    Target, Transport, codec,
};
use switchboard_adapter::{
    Adapter, BroadcastOptions, BroadcastPacket, InboundHandler, LocalSocket, Room, ServerSideAck,
};
use switchboard_protocol::socketio::{Value, encode_event};
use switchboard_testkit::contract::TestSocket;
use switchboard_testkit::mutate::{Rng, forged_id, forged_messages, mutate};
use switchboard_testkit::{Bus, BusTransport, eventually};

const SECRET: &str = "a shared secret of the cluster under test";

fn config(id: &str) -> ClusterConfig {
    ClusterConfig::new(id)
        .unwrap()
        .with_heartbeat_interval(Duration::from_millis(100))
        .with_heartbeat_timeout(Duration::from_millis(400))
        .with_request_timeout(Duration::from_millis(500))
}

/// A node on `bus` whose inbound handle the test keeps, to replay frames into it directly.
struct Victim {
    factory: ClusterAdapterFactory,
    adapter: Arc<ClusterAdapter>,
    inbound: Inbound,
    socket: Arc<TestSocket>,
    _transport: Arc<BusTransport>,
}

fn victim(bus: &Bus, config: ClusterConfig) -> Victim {
    let (transport, inbound) = bus.connect();
    let factory = ClusterAdapterFactory::new(config, transport.clone(), &inbound).unwrap();
    let adapter = factory.create_cluster_adapter("/");
    let socket = TestSocket::new(format!("{}.{}", factory.node_id(), "v".repeat(22)), "/");
    adapter.add_socket(socket.clone());
    adapter.join(socket.id(), &[Room::from("room")]);
    Victim { factory, adapter, inbound, socket, _transport: transport }
}

/// Answers server-side emits, so the capture holds their answers too.
struct Echo;

impl InboundHandler for Echo {
    fn on_server_side_emit(&self, _event: String, args: Vec<Value>, ack: Option<ServerSideAck>) {
        if let Some(ack) = ack {
            ack.send(args);
        }
    }
}

async fn wait_for_count(adapters: &[&Arc<ClusterAdapter>], n: usize) {
    let ok = eventually(Duration::from_secs(3), || async {
        for a in adapters {
            if a.server_count().await.unwrap() != n {
                return false;
            }
        }
        true
    })
    .await;
    assert!(ok, "the nodes never counted {n} servers");
}

fn packet(text: &str) -> BroadcastPacket {
    BroadcastPacket::new(encode_event("/", "e", &[Value::from(text)], None))
}

fn packet_text(label: &str) -> String {
    String::from_utf8_lossy(&packet(label).packet().text).into_owned()
}

/// Every kind of message, as two nodes (one of them `victim`) send them: heartbeats, addresses,
/// broadcasts (plain, to rooms, binary, with acks and their answers), room operations, requests
/// and their answers; `third` (configured as the others) comes and goes. Returns the frames
/// published meanwhile.
async fn capture(
    bus: &Bus,
    victim: &Victim,
    peer: &Arc<ClusterAdapter>,
    third: ClusterConfig,
) -> Vec<(Route, Bytes)> {
    peer.set_inbound_handler(Arc::new(Echo));
    victim.adapter.set_inbound_handler(Arc::new(Echo));
    let peer_socket = TestSocket::new(format!("{}.{}", peer.node_id(), "p".repeat(22)), "/");
    peer.add_socket(peer_socket.clone());
    peer.join(peer_socket.id(), &[Room::from("room")]);
    bus.settle().await;
    bus.record();
    let binary = encode_event("/", "bin", &[Value::Binary(Bytes::from_static(b"\x00\x01\x02"))], None);
    peer.broadcast(BroadcastPacket::new(binary), BroadcastOptions::default()).await.unwrap();
    let to_room = BroadcastOptions { rooms: vec!["room".into(), "other".into()], ..Default::default() };
    peer.broadcast(packet("captured"), to_room.clone()).await.unwrap();
    let to_sid = BroadcastOptions { rooms: vec![victim.socket.id().room()], ..Default::default() };
    peer.broadcast(packet("to-sid"), to_sid).await.unwrap();
    let acked = tokio::spawn({
        let peer = peer.clone();
        async move {
            let p = BroadcastPacket::new(encode_event("/", "ack", &[], Some(7)));
            let stream =
                peer.broadcast_with_ack(p, 7, BroadcastOptions::default(), Duration::from_millis(300));
            stream.await.unwrap().collect().await
        }
    });
    let answered =
        eventually(Duration::from_secs(2), || std::future::ready(!victim.socket.pending_acks().is_empty()))
            .await;
    assert!(answered, "the victim's socket never got the ack broadcast");
    victim.socket.answer_acks(&[Value::from("ok")]);
    peer_socket.answer_acks(&[Value::from("ok")]);
    acked.await.unwrap();
    peer.add_sockets(to_room.clone(), vec!["joined".into()]).await.unwrap();
    peer.del_sockets(to_room.clone(), vec!["joined".into()]).await.unwrap();
    peer.fetch_sockets(BroadcastOptions::default()).await.unwrap();
    peer.server_side_emit("hello".into(), vec![Value::from(1)], Some(Duration::from_secs(1))).await.unwrap();
    peer.server_side_emit("fire".into(), vec![], None).await.unwrap();
    let nobody = BroadcastOptions { rooms: vec!["nobody".into()], ..Default::default() };
    peer.disconnect_sockets(nobody, false).await.unwrap();
    // A heartbeat round (with addresses) and a goodbye, from a short-lived third node.
    let (third, _t) = bus.node(third.with_address("10.0.0.3:3000")).unwrap();
    let third_adapter = third.create_cluster_adapter("/");
    bus.settle().await;
    drop(third_adapter);
    bus.settle().await;
    let frames = bus.recorded();
    let kinds: std::collections::BTreeSet<u8> = frames.iter().map(|(_, f)| f[3] & 0x7f).collect();
    // Heartbeat, initial, closing, address, broadcast, with ack, count, ack, join, leave,
    // disconnect, fetch, fetch answer, emit, emit answer: all of them.
    assert_eq!(kinds.len(), 15, "kinds captured: {kinds:?}");
    frames
}

/// Replays `cases` mutated frames (and forged messages) into `v`; returns how many were injected.
fn replay(v: &Victim, frames: &[(Route, Bytes)], cases: usize, seed: u64, key: Option<&codec::Key>) -> usize {
    let mut rng = Rng::new(seed);
    let mut injected = 0;
    for _ in 0..cases {
        let (_, frame) = &frames[rng.below(frames.len())];
        let mutated = mutate(frame, &mut rng, key);
        if mutated != *frame {
            v.inbound.receive(mutated);
            injected += 1;
        }
    }
    for _ in 0..20 {
        for message in forged_messages(&mut rng) {
            let sender = if rng.below(2) == 0 { "node-b".to_owned() } else { forged_id(&mut rng) };
            let frame = codec::encode(&sender, "/", &message).unwrap();
            v.inbound.receive(frame);
            injected += 1;
        }
    }
    injected
}

/// The victim still does its job with the honest peer: a broadcast and a room operation from
/// the peer reach its socket, and its requests complete once the made-up peers have expired.
async fn assert_healthy(bus: &Bus, v: &Victim, peer: &Arc<ClusterAdapter>, label: &str) {
    peer.broadcast(packet(label), BroadcastOptions { rooms: vec!["room".into()], ..Default::default() })
        .await
        .unwrap();
    let text = packet_text(label);
    let delivered =
        eventually(Duration::from_secs(2), || std::future::ready(v.socket.count(&text) == 1)).await;
    assert!(delivered, "{label}: the peer's broadcast did not reach the victim's socket once");
    wait_for_count(&[&v.adapter, peer], 2).await;
    let sockets = v.adapter.fetch_sockets(BroadcastOptions::default()).await.unwrap();
    assert_eq!(sockets.len(), 2, "{label}: fetchSockets sees both nodes' sockets");
    bus.settle().await;
    assert_eq!(v.adapter.pending_requests(), 0, "{label}: requests left in flight");
    assert!(v.adapter.peers().len() <= 1, "{label}: made-up peers stayed: {:?}", v.adapter.peers());
}

fn total_drops(s: &ClusterStats) -> u64 {
    s.malformed + s.unsupported + s.forged + s.unroutable + s.echoes + s.late_replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_frames_leave_a_node_without_a_secret_up_and_healthy() {
    let bus = Bus::new();
    let v = victim(&bus, config("node-a"));
    let (peer_factory, _t) = bus.node(config("node-b")).unwrap();
    let peer = peer_factory.create_cluster_adapter("/");
    wait_for_count(&[&v.adapter, &peer], 2).await;
    let frames = capture(&bus, &v, &peer, config("third")).await;
    let before = v.factory.stats();
    let injected = replay(&v, &frames, 4_000, 0x5eed_0001, None) as u64;
    let after = v.factory.stats();
    // The honest peers' heartbeats arrive meanwhile too.
    assert!(after.received - before.received >= injected);
    assert!(
        total_drops(&after) - total_drops(&before) >= injected / 2,
        "most mutations are dropped and counted: {after:?}"
    );
    assert!(after.malformed > before.malformed && after.unsupported > before.unsupported);
    // Bit flips in a room name make other valid joins; the forged ones past the limits are refused.
    let rooms = v.adapter.local().rooms_of(v.socket.id());
    assert!(rooms.len() < 100, "forged socketsJoin got through: {} rooms", rooms.len());
    assert!(rooms.iter().all(|r| r.as_str().len() <= 256));
    assert_healthy(&bus, &v, &peer, "after the fuzz").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_secret_every_forgery_is_rejected_and_counted() {
    let bus = Bus::new();
    let v = victim(&bus, config("node-a").with_secret(SECRET));
    let (peer_factory, _t) = bus.node(config("node-b").with_secret(SECRET)).unwrap();
    let peer = peer_factory.create_cluster_adapter("/");
    wait_for_count(&[&v.adapter, &peer], 2).await;
    let frames = capture(&bus, &v, &peer, config("third").with_secret(SECRET)).await;
    let key = codec::Key::new(SECRET.as_bytes());
    assert!(frames.iter().all(|(_, f)| codec::open(f, Some(&key)).is_ok()), "the nodes seal every frame");
    bus.settle().await;
    let (before, deliveries) = (v.factory.stats(), v.socket.deliveries().len());
    let injected = replay(&v, &frames, 4_000, 0x5eed_0002, Some(&key)) as u64;
    let after = v.factory.stats();
    // Every mutated frame is a forgery: counted as such and nothing else, acted on never.
    assert_eq!(after.forged - before.forged, injected, "{after:?}");
    // (Echoes of its own heartbeats go on meanwhile.)
    let unchanged =
        |s: &ClusterStats| (s.malformed, s.unsupported, s.unroutable, s.broadcasts_received, s.late_replies);
    assert_eq!(unchanged(&after), unchanged(&before));
    assert_eq!(v.socket.deliveries().len(), deliveries, "no forgery reached the socket");
    assert_healthy(&bus, &v, &peer, "after the forgeries").await;
}

#[tokio::test]
async fn nodes_with_and_without_a_secret_do_not_talk() {
    let bus = Bus::new();
    let (with, _t1) = bus.node(config("with").with_secret(SECRET)).unwrap();
    let (without, _t2) = bus.node(config("without")).unwrap();
    let a = with.create_cluster_adapter("/");
    let b = without.create_cluster_adapter("/");
    let heard = eventually(Duration::from_secs(2), || {
        std::future::ready(with.stats().forged > 0 && without.stats().forged > 0)
    })
    .await;
    assert!(
        heard,
        "each counts the other's heartbeats as forged: {:?} / {:?}",
        with.stats(),
        without.stats()
    );
    assert_eq!((a.server_count().await.unwrap(), b.server_count().await.unwrap()), (1, 1));
}

// ---------------------------------------------------------------------------------------------
// The forged values that used to take a node down: a client count that aborted the emitter
// (`capacity overflow`), a socketsJoin that made each socket join 100,000 rooms.

/// A node `victim` emitting with acks while a silent peer stands in membership; `forge` is then
/// published to it in that peer's name.
async fn ack_broadcast_with_a_forged_answer(forge: Message) -> (ClusterStats, usize, usize) {
    let bus = Bus::new();
    let (factory, _t0) = bus.node(config("node-a")).unwrap();
    let a = factory.create_cluster_adapter("/");
    let (peer, t1) = bus.node(config("node-b")).unwrap();
    let b = peer.create_cluster_adapter("/");
    wait_for_count(&[&a, &b], 2).await;
    // node-b stays in node-a's membership for a moment but hears nothing: only the forger answers.
    bus.isolate(t1.index(), true);
    let (intruder, _) = bus.connect();
    let emit = tokio::spawn({
        let a = a.clone();
        async move {
            let p = BroadcastPacket::new(encode_event("/", "e", &[], Some(1)));
            let stream = a.broadcast_with_ack(p, 1, BroadcastOptions::default(), Duration::from_millis(300));
            let stream = stream.await.unwrap();
            let expected = stream.expected;
            let (answers, _missing) = stream.collect().await;
            (expected, answers.len())
        }
    });
    let opened = eventually(Duration::from_secs(2), || std::future::ready(a.pending_requests() == 1)).await;
    assert!(opened, "the ack broadcast never went out");
    // Request ids start at 1 in each namespace.
    let frame = codec::encode("node-b", "/", &forge).unwrap();
    intruder.publish(&Route::Node(NodeId::from("node-a")), frame).unwrap();
    let (expected, answers) = emit.await.expect("the emitter survived the forged answer");
    (factory.stats(), expected, answers)
}

#[tokio::test]
async fn a_forged_client_count_does_not_size_the_answers() {
    let forged = Message::BroadcastClientCount { request_id: 1, count: u64::MAX };
    let (stats, expected, answers) = ack_broadcast_with_a_forged_answer(forged).await;
    assert_eq!((expected, answers), (0, 0), "the forged count is not believed");
    assert_eq!(stats.malformed, 1, "and it is counted: {stats:?}");
}

#[tokio::test]
async fn a_peer_cannot_make_sockets_join_rooms_past_the_limits() {
    let bus = Bus::new();
    let v = victim(&bus, config("node-a"));
    let (intruder, _) = bus.connect();
    let join = |rooms: Vec<Room>| {
        let target = Target { opts: BroadcastOptions::default(), part: Target::WHOLE };
        codec::encode("node-b", "/", &Message::SocketsJoin { target, rooms }).unwrap()
    };
    let many: Vec<Room> = (0..100_000).map(|i| Room::from(format!("r{i}"))).collect();
    for frame in [join(many), join(vec![Room::from("r".repeat(5_000))])] {
        intruder.publish(&Route::Namespace("/".into()), frame).unwrap();
    }
    bus.settle().await;
    let rooms = v.adapter.local().rooms_of(v.socket.id());
    assert!(rooms.len() < 5, "the socket joined {} rooms", rooms.len());
    assert!(
        v.adapter.subscribed_rooms().len() < 5,
        "{} room subscriptions",
        v.adapter.subscribed_rooms().len()
    );
    assert_eq!(v.factory.stats().malformed, 2);
    // Within the limits, a peer's socketsJoin still works.
    intruder.publish(&Route::Namespace("/".into()), join(vec![Room::from("fine")])).unwrap();
    bus.settle().await;
    assert!(v.adapter.local().rooms_of(v.socket.id()).contains(&Room::from("fine")));
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_dropped_unread_and_not_sent() {
    let bus = Bus::new();
    let v = victim(&bus, config("node-a"));
    let (intruder, _) = bus.connect();
    let big = |len: usize| {
        let packet = encode_event("/", "e", &[Value::from("x".repeat(len))], None);
        let target = Target { opts: BroadcastOptions::default(), part: Target::WHOLE };
        codec::encode("node-b", "/", &Message::Broadcast { target, packet }).unwrap()
    };
    let over = big(5 << 20);
    assert!(over.len() > switchboard_adapter::cluster::DEFAULT_MAX_MESSAGE_SIZE);
    intruder.publish(&Route::Namespace("/".into()), over).unwrap();
    intruder.publish(&Route::Namespace("/".into()), big(1 << 20)).unwrap();
    bus.settle().await;
    let stats = v.factory.stats();
    assert_eq!((stats.malformed, stats.broadcasts_received), (1, 1), "{stats:?}");
    assert_eq!(v.socket.deliveries().len(), 1, "only the message within the limit was delivered");
    // A node does not send what its peers would drop.
    let (small, _t) = bus.node(config("node-c").with_max_message_size(4096)).unwrap();
    let adapter = small.create_cluster_adapter("/");
    adapter.broadcast(packet(&"y".repeat(5000)), BroadcastOptions::default()).await.unwrap();
    assert_eq!(small.stats().publish_failed, 1);
}
