//! The seed's demo: `GET /` lists events; every socket gets `hello` with a counter each second;
//! the page answers `hey` `{counter}` each second and the server logs it.

use std::time::Duration;

use crate::node::App;
use crate::socketio::{SocketIo, SocketRef, Value};

/// The demo as a node runs it (`--app demo`).
pub fn app() -> App {
    App::socketio("demo", PAGE, install)
}

/// The page served at `/`; it loads the official client from the server's own `/socket.io/socket.io.js`.
pub const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Switchboard demo</title>
  <style>body { font-family: sans-serif; margin: 2em; } li { font-family: monospace; }</style>
</head>
<body>
  <h1>Switchboard demo</h1>
  <p>Events from the server, newest last:</p>
  <ul id="events"></ul>
  <script src="/socket.io/socket.io.js"></script>
  <script>
    const list = document.getElementById("events");
    const add = (text) => {
      const item = document.createElement("li");
      item.textContent = text;
      list.appendChild(item);
    };
    const socket = io();
    socket.on("connect", () => add("connect"));
    socket.on("disconnect", (reason) => add("disconnect: " + reason));
    socket.on("connect_error", (err) => add("connect_error: " + err.message));
    socket.on("hello", (counter) => add("hello - " + counter));
    let counter = 0;
    setInterval(() => socket.emit("hey", { counter: ++counter }), 1000);
  </script>
</body>
</html>
"#;

/// Installs the demo handlers on the main namespace.
pub fn install(io: &SocketIo) {
    io.main_namespace().on_connection(|socket: SocketRef| async move {
        tracing::info!(socket = %socket.id(), "demo: connect");
        socket.on("hey", |socket: SocketRef, event| async move {
            let counter = event.args.first().and_then(Value::to_json).unwrap_or_default();
            // Once per client per second: debug, not info.
            tracing::debug!(socket = %socket.id(), %counter, "demo: hey");
        });
        socket.on_disconnect(|socket, reason| {
            tracing::info!(socket = %socket.id(), reason = reason.as_str(), "demo: disconnect");
        });
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(1));
            ticks.tick().await;
            let mut counter: u64 = 0;
            while socket.connected() {
                ticks.tick().await;
                counter += 1;
                let _ = socket.emit("hello", vec![Value::from(counter)]);
            }
        });
    });
}
