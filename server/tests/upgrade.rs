//! Polling → websocket upgrade: probe, noop to the pending poll, switch on `5`, queued messages,
//! duplicate websockets and the upgrade timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{STEP, WsEvent, config, start, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_is_answered() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let mut ws = server.ws_for(&sid).await;
    ws.send_text("2probe").await;
    assert_eq!(ws.recv_text().await, "3probe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_get_answers_noop_after_probe() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let mut pending = server.spawn_get(&sid);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), &mut pending).await.is_err(),
        "GET answered with nothing queued"
    );
    let mut ws = server.ws_for(&sid).await;
    ws.send_text("2probe").await;
    assert_eq!(ws.recv_text().await, "3probe");
    let probed = Instant::now();
    let resp = within(STEP, "pending GET after probe", pending).await.expect("GET task");
    let waited = probed.elapsed();
    resp.assert_ok_body("6");
    // Socket.io answers at once; allow scheduling slack on a loaded machine (pings are 60 s away).
    assert!(waited < Duration::from_millis(500), "pending GET answered {waited:?} after the probe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_flow_over_websocket_after_upgrade() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let mut ws = server.upgrade(&sid).await;
    ws.send_text("4over-ws").await;
    assert_eq!(ws.recv_text().await, "4over-ws");
    ws.send_binary(&[9, 8, 7]).await;
    assert_eq!(ws.next_event().await, WsEvent::Binary(vec![9, 8, 7]));
    assert_eq!(server.engine.session(&sid).expect("session").transport_name(), "websocket");
    assert_eq!(server.engine.session_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sends_go_to_websocket_only_after_upgrade() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let mut ws = server.upgrade(&sid).await;
    ws.send_text("4sync").await;
    assert_eq!(ws.recv_text().await, "4sync");
    server.engine.session(&sid).expect("session").send_text("from-server").expect("send");
    assert_eq!(ws.recv_text().await, "4from-server");
    server.get(&sid).await.assert_code(3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_queued_before_upgrade_arrive_over_websocket() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    // Echoes queued on the polling transport, never polled.
    server.post_ok(&sid, "4queued-1").await;
    server.post_ok(&sid, "bAQI=").await;
    let mut ws = server.upgrade(&sid).await;
    assert_eq!(ws.recv_text().await, "4queued-1");
    assert_eq!(ws.next_event().await, WsEvent::Binary(vec![1, 2]));
    ws.send_text("4after").await;
    assert_eq!(ws.recv_text().await, "4after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_posted_during_probe_arrive_once() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let mut ws = server.ws_for(&sid).await;
    ws.send_text("2probe").await;
    assert_eq!(ws.recv_text().await, "3probe");
    // Between probe and `5` the client may still POST; the echo must arrive exactly once.
    server.post_ok(&sid, "4mid-probe").await;
    ws.send_text("5").await;
    let got = server.get(&sid).await;
    let mut echoes = usize::from(got.status == 200 && got.text().contains("4mid-probe"));
    ws.send_text("4marker").await;
    loop {
        match ws.recv_text().await.as_str() {
            "4mid-probe" => echoes += 1,
            "4marker" => break,
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert_eq!(echoes, 1, "message posted during the probe delivered {echoes} times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_after_upgrade_is_code_3() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let mut ws = server.upgrade(&sid).await;
    ws.send_text("4sync").await;
    assert_eq!(ws.recv_text().await, "4sync");
    server.get(&sid).await.assert_code(3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_websocket_is_accepted_then_closed_while_first_works() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let mut first = server.upgrade(&sid).await;
    first.send_text("4sync").await;
    assert_eq!(first.recv_text().await, "4sync");

    // `ws_for` fails unless the server answered 101.
    let mut second = server.ws_for(&sid).await;
    second.expect_closed(STEP).await;

    first.send_text("4still-here").await;
    assert_eq!(first.recv_text().await, "4still-here");
    assert_eq!(server.engine.session_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_websocket_during_probe_is_closed_and_first_upgrade_completes() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let mut first = server.ws_for(&sid).await;
    first.send_text("2probe").await;
    assert_eq!(first.recv_text().await, "3probe");

    let mut second = server.ws_for(&sid).await;
    second.send_text_lossy("2probe").await;
    let seen = second.expect_closed(STEP).await;
    assert!(!seen.contains(&WsEvent::Text("3probe".into())), "second websocket was probed: {seen:?}");

    first.send_text("5").await;
    first.send_text("4ok").await;
    assert_eq!(first.recv_text().await, "4ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_without_probe_is_dropped_after_upgrade_timeout() {
    let server = start(config().with_upgrade_timeout(Duration::from_millis(300))).await;
    let sid = server.handshake_polling().await;
    let opened = Instant::now();
    let mut ws = server.ws_for(&sid).await;
    let seen = ws.expect_closed(STEP).await;
    let elapsed = opened.elapsed();
    assert!(seen.is_empty(), "unprobed websocket got {seen:?}");
    assert!(elapsed >= Duration::from_millis(250), "dropped after {elapsed:?}, before the upgrade timeout");

    // The session is still alive on polling.
    assert_eq!(server.engine.session_count(), 1);
    server.post_ok(&sid, "4still-polling").await;
    server.get(&sid).await.assert_ok_body("4still-polling");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_probed_but_not_upgraded_times_out_and_polling_resumes() {
    let server = start(config().with_upgrade_timeout(Duration::from_millis(300))).await;
    let sid = server.handshake_polling().await;
    let mut ws = server.ws_for(&sid).await;
    ws.send_text("2probe").await;
    assert_eq!(ws.recv_text().await, "3probe");
    ws.expect_closed(STEP).await;

    // Polling works again: a GET long-polls (no stale noop) and gets the echo.
    let mut pending = server.spawn_get(&sid);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), &mut pending).await.is_err(),
        "GET after an aborted upgrade answered at once"
    );
    server.post_ok(&sid, "4resumed").await;
    within(STEP, "GET after aborted upgrade", pending).await.expect("GET task").assert_ok_body("4resumed");

    // And a new upgrade attempt succeeds.
    let mut ws = server.upgrade(&sid).await;
    ws.send_text("4upgraded").await;
    assert_eq!(ws.recv_text().await, "4upgraded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_refused_when_upgrades_disabled() {
    let server = start(config().with_allow_upgrades(false)).await;
    let sid = server.handshake_polling().await;
    match server.try_ws(&format!("EIO=4&transport=websocket&sid={sid}")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400),
        Err(e) => panic!("expected HTTP 400, got {e}"),
        Ok(_) => panic!("upgrade accepted with allow_upgrades(false)"),
    }
    server.post_ok(&sid, "4poll").await;
    server.get(&sid).await.assert_ok_body("4poll");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_upgraded_websocket_ends_the_session() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let mut ws = server.upgrade(&sid).await;
    ws.send_text("4sync").await;
    assert_eq!(ws.recv_text().await, "4sync");
    ws.send_text("1").await;
    ws.expect_closed(STEP).await;
    server.wait_sessions(0, STEP).await;
    server.get(&sid).await.assert_error(400, 1, "Session ID unknown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_packet_without_probe_fails_the_upgrade_only() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let mut ws = server.ws_for(&sid).await;
    ws.send_text("5").await;
    let seen = ws.expect_closed(STEP).await;
    assert!(seen.is_empty(), "{seen:?}");
    assert_eq!(server.engine.session_count(), 1);
    server.post_ok(&sid, "4polling").await;
    server.get(&sid).await.assert_ok_body("4polling");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_dropped_after_probe_lets_polling_resume() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let mut ws = server.ws_for(&sid).await;
    ws.send_text("2probe").await;
    assert_eq!(ws.recv_text().await, "3probe");
    drop(ws);

    // Once the server has noticed, polls long-poll again instead of answering noops at once.
    let started = std::time::Instant::now();
    let pending = loop {
        assert!(started.elapsed() < STEP, "polling did not resume after the probing websocket dropped");
        let mut pending = server.spawn_get(&sid);
        match tokio::time::timeout(Duration::from_millis(100), &mut pending).await {
            Err(_) => break pending,
            Ok(done) => done.expect("GET task").assert_ok_body("6"),
        }
    };
    server.post_ok(&sid, "4back").await;
    within(STEP, "GET", pending).await.expect("GET task").assert_ok_body("4back");
    assert_eq!(server.engine.session_count(), 1);
}
