//! Transport options: how much a node buffers for NATS, and how it reconnects.

use std::path::PathBuf;
use std::time::Duration;

use switchboard_adapter::cluster::PublishTimer;

use crate::error::ConnectError;

/// How a node's [`NatsTransport`](crate::NatsTransport) talks to NATS. Every bound here caps
/// memory while the server is slow or gone; what does not fit is dropped and counted.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    pub(crate) name: String,
    pub(crate) publish_queue: usize,
    pub(crate) publish_queue_bytes: usize,
    pub(crate) client_capacity: usize,
    pub(crate) subscription_capacity: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) max_reconnect_delay: Duration,
    pub(crate) flush_timeout: Duration,
    pub(crate) retry_on_initial_connect: bool,
    pub(crate) publish_timer: PublishTimer,
    pub(crate) auth: Auth,
}

/// How the node proves who it is to NATS, and which server certificates it trusts, beyond what
/// the URL says (`nats://user:password@host` or `nats://token@host`). Debug shows only which
/// parts are set: the seeds and credentials are never printed.
#[derive(Clone, Default)]
pub(crate) struct Auth {
    /// The contents of a `.creds` file (user JWT and nkey seed).
    pub(crate) credentials: Option<String>,
    /// A user nkey seed (`SU…`).
    pub(crate) nkey_seed: Option<String>,
    /// A PEM file of CA certificates the server's certificate must chain to.
    pub(crate) tls_ca: Option<PathBuf>,
    /// PEM files of a client certificate and its key, for mutual TLS.
    pub(crate) tls_client: Option<(PathBuf, PathBuf)>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("credentials", &self.credentials.as_ref().map(|_| ".."))
            .field("nkey_seed", &self.nkey_seed.as_ref().map(|_| ".."))
            .field("tls_ca", &self.tls_ca)
            .field("tls_client", &self.tls_client)
            .finish()
    }
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            name: "switchboard".to_owned(),
            publish_queue: 8192,
            publish_queue_bytes: 64 << 20,
            client_capacity: 2048,
            subscription_capacity: 4096,
            connect_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(10),
            max_reconnect_delay: Duration::from_secs(1),
            flush_timeout: Duration::from_secs(5),
            retry_on_initial_connect: false,
            publish_timer: PublishTimer::default(),
            auth: Auth::default(),
        }
    }
}

impl NatsConfig {
    /// The defaults (see each setter).
    pub fn new() -> Self {
        Self::default()
    }

    /// Observes each message's publish latency: from `publish` until the NATS client took it
    /// for writing (core NATS publishes have no acknowledgement, so the write itself and the
    /// broker's side are not in it). Default: none.
    pub fn with_publish_timer(mut self, timer: PublishTimer) -> Self {
        self.publish_timer = timer;
        self
    }

    /// The connection name the server shows (`/connz`, logs); default `switchboard`. Put the node
    /// id in it to tell nodes apart when debugging.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Messages waiting to be handed to the client before publishes are dropped (`QueueFull`);
    /// default 8192. Raise it for bursty fan-out, at the price of memory when NATS stalls.
    pub fn with_publish_queue(mut self, n: usize) -> Self {
        self.publish_queue = n;
        self
    }

    /// Payload bytes waiting in that queue before publishes are dropped; default 64 MiB. Bounds
    /// memory when messages are large (binary attachments).
    pub fn with_publish_queue_bytes(mut self, n: usize) -> Self {
        self.publish_queue_bytes = n;
        self
    }

    /// The async-nats command channel (publishes, subscribes) between our queue and the socket;
    /// default 2048 (async-nats' own). It also holds at most this many commands while reconnecting.
    pub fn with_client_capacity(mut self, n: usize) -> Self {
        self.client_capacity = n;
        self
    }

    /// Messages buffered per subscription before async-nats drops more (a slow-consumer event,
    /// counted in [`NatsHealth::slow_consumer_events`](crate::NatsHealth)); default 4096
    /// (async-nats: 65536). Receiving only decodes and queues on sessions, so a backlog is rare.
    pub fn with_subscription_capacity(mut self, n: usize) -> Self {
        self.subscription_capacity = n;
        self
    }

    /// How long one connection attempt may take; default 5 s.
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How often the client pings the server; default 10 s (async-nats: 60 s). Two unanswered pings
    /// close the connection, so this bounds how long a silently dead link (no TCP reset) goes unseen.
    pub fn with_ping_interval(mut self, d: Duration) -> Self {
        self.ping_interval = d;
        self
    }

    /// The longest wait between reconnect attempts; default 1 s. Attempts start at once and back
    /// off exponentially from 10 ms up to this, so delivery resumes within about this long after
    /// the server is back.
    pub fn with_max_reconnect_delay(mut self, d: Duration) -> Self {
        self.max_reconnect_delay = d;
        self
    }

    /// How long [`NatsTransport::flush`](crate::NatsTransport::flush) and
    /// [`close`](crate::NatsTransport::close) may take; default 5 s.
    pub fn with_flush_timeout(mut self, d: Duration) -> Self {
        self.flush_timeout = d;
        self
    }

    /// Whether [`NatsTransport::connect`](crate::NatsTransport::connect) returns before the server
    /// is reachable and keeps trying in the background; default `false` (a node that cannot reach
    /// NATS at start fails at start, with the reason). Either way a server that refuses this
    /// node's credentials or certificates on the first attempt fails `connect`: retrying would
    /// not help.
    pub fn with_retry_on_initial_connect(mut self, retry: bool) -> Self {
        self.retry_on_initial_connect = retry;
        self
    }

    /// Authenticates with a `.creds` file's contents (a user JWT and its nkey seed, as `nsc`
    /// writes them); default none. Checked when the transport connects: a malformed file fails it.
    pub fn with_credentials(mut self, creds: impl Into<String>) -> Self {
        self.auth.credentials = Some(creds.into());
        self
    }

    /// Authenticates with a user nkey seed (`SU…`, the server lists the public key); default none.
    /// Checked when the transport connects: a seed that does not parse fails it.
    pub fn with_nkey_seed(mut self, seed: impl Into<String>) -> Self {
        self.auth.nkey_seed = Some(seed.into());
        self
    }

    /// Trusts the CA certificates in this PEM file for the server's certificate (instead of the
    /// system's roots), and requires TLS; default: the system's roots, TLS when the URL is
    /// `tls://` or the server asks for it.
    pub fn with_tls_ca(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.auth.tls_ca = Some(pem_file.into());
        self
    }

    /// Presents this client certificate (PEM file) and key (PEM file) to a server that verifies
    /// clients (mutual TLS), and requires TLS; default none.
    pub fn with_tls_client_cert(
        mut self,
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
    ) -> Self {
        self.auth.tls_client = Some((cert_file.into(), key_file.into()));
        self
    }

    /// The reconnect delay before attempt `attempts` (1-based): none for the first, then 10 ms
    /// doubling up to the maximum.
    pub(crate) fn reconnect_delay(max: Duration, attempts: usize) -> Duration {
        if attempts <= 1 {
            return Duration::ZERO;
        }
        let exp = u32::try_from(attempts - 2).unwrap_or(u32::MAX).min(20);
        Duration::from_millis(10u64 << exp).min(max)
    }

    pub(crate) fn validate(&self) -> Result<(), ConnectError> {
        let positive = [
            (self.publish_queue, "publish queue must hold at least one message"),
            (self.publish_queue_bytes, "publish queue must hold at least one byte"),
            (self.client_capacity, "client capacity must be at least 1"),
            (self.subscription_capacity, "subscription capacity must be at least 1"),
        ];
        for (n, why) in positive {
            if n == 0 {
                return Err(ConnectError::InvalidConfig(why));
            }
        }
        if self.flush_timeout.is_zero() || self.connect_timeout.is_zero() || self.ping_interval.is_zero() {
            return Err(ConnectError::InvalidConfig("timeouts and the ping interval must be positive"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_backs_off_to_the_max() {
        let max = Duration::from_secs(1);
        let delays: Vec<u64> =
            (1..=10).map(|a| NatsConfig::reconnect_delay(max, a).as_millis() as u64).collect();
        assert_eq!(delays, [0, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert_eq!(NatsConfig::reconnect_delay(max, usize::MAX), max);
    }

    #[test]
    fn zero_capacities_are_refused() {
        assert!(NatsConfig::new().validate().is_ok());
        assert!(NatsConfig::new().with_publish_queue(0).validate().is_err());
        assert!(NatsConfig::new().with_subscription_capacity(0).validate().is_err());
        assert!(NatsConfig::new().with_flush_timeout(Duration::ZERO).validate().is_err());
    }
}
