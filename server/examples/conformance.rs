//! The reference server of the official socket.io-protocol test suite: 127.0.0.1:3000 (`PORT`
//! overrides), path `/socket.io/`, pingInterval 300, pingTimeout 200, connectTimeout 1000.
//! On `/` and `/custom` every socket gets `auth` with its handshake auth; on `/`, `message` is
//! answered with `message-back` (same args) and `message-with-ack` with an ack (same args).
//!
//! Run: `cargo run --release -p switchboard --example conformance`

use std::time::Duration;

use switchboard::EngineConfig;
use switchboard::Server;
use switchboard::socketio::{SocketIo, SocketIoConfig, SocketRef, Value};

fn emit_auth(socket: &SocketRef) {
    let auth = Value::from(serde_json::Value::Object(socket.handshake().auth.clone()));
    let _ = socket.emit("auth", vec![auth]);
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let engine = EngineConfig::default()
        .with_path("/socket.io/")
        .with_ping_interval(Duration::from_millis(300))
        .with_ping_timeout(Duration::from_millis(200))
        .with_max_http_buffer_size(1_000_000);
    let io =
        SocketIo::new(engine, SocketIoConfig::default().with_connect_timeout(Duration::from_millis(1000)));

    io.main_namespace().on_connection(|socket: SocketRef| async move {
        emit_auth(&socket);
        socket.on("message", |socket: SocketRef, event| async move {
            let _ = socket.emit("message-back", event.args);
        });
        socket.on("message-with-ack", |_socket: SocketRef, mut event| async move {
            let args = std::mem::take(&mut event.args);
            event.ack(args);
        });
    });
    io.of("/custom").on_connection(|socket: SocketRef| async move {
        emit_auth(&socket);
    });

    let listener = switchboard::http::bind("127.0.0.1", port).await?;
    println!("conformance server listening on http://127.0.0.1:{port}/socket.io/");
    let shutdown = switchboard::node::signal::on_signal();
    Server::new(io.engine().clone()).serve(listener, shutdown).await?;
    Ok(())
}
