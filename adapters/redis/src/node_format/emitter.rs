//! [`EmitterBridge`]: `@socket.io/redis-emitter` 5.x messages for a node that runs Switchboard's
//! native Redis format (`--redis-emitter`), decoded by this format's [`message`](super::message)
//! and applied to the node's own sockets.
//!
//! # Why only local sockets
//!
//! An emitter publishes on Redis, where every node subscribes to its channels: each node hears
//! each message itself. So the bridge applies what arrives to the sockets of its own node (the
//! namespace's [`RoomIndex`](switchboard_adapter::RoomIndex), the wrapped adapter's `join` and
//! `leave` so its room subscriptions follow) and never re-publishes it over the native cluster,
//! which would deliver it twice.
//!
//! # Data flow
//!
//! The bridge wraps the node's adapter factory: each namespace's adapter is the native one behind
//! a [`BridgedAdapter`] that passes every call through and remembers the namespace's inbound
//! handler (for `serverSideEmit`). One subscriber connection PSUBSCRIBEs `{key}#*` (broadcasts of
//! every namespace and room, as Node's per-namespace `{key}#{nsp}#*`) and `{key}-request#*`
//! (socketsJoin/Leave, disconnectSockets, serverSideEmit): namespaces made later miss nothing, and
//! a message for a namespace this node does not serve is dropped and counted
//! ([`EmitterStats::unroutable`]).
//!
//! # Limits
//!
//! The Node format's: a message over `max_message_size` is dropped unread; one that does not
//! decode, nests too deep or names too many or too long rooms is counted
//! ([`EmitterStats::malformed`]) and dropped, logged at each power of two. Requests an emitter
//! never sends (fetchSockets, allRooms, acked broadcasts: a Node server's) are not answered:
//! counted as [`EmitterStats::unsupported`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use switchboard_adapter::{
    AckStream, Adapter, AdapterError, AdapterFactory, BoxFuture, BroadcastOptions, BroadcastPacket,
    Confirmation, InboundHandler, LocalSocket, Room, RoomIndex, SocketId, SocketInfo,
};
use switchboard_protocol::socketio::{self, Value};

use super::NodeFormatConfig;
use super::channels::prefix_pattern;
use super::link::{Dispatch, Link};
use super::message::{self, Broadcast, Limits, MessageError, Request};
use crate::config::RedisConfig;
use crate::error::ConnectError;
use crate::instance::crossed_power_of_two;

/// How long [`EmitterBridge::open`] waits for Redis to confirm the subscriptions.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(5);

/// Counters of the bridge, monotonic since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EmitterStats {
    /// Messages received on the emitter's channels.
    pub received: u64,
    /// Messages applied to a namespace this node serves.
    pub applied: u64,
    /// Messages dropped as malformed or over the limits.
    pub malformed: u64,
    /// Valid messages for a namespace this node does not serve: dropped.
    pub unroutable: u64,
    /// Valid requests an emitter does not send (a Node server's fetchSockets, allRooms, acked
    /// broadcasts): dropped unanswered.
    pub unsupported: u64,
}

/// Makes the wrapped factory's adapters and applies emitter messages to their local sockets;
/// cheap to clone. See the module docs.
#[derive(Clone)]
pub struct EmitterBridge {
    router: Arc<Router>,
    link: Arc<Link>,
    inner: Arc<dyn AdapterFactory>,
}

impl std::fmt::Debug for EmitterBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmitterBridge").field("key", &self.router.key).finish_non_exhaustive()
    }
}

impl EmitterBridge {
    /// Subscribes to the emitter's channels under `config`'s key on the Redis at `url`, in front
    /// of `inner` (the native factory). Only the key and the limits of `config` are read. A Redis
    /// that cannot be reached yet does not fail it (the subscriptions are made once it answers);
    /// one that refuses this node's credentials or certificates does ([`ConnectError::Refused`]).
    pub async fn open(
        url: &str,
        inner: Arc<dyn AdapterFactory>,
        config: &NodeFormatConfig,
        redis: RedisConfig,
    ) -> Result<Self, ConnectError> {
        let key = config.key.clone();
        if key.is_empty() || key.contains('#') {
            return Err(ConnectError::InvalidPrefix(key));
        }
        let (client, address) = crate::transport::open_client(url, &redis)?;
        let router = Arc::new(Router {
            broadcast_prefix: format!("{key}#"),
            request_prefix: format!("{key}-request#"),
            key,
            limits: Limits { max_rooms: config.max_rooms, max_name_bytes: config.max_name_bytes },
            max_message_size: config.max_message_size,
            namespaces: RwLock::new(HashMap::new()),
            counters: Counters::default(),
        });
        let dispatch: Weak<dyn Dispatch> = Arc::downgrade(&router) as Weak<dyn Dispatch>;
        // Nothing is published: a queue of one; the publisher connection only pings Redis.
        let link = Link::open(client, dispatch, 1, config.response_timeout)
            .await
            .map_err(|e| ConnectError::Refused { address, reason: e.to_string() })?;
        let broadcasts = link.subscribe(Vec::new(), prefix_pattern(&router.broadcast_prefix));
        let requests = link.subscribe(Vec::new(), prefix_pattern(&router.request_prefix));
        let subscribed = async move { broadcasts.await.and(requests.await) };
        if link.is_connected() {
            match tokio::time::timeout(SUBSCRIBE_WAIT, subscribed).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "redis emitter: subscribing failed"),
                Err(_) => tracing::warn!("redis emitter: subscriptions not confirmed within 5 s"),
            }
        } else {
            // Made in order once Redis answers (the link retries them).
            tokio::spawn(async move {
                if let Err(e) = subscribed.await {
                    tracing::warn!(error = %e, "redis emitter: subscribing failed");
                }
            });
        }
        Ok(Self { router, link: Arc::new(link), inner })
    }

    /// Whether the bridge's Redis answered its last health ping (each second).
    pub fn is_connected(&self) -> bool {
        self.link.is_connected()
    }

    /// The counters.
    pub fn stats(&self) -> EmitterStats {
        let c = &self.router.counters;
        EmitterStats {
            received: self.link.counters.received.load(Ordering::Relaxed),
            applied: c.applied.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            unroutable: c.unroutable.load(Ordering::Relaxed),
            unsupported: c.unsupported.load(Ordering::Relaxed),
        }
    }
}

impl AdapterFactory for EmitterBridge {
    fn create(&self, nsp: &str) -> Arc<dyn Adapter> {
        let adapter = Arc::new(BridgedAdapter {
            inner: self.inner.create(nsp),
            nsp: nsp.to_owned(),
            hook: RwLock::new(None),
            router: Arc::downgrade(&self.router),
        });
        self.router
            .namespaces
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(nsp.to_owned(), Arc::downgrade(&adapter));
        adapter
    }
}

#[derive(Debug, Default)]
struct Counters {
    applied: AtomicU64,
    malformed: AtomicU64,
    unroutable: AtomicU64,
    unsupported: AtomicU64,
}

/// Where received messages go: the namespace's adapter, by name.
struct Router {
    key: String,
    /// `{key}#`: broadcasts (`{key}#{nsp}#`, `{key}#{nsp}#{room}#`).
    broadcast_prefix: String,
    /// `{key}-request#`: requests (`{key}-request#{nsp}#`).
    request_prefix: String,
    limits: Limits,
    max_message_size: usize,
    namespaces: RwLock<HashMap<String, Weak<BridgedAdapter>>>,
    counters: Counters,
}

impl Router {
    /// The adapter of `nsp`, or `None` (counted) when this node does not serve it.
    fn served(&self, nsp: &str) -> Option<Arc<BridgedAdapter>> {
        let found =
            self.namespaces.read().unwrap_or_else(PoisonError::into_inner).get(nsp).and_then(Weak::upgrade);
        if found.is_none() {
            let n = self.counters.unroutable.fetch_add(1, Ordering::Relaxed) + 1;
            if crossed_power_of_two(n, 1) {
                tracing::debug!(
                    nsp,
                    unroutable = n,
                    "redis emitter: message for a namespace not served here"
                );
            }
        }
        found
    }

    fn malformed(&self, error: &MessageError) {
        let n = self.counters.malformed.fetch_add(1, Ordering::Relaxed) + 1;
        if crossed_power_of_two(n, 1) {
            tracing::warn!(%error, malformed = n, "redis emitter: message dropped");
        }
    }

    fn on_broadcast(&self, channel: &[u8], payload: &Bytes) {
        let Broadcast { packet, selection, .. } = match message::decode_broadcast(payload, self.limits) {
            Ok(broadcast) => broadcast,
            Err(e) => return self.malformed(&e),
        };
        // The channel names the packet's namespace (`{key}#{nsp}#…`), as Node publishes it.
        let rest = channel.get(self.broadcast_prefix.len()..).unwrap_or_default();
        let named = rest.strip_prefix(packet.nsp.as_bytes()).is_some_and(|r| r.first() == Some(&b'#'));
        if !named {
            return self.malformed(&MessageError::Shape("broadcast channel"));
        }
        let Some(adapter) = self.served(&packet.nsp) else { return };
        let encoded = socketio::encode_event(&packet.nsp, &packet.event, &packet.args, None);
        let count = adapter.inner.local().deliver(&BroadcastPacket::new(encoded), &selection.opts);
        if let Some(hook) = adapter.hook() {
            hook.on_delivered(count);
        }
        self.counters.applied.fetch_add(1, Ordering::Relaxed);
    }

    fn on_request(&self, channel: &[u8], payload: &Bytes) {
        let rest = channel.get(self.request_prefix.len()..).unwrap_or_default();
        let Some(nsp) = rest.strip_suffix(b"#").and_then(|nsp| std::str::from_utf8(nsp).ok()) else {
            return self.malformed(&MessageError::Shape("request channel"));
        };
        let request = match message::decode_request(payload, self.limits) {
            Ok(request) => request,
            Err(e) => return self.malformed(&e),
        };
        let Some(adapter) = self.served(nsp) else { return };
        let inner = &adapter.inner;
        match request {
            Request::Rooms { join, selection, rooms, .. } => {
                for s in inner.local().select(&selection.opts) {
                    if join {
                        // Through the adapter: the native one subscribes the new rooms' channels.
                        drop(inner.join(s.id(), &rooms));
                    } else {
                        for room in &rooms {
                            inner.leave(s.id(), room);
                        }
                    }
                }
            }
            Request::Disconnect { selection, close, .. } => {
                for s in inner.local().select(&selection.opts) {
                    s.disconnect(close);
                }
            }
            Request::ServerSideEmit { event, args, .. } => {
                // The emitter waits for no answer (it has no way to receive one).
                if let Some(hook) = adapter.hook() {
                    hook.on_server_side_emit(event, args, None);
                }
            }
            Request::Sockets { .. }
            | Request::AllRooms { .. }
            | Request::Fetch { .. }
            | Request::Broadcast { .. } => {
                self.counters.unsupported.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.counters.applied.fetch_add(1, Ordering::Relaxed);
    }
}

impl Dispatch for Router {
    fn message(&self, _pattern: Option<&[u8]>, channel: &[u8], payload: Bytes) {
        if payload.len() > self.max_message_size {
            return self.malformed(&MessageError::TooLarge(payload.len()));
        }
        if channel.starts_with(self.request_prefix.as_bytes()) {
            self.on_request(channel, &payload);
        } else if channel.starts_with(self.broadcast_prefix.as_bytes()) {
            self.on_broadcast(channel, &payload);
        }
    }
}

/// A namespace's native adapter, every call passed through; see the module docs.
struct BridgedAdapter {
    inner: Arc<dyn Adapter>,
    nsp: String,
    hook: RwLock<Option<Arc<dyn InboundHandler>>>,
    router: Weak<Router>,
}

impl BridgedAdapter {
    fn hook(&self) -> Option<Arc<dyn InboundHandler>> {
        self.hook.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Drop for BridgedAdapter {
    fn drop(&mut self) {
        let Some(router) = self.router.upgrade() else { return };
        let mut namespaces = router.namespaces.write().unwrap_or_else(PoisonError::into_inner);
        // Unless the namespace was made again since.
        if namespaces.get(&self.nsp).is_some_and(|w| w.strong_count() == 0) {
            namespaces.remove(&self.nsp);
        }
    }
}

impl Adapter for BridgedAdapter {
    fn local(&self) -> &RoomIndex {
        self.inner.local()
    }

    fn add_socket(&self, socket: Arc<dyn LocalSocket>) {
        self.inner.add_socket(socket);
    }

    fn remove_socket(&self, id: &SocketId) {
        self.inner.remove_socket(id);
    }

    fn join(&self, id: &SocketId, rooms: &[Room]) -> Confirmation {
        self.inner.join(id, rooms)
    }

    fn leave(&self, id: &SocketId, room: &Room) {
        self.inner.leave(id, room);
    }

    fn broadcast(
        &self,
        packet: BroadcastPacket,
        opts: BroadcastOptions,
    ) -> BoxFuture<'_, Result<usize, AdapterError>> {
        self.inner.broadcast(packet, opts)
    }

    fn broadcast_with_ack(
        &self,
        packet: BroadcastPacket,
        ack_id: u64,
        opts: BroadcastOptions,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<AckStream, AdapterError>> {
        self.inner.broadcast_with_ack(packet, ack_id, opts, timeout)
    }

    fn fetch_sockets(&self, opts: BroadcastOptions) -> BoxFuture<'_, Result<Vec<SocketInfo>, AdapterError>> {
        self.inner.fetch_sockets(opts)
    }

    fn add_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<'_, Result<(), AdapterError>> {
        self.inner.add_sockets(opts, rooms)
    }

    fn del_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<'_, Result<(), AdapterError>> {
        self.inner.del_sockets(opts, rooms)
    }

    fn disconnect_sockets(
        &self,
        opts: BroadcastOptions,
        close: bool,
    ) -> BoxFuture<'_, Result<(), AdapterError>> {
        self.inner.disconnect_sockets(opts, close)
    }

    fn server_side_emit(
        &self,
        event: String,
        args: Vec<Value>,
        timeout: Option<Duration>,
    ) -> BoxFuture<'_, Result<Vec<Vec<Value>>, AdapterError>> {
        self.inner.server_side_emit(event, args, timeout)
    }

    fn server_count(&self) -> BoxFuture<'_, Result<usize, AdapterError>> {
        self.inner.server_count()
    }

    fn set_inbound_handler(&self, handler: Arc<dyn InboundHandler>) {
        *self.hook.write().unwrap_or_else(PoisonError::into_inner) = Some(handler.clone());
        self.inner.set_inbound_handler(handler);
    }
}
