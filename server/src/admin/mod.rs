//! The socket.io admin UI (`@socket.io/admin-ui`) on a node: the admin namespace it connects to,
//! instrumented the way the admin-ui's own server side (`instrument(io, …)`) instruments a Node
//! server, and the UI's static files (`ui.rs`).
//!
//! A UI logs in on the admin namespace (`auth.rs`: username and bcrypt hash, or none when the
//! operator said so), gets the features it may use, the sockets of every node
//! (`commands.rs`), then a `server_stats` from every node every 2 s (`stats.rs`) and every
//! socket connect, disconnect, join and leave as it happens (`feed.rs`). Each node reports its
//! own sockets by broadcasting to the admin namespace, so the cluster adapter carries them to the
//! UIs connected to any node. The sockets are observed through the socket layer's
//! [`SocketIo::on_any_connection`] and a wrapper around each namespace's adapter, which is why
//! this layer sits above `socketio` and below `node`, which builds the adapter factory and the
//! server with it.

mod auth;
mod commands;
mod feed;
mod serialize;
mod stats;
pub mod ui;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use switchboard_adapter::AdapterFactory;
use tokio_util::sync::CancellationToken;

use crate::socketio::{SocketId, SocketIo, SocketRef, Value};
use auth::Gate;
use commands::{COMMAND_EVENT, COMMAND_FEATURES, Command, SOCKETS_EVENT};
use feed::{Feed, Notice, ObservedFactory};
use stats::Stats;

/// The admin-ui's default namespace.
pub const DEFAULT_NAMESPACE: &str = "/admin";
/// How often each node reports its stats (the admin-ui's 2 s).
pub const STATS_INTERVAL: Duration = Duration::from_secs(2);
/// The highest bcrypt cost accepted: each login costs about 2^cost bcrypt rounds, some 2 s of a
/// core at 15, so a higher one makes logins slow to the point of a denial of service.
pub const MAX_BCRYPT_COST: u32 = 15;

/// How the admin UI logs in.
#[derive(Clone)]
#[non_exhaustive]
pub enum AdminAuth {
    /// The admin-ui's basic auth: this username, and a password whose bcrypt hash (`$2b$…`, as
    /// `bcrypt` or `bcryptjs` print it) is this.
    Basic {
        /// The username.
        username: String,
        /// The bcrypt hash of the password.
        password_hash: String,
    },
    /// Anyone who reaches the node may open the admin namespace (`--admin-auth none`): only for a
    /// node no one else can reach.
    None,
}

impl fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic { username, .. } => {
                f.debug_struct("Basic").field("username", username).finish_non_exhaustive()
            }
            Self::None => f.write_str("None"),
        }
    }
}

/// Why the admin UI's settings were refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminConfigError {
    /// Basic auth with an empty username.
    #[error("the admin username is empty")]
    EmptyUsername,
    /// The password hash does not parse as bcrypt.
    #[error("the admin password hash is not a bcrypt hash ($2b$10$…, as bcrypt or bcryptjs print it): {0}")]
    InvalidHash(String),
    /// The hash's cost is over [`MAX_BCRYPT_COST`].
    #[error(
        "the admin password hash has cost {0}: over {MAX_BCRYPT_COST}, every login would take seconds of CPU"
    )]
    CostTooHigh(u32),
    /// The namespace is not a namespace name, or is the main namespace.
    #[error("the admin namespace must start with / and differ from the main namespace /, not {0:?}")]
    Namespace(String),
}

/// The admin UI's settings; see the module docs.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    namespace: String,
    auth: AdminAuth,
    read_only: bool,
    stats_interval: Duration,
}

impl AdminConfig {
    /// Settings with `auth`, checked (a basic auth's hash must parse as bcrypt), in the default
    /// namespace, not read-only.
    pub fn new(auth: AdminAuth) -> Result<Self, AdminConfigError> {
        if let AdminAuth::Basic { username, password_hash } = &auth {
            if username.is_empty() {
                return Err(AdminConfigError::EmptyUsername);
            }
            let parts = bcrypt::HashParts::from_str(password_hash)
                .map_err(|e| AdminConfigError::InvalidHash(e.to_string()))?;
            if parts.get_cost() > MAX_BCRYPT_COST {
                return Err(AdminConfigError::CostTooHigh(parts.get_cost()));
            }
        }
        Ok(Self {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            auth,
            read_only: false,
            stats_interval: STATS_INTERVAL,
        })
    }

    /// The namespace the UI connects to; default `/admin` (the UI's default too).
    pub fn with_namespace(mut self, name: &str) -> Result<Self, AdminConfigError> {
        if !name.starts_with('/') || name == "/" {
            return Err(AdminConfigError::Namespace(name.to_owned()));
        }
        self.namespace = name.to_owned();
        Ok(self)
    }

    /// Read-only: the UI shows everything but may not emit, join, leave or disconnect; default
    /// false, as in the admin-ui.
    pub fn with_read_only(mut self, on: bool) -> Self {
        self.read_only = on;
        self
    }

    /// How often stats are sent; default [`STATS_INTERVAL`] (tests make it shorter).
    pub fn with_stats_interval(mut self, every: Duration) -> Self {
        self.stats_interval = every;
        self
    }

    /// The admin namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

struct Shared {
    config: AdminConfig,
    gate: Gate,
    feed: Arc<Feed>,
    /// Session ids of password logins, from the middleware to the connection handler.
    new_sessions: DashMap<SocketId, String>,
}

/// The admin UI on one node: wrap the adapter factory with [`Admin::adapter_factory`] before the
/// server is built, then [`Admin::install`] on it. Its tasks stop when it is dropped.
pub struct Admin {
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Admin {
    /// The admin UI with `config`, not installed yet.
    pub fn new(config: AdminConfig) -> Self {
        let gate = Gate::new(config.auth.clone());
        let shared = Shared { config, gate, feed: Arc::new(Feed::new()), new_sessions: DashMap::new() };
        Self { shared: Arc::new(shared), stop: CancellationToken::new() }
    }

    /// `inner` with every namespace's adapter observed, so the UI hears of every join and leave.
    pub fn adapter_factory(&self, inner: Arc<dyn AdapterFactory>) -> Arc<dyn AdapterFactory> {
        Arc::new(ObservedFactory { inner, feed: self.shared.feed.clone() })
    }

    /// Opens the admin namespace on `io` (built with [`Admin::adapter_factory`]) and starts
    /// reporting. Call it once, from a Tokio runtime.
    pub fn install(&self, io: &SocketIo) {
        let shared = &self.shared;
        let config = &shared.config;
        match &config.auth {
            AdminAuth::None => tracing::warn!(
                namespace = config.namespace,
                "admin UI without authentication (--admin-auth none): anyone who reaches this node can see and \
                 act on every socket"
            ),
            AdminAuth::Basic { username, .. } => {
                tracing::info!(
                    namespace = config.namespace,
                    username,
                    read_only = config.read_only,
                    "admin UI on"
                )
            }
        }
        let admin = io.of(&config.namespace);

        let middleware = shared.clone();
        admin.use_middleware(move |socket: SocketRef| {
            let shared = middleware.clone();
            async move {
                if let Some(session) = shared.gate.check(&socket.handshake().auth).await?
                    // Bounded like the sessions: a socket whose connection went before its
                    // handler ran leaves its entry behind; past this the UI just logs in again.
                    && shared.new_sessions.len() < auth::MAX_SESSIONS
                {
                    shared.new_sessions.insert(socket.id().clone(), session);
                }
                Ok(())
            }
        });

        let observer = shared.clone();
        io.on_any_connection(move |socket| {
            observer.feed.send(Notice::connected(serialize::socket(socket)));
            let shared = observer.clone();
            socket.on_disconnect(move |socket, reason| {
                shared.new_sessions.remove(socket.id());
                shared.feed.send(Notice::disconnected(
                    socket.namespace().name(),
                    socket.id(),
                    reason.as_str(),
                ));
            });
        });

        let mut features: Vec<&str> = if config.read_only { Vec::new() } else { COMMAND_FEATURES.to_vec() };
        features.extend(["AGGREGATED_EVENTS", "ALL_EVENTS"]);
        let on_connection = (shared.clone(), io.clone(), admin.clone());
        admin.on_connection(move |socket: SocketRef| {
            let (shared, io, admin) = on_connection.clone();
            let features = features.clone();
            async move {
                if let Some((_, session)) = shared.new_sessions.remove(socket.id()) {
                    let _ = socket.emit("session", vec![Value::from(session)]);
                }
                if !shared.config.read_only {
                    commands::register(&socket, &io, &admin);
                }
                let _ = socket
                    .emit("config", vec![Value::from(serde_json::json!({"supportedFeatures": features}))]);
                let sockets = commands::all_sockets(&io, &admin).await;
                let _ = socket.emit("all_sockets", vec![Value::from(serde_json::Value::Array(sockets))]);
            }
        });

        let answer = io.clone();
        admin.on_server_side(SOCKETS_EVENT, move |event| {
            if let Some(ack) = event.ack {
                // Up to 10,000 sockets to serialize: not on the adapter's receive task.
                let io = answer.clone();
                tokio::spawn(async move {
                    ack.send(vec![Value::from(serde_json::Value::Array(commands::local_sockets(&io)))]);
                });
            }
        });
        if !config.read_only {
            let apply = io.clone();
            admin.on_server_side(COMMAND_EVENT, move |event| {
                let command =
                    event.args.first().and_then(Value::to_json).map(serde_json::from_value::<Command>);
                if let Some(Ok(command)) = command {
                    let io = apply.clone();
                    tokio::spawn(async move { command.apply(&io).await });
                }
            });
        }

        if let Some(mut notices) = shared.feed.take_receiver() {
            let (admin, stop) = (admin.clone(), self.stop.clone());
            tokio::spawn(async move {
                while let Some(Some(notice)) = stop.run_until_cancelled(notices.recv()).await {
                    let (event, args) = notice.into_emit();
                    if let Err(error) = admin.broadcast().emit(event, args).await {
                        tracing::debug!(%error, event, "admin UI: notice not sent");
                    }
                }
            });
        }

        let (io, stop, every) = (io.clone(), self.stop.clone(), config.stats_interval);
        tokio::spawn(async move {
            let mut stats = Stats::new(&io);
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while stop.run_until_cancelled(ticks.tick()).await.is_some() {
                let report = stats.report(&io);
                if let Err(error) = admin.broadcast().emit("server_stats", vec![Value::from(report)]).await {
                    tracing::debug!(%error, "admin UI: stats not sent");
                }
            }
        });
    }
}
