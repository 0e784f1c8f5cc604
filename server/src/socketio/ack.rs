//! Acknowledgements both ways: answering a client's event, and waiting for a client's answer
//! (the acks a socket awaits, each until answered or no longer awaited).

use std::collections::HashMap;
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

impl AckSink {
    /// Whether nobody waits any more: the emit or the broadcast's stream ended (its timeout
    /// passed, or its caller gave up), so an answer would go nowhere.
    fn is_abandoned(&self) -> bool {
        match self {
            Self::One(tx) => tx.is_closed(),
            Self::Broadcast(tx) => tx.is_closed(),
        }
    }
}

/// Below this many entries the map is never swept: a sweep would cost more than it frees.
const SWEEP_FLOOR: usize = 64;

/// The acks one socket awaits, by ack id. An entry nobody waits for any more (its broadcast's
/// timeout passed while the client never answered) is dropped by the next sweep: one runs
/// whenever the map has doubled since the last, so it never holds more than twice the acks
/// still awaited (or [`SWEEP_FLOOR`]), at a cost spread over the insertions.
#[derive(Debug)]
pub(crate) struct PendingAcks {
    sinks: HashMap<u64, AckSink>,
    sweep_at: usize,
}

impl Default for PendingAcks {
    fn default() -> Self {
        Self { sinks: HashMap::new(), sweep_at: SWEEP_FLOOR }
    }
}

impl PendingAcks {
    pub(crate) fn insert(&mut self, id: u64, sink: AckSink) {
        if self.sinks.len() >= self.sweep_at {
            self.sweep();
        }
        self.sinks.insert(id, sink);
    }

    pub(crate) fn remove(&mut self, id: u64) -> Option<AckSink> {
        self.sinks.remove(&id)
    }

    pub(crate) fn clear(&mut self) {
        self.sinks = HashMap::new();
        self.sweep_at = SWEEP_FLOOR;
    }

    /// Drops the abandoned entries; the next sweep waits until the map has doubled.
    pub(crate) fn sweep(&mut self) {
        self.sinks.retain(|_, sink| !sink.is_abandoned());
        self.sinks.shrink_to(self.sinks.len() * 2);
        self.sweep_at = (self.sinks.len() * 2).max(SWEEP_FLOOR);
    }

    /// Entries held, abandoned ones not swept yet included.
    pub(crate) fn len(&self) -> usize {
        self.sinks.len()
    }
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

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;

    #[test]
    fn abandoned_broadcast_acks_are_swept_while_awaited_ones_stay() {
        let mut acks = PendingAcks::default();
        // One broadcast still waiting, with ack id 0.
        let (live, _stream) = mpsc::unbounded_channel();
        acks.insert(0, AckSink::Broadcast(live));
        // Ten thousand broadcasts whose timeout passed (their stream is dropped), never answered.
        for id in 1..=10_000 {
            let (sink, stream) = mpsc::unbounded_channel::<AckResponse>();
            drop(stream);
            acks.insert(id, AckSink::Broadcast(sink));
            assert!(acks.len() <= SWEEP_FLOOR, "{} entries held after {id} abandoned acks", acks.len());
        }
        acks.sweep();
        assert_eq!(acks.len(), 1);
        assert!(acks.remove(0).is_some(), "the awaited ack was swept");
    }

    #[test]
    fn many_awaited_acks_are_kept_and_the_map_stays_within_twice_them() {
        let mut acks = PendingAcks::default();
        let mut streams = Vec::new();
        for id in 0..1_000 {
            let (tx, rx) = oneshot::channel();
            streams.push(rx);
            acks.insert(id, AckSink::One(tx));
        }
        assert_eq!(acks.len(), 1_000);
        // Half of the emits give up; the map stays within twice what its last sweep kept (512
        // of the first thousand, all awaited then).
        streams.truncate(500);
        for id in 1_000..3_000 {
            let (tx, rx) = oneshot::channel::<Vec<Value>>();
            drop(rx);
            acks.insert(id, AckSink::One(tx));
            assert!(acks.len() <= 1_024, "{} entries", acks.len());
        }
        acks.sweep();
        assert_eq!(acks.len(), 500);
        acks.clear();
        assert_eq!(acks.len(), 0);
    }
}
