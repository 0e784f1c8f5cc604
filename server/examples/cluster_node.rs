//! A cluster node for the cross-node end-to-end tests (`server/e2e-node/test/cluster.test.js`):
//! several of these, joined by Redis or NATS, act as one Socket.IO server.
//!
//! Environment: `PORT` (default 3000) on 127.0.0.1, `NODE_ID` (default random), `ADAPTER`
//! (`redis`, `nats` or `memory`; default `redis`), `REDIS_URL` (comma-separated: sharded),
//! `NATS_URL` (comma-separated), `CLUSTER_PREFIX` (default `switchboard`). Path `/socket.io/`,
//! pingInterval 300 ms, pingTimeout 200 ms.
//!
//! The contract, on `/`. Each socket's `data` is `{node}`. A selection is `{room?, except?}`, each
//! a room name or a list of them (no room: the whole namespace), and every ack is `{ok: value}` or
//! `{error: message}`:
//! - `whoami` → `{node, id}`;
//! - `health` → `{adapter, connected}`: whether this node's broker link is up;
//! - `join(room)` / `leave(room)` → the socket's rooms (its own id room left out);
//! - `broadcast({...selection, event, data, local?})` → emits `event(data)` to the selection on
//!   every node (sender included); ok is the local recipient count;
//! - `ask({...selection, data, timeout})` → emits `question(data)` with an ack to the selection
//!   and waits `timeout` ms (default 1000); ok is `{answers: [{socket, args}], missing}`;
//! - `fetch(selection)` → fetchSockets: `[{id, rooms, data, auth}]`;
//! - `sockets_join({...selection, target})` / `sockets_leave({...selection, target})` →
//!   socketsJoin / socketsLeave of the `target` room(s); ok is `true`;
//! - `disconnect_sockets({...selection, close?})` → disconnectSockets; ok is `true`;
//! - `server_side({data, timeout})` → `server_side_emit_with_ack("ping", [data])` to the other
//!   nodes; ok is their answers, each `{node, data}` (from the `ping` listener of every node).
//!
//! Run: `REDIS_URL=redis://127.0.0.1:6379 PORT=3001 cargo run -p switchboard --example cluster_node`

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use switchboard::cluster::{Backend, Cluster};
use switchboard::socketio::{
    AckResponse, BroadcastAckError, BroadcastOperator, Event, Namespace, RemoteSocket, Room, SocketIo,
    SocketIoConfig, SocketRef, Value,
};
use switchboard::{EngineConfig, Server};

/// One room or several.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum Rooms {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Rooms {
    fn list(self) -> Vec<String> {
        match self {
            Rooms::None => Vec::new(),
            Rooms::One(room) => vec![room],
            Rooms::Many(rooms) => rooms,
        }
    }
}

/// The argument of every cluster operation; each reads the fields it needs.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Request {
    room: Rooms,
    except: Rooms,
    target: Rooms,
    event: Option<String>,
    data: serde_json::Value,
    local: bool,
    close: bool,
    /// Milliseconds.
    timeout: Option<u64>,
}

impl Request {
    fn from(event: &Event) -> Self {
        event.arg(0).unwrap_or_default()
    }

    /// The `target` rooms (of socketsJoin / socketsLeave), taken out.
    fn take_target(&mut self) -> Vec<Room> {
        std::mem::take(&mut self.target).list().into_iter().map(Room::from).collect()
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout.unwrap_or(1000))
    }

    /// The sockets this request selects, on every node.
    fn select(self, ns: &Arc<Namespace>) -> BroadcastOperator {
        let mut op = ns.broadcast();
        for room in self.room.list() {
            op = op.to(room);
        }
        for room in self.except.list() {
            op = op.except(room);
        }
        if self.local { op.local() } else { op }
    }
}

/// Acks `{ok: value}` or `{error: message}`.
fn reply<T: Serialize, E: Display>(event: &mut Event, result: Result<T, E>) {
    let answer = match result {
        Ok(value) => json!({ "ok": value }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    event.ack(vec![Value::from(answer)]);
}

/// One ack of `ask`: `{socket, args}`.
fn describe_answer(answer: &AckResponse) -> serde_json::Value {
    json!({ "socket": answer.socket.as_str(), "args": Value::Array(answer.args.clone()).to_json() })
}

/// One socket of `fetch`: `{id, rooms, data, auth}`, its own id room left out.
fn describe_socket(socket: &RemoteSocket) -> serde_json::Value {
    let info = socket.info();
    let rooms: Vec<&str> = info.rooms.iter().map(|r| r.as_str()).filter(|r| *r != info.id.as_str()).collect();
    json!({ "id": info.id.as_str(), "rooms": rooms, "data": info.data, "auth": info.handshake["auth"] })
}

/// Rooms of a socket, without its own id room.
fn named_rooms(socket: &SocketRef) -> Vec<String> {
    socket.rooms().iter().filter(|r| r.as_str() != socket.id().as_str()).map(|r| r.to_string()).collect()
}

fn install(io: &SocketIo, node: &str, cluster: &Arc<Cluster>) {
    let ns = io.main_namespace();

    // Answers other nodes' `server_side_emit("ping", [data])` with `{node, data}`.
    let me = node.to_owned();
    ns.on_server_side("ping", move |ping| {
        let data = ping.args.first().and_then(Value::to_json).unwrap_or_default();
        if let Some(ack) = ping.ack {
            ack.send(vec![Value::from(json!({ "node": me, "data": data }))]);
        }
    });

    let node = node.to_owned();
    let cluster = cluster.clone();
    ns.on_connection(move |socket: SocketRef| {
        let _ = socket.set_data(&json!({ "node": node }));
        let health = json!({ "adapter": cluster.backend_name() });
        let cluster = cluster.clone();
        socket.on("health", move |_socket: SocketRef, mut event: Event| {
            let mut health = health.clone();
            health["connected"] = json!(cluster.is_connected());
            async move { reply::<_, String>(&mut event, Ok(health)) }
        });
        let node = node.clone();
        socket.on("whoami", move |socket: SocketRef, mut event: Event| {
            let node = node.clone();
            async move {
                reply::<_, String>(&mut event, Ok(json!({ "node": node, "id": socket.id().as_str() })));
            }
        });
        socket.on("join", |socket: SocketRef, mut event: Event| async move {
            socket.join([event.arg::<String>(0).unwrap_or_default()]);
            reply::<_, String>(&mut event, Ok(named_rooms(&socket)));
        });
        socket.on("leave", |socket: SocketRef, mut event: Event| async move {
            socket.leave(event.arg::<String>(0).unwrap_or_default());
            reply::<_, String>(&mut event, Ok(named_rooms(&socket)));
        });
        socket.on("broadcast", |socket: SocketRef, mut event: Event| async move {
            let mut req = Request::from(&event);
            let name = req.event.take().unwrap_or_else(|| "msg".into());
            let data = Value::from(std::mem::take(&mut req.data));
            let sent = req.select(socket.namespace()).emit(&name, vec![data]).await;
            reply(&mut event, sent);
        });
        socket.on("ask", |socket: SocketRef, mut event: Event| async move {
            let mut req = Request::from(&event);
            let data = Value::from(std::mem::take(&mut req.data));
            let timeout = req.timeout();
            let op = req.select(socket.namespace()).timeout(timeout);
            let (answers, missing) = match op.emit_with_ack("question", vec![data]).await {
                Ok(answers) => (answers, 0),
                Err(BroadcastAckError::AckTimeout { responses, missing }) => (responses, missing),
                Err(e) => return reply::<(), _>(&mut event, Err(e)),
            };
            let answers: Vec<_> = answers.iter().map(describe_answer).collect();
            reply::<_, String>(&mut event, Ok(json!({ "answers": answers, "missing": missing })));
        });
        socket.on("fetch", |socket: SocketRef, mut event: Event| async move {
            let found = Request::from(&event).select(socket.namespace()).fetch_sockets().await;
            reply(&mut event, found.map(|sockets| sockets.iter().map(describe_socket).collect::<Vec<_>>()));
        });
        socket.on("sockets_join", |socket: SocketRef, mut event: Event| async move {
            let mut req = Request::from(&event);
            let rooms = req.take_target();
            let done = req.select(socket.namespace()).sockets_join(rooms).await.map(|()| true);
            reply(&mut event, done);
        });
        socket.on("sockets_leave", |socket: SocketRef, mut event: Event| async move {
            let mut req = Request::from(&event);
            let rooms = req.take_target();
            let done = req.select(socket.namespace()).sockets_leave(rooms).await.map(|()| true);
            reply(&mut event, done);
        });
        socket.on("disconnect_sockets", |socket: SocketRef, mut event: Event| async move {
            let req = Request::from(&event);
            let close = req.close;
            let done = req.select(socket.namespace()).disconnect_sockets(close).await.map(|()| true);
            reply(&mut event, done);
        });
        socket.on("server_side", |socket: SocketRef, mut event: Event| async move {
            let mut req = Request::from(&event);
            let data = Value::from(std::mem::take(&mut req.data));
            let answers =
                socket.namespace().server_side_emit_with_ack("ping", vec![data], req.timeout()).await;
            // One answer per other node: the `{node, data}` its `ping` listener sent.
            let answers =
                answers.map(|a| a.iter().map(|args| args.first().and_then(Value::to_json)).collect());
            reply::<Vec<_>, _>(&mut event, answers);
        });
        async {}
    });
}

/// The adapter backend from `ADAPTER`, `REDIS_URL` and `NATS_URL`.
fn backend() -> anyhow::Result<Backend> {
    let urls = |var: &str, default: &str| -> Vec<String> {
        let list = std::env::var(var).unwrap_or_else(|_| default.to_owned());
        list.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect()
    };
    Ok(match std::env::var("ADAPTER").as_deref().unwrap_or("redis") {
        "memory" => Backend::Memory,
        "redis" => Backend::Redis { urls: urls("REDIS_URL", "redis://127.0.0.1:6379") },
        "nats" => Backend::Nats { urls: urls("NATS_URL", "nats://127.0.0.1:4222") },
        other => anyhow::bail!("ADAPTER must be redis, nats or memory, not {other:?}"),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let prefix = std::env::var("CLUSTER_PREFIX").unwrap_or_else(|_| "switchboard".into());
    let mut engine = EngineConfig::default()
        .with_path("/socket.io/")
        .with_ping_interval(Duration::from_millis(300))
        .with_ping_timeout(Duration::from_millis(200));
    if let Ok(node_id) = std::env::var("NODE_ID") {
        engine = engine.with_node_id(node_id);
    }
    let node = engine.node_id().to_owned();
    let cluster = Arc::new(
        Cluster::connect(&backend()?, &node, &prefix, None).await.context("cannot join the cluster")?,
    );
    let io = SocketIo::new(engine, SocketIoConfig::default().with_adapter(cluster.adapter_factory()));
    install(&io, &node, &cluster);

    let listener = switchboard::http::bind("127.0.0.1", port).await?;
    println!("cluster node {node} ({}) on http://127.0.0.1:{port}/socket.io/", cluster.backend_name());
    let shutdown = switchboard::node::signal::on_signal();
    Server::new(io.engine().clone()).serve(listener, shutdown).await?;
    cluster.close().await;
    Ok(())
}
