//! Why a Socket.IO operation failed: one enum per operation, naming only the ways that operation
//! can fail, each keeping its typed cause (an adapter's [`AdapterError`], a [`ReservedEventName`]).
//!
//! A too-long room name fails an operation before it does anything: no such room can have
//! members, and the name must not reach a broker.
//!
//! Cluster failures never undo local work: a broadcast or a room operation that returns
//! `Adapter(_)` still served this node's sockets.

use switchboard_adapter::{AckResponse, AdapterError};

use super::limits::RoomNameTooLong;
use super::reserved::ReservedEventName;

/// Why [`Socket::emit`](super::Socket::emit) sent nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The event name is reserved by Socket.IO.
    #[error(transparent)]
    Reserved(#[from] ReservedEventName),
}

/// Why [`Socket::emit_with_ack`](super::Socket::emit_with_ack) got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// The event name is reserved by Socket.IO: nothing was sent.
    #[error(transparent)]
    Reserved(#[from] ReservedEventName),
    /// No answer within the timeout.
    #[error("ack timed out")]
    Timeout,
    /// The socket disconnected first.
    #[error("socket disconnected")]
    Disconnected,
}

/// Why [`Socket::try_join`](super::Socket::try_join) joined nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// A room's name is too long ([`SocketIoConfig::with_max_name_bytes`](super::SocketIoConfig::with_max_name_bytes)).
    #[error(transparent)]
    RoomName(#[from] RoomNameTooLong),
    /// The socket would be in more rooms than allowed
    /// ([`SocketIoConfig::with_max_rooms_per_socket`](super::SocketIoConfig::with_max_rooms_per_socket)).
    #[error("a socket may be in at most {max} rooms")]
    TooManyRooms {
        /// The limit.
        max: usize,
    },
}

/// Why a broadcast emit (`io.emit`, `to(room).emit`, a remote socket's `emit`) did not fully happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BroadcastError {
    /// The event name is reserved by Socket.IO: nothing was sent.
    #[error(transparent)]
    Reserved(#[from] ReservedEventName),
    /// A targeted or excepted room's name is too long: nothing was sent.
    #[error(transparent)]
    RoomName(#[from] RoomNameTooLong),
    /// The cluster part failed (local sockets were still served).
    #[error(transparent)]
    Adapter(#[from] AdapterError),
}

/// Why a broadcast with acks did not collect every answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BroadcastAckError {
    /// The event name is reserved by Socket.IO: nothing was sent.
    #[error(transparent)]
    Reserved(#[from] ReservedEventName),
    /// A targeted or excepted room's name is too long: nothing was sent.
    #[error(transparent)]
    RoomName(#[from] RoomNameTooLong),
    /// The cluster part failed (local sockets were still served).
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    /// Some acks did not arrive before the timeout; the ones that did are kept.
    #[error("{missing} ack(s) missing after the timeout")]
    AckTimeout {
        /// The answers that arrived.
        responses: Vec<AckResponse>,
        /// How many did not.
        missing: usize,
    },
}

/// Why a room operation on selected sockets (socketsJoin, socketsLeave, a remote socket's join or
/// leave) did not reach every node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoomsError {
    /// A room's name (selected, excepted, joined or left) is too long: nothing was done.
    #[error(transparent)]
    RoomName(#[from] RoomNameTooLong),
    /// The cluster part failed (local sockets were still served).
    #[error(transparent)]
    Adapter(#[from] AdapterError),
}

/// Why a cluster request (fetchSockets, disconnectSockets) did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterRequestError {
    /// A selected or excepted room's name is too long: nothing was asked.
    #[error(transparent)]
    RoomName(#[from] RoomNameTooLong),
    /// The broker is unavailable, or some nodes did not answer in time (what they did answer is
    /// in the error).
    #[error(transparent)]
    Adapter(#[from] AdapterError),
}

/// Why a server-side emit (`serverSideEmit`) did not reach, or was not answered by, every node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerSideEmitError {
    /// The event name is reserved by Socket.IO: nothing was sent.
    #[error(transparent)]
    Reserved(#[from] ReservedEventName),
    /// The broker is unavailable, or some nodes did not answer in time.
    #[error(transparent)]
    Adapter(#[from] AdapterError),
}
