//! The cluster message set (version [`VERSION`](super::codec::VERSION)): everything one node tells
//! another, each in an [`Envelope`] naming the sender and the namespace.
//!
//! | message | route | answered by |
//! |---|---|---|
//! | `InitialHeartbeat` | namespace | `Heartbeat` to the sender's node route |
//! | `Heartbeat` | namespace (periodic) or node (answer) | — |
//! | `Address` | with every heartbeat, on its route | — |
//! | `Closing` | namespace | — |
//! | `Broadcast` | one copy per routed part (see [`Target`]) | — |
//! | `BroadcastWithAck` | namespace | `BroadcastClientCount`, then a `BroadcastAck` per answer |
//! | `SocketsJoin`, `SocketsLeave`, `DisconnectSockets` | per part, like `Broadcast` | — |
//! | `FetchSockets` | namespace | `FetchSocketsResponse` |
//! | `ServerSideEmit` | namespace | `ServerSideEmitResponse` when it has a request id |
//!
//! Answers go to the requester's node route and carry the request's id. Requests whose answers
//! are awaited go to the whole namespace because the requester must know who will answer (its
//! live peers); fire-and-forget operations are routed by interest.

use std::time::Duration;

use switchboard_protocol::socketio::{self, Value};

use super::NodeId;
use crate::types::{BroadcastOptions, Room, SocketId, SocketInfo};

/// A message with its sender and namespace: the unit the codec encodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The node that sent it (receivers ignore their own messages, which brokers echo back).
    pub sender: NodeId,
    /// The namespace it concerns; a node hands it to its adapter for that namespace.
    pub nsp: String,
    /// What it says.
    pub message: Message,
}

/// Which sockets an interest-routed message selects, and which copy this is.
///
/// A broadcast to several rooms is published once per route of
/// [`route::plan`](super::route::plan) (one per room, or per node for socket-id rooms); `part` is
/// the index of the route this copy went to. A receiver serves the rooms of that part only, minus
/// sockets in rooms of earlier parts it also receives, so a socket in several targeted rooms gets
/// the packet once. Without rooms, or with more routes than
/// [`MAX_PARTS`](super::route::MAX_PARTS), one copy goes to the namespace route with `part`
/// [`Target::WHOLE`] and each node serves all of `opts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// The broadcast options as the emitter got them (all rooms, except, flags).
    pub opts: BroadcastOptions,
    /// Index of this copy's part in the plan of `opts.rooms`, or [`Target::WHOLE`].
    pub part: u32,
}

impl Target {
    /// The `part` of a namespace-wide copy: serve every selected socket.
    pub const WHOLE: u32 = u32::MAX;
}

/// One cluster message; see the module docs for routes and answers.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Message {
    /// "I am alive": refreshes the sender in the receiver's membership.
    Heartbeat,
    /// A node starting (or creating the namespace): receivers record it and answer at once, so it
    /// learns its peers without waiting a heartbeat interval.
    InitialHeartbeat,
    /// Where the sender takes forwarded requests (`host:port`; see
    /// [`directory`](super::directory)), sent after each of its heartbeats. A message of its own
    /// rather than a heartbeat field, so nodes that predate it drop it as an unknown kind and
    /// still read the heartbeats.
    Address {
        /// The sender's `--advertise-address`.
        address: String,
    },
    /// The sender is shutting down: receivers drop it from membership now.
    Closing,
    /// Deliver a packet to the targeted local sockets.
    Broadcast {
        /// Selection.
        target: Target,
        /// The Socket.IO encoding as the emitter built it, shipped as is; receivers frame it once.
        packet: socketio::Encoded,
    },
    /// Deliver a packet with an ack id, report how many sockets got it, forward their answers.
    BroadcastWithAck {
        /// Request id (answers carry it).
        request_id: u64,
        /// Selection (always on the namespace route, so every peer reports a count).
        opts: BroadcastOptions,
        /// The ack id inside the packet, shared by all recipients.
        ack_id: u64,
        /// How long answers are forwarded, from receipt (clocks of nodes are not compared).
        timeout: Duration,
        /// The Socket.IO encoding.
        packet: socketio::Encoded,
    },
    /// How many local sockets a `BroadcastWithAck` reached on the sender.
    BroadcastClientCount {
        /// The request answered.
        request_id: u64,
        /// Local recipients on the sender.
        count: u64,
    },
    /// One socket's answer to a `BroadcastWithAck`.
    BroadcastAck {
        /// The request answered.
        request_id: u64,
        /// The socket that answered.
        socket: SocketId,
        /// Its ack arguments (binary preserved).
        args: Vec<Value>,
    },
    /// Make the targeted local sockets join rooms (socketsJoin).
    SocketsJoin {
        /// Selection.
        target: Target,
        /// Rooms to join.
        rooms: Vec<Room>,
    },
    /// Make the targeted local sockets leave rooms (socketsLeave).
    SocketsLeave {
        /// Selection.
        target: Target,
        /// Rooms to leave.
        rooms: Vec<Room>,
    },
    /// Disconnect the targeted local sockets (disconnectSockets).
    DisconnectSockets {
        /// Selection.
        target: Target,
        /// Whether to close the underlying connection too.
        close: bool,
    },
    /// Report the selected local sockets (fetchSockets).
    FetchSockets {
        /// Request id.
        request_id: u64,
        /// Selection.
        opts: BroadcastOptions,
    },
    /// The answer to `FetchSockets`.
    FetchSocketsResponse {
        /// The request answered.
        request_id: u64,
        /// The sender's selected sockets, rooms filled in.
        sockets: Vec<SocketInfo>,
    },
    /// Run the namespace's server-side handlers for an event (serverSideEmit).
    ServerSideEmit {
        /// Present when the emitter waits for answers.
        request_id: Option<u64>,
        /// Event name.
        event: String,
        /// Arguments (binary preserved).
        args: Vec<Value>,
    },
    /// One node's answer to a `ServerSideEmit` with a request id.
    ServerSideEmitResponse {
        /// The request answered.
        request_id: u64,
        /// The handler's answer.
        args: Vec<Value>,
    },
}

impl Message {
    /// The request id, for the messages that have one.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            Self::BroadcastWithAck { request_id, .. }
            | Self::BroadcastClientCount { request_id, .. }
            | Self::BroadcastAck { request_id, .. }
            | Self::FetchSockets { request_id, .. }
            | Self::FetchSocketsResponse { request_id, .. }
            | Self::ServerSideEmitResponse { request_id, .. } => Some(*request_id),
            Self::ServerSideEmit { request_id, .. } => *request_id,
            Self::Heartbeat
            | Self::InitialHeartbeat
            | Self::Address { .. }
            | Self::Closing
            | Self::Broadcast { .. }
            | Self::SocketsJoin { .. }
            | Self::SocketsLeave { .. }
            | Self::DisconnectSockets { .. } => None,
        }
    }

    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Heartbeat => "heartbeat",
            Self::InitialHeartbeat => "initial-heartbeat",
            Self::Address { .. } => "address",
            Self::Closing => "closing",
            Self::Broadcast { .. } => "broadcast",
            Self::BroadcastWithAck { .. } => "broadcast-with-ack",
            Self::BroadcastClientCount { .. } => "broadcast-client-count",
            Self::BroadcastAck { .. } => "broadcast-ack",
            Self::SocketsJoin { .. } => "sockets-join",
            Self::SocketsLeave { .. } => "sockets-leave",
            Self::DisconnectSockets { .. } => "disconnect-sockets",
            Self::FetchSockets { .. } => "fetch-sockets",
            Self::FetchSocketsResponse { .. } => "fetch-sockets-response",
            Self::ServerSideEmit { .. } => "server-side-emit",
            Self::ServerSideEmitResponse { .. } => "server-side-emit-response",
        }
    }

    /// The selection of an interest-routed message, so the sender can set each copy's part.
    pub(crate) fn target_mut(&mut self) -> Option<&mut Target> {
        match self {
            Self::Broadcast { target, .. }
            | Self::SocketsJoin { target, .. }
            | Self::SocketsLeave { target, .. }
            | Self::DisconnectSockets { target, .. } => Some(target),
            _ => None,
        }
    }
}
