//! HTTP long-polling: POST delivers, GET long-polls and batches, binary as base64, overlapping GETs
//! and POSTs, parse errors, client close, body size limit and timeout, and response compression.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{RS, STEP, chunked, config, request, start, try_send, within};
use http::{Method, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_answers_ok_and_message_echoes_on_next_get() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let resp = server.post(&sid, "4hello").await;
    assert_eq!(resp.header("cache-control"), Some("no-store"), "POST answer must not be cached");
    resp.assert_ok_body("ok");
    let resp = server.get(&sid).await;
    assert_eq!(resp.header("cache-control"), Some("no-store"), "a poll must not be cached");
    resp.assert_ok_body("4hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_packets_are_batched_in_one_get() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    server.post_ok(&sid, "4a").await;
    server.post_ok(&sid, "4b").await;
    server.post_ok(&sid, "4c").await;
    let resp = server.get(&sid).await;
    resp.assert_ok_body(&format!("4a{RS}4b{RS}4c"));
    assert_eq!(resp.text().split(RS).count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_post_may_carry_several_packets() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    server.post_ok(&sid, &format!("4x{RS}4y{RS}bAQIDBA==")).await;
    server.get(&sid).await.assert_ok_body(&format!("4x{RS}4y{RS}bAQIDBA=="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_message_echoes_as_base64() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    server.post_ok(&sid, "bAQIDBA==").await;
    server.get(&sid).await.assert_ok_body("bAQIDBA==");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utf8_message_round_trips() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    server.post_ok(&sid, "4héllo €😀").await;
    server.get(&sid).await.assert_ok_body("4héllo €😀");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_long_polls_until_something_is_queued() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let mut pending = server.spawn_get(&sid);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), &mut pending).await.is_err(),
        "GET answered with nothing queued"
    );
    server.post_ok(&sid, "4wake").await;
    let resp = within(STEP, "pending GET", pending).await.expect("GET task");
    resp.assert_ok_body("4wake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_close_the_session() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let mut first = server.spawn_get(&sid);
    // Give the first GET a head start so it is the pending one.
    assert!(tokio::time::timeout(Duration::from_millis(200), &mut first).await.is_err());
    let second = server.get(&sid).await;
    second.assert_code(3);
    let first = within(STEP, "first GET", first).await.expect("GET task");
    first.assert_ok_body("1");
    server.get(&sid).await.assert_error(400, 1, "Session ID unknown");
    assert_eq!(server.engine.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_packet_is_400_and_closes_the_session() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let resp = server.post(&sid, "abc").await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{resp:?}");
    server.get(&sid).await.assert_error(400, 1, "Session ID unknown");
    assert_eq!(server.engine.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_base64_is_400_and_closes_the_session() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let resp = server.post(&sid, "b!!!not base64").await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{resp:?}");
    server.get(&sid).await.assert_error(400, 1, "Session ID unknown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_packet_closes_a_pending_get() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let mut pending = server.spawn_get(&sid);
    assert!(tokio::time::timeout(Duration::from_millis(100), &mut pending).await.is_err());
    assert_eq!(server.post(&sid, "abc").await.status, StatusCode::BAD_REQUEST);
    let resp = within(STEP, "pending GET", pending).await.expect("GET task");
    resp.assert_ok_body("1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_answers_pending_get_with_noop() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let mut pending = server.spawn_get(&sid);
    assert!(tokio::time::timeout(Duration::from_millis(100), &mut pending).await.is_err());
    server.post_ok(&sid, "1").await;
    let resp = within(STEP, "pending GET", pending).await.expect("GET task");
    resp.assert_ok_body("6");
    server.get(&sid).await.assert_error(400, 1, "Session ID unknown");
    server.post(&sid, "4late").await.assert_error(400, 1, "Session ID unknown");
    assert_eq!(server.engine.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_post_is_refused_and_closes_the_session() {
    let server = start(config().with_max_http_buffer_size(1000)).await;
    let sid = server.handshake_polling().await;
    let body = format!("4{}", "x".repeat(2000));
    let req = request(Method::POST, &server.polling_uri(&sid), &[], common::full(body));
    // The server may answer before reading the body and drop the connection; both refuse the body.
    if let Ok(resp) = within(STEP, "oversized POST", try_send(server.addr, req)).await {
        assert_ne!(resp.status, StatusCode::OK, "oversized POST accepted: {resp:?}");
    }
    server.get(&sid).await.assert_error(400, 1, "Session ID unknown");
    assert_eq!(server.engine.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_chunked_post_is_refused_and_closes_the_session() {
    let server = start(config().with_max_http_buffer_size(1000)).await;
    let sid = server.handshake_polling().await;
    let chunks = vec![Bytes::from("4"), Bytes::from("y".repeat(600)), Bytes::from("y".repeat(600))];
    let req = request(Method::POST, &server.polling_uri(&sid), &[], chunked(chunks));
    if let Ok(resp) = within(STEP, "oversized chunked POST", try_send(server.addr, req)).await {
        assert_ne!(resp.status, StatusCode::OK, "oversized POST accepted: {resp:?}");
    }
    server.get(&sid).await.assert_error(400, 1, "Session ID unknown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_at_the_size_limit_is_accepted() {
    let server = start(config().with_max_http_buffer_size(1000)).await;
    let sid = server.handshake_polling().await;
    let body = format!("4{}", "z".repeat(999));
    server.post_ok(&sid, &body).await;
    server.get(&sid).await.assert_ok_body(&body);
}

fn big_message() -> String {
    format!("4{}", "abcdefgh".repeat(300))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_get_is_gzip_compressed_when_accepted() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let msg = big_message();
    server.post_ok(&sid, &msg).await;
    let resp = server.get_with(&sid, &[("accept-encoding", "gzip")]).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header("content-encoding"), Some("gzip"), "{:?}", resp.headers);
    assert!(resp.body.len() < msg.len(), "not compressed");
    let mut out = String::new();
    flate2::read::GzDecoder::new(&resp.body[..]).read_to_string(&mut out).expect("valid gzip");
    assert_eq!(out, msg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_get_is_deflate_compressed_when_accepted() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let msg = big_message();
    server.post_ok(&sid, &msg).await;
    let resp = server.get_with(&sid, &[("accept-encoding", "deflate")]).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header("content-encoding"), Some("deflate"), "{:?}", resp.headers);
    // HTTP `deflate` is the zlib format (RFC 9110 §8.4.1.2).
    let mut out = String::new();
    flate2::read::ZlibDecoder::new(&resp.body[..]).read_to_string(&mut out).expect("valid zlib");
    assert_eq!(out, msg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_get_is_plain_without_accept_encoding() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let msg = big_message();
    server.post_ok(&sid, &msg).await;
    let resp = server.get(&sid).await;
    assert_eq!(resp.header("content-encoding"), None);
    resp.assert_ok_body(&msg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_get_is_not_compressed() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    server.post_ok(&sid, "4small").await;
    let resp = server.get_with(&sid, &[("accept-encoding", "gzip, deflate")]).await;
    assert_eq!(resp.header("content-encoding"), None);
    resp.assert_ok_body("4small");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_round_trips_keep_order() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let started = Instant::now();
    for i in 0..20 {
        server.post_ok(&sid, &format!("4m{i}")).await;
        server.get(&sid).await.assert_ok_body(&format!("4m{i}"));
    }
    assert!(started.elapsed() < STEP);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connection_carries_a_whole_session() {
    let server = start(config()).await;
    let mut conn = common::Conn::open(server.addr).await;
    let open =
        conn.send(request(Method::GET, &server.uri("EIO=4&transport=polling"), &[], common::full(""))).await;
    let sid = common::parse_open(open.text())["sid"].as_str().expect("sid").to_owned();
    for i in 0..5 {
        let post = conn
            .send(request(Method::POST, &server.polling_uri(&sid), &[], common::full(format!("4k{i}"))))
            .await;
        post.assert_ok_body("ok");
        let get = conn.send(request(Method::GET, &server.polling_uri(&sid), &[], common::full(""))).await;
        get.assert_ok_body(&format!("4k{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_whose_client_went_away_does_not_block_the_next_get() {
    use tokio::io::AsyncWriteExt as _;

    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    // A browser aborts a pending poll (tab navigation, network change) by closing its connection.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    let raw = format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", server.polling_uri(&sid), server.addr);
    stream.write_all(raw.as_bytes()).await.expect("write GET");
    // Let the server start the long-poll (a queued message would answer it, so just wait briefly).
    let mut probe = [0u8; 1];
    let read = tokio::time::timeout(
        Duration::from_millis(200),
        tokio::io::AsyncReadExt::read(&mut stream, &mut probe),
    );
    assert!(read.await.is_err(), "aborted GET answered before it was aborted");
    drop(stream);

    // No event tells when the server saw the FIN; give it a moment so the next GET does not race it.
    tokio::time::sleep(Duration::from_millis(50)).await;

    // The next GET must be a normal long-poll, not an "overlapping GET" that kills the session.
    let mut pending = server.spawn_get(&sid);
    if let Ok(done) = tokio::time::timeout(Duration::from_millis(150), &mut pending).await {
        panic!("GET after an aborted GET answered at once: {:?}", done.expect("GET task"));
    }
    server.post_ok(&sid, "4after-abort").await;
    within(STEP, "GET", pending).await.expect("GET task").assert_ok_body("4after-abort");
    assert_eq!(server.engine.session_count(), 1);
}

/// A POST whose body sends `first` and then nothing more (the client stalled or vanished).
fn stalled_post(
    server: &common::TestServer,
    sid: &str,
    first: &'static str,
) -> tokio::task::JoinHandle<Result<common::Resp, String>> {
    use futures_util::StreamExt as _;
    let chunks =
        futures_util::stream::iter([Ok(hyper::body::Frame::data(Bytes::from_static(first.as_bytes())))])
            .chain(futures_util::stream::pending());
    let body = http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(chunks));
    let req = request(Method::POST, &server.polling_uri(sid), &[("content-length", "100")], body);
    tokio::spawn(try_send(server.addr, req))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_concurrent_post_is_refused_and_closes_the_session() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let first = stalled_post(&server, &sid, "4a");
    // The engine counts a POST and marks it in progress in one step.
    let posts = &server.engine.metrics().polling_posts;
    within(STEP, "the first POST reaches the engine", async {
        while posts.get() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    server.post(&sid, "4b").await.assert_code(3);
    server.get(&sid).await.assert_code(1);
    assert_eq!(server.engine.session_count(), 0);
    first.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_body_that_stops_gets_408_at_the_body_timeout_and_closes_the_session() {
    let server = start(config().with_body_timeout(Duration::from_millis(300))).await;
    let sid = server.handshake_polling().await;
    let started = Instant::now();
    let resp = within(STEP, "the stalled POST's answer", stalled_post(&server, &sid, "4a"))
        .await
        .expect("POST task")
        .expect("an answer, not a dropped connection");
    assert_eq!(resp.status, StatusCode::REQUEST_TIMEOUT, "{resp:?}");
    assert_eq!(resp.header("connection"), Some("close"), "the rest of the body is never read");
    assert!(started.elapsed() >= Duration::from_millis(300), "answered after {:?}", started.elapsed());
    server.get(&sid).await.assert_code(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_post_that_arrives_within_the_body_timeout_is_delivered() {
    use futures_util::StreamExt as _;
    let server = start(config().with_body_timeout(Duration::from_secs(5))).await;
    let sid = server.handshake_polling().await;
    let chunks = futures_util::stream::iter(["4sl", "ow"]).then(|c| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(hyper::body::Frame::data(Bytes::from_static(c.as_bytes())))
    });
    let body = http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(chunks));
    let resp = common::send(server.addr, request(Method::POST, &server.polling_uri(&sid), &[], body)).await;
    resp.assert_ok_body("ok");
    server.get(&sid).await.assert_ok_body("4slow");
}
