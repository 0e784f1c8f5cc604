//! Joining a cluster: the adapter a node runs with (`--adapter memory|redis|nats`), and the broker
//! connection behind it, kept for health reports, metrics ([`metrics`]), finding the peers that
//! own other sessions ([`Locate`], for the HTTP layer's forwarding) and a clean goodbye on shutdown.

pub mod metrics;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus::Histogram;
use switchboard_adapter::cluster::{
    ClusterAdapterFactory, ClusterConfig, ClusterError, Inbound, PublishTimer,
};
use switchboard_adapter::recovery::SessionStoreFactory;
use switchboard_adapter::{AdapterFactory, MemoryAdapterFactory};
use switchboard_nats::{NatsConfig, NatsTransport};
use switchboard_redis::node_format::{EmitterBridge, NodeFormatConfig, NodeFormatFactory};
use switchboard_redis::{RedisConfig, RedisTransport};

/// Which adapter carries room emits and cluster requests between nodes. `Debug` shows the
/// brokers' addresses without the URLs' credentials.
#[derive(Clone, PartialEq, Eq)]
pub enum Backend {
    /// One node on its own (the default).
    Memory,
    /// Redis pub/sub; channels are spread over these instances by consistent hashing.
    Redis {
        /// `redis://` URLs, one per instance.
        urls: Vec<String>,
    },
    /// As `Redis`, each node also applying the `@socket.io/redis-emitter` messages published under
    /// `key` on the first instance to its own sockets (`--redis-emitter`).
    RedisWithEmitter {
        /// `redis://` URLs, one per instance; the emitter publishes on the first.
        urls: Vec<String>,
        /// The emitter's channel key (`socket.io` by default).
        key: String,
    },
    /// Redis pub/sub in `@socket.io/redis-adapter`'s format: a member of a Node socket.io cluster.
    RedisNode {
        /// The one `redis://` URL.
        url: String,
        /// The Node adapter's channel key (`socket.io` by default).
        key: String,
    },
    /// NATS core pub/sub.
    Nats {
        /// `nats://` URLs of one NATS cluster.
        urls: Vec<String>,
    },
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // What follows the last `@` of a URL: its address, never its user or password.
        let addresses = |urls: &[String]| -> Vec<String> {
            urls.iter().map(|u| u.rsplit('@').next().unwrap_or_default().to_owned()).collect()
        };
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::Redis { urls } => f.debug_struct("Redis").field("addresses", &addresses(urls)).finish(),
            Self::RedisWithEmitter { urls, key } => f
                .debug_struct("RedisWithEmitter")
                .field("addresses", &addresses(urls))
                .field("key", key)
                .finish(),
            Self::Nats { urls } => f.debug_struct("Nats").field("addresses", &addresses(urls)).finish(),
            Self::RedisNode { url, key } => f
                .debug_struct("RedisNode")
                .field("addresses", &addresses(std::slice::from_ref(url)))
                .field("key", key)
                .finish(),
        }
    }
}

/// How a node proves itself to its broker and checks the broker's certificate, beyond the URL
/// (which carries a Redis user and password, a NATS user and password or token). Read from files
/// at start-up; `Debug` shows which parts are set, never a secret.
#[derive(Clone, Default)]
pub struct BrokerAuth {
    /// PEM CA certificates `rediss://` instances must chain to (`--redis-tls-ca`).
    pub redis_tls_ca: Option<Vec<u8>>,
    /// A PEM client certificate and its PEM key, for Redis mutual TLS (`--redis-tls-cert`,
    /// `--redis-tls-key`).
    pub redis_tls_client: Option<(Vec<u8>, Vec<u8>)>,
    /// A PEM file of CA certificates the NATS server's must chain to (`--nats-tls-ca`).
    pub nats_tls_ca: Option<PathBuf>,
    /// PEM files of a client certificate and key for NATS mutual TLS (`--nats-tls-cert`, `--nats-tls-key`).
    pub nats_tls_client: Option<(PathBuf, PathBuf)>,
    /// The contents of a NATS `.creds` file (`--nats-creds`).
    pub nats_creds: Option<String>,
    /// A NATS user nkey seed (`--nats-nkey`).
    pub nats_nkey: Option<String>,
}

impl std::fmt::Debug for BrokerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerAuth")
            .field("redis_tls_ca", &self.redis_tls_ca.is_some())
            .field("redis_tls_client", &self.redis_tls_client.is_some())
            .field("nats_tls_ca", &self.nats_tls_ca)
            .field("nats_tls_client", &self.nats_tls_client)
            .field("nats_creds", &self.nats_creds.is_some())
            .field("nats_nkey", &self.nats_nkey.is_some())
            .finish()
    }
}

impl BrokerAuth {
    fn redis(&self, mut config: RedisConfig) -> RedisConfig {
        if let Some(ca) = &self.redis_tls_ca {
            config = config.with_tls_ca(ca.clone());
        }
        if let Some((cert, key)) = &self.redis_tls_client {
            config = config.with_tls_client_cert(cert.clone(), key.clone());
        }
        config
    }

    fn nats(&self, mut config: NatsConfig) -> NatsConfig {
        if let Some(ca) = &self.nats_tls_ca {
            config = config.with_tls_ca(ca);
        }
        if let Some((cert, key)) = &self.nats_tls_client {
            config = config.with_tls_client_cert(cert, key);
        }
        if let Some(creds) = &self.nats_creds {
            config = config.with_credentials(creds.as_str());
        }
        if let Some(seed) = &self.nats_nkey {
            config = config.with_nkey_seed(seed.as_str());
        }
        config
    }
}

/// Why a node could not join its cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The node id or the cluster settings are not valid.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// Redis refused the URLs, the credentials or the certificates (or, with
    /// `RedisTransport::connect`, could not be reached).
    #[error("redis: {0}")]
    Redis(#[from] switchboard_redis::ConnectError),
    /// NATS refused the URLs, the credentials or the certificates.
    #[error("nats: {0}")]
    Nats(#[from] switchboard_nats::ConnectError),
}

enum Broker {
    None,
    Redis(RedisTransport),
    RedisNode(NodeFormatFactory),
    Nats(NatsTransport),
}

/// A node's place in its cluster: the adapter factory to hand to Socket.IO and the broker link.
pub struct Cluster {
    factory: Arc<dyn AdapterFactory>,
    cluster: Option<ClusterAdapterFactory>,
    broker: Broker,
    /// `--redis-emitter`: what applies emitter messages to this node's sockets.
    emitter: Option<EmitterBridge>,
    publish_latency: Histogram,
    /// `--cluster-prefix`: with the adapter, what tells one cluster's nodes from another's.
    prefix: String,
}

/// Where a node's sessions are served: node id → `host:port`, `None` when unknown or not live.
pub type Locate = Arc<dyn Fn(&str) -> Option<Arc<str>> + Send + Sync>;

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("backend", &self.backend_name()).finish()
    }
}

impl Cluster {
    /// Connects to the broker (if any) and builds the adapter factory; `node_id` must be the
    /// engine's node id, the prefix of this node's session and socket ids, and `address` where
    /// peers forward requests for its sessions (announced with its heartbeats), if they may.
    /// Every other cluster option keeps its default (no secret: see [`Cluster::connect_with`]).
    pub async fn connect(
        backend: &Backend,
        node_id: &str,
        prefix: &str,
        address: Option<&str>,
    ) -> Result<Self, SetupError> {
        let config = ClusterConfig::new(node_id)?;
        let config = match address {
            Some(address) => config.with_address(address),
            None => config,
        };
        Self::connect_with(backend, prefix, config).await
    }

    /// Like [`Cluster::connect`], with every cluster option in `config` (its node id must be the
    /// engine's): the cluster secret, the limits on what peers' messages may ask. Without a secret
    /// on a broker, logs once that the broker is trusted.
    pub async fn connect_with(
        backend: &Backend,
        prefix: &str,
        config: ClusterConfig,
    ) -> Result<Self, SetupError> {
        Self::join(backend, prefix, config, &BrokerAuth::default()).await
    }

    /// Like [`Cluster::connect_with`], authenticating to the broker with `auth`.
    ///
    /// A broker that cannot be reached does not stop the node: it starts degraded (its own
    /// sockets are served, cross-node emits are dropped and requests fail; a warning is logged)
    /// and connects in the background when the broker appears. Invalid settings, and a broker that
    /// refuses this node's credentials or certificates, fail here: that is configuration, which
    /// no retry fixes.
    pub async fn join(
        backend: &Backend,
        prefix: &str,
        config: ClusterConfig,
        auth: &BrokerAuth,
    ) -> Result<Self, SetupError> {
        let node_id = config.node_id().clone();
        if matches!(backend, Backend::RedisNode { .. }) {
            tracing::warn!(
                "redis format node: cluster messages are not authenticated (Node's redis-adapter has no such option): any program that can publish on this Redis can speak for a node; keep it private"
            );
        } else if *backend != Backend::Memory && !config.has_secret() {
            tracing::warn!(
                "no cluster secret: the broker is trusted, and any program that can publish on it can speak for a node (set a cluster secret to authenticate cluster messages)"
            );
        }
        if matches!(backend, Backend::RedisWithEmitter { .. }) {
            tracing::warn!(
                "--redis-emitter: emitter messages are not authenticated (the emitter has no such option): any program that can publish on this Redis can emit to this node's clients; keep it private"
            );
        }
        // The emitter's messages get the limits of the cluster's own.
        let emitter_format = match backend {
            Backend::RedisWithEmitter { key, .. } => Some(
                NodeFormatConfig::new()
                    .with_key(key)
                    .with_max_message_size(config.max_message_size())
                    .with_room_limits(config.max_rooms_per_join(), config.max_name_bytes()),
            ),
            _ => None,
        };
        let latency = metrics::publish_latency();
        let timer = {
            let latency = latency.clone();
            PublishTimer::new(move |d| latency.observe(d.as_secs_f64()))
        };
        let (cluster, broker) = match backend {
            Backend::Memory => {
                return Ok(Self {
                    factory: Arc::new(MemoryAdapterFactory),
                    cluster: None,
                    broker: Broker::None,
                    emitter: None,
                    publish_latency: latency,
                    prefix: prefix.to_owned(),
                });
            }
            Backend::Redis { urls } | Backend::RedisWithEmitter { urls, .. } => {
                let inbound = Inbound::new();
                let redis = auth.redis(RedisConfig::default().with_publish_timer(timer));
                let transport = RedisTransport::open(urls, prefix, inbound.clone(), redis).await?;
                let factory = ClusterAdapterFactory::new(config, Arc::new(transport.clone()), &inbound)?;
                // The node's own channel is live before any namespace announces itself, so the
                // peers' answers to that announcement are not lost. A degraded start has nothing
                // to wait for: the transport announces the node once it is connected.
                if transport.is_connected()
                    && tokio::time::timeout(Duration::from_secs(5), transport.settle()).await.is_err()
                {
                    tracing::warn!("redis: subscriptions not confirmed within 5 s at start-up");
                }
                (factory, Broker::Redis(transport))
            }
            Backend::RedisNode { url, key } => {
                let format = NodeFormatConfig::new()
                    .with_key(key)
                    .with_max_message_size(config.max_message_size())
                    .with_max_remote_acks(config.max_remote_acks())
                    .with_room_limits(config.max_rooms_per_join(), config.max_name_bytes());
                let redis = auth.redis(RedisConfig::default());
                let factory = NodeFormatFactory::open(url, node_id.as_str(), format, redis).await?;
                return Ok(Self {
                    factory: Arc::new(factory.clone()),
                    cluster: None,
                    broker: Broker::RedisNode(factory),
                    emitter: None,
                    publish_latency: latency,
                    prefix: key.clone(),
                });
            }
            Backend::Nats { urls } => {
                let inbound = Inbound::new();
                let name = format!("switchboard-{node_id}");
                let nats = NatsConfig::default()
                    .with_name(name)
                    .with_publish_timer(timer)
                    .with_retry_on_initial_connect(true);
                let transport =
                    NatsTransport::connect(urls, prefix, inbound.clone(), auth.nats(nats)).await?;
                let factory = ClusterAdapterFactory::new(config, Arc::new(transport.clone()), &inbound)?;
                // As for Redis: the node's subject is live before any namespace announces itself.
                if transport.is_connected() {
                    if let Err(e) = transport.flush().await {
                        tracing::warn!(error = %e, "nats: subscriptions not confirmed at start-up");
                    }
                }
                (factory, Broker::Nats(transport))
            }
        };
        let mut factory: Arc<dyn AdapterFactory> = Arc::new(cluster.clone());
        let mut emitter = None;
        if let (Backend::RedisWithEmitter { urls, .. }, Some(format)) = (backend, emitter_format) {
            let url = urls.first().map(String::as_str).unwrap_or_default();
            let bridge =
                EmitterBridge::open(url, factory, &format, auth.redis(RedisConfig::default())).await?;
            factory = Arc::new(bridge.clone());
            emitter = Some(bridge);
        }
        let cluster = Self {
            factory,
            cluster: Some(cluster),
            broker,
            emitter,
            publish_latency: latency,
            prefix: prefix.to_owned(),
        };
        if !cluster.is_connected() {
            tracing::warn!(
                adapter = cluster.backend_name(),
                "broker unreachable at start-up: serving local clients only (cross-node emits dropped, requests fail) until it connects"
            );
        }
        Ok(cluster)
    }

    /// Where connection state recovery keeps sessions and its log on this broker, so any node
    /// restores any client: Redis Streams on the Redis instances; none for NATS yet, nor without
    /// a broker (the node's memory).
    pub fn session_stores(&self) -> Option<Arc<dyn SessionStoreFactory>> {
        match &self.broker {
            Broker::Redis(transport) => Some(Arc::new(transport.session_stores())),
            // Node's format carries no offsets: its peers could not log what they broadcast.
            Broker::RedisNode(_) | Broker::Nats(_) | Broker::None => None,
        }
    }

    /// The factory to give [`SocketIoConfig::with_adapter`](crate::socketio::SocketIoConfig::with_adapter).
    pub fn adapter_factory(&self) -> Arc<dyn AdapterFactory> {
        self.factory.clone()
    }

    /// Finds the forwarding address of a peer by node id (live peers only); `None` for the
    /// in-memory adapter, which has no peers.
    pub fn locator(&self) -> Option<Locate> {
        let cluster = self.cluster.clone()?;
        Some(Arc::new(move |node: &str| cluster.peer_address(node)))
    }

    /// How long cluster messages took to reach the broker, for the metrics' cluster collector.
    pub fn publish_latency(&self) -> &Histogram {
        &self.publish_latency
    }

    /// Exports the adapter's figures in `registry`, read from this cluster link at each scrape.
    pub fn register_metrics(
        self: &Arc<Self>,
        registry: &prometheus::Registry,
    ) -> Result<(), prometheus::Error> {
        registry.register(Box::new(metrics::ClusterCollector::new(self.clone())?))
    }

    /// The cluster prefix the node joined with (`--cluster-prefix`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `memory`, `redis`, `redis-node` (`--redis-format node`) or `nats`, for logs and the
    /// `adapter` label of `switchboard_cluster_info`.
    pub fn backend_name(&self) -> &'static str {
        match self.broker {
            Broker::None => "memory",
            Broker::Redis(_) => "redis",
            // Its own name: the format has no membership (`switchboard_cluster_nodes` stays 1),
            // which the cluster-split alert must know.
            Broker::RedisNode(_) => "redis-node",
            Broker::Nats(_) => "nats",
        }
    }

    /// Whether the broker link is up (always for the in-memory adapter): what the
    /// `switchboard_adapter_connected` gauge and the health log report. Not readiness: a node
    /// without its broker still serves its own clients.
    pub fn is_connected(&self) -> bool {
        match &self.broker {
            Broker::None => true,
            Broker::Redis(t) => t.is_connected(),
            Broker::RedisNode(f) => f.is_connected(),
            Broker::Nats(t) => t.is_connected(),
        }
    }

    /// Logs every change of the broker link (a warning when it goes down), checked each second.
    pub fn spawn_health_log(self: &Arc<Self>) {
        if matches!(self.broker, Broker::None) {
            return;
        }
        let cluster = Arc::downgrade(self);
        tokio::spawn(async move {
            // A degraded start was logged by `join`; from there on, every change is.
            let mut was_up = cluster.upgrade().is_some_and(|c| c.is_connected());
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(cluster) = cluster.upgrade() else { return };
                let up = cluster.is_connected();
                match (was_up, up) {
                    (true, false) => tracing::warn!(
                        adapter = cluster.backend_name(),
                        "broker unreachable: local delivery goes on, cross-node emits are dropped and requests fail"
                    ),
                    (false, true) => {
                        tracing::info!(adapter = cluster.backend_name(), "broker reachable again")
                    }
                    _ => {}
                }
                was_up = up;
            }
        });
    }

    /// Tells the other nodes this one is leaving, then closes the broker link.
    pub async fn close(&self) {
        if let Some(cluster) = &self.cluster {
            cluster.close();
        }
        match &self.broker {
            Broker::None | Broker::RedisNode(_) => {}
            Broker::Redis(t) => {
                // The goodbye is queued: give it a moment to reach Redis, never more.
                let _ = tokio::time::timeout(Duration::from_secs(2), t.flush()).await;
            }
            Broker::Nats(t) => {
                if let Err(e) = t.close().await {
                    tracing::debug!(error = %e, "nats close");
                }
            }
        }
    }
}

/// What the node's metrics read of its cluster link at each scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterHealth {
    /// The broker link is up (always for the in-memory adapter).
    pub connected: bool,
    /// Nodes serving the main namespace, this one included (1 for the in-memory adapter).
    pub nodes: usize,
    /// Reconnections to the broker since start (all Redis instances together).
    pub reconnects: u64,
    /// Messages accepted by the transport, then lost (failed pipeline, client refused them).
    pub publish_lost: u64,
    /// Messages the client library dropped on receipt (NATS slow consumer).
    pub receive_dropped: u64,
    /// The adapter's counters (zero for the in-memory adapter).
    pub stats: switchboard_adapter::cluster::ClusterStats,
}

impl Cluster {
    /// A snapshot for metrics; cheap, never waits on the broker.
    pub fn health(&self) -> ClusterHealth {
        if let Broker::RedisNode(factory) = &self.broker {
            // Node's format has no membership (its server count is a broker round trip), so the
            // node count stays 1; the message counters are the format's own.
            let node = factory.stats();
            let mut stats = switchboard_adapter::cluster::ClusterStats::default();
            stats.published = node.published;
            stats.publish_failed = node.publish_dropped;
            stats.received = node.received;
            stats.malformed = node.malformed;
            return ClusterHealth {
                connected: self.is_connected(),
                nodes: 1,
                stats,
                ..ClusterHealth::default()
            };
        }
        let Some(cluster) = &self.cluster else {
            return ClusterHealth { connected: self.is_connected(), nodes: 1, ..ClusterHealth::default() };
        };
        let (reconnects, publish_lost, receive_dropped) = match &self.broker {
            Broker::None | Broker::RedisNode(_) => (0, 0, 0),
            Broker::Redis(t) => t
                .status()
                .iter()
                .fold((0, 0, 0), |(r, l, d), s| (r + s.stats.reconnects, l + s.stats.failed, d)),
            Broker::Nats(t) => {
                let h = t.health();
                (h.reconnects, h.publish_errors, h.slow_consumer_events)
            }
        };
        let mut stats = cluster.stats();
        if let Some(emitter) = &self.emitter {
            // The emitter's messages count with the cluster's: received, and dropped by why.
            let e = emitter.stats();
            stats.received += e.received;
            stats.malformed += e.malformed;
            stats.unroutable += e.unroutable;
            stats.unsupported += e.unsupported;
        }
        ClusterHealth {
            connected: self.is_connected(),
            nodes: cluster.adapter("/").map_or(1, |a| a.peers().len() + 1),
            reconnects,
            publish_lost,
            receive_dropped,
            stats,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_prints_its_addresses_without_credentials() {
        let urls = vec!["redis://u:hunter2@10.0.0.5:6379".to_owned(), "rediss://:p@ss@h:1".to_owned()];
        let shown = format!("{:?}", Backend::Redis { urls });
        assert_eq!(shown, r#"Redis { addresses: ["10.0.0.5:6379", "h:1"] }"#);
    }
}
