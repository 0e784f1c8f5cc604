//! What the transport reports about its connection: the counters the server's metrics export, the
//! connection events that feed them, and the throttle that keeps drop logs readable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::Event;

/// A snapshot of one transport's health; counters are monotonic since connect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NatsHealth {
    /// Whether the connection is up now (publishes are accepted).
    pub connected: bool,
    /// Successful connections, the first included.
    pub connects: u64,
    /// Successful reconnections (connections after the first).
    pub reconnects: u64,
    /// Connections lost.
    pub disconnects: u64,
    /// Publishes refused because the queue was full (NATS slow, or just gone).
    pub dropped_queue_full: u64,
    /// Publishes refused because the connection was down or the transport closed.
    pub dropped_disconnected: u64,
    /// Queued messages the client refused (over the server's max_payload, client closed): dropped.
    pub publish_errors: u64,
    /// Times async-nats dropped a received message because a subscription's buffer was full.
    pub slow_consumer_events: u64,
    /// Subjects subscribed now (namespace, room and node routes).
    pub subscriptions: u64,
    /// Messages waiting in the publish queue.
    pub queued: u64,
    /// Payload bytes waiting in the publish queue.
    pub queued_bytes: u64,
}

impl NatsHealth {
    /// Publishes dropped for any reason (what the adapter's `publish_failed` counts, plus
    /// [`publish_errors`](Self::publish_errors), which failed after the adapter's call returned).
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_disconnected + self.publish_errors
    }
}

/// Counters shared by the handle, the driver and the client's event callback.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connected_events: AtomicU64,
    pub(crate) disconnects: AtomicU64,
    pub(crate) dropped_queue_full: AtomicU64,
    pub(crate) dropped_disconnected: AtomicU64,
    pub(crate) publish_errors: AtomicU64,
    pub(crate) slow_consumer_events: AtomicU64,
    pub(crate) subscriptions: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) queued_bytes: AtomicU64,
    pub(crate) drop_log: Throttle,
    pub(crate) event_log: Throttle,
}

/// Adds one; returns the new value.
pub(crate) fn bump(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}

pub(crate) fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Counters {
    /// Logs a connection event and counts what the health report needs. Runs on async-nats' event
    /// task, which also logs each event at info level.
    pub(crate) fn on_event(&self, event: Event) {
        match event {
            Event::Connected => match bump(&self.connected_events) {
                1 => tracing::info!("NATS connected"),
                n => tracing::warn!(
                    reconnects = n - 1,
                    "NATS reconnected; the client resubscribed every live subject"
                ),
            },
            Event::Disconnected => {
                bump(&self.disconnects);
                tracing::warn!("NATS connection lost; cluster publishes are dropped until it is back");
            }
            Event::SlowConsumer(sid) => {
                bump(&self.slow_consumer_events);
                if let Some(suppressed) = self.event_log.allow() {
                    tracing::warn!(
                        sid,
                        suppressed,
                        "NATS subscription buffer full: received messages dropped"
                    );
                }
            }
            Event::ClientError(error) => {
                if let Some(suppressed) = self.event_log.allow() {
                    tracing::warn!(%error, suppressed, "NATS client error");
                }
            }
            Event::ServerError(error) => tracing::warn!(%error, "NATS server error"),
            Event::LameDuckMode => tracing::warn!("NATS server entering lame duck mode; it will go away"),
            Event::Draining | Event::Closed => tracing::debug!(%event, "NATS connection"),
        }
    }
}

/// Lets one log line through per period, reporting how many were held back since.
#[derive(Debug)]
pub(crate) struct Throttle {
    start: Instant,
    period: Duration,
    /// Milliseconds since `start` of the last line let through, plus one (0: never).
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(Duration::from_secs(5))
    }
}

impl Throttle {
    pub(crate) fn new(period: Duration) -> Self {
        Self { start: Instant::now(), period, last: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// `Some(suppressed since the last line)` if a line may be logged now.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX).saturating_add(1);
        let last = self.last.load(Ordering::Relaxed);
        let period = u64::try_from(self.period.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < period {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self.last.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_lets_one_line_through_per_period() {
        let t = Throttle::new(Duration::from_millis(50));
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(t.allow(), Some(2));
        assert_eq!(t.allow(), None);
    }
}
