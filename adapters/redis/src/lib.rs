//! Redis pub/sub transport for Switchboard's cluster adapter, sharded over several Redis instances.
//!
//! [`RedisTransport`] implements the core's [`Transport`](switchboard_adapter::cluster::Transport):
//! the [`ClusterAdapterFactory`](switchboard_adapter::cluster::ClusterAdapterFactory) does the rest
//! (messages, membership, interest routing, requests). Start-up:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use switchboard_adapter::cluster::{ClusterAdapterFactory, ClusterConfig, Inbound};
//! use switchboard_redis::{RedisConfig, RedisTransport};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let inbound = Inbound::new();
//! let urls = ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"];
//! let transport = RedisTransport::connect(&urls, "switchboard", inbound.clone(), RedisConfig::new()).await?;
//! let factory = ClusterAdapterFactory::new(ClusterConfig::new("node1")?, Arc::new(transport.clone()), &inbound)?;
//! // The node channel is live before namespaces announce themselves, so peers' answers arrive.
//! tokio::time::timeout(std::time::Duration::from_secs(5), transport.settle()).await?;
//! // ... serve with `factory`; on shutdown: factory.close(); transport.flush().await;
//! # Ok(()) }
//! ```
//!
//! # Channels and sharding
//!
//! Channel names come from [`channel::name`] (`{prefix}#{nsp}#`, `{prefix}#{nsp}#room#{room}`,
//! `{prefix}#node#{node}`; the escaping: [`channel`]). Each channel lives on one instance, chosen
//! by consistent hashing of its name over the instances' addresses (160 virtual nodes each by
//! default): publish and subscribe for a channel go to the same instance, and adding an instance
//! moves only about 1/N of the channels. Every node must therefore list the
//! same instances, spelled the same way (order does not matter).
//!
//! # Connections
//!
//! Per instance, one driver task owns a subscriber connection (RESP3 push messages, SUBSCRIBE and
//! UNSUBSCRIBE pipelined and acknowledged in order) and a publisher connection (PUBLISH pipelined,
//! one batch in flight). The handle never waits: publishes go into a bounded queue per instance,
//! subscriptions into a wanted set the driver reconciles (a room joined and left before the
//! driver looks costs nothing). See `driver.rs`.
//!
//! # Failure behaviour
//!
//! - Instance down (refused, reset, killed, timed out, failed ping): publishes on its channels fail
//!   at once with `PublishError::Disconnected` and what was queued is dropped, all counted
//!   ([`InstanceStats`]); [`Transport::is_connected`](switchboard_adapter::cluster::Transport::is_connected)
//!   turns `false`, so the cluster adapter keeps serving local sockets and fails requests at once.
//!   The driver reconnects (at once, then with backoff up to 1 s by default), resubscribes every
//!   channel wanted at that moment, and only then counts as connected again and calls
//!   [`Inbound::connected`](switchboard_adapter::cluster::Inbound::connected), so the node
//!   re-announces itself; [`RedisTransport::settle`] returns once the resubscription is acknowledged.
//! - Instance slow: its queue fills and publishes fail with `PublishError::QueueFull`; a pipeline or
//!   ping unanswered within the response timeout (1 s) counts as a lost connection.
//! - This node slow to read: messages are handed to the adapter on the connection's read task, so
//!   a backlog stays in the socket and in Redis's output buffer for the client, never in an
//!   unbounded queue here; past Redis's `client-output-buffer-limit pubsub` it closes the
//!   connection, which is a reconnect.
//! - Drops are logged at each power of two per instance and reason; connection changes always.
//! - Other programs' messages on our channels reach the adapter, which counts them as malformed.
//!
//! Redis Cluster sharded pub/sub (SSUBSCRIBE/SPUBLISH) is not supported: list the instances
//! (primaries of independent Redis servers) instead.
//!
//! [`node_format`] is the other format: a Switchboard node in a Node socket.io cluster
//! (`@socket.io/redis-adapter`), with its own adapter instead of this transport; its
//! [`EmitterBridge`](node_format::EmitterBridge) lets nodes on this transport hear
//! `@socket.io/redis-emitter` too.

pub mod channel;
mod config;
mod driver;
mod error;
mod instance;
pub mod node_format;
pub mod recovery;
mod shard;
mod transport;

pub use config::RedisConfig;
pub use error::ConnectError;
pub use instance::{InstanceStats, InstanceStatus};
pub use transport::RedisTransport;
