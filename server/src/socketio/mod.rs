//! Socket.IO v5 on top of the engine: namespaces, sockets, rooms, acks, binary, middleware.
//!
//! [`SocketIo`] implements the engine's handler: each Engine.IO session gets a client
//! (`client.rs`) that decodes packets and routes them to its sockets (`socket.rs`), one per
//! namespace (`namespace.rs`). Emits and room operations go through the namespace's adapter
//! (`switchboard-adapter`), the seam where cluster adapters plug in. With connection state
//! recovery on (`recovery.rs`), each namespace also logs its packets in a session store.

mod ack;
mod broadcast;
mod client;
mod error;
mod handler;
mod handshake;
mod limits;
pub mod metrics;
mod namespace;
mod recovery;
mod reserved;
mod socket;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use switchboard_adapter::{AdapterFactory, MemoryAdapterFactory};
use switchboard_protocol::socketio::DEFAULT_MAX_ATTACHMENTS;

pub use ack::AckResponder;
pub use broadcast::{BroadcastOperator, RemoteSocket};
pub use error::{
    AckError, BroadcastAckError, BroadcastError, ClusterRequestError, EmitError, JoinError, RoomsError,
    ServerSideEmitError,
};
pub use handler::HandlerOutput;
pub use handshake::Handshake;
pub use limits::{
    DEFAULT_CHILD_NAMESPACE_CLEANUP, DEFAULT_MAX_NAME_BYTES, DEFAULT_MAX_NAMESPACES_PER_CLIENT,
    DEFAULT_MAX_ROOMS_PER_SOCKET, RoomNameTooLong,
};
pub use namespace::{Namespace, ServerSideEvent};
pub use recovery::RecoveryConfig;
pub use reserved::{ReservedEventName, check_event_name};
pub use socket::{AnyListener, Event, Socket, SocketEmit, SocketRef};
pub use switchboard_adapter::ServerSideAck;
pub use switchboard_adapter::{AckResponse, Room, SocketId, SocketInfo};
pub use switchboard_protocol::socketio::Value;

use crate::engine::{CloseReason, Engine, EngineConfig, EngineHandler, Message, Session};
use crate::metrics::Registry;
use client::Client;
use limits::Limits;
use metrics::{NamespaceMetrics, SocketIoMetrics};
use namespace::{Entered, Inbound, NamespaceHandlers};

/// A boxed `Send` future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Why a socket disconnected, with socket.io 4.8's names (`disconnecting` and `disconnect`
/// handlers get it; [`DisconnectReason::as_str`] is the string Node's handlers see).
///
/// socket.io also passes a description (the transport's error) with `transport error`; the
/// engine does not report one yet, so there is none here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The client left the namespace (`socket.disconnect()` on the client).
    ClientNamespaceDisconnect,
    /// The server disconnected the socket (or its handler failed).
    ServerNamespaceDisconnect,
    /// The connection was closed by the client or lost.
    TransportClose,
    /// The connection failed (I/O error, oversized input, full send queue).
    TransportError,
    /// No pong in time.
    PingTimeout,
    /// The client sent an invalid packet.
    ParseError,
    /// The server is shutting down.
    ServerShuttingDown,
    /// The connection was closed by the server: a confused client (a packet for a namespace it
    /// is not in, a second CONNECT), or the session closed by server code.
    ForcedClose,
    /// socket.io's name when it closes a confused client's connection while packets are still
    /// queued for it (with none queued, socket.io 4.8.4 reports `forced close`). Switchboard
    /// closes sessions at once and always reports [`DisconnectReason::ForcedClose`]: no socket
    /// ends with this one; it is here so the list matches socket.io's.
    ForcedServerClose,
}

impl DisconnectReason {
    /// socket.io's string for this reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientNamespaceDisconnect => "client namespace disconnect",
            Self::ServerNamespaceDisconnect => "server namespace disconnect",
            Self::TransportClose => "transport close",
            Self::TransportError => "transport error",
            Self::PingTimeout => "ping timeout",
            Self::ParseError => "parse error",
            Self::ServerShuttingDown => "server shutting down",
            Self::ForcedClose => "forced close",
            Self::ForcedServerClose => "forced server close",
        }
    }
}

impl From<CloseReason> for DisconnectReason {
    fn from(r: CloseReason) -> Self {
        match r {
            CloseReason::TransportClose => Self::TransportClose,
            CloseReason::TransportError => Self::TransportError,
            CloseReason::PingTimeout => Self::PingTimeout,
            CloseReason::ParseError => Self::ParseError,
            CloseReason::ServerShuttingDown => Self::ServerShuttingDown,
            _ => Self::ForcedClose,
        }
    }
}

/// A middleware's refusal, sent to the client as CONNECT_ERROR `{message, data}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectError {
    /// Shown to the client as `err.message`.
    pub message: String,
    /// Sent as `err.data`, if any.
    pub data: Option<serde_json::Value>,
}

impl ConnectError {
    /// A refusal with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), data: None }
    }

    /// Adds `err.data`.
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }

    fn to_json(&self) -> serde_json::Value {
        match &self.data {
            Some(data) => serde_json::json!({"message": self.message, "data": data}),
            None => serde_json::json!({"message": self.message}),
        }
    }
}

/// Socket.IO options; defaults match socket.io's, except the limits that keep one client from
/// exhausting a node (socket.io has none: names, rooms, namespaces, child namespace cleanup) and
/// the credentials fetchSockets ships.
#[derive(Clone)]
pub struct SocketIoConfig {
    connect_timeout: Duration,
    max_attachments: usize,
    adapter: Arc<dyn AdapterFactory>,
    limits: Limits,
    child_namespace_cleanup: Option<Duration>,
    fetch_sockets_credentials: bool,
    recovery: Option<RecoveryConfig>,
}

impl std::fmt::Debug for SocketIoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketIoConfig")
            .field("connect_timeout", &self.connect_timeout)
            .field("max_attachments", &self.max_attachments)
            .field("max_name_bytes", &self.limits.max_name_bytes)
            .field("max_rooms_per_socket", &self.limits.max_rooms_per_socket)
            .field("max_namespaces_per_client", &self.limits.max_namespaces_per_client)
            .field("child_namespace_cleanup", &self.child_namespace_cleanup)
            .field("fetch_sockets_credentials", &self.fetch_sockets_credentials)
            .field("recovery", &self.recovery)
            .finish_non_exhaustive()
    }
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(45),
            max_attachments: DEFAULT_MAX_ATTACHMENTS,
            adapter: Arc::new(MemoryAdapterFactory),
            limits: Limits::default(),
            child_namespace_cleanup: Some(DEFAULT_CHILD_NAMESPACE_CLEANUP),
            fetch_sockets_credentials: false,
            recovery: None,
        }
    }
}

impl SocketIoConfig {
    /// How long a connection may stay without joining any namespace; default 45 s.
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Most binary attachments one packet may announce; default 10 000. Their bytes together
    /// with the packet text may not pass the engine's `maxHttpBufferSize` (the packet is one
    /// message to the application); a client that sends more is disconnected.
    pub fn with_max_attachments(mut self, n: usize) -> Self {
        self.max_attachments = n;
        self
    }

    /// The adapter (one per namespace); default in-memory.
    pub fn with_adapter(mut self, factory: Arc<dyn AdapterFactory>) -> Self {
        self.adapter = factory;
        self
    }

    /// Longest room or namespace name, in bytes; default 256. Rooms and namespaces become broker
    /// subjects and channels: a 256-byte namespace and room, even escaped at 3 bytes per byte,
    /// make a subject well within NATS's 4 KiB control line (a 5,000-byte room makes NATS drop
    /// the connection, again at each resubscription) and a small Redis channel. A longer room is
    /// refused ([`Socket::try_join`], broadcasts, socketsJoin), a CONNECT to a longer namespace
    /// gets CONNECT_ERROR.
    pub fn with_max_name_bytes(mut self, n: usize) -> Self {
        self.limits.max_name_bytes = n;
        self
    }

    /// Most rooms one socket may be in through [`Socket::join`] (its own id room not counted);
    /// default 1 000: far above what a client of a chat or a dashboard joins, and it bounds one
    /// socket's rooms to some 400 KiB at the longest names. A join past it is refused whole.
    /// Joins made by server code through socketsJoin are not counted against it.
    pub fn with_max_rooms_per_socket(mut self, n: usize) -> Self {
        self.limits.max_rooms_per_socket = n;
        self
    }

    /// Most namespaces one client (Engine.IO session) may be connected or connecting to at once;
    /// default 100: a client multiplexes a handful, and each costs a socket on the server. A
    /// CONNECT past it gets CONNECT_ERROR.
    pub fn with_max_namespaces_per_client(mut self, n: usize) -> Self {
        self.limits.max_namespaces_per_client = n;
        self
    }

    /// Removes a child namespace of [`SocketIo::of_dynamic`] once it has had no socket for this
    /// long, with its adapter (its broker subscriptions) and its `switchboard_sockets` series
    /// (socket.io's `cleanupEmptyChildNamespaces`); `None` keeps children forever. Default 5 s,
    /// on, unlike socket.io: otherwise every name a client makes up and connects to stays, and
    /// one client can grow a node without bound. Children share their pattern's handlers, so a
    /// removed child comes back the same on the next CONNECT; only a `Namespace` handle server
    /// code kept (from [`SocketIo::of`]) then points to the removed one. The delay saves the
    /// broker a resubscription when the last client reconnects at once. With connection state
    /// recovery on, a child stays at least its `max_disconnection_duration`, so the sockets that
    /// lost their connection to it can still be restored.
    pub fn with_child_namespace_cleanup(mut self, after: Option<Duration>) -> Self {
        self.child_namespace_cleanup = after;
        self
    }

    /// Whether fetchSockets results carry the handshake's `Cookie` and `Authorization` headers;
    /// default false. They travel through the broker to every node, where any code that fetches
    /// sockets sees them: turn this on only if the application reads them there.
    pub fn with_fetch_sockets_credentials(mut self, on: bool) -> Self {
        self.fetch_sockets_credentials = on;
        self
    }

    /// Turns connection state recovery on (socket.io's `connectionStateRecovery`); default off, as
    /// in socket.io. A client whose connection drops then comes back as the same socket (id,
    /// rooms, data, `socket.recovered`) with the packets it missed, if it returns within the
    /// window and they are all still logged (`docs/recovery.md`). It costs a log per namespace
    /// (bounded by the config) and serializes each namespace's emits.
    pub fn with_connection_state_recovery(mut self, config: RecoveryConfig) -> Self {
        self.recovery = Some(config);
        self
    }
}

type Predicate = Arc<dyn Fn(&str) -> bool + Send + Sync>;
type ConnectionObserver = Arc<dyn Fn(&SocketRef) + Send + Sync>;

pub(crate) struct IoInner {
    config: SocketIoConfig,
    metrics: SocketIoMetrics,
    node_id: String,
    /// The engine's `maxHttpBufferSize`: the most bytes one Socket.IO packet may hold, its
    /// binary attachments included.
    max_packet_bytes: usize,
    /// The engine's `max_queue_bytes`: a recovery replay takes at most half of it.
    max_queue_bytes: usize,
    namespaces: DashMap<String, Arc<Namespace>>,
    dynamic: RwLock<Vec<(Predicate, Arc<NamespaceHandlers>)>>,
    /// Whether the task that removes emptied child namespaces runs.
    sweeping: AtomicBool,
    /// [`SocketIo::on_any_connection`]'s observers.
    observers: RwLock<Vec<ConnectionObserver>>,
}

impl IoInner {
    /// Tells the [`SocketIo::on_any_connection`] observers that `socket` connected.
    pub(crate) fn notify_connection(&self, socket: &SocketRef) {
        let observers = self.observers.read().unwrap_or_else(|e| e.into_inner()).clone();
        for observe in observers {
            observe(socket);
        }
    }

    fn create_namespace(&self, name: &str, handlers: Arc<NamespaceHandlers>) -> Arc<Namespace> {
        self.namespaces
            .entry(name.to_owned())
            .or_insert_with(|| self.new_namespace(name, handlers, false))
            .clone()
    }

    fn new_namespace(&self, name: &str, handlers: Arc<NamespaceHandlers>, child: bool) -> Arc<Namespace> {
        let adapter = self.config.adapter.create(name);
        let counters = NamespaceMetrics::new(&self.metrics, name);
        let deliveries = counters.node.deliveries.clone();
        adapter.set_inbound_handler(Arc::new(Inbound { handlers: handlers.clone(), deliveries }));
        let ns = Namespace::new(name.to_owned(), self.node_id.clone(), adapter, handlers, counters);
        let recovery =
            self.config.recovery.as_ref().map(|config| {
                config.for_namespace(name, self.max_queue_bytes, self.metrics.recovery.clone())
            });
        Arc::new(ns.with_limits(self.config.limits).with_child(child).with_recovery(recovery))
    }

    /// The namespace a CONNECT targets, entered for the socket about to connect: an existing
    /// one, or a new child of a matching dynamic pattern. Entered under the map's lock, so the
    /// cleanup (which removes under it too) never removes a namespace a socket is joining.
    pub(crate) fn namespace_for(self: &Arc<Self>, name: &str) -> Option<Entered> {
        if let Some(ns) = self.namespaces.get(name) {
            return Some(Entered::new(ns.value()));
        }
        let handlers = {
            let dynamic = self.dynamic.read().unwrap_or_else(|e| e.into_inner());
            dynamic.iter().find(|(matches, _)| matches(name))?.1.clone()
        };
        let entered = match self.namespaces.entry(name.to_owned()) {
            Entry::Occupied(entry) => Entered::new(entry.get()),
            Entry::Vacant(entry) => {
                let child = self.config.child_namespace_cleanup.is_some();
                Entered::new(entry.insert(self.new_namespace(name, handlers, child)).value())
            }
        };
        if let Some(after) = self.config.child_namespace_cleanup {
            self.start_sweeping(after);
        }
        Some(entered)
    }

    /// Starts, once, the task that removes child namespaces empty for `after`; it checks every
    /// half of that (at least every 10 ms, at most every 5 s) and ends with the io state.
    fn start_sweeping(self: &Arc<Self>, after: Duration) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let io = Arc::downgrade(self);
        let period = (after / 2).clamp(Duration::from_millis(10), Duration::from_secs(5));
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(io) = io.upgrade() else { return };
                io.remove_empty_children(after);
            }
        });
    }

    /// Removes the child namespaces that have had no socket for `after`, with their metric series;
    /// the adapter goes with the namespace's last handle (usually at once).
    fn remove_empty_children(&self, after: Duration) {
        // With recovery on, a namespace also keeps the sessions of the sockets that left it: it
        // goes once the last of them has expired.
        let window = self.config.recovery.as_ref().map(|r| r.limits().max_disconnection_duration);
        let after = after.max(window.unwrap_or_default());
        let idle = |ns: &Namespace| ns.is_child() && ns.idle_for().is_some_and(|d| d >= after);
        let names: Vec<String> =
            self.namespaces.iter().filter(|e| idle(e.value())).map(|e| e.key().clone()).collect();
        for name in names {
            // Checked again under the entry's lock: a CONNECT enters under the map's lock.
            if let Entry::Occupied(entry) = self.namespaces.entry(name) {
                if idle(entry.get()) {
                    self.metrics.forget_namespace(entry.key());
                    let (name, _) = entry.remove_entry();
                    tracing::debug!(nsp = name, "empty child namespace removed");
                }
            }
        }
    }
}

/// The Socket.IO server (`io`); cheap to clone.
#[derive(Clone)]
pub struct SocketIo {
    inner: Arc<IoInner>,
    engine: Engine,
}

/// Handlers shared by every namespace whose name matches a dynamic pattern.
#[derive(Clone)]
pub struct DynamicNamespace {
    handlers: Arc<NamespaceHandlers>,
}

impl DynamicNamespace {
    /// Runs `f` for each socket that connects to any matching namespace.
    pub fn on_connection<F, Fut, O>(&self, f: F)
    where
        F: Fn(SocketRef) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: HandlerOutput,
    {
        self.handlers.on_connection(f);
    }

    /// Connect middleware for every matching namespace.
    pub fn use_middleware<F, Fut>(&self, f: F)
    where
        F: Fn(SocketRef) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ConnectError>> + Send + 'static,
    {
        self.handlers.add_middleware(f);
    }
}

impl SocketIo {
    /// A server with the main namespace `/` ready; its engine starts with `engine_config`, and
    /// both layers count into one new registry ([`Engine::registry`]).
    pub fn new(engine_config: EngineConfig, config: SocketIoConfig) -> Self {
        Self::with_registry(engine_config, config, Registry::new())
    }

    /// Like [`SocketIo::new`], counting into `registry` (a node's, shared with its other layers).
    pub fn with_registry(engine_config: EngineConfig, config: SocketIoConfig, registry: Registry) -> Self {
        let inner = Arc::new(IoInner {
            config,
            metrics: SocketIoMetrics::register(&registry),
            node_id: engine_config.node_id().to_owned(),
            max_packet_bytes: engine_config.max_http_buffer_size,
            max_queue_bytes: engine_config.max_queue_bytes(),
            namespaces: DashMap::new(),
            dynamic: RwLock::new(Vec::new()),
            sweeping: AtomicBool::new(false),
            observers: RwLock::new(Vec::new()),
        });
        inner.create_namespace("/", Arc::default());
        let engine = Engine::with_registry(engine_config, Arc::new(IoHandler(inner.clone())), registry);
        Self { inner, engine }
    }

    /// The Engine.IO server underneath (serve it with [`crate::http::Server`]).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A namespace by name, created if needed (socket.io's `io.of(name)`).
    pub fn of(&self, name: &str) -> Arc<Namespace> {
        let name = if name.starts_with('/') { name.to_owned() } else { format!("/{name}") };
        self.inner.create_namespace(&name, Arc::default())
    }

    /// Namespaces created on demand when a client connects to a name `matches` accepts; each
    /// child is removed once empty for [`SocketIoConfig::with_child_namespace_cleanup`].
    pub fn of_dynamic(&self, matches: impl Fn(&str) -> bool + Send + Sync + 'static) -> DynamicNamespace {
        let handlers: Arc<NamespaceHandlers> = Arc::default();
        self.inner
            .dynamic
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((Arc::new(matches), handlers.clone()));
        DynamicNamespace { handlers }
    }

    /// The main namespace `/`.
    pub fn main_namespace(&self) -> Arc<Namespace> {
        self.of("/")
    }

    /// Broadcast on the main namespace.
    pub fn broadcast(&self) -> BroadcastOperator {
        self.main_namespace().broadcast()
    }

    /// Broadcast to a room of the main namespace.
    pub fn to(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.main_namespace().to(room)
    }

    /// Emits to every socket of the main namespace.
    pub async fn emit(&self, event: &str, args: Vec<Value>) -> Result<usize, BroadcastError> {
        self.broadcast().emit(event, args).await
    }

    /// A namespace that exists, by name; unlike [`SocketIo::of`] it creates none (a removed child
    /// namespace stays removed).
    pub fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        self.inner.namespaces.get(name).map(|e| e.value().clone())
    }

    /// Runs `f` for every socket that connects to any namespace, before that namespace's own
    /// connection handler and whatever handler the application set: how an observer of the whole
    /// server (the admin UI) sees sockets without taking an application's `on_connection`.
    /// It runs on the connecting task: it must not block.
    pub fn on_any_connection(&self, f: impl Fn(&SocketRef) + Send + Sync + 'static) {
        self.inner.observers.write().unwrap_or_else(|e| e.into_inner()).push(Arc::new(f));
    }

    /// Names of the namespaces that exist.
    pub fn namespace_names(&self) -> Vec<String> {
        self.inner.namespaces.iter().map(|e| e.key().clone()).collect()
    }

    /// Disconnects everyone ("server shutting down").
    pub fn close(&self) {
        self.engine.close_all(CloseReason::ServerShuttingDown);
    }
}

/// The engine's handler. It owns the io state, so Socket.IO keeps working as long as the engine
/// serves, even if every `SocketIo` handle was dropped.
struct IoHandler(Arc<IoInner>);

impl EngineHandler for IoHandler {
    fn on_open(&self, session: &Arc<Session>) {
        let client = Arc::new(Client::new(Arc::downgrade(&self.0)));
        session.attach(client.clone());
        let timeout = self.0.config.connect_timeout;
        let weak = Arc::downgrade(session);
        let weak_client = Arc::downgrade(&client);
        let timer = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let (Some(session), Some(client)) = (weak.upgrade(), weak_client.upgrade()) else { return };
            if !client.ever_joined() && !session.is_closed() {
                tracing::debug!(sid = %session.sid(), "no namespace joined within connectTimeout");
                session.close(CloseReason::ForcedClose);
            }
        });
        client.set_connect_timer(timer.abort_handle());
    }

    fn on_message(&self, session: &Arc<Session>, message: Message) {
        let Some(client) = session.attached::<Arc<Client>>().cloned() else { return };
        match message {
            Message::Text(text) => client.on_text(session, &text),
            Message::Binary(data) => client.on_binary(session, data),
        }
    }

    fn on_close(&self, session: &Arc<Session>, reason: CloseReason) {
        if let Some(client) = session.attached::<Arc<Client>>() {
            client.close_all(reason.into(), false);
        }
    }
}
