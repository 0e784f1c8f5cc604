//! The `@socket.io/redis-adapter` 8.x format (classic: PUBLISH/SUBSCRIBE): a Switchboard node as a
//! member of a Node socket.io cluster, and a receiver of `@socket.io/redis-emitter` 5.x.
//!
//! # Why its own adapter, not a transport under the cluster adapter
//!
//! The cluster adapter (`switchboard_adapter::cluster`) owns its message set, its routes (room
//! channels subscribed by interest, a channel per node) and its membership (heartbeats). Node's
//! format differs in all three: its own channel names (`{key}#{nsp}#`, `{key}#{nsp}#{room}#`,
//! request and response channels), its own requests and responses (JSON or notepack, with
//! uids and request ids), and no membership at all: the server count is `PUBSUB NUMSUB` of the
//! request channel, and every node receives every broadcast of the namespace (a pattern
//! subscription) and filters locally. A transport could not carry that without the cluster
//! adapter learning Node's semantics, so this is an [`Adapter`] of its
//! own ([`NodeFormatAdapter`]) that reuses the core's [`RoomIndex`](switchboard_adapter::RoomIndex)
//! and local delivery, and this crate's URL and TLS handling.
//!
//! The format is kept apart from the transport, for the sharded adapter and Redis Cluster that
//! come next: [`notepack`] and [`message`] are bytes ⇄ values, [`channels`] the names, `link.rs`
//! the Redis connections, `adapter.rs` what a namespace does with them. `emitter.rs`
//! ([`EmitterBridge`]) reuses the decoding and the link for the native format's nodes
//! (`--redis-emitter`): the emitter's messages applied to their own sockets.
//!
//! # Data flow
//!
//! A namespace calls the adapter; it delivers to local sockets, then publishes Node's message on
//! the channel Node would. The subscriber connection hands each received message, with its
//! channel, to the factory's registry, which passes it to the namespace's adapter: broadcasts to
//! `on_broadcast`, requests to `on_request` (answered on the response channel), answers to the
//! pending request that waits for them.
//!
//! # Failure behaviour and limits
//!
//! - A message over `max_message_size` is dropped unread; one that does not decode, or asks for
//!   more rooms or longer names than the limits, is counted ([`NodeFormatStats::malformed`]) and
//!   dropped, logged at each power of two. Nesting is bounded ([`notepack::MAX_DEPTH`]).
//! - Requests this node waits on are bounded (`max_pending_requests`, node-wide) and end by their
//!   timeout (`requests_timeout`, 5 s as Node's `requestsTimeout`), with what arrived. So are the
//!   peers' acked broadcasts whose acks it relays (each until the peer's timeout, 5 min at most).
//! - Publishing never waits: a full queue drops and counts. Both connections reconnect by
//!   themselves, and the subscriptions are restored.
//!
//! Not yet: the sharded adapter (SPUBLISH), Redis Cluster, `publishOnSpecificResponseChannel`
//! for this node's own answers (it answers on the shared response channel, Node's default; it
//! does receive answers on its own channel), and `allRooms` as a requester (the Adapter trait
//! has no such call).

mod adapter;
pub mod channels;
mod emitter;
mod link;
pub mod message;
pub mod notepack;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use switchboard_adapter::{Adapter, AdapterError, AdapterFactory};
use tokio::sync::mpsc;

pub use adapter::NodeFormatAdapter;
pub use emitter::{EmitterBridge, EmitterStats};

use crate::config::RedisConfig;
use crate::error::ConnectError;
use crate::instance::crossed_power_of_two;
use link::{Dispatch, Link};
use message::{Limits, MessageError, Response};

/// The key Node's adapter and emitter use unless told otherwise.
pub const DEFAULT_KEY: &str = "socket.io";

/// Options of the Node format; the defaults are Node's.
#[derive(Debug, Clone)]
pub struct NodeFormatConfig {
    key: String,
    requests_timeout: Duration,
    max_message_size: usize,
    max_rooms: usize,
    max_name_bytes: usize,
    max_pending_requests: usize,
    max_remote_acks: usize,
    publish_queue: usize,
    response_timeout: Duration,
}

impl Default for NodeFormatConfig {
    fn default() -> Self {
        Self {
            key: DEFAULT_KEY.to_owned(),
            requests_timeout: Duration::from_secs(5),
            max_message_size: 4 << 20,
            max_rooms: 1_000,
            max_name_bytes: 256,
            max_pending_requests: 1_024,
            max_remote_acks: 1 << 20,
            publish_queue: 10_000,
            response_timeout: Duration::from_secs(1),
        }
    }
}

impl NodeFormatConfig {
    /// Node's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The channel key (Node's `key` option; default `socket.io`): every node of the cluster, and
    /// every emitter, must use the same.
    pub fn with_key(mut self, key: &str) -> Self {
        key.clone_into(&mut self.key);
        self
    }

    /// How long fetchSockets waits for the other servers (Node's `requestsTimeout`; default 5 s).
    pub fn with_requests_timeout(mut self, timeout: Duration) -> Self {
        self.requests_timeout = timeout;
        self
    }

    /// Largest message read from Redis (default 4 MiB); larger ones are dropped unread.
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Most rooms a peer's message may name in one list (default 1,000), and the longest room
    /// name (default 256 bytes): what this node's own clients may do.
    pub fn with_room_limits(mut self, max_rooms: usize, max_name_bytes: usize) -> Self {
        self.max_rooms = max_rooms;
        self.max_name_bytes = max_name_bytes;
        self
    }

    /// Most requests in flight on this node (default 1,024), and most peers' acked broadcasts
    /// whose acks it relays at once; more fail at once.
    pub fn with_max_pending_requests(mut self, n: usize) -> Self {
        self.max_pending_requests = n;
        self
    }

    /// Most answers a broadcast with acks waits for from other nodes (default 2^20), whatever
    /// client counts they report.
    pub fn with_max_remote_acks(mut self, n: usize) -> Self {
        self.max_remote_acks = n;
        self
    }
}

/// Counters of the Node format, monotonic since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeFormatStats {
    /// Messages Redis accepted.
    pub published: u64,
    /// Messages dropped instead of published (queue full, Redis unreachable).
    pub publish_dropped: u64,
    /// Messages received on this node's subscriptions.
    pub received: u64,
    /// Received messages dropped as malformed or over the limits.
    pub malformed: u64,
}

/// What every namespace's adapter shares: the link, the options, pending requests, counters.
pub(crate) struct Shared {
    link: Link,
    config: NodeFormatConfig,
    registry: Arc<Registry>,
    pending: Mutex<HashMap<String, mpsc::UnboundedSender<Response>>>,
    malformed: AtomicU64,
    /// Peers' acked broadcasts whose acks this node is relaying (each holds a task).
    relays: Arc<AtomicUsize>,
}

/// One relay of a peer's acked broadcast; frees its slot when dropped.
pub(crate) struct RelaySlot(Arc<AtomicUsize>);

impl Drop for RelaySlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Shared {
    fn limits(&self) -> Limits {
        Limits { max_rooms: self.config.max_rooms, max_name_bytes: self.config.max_name_bytes }
    }

    fn malformed(&self, nsp: &str, error: &MessageError) {
        let n = self.malformed.fetch_add(1, Ordering::Relaxed) + 1;
        if crossed_power_of_two(n, 1) {
            tracing::warn!(nsp, %error, malformed = n, "redis (node format): message dropped");
        }
    }

    /// A relay slot, unless `max_pending_requests` relays are running.
    fn start_relay(&self) -> Option<RelaySlot> {
        let limit = self.config.max_pending_requests;
        self.relays
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1))
            .ok()?;
        Some(RelaySlot(self.relays.clone()))
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<Response>>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open_request(&self, id: &str) -> Result<mpsc::UnboundedReceiver<Response>, AdapterError> {
        let limit = self.config.max_pending_requests;
        let mut pending = self.pending();
        if pending.len() >= limit {
            return Err(AdapterError::TooManyRequests { limit });
        }
        let (tx, rx) = mpsc::unbounded_channel();
        pending.insert(id.to_owned(), tx);
        Ok(rx)
    }

    fn close_request(&self, id: &str) {
        self.pending().remove(id);
    }

    fn answer(&self, id: &str, response: Response) {
        if let Some(tx) = self.pending().get(id) {
            let _ = tx.send(response);
        }
    }

    fn unregister(&self, adapter: &NodeFormatAdapter) {
        self.registry.remove(adapter);
        let channels = adapter.channels();
        self.link.unsubscribe(exact_channels(channels), channels.pattern.clone());
    }
}

/// The channels a namespace SUBSCRIBEs (its broadcasts come through the pattern): the request
/// channel (once: Node counts its subscribers as servers) and both response channels.
fn exact_channels(c: &channels::Channels) -> Vec<String> {
    vec![c.request.clone(), c.response.clone(), c.own_response.clone()]
}

/// Which adapter a received message goes to, by its channel or pattern.
#[derive(Default)]
struct Registry {
    routes: RwLock<HashMap<Vec<u8>, Target>>,
}

/// A channel's (or pattern's) kind and the adapter it belongs to.
type Target = (Route, Weak<NodeFormatAdapter>);

#[derive(Clone, Copy)]
enum Route {
    Broadcast,
    Request,
    Response,
}

impl Registry {
    fn add(&self, adapter: &Arc<NodeFormatAdapter>) {
        let c = adapter.channels();
        let weak = Arc::downgrade(adapter);
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        routes.insert(c.pattern.clone().into_bytes(), (Route::Broadcast, weak.clone()));
        routes.insert(c.request.clone().into_bytes(), (Route::Request, weak.clone()));
        routes.insert(c.response.clone().into_bytes(), (Route::Response, weak.clone()));
        routes.insert(c.own_response.clone().into_bytes(), (Route::Response, weak));
    }

    fn remove(&self, adapter: &NodeFormatAdapter) {
        let c = adapter.channels();
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        for name in [&c.pattern, &c.request, &c.response, &c.own_response] {
            // Only if it is still this adapter's (a namespace re-created meanwhile keeps its own).
            if routes.get(name.as_bytes()).is_some_and(|(_, w)| w.strong_count() == 0) {
                routes.remove(name.as_bytes());
            }
        }
    }
}

impl Dispatch for Registry {
    fn message(&self, pattern: Option<&[u8]>, channel: &[u8], payload: Bytes) {
        let found = {
            let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
            routes.get(pattern.unwrap_or(channel)).map(|(route, weak)| (*route, weak.clone()))
        };
        let Some((route, adapter)) = found else { return };
        let Some(adapter) = adapter.upgrade() else { return };
        if payload.len() > adapter.shared.config.max_message_size {
            adapter.shared.malformed(&adapter.nsp, &MessageError::TooLarge(payload.len()));
            return;
        }
        match (route, pattern.is_some()) {
            (Route::Broadcast, true) => adapter.on_broadcast(channel, payload),
            (Route::Request, false) => adapter.on_request(payload),
            (Route::Response, false) => adapter.on_response(payload),
            _ => {}
        }
    }
}

/// Makes one [`NodeFormatAdapter`] per namespace over one Redis; cheap to clone.
#[derive(Clone)]
pub struct NodeFormatFactory {
    shared: Arc<Shared>,
    node_id: Arc<str>,
    /// `host:port` of the Redis, never its credentials.
    address: Arc<str>,
    next_uid: Arc<AtomicU64>,
}

impl std::fmt::Debug for NodeFormatFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeFormatFactory").field("node_id", &self.node_id).finish_non_exhaustive()
    }
}

impl NodeFormatFactory {
    /// Connects to the Redis at `url` (`redis://`, `rediss://` with `redis`'s certificates) as
    /// node `node_id` (its adapters' uids are `<node_id>-<n>`); fails if Redis cannot be reached
    /// now, refuses this node, or the URL is invalid. Must run inside a tokio runtime.
    pub async fn connect(
        url: &str,
        node_id: &str,
        config: NodeFormatConfig,
        redis: RedisConfig,
    ) -> Result<Self, ConnectError> {
        let factory = Self::open(url, node_id, config, redis).await?;
        match factory.is_connected() {
            true => Ok(factory),
            false => Err(ConnectError::Unreachable {
                address: factory.address.to_string(),
                reason: "no answer".into(),
            }),
        }
    }

    /// How a node starts: like [`connect`](Self::connect), but a Redis that cannot be reached yet
    /// does not fail it (it serves its own sockets, and joins the cluster once Redis answers; the
    /// namespaces' subscriptions are made then). A Redis that refuses this node's credentials or
    /// certificates fails it with [`ConnectError::Refused`]: retrying would not help.
    pub async fn open(
        url: &str,
        node_id: &str,
        config: NodeFormatConfig,
        redis: RedisConfig,
    ) -> Result<Self, ConnectError> {
        if config.key.is_empty() || config.key.contains('#') {
            return Err(ConnectError::InvalidPrefix(config.key));
        }
        let (client, address) = crate::transport::open_client(url, &redis)?;
        let registry = Arc::new(Registry::default());
        let dispatch: Weak<dyn Dispatch> = Arc::downgrade(&registry) as Weak<dyn Dispatch>;
        let link = Link::open(client, dispatch, config.publish_queue, config.response_timeout)
            .await
            .map_err(|e| ConnectError::Refused { address: address.clone(), reason: e.to_string() })?;
        let shared = Arc::new(Shared {
            link,
            config,
            registry,
            pending: Mutex::new(HashMap::new()),
            malformed: AtomicU64::new(0),
            relays: Arc::new(AtomicUsize::new(0)),
        });
        Ok(Self {
            shared,
            node_id: node_id.into(),
            address: address.into(),
            next_uid: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The adapter of `nsp`, with its subscriptions confirmed by Redis (so it counts in
    /// `serverCount` and hears every message published after this returns).
    pub async fn create_subscribed(&self, nsp: &str) -> Result<Arc<NodeFormatAdapter>, ConnectError> {
        let adapter = self.make(nsp);
        let c = adapter.channels();
        self.shared.link.subscribe(exact_channels(c), c.pattern.clone()).await.map_err(|e| {
            ConnectError::Unreachable { address: self.address.to_string(), reason: e.to_string() }
        })?;
        Ok(adapter)
    }

    fn make(&self, nsp: &str) -> Arc<NodeFormatAdapter> {
        let uid = format!("{}-{}", self.node_id, self.next_uid.fetch_add(1, Ordering::Relaxed));
        let adapter = Arc::new(NodeFormatAdapter::new(self.shared.clone(), nsp, uid));
        self.shared.registry.add(&adapter);
        adapter
    }

    /// Whether Redis answered the last publish or health ping (each second).
    pub fn is_connected(&self) -> bool {
        self.shared.link.is_connected()
    }

    /// The counters.
    pub fn stats(&self) -> NodeFormatStats {
        let c = &self.shared.link.counters;
        NodeFormatStats {
            published: c.published.load(Ordering::Relaxed),
            publish_dropped: c.dropped.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            malformed: self.shared.malformed.load(Ordering::Relaxed),
        }
    }
}

impl AdapterFactory for NodeFormatFactory {
    fn create(&self, nsp: &str) -> Arc<dyn Adapter> {
        let adapter = self.make(nsp);
        let c = adapter.channels();
        let subscribed = self.shared.link.subscribe(exact_channels(c), c.pattern.clone());
        let nsp = nsp.to_owned();
        // `create` is synchronous (a namespace is made on a client's request): the subscriptions
        // follow at once, in order with every other change.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = subscribed.await {
                    tracing::error!(nsp, error = %e, "redis (node format): subscribing the namespace failed");
                }
            });
        }
        adapter
    }
}
