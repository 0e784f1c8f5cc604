//! The seam between a Switchboard node and its cluster: the [`Adapter`] trait, the types that cross
//! it, the local room index every adapter builds on, and the in-memory adapter (one node).
//!
//! The server implements [`LocalSocket`] for its sockets; an adapter indexes them by room and
//! delivers broadcasts to them. A remote adapter (Redis, NATS) also ships broadcasts and
//! requests to other nodes, and answers theirs from the same local index; [`cluster`] holds all of
//! that except the broker connection.

mod adapter;
pub mod cluster;
mod confirmation;
mod error;
mod local;
mod memory;
pub mod recovery;
mod rooms;
mod types;
mod written;

pub use adapter::{Adapter, AdapterFactory, BoxFuture, InboundHandler, ServerSideAck};
pub use confirmation::{CONFIRMATION_LIMIT, Confirmation, Confirmations};
pub use error::{AdapterError, PartialReplies, RestoreError, SaveError, Unreachable};
pub use memory::{MemoryAdapter, MemoryAdapterFactory};
pub use rooms::RoomIndex;
pub use types::{
    AckResponse, AckStream, BroadcastFlags, BroadcastOptions, BroadcastPacket, LocalSocket, Room, SocketId,
    SocketInfo,
};
pub use written::Written;
