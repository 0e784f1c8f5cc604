//! Shared helpers for the integration tests: a real server on 127.0.0.1:0 in the test's runtime,
//! a raw HTTP/1.1 client (one TCP connection per request) and a websocket client.
//!
//! Every await is bounded by [`within`], so a hang fails the test instead of blocking the suite.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod hostile;
pub mod sio;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use switchboard::apps::echo::Echo;
use switchboard::{Engine, EngineConfig, EngineHandler, Server};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// Upper bound for any single step that should be quick (generous for a loaded 2-core machine).
pub const STEP: Duration = Duration::from_secs(10);

/// Node id of every test server; sids start with `n1.`.
pub const NODE: &str = "n1";

/// Record separator between packets of a polling payload.
pub const RS: char = '\x1e';

/// Runs `fut`, panicking with `what` if it takes longer than `limit`.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// A config for tests that are not about time: heartbeats far away so no ping interferes.
pub fn config() -> EngineConfig {
    EngineConfig::default()
        .with_node_id(NODE)
        .with_ping_interval(Duration::from_secs(60))
        .with_ping_timeout(Duration::from_secs(60))
}

/// A config with short heartbeats (`interval`/`timeout` in ms).
pub fn fast_heartbeat(interval_ms: u64, timeout_ms: u64) -> EngineConfig {
    config()
        .with_ping_interval(Duration::from_millis(interval_ms))
        .with_ping_timeout(Duration::from_millis(timeout_ms))
}

/// A server listening on 127.0.0.1; shut down when dropped.
pub struct TestServer {
    /// Listening address.
    pub addr: SocketAddr,
    /// The engine behind the server.
    pub engine: Engine,
    /// Mount path (with trailing slash).
    pub path: String,
    shutdown: CancellationToken,
}

impl TestServer {
    /// Starts the server's graceful shutdown (what dropping it does).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts a server running [`Echo`].
pub async fn start(config: EngineConfig) -> TestServer {
    start_with(config, Arc::new(Echo)).await
}

/// Starts a server running `handler`.
pub async fn start_with(config: EngineConfig, handler: Arc<dyn EngineHandler>) -> TestServer {
    serve_server(Server::new(Engine::new(config, handler))).await
}

/// Serves `server` (built by the test with its own settings) on 127.0.0.1:0.
pub async fn serve_server(server: Server) -> TestServer {
    let engine = server.engine().clone();
    let path = engine.config().path().to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let shutdown = CancellationToken::new();
    tokio::spawn(server.serve(listener, shutdown.clone()));
    TestServer { addr, engine, path, shutdown }
}

/// Request body type of the HTTP helpers.
pub type ReqBody = BoxBody<Bytes, Infallible>;

/// A whole in-memory request body (sent with `Content-Length`).
pub fn full(body: impl Into<Bytes>) -> ReqBody {
    Full::new(body.into()).boxed()
}

/// A body sent chunked (no `Content-Length`), one chunk per item.
pub fn chunked(chunks: Vec<Bytes>) -> ReqBody {
    let stream = futures_util::stream::iter(chunks.into_iter().map(|c| Ok(hyper::body::Frame::data(c))));
    http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(stream))
}

/// A response read whole.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as received (not decompressed).
    pub body: Bytes,
}

impl Resp {
    /// The body as UTF-8.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("JSON body expected ({e}), got {:?}", self.text()))
    }

    /// First value of a header, as a string.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("ASCII header"))
    }

    /// Asserts a 200 with exactly this body.
    #[track_caller]
    pub fn assert_ok_body(&self, body: &str) {
        assert_eq!((self.status, self.text()), (StatusCode::OK, body), "response {self:?}");
    }

    /// Asserts an Engine.IO error: `status`, and a JSON body `{"code": code, "message": message}`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: u64, message: &str) {
        assert_eq!(self.status.as_u16(), status, "status of {self:?}");
        let json = self.json();
        assert_eq!(json["code"].as_u64(), Some(code), "code in {json}");
        assert_eq!(json["message"].as_str(), Some(message), "message in {json}");
    }

    /// Asserts an Engine.IO error with status 400 and `code`, whatever the message.
    #[track_caller]
    pub fn assert_code(&self, code: u64) {
        assert_eq!(self.status, StatusCode::BAD_REQUEST, "status of {self:?}");
        let json = self.json();
        assert_eq!(json["code"].as_u64(), Some(code), "code in {json}");
        assert!(json["message"].is_string(), "message in {json}");
    }
}

/// Sends one request on a fresh TCP connection; `Err` if the connection failed before a whole response.
pub async fn try_send(addr: SocketAddr, mut req: Request<ReqBody>) -> Result<Resp, String> {
    req.headers_mut().entry(header::HOST).or_insert_with(|| addr.to_string().parse().expect("host header"));
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let response = sender.send_request(req).await.map_err(|e| format!("send: {e}"))?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
    Ok(Resp { status: parts.status, headers: parts.headers, body })
}

/// One keep-alive HTTP/1.1 connection for several requests in a row, as a browser reuses them.
pub struct Conn {
    addr: SocketAddr,
    sender: hyper::client::conn::http1::SendRequest<ReqBody>,
}

impl Conn {
    /// Opens the connection.
    pub async fn open(addr: SocketAddr) -> Self {
        within(STEP, "HTTP connect", async {
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("HTTP handshake");
            tokio::spawn(conn);
            Self { addr, sender }
        })
        .await
    }

    /// Sends one request on this connection and reads the whole response.
    pub async fn send(&mut self, mut req: Request<ReqBody>) -> Resp {
        let what = format!("{} {} (keep-alive)", req.method(), req.uri());
        let host = self.addr.to_string().parse().expect("host header");
        req.headers_mut().entry(header::HOST).or_insert(host);
        within(STEP, &what, async {
            self.sender.ready().await.unwrap_or_else(|e| panic!("{what}: connection not ready: {e}"));
            let response = self.sender.send_request(req).await.unwrap_or_else(|e| panic!("{what}: {e}"));
            let (parts, body) = response.into_parts();
            let body = body.collect().await.unwrap_or_else(|e| panic!("{what}: body: {e}")).to_bytes();
            Resp { status: parts.status, headers: parts.headers, body }
        })
        .await
    }
}

/// Sends one request and reads the whole response, within [`STEP`].
pub async fn send(addr: SocketAddr, req: Request<ReqBody>) -> Resp {
    let what = format!("{} {}", req.method(), req.uri());
    within(STEP, &what, try_send(addr, req)).await.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Builds a request.
pub fn request(method: Method, uri: &str, headers: &[(&str, &str)], body: ReqBody) -> Request<ReqBody> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(body).expect("valid request")
}

impl TestServer {
    /// `path?query` on this server's mount path.
    pub fn uri(&self, query: &str) -> String {
        format!("{}?{query}", self.path)
    }

    /// `?EIO=4&transport=polling&sid=…`.
    pub fn polling_uri(&self, sid: &str) -> String {
        self.uri(&format!("EIO=4&transport=polling&sid={sid}"))
    }

    /// A request with any method, query, headers and body.
    pub async fn raw(&self, method: Method, query: &str, headers: &[(&str, &str)], body: ReqBody) -> Resp {
        send(self.addr, request(method, &self.uri(query), headers, body)).await
    }

    /// A GET with any query and headers.
    pub async fn get_query(&self, query: &str, headers: &[(&str, &str)]) -> Resp {
        self.raw(Method::GET, query, headers, full("")).await
    }

    /// Polling handshake; asserts a 200 open packet and returns the sid and the open JSON.
    pub async fn handshake_polling_full(&self) -> (String, Value) {
        let resp = self.get_query("EIO=4&transport=polling", &[]).await;
        assert_eq!(resp.status, StatusCode::OK, "handshake: {resp:?}");
        let open = parse_open(resp.text());
        (open["sid"].as_str().expect("sid").to_owned(), open)
    }

    /// Polling handshake; returns the sid.
    pub async fn handshake_polling(&self) -> String {
        self.handshake_polling_full().await.0
    }

    /// A polling GET (long-poll) with extra headers.
    pub async fn get_with(&self, sid: &str, headers: &[(&str, &str)]) -> Resp {
        send(self.addr, request(Method::GET, &self.polling_uri(sid), headers, full(""))).await
    }

    /// A polling GET (long-poll).
    pub async fn get(&self, sid: &str) -> Resp {
        self.get_with(sid, &[]).await
    }

    /// A polling GET running in the background (to check it is still pending, or race it).
    pub fn spawn_get(&self, sid: &str) -> JoinHandle<Resp> {
        let req = request(Method::GET, &self.polling_uri(sid), &[], full(""));
        let addr = self.addr;
        tokio::spawn(async move { send(addr, req).await })
    }

    /// A polling POST of `body` (a payload).
    pub async fn post(&self, sid: &str, body: impl Into<Bytes>) -> Resp {
        send(self.addr, request(Method::POST, &self.polling_uri(sid), &[], full(body))).await
    }

    /// A polling POST that must answer `ok`.
    pub async fn post_ok(&self, sid: &str, body: &str) {
        let resp = self.post(sid, body.to_owned()).await;
        assert_eq!((resp.status, resp.text()), (StatusCode::OK, "ok"), "POST {body:?}: {resp:?}");
    }

    /// Opens a websocket with this query; `Err` holds the refusal (e.g. an HTTP 400).
    pub async fn try_ws(&self, query: &str) -> Result<Ws, tungstenite::Error> {
        let url = format!("ws://{}{}", self.addr, self.uri(query));
        let req = url.into_client_request()?;
        let (stream, response) =
            within(STEP, "websocket connect", tokio_tungstenite::connect_async(req)).await?;
        let headers = response.headers().clone();
        Ok(Ws { stream, headers })
    }

    /// Opens a websocket with this query, which must be accepted.
    pub async fn ws(&self, query: &str) -> Ws {
        self.try_ws(query).await.unwrap_or_else(|e| panic!("websocket {query}: {e}"))
    }

    /// A websocket-only session: returns the socket (open packet consumed), the sid and the open JSON.
    pub async fn handshake_ws(&self) -> (Ws, String, Value) {
        let mut ws = self.ws("EIO=4&transport=websocket").await;
        let first = ws.recv_text().await;
        let open = parse_open(&first);
        let sid = open["sid"].as_str().expect("sid").to_owned();
        (ws, sid, open)
    }

    /// A websocket for the upgrade of polling session `sid` (nothing sent yet).
    pub async fn ws_for(&self, sid: &str) -> Ws {
        self.ws(&format!("EIO=4&transport=websocket&sid={sid}")).await
    }

    /// Upgrades polling session `sid` to a websocket: `2probe` → `3probe`, then `5`.
    pub async fn upgrade(&self, sid: &str) -> Ws {
        let mut ws = self.ws_for(sid).await;
        ws.send_text("2probe").await;
        assert_eq!(ws.recv_text().await, "3probe");
        ws.send_text("5").await;
        ws
    }

    /// Waits until the engine has exactly `n` sessions; panics after `limit`.
    pub async fn wait_sessions(&self, n: usize, limit: Duration) {
        let started = Instant::now();
        loop {
            let count = self.engine.session_count();
            if count == n {
                return;
            }
            assert!(started.elapsed() < limit, "session_count is {count}, expected {n} within {limit:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Parses an open packet `0{json}`.
#[track_caller]
pub fn parse_open(packet: &str) -> Value {
    let json = packet.strip_prefix('0').unwrap_or_else(|| panic!("open packet expected, got {packet:?}"));
    serde_json::from_str(json).unwrap_or_else(|e| panic!("open packet JSON ({e}): {json:?}"))
}

/// What a websocket client sees next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
    /// A close frame, the end of the stream, or a connection error: the socket is gone.
    Closed,
}

/// A websocket client connection.
pub struct Ws {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Headers of the 101 response.
    pub headers: HeaderMap,
}

impl Ws {
    /// Sends a text frame.
    pub async fn send_text(&mut self, text: &str) {
        within(STEP, "websocket send", self.stream.send(WsMessage::text(text)))
            .await
            .unwrap_or_else(|e| panic!("websocket send {text:?}: {e}"));
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, data: &[u8]) {
        within(STEP, "websocket send", self.stream.send(WsMessage::binary(data.to_vec())))
            .await
            .unwrap_or_else(|e| panic!("websocket send binary: {e}"));
    }

    /// Sends one message split into frames: the first with `binary`'s opcode, the rest continuations.
    pub async fn send_fragmented(&mut self, binary: bool, parts: &[&[u8]]) {
        use tungstenite::protocol::frame::Frame;
        use tungstenite::protocol::frame::coding::{Data, OpCode};
        let first = if binary { Data::Binary } else { Data::Text };
        for (i, part) in parts.iter().enumerate() {
            let opcode = OpCode::Data(if i == 0 { first } else { Data::Continue });
            let frame = Frame::message(part.to_vec(), opcode, i + 1 == parts.len());
            within(STEP, "websocket send fragment", self.stream.send(WsMessage::Frame(frame)))
                .await
                .unwrap_or_else(|e| panic!("websocket send fragment {i}: {e}"));
        }
    }

    /// Sends a text frame, ignoring failure (the server may already have closed).
    pub async fn send_text_lossy(&mut self, text: &str) {
        let _ = tokio::time::timeout(STEP, self.stream.send(WsMessage::text(text))).await;
    }

    /// Sends a websocket close frame.
    pub async fn send_close(&mut self) {
        let _ = within(STEP, "websocket close", self.stream.close(None)).await;
    }

    /// The next data frame or the end of the socket; `None` if nothing happens within `limit`.
    pub async fn try_next(&mut self, limit: Duration) -> Option<WsEvent> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next()).await.ok()?;
            return Some(match next {
                Some(Ok(WsMessage::Text(t))) => WsEvent::Text(t.as_str().to_owned()),
                Some(Ok(WsMessage::Binary(b))) => WsEvent::Binary(b.to_vec()),
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => continue,
                Some(Ok(WsMessage::Close(_)) | Err(_)) | None => WsEvent::Closed,
            });
        }
    }

    /// The next data frame or the end of the socket, within [`STEP`].
    pub async fn next_event(&mut self) -> WsEvent {
        self.try_next(STEP).await.unwrap_or_else(|| panic!("no websocket frame within {STEP:?}"))
    }

    /// The next frame, which must be text.
    pub async fn recv_text(&mut self) -> String {
        match self.next_event().await {
            WsEvent::Text(t) => t,
            other => panic!("text frame expected, got {other:?}"),
        }
    }

    /// The next frame, which must be binary.
    pub async fn recv_binary(&mut self) -> Vec<u8> {
        match self.next_event().await {
            WsEvent::Binary(b) => b,
            other => panic!("binary frame expected, got {other:?}"),
        }
    }

    /// Waits for the server to close the socket within `limit`; data frames before the close are returned.
    pub async fn expect_closed(&mut self, limit: Duration) -> Vec<WsEvent> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.try_next(left).await {
                Some(WsEvent::Closed) => return seen,
                Some(event) => seen.push(event),
                None => panic!("websocket still open after {limit:?}; got {seen:?}"),
            }
        }
    }

    /// Asserts nothing arrives (and the socket stays open) for `quiet`.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        if let Some(event) = self.try_next(quiet).await {
            panic!("expected silence for {quiet:?}, got {event:?}");
        }
    }
}
