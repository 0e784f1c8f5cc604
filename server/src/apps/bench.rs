//! The load-test contract every benchmark speaks (namespace `/`):
//! `echo(...args, ack?)`, `join(room, ack)`, `leave(room, ack)`, `broadcast({room, event, data}, ack)`.

use crate::node::App;
use crate::socketio::{SocketIo, SocketRef, Value};

/// The page at `/` of a bench node.
const PAGE: &str = "<!doctype html><title>Switchboard</title><p>Switchboard bench contract.</p>";

/// The bench contract as a node runs it (`--app bench`).
pub fn app() -> App {
    App::socketio("bench", PAGE, install)
}

/// Installs the bench handlers on the main namespace.
pub fn install(io: &SocketIo) {
    io.main_namespace().on_connection(|socket: SocketRef| async move {
        // echo(...args, ack?) → ack with the same args, or emit `echo` with them.
        socket.on("echo", |socket: SocketRef, mut event| async move {
            let args = std::mem::take(&mut event.args);
            match event.ack.take() {
                Some(ack) => ack.send(args),
                None => {
                    let _ = socket.emit("echo", args);
                }
            }
        });
        socket.on("join", |socket: SocketRef, mut event| async move {
            if let Some(room) = event.args.first().and_then(Value::as_str) {
                socket.join([room]);
            }
            event.ack(Vec::new());
        });
        socket.on("leave", |socket: SocketRef, mut event| async move {
            if let Some(room) = event.args.first().and_then(Value::as_str) {
                socket.leave(room);
            }
            event.ack(Vec::new());
        });
        // broadcast({room, event, data}, ack) → (room ? to(room) : all).emit(event || "msg", data).
        socket.on("broadcast", |socket: SocketRef, mut event| async move {
            let spec = event.args.first().cloned().unwrap_or_default();
            let field = |name: &str| match &spec {
                Value::Object(fields) => fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
                _ => None,
            };
            let name =
                field("event").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_else(|| "msg".into());
            let data = field("data").unwrap_or_default();
            let mut target = socket.namespace().broadcast();
            if let Some(room) = field("room").and_then(|v| v.as_str().map(str::to_owned)) {
                target = target.to(room);
            }
            // Acked once every local receiver's connection took it, as Node acks after its
            // synchronous writes: the publisher's window then bounds what is in flight.
            if let Err(e) = target.emit_written(&name, vec![data]).await {
                // A client can cause this at will (a room name over the limit): not a warning.
                tracing::debug!(error = %e, "bench: broadcast failed");
            }
            event.ack(Vec::new());
        });
    });
}
