//! Engine.IO v4 handshake over polling and over websocket: the open packet, its keys, the sid
//! format, and the request head size limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{NODE, config, start};
use http::StatusCode;
use serde_json::{Value, json};

fn keys(open: &Value) -> BTreeSet<&str> {
    open.as_object().expect("open JSON is an object").keys().map(String::as_str).collect()
}

fn assert_sid_format(sid: &str) {
    let random = sid
        .strip_prefix(&format!("{NODE}."))
        .unwrap_or_else(|| panic!("sid {sid:?} does not start with the node id {NODE:?} and '.'"));
    assert!(random.len() >= 22, "sid {sid:?}: random part shorter than 22 chars");
    assert!(
        random.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "sid {sid:?}: random part is not URL-safe base64"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_handshake_sends_open_packet_with_exact_keys() {
    let server = start(
        config()
            .with_ping_interval(Duration::from_millis(25_000))
            .with_ping_timeout(Duration::from_millis(20_000))
            .with_max_http_buffer_size(123_456),
    )
    .await;
    let resp = server.get_query("EIO=4&transport=polling", &[]).await;
    assert_eq!(resp.status, StatusCode::OK);
    let body = resp.text();
    assert!(body.starts_with("0{"), "body {body:?}");
    let open = common::parse_open(body);
    assert_eq!(
        keys(&open),
        BTreeSet::from(["sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"]),
        "open {open}"
    );
    assert_eq!(open["upgrades"], json!(["websocket"]));
    assert_eq!(open["pingInterval"], json!(25_000));
    assert_eq!(open["pingTimeout"], json!(20_000));
    assert_eq!(open["maxPayload"], json!(123_456));
    assert_sid_format(open["sid"].as_str().expect("sid is a string"));
    assert_eq!(server.engine.session_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_handshake_content_type_is_text_plain() {
    let server = start(config()).await;
    let resp = server.get_query("EIO=4&transport=polling", &[]).await;
    let content_type = resp.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/plain"), "content-type {content_type:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handshakes_give_different_sids() {
    let server = start(config()).await;
    let a = server.handshake_polling().await;
    let b = server.handshake_polling().await;
    assert_ne!(a, b);
    assert_sid_format(&a);
    assert_sid_format(&b);
    assert_eq!(server.engine.session_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_handshake_first_frame_is_open_without_upgrades() {
    let server = start(config().with_max_http_buffer_size(5000)).await;
    let mut ws = server.ws("EIO=4&transport=websocket").await;
    let first = ws.recv_text().await;
    assert!(first.starts_with("0{"), "first frame {first:?}");
    let open = common::parse_open(&first);
    assert_eq!(
        keys(&open),
        BTreeSet::from(["sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"]),
        "open {open}"
    );
    assert_eq!(open["upgrades"], json!([]));
    assert_eq!(open["pingInterval"], json!(60_000));
    assert_eq!(open["pingTimeout"], json!(60_000));
    assert_eq!(open["maxPayload"], json!(5000));
    let sid = open["sid"].as_str().expect("sid");
    assert_sid_format(sid);
    assert!(server.engine.session(sid).is_some(), "session {sid} registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_handshake_offers_no_upgrade_when_upgrades_disabled() {
    let server = start(config().with_allow_upgrades(false)).await;
    let (_, open) = server.handshake_polling_full().await;
    assert_eq!(open["upgrades"], json!([]));
}

/// A polling handshake whose head is about `kib` KiB (padded with `X-Pad-N` headers of 1 KiB).
async fn handshake_with_head_of(server: &common::TestServer, kib: usize) -> Result<common::Resp, String> {
    let pad = "a".repeat(1000);
    let names: Vec<String> = (0..kib).map(|i| format!("x-pad-{i}")).collect();
    let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), pad.as_str())).collect();
    let req = common::request(
        http::Method::GET,
        &server.uri("EIO=4&transport=polling"),
        &headers,
        common::full(""),
    );
    common::try_send(server.addr, req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_over_16_kib_gets_431_and_makes_no_session() {
    let server = start(config()).await;
    let ok = handshake_with_head_of(&server, 15).await.expect("an answer");
    assert_eq!(ok.status, StatusCode::OK, "15 KiB of headers are accepted, as in Node");
    let refused = handshake_with_head_of(&server, 17).await.expect("an answer");
    assert_eq!(refused.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(server.engine.session_count(), 1, "only the first handshake made a session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_head_limit_is_configurable() {
    let server = start(config().with_max_header_size(32 * 1024)).await;
    let ok = handshake_with_head_of(&server, 24).await.expect("an answer");
    assert_eq!(ok.status, StatusCode::OK);
    let refused = handshake_with_head_of(&server, 40).await.expect("an answer");
    assert_eq!(refused.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}
