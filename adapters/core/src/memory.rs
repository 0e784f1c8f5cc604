//! The in-memory adapter: one node, no broker; every operation is its [local half](crate::local),
//! resolved at once.

use std::sync::Arc;
use std::time::Duration;

use switchboard_protocol::socketio::Value;

use crate::adapter::{Adapter, AdapterFactory, BoxFuture};
use crate::error::AdapterError;
use crate::local;
use crate::rooms::RoomIndex;
use crate::types::{AckStream, BroadcastOptions, BroadcastPacket, Room, SocketInfo};

/// The default adapter (socket.io's in-memory adapter): a node that is its own cluster.
#[derive(Debug, Default)]
pub struct MemoryAdapter {
    index: RoomIndex,
}

impl MemoryAdapter {
    /// An adapter with no sockets.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Makes [`MemoryAdapter`]s.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryAdapterFactory;

impl AdapterFactory for MemoryAdapterFactory {
    fn create(&self, _nsp: &str) -> Arc<dyn Adapter> {
        Arc::new(MemoryAdapter::new())
    }
}

impl Adapter for MemoryAdapter {
    fn local(&self) -> &RoomIndex {
        &self.index
    }

    fn broadcast(
        &self,
        packet: BroadcastPacket,
        opts: BroadcastOptions,
    ) -> BoxFuture<'_, Result<usize, AdapterError>> {
        Box::pin(std::future::ready(Ok(self.index.deliver(&packet, &opts))))
    }

    fn broadcast_with_ack(
        &self,
        packet: BroadcastPacket,
        ack_id: u64,
        opts: BroadcastOptions,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<AckStream, AdapterError>> {
        let stream = local::ack_stream(&self.index, &packet, ack_id, &opts, timeout);
        Box::pin(std::future::ready(Ok(stream)))
    }

    fn fetch_sockets(&self, opts: BroadcastOptions) -> BoxFuture<'_, Result<Vec<SocketInfo>, AdapterError>> {
        Box::pin(std::future::ready(Ok(self.index.fetch(&opts))))
    }

    fn add_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<'_, Result<(), AdapterError>> {
        // One node: every join is confirmed at once.
        let _ = local::add_sockets(self, &opts, &rooms);
        Box::pin(std::future::ready(Ok(())))
    }

    fn del_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<'_, Result<(), AdapterError>> {
        local::del_sockets(self, &opts, &rooms);
        Box::pin(std::future::ready(Ok(())))
    }

    fn disconnect_sockets(
        &self,
        opts: BroadcastOptions,
        close: bool,
    ) -> BoxFuture<'_, Result<(), AdapterError>> {
        local::disconnect_sockets(&self.index, &opts, close);
        Box::pin(std::future::ready(Ok(())))
    }

    fn server_side_emit(
        &self,
        _event: String,
        _args: Vec<Value>,
        _timeout: Option<Duration>,
    ) -> BoxFuture<'_, Result<Vec<Vec<Value>>, AdapterError>> {
        // One node: there is no other server to tell, and so no answer to wait for.
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    fn server_count(&self) -> BoxFuture<'_, Result<usize, AdapterError>> {
        Box::pin(std::future::ready(Ok(1)))
    }
}
