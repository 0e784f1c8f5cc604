//! The broker is not a root shell: the real binary on a real `redis-server`, and a program that
//! publishes on the cluster's channels without being a node (no cluster secret: the default).
//! Whatever it publishes, the node stays up, its RSS stays under the stated bound, the
//! bystander's acked echo answers within a second throughout, and the cluster link still works
//! afterwards (every message was read, counted, and the next honest one is understood).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::hostile::{Bystander, Node};
use switchboard_adapter::cluster::{Message, Route, Target, codec};
use switchboard_adapter::{BroadcastOptions, Room};
use switchboard_protocol::socketio::{Value, encode_event};
use switchboard_redis::channel;
use switchboard_testkit::mutate::{Rng, every_kind, forged_messages, mutate};
use switchboard_testkit::{RedisServer, eventually};

/// The binary's default `--cluster-prefix`.
const PREFIX: &str = "switchboard";
const SECOND: Duration = Duration::from_secs(1);

/// A bench node on `redis`, with a bystander connected and answering.
async fn node_on(redis: &RedisServer) -> (Node, Bystander) {
    let url = redis.url();
    let node = Node::start(&["--adapter", "redis", "--redis-url", &url]);
    let mut bystander = Bystander::connect(&node).await;
    bystander.echo_within(SECOND).await;
    (node, bystander)
}

fn node_id(node: &Node) -> String {
    format!("hostile-{}", node.addr.port())
}

fn namespace_channel() -> String {
    channel::name(&Route::Namespace("/".into()), PREFIX)
}

fn node_channel(node: &Node) -> String {
    channel::name(&Route::Node(node_id(node).into()), PREFIX)
}

/// The node's `/metrics` page.
fn metrics(node: &Node) -> String {
    let mut stream = TcpStream::connect(node.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).unwrap();
    page
}

/// The value of the sample named exactly `series` (with its labels), 0 if absent.
fn sample(page: &str, series: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Waits until the node has read `total` cluster messages (its receive counter), so everything
/// published before was handled, in order; at most 10 s.
async fn read_all(node: &Node, total: u64) {
    let done = eventually(Duration::from_secs(10), || {
        std::future::ready(sample(&metrics(node), "switchboard_adapter_receives_total") >= total)
    })
    .await;
    let page = metrics(node);
    assert!(
        done,
        "the node read {} of {total} cluster messages",
        sample(&page, "switchboard_adapter_receives_total")
    );
}

/// What the node has read so far.
fn received(node: &Node) -> u64 {
    sample(&metrics(node), "switchboard_adapter_receives_total")
}

/// An honest node's fetchSockets: the node answers it on that node's channel with its one
/// socket (the bystander's), which proves the cluster link still reads, decodes and acts.
async fn still_answers_the_cluster(redis: &RedisServer) {
    let mut answers = redis.subscribe(&channel::name(&Route::Node("honest-peer".into()), PREFIX)).await;
    let ask = Message::FetchSockets { request_id: 7, opts: BroadcastOptions::default() };
    redis.publish(&namespace_channel(), &codec::encode("honest-peer", "/", &ask).unwrap()).await;
    let answer = answers.next(Duration::from_secs(5)).await.expect("no answer to an honest fetchSockets");
    match codec::decode(&answer).map(|e| e.message) {
        Ok(Message::FetchSocketsResponse { request_id: 7, sockets }) => {
            assert_eq!(sockets.len(), 1, "the bystander's socket, nothing else: {sockets:?}")
        }
        other => panic!("not the answer: {other:?}"),
    }
}

fn errors(node: &Node, kind: &str) -> u64 {
    sample(&metrics(node), &format!("switchboard_adapter_errors_total{{kind=\"{kind}\"}}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_frames_and_forged_counts_on_the_cluster_channels() {
    let _alone = common::hostile::one_at_a_time().await;
    // Bounds: frames over the 4 MiB limit cost up to 4 times the largest, once (the Redis
    // client's read buffer and the allocator's arenas keep it): four of 5 MiB stay under 32 MiB.
    // After them, a socketsJoin naming 200,000 rooms, a room of 5,000 bytes, a client count of
    // 2^64 - 1 and 20,000 made-up nodes announcing themselves cost less than 16 MiB.
    const WARM_KIB: u64 = 32 * 1024;
    const BOUND_KIB: u64 = 16 * 1024;
    let redis = RedisServer::start();
    let (mut node, mut bystander) = node_on(&redis).await;
    let before = node.rss_kib();
    let start = received(&node);
    let (ns, me) = (namespace_channel(), node_channel(&node));

    // Frames over the limit: garbage, and a well-formed broadcast.
    let mut rng = Rng::new(14);
    let huge_broadcast = {
        let text = Value::from("x".repeat(5 << 20));
        let packet = encode_event("/", "e", &[text], None);
        let target = Target { opts: BroadcastOptions::default(), part: Target::WHOLE };
        codec::encode("peer", "/", &Message::Broadcast { target, packet }).unwrap()
    };
    let mut published = 0;
    for i in 0..4 {
        let frame = if i % 2 == 0 { Bytes::from(rng.bytes(5 << 20)) } else { huge_broadcast.clone() };
        published += redis.publish_all(&ns, &[frame]).await.len() as u64;
        bystander.echo_within(SECOND).await;
    }
    read_all(&node, start + published).await;
    node.assert_alive_and_bounded(before, WARM_KIB, "frames over the size limit");
    let warm = node.rss_kib();

    let whole = Target { opts: BroadcastOptions::default(), part: Target::WHOLE };
    let join = |rooms: Vec<Room>| {
        codec::encode("peer", "/", &Message::SocketsJoin { target: whole.clone(), rooms }).unwrap()
    };
    let many = (0..200_000).map(|i| Room::from(format!("r{i}"))).collect();
    let joins = [join(many), join(vec!["r".repeat(5_000).into()])];
    published += redis.publish_all(&ns, &joins).await.len() as u64;
    let count = Message::BroadcastClientCount { request_id: 1, count: u64::MAX };
    published += redis.publish_all(&me, &[codec::encode("peer", "/", &count).unwrap()]).await.len() as u64;
    bystander.echo_within(SECOND).await;
    for batch in 0..4 {
        let beats: Vec<Bytes> = (0..5_000)
            .map(|i| codec::encode(&format!("forged-{batch}-{i}"), "/", &Message::InitialHeartbeat).unwrap())
            .collect();
        published += redis.publish_all(&ns, &beats).await.len() as u64;
        bystander.echo_within(SECOND).await;
    }
    read_all(&node, start + published).await;
    bystander.echo_within(SECOND).await;
    node.assert_alive_and_bounded(warm, BOUND_KIB, "forged counts and lengths");
    assert!(errors(&node, "malformed") >= 7, "oversized frames and refused values are counted");
    let nodes = sample(&metrics(&node), "switchboard_cluster_nodes");
    assert!(nodes <= 1 + 1024, "made-up nodes are capped: {nodes}");
    still_answers_the_cluster(&redis).await;
}

/// A plain HTTP server standing for what a forged address points at: it records every request
/// line and answers each with `answer_len` bytes (no length announced: read until close).
fn lure(answer_len: usize) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let record = record.clone();
            std::thread::spawn(move || {
                let mut head = [0u8; 4096];
                let n = stream.read(&mut head).unwrap_or(0);
                let line = String::from_utf8_lossy(&head[..n]).lines().next().unwrap_or("").to_owned();
                record.lock().unwrap().push(line);
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n");
                let chunk = vec![b'4'; 1 << 20];
                for _ in 0..answer_len / chunk.len() {
                    if stream.write_all(&chunk).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

/// A polling GET for a session of `owner`, as a client would send it; returns the status code.
fn poll_session_of(addr: SocketAddr, owner: &str) -> u16 {
    let sid = format!("{owner}.{}", "A".repeat(22));
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!(
        "GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut status = [0u8; 12];
    stream.read_exact(&mut status).unwrap();
    String::from_utf8_lossy(&status[9..12]).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_forwarding_addresses_and_huge_answers() {
    let _alone = common::hostile::one_at_a_time().await;
    // Bound: 16 MiB of RSS growth, while the lure answers a forwarded poll with 256 MiB.
    const BOUND_KIB: u64 = 16 * 1024;
    let redis = RedisServer::start();
    let (mut node, mut bystander) = node_on(&redis).await;
    let before = node.rss_kib();
    let start = received(&node);
    let (port, seen) = lure(256 << 20);
    // Addresses that are not host:port (a path and query, user info, a URL), and a real one.
    let announced = [
        ("path", format!("127.0.0.1:{port}/admin?")),
        ("userinfo", format!("user@127.0.0.1:{port}")),
        ("url", format!("http://127.0.0.1:{port}/")),
        ("huge", format!("127.0.0.1:{port}")),
    ];
    let frames: Vec<Bytes> = announced
        .iter()
        .map(|(owner, address)| {
            codec::encode(owner, "/", &Message::Address { address: address.clone() }).unwrap()
        })
        .collect();
    let published = redis.publish_all(&namespace_channel(), &frames).await.len() as u64;
    read_all(&node, start + published).await;

    for owner in ["path", "userinfo", "url"] {
        assert_eq!(poll_session_of(node.addr, owner), 400, "{owner}: the client gets Session ID unknown");
    }
    assert!(seen.lock().unwrap().is_empty(), "a forged address was dialed: {:?}", seen.lock().unwrap());
    bystander.echo_within(SECOND).await;

    // A dialable owner whose answer never ends: cut at the limit, a failed forward.
    let addr = node.addr;
    let status = tokio::task::spawn_blocking(move || poll_session_of(addr, "huge"));
    bystander.echo_within(SECOND).await;
    assert_eq!(status.await.unwrap(), 400);
    let lines = seen.lock().unwrap().clone();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("GET /socket.io/?EIO=4&transport=polling&sid=huge."), "{lines:?}");
    bystander.echo_within(SECOND).await;
    node.assert_alive_and_bounded(before, BOUND_KIB, "a forwarded answer of 256 MiB");
    assert!(errors(&node, "malformed") >= 3, "addresses that are not host:port are counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_cluster_messages_replayed_on_redis() {
    let _alone = common::hostile::one_at_a_time().await;
    // Bound: 16 MiB of RSS growth over 6,000 mutated frames and 140 forged messages.
    const BOUND_KIB: u64 = 16 * 1024;
    let redis = RedisServer::start();
    let (mut node, mut bystander) = node_on(&redis).await;
    let before = node.rss_kib();
    let start = received(&node);
    let real = every_kind("peer", None);
    let mut rng = Rng::new(0x5eed_0014);
    let mut published = 0;
    for channel in [namespace_channel(), node_channel(&node)] {
        for _ in 0..3 {
            let batch: Vec<Bytes> =
                (0..1_000).map(|_| mutate(&real[rng.below(real.len())], &mut rng, None)).collect();
            published += redis.publish_all(&channel, &batch).await.len() as u64;
            bystander.echo_within(SECOND).await;
        }
    }
    let forged: Vec<Bytes> = (0..20)
        .flat_map(|_| forged_messages(&mut rng))
        .map(|m| codec::encode("peer", "/", &m).unwrap())
        .collect();
    published += redis.publish_all(&namespace_channel(), &forged).await.len() as u64;
    read_all(&node, start + published).await;
    bystander.echo_within(SECOND).await;
    node.assert_alive_and_bounded(before, BOUND_KIB, "mutated cluster messages");
    assert!(errors(&node, "malformed") > 0 && errors(&node, "unsupported") > 0);
    still_answers_the_cluster(&redis).await;
}
