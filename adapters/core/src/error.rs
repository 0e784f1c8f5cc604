//! Adapter errors: what a broadcast or a cluster request can fail with.

use switchboard_protocol::socketio::Value;

use crate::types::SocketInfo;

/// Why an adapter operation failed; local delivery never fails, only the cluster part can.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// The broker is unreachable (the transport reports it disconnected, or refused the message).
    /// Which local work was still done depends on the operation: see the cluster module's failure
    /// behaviour.
    #[error("broker unavailable: {0}")]
    BrokerUnavailable(String),
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
    #[error("cluster message could not be encoded: {0}")]
    Codec(String),
    /// Too many cluster requests are in flight on this namespace; this one was not sent.
    #[error("too many pending cluster requests (limit {limit})")]
    TooManyRequests {
        /// The configured limit.
        limit: usize,
    },
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
