//! The cluster adapter over real `redis-server` processes: the adapter contract on three nodes (one
//! instance, then three shards; one test per case), interest routing through the counters, channel
//! placement, broker and node faults, garbage from other programs, and setup errors.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchboard_adapter::cluster::{
    ClusterAdapter, ClusterAdapterFactory, ClusterConfig, Inbound, Message, PublishError, Route, Target,
    Transport, codec,
};
use switchboard_adapter::{Adapter, AdapterError, BroadcastOptions, BroadcastPacket, LocalSocket, Room};
use switchboard_protocol::socketio::{Value, encode_event};
use switchboard_redis::{ConnectError, RedisConfig, RedisTransport, channel};
use switchboard_testkit::contract::{self, Cluster, TestSocket};
use switchboard_testkit::{PendingRequests, RedisServer, closed_port, contract_tests, eventually};
use tokio::time::Instant;

const PREFIX: &str = "sbtest";

fn redis_config() -> RedisConfig {
    RedisConfig::new()
        .with_reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .with_response_timeout(Duration::from_millis(500))
}

fn config(i: usize) -> ClusterConfig {
    ClusterConfig::new(format!("node{i}")).unwrap()
}

fn fast(c: ClusterConfig) -> ClusterConfig {
    c.with_heartbeat_interval(Duration::from_millis(100)).with_heartbeat_timeout(Duration::from_millis(400))
}

struct Node {
    factory: ClusterAdapterFactory,
    transport: RedisTransport,
    adapter: Arc<ClusterAdapter>,
}

/// Waits (at most 5 s) until the transport's subscriptions are live.
async fn settle(transport: &RedisTransport) {
    tokio::time::timeout(Duration::from_secs(5), transport.settle())
        .await
        .unwrap_or_else(|_| panic!("subscriptions not acknowledged within 5 s: {:?}", transport.status()));
}

/// One node serving `/` over the instances in `urls`, its node channel live before it announces itself.
async fn node(i: usize, urls: &[String], tune: fn(ClusterConfig) -> ClusterConfig) -> Node {
    let inbound = Inbound::new();
    let transport = RedisTransport::connect(urls, PREFIX, inbound.clone(), redis_config()).await.unwrap();
    let factory = ClusterAdapterFactory::new(tune(config(i)), Arc::new(transport.clone()), &inbound).unwrap();
    settle(&transport).await;
    let adapter = factory.create_cluster_adapter("/");
    settle(&transport).await;
    Node { factory, transport, adapter }
}

struct Nodes {
    nodes: Vec<Node>,
}

impl Nodes {
    async fn start(n: usize, urls: &[String], tune: fn(ClusterConfig) -> ClusterConfig) -> Self {
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            nodes.push(node(i, urls, tune).await);
        }
        let out = Self { nodes };
        out.wait_for_count(&(0..n).collect::<Vec<_>>(), n, Duration::from_secs(3)).await;
        out
    }

    fn adapter(&self, i: usize) -> &Arc<ClusterAdapter> {
        &self.nodes[i].adapter
    }

    fn contract(&self) -> Cluster {
        let adapters: Vec<Arc<dyn Adapter>> =
            self.nodes.iter().map(|n| n.adapter.clone() as Arc<dyn Adapter>).collect();
        let transports: Vec<RedisTransport> = self.nodes.iter().map(|n| n.transport.clone()).collect();
        Cluster::new(adapters).with_quiet(Duration::from_millis(30)).with_settle(move || {
            let transports = transports.clone();
            Box::pin(async move {
                for t in &transports {
                    settle(t).await;
                }
            })
        })
    }

    async fn settle(&self) {
        for n in &self.nodes {
            settle(&n.transport).await;
        }
    }

    async fn flush(&self) {
        for n in &self.nodes {
            n.transport.flush().await;
        }
    }

    async fn wait_for_count(&self, which: &[usize], n: usize, within: Duration) {
        let ok = eventually(within, || async {
            for &i in which {
                if self.adapter(i).server_count().await.unwrap() != n {
                    return false;
                }
            }
            true
        })
        .await;
        let counts: Vec<usize> = which.iter().map(|&i| self.adapter(i).peers().len() + 1).collect();
        assert!(ok, "nodes {which:?} count {counts:?} servers, expected {n}");
    }

    fn broadcasts_received(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.factory.stats().broadcasts_received).collect()
    }

    /// After a contract case, once the subscriptions are acknowledged: nothing left on any node,
    /// nothing dropped.
    async fn assert_left_nothing(&self) {
        self.settle().await;
        let adapters: Vec<Arc<ClusterAdapter>> = self.nodes.iter().map(|n| n.adapter.clone()).collect();
        contract::assert_left_nothing(&adapters).await;
        for (i, n) in self.nodes.iter().enumerate() {
            let stats = n.factory.stats();
            assert_eq!((stats.malformed, stats.unsupported, stats.publish_failed), (0, 0, 0), "node {i}");
        }
    }
}

fn urls(servers: &[RedisServer]) -> Vec<String> {
    servers.iter().map(RedisServer::url).collect()
}

fn to(rooms: &[&str]) -> BroadcastOptions {
    BroadcastOptions { rooms: rooms.iter().map(|&r| Room::from(r)).collect(), ..Default::default() }
}

fn packet(label: &str) -> BroadcastPacket {
    BroadcastPacket::new(encode_event("/", "e", &[Value::from(label)], None))
}

/// How many times `socket` got the packet made by `packet(label)`.
fn got(socket: &TestSocket, label: &str) -> usize {
    let text = String::from_utf8_lossy(&packet(label).packet().text).into_owned();
    socket.count(&text)
}

fn room_channel(room: &str) -> String {
    channel::name(&Route::Room("/".into(), room.into()), PREFIX)
}

// ---------------------------------------------------------------------------------------------
// The contract, one test per case.

/// Three nodes on one instance. After each case: nothing left, nothing dropped, and only the
/// namespace and node channels are left on the server.
async fn three_nodes() -> Cluster {
    let server = RedisServer::start();
    let nodes = Nodes::start(3, &[server.url()], |c| c).await;
    let cluster = Arc::new((server, nodes));
    cluster.1.contract().with_check(move || {
        let cluster = cluster.clone();
        Box::pin(async move {
            let (server, nodes) = &*cluster;
            nodes.assert_left_nothing().await;
            let mut expected: Vec<String> =
                (0..3).map(|i| channel::name(&Route::Node(format!("node{i}").into()), PREFIX)).collect();
            expected.push(channel::name(&Route::Namespace("/".into()), PREFIX));
            expected.sort();
            assert_eq!(server.channels().await, expected);
        })
    })
}

/// Three nodes on three instances (channels sharded over them). After each case: nothing left,
/// nothing dropped, every instance connected and without a failed publish.
async fn three_instances() -> Cluster {
    let servers = RedisServer::start_many(3);
    let nodes = Nodes::start(3, &urls(&servers), |c| c).await;
    let cluster = Arc::new((servers, nodes));
    cluster.1.contract().with_check(move || {
        let cluster = cluster.clone();
        Box::pin(async move {
            let (_, nodes) = &*cluster;
            nodes.assert_left_nothing().await;
            for n in &nodes.nodes {
                for s in n.transport.status() {
                    assert!(s.connected && s.stats.publish_errors() == 0, "{s:?}");
                }
            }
        })
    })
}

contract_tests!(contract_on_three_nodes, three_nodes, multi_thread);
contract_tests!(contract_on_three_instances, three_instances, multi_thread);

// ---------------------------------------------------------------------------------------------
// Interest routing, asserted through the counters.

#[tokio::test]
async fn a_room_emit_is_not_received_by_a_node_without_members() {
    let server = RedisServer::start();
    let nodes = Nodes::start(3, &[server.url()], |c| c).await;
    let a = TestSocket::new("a", "/");
    let b = TestSocket::new("b", "/");
    let c = TestSocket::new("c", "/");
    for (i, s) in [&a, &b, &c].into_iter().enumerate() {
        nodes.adapter(i).add_socket(s.clone());
    }
    nodes.adapter(0).join(a.id(), &["r".into()]);
    nodes.adapter(1).join(b.id(), &["r".into()]);
    nodes.adapter(2).join(c.id(), &["other".into()]);
    nodes.settle().await;
    assert_eq!(server.subscribers(&room_channel("r")).await, 2, "nodes 0 and 1 subscribe r");
    assert_eq!(server.subscribers(&room_channel("other")).await, 1);

    let before = nodes.broadcasts_received();
    nodes.adapter(0).broadcast(packet("to-r"), to(&["r"])).await.unwrap();
    assert!(eventually(Duration::from_secs(2), || async { got(&b, "to-r") == 1 }).await);
    nodes.flush().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after = nodes.broadcasts_received();
    assert_eq!(after[1] - before[1], 1, "node 1 has a member");
    assert_eq!(after[2] - before[2], 0, "node 2 has no member in r: it must not even receive the emit");
    assert_eq!(after[0] - before[0], 0, "the emitter ignores its own echo");
    assert_eq!(got(&a, "to-r"), 1);
    assert!(c.deliveries().is_empty());

    // The last member leaving unsubscribes.
    nodes.adapter(1).leave(b.id(), &"r".into());
    nodes.settle().await;
    assert_eq!(server.subscribers(&room_channel("r")).await, 1);
    let before = nodes.broadcasts_received();
    nodes.adapter(0).broadcast(packet("to-r-again"), to(&["r"])).await.unwrap();
    nodes.flush().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(nodes.broadcasts_received(), before, "nobody else subscribes r now");
    assert_eq!(got(&b, "to-r-again"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_arrives_complete_and_in_order() {
    let server = RedisServer::start();
    let nodes = Nodes::start(2, &[server.url()], |c| c).await;
    let s = TestSocket::new("s", "/");
    nodes.adapter(1).add_socket(s.clone());
    nodes.adapter(1).join(s.id(), &["r".into()]);
    nodes.settle().await;
    let labels: Vec<String> = (0..2000).map(|i| format!("m{i}")).collect();
    let started = Instant::now();
    for label in &labels {
        nodes.adapter(0).broadcast(packet(label), to(&["r"])).await.unwrap();
    }
    assert!(eventually(Duration::from_secs(5), || async { s.deliveries().len() == labels.len() }).await);
    let took = started.elapsed();
    let expected: Vec<String> =
        labels.iter().map(|l| String::from_utf8_lossy(&packet(l).packet().text).into_owned()).collect();
    let texts: Vec<String> = s.deliveries().into_iter().map(|d| d.text).collect();
    assert!(texts == expected, "lost or reordered");
    let status = &nodes.nodes[0].transport.status()[0];
    assert_eq!(status.stats.publish_errors(), 0, "{status:?}");
    eprintln!("2000 cross-node room emits delivered in {took:?}");
    nodes.adapter(1).remove_socket(s.id());
}

// ---------------------------------------------------------------------------------------------
// Sharding.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_spread_over_three_instances() {
    let servers = RedisServer::start_many(3);
    let urls = urls(&servers);
    let nodes = Nodes::start(3, &urls, |c| c).await;

    // 30 rooms, each with a member on one node.
    let sockets: Vec<Arc<TestSocket>> = (0..30).map(|i| TestSocket::new(format!("s{i}"), "/")).collect();
    for (i, s) in sockets.iter().enumerate() {
        nodes.adapter(i % 3).add_socket(s.clone());
        nodes.adapter(i % 3).join(s.id(), &[format!("room{i}").into()]);
    }
    nodes.settle().await;
    let mut seen = BTreeSet::new();
    for (index, server) in servers.iter().enumerate() {
        let channels = server.channels().await;
        let rooms = channels.iter().filter(|c| c.contains("#room#")).count();
        assert!(rooms > 0, "instance {index} carries no room channel: {channels:?}");
        for name in channels {
            let route = channel::parse(PREFIX, &name).expect("one of ours");
            for n in &nodes.nodes {
                assert_eq!(n.transport.placement(&route), (name.clone(), index), "{name} misplaced");
            }
            assert!(seen.insert(name.clone()), "{name} on two instances");
        }
    }
    for i in 0..30 {
        assert!(seen.contains(&room_channel(&format!("room{i}"))), "room{i} not subscribed anywhere");
    }
    // Emits to rooms on every instance arrive.
    for i in 0..30 {
        let from = (i + 1) % 3;
        nodes.adapter(from).broadcast(packet(&format!("hi{i}")), to(&[&format!("room{i}")])).await.unwrap();
    }
    for (i, s) in sockets.iter().enumerate() {
        let label = format!("hi{i}");
        assert!(eventually(Duration::from_secs(2), || async { got(s, &label) == 1 }).await, "room{i}");
    }
    for (i, s) in sockets.iter().enumerate() {
        nodes.adapter(i % 3).remove_socket(s.id());
    }
    nodes.assert_left_nothing().await;
    // Every instance carried traffic, and nothing was dropped.
    for index in 0..3 {
        let statuses: Vec<_> = nodes.nodes.iter().map(|n| n.transport.status()[index].clone()).collect();
        for s in &statuses {
            assert!(s.connected && s.stats.publish_errors() == 0, "{s:?}");
        }
        assert!(statuses.iter().map(|s| s.stats.published).sum::<u64>() > 0, "instance {index} idle");
        assert!(statuses.iter().map(|s| s.stats.received).sum::<u64>() > 0, "instance {index} idle");
    }
}

// ---------------------------------------------------------------------------------------------
// Faults.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_broker_keeps_local_delivery_and_fails_requests_fast_then_recovers() {
    let mut server = RedisServer::start();
    let nodes = Nodes::start(2, &[server.url()], |c| c).await;
    let local = TestSocket::new("local", "/");
    let remote = TestSocket::new("remote", "/");
    nodes.adapter(0).add_socket(local.clone());
    nodes.adapter(1).add_socket(remote.clone());
    nodes.adapter(1).join(remote.id(), &["r".into()]);
    nodes.settle().await;

    // Traffic from node 0 the whole time: every emit must succeed for its local socket.
    let sender = nodes.adapter(0).clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut sent = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let n = sender.broadcast(packet("tick"), BroadcastOptions::default()).await.unwrap();
                assert_eq!(n, 1, "the local socket is always served");
                sent += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            sent
        }
    });
    assert!(eventually(Duration::from_secs(2), || async { got(&remote, "tick") > 5 }).await);

    server.kill();
    let transport = &nodes.nodes[0].transport;
    assert!(
        eventually(Duration::from_secs(2), || async { !transport.is_connected() }).await,
        "the loss is noticed"
    );
    let ticks = got(&local, "tick");
    assert!(eventually(Duration::from_secs(1), || async { got(&local, "tick") > ticks + 5 }).await);

    // Requests fail fast and clearly; a publish is refused at once.
    let started = Instant::now();
    let answer = nodes.adapter(0).fetch_sockets(BroadcastOptions::default()).await;
    assert!(matches!(answer, Err(AdapterError::BrokerUnavailable(_))), "{answer:?}");
    let answer = nodes.adapter(0).server_side_emit("x".into(), vec![], Some(Duration::from_secs(5))).await;
    assert!(matches!(answer, Err(AdapterError::BrokerUnavailable(_))), "{answer:?}");
    let refused = transport.publish(&Route::Namespace("/".into()), Bytes::from_static(b"x"));
    assert!(matches!(refused, Err(PublishError::Disconnected(_))), "{refused:?}");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "requests must fail fast: {:?}",
        started.elapsed()
    );
    assert_eq!(nodes.adapter(0).pending_requests(), 0);
    let status = &transport.status()[0];
    assert!(!status.connected && status.last_error.is_some(), "{status:?}");
    assert!(status.stats.dropped_disconnected > 0, "{status:?}");

    // Back on the same port: cross-node delivery resumes, room subscriptions included.
    server.restart();
    let restarted = Instant::now();
    let before = got(&remote, "tick");
    assert!(
        eventually(Duration::from_secs(2), || async { got(&remote, "tick") > before }).await,
        "namespace delivery did not resume within 2 s"
    );
    assert!(
        eventually(Duration::from_secs(2), || async {
            nodes.adapter(0).broadcast(packet("room"), to(&["r"])).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            got(&remote, "room") > 0
        })
        .await,
        "room delivery did not resume"
    );
    let resumed = restarted.elapsed();
    assert!(resumed < Duration::from_secs(2), "resumed after {resumed:?}");
    nodes.settle().await;
    assert!(server.channels().await.contains(&room_channel("r")), "room subscription restored");
    for n in &nodes.nodes {
        let s = &n.transport.status()[0];
        assert!(s.connected && s.stats.reconnects == 1, "{s:?}");
    }
    assert_eq!(nodes.adapter(0).fetch_sockets(BroadcastOptions::default()).await.unwrap().len(), 2);

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = traffic.await.expect("the traffic task did not panic");
    assert!(sent > 20, "only {sent} emits");
    nodes.adapter(0).remove_socket(local.id());
    nodes.adapter(1).remove_socket(remote.id());
}

/// A request Redis accepted just before it died (frozen, so the PUBLISH is written but not
/// answered, then killed) fails at once with `BrokerUnavailable` when the connection drops,
/// instead of at its 5 s timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_just_before_the_broker_dies_fails_at_once() {
    let mut server = RedisServer::start();
    let nodes = Nodes::start(2, &[server.url()], |c| c).await;
    server.pause();
    let adapter = nodes.adapter(0).clone();
    let requests = PendingRequests::start(adapter.clone());
    assert!(eventually(Duration::from_secs(1), || async { adapter.pending_requests() == 2 }).await);
    tokio::time::sleep(Duration::from_millis(20)).await;
    server.kill();
    let killed = Instant::now();
    requests.assert_broker_unavailable().await;
    assert!(killed.elapsed() < Duration::from_secs(1), "failed {:?} after the kill", killed.elapsed());
    assert_eq!(adapter.pending_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_broker_never_blocks_publishers_and_memory_stays_bounded() {
    let server = RedisServer::start();
    let inbound = Inbound::new();
    let config = redis_config().with_publish_queue(64).with_response_timeout(Duration::from_millis(300));
    let transport = RedisTransport::connect(&[server.url()], PREFIX, inbound, config).await.unwrap();
    let route = Route::Namespace("/".into());
    // A subscriber-only transport has nothing to publish: its ping notices the stall.
    let listener_config = redis_config().with_ping_interval(Duration::from_millis(100));
    let listener =
        RedisTransport::connect(&[server.url()], PREFIX, Inbound::new(), listener_config).await.unwrap();
    listener.subscribe(&route);
    settle(&listener).await;
    server.pause();
    let started = Instant::now();
    let mut results = Vec::new();
    for _ in 0..20_000 {
        results.push(transport.publish(&route, Bytes::from_static(b"payload")));
    }
    assert!(started.elapsed() < Duration::from_millis(500), "publishing blocked: {:?}", started.elapsed());
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    assert!(accepted <= 64 + 512 + 1, "at most a queue and a batch are held, got {accepted}");
    assert!(results.contains(&Err(PublishError::QueueFull)));
    // The stall counts as a loss after the response timeout; publishes then fail as disconnected.
    assert!(eventually(Duration::from_secs(3), || async { !transport.is_connected() }).await);
    assert!(matches!(transport.publish(&route, Bytes::new()), Err(PublishError::Disconnected(_))));
    assert!(eventually(Duration::from_secs(2), || async { !listener.is_connected() }).await, "ping");
    server.resume();
    assert!(eventually(Duration::from_secs(3), || async { transport.is_connected() }).await, "recovers");
    settle(&transport).await;
    settle(&listener).await; // resubscribed
    let received = listener.status()[0].stats.received;
    transport.publish(&route, Bytes::from_static(b"again")).unwrap();
    transport.flush().await;
    assert!(
        eventually(Duration::from_secs(2), || async { listener.status()[0].stats.received > received }).await
    );
    let s = &transport.status()[0];
    assert!(s.stats.dropped_queue_full > 0 && s.stats.reconnects >= 1, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_node_leaves_membership_within_the_heartbeat_timeout() {
    let server = RedisServer::start();
    let urls = [server.url()];
    let mut nodes = Nodes { nodes: Vec::new() };
    for i in 0..2 {
        nodes.nodes.push(node(i, &urls, fast).await);
    }
    // Node 2 runs on its own runtime, so it can die without a goodbye.
    let doomed = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let crashed = doomed.spawn({
        let urls = urls.clone();
        async move { node(2, &urls, fast).await }
    });
    let crashed = crashed.await.unwrap();
    nodes.wait_for_count(&[0, 1], 3, Duration::from_secs(3)).await;
    nodes.adapter(0).add_socket(TestSocket::new("x", "/"));

    let started = Instant::now();
    doomed.shutdown_background(); // its tasks and connections vanish
    nodes.wait_for_count(&[0, 1], 2, Duration::from_secs(2)).await;
    let took = started.elapsed();
    // The last heartbeat up to an interval before, the timeout, a check period, and slack.
    assert!(took <= Duration::from_millis(100 + 400 + 100 + 300), "dropped after {took:?}");
    assert!(took >= Duration::from_millis(250), "dropped before its timeout ({took:?}): no goodbye was sent");
    let started = Instant::now();
    let got = nodes.adapter(1).fetch_sockets(BroadcastOptions::default()).await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(started.elapsed() < Duration::from_millis(500), "the request waited for the dead node");
    drop(crashed); // its adapter's goodbye has no runtime to go out on: dropped, no panic
    nodes.adapter(0).remove_socket(&"x".into());

    // A node dropped whole says goodbye (its driver writes what was queued before stopping), so
    // it is gone at once: the timeout could drop it 300 ms after its last heartbeat at the earliest.
    let started = Instant::now();
    drop(nodes.nodes.pop());
    nodes.wait_for_count(&[0], 1, Duration::from_millis(250)).await;
    assert!(started.elapsed() < Duration::from_millis(250), "no goodbye: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// Bad input and setup.

#[tokio::test]
async fn garbage_from_another_program_is_counted_and_dropped() {
    let server = RedisServer::start();
    let nodes = Nodes::start(2, &[server.url()], |c| c).await;
    let s = TestSocket::new("s", "/");
    nodes.adapter(1).add_socket(s.clone());
    nodes.adapter(1).join(s.id(), &["r".into()]);
    nodes.settle().await;

    let namespace = channel::name(&Route::Namespace("/".into()), PREFIX);
    assert_eq!(server.publish(&namespace, b"hello from another program").await, 2);
    assert_eq!(server.publish(&room_channel("r"), b"\x00\x01\x02").await, 1);
    assert_eq!(server.publish(&namespace, b"").await, 2);
    let malformed = |i: usize| nodes.nodes[i].factory.stats().malformed;
    assert!(
        eventually(Duration::from_secs(2), || async { malformed(0) == 2 && malformed(1) == 3 }).await,
        "malformed counts {} and {}",
        malformed(0),
        malformed(1)
    );
    assert!(s.deliveries().is_empty());
    // And the cluster still works.
    nodes.adapter(0).broadcast(packet("fine"), to(&["r"])).await.unwrap();
    assert!(eventually(Duration::from_secs(2), || async { got(&s, "fine") == 1 }).await);
    nodes.adapter(1).remove_socket(s.id());
}

#[tokio::test]
async fn with_a_secret_another_program_cannot_speak_for_a_node() {
    let server = RedisServer::start();
    let nodes = Nodes::start(2, &[server.url()], |c| c.with_secret("the secret of this test cluster")).await;
    let s = TestSocket::new("s", "/");
    nodes.adapter(1).add_socket(s.clone());
    nodes.adapter(1).join(s.id(), &["r".into()]);
    nodes.settle().await;
    // A well-formed broadcast, as a node without the secret writes it, in node0's name.
    let target = Target { opts: to(&["r"]), part: Target::WHOLE };
    let message = Message::Broadcast { target, packet: packet("forged").packet().clone() };
    let forged = codec::encode("node0", "/", &message).unwrap();
    let namespace = channel::name(&Route::Namespace("/".into()), PREFIX);
    assert_eq!(server.publish(&namespace, &forged).await, 2);
    assert_eq!(server.publish(&room_channel("r"), &forged).await, 1);
    let forged_count = |i: usize| nodes.nodes[i].factory.stats().forged;
    assert!(
        eventually(Duration::from_secs(2), || async { forged_count(0) == 1 && forged_count(1) == 2 }).await,
        "forged counts {} and {}",
        forged_count(0),
        forged_count(1)
    );
    assert_eq!(got(&s, "forged"), 0, "a forgery never reaches a socket");
    // The nodes themselves still talk.
    nodes.adapter(0).broadcast(packet("sealed"), to(&["r"])).await.unwrap();
    assert!(eventually(Duration::from_secs(2), || async { got(&s, "sealed") == 1 }).await);
    nodes.adapter(1).remove_socket(s.id());
}

#[tokio::test]
async fn setup_errors_are_clear() {
    let connect = |urls: Vec<&'static str>, prefix: &'static str| async move {
        RedisTransport::connect(&urls, prefix, Inbound::new(), redis_config()).await
    };
    let err = connect(vec!["http://:hunter2@host"], "sb").await.unwrap_err();
    let shown = err.to_string();
    assert!(matches!(err, ConnectError::InvalidUrl { .. }), "{err:?}");
    assert!(shown.contains("***@host") && !shown.contains("hunter2"), "{shown}");
    assert!(matches!(connect(vec!["not a url"], "sb").await, Err(ConnectError::InvalidUrl { .. })));
    assert!(matches!(connect(vec![], "sb").await, Err(ConnectError::NoUrls)));
    assert!(matches!(
        connect(vec!["redis://127.0.0.1:7001", "redis://127.0.0.1:7001/2"], "sb").await,
        Err(ConnectError::DuplicateInstance(_))
    ));
    assert!(matches!(
        connect(vec!["redis://127.0.0.1:7001"], "a#b").await,
        Err(ConnectError::InvalidPrefix(_))
    ));
    assert!(matches!(connect(vec!["redis://127.0.0.1:7001"], "").await, Err(ConnectError::InvalidPrefix(_))));
    let bad = RedisTransport::connect(
        &["redis://127.0.0.1:1"],
        "sb",
        Inbound::new(),
        redis_config().with_publish_queue(0),
    );
    assert!(matches!(bad.await, Err(ConnectError::InvalidConfig(_))));

    // Nothing listens on a just-freed port: the first attempt fails, clearly and quickly.
    let port = closed_port();
    let started = Instant::now();
    let err = connect_owned(format!("redis://127.0.0.1:{port}")).await.unwrap_err();
    assert!(matches!(err, ConnectError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

async fn connect_owned(url: String) -> Result<RedisTransport, ConnectError> {
    RedisTransport::connect(&[url], "sb", Inbound::new(), redis_config()).await
}

#[tokio::test]
async fn a_lazy_transport_connects_when_redis_comes_up() {
    let mut server = RedisServer::start();
    let url = server.url();
    server.kill();
    let inbound = Inbound::new();
    let transport = RedisTransport::connect_lazy(&[url], PREFIX, inbound.clone(), redis_config()).unwrap();
    let factory = ClusterAdapterFactory::new(config(0), Arc::new(transport.clone()), &inbound).unwrap();
    let adapter = factory.create_cluster_adapter("/");
    let s = TestSocket::new("s", "/");
    adapter.add_socket(s.clone());
    adapter.join(s.id(), &["r".into()]);
    assert!(!transport.is_connected());
    assert_eq!(adapter.broadcast(packet("alone"), BroadcastOptions::default()).await, Ok(1));
    server.restart();
    settle(&transport).await;
    assert!(transport.is_connected());
    assert!(server.channels().await.contains(&room_channel("r")), "subscribed once up");
    assert_eq!(transport.status()[0].stats.reconnects, 0, "the first connection is not a reconnect");
    adapter.remove_socket(s.id());
}
