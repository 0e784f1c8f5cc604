//! One process's place in the cluster, shared by its namespace adapters: the transport, the node
//! route, the counters, the inbound dispatch by namespace and the heartbeat task.
//!
//! A received message goes: size limit → seal ([`codec::open`], with or without a secret) → own
//! echo → decode → limits (`check.rs`) → the namespace's adapter. Each step drops and counts
//! what fails it, and none reads further than it must.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::time::{Instant, MissedTickBehavior};

use super::NodeId;
use super::adapter::ClusterAdapter;
use super::check::check;
use super::codec;
use super::config::ClusterConfig;
use super::directory::Directory;
use super::message::Message;
use super::route::Route;
use super::stats::{Counters, bump};
use super::transport::Transport;
use crate::error::{AdapterError, CodecError, Unreachable};

pub(crate) struct Node {
    pub(crate) config: ClusterConfig,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) counters: Counters,
    pub(crate) route: Route,
    /// The peers' forwarding addresses, from the `Address` messages on every namespace.
    pub(crate) directory: RwLock<Directory>,
    namespaces: DashMap<String, Weak<ClusterAdapter>>,
    pub(crate) closed: AtomicBool,
}

impl Node {
    pub(crate) fn new(config: ClusterConfig, transport: Arc<dyn Transport>) -> Self {
        let route = Route::Node(config.node_id.clone());
        let directory =
            RwLock::new(Directory::new(config.heartbeat_timeout).with_max_peers(config.max_peers));
        Self {
            directory,
            config,
            transport,
            counters: Counters::default(),
            route,
            namespaces: DashMap::new(),
            closed: AtomicBool::new(false),
        }
    }

    pub(crate) fn id(&self) -> &NodeId {
        &self.config.node_id
    }

    /// What follows each heartbeat of this node: its forwarding address, if it has one.
    pub(crate) fn address_message(&self) -> Option<Message> {
        self.config.address.clone().map(|address| Message::Address { address })
    }

    /// Edits the directory (a poisoned lock still holds valid bookkeeping).
    pub(crate) fn directory<R>(&self, edit: impl FnOnce(&mut Directory) -> R) -> R {
        edit(&mut self.directory.write().unwrap_or_else(PoisonError::into_inner))
    }

    /// Where `node` takes forwarded requests, if it announced that within the heartbeat timeout.
    pub(crate) fn peer_address(&self, node: &str) -> Option<Arc<str>> {
        self.directory.read().unwrap_or_else(PoisonError::into_inner).address(node, Instant::now())
    }

    /// Encodes and hands a message to the transport; failures are counted and logged (throttled).
    pub(crate) fn publish(&self, route: &Route, nsp: &str, message: &Message) -> Result<(), AdapterError> {
        let max = self.config.max_message_size;
        let encoded = codec::encode_with(self.id().as_str(), nsp, message, self.config.key.as_ref())
            .and_then(|bytes| match bytes.len() {
                len if len > max => Err(CodecError::TooLarge { len, max }),
                _ => Ok(bytes),
            });
        let bytes = match encoded {
            Ok(bytes) => bytes,
            Err(e) => {
                bump(&self.counters.publish_failed);
                tracing::warn!(error = %e, kind = message.name(), nsp, "cluster message not encodable; dropped");
                return Err(AdapterError::Codec(e));
            }
        };
        match self.transport.publish(route, bytes) {
            Ok(()) => {
                bump(&self.counters.published);
                Ok(())
            }
            Err(e) => {
                let failed = bump(&self.counters.publish_failed);
                if failed.is_power_of_two() {
                    tracing::warn!(error = %e, failed, kind = message.name(), "cluster publish failed; message dropped");
                }
                Err(AdapterError::BrokerUnavailable(Unreachable::Refused(e)))
            }
        }
    }

    /// The inbound path (see the module docs): drop what is not for us (counted), hand the rest
    /// to the adapter.
    pub(crate) fn receive(&self, payload: Bytes) {
        bump(&self.counters.received);
        let max = self.config.max_message_size;
        if payload.len() > max {
            self.dropped(&CodecError::TooLarge { len: payload.len(), max }, payload.len());
            return;
        }
        let frame = match codec::open(&payload, self.config.key.as_ref()) {
            Ok(frame) => frame,
            Err(e) => return self.dropped(&e, payload.len()),
        };
        // Brokers echo our own messages: drop them from the header's sender alone, undecoded.
        if codec::sender(&frame) == Some(self.id().as_str()) {
            bump(&self.counters.echoes);
            return;
        }
        let envelope = match codec::decode(&frame) {
            Ok(envelope) => envelope,
            Err(e) => return self.dropped(&e, payload.len()),
        };
        if let Err(why) = check(&envelope, &self.config) {
            let n = bump(&self.counters.malformed);
            if n.is_power_of_two() {
                tracing::warn!(
                    why,
                    count = n,
                    kind = envelope.message.name(),
                    "dropped cluster message beyond this node's limits"
                );
            }
            return;
        }
        let adapter = self.namespaces.get(envelope.nsp.as_str()).and_then(|w| w.upgrade());
        match adapter {
            Some(adapter) => adapter.handle(envelope.sender, envelope.message),
            None => {
                bump(&self.counters.unroutable);
                tracing::debug!(
                    nsp = envelope.nsp,
                    kind = envelope.message.name(),
                    "cluster message for a namespace not served here"
                );
            }
        }
    }

    /// Counts a received message that failed `e` (forged, unsupported or malformed), logging at
    /// each power of two of its counter.
    fn dropped(&self, e: &CodecError, len: usize) {
        let (counter, what) = if e.is_forged() {
            (&self.counters.forged, "forged")
        } else if e.is_unsupported() {
            (&self.counters.unsupported, "unsupported")
        } else {
            (&self.counters.malformed, "malformed")
        };
        let n = bump(counter);
        if n.is_power_of_two() {
            tracing::warn!(error = %e, count = n, len, "dropped {what} cluster message");
        }
    }

    /// The transport (re)connected: announce this node on every namespace (see [`Inbound::connected`]).
    ///
    /// [`Inbound::connected`]: super::Inbound::connected
    pub(crate) fn connected(&self) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let adapters = self.adapters();
        tracing::info!(namespaces = adapters.len(), "cluster transport connected; announcing this node");
        for adapter in adapters {
            adapter.announce();
        }
    }

    /// The transport lost its broker connection: fail every namespace's pending requests (see
    /// [`Inbound::disconnected`]).
    ///
    /// [`Inbound::disconnected`]: super::Inbound::disconnected
    pub(crate) fn disconnected(&self) {
        let failed: usize = self.adapters().iter().map(|a| a.broker_lost()).sum();
        if failed > 0 {
            tracing::warn!(failed, "cluster transport lost its broker: pending requests failed");
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn register(&self, nsp: &str, adapter: Weak<ClusterAdapter>) {
        self.namespaces.insert(nsp.to_owned(), adapter);
    }

    /// Forgets `nsp` unless another live adapter took its place.
    pub(crate) fn unregister(&self, nsp: &str) {
        self.namespaces.remove_if(nsp, |_, w| w.strong_count() == 0);
    }

    pub(crate) fn adapter(&self, nsp: &str) -> Option<Arc<ClusterAdapter>> {
        self.namespaces.get(nsp).and_then(|w| w.upgrade())
    }

    pub(crate) fn adapters(&self) -> Vec<Arc<ClusterAdapter>> {
        self.namespaces.iter().filter_map(|e| e.value().upgrade()).collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.transport.unsubscribe(&self.route);
    }
}

/// Heartbeats every namespace's peers and expires silent ones until the node is dropped or closed.
///
/// It wakes every check period `C = min(interval, timeout / 4)`: it drops the peers silent for
/// longer than the timeout `T` (so a peer is dropped between `T` and `T + C` after its last
/// heartbeat), expires old requests, and publishes a heartbeat when at least `interval` has passed
/// since the last one (every interval rounded up to whole check periods: at most `T / 2`, as
/// [`ClusterConfig`] requires `T >= 2 × interval`).
pub(crate) fn spawn_heartbeat(handle: &tokio::runtime::Handle, node: &Arc<Node>) {
    let weak = Arc::downgrade(node);
    let interval = node.config.heartbeat_interval;
    let check = interval.min(node.config.heartbeat_timeout / 4).max(Duration::from_millis(1));
    handle.spawn(async move {
        let mut ticker = tokio::time::interval(check);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut next_beat = Instant::now() + interval;
        loop {
            ticker.tick().await;
            let Some(node) = weak.upgrade() else { break };
            if node.closed.load(Ordering::Acquire) {
                break;
            }
            let now = Instant::now();
            let beat = now >= next_beat;
            if beat {
                next_beat = now + interval;
            }
            for adapter in node.adapters() {
                adapter.tick(now, beat);
            }
            node.directory(|d| d.expire(now));
        }
    });
}
