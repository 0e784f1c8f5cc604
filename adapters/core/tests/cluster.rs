//! The cluster adapter over the in-process bus: the adapter contract on one and three nodes (one
//! test per case), plus what the contract cannot see — interest routing (through the counters), membership, bounded requests,
//! server-side emits, binary payloads and broker faults.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use switchboard_adapter::cluster::{
    ClusterAdapter, ClusterAdapterFactory, ClusterConfig, ClusterError, Inbound, Message, Route, Target,
    codec,
};
use switchboard_adapter::{
    AckResponse, Adapter, AdapterError, BroadcastOptions, BroadcastPacket, InboundHandler, LocalSocket,
    PartialReplies, Room, ServerSideAck, SocketId, SocketInfo,
};
use switchboard_protocol::socketio::{Value, encode_event};
use switchboard_testkit::contract::{self, Cluster, TestSocket};
use switchboard_testkit::{Bus, BusTransport, PendingRequests, contract_tests, eventually};
use tokio::sync::mpsc;
use tokio::time::Instant;

struct Nodes {
    bus: Bus,
    factories: Vec<ClusterAdapterFactory>,
    transports: Vec<Arc<BusTransport>>,
    adapters: Vec<Arc<ClusterAdapter>>,
}

fn config(i: usize) -> ClusterConfig {
    ClusterConfig::new(format!("node{i}")).unwrap()
}

/// `n` nodes on one bus serving `/`, each knowing the others.
async fn nodes(n: usize, tune: impl Fn(ClusterConfig) -> ClusterConfig) -> Nodes {
    let bus = Bus::new();
    let mut out = Nodes { bus: bus.clone(), factories: vec![], transports: vec![], adapters: vec![] };
    for i in 0..n {
        let (factory, transport) = bus.node(tune(config(i))).unwrap();
        out.adapters.push(factory.create_cluster_adapter("/"));
        out.factories.push(factory);
        out.transports.push(transport);
    }
    out.wait_for_count(n).await;
    out
}

impl Nodes {
    fn dyn_adapters(&self) -> Vec<Arc<dyn Adapter>> {
        self.adapters.iter().map(|a| a.clone() as Arc<dyn Adapter>).collect()
    }

    fn contract(&self) -> Cluster {
        let bus = self.bus.clone();
        Cluster::new(self.dyn_adapters()).with_quiet(Duration::from_millis(10)).with_settle(move || {
            let bus = bus.clone();
            Box::pin(async move { bus.settle().await })
        })
    }

    /// Waits until every node counts `n` servers.
    async fn wait_for_count(&self, n: usize) {
        self.wait_for_count_on(&(0..self.adapters.len()).collect::<Vec<_>>(), n).await;
    }

    async fn wait_for_count_on(&self, which: &[usize], n: usize) {
        let ok = eventually(Duration::from_secs(2), || async {
            for &i in which {
                if self.adapters[i].server_count().await.unwrap() != n {
                    return false;
                }
            }
            true
        })
        .await;
        let counts: Vec<usize> = which.iter().map(|&i| self.adapters[i].peers().len() + 1).collect();
        assert!(ok, "nodes {which:?} count {counts:?} servers, expected {n}");
    }

    fn broadcasts_received(&self) -> Vec<u64> {
        self.factories.iter().map(|f| f.stats().broadcasts_received).collect()
    }
}

fn to(rooms: &[&str]) -> BroadcastOptions {
    BroadcastOptions { rooms: rooms.iter().map(|&r| Room::from(r)).collect(), ..Default::default() }
}

fn packet(text: &str) -> BroadcastPacket {
    BroadcastPacket::new(encode_event("/", "e", &[Value::from(text)], None))
}

/// The packet text a [`TestSocket`] records for `packet(label)`.
fn text(label: &str) -> String {
    String::from_utf8_lossy(&packet(label).packet().text).into_owned()
}

/// A server-shaped socket id of `node`: `<node>.<22 base64url chars>`.
fn sid(node: &str, tag: char) -> SocketId {
    SocketId::from(format!("{node}.{}", tag.to_string().repeat(22)))
}

// ---------------------------------------------------------------------------------------------
// The contract, one test per case.

/// Three nodes on one bus. After each case, once the bus is idle: no socket, room subscription or
/// pending request is left on any node, and no message was dropped or refused.
async fn three_nodes() -> Cluster {
    three_nodes_with(|c| c).await
}

/// The same, every message sealed with a cluster secret.
async fn three_signed_nodes() -> Cluster {
    three_nodes_with(|c| c.with_secret("the secret these three nodes share")).await
}

async fn three_nodes_with(tune: impl Fn(ClusterConfig) -> ClusterConfig) -> Cluster {
    let nodes = Arc::new(nodes(3, tune).await);
    nodes.contract().with_check(move || {
        let nodes = nodes.clone();
        Box::pin(async move {
            nodes.bus.settle().await;
            contract::assert_left_nothing(&nodes.adapters).await;
            for (i, f) in nodes.factories.iter().enumerate() {
                let stats = f.stats();
                let dropped = (
                    stats.malformed,
                    stats.unsupported,
                    stats.unroutable,
                    stats.publish_failed,
                    stats.forged,
                );
                assert_eq!(dropped, (0, 0, 0, 0, 0), "node {i}: {stats:?}");
            }
        })
    })
}

/// One cluster node alone on a bus.
async fn one_node() -> Cluster {
    let nodes = nodes(1, |c| c).await;
    nodes.contract().with_resource(nodes)
}

contract_tests!(contract_on_three_nodes, three_nodes);
contract_tests!(contract_on_three_nodes_multi_thread, three_nodes, multi_thread);
contract_tests!(contract_on_three_signed_nodes, three_signed_nodes);
contract_tests!(contract_on_one_cluster_node, one_node);

// ---------------------------------------------------------------------------------------------
// Interest routing, asserted through the counters.

#[tokio::test]
async fn a_room_emit_is_not_received_by_a_node_without_members() {
    let nodes = nodes(3, |c| c).await;
    let a = TestSocket::new("a", "/");
    let b = TestSocket::new("b", "/");
    let c = TestSocket::new("c", "/");
    for (i, s) in [&a, &b, &c].into_iter().enumerate() {
        nodes.adapters[i].add_socket(s.clone());
    }
    nodes.adapters[0].join(a.id(), &["r".into()]);
    nodes.adapters[1].join(b.id(), &["r".into()]);
    nodes.adapters[2].join(c.id(), &["other".into()]);
    let r = Route::Room("/".into(), "r".into());
    assert_eq!(nodes.bus.subscribers(&r), 2, "nodes 0 and 1 subscribe r");

    let before = nodes.broadcasts_received();
    nodes.adapters[0].broadcast(packet("to-r"), to(&["r"])).await.unwrap();
    nodes.bus.settle().await;
    let after = nodes.broadcasts_received();
    assert_eq!(after[1] - before[1], 1, "node 1 has a member");
    assert_eq!(after[2] - before[2], 0, "node 2 has no member in r: it must not even receive the emit");
    assert_eq!(after[0] - before[0], 0, "the emitter ignores its own echo");
    assert_eq!(a.deliveries().len() + b.deliveries().len(), 2);
    assert!(c.deliveries().is_empty());

    // The last member leaving unsubscribes; a socket's own id room costs nothing for server ids.
    nodes.adapters[1].leave(b.id(), &"r".into());
    assert_eq!(nodes.bus.subscribers(&r), 1);
    let before = nodes.broadcasts_received();
    nodes.adapters[0].broadcast(packet("to-r-again"), to(&["r"])).await.unwrap();
    nodes.bus.settle().await;
    assert_eq!(nodes.broadcasts_received(), before, "nobody else subscribes r now");
}

#[tokio::test]
async fn an_emit_to_a_socket_id_goes_to_its_node_only() {
    let nodes = nodes(3, |c| c).await;
    let id = sid("node2", 'x');
    let target = TestSocket::new(id.clone(), "/");
    nodes.adapters[2].add_socket(target.clone());
    assert!(nodes.adapters[2].subscribed_rooms().is_empty(), "a server socket id needs no subscription");
    assert_eq!(nodes.bus.subscribers(&Route::Room("/".into(), id.room())), 0);

    let before = nodes.broadcasts_received();
    nodes.adapters[0].broadcast(packet("private"), to(&[id.as_str()])).await.unwrap();
    nodes.bus.settle().await;
    let after = nodes.broadcasts_received();
    assert_eq!((after[1] - before[1], after[2] - before[2]), (0, 1), "only the owner node receives it");
    assert_eq!(target.deliveries().len(), 1);

    // Several ids of one node and a room, in one emit: one copy per route, each socket once.
    let other = TestSocket::new(sid("node2", 'y'), "/");
    nodes.adapters[2].add_socket(other.clone());
    nodes.adapters[2].join(other.id(), &["r".into()]);
    let before = nodes.broadcasts_received();
    let published = nodes.factories[0].stats().published;
    nodes.adapters[0].broadcast(packet("mixed"), to(&[id.as_str(), other.id().as_str(), "r"])).await.unwrap();
    nodes.bus.settle().await;
    assert_eq!(nodes.factories[0].stats().published - published, 2, "node route + room route");
    let after = nodes.broadcasts_received();
    assert_eq!((after[1] - before[1], after[2] - before[2]), (0, 2));
    assert_eq!((target.deliveries().len(), other.deliveries().len()), (2, 1), "each socket once");

    // An emit to a local server socket id publishes nothing.
    let published = nodes.factories[2].stats().published;
    nodes.adapters[2].broadcast(packet("local-id"), to(&[id.as_str()])).await.unwrap();
    assert_eq!(nodes.factories[2].stats().published, published);
    assert_eq!(target.deliveries().len(), 3);
}

#[tokio::test]
async fn an_emit_to_many_rooms_is_one_namespace_wide_copy() {
    let nodes = nodes(3, |c| c).await;
    let rooms: Vec<String> = (0..12).map(|i| format!("room{i}")).collect();
    let a = TestSocket::new("a", "/");
    let b = TestSocket::new("b", "/");
    nodes.adapters[1].add_socket(a.clone());
    nodes.adapters[1].join(a.id(), &[rooms[0].as_str().into(), rooms[11].as_str().into()]);
    nodes.adapters[2].add_socket(b.clone());
    nodes.adapters[2].join(b.id(), &[rooms[5].as_str().into()]);
    let names: Vec<&str> = rooms.iter().map(String::as_str).collect();
    let published = nodes.factories[0].stats().published;
    let before = nodes.broadcasts_received();
    nodes.adapters[0].broadcast(packet("many"), to(&names)).await.unwrap();
    nodes.bus.settle().await;
    assert_eq!(nodes.factories[0].stats().published - published, 1, "one copy, not one per room");
    let after = nodes.broadcasts_received();
    assert_eq!((after[1] - before[1], after[2] - before[2]), (1, 1));
    assert_eq!((a.deliveries().len(), b.deliveries().len()), (1, 1), "each socket once");
    nodes.adapters[1].remove_socket(a.id());
    nodes.adapters[2].remove_socket(b.id());
}

#[tokio::test]
async fn a_namespace_emit_reaches_every_node_once() {
    let nodes = nodes(3, |c| c).await;
    let before = nodes.broadcasts_received();
    nodes.adapters[1].broadcast(packet("all"), BroadcastOptions::default()).await.unwrap();
    nodes.bus.settle().await;
    let after = nodes.broadcasts_received();
    assert_eq!([after[0] - before[0], after[1] - before[1], after[2] - before[2]], [1, 0, 1]);
}

#[tokio::test]
async fn binary_broadcasts_and_acks_cross_nodes_intact() {
    struct Recorder {
        id: SocketId,
        got: Mutex<Vec<BroadcastPacket>>,
        answer: Vec<Value>,
    }
    impl LocalSocket for Recorder {
        fn id(&self) -> &SocketId {
            &self.id
        }
        fn deliver(&self, packet: &BroadcastPacket, _: bool) {
            self.got.lock().unwrap().push(packet.clone());
        }
        fn deliver_with_ack(
            &self,
            packet: &BroadcastPacket,
            _: u64,
            sink: mpsc::UnboundedSender<AckResponse>,
        ) {
            self.got.lock().unwrap().push(packet.clone());
            let _ = sink.send(AckResponse { socket: self.id.clone(), args: self.answer.clone() });
        }
        fn info(&self) -> SocketInfo {
            SocketInfo {
                id: self.id.clone(),
                nsp: "/".into(),
                rooms: vec![],
                handshake: serde_json::Value::Null,
                data: serde_json::Value::Null,
            }
        }
        fn disconnect(&self, _: bool) {}
    }

    let nodes = nodes(2, |c| c).await;
    let blob = Bytes::from_static(b"\x00\xffbinary\x01");
    let answer = vec![Value::from("ok"), Value::Binary(Bytes::from_static(b"\xde\xad"))];
    let remote = Arc::new(Recorder { id: "remote".into(), got: Mutex::new(vec![]), answer: answer.clone() });
    nodes.adapters[1].add_socket(remote.clone());

    let sent = encode_event("/", "file", &[Value::from("name"), Value::Binary(blob.clone())], None);
    nodes.adapters[0]
        .broadcast(BroadcastPacket::new(sent.clone()), BroadcastOptions::default())
        .await
        .unwrap();
    nodes.bus.settle().await;
    let got = remote.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].packet(), &sent, "text and attachments arrive as encoded");
    assert_eq!(got[0].frames(), BroadcastPacket::new(sent).frames());

    let with_ack = BroadcastPacket::new(encode_event("/", "q", &[Value::Binary(blob)], Some(5)));
    let stream = nodes.adapters[0]
        .broadcast_with_ack(with_ack, 5, BroadcastOptions::default(), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(stream.expected, 1);
    let (responses, missing) = stream.collect().await;
    assert_eq!(missing, 0);
    assert_eq!(responses, vec![AckResponse { socket: "remote".into(), args: answer }]);
    nodes.bus.settle().await;
    assert_eq!(
        nodes.adapters[0].pending_requests(),
        0,
        "all acks in: the request is gone before its deadline"
    );
    nodes.adapters[1].remove_socket(&"remote".into());
}

// ---------------------------------------------------------------------------------------------
// Membership.

fn fast(c: ClusterConfig) -> ClusterConfig {
    c.with_heartbeat_interval(Duration::from_millis(40)).with_heartbeat_timeout(Duration::from_millis(160))
}

fn slow(c: ClusterConfig) -> ClusterConfig {
    c.with_heartbeat_interval(Duration::from_secs(30)).with_heartbeat_timeout(Duration::from_secs(60))
}

#[tokio::test]
async fn a_new_node_learns_its_peers_without_waiting_for_a_heartbeat() {
    // Heartbeats every 30 s: only the initial heartbeat and its answers can explain a fast count.
    let mut nodes = nodes(3, slow).await;
    let started = Instant::now();
    let (factory, transport) = nodes.bus.node(slow(config(3))).unwrap();
    nodes.adapters.push(factory.create_cluster_adapter("/"));
    nodes.factories.push(factory);
    nodes.transports.push(transport);
    nodes.wait_for_count(4).await;
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_silent_node_is_dropped_within_the_timeout_and_comes_back() {
    let nodes = nodes(3, fast).await;
    let index = nodes.transports[2].index();
    let started = Instant::now();
    nodes.bus.isolate(index, true);
    nodes.wait_for_count_on(&[0, 1], 2).await;
    let took = started.elapsed();
    // Last heartbeat at most one interval before the cut, then the timeout, then at most a check
    // period (40 ms), plus slack for a loaded machine.
    assert!(took <= Duration::from_millis(160 + 40 + 150), "dropped after {took:?}");
    assert!(took >= Duration::from_millis(100), "dropped too early ({took:?})");
    nodes.bus.isolate(index, false);
    nodes.wait_for_count(3).await;
}

#[tokio::test]
async fn peers_learn_each_other_s_forwarding_address_and_forget_it() {
    // Node i announces 10.0.0.i:3000, except node 2, which takes no forwarded requests.
    let nodes = nodes(3, |c| {
        let id = c.node_id().to_string();
        match id.as_str() {
            "node2" => fast(c),
            _ => fast(c).with_address(format!("10.0.0.{}:3000", &id[4..])),
        }
    })
    .await;
    let f = &nodes.factories;
    assert_eq!(f[1].peer_address("node0").as_deref(), Some("10.0.0.0:3000"));
    assert_eq!(f[2].peer_address("node1").as_deref(), Some("10.0.0.1:3000"));
    assert_eq!(f[0].peer_address("node2"), None, "no address announced");
    assert_eq!(f[0].peer_address("node9"), None, "unknown node");
    // A silent node loses its address within the timeout; a closing one at once.
    let index = nodes.transports[1].index();
    nodes.bus.isolate(index, true);
    let gone = eventually(Duration::from_secs(2), || async { f[0].peer_address("node1").is_none() }).await;
    assert!(gone, "an isolated node keeps its address");
    f[2].close();
    nodes.bus.settle().await;
    nodes.factories[0].close();
    nodes.bus.settle().await;
    assert_eq!(f[2].peer_address("node0"), None, "a closed node keeps its address");
}

#[tokio::test]
async fn a_closing_node_is_dropped_at_once() {
    let nodes = nodes(3, slow).await;
    nodes.factories[2].close();
    nodes.bus.settle().await;
    for i in [0, 1] {
        assert_eq!(nodes.adapters[i].server_count().await, Ok(2), "node {i}");
    }
}

#[tokio::test]
async fn a_closed_node_stays_out_of_the_cluster() {
    let mut nodes = nodes(2, slow).await;
    nodes.factories[1].close();
    nodes.bus.settle().await;
    assert_eq!(nodes.adapters[0].server_count().await, Ok(1));
    // A node joining later asks everyone for an answer: the closed node must not give one.
    let (factory, transport) = nodes.bus.node(slow(config(2))).unwrap();
    nodes.adapters.push(factory.create_cluster_adapter("/"));
    nodes.factories.push(factory);
    nodes.transports.push(transport);
    nodes.wait_for_count_on(&[0, 2], 2).await;
    nodes.bus.settle().await;
    assert_eq!(nodes.adapters[2].peers(), vec!["node0".into()], "the closed node1 answered");
    // Nor does a reconnect make it announce itself again.
    nodes.bus.set_down(true);
    nodes.bus.set_down(false);
    nodes.bus.settle().await;
    for i in [0, 2] {
        assert_eq!(nodes.adapters[i].server_count().await, Ok(2), "node {i}");
    }
}

#[tokio::test]
async fn a_dropped_adapter_says_goodbye_and_unsubscribes() {
    let mut nodes = nodes(2, slow).await;
    let s = TestSocket::new("s", "/");
    nodes.adapters[1].add_socket(s.clone());
    nodes.adapters[1].join(s.id(), &["r".into()]);
    let adapter = nodes.adapters.pop().unwrap();
    drop(adapter);
    nodes.bus.settle().await;
    assert_eq!(nodes.adapters[0].server_count().await, Ok(1));
    assert_eq!(nodes.bus.subscribers(&Route::Room("/".into(), "r".into())), 0);
    assert_eq!(nodes.bus.subscribers(&Route::Namespace("/".into())), 1);
    assert!(nodes.factories[1].adapter("/").is_none());
}

#[tokio::test]
async fn namespaces_have_their_own_membership() {
    let nodes = nodes(2, slow).await;
    let chat0 = nodes.factories[0].create_cluster_adapter("/chat");
    nodes.bus.settle().await;
    assert_eq!(chat0.server_count().await, Ok(1), "node 1 does not serve /chat");
    let chat1 = nodes.factories[1].create_cluster_adapter("/chat");
    nodes.bus.settle().await;
    assert_eq!(chat0.server_count().await, Ok(2));
    assert_eq!(chat1.server_count().await, Ok(2));
    // A fetch on /chat only asks /chat's peers, and sees only /chat's sockets.
    chat1.add_socket(TestSocket::new("c1", "/chat"));
    nodes.adapters[1].add_socket(TestSocket::new("root1", "/"));
    let got = chat0.fetch_sockets(BroadcastOptions::default()).await.unwrap();
    assert_eq!(got.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["c1"]);
    assert_eq!(got[0].nsp, "/chat");
}

// ---------------------------------------------------------------------------------------------
// Requests.

#[tokio::test]
async fn a_request_stops_waiting_for_a_node_that_leaves_membership() {
    let nodes = nodes(3, |c| fast(c).with_request_timeout(Duration::from_secs(10))).await;
    nodes.adapters[1].add_socket(TestSocket::new("one", "/"));
    nodes.adapters[2].add_socket(TestSocket::new("two", "/"));
    nodes.bus.isolate(nodes.transports[2].index(), true);
    let started = Instant::now();
    let got = nodes.adapters[0].fetch_sockets(BroadcastOptions::default()).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "waited {:?}", started.elapsed());
    assert_eq!(got.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["one"]);
    assert_eq!(nodes.adapters[0].pending_requests(), 0);
}

#[tokio::test]
async fn a_request_ends_at_its_timeout_with_a_clear_error_and_no_leak() {
    let nodes = nodes(3, |c| slow(c).with_request_timeout(Duration::from_millis(150))).await;
    nodes.bus.isolate(nodes.transports[2].index(), true);
    let started = Instant::now();
    let got = nodes.adapters[0].fetch_sockets(BroadcastOptions::default()).await;
    let took = started.elapsed();
    assert_eq!(got, Err(AdapterError::Timeout { missing: 1, partial: PartialReplies::Sockets(vec![]) }));
    assert!(took >= Duration::from_millis(150) && took < Duration::from_millis(600), "took {took:?}");
    assert_eq!(nodes.adapters[0].pending_requests(), 0);

    let got = nodes.adapters[0].server_side_emit("x".into(), vec![], Some(Duration::from_millis(100))).await;
    assert_eq!(
        got,
        Err(AdapterError::Timeout { missing: 2, partial: PartialReplies::Answers(vec![]) }),
        "no handler anywhere: nobody answers"
    );
    assert_eq!(nodes.adapters[0].pending_requests(), 0);

    // A cancelled request (the caller's future dropped) leaves nothing behind either.
    let fetch = nodes.adapters[0].fetch_sockets(BroadcastOptions::default());
    assert!(tokio::time::timeout(Duration::from_millis(20), fetch).await.is_err());
    assert_eq!(nodes.adapters[0].pending_requests(), 0);
}

#[tokio::test]
async fn a_timed_out_request_keeps_the_answers_that_arrived() {
    let nodes = nodes(3, |c| slow(c).with_request_timeout(Duration::from_millis(150))).await;
    let handlers: Vec<Arc<Handler>> =
        (0..3).map(|i| Arc::new(Handler { node: format!("node{i}"), seen: Mutex::new(vec![]) })).collect();
    for (a, h) in nodes.adapters.iter().zip(&handlers) {
        a.set_inbound_handler(h.clone());
    }
    nodes.adapters[0].add_socket(TestSocket::new("zero", "/"));
    nodes.adapters[1].add_socket(TestSocket::new("one", "/"));
    nodes.adapters[2].add_socket(TestSocket::new("two", "/"));
    nodes.bus.isolate(nodes.transports[2].index(), true);

    let got = nodes.adapters[0].fetch_sockets(BroadcastOptions::default()).await;
    let Err(AdapterError::Timeout { missing: 1, partial: PartialReplies::Sockets(sockets) }) = got else {
        panic!("{got:?}")
    };
    let ids: Vec<&str> = sockets.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["zero", "one"], "this node's sockets, then those of the node that answered");

    let got = nodes.adapters[0]
        .server_side_emit("ask".into(), vec![Value::from(7)], Some(Duration::from_millis(150)))
        .await;
    assert_eq!(
        got,
        Err(AdapterError::Timeout {
            missing: 1,
            partial: PartialReplies::Answers(vec![vec![Value::from("node1"), Value::from(7)]]),
        })
    );
    assert_eq!(nodes.adapters[0].pending_requests(), 0);
}

#[tokio::test]
async fn requests_are_bounded() {
    let nodes =
        nodes(2, |c| slow(c).with_request_timeout(Duration::from_millis(200)).with_max_pending_requests(2))
            .await;
    nodes.bus.isolate(nodes.transports[1].index(), true);
    let node = &nodes.adapters[0];
    let all = BroadcastOptions::default();
    let (a, b, c) = tokio::join!(node.fetch_sockets(all.clone()), node.fetch_sockets(all.clone()), async {
        tokio::task::yield_now().await;
        node.fetch_sockets(all.clone()).await
    });
    let timed_out = Err(AdapterError::Timeout { missing: 1, partial: PartialReplies::Sockets(vec![]) });
    assert_eq!(a, timed_out);
    assert_eq!(b, timed_out);
    assert_eq!(c, Err(AdapterError::TooManyRequests { limit: 2 }));
    assert_eq!(node.pending_requests(), 0);
    nodes.bus.isolate(nodes.transports[1].index(), false);
    assert_eq!(node.fetch_sockets(all).await, Ok(vec![]), "capacity is free again");
}

// ---------------------------------------------------------------------------------------------
// Server-side emits.

struct Handler {
    node: String,
    seen: Mutex<Vec<(String, Vec<Value>)>>,
}

impl InboundHandler for Handler {
    fn on_server_side_emit(&self, event: String, args: Vec<Value>, ack: Option<ServerSideAck>) {
        self.seen.lock().unwrap().push((event, args.clone()));
        if let Some(ack) = ack {
            let mut answer = vec![Value::from(self.node.as_str())];
            answer.extend(args);
            ack.send(answer);
        }
    }
}

#[tokio::test]
async fn server_side_emits_reach_the_other_nodes_handlers() {
    let nodes = nodes(3, |c| c).await;
    let handlers: Vec<Arc<Handler>> =
        (0..3).map(|i| Arc::new(Handler { node: format!("node{i}"), seen: Mutex::new(vec![]) })).collect();
    for (a, h) in nodes.adapters.iter().zip(&handlers) {
        a.set_inbound_handler(h.clone());
    }
    let blob = Value::Binary(Bytes::from_static(b"\x01\x02"));

    let got = nodes.adapters[0].server_side_emit("ping".into(), vec![blob.clone()], None).await;
    assert_eq!(got, Ok(vec![]));
    nodes.bus.settle().await;
    assert!(handlers[0].seen.lock().unwrap().is_empty(), "not to the emitting node");
    for h in &handlers[1..] {
        assert_eq!(*h.seen.lock().unwrap(), [("ping".to_owned(), vec![blob.clone()])]);
    }

    let mut answers = nodes.adapters[0]
        .server_side_emit("ask".into(), vec![blob.clone()], Some(Duration::from_secs(2)))
        .await
        .unwrap();
    answers.sort_by_key(|a| a[0].as_str().map(str::to_owned));
    assert_eq!(answers, [vec![Value::from("node1"), blob.clone()], vec![Value::from("node2"), blob]]);
    assert_eq!(nodes.adapters[0].pending_requests(), 0);
}

#[tokio::test]
async fn server_side_emit_alone_returns_at_once() {
    let nodes = nodes(1, |c| c).await;
    let started = Instant::now();
    let got = nodes.adapters[0].server_side_emit("x".into(), vec![], Some(Duration::from_secs(5))).await;
    assert_eq!(got, Ok(vec![]));
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// Records every server-side emit and emits `e(label)` to the room it names (`[room, label]`).
struct Relay {
    adapter: std::sync::Weak<ClusterAdapter>,
    seen: Mutex<usize>,
}

impl InboundHandler for Relay {
    fn on_server_side_emit(&self, _event: String, args: Vec<Value>, _ack: Option<ServerSideAck>) {
        *self.seen.lock().unwrap() += 1;
        if let (Some(adapter), [Value::String(room), Value::String(label)]) =
            (self.adapter.upgrade(), &args[..])
        {
            let opts = to(&[room.as_str()]);
            let packet = packet(label);
            tokio::spawn(async move { adapter.broadcast(packet, opts).await });
        }
    }
}

/// A broker slow to confirm SUBSCRIBE: a join (and a second one into the same room), a local
/// socketsJoin and a server-side emit all wait for the room's subscription, so nothing built on
/// them misses a remote emit; once confirmed, remote emits reach the members.
#[tokio::test]
async fn joins_and_server_side_emits_wait_for_the_room_subscription() {
    let nodes = nodes(2, |c| c).await;
    let (a, b) = (TestSocket::new("a", "/"), TestSocket::new("b", "/"));
    nodes.adapters[0].add_socket(a.clone());
    nodes.adapters[0].add_socket(b.clone());
    let relay = Arc::new(Relay { adapter: Arc::downgrade(&nodes.adapters[1]), seen: Mutex::new(0) });
    nodes.adapters[1].set_inbound_handler(relay.clone());
    nodes.bus.settle().await;

    nodes.bus.hold_subscriptions(true);
    let first = nodes.adapters[0].join(a.id(), &["r".into()]);
    let second = nodes.adapters[0].join(b.id(), &["r".into()]);
    assert!(!first.is_confirmed() && !second.is_confirmed(), "the room subscription is not live yet");
    let joined = nodes.adapters[0].add_sockets(to(&["a"]), vec!["s".into()]);
    let emitted = nodes.adapters[0].server_side_emit(
        "relay".into(),
        vec![Value::from("r"), Value::from("relayed")],
        None,
    );
    let (waiters, held) =
        tokio::join!(async { tokio::join!(first.wait(), second.wait(), joined, emitted) }, async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let seen = *relay.seen.lock().unwrap();
            // A remote emit now would be lost: that is what the waiters are kept from.
            nodes.adapters[1].broadcast(packet("too early"), to(&["r"])).await.unwrap();
            nodes.bus.settle().await;
            let lost = a.count(&text("too early"));
            nodes.bus.hold_subscriptions(false);
            (seen, lost)
        });
    assert_eq!(held, (0, 0), "nothing reached the peer while the subscription was held");
    let (first, second, joined, emitted) = waiters;
    assert!(first && second, "confirmed once the broker confirms, not at the limit");
    assert_eq!(joined, Ok(()));
    assert_eq!(emitted, Ok(vec![]));
    nodes.adapters[1].broadcast(packet("on time"), to(&["r", "s"])).await.unwrap();
    let ok = eventually(Duration::from_secs(2), || async {
        *relay.seen.lock().unwrap() == 1 && a.deliveries().len() == 2 && b.deliveries().len() == 2
    })
    .await;
    assert!(ok, "a: {:?}, b: {:?}", a.deliveries(), b.deliveries());
    for id in ["a", "b"] {
        nodes.adapters[0].remove_socket(&SocketId::from(id));
    }
    nodes.bus.settle().await;
    contract::assert_empty(&nodes.adapters);
}

/// Requests waiting for answers when the broker goes away end at once with a clear error (their
/// message, or the answers, may be lost), instead of at their timeout; an ack broadcast keeps the
/// local acks.
#[tokio::test]
async fn requests_in_flight_fail_at_once_when_the_broker_goes_down() {
    let nodes = nodes(2, slow).await;
    let local = TestSocket::new("local", "/");
    nodes.adapters[0].add_socket(local.clone());
    // node1 never answers: it has no handler for server-side emits, and it is cut off.
    nodes.bus.isolate(1, true);
    let adapter = nodes.adapters[0].clone();
    let started = Instant::now();
    let requests = PendingRequests::start(adapter.clone());
    let ack = tokio::spawn({
        let adapter = adapter.clone();
        async move {
            let stream = adapter
                .broadcast_with_ack(packet("ack"), 7, BroadcastOptions::default(), Duration::from_secs(5))
                .await;
            stream.map(|s| s.expected)
        }
    });
    assert!(eventually(Duration::from_secs(1), || async { adapter.pending_requests() == 3 }).await);
    nodes.bus.set_down(true);
    requests.assert_broker_unavailable().await;
    assert_eq!(ack.await.unwrap(), Ok(1), "the local socket's ack is still expected");
    assert!(started.elapsed() < Duration::from_secs(2), "failed at once, not at the 5 s timeouts");
    assert_eq!(adapter.pending_requests(), 0);
    nodes.bus.set_down(false);
    nodes.bus.isolate(1, false);
    adapter.remove_socket(&SocketId::from("local"));
}

// ---------------------------------------------------------------------------------------------
// Faults and bad input.

#[tokio::test]
async fn with_the_broker_down_local_delivery_goes_on_and_requests_fail_fast() {
    let nodes = nodes(2, slow).await;
    let local = TestSocket::new("local", "/");
    let remote = TestSocket::new("remote", "/");
    nodes.adapters[0].add_socket(local.clone());
    nodes.adapters[1].add_socket(remote.clone());
    nodes.bus.set_down(true);

    let failed = nodes.factories[0].stats().publish_failed;
    let n = nodes.adapters[0].broadcast(packet("down"), BroadcastOptions::default()).await;
    assert_eq!(n, Ok(1), "the emit succeeds for local sockets");
    assert_eq!(local.deliveries().len(), 1);
    assert_eq!(nodes.factories[0].stats().publish_failed, failed + 1, "the drop is counted");

    let started = Instant::now();
    let got = nodes.adapters[0].fetch_sockets(BroadcastOptions::default()).await;
    assert!(matches!(got, Err(AdapterError::BrokerUnavailable(_))), "{got:?}");
    let ack = nodes.adapters[0]
        .broadcast_with_ack(packet("ack"), 1, BroadcastOptions::default(), Duration::from_secs(5))
        .await;
    assert!(matches!(ack, Err(AdapterError::BrokerUnavailable(_))), "{ack:?}");
    assert!(started.elapsed() < Duration::from_millis(100), "requests must fail fast");
    assert_eq!(nodes.adapters[0].pending_requests(), 0);
    assert!(remote.deliveries().is_empty());

    nodes.bus.set_down(false);
    nodes.adapters[0].broadcast(packet("up"), BroadcastOptions::default()).await.unwrap();
    nodes.bus.settle().await;
    assert_eq!(remote.deliveries().len(), 1, "delivery resumes with the broker");
    for (i, a) in nodes.adapters.iter().enumerate() {
        a.remove_socket(&SocketId::from(if i == 0 { "local" } else { "remote" }));
    }
}

/// The broker gone for longer than the heartbeat timeout (default 5 s / 10 s; paused clock):
/// requests keep failing with a clear error instead of answering from this node alone, and once
/// it is back the nodes re-learn each other at once, not at their next heartbeat.
#[tokio::test(start_paused = true)]
async fn with_the_broker_gone_past_the_timeout_requests_fail_and_a_reconnect_restores_membership() {
    let nodes = nodes(3, |c| c).await;
    let handler = Arc::new(Handler { node: "node1".into(), seen: Mutex::new(vec![]) });
    nodes.adapters[1].set_inbound_handler(handler);
    let local = TestSocket::new("local", "/");
    let remote = TestSocket::new("remote", "/");
    nodes.adapters[0].add_socket(local.clone());
    nodes.adapters[1].add_socket(remote.clone());
    assert!(nodes.factories[0].is_connected());

    nodes.bus.set_down(true);
    assert!(!nodes.factories[0].is_connected(), "the bus transport reports the broker gone");
    tokio::time::sleep(Duration::from_secs(16)).await;
    assert!(nodes.adapters[0].peers().is_empty(), "peers expired while the broker was gone");
    // The server count is membership: this node alone now (documented).
    assert_eq!(nodes.adapters[0].server_count().await, Ok(1));

    let node = &nodes.adapters[0];
    let all = BroadcastOptions::default();
    let started = Instant::now();
    let fetch = node.fetch_sockets(all.clone()).await;
    assert!(matches!(fetch, Err(AdapterError::BrokerUnavailable(_))), "{fetch:?}");
    let ack = node.broadcast_with_ack(packet("ack"), 1, all.clone(), Duration::from_secs(5)).await;
    assert!(matches!(ack, Err(AdapterError::BrokerUnavailable(_))), "{ack:?}");
    assert!(local.deliveries().is_empty(), "a refused ack broadcast delivers nothing, even locally");
    let emit = node.server_side_emit("ask".into(), vec![], Some(Duration::from_secs(5))).await;
    assert!(matches!(emit, Err(AdapterError::BrokerUnavailable(_))), "{emit:?}");
    let emit = node.server_side_emit("tell".into(), vec![], None).await;
    assert!(matches!(emit, Err(AdapterError::BrokerUnavailable(_))), "{emit:?}");
    let join = node.add_sockets(all.clone(), vec!["joined".into()]).await;
    assert!(matches!(join, Err(AdapterError::BrokerUnavailable(_))), "{join:?}");
    assert!(node.local().rooms_of(local.id()).contains(&"joined".into()), "the local part is done");
    assert_eq!(started.elapsed(), Duration::ZERO, "nothing waited");
    assert_eq!(node.pending_requests(), 0);
    // What needs no broker still works.
    assert_eq!(node.broadcast(packet("plain"), all.clone()).await, Ok(1));
    let local_only = BroadcastOptions {
        flags: switchboard_adapter::BroadcastFlags { local: true, ..Default::default() },
        ..all.clone()
    };
    assert_eq!(node.fetch_sockets(local_only).await.map(|s| s.len()), Ok(1));

    let published = nodes.factories[0].stats().published;
    let back = Instant::now();
    nodes.bus.set_down(false);
    nodes.wait_for_count(3).await;
    let took = back.elapsed();
    assert!(took < Duration::from_secs(1), "membership restored after {took:?}, heartbeats are 5 s apart");
    assert!(nodes.factories[0].stats().published > published, "the node announced itself");
    let got = node.fetch_sockets(all).await.unwrap();
    let mut ids: Vec<&str> = got.iter().map(|s| s.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["local", "remote"]);
    let answers = node.server_side_emit("ask".into(), vec![], Some(Duration::from_secs(5))).await;
    assert_eq!(
        answers,
        Err(AdapterError::Timeout {
            missing: 1,
            partial: PartialReplies::Answers(vec![vec![Value::from("node1")]])
        }),
        "node2 has no handler"
    );
}

/// The publish of an ack broadcast refused after the connection check passed (a full queue):
/// the local sockets already have the packet, so the call still returns their stream.
#[tokio::test]
async fn an_ack_broadcast_the_broker_refuses_still_collects_the_local_acks() {
    let nodes = nodes(2, slow).await;
    let local = TestSocket::new("local", "/");
    let remote = TestSocket::new("remote", "/");
    nodes.adapters[0].add_socket(local.clone());
    nodes.adapters[1].add_socket(remote.clone());
    nodes.bus.set_refusing(true);
    assert!(nodes.factories[0].is_connected());

    let failed = nodes.factories[0].stats().publish_failed;
    let started = Instant::now();
    let stream = nodes.adapters[0]
        .broadcast_with_ack(packet("ack"), 4, BroadcastOptions::default(), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "no peer is waited for");
    assert_eq!(stream.expected, 1, "the local socket only: no peer got the request");
    assert_eq!(nodes.factories[0].stats().publish_failed, failed + 1, "the drop is counted");
    assert_eq!(nodes.adapters[0].pending_requests(), 0);
    assert_eq!(local.answer_acks(&[Value::from("ok")]), 1);
    let (responses, missing) = stream.collect().await;
    assert_eq!(missing, 0);
    assert_eq!(responses, vec![AckResponse { socket: "local".into(), args: vec![Value::from("ok")] }]);
    nodes.bus.settle().await;
    assert!(remote.deliveries().is_empty());

    // A request that cannot be sent fails at once.
    let got = nodes.adapters[0].fetch_sockets(BroadcastOptions::default()).await;
    assert!(matches!(got, Err(AdapterError::BrokerUnavailable(_))), "{got:?}");
    assert_eq!(nodes.adapters[0].pending_requests(), 0);
    nodes.bus.set_refusing(false);
}

#[tokio::test]
async fn bad_messages_are_counted_and_dropped() {
    let bus = Bus::new();
    let (transport, inbound) = bus.connect();
    let factory = ClusterAdapterFactory::new(config(0), transport, &inbound).unwrap();
    let adapter = factory.create_cluster_adapter("/");
    let socket = TestSocket::new("s", "/");
    adapter.add_socket(socket.clone());

    inbound.receive(Bytes::from_static(b"hello from another program"));
    inbound.receive(Bytes::new());
    let good = codec::encode(
        "node9",
        "/",
        &Message::Broadcast {
            target: Target { opts: BroadcastOptions::default(), part: Target::WHOLE },
            packet: encode_event("/", "e", &[], None),
        },
    )
    .unwrap();
    let mut newer = good.to_vec();
    newer[2] = codec::VERSION + 1;
    inbound.receive(newer.into());
    inbound.receive(good.slice(..good.len() - 1));
    let elsewhere = codec::encode("node9", "/elsewhere", &Message::Heartbeat).unwrap();
    inbound.receive(elsewhere);
    let echo = codec::encode("node0", "/", &Message::Heartbeat).unwrap();
    inbound.receive(echo);
    // An echo is recognised from the header alone, before the rest is decoded.
    let own = codec::encode(
        "node0",
        "/",
        &Message::Broadcast { target: Target::default(), packet: encode_event("/", "e", &[], None) },
    )
    .unwrap();
    inbound.receive(own.slice(..own.len() - 1));
    // A broadcast naming a part its room list does not have.
    let bad_part = codec::encode(
        "node9",
        "/",
        &Message::Broadcast {
            target: Target { opts: to(&["a", "b"]), part: 7 },
            packet: encode_event("/", "e", &[], None),
        },
    )
    .unwrap();
    inbound.receive(bad_part);

    let stats = factory.stats();
    assert_eq!(stats.received, 8);
    assert_eq!(stats.malformed, 3);
    assert_eq!(stats.unsupported, 1);
    assert_eq!(stats.unroutable, 2);
    assert_eq!(stats.broadcasts_received, 0, "the bad part counts as unroutable only");
    assert_eq!(stats.echoes, 2);
    assert!(socket.deliveries().is_empty());
    assert_eq!(adapter.server_count().await, Ok(1), "the echoed heartbeat is not a peer");
    inbound.receive(good);
    assert_eq!(socket.deliveries().len(), 1, "the valid one is delivered");
}

#[tokio::test]
async fn setup_errors_are_typed() {
    assert!(matches!(ClusterConfig::new("has.dot"), Err(ClusterError::InvalidNodeId(_))));
    assert!(matches!(ClusterConfig::new(""), Err(ClusterError::InvalidNodeId(_))));
    let bus = Bus::new();
    let (transport, inbound) = bus.connect();
    for (interval, timeout) in [(1000, 1000), (1000, 1999), (0, 1000)] {
        let bad = config(0)
            .with_heartbeat_timeout(Duration::from_millis(timeout))
            .with_heartbeat_interval(Duration::from_millis(interval));
        assert!(
            matches!(
                ClusterAdapterFactory::new(bad, transport.clone(), &inbound),
                Err(ClusterError::InvalidConfig(_))
            ),
            "interval {interval} ms, timeout {timeout} ms"
        );
    }
    let _factory = ClusterAdapterFactory::new(config(0), transport.clone(), &inbound).unwrap();
    assert_eq!(
        ClusterAdapterFactory::new(config(1), transport, &inbound).unwrap_err(),
        ClusterError::InboundInUse
    );
    let unbound = Inbound::new();
    unbound.receive(Bytes::from_static(b"nobody listens")); // dropped, no panic
}

#[tokio::test]
async fn setup_refuses_short_secrets_bad_addresses_and_zero_limits() {
    assert!(matches!(ClusterConfig::new("n".repeat(129)), Err(ClusterError::InvalidNodeId(_))));
    assert!(ClusterConfig::new("n".repeat(128)).is_ok());
    let bus = Bus::new();
    let bad = [
        config(0).with_secret("too short"),
        config(0).with_address("http://10.0.0.1:3000"),
        config(0).with_address("10.0.0.1"),
        config(0).with_max_message_size(100),
        config(0).with_max_remote_acks(0),
        config(0).with_max_peers(0),
        config(0).with_max_name_bytes(0),
        config(0).with_max_rooms_per_join(0),
    ];
    for config in bad {
        let (transport, inbound) = bus.connect();
        let shown = format!("{config:?}");
        let got = ClusterAdapterFactory::new(config, transport, &inbound);
        assert!(matches!(got, Err(ClusterError::InvalidConfig(_))), "{shown}");
    }
    let good = config(0).with_secret("sixteen bytes!!!").with_address("[::1]:3000");
    assert!(good.has_secret());
    assert!(!format!("{good:?}").contains("sixteen"), "the secret stays out of logs");
    let (transport, inbound) = bus.connect();
    assert!(ClusterAdapterFactory::new(good, transport, &inbound).is_ok());
}

#[test]
fn the_factory_needs_a_runtime() {
    let transport: Arc<BusTransport> = {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async { Bus::new().connect().0 })
    };
    let got = ClusterAdapterFactory::new(config(0), transport, &Inbound::new());
    assert_eq!(got.unwrap_err(), ClusterError::NoRuntime);
}
