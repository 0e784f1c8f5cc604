//! A broker outage is not a node outage: the real binary with its broker down at start-up, or
//! killed under it. The node answers `/readyz` 200 throughout and serves its own clients; the
//! outage shows in `switchboard_adapter_connected`; once the broker is there, cross-node
//! broadcasts work without restarting the node.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::hostile::{Bystander, Node};
use switchboard_testkit::{NatsServer, RedisServer, eventually};

const SECOND: Duration = Duration::from_secs(1);
/// How long a node may take to notice its broker came or went (reconnect backoff is 1 s at most).
const NOTICE: Duration = Duration::from_secs(10);

/// `GET path` on the node's public port (which serves the ops endpoints without --metrics-port):
/// the status code and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// The value of the sample named exactly `series`, if the node exports it.
fn sample(node: &Node, series: &str) -> Option<f64> {
    get(node.addr, "/metrics")
        .1
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits until the node's broker gauge reads `up` (1 or 0).
async fn wait_connected(node: &Node, up: f64, what: &str) {
    let seen =
        eventually(NOTICE, || std::future::ready(sample(node, "switchboard_adapter_connected") == Some(up)))
            .await;
    assert!(seen, "{what}: switchboard_adapter_connected never read {up}:\n{}", get(node.addr, "/metrics").1);
}

fn assert_ready(node: &Node, when: &str) {
    assert_eq!(get(node.addr, "/readyz"), (200, "ready\n".to_owned()), "/readyz {when}");
    assert_eq!(sample(node, "switchboard_ready"), Some(1.0), "switchboard_ready {when}");
}

/// Whether `msg` with `data` reaches `client` within `limit`.
async fn receives(client: &mut Bystander, data: u64, limit: Duration) -> bool {
    let wanted = format!("2[\"msg\",{data}]");
    client.next_message(limit, |m| m == wanted).await.is_some()
}

/// Broadcasts through node `from` until node `to`'s client receives one: the first broadcasts
/// may leave before the nodes have counted each other.
async fn broadcast_crosses(from: &mut Bystander, to: &mut Bystander) -> bool {
    for data in 1..=20u64 {
        let acked = from.emit_acked("broadcast", &format!("{{\"data\":{data}}}"), 5 * SECOND).await;
        assert!(acked.is_some(), "broadcast {data} not acked within 5 s");
        if receives(to, data, Duration::from_millis(500)).await {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_without_redis_serves_its_clients_then_joins_the_cluster_when_redis_appears() {
    let _alone = common::hostile::one_at_a_time().await;
    let mut redis = RedisServer::start();
    redis.kill();
    let url = redis.url();
    let args = ["--adapter", "redis", "--redis-url", &url];

    // Started while Redis is down: up, ready, serving; the gauge says the broker is missing.
    let first = Node::start(&args);
    assert_ready(&first, "with the broker down at start-up");
    assert_eq!(sample(&first, "switchboard_adapter_connected"), Some(0.0));
    let mut bystander = Bystander::connect(&first).await;
    bystander.echo_within(SECOND).await;

    // Redis appears: the node connects on its own, and a second node's clients hear it.
    redis.restart();
    wait_connected(&first, 1.0, "after redis started").await;
    assert_ready(&first, "with the broker up");
    let second = Node::start(&args);
    wait_connected(&second, 1.0, "second node").await;
    let (mut a, mut b) = (Bystander::connect(&first).await, Bystander::connect(&second).await);
    assert!(
        broadcast_crosses(&mut a, &mut b).await,
        "a broadcast on the first node never reached the second"
    );
    assert!(
        broadcast_crosses(&mut b, &mut a).await,
        "a broadcast on the second node never reached the first"
    );

    // Redis goes away under the nodes: still ready and serving, the gauge reads 0.
    redis.kill();
    wait_connected(&first, 0.0, "after redis died").await;
    assert_ready(&first, "with the broker killed");
    assert_eq!(get(first.addr, "/healthz").0, 200);
    bystander.echo_within(SECOND).await;
    // The broadcast reaches the sender's own client before its ack does.
    assert!(a.send("42[\"broadcast\",{\"data\":99}]").await);
    assert!(receives(&mut a, 99, SECOND).await, "local delivery goes on while the broker is down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_without_nats_serves_its_clients_then_connects_when_nats_appears() {
    let _alone = common::hostile::one_at_a_time().await;
    let mut nats = NatsServer::start();
    nats.kill();
    let url = nats.url();
    let node = Node::start(&["--adapter", "nats", "--nats-url", &url]);
    assert_ready(&node, "with the broker down at start-up");
    assert_eq!(sample(&node, "switchboard_adapter_connected"), Some(0.0));
    let mut bystander = Bystander::connect(&node).await;
    bystander.echo_within(SECOND).await;

    nats.restart();
    wait_connected(&node, 1.0, "after nats started").await;
    nats.kill();
    wait_connected(&node, 0.0, "after nats died").await;
    assert_ready(&node, "with the broker killed");
    bystander.echo_within(SECOND).await;
}
