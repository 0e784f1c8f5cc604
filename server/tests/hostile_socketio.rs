//! Hostile clients of the Socket.IO layer against the real binary (`--app bench`, default limits):
//! binary attachments that add up past `maxHttpBufferSize`, a slow consumer of broadcasts, long
//! room and namespace names and rooms without end, and a long room on a NATS-backed node. In
//! each, the node stays up with its RSS growth under the bound stated, a bystander's acked echo
//! keeps answering within 1 s, and the attacking connection is closed where it should be.
//!
//! Dynamic namespaces (the bench app has none) and fetchSockets credentials are proven in-process
//! (`socketio_connect.rs`, `socketio_cluster.rs`), as are the acks of broadcasts a client never
//! answers (`socketio_rooms.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::time::Duration;

use common::hostile::{Bystander, Node, Raw};
use switchboard_testkit::NatsServer;
use tokio::task::JoinHandle;

/// One MiB, in the KiB `Node::rss_kib` counts.
const MIB: u64 = 1024;

/// Runs `attack` in its own task while the bystander echoes, each echo within 1 s; returns the
/// attack's result once it is done (at most `limit`).
async fn during<T: Send + 'static>(
    bystander: &mut Bystander,
    limit: Duration,
    attack: impl Future<Output = T> + Send + 'static,
) -> T {
    let mut attack: JoinHandle<T> = tokio::spawn(attack);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        bystander.echo_within(Duration::from_secs(1)).await;
        if let Ok(done) = tokio::time::timeout(Duration::from_millis(20), &mut attack).await {
            return done.expect("the attack task");
        }
        assert!(tokio::time::Instant::now() < deadline, "the attack did not end within {limit:?}");
    }
}

/// One attacker: announces 41 binary attachments of 512 KiB and sends 40 (each within
/// `maxHttpBufferSize`, 1 MB), so a node that bounded only their count would hold 20 MiB for it
/// until the connection ends. Returns whether the server closed the connection.
async fn attach_without_end(mut raw: Raw) -> bool {
    let placeholders: Vec<String> =
        (0..41).map(|n| format!(r#"{{"_placeholder":true,"num":{n}}}"#)).collect();
    let text = format!(r#"4541-["echo",{}]"#, placeholders.join(","));
    if raw.send(&text).await {
        for _ in 0..40 {
            if !raw.send_binary(vec![0x5a; 512 * 1024]).await {
                break;
            }
        }
    }
    raw.closed_by_server_within(Duration::from_secs(5)).await
}

/// Item 1. Four attackers would make a node that holds attachments up to their count alone grow
/// by 80 MiB; bound: +16 MiB, and every attacker closed (at its second attachment, as text and
/// attachments together pass 1 MB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_past_max_http_buffer_size_close_the_attacker() {
    let _alone = common::hostile::one_at_a_time().await;
    let mut node = Node::start(&[]);
    let before = node.rss_kib();
    let mut bystander = Bystander::connect(&node).await;
    let mut attackers = Vec::new();
    for _ in 0..4 {
        attackers.push(Raw::connect(&node).await);
    }
    let closed = during(&mut bystander, Duration::from_secs(30), async move {
        let attacks: Vec<_> =
            attackers.into_iter().map(|raw| tokio::spawn(attach_without_end(raw))).collect();
        let mut closed = Vec::new();
        for attack in attacks {
            closed.push(attack.await.expect("attacker task"));
        }
        closed
    })
    .await;
    assert_eq!(closed, [true; 4], "attackers the server did not close");
    bystander.echo_within(Duration::from_secs(1)).await;
    node.assert_alive_and_bounded(before, 16 * MIB, "binary attachments past maxHttpBufferSize");
}

/// Item 2. A client joins a room and stops reading; another broadcasts 120 packets of 64 KiB to
/// the room. Its queue fills, so it is closed, and what was queued for it is freed: every
/// broadcast is acked (bench acks once each local receiver's transport took the packet or was
/// closed) well before the 10 s a kept queue would make each wait. Bound: +16 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_and_what_was_queued_for_it_freed() {
    let _alone = common::hostile::one_at_a_time().await;
    let mut node = Node::start(&[]);
    let before = node.rss_kib();
    let mut bystander = Bystander::connect(&node).await;
    let mut slow = Raw::connect(&node).await;
    assert!(slow.send(r#"421["join","slow"]"#).await);
    assert!(slow.next_message(Duration::from_secs(5), |m| m == "31[]").await.is_some(), "join not acked");
    let mut pusher = Raw::connect(&node).await;

    let acked_within = during(&mut bystander, Duration::from_secs(30), async move {
        let data = "x".repeat(64 * 1024);
        let started = tokio::time::Instant::now();
        for id in 1..=120 {
            let event = format!(r#"42{id}["broadcast",{{"room":"slow","event":"flood","data":"{data}"}}]"#);
            assert!(pusher.send(&event).await, "the pusher was disconnected");
        }
        let mut acked = 0;
        while acked < 120 {
            let ack = pusher.next_message(Duration::from_secs(15), |m| m.starts_with('3')).await;
            assert!(ack.is_some(), "only {acked} of 120 broadcasts acked");
            acked += 1;
        }
        started.elapsed()
    })
    .await;
    assert!(
        acked_within < Duration::from_secs(5),
        "the broadcasts were acked after {acked_within:?}: the slow client's queue was kept"
    );
    assert!(slow.closed_by_server_within(Duration::from_secs(10)).await, "the slow consumer was not closed");
    bystander.echo_within(Duration::from_secs(1)).await;
    node.assert_alive_and_bounded(before, 16 * MIB, "a slow consumer of 7.5 MiB of broadcasts");
}

/// The bench `join` of `room` with ack id `id`.
fn join_event(id: u64, room: &str) -> String {
    format!(r#"42{id}["join","{room}"]"#)
}

/// The name of room `i` of the flood: 250 bytes, within the default name limit (256).
fn flood_room(i: usize) -> String {
    format!("{i:0>250}")
}

/// Item 3, on one node. The attacker joins 40,000 rooms of 250 bytes, some 20 MiB of rooms for a
/// node without a cap (and seconds of work if each join searched a list): only the first 1,000
/// (the default cap) are joined, cheaply. A 5,000-byte room is refused; a CONNECT to a
/// 5,000-byte namespace gets CONNECT_ERROR and the connection stays. Bound: +8 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_names_are_refused_and_rooms_per_socket_capped() {
    let _alone = common::hostile::one_at_a_time().await;
    let mut node = Node::start(&[]);
    let before = node.rss_kib();
    let mut bystander = Bystander::connect(&node).await;
    let attacker = Raw::connect(&node).await;
    let mut pusher = Raw::connect(&node).await;

    let mut attacker = during(&mut bystander, Duration::from_secs(60), async move {
        let mut attacker = attacker;
        // In batches, reading the acks of each, so the attacker's own queue never fills.
        for batch in 0..40 {
            for i in batch * 1_000..(batch + 1) * 1_000 {
                assert!(attacker.send(&join_event(100 + i as u64, &flood_room(i))).await, "closed at {i}");
            }
            for acked in 0..1_000 {
                let ack = attacker.next_message(Duration::from_secs(20), |m| m.starts_with('3')).await;
                assert!(ack.is_some(), "batch {batch}: only {acked} of 1,000 joins acked");
            }
        }
        attacker
    })
    .await;
    node.assert_alive_and_bounded(before, 8 * MIB, "40,000 rooms of 250 bytes");

    let long = "a".repeat(5_000);
    assert!(attacker.send(&join_event(1, &long)).await);
    assert!(attacker.next_message(Duration::from_secs(5), |m| m == "31[]").await.is_some());
    // The first rooms were joined; the ones past the cap were not, nor the long one.
    let broadcast = |id: u64, room: &str, event: &str| {
        format!(r#"42{id}["broadcast",{{"room":"{room}","event":"{event}","data":{id}}}]"#)
    };
    for (id, room, event) in
        [(1, long.clone(), "long"), (2, flood_room(39_999), "past-cap"), (3, flood_room(0), "first")]
    {
        assert!(pusher.send(&broadcast(id, &room, event)).await);
        let acked = pusher.next_message(Duration::from_secs(5), |m| m.starts_with(&format!("3{id}["))).await;
        assert!(acked.is_some(), "broadcast to {event} not acked");
    }
    let next = attacker.next_message(Duration::from_secs(5), |m| m.starts_with("2[")).await;
    assert_eq!(next.as_deref(), Some(r#"2["first",3]"#), "the attacker's next event");

    let namespace = format!("/{long}");
    assert!(attacker.send(&format!("40{namespace},")).await);
    let refusal =
        attacker.next_message(Duration::from_secs(5), |m| m.starts_with('4')).await.unwrap_or_default();
    let refused = refusal == format!(r#"4{namespace},{{"message":"Namespace name too long"}}"#);
    assert!(
        refused,
        "CONNECT_ERROR expected, got {:.80}…{}",
        refusal,
        &refusal[refusal.len().saturating_sub(40)..]
    );
    // The connection stays: its socket of `/` still answers.
    assert!(attacker.send(r#"429["echo","still here"]"#).await);
    let echoed = attacker.next_message(Duration::from_secs(5), |m| m.starts_with("39[")).await;
    assert_eq!(echoed.as_deref(), Some(r#"39["still here"]"#));
    bystander.echo_within(Duration::from_secs(1)).await;
    node.assert_alive_and_bounded(before, 8 * MIB, "40,000 rooms of 250 bytes and 5,000-byte names");
}

/// Starts a bench node on `nats`.
fn nats_node(nats: &NatsServer) -> Node {
    Node::start(&["--adapter", "nats", "--nats-url", &nats.url()])
}

/// Emits `event` from `from` to room `x` until `to` (in room `x` on another node) gets it; whether
/// it did within 5 s.
async fn crosses(from: &mut Raw, to: &mut Raw, event: &str, first_id: u64) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut id = first_id;
    while tokio::time::Instant::now() < deadline {
        let emit = format!(r#"42{id}["broadcast",{{"room":"x","event":"{event}","data":{id}}}]"#);
        if !from.send(&emit).await {
            return false;
        }
        if to
            .next_message(Duration::from_millis(200), |m| m.starts_with(&format!(r#"2["{event}""#)))
            .await
            .is_some()
        {
            return true;
        }
        id += 1;
    }
    false
}

/// Item 3 with NATS: a 5,000-byte room would be a subject NATS refuses (its control line is
/// 4 KiB), and it drops the connection, in a loop, on every resubscription. The room is refused
/// before it reaches the broker: the node's broker link stays up, and a room emit from it still
/// crosses to another node. Bound: +8 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_room_never_reaches_nats() {
    let _alone = common::hostile::one_at_a_time().await;
    let nats = NatsServer::start();
    let mut node = nats_node(&nats);
    let other = nats_node(&nats);
    let before = node.rss_kib();
    let mut bystander = Bystander::connect(&node).await;
    let mut here = Raw::connect(&node).await;
    let mut there = Raw::connect(&other).await;
    assert!(there.send(&join_event(1, "x")).await);
    assert!(there.next_message(Duration::from_secs(5), |m| m == "31[]").await.is_some());
    assert!(crosses(&mut here, &mut there, "before", 100).await, "no cross-node emit before the attack");

    let mut attacker = Raw::connect(&node).await;
    let long = "a".repeat(5_000);
    assert!(attacker.send(&join_event(1, &long)).await);
    assert!(attacker.next_message(Duration::from_secs(5), |m| m == "31[]").await.is_some());
    // A second join makes the node (re)subscribe: the moment a refused subject would kill the link.
    assert!(attacker.send(&join_event(2, "y")).await);
    assert!(attacker.next_message(Duration::from_secs(5), |m| m == "32[]").await.is_some());

    let crossed = during(&mut bystander, Duration::from_secs(30), async move {
        let mut all = true;
        for round in 0..3 {
            all &= crosses(&mut here, &mut there, &format!("after-{round}"), 1_000 * (round + 1)).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        all
    })
    .await;
    assert!(crossed, "room emits stopped crossing to the other node after the long join");
    let log = nats.log();
    assert!(!log.to_lowercase().contains("maximum control line"), "NATS saw the long room:\n{log}");
    node.assert_alive_and_bounded(before, 8 * MIB, "a 5,000-byte room on NATS");
}
