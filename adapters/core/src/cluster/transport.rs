//! The seam to a broker: what a Redis or NATS crate implements, and the handle it feeds.

use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;

use super::node::Node;
use super::route::Route;
use crate::confirmation::Confirmation;
use crate::error::PublishError;

/// A node's connection to the broker, as the cluster adapter needs it.
///
/// Every method returns at once: the adapter calls them on the broadcast path and while holding
/// a room's subscription lock, so an implementation queues work for its connection task (one
/// actor owning the connection behind this cheap handle) and never waits on the network.
pub trait Transport: Send + Sync + 'static {
    /// Queues `payload` for every node subscribed to `route`. The queue is bounded: when it is full
    /// or the broker is down, drop the message and return the error (the adapter counts it; local
    /// delivery already happened). Messages to one route keep their order.
    fn publish(&self, route: &Route, payload: Bytes) -> Result<(), PublishError>;

    /// Starts receiving `route`'s messages (into the [`Inbound`] given at construction), and keeps
    /// receiving them across reconnects. Calls for one route alternate subscribe/unsubscribe.
    ///
    /// The [`Confirmation`] resolves once the broker has confirmed the subscription, so that a
    /// message another node publishes after that reaches this node (Redis answers SUBSCRIBE; NATS
    /// answers a round trip sent after SUB). It must also resolve when the connection is lost or
    /// down (give up: nothing can be received then anyway) and when the transport is dropped; a
    /// transport that cannot tell returns [`Confirmation::confirmed`].
    fn subscribe(&self, route: &Route) -> Confirmation;

    /// Stops receiving `route`'s messages.
    fn unsubscribe(&self, route: &Route);

    /// Whether the broker connection is up now (for a sharded transport: every instance), read
    /// on every cluster request, so it must be cheap (an atomic load).
    ///
    /// While it is `false`, requests that need answers from other nodes (fetchSockets, broadcasts
    /// with acks, serverSideEmit) and socketsJoin/socketsLeave/disconnectSockets fail at once with
    /// [`AdapterError::BrokerUnavailable`](crate::AdapterError::BrokerUnavailable) instead of
    /// answering from this node alone once the peers have expired. Plain broadcasts still serve
    /// local sockets and try [`publish`](Self::publish). The default (always `true`) suits
    /// transports that cannot tell; broker transports should implement it.
    fn is_connected(&self) -> bool {
        true
    }
}

/// Where a transport hands what it receives: a cheap, cloneable handle to the node's adapters.
///
/// Create it first, give a clone to the transport, then bind it by creating the
/// [`ClusterAdapterFactory`](super::ClusterAdapterFactory) (the transport exists before the node,
/// which owns it). Messages received before that, or after the node is gone, are dropped.
#[derive(Clone, Default)]
pub struct Inbound {
    node: Arc<OnceLock<Weak<Node>>>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound").field("bound", &self.node.get().is_some()).finish()
    }
}

impl Inbound {
    /// A handle not bound to any node yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// One message as received from the broker (any route). Decodes and delivers it on the
    /// calling task without waiting: local delivery only queues packets on sessions, and answers
    /// are published through the non-blocking transport. Never panics on bad input (it is counted).
    pub fn receive(&self, payload: Bytes) {
        if let Some(node) = self.node.get().and_then(Weak::upgrade) {
            node.receive(payload);
        }
    }

    /// The transport is (again) connected and its subscriptions are restored: the node announces
    /// itself at once on every namespace (an initial heartbeat, which every peer answers), so the
    /// peers that expired while the broker was gone are known again within a round trip instead
    /// of up to one heartbeat interval later.
    ///
    /// Call it after each (re)connection has resubscribed its routes (the answers come back on
    /// this node's route); for a sharded transport, after any instance is back. Calling it on the
    /// first connection, before binding, or more often than needed is harmless (one small message
    /// per namespace); a node that has [closed](super::ClusterAdapterFactory::close) ignores it.
    /// Does not block.
    pub fn connected(&self) {
        if let Some(node) = self.node.get().and_then(Weak::upgrade) {
            node.connected();
        }
    }

    /// The broker connection was lost (for a sharded transport: any instance's). Messages the
    /// transport had accepted may be gone, and answers to this node cannot arrive while it is
    /// down, so the node fails every pending request at once with
    /// [`AdapterError::BrokerUnavailable`](crate::AdapterError::BrokerUnavailable) instead of letting it
    /// wait for its timeout. Call it after [`Transport::is_connected`] reads `false`, so no request
    /// opened later can miss it. Does not block.
    pub fn disconnected(&self) {
        if let Some(node) = self.node.get().and_then(Weak::upgrade) {
            node.disconnected();
        }
    }

    pub(crate) fn bind(&self, node: Weak<Node>) -> bool {
        self.node.set(node).is_ok()
    }
}
