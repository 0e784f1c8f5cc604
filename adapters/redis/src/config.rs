//! Transport options: queue bounds, batching, timeouts, reconnect policy, sharding. Every setter
//! states its default; the defaults suit a cluster on one network.

use std::time::Duration;

use switchboard_adapter::cluster::PublishTimer;

use crate::error::ConnectError;

/// How the transport talks to its Redis instances.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub(crate) publish_queue: usize,
    pub(crate) publish_batch: usize,
    pub(crate) subscribe_batch: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) virtual_nodes: usize,
    pub(crate) publish_timer: PublishTimer,
    pub(crate) tls: Tls,
}

/// Certificates for `rediss://` instances. Debug never prints the client key.
#[derive(Clone, Default)]
pub(crate) struct Tls {
    /// PEM CA certificates trusted instead of the system's.
    pub(crate) ca: Option<Vec<u8>>,
    /// PEM client certificate chain and key, for mutual TLS.
    pub(crate) client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("ca", &self.ca.as_ref().map(|_| ".."))
            .field("client", &self.client.as_ref().map(|_| ".."))
            .finish()
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            publish_queue: 4096,
            publish_batch: 512,
            subscribe_batch: 512,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            ping_interval: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(1),
            virtual_nodes: 160,
            publish_timer: PublishTimer::default(),
            tls: Tls::default(),
        }
    }
}

impl RedisConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Messages waiting to be written, per instance, before publishes fail with `QueueFull`;
    /// default 4096. Bounds memory when Redis is slow; raise it for bursty fan-out.
    pub fn with_publish_queue(mut self, n: usize) -> Self {
        self.publish_queue = n;
        self
    }

    /// Most messages written in one pipeline (one round trip); default 512. Queued messages are
    /// batched while the previous pipeline is in flight, so this only caps a burst's first write.
    pub fn with_publish_batch(mut self, n: usize) -> Self {
        self.publish_batch = n;
        self
    }

    /// Most SUBSCRIBE/UNSUBSCRIBE commands in one pipeline; default 512. Resubscribing many
    /// rooms after a reconnect takes one round trip per batch.
    pub fn with_subscribe_batch(mut self, n: usize) -> Self {
        self.subscribe_batch = n;
        self
    }

    /// How long one connection attempt may take; default 1 s.
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How long Redis may take to answer a pipeline or a ping before the instance counts as down
    /// and is reconnected; default 1 s. A stalled instance is detected within this.
    pub fn with_response_timeout(mut self, d: Duration) -> Self {
        self.response_timeout = d;
        self
    }

    /// How often an idle subscriber connection is pinged, to notice a silently dead link (no RST,
    /// e.g. a network partition); default 5 s.
    pub fn with_ping_interval(mut self, d: Duration) -> Self {
        self.ping_interval = d;
        self
    }

    /// Reconnect delays: the first retry after a failed attempt waits `min`, each further one
    /// doubles up to `max` (each with up to 50 % less jitter); defaults 50 ms and 1 s. A lost
    /// connection is retried once at once. Keep `max` short: publishes fail while an instance is down.
    pub fn with_reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max;
        self
    }

    /// Points per instance on the consistent-hash ring; default 160. More points spread channels
    /// more evenly over instances at a small, one-off memory cost.
    pub fn with_virtual_nodes(mut self, n: usize) -> Self {
        self.virtual_nodes = n;
        self
    }

    /// Observes each message's publish latency: from `publish` to Redis's reply to the pipeline
    /// that carried it (queueing, the write and the round trip). Default: none.
    pub fn with_publish_timer(mut self, timer: PublishTimer) -> Self {
        self.publish_timer = timer;
        self
    }

    /// PEM CA certificates that `rediss://` instances' certificates must chain to, instead of the
    /// system's roots; default none (the system's). For a private CA; every URL must then be
    /// `rediss://` (a CA for a plain connection is a mistake, refused at connect).
    pub fn with_tls_ca(mut self, pem: Vec<u8>) -> Self {
        self.tls.ca = Some(pem);
        self
    }

    /// A PEM client certificate chain and its PEM private key, presented to `rediss://` instances
    /// that ask for one (`tls-auth-clients yes`); default none.
    pub fn with_tls_client_cert(mut self, cert: Vec<u8>, key: Vec<u8>) -> Self {
        self.tls.client = Some((cert, key));
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ConnectError> {
        let checks: [(bool, &'static str); 8] = [
            (self.publish_queue == 0, "publish queue must hold at least one message"),
            (self.publish_batch == 0, "publish batch must be at least 1"),
            (self.subscribe_batch == 0, "subscribe batch must be at least 1"),
            (self.connect_timeout.is_zero(), "connect timeout must be positive"),
            (self.response_timeout.is_zero(), "response timeout must be positive"),
            (self.ping_interval.is_zero(), "ping interval must be positive"),
            (
                self.reconnect_min.is_zero() || self.reconnect_max < self.reconnect_min,
                "reconnect backoff must satisfy 0 < min <= max",
            ),
            (self.virtual_nodes == 0, "virtual nodes must be at least 1"),
        ];
        match checks.into_iter().find(|(bad, _)| *bad) {
            Some((_, why)) => Err(ConnectError::InvalidConfig(why)),
            None => Ok(()),
        }
    }

    /// The delay before reconnect attempt `failures` (1 = after the first failure), jittered.
    pub(crate) fn backoff(&self, failures: u32, jitter: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(20);
        let base = self.reconnect_min.saturating_mul(1 << shift).min(self.reconnect_max);
        // Between 50 % and 100 % of the base, so nodes that lost an instance together spread out.
        base / 2 + base / 2 * (jitter % 1024) / 1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let c =
            RedisConfig::new().with_reconnect_backoff(Duration::from_millis(100), Duration::from_millis(700));
        assert_eq!(c.backoff(1, 0), Duration::from_millis(50));
        let top = c.backoff(1, 1023);
        assert!(top > Duration::from_millis(99) && top < Duration::from_millis(100), "{top:?}");
        assert_eq!(c.backoff(2, 0), Duration::from_millis(100));
        assert_eq!(c.backoff(3, 0), Duration::from_millis(200));
        assert_eq!(c.backoff(4, 0), Duration::from_millis(350));
        assert_eq!(c.backoff(u32::MAX, 0), Duration::from_millis(350));
        assert!(c.backoff(9, 512) <= Duration::from_millis(700));
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(RedisConfig::new().validate().is_ok());
        assert!(RedisConfig::new().with_publish_queue(0).validate().is_err());
        assert!(
            RedisConfig::new()
                .with_reconnect_backoff(Duration::from_secs(2), Duration::from_secs(1))
                .validate()
                .is_err()
        );
        assert!(RedisConfig::new().with_virtual_nodes(0).validate().is_err());
    }
}
