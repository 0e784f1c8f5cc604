//! The broker-independent cluster adapter: everything a Redis or NATS adapter shares, so those
//! crates only implement a [`Transport`] (publish, subscribe, unsubscribe, hand received bytes to
//! an [`Inbound`]).
//!
//! - [`message`] and [`codec`]: the one versioned message set that crosses nodes, and its compact
//!   binary encoding (a msgpack header, then raw payload bytes sliced without copying).
//! - [`route`]: where a message goes — the namespace, a room (subscribed only by nodes with local
//!   members), or one node; each transport names routes on its broker.
//! - [`membership`]: the live peers, from heartbeats; the server count and the set of expected
//!   responders come from here, never from the broker.
//! - [`directory`]: the peers' forwarding addresses, from heartbeats, so a node can pass a request
//!   for a session it does not own to the owner.
//! - [`requests`]: bounded scatter-gather for fetchSockets, serverSideEmit and ack broadcasts.
//! - [`ClusterAdapter`]: the [`Adapter`](crate::Adapter) over a transport; local delivery never waits
//!   on the broker. Its work is split by direction: outbound calls, inbound messages, room interest.
//!   [`ClusterAdapterFactory`] makes one per namespace and owns the node's transport, heartbeat task
//!   and counters.
//!
//! The in-process transport that joins several nodes in one test is `switchboard_testkit::Bus`.
//!
//! Data flow: a namespace calls the adapter; the adapter delivers to local sockets through the
//! [`RoomIndex`](crate::RoomIndex), encodes a [`Message`] and publishes it on a [`Route`]; the
//! transport of each subscribed node passes the bytes to its [`Inbound`], which decodes them and hands
//! the message to that node's adapter for the namespace.
//!
//! # Failure behaviour
//!
//! - Broker slow or gone: [`Transport::publish`] drops instead of queueing without bound; the
//!   adapter counts it ([`ClusterStats::publish_failed`], logged at each power of two). Broadcasts
//!   still reach local sockets and succeed.
//! - While [`Transport::is_connected`] is `false`, requests fail at once with
//!   `AdapterError::BrokerUnavailable`, however long the broker has been gone (its peers expire
//!   after the heartbeat timeout, and a lone node's answer would look complete): fetchSockets,
//!   serverSideEmit (with or without a timeout) and broadcasts with acks before doing anything
//!   (an ack broadcast then reaches no socket, not even a local one);
//!   socketsJoin/socketsLeave/disconnectSockets after serving the local sockets. With the `local`
//!   flag nothing needs the broker and nothing fails. The server count stays membership: it
//!   decays to 1 once the peers expire ([`ClusterAdapterFactory::is_connected`] tells why).
//! - A publish refused while the transport still reports connected (a full queue, or the broker
//!   lost since the check) fails the request at once with `BrokerUnavailable`, except a broadcast
//!   with acks, whose local sockets already have the packet: it returns their [`AckStream`]
//!   (`expected` = the local count, no peer waited for; the drop is counted and logged).
//! - After a reconnect, the transport calls [`Inbound::connected`]: the node sends an initial
//!   heartbeat on every namespace and its peers answer at once, so membership is restored within a
//!   round trip rather than at the next heartbeat.
//! - Bad input (garbage, truncation, another version, a namespace not served here, our own echo)
//!   is counted and dropped, never fatal. An echo is recognised from the header's sender alone,
//!   before the rest is decoded.
//! - The broker is not trusted to be well behaved (`check.rs`): a message over
//!   `max_message_size` is dropped unread; with a secret, one without a valid seal is dropped
//!   as `forged` before anything reads it; and no count, length or duration a peer sends sizes
//!   an allocation or a loop beyond the limits of [`ClusterConfig`] (client counts, rooms of a
//!   socketsJoin, peers, addresses that are not `host:port`).
//! - A dead peer stops counting (server count, new requests) exactly `heartbeat_timeout` after its
//!   last heartbeat, and is dropped (pending requests stop waiting for it) at the next membership
//!   check: between the timeout and the timeout plus one check period `min(interval, timeout / 4)`
//!   after its last heartbeat. A closing peer is dropped at once; a closed node neither answers
//!   initial heartbeats nor announces itself again. A request always ends by its deadline
//!   (`AdapterError::Timeout` naming how many nodes did not answer and carrying what the others
//!   answered, as `PartialReplies`), and at most `max_pending_requests` are in flight per namespace.
//!
//! # Writing a transport
//!
//! Implement [`Transport`] on a cheap handle to one task that owns the broker connection:
//! `publish` queues into a bounded channel (full → [`PublishError::QueueFull`], down →
//! [`PublishError::Disconnected`]), `subscribe` and `unsubscribe` queue commands, and
//! [`is_connected`](Transport::is_connected) reads an atomic flag the task keeps (for several
//! broker instances: `true` only while all are up). The task names each [`Route`] on its broker
//! (a reversible name, e.g. `switchboard_redis::channel`), passes each received payload to
//! [`Inbound::receive`], and after every (re)connection resubscribes every live route and then
//! calls [`Inbound::connected`]. Routes may be placed on different brokers (sharding by channel
//! name): the adapter needs order only within one route. Create the [`Inbound`] first, give it to
//! the transport, then bind it with [`ClusterAdapterFactory::new`].
//!
//! [`AckStream`]: crate::AckStream

mod adapter;
mod check;
pub mod codec;
mod config;
pub mod directory;
mod factory;
mod inbound;
mod interest;
pub mod membership;
pub mod message;
mod node;
mod outbound;
mod publish_timer;
pub mod requests;
pub mod route;
mod stats;
mod transport;

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

pub use crate::error::{ClusterError, CodecError, PublishError, RequestError};
pub use adapter::ClusterAdapter;
pub use config::{
    ClusterConfig, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_NAME_BYTES, DEFAULT_MAX_PEERS,
    DEFAULT_MAX_REMOTE_ACKS, DEFAULT_MAX_ROOMS_PER_JOIN, MIN_SECRET_LEN,
};
pub use factory::ClusterAdapterFactory;
pub use message::{Envelope, Message, Target};
pub use publish_timer::PublishTimer;
pub use route::Route;
pub use stats::ClusterStats;
pub use transport::{Inbound, Transport};

/// A node's id: the prefix of its socket ids (`<node>.<22 chars>`), so a socket's owner is known
/// from its id alone. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// The id itself.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Longest node id, in bytes: a Kubernetes pod name fits, and a node route stays far below
    /// what brokers take as a channel or subject (a NATS subject escapes `_` into 3 bytes).
    pub const MAX_LEN: usize = 128;

    /// Whether `s` is usable as a node id: 1 to [`MAX_LEN`](Self::MAX_LEN) bytes of
    /// `A-Z a-z 0-9 - _` (as `--node-id`), so it never contains the `.` that ends a socket id's
    /// node prefix. A received message whose sender is not one is dropped: its answers would go
    /// to a route named after it.
    pub fn is_valid(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }
}

impl Borrow<str> for NodeId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        Self(s.into())
    }
}

impl From<String> for NodeId {
    fn from(s: String) -> Self {
        Self(s.into())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}
