//! A Socket.IO socket: one client's connection to one namespace: its handlers, the acks it
//! awaits, its rooms (within the namespace's limits), and what it queues on its session; with
//! connection state recovery, its private session id, kept in the namespace's store when its
//! connection is lost.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use switchboard_adapter::recovery::SavedSession;
use switchboard_adapter::{
    AckResponse, BroadcastOptions, BroadcastPacket, Confirmation, LocalSocket, Room, SocketId, SocketInfo,
};
use switchboard_protocol::socketio::{Packet, Value, encode_event};
use tokio::sync::{mpsc, oneshot};

use super::DisconnectReason;
use super::ack::{self, AckResponder, AckSink, PendingAcks};
use super::broadcast::BroadcastOperator;
use super::client::Client;
use super::error::{AckError, EmitError, JoinError};
use super::handler::{self, HandlerFuture, HandlerOutput};
use super::handshake::Handshake;
use super::namespace::Namespace;
use super::recovery::{self, SocketRecovery};
use super::reserved::check_event_name;
use crate::engine::{CloseReason, SendError, Session};

/// A socket handle; sockets are shared (`Arc`) between the server and handlers.
pub type SocketRef = Arc<Socket>;

/// An event from the client, as a handler receives it.
#[derive(Debug)]
pub struct Event {
    /// Event name.
    pub name: String,
    /// Arguments after the name.
    pub args: Vec<Value>,
    /// Present when the client wants an answer: call [`AckResponder::send`].
    pub ack: Option<AckResponder>,
}

impl Event {
    /// Argument `i` deserialized into `T` (binary arguments cannot be; read them from `args`).
    pub fn arg<T: DeserializeOwned>(&self, i: usize) -> Option<T> {
        let json = self.args.get(i)?.to_json()?;
        serde_json::from_value(json).ok()
    }

    /// Answers the ack with `args`, if the client asked for one.
    pub fn ack(&mut self, args: Vec<Value>) {
        if let Some(ack) = self.ack.take() {
            ack.send(args);
        }
    }
}

type EventHandler = Arc<dyn Fn(SocketRef, Event) -> HandlerFuture + Send + Sync>;
type AnyHandler = Arc<dyn Fn(&Socket, &str, &[Value]) + Send + Sync>;
type PacketMiddleware = Arc<dyn Fn(&Socket, &str, &mut Vec<Value>) -> Result<(), String> + Send + Sync>;
/// An event held back until the socket is ready: name, args, ack id.
type EarlyEvent = (String, Vec<Value>, Option<u64>);
type DisconnectHandler = Box<dyn FnOnce(SocketRef, DisconnectReason) + Send>;

/// One any-listener, as returned when it is added: pass it to [`Socket::off_any`] or
/// [`Socket::off_any_outgoing`] to remove just that listener (Rust closures have no identity to
/// compare, as socket.io's `offAny(listener)` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnyListener(u64);

/// Any-listeners in the order they run.
type AnyListeners = Vec<(AnyListener, AnyHandler)>;

#[derive(Default)]
struct Handlers {
    /// By event name; a few per socket, so a vector (searched in order) is smaller than a map.
    events: Vec<(Box<str>, EventHandler)>,
    any: AnyListeners,
    any_outgoing: AnyListeners,
    /// The next [`AnyListener`] handed out.
    next_listener: u64,
    middleware: Vec<PacketMiddleware>,
}

impl Handlers {
    /// Adds `f` to `list` (the incoming or the outgoing one), first or last.
    fn add_any(&mut self, outgoing: bool, first: bool, f: AnyHandler) -> AnyListener {
        let listener = AnyListener(self.next_listener);
        self.next_listener += 1;
        let list = if outgoing { &mut self.any_outgoing } else { &mut self.any };
        if first {
            list.insert(0, (listener, f));
        } else {
            list.push((listener, f));
        }
        listener
    }
}

/// Removes one listener of `list`, or all of them with `None`.
fn remove_any(list: &mut AnyListeners, listener: Option<AnyListener>) {
    match listener {
        Some(listener) => list.retain(|(id, _)| *id != listener),
        None => list.clear(),
    }
}

/// See the module docs.
pub struct Socket {
    id: SocketId,
    ns: Arc<Namespace>,
    session: Arc<Session>,
    client: Weak<Client>,
    handshake: Handshake,
    handlers: RwLock<Handlers>,
    on_disconnect: Mutex<Vec<DisconnectHandler>>,
    on_disconnecting: Mutex<Vec<DisconnectHandler>>,
    acks: Mutex<PendingAcks>,
    data: Mutex<serde_json::Value>,
    connected: AtomicBool,
    /// Set when the socket starts closing, so it closes once (`connected` stays true while its
    /// `disconnecting` handlers run, as in socket.io).
    closing: AtomicBool,
    /// Set once the session is being closed for a full send queue, so a broadcast storm to a
    /// slow client schedules one close, not one per packet.
    overflowed: AtomicBool,
    /// Held while a join checks the room limit and joins, so concurrent joins cannot pass it.
    joining: Mutex<()>,
    /// Events that arrived while the connection handler was still registering handlers
    /// (`Some`), replayed right after; `None` once the socket is ready.
    early: Mutex<Option<Vec<EarlyEvent>>>,
    /// Connection state recovery's part, when the namespace has it on.
    /// Boxed: sockets without recovery (the default) pay one pointer, not the whole part.
    recovery: Option<Box<SocketRecovery>>,
    /// Whether this socket is a restored one.
    recovered: bool,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket").field("id", &self.id).field("nsp", &self.ns.name()).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Socket {
    pub(crate) fn new(
        ns: Arc<Namespace>,
        session: Arc<Session>,
        client: Weak<Client>,
        handshake: Handshake,
    ) -> Self {
        // Where its log stood is set when it joins its namespace (under the order lock).
        let recovery =
            ns.recovery().map(|_| Box::new(SocketRecovery::new(ns.new_pid(), String::new(), false)));
        Self::with_identity(ns.new_socket_id(), ns, session, client, handshake, recovery)
    }

    /// The socket a [`SavedSession`] describes, back (`recovered` true): its id, private session
    /// id and data; its rooms are joined, and its missed packets queued, as it joins the namespace.
    pub(crate) fn restored(
        ns: Arc<Namespace>,
        session: Arc<Session>,
        client: Weak<Client>,
        handshake: Handshake,
        saved: &SavedSession,
    ) -> Self {
        let recovery = SocketRecovery::new(saved.pid.clone(), saved.since.clone(), saved.delivered_logged);
        let mut socket =
            Self::with_identity(saved.sid.clone(), ns, session, client, handshake, Some(Box::new(recovery)));
        socket.data = Mutex::new(saved.data.clone());
        socket.recovered = true;
        socket
    }

    /// A new socket for the same client and handshake (a restore that failed after the
    /// middleware accepted the connection).
    pub(crate) fn fresh(&self) -> Self {
        Self::new(self.ns.clone(), self.session.clone(), self.client.clone(), self.handshake.clone())
    }

    fn with_identity(
        id: SocketId,
        ns: Arc<Namespace>,
        session: Arc<Session>,
        client: Weak<Client>,
        handshake: Handshake,
        recovery: Option<Box<SocketRecovery>>,
    ) -> Self {
        Self {
            id,
            ns,
            session,
            client,
            handshake,
            handlers: RwLock::new(Handlers::default()),
            on_disconnect: Mutex::new(Vec::new()),
            on_disconnecting: Mutex::new(Vec::new()),
            acks: Mutex::new(PendingAcks::default()),
            data: Mutex::new(serde_json::Value::Null),
            connected: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            overflowed: AtomicBool::new(false),
            joining: Mutex::new(()),
            early: Mutex::new(Some(Vec::new())),
            recovery,
            recovered: false,
        }
    }

    /// Whether connection state recovery restored this socket after its client's connection was
    /// lost (socket.io's `socket.recovered`): same id, rooms and data, missed packets replayed.
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    /// Connection state recovery's part of this socket, if the namespace has it on.
    pub(crate) fn recovery(&self) -> Option<&SocketRecovery> {
        self.recovery.as_deref()
    }

    /// The socket id (distinct from the Engine.IO session id, as in socket.io v3+).
    pub fn id(&self) -> &SocketId {
        &self.id
    }

    /// The namespace.
    pub fn namespace(&self) -> &Arc<Namespace> {
        &self.ns
    }

    /// The handshake: headers, query, auth, address.
    pub fn handshake(&self) -> &Handshake {
        &self.handshake
    }

    /// The Engine.IO session under this socket (shared with the client's other namespaces).
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Whether the socket is still connected to its namespace.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Stores application data (`socket.data`), visible to fetchSockets on any node.
    pub fn set_data<T: Serialize>(&self, value: &T) -> Result<(), serde_json::Error> {
        *lock(&self.data) = serde_json::to_value(value)?;
        self.persist();
        Ok(())
    }

    /// Reads the application data back as `T`.
    pub fn data<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_value(lock(&self.data).clone()).ok()
    }

    /// Registers the handler of `event`; it replaces an earlier one.
    pub fn on<F, Fut, O>(&self, event: impl Into<String>, handler: F)
    where
        F: Fn(SocketRef, Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: HandlerOutput,
    {
        let handler: EventHandler = Arc::new(move |s, e| handler::boxed(handler(s, e)));
        let event: String = event.into();
        let events = &mut self.write_handlers().events;
        match events.iter_mut().find(|(name, _)| **name == *event) {
            Some((_, existing)) => *existing = handler,
            None => events.push((event.into_boxed_str(), handler)),
        }
    }

    /// Adds a listener called with every incoming event, after the packet middleware and before
    /// the event's handler, even for events without one (socket.io's `onAny`); listeners run in
    /// the order they were added.
    pub fn on_any(&self, f: impl Fn(&Socket, &str, &[Value]) + Send + Sync + 'static) -> AnyListener {
        self.write_handlers().add_any(false, false, Arc::new(f))
    }

    /// As [`Socket::on_any`], but runs before the listeners already there (socket.io's `prependAny`).
    pub fn prepend_any(&self, f: impl Fn(&Socket, &str, &[Value]) + Send + Sync + 'static) -> AnyListener {
        self.write_handlers().add_any(false, true, Arc::new(f))
    }

    /// Removes one incoming any-listener, or all of them with `None` (socket.io's `offAny`).
    pub fn off_any(&self, listener: Option<AnyListener>) {
        remove_any(&mut self.write_handlers().any, listener);
    }

    /// Adds a listener called with every event this socket emits itself, before it is queued
    /// (socket.io's `onAnyOutgoing`). Unlike socket.io's, it does not hear the broadcasts that
    /// reach the socket: those are delivered under the room index's and the recovery order's
    /// locks, where a listener that joins, leaves, emits or disconnects would deadlock the
    /// node; a deferred notice for them is not built yet.
    pub fn on_any_outgoing(
        &self,
        f: impl Fn(&Socket, &str, &[Value]) + Send + Sync + 'static,
    ) -> AnyListener {
        self.add_any_outgoing(false, Arc::new(f))
    }

    fn add_any_outgoing(&self, first: bool, f: AnyHandler) -> AnyListener {
        let mut handlers = self.write_handlers();
        handlers.add_any(true, first, f)
    }

    /// As [`Socket::on_any_outgoing`], but runs first (socket.io's `prependAnyOutgoing`).
    pub fn prepend_any_outgoing(
        &self,
        f: impl Fn(&Socket, &str, &[Value]) + Send + Sync + 'static,
    ) -> AnyListener {
        self.add_any_outgoing(true, Arc::new(f))
    }

    /// Removes one outgoing any-listener, or all of them with `None` (socket.io's `offAnyOutgoing`).
    pub fn off_any_outgoing(&self, listener: Option<AnyListener>) {
        remove_any(&mut self.write_handlers().any_outgoing, listener);
    }

    /// Per-packet middleware (socket.io's `socket.use`): may rewrite the arguments, or refuse
    /// the packet with an error (it is then dropped and logged).
    pub fn use_packet(
        &self,
        f: impl Fn(&Socket, &str, &mut Vec<Value>) -> Result<(), String> + Send + Sync + 'static,
    ) {
        self.write_handlers().middleware.push(Arc::new(f));
    }

    /// Called once when the socket starts disconnecting, with the reason, before the
    /// [`Socket::on_disconnect`] handlers (socket.io's `disconnecting`): the socket is still in its
    /// rooms ([`Socket::rooms`]) and still `connected`, so the handler can tell them it leaves.
    pub fn on_disconnecting(&self, f: impl FnOnce(SocketRef, DisconnectReason) + Send + 'static) {
        lock(&self.on_disconnecting).push(Box::new(f));
    }

    /// Called once when the socket disconnects, with the reason, out of its rooms by then.
    pub fn on_disconnect(&self, f: impl FnOnce(SocketRef, DisconnectReason) + Send + 'static) {
        lock(&self.on_disconnect).push(Box::new(f));
    }

    fn write_handlers(&self) -> std::sync::RwLockWriteGuard<'_, Handlers> {
        self.handlers.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read_handlers(&self) -> std::sync::RwLockReadGuard<'_, Handlers> {
        self.handlers.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends an event to this client.
    pub fn emit(&self, event: &str, args: Vec<Value>) -> Result<(), EmitError> {
        self.flags().emit(event, args)
    }

    /// Sends an event and waits for the client's ack, at most `timeout`.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<Vec<Value>, AckError> {
        self.timeout(timeout).emit_with_ack(event, args).await
    }

    /// The next emit is dropped if the transport cannot take it right now (socket.io's
    /// `socket.volatile`): see [`SocketEmit::volatile`].
    pub fn volatile(&self) -> SocketEmit<'_> {
        self.flags().volatile()
    }

    /// Whether the next emit may be compressed (socket.io's `socket.compress`): see
    /// [`SocketEmit::compress`].
    pub fn compress(&self, compress: bool) -> SocketEmit<'_> {
        self.flags().compress(compress)
    }

    /// How long the next emit's ack is awaited (socket.io's `socket.timeout`): see
    /// [`SocketEmit::timeout`].
    pub fn timeout(&self, timeout: Duration) -> SocketEmit<'_> {
        self.flags().timeout(timeout)
    }

    fn flags(&self) -> SocketEmit<'_> {
        SocketEmit { socket: self, volatile: false, compress: true, timeout: None }
    }

    /// How many acks this socket still awaits from its client (its own emits with ack and
    /// broadcasts with acks), the ones whose timeout passed not counted.
    pub fn pending_acks(&self) -> usize {
        let mut acks = lock(&self.acks);
        acks.sweep();
        acks.len()
    }

    fn notify_outgoing(&self, event: &str, args: &[Value]) {
        let listeners: Vec<AnyHandler> = {
            let handlers = self.read_handlers();
            handlers.any_outgoing.iter().map(|(_, f)| f.clone()).collect()
        };
        for listener in listeners {
            listener(self, event, args);
        }
    }

    /// Queues a volatile packet only if the transport can take it right now, else drops it (counted).
    fn deliver_volatile(&self, packet: &BroadcastPacket) {
        if !self.session.send_volatile(packet.frames()) {
            self.ns.metrics.node.dropped_volatile.inc();
            tracing::trace!(socket = %self.id, "volatile packet dropped: transport busy");
        }
    }

    /// Queues an encoded packet; a client whose queue is full cannot be served and is closed.
    pub(crate) fn deliver_packet(&self, packet: &BroadcastPacket) {
        if let Err(SendError::QueueFull) = self.session.send_all(packet.frames()) {
            self.ns.metrics.node.dropped_overflow.inc();
            if self.overflowed.swap(true, Ordering::AcqRel) {
                return;
            }
            tracing::warn!(socket = %self.id, "send queue full: closing the slow client");
            // Not inline: this may run inside a broadcast that holds a room index lock, and
            // closing leaves every room.
            let session = self.session.clone();
            tokio::spawn(async move { session.close(CloseReason::TransportError) });
        }
    }

    /// Joins rooms, as [`Socket::try_join`] does; a join it refuses (a room name too long, too
    /// many rooms) joins nothing and is only logged at debug level (a client can make it happen
    /// at will): call `try_join` to know.
    pub fn join(&self, rooms: impl IntoIterator<Item = impl Into<Room>>) -> Confirmation {
        match self.try_join(rooms) {
            Ok(confirmation) => confirmation,
            Err(error) => {
                tracing::debug!(socket = %self.id, %error, "join refused");
                Confirmation::confirmed()
            }
        }
    }

    /// Joins rooms, all or none: a room name longer than
    /// [`SocketIoConfig::with_max_name_bytes`](super::SocketIoConfig::with_max_name_bytes), or more
    /// rooms than [`SocketIoConfig::with_max_rooms_per_socket`](super::SocketIoConfig::with_max_rooms_per_socket)
    /// (the socket's own id room not counted), refuses the whole join.
    ///
    /// Emits from this node reach the socket at once. With a cluster adapter, a room
    /// new on this node is subscribed on the broker first: until the broker confirms, nothing
    /// queued for this client from now on is written (the join's ack, say), so the client cannot
    /// act on the join before other nodes' emits to the room reach it; pings still go out, and
    /// the hold ends after at most [`CONFIRMATION_LIMIT`](switchboard_adapter::CONFIRMATION_LIMIT)
    /// (a stalled broker) or as soon as the broker is known down. Await the returned
    /// [`Confirmation`]'s `wait()` before telling anyone else (another server, a database) that
    /// the socket is in the room.
    pub fn try_join(
        &self,
        rooms: impl IntoIterator<Item = impl Into<Room>>,
    ) -> Result<Confirmation, JoinError> {
        let rooms: Vec<Room> = rooms.into_iter().map(Into::into).collect();
        let limits = self.ns.limits();
        // The own id room is not checked: the socket is in it anyway, joining it changes nothing.
        limits.check_rooms(rooms.iter().filter(|room| room.as_str() != self.id.as_str()))?;
        let _joining = lock(&self.joining);
        let index = self.ns.adapter().local();
        let mut new: HashSet<&Room> = HashSet::new();
        for room in &rooms {
            if room.as_str() != self.id.as_str() && !index.is_member(&self.id, room) {
                new.insert(room);
            }
        }
        if index.room_count(&self.id) + new.len() > limits.max_rooms_per_socket {
            return Err(JoinError::TooManyRooms { max: limits.max_rooms_per_socket });
        }
        // Held from before the join: a packet another task queues meanwhile (a local emit to the
        // room) could tell the client about the join too.
        let hold = self.session.hold();
        let confirmation = self.ns.adapter().join(&self.id, &rooms);
        self.persist();
        if confirmation.is_confirmed() {
            self.session.release(hold);
        } else {
            let session = self.session.clone();
            let pending = confirmation.clone();
            tokio::spawn(async move {
                if !pending.wait().await {
                    tracing::warn!(sid = %session.sid(), "room subscription not confirmed in time; releasing the client's packets");
                }
                session.release(hold);
            });
        }
        Ok(confirmation)
    }

    /// Leaves a room.
    pub fn leave(&self, room: impl Into<Room>) {
        self.ns.adapter().leave(&self.id, &room.into());
        self.persist();
    }

    /// With a store shared by the cluster, saves this socket's session as it is now (rooms,
    /// data), so that its client finds it on another node if this one dies.
    pub(crate) fn persist(&self) {
        let (Some(recovery), Some(mine)) = (self.ns.recovery(), self.recovery()) else { return };
        if !recovery.store.is_shared() || !self.connected() {
            return;
        }
        // Its client presents an offset if a logged packet reached it, and none only if none
        // did: then it missed everything logged for it since its session began.
        let since = mine.since();
        recovery.store.save_live(&SavedSession {
            pid: mine.pid.clone(),
            sid: self.id.clone(),
            rooms: self.rooms(),
            data: lock(&self.data).clone(),
            left_at: since.clone(),
            since,
            delivered_logged: false,
        });
    }

    /// The rooms this socket is in, its own id room first.
    pub fn rooms(&self) -> Vec<Room> {
        self.ns.adapter().local().rooms_of(&self.id)
    }

    /// Broadcast to every other socket of the namespace (socket.io's `socket.broadcast`).
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.ns.clone()).except(self.id.room())
    }

    /// Broadcast to a room, except this socket (socket.io's `socket.to(room)`).
    pub fn to(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.broadcast().to(room)
    }

    /// Disconnects from the namespace; `close` also closes the underlying connection (all namespaces).
    pub fn disconnect(self: &Arc<Self>, close: bool) {
        if close {
            if let Some(client) = self.client.upgrade() {
                client.close_all(DisconnectReason::ServerNamespaceDisconnect, true);
            }
            self.session.close(CloseReason::ForcedClose);
        } else {
            self.close(DisconnectReason::ServerNamespaceDisconnect, true);
        }
    }

    /// Ends this socket once: optional DISCONNECT packet, out of rooms and maps, handlers told.
    pub(crate) fn close(self: &Arc<Self>, reason: DisconnectReason, send_packet: bool) {
        if !self.connected() || self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        if send_packet {
            let packet = Packet::Disconnect { nsp: self.ns.name().to_owned() };
            let _ = self.session.send_all(BroadcastPacket::new(packet.encode()).frames());
        }
        self.run_disconnect_handlers(&self.on_disconnecting, reason, "disconnecting");
        self.connected.store(false, Ordering::Release);
        self.leave_namespace(reason);
        if let Some(client) = self.client.upgrade() {
            client.forget(self.ns.name());
        }
        lock(&self.acks).clear();
        // Handlers often hold their own socket: drop them, or socket and session never free.
        *self.write_handlers() = Handlers::default();
        lock(&self.early).take();
        self.run_disconnect_handlers(&self.on_disconnect, reason, "disconnect");
        tracing::debug!(socket = %self.id, reason = reason.as_str(), "socket disconnected");
    }

    /// Runs (once: they are taken) the `disconnecting` or `disconnect` handlers; one that panics
    /// is logged and the others still run.
    fn run_disconnect_handlers(
        self: &Arc<Self>,
        handlers: &Mutex<Vec<DisconnectHandler>>,
        reason: DisconnectReason,
        which: &'static str,
    ) {
        let handlers = std::mem::take(&mut *lock(handlers));
        for h in handlers {
            let socket = self.clone();
            if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(socket, reason))) {
                tracing::error!(socket = %self.id, ?panic, which, "disconnect handler panicked");
            }
        }
    }

    /// Leaves the namespace (and every room); with recovery on and a connection that was lost,
    /// the session is kept for a restore first.
    fn leave_namespace(&self, reason: DisconnectReason) {
        let (Some(recovery), Some(mine)) = (self.ns.recovery(), self.recovery()) else {
            self.ns.remove_socket(&self.id);
            return;
        };
        if !recovery::recoverable(reason) {
            self.ns.remove_socket(&self.id);
            if recovery.store.is_shared() {
                recovery.store.forget(&mine.pid);
            }
            return;
        }
        let (rooms, left_at) = {
            // Under the order lock: what was logged up to here reached the socket if it was for
            // it, and nothing logged after does.
            let _order = recovery.order();
            let rooms = self.rooms();
            let left_at = recovery.store.head();
            self.ns.remove_socket(&self.id);
            (rooms, left_at)
        };
        let saved = SavedSession {
            pid: mine.pid.clone(),
            sid: self.id.clone(),
            rooms,
            data: lock(&self.data).clone(),
            since: mine.since(),
            left_at,
            delivered_logged: mine.delivered_logged.load(Ordering::Relaxed),
        };
        recovery.keep(saved);
    }

    pub(crate) fn mark_connected(&self) {
        self.connected.store(true, Ordering::Release);
    }

    /// An event from the client.
    /// The connection handler has run its synchronous part: replay events that came meanwhile.
    pub(crate) fn mark_ready(self: &Arc<Self>) {
        let early = lock(&self.early).take().unwrap_or_default();
        for (event, args, id) in early {
            self.handle_event(event, args, id);
        }
    }

    /// An event from the client; held back until the connection handler has registered handlers.
    pub(crate) fn on_event(self: &Arc<Self>, event: String, args: Vec<Value>, id: Option<u64>) {
        {
            let mut early = lock(&self.early);
            if let Some(queue) = early.as_mut() {
                queue.push((event, args, id));
                return;
            }
        }
        self.handle_event(event, args, id);
    }

    fn handle_event(self: &Arc<Self>, event: String, mut args: Vec<Value>, id: Option<u64>) {
        let (handler, any, middleware) = {
            let h = self.read_handlers();
            (
                h.events.iter().find(|(name, _)| **name == *event).map(|(_, f)| f.clone()),
                h.any.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>(),
                h.middleware.clone(),
            )
        };
        for m in &middleware {
            if let Err(e) = m(self, &event, &mut args) {
                tracing::debug!(socket = %self.id, event, error = e, "packet refused by middleware");
                return;
            }
        }
        for listener in &any {
            listener(self, &event, &args);
        }
        let Some(handler) = handler else { return };
        let ack = id.map(|id| AckResponder::new(self.clone(), id));
        let fut = handler(self.clone(), Event { name: event, args, ack });
        let socket = self.clone();
        handler::run(fut, Some(&self.ns.metrics.node.event_handler_seconds), move |error| {
            tracing::error!(socket = %socket.id, error, "event handler failed: disconnecting its socket");
            socket.close(DisconnectReason::ServerNamespaceDisconnect, true);
        });
    }

    /// An ack from the client; unknown ids are ignored.
    pub(crate) fn on_ack(&self, id: u64, args: Vec<Value>) {
        let sink = lock(&self.acks).remove(id);
        match sink {
            Some(AckSink::One(tx)) => {
                let _ = tx.send(args);
            }
            Some(AckSink::Broadcast(tx)) => {
                let _ = tx.send(AckResponse { socket: self.id.clone(), args });
            }
            None => {}
        }
    }
}

impl LocalSocket for Socket {
    fn id(&self) -> &SocketId {
        &self.id
    }

    fn deliver(&self, packet: &BroadcastPacket, volatile: bool) {
        if volatile {
            self.deliver_volatile(packet);
        } else {
            // With recovery on, every packet a broadcast delivers without volatile was logged.
            if let Some(mine) = &self.recovery {
                mine.mark_delivered();
            }
            self.deliver_packet(packet);
        }
    }

    fn deliver_with_ack(
        &self,
        packet: &BroadcastPacket,
        ack_id: u64,
        sink: mpsc::UnboundedSender<AckResponse>,
    ) {
        lock(&self.acks).insert(ack_id, AckSink::Broadcast(sink));
        self.deliver_packet(packet);
    }

    fn info(&self) -> SocketInfo {
        SocketInfo {
            id: self.id.clone(),
            nsp: self.ns.name().to_owned(),
            rooms: Vec::new(),
            handshake: self.handshake.to_json(),
            data: lock(&self.data).clone(),
        }
    }

    fn disconnect(&self, close: bool) {
        // The adapter holds `Arc<dyn LocalSocket>`; find our own `Arc` to run the full close.
        if let Some(me) = self.ns.socket(&self.id) {
            Socket::disconnect(&me, close);
        }
    }
}

/// One emit of one socket with socket.io's per-emit flags, as `socket.volatile.timeout(500)
/// .emit(...)` in Node: made by [`Socket::volatile`], [`Socket::compress`] or [`Socket::timeout`],
/// used once.
#[derive(Debug, Clone, Copy)]
#[must_use = "nothing is sent until `emit` or `emit_with_ack`"]
pub struct SocketEmit<'a> {
    socket: &'a Socket,
    volatile: bool,
    compress: bool,
    timeout: Option<Duration>,
}

impl SocketEmit<'_> {
    /// Drops the event (nothing queued, `switchboard_dropped_packets_total{reason="volatile"}` counts it) unless
    /// the transport can take it now: a websocket with nothing queued, or a pending long-poll.
    /// For updates that are stale by the next one (positions, progress): a slow client skips
    /// them instead of falling behind. With connection state recovery on, a volatile event is
    /// not logged, so it is not replayed either (as in socket.io).
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    /// Accepted for parity with socket.io, and has no effect yet: websockets have no
    /// permessage-deflate, and polling responses are compressed by size
    /// (`--http-compression-threshold`) whatever this flag says. Default true.
    pub fn compress(mut self, compress: bool) -> Self {
        self.compress = compress;
        self
    }

    /// How long [`SocketEmit::emit_with_ack`] waits for the client's answer before it fails with
    /// [`AckError::Timeout`]; without it, it waits until the client answers or disconnects.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the event; a dropped volatile event is not an error (the flag asks for it).
    pub fn emit(self, event: &str, args: Vec<Value>) -> Result<(), EmitError> {
        check_event_name(event)?;
        let socket = self.socket;
        // Before any lock is taken: a listener may emit, join or disconnect.
        socket.notify_outgoing(event, &args);
        if self.volatile {
            let packet = BroadcastPacket::new(encode_event(socket.ns.name(), event, &args, None));
            socket.deliver_volatile(&packet);
            return Ok(());
        }
        // With recovery on, the packet is logged for this socket's own room (as socket.io sends
        // it through the adapter), so a client that loses it gets it back.
        if let (Some(recovery), Some(mine)) = (socket.ns.recovery(), socket.recovery()) {
            let mut args = args;
            let opts = BroadcastOptions { rooms: vec![socket.id.room()], ..BroadcastOptions::default() };
            let _order = recovery.order();
            // `None`: a shared log delivers it to this socket as this node reads it.
            if let Some(packet) =
                recovery.log(&opts, socket.ns.name(), event, &mut args, &mut BroadcastPacket::new)
            {
                mine.mark_delivered();
                socket.deliver_packet(&packet);
            }
            return Ok(());
        }
        let packet = BroadcastPacket::new(encode_event(socket.ns.name(), event, &args, None));
        socket.deliver_packet(&packet);
        Ok(())
    }

    /// Sends the event with an ack id and waits for the client's answer (its arguments), within
    /// the [`SocketEmit::timeout`] if one was set. A volatile event that was dropped is never
    /// answered: give it a timeout.
    pub async fn emit_with_ack(self, event: &str, args: Vec<Value>) -> Result<Vec<Value>, AckError> {
        check_event_name(event)?;
        let socket = self.socket;
        socket.notify_outgoing(event, &args);
        let id = socket.ns.next_ack_id();
        let (tx, rx) = oneshot::channel();
        lock(&socket.acks).insert(id, AckSink::One(tx));
        let packet = BroadcastPacket::new(encode_event(socket.ns.name(), event, &args, Some(id)));
        if self.volatile {
            socket.deliver_volatile(&packet);
        } else {
            socket.deliver_packet(&packet);
        }
        let result = match self.timeout {
            Some(timeout) => ack::wait(rx, timeout).await,
            // Cleared when the socket closes: the sender is dropped then.
            None => rx.await.map_err(|_| AckError::Disconnected),
        };
        if result.is_err() {
            if matches!(result, Err(AckError::Timeout)) {
                socket.ns.metrics.node.ack_timeouts.inc();
            }
            lock(&socket.acks).remove(id);
        }
        result
    }
}
