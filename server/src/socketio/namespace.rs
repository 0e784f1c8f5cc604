//! A namespace: its adapter (rooms, broadcasts, cluster), its sockets, and its handlers; and how
//! many sockets are in it or on their way, so an emptied child namespace can be removed.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use prometheus::IntCounter;
use switchboard_adapter::{Adapter, InboundHandler, Room, ServerSideAck, SocketId};
use tokio::time::Instant;

use super::broadcast::BroadcastOperator;
use super::error::ServerSideEmitError;
use super::handler::{self, HandlerFuture, HandlerOutput};
use super::limits::Limits;
use super::metrics::NamespaceMetrics;
use super::recovery::NamespaceRecovery;
use super::reserved::check_event_name;
use super::socket::SocketRef;
use super::{BoxFuture, ConnectError, Value};
use crate::engine::Sid;

pub(crate) type ConnectionHandler = Arc<dyn Fn(SocketRef) -> HandlerFuture + Send + Sync>;
pub(crate) type Middleware = Arc<dyn Fn(SocketRef) -> BoxFuture<Result<(), ConnectError>> + Send + Sync>;

pub(crate) type ServerSideListener = Arc<dyn Fn(ServerSideEvent) + Send + Sync>;

/// A `server_side_emit` from another node, as a listener gets it.
#[derive(Debug)]
pub struct ServerSideEvent {
    /// The emitter's arguments.
    pub args: Vec<Value>,
    /// Present when the emitter waits for answers: send this node's answer once.
    pub ack: Option<ServerSideAck>,
}

/// Handlers of a namespace; shared by every namespace a dynamic pattern creates.
#[derive(Default)]
pub(crate) struct NamespaceHandlers {
    pub(crate) connection: RwLock<Option<ConnectionHandler>>,
    pub(crate) middleware: RwLock<Vec<Middleware>>,
    pub(crate) server_side: RwLock<HashMap<String, ServerSideListener>>,
}

/// What the namespace does with what other nodes send it (the adapter calls it): their server-side
/// emits go to its listeners, the deliveries of their broadcasts to this node's delivery counter.
pub(crate) struct Inbound {
    pub(crate) handlers: Arc<NamespaceHandlers>,
    pub(crate) deliveries: IntCounter,
}

impl InboundHandler for Inbound {
    fn on_server_side_emit(&self, event: String, args: Vec<Value>, ack: Option<ServerSideAck>) {
        let listener =
            self.handlers.server_side.read().unwrap_or_else(|e| e.into_inner()).get(&event).cloned();
        match listener {
            Some(listener) => listener(ServerSideEvent { args, ack }),
            // As in socket.io: no listener, no answer; an emitter waiting for acks times out.
            None => tracing::debug!(event, "server-side emit without a listener"),
        }
    }

    fn on_delivered(&self, count: usize) {
        self.deliveries.inc_by(count as u64);
    }
}

impl NamespaceHandlers {
    pub(crate) fn on_connection<F, Fut, O>(&self, f: F)
    where
        F: Fn(SocketRef) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: HandlerOutput,
    {
        let h: ConnectionHandler = Arc::new(move |s| handler::boxed(f(s)));
        *self.connection.write().unwrap_or_else(|e| e.into_inner()) = Some(h);
    }

    pub(crate) fn add_middleware<F, Fut>(&self, f: F)
    where
        F: Fn(SocketRef) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ConnectError>> + Send + 'static,
    {
        let m: Middleware = Arc::new(move |s| Box::pin(f(s)));
        self.middleware.write().unwrap_or_else(|e| e.into_inner()).push(m);
    }

    pub(crate) fn connection(&self) -> Option<ConnectionHandler> {
        self.connection.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn middleware(&self) -> Vec<Middleware> {
        self.middleware.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Who is in a namespace: sockets connected or connecting, and since when there are none.
#[derive(Debug)]
struct Occupancy {
    sockets: usize,
    empty_since: Option<Instant>,
}

/// See the module docs.
pub struct Namespace {
    name: String,
    pub(crate) metrics: NamespaceMetrics,
    node_id: String,
    adapter: Arc<dyn Adapter>,
    sockets: DashMap<SocketId, SocketRef>,
    pub(crate) handlers: Arc<NamespaceHandlers>,
    ack_ids: AtomicU64,
    limits: Limits,
    /// A child of a dynamic pattern, removed once empty for a while.
    child: bool,
    occupancy: Mutex<Occupancy>,
    /// Connection state recovery, when on.
    recovery: Option<NamespaceRecovery>,
}

/// A namespace entered by a socket that is connecting: it counts as occupied until the socket
/// has connected (then the socket counts, until it leaves) or the connect failed (dropped).
pub(crate) struct Entered {
    ns: Arc<Namespace>,
    connected: bool,
}

impl Entered {
    pub(crate) fn new(ns: &Arc<Namespace>) -> Self {
        ns.enter();
        Self { ns: ns.clone(), connected: false }
    }

    pub(crate) fn namespace(&self) -> &Arc<Namespace> {
        &self.ns
    }

    /// The socket has connected: it now holds the place (until [`Namespace::remove_socket`]).
    pub(crate) fn into_socket(mut self) {
        self.connected = true;
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        if !self.connected {
            self.ns.exit();
        }
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace").field("name", &self.name).field("sockets", &self.sockets.len()).finish()
    }
}

impl Namespace {
    pub(crate) fn new(
        name: String,
        node_id: String,
        adapter: Arc<dyn Adapter>,
        handlers: Arc<NamespaceHandlers>,
        metrics: NamespaceMetrics,
    ) -> Self {
        Self {
            name,
            metrics,
            node_id,
            adapter,
            sockets: DashMap::new(),
            handlers,
            ack_ids: AtomicU64::new(0),
            limits: Limits::default(),
            child: false,
            occupancy: Mutex::new(Occupancy { sockets: 0, empty_since: Some(Instant::now()) }),
            recovery: None,
        }
    }

    pub(crate) fn with_recovery(mut self, mut recovery: Option<NamespaceRecovery>) -> Self {
        if let Some(recovery) = &mut recovery {
            recovery.attach(self.adapter.clone(), self.metrics.node.deliveries.clone());
        }
        self.recovery = recovery;
        self
    }

    /// Connection state recovery's part of this namespace, if it is on.
    pub(crate) fn recovery(&self) -> Option<&NamespaceRecovery> {
        self.recovery.as_ref()
    }

    pub(crate) fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub(crate) fn with_child(mut self, child: bool) -> Self {
        self.child = child;
        self
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether this is a child of a dynamic pattern that is removed once empty.
    pub(crate) fn is_child(&self) -> bool {
        self.child
    }

    fn occupancy(&self) -> std::sync::MutexGuard<'_, Occupancy> {
        self.occupancy.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enter(&self) {
        let mut occupancy = self.occupancy();
        occupancy.sockets += 1;
        occupancy.empty_since = None;
    }

    fn exit(&self) {
        let mut occupancy = self.occupancy();
        occupancy.sockets = occupancy.sockets.saturating_sub(1);
        if occupancy.sockets == 0 {
            occupancy.empty_since = Some(Instant::now());
        }
    }

    /// How long no socket has been connected or connecting; `None` while one is.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        self.occupancy().empty_since.map(|since| since.elapsed())
    }

    /// The namespace name (`/` for the main one).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This namespace's adapter.
    pub fn adapter(&self) -> &Arc<dyn Adapter> {
        &self.adapter
    }

    /// Runs `f` for each socket that connects (after the middleware accepted it).
    pub fn on_connection<F, Fut, O>(&self, f: F)
    where
        F: Fn(SocketRef) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: HandlerOutput,
    {
        self.handlers.on_connection(f);
    }

    /// Listens for `server_side_emit(event, …)` from the other nodes (socket.io's `io.on(event, …)`
    /// for server-side events); replaces a previous listener of the event. It runs on the adapter's
    /// receive task: spawn if it has to wait.
    pub fn on_server_side<F>(&self, event: &str, f: F)
    where
        F: Fn(ServerSideEvent) + Send + Sync + 'static,
    {
        self.handlers
            .server_side
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(event.to_owned(), Arc::new(f));
    }

    /// Connect middleware (socket.io's `use`): runs in order before `connection`; an error refuses
    /// the socket with CONNECT_ERROR `{message, data}`.
    pub fn use_middleware<F, Fut>(&self, f: F)
    where
        F: Fn(SocketRef) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ConnectError>> + Send + 'static,
    {
        self.handlers.add_middleware(f);
    }

    /// A connected socket of this node by id.
    pub fn socket(&self, id: &SocketId) -> Option<SocketRef> {
        self.sockets.get(id).map(|s| s.value().clone())
    }

    /// Number of sockets connected to this namespace on this node.
    pub fn socket_count(&self) -> usize {
        self.sockets.len()
    }

    /// Every socket connected to this namespace on this node.
    pub fn sockets(&self) -> Vec<SocketRef> {
        self.sockets.iter().map(|s| s.value().clone()).collect()
    }

    /// Broadcast operator over the whole namespace.
    pub fn broadcast(self: &Arc<Self>) -> BroadcastOperator {
        BroadcastOperator::new(self.clone())
    }

    /// Broadcast to a room.
    pub fn to(self: &Arc<Self>, room: impl Into<Room>) -> BroadcastOperator {
        self.broadcast().to(room)
    }

    /// Emits an event to this namespace on the *other* nodes (socket.io's `serverSideEmit`); with
    /// one node (the in-memory adapter) there is nobody to tell.
    pub async fn server_side_emit(&self, event: &str, args: Vec<Value>) -> Result<(), ServerSideEmitError> {
        check_event_name(event)?;
        self.adapter.server_side_emit(event.to_owned(), args, None).await?;
        Ok(())
    }

    /// Same, and collects every other node's answer until `timeout`.
    pub async fn server_side_emit_with_ack(
        &self,
        event: &str,
        args: Vec<Value>,
        timeout: std::time::Duration,
    ) -> Result<Vec<Vec<Value>>, ServerSideEmitError> {
        check_event_name(event)?;
        Ok(self.adapter.server_side_emit(event.to_owned(), args, Some(timeout)).await?)
    }

    pub(crate) fn new_socket_id(&self) -> SocketId {
        SocketId::from(Sid::generate(&self.node_id).as_str())
    }

    /// A private session id for connection state recovery: as unguessable as a session id (128
    /// random bits), and unrelated to the socket id it restores.
    pub(crate) fn new_pid(&self) -> String {
        Sid::generate(&self.node_id).as_str().to_owned()
    }

    /// Ack ids are unique per namespace, so one broadcast with acks can share a single encoding.
    pub(crate) fn next_ack_id(&self) -> u64 {
        self.ack_ids.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn add_socket(&self, socket: SocketRef) {
        if self.sockets.insert(socket.id().clone(), socket.clone()).is_none() {
            self.metrics.sockets.inc();
        }
        self.adapter.add_socket(socket);
    }

    pub(crate) fn remove_socket(&self, id: &SocketId) {
        let removed = self.sockets.remove(id).is_some();
        self.adapter.remove_socket(id);
        if removed {
            self.metrics.sockets.dec();
            self.exit();
        }
    }
}
