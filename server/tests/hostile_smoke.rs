//! The hostile-client harness itself, against the real binary: a node starts with default limits,
//! its RSS is readable, and a bystander's acked echo answers within a second.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::hostile::{Bystander, Node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_node_answers_the_bystander_and_reports_its_memory() {
    let mut node = Node::start(&[]);
    let before = node.rss_kib();
    assert!(before > 1_000, "a running node uses more than 1 MiB: {before} KiB");
    let mut bystander = Bystander::connect(&node).await;
    for _ in 0..10 {
        bystander.echo_within(Duration::from_secs(1)).await;
    }
    node.assert_alive_and_bounded(before, 8 * 1024, "ten echoes");
}
