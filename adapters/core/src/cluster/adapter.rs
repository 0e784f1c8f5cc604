//! [`ClusterAdapter`]: the [`Adapter`](crate::Adapter) of one namespace over a
//! [`Transport`](super::Transport), made by the [factory](super::ClusterAdapterFactory). This file
//! holds its state and what keeps its membership (heartbeats, expiry); its work is split by
//! direction:
//!
//! - `outbound.rs`: the `Adapter` calls, local half first, then what goes to other nodes (broadcasts
//!   routed by interest, requests to the namespace route that wait for the live peers).
//! - `inbound.rs`: what other nodes send, served from the same local index, and answered.
//! - `interest.rs`: room subscriptions that follow the room index, and the [`Confirmation`] a
//!   join waits for, so a room emit reaches only nodes with members, and a joined socket gets them.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use dashmap::DashMap;
use tokio::time::Instant;

use super::NodeId;
use super::membership::Membership;
use super::message::Message;
use super::node::Node;
use super::requests::Requests;
use super::route::Route;
use super::stats::ClusterStats;
use crate::adapter::InboundHandler;
use crate::confirmation::Confirmation;
use crate::error::{AdapterError, Unreachable};
use crate::rooms::RoomIndex;
use crate::types::Room;

/// One namespace's adapter in a cluster; see the module docs.
pub struct ClusterAdapter {
    pub(super) node: Arc<Node>,
    pub(super) nsp: Arc<str>,
    pub(super) route: Route,
    pub(super) index: RoomIndex,
    pub(super) membership: Mutex<Membership>,
    pub(super) requests: Arc<Requests>,
    /// Room routes this adapter asked the transport for, with the broker's confirmation of each;
    /// an entry's lock orders its subscribe and unsubscribe calls.
    pub(super) subscribed: DashMap<Room, Confirmation>,
    /// The room subscriptions not confirmed yet (settled ones are dropped as new ones come), which
    /// a server-side emit waits for.
    pub(super) unconfirmed: Mutex<Confirmation>,
    pub(super) hook: RwLock<Option<Arc<dyn InboundHandler>>>,
}

impl std::fmt::Debug for ClusterAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAdapter")
            .field("node", self.node.id())
            .field("nsp", &self.nsp)
            .field("index", &self.index)
            .field("subscribed", &self.subscribed.len())
            .finish_non_exhaustive()
    }
}

impl ClusterAdapter {
    /// The adapter of namespace `nsp` on `node`, neither registered nor announced yet (the factory
    /// does both).
    pub(super) fn new(node: Arc<Node>, nsp: &str) -> Self {
        let nsp: Arc<str> = nsp.into();
        let config = &node.config;
        Self {
            route: Route::Namespace(nsp.clone()),
            index: RoomIndex::new(),
            membership: Mutex::new(
                Membership::new(config.heartbeat_timeout).with_max_peers(config.max_peers),
            ),
            requests: Arc::new(Requests::new(config.max_pending_requests)),
            subscribed: DashMap::new(),
            unconfirmed: Mutex::new(Confirmation::confirmed()),
            hook: RwLock::new(None),
            node,
            nsp,
        }
    }

    /// The namespace served.
    pub fn nsp(&self) -> &str {
        &self.nsp
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        self.node.id()
    }

    /// Registers what runs this namespace's server-side handlers when another node emits
    /// (replaces any previous one); without one, such emits are dropped.
    pub fn set_inbound_handler(&self, handler: Arc<dyn InboundHandler>) {
        *self.hook.write().unwrap_or_else(PoisonError::into_inner) = Some(handler);
    }

    /// The peers serving this namespace, live now.
    pub fn peers(&self) -> Vec<NodeId> {
        self.membership().live(Instant::now())
    }

    /// The room routes subscribed for this namespace (rooms with local members, and own-id rooms
    /// of sockets whose ids do not name this node).
    pub fn subscribed_rooms(&self) -> Vec<Room> {
        self.subscribed.iter().map(|e| e.key().clone()).collect()
    }

    /// Requests in flight (bounded by `max_pending_requests`).
    pub fn pending_requests(&self) -> usize {
        self.requests.len()
    }

    /// The node's cluster counters (all namespaces together).
    pub fn stats(&self) -> ClusterStats {
        self.node.counters.snapshot()
    }

    pub(super) fn membership(&self) -> MutexGuard<'_, Membership> {
        self.membership.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn publish(&self, route: &Route, message: &Message) -> Result<(), AdapterError> {
        self.node.publish(route, &self.nsp, message)
    }

    /// Fails while the transport reports the broker down: other nodes cannot be reached, and the
    /// peers in membership are stale (they expire, and a lone node's answer would look complete).
    pub(super) fn require_connected(&self) -> Result<(), AdapterError> {
        match self.node.transport.is_connected() {
            true => Ok(()),
            false => Err(AdapterError::BrokerUnavailable(Unreachable::Disconnected)),
        }
    }

    /// The broker connection was lost: ends every pending request at once; returns how many.
    pub(crate) fn broker_lost(&self) -> usize {
        self.requests.fail_all()
    }

    /// Publishes an initial heartbeat on the namespace route (every peer answers it at once);
    /// a failure is counted, and the periodic heartbeat announces the node later.
    pub(crate) fn announce(&self) {
        if !self.node.is_closed() {
            self.heartbeat(&self.route, Message::InitialHeartbeat);
        }
    }

    /// Publishes `beat` on `route`, then this node's forwarding address if it has one; failures
    /// are counted (the next heartbeat tries again).
    pub(super) fn heartbeat(&self, route: &Route, beat: Message) {
        let _ = self.publish(route, &beat);
        if let Some(address) = self.node.address_message() {
            let _ = self.publish(route, &address);
        }
    }

    /// Periodic work: heartbeat (when due), drop silent peers, expire old requests.
    pub(crate) fn tick(&self, now: Instant, beat: bool) {
        if beat {
            self.heartbeat(&self.route, Message::Heartbeat);
        }
        let gone = self.membership().expire(now);
        for peer in gone {
            tracing::info!(%peer, nsp = &*self.nsp, "cluster peer dropped: no heartbeat within the timeout");
            self.requests.peer_left(&peer);
        }
        self.requests.expire(now);
    }
}

impl Drop for ClusterAdapter {
    fn drop(&mut self) {
        if !self.node.is_closed() {
            let _ = self.publish(&self.route, &Message::Closing);
        }
        self.node.transport.unsubscribe(&self.route);
        for entry in self.subscribed.iter() {
            self.node.transport.unsubscribe(&Route::Room(self.nsp.clone(), entry.key().clone()));
        }
        self.node.unregister(&self.nsp);
    }
}
