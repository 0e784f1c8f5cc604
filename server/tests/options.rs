//! Server options: the handshake cookie, CORS (and the websocket Origin check it brings), enabled
//! transports, the mount path, serving the client bundle, and the settings `validate` refuses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{config, full, request, send, serve_server, start};
use http::{Method, StatusCode};
use switchboard::apps::echo::Echo;
use switchboard::engine::{ConfigError, CookieConfig, CorsConfig, Transports};
use switchboard::{Engine, Server};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_is_off_by_default() {
    let server = start(config()).await;
    let resp = server.get_query("EIO=4&transport=polling", &[]).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header("set-cookie"), None);
    let ws = server.ws("EIO=4&transport=websocket").await;
    assert!(ws.headers.get("set-cookie").is_none(), "101 headers {:?}", ws.headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_is_set_on_polling_handshake() {
    let server = start(config().with_cookie(Some(CookieConfig::default()))).await;
    let resp = server.get_query("EIO=4&transport=polling", &[]).await;
    let sid = common::parse_open(resp.text())["sid"].as_str().expect("sid").to_owned();
    assert_eq!(resp.header("set-cookie"), Some(format!("io={sid}; Path=/; HttpOnly; SameSite=Lax").as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_is_set_on_websocket_handshake() {
    let server = start(config().with_cookie(Some(CookieConfig::default()))).await;
    let mut ws = server.ws("EIO=4&transport=websocket").await;
    let sid = common::parse_open(&ws.recv_text().await)["sid"].as_str().expect("sid").to_owned();
    let cookie = ws.headers.get("set-cookie").map(|v| v.to_str().expect("ASCII"));
    assert_eq!(cookie, Some(format!("io={sid}; Path=/; HttpOnly; SameSite=Lax").as_str()));
}

fn cors() -> CorsConfig {
    CorsConfig { origins: vec!["http://a.example".into()], credentials: true, max_age: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_configured_origin_with_credentials() {
    let server = start(config().with_cors(Some(cors()))).await;
    let resp = server.get_query("EIO=4&transport=polling", &[("origin", "http://a.example")]).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header("access-control-allow-origin"), Some("http://a.example"));
    assert_eq!(resp.header("access-control-allow-credentials"), Some("true"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_headers_are_on_session_requests_too() {
    let server = start(config().with_cors(Some(cors()))).await;
    let sid = server.handshake_polling().await;
    let origin = [("origin", "http://a.example")];
    let post = send(server.addr, request(Method::POST, &server.polling_uri(&sid), &origin, full("4x"))).await;
    assert_eq!(post.header("access-control-allow-origin"), Some("http://a.example"));
    let get = server.get_with(&sid, &origin).await;
    get.assert_ok_body("4x");
    assert_eq!(get.header("access-control-allow-origin"), Some("http://a.example"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_other_origin_gets_no_allow_origin() {
    let server = start(config().with_cors(Some(cors()))).await;
    let resp = server.get_query("EIO=4&transport=polling", &[("origin", "http://evil.example")]).await;
    assert_eq!(resp.header("access-control-allow-origin"), None);
    assert_eq!(resp.header("access-control-allow-credentials"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_headers_are_on_errors_too() {
    let server = start(config().with_cors(Some(cors()))).await;
    let resp =
        server.get_query("EIO=4&transport=polling&sid=unknown", &[("origin", "http://a.example")]).await;
    resp.assert_error(400, 1, "Session ID unknown");
    assert_eq!(resp.header("access-control-allow-origin"), Some("http://a.example"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_is_204_with_allowed_methods() {
    let server = start(config().with_cors(Some(cors()))).await;
    let resp = server
        .raw(
            Method::OPTIONS,
            "EIO=4&transport=polling",
            &[
                ("origin", "http://a.example"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "content-type"),
            ],
            full(""),
        )
        .await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT, "{resp:?}");
    let methods = resp.header("access-control-allow-methods").expect("Access-Control-Allow-Methods");
    for m in ["GET", "POST"] {
        assert!(methods.split(',').any(|x| x.trim() == m), "{m} missing from {methods:?}");
    }
    assert_eq!(resp.header("access-control-allow-origin"), Some("http://a.example"));
    assert_eq!(resp.header("access-control-allow-headers"), Some("content-type"));
    assert_eq!(server.engine.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_max_age() {
    let cors = CorsConfig { max_age: Some(Duration::from_secs(600)), ..cors() };
    let server = start(config().with_cors(Some(cors))).await;
    let resp = server
        .raw(
            Method::OPTIONS,
            "EIO=4&transport=polling",
            &[("origin", "http://a.example"), ("access-control-request-method", "GET")],
            full(""),
        )
        .await;
    assert_eq!(resp.header("access-control-max-age"), Some("600"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cors_headers_by_default() {
    let server = start(config()).await;
    let resp = server.get_query("EIO=4&transport=polling", &[("origin", "http://a.example")]).await;
    assert_eq!(resp.header("access-control-allow-origin"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_disabled_refuses_polling_handshake() {
    let server = start(config().with_transports(Transports { polling: false, websocket: true })).await;
    server.get_query("EIO=4&transport=polling", &[]).await.assert_error(400, 0, "Transport unknown");
    assert_eq!(server.engine.session_count(), 0);
    let (mut ws, _, _) = server.handshake_ws().await;
    ws.send_text("4ws-only").await;
    assert_eq!(ws.recv_text().await, "4ws-only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_disabled_refuses_websocket_and_offers_no_upgrade() {
    let server = start(config().with_transports(Transports { polling: true, websocket: false })).await;
    match server.try_ws("EIO=4&transport=websocket").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400),
        Err(e) => panic!("expected HTTP 400, got {e}"),
        Ok(_) => panic!("websocket accepted with websocket disabled"),
    }
    let (_, open) = server.handshake_polling_full().await;
    assert_eq!(open["upgrades"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_path_works_and_default_path_404s() {
    let server = start(config().with_path("/custom/")).await;
    assert_eq!(server.path, "/custom/");
    let sid = server.handshake_polling().await;
    server.post_ok(&sid, "4custom").await;
    server.get(&sid).await.assert_ok_body("4custom");
    let (mut ws, _, _) = server.handshake_ws().await;
    ws.send_text("4ws").await;
    assert_eq!(ws.recv_text().await, "4ws");

    let resp =
        send(server.addr, request(Method::GET, "/socket.io/?EIO=4&transport=polling", &[], full(""))).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_without_trailing_slash_is_served() {
    let server = start(config()).await;
    let resp =
        send(server.addr, request(Method::GET, "/socket.io?EIO=4&transport=polling", &[], full(""))).await;
    assert_eq!(resp.status, StatusCode::OK, "{resp:?}");
    common::parse_open(resp.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_bundle_is_served_under_the_path_unless_turned_off() {
    let path = "/socket.io/socket.io.min.js";
    let served = start(config()).await;
    let resp = send(served.addr, request(Method::GET, path, &[], full(""))).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header("content-type"), Some("application/javascript; charset=utf-8"));
    assert!(resp.text().contains("io"), "the bundle is the client's code");

    let engine = Engine::new(config(), std::sync::Arc::new(Echo));
    let off = serve_server(Server::new(engine).with_serve_client(false)).await;
    let resp = send(off.addr, request(Method::GET, path, &[], full(""))).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    // Engine.IO itself is still served.
    assert_eq!(off.get_query("EIO=4&transport=polling", &[]).await.status, StatusCode::OK);
}

/// A websocket handshake with this query and `Origin` (none if `None`): the status it got.
async fn websocket_status(server: &common::TestServer, query: &str, origin: Option<&str>) -> u16 {
    let mut req =
        format!("ws://{}{}", server.addr, server.uri(query)).into_client_request().expect("request");
    if let Some(origin) = origin {
        req.headers_mut().insert("origin", origin.parse().expect("origin"));
    }
    match common::within(common::STEP, "websocket", tokio_tungstenite::connect_async(req)).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("websocket {query}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_cors_websockets_from_other_origins_are_refused() {
    let server = start(config().with_cors(Some(cors()))).await;
    let ws = "EIO=4&transport=websocket";
    assert_eq!(websocket_status(&server, ws, Some("http://evil.example")).await, 403);
    assert_eq!(websocket_status(&server, ws, Some("null")).await, 403, "a sandboxed page");
    assert_eq!(websocket_status(&server, ws, Some("http://a.example")).await, 101);
    assert_eq!(websocket_status(&server, ws, None).await, 101, "not a browser: no Origin");
    // An upgrade from another origin is refused too, and its polling session goes on.
    let sid = server.handshake_polling().await;
    let upgrade = format!("EIO=4&transport=websocket&sid={sid}");
    assert_eq!(websocket_status(&server, &upgrade, Some("http://evil.example")).await, 403);
    server.post_ok(&sid, "4still-polling").await;
    server.get(&sid).await.assert_ok_body("4still-polling");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_origins_are_not_checked_without_cors_or_with_any_origin() {
    let ws = "EIO=4&transport=websocket";
    let server = start(config()).await;
    assert_eq!(websocket_status(&server, ws, Some("http://evil.example")).await, 101);
    let any = CorsConfig { origins: vec!["*".into()], credentials: false, max_age: None };
    let server = start(config().with_cors(Some(any))).await;
    assert_eq!(websocket_status(&server, ws, Some("http://evil.example")).await, 101);
}

#[test]
fn validate_accepts_the_defaults_and_refuses_nonsense_naming_the_setting() {
    use switchboard::EngineConfig;
    assert_eq!(EngineConfig::default().validate(), Ok(()));
    let day = Duration::from_secs(86_400);
    let timer = |setting: &'static str, value: Duration| Err(ConfigError::Timer { setting, value });
    let cases: Vec<(EngineConfig, Result<(), ConfigError>)> = vec![
        (EngineConfig::default().with_ping_interval(Duration::ZERO), timer("ping_interval", Duration::ZERO)),
        (
            EngineConfig::default().with_ping_interval(day + Duration::from_millis(1)),
            timer("ping_interval", day + Duration::from_millis(1)),
        ),
        (EngineConfig::default().with_ping_interval(day), Ok(())),
        (EngineConfig::default().with_ping_timeout(Duration::ZERO), timer("ping_timeout", Duration::ZERO)),
        (EngineConfig::default().with_ping_timeout(Duration::MAX), timer("ping_timeout", Duration::MAX)),
        (
            EngineConfig::default().with_upgrade_timeout(Duration::ZERO),
            timer("upgrade_timeout", Duration::ZERO),
        ),
        (EngineConfig::default().with_body_timeout(Duration::ZERO), timer("body_timeout", Duration::ZERO)),
        (EngineConfig::default().with_write_timeout(Duration::ZERO), timer("write_timeout", Duration::ZERO)),
        (
            EngineConfig::default().with_max_http_buffer_size(0),
            Err(ConfigError::Size { setting: "max_http_buffer_size", value: 0, min: 1 }),
        ),
        (
            EngineConfig::default().with_max_queue_bytes(0),
            Err(ConfigError::Size { setting: "max_queue_bytes", value: 0, min: 1 }),
        ),
        (
            EngineConfig::default().with_max_header_size(100),
            Err(ConfigError::Size { setting: "max_header_size", value: 100, min: 1024 }),
        ),
        (
            EngineConfig::default().with_cors(Some(CorsConfig {
                origins: vec!["*".into()],
                credentials: true,
                max_age: None,
            })),
            Err(ConfigError::AnyOriginWithCredentials),
        ),
        (EngineConfig::default().with_cors(Some(cors())), Ok(())),
    ];
    for (config, expected) in cases {
        assert_eq!(config.validate(), expected, "{config:?}");
    }
    let message =
        EngineConfig::default().with_ping_interval(Duration::ZERO).validate().err().map(|e| e.to_string());
    assert_eq!(
        message.as_deref(),
        Some("ping_interval must be between 1 ms and 1 day (86400000 ms), not 0 ms")
    );
}

#[test]
fn the_body_and_write_timeouts_follow_the_ping_timeout_unless_set() {
    use switchboard::EngineConfig;
    let config = EngineConfig::default().with_ping_timeout(Duration::from_secs(7));
    assert_eq!(
        (config.body_timeout(), config.write_timeout()),
        (Duration::from_secs(7), Duration::from_secs(7))
    );
    let config = config.with_body_timeout(Duration::from_secs(3)).with_write_timeout(Duration::from_secs(4));
    assert_eq!(
        (config.body_timeout(), config.write_timeout()),
        (Duration::from_secs(3), Duration::from_secs(4))
    );
    assert_eq!(EngineConfig::default().max_header_size(), 16 * 1024);
}
