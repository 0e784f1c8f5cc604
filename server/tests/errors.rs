//! Engine.IO's HTTP errors: status 400 (403 for the allowRequest hook) and `{"code":N,"message":…}`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{config, full, start};
use http::Method;
use switchboard::engine::AllowRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_transport_is_code_0() {
    let server = start(config()).await;
    server.get_query("EIO=4", &[]).await.assert_error(400, 0, "Transport unknown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_transport_is_code_0() {
    let server = start(config()).await;
    server.get_query("EIO=4&transport=flashsocket", &[]).await.assert_error(400, 0, "Transport unknown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_body_is_json() {
    let server = start(config()).await;
    let resp = server.get_query("EIO=4", &[]).await;
    assert_eq!(resp.header("content-type"), Some("application/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sid_is_code_1() {
    let server = start(config()).await;
    server.get("n1.AAAAAAAAAAAAAAAAAAAAAA").await.assert_error(400, 1, "Session ID unknown");
    server.post("nope", "4x").await.assert_error(400, 1, "Session ID unknown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sid_on_websocket_is_code_1() {
    let server = start(config()).await;
    match server.try_ws("EIO=4&transport=websocket&sid=n1.unknown").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 400);
            let body: serde_json::Value =
                serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).expect("JSON error body");
            assert_eq!(body["code"], 1, "{body}");
        }
        Err(e) => panic!("expected HTTP 400, got {e}"),
        Ok(_) => panic!("websocket with an unknown sid was accepted"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_handshake_is_code_2() {
    let server = start(config()).await;
    let resp = server.raw(Method::POST, "EIO=4&transport=polling", &[], full("4hi")).await;
    resp.assert_error(400, 2, "Bad handshake method");
    assert_eq!(server.engine.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_handshake_is_code_2() {
    let server = start(config()).await;
    let resp = server.raw(Method::PUT, "EIO=4&transport=polling", &[], full("")).await;
    resp.assert_error(400, 2, "Bad handshake method");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_eio_is_code_5() {
    let server = start(config()).await;
    server.get_query("transport=polling", &[]).await.assert_error(400, 5, "Unsupported protocol version");
    assert_eq!(server.engine.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eio_3_is_code_5() {
    let server = start(config()).await;
    server.get_query("EIO=3&transport=polling", &[]).await.assert_error(
        400,
        5,
        "Unsupported protocol version",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_transport_without_upgrade_header_is_code_3() {
    let server = start(config()).await;
    let resp = server.get_query("EIO=4&transport=websocket", &[]).await;
    resp.assert_code(3);
    assert_eq!(server.engine.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_on_upgraded_session_is_code_3() {
    let server = start(config()).await;
    let sid = server.handshake_polling().await;
    let mut ws = server.upgrade(&sid).await;
    // The upgrade is complete once a message round-trips over the websocket.
    ws.send_text("4sync").await;
    assert_eq!(ws.recv_text().await, "4sync");
    server.get(&sid).await.assert_code(3);
    server.post(&sid, "4x").await.assert_code(3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_request_refusal_is_403_code_4_with_its_message() {
    let hook: AllowRequest = Arc::new(|_req| Box::pin(async { Err("nope".to_owned()) }));
    let server = start(config().with_allow_request(Some(hook))).await;
    server.get_query("EIO=4&transport=polling", &[]).await.assert_error(403, 4, "nope");
    assert_eq!(server.engine.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_request_refusal_applies_to_websocket_handshakes() {
    let hook: AllowRequest = Arc::new(|_req| Box::pin(async { Err("nope".to_owned()) }));
    let server = start(config().with_allow_request(Some(hook))).await;
    match server.try_ws("EIO=4&transport=websocket").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        Err(e) => panic!("expected HTTP 403, got {e}"),
        Ok(_) => panic!("refused websocket handshake was accepted"),
    }
    assert_eq!(server.engine.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_request_sees_the_query() {
    let hook: AllowRequest = Arc::new(|req| {
        let token = req.query("token");
        Box::pin(
            async move { if token.as_deref() == Some("good") { Ok(()) } else { Err("bad token".into()) } },
        )
    });
    let server = start(config().with_allow_request(Some(hook))).await;
    server.get_query("EIO=4&transport=polling&token=bad", &[]).await.assert_error(403, 4, "bad token");
    let ok = server.get_query("EIO=4&transport=polling&token=good", &[]).await;
    assert_eq!(ok.status, 200, "{ok:?}");
}
