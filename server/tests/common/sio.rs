//! A small raw Socket.IO v5 client for the integration tests, built on the protocol codec, plus
//! helpers to serve a [`SocketIo`] on a real listener and to reach its server-side sockets.
//!
//! The client speaks over a websocket or HTTP long-polling: it joins namespaces (with auth),
//! emits with or without an ack id, answers acks, and reads the next Socket.IO packet, answering
//! Engine.IO pings with pongs and reassembling binary attachments. Every wait is bounded.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode};
use switchboard::socketio::{DisconnectReason, SocketIo, SocketIoConfig, SocketRef};
use switchboard::{Engine, EngineConfig, Server};
use switchboard_protocol::engineio::{self, decode_payload, encode_encoded_payload};
use switchboard_protocol::socketio::{self, Decoded, Packet, Value, encode_ack, encode_event};
use switchboard_testkit::eventually;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{STEP, TestServer, Ws, WsEvent, full, request, try_send, within};

/// A Socket.IO server with default Socket.IO options on `config`.
pub fn io(config: EngineConfig) -> SocketIo {
    SocketIo::new(config, SocketIoConfig::default())
}

/// Serves `engine` (a [`SocketIo`]'s) on 127.0.0.1:0; shut down when the result is dropped.
pub async fn serve(engine: Engine) -> TestServer {
    let path = engine.config().path().to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let shutdown = CancellationToken::new();
    tokio::spawn(Server::new(engine.clone()).serve(listener, shutdown.clone()));
    TestServer { addr, engine, path, shutdown }
}

/// Serves a [`SocketIo`]'s engine.
pub async fn serve_io(io: &SocketIo) -> TestServer {
    serve(io.engine().clone()).await
}

/// A served [`SocketIo`] whose main namespace reports every socket that connects and every
/// disconnect (socket id, reason), for tests that act on server-side sockets.
pub struct Fixture {
    /// The server's Socket.IO.
    pub io: SocketIo,
    /// Where it listens.
    pub server: TestServer,
    /// Each socket of `/`, as it connects.
    pub sockets: mpsc::UnboundedReceiver<SocketRef>,
    /// Each disconnect on `/`: the socket id and the reason.
    pub reasons: mpsc::UnboundedReceiver<(String, DisconnectReason)>,
}

/// Serves `io` with its main namespace watched (see [`Fixture`]).
pub async fn fixture_with(io: SocketIo) -> Fixture {
    let (socket_tx, sockets) = mpsc::unbounded_channel();
    let (reason_tx, reasons) = mpsc::unbounded_channel();
    io.main_namespace().on_connection(move |socket: SocketRef| {
        let (socket_tx, reason_tx) = (socket_tx.clone(), reason_tx.clone());
        async move {
            socket.on_disconnect(move |s, reason| {
                let _ = reason_tx.send((s.id().to_string(), reason));
            });
            let _ = socket_tx.send(socket);
        }
    });
    let server = serve_io(&io).await;
    Fixture { io, server, sockets, reasons }
}

/// The next value of a test channel, within [`STEP`].
pub async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    within(STEP, what, rx.recv()).await.unwrap_or_else(|| panic!("{what}: channel closed"))
}

/// Asserts nothing arrives on a test channel for `quiet`.
pub async fn expect_no_value<T: std::fmt::Debug>(rx: &mut mpsc::UnboundedReceiver<T>, quiet: Duration) {
    if let Ok(v) = tokio::time::timeout(quiet, rx.recv()).await {
        panic!("expected nothing for {quiet:?}, got {v:?}");
    }
}

/// Receives server-side sockets (sent by an `on_connection` handler) until the one with id `sid`.
pub async fn socket_for(rx: &mut mpsc::UnboundedReceiver<SocketRef>, sid: &str) -> SocketRef {
    loop {
        let socket = recv(rx, "server-side socket").await;
        if socket.id().as_str() == sid {
            return socket;
        }
    }
}

/// Waits until `cond` holds (the test kit's [`eventually`]); panics with `what` after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let held = eventually(limit, || std::future::ready(cond())).await;
    assert!(held, "not true within {limit:?}: {what}");
}

/// JSON test data as a Socket.IO value.
pub fn json(v: serde_json::Value) -> Value {
    Value::from(v)
}

/// One Engine.IO-level thing the client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text message (`4…`), without the `4`.
    Message(String),
    /// A binary message.
    Binary(Bytes),
    /// A server ping.
    Ping,
    /// A noop.
    Noop,
    /// The session ended (close packet, websocket closed, or unknown sid on polling).
    Closed,
}

/// One raw Socket.IO message: its text and the binary attachments that followed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// The packet text, e.g. `2["event",1]`.
    pub text: String,
    /// Attachments in arrival order.
    pub attachments: Vec<Bytes>,
}

impl Msg {
    /// The decoded packet, placeholders resolved.
    #[track_caller]
    pub fn packet(&self) -> Packet {
        match Packet::decode(&self.text).unwrap_or_else(|e| panic!("bad packet {:?}: {e}", self.text)) {
            Decoded::Complete(p) => p,
            Decoded::NeedsAttachments(mut partial) => {
                let mut done = None;
                for a in &self.attachments {
                    done = partial.push(a.clone()).expect("attachment");
                }
                done.unwrap_or_else(|| panic!("attachments missing for {:?}", self.text))
            }
        }
    }
}

/// What waiting for a Socket.IO message gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recv {
    /// A message.
    Msg(Msg),
    /// The session ended.
    Closed,
    /// Nothing within the limit.
    Timeout,
}

enum Conn {
    Ws(Box<Ws>),
    Polling { addr: SocketAddr, uri: String, inbox: VecDeque<Frame> },
}

/// A raw Socket.IO client on one Engine.IO session.
pub struct Client {
    conn: Conn,
    /// The Engine.IO session id.
    pub eio_sid: String,
    /// Whether pings are answered while reading (default true).
    pub answer_pings: bool,
    /// Pings seen so far.
    pub pings: usize,
}

impl Client {
    /// A websocket-only session.
    pub async fn ws(server: &TestServer) -> Self {
        let (ws, sid, _) = server.handshake_ws().await;
        Self { conn: Conn::Ws(Box::new(ws)), eio_sid: sid, answer_pings: true, pings: 0 }
    }

    /// A long-polling session (no upgrade).
    pub async fn polling(server: &TestServer) -> Self {
        let sid = server.handshake_polling().await;
        let conn = Conn::Polling { addr: server.addr, uri: server.polling_uri(&sid), inbox: VecDeque::new() };
        Self { conn, eio_sid: sid, answer_pings: true, pings: 0 }
    }

    /// A websocket session connected to `/` without auth; returns it and its socket id.
    pub async fn ws_connected(server: &TestServer) -> (Self, String) {
        let mut c = Self::ws(server).await;
        let sid = c.connect("/", None).await.expect("connect to /");
        (c, sid)
    }

    /// Whether this client uses long-polling.
    pub fn is_polling(&self) -> bool {
        matches!(self.conn, Conn::Polling { .. })
    }

    /// Sends Engine.IO packets (text as is, binary as binary messages) in order; on polling, in one POST.
    pub async fn send_eio(&mut self, packets: &[engineio::Encoded]) {
        match &mut self.conn {
            Conn::Ws(ws) => {
                for p in packets {
                    match p {
                        engineio::Encoded::Text(t) => {
                            ws.send_text(std::str::from_utf8(t).expect("UTF-8")).await
                        }
                        engineio::Encoded::Binary(b) => ws.send_binary(b).await,
                    }
                }
            }
            Conn::Polling { addr, uri, .. } => {
                let mut body = BytesMut::new();
                encode_encoded_payload(packets, &mut body);
                let req = request(Method::POST, uri, &[], full(body.freeze()));
                let resp = within(STEP, "polling POST", try_send(*addr, req))
                    .await
                    .unwrap_or_else(|e| panic!("polling POST: {e}"));
                assert_eq!(resp.status, StatusCode::OK, "polling POST: {resp:?}");
            }
        }
    }

    /// Like [`Client::send_eio`], but a refusal (the server closed the session) is not an error.
    pub async fn send_eio_lossy(&mut self, packets: &[engineio::Encoded]) {
        match &mut self.conn {
            Conn::Ws(ws) => {
                for p in packets {
                    if let engineio::Encoded::Text(t) = p {
                        ws.send_text_lossy(std::str::from_utf8(t).expect("UTF-8")).await;
                    }
                }
            }
            Conn::Polling { addr, uri, .. } => {
                let mut body = BytesMut::new();
                encode_encoded_payload(packets, &mut body);
                let req = request(Method::POST, uri, &[], full(body.freeze()));
                let _ = tokio::time::timeout(STEP, try_send(*addr, req)).await;
            }
        }
    }

    /// Sends one Socket.IO packet text (prefixed with the Engine.IO `4`).
    pub async fn send_text(&mut self, text: &str) {
        self.send_eio(&[engineio::Encoded::message(text.as_bytes())]).await;
    }

    /// Sends an encoded Socket.IO packet and its attachments.
    pub async fn send_encoded(&mut self, encoded: &socketio::Encoded) {
        let mut frames = vec![engineio::Encoded::message(&encoded.text)];
        frames.extend(encoded.attachments.iter().cloned().map(engineio::Encoded::Binary));
        self.send_eio(&frames).await;
    }

    /// Sends a raw Engine.IO text packet (e.g. `3` for a pong, `1` to close).
    pub async fn send_raw(&mut self, text: &str) {
        self.send_eio(&[engineio::Encoded::Text(Bytes::copy_from_slice(text.as_bytes()))]).await;
    }

    /// Emits `event` on namespace `nsp`, with an ack id if `id` is set.
    pub async fn emit_to(&mut self, nsp: &str, event: &str, args: Vec<Value>, id: Option<u64>) {
        self.send_encoded(&encode_event(nsp, event, &args, id)).await;
    }

    /// Emits `event` on `/` without ack.
    pub async fn emit(&mut self, event: &str, args: Vec<Value>) {
        self.emit_to("/", event, args, None).await;
    }

    /// Emits `event` on `/` asking for ack `id`.
    pub async fn emit_with_ack(&mut self, event: &str, args: Vec<Value>, id: u64) {
        self.emit_to("/", event, args, Some(id)).await;
    }

    /// Answers the server's event `id` on `nsp`.
    pub async fn ack(&mut self, nsp: &str, id: u64, args: Vec<Value>) {
        self.send_encoded(&encode_ack(nsp, id, &args)).await;
    }

    /// Joins `nsp` (with `auth` if given): `Ok(socket id)`, or `Err(CONNECT_ERROR data)`.
    pub async fn connect(
        &mut self,
        nsp: &str,
        auth: Option<serde_json::Value>,
    ) -> Result<String, serde_json::Value> {
        let data = auth.map(|a| match a {
            serde_json::Value::Object(map) => map,
            other => panic!("auth must be an object, got {other}"),
        });
        self.send_encoded(&Packet::Connect { nsp: nsp.to_owned(), data }.encode()).await;
        match self.next_packet().await {
            Packet::Connect { nsp: got, data } if got == nsp => {
                let data = data.unwrap_or_else(|| panic!("CONNECT answer without data"));
                Ok(data.get("sid").and_then(|s| s.as_str()).expect("sid in CONNECT answer").to_owned())
            }
            Packet::ConnectError { nsp: got, data } if got == nsp => Err(data),
            other => panic!("CONNECT answer for {nsp:?} expected, got {other:?}"),
        }
    }

    /// Leaves `nsp` (sends DISCONNECT).
    pub async fn disconnect_nsp(&mut self, nsp: &str) {
        self.send_encoded(&Packet::Disconnect { nsp: nsp.to_owned() }.encode()).await;
    }

    /// Ends the session from the client side: websocket close frame, or a close packet on polling.
    pub async fn close(&mut self) {
        match &mut self.conn {
            Conn::Ws(ws) => ws.send_close().await,
            Conn::Polling { .. } => self.send_raw("1").await,
        }
    }

    /// The next Engine.IO-level frame, or `None` after `limit`.
    ///
    /// On polling this runs a long-poll GET; abandoning it at `limit` may lose what it was about
    /// to return, so polling callers should give long limits.
    pub async fn next_frame(&mut self, limit: Duration) -> Option<Frame> {
        match &mut self.conn {
            Conn::Ws(ws) => Some(match ws.try_next(limit).await? {
                WsEvent::Binary(b) => Frame::Binary(Bytes::from(b)),
                WsEvent::Closed => Frame::Closed,
                WsEvent::Text(t) => match t.as_bytes().first() {
                    Some(b'4') => Frame::Message(t[1..].to_owned()),
                    Some(b'2') => Frame::Ping,
                    Some(b'6') => Frame::Noop,
                    Some(b'1') => Frame::Closed,
                    _ => panic!("unexpected Engine.IO packet {t:?}"),
                },
            }),
            Conn::Polling { addr, uri, inbox } => {
                if let Some(f) = inbox.pop_front() {
                    return Some(f);
                }
                let req = request(Method::GET, uri, &[], full(""));
                let resp = match tokio::time::timeout(limit, try_send(*addr, req)).await {
                    Err(_) => return None,
                    Ok(Err(_)) => return Some(Frame::Closed),
                    Ok(Ok(resp)) => resp,
                };
                if resp.status != StatusCode::OK {
                    return Some(Frame::Closed);
                }
                for packet in decode_payload(resp.body).expect("polling payload") {
                    inbox.push_back(match packet.expect("polling packet") {
                        engineio::Packet::Message(d) => {
                            Frame::Message(String::from_utf8(d.to_vec()).expect("UTF-8"))
                        }
                        engineio::Packet::Binary(b) => Frame::Binary(b),
                        engineio::Packet::Ping(_) => Frame::Ping,
                        engineio::Packet::Noop => Frame::Noop,
                        engineio::Packet::Close => Frame::Closed,
                        other => panic!("unexpected Engine.IO packet {other:?}"),
                    });
                }
                inbox.pop_front()
            }
        }
    }

    /// The next Socket.IO message within `limit` (pings answered, noops skipped, attachments collected).
    pub async fn recv(&mut self, limit: Duration) -> Recv {
        let deadline = tokio::time::Instant::now() + limit;
        let mut pending: Option<(Msg, usize)> = None;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(frame) = self.next_frame(left).await else { return Recv::Timeout };
            match frame {
                Frame::Ping => {
                    self.pings += 1;
                    if self.answer_pings {
                        self.send_eio_lossy(&[engineio::Encoded::Text(Bytes::from_static(b"3"))]).await;
                    }
                }
                Frame::Noop => {}
                Frame::Closed => return Recv::Closed,
                Frame::Binary(b) => {
                    let Some((mut msg, want)) = pending.take() else {
                        panic!("binary message without a binary packet before it")
                    };
                    msg.attachments.push(b);
                    if msg.attachments.len() == want {
                        return Recv::Msg(msg);
                    }
                    pending = Some((msg, want));
                }
                Frame::Message(text) => {
                    assert!(pending.is_none(), "text {text:?} while attachments were expected");
                    let want = match Packet::decode(&text) {
                        Ok(Decoded::NeedsAttachments(p)) => p.expected(),
                        _ => 0,
                    };
                    let msg = Msg { text, attachments: Vec::new() };
                    if want == 0 {
                        return Recv::Msg(msg);
                    }
                    pending = Some((msg, want));
                }
            }
        }
    }

    /// The next Socket.IO message, within [`STEP`].
    pub async fn next_msg(&mut self) -> Msg {
        match self.recv(STEP).await {
            Recv::Msg(m) => m,
            other => panic!("Socket.IO message expected, got {other:?}"),
        }
    }

    /// The next Socket.IO message's text (it must have no attachments).
    pub async fn next_text(&mut self) -> String {
        let msg = self.next_msg().await;
        assert!(msg.attachments.is_empty(), "plain packet expected, got {msg:?}");
        msg.text
    }

    /// The next Socket.IO packet, decoded.
    pub async fn next_packet(&mut self) -> Packet {
        self.next_msg().await.packet()
    }

    /// The next packet must be `event` on `nsp`: returns its args and ack id.
    pub async fn expect_event_on(&mut self, nsp: &str, event: &str) -> (Vec<Value>, Option<u64>) {
        match self.next_packet().await {
            Packet::Event { nsp: n, event: e, args, id } if n == nsp && e == event => (args, id),
            other => panic!("event {event:?} on {nsp:?} expected, got {other:?}"),
        }
    }

    /// The next packet must be `event` on `/`: returns its args and ack id.
    pub async fn expect_event(&mut self, event: &str) -> (Vec<Value>, Option<u64>) {
        self.expect_event_on("/", event).await
    }

    /// Waits for the session to end within `limit`; returns the messages seen before.
    pub async fn expect_closed(&mut self, limit: Duration) -> Vec<Msg> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Recv::Closed => return seen,
                Recv::Msg(m) => seen.push(m),
                Recv::Timeout => panic!("session still open after {limit:?}; got {seen:?}"),
            }
        }
    }

    /// Asserts no Socket.IO message arrives and the session stays open for `quiet` (websocket only).
    pub async fn expect_silence(&mut self, quiet: Duration) {
        assert!(!self.is_polling(), "expect_silence needs a websocket client");
        match self.recv(quiet).await {
            Recv::Timeout => {}
            other => panic!("expected silence for {quiet:?}, got {other:?}"),
        }
    }
}
