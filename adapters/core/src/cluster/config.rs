//! Cluster adapter options; defaults match socket.io's cluster adapter where it has one.

use std::time::Duration;

use super::NodeId;
use crate::error::ClusterError;

/// How a node takes part in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub(crate) node_id: NodeId,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_pending_requests: usize,
    pub(crate) address: Option<String>,
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

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    pub(crate) fn validate(&self) -> Result<(), ClusterError> {
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
        Ok(())
    }
}
