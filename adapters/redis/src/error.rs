//! Why a Redis transport could not start. Once running, it never fails: publishes that cannot be
//! sent return the core's [`PublishError`](switchboard_adapter::cluster::PublishError), and
//! connection trouble shows in [`InstanceStatus`](crate::InstanceStatus).

/// Why [`RedisTransport::connect`](crate::RedisTransport::connect) (or `connect_lazy`) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL list is empty.
    #[error("no redis url given")]
    NoUrls,
    /// A URL does not parse or names an unsupported scheme (credentials are masked).
    #[error("invalid redis url {url:?}: {source}")]
    InvalidUrl {
        /// The URL as given, with any password replaced by `***`.
        url: String,
        /// What the redis crate said.
        #[source]
        source: redis::RedisError,
    },
    /// Two URLs name the same instance (`host:port`): its channels would be placed twice.
    #[error("redis instance {0} is listed twice")]
    DuplicateInstance(String),
    /// The channel prefix is empty or contains `#`, which separates the parts of a channel name.
    #[error("invalid redis channel prefix {0:?}: it must be non-empty and must not contain '#'")]
    InvalidPrefix(String),
    /// An option makes no sense (the message says which).
    #[error("invalid redis transport configuration: {0}")]
    InvalidConfig(&'static str),
    /// The transport spawns one task per instance, so it must be created inside a tokio runtime.
    #[error("no tokio runtime: create the redis transport inside one")]
    NoRuntime,
    /// A `rediss://` URL ends in `#insecure`, which turns off certificate verification: anyone on
    /// the path could read and forge cluster messages, so it is refused.
    #[error(
        "redis url {url:?} asks to skip TLS certificate verification (#insecure): refused; trust the server's CA instead"
    )]
    InsecureTls {
        /// The URL, credentials masked.
        url: String,
    },
    /// TLS certificates are configured but a URL is not `rediss://`: it would connect in clear.
    #[error("a TLS CA or client certificate is set, but redis url {url:?} is not rediss://")]
    TlsWithoutRediss {
        /// The URL, credentials masked.
        url: String,
    },
    /// The CA or client certificate PEM does not parse.
    #[error("redis TLS certificates: {0}")]
    InvalidTls(String),
    /// An instance answered but refused this node's configuration: wrong user or password, an
    /// ACL that forbids the connection, or a TLS certificate it does not trust (or we do not).
    /// Retrying would not help, so [`open`](crate::RedisTransport::open) fails at once.
    #[error("redis instance {address} refused the connection: {reason}")]
    Refused {
        /// The instance (`host:port`).
        address: String,
        /// What it said (never the password).
        reason: String,
    },
    /// [`connect`](crate::RedisTransport::connect) could not reach an instance on its first attempt.
    #[error("redis instance {address} unreachable: {reason}")]
    Unreachable {
        /// The instance (`host:port`).
        address: String,
        /// The last connection error.
        reason: String,
    },
}
