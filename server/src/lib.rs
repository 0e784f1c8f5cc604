//! Switchboard: a horizontally scalable Socket.IO server node.
//!
//! Modules in layers, each using only those listed before it (`scripts/check-layers` keeps it so):
//! [`body`], [`version`] and [`metrics`] (shared by every layer) → [`engine`] (Engine.IO v4: sessions,
//! transports, heartbeats, its options) → [`socketio`] (Socket.IO v5 on the engine) → [`cluster`]
//! (the adapter a node joins its peers with) → [`admin`] (the socket.io admin UI's namespace and
//! page) → [`http`] (accept, routing, forwarding, the
//! operator's endpoints) → [`gateway`] (JWT auth, webhooks and the HTTP API for any backend) → [`node`] (a node assembled from its options) → [`apps`] (what the
//! binary runs). `docs/architecture.md` draws it.

pub mod admin;
pub mod apps;
pub mod body;
pub mod cluster;
pub mod engine;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod node;
pub mod socketio;
pub mod version;

pub use engine::{CloseReason, Engine, EngineConfig, EngineHandler, Message, Session};
pub use http::Server;
