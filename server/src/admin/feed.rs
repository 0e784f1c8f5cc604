//! What happens to this node's sockets, as the admin UI hears of it: the adapter of every
//! namespace is wrapped ([`ObservedFactory`]) so joins and leaves are seen wherever they come
//! from on this node (a handler, a socketsJoin, a socket that leaves), connects and disconnects
//! come from the socket layer (`super`), and all of it goes through one bounded queue ([`Feed`])
//! to the task that broadcasts it to the admin namespace of every node, in order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_adapter::{
    AckStream, Adapter, AdapterError, AdapterFactory, BoxFuture, BroadcastOptions, BroadcastPacket,
    Confirmation, InboundHandler, LocalSocket, RoomIndex,
};
use tokio::sync::mpsc;

use super::serialize::now;
use crate::socketio::{Room, SocketId, SocketInfo, Value};

/// Notices queued before the admin namespace takes them; past it they are dropped (counted and
/// logged): the UI catches up with `all_sockets` when it reconnects.
const FEED_CAPACITY: usize = 10_000;

/// One thing the UI is told, with when it happened.
#[derive(Debug)]
pub(crate) struct Notice {
    event: &'static str,
    args: Vec<serde_json::Value>,
}

impl Notice {
    /// `socket_connected` with the socket as the UI shows it.
    pub(crate) fn connected(socket: serde_json::Value) -> Self {
        Self { event: "socket_connected", args: vec![socket, now()] }
    }

    /// `socket_disconnected`.
    pub(crate) fn disconnected(nsp: &str, id: &SocketId, reason: &str) -> Self {
        Self {
            event: "socket_disconnected",
            args: vec![nsp.into(), id.as_str().into(), reason.into(), now()],
        }
    }

    fn room(event: &'static str, nsp: &str, room: &Room, id: &SocketId) -> Self {
        Self { event, args: vec![nsp.into(), room.as_str().into(), id.as_str().into(), now()] }
    }

    /// The event name and its arguments, to emit.
    pub(crate) fn into_emit(self) -> (&'static str, Vec<Value>) {
        (self.event, self.args.into_iter().map(Value::from).collect())
    }
}

/// The bounded queue of notices; see the module docs.
pub(crate) struct Feed {
    tx: mpsc::Sender<Notice>,
    rx: Mutex<Option<mpsc::Receiver<Notice>>>,
    dropped: AtomicU64,
}

impl Feed {
    pub(crate) fn new() -> Self {
        let (tx, rx) = mpsc::channel(FEED_CAPACITY);
        Self { tx, rx: Mutex::new(Some(rx)), dropped: AtomicU64::new(0) }
    }

    /// Queues `notice`, or drops it when the queue is full.
    pub(crate) fn send(&self, notice: Notice) {
        if self.tx.try_send(notice).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Logged at 1, 2, 4, 8…: a storm writes a few lines, not one per socket.
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "admin UI: notices dropped (the admin namespace is behind)");
            }
        }
    }

    /// The receiving end, once (the task that emits to the admin namespace).
    pub(crate) fn take_receiver(&self) -> Option<mpsc::Receiver<Notice>> {
        self.rx.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Makes the adapters of a node observed; see the module docs.
pub(crate) struct ObservedFactory {
    pub(crate) inner: Arc<dyn AdapterFactory>,
    pub(crate) feed: Arc<Feed>,
}

impl AdapterFactory for ObservedFactory {
    fn create(&self, nsp: &str) -> Arc<dyn Adapter> {
        Arc::new(ObservedAdapter {
            nsp: nsp.to_owned(),
            inner: self.inner.create(nsp),
            feed: self.feed.clone(),
        })
    }
}

/// A namespace's adapter that tells the feed of every room a local socket joins or leaves.
struct ObservedAdapter {
    nsp: String,
    inner: Arc<dyn Adapter>,
    feed: Arc<Feed>,
}

impl ObservedAdapter {
    fn joined(&self, id: &SocketId, room: &Room) {
        self.feed.send(Notice::room("room_joined", &self.nsp, room, id));
    }

    fn left(&self, id: &SocketId, room: &Room) {
        self.feed.send(Notice::room("room_left", &self.nsp, room, id));
    }

    /// For each local socket `opts` selects, those of `rooms` it is (`member`) or is not in.
    fn selected(&self, opts: &BroadcastOptions, rooms: &[Room], member: bool) -> Vec<(SocketId, Vec<Room>)> {
        let index = self.inner.local();
        let sockets = index.select(opts);
        sockets
            .iter()
            .map(|s| {
                let rooms = rooms.iter().filter(|r| index.is_member(s.id(), r) == member).cloned().collect();
                (s.id().clone(), rooms)
            })
            .collect()
    }
}

impl Adapter for ObservedAdapter {
    fn local(&self) -> &RoomIndex {
        self.inner.local()
    }

    fn add_socket(&self, socket: Arc<dyn LocalSocket>) {
        self.inner.add_socket(socket);
    }

    fn remove_socket(&self, id: &SocketId) {
        let rooms = self.inner.local().rooms_of(id);
        self.inner.remove_socket(id);
        for room in &rooms {
            self.left(id, room);
        }
    }

    fn join(&self, id: &SocketId, rooms: &[Room]) -> Confirmation {
        let index = self.inner.local();
        let new: Vec<&Room> = rooms.iter().filter(|r| !index.is_member(id, r)).collect();
        let confirmation = self.inner.join(id, rooms);
        for room in new {
            self.joined(id, room);
        }
        confirmation
    }

    fn leave(&self, id: &SocketId, room: &Room) {
        let was = self.inner.local().is_member(id, room);
        self.inner.leave(id, room);
        if was {
            self.left(id, room);
        }
    }

    fn broadcast(
        &self,
        packet: BroadcastPacket,
        opts: BroadcastOptions,
    ) -> BoxFuture<'_, Result<usize, AdapterError>> {
        self.inner.broadcast(packet, opts)
    }

    fn broadcast_with_ack(
        &self,
        packet: BroadcastPacket,
        ack_id: u64,
        opts: BroadcastOptions,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<AckStream, AdapterError>> {
        self.inner.broadcast_with_ack(packet, ack_id, opts, timeout)
    }

    fn fetch_sockets(&self, opts: BroadcastOptions) -> BoxFuture<'_, Result<Vec<SocketInfo>, AdapterError>> {
        self.inner.fetch_sockets(opts)
    }

    fn add_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<'_, Result<(), AdapterError>> {
        // The local joins happen when the inner adapter is called, not when its future is polled.
        let new = self.selected(&opts, &rooms, false);
        let done = self.inner.add_sockets(opts, rooms);
        for (id, rooms) in &new {
            for room in rooms {
                self.joined(id, room);
            }
        }
        done
    }

    fn del_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<'_, Result<(), AdapterError>> {
        let members = self.selected(&opts, &rooms, true);
        let done = self.inner.del_sockets(opts, rooms);
        for (id, rooms) in &members {
            for room in rooms {
                self.left(id, room);
            }
        }
        done
    }

    fn disconnect_sockets(
        &self,
        opts: BroadcastOptions,
        close: bool,
    ) -> BoxFuture<'_, Result<(), AdapterError>> {
        self.inner.disconnect_sockets(opts, close)
    }

    fn server_side_emit(
        &self,
        event: String,
        args: Vec<Value>,
        timeout: Option<Duration>,
    ) -> BoxFuture<'_, Result<Vec<Vec<Value>>, AdapterError>> {
        self.inner.server_side_emit(event, args, timeout)
    }

    fn server_count(&self) -> BoxFuture<'_, Result<usize, AdapterError>> {
        self.inner.server_count()
    }

    fn set_inbound_handler(&self, handler: Arc<dyn InboundHandler>) {
        self.inner.set_inbound_handler(handler);
    }
}
