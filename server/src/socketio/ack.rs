//! Acknowledgements both ways: answering a client's event, and waiting for a client's answer.

use std::sync::Arc;
use std::time::Duration;

use switchboard_adapter::{AckResponse, BroadcastPacket};
use switchboard_protocol::socketio::{Value, encode_ack};
use tokio::sync::oneshot;

use super::error::AckError;
use super::socket::Socket;

/// Answers the client's event that asked for an ack; dropping it without sending sends nothing.
#[derive(Debug)]
pub struct AckResponder {
    socket: Arc<Socket>,
    id: u64,
}

impl AckResponder {
    pub(crate) fn new(socket: Arc<Socket>, id: u64) -> Self {
        Self { socket, id }
    }

    /// Sends the ack with these arguments (binary allowed anywhere).
    pub fn send(self, args: Vec<Value>) {
        let packet = BroadcastPacket::new(encode_ack(self.socket.namespace().name(), self.id, &args));
        self.socket.deliver_packet(&packet);
    }
}

/// Where an awaited ack goes: one emit's oneshot, or a broadcast's shared stream.
#[derive(Debug)]
pub(crate) enum AckSink {
    One(oneshot::Sender<Vec<Value>>),
    Broadcast(tokio::sync::mpsc::UnboundedSender<AckResponse>),
}

/// Waits for an ack on `rx` for at most `timeout`.
pub(crate) async fn wait(
    rx: oneshot::Receiver<Vec<Value>>,
    timeout: Duration,
) -> Result<Vec<Value>, AckError> {
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(args)) => Ok(args),
        Ok(Err(_)) => Err(AckError::Disconnected),
        Err(_) => Err(AckError::Timeout),
    }
}
