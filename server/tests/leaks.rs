//! No session outlives its clients: after many polling and websocket clients close, fail, vanish or
//! time out, `Engine::session_count()` returns to 0; shutdown closes everything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{STEP, TestServer, WsEvent, fast_heartbeat, start, within};
use futures_util::future::join_all;

/// Idle sessions die at 1.5 s: long enough to count them all first, short enough for a fast test.
const INTERVAL: u64 = 1000;
const TIMEOUT: u64 = 500;

async fn polling_client(server: Arc<TestServer>, sid: String, kind: usize) {
    match kind {
        // Close packet.
        0 => server.post_ok(&sid, "1").await,
        // Close packet while a GET is pending.
        1 => {
            let pending = server.spawn_get(&sid);
            server.post_ok(&sid, "4x").await;
            server.post_ok(&sid, "1").await;
            let _ = within(STEP, "pending GET", pending).await;
        }
        // Parse error.
        2 => assert_eq!(server.post(&sid, "abc").await.status, 400),
        // Overlapping GETs.
        3 => {
            let a = server.spawn_get(&sid);
            let b = server.spawn_get(&sid);
            let _ = within(STEP, "overlapping GETs", async { (a.await, b.await) }).await;
        }
        // Upgrade, then the websocket vanishes.
        _ => {
            let mut ws = server.upgrade(&sid).await;
            ws.send_text("4sync").await;
            assert_eq!(ws.recv_text().await, "4sync");
            drop(ws);
        }
    }
}

async fn websocket_client(mut ws: common::Ws, kind: usize) {
    match kind {
        // Close packet.
        0 => {
            ws.send_text("1").await;
            ws.expect_closed(STEP).await;
        }
        // Websocket close frame.
        1 => ws.send_close().await,
        // Parse error.
        2 => {
            ws.send_text("xyz").await;
            ws.expect_closed(STEP).await;
        }
        // TCP connection dropped mid-session.
        _ => {
            ws.send_text("4bye").await;
            drop(ws);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_return_to_zero_after_many_clients() {
    let server = Arc::new(start(fast_heartbeat(INTERVAL, TIMEOUT)).await);

    let mut polling = Vec::new();
    for _ in 0..40 {
        polling.push(server.handshake_polling().await);
    }
    let mut sockets = Vec::new();
    for _ in 0..40 {
        sockets.push(server.handshake_ws().await.0);
    }
    // Created last, so they are young when counted: these never answer a ping.
    let mut idle_polling = Vec::new();
    for _ in 0..10 {
        idle_polling.push(server.handshake_polling().await);
    }
    let mut idle_sockets = Vec::new();
    for _ in 0..10 {
        idle_sockets.push(server.handshake_ws().await.0);
    }
    assert_eq!(server.engine.session_count(), 100);

    let polling_done =
        join_all(polling.into_iter().enumerate().map(|(i, sid)| polling_client(server.clone(), sid, i % 5)));
    let ws_done = join_all(sockets.into_iter().enumerate().map(|(i, ws)| websocket_client(ws, i % 4)));
    within(Duration::from_secs(30), "clients", async { tokio::join!(polling_done, ws_done) }).await;

    server.wait_sessions(0, Duration::from_secs(15)).await;
    for ws in &mut idle_sockets {
        let seen = ws.expect_closed(STEP).await;
        assert!(seen.iter().all(|e| matches!(e, WsEvent::Text(t) if t == "2" || t == "1")), "{seen:?}");
    }
    for sid in &idle_polling {
        server.get(sid).await.assert_error(400, 1, "Session ID unknown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_session() {
    let server = start(common::config()).await;
    let mut sids = Vec::new();
    for _ in 0..10 {
        sids.push(server.handshake_polling().await);
    }
    let mut pending = server.spawn_get(&sids[0]);
    let mut sockets = Vec::new();
    for _ in 0..10 {
        sockets.push(server.handshake_ws().await.0);
    }
    assert!(tokio::time::timeout(Duration::from_millis(100), &mut pending).await.is_err());
    assert_eq!(server.engine.session_count(), 20);

    server.shutdown();
    server.wait_sessions(0, STEP).await;
    within(STEP, "pending GET at shutdown", pending).await.expect("GET task").assert_ok_body("1");
    for ws in &mut sockets {
        ws.expect_closed(STEP).await;
    }
}
