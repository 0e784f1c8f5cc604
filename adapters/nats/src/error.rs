//! Errors of the NATS transport, one enum per boundary: setting up, and waiting for the server.

use std::time::Duration;

/// Why [`NatsTransport::connect`](crate::NatsTransport::connect) failed; the node should not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No server URL was given.
    #[error("no NATS server URL given")]
    NoUrl,
    /// A server URL does not parse (or has a scheme other than nats, tls, ws, wss).
    #[error("invalid NATS server URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The subject prefix is not one or more dot-separated tokens without wildcards or spaces.
    #[error("invalid NATS subject prefix {0:?}: use dot-separated tokens without spaces, `*` or `>`")]
    InvalidPrefix(String),
    /// A capacity or duration of the [`NatsConfig`](crate::NatsConfig) makes no sense.
    #[error("invalid NATS transport configuration: {0}")]
    InvalidConfig(&'static str),
    /// The credentials given are unusable: both a `.creds` file and an nkey seed, a malformed
    /// `.creds` file or seed, or URLs that disagree on their user, password or token.
    #[error("invalid NATS credentials: {0}")]
    InvalidCredentials(String),
    /// The server answered but refused this node: wrong user, password, token, nkey or creds, or
    /// a TLS certificate not trusted (either way). Retrying would not help, so even a transport
    /// that retries its first connection fails with this.
    #[error("NATS at {urls} refused the connection: {source}")]
    Refused {
        /// The servers tried.
        urls: String,
        /// The client's reason.
        #[source]
        source: async_nats::ConnectError,
    },
    /// No server could be reached.
    #[error("cannot connect to NATS at {urls}: {source}")]
    Connect {
        /// The URLs tried.
        urls: String,
        /// The client's reason.
        #[source]
        source: async_nats::ConnectError,
    },
}

/// Why [`NatsTransport::flush`](crate::NatsTransport::flush) or
/// [`close`](crate::NatsTransport::close) could not confirm that the server has seen our work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlushError {
    /// The connection is down (the client is reconnecting).
    #[error("NATS connection is down")]
    Disconnected,
    /// The transport was closed.
    #[error("NATS transport closed")]
    Closed,
    /// The server did not answer within the flush timeout.
    #[error("NATS server did not answer within {0:?}")]
    Timeout(Duration),
    /// The client failed otherwise (the message says how).
    #[error("NATS flush failed: {0}")]
    Client(String),
}
