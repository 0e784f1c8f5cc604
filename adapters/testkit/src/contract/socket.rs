//! [`TestSocket`]: the socket every contract case places on the nodes, recording what the adapter
//! does to it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use switchboard_adapter::{AckResponse, BroadcastPacket, LocalSocket, SocketId, SocketInfo};
use switchboard_protocol::socketio::Value;
use tokio::sync::mpsc;

/// One packet a [`TestSocket`] was handed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The Socket.IO packet text.
    pub text: String,
    /// The `volatile` argument of `deliver` (false for `deliver_with_ack`).
    pub volatile: bool,
    /// The ack id of `deliver_with_ack`; `None` for `deliver`.
    pub ack_id: Option<u64>,
}

#[derive(Debug, Default)]
struct Record {
    deliveries: Vec<Delivery>,
    pending_acks: Vec<(u64, mpsc::UnboundedSender<AckResponse>)>,
    disconnects: Vec<bool>,
}

/// A [`LocalSocket`] that records what the adapter does to it and answers acks on demand.
///
/// It cannot reach its adapter: `disconnect` is only recorded, and the caller removes the socket.
#[derive(Debug)]
pub struct TestSocket {
    id: SocketId,
    nsp: String,
    handshake: serde_json::Value,
    data: serde_json::Value,
    record: Mutex<Record>,
}

impl TestSocket {
    /// A socket of namespace `nsp`, with `{"id": id}` as its data and a small fixed handshake.
    pub fn new(id: impl Into<SocketId>, nsp: &str) -> Arc<Self> {
        let id = id.into();
        let data = serde_json::json!({ "id": id.as_str() });
        Self::with_data(id, nsp, data)
    }

    /// A socket of namespace `nsp` with the given application data.
    pub fn with_data(id: impl Into<SocketId>, nsp: &str, data: serde_json::Value) -> Arc<Self> {
        let id = id.into();
        let handshake = serde_json::json!({ "address": "test", "query": { "sid": id.as_str() } });
        Arc::new(Self { id, nsp: nsp.to_owned(), handshake, data, record: Mutex::new(Record::default()) })
    }

    fn record(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every packet handed to the socket, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.record().deliveries.clone()
    }

    /// How many times the packet with this text was handed to the socket.
    pub fn count(&self, text: &str) -> usize {
        self.record().deliveries.iter().filter(|d| d.text == text).count()
    }

    /// The deliveries of the packet with this text.
    pub fn deliveries_of(&self, text: &str) -> Vec<Delivery> {
        self.record().deliveries.iter().filter(|d| d.text == text).cloned().collect()
    }

    /// The ack ids registered by `deliver_with_ack` and not answered yet.
    pub fn pending_acks(&self) -> Vec<u64> {
        self.record().pending_acks.iter().map(|(id, _)| *id).collect()
    }

    /// Answers every pending ack with `args` through the sink the adapter gave; returns how many.
    pub fn answer_acks(&self, args: &[Value]) -> usize {
        let pending = std::mem::take(&mut self.record().pending_acks);
        let n = pending.len();
        for (_, sink) in pending {
            // A closed sink means the adapter stopped listening (deadline passed): nothing to do.
            let _ = sink.send(AckResponse { socket: self.id.clone(), args: args.to_vec() });
        }
        n
    }

    /// The `close` argument of every `disconnect` call, in order.
    pub fn disconnects(&self) -> Vec<bool> {
        self.record().disconnects.clone()
    }
}

impl LocalSocket for TestSocket {
    fn id(&self) -> &SocketId {
        &self.id
    }

    fn deliver(&self, packet: &BroadcastPacket, volatile: bool) {
        let text = String::from_utf8_lossy(&packet.packet().text).into_owned();
        self.record().deliveries.push(Delivery { text, volatile, ack_id: None });
    }

    fn deliver_with_ack(
        &self,
        packet: &BroadcastPacket,
        ack_id: u64,
        sink: mpsc::UnboundedSender<AckResponse>,
    ) {
        let text = String::from_utf8_lossy(&packet.packet().text).into_owned();
        let mut record = self.record();
        record.deliveries.push(Delivery { text, volatile: false, ack_id: Some(ack_id) });
        record.pending_acks.push((ack_id, sink));
    }

    fn info(&self) -> SocketInfo {
        SocketInfo {
            id: self.id.clone(),
            nsp: self.nsp.clone(),
            rooms: Vec::new(),
            handshake: self.handshake.clone(),
            data: self.data.clone(),
        }
    }

    fn disconnect(&self, close: bool) {
        self.record().disconnects.push(close);
    }
}
