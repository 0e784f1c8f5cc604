//! Reference peer for the benchmarks: socketioxide with its defaults (a multi-thread tokio runtime,
//! one worker per core, as `#[tokio::main]` gives) serving the same bench contract as Switchboard's
//! `--app bench` (server/src/apps/bench.rs) and the Node reference (../node/server.js):
//! `echo(...args, ack?)`, `join(room, ack)`, `leave(room, ack)`, `broadcast({room, event, data}, ack)`.
//! `HOST` (default 127.0.0.1) and `PORT` (default 3001); prints `listening on http://HOST:PORT` when ready.

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "3001".into());
    let (svc, io) = SocketIo::new_svc();
    let broadcaster = io.clone();
    io.ns("/", async move |socket: SocketRef| {
        // echo(arg, ack?) → ack with the same argument, or emit `echo` with it.
        socket.on("echo", async |socket: SocketRef, Data::<Value>(data), ack: AckSender| {
            if ack.send(&data).is_err() {
                let _ = socket.emit("echo", &data);
            }
        });
        socket.on("join", async |socket: SocketRef, Data::<Value>(room), ack: AckSender| {
            if let Some(room) = room.as_str() {
                socket.join(room.to_owned());
            }
            let _ = ack.send(&());
        });
        socket.on("leave", async |socket: SocketRef, Data::<Value>(room), ack: AckSender| {
            if let Some(room) = room.as_str() {
                socket.leave(room.to_owned());
            }
            let _ = ack.send(&());
        });
        // broadcast({room, event, data}, ack) → (room ? to(room) : all).emit(event || "msg", data).
        let io = broadcaster.clone();
        socket.on("broadcast", async move |Data::<Value>(spec), ack: AckSender| {
            let event = spec.get("event").and_then(Value::as_str).filter(|e| !e.is_empty()).unwrap_or("msg");
            let data = spec.get("data").cloned().unwrap_or(Value::Null);
            let result = match spec.get("room").and_then(Value::as_str).filter(|r| !r.is_empty()) {
                Some(room) => io.to(room.to_owned()).emit(event, &data).await,
                None => io.emit(event, &data).await,
            };
            if let Err(e) = result {
                eprintln!("bench: broadcast failed: {e}");
            }
            let _ = ack.send(&());
        });
    });

    let listener = TcpListener::bind(format!("{host}:{port}")).await?;
    println!("listening on http://{host}:{port}");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let svc = svc.clone();
        tokio::spawn(async move {
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).with_upgrades().await;
        });
    }
}
