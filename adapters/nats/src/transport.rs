//! [`NatsTransport`]: the cheap handle the cluster adapter publishes and subscribes through. Every
//! call returns at once; the [`Driver`](crate::driver) task does the talking to the client.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_nats::connection::State;
use async_nats::{Client, ConnectErrorKind, ConnectOptions, Event, Request, RequestErrorKind, ServerAddr};
use bytes::Bytes;
use switchboard_adapter::Confirmation;
use switchboard_adapter::cluster::{Inbound, PublishError, Route, Transport};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use crate::config::{Auth, NatsConfig};
use crate::driver::{Driver, Inputs, Outbound, Shared};
use crate::error::{ConnectError, FlushError};
use crate::health::{NatsHealth, bump, get};
use crate::subject;

/// One node's connection to NATS, as a [`Transport`] for
/// [`ClusterAdapterFactory`](switchboard_adapter::cluster::ClusterAdapterFactory). Cheap to clone:
/// every clone is the same connection, which closes when the last one is dropped (after sending
/// what was queued) or on [`close`](Self::close).
#[derive(Clone)]
pub struct NatsTransport {
    inner: Arc<Inner>,
}

struct Inner {
    prefix: String,
    client: Client,
    config: NatsConfig,
    shared: Arc<Shared>,
    /// Capacity one: a pending wake-up means the driver will look at the wanted subjects.
    wake: mpsc::Sender<()>,
    outbound: mpsc::Sender<Outbound>,
    closed: AtomicBool,
}

impl std::fmt::Debug for NatsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTransport")
            .field("prefix", &self.inner.prefix)
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

impl NatsTransport {
    /// Connects to the NATS server(s) at `urls` (each may hold several, comma-separated; the client
    /// picks one and fails over to the others) and publishes under subjects starting with
    /// `prefix`, handing received messages to `inbound`.
    ///
    /// Fails on a bad URL, prefix or configuration, and — unless
    /// [`with_retry_on_initial_connect`](NatsConfig::with_retry_on_initial_connect) — when no
    /// server is reachable. Must run inside a tokio runtime (it spawns the driver task).
    pub async fn connect<I, S>(
        urls: I,
        prefix: &str,
        inbound: Inbound,
        config: NatsConfig,
    ) -> Result<Self, ConnectError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        config.validate()?;
        if !subject::is_valid_prefix(prefix) {
            return Err(ConnectError::InvalidPrefix(prefix.to_owned()));
        }
        let (addrs, url_auth) = parse_urls(urls)?;
        let shown = addrs.iter().map(|a| format!("{}:{}", a.host(), a.port())).collect::<Vec<_>>().join(", ");

        let shared = Arc::new(Shared::default());
        let (connected, connected_rx) = mpsc::channel(1);
        let options = || {
            let (events_shared, events_inbound, connected) =
                (shared.clone(), inbound.clone(), connected.clone());
            let max_delay = config.max_reconnect_delay;
            let options = ConnectOptions::new()
                .name(&config.name)
                .no_echo()
                .client_capacity(config.client_capacity)
                .subscription_capacity(config.subscription_capacity)
                .connection_timeout(config.connect_timeout)
                .ping_interval(config.ping_interval)
                .reconnect_delay_callback(move |attempts| NatsConfig::reconnect_delay(max_delay, attempts))
                .event_callback(move |event| {
                    let (shared, inbound, connected) =
                        (events_shared.clone(), events_inbound.clone(), connected.clone());
                    async move {
                        match event {
                            Event::Connected => {
                                // Full means an announcement is pending already.
                                let _ = connected.try_send(());
                            }
                            Event::Disconnected => {
                                // What was written but not yet sent is gone with the connection:
                                // joins stop waiting, and pending requests fail at once.
                                shared.disconnected();
                                inbound.disconnected();
                            }
                            _ => {}
                        }
                        shared.counters.on_event(event);
                    }
                });
            authenticate(options, &config.auth, &url_auth)
        };
        // Checked before the first attempt: a malformed seed or creds file is a setting, not an outage.
        options()?;
        let client = match options()?.connect(addrs.clone()).await {
            Ok(client) => client,
            Err(source) if is_refusal(&source) => return Err(ConnectError::Refused { urls: shown, source }),
            Err(source) if config.retry_on_initial_connect => {
                tracing::warn!(servers = shown, error = %source,
                    "NATS unreachable at start-up: starting without it, retrying in the background");
                options()?
                    .retry_on_initial_connect()
                    .connect(addrs)
                    .await
                    .map_err(|source| ConnectError::Connect { urls: shown.clone(), source })?
            }
            Err(source) => return Err(ConnectError::Connect { urls: shown, source }),
        };
        tracing::info!(servers = shown, prefix, "NATS transport connected");

        let (wake, wake_rx) = mpsc::channel(1);
        let (outbound, outbound_rx) = mpsc::channel(config.publish_queue);
        let driver = Driver::new(
            client.clone(),
            inbound,
            shared.clone(),
            config.flush_timeout,
            config.publish_timer.clone(),
        );
        tokio::spawn(driver.run(Inputs { wake: wake_rx, outbound: outbound_rx, connected: connected_rx }));
        let inner = Inner {
            prefix: prefix.to_owned(),
            client,
            config,
            shared,
            wake,
            outbound,
            closed: AtomicBool::new(false),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The subject prefix (see the crate docs for the scheme under it).
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// Whether the connection is up, so publishes are accepted (for readiness checks).
    pub fn is_connected(&self) -> bool {
        !self.inner.closed.load(Ordering::Acquire) && self.inner.client.connection_state() == State::Connected
    }

    /// The connection status and counters, for logs and the server's metrics.
    pub fn health(&self) -> NatsHealth {
        let c = &self.inner.shared.counters;
        let connects = self.inner.client.statistics().connects.load(Ordering::Relaxed);
        NatsHealth {
            connected: self.is_connected(),
            connects,
            reconnects: connects.saturating_sub(1),
            disconnects: get(&c.disconnects),
            dropped_queue_full: get(&c.dropped_queue_full),
            dropped_disconnected: get(&c.dropped_disconnected),
            publish_errors: get(&c.publish_errors),
            slow_consumer_events: get(&c.slow_consumer_events),
            subscriptions: get(&c.subscriptions),
            queued: get(&c.queued),
            queued_bytes: get(&c.queued_bytes),
        }
    }

    /// Waits until the server has seen everything asked of this transport so far: every
    /// subscription change is live on the server and every queued message was received by it.
    ///
    /// For start-up readiness and tests (a peer's publish after this reaches our new
    /// subscriptions). A round trip, not only a socket flush: it ends with the server's "no
    /// responders" answer to a request on a fresh inbox subject (so it times out if another client
    /// subscribes to everything, `>`, without answering). Fails at once while disconnected, and
    /// after the flush timeout.
    pub async fn flush(&self) -> Result<(), FlushError> {
        let limit = self.inner.config.flush_timeout;
        tokio::time::timeout(limit, self.round_trip()).await.unwrap_or(Err(FlushError::Timeout(limit)))
    }

    async fn round_trip(&self) -> Result<(), FlushError> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(FlushError::Closed);
        }
        if !self.is_connected() {
            return Err(FlushError::Disconnected);
        }
        let (done, handed_over) = oneshot::channel();
        inner.outbound.send(Outbound::Marker(done)).await.map_err(|_| FlushError::Closed)?;
        handed_over.await.map_err(|_| FlushError::Closed)?;
        let limit = inner.config.flush_timeout;
        let request = Request::new().timeout(Some(limit));
        match inner.client.send_request(inner.client.new_inbox(), request).await {
            Ok(_) => Ok(()),
            Err(e) => match e.kind() {
                RequestErrorKind::NoResponders => Ok(()),
                RequestErrorKind::TimedOut => Err(FlushError::Timeout(limit)),
                RequestErrorKind::Other if !self.is_connected() => Err(FlushError::Disconnected),
                RequestErrorKind::Other => Err(FlushError::Client(e.to_string())),
            },
        }
    }

    /// Closes the connection for good: later publishes fail with `Closed`; what was queued is
    /// handed to the server first (within the flush timeout), then every subscription ends.
    ///
    /// For shutdown after [`ClusterAdapterFactory::close`](switchboard_adapter::cluster::ClusterAdapterFactory::close),
    /// so its goodbye messages go out. Idempotent.
    pub async fn close(&self) -> Result<(), FlushError> {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let limit = inner.config.flush_timeout;
        let wait = async {
            let (done, closed) = oneshot::channel();
            inner.outbound.send(Outbound::Close(done)).await.map_err(|_| FlushError::Closed)?;
            closed.await.map_err(|_| FlushError::Closed)
        };
        // The driver bounds its own wait by the same timeout; allow it to finish first.
        tokio::time::timeout(limit.saturating_mul(2), wait).await.unwrap_or(Err(FlushError::Timeout(limit)))
    }

    /// Counts a refused publish and logs it (at most one line per few seconds).
    fn refuse(&self, error: PublishError) -> PublishError {
        let c = &self.inner.shared.counters;
        match error {
            PublishError::QueueFull => bump(&c.dropped_queue_full),
            _ => bump(&c.dropped_disconnected),
        };
        if let Some(suppressed) = c.drop_log.allow() {
            tracing::warn!(%error, suppressed, "NATS publish refused; cluster message dropped");
        }
        error
    }
}

impl Transport for NatsTransport {
    fn publish(&self, route: &Route, payload: Bytes) -> Result<(), PublishError> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(self.refuse(PublishError::Closed));
        }
        match inner.client.connection_state() {
            State::Connected => {}
            // Fail fast instead of letting the client buffer while it reconnects.
            State::Disconnected => {
                return Err(
                    self.refuse(PublishError::Disconnected("NATS connection lost, reconnecting".into()))
                );
            }
            State::Pending => {
                return Err(self.refuse(PublishError::Disconnected("NATS not connected yet".into())));
            }
        }
        let c = &inner.shared.counters;
        let len = payload.len() as u64;
        let bytes = c.queued_bytes.fetch_add(len, Ordering::Relaxed) + len;
        if bytes > inner.config.publish_queue_bytes as u64 {
            c.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            return Err(self.refuse(PublishError::QueueFull));
        }
        c.queued.fetch_add(1, Ordering::Relaxed);
        let subject = subject::name(route, &inner.prefix);
        match inner.outbound.try_send(Outbound::Publish {
            subject,
            payload,
            queued: tokio::time::Instant::now(),
        }) {
            Ok(()) => Ok(()),
            Err(e) => {
                c.queued.fetch_sub(1, Ordering::Relaxed);
                c.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                Err(self.refuse(match e {
                    TrySendError::Full(_) => PublishError::QueueFull,
                    TrySendError::Closed(_) => PublishError::Closed,
                }))
            }
        }
    }

    fn subscribe(&self, route: &Route) -> Confirmation {
        if self.inner.closed.load(Ordering::Acquire) {
            return Confirmation::confirmed();
        }
        let (new, generation) = self.inner.shared.want(subject::name(route, &self.inner.prefix));
        if new {
            let _ = self.inner.wake.try_send(());
        }
        // Read after the change is recorded: a disconnect gives up what was recorded before it.
        if !self.is_connected() {
            return Confirmation::confirmed();
        }
        self.inner.shared.confirmations.confirmation(generation)
    }

    fn unsubscribe(&self, route: &Route) {
        if self.inner.closed.load(Ordering::Acquire) {
            return;
        }
        if self.inner.shared.unwant(&subject::name(route, &self.inner.prefix)) {
            let _ = self.inner.wake.try_send(());
        }
    }

    fn is_connected(&self) -> bool {
        NatsTransport::is_connected(self)
    }
}

/// Credentials a URL carries: `user:password@`, or a lone `token@`.
#[derive(Clone, Default, PartialEq, Eq)]
enum UrlAuth {
    #[default]
    None,
    UserPassword(String, String),
    Token(String),
}

/// Parses every URL (splitting comma-separated lists), so a typo fails at start with its reason;
/// returns them without their credentials (the client would otherwise keep them in addresses it
/// may log), and the credentials, which every URL that has some must share.
fn parse_urls<I, S>(urls: I) -> Result<(Vec<ServerAddr>, UrlAuth), ConnectError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = Vec::new();
    let mut auth = UrlAuth::None;
    for list in urls {
        for url in list.as_ref().split(',').map(str::trim).filter(|u| !u.is_empty()) {
            let invalid = |reason: String| ConnectError::InvalidUrl { url: redact(url), reason };
            let addr = url.parse::<ServerAddr>().map_err(|e| invalid(e.to_string()))?;
            let this = match (addr.username(), addr.password()) {
                (Some(user), Some(password)) => UrlAuth::UserPassword(user.to_owned(), password.to_owned()),
                (Some(token), None) => UrlAuth::Token(token.to_owned()),
                _ => UrlAuth::None,
            };
            match (&auth, this) {
                (_, UrlAuth::None) => {}
                (UrlAuth::None, this) => auth = this,
                (known, this) if *known == this => {}
                _ => {
                    return Err(ConnectError::InvalidCredentials(
                        "the NATS URLs carry different users, passwords or tokens; one client uses one"
                            .into(),
                    ));
                }
            }
            let mut bare = addr.into_inner();
            let stripped = bare.set_username("").is_ok() && bare.set_password(None).is_ok();
            if !stripped {
                return Err(invalid("its credentials cannot be separated from it".into()));
            }
            out.push(ServerAddr::from_url(bare).map_err(|e| invalid(e.to_string()))?);
        }
    }
    if out.is_empty() {
        return Err(ConnectError::NoUrl);
    }
    Ok((out, auth))
}

/// Adds the node's credentials and TLS settings to `options`: at most one way to authenticate
/// (URL user and password or token, `.creds`, nkey seed), each checked now.
fn authenticate(options: ConnectOptions, auth: &Auth, url: &UrlAuth) -> Result<ConnectOptions, ConnectError> {
    let ways = [*url != UrlAuth::None, auth.credentials.is_some(), auth.nkey_seed.is_some()];
    if ways.iter().filter(|&&set| set).count() > 1 {
        return Err(ConnectError::InvalidCredentials(
            "give one of: user and password or token in the URL, a .creds file, an nkey seed".into(),
        ));
    }
    let mut options = match url {
        UrlAuth::None => options,
        UrlAuth::UserPassword(user, password) => options.user_and_password(user.clone(), password.clone()),
        UrlAuth::Token(token) => options.token(token.clone()),
    };
    if let Some(creds) = &auth.credentials {
        // Its error names the part that failed to parse, never the secret.
        options = options
            .credentials(creds)
            .map_err(|e| ConnectError::InvalidCredentials(format!("the .creds file does not parse: {e}")))?;
    }
    if let Some(seed) = &auth.nkey_seed {
        let seed = seed.trim();
        if nkeys::KeyPair::from_seed(seed).is_err() {
            return Err(ConnectError::InvalidCredentials(
                "the nkey seed does not parse (expected one line starting with SU)".into(),
            ));
        }
        options = options.nkey(seed.to_owned());
    }
    if let Some(ca) = &auth.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &auth.tls_client {
        options = options.add_client_certificate(cert.clone(), key.clone()).require_tls(true);
    }
    Ok(options)
}

/// Whether a failed connection was the server (or TLS) refusing this node's settings, which no
/// retry fixes, rather than the server being unreachable. async-nats reports a certificate it
/// does not trust as an I/O error that keeps only rustls' message, so that is told apart by it.
fn is_refusal(e: &async_nats::ConnectError) -> bool {
    let refused = matches!(
        e.kind(),
        ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Tls
    );
    let text = e.to_string();
    refused
        || ["invalid peer certificate", "received fatal alert", "peer is incompatible"]
            .iter()
            .any(|m| text.contains(m))
}

/// The URL without its credentials (`nats://user:pass@host` → `nats://***@host`), for errors.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    match rest.rsplit_once('@') {
        Some((_, host)) if scheme.is_empty() => format!("***@{host}"),
        Some((_, host)) => format!("{scheme}://***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_and_checked() {
        let (addrs, _) =
            parse_urls(["nats://127.0.0.1:4222, 127.0.0.1:4223", "tls://h:1"]).unwrap_or_default();
        let shown: Vec<String> = addrs.iter().map(|a| format!("{}:{}", a.host(), a.port())).collect();
        assert_eq!(shown, ["127.0.0.1:4222", "127.0.0.1:4223", "h:1"]);
        assert!(matches!(parse_urls([" , "]), Err(ConnectError::NoUrl)));
        assert!(matches!(parse_urls(Vec::<String>::new()), Err(ConnectError::NoUrl)));
        let Err(ConnectError::InvalidUrl { url, reason }) = parse_urls(["http://u:secret@h:1"]) else {
            panic!("an http URL must be refused");
        };
        assert_eq!(url, "http://***@h:1");
        assert!(reason.contains("scheme"), "{reason}");
        assert!(matches!(parse_urls(["nats://h:notaport"]), Err(ConnectError::InvalidUrl { .. })));
    }

    #[test]
    fn url_credentials_are_taken_out_of_the_addresses_and_must_agree() {
        let Ok((addrs, auth)) = parse_urls(["nats://u:p@a:1, nats://b:2"]) else { panic!("valid URLs") };
        assert!(auth == UrlAuth::UserPassword("u".into(), "p".into()));
        assert!(addrs.iter().all(|a| a.username().is_none() && a.password().is_none()));
        assert!(addrs.iter().all(|a| !a.as_url_str().contains('@')), "credentials left in an address");
        let Ok((_, token)) = parse_urls(["tls://t0ken@a:1"]) else { panic!("a token URL is valid") };
        assert!(token == UrlAuth::Token("t0ken".into()));
        let disagree = parse_urls(["nats://u:p@a:1", "nats://u:q@b:2"]);
        assert!(matches!(disagree, Err(ConnectError::InvalidCredentials(_))));
        let two_ways = authenticate(
            ConnectOptions::new(),
            &Auth { nkey_seed: Some("SU".into()), ..Auth::default() },
            &token,
        );
        assert!(matches!(two_ways, Err(ConnectError::InvalidCredentials(_))));
    }
}
