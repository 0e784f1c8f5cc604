//! Connection state recovery, as socket.io 4.6+ and its official client speak it
//! (`docs/recovery.md`): a connected socket gets a private session id (`pid`) in its CONNECT
//! answer; every packet logged for it carries an offset as its last argument; a client whose
//! connection dropped sends `{pid, offset}` with its next CONNECT and, if its namespace's
//! [`SessionStore`] still has the session and every packet after the offset, gets the same socket
//! back (id, rooms, data, `socket.recovered`) with the missed packets replayed before new ones.
//!
//! This module holds the option ([`RecoveryConfig`]), a namespace's part of it (its store and the
//! lock that orders logging with delivery), and the CONNECT auth's recovery fields; the client
//! (`client.rs`), the socket (`socket.rs`) and the broadcast operator (`broadcast.rs`) call it.
//!
//! With a store whose log is shared by the cluster (Redis Streams,
//! `switchboard_redis::recovery`), logging a packet does not deliver it: every node, this one
//! included, delivers logged packets as it reads them from the shared log, in its order
//! ([`LocalDelivery`], under the same order lock), so all clients see one order and any node can
//! restore any of them (`docs/recovery.md`). Sessions are then saved as they change, so a client
//! whose node died finds its session elsewhere.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus::IntCounter;
use switchboard_adapter::recovery::{
    LogSink, MemorySessionStoreFactory, Prefetched, RecoveryLimits, SavedSession, SessionStore,
    SessionStoreFactory,
};
use switchboard_adapter::{Adapter, BroadcastOptions, BroadcastPacket};
use switchboard_protocol::socketio::{self, Value, encode_event};

use super::DisconnectReason;
use super::handler;
use super::metrics::RecoveryMetrics;

/// Connection state recovery's options (socket.io's `connectionStateRecovery`), off unless given
/// to [`SocketIoConfig::with_connection_state_recovery`](super::SocketIoConfig::with_connection_state_recovery).
#[derive(Clone)]
pub struct RecoveryConfig {
    limits: RecoveryLimits,
    skip_middlewares: bool,
    store: Arc<dyn SessionStoreFactory>,
}

impl std::fmt::Debug for RecoveryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryConfig")
            .field("limits", &self.limits)
            .field("skip_middlewares", &self.skip_middlewares)
            .finish_non_exhaustive()
    }
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            limits: RecoveryLimits::default(),
            skip_middlewares: true,
            store: Arc::new(MemorySessionStoreFactory),
        }
    }
}

impl RecoveryConfig {
    /// How long a disconnected socket stays restorable, and a logged packet replayable;
    /// default 2 minutes (socket.io's `maxDisconnectionDuration`). Longer windows keep more
    /// sessions and packets, within the bounds below.
    pub fn with_max_disconnection_duration(mut self, d: Duration) -> Self {
        self.limits.max_disconnection_duration = d;
        self
    }

    /// Whether a restored socket skips the namespace's connect middleware; default true
    /// (socket.io's `skipMiddlewares`): the middleware already accepted this socket. Set it false
    /// when the middleware must see every connection (a token that may have been revoked).
    pub fn with_skip_middlewares(mut self, skip: bool) -> Self {
        self.skip_middlewares = skip;
        self
    }

    /// Most packets each namespace's log keeps; default 10 000. A client that missed a packet
    /// pushed out of the log is not restored (never a partial replay): size it to the packets a
    /// namespace emits within the window.
    pub fn with_max_log_packets(mut self, n: usize) -> Self {
        self.limits.max_log_packets = n;
        self
    }

    /// Most bytes each namespace's log keeps (packets by their encoded size); default 8 MiB.
    pub fn with_max_log_bytes(mut self, n: usize) -> Self {
        self.limits.max_log_bytes = n;
        self
    }

    /// Most disconnected sessions each namespace keeps, the oldest dropped first; default 10 000.
    pub fn with_max_sessions(mut self, n: usize) -> Self {
        self.limits.max_sessions = n;
        self
    }

    /// Most bytes of disconnected sessions (ids, rooms, data as JSON) each namespace keeps;
    /// default 16 MiB.
    pub fn with_max_session_bytes(mut self, n: usize) -> Self {
        self.limits.max_session_bytes = n;
        self
    }

    /// Where sessions and the packet log are kept; default this node's memory
    /// ([`MemorySessionStoreFactory`]). With a cluster, a broker store lets any node restore any
    /// client: `switchboard_redis::RedisTransport::session_stores()` (Redis Streams), whose log
    /// also carries the logged packets, so every node delivers them in one order.
    pub fn with_store(mut self, store: Arc<dyn SessionStoreFactory>) -> Self {
        self.store = store;
        self
    }

    /// The bounds every namespace's store gets.
    pub fn limits(&self) -> &RecoveryLimits {
        &self.limits
    }

    /// The recovery part of namespace `nsp`; a replay may fill at most half of a client's send
    /// queue (`max_queue_bytes`), so the packets that follow it still fit.
    pub(crate) fn for_namespace(
        &self,
        nsp: &str,
        max_queue_bytes: usize,
        metrics: RecoveryMetrics,
    ) -> NamespaceRecovery {
        NamespaceRecovery {
            store: self.store.create(nsp, &self.limits),
            skip_middlewares: self.skip_middlewares,
            max_replay_bytes: max_queue_bytes / 2,
            order: Arc::new(Mutex::new(())),
            metrics,
            sink: None,
        }
    }
}

/// One namespace's recovery: its store, and the lock that keeps its log in the order sockets
/// receive packets.
pub(crate) struct NamespaceRecovery {
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) skip_middlewares: bool,
    pub(crate) max_replay_bytes: usize,
    /// Held while a packet is logged and delivered to this node's sockets, while a socket joins
    /// (and gets its replay) and while one leaves. Two broadcasts that logged in one order but
    /// reached a socket in the other would make its client's last offset skip one (a loss) or
    /// come before one it had (a duplicate) on restore; a restore between a packet's logging
    /// and its delivery would get it twice or not at all.
    order: Arc<Mutex<()>>,
    pub(crate) metrics: RecoveryMetrics,
    /// What a shared log's store delivers through (it holds it weakly).
    sink: Option<Arc<dyn LogSink>>,
}

impl NamespaceRecovery {
    /// See [`NamespaceRecovery::order`](Self).
    pub(crate) fn order(&self) -> MutexGuard<'_, ()> {
        lock_order(&self.order)
    }

    /// Gives the store the namespace's local delivery, for the packets it reads from a shared log.
    pub(crate) fn attach(&mut self, adapter: Arc<dyn Adapter>, deliveries: IntCounter) {
        if !self.store.is_shared() {
            return;
        }
        let sink: Arc<dyn LogSink> = Arc::new(LocalDelivery {
            order: self.order.clone(),
            adapter,
            deliveries,
            metrics: self.metrics.clone(),
            log_packets: AtomicI64::new(0),
        });
        self.store.attach(Arc::downgrade(&sink));
        self.sink = Some(sink);
    }

    /// Keeps a disconnected socket's session for a restore. The in-memory store saves within the
    /// call, so a client that reconnects at once finds it; a broker store's save finishes on a task.
    pub(crate) fn keep(&self, saved: SavedSession) {
        let store = self.store.clone();
        let id = saved.sid.clone();
        handler::run(
            handler::boxed(async move { store.save(saved).await.map_err(|e| e.to_string()) }),
            None,
            move |error| tracing::warn!(socket = %id, error, "session not kept for recovery"),
        );
    }

    /// Logs an event for the sockets `opts` selects and returns its packet, the offset appended to
    /// its arguments; `build` makes the packet from the encoding (plain or tracked). Call with
    /// [`Self::order`] held until the packet is delivered locally. `None`: the log is shared and
    /// every node delivers the packet as it reads it, this one too; the caller delivers nothing.
    pub(crate) fn log(
        &self,
        opts: &BroadcastOptions,
        nsp: &str,
        event: &str,
        args: &mut Vec<Value>,
        build: &mut dyn FnMut(socketio::Encoded) -> BroadcastPacket,
    ) -> Option<BroadcastPacket> {
        let encoded = self.store.append(opts, &mut |offset| {
            args.push(Value::String(offset.to_owned()));
            let encoded = encode_event(nsp, event, args, None);
            args.pop();
            encoded
        });
        encoded.map(build)
    }
}

fn lock_order(order: &Mutex<()>) -> MutexGuard<'_, ()> {
    order.lock().unwrap_or_else(|e| e.into_inner())
}

/// A namespace's local delivery of the packets a shared log's store reads: to this node's
/// sockets only (the other nodes read the log too), under the namespace's order lock, together
/// with the store's record of it.
struct LocalDelivery {
    order: Arc<Mutex<()>>,
    adapter: Arc<dyn Adapter>,
    deliveries: IntCounter,
    metrics: RecoveryMetrics,
    /// This namespace's share of `switchboard_recovery_log_packets`.
    log_packets: AtomicI64,
}

impl Drop for LocalDelivery {
    fn drop(&mut self) {
        self.metrics.log_packets.sub(self.log_packets.load(Ordering::Relaxed));
    }
}

impl LogSink for LocalDelivery {
    fn deliver(&self, opts: &BroadcastOptions, packet: &BroadcastPacket, commit: &mut dyn FnMut()) {
        let _order = lock_order(&self.order);
        let mut local = opts.clone();
        local.flags.local = true;
        // A local broadcast is delivered within the call; its future is ready.
        let delivered = futures_util::FutureExt::now_or_never(self.adapter.broadcast(packet.clone(), local));
        if let Some(Ok(n)) = delivered {
            self.deliveries.inc_by(n as u64);
        }
        commit();
    }

    fn observe(&self, lag: Duration, log_packets: usize) {
        self.metrics.log_lag.observe(lag.as_secs_f64());
        let now = i64::try_from(log_packets).unwrap_or(i64::MAX);
        let before = self.log_packets.swap(now, Ordering::Relaxed);
        self.metrics.log_packets.add(now - before);
    }
}

/// A socket's part of recovery: its private session id, where the log stood when its session
/// began, and whether any logged packet reached it (see `SavedSession`).
#[derive(Debug)]
pub(crate) struct SocketRecovery {
    pub(crate) pid: String,
    pub(crate) since: Mutex<String>,
    pub(crate) delivered_logged: AtomicBool,
}

impl SocketRecovery {
    pub(crate) fn new(pid: String, since: String, delivered_logged: bool) -> Self {
        Self { pid, since: Mutex::new(since), delivered_logged: AtomicBool::new(delivered_logged) }
    }

    /// A logged packet was queued to the socket.
    pub(crate) fn mark_delivered(&self) {
        if !self.delivered_logged.load(Ordering::Relaxed) {
            self.delivered_logged.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn since(&self) -> String {
        self.since.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_since(&self, head: String) {
        *self.since.lock().unwrap_or_else(|e| e.into_inner()) = head;
    }
}

/// What a client's CONNECT asks to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claim {
    pub(crate) pid: String,
    /// The last offset the client saw; `None` if it saw no logged packet. One that is not a
    /// string is kept as `""`, which no store gave out.
    pub(crate) offset: Option<String>,
}

/// A session found for a CONNECT, on its way to being restored: its missed packets are read
/// again, and queued, as the socket joins its namespace.
#[derive(Debug)]
pub(crate) struct Restoring {
    pub(crate) saved: SavedSession,
    pub(crate) offset: Option<String>,
    /// What the store read from the broker for it (nothing for the in-memory store).
    pub(crate) prefetched: Prefetched,
}

/// Takes the recovery fields out of a CONNECT's auth (they are the client's, not the
/// application's, and the pid is a secret that must not travel with `socket.handshake` to other
/// nodes); a claim if `pid` is a string, as socket.io requires.
pub(crate) fn take_claim(auth: &mut serde_json::Map<String, serde_json::Value>) -> Option<Claim> {
    let pid = auth.remove("pid");
    let offset = auth.remove("offset");
    let serde_json::Value::String(pid) = pid? else { return None };
    let offset = match offset {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(offset)) => Some(offset),
        Some(_) => Some(String::new()),
    };
    Some(Claim { pid, offset })
}

/// Whether a socket that ended this way may come back: the connection was lost or closed under
/// it, not ended on purpose by either side (socket.io's list).
pub(crate) fn recoverable(reason: DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::TransportClose
            | DisconnectReason::TransportError
            | DisconnectReason::ForcedClose
            | DisconnectReason::PingTimeout
            | DisconnectReason::ServerShuttingDown
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn auth(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn the_claim_is_taken_out_of_the_auth() {
        let mut a = auth(json!({"pid": "p", "offset": "o", "token": "t"}));
        assert_eq!(take_claim(&mut a), Some(Claim { pid: "p".into(), offset: Some("o".into()) }));
        assert_eq!(a, auth(json!({"token": "t"})));
        let mut a = auth(json!({"pid": "p"}));
        assert_eq!(take_claim(&mut a), Some(Claim { pid: "p".into(), offset: None }));
        let mut a = auth(json!({"pid": "p", "offset": 3}));
        assert_eq!(take_claim(&mut a), Some(Claim { pid: "p".into(), offset: Some(String::new()) }));
        let mut a = auth(json!({"pid": 1, "offset": "o"}));
        assert_eq!(take_claim(&mut a), None);
        assert!(a.is_empty());
        assert_eq!(take_claim(&mut auth(json!({"token": "t"}))), None);
    }

    #[test]
    fn only_lost_connections_are_recoverable() {
        assert!(recoverable(DisconnectReason::TransportClose));
        assert!(recoverable(DisconnectReason::PingTimeout));
        assert!(!recoverable(DisconnectReason::ClientNamespaceDisconnect));
        assert!(!recoverable(DisconnectReason::ServerNamespaceDisconnect));
        assert!(!recoverable(DisconnectReason::ParseError));
    }
}
