//! The cluster adapter over a real nats-server: the adapter contract on three nodes (one test per
//! case), interest routing (through the counters), odd names end to end, the server killed and
//! restarted under traffic, nodes leaving and crashing, garbage on our subjects, and setup errors.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use switchboard_adapter::cluster::{
    ClusterAdapter, ClusterAdapterFactory, ClusterConfig, Inbound, PublishError, Route, Transport,
};
use switchboard_adapter::{Adapter, AdapterError, BroadcastOptions, BroadcastPacket, LocalSocket, Room};
use switchboard_nats::{ConnectError, FlushError, NatsConfig, NatsTransport, subject};
use switchboard_protocol::socketio::{Value, encode_event};
use switchboard_testkit::contract::{self, Cluster, TestSocket};
use switchboard_testkit::{NatsServer, PendingRequests, closed_port, contract_tests, eventually};
use tokio::time::Instant;

const PREFIX: &str = "switchboard";

struct Node {
    factory: ClusterAdapterFactory,
    transport: NatsTransport,
    adapter: Arc<ClusterAdapter>,
}

struct Nodes {
    nodes: Vec<Node>,
    server: NatsServer,
}

/// Heartbeats fast enough that a lost initial heartbeat heals within a test's patience.
fn quick(c: ClusterConfig) -> ClusterConfig {
    c.with_heartbeat_interval(Duration::from_millis(500)).with_heartbeat_timeout(Duration::from_secs(2))
}

async fn connect_node(server: &NatsServer, i: usize, tune: impl Fn(ClusterConfig) -> ClusterConfig) -> Node {
    let inbound = Inbound::new();
    let config = NatsConfig::new().with_name(format!("test-node{i}"));
    let transport = NatsTransport::connect([server.url()], PREFIX, inbound.clone(), config)
        .await
        .unwrap_or_else(|e| panic!("node {i} cannot connect: {e}"));
    let cluster = tune(ClusterConfig::new(format!("node{i}")).unwrap());
    let factory = ClusterAdapterFactory::new(cluster, Arc::new(transport.clone()), &inbound).unwrap();
    let adapter = factory.create_cluster_adapter("/");
    Node { factory, transport, adapter }
}

/// A nats-server and `n` nodes on it serving `/`, each counting the others.
async fn nodes(n: usize, tune: impl Fn(ClusterConfig) -> ClusterConfig) -> Nodes {
    let server = NatsServer::start();
    let mut nodes = Vec::new();
    for i in 0..n {
        nodes.push(connect_node(&server, i, &tune).await);
    }
    let nodes = Nodes { nodes, server };
    nodes.flush().await;
    nodes.wait_for_count(&(0..n).collect::<Vec<_>>(), n).await;
    nodes
}

impl Nodes {
    fn transports(&self) -> Vec<NatsTransport> {
        self.nodes.iter().map(|n| n.transport.clone()).collect()
    }

    /// Until every node's subscriptions and publishes are on the server.
    async fn flush(&self) {
        flush_all(&self.transports()).await;
    }

    fn contract(&self) -> Cluster {
        let adapters = self.nodes.iter().map(|n| n.adapter.clone() as Arc<dyn Adapter>).collect();
        let transports = self.transports();
        Cluster::new(adapters).with_quiet(Duration::from_millis(30)).with_settle(move || {
            let transports = transports.clone();
            Box::pin(async move { flush_all(&transports).await })
        })
    }

    async fn wait_for_count(&self, which: &[usize], n: usize) {
        let ok = eventually(Duration::from_secs(3), || async {
            for &i in which {
                if self.nodes[i].adapter.server_count().await != Ok(n) {
                    return false;
                }
            }
            true
        })
        .await;
        let counts: Vec<usize> = which.iter().map(|&i| self.nodes[i].adapter.peers().len() + 1).collect();
        assert!(ok, "nodes {which:?} count {counts:?} servers, expected {n}");
    }

    fn broadcasts_received(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.factory.stats().broadcasts_received).collect()
    }
}

async fn flush_all(transports: &[NatsTransport]) {
    for (i, t) in transports.iter().enumerate() {
        t.flush().await.unwrap_or_else(|e| panic!("flush of node {i}: {e}"));
    }
}

fn to(rooms: &[&str]) -> BroadcastOptions {
    BroadcastOptions { rooms: rooms.iter().map(|&r| Room::from(r)).collect(), ..Default::default() }
}

fn packet(nsp: &str, text: &str) -> (BroadcastPacket, String) {
    let encoded = encode_event(nsp, "e", &[Value::from(text)], None);
    let shown = String::from_utf8_lossy(&encoded.text).into_owned();
    (BroadcastPacket::new(encoded), shown)
}

/// Resident memory of this process, in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// A raw client of the same server, as another program would be.
async fn raw_client(server: &NatsServer) -> async_nats::Client {
    async_nats::connect(server.url()).await.expect("raw client")
}

// ---------------------------------------------------------------------------------------------
// The contract, one test per case.

/// Three nodes on one nats-server. After each case, once everything reached the server: nothing
/// left on any node, nothing dropped or echoed, and only the node and namespace subjects subscribed.
async fn three_nodes() -> Cluster {
    let nodes = Arc::new(nodes(3, quick).await);
    nodes.contract().with_check(move || {
        let nodes = nodes.clone();
        Box::pin(async move {
            nodes.flush().await;
            let adapters: Vec<Arc<ClusterAdapter>> = nodes.nodes.iter().map(|n| n.adapter.clone()).collect();
            contract::assert_left_nothing(&adapters).await;
            for (i, n) in nodes.nodes.iter().enumerate() {
                let stats = n.factory.stats();
                assert_eq!(
                    (stats.malformed, stats.unsupported, stats.publish_failed, stats.echoes),
                    (0, 0, 0, 0),
                    "node {i}: {stats:?} (no_echo: the server does not send a node its own messages)"
                );
                let health = n.transport.health();
                assert_eq!(health.subscriptions, 2, "node {i}: only the node and namespace subjects remain");
                assert_eq!(health.dropped(), 0, "node {i}: {health:?}");
            }
        })
    })
}

contract_tests!(contract_on_three_nodes_over_nats, three_nodes, multi_thread);

// ---------------------------------------------------------------------------------------------
// Interest routing.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_emit_is_not_received_by_a_node_without_members() {
    let nodes = nodes(3, quick).await;
    let sockets: Vec<Arc<TestSocket>> = (0..3).map(|i| TestSocket::new(format!("s{i}"), "/")).collect();
    for (n, s) in nodes.nodes.iter().zip(&sockets) {
        n.adapter.add_socket(s.clone());
    }
    nodes.nodes[0].adapter.join(sockets[0].id(), &["r".into()]);
    nodes.nodes[1].adapter.join(sockets[1].id(), &["r".into()]);
    nodes.nodes[2].adapter.join(sockets[2].id(), &["other".into()]);
    nodes.flush().await;

    let before = nodes.broadcasts_received();
    let published = nodes.nodes[0].factory.stats().published;
    let (p, text) = packet("/", "to-r");
    assert_eq!(nodes.nodes[0].adapter.broadcast(p, to(&["r"])).await, Ok(1));
    assert_eq!(nodes.nodes[0].factory.stats().published - published, 1, "one copy, on the room subject");
    assert!(eventually(Duration::from_secs(2), || async { sockets[1].count(&text) == 1 }).await);
    // Let anything stray land, then push a marker through the namespace subject behind it.
    nodes.flush().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (p, marker) = packet("/", "marker");
    nodes.nodes[0].adapter.broadcast(p, BroadcastOptions::default()).await.unwrap();
    assert!(eventually(Duration::from_secs(2), || async { sockets[2].count(&marker) == 1 }).await);
    let after = nodes.broadcasts_received();
    assert_eq!(after[1] - before[1], 2, "node 1 (a member) gets the room emit and the marker");
    assert_eq!(after[2] - before[2], 1, "node 2 has no member in r: NATS never sends it the room emit");
    assert_eq!(sockets[2].count(&text), 0);

    // The last member leaving unsubscribes on the server too.
    nodes.nodes[1].adapter.leave(sockets[1].id(), &"r".into());
    nodes.flush().await;
    let before = nodes.broadcasts_received();
    let (p, again) = packet("/", "to-r-again");
    nodes.nodes[0].adapter.broadcast(p, to(&["r"])).await.unwrap();
    nodes.flush().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (p, marker) = packet("/", "marker-2");
    nodes.nodes[0].adapter.broadcast(p, BroadcastOptions::default()).await.unwrap();
    assert!(
        eventually(Duration::from_secs(2), || async {
            sockets[1].count(&marker) == 1 && sockets[2].count(&marker) == 1
        })
        .await
    );
    let after = nodes.broadcasts_received();
    assert_eq!((after[1] - before[1], after[2] - before[2]), (1, 1), "only the marker arrives");
    assert_eq!(sockets[1].count(&again), 0);
    assert_eq!(sockets[0].count(&again), 1, "the emitter's own member is served locally");
}

// ---------------------------------------------------------------------------------------------
// Names.

const ODD_NAMESPACES: &[&str] = &["/a.b c", "/*", "/>", "/日本.é", "", "/_2F", "/tab\there", "/x.>.*"];
const ODD_ROOMS: &[&str] = &["", "a.b", "*", ">", "a b", "é🎉", "_", "x.*.>", "room#1", "%", "node", "\n"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_namespace_and_room_names_work_end_to_end() {
    let nodes = nodes(2, quick).await;
    // Another program taps every subject under the prefix, to check the names on the wire.
    let tap = raw_client(&nodes.server).await;
    let mut tapped = tap.subscribe(format!("{PREFIX}.>")).await.unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Some(m) = tapped.next().await {
            record.lock().unwrap().push(m.subject.to_string());
        }
    });
    tap.flush().await.unwrap();

    // Adapters live to the end: one dropped while its peer still heartbeats to it would make
    // the peer's messages unroutable, which is asserted to stay zero.
    let mut adapters = Vec::new();
    for &nsp in ODD_NAMESPACES {
        let a0 = nodes.nodes[0].factory.create_cluster_adapter(nsp);
        let a1 = nodes.nodes[1].factory.create_cluster_adapter(nsp);
        adapters.push((a0.clone(), a1.clone()));
        nodes.flush().await;
        let ok = eventually(Duration::from_secs(3), || async {
            a0.server_count().await == Ok(2) && a1.server_count().await == Ok(2)
        })
        .await;
        assert!(ok, "namespace {nsp:?}: the nodes do not see each other");

        let outsider = TestSocket::new("outsider", nsp);
        a1.add_socket(outsider.clone());
        for (i, &room) in ODD_ROOMS.iter().enumerate() {
            let member = TestSocket::new(format!("m{i}"), nsp);
            a1.add_socket(member.clone());
            a1.join(member.id(), &[Room::from(room)]);
            nodes.flush().await;
            let (p, text) = packet(nsp, &format!("to {room:?}"));
            assert_eq!(a0.broadcast(p, to(&[room])).await, Ok(0));
            let ok = eventually(Duration::from_secs(2), || async { member.count(&text) == 1 }).await;
            assert!(ok, "namespace {nsp:?}, room {room:?}: the remote member got nothing");
            let got = a0.fetch_sockets(to(&[room])).await.unwrap();
            assert_eq!(
                got.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
                [member.id().as_str()],
                "namespace {nsp:?}, room {room:?}"
            );
            a1.remove_socket(member.id());
            assert_eq!(outsider.count(&text), 0);
        }
        a1.remove_socket(outsider.id());
    }
    nodes.flush().await;
    tap.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    let seen = seen.lock().unwrap().clone();
    let routes: Vec<Route> = seen
        .iter()
        .map(|s| subject::parse(PREFIX, s).unwrap_or_else(|| panic!("{s:?} is not one of our subjects")))
        .collect();
    for &nsp in ODD_NAMESPACES {
        assert!(routes.contains(&Route::Namespace(nsp.into())), "no traffic on namespace {nsp:?}");
        for &room in ODD_ROOMS {
            let route = Route::Room(nsp.into(), Room::from(room));
            assert!(routes.contains(&route), "no emit on {route:?}");
        }
    }
    for s in &seen {
        assert!(s.split('.').all(|t| !t.is_empty() && t != "*" && t != ">"), "bad subject {s:?}");
    }
    for (i, n) in nodes.nodes.iter().enumerate() {
        let stats = n.factory.stats();
        assert_eq!((stats.malformed, stats.unroutable), (0, 0), "node {i}: {stats:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Faults.

/// Heartbeats that outlive a short broker outage, so membership is not what the test measures.
fn patient(c: ClusterConfig) -> ClusterConfig {
    c.with_heartbeat_interval(Duration::from_secs(1)).with_heartbeat_timeout(Duration::from_secs(10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_killed_under_traffic_and_restarted() {
    let mut nodes = nodes(2, patient).await;
    let (n0, n1) = (&nodes.nodes[0], &nodes.nodes[1]);
    let local = TestSocket::new("local", "/");
    let remote = TestSocket::new("remote", "/");
    let late = TestSocket::new("late", "/");
    n0.adapter.add_socket(local.clone());
    n0.adapter.join(local.id(), &["r".into()]);
    n1.adapter.add_socket(remote.clone());
    n1.adapter.join(remote.id(), &["r".into()]);
    nodes.flush().await;
    let (p, text) = packet("/", "before");
    n0.adapter.broadcast(p, to(&["r"])).await.unwrap();
    assert!(eventually(Duration::from_secs(2), || async { remote.count(&text) == 1 }).await);
    let subscriptions = [n0.transport.health().subscriptions, n1.transport.health().subscriptions];

    // Traffic: both nodes emit to the room every millisecond, whatever happens to the broker.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic: Vec<_> = nodes
        .nodes
        .iter()
        .map(|n| {
            let (adapter, stop) = (n.adapter.clone(), stop.clone());
            tokio::spawn(async move {
                let mut sent = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (p, _) = packet("/", "traffic");
                    adapter.broadcast(p, to(&["r"])).await.expect("a broadcast never fails");
                    sent += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                sent
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;

    nodes.server.kill();
    let killed = Instant::now();
    let down = eventually(Duration::from_secs(2), || async {
        nodes.nodes.iter().all(|n| !n.transport.is_connected())
    })
    .await;
    assert!(down, "the nodes did not notice the broker is gone");
    eprintln!("connection loss seen after {:?}", killed.elapsed());
    let (n0, n1) = (&nodes.nodes[0], &nodes.nodes[1]);

    // Local delivery goes on.
    let (p, text) = packet("/", "while-down");
    assert_eq!(n0.adapter.broadcast(p, to(&["r"])).await, Ok(1));
    assert_eq!(local.count(&text), 1);

    // Requests fail fast, with a clear error.
    let started = Instant::now();
    let got = n0.adapter.fetch_sockets(BroadcastOptions::default()).await;
    let Err(AdapterError::BrokerUnavailable(why)) = &got else { panic!("fetch_sockets: {got:?}") };
    assert!(why.to_string().contains("disconnected"), "{why}");
    assert!(!n0.factory.is_connected());
    let ack =
        n0.adapter.broadcast_with_ack(packet("/", "ack").0, 1, to(&["r"]), Duration::from_secs(5)).await;
    assert!(matches!(ack, Err(AdapterError::BrokerUnavailable(_))), "{ack:?}");
    let emit = n0.adapter.server_side_emit("x".into(), vec![], Some(Duration::from_secs(5))).await;
    assert!(matches!(emit, Err(AdapterError::BrokerUnavailable(_))), "{emit:?}");
    assert!(started.elapsed() < Duration::from_millis(200), "requests took {:?}", started.elapsed());
    assert_eq!(n0.adapter.pending_requests(), 0);
    assert_eq!(n0.transport.flush().await, Err(FlushError::Disconnected), "flush fails fast too");

    // Memory stays bounded: 4,000 emits of 32 KiB (125 MiB) while down are refused, not buffered.
    let rss = rss_bytes();
    let dropped = n0.transport.health().dropped_disconnected;
    let blob = Bytes::from(vec![7u8; 32 << 10]);
    for _ in 0..4000 {
        let p = BroadcastPacket::new(encode_event("/", "big", &[Value::Binary(blob.clone())], None));
        n0.adapter.broadcast(p, BroadcastOptions::default()).await.unwrap();
    }
    let grown = rss_bytes().saturating_sub(rss);
    let health = n0.transport.health();
    assert!(health.dropped_disconnected >= dropped + 4000, "{health:?}");
    assert_eq!((health.queued, health.queued_bytes), (0, 0), "nothing waits in the queue: {health:?}");
    assert!(grown < 48 << 20, "resident memory grew by {} MiB", grown >> 20);

    // A room joined during the outage is subscribed once the broker is back.
    n1.adapter.add_socket(late.clone());
    n1.adapter.join(late.id(), &["joined-while-down".into()]);
    tokio::time::sleep(Duration::from_millis(200)).await;

    nodes.server.restart();
    let restarted = Instant::now();
    let (n0, n1) = (&nodes.nodes[0], &nodes.nodes[1]);
    let mut k = 0;
    let resumed = eventually(Duration::from_secs(2), || {
        k += 1;
        let (p, text) = packet("/", &format!("resume-{k}"));
        let remote = remote.clone();
        let adapter = n0.adapter.clone();
        async move {
            let _ = adapter.broadcast(p, to(&["r"])).await;
            eventually(Duration::from_millis(20), || async { remote.count(&text) == 1 }).await
        }
    })
    .await;
    let took = restarted.elapsed();
    assert!(resumed, "cross-node delivery did not resume within 2 s of the restart");
    eprintln!("cross-node delivery resumed {took:?} after the restart");
    // Each node's own subscriptions came back (the client resubscribed them), in both directions.
    nodes.flush().await;
    let (p, text) = packet("/", "back-to-0");
    n1.adapter.broadcast(p, to(&["r"])).await.unwrap();
    let (p, late_text) = packet("/", "to-the-late-room");
    n0.adapter.broadcast(p, to(&["joined-while-down"])).await.unwrap();
    let ok = eventually(Duration::from_secs(2), || async {
        local.count(&text) == 1 && late.count(&late_text) == 1
    })
    .await;
    assert!(ok, "node 0's room subscription or node 1's new one is missing after the restart");
    let got = n0.adapter.fetch_sockets(BroadcastOptions::default()).await.unwrap();
    assert_eq!(got.len(), 3, "requests work again: {got:?}");
    for (n, before) in nodes.nodes.iter().zip(subscriptions) {
        let health = n.transport.health();
        assert!(health.connected && health.reconnects >= 1 && health.disconnects >= 1, "{health:?}");
        assert!(health.subscriptions >= before, "{health:?}");
    }

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in traffic {
        let sent = t.await.expect("the traffic task did not panic");
        assert!(sent > 100, "traffic kept flowing ({sent} emits)");
    }
}

/// A request NATS took just before it died (the server frozen, so the message is written but not
/// answered, then killed) fails at once with `BrokerUnavailable` when the connection drops,
/// instead of at its 5 s timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_just_before_the_broker_dies_fails_at_once() {
    let mut nodes = nodes(2, |c| c).await;
    nodes.server.pause();
    let adapter = nodes.nodes[0].adapter.clone();
    let requests = PendingRequests::start(adapter.clone());
    assert!(eventually(Duration::from_secs(1), || async { adapter.pending_requests() == 2 }).await);
    tokio::time::sleep(Duration::from_millis(20)).await;
    nodes.server.kill();
    let killed = Instant::now();
    requests.assert_broker_unavailable().await;
    assert!(killed.elapsed() < Duration::from_secs(1), "failed {:?} after the kill", killed.elapsed());
    assert_eq!(adapter.pending_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnected_node_announces_itself() {
    // Heartbeats every 30 s: only the announcement after the reconnect publishes anything.
    let quiet = |c: ClusterConfig| {
        c.with_heartbeat_interval(Duration::from_secs(30)).with_heartbeat_timeout(Duration::from_secs(60))
    };
    let mut nodes = nodes(2, quiet).await;
    nodes.server.kill();
    assert!(eventually(Duration::from_secs(2), || async { !nodes.nodes[0].transport.is_connected() }).await);
    let published: Vec<u64> = nodes.nodes.iter().map(|n| n.factory.stats().published).collect();
    nodes.server.restart();
    let announced = eventually(Duration::from_secs(2), || async {
        nodes.nodes.iter().zip(&published).all(|(n, &before)| n.factory.stats().published > before)
    })
    .await;
    let stats: Vec<_> = nodes.nodes.iter().map(|n| n.factory.stats()).collect();
    assert!(announced, "no initial heartbeat after the reconnect: {stats:?}");
    for n in &nodes.nodes {
        assert_eq!(n.transport.health().reconnects, 1);
        assert_eq!(n.adapter.server_count().await, Ok(2));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_publish_queue_drops_and_counts() {
    let server = NatsServer::start();
    let inbound = Inbound::new();
    let config = NatsConfig::new().with_publish_queue(4).with_publish_queue_bytes(1 << 20);
    let transport = NatsTransport::connect([server.url()], PREFIX, inbound, config).await.unwrap();
    let route = Route::Namespace("/".into());
    // On this single thread the driver cannot run in between: the queue fills.
    let results: Vec<_> = (0..10).map(|_| transport.publish(&route, Bytes::from_static(b"x"))).collect();
    assert!(results[..4].iter().all(Result::is_ok), "{results:?}");
    assert!(results[4..].iter().all(|r| *r == Err(PublishError::QueueFull)), "{results:?}");
    // Bytes are bounded as well as messages.
    let big = transport.publish(&route, Bytes::from(vec![0u8; 2 << 20]));
    assert_eq!(big, Err(PublishError::QueueFull));
    let health = transport.health();
    assert_eq!((health.queued, health.queued_bytes, health.dropped_queue_full), (4, 4, 7), "{health:?}");
    transport.flush().await.unwrap();
    let health = transport.health();
    assert_eq!((health.queued, health.queued_bytes, health.publish_errors), (0, 0, 0), "{health:?}");
    assert_eq!(transport.publish(&route, Bytes::from_static(b"x")), Ok(()), "room again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_and_crashed_nodes_drop_out_of_membership() {
    let fast = |c: ClusterConfig| {
        c.with_heartbeat_interval(Duration::from_millis(100))
            .with_heartbeat_timeout(Duration::from_millis(400))
            .with_request_timeout(Duration::from_secs(10))
    };
    let nodes = nodes(4, fast).await;

    // A node that closes says goodbye: the others drop it at once.
    let started = Instant::now();
    nodes.nodes[3].factory.close();
    nodes.nodes[3].transport.close().await.unwrap();
    nodes.wait_for_count(&[0, 1, 2], 3).await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(300), "a closing node was dropped after {took:?}");
    assert_eq!(
        nodes.nodes[3].transport.publish(&Route::Namespace("/".into()), Bytes::new()),
        Err(PublishError::Closed)
    );

    // A node whose connection just goes (no goodbye): dropped within the heartbeat timeout, and
    // requests stop waiting for it.
    nodes.nodes[1].adapter.add_socket(TestSocket::new("one", "/"));
    nodes.nodes[2].adapter.add_socket(TestSocket::new("two", "/"));
    flush_all(&nodes.transports()[..3]).await;
    let started = Instant::now();
    nodes.nodes[2].transport.close().await.unwrap();
    let got = nodes.nodes[0].adapter.fetch_sockets(BroadcastOptions::default()).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "the request waited {:?}", started.elapsed());
    assert!(got.iter().any(|s| s.id.as_str() == "one"), "{got:?}");
    nodes.wait_for_count(&[0, 1], 2).await;
    let took = started.elapsed();
    // Last heartbeat at most an interval before, then the timeout, then a check period, plus slack.
    assert!(
        took <= Duration::from_millis(100 + 400 + 100 + 300),
        "a crashed node was dropped after {took:?}"
    );
    assert!(took >= Duration::from_millis(250), "dropped after {took:?}: too early for a heartbeat timeout");
    assert_eq!(nodes.nodes[0].adapter.pending_requests(), 0);
    eprintln!("crashed node dropped after {took:?}");
}

// ---------------------------------------------------------------------------------------------
// Bad input.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_our_subjects_is_counted_and_dropped() {
    let nodes = nodes(2, quick).await;
    let socket = TestSocket::new("s", "/");
    nodes.nodes[1].adapter.add_socket(socket.clone());
    nodes.nodes[1].adapter.join(socket.id(), &["r".into()]);
    nodes.flush().await;

    let other = raw_client(&nodes.server).await;
    let ns = subject::name(&Route::Namespace("/".into()), PREFIX);
    let node1 = subject::name(&Route::Node("node1".into()), PREFIX);
    let room = subject::name(&Route::Room("/".into(), "r".into()), PREFIX);
    other.publish(ns.clone(), Bytes::from_static(b"hello from another program")).await.unwrap();
    other.publish(node1, Bytes::new()).await.unwrap();
    other.publish(room, Bytes::from_static(b"\x00\x01\x02\xff")).await.unwrap();
    other.publish(ns, Bytes::from(vec![0xc1; 10_000])).await.unwrap();
    other.flush().await.unwrap();

    let ok = eventually(Duration::from_secs(2), || async {
        nodes.nodes[0].factory.stats().malformed == 2 && nodes.nodes[1].factory.stats().malformed == 4
    })
    .await;
    let stats: Vec<_> = nodes.nodes.iter().map(|n| n.factory.stats()).collect();
    assert!(ok, "{stats:?}");
    assert!(socket.deliveries().is_empty());
    // And the nodes work as before.
    let (p, text) = packet("/", "after-garbage");
    nodes.nodes[0].adapter.broadcast(p, to(&["r"])).await.unwrap();
    assert!(eventually(Duration::from_secs(2), || async { socket.count(&text) == 1 }).await);
}

// ---------------------------------------------------------------------------------------------
// Setup.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_fails_clearly() {
    let connect = |urls: Vec<String>, prefix: &'static str| async move {
        NatsTransport::connect(urls, prefix, Inbound::new(), NatsConfig::new()).await
    };
    let err = connect(vec!["http://127.0.0.1:4222".into()], PREFIX).await.unwrap_err();
    assert!(matches!(err, ConnectError::InvalidUrl { .. }), "{err}");
    assert!(err.to_string().contains("http://127.0.0.1:4222"), "{err}");
    let err = connect(vec!["nats://127.0.0.1:99999".into()], PREFIX).await.unwrap_err();
    assert!(matches!(err, ConnectError::InvalidUrl { .. }), "{err}");
    assert!(matches!(connect(vec![], PREFIX).await, Err(ConnectError::NoUrl)));
    for bad in ["", "a..b", "a.*", "a >", "sb.>"] {
        assert!(!subject::is_valid_prefix(bad));
        let err = connect(vec!["127.0.0.1:4222".into()], bad).await.unwrap_err();
        assert!(matches!(err, ConnectError::InvalidPrefix(_)), "{bad:?}: {err}");
    }
    let bad = NatsConfig::new().with_publish_queue(0);
    let err = NatsTransport::connect(["127.0.0.1:4222"], PREFIX, Inbound::new(), bad).await.unwrap_err();
    assert!(matches!(err, ConnectError::InvalidConfig(_)), "{err}");

    // Nothing listening: a clear error, at once.
    let port = closed_port();
    let started = Instant::now();
    let err = connect(vec![format!("nats://127.0.0.1:{port}")], PREFIX).await.unwrap_err();
    assert!(matches!(err, ConnectError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_initial_connect_starts_without_the_server() {
    let mut server = NatsServer::start();
    server.kill();
    let config = NatsConfig::new().with_retry_on_initial_connect(true);
    let transport = NatsTransport::connect([server.url()], PREFIX, Inbound::new(), config).await.unwrap();
    assert!(!transport.is_connected());
    let route = Route::Namespace("/".into());
    let refused = transport.publish(&route, Bytes::from_static(b"x"));
    assert!(matches!(refused, Err(PublishError::Disconnected(_))), "{refused:?}");
    transport.subscribe(&route);
    server.restart();
    assert!(eventually(Duration::from_secs(3), || async { transport.is_connected() }).await);
    transport.flush().await.unwrap();
    let health = transport.health();
    assert_eq!(
        (health.subscriptions, health.dropped_disconnected, health.reconnects),
        (1, 1, 0),
        "{health:?}"
    );
    transport.close().await.unwrap();
    assert_eq!(transport.flush().await, Err(FlushError::Closed));
    assert_eq!(transport.health().subscriptions, 0);
}
