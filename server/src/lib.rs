//! Switchboard: a horizontally scalable Socket.IO server node.
//!
//! [`http`] accepts connections and routes them; [`engine`] implements Engine.IO v4 on top;
//! [`config`] holds the options with socket.io's names and defaults.

pub mod apps;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod http;
pub mod metrics;
pub mod shutdown;
pub mod socketio;

pub use config::EngineConfig;
pub use engine::{CloseReason, Engine, EngineHandler, Message, Session};
pub use http::Server;
