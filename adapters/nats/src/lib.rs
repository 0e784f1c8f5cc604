//! NATS transport for Switchboard's cluster adapter: [`NatsTransport`] implements
//! [`Transport`](switchboard_adapter::cluster::Transport) over NATS core pub/sub (async-nats), so
//! [`ClusterAdapterFactory`](switchboard_adapter::cluster::ClusterAdapterFactory) runs a node of a
//! cluster whose nodes share one NATS server or cluster.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use switchboard_adapter::cluster::{ClusterAdapterFactory, ClusterConfig, Inbound};
//! use switchboard_nats::{NatsConfig, NatsTransport};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let inbound = Inbound::new();
//! let transport =
//!     NatsTransport::connect(["nats://127.0.0.1:4222"], "switchboard", inbound.clone(), NatsConfig::new())
//!         .await?;
//! let factory = ClusterAdapterFactory::new(ClusterConfig::new("node1")?, Arc::new(transport.clone()), &inbound)?;
//! // ... serve; on shutdown:
//! factory.close();
//! transport.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Subjects
//!
//! Under a prefix (default in the server: `switchboard`; checked with
//! [`subject::is_valid_prefix`]), the cluster adapter's [routes](switchboard_adapter::cluster::Route)
//! are ([`subject::name`])
//!
//! | route     | subject                        | subscribed by                          |
//! |-----------|--------------------------------|----------------------------------------|
//! | namespace | `{prefix}.ns.{nsp}`            | every node serving the namespace       |
//! | room      | `{prefix}.room.{nsp}.{room}`   | nodes with local members in the room   |
//! | node      | `{prefix}.node.{node}`         | that node (answers, heartbeat replies, emits to its socket ids) |
//!
//! Each name is escaped into exactly one subject token, so no name adds a token or a wildcard,
//! and every subject parses back (the scheme: [`subject`]).
//! Example: `switchboard.room._2Fchat.lobby`.
//!
//! There are no queue groups: every subscribed node must get each message. Interest routing is
//! the server's own subject matching — a node without members in a room has no subscription to
//! its subject, so the server never sends it the room's emits.
//!
//! # Requests without NATS request/reply
//!
//! fetchSockets, serverSideEmit with acks and ack broadcasts are scatter-gather in the cluster
//! adapter itself: the request goes to the namespace subject, and each peer answers on the
//! requester's node subject. The adapter knows from membership how many answers to wait for and
//! ends the request at its deadline, so NATS request/reply (inboxes, one reply per request) adds
//! nothing; the transport only publishes and subscribes.
//!
//! # Design
//!
//! One async-nats client per node, opened with `no_echo` (a node's own publishes are not sent
//! back to it; the adapter would drop them anyway). [`NatsTransport`] is a cheap handle to one
//! driver task that owns the client:
//!
//! - `publish` checks that the connection is up, then `try_send`s into a bounded queue (messages
//!   and bytes); when it is full or the connection is down it returns a `PublishError` at once
//!   (the adapter counts it; drops are logged at most once per few seconds with a count).
//! - `subscribe`/`unsubscribe` update reference-counted wanted subjects and wake the driver,
//!   which subscribes or unsubscribes on the client: one subscription per subject, read by its
//!   own task into the node's [`Inbound`](switchboard_adapter::cluster::Inbound). Changes pile up
//!   per subject, never as a growing command list, while the driver waits on a slow client.
//! - Before each batch of publishes the driver applies pending subscription changes, so a route
//!   subscribed before a publish is live before that publish reaches the server.
//!
//! # Failure behaviour
//!
//! - Memory stays bounded while NATS is slow or gone: our queue (default 8192 messages / 64 MiB),
//!   the client's command channel (default 2048), and per subscription at most 4096 received
//!   messages (beyond, async-nats drops them and we count slow-consumer events). Publishing while
//!   disconnected fails at once instead of filling the client's buffers, and messages still queued
//!   when the connection drops are discarded, not sent late.
//! - The client reconnects by itself (attempts at once, then from 10 ms doubling up to
//!   [`with_max_reconnect_delay`](NatsConfig::with_max_reconnect_delay), default 1 s) and
//!   re-sends every live subscription before anything else; subscription changes made meanwhile
//!   are applied after. Once reconnected, the transport calls
//!   [`Inbound::connected`](switchboard_adapter::cluster::Inbound::connected), so the node
//!   announces itself and peers that expired during the outage count it again at once.
//! - While disconnected, [`Transport::is_connected`](switchboard_adapter::cluster::Transport::is_connected)
//!   is `false`, so the adapter fails requests at once (`BrokerUnavailable`) and local delivery
//!   goes on. [`NatsHealth`] reports the state and counters; [`NatsTransport::flush`] waits until
//!   the server has seen our subscriptions (readiness, tests).
//! - Garbage on our subjects reaches the adapter, which counts it as malformed and drops it.

mod config;
mod driver;
mod error;
mod health;
pub mod subject;
mod transport;

pub use config::NatsConfig;
pub use error::{ConnectError, FlushError};
pub use health::NatsHealth;
pub use transport::NatsTransport;
