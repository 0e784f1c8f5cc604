//! Everything a node is told at start-up, as flags and `SWITCHBOARD_*` environment variables
//! (docs/configuration.md lists them), and the checks that refuse a bad value before anything
//! starts.
//!
//! One syntax per kind: durations are milliseconds (as socket.io's options), sizes are bytes, and
//! a boolean is `--flag` (true), `--flag true` or `--flag false` (env: `true` or `false`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use switchboard_adapter::cluster::{ClusterConfig, NodeId};
use switchboard_adapter::recovery::SessionStoreFactory;

use crate::admin::{AdminAuth, AdminConfig, AdminConfigError};
use crate::cluster::{Backend, BrokerAuth};
use crate::engine::{ConfigError, CookieConfig, CorsConfig, EngineConfig, Transports};
use crate::socketio::{RecoveryConfig, SocketIoConfig};

/// The largest `--max-name-bytes`: escaped for NATS (up to 3 bytes per byte), a name must stay well
/// inside the 4 KiB protocol line that carries a subject.
const MAX_NAME_BYTES: usize = 1024;

/// Longest `--max-disconnection-duration`: a day, like the heartbeat timers.
const MAX_RECOVERY_WINDOW_MS: u64 = 86_400_000;

/// Which adapter joins the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AdapterKind {
    /// One node on its own.
    Memory,
    /// Redis pub/sub, sharded over `--redis-url`s.
    Redis,
    /// NATS core pub/sub at `--nats-url`.
    Nats,
}

impl AdapterKind {
    /// The flag value, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis => "redis",
            Self::Nats => "nats",
        }
    }
}

/// Which wire format `--adapter redis` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RedisFormat {
    /// Switchboard's own cluster format (sharded over `--redis-url`s, heartbeats, interest routing).
    Native,
    /// `@socket.io/redis-adapter` 8.x (classic): a member of a Node socket.io cluster, and a
    /// receiver of `@socket.io/redis-emitter`.
    Node,
}

/// A node's options (every flag but `--app` and `--workers`, which pick what runs and the runtime).
#[derive(Debug, Clone, clap::Args)]
pub struct NodeOptions {
    /// Address to listen on.
    #[arg(long, env = "SWITCHBOARD_HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Port to listen on.
    #[arg(long, env = "SWITCHBOARD_PORT", default_value_t = 3000)]
    pub port: u16,
    /// Mount path of Engine.IO.
    #[arg(long, env = "SWITCHBOARD_PATH", default_value = "/socket.io/")]
    pub path: String,
    /// Milliseconds between server pings.
    #[arg(long, env = "SWITCHBOARD_PING_INTERVAL", default_value_t = 25_000)]
    pub ping_interval: u64,
    /// Milliseconds a pong may take.
    #[arg(long, env = "SWITCHBOARD_PING_TIMEOUT", default_value_t = 20_000)]
    pub ping_timeout: u64,
    /// Largest polling body or websocket message, in bytes.
    #[arg(long, env = "SWITCHBOARD_MAX_HTTP_BUFFER_SIZE", default_value_t = 1_000_000)]
    pub max_http_buffer_size: usize,
    /// Accepted transports, comma-separated.
    #[arg(long, env = "SWITCHBOARD_TRANSPORTS", default_value = "polling,websocket", value_delimiter = ',')]
    pub transports: Vec<String>,
    /// Allow polling sessions to upgrade to websocket.
    #[arg(long, env = "SWITCHBOARD_ALLOW_UPGRADES", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub allow_upgrades: bool,
    /// Milliseconds an upgrade may take.
    #[arg(long, env = "SWITCHBOARD_UPGRADE_TIMEOUT", default_value_t = 10_000)]
    pub upgrade_timeout: u64,
    /// Largest request head (request line and headers), in bytes; a larger one gets 431.
    #[arg(long, env = "SWITCHBOARD_MAX_HEADER_SIZE", default_value_t = 16 * 1024)]
    pub max_header_size: usize,
    /// Milliseconds a polling POST body may take to arrive (default: --ping-timeout).
    #[arg(long, env = "SWITCHBOARD_BODY_TIMEOUT")]
    pub body_timeout: Option<u64>,
    /// Milliseconds a client may take no bytes of a response or websocket write before it is
    /// dropped (default: --ping-timeout).
    #[arg(long, env = "SWITCHBOARD_WRITE_TIMEOUT")]
    pub write_timeout: Option<u64>,
    /// Compress polling responses of at least this many bytes (0 turns compression off).
    #[arg(long, env = "SWITCHBOARD_HTTP_COMPRESSION_THRESHOLD", default_value_t = 1024)]
    pub http_compression_threshold: usize,
    /// Allowed CORS origin (repeatable, or comma-separated; `*` for any). CORS is off without one.
    #[arg(long = "cors-origin", env = "SWITCHBOARD_CORS_ORIGIN", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Allow credentials (cookies) on cross-origin requests.
    #[arg(long, env = "SWITCHBOARD_CORS_CREDENTIALS", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub cors_credentials: bool,
    /// Set a handshake cookie with this name (sticky sessions at the load balancer).
    #[arg(long, env = "SWITCHBOARD_COOKIE")]
    pub cookie: Option<String>,
    /// This node's id, the prefix of its session ids (default: random).
    #[arg(long, env = "SWITCHBOARD_NODE_ID")]
    pub node_id: Option<String>,
    /// Milliseconds a connection may take to join a namespace.
    #[arg(long, env = "SWITCHBOARD_CONNECT_TIMEOUT", default_value_t = 45_000)]
    pub connect_timeout: u64,
    /// Longest room or namespace name, in bytes (a name may become a broker subject or channel).
    #[arg(long, env = "SWITCHBOARD_MAX_NAME_BYTES", default_value_t = 256)]
    pub max_name_bytes: usize,
    /// Most rooms one socket may be in (its own id room included).
    #[arg(long, env = "SWITCHBOARD_MAX_ROOMS_PER_SOCKET", default_value_t = 1_000)]
    pub max_rooms_per_socket: usize,
    /// Most namespaces one connection may join.
    #[arg(long, env = "SWITCHBOARD_MAX_NAMESPACES_PER_CLIENT", default_value_t = 100)]
    pub max_namespaces_per_client: usize,
    /// Milliseconds an emptied child namespace of a dynamic pattern is kept before it is removed
    /// with its subscriptions and metric series (0 keeps them forever).
    #[arg(long, env = "SWITCHBOARD_CHILD_NAMESPACE_CLEANUP", default_value_t = 5_000)]
    pub child_namespace_cleanup: u64,
    /// Ship the `cookie` and `authorization` headers of a socket's handshake to other nodes that
    /// fetch it (fetchSockets); off, so credentials never travel through the broker.
    #[arg(long, env = "SWITCHBOARD_FETCH_SOCKETS_CREDENTIALS", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub fetch_sockets_credentials: bool,
    /// Connection state recovery (socket.io's `connectionStateRecovery`): a client whose
    /// connection drops gets its socket back (id, rooms, data) with the packets it missed; with
    /// `--adapter redis` on any node (sessions and log in Redis); refused with `nats` for now.
    #[arg(long, env = "SWITCHBOARD_CONNECTION_STATE_RECOVERY", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub connection_state_recovery: bool,
    /// Milliseconds a disconnected socket stays restorable (socket.io's `maxDisconnectionDuration`).
    #[arg(long, env = "SWITCHBOARD_MAX_DISCONNECTION_DURATION", default_value_t = 120_000)]
    pub max_disconnection_duration: u64,
    /// Whether a restored socket skips the namespace's connect middleware (socket.io's `skipMiddlewares`).
    #[arg(long, env = "SWITCHBOARD_RECOVERY_SKIP_MIDDLEWARES", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub recovery_skip_middlewares: bool,
    /// Most packets each namespace's recovery log keeps.
    #[arg(long, env = "SWITCHBOARD_RECOVERY_MAX_LOG_PACKETS", default_value_t = 10_000)]
    pub recovery_max_log_packets: usize,
    /// Most bytes each namespace's recovery log keeps (with Redis: each node's copy of it).
    #[arg(long, env = "SWITCHBOARD_RECOVERY_MAX_LOG_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub recovery_max_log_bytes: usize,
    /// Most disconnected sessions each namespace keeps for recovery (in memory; Redis keeps
    /// each for the window).
    #[arg(long, env = "SWITCHBOARD_RECOVERY_MAX_SESSIONS", default_value_t = 10_000)]
    pub recovery_max_sessions: usize,
    /// Cluster adapter: `memory` (one node), `redis` or `nats`.
    #[arg(long, env = "SWITCHBOARD_ADAPTER", value_enum, default_value_t = AdapterKind::Memory)]
    pub adapter: AdapterKind,
    /// Redis URLs for `--adapter redis`, repeatable or comma-separated: channels are spread over
    /// them. `redis://user:password@host:port` authenticates (ACL user, or `:password@` for
    /// requirepass); `rediss://` connects over TLS. The values are never printed (they hold passwords).
    #[arg(
        long = "redis-url",
        env = "SWITCHBOARD_REDIS_URL",
        value_delimiter = ',',
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_urls: Vec<String>,
    /// PEM file of the CA certificates that `rediss://` instances' certificates must chain to
    /// (default: the system's roots).
    #[arg(long, env = "SWITCHBOARD_REDIS_TLS_CA")]
    pub redis_tls_ca: Option<PathBuf>,
    /// PEM client certificate for Redis instances that verify clients (`tls-auth-clients yes`),
    /// with `--redis-tls-key`.
    #[arg(long, env = "SWITCHBOARD_REDIS_TLS_CERT", requires = "redis_tls_key")]
    pub redis_tls_cert: Option<PathBuf>,
    /// PEM private key of `--redis-tls-cert`.
    #[arg(long, env = "SWITCHBOARD_REDIS_TLS_KEY", requires = "redis_tls_cert")]
    pub redis_tls_key: Option<PathBuf>,
    /// Wire format of `--adapter redis`: `native` (Switchboard's) or `node`
    /// (`@socket.io/redis-adapter` 8.x, to join a Node socket.io cluster; one `--redis-url`).
    #[arg(long, env = "SWITCHBOARD_REDIS_FORMAT", value_enum, default_value_t = RedisFormat::Native)]
    pub redis_format: RedisFormat,
    /// Channel key of `--redis-format node` and `--redis-emitter` (the Node adapter's and emitter's `key` option).
    #[arg(long, env = "SWITCHBOARD_REDIS_NODE_KEY", default_value = "socket.io")]
    pub redis_node_key: String,
    /// With `--adapter redis` in the native format, also apply `@socket.io/redis-emitter` messages
    /// (published under `--redis-node-key` on the first `--redis-url`) to this node's sockets.
    #[arg(long, env = "SWITCHBOARD_REDIS_EMITTER", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub redis_emitter: bool,
    /// NATS URLs for `--adapter nats` (servers of one NATS cluster), repeatable or comma-separated.
    /// `nats://user:password@host:port` or `nats://token@host:port` authenticates; `tls://`
    /// requires TLS. The values are never printed.
    #[arg(
        long = "nats-url",
        env = "SWITCHBOARD_NATS_URL",
        value_delimiter = ',',
        default_value = "nats://127.0.0.1:4222",
        hide_env_values = true
    )]
    pub nats_urls: Vec<String>,
    /// NATS `.creds` file (user JWT and nkey seed) to authenticate with.
    #[arg(long, env = "SWITCHBOARD_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// File holding a NATS user nkey seed (`SU…`) to authenticate with.
    #[arg(long, env = "SWITCHBOARD_NATS_NKEY")]
    pub nats_nkey: Option<PathBuf>,
    /// PEM file of the CA certificates the NATS server's certificate must chain to; requires TLS.
    #[arg(long, env = "SWITCHBOARD_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,
    /// PEM client certificate for NATS mutual TLS (with `--nats-tls-key`).
    #[arg(long, env = "SWITCHBOARD_NATS_TLS_CERT", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<PathBuf>,
    /// PEM private key of `--nats-tls-cert`.
    #[arg(long, env = "SWITCHBOARD_NATS_TLS_KEY", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,
    /// Prefix of the cluster's Redis channels / NATS subjects: nodes with the same prefix form one cluster.
    #[arg(long, env = "SWITCHBOARD_CLUSTER_PREFIX", default_value = "switchboard")]
    pub cluster_prefix: String,
    /// Shared secret that authenticates every cluster message (HMAC); at least 16 bytes, the same
    /// on every node. Without it, anyone who can publish on the broker can speak for a node.
    #[arg(long, env = "SWITCHBOARD_CLUSTER_SECRET", value_parser = parse_secret, hide_env_values = true)]
    pub cluster_secret: Option<Secret>,
    /// Largest cluster message sent or read, in bytes; a larger one from the broker is dropped unread.
    #[arg(long, env = "SWITCHBOARD_CLUSTER_MAX_MESSAGE_SIZE", default_value_t = 4 << 20)]
    pub cluster_max_message_size: usize,
    /// Most cluster peers a node keeps track of (a broker publisher cannot make it hold more).
    #[arg(long, env = "SWITCHBOARD_CLUSTER_MAX_PEERS", default_value_t = 1024)]
    pub cluster_max_peers: usize,
    /// Most answers a broadcast with acks waits for from other nodes.
    #[arg(long, env = "SWITCHBOARD_CLUSTER_MAX_REMOTE_ACKS", default_value_t = 1 << 20)]
    pub cluster_max_remote_acks: usize,
    /// Serve `/metrics`, `/healthz` and `/readyz` on this port (then `/metrics` is not on the
    /// public port; the health endpoints are on both).
    #[arg(long, env = "SWITCHBOARD_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// Milliseconds over which SIGTERM disconnects the clients (in random batches) before exiting
    /// (0: all at once); keep it below the pod's terminationGracePeriodSeconds.
    #[arg(long, env = "SWITCHBOARD_DRAIN_WINDOW", default_value_t = 10_000)]
    pub drain_window: u64,
    /// Pass polling requests and websocket upgrades for sessions of other nodes to their owner
    /// (found from the sid and cluster membership), so a balancer without sticky sessions works;
    /// `--forward-polling false` turns it off. Needs `--adapter redis|nats` in the native format
    /// (`--redis-format node` has no membership to find owners with: there it is off).
    #[arg(long, env = "SWITCHBOARD_FORWARD_POLLING", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub forward_polling: bool,
    /// `host:port` where the other nodes reach this one to forward requests (on Kubernetes: the
    /// pod IP and port). Default: the listen address, or this host's outward IP when listening
    /// on all interfaces.
    #[arg(long, env = "SWITCHBOARD_ADVERTISE_ADDRESS")]
    pub advertise_address: Option<String>,
    /// Open the socket.io admin UI: its page at `/admin/` and its namespace (docs/admin-ui.md).
    #[arg(long, env = "SWITCHBOARD_ADMIN_UI", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub admin_ui: bool,
    /// How the admin UI logs in: `basic` (--admin-username and --admin-password-hash) or `none`
    /// (anyone who reaches the node; logged as a warning).
    #[arg(long, env = "SWITCHBOARD_ADMIN_AUTH", value_enum, default_value_t = AdminAuthKind::Basic)]
    pub admin_auth: AdminAuthKind,
    /// The admin UI's username (basic auth).
    #[arg(long, env = "SWITCHBOARD_ADMIN_USERNAME")]
    pub admin_username: Option<String>,
    /// The bcrypt hash of the admin UI's password (basic auth), e.g. from `htpasswd -nbBC 10 "" pw`.
    #[arg(long, env = "SWITCHBOARD_ADMIN_PASSWORD_HASH", hide_env_values = true)]
    pub admin_password_hash: Option<String>,
    /// The admin UI may look but not emit, join, leave or disconnect.
    #[arg(long, env = "SWITCHBOARD_ADMIN_READ_ONLY", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub admin_read_only: bool,
    /// The admin UI's Socket.IO namespace.
    #[arg(long, env = "SWITCHBOARD_ADMIN_NAMESPACE", default_value = crate::admin::DEFAULT_NAMESPACE)]
    pub admin_namespace: String,
}

/// How the admin UI logs in (`--admin-auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AdminAuthKind {
    /// Username and bcrypt password hash, as the admin-ui's `auth: {type: "basic"}`.
    Basic,
    /// No login: said explicitly, never the default.
    None,
}

/// A secret from the command line or the environment, never printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

fn parse_secret(s: &str) -> Result<Secret, String> {
    match s.len() {
        n if n < MIN_SECRET_LEN => {
            Err(format!("a cluster secret needs at least {MIN_SECRET_LEN} bytes, not {n}"))
        }
        _ => Ok(Secret(s.to_owned())),
    }
}

/// The shortest `--cluster-secret` (the cluster adapter's own minimum).
const MIN_SECRET_LEN: usize = switchboard_adapter::cluster::MIN_SECRET_LEN;

/// Why a node refused its options at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// `--transports` names something else than polling and websocket.
    #[error("unknown transport {0:?} (expected polling, websocket)")]
    UnknownTransport(String),
    /// `--node-id` would not fit a session id prefix, a Redis channel or a NATS subject.
    #[error("--node-id must be 1 to {} characters of A-Z a-z 0-9 - _", NodeId::MAX_LEN)]
    NodeId,
    /// An Engine.IO option is out of range.
    #[error("{}", engine_message(.0))]
    Engine(ConfigError),
    /// The cluster options do not fit together.
    #[error("cluster options: {0}")]
    Cluster(String),
    /// `--advertise-address` is not something peers can dial.
    #[error("--advertise-address must be host:port (for example 10.0.0.7:3000), not {0:?}")]
    AdvertiseAddress(String),
    /// `--max-name-bytes` is 0, or so long that an escaped name may not fit a NATS subject.
    #[error(
        "--max-name-bytes must be between 1 and {MAX_NAME_BYTES}, not {0}: a room name becomes a broker subject or channel"
    )]
    MaxNameBytes(usize),
    /// The connection state recovery options do not fit together.
    #[error("{0}")]
    Recovery(String),
    /// A file named by a flag cannot be read, or does not hold what the flag expects.
    #[error("{flag} {path}: {reason}")]
    File {
        /// The flag, e.g. `--redis-tls-ca`.
        flag: &'static str,
        /// The path given.
        path: String,
        /// What is wrong (never the file's contents).
        reason: String,
    },
    /// A setting was renamed: the old name would be ignored silently, so it is refused.
    #[error("{old} is no longer read: use {new} ({unit})")]
    Renamed {
        /// The old name.
        old: &'static str,
        /// Its replacement.
        new: &'static str,
        /// The replacement's unit.
        unit: &'static str,
    },
    /// The admin UI's options are missing or wrong.
    #[error("{0}")]
    Admin(String),
}

/// A [`ConfigError`] in the words of the command line: `--ping-interval`, not `ping_interval`.
fn engine_message(error: &ConfigError) -> String {
    let text = error.to_string();
    match error {
        ConfigError::Timer { setting, .. } | ConfigError::Size { setting, .. } => {
            text.replacen(setting, &format!("--{}", setting.replace('_', "-")), 1)
        }
        _ => text.replace("(*) with credentials", "(--cors-origin '*') with --cors-credentials"),
    }
}

impl NodeOptions {
    /// The Engine.IO options these flags give.
    pub fn engine_config(&self) -> Result<EngineConfig, OptionsError> {
        let mut transports = Transports { polling: false, websocket: false };
        for t in &self.transports {
            match t.trim() {
                "polling" => transports.polling = true,
                "websocket" => transports.websocket = true,
                other => return Err(OptionsError::UnknownTransport(other.to_owned())),
            }
        }
        let mut config = EngineConfig::default()
            .with_path(&self.path)
            .with_ping_interval(Duration::from_millis(self.ping_interval))
            .with_ping_timeout(Duration::from_millis(self.ping_timeout))
            .with_max_http_buffer_size(self.max_http_buffer_size)
            .with_transports(transports)
            .with_allow_upgrades(self.allow_upgrades)
            .with_upgrade_timeout(Duration::from_millis(self.upgrade_timeout))
            .with_http_compression(
                (self.http_compression_threshold > 0).then_some(self.http_compression_threshold),
            )
            .with_cors((!self.cors_origins.is_empty()).then(|| CorsConfig {
                origins: self.cors_origins.clone(),
                credentials: self.cors_credentials,
                max_age: None,
            }))
            .with_cookie(
                self.cookie.as_ref().map(|name| CookieConfig { name: name.clone(), ..Default::default() }),
            );
        config = config.with_max_header_size(self.max_header_size);
        if let Some(ms) = self.body_timeout {
            config = config.with_body_timeout(Duration::from_millis(ms));
        }
        if let Some(ms) = self.write_timeout {
            config = config.with_write_timeout(Duration::from_millis(ms));
        }
        if let Some(id) = &self.node_id {
            // The cluster's rule: the id is also the node's name on Redis channels and NATS subjects.
            if !NodeId::is_valid(id) {
                return Err(OptionsError::NodeId);
            }
            config = config.with_node_id(id);
        }
        config.validate().map_err(OptionsError::Engine)?;
        Ok(config)
    }

    /// This node's id: `--node-id`, or a random one chosen now and kept, so the logs (set up
    /// before the node starts) and the session ids name the same node.
    pub fn resolve_node_id(&mut self) -> &str {
        self.node_id.get_or_insert_with(crate::engine::sid::random_node_id)
    }

    /// The Socket.IO options these flags give (the adapter is the node's to add);
    /// `recovery_store`: where a cluster adapter keeps recovery's sessions and log (its broker).
    pub fn socketio_config(
        &self,
        recovery_store: Option<Arc<dyn SessionStoreFactory>>,
    ) -> Result<SocketIoConfig, OptionsError> {
        if self.max_name_bytes == 0 || self.max_name_bytes > MAX_NAME_BYTES {
            return Err(OptionsError::MaxNameBytes(self.max_name_bytes));
        }
        let cleanup =
            (self.child_namespace_cleanup > 0).then(|| Duration::from_millis(self.child_namespace_cleanup));
        let config = SocketIoConfig::default()
            .with_connect_timeout(Duration::from_millis(self.connect_timeout))
            .with_max_name_bytes(self.max_name_bytes)
            .with_max_rooms_per_socket(self.max_rooms_per_socket)
            .with_max_namespaces_per_client(self.max_namespaces_per_client)
            .with_child_namespace_cleanup(cleanup)
            .with_fetch_sockets_credentials(self.fetch_sockets_credentials);
        Ok(match self.recovery_config(recovery_store)? {
            Some(recovery) => config.with_connection_state_recovery(recovery),
            None => config,
        })
    }

    /// The admin UI's settings, `None` when `--admin-ui` is off. Basic auth (the default) needs a
    /// username and a bcrypt hash: without them the node does not start, rather than open the
    /// admin namespace to anyone.
    pub fn admin_config(&self) -> Result<Option<AdminConfig>, OptionsError> {
        if !self.admin_ui {
            return Ok(None);
        }
        let auth = match (self.admin_auth, &self.admin_username, &self.admin_password_hash) {
            (AdminAuthKind::None, ..) => AdminAuth::None,
            (AdminAuthKind::Basic, Some(username), Some(hash)) => {
                AdminAuth::Basic { username: username.clone(), password_hash: hash.trim().to_owned() }
            }
            (AdminAuthKind::Basic, ..) => {
                return Err(OptionsError::Admin(
                    "--admin-ui needs --admin-username and --admin-password-hash (a bcrypt hash), or \
                     --admin-auth none to open it to anyone who reaches the node"
                        .into(),
                ));
            }
        };
        let admin = |e: AdminConfigError| OptionsError::Admin(format!("--admin-ui: {e}"));
        let config =
            AdminConfig::new(auth).map_err(admin)?.with_namespace(&self.admin_namespace).map_err(admin)?;
        Ok(Some(config.with_read_only(self.admin_read_only)))
    }

    /// Connection state recovery's options, `None` when it is off. With `--adapter redis` its
    /// sessions and log are in Redis (`recovery_store`), so any node restores any client; NATS
    /// has no store yet and is refused (its log would be one node's: a client restored by
    /// another node would miss packets silently).
    fn recovery_config(
        &self,
        recovery_store: Option<Arc<dyn SessionStoreFactory>>,
    ) -> Result<Option<RecoveryConfig>, OptionsError> {
        if !self.connection_state_recovery {
            return Ok(None);
        }
        let store = match (self.adapter, recovery_store) {
            (AdapterKind::Memory, _) => None,
            (AdapterKind::Redis, _) if self.redis_format == RedisFormat::Node => {
                return Err(OptionsError::Recovery(
                    "--connection-state-recovery does not work with --redis-format node: Node's \
                     @socket.io/redis-adapter keeps no log, so packets its nodes broadcast could not be \
                     replayed (use the native format, or Node's redis-streams adapter on the Node side)"
                        .into(),
                ));
            }
            (AdapterKind::Redis, _) if self.redis_emitter => {
                return Err(OptionsError::Recovery(
                    "--connection-state-recovery does not work with --redis-emitter yet: what the \
                     emitter publishes reaches clients outside the recovery log, so a restored client \
                     would silently miss it"
                        .into(),
                ));
            }
            (AdapterKind::Redis, Some(store)) => Some(store),
            (AdapterKind::Redis, None) => {
                return Err(OptionsError::Recovery(
                    "--connection-state-recovery with --adapter redis needs the Redis store".into(),
                ));
            }
            (AdapterKind::Nats, _) => {
                return Err(OptionsError::Recovery(
                    "--connection-state-recovery works with --adapter memory or redis, not nats yet: \
                     its JetStream store is the next step, and without it the log is kept on one node, \
                     so a client restored by another node would miss packets"
                        .into(),
                ));
            }
        };
        if self.max_disconnection_duration == 0 || self.max_disconnection_duration > MAX_RECOVERY_WINDOW_MS {
            return Err(OptionsError::Recovery(format!(
                "--max-disconnection-duration must be 1 to {MAX_RECOVERY_WINDOW_MS} ms (a day), not {}",
                self.max_disconnection_duration
            )));
        }
        for (flag, value) in [
            ("--recovery-max-log-packets", self.recovery_max_log_packets),
            ("--recovery-max-log-bytes", self.recovery_max_log_bytes),
            ("--recovery-max-sessions", self.recovery_max_sessions),
        ] {
            if value == 0 {
                return Err(OptionsError::Recovery(format!("{flag} must be at least 1")));
            }
        }
        Ok(Some(
            RecoveryConfig::default()
                .with_max_disconnection_duration(Duration::from_millis(self.max_disconnection_duration))
                .with_skip_middlewares(self.recovery_skip_middlewares)
                .with_max_log_packets(self.recovery_max_log_packets)
                .with_max_log_bytes(self.recovery_max_log_bytes)
                .with_max_sessions(self.recovery_max_sessions),
        )
        .map(|config| match store {
            Some(store) => config.with_store(store),
            None => config,
        }))
    }

    /// The broker the node joins; an application without Socket.IO joins none.
    pub fn backend(&self, uses_cluster: bool) -> Backend {
        match self.adapter {
            _ if !uses_cluster => Backend::Memory,
            AdapterKind::Memory => Backend::Memory,
            AdapterKind::Redis if self.redis_format == RedisFormat::Node => Backend::RedisNode {
                url: self.redis_urls.first().cloned().unwrap_or_default(),
                key: self.redis_node_key.clone(),
            },
            AdapterKind::Redis if self.redis_emitter => {
                Backend::RedisWithEmitter { urls: self.redis_urls.clone(), key: self.redis_node_key.clone() }
            }
            AdapterKind::Redis => Backend::Redis { urls: self.redis_urls.clone() },
            AdapterKind::Nats => Backend::Nats { urls: self.nats_urls.clone() },
        }
    }

    /// The broker credentials and certificates the flags name, read (and checked) now, so a
    /// missing or wrong file fails at start-up with the flag's name.
    pub fn broker_auth(&self) -> Result<BrokerAuth, OptionsError> {
        let pem = |flag: &'static str, path: &Option<PathBuf>, marker: &str| {
            path.as_deref().map(|path| read_pem(flag, path, marker)).transpose()
        };
        let redis_tls_ca = pem("--redis-tls-ca", &self.redis_tls_ca, "CERTIFICATE")?;
        let redis_tls_client = pem("--redis-tls-cert", &self.redis_tls_cert, "CERTIFICATE")?.zip(pem(
            "--redis-tls-key",
            &self.redis_tls_key,
            "PRIVATE KEY",
        )?);
        pem("--nats-tls-ca", &self.nats_tls_ca, "CERTIFICATE")?;
        pem("--nats-tls-cert", &self.nats_tls_cert, "CERTIFICATE")?;
        pem("--nats-tls-key", &self.nats_tls_key, "PRIVATE KEY")?;
        let secret = |flag: &'static str, path: &Option<PathBuf>| {
            path.as_deref().map(|path| read_text(flag, path)).transpose()
        };
        Ok(BrokerAuth {
            redis_tls_ca,
            redis_tls_client,
            nats_tls_ca: self.nats_tls_ca.clone(),
            nats_tls_client: self.nats_tls_cert.clone().zip(self.nats_tls_key.clone()),
            nats_creds: secret("--nats-creds", &self.nats_creds)?,
            nats_nkey: secret("--nats-nkey", &self.nats_nkey)?,
        })
    }

    /// The cluster adapter's options for node `node_id`, announcing `address` to its peers.
    pub fn cluster_config(
        &self,
        node_id: &str,
        address: Option<&str>,
    ) -> Result<ClusterConfig, OptionsError> {
        let mut config = ClusterConfig::new(node_id)
            .map_err(|_| OptionsError::NodeId)?
            .with_max_message_size(self.cluster_max_message_size)
            .with_max_peers(self.cluster_max_peers)
            .with_max_remote_acks(self.cluster_max_remote_acks)
            // What other nodes may ask of this one's sockets, as its own clients may.
            .with_max_name_bytes(self.max_name_bytes)
            .with_max_rooms_per_join(self.max_rooms_per_socket);
        if let Some(address) = address {
            config = config.with_address(address);
        }
        if let Some(secret) = &self.cluster_secret {
            config = config.with_secret(secret.expose());
        }
        config.validate().map_err(|e| OptionsError::Cluster(e.to_string()))?;
        if self.redis_emitter {
            self.check_redis_emitter()?;
        }
        if self.adapter == AdapterKind::Redis && self.redis_format == RedisFormat::Node {
            if self.redis_urls.len() != 1 {
                return Err(OptionsError::Cluster(
                    "--redis-format node takes exactly one --redis-url: Node's redis-adapter does not spread channels over instances".into(),
                ));
            }
            if self.cluster_secret.is_some() {
                return Err(OptionsError::Cluster(
                    "--cluster-secret cannot be used with --redis-format node: Node's redis-adapter does not authenticate messages, so the secret would protect nothing; keep Redis private instead".into(),
                ));
            }
            if self.redis_node_key.is_empty() || self.redis_node_key.contains('#') {
                return Err(OptionsError::Cluster(
                    "--redis-node-key must be non-empty without '#', which separates the parts of a channel name".into(),
                ));
            }
        }
        Ok(config)
    }

    /// `--redis-emitter` is for the native Redis format only, under a key of its own.
    fn check_redis_emitter(&self) -> Result<(), OptionsError> {
        let refuse = |why: &str| Err(OptionsError::Cluster(format!("--redis-emitter {why}")));
        if self.adapter != AdapterKind::Redis {
            return refuse(
                "needs --adapter redis: the emitter publishes on Redis, which this adapter does not read",
            );
        }
        if self.redis_format == RedisFormat::Node {
            return refuse("is for --redis-format native: the node format applies emitter messages already");
        }
        if self.redis_node_key.is_empty() || self.redis_node_key.contains('#') {
            return refuse(
                "needs a --redis-node-key that is non-empty without '#', which separates the parts of a channel name",
            );
        }
        let key = self.redis_node_key.as_str();
        if self.cluster_prefix == key || self.cluster_prefix == format!("{key}-request") {
            return refuse(
                "needs a --redis-node-key other than --cluster-prefix: the cluster's own channels would be read as the emitter's",
            );
        }
        Ok(())
    }

    /// The drain window.
    pub fn drain(&self) -> Duration {
        Duration::from_millis(self.drain_window)
    }

    /// Refuses settings that are no longer read, found in `env`, so a deployment written for an
    /// older release does not silently run with a default instead.
    pub fn check_renamed(env: impl Fn(&str) -> Option<String>) -> Result<(), OptionsError> {
        const RENAMED: [(&str, &str, &str); 1] =
            [("SWITCHBOARD_DRAIN_SECONDS", "SWITCHBOARD_DRAIN_WINDOW (--drain-window)", "milliseconds")];
        match RENAMED.iter().find(|(old, _, _)| env(old).is_some()) {
            Some(&(old, new, unit)) => Err(OptionsError::Renamed { old, new, unit }),
            None => Ok(()),
        }
    }

    /// The address announced to peers, checked: peers dial it as `host:port`, so a missing port
    /// or a URL would fail every forward.
    pub fn advertise_address(&self) -> Result<Option<&str>, OptionsError> {
        let Some(address) = &self.advertise_address else { return Ok(None) };
        let valid = address
            .parse::<http::uri::Authority>()
            .is_ok_and(|a| a.port_u16().is_some() && a.as_str() == address.as_str());
        if !valid || address.contains('@') {
            return Err(OptionsError::AdvertiseAddress(address.clone()));
        }
        Ok(Some(address))
    }
}

/// The largest credentials or certificate file a flag may name: a CA bundle is tens of KiB.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The text of the file at `path` (for `flag`), bounded and UTF-8, with an error that names the
/// flag and the path but never the contents.
fn read_text(flag: &'static str, path: &Path) -> Result<String, OptionsError> {
    let error = |reason: String| OptionsError::File { flag, path: path.display().to_string(), reason };
    let size = std::fs::metadata(path).map_err(|e| error(e.to_string()))?.len();
    if size > MAX_FILE_BYTES {
        return Err(error(format!(
            "{size} bytes, more than the {MAX_FILE_BYTES} a credentials file may have"
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    String::from_utf8(bytes).map_err(|_| error("not text".to_owned()))
}

/// The PEM file at `path` (for `flag`), which must hold at least one `-----BEGIN … {marker}-----`.
fn read_pem(flag: &'static str, path: &Path, marker: &str) -> Result<Vec<u8>, OptionsError> {
    let text = read_text(flag, path)?;
    let found = text.lines().any(|l| l.starts_with("-----BEGIN ") && l.ends_with(&format!("{marker}-----")));
    match found {
        true => Ok(text.into_bytes()),
        false => Err(OptionsError::File {
            flag,
            path: path.display().to_string(),
            reason: format!("no PEM {marker} in it"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        node: NodeOptions,
        #[command(flatten)]
        log: crate::node::log::LogOptions,
    }

    fn parse(args: &[&str]) -> Result<NodeOptions, clap::Error> {
        Cli::try_parse_from(std::iter::once("switchboard").chain(args.iter().copied())).map(|c| c.node)
    }

    #[test]
    fn every_boolean_takes_a_bare_flag_true_or_false() {
        let defaults = parse(&[]).map(|o| (o.allow_upgrades, o.cors_credentials, o.forward_polling));
        assert_eq!(defaults.ok(), Some((true, false, true)));
        let bare = parse(&["--allow-upgrades", "--cors-credentials", "--forward-polling", "--port", "1"]);
        assert_eq!(
            bare.map(|o| (o.allow_upgrades, o.cors_credentials, o.forward_polling, o.port)).ok(),
            Some((true, true, true, 1))
        );
        let off =
            parse(&["--allow-upgrades", "false", "--cors-credentials=false", "--forward-polling", "false"]);
        assert_eq!(
            off.map(|o| (o.allow_upgrades, o.cors_credentials, o.forward_polling)).ok(),
            Some((false, false, false))
        );
        assert!(parse(&["--forward-polling", "no"]).is_err(), "one syntax: true or false");
    }

    #[test]
    fn docs_configuration_lists_every_flag_with_its_variable() {
        use clap::CommandFactory;
        let docs = include_str!("../../../docs/configuration.md");
        for arg in Cli::command().get_arguments() {
            let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else { continue };
            let row = format!("| `--{long}` | `{}` |", env.to_string_lossy());
            assert!(docs.contains(&row), "docs/configuration.md lacks the row {row}");
        }
    }

    #[test]
    fn a_name_limit_that_cannot_fit_a_broker_subject_is_refused() {
        for bad in ["0", "5000"] {
            let o = parse(&["--max-name-bytes", bad]).map(|o| o.socketio_config(None).map(|_| ()));
            assert_eq!(
                o.ok(),
                Some(Err(OptionsError::MaxNameBytes(bad.parse().unwrap_or_default()))),
                "{bad}"
            );
        }
        assert!(
            parse(&["--max-name-bytes", "1024"]).map(|o| o.socketio_config(None).is_ok()).unwrap_or(false)
        );
    }

    #[test]
    fn durations_are_milliseconds() {
        let o = parse(&["--drain-window", "2500", "--ping-interval", "300"]);
        assert_eq!(o.map(|o| (o.drain(), o.ping_interval)).ok(), Some((Duration::from_millis(2500), 300)));
        assert!(parse(&["--drain-window", "2.5"]).is_err());
    }

    #[test]
    fn a_renamed_setting_is_refused_with_its_replacement() {
        let renamed =
            NodeOptions::check_renamed(|name| (name == "SWITCHBOARD_DRAIN_SECONDS").then(|| "20".into()));
        let message = renamed.map_err(|e| e.to_string()).err().unwrap_or_default();
        assert_eq!(
            message,
            "SWITCHBOARD_DRAIN_SECONDS is no longer read: use SWITCHBOARD_DRAIN_WINDOW (--drain-window) (milliseconds)"
        );
        assert_eq!(NodeOptions::check_renamed(|_| None), Ok(()));
    }

    #[test]
    fn the_admin_ui_needs_credentials_or_an_explicit_none() {
        assert_eq!(parse(&[]).map(|o| o.admin_config().map(|c| c.is_none())).ok(), Some(Ok(true)));
        let bare = parse(&["--admin-ui"]).map(|o| o.admin_config().map(|_| ()));
        assert!(matches!(bare.ok(), Some(Err(OptionsError::Admin(m))) if m.contains("--admin-auth none")));
        let bad_hash = parse(&["--admin-ui", "--admin-username", "a", "--admin-password-hash", "secret"])
            .map(|o| o.admin_config().map(|_| ()));
        assert!(
            matches!(bad_hash.ok(), Some(Err(OptionsError::Admin(m))) if m.contains("not a bcrypt hash"))
        );
        let hash = "$2a$04$ssdl9rDuYlOOiPkBlXGwae/9K8jVFRzOiwT2bLwgZAHERWD3EPf.m";
        let good = parse(&[
            "--admin-ui",
            "--admin-username",
            "a",
            "--admin-password-hash",
            hash,
            "--admin-read-only",
        ])
        .map(|o| o.admin_config().map(|c| c.map(|c| c.namespace().to_owned())));
        assert_eq!(good.ok(), Some(Ok(Some("/admin".to_owned()))));
        let none = parse(&["--admin-ui", "--admin-auth", "none", "--admin-namespace", "/ops"])
            .map(|o| o.admin_config().map(|c| c.map(|c| c.namespace().to_owned())));
        assert_eq!(none.ok(), Some(Ok(Some("/ops".to_owned()))));
    }

    #[test]
    fn a_bad_node_id_or_advertise_address_is_refused() {
        let bad_id = parse(&["--node-id", "a.b"]).map(|o| o.engine_config().map(|_| ()));
        assert_eq!(bad_id.ok(), Some(Err(OptionsError::NodeId)));
        for bad in ["10.0.0.7", "http://10.0.0.7:3000", "user@10.0.0.7:3000"] {
            let o = parse(&["--advertise-address", bad])
                .map(|o| o.advertise_address().map(|a| a.map(str::to_owned)));
            assert_eq!(o.ok(), Some(Err(OptionsError::AdvertiseAddress(bad.into()))), "{bad}");
        }
        let good = parse(&["--advertise-address", "10.0.0.7:3000"])
            .map(|o| o.advertise_address().map(|a| a.map(str::to_owned)));
        assert_eq!(good.ok(), Some(Ok(Some("10.0.0.7:3000".to_owned()))));
    }

    #[test]
    fn the_node_format_takes_one_redis_and_no_secret() {
        let refused = |args: &[&str]| {
            parse(args)
                .map(|o| matches!(o.cluster_config("n1", None), Err(OptionsError::Cluster(_))))
                .unwrap_or(false)
        };
        let node = ["--adapter", "redis", "--redis-format", "node"];
        assert!(refused(&[&node[..], &["--redis-url", "redis://a:6379,redis://b:6379"]].concat()));
        assert!(refused(&[&node[..], &["--cluster-secret", "0123456789abcdef"]].concat()));
        assert!(refused(&[&node[..], &["--redis-node-key", "a#b"]].concat()));
        let ok =
            parse(&node).map(|o| (o.cluster_config("n1", None).is_ok(), format!("{:?}", o.backend(true))));
        assert_eq!(
            ok.ok(),
            Some((
                true,
                r#"RedisNode { addresses: ["redis://127.0.0.1:6379"], key: "socket.io" }"#.to_owned()
            ))
        );
        // The native format keeps its defaults.
        assert_eq!(parse(&[]).map(|o| o.redis_format).ok(), Some(RedisFormat::Native));
    }

    #[test]
    fn the_emitter_bridge_is_for_the_native_redis_format_only() {
        let refused = |args: &[&str]| {
            parse(args)
                .map(|o| matches!(o.cluster_config("n1", None), Err(OptionsError::Cluster(m)) if m.starts_with("--redis-emitter")))
                .unwrap_or(false)
        };
        assert!(refused(&["--redis-emitter"]), "memory adapter");
        assert!(refused(&["--adapter", "nats", "--redis-emitter"]));
        assert!(refused(&["--adapter", "redis", "--redis-format", "node", "--redis-emitter"]));
        assert!(refused(&["--adapter", "redis", "--redis-emitter", "--cluster-prefix", "socket.io"]));
        assert!(refused(&["--adapter", "redis", "--redis-emitter", "--redis-node-key", "a#b"]));
        let ok = parse(&["--adapter", "redis", "--redis-emitter"])
            .map(|o| (o.cluster_config("n1", None).is_ok(), format!("{:?}", o.backend(true))));
        assert_eq!(
            ok.ok(),
            Some((
                true,
                r#"RedisWithEmitter { addresses: ["redis://127.0.0.1:6379"], key: "socket.io" }"#.to_owned()
            ))
        );
        assert_eq!(parse(&[]).map(|o| o.redis_emitter).ok(), Some(false), "off by default");
        let off = parse(&["--adapter", "redis", "--redis-emitter", "false"])
            .map(|o| format!("{:?}", o.backend(true)));
        assert_eq!(off.ok().as_deref(), Some(r#"Redis { addresses: ["redis://127.0.0.1:6379"] }"#));
    }

    #[test]
    fn recovery_is_refused_where_packets_would_bypass_its_log() {
        let refusal = parse(&["--adapter", "redis", "--redis-format", "node", "--connection-state-recovery"])
            .map(|o| o.socketio_config(None).err().map(|e| e.to_string()));
        let message = refusal.ok().flatten().unwrap_or_default();
        assert!(message.contains("--redis-format node"), "{message}");
        let refusal = parse(&["--adapter", "redis", "--redis-emitter", "--connection-state-recovery"])
            .map(|o| o.socketio_config(None).err().map(|e| e.to_string()));
        let message = refusal.ok().flatten().unwrap_or_default();
        assert!(message.contains("--redis-emitter"), "{message}");
    }
}
