//! Server-side emits from other nodes reach the namespace's handlers, which live in the server:
//! the server implements [`ServerSideEmitHandler`] and registers it on each namespace's adapter.

use switchboard_protocol::socketio::Value;

/// What a node runs when another node calls `serverSideEmit` on a namespace (socket.io's
/// `io.on(event, …)` listeners for server-side events).
///
/// Called on the transport's receive task, in arrival order: do not block; spawn if the handler
/// awaits. With an `ack`, the emitter is waiting: call [`ServerSideAck::send`] with this node's
/// answer (once). Dropping it unanswered leaves the emitter waiting until its timeout, as in
/// socket.io when a server has no listener.
pub trait ServerSideEmitHandler: Send + Sync + 'static {
    /// Handles `event` with `args` from another node.
    fn on_server_side_emit(&self, event: String, args: Vec<Value>, ack: Option<ServerSideAck>);
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
