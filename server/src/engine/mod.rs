//! The Engine.IO server: sessions, their transports (polling, websocket) and heartbeats.
//!
//! Requests arrive from the HTTP layer above ([`Engine::handle`]); decoded messages leave through
//! the [`EngineHandler`] the layer above (Socket.IO, or the echo app) implements. The engine owns
//! its options ([`config`]), the handshake request a session keeps ([`HandshakeRequest`]), its
//! metrics, and the HTTP details of Engine.IO (CORS, compression of polling responses, the
//! client stream whose writes time out).

mod client_stream;
mod compression;
pub mod config;
pub(crate) mod cors;
mod dispatch;
mod drain;
mod error;
mod frame_decoder;
mod frame_writer;
mod heartbeat;
pub mod metrics;
mod polling;
mod request;
mod session;
pub mod sid;
mod ws;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use dashmap::DashMap;

use crate::metrics::Registry;

pub use client_stream::ClientStream;
pub use config::{
    AllowRequest, AllowRequestFuture, ConfigError, CookieConfig, CorsConfig, EngineConfig, SameSite,
    Transports,
};
pub use error::RequestError;
pub use metrics::{EngineMetrics, TransportMetrics};
pub use request::HandshakeRequest;
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
    pub(crate) metrics: Arc<EngineMetrics>,
    registry: Registry,
    /// Set when the node starts draining: new handshakes are refused.
    draining: AtomicBool,
    next_id: AtomicU64,
}

impl Engine {
    /// Starts an engine with a registry of its own (its heartbeat tasks need a running tokio runtime).
    pub fn new(config: EngineConfig, handler: Arc<dyn EngineHandler>) -> Self {
        Self::with_registry(config, handler, Registry::new())
    }

    /// Like [`Engine::new`], registering the engine's metrics in `registry`, which the layers
    /// around it (Socket.IO, HTTP, the cluster) share, so one `/metrics` shows them all.
    pub fn with_registry(config: EngineConfig, handler: Arc<dyn EngineHandler>, registry: Registry) -> Self {
        let metrics = Arc::new(EngineMetrics::register(&registry));
        let heartbeat = heartbeat::Heartbeat::start(config.ping_interval, config.ping_timeout);
        Self {
            shared: Arc::new(EngineShared {
                config,
                sessions: DashMap::new(),
                handler,
                heartbeat,
                metrics,
                registry,
                draining: AtomicBool::new(false),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// The engine's metrics.
    pub fn metrics(&self) -> &EngineMetrics {
        &self.shared.metrics
    }

    /// The registry the engine's metrics are in, where the layers around it register theirs.
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
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
