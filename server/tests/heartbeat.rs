//! Heartbeats: the server pings every `pingInterval`, pongs keep a session alive, and a session with
//! no pong closes `pingTimeout` after the ping. Timing is the behaviour here, so it is measured with
//! a tolerance (50 ms early, 300 ms late) for a loaded machine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{STEP, fast_heartbeat, start, within};

const INTERVAL: u64 = 300;
const TIMEOUT: u64 = 200;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[track_caller]
fn assert_around(what: &str, elapsed: Duration, expected_ms: u64) {
    assert!(
        elapsed >= ms(expected_ms - 50) && elapsed <= ms(expected_ms + 300),
        "{what} after {elapsed:?}, expected about {expected_ms} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_ping_arrives_after_ping_interval_on_websocket() {
    let server = start(fast_heartbeat(INTERVAL, TIMEOUT)).await;
    let started = Instant::now();
    let (mut ws, _, _) = server.handshake_ws().await;
    assert_eq!(ws.recv_text().await, "2");
    assert_around("first ping", started.elapsed(), INTERVAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_ping_arrives_after_ping_interval_on_polling() {
    let server = start(fast_heartbeat(INTERVAL, TIMEOUT)).await;
    let started = Instant::now();
    let sid = server.handshake_polling().await;
    server.get(&sid).await.assert_ok_body("2");
    assert_around("first ping", started.elapsed(), INTERVAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pongs_keep_a_websocket_session_alive() {
    let server = start(fast_heartbeat(INTERVAL, TIMEOUT)).await;
    let started = Instant::now();
    let (mut ws, sid, _) = server.handshake_ws().await;
    for i in 0..4 {
        let ping = ws.recv_text().await;
        assert_eq!(ping, "2", "ping {i}");
        ws.send_text("3").await;
    }
    // Four full intervals, well past interval + timeout: still open and working.
    assert!(started.elapsed() >= ms(4 * INTERVAL - 50));
    ws.send_text("4alive").await;
    assert_eq!(ws.recv_text().await, "4alive");
    assert!(server.engine.session(&sid).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pongs_keep_a_polling_session_alive() {
    let server = start(fast_heartbeat(INTERVAL, TIMEOUT)).await;
    let sid = server.handshake_polling().await;
    let started = Instant::now();
    for i in 0..4 {
        let resp = server.get(&sid).await;
        assert_eq!(resp.text(), "2", "ping {i}: {resp:?}");
        server.post_ok(&sid, "3").await;
    }
    assert!(started.elapsed() >= ms(4 * INTERVAL - 50));
    server.post_ok(&sid, "4alive").await;
    server.get(&sid).await.assert_ok_body("4alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_are_spaced_by_ping_interval_after_each_pong() {
    let server = start(fast_heartbeat(INTERVAL, TIMEOUT)).await;
    let (mut ws, _, _) = server.handshake_ws().await;
    assert_eq!(ws.recv_text().await, "2");
    ws.send_text("3").await;
    let ponged = Instant::now();
    assert_eq!(ws.recv_text().await, "2");
    assert_around("second ping", ponged.elapsed(), INTERVAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_pong_closes_websocket_at_interval_plus_timeout() {
    let server = start(fast_heartbeat(INTERVAL, TIMEOUT)).await;
    let started = Instant::now();
    let (mut ws, sid, _) = server.handshake_ws().await;
    assert_eq!(ws.recv_text().await, "2");
    let seen = ws.expect_closed(STEP).await;
    assert_around("ping timeout close", started.elapsed(), INTERVAL + TIMEOUT);
    assert!(seen.iter().all(|e| *e == common::WsEvent::Text("1".into())), "frames before close: {seen:?}");
    server.wait_sessions(0, STEP).await;
    assert!(server.engine.session(&sid).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_pong_closes_polling_session_at_interval_plus_timeout() {
    let server = start(fast_heartbeat(INTERVAL, TIMEOUT)).await;
    let started = Instant::now();
    let sid = server.handshake_polling().await;
    server.get(&sid).await.assert_ok_body("2");
    // No pong: the next poll is answered with a close packet when the session times out.
    let resp = within(STEP, "poll until ping timeout", server.get(&sid)).await;
    assert_around("ping timeout close", started.elapsed(), INTERVAL + TIMEOUT);
    resp.assert_ok_body("1");
    server.get(&sid).await.assert_error(400, 1, "Session ID unknown");
    assert_eq!(server.engine.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_polling_session_without_get_times_out() {
    let server = start(fast_heartbeat(INTERVAL, TIMEOUT)).await;
    let sid = server.handshake_polling().await;
    server.wait_sessions(0, ms(INTERVAL + TIMEOUT + 2000)).await;
    server.get(&sid).await.assert_error(400, 1, "Session ID unknown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pong_over_upgraded_websocket_counts() {
    let server = start(fast_heartbeat(INTERVAL, TIMEOUT)).await;
    let sid = server.handshake_polling().await;
    let mut ws = server.upgrade(&sid).await;
    let started = Instant::now();
    while started.elapsed() < ms(3 * (INTERVAL + TIMEOUT)) {
        match ws.recv_text().await.as_str() {
            "2" => ws.send_text("3").await,
            other => panic!("unexpected frame {other:?}"),
        }
    }
    ws.send_text("4alive").await;
    assert_eq!(ws.recv_text().await, "4alive");
}
