//! Engine.IO echo: every message goes back to its sender as it came (the protocol suite's contract).

use std::sync::Arc;

use crate::engine::{Encoded, Message};
use crate::{CloseReason, EngineHandler, Session};

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
