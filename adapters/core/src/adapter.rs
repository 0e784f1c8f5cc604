//! The Adapter trait: what a namespace asks of its cluster, object safe so a node picks its adapter
//! at run time (`--adapter memory|redis|nats`); and the way back, [`InboundHandler`], through
//! which an adapter tells the server what came from other nodes: their server-side emits, for its
//! listeners, and the deliveries their broadcasts made here, for its metrics.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use switchboard_protocol::socketio::Value;

use crate::confirmation::Confirmation;
use crate::error::AdapterError;
use crate::rooms::RoomIndex;
use crate::types::{AckStream, BroadcastOptions, BroadcastPacket, LocalSocket, Room, SocketId, SocketInfo};

/// A boxed future, so the trait stays object safe (`Arc<dyn Adapter>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One namespace's view of the cluster.
///
/// Room membership is synchronous and local first ([`Adapter::local`]); a remote adapter also
/// updates its broker subscriptions and reports when a join is visible cluster-wide
/// ([`Confirmation`]). Broadcasts deliver to local sockets before they return and
/// ship the already-encoded packet to other nodes unless `flags.local` is set. Every remote
/// request ends within its timeout.
pub trait Adapter: Send + Sync + 'static {
    /// This node's room index.
    fn local(&self) -> &RoomIndex;

    /// A socket connected to the namespace on this node.
    fn add_socket(&self, socket: Arc<dyn LocalSocket>) {
        self.local().add(socket);
    }

    /// A socket left the namespace on this node; it leaves every room.
    fn remove_socket(&self, id: &SocketId) {
        self.local().remove(id);
    }

    /// A local socket joins rooms. Local emits reach it at once; the [`Confirmation`] resolves
    /// once other nodes' emits to these rooms reach it too (a cluster adapter's new room
    /// subscription is confirmed by the broker), so the server can hold back what the client
    /// could act on until then. The default (one node) is confirmed at once.
    fn join(&self, id: &SocketId, rooms: &[Room]) -> Confirmation {
        self.local().join(id, rooms);
        Confirmation::confirmed()
    }

    /// A local socket leaves a room.
    fn leave(&self, id: &SocketId, room: &Room) {
        self.local().leave(id, room);
    }

    /// Delivers to the selected sockets on every node; resolves to the number of local recipients.
    fn broadcast(
        &self,
        packet: BroadcastPacket,
        opts: BroadcastOptions,
    ) -> BoxFuture<'_, Result<usize, AdapterError>>;

    /// Delivers a packet carrying `ack_id` and streams the answers until `timeout`.
    fn broadcast_with_ack(
        &self,
        packet: BroadcastPacket,
        ack_id: u64,
        opts: BroadcastOptions,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<AckStream, AdapterError>>;

    /// The selected sockets on every node.
    fn fetch_sockets(&self, opts: BroadcastOptions) -> BoxFuture<'_, Result<Vec<SocketInfo>, AdapterError>>;

    /// Makes the selected sockets on every node join `rooms`; resolves once this node's joins are
    /// [confirmed](Self::join) (other nodes apply theirs when the request reaches them).
    fn add_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<'_, Result<(), AdapterError>>;

    /// Makes the selected sockets on every node leave `rooms`.
    fn del_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<'_, Result<(), AdapterError>>;

    /// Disconnects the selected sockets on every node.
    fn disconnect_sockets(
        &self,
        opts: BroadcastOptions,
        close: bool,
    ) -> BoxFuture<'_, Result<(), AdapterError>>;

    /// Emits an event to the *other* nodes' namespace handlers; with a timeout, collects their answers.
    fn server_side_emit(
        &self,
        event: String,
        args: Vec<Value>,
        timeout: Option<Duration>,
    ) -> BoxFuture<'_, Result<Vec<Vec<Value>>, AdapterError>>;

    /// Number of nodes in the cluster, this one included.
    fn server_count(&self) -> BoxFuture<'_, Result<usize, AdapterError>>;

    /// Registers what the server does with what other nodes send this namespace (server-side
    /// emits, deliveries of their broadcasts); a single-node adapter receives nothing from other
    /// nodes, so the default ignores it.
    fn set_inbound_handler(&self, _handler: Arc<dyn InboundHandler>) {}
}

/// Makes one adapter per namespace, the way socket.io instantiates its adapter class per namespace.
pub trait AdapterFactory: Send + Sync + 'static {
    /// The adapter of namespace `nsp`.
    fn create(&self, nsp: &str) -> Arc<dyn Adapter>;
}

/// What a node does with what other nodes send one of its namespaces.
///
/// Called on the transport's receive task, in arrival order: do not block; spawn if the handler
/// awaits.
pub trait InboundHandler: Send + Sync + 'static {
    /// Another node called `serverSideEmit` on the namespace: run socket.io's `io.on(event, …)`
    /// listeners for server-side events. With an `ack`, the emitter is waiting: call
    /// [`ServerSideAck::send`] with this node's answer (once). Dropping it unanswered leaves the
    /// emitter waiting until its timeout, as in socket.io when a server has no listener.
    fn on_server_side_emit(&self, event: String, args: Vec<Value>, ack: Option<ServerSideAck>);

    /// A broadcast from another node reached `count` of this node's sockets (called once per
    /// broadcast, never per socket), so deliveries are counted on the node that makes them.
    fn on_delivered(&self, _count: usize) {}
}

/// The way back to a waiting emitter; sends this node's answer once.
pub struct ServerSideAck {
    reply: Box<dyn FnOnce(Vec<Value>) + Send>,
}

impl std::fmt::Debug for ServerSideAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSideAck")
    }
}

impl ServerSideAck {
    /// An answer channel that runs `reply` with the arguments (adapters build these).
    pub fn new(reply: impl FnOnce(Vec<Value>) + Send + 'static) -> Self {
        Self { reply: Box::new(reply) }
    }

    /// Answers the emitter with `args` (binary allowed).
    pub fn send(self, args: Vec<Value>) {
        (self.reply)(args);
    }
}
