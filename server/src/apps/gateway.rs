//! The gateway as a node runs it (`--app gateway`): the `[gateway]` section of the config file
//! installed on the node's Socket.IO server, and its HTTP API on `--api-port`, bound before the
//! node starts so a taken port stops the start.

use tokio::net::TcpListener;

use crate::gateway::{self, GatewayConfig};
use crate::node::App;

/// The page at `/` of a gateway node.
const PAGE: &str = "<!doctype html><meta charset=utf-8><title>Switchboard</title>\
    <h1>Switchboard gateway</h1><p>Connect with a Socket.IO client; backends use the HTTP API.</p>";

/// The gateway's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayOptions {
    /// Serve the gateway's HTTP API on this port (`--app gateway`; needs `api-keys` in `[gateway]`).
    #[arg(long, env = "SWITCHBOARD_API_PORT")]
    pub api_port: Option<u16>,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayAppError {
    /// `--api-port` without a key to check requests against.
    #[error("--api-port needs at least one key in [gateway] api-keys: the API would be open to anyone")]
    NoApiKeys,
    /// The API port could not be bound.
    #[error("cannot listen on {address} (--api-port)")]
    Listen {
        /// `host:port`.
        address: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// The gateway app for `config`, its API listening on `host:api_port` if a port is given.
pub async fn app(config: GatewayConfig, host: &str, api_port: Option<u16>) -> Result<App, GatewayAppError> {
    let listener: Option<TcpListener> = match api_port {
        None => None,
        Some(_) if config.api_keys.is_empty() => return Err(GatewayAppError::NoApiKeys),
        Some(port) => Some(
            crate::http::bind(host, port)
                .await
                .map_err(|source| GatewayAppError::Listen { address: format!("{host}:{port}"), source })?,
        ),
    };
    Ok(App::socketio("gateway", PAGE, move |io| {
        let api = gateway::install(io, &config);
        match listener {
            Some(listener) => {
                if let Ok(address) = listener.local_addr() {
                    tracing::info!(%address, "gateway: HTTP API listening");
                }
                tokio::spawn(api.serve(listener));
            }
            None => tracing::info!("gateway: no --api-port, the HTTP API is off"),
        }
    }))
}
