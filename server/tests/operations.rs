//! What an operator sees of a node: `/metrics` counting what clients did, `/healthz` and
//! `/readyz` (with the adapter's condition), and the drain before exit (readiness off at once,
//! handshakes refused, sessions closed spread over the window).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::sio::{Client, io, wait_until};
use common::{STEP, TestServer, config, full, request, send, serve_server, within};
use http::{Method, StatusCode};
use switchboard::Server;
use switchboard::socketio::{SocketIo, SocketRef, Value};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// An echo app on `/` served by `server` (built from the app's engine).
async fn serve_with(io: &SocketIo, build: impl FnOnce(Server) -> Server) -> (TestServer, Server) {
    io.main_namespace().on_connection(|socket: SocketRef| async move {
        socket.on("echo", |_socket: SocketRef, mut event| async move {
            let args = std::mem::take(&mut event.args);
            if let Some(ack) = event.ack.take() {
                ack.send(args);
            }
        });
    });
    let server = build(Server::new(io.engine().clone()));
    (serve_server(server.clone()).await, server)
}

async fn get(server: &TestServer, path: &str) -> (StatusCode, String) {
    let resp = send(server.addr, request(Method::GET, path, &[], full(""))).await;
    (resp.status, resp.text().to_owned())
}

/// The value of one sample (`name{labels}` exactly as exported) in a scrape.
fn sample(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{series} not in the scrape:\n{scrape}"))
}

async fn scrape(server: &TestServer) -> String {
    let (status, text) = get(server, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_sessions_sockets_packets_errors_and_closes() {
    let io = io(config());
    let (server, _) = serve_with(&io, |s| s).await;
    let before = scrape(&server).await;
    assert_eq!(sample(&before, r#"switchboard_sessions{transport="websocket"}"#), 0.0);
    assert_eq!(sample(&before, r#"switchboard_sockets{nsp="/"}"#), 0.0);
    let build = format!(
        r#"switchboard_build_info{{commit="{}",version="{}"}}"#,
        switchboard::version::COMMIT,
        switchboard::version::VERSION
    );
    assert_eq!(sample(&before, &build), 1.0);

    let (mut ws, _) = Client::ws_connected(&server).await;
    ws.emit_with_ack("echo", vec![Value::from("hi")], 1).await;
    assert_eq!(ws.next_text().await, r#"31["hi"]"#);
    let mut polling = Client::polling(&server).await;
    polling.connect("/", None).await.unwrap();
    polling.emit_with_ack("echo", vec![Value::from(2)], 7).await;
    assert_eq!(polling.next_text().await, "37[2]");
    // An unknown sid is refused with code 1.
    let resp = server.get("nope.unknown").await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);

    let m = scrape(&server).await;
    assert_eq!(sample(&m, r#"switchboard_sessions{transport="websocket"}"#), 1.0);
    assert_eq!(sample(&m, r#"switchboard_sessions{transport="polling"}"#), 1.0);
    assert_eq!(sample(&m, r#"switchboard_connections_accepted_total{transport="websocket"}"#), 1.0);
    assert_eq!(sample(&m, r#"switchboard_connections_accepted_total{transport="polling"}"#), 1.0);
    assert_eq!(sample(&m, r#"switchboard_sockets{nsp="/"}"#), 2.0);
    assert_eq!(sample(&m, r#"switchboard_handshake_errors_total{code="1"}"#), 1.0);
    // CONNECT and the event, on each transport.
    assert_eq!(sample(&m, r#"switchboard_packets_received_total{transport="websocket"}"#), 2.0);
    assert_eq!(sample(&m, r#"switchboard_packets_received_total{transport="polling"}"#), 2.0);
    // Open packet, CONNECT answer and ack over the websocket.
    assert_eq!(sample(&m, r#"switchboard_packets_sent_total{transport="websocket"}"#), 3.0);
    assert!(sample(&m, r#"switchboard_bytes_sent_total{transport="websocket"}"#) > 20.0);
    assert!(sample(&m, r#"switchboard_polling_requests_total{method="POST"}"#) >= 2.0);
    assert!(sample(&m, r#"switchboard_polling_requests_total{method="GET"}"#) >= 2.0);
    assert_eq!(sample(&m, "switchboard_event_handler_duration_seconds_count"), 2.0);

    io.emit("news", vec![]).await.unwrap();
    assert_eq!(ws.next_text().await, r#"2["news"]"#);
    ws.close().await;
    wait_until("the websocket session closed", STEP, || server.engine.session_count() == 1).await;
    let m = scrape(&server).await;
    assert_eq!(sample(&m, "switchboard_broadcasts_total"), 1.0);
    assert_eq!(sample(&m, "switchboard_deliveries_total"), 2.0);
    assert_eq!(sample(&m, r#"switchboard_sessions{transport="websocket"}"#), 0.0);
    assert_eq!(sample(&m, r#"switchboard_sockets{nsp="/"}"#), 1.0);
    assert_eq!(sample(&m, r#"switchboard_connections_closed_total{reason="transport close"}"#), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_moves_the_session_gauge_and_is_counted() {
    let io = io(config());
    let (server, _) = serve_with(&io, |s| s).await;
    let sid = server.handshake_polling().await;
    let _ws = server.upgrade(&sid).await;
    wait_until("upgrade counted", STEP, || io.engine().metrics().upgrades.get() == 1).await;
    let m = scrape(&server).await;
    assert_eq!(sample(&m, r#"switchboard_sessions{transport="polling"}"#), 0.0);
    assert_eq!(sample(&m, r#"switchboard_sessions{transport="websocket"}"#), 1.0);
    assert_eq!(sample(&m, "switchboard_upgrades_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_adapter_check_and_healthz_stays_up() {
    let connected = Arc::new(AtomicBool::new(true));
    let check = connected.clone();
    let io = io(config());
    let (server, _) =
        serve_with(&io, |s| s.with_ready_check(Arc::new(move || check.load(Ordering::Relaxed)))).await;
    assert_eq!(get(&server, "/readyz").await, (StatusCode::OK, "ready\n".into()));
    connected.store(false, Ordering::Relaxed);
    assert_eq!(
        get(&server, "/readyz").await,
        (StatusCode::SERVICE_UNAVAILABLE, "adapter disconnected\n".into())
    );
    assert_eq!(get(&server, "/healthz").await, (StatusCode::OK, "ok\n".into()));
    assert_eq!(sample(&scrape(&server).await, "switchboard_ready"), 0.0);
    // Not ready is advisory for the balancer: the node still takes handshakes.
    server.handshake_polling().await;
    connected.store(true, Ordering::Relaxed);
    assert_eq!(get(&server, "/readyz").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_kept_off_the_public_port() {
    let io = io(config());
    let (server, ops) = serve_with(&io, |s| s.with_public_metrics(false)).await;
    assert_eq!(get(&server, "/metrics").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&server, "/readyz").await.0, StatusCode::OK);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops_addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(ops.serve_ops(listener, stop.clone()));
    let resp = send(ops_addr, request(Method::GET, "/metrics", &[], full(""))).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(resp.text().contains("switchboard_sessions"));
    let resp = send(ops_addr, request(Method::GET, "/healthz", &[], full(""))).await;
    assert_eq!(resp.status, StatusCode::OK);
    // The metrics port serves nothing else: no Engine.IO there.
    let resp =
        send(ops_addr, request(Method::GET, "/socket.io/?EIO=4&transport=polling", &[], full(""))).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_without_sessions_ends_at_once_instead_of_waiting_the_window() {
    let io = io(config());
    let (server, ops) = serve_with(&io, |s| s).await;
    // STEP is far below the window: a drain that waited it out would fail here.
    within(STEP, "a drain with nobody connected", ops.drain(Duration::from_secs(600))).await;
    assert_eq!(get(&server, "/readyz").await, (StatusCode::SERVICE_UNAVAILABLE, "draining\n".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_turns_readiness_off_refuses_handshakes_and_spreads_the_closes() {
    const CLIENTS: usize = 20;
    let window = Duration::from_millis(1000);
    let io = io(config());
    let (server, ops) = serve_with(&io, |s| s).await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(Client::ws_connected(&server).await.0);
    }
    let started = Instant::now();
    let drain = tokio::spawn(async move { ops.drain(window).await });

    wait_until("readyz off", STEP, || io.engine().is_refusing_handshakes()).await;
    assert_eq!(get(&server, "/readyz").await, (StatusCode::SERVICE_UNAVAILABLE, "draining\n".into()));
    let refused = server.get_query("EIO=4&transport=polling", &[]).await;
    refused.assert_error(503, 4, "Server shutting down");

    // Each client sees its connection end; note when.
    let watchers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                c.expect_closed(window + STEP).await;
                started.elapsed()
            })
        })
        .collect();
    let mut ends = Vec::new();
    for w in watchers {
        ends.push(w.await.unwrap());
    }
    within(STEP, "drain", drain).await.unwrap();
    ends.sort();
    let (first, last) = (ends[0], ends[CLIENTS - 1]);
    assert!(first < window / 2, "the first batch went at {first:?}");
    assert!(last >= window / 2, "everyone was gone by {last:?}: not spread over {window:?}");
    assert_eq!(server.engine.session_count(), 0);
    let m = scrape(&server).await;
    assert_eq!(
        sample(&m, r#"switchboard_connections_closed_total{reason="server shutting down"}"#),
        CLIENTS as f64
    );
    assert_eq!(sample(&m, "switchboard_draining"), 1.0);
    assert_eq!(sample(&m, r#"switchboard_handshake_errors_total{code="4"}"#), 1.0);
}

/// Connections the node accepts carry its keepalive timing and `TCP_USER_TIMEOUT` (set on the
/// listener, inherited on Linux), not the host's 2-hour keepalive and ~15 minutes of retries.
#[tokio::test]
async fn accepted_connections_carry_the_nodes_keepalive_and_user_timeout() {
    use switchboard::http::{KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_PROBES, TCP_USER_TIMEOUT, bind};
    let listener = bind("127.0.0.1", 0).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let _client = within(STEP, "connect", tokio::net::TcpStream::connect(addr)).await.expect("connect");
    let (accepted, _) = within(STEP, "accept", listener.accept()).await.expect("accept");
    let sock = socket2::SockRef::from(&accepted);
    assert!(sock.keepalive().expect("SO_KEEPALIVE"));
    assert_eq!(sock.tcp_keepalive_time().expect("TCP_KEEPIDLE"), KEEPALIVE_IDLE);
    assert_eq!(sock.tcp_keepalive_interval().expect("TCP_KEEPINTVL"), KEEPALIVE_INTERVAL);
    assert_eq!(sock.tcp_keepalive_retries().expect("TCP_KEEPCNT"), KEEPALIVE_PROBES);
    assert_eq!(sock.tcp_user_timeout().expect("TCP_USER_TIMEOUT"), Some(TCP_USER_TIMEOUT));
}
