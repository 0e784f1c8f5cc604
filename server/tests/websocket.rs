//! The websocket transport on its own (`transport=websocket`, no sid): echo, parse errors, size
//! limit, client close, and a client that does not read (coalesced pongs, the write timeout).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{STEP, TestServer, WsEvent, config, start, within};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

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

/// A raw websocket session (`transport=websocket`), the stream right after the 101 head; a small
/// receive buffer makes a client that does not read fill the server's socket buffers sooner.
async fn raw_websocket(server: &TestServer, recv_buffer: u32) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(recv_buffer).expect("SO_RCVBUF");
    let mut stream = socket.connect(server.addr).await.expect("connect");
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.uri("EIO=4&transport=websocket")
    );
    stream.write_all(request.as_bytes()).await.expect("write the upgrade request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(within(STEP, "the 101 head", stream.read_u8()).await.expect("read the head"));
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    stream
}

/// One final, masked client frame.
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n < 65536 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// The next server frame (unmasked): opcode and payload.
async fn server_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    within(STEP, "a server frame", async {
        let first = stream.read_u8().await.expect("frame");
        let len = match stream.read_u8().await.expect("frame") {
            126 => u64::from(stream.read_u16().await.expect("frame")),
            127 => stream.read_u64().await.expect("frame"),
            n => u64::from(n),
        };
        let mut payload = vec![0; len as usize];
        stream.read_exact(&mut payload).await.expect("frame payload");
        (first & 0x0f, payload)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_a_client_has_not_read_the_pongs_of_get_one_pong_for_the_latest() {
    let server = start(config()).await;
    let mut stream = raw_websocket(&server, 64 * 1024).await;
    let (_, open) = server_frame(&mut stream).await;
    assert!(open.starts_with(b"0{"), "open packet first");
    // 20,000 pings in one burst, then a message whose echo marks the end.
    let pings = 20_000u32;
    let mut burst: Vec<u8> = (0..pings).flat_map(|i| masked(0x9, &i.to_be_bytes())).collect();
    burst.extend(masked(0x1, b"4done"));
    stream.write_all(&burst).await.expect("write the pings");
    let mut pongs = Vec::new();
    loop {
        match server_frame(&mut stream).await {
            (0xA, payload) => pongs.push(payload),
            (0x1, text) => {
                assert_eq!(text, b"4done");
                break;
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert!(
        !pongs.is_empty() && pongs.len() < pings as usize / 10,
        "pongs of pings read together are coalesced: {} pongs for {pings} pings",
        pongs.len()
    );
    assert_eq!(
        pongs.last().map(Vec::as_slice),
        Some(&(pings - 1).to_be_bytes()[..]),
        "the latest ping is answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_after_the_write_timeout() {
    let timeout = Duration::from_millis(300);
    let server = start(config().with_write_timeout(timeout)).await;
    let mut stream = raw_websocket(&server, 4096).await;
    // Eight 600 kB messages, echoed back: more than the kernel's socket buffers take, so what is
    // left waits in the node for a client that reads nothing.
    let message = masked(0x2, &vec![7u8; 600_000]);
    let writer = tokio::spawn(async move {
        for _ in 0..8 {
            if stream.write_all(&message).await.is_err() {
                break;
            }
        }
        stream
    });
    server.wait_sessions(1, STEP).await;
    let started = std::time::Instant::now();
    // The session ends once the client took nothing for the write timeout (the heartbeat is a
    // minute away, and the queue never fills: the node stops reading first).
    server.wait_sessions(0, STEP).await;
    assert!(started.elapsed() >= timeout, "closed after {:?}, before the write timeout", started.elapsed());
    let stream = within(STEP, "the writer ends", writer).await.expect("writer task");
    drop(stream);
}
