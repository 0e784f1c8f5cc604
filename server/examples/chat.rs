//! A room chat: the smallest Switchboard server worth copying. Clients `join` a room (the others
//! get `joined` with the newcomer's id, the newcomer an ack listing who is there) and `say`
//! something to it (everyone else in the room gets `said` `{from, text}`, the sender an ack).
//!
//! Run: `cargo run -p switchboard --example chat` (`PORT`, default 3000), then from Node:
//!
//! ```js
//! const socket = require("socket.io-client").io("http://127.0.0.1:3000");
//! socket.on("said", (m) => console.log(`${m.from}: ${m.text}`));
//! socket.emit("join", "lobby", (members) => socket.emit("say", { room: "lobby", text: "hi" }, () => {}));
//! ```

use serde::Deserialize;
use serde_json::json;
use switchboard::socketio::{Event, SocketIo, SocketIoConfig, SocketRef, Value};
use switchboard::{EngineConfig, Server};

/// What `say` carries.
#[derive(Deserialize)]
struct Say {
    room: String,
    text: String,
}

fn on_connect(socket: SocketRef) {
    socket.on("join", |socket: SocketRef, mut event: Event| async move {
        let Some(room) = event.arg::<String>(0) else { return };
        // Wait until the room is joined cluster-wide before telling the client (with one node, at once).
        socket.join([room.as_str()]).wait().await;
        let _ = socket.to(room.as_str()).emit("joined", vec![Value::from(socket.id().as_str())]).await;
        let members = socket.namespace().to(room.as_str()).fetch_sockets().await.unwrap_or_default();
        let ids = members.iter().map(|m| Value::from(m.id().as_str())).collect();
        event.ack(vec![Value::Array(ids)]);
    });
    socket.on("say", |socket: SocketRef, mut event: Event| async move {
        let Some(Say { room, text }) = event.arg::<Say>(0) else { return };
        let said = Value::from(json!({ "from": socket.id().as_str(), "text": text }));
        // Encoded once, shared by every member's connection; the sender is left out.
        let delivered = socket.to(room.as_str()).emit("said", vec![said]).await;
        event.ack(vec![Value::from(delivered.is_ok())]);
    });
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    // socket.io's defaults; `EngineConfig` and `SocketIoConfig` take its options (`with_cors`, …).
    let io = SocketIo::new(EngineConfig::default(), SocketIoConfig::default());
    io.main_namespace().on_connection(|socket: SocketRef| async move { on_connect(socket) });

    let listener = switchboard::http::bind("127.0.0.1", port).await?;
    println!("chat listening on http://127.0.0.1:{port}");
    // Ctrl-C or SIGTERM stops accepting and closes every session.
    let shutdown = switchboard::node::signal::on_signal();
    Server::new(io.engine().clone()).serve(listener, shutdown).await?;
    Ok(())
}
