//! Cluster adapter options; defaults match socket.io's cluster adapter where it has one. The
//! limits on what a peer's message may ask of this node are safe by default: the broker is not
//! trusted to be well behaved, only (with a secret) to carry what the nodes sealed.

use std::time::Duration;

use super::NodeId;
use super::codec::Key;
use super::directory::is_valid_address;
use crate::error::ClusterError;

/// Default of [`ClusterConfig::with_max_message_size`]: 4 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 << 20;
/// Default of [`ClusterConfig::with_max_remote_acks`]: 1,048,576.
pub const DEFAULT_MAX_REMOTE_ACKS: usize = 1 << 20;
/// Default of [`ClusterConfig::with_max_peers`]: 1024.
pub const DEFAULT_MAX_PEERS: usize = 1024;
/// Default of [`ClusterConfig::with_max_name_bytes`]: 256, as Socket.IO's room names.
pub const DEFAULT_MAX_NAME_BYTES: usize = 256;
/// Default of [`ClusterConfig::with_max_rooms_per_join`]: 1000, as Socket.IO's rooms per socket.
pub const DEFAULT_MAX_ROOMS_PER_JOIN: usize = 1000;
/// Shortest cluster secret accepted: 16 bytes (128 bits, if random).
pub const MIN_SECRET_LEN: usize = 16;

/// How a node takes part in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub(crate) node_id: NodeId,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_pending_requests: usize,
    pub(crate) address: Option<String>,
    pub(crate) key: Option<Key>,
    secret_len: usize,
    pub(crate) max_message_size: usize,
    pub(crate) max_remote_acks: usize,
    pub(crate) max_peers: usize,
    pub(crate) max_name_bytes: usize,
    pub(crate) max_rooms_per_join: usize,
}

impl ClusterConfig {
    /// Options for node `node_id` (the server's `--node-id`, the prefix of its socket ids).
    pub fn new(node_id: impl Into<String>) -> Result<Self, ClusterError> {
        let node_id = node_id.into();
        if !NodeId::is_valid(&node_id) {
            return Err(ClusterError::InvalidNodeId(node_id));
        }
        Ok(Self {
            node_id: NodeId::from(node_id),
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            max_pending_requests: 1024,
            address: None,
            key: None,
            secret_len: 0,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_remote_acks: DEFAULT_MAX_REMOTE_ACKS,
            max_peers: DEFAULT_MAX_PEERS,
            max_name_bytes: DEFAULT_MAX_NAME_BYTES,
            max_rooms_per_join: DEFAULT_MAX_ROOMS_PER_JOIN,
        })
    }

    /// How often the node announces itself; default 5 s. Shorter detects dead peers sooner for
    /// one small message per namespace per interval.
    pub fn with_heartbeat_interval(mut self, d: Duration) -> Self {
        self.heartbeat_interval = d;
        self
    }

    /// How long a silent peer stays in membership; default 10 s. Must be at least twice the
    /// interval, so a live peer is heard from at least twice per timeout.
    ///
    /// Membership is checked every `min(interval, timeout / 4)` (the *check period*, 2.5 s with
    /// the defaults). A peer stops counting (server count, peers asked by new requests) exactly
    /// `timeout` after its last heartbeat, and is dropped (logged; pending requests stop waiting
    /// for it) at the first check after that: between `timeout` and `timeout` + one check period
    /// after its last heartbeat, so between `timeout - interval` and `timeout` + one check period
    /// after it died (10–12.5 s after its last heartbeat with the defaults).
    pub fn with_heartbeat_timeout(mut self, d: Duration) -> Self {
        self.heartbeat_timeout = d;
        self
    }

    /// How long fetchSockets waits for the other nodes; default 5 s (socket.io's `requestsTimeout`).
    pub fn with_request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// Most requests in flight per namespace before new ones fail fast; default 1024.
    pub fn with_max_pending_requests(mut self, n: usize) -> Self {
        self.max_pending_requests = n;
        self
    }

    /// Where peers reach this node to forward requests for its sessions (`host:port`), announced
    /// in every heartbeat; default none (peers then cannot forward to it).
    pub fn with_address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// The cluster secret every node shares; default none (the broker is trusted, and the node
    /// logs so at start-up). With it, every message is sealed with an HMAC-SHA256 tag over the
    /// whole frame, and received messages without a valid tag are dropped and counted as
    /// `forged` ([`ClusterStats::forged`](super::ClusterStats::forged)): a program that can
    /// publish on the broker but lacks the secret cannot speak for a node (crash it with forged
    /// counts, make it forward requests to an address of its choosing, disconnect its sockets).
    /// A node with a secret and one without do not understand each other: set it on every node
    /// at once. At least [`MIN_SECRET_LEN`] bytes (use a random one); costs one HMAC per
    /// published and per received message.
    pub fn with_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        let secret = secret.as_ref();
        self.key = Some(Key::new(secret));
        self.secret_len = secret.len();
        self
    }

    /// Largest cluster message, in bytes, this node sends or reads; default 4 MiB. A received
    /// one over it is dropped unread and counted as `malformed`; one this node would send is not
    /// sent (counted as `publish_failed`). Decoding a message may take up to about 16 times its
    /// size for a moment (JSON arguments and socket data become values), so this also bounds
    /// what one forged message costs. Raise it (on every node) for fetchSockets answers of
    /// thousands of sockets, or server-side emits of megabytes; NATS refuses payloads over its
    /// `max_payload` (1 MB by default) anyway, and Redis closes a subscriber whose pub/sub
    /// buffer passes 32 MB.
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Most answers one broadcast with acks waits for from other nodes (the sum of the client
    /// counts they report); default 1,048,576. A peer reporting more in one count is not
    /// believed (the count is dropped as `malformed`), so a forged count cannot size the answers'
    /// buffer.
    pub fn with_max_remote_acks(mut self, n: usize) -> Self {
        self.max_remote_acks = n;
        self
    }

    /// Most peers a node keeps per namespace (membership) and for forwarding (addresses);
    /// default 1024. Heartbeats from further unknown nodes are ignored until a known one leaves
    /// or expires, so heartbeats with made-up node ids cannot grow them without bound.
    pub fn with_max_peers(mut self, n: usize) -> Self {
        self.max_peers = n;
        self
    }

    /// Longest room name, in bytes, a peer's socketsJoin/socketsLeave may make this node's
    /// sockets join or leave; default 256, Socket.IO's room name limit (set both alike). A
    /// joined room becomes a broker subscription, and a long name would make the broker drop
    /// the link (NATS: maximum control line exceeded).
    pub fn with_max_name_bytes(mut self, n: usize) -> Self {
        self.max_name_bytes = n;
        self
    }

    /// Most rooms one peer's socketsJoin/socketsLeave may name; default 1000, Socket.IO's rooms
    /// per socket (set both alike). Each selected local socket joins every room named, so the
    /// cost of one message is its sockets times its rooms.
    pub fn with_max_rooms_per_join(mut self, n: usize) -> Self {
        self.max_rooms_per_join = n;
        self
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    /// Largest message sent or read ([`with_max_message_size`](Self::with_max_message_size)), for
    /// adapters in other formats that take the node's limits.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Most remote answers an acked broadcast waits for ([`with_max_remote_acks`](Self::with_max_remote_acks)).
    pub fn max_remote_acks(&self) -> usize {
        self.max_remote_acks
    }

    /// Longest room name a peer may send ([`with_max_name_bytes`](Self::with_max_name_bytes)).
    pub fn max_name_bytes(&self) -> usize {
        self.max_name_bytes
    }

    /// Most rooms a peer's message may name ([`with_max_rooms_per_join`](Self::with_max_rooms_per_join)).
    pub fn max_rooms_per_join(&self) -> usize {
        self.max_rooms_per_join
    }

    /// Whether messages are sealed with a cluster secret ([`with_secret`](Self::with_secret)).
    pub fn has_secret(&self) -> bool {
        self.key.is_some()
    }

    /// Checks the options before a factory is built, so a node refuses them at start-up with the
    /// reason instead of failing later.
    pub fn validate(&self) -> Result<(), ClusterError> {
        if self.heartbeat_interval.is_zero() {
            return Err(ClusterError::InvalidConfig("heartbeat interval must be positive"));
        }
        // Heartbeats go out every interval rounded up to whole check periods: at most
        // `timeout / 2` apart when the timeout is two intervals or more.
        if self.heartbeat_timeout < self.heartbeat_interval.saturating_mul(2) {
            return Err(ClusterError::InvalidConfig(
                "heartbeat timeout must be at least twice the heartbeat interval",
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(ClusterError::InvalidConfig("request timeout must be positive"));
        }
        if self.max_pending_requests == 0 {
            return Err(ClusterError::InvalidConfig("max pending requests must be at least 1"));
        }
        if self.key.is_some() && self.secret_len < MIN_SECRET_LEN {
            return Err(ClusterError::InvalidConfig("cluster secret must be at least 16 bytes"));
        }
        if self.address.as_deref().is_some_and(|a| !is_valid_address(a)) {
            return Err(ClusterError::InvalidConfig(
                "forwarding address must be host:port (an IP or DNS name, no scheme or path)",
            ));
        }
        // A heartbeat must fit, and peers must be allowed.
        if self.max_message_size < 1024 {
            return Err(ClusterError::InvalidConfig("max message size must be at least 1024 bytes"));
        }
        let limits = [self.max_remote_acks, self.max_peers, self.max_name_bytes, self.max_rooms_per_join];
        if limits.contains(&0) {
            return Err(ClusterError::InvalidConfig(
                "max remote acks, max peers, max name bytes and max rooms per join must be at least 1",
            ));
        }
        Ok(())
    }
}
