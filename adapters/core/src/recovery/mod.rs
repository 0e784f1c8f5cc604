//! Connection state recovery's storage seam: what a namespace keeps so that a client whose
//! connection dropped can come back as the same socket (id, rooms, data) and get the packets it
//! missed. The server (`switchboard::socketio`) speaks the protocol and calls a [`SessionStore`]
//! per namespace; [`MemorySessionStore`] keeps everything on this node.
//!
//! The trait sits here, beside [`Adapter`](crate::Adapter), and not in the server, because its
//! broker implementations need the broker connections that live in the transport crates
//! (`switchboard-redis`, `switchboard-nats`), which depend on this crate and not on the server;
//! and because everything that crosses it (packets, rooms, socket ids) is already defined here.
//!
//! Offsets are opaque strings to the server: each store chooses their form and sends them to the
//! client inside the packets it logs, and the client sends the last one it saw back on reconnect.

mod memory;
mod offset;
mod shared;

use std::sync::Arc;
use std::time::Duration;

use switchboard_protocol::socketio;

use crate::adapter::BoxFuture;
use crate::error::{RestoreError, SaveError};
use crate::types::{BroadcastOptions, BroadcastPacket, Room, SocketId};

pub use shared::{LogEntry, LogSink, Mirror, Prefetched};

pub use memory::{MemorySessionStore, MemorySessionStoreFactory};

/// Default `maxDisconnectionDuration`, as socket.io's: 2 minutes.
pub const DEFAULT_MAX_DISCONNECTION_DURATION: Duration = Duration::from_secs(120);
/// Default most packets a namespace's log keeps.
pub const DEFAULT_MAX_LOG_PACKETS: usize = 10_000;
/// Default most bytes (packet text and attachments) a namespace's log keeps: 8 MiB.
pub const DEFAULT_MAX_LOG_BYTES: usize = 8 << 20;
/// Default most disconnected sessions a namespace keeps.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;
/// Default most bytes of disconnected sessions (ids, rooms, data) a namespace keeps: 16 MiB.
pub const DEFAULT_MAX_SESSION_BYTES: usize = 16 << 20;

/// How much a store keeps, and for how long; each bound drops the oldest first. Socket.io has
/// none but the time window, so one busy namespace can grow its log without end; here every
/// packet logged and every session kept is counted, and the defaults stay within some tens of
/// MiB per namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryLimits {
    /// How long a disconnected session, and a logged packet, stay restorable (socket.io's
    /// `maxDisconnectionDuration`); default 2 minutes.
    pub max_disconnection_duration: Duration,
    /// Most packets in the log; default 10 000.
    pub max_log_packets: usize,
    /// Most bytes in the log, packets counted by their encoded size; default 8 MiB.
    pub max_log_bytes: usize,
    /// Most disconnected sessions kept; default 10 000.
    pub max_sessions: usize,
    /// Most bytes of disconnected sessions kept (ids, room names, data as JSON); default 16 MiB.
    pub max_session_bytes: usize,
}

impl Default for RecoveryLimits {
    fn default() -> Self {
        Self {
            max_disconnection_duration: DEFAULT_MAX_DISCONNECTION_DURATION,
            max_log_packets: DEFAULT_MAX_LOG_PACKETS,
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_session_bytes: DEFAULT_MAX_SESSION_BYTES,
        }
    }
}

/// A disconnected socket as its namespace keeps it for a restore.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedSession {
    /// The private session id: the client's proof that it is this socket. Never shown to other
    /// clients, and the only key a session is found by.
    pub pid: String,
    /// The socket id the client gets back.
    pub sid: SocketId,
    /// Its rooms, its own id room included.
    pub rooms: Vec<Room>,
    /// Its `socket.data`.
    pub data: serde_json::Value,
    /// The log's [head](SessionStore::head) when the session began: a client that saw no logged
    /// packet at all missed everything logged for it since.
    pub since: String,
    /// The log's head when the socket left its rooms: nothing logged after it reached the socket.
    pub left_at: String,
    /// Whether any logged packet was queued to the socket. If not, a client that presents no
    /// offset missed only what was logged after [`Self::left_at`], so its restore does not need
    /// the log back to [`Self::since`].
    pub delivered_logged: bool,
}

impl SavedSession {
    /// Bytes it holds, roughly (strings and data as JSON), for [`RecoveryLimits::max_session_bytes`].
    pub fn size(&self) -> usize {
        let rooms: usize = self.rooms.iter().map(|r| r.as_str().len()).sum();
        let data = serde_json::to_vec(&self.data).map(|v| v.len()).unwrap_or(0);
        self.pid.len() + self.sid.as_str().len() + rooms + data + self.since.len() + self.left_at.len()
    }
}

/// One namespace's sessions and packet log.
///
/// The server serializes [`append`](Self::append)s with its local deliveries, and a restore's
/// [`missed`](Self::missed) with the restored socket joining its rooms, so a packet is either
/// replayed or delivered live, never both nor neither. For one node every call is resolved in the
/// call itself.
///
/// A broker store (`switchboard_redis::recovery`) keeps sessions and the log in the broker, so a
/// restore works on any node: its log is the transport of logged packets ([`LogSink`]), its
/// [`prefetch`](Self::prefetch) reads what this node's memory lacks, and `missed` completes it
/// under the server's ordering lock.
pub trait SessionStore: Send + Sync + 'static {
    /// Logs a packet for the sockets `opts` selects: gives it the next offset and calls `encode`
    /// with it, once, to encode the packet that carries it (as its last argument); returns that
    /// encoding, for the caller to frame and deliver. The log keeps the encoding, not the
    /// caller's frames: a tracked packet (`emit_written`) resolves when the last copy of its
    /// frames is written, which a copy in the log would never be.
    ///
    /// `None`: the log is shared by the cluster's nodes and is their transport for logged
    /// packets (see [`LogSink`]): the packet is delivered, on every node this one included, when
    /// each reads it from the log, so the caller delivers nothing and publishes nothing.
    fn append(
        &self,
        opts: &BroadcastOptions,
        encode: &mut dyn FnMut(&str) -> socketio::Encoded,
    ) -> Option<socketio::Encoded>;

    /// Whether sessions and the log outlive this node (a broker store): then a connected
    /// socket's session is saved as it changes ([`save_live`](Self::save_live)).
    fn is_shared(&self) -> bool {
        false
    }

    /// Where a store whose [`append`](Self::append) returns `None` delivers the packets it reads
    /// from its log, in log order; called once, when the namespace is made. The in-memory store
    /// delivers nothing itself and ignores it.
    fn attach(&self, sink: std::sync::Weak<dyn LogSink>) {
        let _ = sink;
    }

    /// The offset of the newest packet logged (or of the log's start when it is empty): a socket
    /// that starts now has missed nothing up to it.
    fn head(&self) -> String;

    /// Keeps a disconnected socket until `max_disconnection_duration` has passed (or the bounds
    /// push it out). A [`take`](Self::take) started after this returns finds it.
    fn save(&self, session: SavedSession) -> BoxFuture<'_, Result<(), SaveError>>;

    /// Removes and returns the session `pid` names, if it has not expired: a session is restored
    /// at most once.
    fn take(&self, pid: &str) -> BoxFuture<'_, Result<SavedSession, RestoreError>>;

    /// Reads, before the restore takes the namespace's order lock, the part of the log
    /// [`missed`](Self::missed) cannot answer from this node's memory (a broker store on a node
    /// that started after the client's offset), in bounded batches. The in-memory store has
    /// nothing to read.
    fn prefetch<'a>(
        &'a self,
        session: &'a SavedSession,
        offset: Option<&'a str>,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Prefetched, RestoreError>> {
        let _ = (session, offset, max_bytes);
        Box::pin(std::future::ready(Ok(Prefetched::default())))
    }

    /// The packets logged for `session`'s rooms after `offset` (the last one its client saw;
    /// `None` if it saw none), in log order, up to what this node has delivered: all of them, or
    /// an error if any could be gone (the log was trimmed past it, the offset is another log's)
    /// or if together they pass `max_bytes`. Never a part. `prefetched` is what
    /// [`prefetch`](Self::prefetch) read for this restore.
    fn missed(
        &self,
        session: &SavedSession,
        offset: Option<&str>,
        prefetched: &Prefetched,
        max_bytes: usize,
    ) -> Result<Vec<BroadcastPacket>, RestoreError>;

    /// Keeps a connected socket's session (on join, leave, data change) so that a client whose
    /// node dies finds it on another; a broker store saves it in the background, in call order.
    /// The in-memory store dies with the node and keeps nothing until the disconnect.
    fn save_live(&self, session: &SavedSession) {
        let _ = session;
    }

    /// Forgets a session kept by [`save_live`](Self::save_live): its socket left on purpose.
    fn forget(&self, pid: &str) {
        let _ = pid;
    }

    /// Resolves once the packets this node appended so far were delivered on this node (a
    /// shared log's emit waits for it, so a publisher that awaits its emits cannot outrun the
    /// broker nor this node's reader). Ready at once for the in-memory store, which delivers
    /// within [`append`](Self::append)'s caller.
    fn delivered(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    /// Resolves once every save queued before the call reached the store (a draining node
    /// waits for it before it exits).
    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// Makes one store per namespace, as [`AdapterFactory`](crate::AdapterFactory) makes adapters.
pub trait SessionStoreFactory: Send + Sync + 'static {
    /// The store of namespace `nsp`.
    fn create(&self, nsp: &str, limits: &RecoveryLimits) -> Arc<dyn SessionStore>;

    /// Resolves once every store it made has written what was queued before the call (see
    /// [`SessionStore::flush`]): a draining node saves its sessions before it exits.
    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// Whether a packet sent with `opts` was meant for a socket in `rooms` (socket.io's rule: in one
/// of the targeted rooms, or none targeted, and in none of the excepted).
pub fn selects(opts_rooms: &[Room], opts_except: &[Room], rooms: &[Room]) -> bool {
    let included = opts_rooms.is_empty() || rooms.iter().any(|r| opts_rooms.contains(r));
    included && !rooms.iter().any(|r| opts_except.contains(r))
}
