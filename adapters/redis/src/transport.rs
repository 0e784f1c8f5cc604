//! [`RedisTransport`]: the cheap handle the cluster adapter publishes and subscribes through. It
//! renders routes as channels, places each channel on one instance (see [`shard`](crate::shard)),
//! and passes the work to that instance's driver without waiting.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use redis::{IntoConnectionInfo, ProtocolVersion};
use switchboard_adapter::Confirmation;
use switchboard_adapter::cluster::{Inbound, PublishError, Route, Transport};
use tokio::sync::mpsc;

use crate::channel;
use crate::config::RedisConfig;
use crate::driver::Driver;
use crate::error::ConnectError;
use crate::instance::{Instance, InstanceStatus, Shard};
use crate::shard::ShardRing;

/// The cluster adapter's [`Transport`] over Redis pub/sub, sharded over one or more instances.
/// Cheap to clone; the drivers stop when the last clone is dropped.
#[derive(Clone)]
pub struct RedisTransport {
    inner: Arc<Inner>,
}

struct Inner {
    prefix: String,
    ring: ShardRing,
    shards: Vec<Shard>,
}

impl std::fmt::Debug for RedisTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addresses: Vec<&str> = self.inner.shards.iter().map(|s| &*s.instance.address).collect();
        f.debug_struct("RedisTransport")
            .field("prefix", &self.inner.prefix)
            .field("instances", &addresses)
            .finish_non_exhaustive()
    }
}

impl RedisTransport {
    /// Connects to every instance in `urls` and hands what they deliver to `inbound`; fails if a
    /// URL is invalid or an instance cannot be reached on the first attempt (fail fast at start-up).
    ///
    /// `urls` are `redis://[user:password@]host[:port][/db]` (or `unix://` paths), one per instance;
    /// every node must list the same instances, spelled alike, in any order (the placement of
    /// channels depends on them). `prefix` starts every channel name (e.g. `switchboard`), so
    /// several clusters can share instances. Needs Redis 6 or later (RESP3). Once connected, a lost
    /// instance is reconnected in the background; see [`status`](Self::status).
    pub async fn connect(
        urls: &[impl AsRef<str>],
        prefix: &str,
        inbound: Inbound,
        config: RedisConfig,
    ) -> Result<Self, ConnectError> {
        let transport = Self::connect_lazy(urls, prefix, inbound, config)?;
        for shard in &transport.inner.shards {
            let mut link = shard.instance.link.subscribe();
            let outcome = link
                .wait_for(|l| l.connected || l.failed_attempts > 0)
                .await
                .map(|l| (l.connected, l.last_error.clone()));
            if let Ok((false, reason)) = outcome {
                return Err(ConnectError::Unreachable {
                    address: shard.instance.address.to_string(),
                    reason: reason.map_or_else(|| "unknown error".to_owned(), |r| r.to_string()),
                });
            }
        }
        Ok(transport)
    }

    /// Like [`connect`](Self::connect) but returns at once, connecting in the background: the node
    /// can serve its local sockets while Redis is not reachable yet (publishes fail meanwhile).
    /// Fails only on invalid input, or outside a tokio runtime.
    pub fn connect_lazy(
        urls: &[impl AsRef<str>],
        prefix: &str,
        inbound: Inbound,
        config: RedisConfig,
    ) -> Result<Self, ConnectError> {
        config.validate()?;
        if !channel::is_valid_prefix(prefix) {
            return Err(ConnectError::InvalidPrefix(prefix.to_owned()));
        }
        if urls.is_empty() {
            return Err(ConnectError::NoUrls);
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConnectError::NoRuntime)?;
        let mut clients = Vec::with_capacity(urls.len());
        let mut addresses: Vec<String> = Vec::with_capacity(urls.len());
        for url in urls {
            let url = url.as_ref();
            let invalid = |source| ConnectError::InvalidUrl { url: redact(url), source };
            let info = url.into_connection_info().map_err(invalid)?;
            let address = info.addr().to_string();
            if addresses.contains(&address) {
                return Err(ConnectError::DuplicateInstance(address));
            }
            // RESP3: messages arrive as push frames on an ordinary multiplexed connection.
            let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
            let client = redis::Client::open(info.set_redis_settings(settings)).map_err(invalid)?;
            clients.push(client);
            addresses.push(address);
        }
        let ring = ShardRing::new(&addresses, config.virtual_nodes);
        let mut shards = Vec::with_capacity(clients.len());
        for (client, address) in clients.into_iter().zip(addresses) {
            let instance = Arc::new(Instance::new(address));
            let (queue, rx) = mpsc::channel(config.publish_queue);
            let driver = Driver {
                instance: instance.clone(),
                client,
                config: config.clone(),
                inbound: inbound.clone(),
                queue: rx,
            };
            runtime.spawn(driver.run());
            shards.push(Shard { instance, queue });
        }
        Ok(Self { inner: Arc::new(Inner { prefix: prefix.to_owned(), ring, shards }) })
    }

    /// The channel prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// Whether every instance is connected (publishes to a down instance fail); the cluster
    /// adapter fails requests at once while not.
    pub fn is_connected(&self) -> bool {
        self.inner.shards.iter().all(|s| s.instance.connected.load(Ordering::Acquire))
    }

    /// Each instance's health and counters, in the order of the URLs given.
    pub fn status(&self) -> Vec<InstanceStatus> {
        self.inner.shards.iter().map(|s| s.instance.status()).collect()
    }

    /// The channel carrying `route`, and the index (in [`status`](Self::status) order) of the
    /// instance it is placed on.
    pub fn placement(&self, route: &Route) -> (String, usize) {
        let channel = channel::name(route, &self.inner.prefix);
        let index = self.inner.ring.place(&channel);
        (channel, index)
    }

    /// Waits until every subscription change made before the call is acknowledged by Redis (after
    /// a reconnect: until everything is resubscribed). A message published after this reaches
    /// this node. Waits as long as an instance is down: wrap it in a timeout.
    pub async fn settle(&self) {
        for shard in &self.inner.shards {
            let target = shard.instance.subs().generation;
            let mut link = shard.instance.link.subscribe();
            let _ = link.wait_for(|l| l.synced.is_some_and(|g| g >= target)).await;
        }
    }

    /// Waits until every message queued before the call was written to Redis or dropped (e.g.
    /// the goodbye messages of `ClusterAdapterFactory::close`, before exiting).
    pub async fn flush(&self) {
        for shard in &self.inner.shards {
            let target = shard.instance.accepted.load(Ordering::Acquire);
            let mut link = shard.instance.link.subscribe();
            let _ = link.wait_for(|l| l.handled >= target).await;
        }
    }

    fn shard(&self, channel: &str) -> &Shard {
        let shards = &self.inner.shards;
        shards.get(self.inner.ring.place(channel)).unwrap_or(&shards[0])
    }
}

impl Transport for RedisTransport {
    fn publish(&self, route: &Route, payload: Bytes) -> Result<(), PublishError> {
        let channel = channel::name(route, &self.inner.prefix);
        self.shard(&channel).publish(channel, payload)
    }

    fn subscribe(&self, route: &Route) -> Confirmation {
        let channel = channel::name(route, &self.inner.prefix);
        let instance = &self.shard(&channel).instance;
        let generation = instance.subscribe(channel);
        // Read after the change is recorded: an instance going down settles every generation
        // recorded before it cleared the flag, so none is left waiting.
        if !instance.connected.load(Ordering::Acquire) {
            // Down or resubscribing: nothing reaches this node until it is back, and then the
            // channel is subscribed before publishes are accepted again.
            return Confirmation::confirmed();
        }
        instance.confirmations.confirmation(generation)
    }

    fn unsubscribe(&self, route: &Route) {
        let channel = channel::name(route, &self.inner.prefix);
        self.shard(&channel).instance.unsubscribe(channel);
    }

    fn is_connected(&self) -> bool {
        RedisTransport::is_connected(self)
    }
}

/// `url` with everything between `://` and the last `@` (the credentials) masked.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rfind('@') {
            Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked() {
        assert_eq!(redact("redis://:secret@host:6379/0"), "redis://***@host:6379/0");
        assert_eq!(redact("redis://u:p@ss@host"), "redis://***@host");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact("nonsense"), "nonsense");
    }
}
