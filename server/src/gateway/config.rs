//! The `[gateway]` section of the config file: read with serde (unknown keys refused, with the
//! line), then checked into a [`GatewayConfig`] whose keys are parsed and whose URLs and limits
//! are known good, so nothing fails later on a value the operator wrote. docs/gateway.md lists
//! every key.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// The shortest API key: guessing one must be out of reach.
pub const MIN_API_KEY_BYTES: usize = 16;
/// The shortest HS256 secret (RFC 7518 §3.2: at least the hash size, 256 bits).
pub const MIN_HS256_SECRET_BYTES: usize = 32;
/// The longest webhook timeout: a client waits that long for its ack.
const MAX_WEBHOOK_TIMEOUT_MS: u64 = 5 * 60 * 1000;
/// The most events a socket may have waiting for the backend.
const MAX_PENDING_PER_SOCKET: usize = 1024;
/// The most webhook calls a node may have in flight.
const MAX_CONCURRENCY: usize = 65_536;

/// Why the `[gateway]` section was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayConfigError {
    /// A key is unknown, missing or of the wrong type (serde's message, with the line).
    #[error("{path}: [gateway]: {message}")]
    Syntax {
        /// The config file.
        path: PathBuf,
        /// What toml said.
        message: String,
    },
    /// A value is out of range or does not fit with another.
    #[error("{path}: [gateway] {key}: {why}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The key, with its table (`jwt.hs256-secret`, `route[2].url`).
        key: String,
        /// Why.
        why: String,
    },
}

/// How a namespace authenticates its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// A JWT signed by a key of `[gateway.jwt]` (the default).
    Jwt,
    /// Anyone may connect, with no user id and no rooms of their own choosing.
    None,
}

/// The file's `[gateway]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Section {
    #[serde(default)]
    api_keys: Vec<String>,
    api_keys_file: Option<PathBuf>,
    #[serde(default)]
    api_max_body_bytes: Option<usize>,
    api_rate_limit: Option<u32>,
    #[serde(default)]
    namespace: Vec<NamespaceSection>,
    jwt: Option<JwtSection>,
    #[serde(default)]
    webhook: WebhookSection,
    #[serde(default)]
    route: Vec<RouteSection>,
    #[serde(default)]
    connect: ConnectSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct NamespaceSection {
    name: String,
    #[serde(default = "default_auth")]
    auth: AuthMode,
    connect_url: Option<String>,
    lifecycle_url: Option<String>,
    lifecycle_events: Option<Vec<LifecycleEvent>>,
    subscribe_url: Option<String>,
}

/// What happened to a socket that the lifecycle webhook is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LifecycleEvent {
    /// It joined the namespace.
    Connect,
    /// It left the namespace, with the reason.
    Disconnect,
    /// It joined a room itself (`join`).
    Join,
    /// It left a room itself (`leave`).
    Leave,
}

impl LifecycleEvent {
    /// Every one: what `lifecycle-events` defaults to.
    pub const ALL: [Self; 4] = [Self::Connect, Self::Disconnect, Self::Join, Self::Leave];

    /// Its name in the webhook's `event` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Disconnect => "disconnect",
            Self::Join => "join",
            Self::Leave => "leave",
        }
    }
}

/// Where a namespace's lifecycle notices go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleConfig {
    /// The `http://` URL the node POSTs them to.
    pub url: http::Uri,
    /// The ones sent (default: all).
    pub events: Vec<LifecycleEvent>,
}

fn default_auth() -> AuthMode {
    AuthMode::Jwt
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct JwtSection {
    hs256_secret: Option<String>,
    hs256_secret_file: Option<PathBuf>,
    #[serde(default)]
    public_key: Vec<PublicKeySection>,
    jwks_url: Option<String>,
    jwks_refresh: Option<u64>,
    cookie: Option<String>,
    rooms_claim: Option<String>,
    room_patterns_claim: Option<String>,
    publish_patterns_claim: Option<String>,
    #[serde(default)]
    leeway: u64,
    audience: Option<String>,
    issuer: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PublicKeySection {
    algorithm: String,
    pem: Option<String>,
    pem_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WebhookSection {
    timeout: Option<u64>,
    max_concurrency: Option<usize>,
    max_pending_per_socket: Option<usize>,
    max_queued_bytes: Option<usize>,
    max_answer_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ConnectSection {
    #[serde(default)]
    headers: Vec<String>,
    timeout: Option<u64>,
    max_concurrency: Option<usize>,
    max_answer_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RouteSection {
    #[serde(default = "main_namespace")]
    namespace: String,
    event: String,
    url: String,
}

fn main_namespace() -> String {
    "/".to_owned()
}

/// The whole file: only `[gateway]` is read here (the flags are the command line's).
#[derive(Debug, Deserialize)]
struct File {
    gateway: Option<Section>,
}

/// A namespace the gateway serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceConfig {
    /// Its name, `/` first.
    pub name: String,
    /// How its clients authenticate.
    pub auth: AuthMode,
    /// The connect webhook asked after the JWT check (or alone, with `auth = "none"`), if any.
    pub connect_url: Option<http::Uri>,
    /// Where its sockets' lifecycle notices go, if anywhere.
    pub lifecycle: Option<LifecycleConfig>,
    /// The subscribe webhook, asked about joins and publishes the patterns do not allow, if any.
    pub subscribe_url: Option<http::Uri>,
}

/// Where the backend publishes its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksConfig {
    /// The `http://` URL of the JWK set.
    pub url: http::Uri,
    /// How often it is fetched again (default 5 minutes); an unknown key id fetches it sooner.
    pub refresh: Duration,
}

/// How JWTs are checked.
#[derive(Clone)]
pub struct JwtConfig {
    /// The keys a token may be signed with, by algorithm, tried in order.
    pub keys: Vec<(Algorithm, DecodingKey)>,
    /// Keys fetched from the backend too, if set.
    pub jwks: Option<JwksConfig>,
    /// A cookie that may carry the token (none: cookies are not read).
    pub cookie: Option<String>,
    /// The claim listing the rooms joined at connect.
    pub rooms_claim: String,
    /// The claim listing the room patterns the client may join itself.
    pub room_patterns_claim: String,
    /// The claim listing the room patterns the client may publish to itself.
    pub publish_patterns_claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// `aud` required, if set.
    pub audience: Option<String>,
    /// `iss` required, if set.
    pub issuer: Option<String>,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algorithms: Vec<Algorithm> = self.keys.iter().map(|(a, _)| *a).collect();
        f.debug_struct("JwtConfig").field("algorithms", &algorithms).finish_non_exhaustive()
    }
}

/// Where client events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// The namespace whose events it takes.
    pub namespace: String,
    /// The event name, or `*` for every event without a route of its own.
    pub event: String,
    /// An `http://` URL the node POSTs to.
    pub url: http::Uri,
}

/// Bounds of the event webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// How long one call may take, waiting for a connection slot included (default 5 s).
    pub timeout: Duration,
    /// Calls in flight from this node at once (default 64).
    pub max_concurrency: usize,
    /// Events one socket may have waiting (default 16); more get a `busy` error ack.
    pub max_pending_per_socket: usize,
    /// Bytes of arguments the node's sockets may have waiting in all (default 64 MiB); more get
    /// a `busy` error ack.
    pub max_queued_bytes: usize,
    /// The largest answer read (default 64 KiB); a larger one is a `backend_answer_too_large`
    /// error ack.
    pub max_answer_bytes: usize,
}

/// Bounds of the connect webhook, and what of the handshake it is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectConfig {
    /// The request headers sent along (lower case); cookies and `authorization` only if listed,
    /// so credentials reach the backend only when the operator chose so.
    pub headers: Vec<http::HeaderName>,
    /// How long the backend may take, waiting for a free slot included (default 5 s); past it,
    /// the connect is refused.
    pub timeout: Duration,
    /// Connect webhook calls in flight from this node at once (default 64).
    pub max_concurrency: usize,
    /// The largest answer read (default 64 KiB).
    pub max_answer_bytes: usize,
}

impl ConnectConfig {
    /// The event webhooks' bounds these make: connects are not queued, so the queue bounds are
    /// the least there is.
    pub fn as_webhook(&self) -> WebhookConfig {
        WebhookConfig {
            timeout: self.timeout,
            max_concurrency: self.max_concurrency,
            max_pending_per_socket: 1,
            max_queued_bytes: 1,
            max_answer_bytes: self.max_answer_bytes,
        }
    }
}

/// The gateway's checked configuration; see the module docs.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Keys accepted on the HTTP API (several, to rotate).
    pub api_keys: Vec<String>,
    /// The largest API request body (default 1 MiB).
    pub api_max_body_bytes: usize,
    /// Requests per second one API key may make to one node (default 1000; also the burst).
    pub api_rate_limit: std::num::NonZeroU32,
    /// The namespaces served; clients cannot connect to others.
    pub namespaces: Vec<NamespaceConfig>,
    /// JWT checks, if any namespace uses them.
    pub jwt: Option<JwtConfig>,
    /// Webhook bounds.
    pub webhook: WebhookConfig,
    /// Event routes.
    pub routes: Vec<RouteConfig>,
    /// Connect webhook bounds.
    pub connect: ConnectConfig,
}

impl GatewayConfig {
    /// The `[gateway]` section of the config file `text` (read from `path`): `Ok(None)` when it
    /// has none. Key files (`pem-file`) are read relative to the working directory.
    pub fn from_toml(path: &Path, text: &str) -> Result<Option<Self>, GatewayConfigError> {
        let file: File = toml::from_str(text).map_err(|e| GatewayConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        file.gateway.map(|section| Checker { path }.check(section)).transpose()
    }
}

/// Checks a section, naming the file in its errors.
struct Checker<'a> {
    path: &'a Path,
}

impl Checker<'_> {
    fn invalid(&self, key: impl Into<String>, why: impl Into<String>) -> GatewayConfigError {
        GatewayConfigError::Invalid { path: self.path.to_owned(), key: key.into(), why: why.into() }
    }

    /// A secret file's text without its final line break; `key` names it in errors.
    fn read_secret(&self, key: &str, file: &Path) -> Result<String, GatewayConfigError> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| self.invalid(key, format!("cannot read {}: {e}", file.display())))?;
        Ok(text.trim_end_matches(['\n', '\r']).to_owned())
    }

    fn check(&self, mut section: Section) -> Result<GatewayConfig, GatewayConfigError> {
        if let Some(file) = &section.api_keys_file {
            let text = self.read_secret("api-keys-file", file)?;
            let keys = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
            section.api_keys.extend(keys.map(str::to_owned));
        }
        for (i, key) in section.api_keys.iter().enumerate() {
            if key.len() < MIN_API_KEY_BYTES {
                return Err(self.invalid(
                    format!("api-keys[{i}]"),
                    format!("an API key needs at least {MIN_API_KEY_BYTES} bytes, not {}", key.len()),
                ));
            }
        }
        let api_max_body_bytes = self.positive("api-max-body-bytes", section.api_max_body_bytes, 1 << 20)?;
        let api_rate_limit = std::num::NonZeroU32::new(section.api_rate_limit.unwrap_or(1000))
            .ok_or_else(|| self.invalid("api-rate-limit", "must be at least 1 (requests per second)"))?;
        let namespaces = self.namespaces(section.namespace)?;
        let needs_jwt = namespaces.iter().any(|n| n.auth == AuthMode::Jwt);
        let jwt = match (section.jwt, needs_jwt) {
            (Some(jwt), _) => Some(self.jwt(jwt)?),
            (None, true) => {
                return Err(self.invalid(
                    "jwt",
                    "a namespace has auth = \"jwt\" (the default) but there is no [gateway.jwt] with its keys",
                ));
            }
            (None, false) => None,
        };
        let webhook = self.webhook(section.webhook)?;
        let routes = self.routes(section.route, &namespaces)?;
        let connect = self.connect(section.connect)?;
        Ok(GatewayConfig {
            api_keys: section.api_keys,
            api_max_body_bytes,
            api_rate_limit,
            namespaces,
            jwt,
            webhook,
            routes,
            connect,
        })
    }

    fn connect(&self, section: ConnectSection) -> Result<ConnectConfig, GatewayConfigError> {
        let mut headers = Vec::with_capacity(section.headers.len());
        for (i, name) in section.headers.iter().enumerate() {
            match http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
                Ok(header) => headers.push(header),
                Err(_) => {
                    return Err(self
                        .invalid(format!("connect.headers[{i}]"), format!("{name:?} is not a header name")));
                }
            }
        }
        Ok(ConnectConfig {
            headers,
            timeout: self.timeout("connect.timeout", section.timeout)?,
            max_concurrency: self.concurrency("connect.max-concurrency", section.max_concurrency)?,
            max_answer_bytes: self.positive(
                "connect.max-answer-bytes",
                section.max_answer_bytes,
                64 << 10,
            )?,
        })
    }

    /// A webhook timeout in milliseconds (default 5 s): at most [`MAX_WEBHOOK_TIMEOUT_MS`].
    fn timeout(&self, key: &str, value: Option<u64>) -> Result<Duration, GatewayConfigError> {
        match value.unwrap_or(5_000) {
            ms @ 1..=MAX_WEBHOOK_TIMEOUT_MS => Ok(Duration::from_millis(ms)),
            ms => {
                Err(self
                    .invalid(key, format!("milliseconds between 1 and {MAX_WEBHOOK_TIMEOUT_MS}, not {ms}")))
            }
        }
    }

    fn positive(&self, key: &str, value: Option<usize>, default: usize) -> Result<usize, GatewayConfigError> {
        match value {
            Some(0) => Err(self.invalid(key, "must be at least 1")),
            Some(n) => Ok(n),
            None => Ok(default),
        }
    }

    fn namespaces(
        &self,
        sections: Vec<NamespaceSection>,
    ) -> Result<Vec<NamespaceConfig>, GatewayConfigError> {
        if sections.is_empty() {
            return Err(self.invalid(
                "namespace",
                "no [[gateway.namespace]]: clients could connect nowhere (add one with name = \"/\")",
            ));
        }
        let mut seen = HashSet::new();
        let mut namespaces = Vec::with_capacity(sections.len());
        for (i, ns) in sections.into_iter().enumerate() {
            let key = format!("namespace[{i}].name");
            if !ns.name.starts_with('/') {
                return Err(self.invalid(key, format!("a namespace starts with `/`, not {:?}", ns.name)));
            }
            if !seen.insert(ns.name.clone()) {
                return Err(self.invalid(key, format!("{:?} is listed twice", ns.name)));
            }
            let connect_url = match &ns.connect_url {
                Some(url) => Some(self.url(&format!("namespace[{i}].connect-url"), url)?),
                None => None,
            };
            let lifecycle = match (&ns.lifecycle_url, ns.lifecycle_events) {
                (Some(url), events) => Some(LifecycleConfig {
                    url: self.url(&format!("namespace[{i}].lifecycle-url"), url)?,
                    events: events.unwrap_or_else(|| LifecycleEvent::ALL.to_vec()),
                }),
                (None, Some(_)) => {
                    return Err(
                        self.invalid(format!("namespace[{i}].lifecycle-events"), "only with lifecycle-url")
                    );
                }
                (None, None) => None,
            };
            let subscribe_url = match &ns.subscribe_url {
                Some(url) => Some(self.url(&format!("namespace[{i}].subscribe-url"), url)?),
                None => None,
            };
            namespaces.push(NamespaceConfig {
                name: ns.name,
                auth: ns.auth,
                connect_url,
                lifecycle,
                subscribe_url,
            });
        }
        Ok(namespaces)
    }

    fn jwt(&self, jwt: JwtSection) -> Result<JwtConfig, GatewayConfigError> {
        let mut keys = Vec::new();
        let secret = match (&jwt.hs256_secret, &jwt.hs256_secret_file) {
            (Some(_), Some(_)) => {
                return Err(
                    self.invalid("jwt.hs256-secret", "give hs256-secret or hs256-secret-file, not both")
                );
            }
            (Some(secret), None) => Some(secret.clone()),
            (None, Some(file)) => Some(self.read_secret("jwt.hs256-secret-file", file)?),
            (None, None) => None,
        };
        if let Some(secret) = &secret {
            if secret.len() < MIN_HS256_SECRET_BYTES {
                return Err(self.invalid(
                    "jwt.hs256-secret",
                    format!(
                        "an HS256 secret needs at least {MIN_HS256_SECRET_BYTES} bytes (RFC 7518), not {}",
                        secret.len()
                    ),
                ));
            }
            keys.push((Algorithm::HS256, DecodingKey::from_secret(secret.as_bytes())));
        }
        for (i, key) in jwt.public_key.iter().enumerate() {
            keys.push(self.public_key(i, key)?);
        }
        let jwks = match &jwt.jwks_url {
            Some(url) => {
                let refresh = jwt.jwks_refresh.unwrap_or(300_000);
                if !(1_000..=86_400_000).contains(&refresh) {
                    return Err(self.invalid("jwt.jwks-refresh", "milliseconds between 1000 and 86400000"));
                }
                let url = self.url("jwt.jwks-url", url)?;
                Some(JwksConfig { url, refresh: Duration::from_millis(refresh) })
            }
            None if jwt.jwks_refresh.is_some() => {
                return Err(self.invalid("jwt.jwks-refresh", "only with jwks-url"));
            }
            None => None,
        };
        if keys.is_empty() && jwks.is_none() {
            return Err(self.invalid(
                "jwt",
                "no key: set hs256-secret, jwks-url or add a [[gateway.jwt.public-key]] (RS256, ES256 or EdDSA)",
            ));
        }
        let leeway = Duration::from_millis(jwt.leeway);
        if leeway > Duration::from_secs(300) {
            return Err(self.invalid("jwt.leeway", "at most 300000 (5 minutes) of clock skew"));
        }
        if let Some(cookie) = &jwt.cookie {
            if cookie.is_empty() || !cookie.bytes().all(|b| b.is_ascii_graphic() && !b";=,".contains(&b)) {
                return Err(self.invalid("jwt.cookie", format!("{cookie:?} is not a cookie name")));
            }
        }
        Ok(JwtConfig {
            keys,
            jwks,
            cookie: jwt.cookie,
            rooms_claim: jwt.rooms_claim.unwrap_or_else(|| "rooms".to_owned()),
            room_patterns_claim: jwt.room_patterns_claim.unwrap_or_else(|| "room_patterns".to_owned()),
            publish_patterns_claim: jwt
                .publish_patterns_claim
                .unwrap_or_else(|| "publish_patterns".to_owned()),
            leeway,
            audience: jwt.audience,
            issuer: jwt.issuer,
        })
    }

    fn public_key(
        &self,
        i: usize,
        key: &PublicKeySection,
    ) -> Result<(Algorithm, DecodingKey), GatewayConfigError> {
        let name = |field: &str| format!("jwt.public-key[{i}].{field}");
        let pem = match (&key.pem, &key.pem_file) {
            (Some(pem), None) => pem.clone(),
            (None, Some(file)) => std::fs::read_to_string(file).map_err(|e| {
                self.invalid(name("pem-file"), format!("cannot read {}: {e}", file.display()))
            })?,
            _ => return Err(self.invalid(name("pem"), "give exactly one of pem and pem-file")),
        };
        let (algorithm, decoded) = match key.algorithm.as_str() {
            "RS256" => (Algorithm::RS256, DecodingKey::from_rsa_pem(pem.as_bytes())),
            "ES256" => (Algorithm::ES256, DecodingKey::from_ec_pem(pem.as_bytes())),
            "EdDSA" => (Algorithm::EdDSA, DecodingKey::from_ed_pem(pem.as_bytes())),
            other => {
                return Err(self.invalid(
                    name("algorithm"),
                    format!("{other:?} is not one of RS256, ES256, EdDSA (HS256 is hs256-secret)"),
                ));
            }
        };
        let decoded = decoded.map_err(|e| {
            self.invalid(name("pem"), format!("not a PEM public key for {}: {e}", key.algorithm))
        })?;
        Ok((algorithm, decoded))
    }

    fn webhook(&self, section: WebhookSection) -> Result<WebhookConfig, GatewayConfigError> {
        let timeout = self.timeout("webhook.timeout", section.timeout)?;
        let pending = self.positive("webhook.max-pending-per-socket", section.max_pending_per_socket, 16)?;
        if pending > MAX_PENDING_PER_SOCKET {
            return Err(self.invalid(
                "webhook.max-pending-per-socket",
                format!("at most {MAX_PENDING_PER_SOCKET}, not {pending}"),
            ));
        }
        Ok(WebhookConfig {
            timeout,
            max_concurrency: self.concurrency("webhook.max-concurrency", section.max_concurrency)?,
            max_pending_per_socket: pending,
            max_queued_bytes: self.queued_bytes(section.max_queued_bytes)?,
            max_answer_bytes: self.positive(
                "webhook.max-answer-bytes",
                section.max_answer_bytes,
                64 << 10,
            )?,
        })
    }

    /// A `max-concurrency` (default 64): at most [`MAX_CONCURRENCY`].
    fn concurrency(&self, key: &str, value: Option<usize>) -> Result<usize, GatewayConfigError> {
        match self.positive(key, value, 64)? {
            n if n > MAX_CONCURRENCY => Err(self.invalid(key, format!("at most {MAX_CONCURRENCY}, not {n}"))),
            n => Ok(n),
        }
    }

    /// `webhook.max-queued-bytes`: at most 4 GiB, the most one semaphore counts here.
    fn queued_bytes(&self, value: Option<usize>) -> Result<usize, GatewayConfigError> {
        let bytes = self.positive("webhook.max-queued-bytes", value, 64 << 20)?;
        match u32::try_from(bytes) {
            Ok(_) => Ok(bytes),
            Err(_) => Err(self.invalid("webhook.max-queued-bytes", format!("at most {}", u32::MAX))),
        }
    }

    fn routes(
        &self,
        sections: Vec<RouteSection>,
        namespaces: &[NamespaceConfig],
    ) -> Result<Vec<RouteConfig>, GatewayConfigError> {
        let mut seen = HashSet::new();
        let mut routes = Vec::with_capacity(sections.len());
        for (i, route) in sections.into_iter().enumerate() {
            let key = |field: &str| format!("route[{i}].{field}");
            if !namespaces.iter().any(|n| n.name == route.namespace) {
                return Err(self.invalid(
                    key("namespace"),
                    format!("{:?} is not a [[gateway.namespace]]", route.namespace),
                ));
            }
            if route.event.is_empty() {
                return Err(self.invalid(key("event"), "an event name, or \"*\" for every event"));
            }
            if crate::socketio::check_event_name(&route.event).is_err()
                || super::connect::CLIENT_EVENTS.contains(&route.event.as_str())
            {
                return Err(self.invalid(
                    key("event"),
                    format!(
                        "{:?} is reserved (Socket.IO's own events, and the gateway's join, leave, publish and refresh)",
                        route.event
                    ),
                ));
            }
            if !seen.insert((route.namespace.clone(), route.event.clone())) {
                return Err(self.invalid(key("event"), "a second route for the same namespace and event"));
            }
            let url = self.url(&key("url"), &route.url)?;
            routes.push(RouteConfig { namespace: route.namespace, event: route.event, url });
        }
        Ok(routes)
    }

    fn url(&self, key: &str, text: &str) -> Result<http::Uri, GatewayConfigError> {
        let url: http::Uri =
            text.parse().map_err(|e| self.invalid(key, format!("{text:?} is not a URL: {e}")))?;
        match url.scheme_str() {
            Some("http") if url.host().is_some() => Ok(url),
            Some("https") => Err(self.invalid(
                key,
                "https is not supported yet: reach the backend over http inside the cluster (or through a TLS sidecar)",
            )),
            _ => Err(self.invalid(key, format!("{text:?} is not an http://host/... URL"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn check(gateway: &str) -> Result<GatewayConfig, String> {
        let text = format!("port = 3000\n[gateway]\n{gateway}");
        match GatewayConfig::from_toml(Path::new("g.toml"), &text) {
            Ok(Some(config)) => Ok(config),
            Ok(None) => Err("no section".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn minimal() -> String {
        format!(
            "api-keys = [\"key-0123456789abcdef\"]\n[[gateway.namespace]]\nname = \"/\"\n\
             [gateway.jwt]\nhs256-secret = \"{SECRET}\"\n"
        )
    }

    #[test]
    fn a_minimal_section_gets_the_documented_defaults() {
        let config = match check(&minimal()) {
            Ok(config) => config,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            config.namespaces,
            vec![NamespaceConfig {
                name: "/".into(),
                auth: AuthMode::Jwt,
                connect_url: None,
                lifecycle: None,
                subscribe_url: None
            }]
        );
        assert_eq!(config.api_max_body_bytes, 1 << 20);
        assert_eq!(config.api_rate_limit.get(), 1000);
        assert_eq!(
            config.webhook,
            WebhookConfig {
                timeout: Duration::from_secs(5),
                max_concurrency: 64,
                max_pending_per_socket: 16,
                max_queued_bytes: 64 << 20,
                max_answer_bytes: 64 << 10
            }
        );
        assert_eq!(
            config.connect,
            ConnectConfig {
                headers: Vec::new(),
                timeout: Duration::from_secs(5),
                max_concurrency: 64,
                max_answer_bytes: 64 << 10
            }
        );
        let jwt =
            config.jwt.map(|j| (j.rooms_claim, j.room_patterns_claim, j.publish_patterns_claim, j.cookie));
        assert_eq!(jwt, Some(("rooms".into(), "room_patterns".into(), "publish_patterns".into(), None)));
        assert_eq!(
            GatewayConfig::from_toml(Path::new("g.toml"), "port = 1\n").map(|c| c.is_none()).ok(),
            Some(true)
        );
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_line() {
        let e = check(&format!("apikeys = []\n{}", minimal())).err().unwrap_or_default();
        assert!(e.starts_with("g.toml: [gateway]: TOML parse error at line 3"), "{e}");
        assert!(e.contains("unknown field `apikeys`"), "{e}");
        let e = check(&format!(
            "{}[[gateway.route]]\nevent = \"a\"\nurl = \"http://b/\"\nmethod = \"GET\"\n",
            minimal()
        ))
        .err()
        .unwrap_or_default();
        assert!(e.contains("unknown field `method`"), "{e}");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused() {
        let e =
            check(&format!("{}[gateway.webhook]\ntimeout = \"5s\"\n", minimal())).err().unwrap_or_default();
        assert!(e.contains("invalid type: string \"5s\", expected u64"), "{e}");
        let e = check("[[gateway.namespace]]\nname = \"/\"\nauth = \"basic\"\n").err().unwrap_or_default();
        assert!(e.contains("unknown variant `basic`"), "{e}");
    }

    #[test]
    fn secrets_can_come_from_files_as_a_kubernetes_secret_mounts_them() {
        let dir = std::env::temp_dir().join(format!("switchboard-gateway-config-{}", std::process::id()));
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| {
                std::fs::write(
                    dir.join("keys"),
                    "# rotated monthly\nkey-a-0123456789abcdef\n\nkey-b-0123456789abcdef\n",
                )
            })
            .and_then(|()| std::fs::write(dir.join("secret"), format!("{SECRET}\n")));
        assert!(written.is_ok(), "{written:?}");
        let section = format!(
            "api-keys = [\"key-0-0123456789abcdef\"]\napi-keys-file = {:?}\n[[gateway.namespace]]\nname = \"/\"\n\
             [gateway.jwt]\nhs256-secret-file = {:?}\n",
            dir.join("keys"),
            dir.join("secret")
        );
        let config = check(&section);
        let _ = std::fs::remove_dir_all(&dir);
        let config = config.map(|c| (c.api_keys, c.jwt.map(|j| j.keys.len())));
        assert_eq!(
            config,
            Ok((
                vec![
                    "key-0-0123456789abcdef".into(),
                    "key-a-0123456789abcdef".into(),
                    "key-b-0123456789abcdef".into()
                ],
                Some(1)
            ))
        );
        let e = check(
            "api-keys-file = \"/nonexistent/keys\"\n[[gateway.namespace]]\nname = \"/\"\nauth = \"none\"\n",
        )
        .err()
        .unwrap_or_default();
        assert!(e.starts_with("g.toml: [gateway] api-keys-file: cannot read /nonexistent/keys: "), "{e}");
    }

    #[test]
    fn values_that_cannot_work_are_refused_with_the_key() {
        let cases = [
            (
                "api-keys = [\"short\"]\n[[gateway.namespace]]\nname = \"/\"\nauth = \"none\"\n",
                "[gateway] api-keys[0]: an API key needs at least 16 bytes, not 5",
            ),
            (
                "[[gateway.namespace]]\nname = \"/\"\n[gateway.jwt]\njwks-url = \"https://idp/jwks\"\n",
                "[gateway] jwt.jwks-url: https is not supported yet",
            ),
            (
                "[[gateway.namespace]]\nname = \"/\"\n[gateway.jwt]\nhs256-secret = \"0123456789abcdef0123456789abcdef\"\njwks-refresh = 5000\n",
                "[gateway] jwt.jwks-refresh: only with jwks-url",
            ),
            (
                "[[gateway.namespace]]\nname = \"/\"\nauth = \"none\"\n[gateway.webhook]\nmax-concurrency = 100000\n",
                "[gateway] webhook.max-concurrency: at most 65536, not 100000",
            ),
            (
                "[[gateway.namespace]]\nname = \"/\"\nauth = \"none\"\n[gateway.webhook]\nmax-queued-bytes = 5000000000\n",
                "[gateway] webhook.max-queued-bytes: at most 4294967295",
            ),
            (
                "api-rate-limit = 0\n[[gateway.namespace]]\nname = \"/\"\nauth = \"none\"\n",
                "[gateway] api-rate-limit: must be at least 1 (requests per second)",
            ),
            ("[[gateway.namespace]]\nname = \"/\"\n", "[gateway] jwt: a namespace has auth = \"jwt\""),
            (
                "[[gateway.namespace]]\nname = \"chat\"\nauth = \"none\"\n",
                "[gateway] namespace[0].name: a namespace starts with `/`",
            ),
            (
                "[[gateway.namespace]]\nname = \"/\"\n[gateway.jwt]\nhs256-secret = \"short\"\n",
                "[gateway] jwt.hs256-secret: an HS256 secret needs at least 32 bytes",
            ),
            (
                "[[gateway.namespace]]\nname = \"/\"\n[gateway.jwt]\n[[gateway.jwt.public-key]]\nalgorithm = \"RS256\"\npem = \"nope\"\n",
                "[gateway] jwt.public-key[0].pem: not a PEM public key for RS256",
            ),
            (
                "[[gateway.namespace]]\nname = \"/\"\nauth = \"none\"\n[[gateway.route]]\nevent = \"a\"\nurl = \"https://b/\"\n",
                "[gateway] route[0].url: https is not supported yet",
            ),
            (
                "[[gateway.namespace]]\nname = \"/\"\nauth = \"none\"\n[[gateway.route]]\nevent = \"a\"\nurl = \"b\"\n",
                "[gateway] route[0].url: \"b\" is not an http://host/... URL",
            ),
            (
                "[[gateway.namespace]]\nname = \"/\"\nauth = \"none\"\n[[gateway.route]]\nnamespace = \"/x\"\nevent = \"a\"\nurl = \"http://b/\"\n",
                "[gateway] route[0].namespace: \"/x\" is not a [[gateway.namespace]]",
            ),
            (
                "[[gateway.namespace]]\nname = \"/\"\nauth = \"none\"\n[[gateway.route]]\nevent = \"join\"\nurl = \"http://b/\"\n",
                "[gateway] route[0].event: \"join\" is reserved",
            ),
            (
                "[[gateway.namespace]]\nname = \"/\"\nauth = \"none\"\nconnect-url = \"/hook\"\n",
                "[gateway] namespace[0].connect-url: \"/hook\" is not an http://host/... URL",
            ),
            (
                "[[gateway.namespace]]\nname = \"/\"\nauth = \"none\"\nsubscribe-url = \"https://b/\"\n",
                "[gateway] namespace[0].subscribe-url: https is not supported yet",
            ),
            (
                "[[gateway.namespace]]\nname = \"/\"\nauth = \"none\"\nlifecycle-events = [\"join\"]\n",
                "[gateway] namespace[0].lifecycle-events: only with lifecycle-url",
            ),
            (
                "[[gateway.namespace]]\nname = \"/\"\nauth = \"none\"\n[gateway.connect]\nheaders = [\"x y\"]\n",
                "[gateway] connect.headers[0]: \"x y\" is not a header name",
            ),
            (
                "[[gateway.namespace]]\nname = \"/\"\nauth = \"none\"\n[gateway.connect]\ntimeout = 300001\n",
                "[gateway] connect.timeout: milliseconds between 1 and 300000, not 300001",
            ),
            (
                "[[gateway.namespace]]\nname = \"/\"\nauth = \"none\"\n[gateway.webhook]\ntimeout = 0\n",
                "[gateway] webhook.timeout: milliseconds between 1 and 300000, not 0",
            ),
            (
                "[[gateway.namespace]]\nname = \"/\"\nauth = \"none\"\n[gateway.webhook]\nmax-concurrency = 0\n",
                "[gateway] webhook.max-concurrency: must be at least 1",
            ),
        ];
        for (section, expected) in cases {
            let e = check(section).err().unwrap_or_default();
            assert!(e.starts_with(&format!("g.toml: {expected}")), "{section}\ngave: {e}\nnot: {expected}");
        }
    }
}
