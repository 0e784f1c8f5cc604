//! What other nodes send a namespace's adapter: heartbeats and goodbyes (membership), broadcasts
//! and room operations (served from the local index, for the part of a routed copy this node
//! serves), requests (answered on the sender's node route) and the answers to this node's requests.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use switchboard_protocol::socketio;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::NodeId;
use super::adapter::ClusterAdapter;
use super::message::{Message, Target};
use super::requests::Reply;
use super::route::{PartRoute, Route, plan};
use super::stats::bump;
use crate::adapter::{InboundHandler, ServerSideAck};
use crate::local;
use crate::types::{AckResponse, BroadcastOptions, BroadcastPacket, Room};

/// Longest this node relays the acks of a peer's broadcast (keeping a task and a channel),
/// whatever timeout the peer asked for (up to 584 million years).
const MAX_ACK_RELAY: Duration = Duration::from_secs(24 * 60 * 60);

impl ClusterAdapter {
    /// One message from another node.
    pub(crate) fn handle(&self, from: NodeId, message: Message) {
        let counters = &self.node.counters;
        match message {
            Message::Address { address } => {
                if !self.node.directory(|d| d.heard(&from, &address, Instant::now())) {
                    self.refused_peer(&from);
                }
            }
            Message::Heartbeat | Message::InitialHeartbeat => {
                let initial = matches!(message, Message::InitialHeartbeat);
                let seen = {
                    let mut membership = self.membership();
                    if !membership.admits(&from) {
                        drop(membership);
                        return self.refused_peer(&from);
                    }
                    membership.heartbeat(&from, initial, Instant::now())
                };
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
                let count = self.index.deliver(&BroadcastPacket::new(packet), &opts);
                self.delivered(count);
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
            Message::ServerSideEmit { request_id, event, args } => match self.inbound_handler() {
                Some(hook) => {
                    let ack = request_id.map(|id| self.emit_ack(from, id));
                    hook.on_server_side_emit(event, args, ack);
                }
                None => {
                    tracing::debug!(nsp = &*self.nsp, event, "server-side emit with no handler registered")
                }
            },
            Message::ServerSideEmitResponse { request_id, args } => {
                if !self.requests.reply(request_id, &from, Reply::Emit(args)) {
                    bump(&counters.late_replies);
                }
            }
        }
    }

    /// A heartbeat or address from a node beyond `max_peers`: not recorded, nor answered.
    fn refused_peer(&self, from: &NodeId) {
        let n = bump(&self.node.counters.unroutable);
        if n.is_power_of_two() {
            tracing::warn!(
                peer = %from,
                nsp = &*self.nsp,
                max_peers = self.node.config.max_peers,
                "cluster peer ignored: as many peers as max_peers are known"
            );
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
    /// The server's handler for what other nodes send, if it registered one.
    fn inbound_handler(&self) -> Option<Arc<dyn InboundHandler>> {
        self.hook.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Tells the server that a broadcast from another node reached `count` local sockets.
    fn delivered(&self, count: usize) {
        if count > 0 {
            if let Some(hook) = self.inbound_handler() {
                hook.on_delivered(count);
            }
        }
    }

    fn answer_ack_broadcast(
        &self,
        from: NodeId,
        request_id: u64,
        opts: &BroadcastOptions,
        ack_id: u64,
        timeout: Duration,
        packet: socketio::Encoded,
    ) {
        // The timeout is the peer's: the relay task lives until it, however long a forged one asks.
        let deadline = Instant::now() + timeout.min(MAX_ACK_RELAY);
        let packet = BroadcastPacket::new(packet);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let count = self.index.deliver_with_ack(&packet, ack_id, opts, &tx);
        drop(tx);
        self.delivered(count);
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
