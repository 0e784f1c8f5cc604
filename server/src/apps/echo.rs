//! Engine.IO echo: every message goes back to its sender as it came (the protocol suite's contract).

use std::sync::Arc;

use crate::engine::{CloseReason, Encoded, EngineHandler, Message, Session};
use crate::node::App;

/// The page at `/` of an echo node.
const PAGE: &str = "<!doctype html><meta charset=utf-8><title>Switchboard</title>\
    <h1>Switchboard</h1><p>Engine.IO v4 echo (no Socket.IO): every message comes back to its sender.</p>";

/// The echo as a node runs it (`--app engine-echo`): no Socket.IO, so no broker connection.
pub fn app() -> App {
    App::engine("engine-echo", PAGE, Arc::new(Echo))
}

/// Sends every message back on the session it came from, text as text and binary as binary.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl EngineHandler for Echo {
    fn on_open(&self, _session: &Arc<Session>) {}

    fn on_message(&self, session: &Arc<Session>, message: Message) {
        let packet = match message {
            Message::Text(text) => Encoded::message(&text),
            Message::Binary(data) => Encoded::Binary(data),
        };
        if session.send(packet).is_err() {
            // Only a client that stopped reading fills its queue; it cannot be served any more.
            session.close(CloseReason::TransportError);
        }
    }

    fn on_close(&self, _session: &Arc<Session>, _reason: CloseReason) {}
}
