//! Broadcast operators: `to`/`in`, `except`, `local`, `volatile`, `compress`, `timeout`, then an
//! emit or a cluster-wide socket operation, all through the namespace's adapter.

use std::sync::Arc;
use std::time::Duration;

use switchboard_adapter::{
    AckResponse, AdapterError, BoxFuture, BroadcastOptions, BroadcastPacket, Room, SocketId, SocketInfo,
};
use switchboard_protocol::socketio::{Encoded, Value, encode_event};

use super::error::{BroadcastAckError, BroadcastError, ClusterRequestError, RoomsError};
use super::limits::RoomNameTooLong;
use super::namespace::Namespace;
use super::reserved::check_event_name;

/// Default wait for broadcast acks when no `timeout` was set.
const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// A selection of sockets plus modifiers, built fluently and consumed by an operation.
#[derive(Debug, Clone)]
pub struct BroadcastOperator {
    ns: Arc<Namespace>,
    opts: BroadcastOptions,
    timeout: Option<Duration>,
}

impl BroadcastOperator {
    pub(crate) fn new(ns: Arc<Namespace>) -> Self {
        Self { ns, opts: BroadcastOptions::default(), timeout: None }
    }

    /// Adds a room to target (sockets in any targeted room are selected).
    pub fn to(mut self, room: impl Into<Room>) -> Self {
        let room = room.into();
        if !self.opts.rooms.contains(&room) {
            self.opts.rooms.push(room);
        }
        self
    }

    /// Same as [`BroadcastOperator::to`] (socket.io's `in`).
    pub fn within(self, room: impl Into<Room>) -> Self {
        self.to(room)
    }

    /// Excludes sockets in a room.
    pub fn except(mut self, room: impl Into<Room>) -> Self {
        let room = room.into();
        if !self.opts.except.contains(&room) {
            self.opts.except.push(room);
        }
        self
    }

    /// Only this node's sockets.
    pub fn local(mut self) -> Self {
        self.opts.flags.local = true;
        self
    }

    /// Drop for sockets that cannot take the packet right now.
    pub fn volatile(mut self) -> Self {
        self.opts.flags.volatile = true;
        self
    }

    /// socket.io's `compress` flag (kept for API parity; websocket compression is not negotiated).
    pub fn compress(mut self, on: bool) -> Self {
        self.opts.flags.compress = on;
        self
    }

    /// How long [`BroadcastOperator::emit_with_ack`] waits (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The options this operator targets.
    pub fn options(&self) -> &BroadcastOptions {
        &self.opts
    }

    /// `Err` if a targeted or excepted room is longer than the name limit: no socket can be in
    /// it, and its name must not reach the broker.
    fn check_rooms(&self) -> Result<(), RoomNameTooLong> {
        self.ns.limits().check_rooms(self.opts.rooms.iter().chain(&self.opts.except))
    }

    /// Emits to the selection: encoded once, shared by every recipient. Returns local recipients.
    pub async fn emit(&self, event: &str, args: Vec<Value>) -> Result<usize, BroadcastError> {
        check_event_name(event)?;
        self.check_rooms()?;
        let recipients = self.send(event, args, &mut BroadcastPacket::new).await?;
        self.count(recipients);
        Ok(recipients)
    }

    /// Encodes the event (`build` frames it) and hands it to the adapter, which delivers it
    /// locally within this call. With connection state recovery on, a packet that is not volatile
    /// is logged first, its offset appended to its arguments, and the namespace's order lock is
    /// held until the local delivery is done (acks are never logged: they go through
    /// `emit_with_ack`).
    fn send(
        &self,
        event: &str,
        mut args: Vec<Value>,
        build: &mut dyn FnMut(Encoded) -> BroadcastPacket,
    ) -> BoxFuture<'_, Result<usize, AdapterError>> {
        match self.ns.recovery().filter(|_| !self.opts.flags.volatile) {
            Some(recovery) => {
                let _order = recovery.order();
                match recovery.log(&self.opts, self.ns.name(), event, &mut args, build) {
                    Some(packet) => self.ns.adapter().broadcast(packet, self.opts.clone()),
                    // A shared log delivers it, on every node, as each reads it: resolved once
                    // this node has (the local count is not known here).
                    None => {
                        let store = recovery.store.clone();
                        Box::pin(async move {
                            store.delivered().await;
                            Ok(0)
                        })
                    }
                }
            }
            None => {
                let packet = build(encode_event(self.ns.name(), event, &args, None));
                self.ns.adapter().broadcast(packet, self.opts.clone())
            }
        }
    }

    fn count(&self, recipients: usize) {
        self.ns.metrics.node.broadcasts.inc();
        self.ns.metrics.node.deliveries.inc_by(recipients as u64);
    }

    /// Emits like [`BroadcastOperator::emit`], then waits until every local recipient's transport
    /// has taken the packet (written to its socket or to a polling response), at most the
    /// operator's timeout (default 10 s): a publisher that awaits it cannot outrun its receivers,
    /// as with Node's synchronous writes. A timeout is not an error: the packet stays queued.
    pub async fn emit_written(&self, event: &str, args: Vec<Value>) -> Result<usize, BroadcastError> {
        check_event_name(event)?;
        self.check_rooms()?;
        let mut written = None;
        let mut build = |encoded| {
            let (packet, w) = BroadcastPacket::tracked(encoded);
            written = Some(w);
            packet
        };
        let recipients = self.send(event, args, &mut build).await?;
        self.count(recipients);
        if let Some(written) = written {
            let _ = tokio::time::timeout(self.timeout.unwrap_or(DEFAULT_ACK_TIMEOUT), written).await;
        }
        Ok(recipients)
    }

    /// Emits with one ack id for all recipients and collects their answers until the timeout.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: Vec<Value>,
    ) -> Result<Vec<AckResponse>, BroadcastAckError> {
        check_event_name(event)?;
        self.check_rooms()?;
        let id = self.ns.next_ack_id();
        let packet = BroadcastPacket::new(encode_event(self.ns.name(), event, &args, Some(id)));
        let timeout = self.timeout.unwrap_or(DEFAULT_ACK_TIMEOUT);
        let stream = self.ns.adapter().broadcast_with_ack(packet, id, self.opts.clone(), timeout).await?;
        // Deliveries are counted where they happen: other nodes count theirs.
        self.count(stream.local);
        let (responses, missing) = stream.collect().await;
        if missing > 0 {
            self.ns.metrics.node.ack_timeouts.inc_by(missing as u64);
            return Err(BroadcastAckError::AckTimeout { responses, missing });
        }
        Ok(responses)
    }

    /// The selected sockets on every node.
    pub async fn fetch_sockets(&self) -> Result<Vec<RemoteSocket>, ClusterRequestError> {
        self.check_rooms()?;
        let infos = self.ns.adapter().fetch_sockets(self.opts.clone()).await?;
        Ok(infos.into_iter().map(|info| RemoteSocket { ns: self.ns.clone(), info }).collect())
    }

    /// Makes the selected sockets join rooms, on every node (not counted against
    /// [`SocketIoConfig::with_max_rooms_per_socket`](super::SocketIoConfig::with_max_rooms_per_socket):
    /// server code chooses these rooms).
    pub async fn sockets_join(&self, rooms: Vec<Room>) -> Result<(), RoomsError> {
        self.check_rooms()?;
        self.ns.limits().check_rooms(&rooms)?;
        Ok(self.ns.adapter().add_sockets(self.opts.clone(), rooms).await?)
    }

    /// Makes the selected sockets leave rooms, on every node.
    pub async fn sockets_leave(&self, rooms: Vec<Room>) -> Result<(), RoomsError> {
        self.check_rooms()?;
        self.ns.limits().check_rooms(&rooms)?;
        Ok(self.ns.adapter().del_sockets(self.opts.clone(), rooms).await?)
    }

    /// Disconnects the selected sockets on every node.
    pub async fn disconnect_sockets(&self, close: bool) -> Result<(), ClusterRequestError> {
        self.check_rooms()?;
        Ok(self.ns.adapter().disconnect_sockets(self.opts.clone(), close).await?)
    }
}

/// A socket on any node, as fetchSockets returns it; operations go through the adapter.
#[derive(Debug, Clone)]
pub struct RemoteSocket {
    ns: Arc<Namespace>,
    info: SocketInfo,
}

impl RemoteSocket {
    /// Socket id.
    pub fn id(&self) -> &SocketId {
        &self.info.id
    }

    /// Everything known about the socket.
    pub fn info(&self) -> &SocketInfo {
        &self.info
    }

    fn only_me(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.ns.clone()).to(self.info.id.room())
    }

    /// Emits to this socket wherever it is.
    pub async fn emit(&self, event: &str, args: Vec<Value>) -> Result<(), BroadcastError> {
        self.only_me().emit(event, args).await.map(|_| ())
    }

    /// Joins rooms wherever it is.
    pub async fn join(&self, rooms: Vec<Room>) -> Result<(), RoomsError> {
        self.only_me().sockets_join(rooms).await
    }

    /// Leaves rooms wherever it is.
    pub async fn leave(&self, rooms: Vec<Room>) -> Result<(), RoomsError> {
        self.only_me().sockets_leave(rooms).await
    }

    /// Disconnects it wherever it is.
    pub async fn disconnect(&self, close: bool) -> Result<(), ClusterRequestError> {
        self.only_me().disconnect_sockets(close).await
    }
}
