//! [`RedisTransport`]: the cheap handle the cluster adapter publishes and subscribes through. It
//! renders routes as channels, places each channel on one instance (see [`shard`](crate::shard)),
//! and passes the work to that instance's driver without waiting.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use redis::{ClientTlsConfig, ConnectionAddr, IntoConnectionInfo, ProtocolVersion, TlsCertificates};
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
    /// `urls` are `redis://[user:password@]host[:port][/db]`, `rediss://…` for TLS (or `unix://`
    /// paths), one per instance; every node must list the same instances, spelled alike, in any
    /// order (the placement of channels depends on them). `prefix` starts every channel name (e.g.
    /// `switchboard`), so several clusters can share instances. Needs Redis 6 or later (RESP3).
    /// Once connected, a lost instance is reconnected in the background; see [`status`](Self::status).
    pub async fn connect(
        urls: &[impl AsRef<str>],
        prefix: &str,
        inbound: Inbound,
        config: RedisConfig,
    ) -> Result<Self, ConnectError> {
        let transport = Self::connect_lazy(urls, prefix, inbound, config)?;
        transport.first_attempts(true).await?;
        Ok(transport)
    }

    /// How a node starts: like [`connect`](Self::connect), but an instance that cannot be reached
    /// yet does not fail it. It waits for each instance's first attempt; an instance that refused
    /// this node's configuration (authentication failed, ACL, TLS certificate) fails it with
    /// [`ConnectError::Refused`], since retrying would not help; one that is down or unreachable is
    /// logged and retried in the background, and the transport is returned (not
    /// [`connected`](Self::is_connected) yet: the node serves its own sockets meanwhile).
    pub async fn open(
        urls: &[impl AsRef<str>],
        prefix: &str,
        inbound: Inbound,
        config: RedisConfig,
    ) -> Result<Self, ConnectError> {
        let transport = Self::connect_lazy(urls, prefix, inbound, config)?;
        transport.first_attempts(false).await?;
        Ok(transport)
    }

    /// Waits for every instance's first connection attempt: fails on a refusal, and on an
    /// unreachable instance if `unreachable_fails` (else logs it and goes on).
    async fn first_attempts(&self, unreachable_fails: bool) -> Result<(), ConnectError> {
        for shard in &self.inner.shards {
            let mut link = shard.instance.link.subscribe();
            let outcome = link
                .wait_for(|l| l.connected || l.failed_attempts > 0)
                .await
                .map(|l| (l.connected, l.refused, l.last_error.clone()));
            let Ok((false, refused, reason)) = outcome else { continue };
            let address = shard.instance.address.to_string();
            let reason = reason.map_or_else(|| "unknown error".to_owned(), |r| r.to_string());
            match (refused, unreachable_fails) {
                (true, _) => return Err(ConnectError::Refused { address, reason }),
                (false, true) => return Err(ConnectError::Unreachable { address, reason }),
                (false, false) => tracing::warn!(
                    address,
                    reason,
                    "redis instance unreachable at start-up: starting without it, retrying in the background"
                ),
            }
        }
        Ok(())
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
            let (client, address) = open_client(url.as_ref(), &config)?;
            if addresses.contains(&address) {
                return Err(ConnectError::DuplicateInstance(address));
            }
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
                client: client.clone(),
                config: config.clone(),
                inbound: inbound.clone(),
                queue: rx,
            };
            runtime.spawn(driver.run());
            shards.push(Shard { instance, queue, client });
        }
        Ok(Self { inner: Arc::new(Inner { prefix: prefix.to_owned(), ring, shards }) })
    }

    /// Connection state recovery's stores on these instances (same credentials and TLS): each
    /// namespace's on the instance its key prefix hashes to, as a channel would.
    pub fn session_stores(&self) -> crate::recovery::RedisSessionStoreFactory {
        let transport = self.clone();
        crate::recovery::RedisSessionStoreFactory::with_picker(&self.inner.prefix, move |keys| {
            let inner = &transport.inner;
            inner.shards[inner.ring.place(keys)].client.clone()
        })
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

/// A RESP3 client for one `redis://`/`rediss://`/`unix://` URL with the configured certificates,
/// and the instance's address (never its credentials); refuses insecure or inconsistent TLS.
pub(crate) fn open_client(url: &str, config: &RedisConfig) -> Result<(redis::Client, String), ConnectError> {
    let invalid = |source| ConnectError::InvalidUrl { url: redact(url), source };
    let info = url.into_connection_info().map_err(invalid)?;
    let tls = match info.addr() {
        ConnectionAddr::TcpTls { insecure: true, .. } => {
            return Err(ConnectError::InsecureTls { url: redact(url) });
        }
        ConnectionAddr::TcpTls { .. } => true,
        _ => false,
    };
    let address = info.addr().to_string();
    // RESP3: messages arrive as push frames on an ordinary multiplexed connection.
    let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
    let info = info.set_redis_settings(settings);
    let certificates = config.tls.ca.is_some() || config.tls.client.is_some();
    let client = match (tls, certificates) {
        (true, true) => redis::Client::build_with_tls(info, certificates_of(config))
            .map_err(|e| ConnectError::InvalidTls(e.to_string()))?,
        (false, true) => return Err(ConnectError::TlsWithoutRediss { url: redact(url) }),
        (_, false) => redis::Client::open(info).map_err(invalid)?,
    };
    Ok((client, address))
}

/// The configured CA and client certificate, as the redis crate takes them.
fn certificates_of(config: &RedisConfig) -> TlsCertificates {
    TlsCertificates {
        client_tls: config
            .tls
            .client
            .clone()
            .map(|(client_cert, client_key)| ClientTlsConfig { client_cert, client_key }),
        root_cert: config.tls.ca.clone(),
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
