//! Two nodes joined by the cluster adapter over the in-process bus: what one node's emits and
//! server-side emits do on the other, as clients and listeners see it. (The Redis and NATS crates
//! run the same adapter over real brokers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::sio::{Client, json, serve_io, wait_until};
use common::{STEP, TestServer, parse_open};
use switchboard::EngineConfig;
use switchboard::socketio::{Event, SocketIo, SocketIoConfig, SocketRef, Value};
use switchboard_adapter::cluster::{ClusterAdapterFactory, ClusterConfig};
use switchboard_protocol::socketio::Packet;
use switchboard_testkit::Bus;

/// A node named `id` on `bus`, with a connection handler that joins every socket to `room`.
fn node(bus: &Bus, id: &str) -> (SocketIo, ClusterAdapterFactory) {
    node_with(bus, id, SocketIoConfig::default())
}

/// [`node`] with Socket.IO options `sio` (the adapter is added).
fn node_with(bus: &Bus, id: &str, sio: SocketIoConfig) -> (SocketIo, ClusterAdapterFactory) {
    let config = ClusterConfig::new(id)
        .unwrap()
        .with_heartbeat_interval(Duration::from_millis(100))
        .with_heartbeat_timeout(Duration::from_millis(500));
    let (factory, _transport) = bus.node(config).unwrap();
    let io =
        SocketIo::new(EngineConfig::default().with_node_id(id), sio.with_adapter(Arc::new(factory.clone())));
    io.main_namespace().on_connection(|socket: SocketRef| async move {
        socket.join(["room"]);
    });
    (io, factory)
}

#[tokio::test]
async fn emits_and_server_side_emits_cross_nodes() {
    let bus = Bus::new();
    let (a, _fa) = node(&bus, "a");
    let (b, _fb) = node(&bus, "b");
    let (server_a, server_b) = (serve_io(&a).await, serve_io(&b).await);

    let (mut on_b, _) = Client::ws_connected(&server_b).await;
    bus.settle().await;

    // A room emit on node a reaches the client of node b.
    a.main_namespace().to("room").emit("hello", vec![json(serde_json::json!("from a"))]).await.unwrap();
    let (args, _) = on_b.expect_event("hello").await;
    assert_eq!(args, vec![json(serde_json::json!("from a"))]);

    // Node b's listener answers node a's server-side emit.
    b.main_namespace().on_server_side("ping", |event| {
        let n = match event.args.first() {
            Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
            _ => 0,
        };
        if let Some(ack) = event.ack {
            ack.send(vec![Value::from(n + 1)]);
        }
    });
    // Wait until a knows b (membership by heartbeat), then ask.
    let ns = a.main_namespace();
    for _ in 0..50 {
        if ns.adapter().server_count().await.unwrap() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answers =
        ns.server_side_emit_with_ack("ping", vec![Value::from(41u64)], Duration::from_secs(2)).await.unwrap();
    assert_eq!(answers, vec![vec![Value::from(42u64)]]);

    // No listener on b: the emitter's wait ends with its timeout, as in socket.io.
    let started = std::time::Instant::now();
    let silent = ns.server_side_emit_with_ack("nobody", Vec::new(), Duration::from_millis(300)).await;
    assert!(silent.is_err(), "an unanswered server-side emit must time out, got {silent:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(server_a);
}

/// A node whose sockets join the room named by a `join(room)` event, then ack it; short heartbeats.
fn joining_node(bus: &Bus, id: &str) -> SocketIo {
    let (factory, _transport) = bus.node(ClusterConfig::new(id).unwrap()).unwrap();
    let engine = EngineConfig::default()
        .with_node_id(id)
        .with_ping_interval(Duration::from_millis(100))
        .with_ping_timeout(Duration::from_millis(100));
    let io = SocketIo::new(engine, SocketIoConfig::default().with_adapter(Arc::new(factory)));
    io.main_namespace().on_connection(|socket: SocketRef| async move {
        socket.on("join", |socket: SocketRef, mut event: Event| async move {
            let room: String = event.arg(0).unwrap_or_default();
            let _ = socket.join([room]);
            event.ack(vec![Value::from("joined")]);
        });
    });
    io
}

/// A join whose room subscription the broker has not confirmed holds the client's packets (the
/// join's ack, and what is sent after) until it is confirmed; pings still go out, so the held
/// session stays alive; once the ack arrives, another node's emits to the room reach the client.
async fn a_join_holds_the_clients_packets_until_confirmed(polling: bool) {
    let bus = Bus::new();
    let (a, _fa) = node(&bus, "a");
    let b = joining_node(&bus, "b");
    let (_server_a, server_b) = (serve_io(&a).await, serve_io(&b).await);
    let mut client = match polling {
        true => Client::polling(&server_b).await,
        false => Client::ws(&server_b).await,
    };
    client.connect("/", None).await.expect("connect to /");
    bus.settle().await;

    bus.hold_subscriptions(true);
    client.emit_with_ack("join", vec![Value::from("fresh")], 1).await;
    let hold = Duration::from_millis(400);
    let ((answer, answered), released) = tokio::join!(
        async {
            let answer = client.next_packet().await;
            (answer, tokio::time::Instant::now())
        },
        async {
            tokio::time::sleep(hold).await;
            bus.hold_subscriptions(false);
            tokio::time::Instant::now()
        }
    );
    match answer {
        Packet::Ack { id: 1, args, .. } => assert_eq!(args, vec![Value::from("joined")]),
        other => panic!("the join's ack expected, got {other:?}"),
    }
    assert!(
        answered >= released,
        "the ack left {:?} before the subscription was confirmed",
        released - answered
    );
    assert!(client.pings >= 2, "pings go out while packets are held ({} seen)", client.pings);

    a.main_namespace().to("fresh").emit("hello", vec![Value::from("from a")]).await.unwrap();
    let (args, _) = client.expect_event("hello").await;
    assert_eq!(args, vec![Value::from("from a")]);
}

#[tokio::test]
async fn a_join_holds_a_websocket_clients_packets_until_confirmed() {
    a_join_holds_the_clients_packets_until_confirmed(false).await;
}

#[tokio::test]
async fn a_join_holds_a_polling_clients_packets_until_confirmed() {
    a_join_holds_the_clients_packets_until_confirmed(true).await;
}

#[tokio::test]
async fn deliveries_are_counted_on_the_node_that_makes_them() {
    let bus = Bus::new();
    let (a, _fa) = node(&bus, "a");
    let (b, _fb) = node(&bus, "b");
    let (server_a, server_b) = (serve_io(&a).await, serve_io(&b).await);
    let (mut on_a, _) = Client::ws_connected(&server_a).await;
    let (mut on_b1, _) = Client::ws_connected(&server_b).await;
    let (mut on_b2, _) = Client::ws_connected(&server_b).await;
    bus.settle().await;
    let ns = a.main_namespace();
    for _ in 0..50 {
        if ns.adapter().server_count().await.unwrap() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deliveries = |io: &SocketIo| {
        let text = String::from_utf8(switchboard::metrics::render(io.engine().registry())).unwrap();
        text.lines().find_map(|l| l.strip_prefix("switchboard_deliveries_total ")?.parse::<u64>().ok())
    };

    // A plain room emit from a: one socket here, two on b.
    ns.to("room").emit("plain", vec![]).await.unwrap();
    for client in [&mut on_a, &mut on_b1, &mut on_b2] {
        client.expect_event("plain").await;
    }
    // Counted just after the packets were queued, so possibly after a client read them: waited for.
    wait_until("1 delivery on a, 2 on b", STEP, || (deliveries(&a), deliveries(&b)) == (Some(1), Some(2)))
        .await;

    // With acks: each node counts its own recipients, not the cluster's.
    let asking = tokio::spawn(async move { ns.to("room").emit_with_ack("ask", vec![]).await });
    for client in [&mut on_a, &mut on_b1, &mut on_b2] {
        let (_, id) = client.expect_event("ask").await;
        client.ack("/", id.unwrap(), vec![]).await;
    }
    assert_eq!(asking.await.unwrap().unwrap().len(), 3);
    // Summed over the nodes: 6 = 2 broadcasts × 3 sockets.
    wait_until("2 deliveries on a, 4 on b", STEP, || (deliveries(&a), deliveries(&b)) == (Some(2), Some(4)))
        .await;
}

/// A polling client of `/` on `server` whose handshake carried `headers`.
async fn polling_client_with_headers(server: &TestServer, headers: &[(&str, &str)]) {
    let open = server.get_query("EIO=4&transport=polling", headers).await;
    let sid = parse_open(open.text())["sid"].as_str().expect("sid").to_owned();
    server.post_ok(&sid, "40").await;
    let answer = server.get(&sid).await;
    assert!(answer.text().starts_with(r#"40{"sid":"#), "CONNECT answer expected: {answer:?}");
}

/// The request headers of every socket of `/`, as node `io` fetches them from the cluster.
async fn fetched_headers(io: &SocketIo) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let sockets = io.main_namespace().broadcast().fetch_sockets().await.expect("fetchSockets");
    sockets.iter().map(|s| s.info().handshake["headers"].as_object().cloned().expect("headers")).collect()
}

#[tokio::test]
async fn fetched_sockets_carry_no_credentials_unless_asked() {
    let headers = [("cookie", "session=secret"), ("authorization", "Bearer secret"), ("x-app", "kept")];
    for keep in [false, true] {
        let bus = Bus::new();
        let (a, _fa) = node_with(&bus, "a", SocketIoConfig::default().with_fetch_sockets_credentials(keep));
        let (b, _fb) = node_with(&bus, "b", SocketIoConfig::default().with_fetch_sockets_credentials(keep));
        let (_server_a, server_b) = (serve_io(&a).await, serve_io(&b).await);
        polling_client_with_headers(&server_b, &headers).await;
        bus.settle().await;
        // Once a knows b (membership by heartbeat), a's fetch includes b's socket.
        let seen =
            switchboard_testkit::eventually(STEP, || async { fetched_headers(&a).await.len() == 1 }).await;
        assert!(seen, "node a never fetched b's socket (keep: {keep})");
        let fetched = fetched_headers(&a).await;
        assert_eq!(fetched.len(), 1, "node a fetches b's socket (keep: {keep})");
        let got = &fetched[0];
        assert_eq!(got.get("x-app"), Some(&serde_json::json!("kept")), "{got:?}");
        for name in ["cookie", "authorization"] {
            assert_eq!(got.contains_key(name), keep, "{name} in fetched headers (keep: {keep}): {got:?}");
        }
        // The socket's own node sees the same as the others.
        let local = fetched_headers(&b).await;
        assert_eq!(local, fetched);
    }
}

/// A program on the broker answers a node's ack broadcast in a peer's name, claiming 2^64 - 1
/// recipients: the emitter's call still ends with its own client's answer (the forged count is
/// not believed, and counted), where the count used to abort the emitter on `capacity overflow`.
#[tokio::test]
async fn a_forged_client_count_does_not_take_down_an_ack_broadcast() {
    use switchboard_adapter::cluster::{Message, Route, Transport, codec};

    let bus = Bus::new();
    let (a, fa) = node(&bus, "a");
    let (fb, tb) = bus
        .node(
            ClusterConfig::new("b")
                .unwrap()
                .with_heartbeat_interval(Duration::from_millis(100))
                .with_heartbeat_timeout(Duration::from_millis(500)),
        )
        .unwrap();
    let _b = fb.create_cluster_adapter("/");
    let server_a = serve_io(&a).await;
    let (mut on_a, _) = Client::ws_connected(&server_a).await;
    let ns = a.main_namespace();
    wait_until("a counts b", STEP, || fa.adapter("/").is_some_and(|x| x.peers().len() == 1)).await;
    // b stays in a's membership a moment longer, deaf: only the forger answers for it.
    bus.isolate(tb.index(), true);
    let (intruder, _) = bus.connect();
    let asking = tokio::spawn(async move {
        ns.broadcast().timeout(Duration::from_secs(1)).emit_with_ack("ask", vec![]).await
    });
    let (_, id) = on_a.expect_event("ask").await;
    on_a.ack("/", id.unwrap(), vec![Value::from("mine")]).await;
    // The ack broadcast is the first request of a's `/`.
    let forged = Message::BroadcastClientCount { request_id: 1, count: u64::MAX };
    intruder.publish(&Route::Node("a".into()), codec::encode("b", "/", &forged).unwrap()).unwrap();
    let answers = asking.await.expect("the emitter survives the forged count");
    let answers = answers.expect("only the forged node is missing, and it is not counted");
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].args, vec![Value::from("mine")]);
    assert_eq!(fa.stats().malformed, 1);
}
