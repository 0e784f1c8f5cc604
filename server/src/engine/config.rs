//! Engine.IO options, named and defaulted as socket.io names and defaults them (its `opts`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::request::HandshakeRequest;

/// Which transports the server accepts; both by default, as in socket.io.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transports {
    /// HTTP long-polling.
    pub polling: bool,
    /// WebSocket.
    pub websocket: bool,
}

impl Default for Transports {
    fn default() -> Self {
        Self { polling: true, websocket: true }
    }
}

/// CORS for browsers on other origins; off unless configured, as in socket.io v3+.
#[derive(Debug, Clone, Default)]
pub struct CorsConfig {
    /// Allowed origins; `*` allows any. Empty allows none.
    pub origins: Vec<String>,
    /// Send `Access-Control-Allow-Credentials: true` (cookies on cross-origin polling).
    pub credentials: bool,
    /// Preflight cache lifetime sent as `Access-Control-Max-Age`, if any.
    pub max_age: Option<Duration>,
}

impl CorsConfig {
    /// Whether `origin` may read responses.
    pub fn allows(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o == "*" || o == origin)
    }
}

/// `SameSite` attribute of the handshake cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=Lax` (socket.io's default).
    #[default]
    Lax,
    /// `SameSite=None` (needs `Secure` in browsers).
    None,
}

/// The handshake cookie load balancers learn stickiness from; off by default as in socket.io.
#[derive(Debug, Clone)]
pub struct CookieConfig {
    /// Cookie name, default `io`.
    pub name: String,
    /// Cookie path, default `/`.
    pub path: String,
    /// `HttpOnly`, default true.
    pub http_only: bool,
    /// `SameSite`, default lax.
    pub same_site: SameSite,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self { name: "io".into(), path: "/".into(), http_only: true, same_site: SameSite::Lax }
    }
}

impl CookieConfig {
    /// The `Set-Cookie` header value for a session.
    pub fn header_value(&self, sid: &str) -> String {
        let mut v = format!("{}={}; Path={}", self.name, sid, self.path);
        if self.http_only {
            v.push_str("; HttpOnly");
        }
        v.push_str(match self.same_site {
            SameSite::Strict => "; SameSite=Strict",
            SameSite::Lax => "; SameSite=Lax",
            SameSite::None => "; SameSite=None; Secure",
        });
        v
    }
}

/// Future returned by an [`AllowRequest`] hook: `Err(message)` refuses the handshake with 403.
pub type AllowRequestFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Async hook that may refuse a handshake (403, code 4), like socket.io's `allowRequest`.
pub type AllowRequest = Arc<dyn Fn(&HandshakeRequest) -> AllowRequestFuture + Send + Sync>;

/// Everything the Engine.IO layer can be told; `EngineConfig::default()` matches socket.io.
#[derive(Clone)]
pub struct EngineConfig {
    pub(crate) path: String,
    pub(crate) ping_interval: Duration,
    pub(crate) ping_timeout: Duration,
    pub(crate) max_http_buffer_size: usize,
    pub(crate) transports: Transports,
    pub(crate) allow_upgrades: bool,
    pub(crate) upgrade_timeout: Duration,
    pub(crate) http_compression_threshold: Option<usize>,
    pub(crate) cors: Option<CorsConfig>,
    pub(crate) cookie: Option<CookieConfig>,
    pub(crate) allow_request: Option<AllowRequest>,
    pub(crate) node_id: String,
    pub(crate) max_queue_bytes: usize,
    pub(crate) max_header_size: usize,
    pub(crate) body_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("path", &self.path)
            .field("ping_interval", &self.ping_interval)
            .field("ping_timeout", &self.ping_timeout)
            .field("max_http_buffer_size", &self.max_http_buffer_size)
            .field("transports", &self.transports)
            .field("allow_upgrades", &self.allow_upgrades)
            .field("upgrade_timeout", &self.upgrade_timeout)
            .field("http_compression_threshold", &self.http_compression_threshold)
            .field("cors", &self.cors)
            .field("cookie", &self.cookie)
            .field("allow_request", &self.allow_request.is_some())
            .field("node_id", &self.node_id)
            .field("max_queue_bytes", &self.max_queue_bytes)
            .field("max_header_size", &self.max_header_size)
            .field("body_timeout", &self.body_timeout())
            .field("write_timeout", &self.write_timeout())
            .finish()
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            path: "/socket.io/".into(),
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_http_buffer_size: 1_000_000,
            transports: Transports::default(),
            allow_upgrades: true,
            upgrade_timeout: Duration::from_millis(10_000),
            http_compression_threshold: Some(1024),
            cors: None,
            cookie: None,
            allow_request: None,
            node_id: super::sid::random_node_id(),
            max_queue_bytes: 1 << 20,
            max_header_size: 16 * 1024,
            body_timeout: None,
            write_timeout: None,
        }
    }
}

impl EngineConfig {
    /// Where Engine.IO is mounted; default `/socket.io/` (a trailing slash is added when missing).
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        let mut path = path.into();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        if !path.ends_with('/') {
            path.push('/');
        }
        self.path = path;
        self
    }

    /// Time between server pings; default 25 s. Lower it to detect dead clients sooner.
    pub fn with_ping_interval(mut self, d: Duration) -> Self {
        self.ping_interval = d;
        self
    }

    /// How long a pong may take after a ping; default 20 s.
    pub fn with_ping_timeout(mut self, d: Duration) -> Self {
        self.ping_timeout = d;
        self
    }

    /// Largest polling body or websocket message accepted; default 1 000 000 bytes. Larger input closes the session.
    pub fn with_max_http_buffer_size(mut self, n: usize) -> Self {
        self.max_http_buffer_size = n;
        self
    }

    /// Accepted transports; default both.
    pub fn with_transports(mut self, t: Transports) -> Self {
        self.transports = t;
        self
    }

    /// Whether polling sessions may upgrade to websocket; default true.
    pub fn with_allow_upgrades(mut self, on: bool) -> Self {
        self.allow_upgrades = on;
        self
    }

    /// How long an upgrade may take before the probing websocket is dropped; default 10 s.
    pub fn with_upgrade_timeout(mut self, d: Duration) -> Self {
        self.upgrade_timeout = d;
        self
    }

    /// Compress polling responses at least this large (gzip/deflate); default Some(1024), None turns it off.
    pub fn with_http_compression(mut self, threshold: Option<usize>) -> Self {
        self.http_compression_threshold = threshold;
        self
    }

    /// CORS for cross-origin browsers; default off. When set, it also guards websockets, which
    /// browsers open from any page: a websocket handshake whose `Origin` is not allowed gets 403.
    pub fn with_cors(mut self, cors: Option<CorsConfig>) -> Self {
        self.cors = cors;
        self
    }

    /// Handshake cookie for sticky load balancing; default off.
    pub fn with_cookie(mut self, cookie: Option<CookieConfig>) -> Self {
        self.cookie = cookie;
        self
    }

    /// Hook that may refuse handshakes (403, code 4); default none.
    pub fn with_allow_request(mut self, hook: Option<AllowRequest>) -> Self {
        self.allow_request = hook;
        self
    }

    /// This node's id, the prefix of every sid it issues; default random. Must be URL-safe, without `.`.
    pub fn with_node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = id.into();
        self
    }

    /// Bytes a session may have queued for sending before sends fail; default 1 MiB.
    pub fn with_max_queue_bytes(mut self, n: usize) -> Self {
        self.max_queue_bytes = n;
        self
    }

    /// Largest request head (request line and headers) a connection may send, in bytes; default
    /// 16 KiB, Node's `maxHeaderSize`. A larger one is answered 431 and the connection closed. It
    /// also bounds what a session keeps of its handshake request. Raise it only for clients that
    /// really send that much (large cookies).
    pub fn with_max_header_size(mut self, n: usize) -> Self {
        self.max_header_size = n;
        self
    }

    /// How long a polling POST's body may take to arrive whole; default: the ping timeout (20 s).
    /// A body that trickles or stops is cut off there: the session closes and the request is
    /// answered 408, so a client cannot hold a request (and what it sent so far) open for ever.
    pub fn with_body_timeout(mut self, d: Duration) -> Self {
        self.body_timeout = Some(d);
        self
    }

    /// How long a response or websocket frames may wait for the client to take any byte; default:
    /// the ping timeout (20 s). Past it the connection is dropped (a websocket's session closes),
    /// so a client that stops reading cannot pin what was written to it. A slow client that still
    /// reads is not affected: every byte it takes restarts the wait.
    pub fn with_write_timeout(mut self, d: Duration) -> Self {
        self.write_timeout = Some(d);
        self
    }

    /// Refuses settings that cannot work (a timer of zero or over a day, a zero size, `*` origins
    /// with credentials), so a typo stops a node at start-up instead of leaving it up and useless.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let timers = [
            ("ping_interval", self.ping_interval),
            ("ping_timeout", self.ping_timeout),
            ("upgrade_timeout", self.upgrade_timeout),
            ("body_timeout", self.body_timeout()),
            ("write_timeout", self.write_timeout()),
        ];
        for (setting, value) in timers {
            if value.is_zero() || value > MAX_TIMER {
                return Err(ConfigError::Timer { setting, value });
            }
        }
        let sizes = [
            ("max_http_buffer_size", self.max_http_buffer_size, 1),
            ("max_queue_bytes", self.max_queue_bytes, 1),
            ("max_header_size", self.max_header_size, MIN_HEADER_SIZE),
        ];
        for (setting, value, min) in sizes {
            if value < min {
                return Err(ConfigError::Size { setting, value, min });
            }
        }
        if let Some(cors) = &self.cors {
            if cors.credentials && cors.origins.iter().any(|o| o == "*") {
                return Err(ConfigError::AnyOriginWithCredentials);
            }
        }
        Ok(())
    }

    /// Largest polling body or websocket message accepted.
    pub fn max_http_buffer_size(&self) -> usize {
        self.max_http_buffer_size
    }

    /// Bytes a session may have queued for sending.
    pub fn max_queue_bytes(&self) -> usize {
        self.max_queue_bytes
    }

    /// Mount path, always with a trailing slash.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Configured ping interval.
    pub fn ping_interval(&self) -> Duration {
        self.ping_interval
    }

    /// Configured ping timeout.
    pub fn ping_timeout(&self) -> Duration {
        self.ping_timeout
    }

    /// Largest request head accepted, in bytes.
    pub fn max_header_size(&self) -> usize {
        self.max_header_size
    }

    /// How long a POST body may take (the ping timeout unless set).
    pub fn body_timeout(&self) -> Duration {
        self.body_timeout.unwrap_or(self.ping_timeout)
    }

    /// How long a write may wait for the client (the ping timeout unless set).
    pub fn write_timeout(&self) -> Duration {
        self.write_timeout.unwrap_or(self.ping_timeout)
    }
}

/// The longest timer [`EngineConfig::validate`] accepts: a day. Longer is a typo (seconds given
/// as milliseconds twice over), and far larger values overflow when added to an `Instant`.
pub const MAX_TIMER: Duration = Duration::from_secs(24 * 60 * 60);

/// The smallest [`EngineConfig::with_max_header_size`] accepted: a browser's handshake alone is
/// several hundred bytes.
pub const MIN_HEADER_SIZE: usize = 1024;

/// A setting [`EngineConfig::validate`] refuses; each names the setting by its `with_*` setter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A timer of zero, or longer than [`MAX_TIMER`].
    #[error("{setting} must be between 1 ms and 1 day (86400000 ms), not {} ms", value.as_millis())]
    Timer {
        /// The setting, as its setter names it (`ping_interval` for `with_ping_interval`).
        setting: &'static str,
        /// The value refused.
        value: Duration,
    },
    /// A size below its minimum.
    #[error("{setting} must be at least {min} bytes, not {value}")]
    Size {
        /// The setting, as its setter names it.
        setting: &'static str,
        /// The value refused.
        value: usize,
        /// The smallest value accepted.
        min: usize,
    },
    /// CORS allows any origin (`*`) with credentials: browsers refuse such answers, so no
    /// cross-origin client could connect; list the allowed origins instead.
    #[error(
        "CORS cannot allow any origin (*) with credentials: browsers refuse it; list the origins instead"
    )]
    AnyOriginWithCredentials,
}
