//! The server of the Socket.IO end-to-end tests (`server/e2e-node/test/socketio.test.js`):
//! 127.0.0.1 on `PORT` (default 3000), path `/socket.io/`, pingInterval 300, pingTimeout 200;
//! `NODE_ID` sets the node id (the tests check session ids carry it to recognise their server).
//!
//! Namespaces:
//! - `/`, `/admin` and the dynamic `/dyn-<digits>` run the same test app (see [`app`]);
//! - `/private` runs it too, behind a middleware that wants `auth.token == "let-me-in"`;
//! - `/stats` is for observers: `count` answers a namespace's socket count, and every socket of
//!   the other namespaces reports its end there as `left` `{nsp, id, reason}`.
//!
//! Run: `cargo run -p switchboard --example e2e_server`

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use switchboard::socketio::{ConnectError, Event, Namespace, SocketIo, SocketIoConfig, SocketRef, Value};
use switchboard::{CloseReason, EngineConfig, Server};

/// Argument `i` as a string (empty if missing).
fn str_arg(event: &Event, i: usize) -> String {
    event.arg::<String>(i).unwrap_or_default()
}

/// A JSON value as an event argument.
fn js(value: serde_json::Value) -> Value {
    Value::from(value)
}

/// The value with each binary node replaced by `{"binary": "<hex>"}`: shows what the server decoded.
fn describe(value: &Value) -> serde_json::Value {
    match value {
        Value::Binary(bytes) => {
            json!({ "binary": bytes.iter().map(|b| format!("{b:02x}")).collect::<String>() })
        }
        Value::Array(items) => items.iter().map(describe).collect(),
        Value::Object(entries) => entries.iter().map(|(k, v)| (k.clone(), describe(v))).collect(),
        other => other.to_json().unwrap_or_default(),
    }
}

/// Binary made by the server: a buffer at the top and nested in an object and an array.
fn server_binary() -> Vec<Value> {
    let nested = Value::Object(vec![
        ("kind".into(), Value::from("nested")),
        ("data".into(), Value::from(Bytes::from_static(&[1, 2, 3]))),
        ("list".into(), Value::Array(vec![Value::from(Bytes::from_static(b"ab")), Value::from(7u8)])),
    ]);
    vec![Value::from(Bytes::from_static(&[0, 255, 128])), nested]
}

/// Panics (a function returning `()`, so a handler that calls it is a valid handler).
fn boom(message: &str) {
    panic!("{message}")
}

/// Rooms of a socket, without its own id room.
fn named_rooms(socket: &SocketRef) -> Vec<String> {
    socket.rooms().iter().filter(|r| r.as_str() != socket.id().as_str()).map(|r| r.to_string()).collect()
}

/// Installs the test app on a socket of `/`, `/admin`, `/private` or `/dyn-N`.
fn app(socket: &SocketRef, stats: &Arc<Namespace>) {
    let auth = js(serde_json::Value::Object(socket.handshake().auth.clone()));
    let _ = socket.emit("auth", vec![auth, Value::from(socket.namespace().name())]);

    // Tell the `/stats` observers how this socket ended.
    let stats = stats.clone();
    socket.on_disconnect(move |socket, reason| {
        let left =
            json!({"nsp": socket.namespace().name(), "id": socket.id().as_str(), "reason": reason.as_str()});
        tokio::spawn(async move {
            let _ = stats.broadcast().emit("left", vec![js(left)]).await;
        });
    });

    // `whoami` → ack `{nsp, id}`.
    socket.on("whoami", |socket: SocketRef, mut event: Event| async move {
        event.ack(vec![js(json!({"nsp": socket.namespace().name(), "id": socket.id().as_str()}))]);
    });
    // `echo` → the same args back as `echo`.
    socket.on("echo", |socket: SocketRef, event: Event| async move {
        let _ = socket.emit("echo", event.args);
    });
    // `ack` → ack with the same args.
    socket.on("ack", |_socket: SocketRef, mut event: Event| async move {
        let args = std::mem::take(&mut event.args);
        event.ack(args);
    });
    // `inspect` → ack with [`describe`] of each argument.
    socket.on("inspect", |_socket: SocketRef, mut event: Event| async move {
        let described: Vec<Value> = event.args.iter().map(|v| js(describe(v))).collect();
        event.ack(described);
    });
    // `make-binary` → emits `binary` with [`server_binary`], and acks with it too.
    socket.on("make-binary", |socket: SocketRef, mut event: Event| async move {
        let _ = socket.emit("binary", server_binary());
        event.ack(server_binary());
    });
    // `ask(timeoutMs, ...args)` → emits `question(...args)` with an ack, then `answer` `{ok, args | error}`.
    socket.on("ask", |socket: SocketRef, event: Event| async move {
        let timeout = Duration::from_millis(event.arg::<u64>(0).unwrap_or(1000));
        let args = event.args.into_iter().skip(1).collect();
        let answer = match socket.emit_with_ack("question", args, timeout).await {
            Ok(args) => {
                Value::Object(vec![("ok".into(), Value::from(true)), ("args".into(), Value::Array(args))])
            }
            Err(e) => js(json!({"ok": false, "error": e.to_string()})),
        };
        let _ = socket.emit("answer", vec![answer]);
    });
    // `room-ask(room, timeoutMs)` → `poll` to the room with acks; ack `{answers, missing}`.
    socket.on("room-ask", |socket: SocketRef, mut event: Event| async move {
        let op = socket.namespace().to(str_arg(&event, 0));
        let op = op.timeout(Duration::from_millis(event.arg::<u64>(1).unwrap_or(1000)));
        let (answers, missing) = match op.emit_with_ack("poll", vec![]).await {
            Ok(answers) => (answers, 0),
            Err(switchboard::socketio::BroadcastAckError::AckTimeout { responses, missing }) => {
                (responses, missing)
            }
            Err(e) => return event.ack(vec![js(json!({"error": e.to_string()}))]),
        };
        let answers: Vec<Value> = answers.into_iter().flat_map(|a| a.args).collect();
        event.ack(vec![Value::Object(vec![
            ("answers".into(), Value::Array(answers)),
            ("missing".into(), Value::from(missing as u64)),
        ])]);
    });
    // `join(room)` / `leave(room)` → ack with the socket's named rooms.
    socket.on("join", |socket: SocketRef, mut event: Event| async move {
        socket.join([str_arg(&event, 0)]);
        event.ack(vec![js(json!(named_rooms(&socket)))]);
    });
    socket.on("leave", |socket: SocketRef, mut event: Event| async move {
        socket.leave(str_arg(&event, 0));
        event.ack(vec![js(json!(named_rooms(&socket)))]);
    });
    // `to-room(room, except, msg)` → `room-msg(msg)` to the room's members (minus room `except`
    // unless empty), sender included; ack with the recipient count.
    socket.on("to-room", |socket: SocketRef, mut event: Event| async move {
        let mut op = socket.namespace().to(str_arg(&event, 0));
        let except = str_arg(&event, 1);
        if !except.is_empty() {
            op = op.except(except);
        }
        let msg = event.args.get(2).cloned().unwrap_or_default();
        let sent = op.emit("room-msg", vec![msg]).await.map_err(|e| e.to_string());
        event.ack(vec![js(json!(sent))]);
    });
    // `socket-to(room, msg)` → `room-msg(msg)` via `socket.to(room)` (sender excluded); ack.
    socket.on("socket-to", |socket: SocketRef, mut event: Event| async move {
        let msg = event.args.get(1).cloned().unwrap_or_default();
        let sent = socket.to(str_arg(&event, 0)).emit("room-msg", vec![msg]).await.map_err(|e| e.to_string());
        event.ack(vec![js(json!(sent))]);
    });
    // `broadcast(msg)` → `broadcast-msg(msg)` to every other socket of the namespace; ack.
    socket.on("broadcast", |socket: SocketRef, mut event: Event| async move {
        let msg = event.args.first().cloned().unwrap_or_default();
        let sent = socket.broadcast().emit("broadcast-msg", vec![msg]).await.map_err(|e| e.to_string());
        event.ack(vec![js(json!(sent))]);
    });
    // `volatile(msg)` → volatile `volatile-msg(msg)` to this socket only; ack with the result.
    socket.on("volatile", |socket: SocketRef, mut event: Event| async move {
        let msg = event.args.first().cloned().unwrap_or_default();
        let op = socket.namespace().to(socket.id().room()).volatile();
        let sent = op.emit("volatile-msg", vec![msg]).await.map_err(|e| e.to_string());
        event.ack(vec![js(json!(sent))]);
    });
    // `members(room)` → ack with the ids of the room's sockets (fetchSockets).
    socket.on("members", |socket: SocketRef, mut event: Event| async move {
        let found = socket.namespace().to(str_arg(&event, 0)).fetch_sockets().await;
        let ids = found
            .map(|s| s.iter().map(|s| s.id().to_string()).collect::<Vec<_>>())
            .map_err(|e| e.to_string());
        event.ack(vec![js(json!(ids))]);
    });
    // `sockets-join(from, to)` → every socket in room `from` joins room `to` (socketsJoin); ack.
    socket.on("sockets-join", |socket: SocketRef, mut event: Event| async move {
        let op = socket.namespace().to(str_arg(&event, 0));
        let done = op.sockets_join(vec![str_arg(&event, 1).into()]).await.map_err(|e| e.to_string());
        event.ack(vec![js(json!(done))]);
    });
    // `kick-room(room)` → disconnects the room's sockets (disconnectSockets); ack.
    socket.on("kick-room", |socket: SocketRef, mut event: Event| async move {
        let done = socket.namespace().to(str_arg(&event, 0)).disconnect_sockets(false).await;
        event.ack(vec![js(json!(done.map_err(|e| e.to_string())))]);
    });
    // `disconnect-me` → `socket.disconnect(false)`: leaves this namespace only.
    socket.on("disconnect-me", |socket: SocketRef, _event: Event| async move { socket.disconnect(false) });
    // `close-me` → `socket.disconnect(true)`: every namespace of the connection, then the connection.
    socket.on("close-me", |socket: SocketRef, _event: Event| async move { socket.disconnect(true) });
    // `drop-connection` → closes the Engine.IO session without any DISCONNECT packet.
    socket.on("drop-connection", |socket: SocketRef, _event: Event| async move {
        socket.session().close(CloseReason::ForcedClose)
    });
    // `panic` / `panic-later` → the handler panics at once / after an await.
    socket.on("panic", |_socket: SocketRef, _event: Event| async move { boom("test panic") });
    socket.on("panic-later", |_socket: SocketRef, _event: Event| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        boom("test panic after an await");
    });
    // `fail` → the handler returns an error.
    socket.on("fail", |_socket: SocketRef, _event: Event| async move { Err::<(), _>("test failure") });
}

/// `/stats`: `count(nsp)` → ack `{sockets, fetched}` (local socket count and fetchSockets length;
/// 0 for a namespace that does not exist).
fn stats_app(socket: &SocketRef, io: &SocketIo) {
    let io = io.clone();
    socket.on("count", move |_socket: SocketRef, mut event: Event| {
        let io = io.clone();
        async move {
            let name = str_arg(&event, 0);
            let (sockets, fetched) = if io.namespace_names().contains(&name) {
                let ns = io.of(&name);
                let fetched = ns.broadcast().fetch_sockets().await.map(|s| s.len()).unwrap_or(usize::MAX);
                (ns.socket_count(), fetched)
            } else {
                (0, 0)
            };
            event.ack(vec![js(json!({"sockets": sockets, "fetched": fetched}))]);
        }
    });
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let mut engine = EngineConfig::default()
        .with_path("/socket.io/")
        .with_ping_interval(Duration::from_millis(300))
        .with_ping_timeout(Duration::from_millis(200))
        .with_max_http_buffer_size(1_000_000);
    if let Ok(node_id) = std::env::var("NODE_ID") {
        engine = engine.with_node_id(node_id);
    }
    let io =
        SocketIo::new(engine, SocketIoConfig::default().with_connect_timeout(Duration::from_millis(2000)));

    let stats = io.of("/stats");
    {
        let io = io.clone();
        stats.on_connection(move |socket: SocketRef| {
            stats_app(&socket, &io);
            async {}
        });
    }
    for name in ["/", "/admin", "/private"] {
        let stats = stats.clone();
        io.of(name).on_connection(move |socket: SocketRef| {
            app(&socket, &stats);
            async {}
        });
    }
    io.of("/private").use_middleware(|socket: SocketRef| async move {
        match socket.handshake().auth.get("token") {
            Some(token) if token == "let-me-in" => Ok(()),
            token => Err(ConnectError::new("not authorized")
                .with_data(json!({"reason": "bad token", "token": token.cloned().unwrap_or_default()}))),
        }
    });
    let dynamic = io.of_dynamic(|name| {
        name.strip_prefix("/dyn-").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    dynamic.on_connection(move |socket: SocketRef| {
        app(&socket, &stats);
        async {}
    });

    let listener = switchboard::http::bind("127.0.0.1", port).await?;
    println!("e2e server listening on http://127.0.0.1:{port}/socket.io/");
    let shutdown = switchboard::node::signal::on_signal();
    Server::new(io.engine().clone()).serve(listener, shutdown).await?;
    Ok(())
}
