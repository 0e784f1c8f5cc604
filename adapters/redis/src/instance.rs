//! One Redis instance as the handle side sees it: the state shared between the cheap handle and
//! the instance's driver task (link status, wanted subscriptions, counters), and the public
//! status snapshot the server reports.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use switchboard_adapter::Confirmations;
use switchboard_adapter::cluster::PublishError;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

/// A message waiting for its instance's publisher connection.
pub(crate) struct Outgoing {
    pub(crate) channel: String,
    pub(crate) payload: Bytes,
    /// When it was queued, for the publish latency.
    pub(crate) queued: Instant,
}

/// The channels this node wants on the instance: reference counts (two adapters may ask for one
/// route), the names changed since the driver last looked, and a generation bumped by each change.
#[derive(Debug, Default)]
pub(crate) struct Subs {
    pub(crate) wanted: HashMap<String, usize>,
    pub(crate) dirty: HashSet<String>,
    pub(crate) generation: u64,
}

/// What the driver reports about its connection, for waiters (`connect`, `settle`, `flush`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Link {
    /// Both connections are up and resubscribed (see `Instance::connected`).
    pub(crate) connected: bool,
    /// Every subscription change up to this generation is acknowledged on the current connection;
    /// `None` while down or resubscribing after a reconnect.
    pub(crate) synced: Option<u64>,
    /// Accepted publishes written to Redis or dropped (the counterpart of `Instance::accepted`).
    pub(crate) handled: u64,
    /// Failed connection attempts since the instance was last up.
    pub(crate) failed_attempts: u64,
    /// The last connection error, for status and `connect`'s error.
    pub(crate) last_error: Option<Arc<str>>,
    /// The last failed attempt was refused for our configuration (credentials, certificates).
    pub(crate) refused: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) dropped_queue_full: AtomicU64,
    pub(crate) dropped_disconnected: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) subscribe_errors: AtomicU64,
}

/// Adds `n`; returns the new value (for "log every power of two" throttling).
pub(crate) fn add(counter: &AtomicU64, n: u64) -> u64 {
    counter.fetch_add(n, Ordering::Relaxed) + n
}

/// Whether a counter that went from `new - n` to `new` crossed a power of two (log throttling).
pub(crate) fn crossed_power_of_two(new: u64, n: u64) -> bool {
    let old = new.saturating_sub(n);
    n > 0 && (old + 1).checked_next_power_of_two().is_some_and(|p| p <= new)
}

/// State shared by an instance's handle and its driver task.
pub(crate) struct Instance {
    /// `host:port` (or a socket path), never credentials: the ring key and the name in logs.
    pub(crate) address: Arc<str>,
    /// Up and resubscribed; read on every publish and request: a down instance refuses at once.
    pub(crate) connected: AtomicBool,
    pub(crate) subs: Mutex<Subs>,
    /// Wakes the driver when `subs` changed.
    pub(crate) wake: Notify,
    pub(crate) link: watch::Sender<Link>,
    /// Subscription changes (by `Subs::generation`) Redis acknowledged, or given up when the
    /// instance went down: what joins wait for.
    pub(crate) confirmations: Confirmations,
    pub(crate) counters: Counters,
    /// Publishes taken into the queue (see `Link::handled`).
    pub(crate) accepted: AtomicU64,
}

impl Instance {
    pub(crate) fn new(address: String) -> Self {
        Self {
            address: address.into(),
            connected: AtomicBool::new(false),
            subs: Mutex::new(Subs::default()),
            wake: Notify::new(),
            link: watch::Sender::new(Link::default()),
            confirmations: Confirmations::new(),
            counters: Counters::default(),
            accepted: AtomicU64::new(0),
        }
    }

    pub(crate) fn subs(&self) -> MutexGuard<'_, Subs> {
        self.subs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One more reference to `channel`; the first one queues a SUBSCRIBE. Returns the generation
    /// that covers the channel's subscription.
    pub(crate) fn subscribe(&self, channel: String) -> u64 {
        let mut subs = self.subs();
        let count = subs.wanted.entry(channel.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            subs.dirty.insert(channel);
            subs.generation += 1;
            let generation = subs.generation;
            drop(subs);
            self.wake.notify_one();
            return generation;
        }
        subs.generation
    }

    /// One reference less to `channel`; the last one queues an UNSUBSCRIBE.
    pub(crate) fn unsubscribe(&self, channel: String) {
        let mut subs = self.subs();
        let Some(count) = subs.wanted.get_mut(&channel) else {
            tracing::debug!(channel, address = &*self.address, "unsubscribe of a channel not subscribed");
            return;
        };
        *count -= 1;
        if *count == 0 {
            subs.wanted.remove(&channel);
            subs.dirty.insert(channel);
            subs.generation += 1;
            drop(subs);
            self.wake.notify_one();
        }
    }

    /// Counts and logs (throttled) a publish refused before reaching the queue.
    fn refused(&self, counter: &AtomicU64, error: PublishError) -> PublishError {
        let n = add(counter, 1);
        if n.is_power_of_two() {
            tracing::warn!(address = &*self.address, %error, count = n, "redis publish dropped");
        }
        error
    }

    pub(crate) fn status(&self) -> InstanceStatus {
        let link = self.link.borrow().clone();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let c = &self.counters;
        InstanceStatus {
            address: self.address.to_string(),
            connected: self.connected.load(Ordering::Acquire),
            subscriptions: self.subs().wanted.len(),
            last_error: link.last_error.map(|e| e.to_string()),
            stats: InstanceStats {
                published: get(&c.published),
                dropped_queue_full: get(&c.dropped_queue_full),
                dropped_disconnected: get(&c.dropped_disconnected),
                failed: get(&c.failed),
                received: get(&c.received),
                reconnects: get(&c.reconnects),
                connect_failures: get(&c.connect_failures),
                subscribe_errors: get(&c.subscribe_errors),
            },
        }
    }
}

/// The handle side of one instance: where publishes for its channels are queued.
pub(crate) struct Shard {
    pub(crate) instance: Arc<Instance>,
    pub(crate) queue: mpsc::Sender<Outgoing>,
    /// For connection state recovery's stores (`recovery`), which open their own connections.
    pub(crate) client: redis::Client,
}

impl Shard {
    /// Queues a message without waiting; refuses at once when the instance is down or its queue full.
    pub(crate) fn publish(&self, channel: String, payload: Bytes) -> Result<(), PublishError> {
        let instance = &*self.instance;
        if !instance.connected.load(Ordering::Acquire) {
            let error = PublishError::Disconnected(format!("redis {} is down", instance.address));
            return Err(instance.refused(&instance.counters.dropped_disconnected, error));
        }
        match self.queue.try_send(Outgoing { channel, payload, queued: Instant::now() }) {
            Ok(()) => {
                instance.accepted.fetch_add(1, Ordering::AcqRel);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                Err(instance.refused(&instance.counters.dropped_queue_full, PublishError::QueueFull))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(PublishError::Closed),
        }
    }
}

/// A snapshot of one instance's health, for logs, readiness and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InstanceStatus {
    /// `host:port` (or the socket path) of the instance, without credentials.
    pub address: String,
    /// Both connections (subscriber and publisher) are up and every channel wanted when they came
    /// up is subscribed; publishes to this instance fail while not.
    pub connected: bool,
    /// Channels this node wants on this instance (rooms with local members, namespaces, its node).
    pub subscriptions: usize,
    /// The last connection error, if any since start.
    pub last_error: Option<String>,
    /// The instance's counters.
    pub stats: InstanceStats,
}

/// Counters of one instance, monotonic since start: what the metrics issue exports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InstanceStats {
    /// Messages Redis accepted (PUBLISH answered).
    pub published: u64,
    /// Publishes refused because the instance's queue was full (Redis slow or stalled).
    pub dropped_queue_full: u64,
    /// Publishes refused, or dropped from the queue, because the instance was down.
    pub dropped_disconnected: u64,
    /// Messages written in a pipeline that failed (error reply, timeout, connection lost).
    pub failed: u64,
    /// Messages received from this instance's subscriptions (handed to the cluster adapter).
    pub received: u64,
    /// Connections re-established after a loss (the first connection is not counted).
    pub reconnects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// SUBSCRIBE/UNSUBSCRIBE batches Redis answered with an error (e.g. ACL), logged.
    pub subscribe_errors: u64,
}

impl InstanceStats {
    /// Every message dropped instead of published: queue full, instance down, failed pipeline.
    pub fn publish_errors(&self) -> u64 {
        self.dropped_queue_full + self.dropped_disconnected + self.failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_of_two_are_noticed_in_steps() {
        assert!(crossed_power_of_two(1, 1));
        assert!(crossed_power_of_two(4, 1));
        assert!(!crossed_power_of_two(5, 1));
        assert!(crossed_power_of_two(9, 5), "4 < 8 <= 9");
        assert!(!crossed_power_of_two(15, 5));
        assert!(!crossed_power_of_two(3, 0));
    }

    #[test]
    fn references_are_counted() {
        let i = Instance::new("a:1".into());
        assert_eq!(i.subscribe("c".into()), 1);
        assert_eq!(i.subscribe("c".into()), 1);
        assert_eq!(i.subs().generation, 1);
        i.unsubscribe("c".into());
        assert_eq!(i.subs().wanted.get("c"), Some(&1));
        i.unsubscribe("c".into());
        i.unsubscribe("c".into()); // unbalanced: ignored
        let subs = i.subs();
        assert!(subs.wanted.is_empty());
        assert_eq!(subs.generation, 2);
        assert!(subs.dirty.contains("c"));
    }
}
