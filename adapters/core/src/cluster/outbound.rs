//! The [`Adapter`] calls of a namespace's cluster adapter: each serves this node's sockets first
//! (never waiting on the broker), then ships the operation to the other nodes: a broadcast or a
//! room operation routed by interest (one copy per part of the room plan), or a request to the
//! namespace route that waits for the peers live when it was sent, within its timeout.

use std::sync::Arc;
use std::time::Duration;

use switchboard_protocol::socketio::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::NodeId;
use super::adapter::ClusterAdapter;
use super::message::{Message, Target};
use super::requests::Reply;
use super::route::{PartRoute, Route, plan};
use crate::adapter::{Adapter, BoxFuture, InboundHandler};
use crate::confirmation::Confirmation;
use crate::error::{AdapterError, PartialReplies, RequestError, Unreachable};
use crate::local;
use crate::rooms::RoomIndex;
use crate::types::{AckStream, BroadcastOptions, BroadcastPacket, LocalSocket, Room, SocketId, SocketInfo};

/// A request refused because the namespace has too many in flight.
fn full(e: RequestError) -> AdapterError {
    match e {
        RequestError::Full { capacity } => AdapterError::TooManyRequests { limit: capacity },
    }
}

impl ClusterAdapter {
    /// Publishes an interest-routed socketsJoin/socketsLeave/disconnectSockets after the local
    /// part: not at all with the `local` flag, and not while the transport is disconnected.
    fn publish_operation(&self, only_here: bool, message: Message) -> Result<(), AdapterError> {
        if only_here {
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
}

impl Adapter for ClusterAdapter {
    fn local(&self) -> &RoomIndex {
        &self.index
    }

    fn add_socket(&self, socket: Arc<dyn LocalSocket>) {
        self.add_socket_here(socket);
    }

    fn remove_socket(&self, id: &SocketId) {
        self.remove_socket_here(id);
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
        let n = self.index.deliver(&packet, &opts);
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
            let peers = if opts.flags.local { Vec::new() } else { self.peers() };
            // Reserve the request before delivering anything, so "too many requests" sends nothing.
            let ticket = match peers.is_empty() {
                true => None,
                false => Some(self.requests.open_with_acks(peers, deadline, tx.clone()).map_err(full)?),
            };
            let here = self.index.deliver_with_ack(&packet, ack_id, &opts, &tx);
            drop(tx);
            let Some(mut ticket) = ticket else {
                return Ok(AckStream { expected: here, local: here, deadline, responses: rx });
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
                return Ok(AckStream { expected: here, local: here, deadline, responses: rx });
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
                .fold(0, u64::saturating_add);
            if ticket.linger() {
                self.cancel_at(id, deadline);
            }
            // Each count was checked on receipt; their sum is bounded too, as it sizes the
            // answers' buffer.
            let remote = usize::try_from(remote).unwrap_or(usize::MAX).min(self.node.config.max_remote_acks);
            let expected = here.saturating_add(remote);
            Ok(AckStream { expected, local: here, deadline, responses: rx })
        })
    }

    fn fetch_sockets(&self, opts: BroadcastOptions) -> BoxFuture<'_, Result<Vec<SocketInfo>, AdapterError>> {
        Box::pin(async move {
            if opts.flags.local {
                return Ok(self.index.fetch(&opts));
            }
            self.require_connected()?;
            let mut sockets = self.index.fetch(&opts);
            let peers = self.peers();
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
            let peers = self.peers();
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

    fn set_inbound_handler(&self, handler: Arc<dyn InboundHandler>) {
        ClusterAdapter::set_inbound_handler(self, handler);
    }
}
