//! Adapter errors: what a broadcast or a cluster request can fail with.

/// Why an adapter operation failed; local delivery never fails, only the cluster part can.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// The broker is unreachable; local sockets were still served.
    #[error("broker unavailable: {0}")]
    BrokerUnavailable(String),
    /// Some nodes did not answer a request within its timeout.
    #[error("cluster request timed out ({missing} node(s) did not answer)")]
    Timeout {
        /// How many nodes were still expected.
        missing: usize,
    },
    /// A message from another node could not be decoded.
    #[error("bad cluster message: {0}")]
    Codec(String),
    /// Too many cluster requests are in flight on this namespace; this one was not sent.
    #[error("too many pending cluster requests (limit {limit})")]
    TooManyRequests {
        /// The configured limit.
        limit: usize,
    },
}
