//! Counters of a node's cluster traffic: what the metrics issue exports and what routing tests assert.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a node's cluster counters (all namespaces), monotonic since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Messages handed to the transport.
    pub published: u64,
    /// Messages the transport refused (queue full, broker down) or that failed to encode: dropped.
    pub publish_failed: u64,
    /// Messages received from the transport, anything included.
    pub received: u64,
    /// Received messages this node sent itself (brokers echo to subscribers): ignored.
    pub echoes: u64,
    /// Received bytes that are not a valid message (garbage, truncation, over the size limit), or
    /// a message asking more than this node's limits allow (a sender that is not a node id, a
    /// forwarding address that is not `host:port`, a client count over `max_remote_acks`, a
    /// socketsJoin/socketsLeave over the room limits): dropped.
    pub malformed: u64,
    /// Received messages not authenticated with the cluster secret (or, on a node without one,
    /// sealed by a node with one): dropped. See
    /// [`ClusterConfig::with_secret`](super::ClusterConfig::with_secret).
    pub forged: u64,
    /// Well-framed messages of another version or an unknown kind (a newer node): dropped.
    pub unsupported: u64,
    /// Valid messages for a namespace this node does not serve, a part it cannot place, or a
    /// heartbeat from a node beyond `max_peers`: dropped.
    pub unroutable: u64,
    /// Broadcasts from other nodes received (plain and with acks): routing tests assert on this.
    pub broadcasts_received: u64,
    /// Answers for requests no longer pending (late after a timeout, or from a peer not asked).
    pub late_replies: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) publish_failed: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) echoes: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) forged: AtomicU64,
    pub(crate) unsupported: AtomicU64,
    pub(crate) unroutable: AtomicU64,
    pub(crate) broadcasts_received: AtomicU64,
    pub(crate) late_replies: AtomicU64,
}

/// Adds one; returns the new value (for "log every power of two" throttling).
pub(crate) fn bump(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}

impl Counters {
    pub(crate) fn snapshot(&self) -> ClusterStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ClusterStats {
            published: get(&self.published),
            publish_failed: get(&self.publish_failed),
            received: get(&self.received),
            echoes: get(&self.echoes),
            malformed: get(&self.malformed),
            forged: get(&self.forged),
            unsupported: get(&self.unsupported),
            unroutable: get(&self.unroutable),
            broadcasts_received: get(&self.broadcasts_received),
            late_replies: get(&self.late_replies),
        }
    }
}
