//! The Engine.IO server: sessions, their transports (polling, websocket) and heartbeats.
//!
//! Requests arrive from [`crate::http`]; decoded messages leave through the [`EngineHandler`]
//! the layer above (Socket.IO, or an echo example) implements.

mod dispatch;
mod drain;
mod error;
mod frame_decoder;
mod frame_writer;
mod heartbeat;
mod polling;
mod session;
pub mod sid;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use dashmap::DashMap;
use http::{HeaderMap, Uri};

use crate::config::EngineConfig;
use crate::metrics::Metrics;
pub use error::RequestError;
pub use session::{SendError, Session};
pub use sid::Sid;
pub use switchboard_protocol::engineio::Encoded;

/// What the layer above Engine.IO is told; called inline on the I/O task, so keep it quick.
pub trait EngineHandler: Send + Sync + 'static {
    /// A session completed its handshake.
    fn on_open(&self, session: &Arc<Session>);
    /// A message arrived, in order, on either transport.
    fn on_message(&self, session: &Arc<Session>, message: Message);
    /// The session is gone (called once); sends now fail.
    fn on_close(&self, session: &Arc<Session>, reason: CloseReason);
}

/// One application message as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// UTF-8 text.
    Text(Bytes),
    /// Raw bytes.
    Binary(Bytes),
}

/// Why a session ended, with socket.io's names (see [`CloseReason::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client closed it (close packet, or the connection ended cleanly).
    TransportClose,
    /// The transport failed: I/O error, oversized input, overlapping polls, or a full send queue.
    TransportError,
    /// No pong within `pingTimeout` after a ping.
    PingTimeout,
    /// The client sent something that is not Engine.IO.
    ParseError,
    /// The server closed it.
    ForcedClose,
    /// The server is shutting down.
    ServerShuttingDown,
}

impl CloseReason {
    /// The reason string socket.io uses for this case.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TransportClose => "transport close",
            Self::TransportError => "transport error",
            Self::PingTimeout => "ping timeout",
            Self::ParseError => "parse error",
            Self::ForcedClose => "forced close",
            Self::ServerShuttingDown => "server shutting down",
        }
    }

    /// Whether the client asked for the end (a pending poll then gets a noop, not a close packet).
    fn client_initiated(self) -> bool {
        matches!(self, Self::TransportClose)
    }
}

/// The handshake request as the application may inspect it (allowRequest, Socket.IO middleware).
#[derive(Debug, Clone)]
pub struct HandshakeRequest {
    /// Request URI with its query.
    pub uri: Uri,
    /// The request headers as `name:value\n` lines in one allocation (see [`Self::headers`]).
    headers: Box<[u8]>,
    /// Peer address of the TCP connection.
    pub remote_addr: SocketAddr,
}

impl HandshakeRequest {
    /// Copies what a session keeps of its handshake request. hyper parses headers and URI as
    /// slices of its 8 KiB read buffer; keeping those slices would keep the whole buffer alive
    /// for the session's lifetime, so the bytes are copied out. They are kept as one block of
    /// text rather than a `HeaderMap` (about 650 bytes for a handful of headers, kept by every
    /// session) and parsed again only when asked for.
    pub(crate) fn detached<B>(req: &http::Request<B>, remote_addr: SocketAddr) -> Self {
        let size = req.headers().iter().map(|(n, v)| n.as_str().len() + v.len() + 2).sum();
        let mut headers = Vec::with_capacity(size);
        for (name, value) in req.headers() {
            // Names hold no `:`; values hold no newline (hyper refuses both).
            headers.extend_from_slice(name.as_str().as_bytes());
            headers.push(b':');
            headers.extend_from_slice(value.as_bytes());
            headers.push(b'\n');
        }
        let uri = Uri::try_from(req.uri().to_string()).unwrap_or_default();
        Self { uri, headers: headers.into_boxed_slice(), remote_addr }
    }

    /// The request headers, in order (built on each call).
    pub fn headers(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in self.header_lines() {
            if let (Ok(name), Ok(value)) =
                (http::HeaderName::from_bytes(name), http::HeaderValue::from_bytes(value))
            {
                map.append(name, value);
            }
        }
        map
    }

    /// The first value of a header (`name` in lower case), without building a map.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.header_lines().find(|(n, _)| *n == name.as_bytes()).map(|(_, v)| v)
    }

    fn header_lines(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers.split(|&b| b == b'\n').filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            Some((&line[..colon], &line[colon + 1..]))
        })
    }

    /// First value of a query parameter, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        let q = self.uri.query()?;
        form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }
}

#[cfg(test)]
mod request_tests {
    use super::*;

    #[test]
    fn headers_survive_the_compact_form() {
        let req = http::Request::builder()
            .uri("/socket.io/?EIO=4&transport=polling")
            .header("host", "example")
            .header("x-many", "a")
            .header("x-many", "b:c")
            .header("user-agent", "test/1.0")
            .body(())
            .unwrap_or_default();
        let r = HandshakeRequest::detached(&req, SocketAddr::from(([127, 0, 0, 1], 1)));
        let map = r.headers();
        assert_eq!(map.len(), 4);
        let many: Vec<_> = map.get_all("x-many").iter().map(|v| v.as_bytes().to_vec()).collect();
        assert_eq!(many, vec![b"a".to_vec(), b"b:c".to_vec()]);
        assert_eq!(r.header("user-agent"), Some(&b"test/1.0"[..]));
        assert_eq!(r.header("x-many"), Some(&b"a"[..]));
        assert_eq!(r.header("missing"), None);
        assert_eq!(r.query("transport").as_deref(), Some("polling"));
    }
}

/// The Engine.IO server; cheap to clone (one shared state behind an `Arc`).
#[derive(Clone)]
pub struct Engine {
    shared: Arc<EngineShared>,
}

pub(crate) struct EngineShared {
    pub(crate) config: EngineConfig,
    pub(crate) sessions: DashMap<Sid, Arc<Session>>,
    pub(crate) handler: Arc<dyn EngineHandler>,
    pub(crate) heartbeat: heartbeat::Heartbeat,
    pub(crate) metrics: Arc<Metrics>,
    /// Set when the node starts draining: new handshakes are refused.
    draining: AtomicBool,
    next_id: AtomicU64,
}

impl Engine {
    /// Starts an engine (its heartbeat tasks need a running tokio runtime).
    pub fn new(config: EngineConfig, handler: Arc<dyn EngineHandler>) -> Self {
        Self::with_metrics(config, handler, Arc::new(Metrics::new()))
    }

    /// Like [`Engine::new`], counting into `metrics` (shared with the layer above).
    pub fn with_metrics(
        config: EngineConfig,
        handler: Arc<dyn EngineHandler>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let heartbeat = heartbeat::Heartbeat::start(config.ping_interval, config.ping_timeout);
        Self {
            shared: Arc::new(EngineShared {
                config,
                sessions: DashMap::new(),
                handler,
                heartbeat,
                metrics,
                draining: AtomicBool::new(false),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// This node's metrics (the Socket.IO layer and the cluster add theirs to the same registry).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Refuses new handshakes from now on (503), so a draining node's clients reconnect elsewhere.
    pub fn refuse_handshakes(&self) {
        self.shared.draining.store(true, Ordering::Release);
    }

    /// Whether new handshakes are refused.
    pub fn is_refusing_handshakes(&self) -> bool {
        self.shared.draining.load(Ordering::Acquire)
    }

    /// The open sessions, in no particular order (a snapshot).
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        self.shared.sessions.iter().map(|e| e.value().clone()).collect()
    }

    /// Number of open sessions on this node.
    pub fn session_count(&self) -> usize {
        self.shared.sessions.len()
    }

    /// A session of this node by sid.
    pub fn session(&self, sid: &str) -> Option<Arc<Session>> {
        self.shared.sessions.get(sid).map(|s| s.value().clone())
    }

    /// Closes every session (for shutdown), with the given reason.
    pub fn close_all(&self, reason: CloseReason) {
        for s in self.sessions() {
            s.close(reason);
        }
    }

    /// Whether a request path belongs to Engine.IO.
    pub fn matches_path(&self, path: &str) -> bool {
        let mount = self.shared.config.path.as_str();
        path == mount || path == &mount[..mount.len() - 1]
    }

    pub(crate) fn next_session_id(&self) -> u64 {
        self.shared.next_id.fetch_add(1, Ordering::Relaxed)
    }
}
