//! [`ClusterAdapter`]: the [`Adapter`] of one namespace over a [`Transport`], and the factory that
//! makes one per namespace around a shared node.
//!
//! - Local delivery never waits on the broker: every operation serves this node's sockets from
//!   the [`RoomIndex`] whatever the broker does. A broadcast is handed to the transport first (a
//!   queue push that never blocks) so the other nodes deliver while this one writes its own.
//! - Interest routing: a room broadcast is published on the room's route, which only nodes with
//!   members subscribe; the adapter subscribes a room's route when the index reports the room
//!   created here and unsubscribes when it reports it emptied.
//! - A join reports when it is visible cluster-wide: its [`Confirmation`] resolves once the
//!   broker confirmed the rooms' subscriptions (every later joiner of a room still pending waits
//!   for the same one), and a server-side emit is published only after the namespace's pending
//!   subscriptions are confirmed, so a peer acting on it reaches the sockets joined before it.
//! - Requests (fetchSockets, serverSideEmit with answers, ack broadcasts) go to the namespace route
//!   and wait for the peers that were live when sent, within their timeout.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use switchboard_protocol::socketio::{self, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::NodeId;
use super::config::ClusterConfig;
use super::membership::Membership;
use super::message::{Message, Target};
use super::node::{Node, spawn_heartbeat};
use super::requests::{Reply, Requests};
use super::route::{PartRoute, Route, plan, socket_node};
use super::stats::{ClusterStats, bump};
use super::transport::{Inbound, Transport};
use crate::adapter::{Adapter, AdapterFactory, BoxFuture};
use crate::adapter::{ServerSideAck, ServerSideEmitHandler};
use crate::confirmation::Confirmation;
use crate::local;
use crate::error::{AdapterError, PartialReplies, Unreachable};
use crate::error::{ClusterError, RequestError};
use crate::rooms::RoomIndex;
use crate::types::{
    AckResponse, AckStream, BroadcastOptions, BroadcastPacket, LocalSocket, Room, SocketId, SocketInfo,
};

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
        let nsp_arc: Arc<str> = nsp.into();
        let config = &self.node.config;
        let adapter = Arc::new(ClusterAdapter {
            node: self.node.clone(),
            route: Route::Namespace(nsp_arc.clone()),
            nsp: nsp_arc,
            index: RoomIndex::new(),
            membership: Mutex::new(Membership::new(config.heartbeat_timeout)),
            requests: Arc::new(Requests::new(config.max_pending_requests)),
            subscribed: DashMap::new(),
            unconfirmed: Mutex::new(Confirmation::confirmed()),
            hook: RwLock::new(None),
        });
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

/// One namespace's adapter in a cluster; see the module docs.
pub struct ClusterAdapter {
    node: Arc<Node>,
    nsp: Arc<str>,
    route: Route,
    index: RoomIndex,
    membership: Mutex<Membership>,
    requests: Arc<Requests>,
    /// Room routes this adapter asked the transport for, with the broker's confirmation of each;
    /// an entry's lock orders its subscribe and unsubscribe calls.
    subscribed: DashMap<Room, Confirmation>,
    /// The room subscriptions not confirmed yet (settled ones are dropped as new ones come), which
    /// a server-side emit waits for.
    unconfirmed: Mutex<Confirmation>,
    hook: RwLock<Option<Arc<dyn ServerSideEmitHandler>>>,
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

fn full(e: RequestError) -> AdapterError {
    match e {
        RequestError::Full { capacity } => AdapterError::TooManyRequests { limit: capacity },
    }
}

impl ClusterAdapter {
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
    pub fn set_server_side_emit_handler(&self, handler: Arc<dyn ServerSideEmitHandler>) {
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

    fn membership(&self) -> MutexGuard<'_, Membership> {
        self.membership.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, route: &Route, message: &Message) -> Result<(), AdapterError> {
        self.node.publish(route, &self.nsp, message)
    }

    /// Fails while the transport reports the broker down: other nodes cannot be reached, and the
    /// peers in membership are stale (they expire, and a lone node's answer would look complete).
    fn require_connected(&self) -> Result<(), AdapterError> {
        match self.node.transport.is_connected() {
            true => Ok(()),
            false => Err(AdapterError::BrokerUnavailable(Unreachable::Disconnected)),
        }
    }

    /// Publishes an interest-routed socketsJoin/socketsLeave/disconnectSockets after the local
    /// part: not at all with the `local` flag, and not while the transport is disconnected.
    fn publish_operation(&self, local: bool, message: Message) -> Result<(), AdapterError> {
        if local {
            return Ok(());
        }
        self.require_connected()?;
        self.publish_routed(message)
    }

    /// Publishes an interest-routed message: one copy per part of the room plan (none for socket
    /// ids of this node, served locally already), or one namespace-wide copy without rooms or with
    /// too many routes.
    fn publish_routed(&self, mut message: Message) -> Result<(), AdapterError> {
        let Some(target) = message.target_mut() else { return Ok(()) };
        let me = self.node.id().as_str();
        let routes: Option<Vec<Option<Route>>> = match target.opts.rooms.is_empty() {
            true => None,
            false => plan(&target.opts.rooms).map(|parts| {
                parts
                    .iter()
                    .map(|part| match part.route {
                        PartRoute::Node(node) if node == me => None,
                        PartRoute::Node(node) => Some(Route::Node(NodeId::from(node))),
                        PartRoute::Room(room) => Some(Route::Room(self.nsp.clone(), room.clone())),
                    })
                    .collect()
            }),
        };
        let Some(routes) = routes else {
            target.part = Target::WHOLE;
            return self.publish(&self.route, &message);
        };
        let mut result = Ok(());
        for (i, route) in routes.into_iter().enumerate() {
            let (Some(route), Some(target), Ok(part)) = (route, message.target_mut(), u32::try_from(i))
            else {
                continue;
            };
            target.part = part;
            if let Err(e) = self.publish(&route, &message) {
                result = Err(e);
            }
        }
        result
    }

    /// What a receiver serves for one copy: its part's rooms, minus sockets in rooms of earlier
    /// parts this node also receives (served by that copy). `None` if the part does not exist.
    fn receiver_opts(&self, target: Target) -> Option<BroadcastOptions> {
        let Target { mut opts, part } = target;
        if part == Target::WHOLE {
            return Some(opts);
        }
        if opts.rooms.len() == 1 {
            return (part == 0).then_some(opts);
        }
        let plan = plan(&opts.rooms)?;
        let i = usize::try_from(part).ok()?;
        let mine = plan.get(i)?;
        let rooms: Vec<Room> = mine.rooms.iter().map(|&r| r.clone()).collect();
        let mut except = opts.except.clone();
        for earlier in &plan[..i] {
            let received = match earlier.route {
                PartRoute::Node(node) => node == self.node.id().as_str(),
                PartRoute::Room(room) => self.subscribed.contains_key(room),
            };
            if received {
                except.extend(earlier.rooms.iter().map(|&r| r.clone()));
            }
        }
        drop(plan);
        opts.rooms = rooms;
        opts.except = except;
        Some(opts)
    }

    /// Subscribes or unsubscribes a room's route to match the index: wanted while the room has
    /// local members (or is the own room of a local socket whose id does not name this node).
    /// Socket-id-shaped rooms are routed to their node, never subscribed.
    fn sync_room(&self, room: &Room) {
        if socket_node(room.as_str()).is_some() {
            return;
        }
        // Decided under the entry's lock from the index's current state, so concurrent joins and
        // leaves of one room leave the subscription matching whichever ran last.
        match self.subscribed.entry(room.clone()) {
            Entry::Occupied(entry) => {
                if !self.index.has_room(room) {
                    self.node.transport.unsubscribe(&Route::Room(self.nsp.clone(), room.clone()));
                    entry.remove();
                }
            }
            Entry::Vacant(entry) => {
                if self.index.has_room(room) {
                    let confirmation =
                        self.node.transport.subscribe(&Route::Room(self.nsp.clone(), room.clone()));
                    if !confirmation.is_confirmed() {
                        let mut unconfirmed = self.unconfirmed.lock().unwrap_or_else(PoisonError::into_inner);
                        *unconfirmed = std::mem::take(&mut *unconfirmed).and(confirmation.clone());
                    }
                    entry.insert(confirmation);
                }
            }
        }
    }

    /// Joins locally (subscribing the rooms new here); resolves once every room's subscription is
    /// confirmed, including rooms another socket made this node subscribe a moment ago.
    fn join_local(&self, id: &SocketId, rooms: &[Room]) -> Confirmation {
        for room in self.index.join(id, rooms) {
            self.sync_room(&room);
        }
        let mut confirmation = Confirmation::confirmed();
        for room in rooms {
            if let Some(pending) = self.subscribed.get(room).filter(|c| !c.is_confirmed()) {
                confirmation = confirmation.and(pending.clone());
            }
        }
        confirmation
    }

    /// What a server-side emit waits for: this namespace's room subscriptions not confirmed yet.
    fn unconfirmed(&self) -> Confirmation {
        let mut unconfirmed = self.unconfirmed.lock().unwrap_or_else(PoisonError::into_inner);
        *unconfirmed = std::mem::take(&mut *unconfirmed).and(Confirmation::confirmed());
        unconfirmed.clone()
    }

    /// The broker connection was lost: ends every pending request at once; returns how many.
    pub(crate) fn broker_lost(&self) -> usize {
        self.requests.fail_all()
    }

    fn leave_local(&self, id: &SocketId, room: &Room) {
        if self.index.leave(id, room) {
            self.sync_room(room);
        }
    }

    fn live_peers(&self) -> Vec<NodeId> {
        self.membership().live(Instant::now())
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
    fn heartbeat(&self, route: &Route, beat: Message) {
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

    /// One message from another node.
    pub(crate) fn handle(&self, from: NodeId, message: Message) {
        let counters = &self.node.counters;
        match message {
            Message::Address { address } => {
                self.node.directory(|d| d.heard(&from, &address, Instant::now()));
            }
            Message::Heartbeat | Message::InitialHeartbeat => {
                let initial = matches!(message, Message::InitialHeartbeat);
                let seen = self.membership().heartbeat(&from, initial, Instant::now());
                if seen.new_peer {
                    tracing::info!(peer = %from, nsp = &*self.nsp, "cluster peer joined");
                }
                // A closed node has left: it must not make a new peer count it again.
                if seen.answer && !self.node.is_closed() {
                    self.heartbeat(&Route::Node(from), Message::Heartbeat);
                }
            }
            Message::Closing => {
                self.node.directory(|d| d.leave(&from));
                if self.membership().leave(&from) {
                    tracing::info!(peer = %from, nsp = &*self.nsp, "cluster peer closed");
                }
                self.requests.peer_left(&from);
            }
            Message::Broadcast { target, packet } => {
                let Some(opts) = self.routed_opts(target) else { return };
                bump(&counters.broadcasts_received);
                local::broadcast(&self.index, &BroadcastPacket::new(packet), &opts);
            }
            Message::BroadcastWithAck { request_id, opts, ack_id, timeout, packet } => {
                bump(&counters.broadcasts_received);
                self.answer_ack_broadcast(from, request_id, &opts, ack_id, timeout, packet);
            }
            Message::BroadcastClientCount { request_id, count } => {
                if !self.requests.reply(request_id, &from, Reply::ClientCount(count)) {
                    bump(&counters.late_replies);
                }
            }
            Message::BroadcastAck { request_id, socket, args } => {
                if !self.requests.ack(request_id, &from, AckResponse { socket, args }) {
                    bump(&counters.late_replies);
                }
            }
            Message::SocketsJoin { target, rooms } => {
                if let Some(opts) = self.routed_opts(target) {
                    // Nobody waits for a remote socketsJoin (the emitter has its answer).
                    let _ = local::add_sockets(self, &opts, &rooms);
                }
            }
            Message::SocketsLeave { target, rooms } => {
                if let Some(opts) = self.routed_opts(target) {
                    local::del_sockets(self, &opts, &rooms);
                }
            }
            Message::DisconnectSockets { target, close } => {
                if let Some(opts) = self.routed_opts(target) {
                    local::disconnect_sockets(&self.index, &opts, close);
                }
            }
            Message::FetchSockets { request_id, opts } => {
                let sockets = self.index.fetch(&opts);
                let _ =
                    self.publish(&Route::Node(from), &Message::FetchSocketsResponse { request_id, sockets });
            }
            Message::FetchSocketsResponse { request_id, sockets } => {
                if !self.requests.reply(request_id, &from, Reply::Sockets(sockets)) {
                    bump(&counters.late_replies);
                }
            }
            Message::ServerSideEmit { request_id, event, args } => {
                let hook = self.hook.read().unwrap_or_else(PoisonError::into_inner).clone();
                match hook {
                    Some(hook) => {
                        let ack = request_id.map(|id| self.emit_ack(from, id));
                        hook.on_server_side_emit(event, args, ack);
                    }
                    None => tracing::debug!(
                        nsp = &*self.nsp,
                        event,
                        "server-side emit with no handler registered"
                    ),
                }
            }
            Message::ServerSideEmitResponse { request_id, args } => {
                if !self.requests.reply(request_id, &from, Reply::Emit(args)) {
                    bump(&counters.late_replies);
                }
            }
        }
    }

    fn routed_opts(&self, target: Target) -> Option<BroadcastOptions> {
        let opts = self.receiver_opts(target);
        if opts.is_none() {
            bump(&self.node.counters.unroutable);
        }
        opts
    }

    /// Delivers an ack broadcast locally, reports the count to the emitter, and relays the answers
    /// (from a task, until all came or the timeout).
    fn answer_ack_broadcast(
        &self,
        from: NodeId,
        request_id: u64,
        opts: &BroadcastOptions,
        ack_id: u64,
        timeout: Duration,
        packet: socketio::Encoded,
    ) {
        let deadline = Instant::now() + timeout;
        let packet = BroadcastPacket::new(packet);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let count = local::broadcast_with_ack(&self.index, &packet, ack_id, opts, &tx);
        drop(tx);
        let route = Route::Node(from);
        let message = Message::BroadcastClientCount { request_id, count: count as u64 };
        if self.publish(&route, &message).is_err() || count == 0 {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "no tokio runtime on the receive path: acks of a cluster broadcast are not relayed"
            );
            return;
        };
        let node = Arc::downgrade(&self.node);
        let nsp = self.nsp.clone();
        runtime.spawn(async move {
            for _ in 0..count {
                let Ok(Some(AckResponse { socket, args })) =
                    tokio::time::timeout_at(deadline, rx.recv()).await
                else {
                    break;
                };
                let Some(node) = node.upgrade() else { break };
                let _ = node.publish(&route, &nsp, &Message::BroadcastAck { request_id, socket, args });
            }
        });
    }

    /// Removes a lingering ack broadcast at its deadline, so its entry never outlives the stream.
    fn cancel_at(&self, id: u64, deadline: Instant) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let requests = Arc::downgrade(&self.requests);
        runtime.spawn(async move {
            tokio::time::sleep_until(deadline).await;
            if let Some(requests) = requests.upgrade() {
                requests.cancel(id);
            }
        });
    }

    fn emit_ack(&self, to: NodeId, request_id: u64) -> ServerSideAck {
        let node = Arc::downgrade(&self.node);
        let nsp = self.nsp.clone();
        ServerSideAck::new(move |args| {
            if let Some(node) = node.upgrade() {
                let _ = node.publish(
                    &Route::Node(to),
                    &nsp,
                    &Message::ServerSideEmitResponse { request_id, args },
                );
            }
        })
    }
}

impl Drop for ClusterAdapter {
    fn drop(&mut self) {
        if !self.node.closed.load(std::sync::atomic::Ordering::Acquire) {
            let _ = self.publish(&self.route, &Message::Closing);
        }
        self.node.transport.unsubscribe(&self.route);
        for entry in self.subscribed.iter() {
            self.node.transport.unsubscribe(&Route::Room(self.nsp.clone(), entry.key().clone()));
        }
        self.node.unregister(&self.nsp);
    }
}

impl Adapter for ClusterAdapter {
    fn local(&self) -> &RoomIndex {
        &self.index
    }

    fn add_socket(&self, socket: Arc<dyn LocalSocket>) {
        let id = socket.id().clone();
        // Re-adding an id drops its old memberships: those rooms may have emptied.
        let before = self.index.rooms_of(&id);
        self.index.add(socket);
        for room in before.iter().skip(1) {
            self.sync_room(room);
        }
        self.sync_room(&id.room());
    }

    fn remove_socket(&self, id: &SocketId) {
        for room in self.index.remove(id) {
            self.sync_room(&room);
        }
        self.sync_room(&id.room());
    }

    fn join(&self, id: &SocketId, rooms: &[Room]) -> Confirmation {
        self.join_local(id, rooms)
    }

    fn leave(&self, id: &SocketId, room: &Room) {
        self.leave_local(id, room);
    }

    fn broadcast(
        &self,
        packet: BroadcastPacket,
        opts: BroadcastOptions,
    ) -> BoxFuture<'_, Result<usize, AdapterError>> {
        if !opts.flags.local {
            // Published first: handing it to the transport is a queue push that never waits, and
            // the other nodes then start delivering while this one writes to its own sockets.
            // An emit has no answer to fail: a broker problem is counted and logged (in
            // publish), not returned, and the local sockets get the packet regardless.
            let message = Message::Broadcast {
                target: Target { opts: opts.clone(), part: 0 },
                packet: packet.packet().clone(),
            };
            let _ = self.publish_routed(message);
        }
        let n = local::broadcast(&self.index, &packet, &opts);
        Box::pin(std::future::ready(Ok(n)))
    }

    fn broadcast_with_ack(
        &self,
        packet: BroadcastPacket,
        ack_id: u64,
        opts: BroadcastOptions,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<AckStream, AdapterError>> {
        Box::pin(async move {
            if !opts.flags.local {
                // Before anything is delivered: an error means no socket got the packet.
                self.require_connected()?;
            }
            let deadline = Instant::now() + timeout;
            let (tx, rx) = mpsc::unbounded_channel();
            let peers = if opts.flags.local { Vec::new() } else { self.live_peers() };
            // Reserve the request before delivering anything, so "too many requests" sends nothing.
            let ticket = match peers.is_empty() {
                true => None,
                false => Some(self.requests.open_with_acks(peers, deadline, tx.clone()).map_err(full)?),
            };
            let here = local::broadcast_with_ack(&self.index, &packet, ack_id, &opts, &tx);
            drop(tx);
            let Some(mut ticket) = ticket else {
                return Ok(AckStream { expected: here, deadline, responses: rx });
            };
            let id = ticket.id();
            let message = Message::BroadcastWithAck {
                request_id: id,
                opts,
                ack_id,
                timeout,
                packet: packet.packet().clone(),
            };
            if let Err(e) = self.publish(&self.route, &message) {
                // The local sockets have the packet: their acks still count. No peer got the
                // request, so none is waited for (the drop is counted in `publish_failed`).
                tracing::debug!(error = %e, nsp = &*self.nsp, "ack broadcast not published; local acks only");
                drop(ticket);
                return Ok(AckStream { expected: here, deadline, responses: rx });
            }
            let gathered = ticket.gather().await;
            if gathered.lost {
                // The local sockets and the nodes that reported counts have the packet; the
                // stream ends once the local acks are in, with the remote ones missing.
                tracing::debug!(nsp = &*self.nsp, "ack broadcast: broker lost while gathering counts");
            } else if gathered.missing > 0 {
                tracing::debug!(
                    missing = gathered.missing,
                    nsp = &*self.nsp,
                    "ack broadcast: some nodes reported no count in time"
                );
            }
            let remote: u64 = gathered
                .replies
                .iter()
                .map(|(_, reply)| if let Reply::ClientCount(n) = reply { *n } else { 0 })
                .sum();
            if ticket.linger() {
                self.cancel_at(id, deadline);
            }
            let expected = here.saturating_add(usize::try_from(remote).unwrap_or(usize::MAX));
            Ok(AckStream { expected, deadline, responses: rx })
        })
    }

    fn fetch_sockets(&self, opts: BroadcastOptions) -> BoxFuture<'_, Result<Vec<SocketInfo>, AdapterError>> {
        Box::pin(async move {
            if opts.flags.local {
                return Ok(self.index.fetch(&opts));
            }
            self.require_connected()?;
            let mut sockets = self.index.fetch(&opts);
            let peers = self.live_peers();
            if peers.is_empty() {
                return Ok(sockets);
            }
            let deadline = Instant::now() + self.node.config.request_timeout;
            let mut ticket = self.requests.open(peers, deadline).map_err(full)?;
            self.publish(&self.route, &Message::FetchSockets { request_id: ticket.id(), opts })?;
            let gathered = ticket.gather().await;
            if gathered.lost {
                return Err(AdapterError::BrokerUnavailable(Unreachable::Lost));
            }
            for (_, reply) in gathered.replies {
                if let Reply::Sockets(remote) = reply {
                    sockets.extend(remote);
                }
            }
            match gathered.missing {
                0 => Ok(sockets),
                missing => Err(AdapterError::Timeout { missing, partial: PartialReplies::Sockets(sockets) }),
            }
        })
    }

    fn add_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<'_, Result<(), AdapterError>> {
        let confirmation = local::add_sockets(self, &opts, &rooms);
        let only_here = opts.flags.local;
        let message = Message::SocketsJoin { target: Target { opts, part: 0 }, rooms };
        let result = self.publish_operation(only_here, message);
        if confirmation.is_confirmed() {
            return Box::pin(std::future::ready(result));
        }
        Box::pin(async move {
            // The caller learns of the joins only once emits from other nodes reach them.
            confirmation.wait().await;
            result
        })
    }

    fn del_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<'_, Result<(), AdapterError>> {
        local::del_sockets(self, &opts, &rooms);
        let only_here = opts.flags.local;
        let message = Message::SocketsLeave { target: Target { opts, part: 0 }, rooms };
        let result = self.publish_operation(only_here, message);
        Box::pin(std::future::ready(result))
    }

    fn disconnect_sockets(
        &self,
        opts: BroadcastOptions,
        close: bool,
    ) -> BoxFuture<'_, Result<(), AdapterError>> {
        local::disconnect_sockets(&self.index, &opts, close);
        let only_here = opts.flags.local;
        let message = Message::DisconnectSockets { target: Target { opts, part: 0 }, close };
        let result = self.publish_operation(only_here, message);
        Box::pin(std::future::ready(result))
    }

    fn server_side_emit(
        &self,
        event: String,
        args: Vec<Value>,
        timeout: Option<Duration>,
    ) -> BoxFuture<'_, Result<Vec<Vec<Value>>, AdapterError>> {
        Box::pin(async move {
            self.require_connected()?;
            // A peer acting on this emit (say, emitting to a room joined just before) must find
            // this node's new room subscriptions live.
            let unconfirmed = self.unconfirmed();
            if !unconfirmed.is_confirmed() {
                unconfirmed.wait().await;
            }
            let Some(timeout) = timeout else {
                // Fire and forget: published even to peers not known yet.
                self.publish(&self.route, &Message::ServerSideEmit { request_id: None, event, args })?;
                return Ok(Vec::new());
            };
            let peers = self.live_peers();
            if peers.is_empty() {
                return Ok(Vec::new());
            }
            let mut ticket = self.requests.open(peers, Instant::now() + timeout).map_err(full)?;
            let message = Message::ServerSideEmit { request_id: Some(ticket.id()), event, args };
            self.publish(&self.route, &message)?;
            let gathered = ticket.gather().await;
            if gathered.lost {
                return Err(AdapterError::BrokerUnavailable(Unreachable::Lost));
            }
            let answers: Vec<Vec<Value>> = gathered
                .replies
                .into_iter()
                .filter_map(|(_, reply)| if let Reply::Emit(args) = reply { Some(args) } else { None })
                .collect();
            match gathered.missing {
                0 => Ok(answers),
                missing => Err(AdapterError::Timeout { missing, partial: PartialReplies::Answers(answers) }),
            }
        })
    }

    fn server_count(&self) -> BoxFuture<'_, Result<usize, AdapterError>> {
        let count = self.membership().server_count(Instant::now());
        Box::pin(std::future::ready(Ok(count)))
    }

    fn set_server_side_emit_handler(&self, handler: Arc<dyn ServerSideEmitHandler>) {
        ClusterAdapter::set_server_side_emit_handler(self, handler);
    }
}
