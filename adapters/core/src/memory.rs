//! The in-memory adapter: one node, no broker; everything resolves from the local index at once.

use std::sync::Arc;
use std::time::Duration;

use switchboard_protocol::socketio::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::adapter::{Adapter, AdapterFactory, BoxFuture};
use crate::error::AdapterError;
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
        let volatile = opts.flags.volatile;
        let n = self.index.for_each(&opts, |s| s.deliver(&packet, volatile));
        Box::pin(std::future::ready(Ok(n)))
    }

    fn broadcast_with_ack(
        &self,
        packet: BroadcastPacket,
        ack_id: u64,
        opts: BroadcastOptions,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<AckStream, AdapterError>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let expected = self.index.for_each(&opts, |s| s.deliver_with_ack(&packet, ack_id, tx.clone()));
        let stream = AckStream { expected, deadline: Instant::now() + timeout, responses: rx };
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
        for s in self.index.select(&opts) {
            self.join(s.id(), &rooms);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn del_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<'_, Result<(), AdapterError>> {
        for s in self.index.select(&opts) {
            for room in &rooms {
                self.leave(s.id(), room);
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn disconnect_sockets(
        &self,
        opts: BroadcastOptions,
        close: bool,
    ) -> BoxFuture<'_, Result<(), AdapterError>> {
        for s in self.index.select(&opts) {
            s.disconnect(close);
        }
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
