//! What the admin UI may ask of the cluster, and how every node takes part: the socket list it
//! gets on connecting (`all_sockets`: this node's sockets plus each other node's answer to a
//! server-side emit), and, unless read-only, its commands: `emit` (a broadcast, cluster-wide by
//! itself), `join`, `leave` and `_disconnect`, which each node applies to its own sockets (the
//! others hear of them by a server-side emit) so that every node's feed (`feed.rs`) reports the
//! rooms and disconnects they cause.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::serialize;
use crate::socketio::{Event, Namespace, Room, SocketIo, SocketRef, Value};

/// The server-side event that carries a command to the other nodes.
pub(crate) const COMMAND_EVENT: &str = "switchboard:admin:command";
/// The server-side event that asks the other nodes for their sockets.
pub(crate) const SOCKETS_EVENT: &str = "switchboard:admin:sockets";
/// Most sockets one node lists for the UI: the list is one message through the broker (within
/// `--cluster-max-message-size`) and one page in a browser.
const MAX_SOCKETS_PER_NODE: usize = 10_000;
/// How long the other nodes have to send their sockets.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// The admin-ui's feature names for its commands (`Feature` in its typed events).
pub(crate) const COMMAND_FEATURES: [&str; 7] =
    ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT"];

/// A command as the nodes pass it on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Command {
    /// The sockets of `nsp` (in room `filter`, if any) join `room`.
    Join { nsp: String, room: String, filter: Option<String> },
    /// The sockets of `nsp` (in room `filter`, if any) leave `room`.
    Leave { nsp: String, room: String, filter: Option<String> },
    /// The sockets of `nsp` (in room `filter`, if any) are disconnected; `close` closes their
    /// connection too.
    Disconnect { nsp: String, close: bool, filter: Option<String> },
}

impl Command {
    /// The command an admin socket's event stands for, if it is one and well formed.
    fn from_event(event: &Event) -> Option<Self> {
        let nsp = event.arg::<String>(0)?;
        let filter = event.arg::<Option<String>>(2).flatten();
        match event.name.as_str() {
            "join" => Some(Self::Join { nsp, room: event.arg(1)?, filter }),
            "leave" => Some(Self::Leave { nsp, room: event.arg(1)?, filter }),
            "_disconnect" => Some(Self::Disconnect { nsp, close: event.arg(1)?, filter }),
            _ => None,
        }
    }

    /// Applies the command to this node's sockets.
    pub(crate) async fn apply(self, io: &SocketIo) {
        let (nsp, filter) = match &self {
            Self::Join { nsp, filter, .. }
            | Self::Leave { nsp, filter, .. }
            | Self::Disconnect { nsp, filter, .. } => (nsp, filter),
        };
        let Some(ns) = io.namespace(nsp) else { return };
        let mut op = ns.broadcast().local();
        if let Some(filter) = filter {
            op = op.to(filter.as_str());
        }
        let result = match self {
            Self::Join { room, .. } => {
                op.sockets_join(vec![Room::from(room)]).await.map_err(|e| e.to_string())
            }
            Self::Leave { room, .. } => {
                op.sockets_leave(vec![Room::from(room)]).await.map_err(|e| e.to_string())
            }
            Self::Disconnect { close, .. } => op.disconnect_sockets(close).await.map_err(|e| e.to_string()),
        };
        if let Err(error) = result {
            tracing::debug!(error, "admin UI: command failed");
        }
    }
}

/// Takes the admin UI's commands on `socket` (a UI connected to this node).
pub(crate) fn register(socket: &SocketRef, io: &SocketIo, admin: &std::sync::Arc<Namespace>) {
    let on_emit = io.clone();
    socket.on("emit", move |_: SocketRef, event: Event| {
        let io = on_emit.clone();
        async move {
            let (Some(nsp), Some(name)) = (event.arg::<String>(0), event.arg::<String>(2)) else { return };
            let Some(ns) = io.namespace(&nsp) else { return };
            let op = match event.arg::<Option<String>>(1).flatten() {
                Some(room) => ns.to(room),
                None => ns.broadcast(),
            };
            if let Err(error) = op.emit(&name, event.args.into_iter().skip(3).collect()).await {
                tracing::debug!(%error, "admin UI: emit failed");
            }
        }
    });
    for name in ["join", "leave", "_disconnect"] {
        let io = io.clone();
        let admin = admin.clone();
        socket.on(name, move |_: SocketRef, event: Event| {
            let (io, admin) = (io.clone(), admin.clone());
            async move {
                let Some(command) = Command::from_event(&event) else { return };
                if let Ok(json) = serde_json::to_value(&command)
                    && let Err(error) = admin.server_side_emit(COMMAND_EVENT, vec![Value::from(json)]).await
                {
                    tracing::warn!(%error, "admin UI: command not passed on to the other nodes");
                }
                command.apply(&io).await;
            }
        });
    }
}

/// This node's sockets in every namespace, as the UI shows them (at most
/// [`MAX_SOCKETS_PER_NODE`]).
pub(crate) fn local_sockets(io: &SocketIo) -> Vec<Json> {
    let mut out = Vec::new();
    for name in io.namespace_names() {
        let Some(ns) = io.namespace(&name) else { continue };
        for socket in ns.sockets() {
            if out.len() == MAX_SOCKETS_PER_NODE {
                tracing::debug!("admin UI: socket list cut at {MAX_SOCKETS_PER_NODE}");
                return out;
            }
            out.push(serialize::socket(&socket));
        }
    }
    out
}

/// Every node's sockets: this node's and the answers of the others that answer in time.
pub(crate) async fn all_sockets(io: &SocketIo, admin: &Namespace) -> Vec<Json> {
    let mut sockets = local_sockets(io);
    match admin.server_side_emit_with_ack(SOCKETS_EVENT, Vec::new(), GATHER_TIMEOUT).await {
        Ok(answers) => {
            for answer in answers {
                if let Some(Json::Array(list)) = answer.first().and_then(Value::to_json) {
                    sockets.extend(list);
                }
            }
        }
        Err(error) => tracing::warn!(%error, "admin UI: the other nodes' sockets are missing"),
    }
    sockets
}
