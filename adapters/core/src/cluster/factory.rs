//! [`ClusterAdapterFactory`]: joins the cluster as one node and makes a [`ClusterAdapter`] per
//! namespace around it, all sharing the node's transport, heartbeat task and counters.

use std::sync::Arc;

use super::NodeId;
use super::adapter::ClusterAdapter;
use super::config::ClusterConfig;
use super::message::Message;
use super::node::{Node, spawn_heartbeat};
use super::stats::ClusterStats;
use super::transport::{Inbound, Transport};
use crate::adapter::{Adapter, AdapterFactory};
use crate::error::ClusterError;

/// Makes a [`ClusterAdapter`] per namespace, all sharing this node's transport, heartbeat task and
/// counters. Cheap to clone; the server keeps a clone to read [`stats`](Self::stats) and to
/// [`close`](Self::close) on shutdown.
#[derive(Clone)]
pub struct ClusterAdapterFactory {
    node: Arc<Node>,
}

impl std::fmt::Debug for ClusterAdapterFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAdapterFactory").field("node", self.node.id()).finish_non_exhaustive()
    }
}

impl ClusterAdapterFactory {
    /// Joins the cluster as `config`'s node over `transport`, which hands what it receives to `inbound`.
    ///
    /// Subscribes the node route and spawns the heartbeat task, so it must run inside a tokio
    /// runtime; the task stops when the factory and its adapters are dropped, or on [`close`](Self::close).
    pub fn new(
        config: ClusterConfig,
        transport: Arc<dyn Transport>,
        inbound: &Inbound,
    ) -> Result<Self, ClusterError> {
        config.validate()?;
        let handle = tokio::runtime::Handle::try_current().map_err(|_| ClusterError::NoRuntime)?;
        let node = Arc::new(Node::new(config, transport));
        if !inbound.bind(Arc::downgrade(&node)) {
            return Err(ClusterError::InboundInUse);
        }
        node.transport.subscribe(&node.route);
        spawn_heartbeat(&handle, &node);
        Ok(Self { node })
    }

    /// The adapter of `nsp`, typed (for registering the server-side emit handler, or tests).
    ///
    /// Announces the node to the namespace's peers at once (an initial heartbeat they answer).
    /// Creating a namespace twice replaces the first adapter in the inbound dispatch.
    pub fn create_cluster_adapter(&self, nsp: &str) -> Arc<ClusterAdapter> {
        let adapter = Arc::new(ClusterAdapter::new(self.node.clone(), nsp));
        self.node.register(nsp, Arc::downgrade(&adapter));
        self.node.transport.subscribe(&adapter.route);
        adapter.announce();
        adapter
    }

    /// The live adapter of `nsp`, if one was created.
    pub fn adapter(&self, nsp: &str) -> Option<Arc<ClusterAdapter>> {
        self.node.adapter(nsp)
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        self.node.id()
    }

    /// Where peer `node` takes forwarded requests (its [`ClusterConfig::with_address`]), if it
    /// announced one (with its heartbeats) within the heartbeat timeout: the owner of a session whose id
    /// starts with `node`.
    pub fn peer_address(&self, node: &str) -> Option<Arc<str>> {
        self.node.peer_address(node)
    }

    /// The node's cluster counters, all namespaces together.
    pub fn stats(&self) -> ClusterStats {
        self.node.counters.snapshot()
    }

    /// Whether the transport reports its broker connection up ([`Transport::is_connected`]);
    /// while it does not, cluster requests fail with `AdapterError::BrokerUnavailable`.
    pub fn is_connected(&self) -> bool {
        self.node.transport.is_connected()
    }

    /// Leaves the cluster gracefully: tells every namespace's peers (they drop this node at once
    /// instead of after the heartbeat timeout) and stops heartbeating. Idempotent.
    pub fn close(&self) {
        if self.node.closed.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        for adapter in self.node.adapters() {
            let _ = adapter.publish(&adapter.route, &Message::Closing);
        }
    }
}

impl AdapterFactory for ClusterAdapterFactory {
    fn create(&self, nsp: &str) -> Arc<dyn Adapter> {
        self.create_cluster_adapter(nsp)
    }
}
