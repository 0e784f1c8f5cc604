//! The websocket transport on its own (`transport=websocket`, no sid): echo, parse errors, size
//! limit and client close.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{STEP, WsEvent, config, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_message_echoes() {
    let server = start(config()).await;
    let (mut ws, _, _) = server.handshake_ws().await;
    ws.send_text("4hello").await;
    assert_eq!(ws.recv_text().await, "4hello");
    ws.send_text("4héllo €😀").await;
    assert_eq!(ws.recv_text().await, "4héllo €😀");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_message_echoes_as_binary_frame_without_prefix() {
    let server = start(config()).await;
    let (mut ws, _, _) = server.handshake_ws().await;
    ws.send_binary(&[1, 2, 3, 4]).await;
    assert_eq!(ws.next_event().await, WsEvent::Binary(vec![1, 2, 3, 4]));
    ws.send_binary(&[]).await;
    assert_eq!(ws.next_event().await, WsEvent::Binary(vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_keep_their_order() {
    let server = start(config()).await;
    let (mut ws, _, _) = server.handshake_ws().await;
    for i in 0..50 {
        ws.send_text(&format!("4m{i}")).await;
    }
    for i in 0..50 {
        assert_eq!(ws.recv_text().await, format!("4m{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_text_packet_closes_the_websocket() {
    let server = start(config()).await;
    let (mut ws, sid, _) = server.handshake_ws().await;
    ws.send_text("abc").await;
    ws.expect_closed(STEP).await;
    server.wait_sessions(0, STEP).await;
    assert!(server.engine.session(&sid).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_bigger_than_max_buffer_closes_the_websocket() {
    let server = start(config().with_max_http_buffer_size(1000)).await;
    let (mut ws, _, _) = server.handshake_ws().await;
    ws.send_text(&format!("4{}", "x".repeat(2000))).await;
    let seen = ws.expect_closed(STEP).await;
    assert!(seen.is_empty(), "oversized message was answered: {seen:?}");
    server.wait_sessions(0, STEP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_message_bigger_than_max_buffer_closes_the_websocket() {
    let server = start(config().with_max_http_buffer_size(1000)).await;
    let (mut ws, _, _) = server.handshake_ws().await;
    ws.send_binary(&[7u8; 1500]).await;
    let seen = ws.expect_closed(STEP).await;
    assert!(seen.is_empty(), "oversized message was answered: {seen:?}");
    server.wait_sessions(0, STEP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_at_max_buffer_is_accepted() {
    let server = start(config().with_max_http_buffer_size(1000)).await;
    let (mut ws, _, _) = server.handshake_ws().await;
    let msg = format!("4{}", "x".repeat(999));
    ws.send_text(&msg).await;
    assert_eq!(ws.recv_text().await, msg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_packet_closes_and_removes_the_session() {
    let server = start(config()).await;
    let (mut ws, sid, _) = server.handshake_ws().await;
    assert_eq!(server.engine.session_count(), 1);
    ws.send_text("1").await;
    ws.expect_closed(STEP).await;
    server.wait_sessions(0, STEP).await;
    assert!(server.engine.session(&sid).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_close_frame_removes_the_session() {
    let server = start(config()).await;
    let (mut ws, _, _) = server.handshake_ws().await;
    ws.send_close().await;
    server.wait_sessions(0, STEP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_removes_the_session() {
    let server = start(config()).await;
    let (ws, _, _) = server.handshake_ws().await;
    drop(ws);
    server.wait_sessions(0, STEP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_independent() {
    let server = start(config()).await;
    let (mut a, _, _) = server.handshake_ws().await;
    let (mut b, _, _) = server.handshake_ws().await;
    a.send_text("4for-a").await;
    b.send_text("4for-b").await;
    assert_eq!(a.recv_text().await, "4for-a");
    assert_eq!(b.recv_text().await, "4for-b");
    a.expect_silence(Duration::from_millis(50)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_text_message_is_reassembled() {
    let server = start(config()).await;
    let (mut ws, _, _) = server.handshake_ws().await;
    ws.send_fragmented(false, &[b"4ab", b"cd", b"ef"]).await;
    assert_eq!(ws.recv_text().await, "4abcdef");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_binary_message_is_reassembled() {
    let server = start(config()).await;
    let (mut ws, _, _) = server.handshake_ws().await;
    ws.send_fragmented(true, &[&[1, 2], &[3], &[4, 5]]).await;
    assert_eq!(ws.next_event().await, WsEvent::Binary(vec![1, 2, 3, 4, 5]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_message_bigger_than_max_buffer_closes_the_websocket() {
    let server = start(config().with_max_http_buffer_size(1000)).await;
    let (mut ws, _, _) = server.handshake_ws().await;
    let part = vec![b'x'; 400];
    // Each frame is under the limit; the message (1201 bytes) is not.
    ws.send_fragmented(false, &[b"4", &part, &part, &part]).await;
    let seen = ws.expect_closed(STEP).await;
    assert!(seen.is_empty(), "oversized fragmented message was answered: {seen:?}");
    server.wait_sessions(0, STEP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_message_at_max_buffer_is_accepted() {
    let server = start(config().with_max_http_buffer_size(1000)).await;
    let (mut ws, _, _) = server.handshake_ws().await;
    let part = vec![b'x'; 333];
    ws.send_fragmented(false, &[b"4", &part, &part, &part]).await;
    assert_eq!(ws.recv_text().await, format!("4{}", "x".repeat(999)));
}
