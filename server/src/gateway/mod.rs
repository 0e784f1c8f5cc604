//! The gateway: puts a Switchboard cluster in front of any backend. Clients authenticate with a
//! JWT and/or the backend's connect webhook at connect (`auth.rs` with `jwks.rs`,
//! `connect_webhook.rs`, `connect.rs`), join, leave and publish to rooms as their grant or the
//! subscribe webhook allows (`rooms.rs`), their events and lifecycle go to the backend's webhooks
//! (`webhook.rs`, `lifecycle.rs`, values as JSON by `json.rs`), and the backend drives them
//! through an HTTP API (`api/`, with `nodes.rs`); all of it from the `[gateway]` section of the
//! config file (`config.rs`), on the public API of `socketio` like any Rust application.

pub mod api;
pub mod auth;
pub mod config;
pub mod connect;
pub mod connect_webhook;
pub mod json;
pub mod jwks;
pub mod lifecycle;
pub mod metrics;
pub mod nodes;
pub mod rooms;
pub mod webhook;

use std::sync::Arc;

pub use api::Api;
pub use config::{GatewayConfig, GatewayConfigError};

use crate::socketio::SocketIo;
use connect_webhook::ConnectWebhook;
use metrics::GatewayMetrics;
use webhook::Webhooks;

/// Installs the gateway's namespaces on `io`; returns its API, for the caller to serve.
pub fn install(io: &SocketIo, config: &GatewayConfig) -> Arc<Api> {
    let metrics = GatewayMetrics::register(io.engine().registry());
    let webhooks = Arc::new(Webhooks::new(config.webhook.clone(), metrics.clone()));
    let admission = config.namespaces.iter().any(|n| n.connect_url.is_some()).then(|| {
        Arc::new(ConnectWebhook::new(
            &config.connect,
            Webhooks::new(config.connect.as_webhook(), metrics.clone()),
        ))
    });
    connect::install(io, config, webhooks, admission, &metrics);
    let namespaces: Vec<String> = config.namespaces.iter().map(|n| n.name.clone()).collect();
    nodes::answer(io, namespaces.clone());
    Arc::new(Api::new(io.clone(), config, namespaces, metrics))
}
