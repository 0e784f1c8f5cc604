//! The crate's errors, one enum per boundary: an adapter operation ([`AdapterError`], what the
//! server sees), and inside the cluster adapter the wire codec, the transport, the request map and
//! setup. The cluster module re-exports the last four for transport crates.

use switchboard_protocol::SocketIoError;
use switchboard_protocol::socketio::Value;

use crate::types::SocketInfo;

/// Why an adapter operation failed; local delivery never fails, only the cluster part can.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// The broker cannot carry the request (the transport reports it disconnected, lost it during
    /// the request, or refused the message). Which local work was still done depends on the
    /// operation: see the cluster module's failure behaviour.
    #[error("broker unavailable: {0}")]
    BrokerUnavailable(#[source] Unreachable),
    /// Some nodes did not answer a request within its timeout. What the others answered is kept in
    /// `partial` (socket.io's `serverSideEmit` likewise hands its timeout error the responses
    /// that did arrive).
    #[error("cluster request timed out ({missing} node(s) did not answer)")]
    Timeout {
        /// How many nodes were still expected.
        missing: usize,
        /// The answers that arrived before the timeout.
        partial: PartialReplies,
    },
    /// A cluster message could not be encoded (a payload part over 4 GiB, or a serializer
    /// failure), so it was not sent; counted in `publish_failed`. Received messages that do not
    /// decode never surface as errors: they are counted and dropped.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Too many cluster requests are in flight on this namespace; this one was not sent.
    #[error("too many pending cluster requests (limit {limit})")]
    TooManyRequests {
        /// The configured limit.
        limit: usize,
    },
}

/// Why the broker could not carry a cluster request ([`AdapterError::BrokerUnavailable`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unreachable {
    /// The transport reports its broker connection down, so the request was not sent.
    #[error("cluster transport disconnected")]
    Disconnected,
    /// The broker connection was lost while the request waited for answers.
    #[error("cluster transport lost its broker connection during the request")]
    Lost,
    /// The transport refused the message (its queue is full, or the broker was lost since the check).
    #[error(transparent)]
    Refused(#[from] PublishError),
}

/// What a timed-out request got before its deadline ([`AdapterError::Timeout`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PartialReplies {
    /// Nothing to report.
    #[default]
    None,
    /// fetchSockets: this node's sockets, then those of every node that answered.
    Sockets(Vec<SocketInfo>),
    /// serverSideEmit with a timeout: one answer per node that answered, in arrival order.
    Answers(Vec<Vec<Value>>),
}

/// Why some bytes are not a cluster message; the receiver counts the message and drops it.
///
/// Small and `Copy` so a flood of garbage costs no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Fewer bytes than the fixed header, or than a length inside the frame announces.
    #[error("truncated cluster message")]
    Truncated,
    /// The first bytes are not the cluster magic: another program's message on our channel.
    #[error("not a cluster message (bad magic)")]
    BadMagic,
    /// A message from a node speaking another version of the message set.
    #[error("unsupported cluster message version {0}")]
    UnsupportedVersion(u8),
    /// A message kind this version does not know.
    #[error("unknown cluster message kind {0}")]
    UnknownKind(u8),
    /// The msgpack header does not have the shape of its kind (or is not valid msgpack).
    #[error("invalid cluster message header")]
    InvalidHeader,
    /// Bytes left after the last payload part, or a part length past the end.
    #[error("invalid cluster message payload framing")]
    InvalidFraming,
    /// The message kind needs a payload (an encoded packet) and has none, or not the right parts.
    #[error("cluster message payload missing or incomplete")]
    MissingPayload,
    /// The Socket.IO packet carrying values (emit or ack arguments) does not decode.
    #[error("invalid packet in cluster message: {0}")]
    InvalidPacket(#[from] SocketIoError),
    /// Text that must be UTF-8 (a packet, JSON) is not.
    #[error("invalid UTF-8 in cluster message")]
    InvalidUtf8,
    /// Socket data or handshake that must be JSON is not.
    #[error("invalid JSON in cluster message")]
    InvalidJson,
    /// The message could not be encoded (a part over 4 GiB, too many parts, or a serializer failure).
    #[error("cluster message could not be encoded")]
    Encode,
    /// The message is not authenticated as the cluster's: with a cluster secret, it is not sealed
    /// with it (unsealed, another secret, altered, garbage); without one, it is sealed (a node
    /// with a secret sent it). See [`ClusterConfig::with_secret`](crate::cluster::ClusterConfig::with_secret).
    #[error("cluster message not authenticated with this cluster's secret")]
    Forged,
    /// The message is larger than [`ClusterConfig::with_max_message_size`](crate::cluster::ClusterConfig::with_max_message_size)
    /// allows: not sent, or dropped unread on receipt.
    #[error("cluster message of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl CodecError {
    /// Whether the message is well framed but from another version or with an unknown kind
    /// (a newer node), rather than garbage.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Self::UnsupportedVersion(_) | Self::UnknownKind(_))
    }

    /// Whether the message failed authentication ([`CodecError::Forged`]).
    pub fn is_forged(&self) -> bool {
        matches!(self, Self::Forged)
    }
}

/// Why a transport did not take a message; the adapter counts it and local delivery is unaffected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The bounded publish queue is full (the broker is slow or gone); the message was dropped.
    #[error("publish queue full")]
    QueueFull,
    /// The broker connection is down; the message was dropped.
    #[error("broker disconnected: {0}")]
    Disconnected(String),
    /// The transport was shut down.
    #[error("transport closed")]
    Closed,
}

/// Why a cluster request could not be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The pending-request map is at capacity; the request was not sent.
    #[error("too many pending cluster requests (limit {capacity})")]
    Full {
        /// The configured capacity.
        capacity: usize,
    },
}

/// Why a cluster adapter could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The node id is empty, longer than [`NodeId::MAX_LEN`](crate::cluster::NodeId::MAX_LEN) or
    /// has characters outside `A-Z a-z 0-9 - _`.
    #[error("invalid node id {0:?}: use 1 to 128 of A-Z a-z 0-9 - _")]
    InvalidNodeId(String),
    /// A duration or a limit makes no sense (the message says which).
    #[error("invalid cluster configuration: {0}")]
    InvalidConfig(&'static str),
    /// The [`Inbound`](crate::cluster::Inbound) handle already feeds another factory.
    #[error("inbound handle already bound to a cluster node")]
    InboundInUse,
    /// The factory spawns its heartbeat task, so it must be created inside a tokio runtime.
    #[error("no tokio runtime: create the cluster adapter factory inside one")]
    NoRuntime,
}

/// Why a disconnected session could not be kept for a restore
/// ([`SessionStore::save`](crate::recovery::SessionStore::save)); the client then reconnects as a
/// new socket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaveError {
    /// The store cannot be reached (a broker store; the in-memory store never fails).
    #[error("session store unavailable: {0}")]
    Unavailable(String),
}

/// Why a client's connection state was not recovered
/// ([`SessionStore::take`](crate::recovery::SessionStore::take),
/// [`SessionStore::missed`](crate::recovery::SessionStore::missed)); it connects as a new socket
/// (`socket.recovered` false) and nothing is replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// No session under this private id: never saved, already restored, or pushed out by the
    /// store's bounds.
    #[error("unknown session")]
    UnknownSession,
    /// The session was disconnected longer than `maxDisconnectionDuration`.
    #[error("session expired")]
    Expired,
    /// The offset is not one this log gave out (malformed, another log's epoch, past its head).
    #[error("unknown offset")]
    UnknownOffset,
    /// Packets after the offset were dropped from the log (its bounds or its window), so a replay
    /// would have a hole.
    #[error("missed packets are no longer in the log")]
    LogTrimmed,
    /// The missed packets together are larger than the client's send queue may take at once.
    #[error("missed packets exceed {max} bytes")]
    TooLarge {
        /// The bound.
        max: usize,
    },
    /// The store cannot be reached (a broker store; the in-memory store never fails).
    #[error("session store unavailable: {0}")]
    Unavailable(String),
}

impl RestoreError {
    /// Every [`reason`](Self::reason), so a metric can show each at zero before it happens.
    pub const REASONS: [&'static str; 6] =
        ["unknown_session", "expired", "unknown_offset", "log_trimmed", "too_large", "unavailable"];

    /// A short name for metrics labels and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownSession => "unknown_session",
            Self::Expired => "expired",
            Self::UnknownOffset => "unknown_offset",
            Self::LogTrimmed => "log_trimmed",
            Self::TooLarge { .. } => "too_large",
            Self::Unavailable(_) => "unavailable",
        }
    }
}
